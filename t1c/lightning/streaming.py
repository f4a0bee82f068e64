"""The measurement of an export fed batch by batch while validation runs, off the training thread.

A T1CModule's export at a checkpoint is measured on what the validation just before it
recorded, on the weights validation ran with. Those weights are final when validation
starts, so the callback exports them there and opens a :class:`StreamedScores` where the
export's work runs (the export thread, or the worker process), feeds it each recorded batch
as validation produces it, and at the checkpoint takes its figures, if the graph exported
there is the very graph measured (same content hash) and every batch the measurement takes
was fed (:meth:`Streams.take`, the training thread's side); otherwise the stream is
dropped and the export is measured as before. The quantized graph then runs beside
validation instead of after it, and the last export of a fit is written soon after the
last validation ends.

The streams of one process are kept in :data:`STREAMS` by key, so that the calls
:func:`open_stream`, :func:`feed_stream`, :func:`close_stream` and :func:`drop_stream` are
picklable module functions, run by the worker process or on the export thread alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from torchmetrics import MetricCollection

from t1c import ir

from .batches import val_loader
from .measure import (
    MEASURE_JOIN_BYTES,
    Item,
    Measurement,
    PreparedMeasurement,
    Tally,
    graph_executors,
    joins,
    readout_of,
    score_items,
)
from .rates import Counts

#: The open streams of this process by key (one per fit at a time).
STREAMS: dict[str, StreamedScores] = {}


class StreamedScores:
    """The figures of one export, fed its validation batches one at a time.

    Batches are joined as :func:`t1c.lightning.measure.score_items` joins them (consecutive,
    up to :data:`~t1c.lightning.measure.MEASURE_JOIN_BYTES` when the live outputs stand for
    the float graph), so the figures equal those of the whole measurement at once. The
    first error is kept and raised by :meth:`figures`, when the export that uses the stream
    is finished: a stream that is dropped raises nothing.

    Args:
        executors: ``(float graph or None: the live outputs stand for it, quantized graph)``.
        readout: outputs ``[T, B, C]`` -> class scores ``[B, C]``.
        metrics: the user's metrics (None: accuracy).
        device: where the batches and executors are.
    """

    def __init__(
        self,
        executors: tuple[nn.Module | None, nn.Module],
        readout: Callable[[torch.Tensor], torch.Tensor],
        metrics: MetricCollection | None,
        device: torch.device,
    ) -> None:
        self.executors, self.readout, self.device = executors, readout, device
        self.max_bytes = MEASURE_JOIN_BYTES if executors[0] is None else 0
        self.tally = Tally(metrics, device, executors)
        self.group: list[Item] = []  # the batches joined so far, not yet run
        self.size = 0  # bytes of spike trains in the group
        self.error: BaseException | None = None

    def add(self, item: Item) -> None:
        """Take one batch ``(spike trains, live class scores, labels)``: run the group it does
        not join, then keep it."""
        if self.error is not None:
            return
        try:
            xs = item[0]
            if self.group and not joins(self.group[0][0], self.size, xs, self.max_bytes):
                self.run_group()
            self.group.append(item)
            self.size += xs.numel() * xs.element_size()
        except Exception as err:  # raised when (if) the export is finished
            self.error = err

    def run_group(self) -> None:
        """Score the batches joined so far."""
        group, self.group, self.size = self.group, [], 0
        with torch.no_grad():
            score_items(group, self.executors, self.readout, self.tally.scores, self.device)

    def figures(self, live_counts: Counts) -> dict[str, float]:
        """The ``t1c/*`` figures: the last group scored, ``live_counts`` (the live executor's spikes
        during validation) standing for the float graph's when it is not run.

        Raises:
            Exception: the first error met while scoring a batch.
        """
        try:
            if self.error is None and self.group:
                self.run_group()
        except Exception as err:
            self.error = err
        finally:
            self.tally.detach()
        if self.error is not None:
            raise self.error
        self.tally.float_spikes.merge(live_counts)
        return self.tally.figures()


def open_stream(key: str, spec: StreamSpec, built: ir.Graph | tuple[nn.Module | None, nn.Module]) -> None:
    """Open the stream ``key`` in this process, measuring ``built``: the executors, or the graph
    to build them from (in the worker process: building modules draws the global random stream,
    which only a process of its own may do beside training, and a graph pickles for less)."""
    if isinstance(built, ir.Graph):
        built = graph_executors(built, spec.bits, spec.device, float_is_live=spec.float_is_live)
    STREAMS[key] = StreamedScores(built, spec.readout, spec.metrics, spec.device)


def feed_stream(key: str, item: Item) -> None:
    """Feed one batch to the stream ``key`` (nothing when it was dropped)."""
    stream = STREAMS.get(key)
    if stream is not None:
        stream.add(item)


def close_stream(key: str, live_counts: Counts) -> dict[str, float]:
    """The figures of the stream ``key``, which is closed.

    Raises:
        RuntimeError: no stream ``key`` is open in this process.
    """
    stream = STREAMS.pop(key, None)
    if stream is None:
        raise RuntimeError(f"T1CExport: the streamed measurement {key} is not open in this process")
    return stream.figures(live_counts)


def drop_stream(key: str) -> None:
    """Forget the stream ``key`` (its export did not happen, or was measured otherwise)."""
    stream = STREAMS.pop(key, None)
    if stream is not None:
        stream.tally.detach()


@dataclass(frozen=True)
class StreamSpec:
    """How a stream measures its graph.

    Attributes:
        bits: ``(weight_bits, accumulator_bits)`` of the quantized simulation.
        float_is_live: the float graph provably computes what the live executor does: the live
            outputs stand for it (it is not run).
        readout: outputs ``[T, B, C]`` -> class scores ``[B, C]``.
        metrics: the user's metrics (None: accuracy).
        device: where the batches and executors are.
    """

    bits: tuple[int, int]
    float_is_live: bool
    readout: Callable[[torch.Tensor], torch.Tensor]
    metrics: MetricCollection | None
    device: torch.device


@dataclass(frozen=True)
class StreamResult:
    """The measurement of an export whose stream is open: its figures, taken where it runs.

    Attributes:
        key: the stream.
        live_counts: the live executor's spike counts during validation (for the float graph's).
        portable: the stream is in the worker process (the export's ``remote`` runs this there).
    """

    key: str
    live_counts: Counts
    portable: bool

    def __call__(self) -> dict[str, float]:
        return close_stream(self.key, self.live_counts)


@dataclass
class Stream:
    """The training thread's side of an open stream: what it measures and what it was fed.

    Attributes:
        key: the stream, in :data:`STREAMS` where it runs.
        step: the global step of the validation that feeds it.
        source_hash: the content hash of the graph exported at validation start (before integers).
        graph: that graph as it ships (integers attached when asked).
        float_is_live: the live outputs stand for the float graph (it is not run).
        call: runs a stream function where the stream is: ``call(function, *args)``.
        fed: the batch indices fed so far, in order.
        usable: every batch the measurement takes was fed so far.
        remote: the stream is in the worker process.
    """

    key: str
    step: int
    source_hash: str
    graph: ir.Graph
    float_is_live: bool
    call: Callable[..., Any]
    fed: list[int]
    usable: bool = True
    remote: bool = False


class Streams:
    """The training thread's side of the streamed measurement: one stream at a time, opened at
    a validation's start, fed its recorded batches, taken by the export of its step or dropped.

    Args:
        measurement: the callback's measurement (bits, metrics, the validation records).
    """

    def __init__(self, measurement: Measurement) -> None:
        self.measurement = measurement
        self.stream: Stream | None = None

    def open(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        graphs: tuple[ir.Graph, ir.Graph],
        submit: Callable[[Callable[[], Any]], Any],
        remote: Callable[..., Any] | None,
    ) -> None:
        """Open the stream of ``graphs`` ``(as exported, as it ships)``: its jobs go to ``submit``,
        and to the worker process through ``remote`` (None: run on the export thread)."""
        source, graph = graphs
        device = pl_module.device
        measurement = self.measurement
        float_exec, float_is_live = measurement.float_graph(pl_module, graph, reuse=True)
        bits = measurement.bits
        spec = StreamSpec(bits, float_is_live, readout_of(pl_module), measurement.metrics, device)

        def call(function: Callable[..., Any], *args: Any) -> None:
            submit(lambda: function(*args) if remote is None else remote(function, *args))

        # on the export thread, building the executors would draw the global random stream beside training
        built = (
            graph if remote is not None else graph_executors(graph, bits, device, float_exec, float_is_live)
        )
        key = os.urandom(8).hex()
        self.stream = Stream(
            key, trainer.global_step, source.content_hash(), graph, float_is_live, call, [],
            remote=remote is not None,
        )  # fmt: skip
        call(open_stream, key, spec, built)  # last: the worker pickles while this thread trains on

    def feed(self, pl_module: LightningModule, batch_idx: int, dataloader_idx: int) -> None:
        """Feed the open stream the batch validation has just recorded (the measurement's own
        item); a batch the measurement takes that cannot be fed makes the stream unusable."""
        stream = self.stream
        if stream is None or not stream.usable or dataloader_idx != 0:
            return
        record = self.measurement.records.batches.get(batch_idx)
        if record is None:  # not a batch the measurement takes (limit_batches)
            return
        _, xs, ys, y = record
        if xs is None or y is None or batch_idx != len(stream.fed):
            stream.usable = False
            return
        device = pl_module.device
        stream.fed.append(batch_idx)
        stream.call(feed_stream, stream.key, (xs, pl_module.logits(ys).to(device), y.to(device)))

    def streaming(self, step: int) -> bool:
        """Whether a usable stream is open for the export of ``step``."""
        return self.stream is not None and self.stream.usable and self.stream.step == step

    def take(
        self, trainer: Trainer, step: int, source: ir.Graph
    ) -> tuple[ir.Graph, PreparedMeasurement] | None:
        """The open stream as the export of ``step``: its graph and measurement, when it measured
        exactly ``source`` (the graph exported now, same content hash) over every batch the
        measurement takes (validation's records of this step, each fed); else None (dropped)."""
        stream, self.stream = self.stream, None
        if stream is None:
            return None
        records = self.measurement.records
        loader = val_loader(trainer)
        covered = (  # validation's records of this step (a module that validates as a T1CModule: opened)
            records.covering(loader, self.measurement.limit_batches)
            if loader is not None and records.step == step
            else None
        )
        if (
            not stream.usable
            or stream.step != step
            or covered is None
            or len(covered) != len(stream.fed)
            or stream.source_hash != source.content_hash()
        ):
            stream.call(drop_stream, stream.key)
            return None
        # the live executor's spikes during validation stand for the float graph's
        live_counts = records.live_counts(len(stream.fed)) if stream.float_is_live else {}
        result = StreamResult(stream.key, live_counts, stream.remote)
        return stream.graph, PreparedMeasurement(result, True)

    def drop(self) -> None:
        """Drop the open stream, where it runs (its validation got no export)."""
        if self.stream is not None:
            self.stream.call(drop_stream, self.stream.key)
            self.stream = None

    def forget(self) -> None:
        """Forget the open stream: the fit ended or failed (a stream in the worker process ends
        with it, one on the export thread is dropped here)."""
        if self.stream is not None:
            drop_stream(self.stream.key)
            self.stream = None
