"""One export: build the graph of a module's weights, verify and measure it, write it and read it back.

:class:`Exporter` turns a LightningModule into a verified, measured :class:`Pending` export
(``T1CModule.export_graph()``, else :func:`t1c.bridge.to_ir` on a copy of the wrapped model
with an export sample), and writes a pending export atomically, reading the file back to
check that it holds exactly the graph that was measured. It decides nothing about *when* or
*under which name*: the callback's hooks decide that, and the ledger keeps what was written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn

from t1c import ir

from .batches import LAYOUT_WORDS, example_input, first_batch, layout_of, one_step, to_device
from .checkpoints import METADATA_KEY, checkpoint_weights, export_metadata
from .measure import Measurement, PreparedMeasurement, copy_module
from .naming import scalar_metrics
from .rates import harm_message, layer_rates, quantization_harm
from .records import is_t1c_module
from .scoring import GAP_NAME, METRIC_PREFIX
from .streaming import Streams


class T1CExportError(RuntimeError):
    """An export failed a check the user asked for (topology, quantization gap)."""


@dataclass
class Pending:
    """A graph exported at one global step, waiting for the checkpoint paths of that step."""

    step: int
    epoch: int
    graph: ir.Graph
    metrics: dict[str, float]
    content_hash: str
    source_hash: str | None
    measured: dict[str, float] = field(default_factory=dict)  # this export's t1c/* figures


@dataclass(frozen=True)
class Snapshot:
    """What one export needs, taken at its checkpoint: the graph (copies of the weights, topology
    verified), its reference, the Trainer's metrics of those weights and the prepared measurement."""

    step: int
    epoch: int
    graph: ir.Graph
    reference: ir.Graph | None
    metrics: dict[str, float]
    live: bool
    measurement: PreparedMeasurement


#: Runs a job off the training thread, in the order submitted (:class:`t1c.lightning.background.Worker`).
Submit = Callable[[Callable[[], Any]], Future]


class Exporter:
    """Builds, verifies, measures and writes the exports of one callback.

    Args:
        verify: ``"raise"``, ``"warn"`` or ``"off"``: what a topology difference does.
        integer_weights: store the quantized simulation's integers in each file.
        module_attr: the attribute of a plain LightningModule holding its model (None: found).
        export_kwargs: keyword arguments for :func:`t1c.bridge.to_ir`.
        sample: the export sample given by the user, or None.
        gap: ``(max_quant_gap, on_quant_gap)``.
        measurement: measures each export (its bits are the quantization's).
        reference_files: the written exports a reference graph may be read back from, first first.
    """

    def __init__(
        self,
        *,
        verify: str,
        integer_weights: bool,
        module_attr: str | None,
        export_kwargs: Mapping[str, Any],
        sample: torch.Tensor | None,
        gap: tuple[float | None, str],
        measurement: Measurement,
        reference_files: Callable[[], list[str]],
    ) -> None:
        self.verify, self.integer_weights = verify, integer_weights
        self.module_attr, self.export_kwargs, self.sample = module_attr, export_kwargs, sample
        self.gap, self.measurement, self.reference_files = gap, measurement, reference_files
        self.pending: dict[int, Pending] = {}  # global step -> its export, waiting for its paths
        self.submitted: set[int] = set()  # global steps whose export was submitted to run in the background
        self.finished: list[Pending] = []  # exports whose figures are not logged yet
        self.reference: ir.Graph | None = None
        self.reference_hash: tuple[ir.Graph, str] | None = None  # a reference and its content hash
        self.layout: str | None = None  # "t1c", "static", "BT" or "TB": how the batches hold time
        self.seen_sample: Any = None  # taken from the first training batch
        self.seen_sample_source = ""
        #: runs the costly calls (measuring, writing, reading back) elsewhere (a worker
        #: process's ``call``); None: here
        self.remote: Callable[..., Any] | None = None
        self.streams = Streams(measurement)  # the next export's measurement, fed while validation runs

    def prepare(
        self, trainer: Trainer, pl_module: LightningModule, submit: Submit | None = None
    ) -> Pending | None:
        """Export, verify and measure the in-memory model once per global step.

        ``submit``: runs the rest of the export (:meth:`finish`) off the training thread; the
        export then lands in :attr:`pending` (and :attr:`finished`) when done, and None is
        returned. Callers hold
        :func:`rng_preserved`: building evaluation modules and encoding inputs draw random
        numbers, and training must continue with the stream it would have had.
        """
        step = trainer.global_step
        if self.prepared(step):
            return self.pending.get(step)
        snapshot = self.snapshot(trainer, pl_module, step, trainer.current_epoch, live=True)
        records = self.measurement.records
        if records.step == step:  # measured (the snapshot keeps them): free their memory
            records.free()
        if submit is not None:
            self.submitted.add(step)
            submit(lambda: self.finish(snapshot))
            return None
        return self.finish(snapshot)

    def prepared(self, step: int) -> bool:
        """Whether the export of ``step`` is done or submitted (one export per global step)."""
        return step in self.pending or step in self.submitted

    def build(
        self, trainer: Trainer, pl_module: LightningModule, step: int, epoch: int, live: bool
    ) -> Pending:
        """Export, verify and measure ``pl_module``'s current weights as the export of ``step``
        (:meth:`snapshot`, then :meth:`finish`)."""
        return self.finish(self.snapshot(trainer, pl_module, step, epoch, live))

    def snapshot(
        self, trainer: Trainer, pl_module: LightningModule, step: int, epoch: int, live: bool
    ) -> Snapshot:
        """Export and verify ``pl_module``'s current weights as the export of ``step``, with what
        measuring it needs, on the training thread (the graph holds copies of the weights); a
        measurement that reads the live module or the data is run here, so that the snapshot
        reads nothing training changes and may be finished on any thread.

        ``live``: the weights are the training model's now, so the Trainer's metrics describe
        them; otherwise they were loaded from a checkpoint file and only what is measured
        goes into the metadata. A live export whose graph the stream opened at this step's
        validation measured (:class:`~t1c.lightning.streaming.Streams`) takes that stream's
        graph and figures instead of preparing a measurement.
        """
        graph, reference = self.export_verified(pl_module, f"epoch {epoch}, step {step}")
        streamed = self.streams.take(trainer, step, graph) if live else None
        first = reference is graph
        graph = self.with_integers(graph) if streamed is None else streamed[0]
        if first:  # the first export is the reference: as it ships
            self.reference = reference = graph
        metrics: dict[str, float] = {}
        if live:
            metrics = scalar_metrics(
                {k: v for k, v in trainer.callback_metrics.items() if not k.startswith(METRIC_PREFIX)}
            )
            metrics = trainer.strategy.broadcast(metrics)
        if streamed is not None:
            return Snapshot(step, epoch, graph, reference, metrics, live, streamed[1])
        measurement = self.measurement.prepare(trainer, pl_module, graph, self.layout)
        if not measurement.detached:  # it reads the live module or the data: measured now
            figures = measurement.run()
            measurement = PreparedMeasurement(lambda: figures, True)
        return Snapshot(step, epoch, graph, reference, metrics, live, measurement)

    def finish(self, snapshot: Snapshot) -> Pending:
        """Measure and check a snapshot, and fill its metadata: the export as it ships, kept in
        :attr:`pending` and :attr:`finished` (its figures are logged by the callback).

        Raises:
            T1CExportError: a check the user asked for failed (self-check, quantization gap).
        """
        step, epoch, graph, reference = snapshot.step, snapshot.epoch, snapshot.graph, snapshot.reference
        run = snapshot.measurement.run
        portable = self.remote is not None and getattr(run, "portable", False)
        measured = self.remote(run) if portable else run()
        self.check_forward()
        metrics = {**snapshot.metrics, **measured}
        check_gap(measured, *self.gap, self.measurement.weight_bits, f"epoch {epoch}, step {step}")
        check_rates(measured, self.measurement.weight_bits, f"epoch {epoch}, step {step}")
        content_hash = graph.content_hash()  # metadata is not hashed: set below freely
        source_hash = content_hash if reference is None or reference is graph else self.hash_of(reference)
        claimed = self.integer_weights or measured  # only what was written or measured is claimed
        weights = (
            "live model at the checkpoint's save" if snapshot.live else "loaded from the checkpoint file"
        )
        graph.metadata[METADATA_KEY] = export_metadata(
            epoch=epoch,
            global_step=step,
            metrics=metrics,
            source_hash=source_hash,
            weights=weights,
            integer_weights=self.integer_weights,
            weight_bits=self.measurement.weight_bits if claimed else None,
            accumulator_bits=self.measurement.accumulator_bits if claimed else None,
        )
        pending = Pending(step, epoch, graph, metrics, content_hash, source_hash, measured)
        if snapshot.live:
            self.pending[step] = pending
        self.finished.append(pending)
        return pending

    def take_finished(self) -> list[Pending]:
        """The exports finished since the last call, oldest first (their figures are to be logged)."""
        taken = []
        while self.finished:  # the worker may append meanwhile: pop, never replace the list
            taken.append(self.finished.pop(0))
        return taken

    def forget_fit(self) -> None:
        """Forget this fit's exports waiting for their paths or submitted, and its stream (the fit
        ended or failed; a stream in the worker process ends with it)."""
        self.pending.clear()
        self.submitted.clear()
        self.streams.forget()

    def open_stream(self, trainer: Trainer, pl_module: LightningModule, submit: Submit) -> None:
        """At the start of the validation of a module that validates like a T1CModule
        (:func:`~t1c.lightning.records.validates_like_t1c_module`, which the caller checked):
        export the weights it runs with and open their measurement where the export's work runs
        (``submit``: the worker's jobs; :class:`~t1c.lightning.streaming.Streams`). Callers hold
        :func:`rng_preserved`.

        Anything that fails here is left for the export at the checkpoint to meet and report:
        no stream is opened.
        """
        self.streams.drop()
        if self.measurement.no_metrics_reason is not None:
            return
        try:
            source = self.export_graph(pl_module)
            graph = self.with_integers(source)
        except Exception:  # the export at the checkpoint does it again, and raises
            return
        remote = self.remote if pl_module.device.type == "cpu" else None
        self.streams.open(trainer, pl_module, (source, graph), submit, remote)

    def forget_before(self, step: int) -> None:
        """Drop the pending exports of steps before ``step``: every save of them has been resolved."""
        self.pending = {s: p for s, p in self.pending.items() if s >= step}
        self.submitted = {s for s in self.submitted if s >= step}

    def build_from_file(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: str
    ) -> Pending | None:
        """The export of a checkpoint file's own weights (loaded with ``weights_only=True``),
        None (and a warning) when they cannot be loaded or do not fit the module."""
        loaded = checkpoint_weights(checkpoint) if trainer.is_global_zero else None
        loaded = trainer.strategy.broadcast(loaded)
        if isinstance(loaded, str) or loaded is None:
            rank_zero_warn(f"T1CExport: {checkpoint} has no .t1c and its weights {loaded}; skipped")
            return None
        state, step, epoch = loaded
        try:
            with rng_preserved(pl_module), weights_loaded(pl_module, state):
                return self.build(trainer, pl_module, step, epoch, live=False)
        except RuntimeError as err:
            if isinstance(err, T1CExportError):
                raise
            rank_zero_warn(
                f"T1CExport: the weights of {checkpoint} do not fit {type(pl_module).__name__} "
                f"({str(err).splitlines()[0]}); it gets no .t1c"
            )
            return None

    def check_forward(self) -> None:
        """Act on the measurement's self-check: the float graph does not predict what a plain
        module's forward predicts. ``verify="raise"``: stop with the message; else warn (once).

        Raises:
            T1CExportError: the self-check failed and ``verify`` is ``"raise"``.
        """
        message, self.measurement.mismatch = self.measurement.mismatch, None
        if message is None:
            return
        if self.verify == "raise":
            raise T1CExportError(f"{message}; or pass T1CExport(verify='warn') to train on without them")
        rank_zero_warn(message)

    def hash_of(self, reference: ir.Graph) -> str:
        """``reference.content_hash()``, computed once per reference graph (it is not changed)."""
        if self.reference_hash is None or self.reference_hash[0] is not reference:
            self.reference_hash = (reference, reference.content_hash())
        return self.reference_hash[1]

    def dry_run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Export and verify once before training, so a model that cannot be exported fails in seconds."""
        if not is_t1c_module(pl_module) and self.layout is None:
            batch = first_batch(trainer)
            if batch is not None:
                self.observe_batch(batch, pl_module)
        if is_t1c_module(pl_module) and self.measurement.feed.given:
            rank_zero_warn(
                f"T1CExport(encoder=..., num_steps=..., readout=...) is ignored for {type(pl_module).__name__}: "
                "its own encode() and logits() feed and read the exported graph"
            )
        graph, reference = self.export_verified(pl_module, "fit start (dry run)")
        if reference is graph:  # the first written export is the reference, not the untrained weights
            self.reference = None
        self.with_integers(graph)

    def export_verified(self, pl_module: LightningModule, when: str) -> tuple[ir.Graph, ir.Graph | None]:
        """The exported graph and its reference (:meth:`reference_graph`), topology verified."""
        graph = self.export_graph(pl_module)
        reference = self.reference_graph(pl_module, graph)
        if reference is not None and reference is not graph:
            verify_topology(graph, reference, self.verify, when)
        return graph, reference

    def with_integers(self, graph: ir.Graph) -> ir.Graph:
        """``graph`` with its exact integers attached when ``integer_weights`` (a copy), else itself."""
        if not self.integer_weights:
            return graph
        from t1c.bridge.quantize import attach_integer_weights

        return attach_integer_weights(graph, self.measurement.weight_bits, self.measurement.accumulator_bits)

    def observe_batch(self, batch: Any, pl_module: LightningModule) -> None:
        """Learn from a training batch how it holds time, and take an export sample from it."""
        if is_t1c_module(pl_module):
            self.layout = "t1c"
            return
        x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
        if not isinstance(x, torch.Tensor):
            return
        y = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        size = int(y.shape[0]) if isinstance(y, torch.Tensor) and y.ndim >= 1 else None
        try:
            model = find_model(pl_module, self.module_attr)
        except T1CExportError:
            model = None
        self.layout = layout_of(x, model, size)
        self.seen_sample = one_step(x.detach(), self.layout).clone()
        self.seen_sample_source = (
            f"the first training batch (input {list(x.shape)}, {LAYOUT_WORDS[self.layout]})"
        )

    def sample_for(self, pl_module: LightningModule, model: nn.Module) -> tuple[Any, str]:
        """The export sample of a plain module (``model``: the module exported) and where it came from."""
        if self.sample is not None:
            return self.sample, "T1CExport(sample=...)"
        example = example_input(pl_module)
        if isinstance(example, torch.Tensor):
            layout = self.layout if self.layout in ("BT", "TB") else layout_of(example, model, None)
            return one_step(example, layout), f"example_input_array {list(example.shape)}"
        if example is not None:
            return example, "example_input_array"
        return self.seen_sample, self.seen_sample_source

    def export_graph(self, pl_module: LightningModule) -> ir.Graph:
        """``T1CModule.export_graph()``, else ``to_ir`` on a copy of the wrapped model."""
        if is_t1c_module(pl_module):
            return pl_module.export_graph()
        from t1c.bridge import ExportError, to_ir

        model = find_model(pl_module, self.module_attr)
        sample, source = self.sample_for(pl_module, model)
        if sample is None and self.layout is None:  # e.g. a resume with no training left
            batch = first_batch(pl_module.trainer)
            if batch is not None:
                self.observe_batch(batch, pl_module)
                sample, source = self.sample_for(pl_module, model)
        if sample is None:
            raise T1CExportError(
                f"T1CExport cannot export {type(pl_module).__name__}: it has no `example_input_array` and no "
                "training batch was seen yet; set `self.example_input_array` in its __init__ or pass "
                "T1CExport(sample=torch.zeros(1, *input_shape))"
            )
        twin = copy_module(model).eval()
        device = next((p.device for p in twin.parameters()), torch.device("cpu"))
        try:
            with torch.no_grad():
                return to_ir(twin, to_device(sample, device), **self.export_kwargs)
        except ExportError as err:
            shape = list(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
            raise ExportError(
                f"T1CExport cannot export {type(pl_module).__name__}'s {type(model).__name__} with the sample "
                f"{shape} taken from {source}: {err} -- if that sample is not one time step of one sample "
                "[1, *input_shape], set `example_input_array` on the LightningModule or pass "
                "T1CExport(sample=...); if the model is split across attributes, pass T1CExport(module_attr=...) "
                "naming one module that holds all of it"
            ) from err

    def reference_graph(self, pl_module: LightningModule, graph: ir.Graph) -> ir.Graph | None:
        """``source_graph`` of a T1CModule; else the first export (read back after a resume)."""
        source = getattr(pl_module, "source_graph", None)
        if isinstance(source, ir.Graph):
            return source
        if self.reference is None:
            path = next((p for p in self.reference_files() if os.path.isfile(p)), None)
            self.reference = ir.read(path) if path is not None else graph
        return self.reference

    def write(self, path: str, pending: Pending, checkpoint: str | None) -> None:
        """Write ``pending`` to ``path`` (atomically, fsync'ed) naming ``checkpoint``, then read it back."""
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        name = os.path.relpath(checkpoint, folder) if checkpoint else ""
        pending.graph.metadata[METADATA_KEY]["checkpoint"] = name
        args = (path, pending.graph, pending.content_hash, pending.step)
        if self.remote is None:
            write_checked(*args)
        else:
            self.remote(write_checked, *args)


def write_checked(path: str, graph: ir.Graph, content_hash: str, step: int) -> None:
    """Write ``graph`` to ``path`` (atomically, fsync'ed) and read it back (:func:`check_written`);
    a picklable call, run in the export process when there is one."""
    ir.write(path, graph, fsync=True)
    check_written(path, content_hash, step)


def check_written(path: str, content_hash: str, step: int) -> None:
    """Read the file back: it must hold exactly the graph measured at ``step`` (``content_hash``).

    Raises:
        T1CExportError: the file holds another graph (content hashes differ).
    """
    written = ir.read(path).content_hash()
    if written != content_hash:
        raise T1CExportError(
            f"T1CExport: '{path}' read back differs from the graph measured at step "
            f"{step} (content hash {written[:12]} != {content_hash[:12]})"
        )


def find_model(pl_module: nn.Module, module_attr: str | None) -> nn.Module:
    """The module to export: ``module_attr``, ``model``, ``net``, or the only child with parameters.

    Raises:
        T1CExportError: none of them is an ``nn.Module`` (the message says to pass ``module_attr``).
    """
    if module_attr is not None:
        model = getattr(pl_module, module_attr, None)
        if not isinstance(model, nn.Module):
            raise T1CExportError(
                f"T1CExport(module_attr={module_attr!r}): {type(pl_module).__name__}.{module_attr} "
                f"is {type(model).__name__}, not a torch.nn.Module"
            )
        return model
    for attr in ("model", "net"):
        model = getattr(pl_module, attr, None)
        if isinstance(model, nn.Module):
            return model
    children = [(n, m) for n, m in pl_module.named_children() if any(True for _ in m.parameters())]
    if len(children) == 1:
        return children[0][1]
    names = ", ".join(n for n, _ in children) or "none"
    raise T1CExportError(
        f"T1CExport cannot tell which sub-module of {type(pl_module).__name__} to export (children with "
        f"parameters: {names}); pass T1CExport(module_attr='<attribute name>') naming one module that "
        "holds the whole network"
    )


def verify_topology(graph: ir.Graph, reference: ir.Graph, mode: str, when: str) -> None:
    """Compare ``graph`` with ``reference``: a difference raises (``mode="raise"``) or warns (``"warn"``).

    Raises:
        T1CExportError: the topologies differ and ``mode`` is ``"raise"`` (the readable diff).
    """
    if mode == "off":
        return
    diff = ir.topology_diff(reference, graph)
    if not diff:
        return
    text = (
        f"the graph exported at {when} does not have the topology of the source graph:\n  - "
        + "\n  - ".join(diff)
    )
    if mode == "raise":
        raise T1CExportError(
            f"T1CExport(verify='raise'): {text}\nFix the model (the hardware toolchain compiled the source "
            "topology) or pass T1CExport(verify='warn')"
        )
    rank_zero_warn(f"T1CExport: {text}")


def check_gap(
    metrics: Mapping[str, float], max_quant_gap: float | None, on_quant_gap: str, weight_bits: int, when: str
) -> None:
    """Act on a gap (``t1c/quant_gap``, ``t1c/quant_gap_<metric>``) above ``max_quant_gap``: warn,
    or raise (``on_quant_gap="raise"``).

    Raises:
        T1CExportError: a gap is too large and ``on_quant_gap`` is ``"raise"``.
    """
    if max_quant_gap is None:
        return
    for name, gap in metrics.items():
        if not name.startswith(GAP_NAME) or gap <= max_quant_gap:
            continue
        metric = "accuracy" if name == GAP_NAME else name[len(GAP_NAME) + 1 :]
        text = (
            f"quantized {metric} at {weight_bits} bits is {gap:.4f} below float at {when} "
            f"(max_quant_gap={max_quant_gap})"
        )
        if on_quant_gap == "raise":
            raise T1CExportError(
                f"T1CExport(on_quant_gap='raise'): {text}; train with QAT or raise weight_bits"
            )
        rank_zero_warn(f"T1CExport: {text}")


def check_rates(metrics: Mapping[str, float], weight_bits: int, when: str) -> None:
    """Warn, naming each layer and both rates, when a layer that fires in float is silent or
    saturated after quantization (:func:`t1c.lightning.rates.quantization_harm`)."""
    rates = layer_rates(metrics)
    harmed = quantization_harm(rates)
    if harmed:
        rank_zero_warn(harm_message(harmed, rates, weight_bits, when))


def log_metrics(trainer: Trainer, metrics: Mapping[str, float], step: int) -> None:
    """Log ``metrics`` to every logger at ``step`` (rank zero only)."""
    if not metrics or not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_metrics(dict(metrics), step=step)
        logger.save()


def rng_preserved(pl_module: LightningModule) -> contextlib.AbstractContextManager:
    """Restore the global RNG state (CPU, and the module's GPU) when the block ends."""
    device = pl_module.device
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


@contextlib.contextmanager
def weights_loaded(module: nn.Module, state: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """``module`` holds ``state`` inside the block, its own weights again afterwards (in place)."""
    own = {k: v.detach().clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        module.load_state_dict(state, strict=True)
    try:
        yield
    finally:
        with torch.no_grad():
            module.load_state_dict(own, strict=True)
