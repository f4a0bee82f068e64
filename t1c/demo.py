"""``make demo``: a digits SNN, from snnTorch to `.t1c` and back through Lightning.

1. Build the source graph if it is missing (``demo_runs/digits_snn.t1c``): an snnTorch
   network 64-128-10 with two ``snn.Leaky`` layers, pretrained for a few seconds in plain
   PyTorch on scikit-learn's bundled 8x8 digits (no download), exported with
   :func:`t1c.bridge.to_ir`.
2. Fine-tune that file with :class:`~t1c.lightning.T1CModule` and a Lightning ``Trainer``
   whose :class:`~t1c.lightning.T1CExport` writes a `.t1c` beside every checkpoint and
   measures it in float and in the 8-bit quantized simulation.
3. Print where the files are and a float vs quantized accuracy table per checkpoint.

On a terminal Lightning shows its progress bar; when stdout is a file or a pipe
(``make demo > log``, CI) each epoch is one plain line instead (:class:`EpochLines`).
Lightning's advertisement for its cloud logger and the deprecation warning torch raises
inside Lightning's pytree helper are left out while the demo trains (:func:`quiet_lightning`).

The source `.t1c` is cached: a second run fine-tunes the same file. ``--rebuild``
(``make demo ARGS=--rebuild``) pretrains and writes it again.

``recipes/digits_snn.py`` does the same with every Lightning object written out, as a
template to copy; it needs nothing from this module. Both print the table of
:mod:`t1c.report`. Run ``python -m t1c.demo --help`` for the knobs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import snntorch as snn
import torch
from lightning.pytorch import Callback
from torch import nn

from . import ir
from .report import ExportRow, accuracy_table, manifest_rows

DEFAULT_DIR = Path("demo_runs")
SOURCE_NAME = "digits_snn.t1c"
# Defaults measured on a loaded 2-core CPU: see the README and the project report.
HIDDEN = 128
BETA = 0.9
NUM_STEPS = 25
PRETRAIN_EPOCHS = 10
PRETRAIN_LR = 5e-3
FINETUNE_EPOCHS = 5
FINETUNE_LR = 1e-3
WEIGHT_BITS = 8  # the quantized simulation T1CExport measures and the table shows
BATCH_SIZE = 64
SEED = 0

Log = Callable[[str], None]

#: The loggers Lightning's ``rank_zero_info`` writes to (pytorch's, or fabric's when only it is loaded).
LIGHTNING_INFO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
#: How Lightning's advertisements start ("💡 Tip: For seamless cloud logging ... litlogger").
LIGHTNING_TIP = "💡 Tip:"
#: The FutureWarning torch raises whenever Lightning's own pytree helper builds a ``LeafSpec``.
PYTREE_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


# -- the snnTorch network and its plain-PyTorch pretraining --------------------------------
def build_digits_snn(hidden: int = HIDDEN, beta: float = BETA, *, seed: int = SEED) -> nn.Sequential:
    """64 pixels -> ``hidden`` LIF -> 10 LIF, in snnTorch's ``init_hidden`` style.

    ``nn.Sequential`` is a chain by construction, so the export needs no tracing; its
    children's names (``fc1``, ``lif1``, ...) become the node names.
    """
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(64, hidden),
            lif1=snn.Leaky(beta=beta, init_hidden=True),
            fc2=nn.Linear(hidden, 10),
            lif2=snn.Leaky(beta=beta, init_hidden=True),
        )
    )


def reset_neurons(model: nn.Module) -> None:
    """Zero the hidden membrane of every ``snn.Leaky`` in ``model`` (this model only).

    ``snntorch.utils.reset`` resets class-wide; this touches only ``model``'s neurons.
    """
    for module in model.modules():
        if isinstance(module, snn.Leaky):
            module.reset_mem()


def spike_counts(model: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    """Run ``model`` over ``xs`` ``[T, B, ...]`` from a zero state; output spikes summed over T."""
    reset_neurons(model)
    total = None
    for x in xs:
        out = model(x)
        spk = out[0] if isinstance(out, tuple) else out
        total = spk if total is None else total + spk
    return total


def rate_encode(x: torch.Tensor, num_steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bernoulli spikes with probability = pixel intensity, ``[T, B, ...]``.

    The same encoding as :class:`~t1c.lightning.T1CModule`'s default ``encoding="rate"``,
    so pretraining and fine-tuning see the same kind of input.
    """
    from .lightning.encoding import encode

    return encode(x, num_steps, encoding="rate", generator=generator)


def pretrain(
    model: nn.Module,
    loader: Iterable,
    *,
    epochs: int = PRETRAIN_EPOCHS,
    num_steps: int = NUM_STEPS,
    lr: float = PRETRAIN_LR,
    seed: int = SEED,
) -> None:
    """Train ``model`` in plain PyTorch: cross-entropy on output spike counts.

    Args:
        model: maps one time step ``[B, 64]`` to output spikes ``[B, 10]``.
        loader: batches of ``(pixels in [0, 1], labels)``.
        epochs: passes over ``loader``.
        num_steps: time steps per sample.
        lr: Adam's learning rate.
        seed: seeds the spike encoding, so a run is repeatable.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = nn.functional.cross_entropy(spike_counts(model, rate_encode(x, num_steps, gen)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    reset_neurons(model)


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable, *, num_steps: int = NUM_STEPS, seed: int = SEED) -> float:
    """Share of samples whose most-spiking output is the label."""
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    right = total = 0
    for x, y in loader:
        pred = spike_counts(model, rate_encode(x, num_steps, gen)).argmax(1)
        right += int((pred == y).sum())
        total += len(y)
    reset_neurons(model)
    model.train(was_training)
    return right / max(total, 1)


def digits_data(batch_size: int = BATCH_SIZE, seed: int = SEED):
    """The built-in digits DataModule, set up: the split fine-tuning uses too."""
    from .lightning import DigitsDataModule

    dm = DigitsDataModule(batch_size=batch_size, seed=seed)
    dm.setup("fit")
    return dm


def export_model(model: nn.Module, path: str | Path, sample: torch.Tensor, **to_ir_kwargs: Any) -> ir.Graph:
    """``to_ir`` + ``ir.write``; returns the graph written."""
    from .bridge import to_ir

    reset_neurons(model)
    graph = to_ir(model, sample, **to_ir_kwargs)
    reset_neurons(model)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ir.write(path, graph)
    return graph


def prepare_source(
    path: str | Path,
    *,
    hidden: int = HIDDEN,
    epochs: int = PRETRAIN_EPOCHS,
    num_steps: int = NUM_STEPS,
    lr: float = PRETRAIN_LR,
    seed: int = SEED,
    force: bool = False,
    log: Log = print,
) -> Path:
    """The digits source `.t1c` at ``path``, built (pretrain + export) only if missing.

    Args:
        path: where the `.t1c` lives.
        hidden: hidden layer size.
        epochs: pretraining epochs (0: export the untrained network).
        num_steps: time steps per sample while pretraining.
        lr: pretraining learning rate.
        seed: weights, split and encoding seed.
        force: rebuild even if the file exists.
        log: where progress lines go.
    """
    path = Path(path)
    if path.is_file() and not force:
        log(f"source graph: {path} (exists; pass --rebuild, or make demo ARGS=--rebuild, to build it again)")
        return path
    start = time.perf_counter()
    model = build_digits_snn(hidden, seed=seed)
    dm = digits_data(seed=seed)
    pretrain(model, dm.train_dataloader(), epochs=epochs, num_steps=num_steps, lr=lr, seed=seed)
    acc = accuracy(model, dm.val_dataloader(), num_steps=num_steps, seed=seed)
    export_model(model, path, torch.zeros(1, 64))
    log(
        f"source graph: {path} (snnTorch 64-{hidden}-10, pretrained {epochs} epochs in "
        f"{time.perf_counter() - start:.1f} s, validation accuracy {acc:.3f})"
    )
    return path


# -- fine-tuning through Lightning ---------------------------------------------------------
def finetune(
    source: str | Path,
    out_dir: str | Path,
    *,
    max_epochs: int = FINETUNE_EPOCHS,
    num_steps: int = NUM_STEPS,
    lr: float = FINETUNE_LR,
    batch_size: int = BATCH_SIZE,
    seed: int = SEED,
    progress: bool = True,
    trainer_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Fine-tune ``source`` with T1CModule; a `.t1c` is exported at every checkpoint.

    A checkpoint is saved every epoch (all kept) in ``out_dir/checkpoints``, each with
    its `.t1c` and a manifest entry.

    Args:
        source: the `.t1c` graph to fine-tune.
        out_dir: where checkpoints, `.t1c` files and the manifest go.
        max_epochs: fine-tuning epochs (one checkpoint each).
        num_steps: time steps per sample.
        lr: learning rate.
        batch_size: digits batch size.
        seed: seeds Lightning, the split and the encoding.
        progress: show Lightning's progress bar; otherwise one plain line per epoch
            (:class:`EpochLines`), as a log file or a CI console wants.
        trainer_kwargs: more ``Trainer`` arguments (they win over the defaults).

    Returns:
        The path of the manifest ``t1c_exports.json``.
    """
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.callbacks import ModelCheckpoint

    from .lightning import T1CExport, T1CModule

    seed_everything(seed, verbose=False)
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    clear_exports(ckpt_dir)
    model = T1CModule(str(source), num_steps=num_steps, lr=lr)
    options: dict[str, Any] = {
        "max_epochs": max_epochs,
        "default_root_dir": str(out_dir),
        "logger": False,
        "enable_progress_bar": progress,
        "enable_model_summary": False,
        "callbacks": [
            ModelCheckpoint(dirpath=str(ckpt_dir), save_top_k=-1, save_last=True),
            T1CExport(weight_bits=WEIGHT_BITS),
            *([] if progress else [EpochLines()]),
        ],
        "deterministic": True,
        "log_every_n_steps": 10,
    }
    options.update(trainer_kwargs or {})
    with quiet_lightning():
        trainer = Trainer(**options)
        trainer.fit(model, digits_data(batch_size=batch_size, seed=seed))
    return ckpt_dir / "t1c_exports.json"


def _not_a_tip(record: logging.LogRecord) -> bool:
    """A logging filter: False for Lightning's tip lines."""
    return not record.getMessage().startswith(LIGHTNING_TIP)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Inside the block, leave out what the demo's user did not ask for and cannot act on:
    Lightning's tip lines (:data:`LIGHTNING_TIP`) and torch's deprecation warning about
    Lightning's pytree helper (:data:`PYTREE_WARNING`). Every other log line and warning
    is kept, and both filters are removed when the block ends.
    """
    loggers = [logging.getLogger(name) for name in LIGHTNING_INFO_LOGGERS]
    for logger in loggers:
        logger.addFilter(_not_a_tip)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PYTREE_WARNING, category=FutureWarning)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(_not_a_tip)


class EpochLines(Callback):
    """Instead of a progress bar: one plain line per epoch (for logs and pipes).

    Example line: ``epoch 2: train_acc 0.912  train_loss 0.512  val_acc 0.956  val_loss 0.431``
    (epoch means of what the module logs; the export callback's ``t1c/*`` metrics are in the
    table at the end).
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        metrics: dict[str, float] = {}
        for name, value in sorted(trainer.callback_metrics.items()):
            if "/" in name or name.endswith("_step") or value.numel() != 1:
                continue
            metrics[name.removesuffix("_epoch")] = float(value)
        shown = "  ".join(f"{name} {value:.3f}" for name, value in metrics.items())
        print(f"epoch {trainer.current_epoch}: {shown}", flush=True)


def finetune_from_args(source: str | Path, args: argparse.Namespace) -> list[ExportRow]:
    """:func:`finetune` driven by the demo's flags (:func:`build_parser`); prints the
    float/quantized table of the exports and returns its rows."""
    limits = {
        key: value
        for key in ("limit_train_batches", "limit_val_batches")
        if (value := getattr(args, key)) is not None
    }
    start = time.perf_counter()
    manifest = finetune(
        source,
        args.out / "fit",
        max_epochs=args.max_epochs,
        num_steps=args.num_steps,
        lr=args.lr,
        progress=not args.no_progress and sys.stdout.isatty(),
        trainer_kwargs=limits,
    )
    seconds = time.perf_counter() - start
    rows = manifest_rows(manifest)
    print()
    print(f"fine-tuned {source} for {args.max_epochs} epoch(s) in {seconds:.1f} s")
    print(f".t1c files (one per checkpoint) and the manifest: {manifest.parent}/")
    for row in rows:
        print(f"  {row.t1c}")
    print(f"  {manifest}")
    print()
    print(accuracy_table(rows, weight_bits=WEIGHT_BITS))
    return rows


def clear_exports(folder: Path) -> None:
    """Remove an earlier run's checkpoints, `.t1c` files and manifest from ``folder``.

    A re-run then shows only its own exports (``T1CExport`` would otherwise merge the old
    manifest, as it does on resume). Only those three kinds of files are touched.
    """
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file() and (path.suffix in (".ckpt", ".t1c") or path.name == "t1c_exports.json"):
            path.unlink()


# -- the command ---------------------------------------------------------------------------
def batch_limit(text: str) -> int | float:
    """A Trainer ``limit_*_batches`` value: ``"2"`` is two batches, ``"0.25"`` a quarter.

    Lightning reads the float ``1.0`` as "all batches", so whole numbers stay ints.
    """
    try:
        return int(text)
    except ValueError:
        return float(text)


def build_parser() -> argparse.ArgumentParser:
    """The demo's flags; the small ones (``--hidden``, ``--limit-*-batches``...) let tests run it tiny."""
    parser = argparse.ArgumentParser(
        prog="python -m t1c.demo",
        description="Build a digits SNN .t1c (if missing), fine-tune it with Lightning and "
        "export a .t1c at every checkpoint.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="output folder (default: %(default)s)")
    parser.add_argument(
        "--max-epochs", type=int, default=FINETUNE_EPOCHS, help="fine-tuning epochs (0: only build the .t1c)"
    )
    parser.add_argument("--pretrain-epochs", type=int, default=PRETRAIN_EPOCHS, help="plain PyTorch epochs")
    parser.add_argument("--hidden", type=int, default=HIDDEN, help="hidden neurons")
    parser.add_argument("--num-steps", type=int, default=NUM_STEPS, help="time steps per sample")
    parser.add_argument("--lr", type=float, default=FINETUNE_LR, help="fine-tuning learning rate")
    for split in ("train", "val"):
        parser.add_argument(
            f"--limit-{split}-batches", type=batch_limit, default=None, help="Trainer limit (quick runs)"
        )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (small nets: 1 is fastest)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="pretrain and write the cached source .t1c again even if it exists (make demo ARGS=--rebuild)",
    )
    parser.add_argument("--prepare-only", action="store_true", help="only build the source .t1c")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    args = build_parser().parse_args(argv)
    # The network is small: one thread beats several that wait on each other (and on
    # whatever else the machine runs) for every little matrix product.
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    source = prepare_source(
        args.out / SOURCE_NAME,
        hidden=args.hidden,
        epochs=args.pretrain_epochs,
        num_steps=args.num_steps,
        force=args.rebuild,
    )
    if args.prepare_only:
        return 0
    rows = finetune_from_args(source, args)
    print()
    print(f"look inside one:  t1c inspect {rows[-1].t1c if rows else source}")
    print(f"check topology:   t1c verify {source} {rows[-1].t1c if rows else source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
