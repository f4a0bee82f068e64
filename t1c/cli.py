"""The ``t1c`` command: fit, inspect, verify, export and draw `.t1c` graphs.

::

    t1c fit --config configs/digits.yaml        # LightningCLI: T1CModule + a DataModule
    t1c inspect net.t1c                         # node table, edges, metadata
    t1c verify source.t1c exported.t1c          # topology diff; exit 1 when they differ
    t1c export epoch=3-step=120.ckpt -o net.t1c # a T1CModule checkpoint -> .t1c
    t1c convert model.nir model.t1c --dt 1e-3   # NIR <-> T1C-IR (and back: net.t1c net.nir)
    t1c draw net.t1c -o net.svg                 # Mermaid (printed, .mmd, .md) or a .svg/.png

``inspect``, ``verify`` and ``draw`` need only :mod:`t1c.ir` (numpy + h5py; ``draw``'s
pictures also matplotlib) and never import torch, so they answer in a fraction of a second. ``fit`` hands every argument after it to
Lightning's ``LightningCLI`` (``t1c fit --help`` lists them all): each option of the
model, the data module, the trainer and its callbacks (``T1CExport`` among them) can be
set in a YAML file or on the command line; a ``--trainer.default_root_dir`` given there
moves the config's logger folders too, and the end of a fit prints where its files went
(:func:`fit_summary`).

Exit status (every command):

* 0: success;
* 1: ``verify`` found that the topologies differ (and only that);
* 2: a mistake the user can fix, told in one line: a missing file, a path that is not a
  regular file (a directory, a FIFO, a device: named, never read), a file that is not a
  valid `.t1c` file or a loadable checkpoint, wrong arguments, or (``fit``) a config or
  data that does not fit the graph;
* 3: anything else (out of memory, an unexpected error), told in one line.

No command prints a traceback unless asked: ``t1c --debug COMMAND ...``, ``t1c fit
--debug ...`` or the environment variable ``T1C_DEBUG=1`` show it.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import stat
import sys
import warnings
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from . import __version__, ir
from .inspect import format_graph, format_verify

EXIT_OK = 0
EXIT_DIFFERENT = 1
EXIT_ERROR = 2
EXIT_UNEXPECTED = 3

#: What ``t1c export --help`` and the README say about loading a checkpoint (the same words).
CHECKPOINT_SAFETY = (
    "A checkpoint is a pickle; t1c export loads it with torch.load(weights_only=True) and an "
    "allow-list of pathlib paths, so no code in it runs: any other object is refused in one line, "
    "whatever the torch version or TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD say."
)
#: The NIR graph metadata key in which :func:`t1c.nir.to_nir` records its time step.
NIR_DT_KEY = "t1c_dt"
INSPECT_DT_HELP = (
    "time step a .nir file is discretized at; needed unless the file records it (t1c writes it "
    f"as '{NIR_DT_KEY}'): NIR's neurons are continuous-time, T1C-IR's step in time"
)


class CommandError(Exception):
    """A problem the user can fix (missing file, bad file); printed without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``t1c`` command line and return its exit status.

    Args:
        argv: arguments without the program name; ``sys.argv[1:]`` when None.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("T1C_DEBUG", "") not in ("", "0")
    if args and args[0] == "--debug":
        debug, args = True, args[1:]
    if args and args[0] == "fit":
        # Everything after `fit` belongs to LightningCLI (its own --help, --config, ...).
        fit_args = [a for a in args[1:] if a != "--debug"]
        return _run_command("fit", lambda: run_fit(fit_args), debug or len(fit_args) < len(args) - 1)
    parser = build_parser()
    ns = parser.parse_args(args)
    if ns.command is None:
        parser.print_help()
        return EXIT_ERROR
    return _run_command(ns.command, lambda: ns.handler(ns), debug)


def _run_command(command: str, run: Any, debug: bool) -> int:
    """Run one command; a problem becomes one line on stderr and an exit status, no traceback.

    :class:`CommandError` (and, for ``fit``, the user's mistakes that Lightning, the data
    module or T1CModule report) exit with :data:`EXIT_ERROR`; any other exception with
    :data:`EXIT_UNEXPECTED`. With ``debug`` the exception propagates, traceback and all.
    """
    try:
        return run()
    except BrokenPipeError:
        # `t1c inspect big.t1c | head`: the reader left; that is not an error of ours.
        _silence_stdout()
        return EXIT_OK
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:
        if debug:
            raise
        mistake = err if isinstance(err, CommandError) else _user_mistake(err) if command == "fit" else None
        if mistake is not None:
            print(f"t1c {command}: error: {_one_line(mistake)}", file=sys.stderr)
            return EXIT_ERROR
        print(
            f"t1c {command}: unexpected error: {type(err).__name__}: {_one_line(err)} "
            "(run with T1C_DEBUG=1 to see the traceback)",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (its own name when it has no message)."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _user_mistake(err: BaseException) -> BaseException | None:
    """The user's mistake behind an exception raised while ``t1c fit`` runs, or None.

    Mistakes are reported as ``OSError`` (a missing `.t1c` or data file), ``ValueError``
    (``T1CFormatError``, ``ExportError``, data that does not fit the graph, a bad
    argument) or Lightning's ``MisconfigurationException``. jsonargparse wraps an error
    raised while it builds the model or the data module into its own ``ValueError``; the
    first mistake in the exception's chain that was raised outside jsonargparse is the
    one that names the problem.
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    kinds = (OSError, ValueError, MisconfigurationException)
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    mistakes = [e for e in chain if isinstance(e, kinds)]
    for candidate in mistakes:
        if "jsonargparse" not in _raised_in(candidate):
            return candidate
    return mistakes[-1] if mistakes else None


def _raised_in(err: BaseException) -> str:
    """The file of the frame that raised ``err``."""
    tb = err.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename


def build_parser() -> argparse.ArgumentParser:
    """The argparse dispatcher; ``fit`` is listed here but parsed by LightningCLI."""
    parser = argparse.ArgumentParser(
        prog="t1c",
        description="Carry spiking neural networks between PyTorch/snnTorch and T1C-IR (.t1c files).",
    )
    parser.add_argument("--version", action="version", version=f"t1c {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error (also T1C_DEBUG=1; must come before the command)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser(
        "fit",
        help="fine-tune a .t1c graph with LightningCLI (t1c fit --config configs/digits.yaml; "
        "t1c fit --help for all options)",
        add_help=False,
    )

    p = sub.add_parser("inspect", help="print a .t1c (or .nir) file's nodes, shapes, edges and metadata")
    p.add_argument("file", type=Path, help="the .t1c file, or a .nir file (shown as converted at --dt)")
    p.add_argument("--dt", type=_positive, default=None, help=INSPECT_DT_HELP)
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser(
        "verify",
        help="compare two .t1c files' topology (exit 0 identical, 1 different)",
        description="Compare the topology of two .t1c files: node names and types, edge list "
        "(order included), skip types and parameter shapes. Weights may differ.",
    )
    p.add_argument("expected", type=Path, help="the reference .t1c file (e.g. the source graph)")
    p.add_argument("actual", type=Path, help="the .t1c file to check (e.g. an exported one)")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser(
        "export",
        help="export a T1CModule checkpoint (.ckpt) to a .t1c file",
        description="Load a T1CModule checkpoint (the source graph travels inside it) and write "
        "its current weights as a .t1c file, checked against the source graph's topology. "
        + CHECKPOINT_SAFETY,
    )
    p.add_argument("checkpoint", type=Path, help="a .ckpt file saved while training a T1CModule")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .t1c file to write")
    p.add_argument(
        "--integer-weights",
        type=_bits,
        metavar="BITS",
        default=None,
        help="also store the integer weights and scales of the BITS-bit quantized simulation",
    )
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser(
        "convert",
        help="convert NIR <-> T1C-IR (model.nir model.t1c --dt 1e-3, or back)",
        description="Convert a .nir file to a .t1c file or back; the direction follows the suffixes. "
        "Every node converts exactly or the command fails naming the node (docs/nir.md). Needs the "
        "optional 'nir' package: pip install -e '.[nir]' in a clone of t1c, or pip install 'nir>=1.0,<1.1'.",
    )
    p.add_argument("source", type=Path, help="the .nir or .t1c file to read")
    p.add_argument("target", type=Path, help="the .t1c or .nir file to write")
    p.add_argument("--dt", type=_positive, required=True, help="the time step (NIR's time unit, e.g. 1e-3)")
    p.add_argument(
        "--approximate",
        action="store_true",
        help="to .nir: export LIF nodes with snnTorch reset fields as NIR's reset-to-zero LIF (warns)",
    )
    p.set_defaults(handler=cmd_convert)

    add_draw_parser(sub)
    return parser


def add_draw_parser(sub: Any) -> None:
    """The ``draw`` subcommand's arguments (on ``build_parser``'s subparsers)."""
    p = sub.add_parser(
        "draw",
        help="draw a .t1c (or .nir) graph: Mermaid text, or a .svg/.png picture",
        description="Draw a graph. The suffix of -o picks the form: .mmd Mermaid, .md Mermaid in a "
        "```mermaid block, .svg/.png a picture (needs matplotlib, the plot extra: pip install -e '.[plot]'); without -o "
        "the Mermaid text is printed. Big graphs are summarised (docs/drawing.md).",
    )
    p.add_argument("file", type=Path, help="the .t1c file, or a .nir file (needs --dt)")
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="the .mmd, .md, .svg or .png file to write"
    )
    p.add_argument("--dt", type=_positive, default=None, help="time step a .nir file is discretized at")
    p.add_argument("--max-nodes", type=int, default=None, help="draw up to this many nodes (default 300)")
    p.set_defaults(handler=cmd_draw)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit-time flush does not fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _positive(text: str) -> float:
    """An argparse type: a positive finite number (a time step)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _bits(text: str) -> int:
    """An argparse type: a weight width in 1..32."""
    try:
        bits = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer number of bits, got {text!r}") from None
    if not 1 <= bits <= 32:
        raise argparse.ArgumentTypeError(f"must be in 1..32, got {bits}")
    return bits


# -- inspect / verify: t1c.ir only ---------------------------------------------------------
#: What ``stat`` calls the kinds of path that are neither a regular file nor a directory.
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_regular_file(path: Path, what: str = "file") -> None:
    """Raise :class:`CommandError` unless ``path`` is a regular file (links followed).

    Only ``stat`` is called, which never opens the path: a FIFO or a device is named as
    such and never read, so the command cannot block on it.

    Args:
        path: the file a command is about to read.
        what: how the message names it (``"file"``, ``"checkpoint"``).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CommandError(f"{what} '{path}' does not exist") from None
    except OSError as err:  # a parent that is a file, a loop of links, permissions
        raise CommandError(f"{what} '{path}' cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise CommandError(f"{what} '{path}' is a directory, not a file")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
        raise CommandError(f"{what} '{path}' is not a regular file (it is {kind})")


def check_output_folder(path: Path) -> None:
    """Raise :class:`CommandError` unless the folder of ``path``, a file to write, exists."""
    if not path.parent.is_dir():
        raise CommandError(f"the folder of '{path}' does not exist; create it first")


def read_graph(path: Path, dt: float | None = None) -> ir.Graph:
    """Read a `.t1c` file (or a `.nir` file converted at ``dt``), turning every problem into a
    :class:`CommandError`."""
    check_regular_file(path)
    try:
        if path.suffix.lower() == ".nir":
            if dt is None:
                raise CommandError(
                    f"'{path}' is a NIR file that does not say its time step: NIR's neurons are "
                    "continuous-time and T1C-IR's LIF steps in time, so pass --dt, the time step "
                    "to discretize it at (a .nir file written by t1c says it)"
                )
            from .nir import from_nir

            return from_nir(path, dt)
        return ir.read(path)
    except (ir.T1CFormatError, ImportError, OSError) as err:  # OSError: unreadable (permissions, ...)
        raise CommandError(str(err)) from None


def nir_time_step(path: Path) -> float | None:
    """The time step a `.nir` file records, or None: :func:`t1c.nir.to_nir` writes it into
    the NIR graph's metadata as :data:`NIR_DT_KEY`; other NIR producers do not."""
    check_regular_file(path)
    try:
        from .nir import read_nir

        metadata = read_nir(path)[0].metadata or {}
    except (ir.T1CFormatError, ImportError) as err:
        raise CommandError(str(err)) from None
    dt = metadata.get(NIR_DT_KEY)
    try:
        return float(dt) if dt is not None and 0 < float(dt) < float("inf") else None
    except (TypeError, ValueError):  # not a number: as if the file did not say
        return None


def cmd_inspect(ns: argparse.Namespace) -> int:
    """``t1c inspect FILE``: print the node table, edges and metadata."""
    is_nir = ns.file.suffix.lower() == ".nir"
    dt, dt_origin = ns.dt, "--dt"
    if is_nir and dt is None:
        dt, dt_origin = nir_time_step(ns.file), f"the file's {NIR_DT_KEY}"
    graph = read_graph(ns.file, dt)
    if is_nir:
        nir_version = import_module("nir.serialization").read_version(ns.file)
        version = f"NIR {nir_version}, converted at dt={dt:g} (from {dt_origin})"
    else:
        version = ir.read_version(ns.file)
    print(format_graph(graph, path=str(ns.file), version=version))
    return EXIT_OK


def cmd_convert(ns: argparse.Namespace) -> int:
    """``t1c convert A.nir B.t1c --dt DT`` (or ``A.t1c B.nir``): NIR <-> T1C-IR."""
    kinds = (ns.source.suffix.lower(), ns.target.suffix.lower())
    if kinds not in ((".nir", ".t1c"), (".t1c", ".nir")):
        raise CommandError(f"convert goes .nir -> .t1c or .t1c -> .nir, got '{ns.source}' -> '{ns.target}'")
    check_output_folder(ns.target)
    if kinds[0] == ".nir":
        graph = read_graph(ns.source, ns.dt)
        ir.write(ns.target, graph)
        print(f"wrote {ns.target} ({len(graph.nodes)} nodes, {len(graph.edges)} edges) from {ns.source}")
        return EXIT_OK
    graph = read_graph(ns.source)
    try:
        from .nir import import_nir, to_nir
        from .nir.export_nodes import APPROXIMATE_HINT

        with warnings.catch_warnings(record=True) as caught:  # told as lines of this command
            warnings.simplefilter("always")
            nir_graph = to_nir(graph, ns.dt, approximate=ns.approximate)
        for warning in caught:
            print(f"t1c convert: warning: {_one_line(warning.message)}", file=sys.stderr)
        import_nir().write(ns.target, nir_graph)
    except (ir.T1CFormatError, ImportError) as err:  # the message names the Python option: name the flag
        raise CommandError(str(err).replace(APPROXIMATE_HINT, "Pass --approximate")) from None
    print(f"wrote {ns.target} ({len(nir_graph.nodes)} nodes, {len(nir_graph.edges)} edges) from {ns.source}")
    return EXIT_OK


def cmd_verify(ns: argparse.Namespace) -> int:
    """``t1c verify A B``: exit 0 with "topology identical", or 1 with the differences."""
    expected, actual = read_graph(ns.expected), read_graph(ns.actual)
    diffs = ir.topology_diff(expected, actual)
    print(format_verify(diffs, str(ns.expected), str(ns.actual)))
    return EXIT_DIFFERENT if diffs else EXIT_OK


def cmd_draw(ns: argparse.Namespace) -> int:
    """``t1c draw FILE [-o OUT]``: Mermaid text (printed, or ``.mmd``/``.md``) or a ``.svg``/``.png``."""
    from .ir.atomic import atomic_target
    from .ir.drawing import MAX_NODES, drawing_plan
    from .ir.mermaid import plan_to_mermaid
    from .plot import MAX_PICTURE_NODES, save_drawing

    suffix = ns.output.suffix.lower() if ns.output is not None else ".mmd"
    if suffix not in (".mmd", ".md", ".svg", ".png"):
        raise CommandError(
            f"cannot tell the form from '{ns.output}': use .mmd or .md (Mermaid), .svg or .png"
        )
    if ns.output is not None:
        check_output_folder(ns.output)
    picture = suffix in (".svg", ".png")
    max_nodes = MAX_NODES if ns.max_nodes is None else ns.max_nodes
    if max_nodes < 1 or (picture and max_nodes > MAX_PICTURE_NODES):
        raise CommandError(f"--max-nodes must be at least 1 (at most {MAX_PICTURE_NODES:,} for a picture)")
    graph = read_graph(ns.file, ns.dt)
    try:
        if picture:
            with atomic_target(ns.output) as target:
                plan = save_drawing(graph, target, fmt=suffix[1:], max_nodes=max_nodes)
        else:
            plan = drawing_plan(graph, max_nodes)
            text = plan_to_mermaid(plan)
            if ns.output is None:
                print(text, end="")
            else:
                with atomic_target(ns.output) as target:
                    target.write_text(
                        f"```mermaid\n{text}```\n" if suffix == ".md" else text, encoding="utf-8"
                    )
    except (ImportError, OSError) as err:  # ImportError: no matplotlib (the message names the plot extra)
        raise CommandError(str(err)) from None
    for note in plan.notes:
        print(f"t1c draw: {note}", file=sys.stderr)
    if ns.output is not None:
        print(f"wrote {ns.output} ({len(graph.nodes)} nodes, {len(graph.edges)} edges) from {ns.file}")
    return EXIT_OK


# -- export: needs torch and Lightning, imported only here ---------------------------------
def cmd_export(ns: argparse.Namespace) -> int:
    """``t1c export CKPT -o FILE.t1c``: a checkpoint's weights as a `.t1c` file."""
    check_regular_file(ns.checkpoint, "checkpoint")
    check_output_folder(ns.output)
    graph = export_checkpoint(ns.checkpoint, integer_weight_bits=ns.integer_weights)
    ir.write(ns.output, graph)
    print(f"wrote {ns.output} ({len(graph.nodes)} nodes, {len(graph.edges)} edges) from {ns.checkpoint}")
    return EXIT_OK


def load_checkpoint_safely(data: bytes, name: str | Path) -> Any:
    """A checkpoint's bytes loaded by :func:`t1c.lightning.checkpoints.load_checkpoint`
    (``torch.load(weights_only=True)``): no code in it can run.

    A checkpoint is a pickle, and a plain ``torch.load`` runs whatever code the pickle
    names. The weights-only loader builds tensors, containers, numbers and strings (and
    the paths of :data:`~t1c.lightning.checkpoints.SAFE_CHECKPOINT_GLOBALS`) and refuses
    everything else.

    Raises:
        CommandError: the file is not a checkpoint, or holds objects other than those.
    """
    import pickle

    from .lightning.checkpoints import load_checkpoint

    try:
        return load_checkpoint(io.BytesIO(data))
    except pickle.UnpicklingError as err:
        found = re.search(r"WeightsUnpickler error: (.*?)(?:\. |\.?$)", str(err), flags=re.M)
        reason = found.group(1) if found else _one_line(err)
        raise CommandError(
            f"'{name}' holds objects a weights-only load refuses ({reason}); t1c export loads "
            "checkpoints with torch.load(weights_only=True) so that no code in them runs, and a "
            "T1CModule checkpoint holds only tensors and plain values: export a checkpoint written by "
            "a T1CModule run you trust"
        ) from None
    except Exception as err:  # torch reports a file that is not a checkpoint with many exception types
        raise CommandError(
            f"'{name}' could not be loaded as a T1CModule checkpoint ({type(err).__name__}: {_one_line(err)})"
        ) from None


def export_checkpoint(checkpoint: str | Path, *, integer_weight_bits: int | None = None) -> ir.Graph:
    """The graph of a saved T1CModule, verified against its source graph's topology.

    The checkpoint is read once and loaded with ``torch.load(weights_only=True)``
    (:func:`load_checkpoint_safely`), so a crafted checkpoint cannot run code. The
    graph's metadata holds the facts of this export only (under ``"t1c_export"``: the
    checkpoint's name, epoch and global step, the source graph's content hash and, with
    integer weights, their width); nothing is carried over from the source graph's
    metadata, which describes another file.

    Args:
        checkpoint: a ``.ckpt`` written while training a :class:`~t1c.lightning.T1CModule`.
        integer_weight_bits: when set, attach the integer weights and scales of the
            quantized simulation at this many bits.

    Raises:
        CommandError: the checkpoint cannot be loaded safely, is not a T1CModule's, or the
            export changed topology.
    """
    from .lightning import T1CModule
    from .lightning.checkpoints import METADATA_KEY, export_metadata, safe_checkpoint_globals
    from .lightning.module import CKPT_GRAPH_KEY

    checkpoint = Path(checkpoint)
    try:
        data = checkpoint.read_bytes()
    except OSError as err:
        raise CommandError(f"checkpoint '{checkpoint}' cannot be read ({err.strerror or err})") from None
    saved = load_checkpoint_safely(data, checkpoint)
    blob = saved.get(CKPT_GRAPH_KEY) if isinstance(saved, dict) else None
    if blob is None:
        raise CommandError(
            f"'{checkpoint}' could not be loaded as a T1CModule checkpoint (it holds no source graph "
            f"under '{CKPT_GRAPH_KEY}'; was it saved while training a T1CModule?)"
        )
    try:  # the source graph travels inside the checkpoint: no .t1c file is needed
        with safe_checkpoint_globals():
            module = T1CModule.load_from_checkpoint(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise CommandError(
            f"'{checkpoint}' could not be loaded as a T1CModule checkpoint ({type(err).__name__}: {_one_line(err)})"
        ) from None
    module.eval()
    graph = module.export_graph()
    diffs = ir.topology_diff(module.source_graph, graph)
    if diffs:
        raise CommandError("the export does not keep the source graph's topology:\n  " + "\n  ".join(diffs))
    if integer_weight_bits is not None:
        from .bridge.quantize import attach_integer_weights

        graph = attach_integer_weights(graph, weight_bits=integer_weight_bits)
    integer = integer_weight_bits is not None
    facts = export_metadata(
        exported_by="t1c export",
        checkpoint=checkpoint.name,
        epoch=_int_or(saved.get("epoch"), -1),
        global_step=_int_or(saved.get("global_step"), -1),
        source_hash=module.source_graph.content_hash(),
        integer_weights=True if integer else None,
        weight_bits=integer_weight_bits,
        accumulator_bits=32 if integer else None,
    )
    metadata = {"producer": "t1c", "producer_version": __version__, METADATA_KEY: facts}
    return ir.Graph(graph.nodes, graph.edges, metadata, allow_cycles=graph.allow_cycles)


def _int_or(value: Any, default: int) -> int:
    """``value`` as an int when it is an integer number (a checkpoint's epoch), else ``default``."""
    try:
        return int(value) if not isinstance(value, bool) and int(value) == value else default
    except (TypeError, ValueError):
        return default


# -- fit: LightningCLI ---------------------------------------------------------------------
def run_fit(args: Sequence[str]) -> int:
    """``t1c fit ...``: LightningCLI over :class:`~t1c.lightning.T1CModule`.

    The data module is chosen by class path (``data.class_path:
    t1c.lightning.DigitsDataModule`` or ``t1c.lightning.TensorDataModule``, or any
    LightningDataModule); callbacks such as ``t1c.lightning.T1CExport`` go in
    ``trainer.callbacks``. Lightning's progress bar is on only when stdout is a terminal
    (a log file or a CI console gets no progress-bar flood); ``--trainer.enable_progress_bar``
    decides otherwise.
    """
    cli = make_cli(["fit", *args], trainer_defaults={"enable_progress_bar": sys.stdout.isatty()})
    if cli.trainer.is_global_zero:
        print(fit_summary(cli.trainer))
    return EXIT_OK


def fit_summary(trainer: Any) -> str:
    """Where a fit's files went: logs, checkpoints, each export folder's `.t1c` files and
    manifest, and the float vs quantized accuracy table of each manifest (:mod:`t1c.report`).

    Args:
        trainer: the Lightning ``Trainer`` after ``fit``.
    """
    from .lightning import T1CExport
    from .lightning.manifest import MANIFEST_NAME
    from .report import accuracy_table, manifest_rows

    lines = [""]
    if trainer.loggers:
        lines.append(f"logs: {_shown(trainer.log_dir)}")
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "dirpath", None):
            lines.append(f"checkpoints: {_shown(callback.dirpath)}")
    exports = [c for c in trainer.callbacks if isinstance(c, T1CExport)]
    if not exports:
        lines.append(
            "no .t1c files: add t1c.lightning.T1CExport to trainer.callbacks to export at every checkpoint"
        )
    for export in exports:
        folders = sorted({os.path.dirname(path) for path in export.entries})
        if not folders:
            lines.append("no .t1c files: no checkpoint was saved")
        for folder in folders:
            manifest = Path(folder, MANIFEST_NAME)
            if not manifest.is_file():
                continue
            rows = manifest_rows(manifest)
            lines.append(f".t1c files (one per checkpoint) and their manifest: {_shown(folder)}")
            lines += [f"  {_shown(row.t1c)}" for row in rows] + [f"  {_shown(manifest)}", ""]
            lines.append(accuracy_table(rows, weight_bits=export.weight_bits))
    return "\n".join(lines)


def _shown(path: str | os.PathLike) -> str:
    """``path`` relative to the working folder when it lies inside it, else as it is."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else os.fspath(path)


def loggers_follow_root_dir(trainer_config: Any, command_line: Sequence[str]) -> None:
    """Make ``--trainer.default_root_dir`` given on the command line win over a config's
    logger folders: each logger's ``save_dir`` (``init_args.save_dir``) becomes that folder.

    Without this, a YAML file that names its logger's ``save_dir`` (as ``configs/*.yaml``
    do) would keep the logs, and the checkpoints and exports that follow them, in the
    YAML's folder. A ``save_dir`` also given on the command line is left as given.

    Args:
        trainer_config: the parsed ``trainer`` section (a jsonargparse ``Namespace``), changed in place.
        command_line: the arguments ``t1c fit`` was given.
    """
    if not any(a.split("=")[0] == "--trainer.default_root_dir" for a in command_line):
        return
    if any(a.startswith("--trainer.logger") and "save_dir" in a for a in command_line):
        return
    loggers = trainer_config.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and "save_dir" in init_args:
            init_args.save_dir = trainer_config.default_root_dir


def make_cli(args: Sequence[str], **kwargs: Any):
    """Build (and run) the LightningCLI that ``t1c fit`` uses.

    Args:
        args: LightningCLI arguments; they start with the subcommand (``fit``) unless
            ``run=False`` is passed, which parses and instantiates without a subcommand.
        kwargs: passed on to ``LightningCLI``; they win over t1c's defaults.
    """
    from lightning.pytorch import LightningDataModule
    from lightning.pytorch.cli import LightningCLI

    from .lightning import T1CModule

    class T1CLightningCLI(LightningCLI):
        """LightningCLI that parses the arguments it is given, and only those.

        ``t1c fit`` always passes its arguments explicitly, so Lightning's warning about
        ``args`` given next to ``sys.argv`` would fire on every run; it does not apply.
        A ``--trainer.default_root_dir`` on the command line moves the loggers' folders too
        (:func:`loggers_follow_root_dir`).
        """

        def parse_arguments(self, parser, args) -> None:
            self.config = parser.parse_args(args)
            trainer_config = self.config.get("fit", self.config).get("trainer")
            loggers_follow_root_dir(trainer_config, args)

    options: dict[str, Any] = {
        "subclass_mode_data": True,
        "save_config_kwargs": {"overwrite": True},
        "auto_configure_optimizers": False,
    }
    options.update(kwargs)
    return T1CLightningCLI(T1CModule, LightningDataModule, args=list(args), **options)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
