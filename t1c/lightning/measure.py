"""Float vs quantized figures of an export, measured on the validation data.

At each export the validation batches go through the exported graph in float, the
exported graph in quantized simulation (built from the very integers stored in the file)
and the live model; :class:`~t1c.lightning.scoring.ExportScores` computes the ``t1c/*``
figures with torchmetrics, and :class:`~t1c.lightning.rates.SpikeCounter` counts each LIF
layer's spikes. A plain LightningModule's batches become the graph's input as its
:class:`~t1c.lightning.feeding.Feed` says, and the first export checks that the graph then
predicts what the module's forward does. For a :class:`~t1c.lightning.T1CModule` the live
outputs of the validation that has just run are reused (:class:`ValidationRecords`) where
that is provably the same computation, and the float graph does not run when it provably
computes what the live executor does (:func:`same_computation`). The quantized graph runs on
consecutive batches joined (:func:`joined`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn
from torchmetrics import MetricCollection

from t1c import ir

from .batches import to_device, val_loader
from .feeding import FEED_SEED, SELF_CHECK_AGREEMENT, Feed, fed_pair, mismatch_message
from .rates import Counts, SpikeCounter, rate_figures, synced_rates
from .records import Record, ValidationRecords, is_t1c_module
from .scoring import ExportScores

#: The quantized measurement runs consecutive validation batches joined, up to this many bytes
#: of spike trains: fewer, larger operations per time step. In the digits demo config, 3
#: batches of 64 at once ran about 15% faster than one at a time, and all 6 at once slower
#: than one at a time (larger temporaries are fresh memory, faulted in page by page).
MEASURE_JOIN_BYTES = 3 * 2**19

#: A measured batch: spike trains ``[T, B, ...]``, live class scores ``[B, C]``, labels ``[B]``.
Item = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class PreparedMeasurement:
    """A measurement built at an export, to run now or off the training thread.

    Attributes:
        run: measures and returns the ``t1c/*`` figures (``{}``: none measured).
        detached: the run reads nothing training changes (no live module, no data loader), so it
            may run while training goes on.
    """

    run: Callable[[], dict[str, float]]
    detached: bool


@dataclasses.dataclass(frozen=True)
class RecordedMeasurement:
    """A T1CModule's measurement on validation's own records, holding everything it reads.

    It references no live module, loader or trainer, so it pickles: the export thread runs it,
    or sends it to the worker process (:mod:`t1c.lightning.worker_process`) when on the CPU.

    Attributes:
        items: each measured batch's ``(spike trains, live class scores, labels)``.
        live_counts: the live executor's spike counts during validation, standing for the float
            graph's when it is not run (``executors[0]`` None); else empty.
        executors: ``(float graph or None, quantized graph)``.
        readout: outputs ``[T, B, C]`` -> class scores ``[B, C]`` (the module's ``logits``).
        metrics: the user's metrics, or None (accuracy).
        device: where the items and executors are.
    """

    items: list[Item]
    live_counts: Counts
    executors: tuple[nn.Module | None, nn.Module]
    readout: Callable[[torch.Tensor], torch.Tensor]
    metrics: MetricCollection | None
    device: torch.device

    @property
    def portable(self) -> bool:
        """Whether it may run in a worker process (CPU tensors only: a forked process has no CUDA)."""
        return self.device.type == "cpu"

    def __call__(self) -> dict[str, float]:
        """The ``t1c/*`` figures."""

        def score(scores: ExportScores, float_spikes: SpikeCounter) -> bool:
            float_spikes.merge(self.live_counts)
            return score_items(self.items, self.executors, self.readout, scores, self.device)

        return scored(self.metrics, self.device, self.executors, score)


class Measurement:
    """Measures exported graphs against the live module on the validation data.

    Args:
        weight_bits: bits per weight of the quantized simulation.
        accumulator_bits: accumulator width of the quantized simulation.
        limit_batches: validation batches measured (None: all).
        records: the validation records of the fit (:class:`ValidationRecords`).
        feed: how a plain LightningModule's batch becomes the graph's input and its output a score.
        metrics: the metrics computed for both graphs (None: multiclass accuracy).
        self_check: check at the first measured export that the float graph predicts what a
            plain module's forward does (``T1CExport(verify="off")``: not checked).
    """

    def __init__(
        self,
        weight_bits: int,
        accumulator_bits: int,
        limit_batches: int | None,
        records: ValidationRecords,
        feed: Feed | None = None,
        metrics: MetricCollection | None = None,
        self_check: bool = True,
    ) -> None:
        self.weight_bits = weight_bits
        self.accumulator_bits = accumulator_bits
        self.limit_batches = limit_batches
        self.records = records
        self.feed = feed or Feed()
        self.metrics = metrics
        self.self_check = self_check
        self.no_metrics_reason: str | None = None  # set once: the figures cannot be measured
        self.mismatch: str | None = None  # the self-check's message, until the exporter acts on it

    def prepare(
        self, trainer: Trainer, pl_module: LightningModule, graph: ir.Graph, layout: str | None
    ) -> PreparedMeasurement:
        """Build what measures ``graph`` now; the measurement itself runs when its ``run`` is called.

        Building the executors draws the global random stream (callers restore it), so it is
        done here, on the training thread; the run evaluates copies (the float executor, the
        quantized one built from the very integers stored in the file, a copy of the live model)
        under ``no_grad``, so training is not disturbed. A plain LightningModule's ``forward``
        gives the live predictions; ``layout`` is how its batches hold time. The run is
        ``detached`` when it reads nothing that training changes: a T1CModule whose validation
        recorded every measured batch at this step (their inputs, spike trains and live outputs
        are kept by the run; the next validation records into new containers).
        """
        if self.no_metrics_reason is not None:
            return PreparedMeasurement(dict, True)
        loader = val_loader(trainer)
        if loader is None:
            self.no_metrics("there is no validation data")
            return PreparedMeasurement(dict, True)
        reuse = is_t1c_module(pl_module) and self.records.reusable(trainer.global_step, pl_module)
        executors = self.executors(pl_module, graph, reuse)
        records = copy.copy(self.records)  # this validation's containers, whatever the next one records
        covered = records.covering(loader, self.limit_batches) if reuse else None
        if covered is not None and all(record[1] is not None for record in covered):
            return PreparedMeasurement(self.recorded(pl_module, records, covered, executors), True)

        def run() -> dict[str, float]:
            return self.run(pl_module, loader, records if reuse else None, executors, layout)

        return PreparedMeasurement(run, covered is not None)

    @property
    def bits(self) -> tuple[int, int]:
        """``(weight_bits, accumulator_bits)`` of the quantized simulation."""
        return self.weight_bits, self.accumulator_bits

    def float_graph(self, pl_module: LightningModule, graph: ir.Graph, reuse: bool) -> tuple[nn.Module, bool]:
        """``graph``'s float executor on the module's device, and whether the live outputs stand
        for it: ``reuse`` (validation's outputs are the live model's on these weights) and it
        provably computes what the live executor does."""
        from t1c.bridge import ir_to_torch

        float_exec = ir_to_torch(graph).to(pl_module.device).eval()
        return float_exec, reuse and same_computation(float_exec, pl_module.executor)

    def executors(
        self, pl_module: LightningModule, graph: ir.Graph, reuse: bool
    ) -> tuple[nn.Module | None, nn.Module]:
        """``(float graph or None, quantized graph)`` of ``graph`` on the module's device.

        The float graph is not run (None) when the live outputs stand for it
        (:meth:`float_graph`); it is then quantized in place instead of building a second executor.
        """
        float_exec, float_is_live = self.float_graph(pl_module, graph, reuse)
        return graph_executors(graph, self.bits, pl_module.device, float_exec, float_is_live)

    def recorded(
        self,
        pl_module: LightningModule,
        records: ValidationRecords,
        covered: list[Record],
        executors: tuple[nn.Module | None, nn.Module],
    ) -> RecordedMeasurement:
        """The measurement of a T1CModule on validation's own records of every measured batch,
        spike trains included: a picklable object, run on the export thread or in a worker process."""
        device = pl_module.device
        items = [(xs, pl_module.logits(ys).to(device), y.to(device)) for _, xs, ys, y in covered]
        # the live executor stands for the float graph: its spikes are validation's
        live_counts = records.live_counts(len(covered)) if executors[0] is None else {}
        return RecordedMeasurement(items, live_counts, executors, readout_of(pl_module), self.metrics, device)

    def run(
        self,
        pl_module: LightningModule,
        loader: Any,
        records: ValidationRecords | None,
        executors: tuple[nn.Module | None, nn.Module],
        layout: str | None,
    ) -> dict[str, float]:
        """Score both executors ``(float or None: the live one stands for it, quantized)`` on the
        validation batches; ``records``: validation's own outputs at the exported weights (None:
        not reusable)."""
        device = pl_module.device

        def score(scores: ExportScores, float_spikes: SpikeCounter) -> bool:
            float_exec, quant_exec = executors
            if is_t1c_module(pl_module):
                return self.score_t1c(
                    pl_module, loader, records, float_exec, quant_exec, scores, float_spikes
                )
            return self.score_plain(pl_module, loader, float_exec, quant_exec, layout or "static", scores)

        return scored(self.metrics, device, executors, score)

    def labelled(self, loader: Any) -> Iterator[Any]:
        """The validation batches used for the metrics (``limit_batches``); None (and a warning)
        for a batch without a label tensor ``[B]`` as its second element, then stop."""
        for index, batch in enumerate(loader):
            if self.limit_batches is not None and index >= self.limit_batches:
                return
            y = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
            if not isinstance(y, torch.Tensor) or y.ndim != 1:
                self.no_metrics("the validation batches have no label tensor [B] as their second element")
                yield None
                return
            yield batch

    def score_plain(
        self,
        pl_module: LightningModule,
        loader: Any,
        float_exec: nn.Module,
        quant_exec: nn.Module,
        layout: str,
        scores: ExportScores,
    ) -> bool:
        """Score a plain LightningModule's batches (:attr:`feed`: the graph's input, each batch's
        forward and encoding drawn from one seed); False (and a warning) when its forward does
        not keep the contract (docs/export_callback.md) or, at the first export, the float graph
        does not predict what it does (:attr:`mismatch`)."""
        for index, batch in enumerate(self.labelled(loader)):
            if batch is None:
                return False
            y = batch[1].to(pl_module.device)
            try:
                live, xs, steps = fed_pair(pl_module, batch[0], layout, self.feed, FEED_SEED + index)
                float_scores, quant_scores = (
                    self.feed.scores(e.run_sequence(xs)[0]) for e in (float_exec, quant_exec)
                )
                scores.update(float_scores, quant_scores, live, y)
            except Exception as err:  # a plain module's forward is the user's: say why, keep training
                self.no_metrics(f"{type(pl_module).__name__}.forward could not be compared ({err})")
                return False
            if (
                index == 0
                and self.self_check
                and not self.first_batch_agrees(pl_module, float_scores, live, (layout, steps))
            ):
                return False
        return True

    def first_batch_agrees(
        self,
        pl_module: LightningModule,
        float_scores: torch.Tensor,
        live: torch.Tensor,
        fed: tuple[str, int | None],
    ) -> bool:
        """The self-check of the first export (once): whether the float graph predicts what the
        module's forward predicts on the first batch (one random stream); if not, no figure is
        measured from now on and :attr:`mismatch` says why. ``fed``: the batches' layout and
        the steps the forward returned."""
        self.self_check = False
        agreement = float((float_scores.argmax(-1) == live).float().mean())
        agreement = pl_module.trainer.strategy.broadcast(agreement)  # every rank decides as rank zero
        if agreement >= SELF_CHECK_AGREEMENT:
            return True
        self.mismatch = mismatch_message(type(pl_module).__name__, agreement, self.feed.words(*fed))
        self.no_metrics_reason = self.mismatch
        return False

    def score_t1c(
        self,
        pl_module: LightningModule,
        loader: Any,
        records: ValidationRecords | None,
        float_exec: nn.Module | None,
        quant_exec: nn.Module,
        scores: ExportScores,
        live_spikes: SpikeCounter,
    ) -> bool:
        """Score a T1CModule's batches; the live outputs are validation's own where it ran the same
        computation on the weights exported now (``records``, else None), and they stand for the float
        graph's when it provably computes what the live executor does (``float_exec`` None:
        ``live_spikes`` then counts the live executor's spikes). False when a batch has no labels
        (:func:`score_items`)."""
        batches = self.live_batches(pl_module, loader, records, live_spikes if float_exec is None else None)
        return score_items(batches, (float_exec, quant_exec), pl_module.logits, scores, pl_module.device)

    def live_batches(
        self,
        pl_module: LightningModule,
        loader: Any,
        records: ValidationRecords | None,
        live_spikes: SpikeCounter | None,
    ) -> Iterator[Item | None]:
        """``(spike trains, live class scores, labels)`` of each measured batch; a None (and stop)
        for a batch without labels. ``records``: validation's own, reusable (None: not);
        ``live_spikes``: counts the live executor's spikes (None: not).

        When validation recorded every batch the measurement takes (the loader's length,
        ``limit_batches``) with its labels, those batches, without iterating the loader
        again; else the loader's batches, with validation's live outputs where it ran on the
        same input, and a copy of the live executor for the others.
        """
        device = pl_module.device
        recorded = records.covering(loader, self.limit_batches) if records is not None else None
        if recorded is not None:
            for index, (x, xs, ys, y) in enumerate(recorded):
                xs = xs if xs is not None else encode_for_eval(pl_module, x)
                if live_spikes is not None:
                    live_spikes.merge(records.rates.get(index, {}))
                yield xs, pl_module.logits(ys).to(device), y.to(device)
            return
        live = None
        for index, batch in enumerate(self.labelled(loader)):
            if batch is None:
                yield None
                return
            x = to_device(batch[0], device)
            record = records.batches.get(index) if records is not None else None
            if record is not None and record[0].shape == x.shape and torch.equal(record[0], x):
                ys = record[2]  # validation's own live outputs, on its own spike trains
                xs = record[1] if record[1] is not None else encode_for_eval(pl_module, x)
                if live_spikes is not None:
                    live_spikes.merge(records.rates.get(index, {}))
            else:
                if live is None:
                    live = copy_module(pl_module.executor).eval()
                    if live_spikes is not None:
                        live_spikes.attach(live)
                xs = encode_for_eval(pl_module, x)
                ys = live.run_sequence(xs)[0]
            yield xs, pl_module.logits(ys).to(device), batch[1].to(device)

    def no_metrics(self, reason: str) -> None:
        """Warn once that the t1c/* metrics are not measured, and why."""
        self.no_metrics_reason = reason
        rank_zero_warn(
            f"T1CExport: t1c/float_acc, t1c/quant_acc and t1c/export_agreement are not measured: {reason}. "
            "A plain LightningModule's forward must return outputs [B, C] or per step [T, B, C] / [B, T, C] "
            "for the batch's input, with the labels [B] as the batch's second element (docs/export_callback.md)"
        )


def graph_executors(
    graph: ir.Graph,
    bits: tuple[int, int],
    device: torch.device,
    float_exec: nn.Module | None = None,
    float_is_live: bool = False,
) -> tuple[nn.Module | None, nn.Module]:
    """``(float graph or None: it is not run, quantized graph)`` of ``graph`` at ``bits``
    ``(weight_bits, accumulator_bits)`` on ``device``; ``float_exec``: the float graph already
    built (None: built here), quantized in place when ``float_is_live``."""
    from t1c.bridge import ir_to_torch
    from t1c.bridge.quantize import ir_to_quantized

    if float_exec is None:
        float_exec = ir_to_torch(graph).to(device).eval()
    quant_exec = ir_to_quantized(graph, *bits, executor=float_exec if float_is_live else None).to(device)
    return (None if float_is_live else float_exec, quant_exec)


def readout_of(pl_module: LightningModule) -> Callable[[torch.Tensor], torch.Tensor]:
    """A T1CModule's ``logits`` as a picklable function: outputs ``[T, B, C]`` -> class scores."""
    from .module import class_scores

    return functools.partial(class_scores, spikes=bool(pl_module.output_is_spikes))


def encode_for_eval(pl_module: LightningModule, x: torch.Tensor) -> torch.Tensor:
    """The spike trains ``predict_with`` feeds its executor: ``encode(x, seed=eval_seed)``."""
    return pl_module.encode(x, seed=int(pl_module.hparams.eval_seed))


def copy_module(module: nn.Module) -> nn.Module:
    """A deep copy that also works mid-training.

    snnTorch neurons keep their membrane from the last forward pass as an attribute that is
    part of the autograd graph, which ``copy.deepcopy`` refuses; such tensors are copied
    detached.
    """
    memo: dict[int, Any] = {}
    for sub in module.modules():
        for value in [*vars(sub).values(), *sub._buffers.values()]:
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(module, memo)


# attributes that hold caches, metadata or the backward pass only: no effect on forward values
_NOT_COMPUTATION = frozenset(
    {"metadata", "node_metadata", "_held_state", "_coef_cache", "spike_grad", "training"}
)


def same_computation(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules provably compute the same forward function.

    Same module tree (names and types), and every attribute of every module equal: tensors
    bit for bit (same dtype and shape), plain values, containers and dataclasses recursively,
    references to submodules by their name. Anything else (an unknown object) counts as a
    difference, so a False may be conservative, a True never is.
    """
    modules_a, modules_b = list(a.named_modules()), list(b.named_modules())
    if [(n, type(m)) for n, m in modules_a] != [(n, type(m)) for n, m in modules_b]:
        return False
    same = _SameValue({id(m): n for n, m in modules_a}, {id(m): n for n, m in modules_b})
    missing = object()
    for (_, ma), (_, mb) in zip(modules_a, modules_b):
        va, vb = vars(ma), vars(mb)
        for key in set(va) | set(vb):
            if key in _NOT_COMPUTATION or key == "_modules" or "hook" in key:
                continue
            if not same(va.get(key, missing), vb.get(key, missing)):
                return False
    return True


class _SameValue:
    """Equality of two attribute values of modules in two trees (submodules compared by name)."""

    def __init__(self, names_a: dict[int, str], names_b: dict[int, str]) -> None:
        self.names_a, self.names_b = names_a, names_b

    def __call__(self, u: Any, v: Any) -> bool:
        if isinstance(u, nn.Module) or isinstance(v, nn.Module):
            return (
                id(u) in self.names_a and id(v) in self.names_b and self.names_a[id(u)] == self.names_b[id(v)]
            )
        if isinstance(u, torch.Tensor) or isinstance(v, torch.Tensor):
            return (
                isinstance(u, torch.Tensor)
                and isinstance(v, torch.Tensor)
                and u.dtype == v.dtype
                and u.shape == v.shape
                and torch.equal(u, v)
            )
        if type(u) is not type(v):
            return False
        if u is None or isinstance(u, (bool, int, str, type, frozenset, set)):
            return u == v
        if isinstance(u, float):
            return u == v or (math.isnan(u) and math.isnan(v))
        if dataclasses.is_dataclass(u):
            return all(self(getattr(u, f.name), getattr(v, f.name)) for f in dataclasses.fields(u))
        if isinstance(u, (list, tuple)):
            return len(u) == len(v) and all(self(x, y) for x, y in zip(u, v))
        if isinstance(u, dict):
            return u.keys() == v.keys() and all(self(u[k], v[k]) for k in u)
        return False


class Tally:
    """What one measurement counts: the ``t1c/*`` scores and each executor's spikes.

    Args:
        metrics: the user's metrics (None: accuracy).
        device: where the scores are kept.
        executors: ``(float graph or None, quantized graph)``; with None, ``float_spikes`` is left
            empty for the caller to fill (the live executor's counts stand for the float graph's).
    """

    def __init__(
        self,
        metrics: MetricCollection | None,
        device: torch.device,
        executors: tuple[nn.Module | None, nn.Module],
    ) -> None:
        float_exec, quant_exec = executors
        self.scores = ExportScores(metrics, device)
        self.device = device
        self.float_spikes = SpikeCounter() if float_exec is None else SpikeCounter().attach(float_exec)
        self.quant_spikes = SpikeCounter().attach(quant_exec)

    def detach(self) -> None:
        """Stop counting the executors' spikes."""
        self.float_spikes.detach(), self.quant_spikes.detach()

    def figures(self) -> dict[str, float]:
        """The scores and the per-layer spike rates of both graphs."""
        figures = self.scores.compute()
        if figures:
            rates = (synced_rates(c.counts, self.device) for c in (self.float_spikes, self.quant_spikes))
            figures.update(rate_figures(*rates))
        return figures


def scored(
    metrics: MetricCollection | None,
    device: torch.device,
    executors: tuple[nn.Module | None, nn.Module],
    score: Callable[[ExportScores, SpikeCounter], bool],
) -> dict[str, float]:
    """The figures of a measurement: ``score(scores, float_spikes)`` feeds the batches (False:
    nothing measured), while a :class:`Tally` counts each executor's spikes."""
    tally = Tally(metrics, device, executors)
    try:
        with torch.no_grad():
            done = score(tally.scores, tally.float_spikes)
    finally:
        tally.detach()
    return tally.figures() if done else {}


def score_items(
    items: Iterable[Item | None],
    executors: tuple[nn.Module | None, nn.Module],
    readout: Callable[[torch.Tensor], torch.Tensor],
    scores: ExportScores,
    device: torch.device,
) -> bool:
    """Score ``(spike trains, live class scores, labels)`` batches through ``(float graph or
    None: the live scores stand for it, quantized graph)``; False at a None (a batch without
    labels).

    The quantized graph runs over consecutive batches joined (:data:`MEASURE_JOIN_BYTES`):
    on spikes its sums are exact integers, so its per-sample results do not depend on the
    batch (graded inputs go through a float64 accumulator, whose last bits may); the float
    graph, which rounds by batch shape in float32, always runs batch by batch, as validation did.
    """
    float_exec, quant_exec = executors
    for item in joined(items, MEASURE_JOIN_BYTES if float_exec is None else 0):
        if item is None:
            return False
        xs, live_scores, y = item
        # the quantized executor is this measurement's own: no autograd state to keep
        with torch.inference_mode():
            quant_scores = readout(quant_exec.run_sequence(xs)[0]).to(device)
        float_scores = (
            live_scores if float_exec is None else readout(float_exec.run_sequence(xs)[0]).to(device)
        )
        scores.update(float_scores, quant_scores, live_scores.argmax(-1), y)
    return True


def joined(items: Iterable[Item | None], max_bytes: int) -> Iterator[Item | None]:
    """Consecutive ``(xs [T, B, ...], classes [B], labels [B])`` joined along their batch
    dimensions while the joined ``xs`` stay within ``max_bytes`` (one at a time when 0) and
    alike in all but ``B``; a None is passed on and ends them."""
    group: list[Item] = []
    size = 0
    for item in items:
        if item is None:
            if group:
                yield _cat(group)
            yield None
            return
        if group and not joins(group[0][0], size, item[0], max_bytes):
            yield _cat(group)
            group, size = [], 0
        group.append(item)
        size += item[0].numel() * item[0].element_size()
    if group:
        yield _cat(group)


def joins(first: torch.Tensor, size: int, xs: torch.Tensor, max_bytes: int) -> bool:
    """Whether spike trains ``xs`` join a group of ``size`` bytes that starts with ``first``:
    the group stays within ``max_bytes`` and alike in all but the batch dimension."""
    return size + xs.numel() * xs.element_size() <= max_bytes and (
        xs.dtype,
        xs.device,
        xs.shape[:1],
        xs.shape[2:],
    ) == (first.dtype, first.device, first.shape[:1], first.shape[2:])


def _cat(group: list[Item]) -> Item:
    if len(group) == 1:
        return group[0]
    xs, predicted, labels = zip(*group)
    return torch.cat(xs, 1), torch.cat(predicted), torch.cat(labels)
