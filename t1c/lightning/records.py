"""What a T1CModule's validation computed, kept for the measurement of the export after it.

:class:`ValidationRecords` wraps the live executor's ``run_sequence`` while a fit validates and
keeps, per batch, its input, spike trains, outputs and spike counts, with the executor's state
when validation started: the measurement reuses them only for an export of those very weights.
:func:`validates_like_t1c_module` says which modules' validation is that computation.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn

from .rates import Counts, SpikeCounter

#: Most bytes of validation spike trains kept for the quantized measurement (beyond: encoded again).
RECORD_BYTES = 64 * 2**20

#: A recorded validation batch: input, spike trains (None: encode again), live outputs, labels or None.
Record = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]


class ValidationRecords:
    """What a T1CModule's validation computed, per batch, for the export measured after it.

    While a fit validates, :meth:`start` wraps the executor's ``run_sequence`` on its
    instance and counts its LIF layers' spikes, :meth:`add` keeps each batch's input, spike
    trains (up to :data:`RECORD_BYTES`), live outputs and spike counts, and :meth:`stop` removes
    the wrappers. :meth:`free` drops them once their step is measured.

    Args:
        limit_batches: the validation batches the measurement takes (None: all); later batches
            are not kept.
    """

    def __init__(self, limit_batches: int | None = None) -> None:
        self.limit_batches = limit_batches
        self.batches: dict[int, Record] = {}  # batch index -> record
        self.kept = 0  # bytes of spike trains in batches
        self.step: int | None = None  # the global step the records were taken at
        self.calls: list | None = None  # (xs, ys) of the executor calls of the current batch
        self.rates: dict[int, Counts] = {}  # batch index -> its LIF layers' spike counts
        self.counter = SpikeCounter()  # counts the live executor's spikes while recording
        self.weights: dict[str, torch.Tensor] = {}  # the executor's state when validation started

    def free(self) -> None:
        """Forget every record (they hold validation inputs and spike trains)."""
        self.batches, self.kept, self.rates, self.weights = {}, 0, {}, {}

    def clear(self) -> None:
        """Forget every record and the step they were taken at (a validation starts)."""
        self.free()
        self.step = None

    def start(self, executor: nn.Module) -> None:
        """Record ``executor.run_sequence``'s inputs and outputs until :meth:`stop`."""
        run_sequence = type(executor).run_sequence

        def recording(xs: Any, state: Any = None) -> Any:
            ys, state = run_sequence(executor, xs, state)
            if self.calls is not None:
                self.calls.append((xs, ys))
            return ys, state

        executor.run_sequence = recording  # shadows the method on this instance until stop()
        self.counter.attach(executor)
        self.calls = []
        self.weights = {name: value.clone() for name, value in executor.state_dict().items()}

    @property
    def recording(self) -> bool:
        """Whether validation is being recorded."""
        return self.calls is not None

    def add(self, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        """Keep what the executor computed for one validation batch (one call, first loader only,
        a batch the measurement takes)."""
        counts = self.counter.take()
        measured = self.limit_batches is None or batch_idx < self.limit_batches
        if measured and dataloader_idx == 0 and len(self.calls) == 1 and isinstance(batch, (tuple, list)):
            xs, ys = self.calls[0]
            size = xs.numel() * xs.element_size()
            if self.kept + size > RECORD_BYTES:
                xs = None  # encoded again when measured (the same seeded encoding)
            else:
                self.kept += size
            y = batch[1] if len(batch) > 1 else None
            self.batches[batch_idx] = (
                batch[0].detach(),
                None if xs is None else xs.detach(),
                ys.detach(),
                y.detach() if isinstance(y, torch.Tensor) and y.ndim == 1 else None,
            )
            self.rates[batch_idx] = counts
        self.calls.clear()

    def stop(self, executor: nn.Module, step: int) -> None:
        """Stop recording (the executor's own ``run_sequence`` again); the records are of ``step``."""
        self.calls = None
        vars(executor).pop("run_sequence", None)
        self.counter.detach()
        self.step = step

    def reusable(self, step: int, pl_module: LightningModule) -> bool:
        """Whether the records are the live model's outputs on the weights exported at ``step``: its
        step, and the executor's state unchanged since validation started (a callback may swap
        weights in for validation, as weight averaging does, or change them after it)."""
        if not self.batches or self.step != step or not validates_like_t1c_module(pl_module):
            return False
        state = pl_module.executor.state_dict()
        return state.keys() == self.weights.keys() and all(
            value.shape == self.weights[name].shape and torch.equal(value, self.weights[name])
            for name, value in state.items()
        )

    def live_counts(self, batches: int) -> Counts:
        """The live executor's spike counts over the first ``batches`` recorded batches."""
        counter = SpikeCounter()
        for index in range(batches):
            counter.merge(self.rates.get(index, {}))
        return counter.counts

    def covering(self, loader: Any, limit_batches: int | None) -> list[Record] | None:
        """The records when they hold every batch the measurement takes from ``loader`` (a
        loader with a length, at most ``limit_batches``), each with its labels; else None."""
        try:
            wanted = len(loader)
        except TypeError:  # an iterable without a length: take its batches
            return None
        if limit_batches is not None:
            wanted = min(wanted, limit_batches)
        records = [self.batches.get(index) for index in range(wanted)]
        if not records or any(record is None or record[3] is None for record in records):
            return None
        return records


def is_t1c_module(pl_module: LightningModule) -> bool:
    """A T1CModule, or any module with its export/evaluation protocol."""
    return callable(getattr(pl_module, "export_graph", None)) and callable(
        getattr(pl_module, "predict_with", None)
    )


def validates_like_t1c_module(pl_module: LightningModule) -> bool:
    """A T1CModule whose validation is T1CModule's own: ``run_sequence`` on ``encode(x, seed=eval_seed)``.

    Then the outputs its validation step computes are exactly ``predict_with(executor, x)``'s.
    """
    from .module import T1CModule

    cls = type(pl_module)
    return isinstance(pl_module, T1CModule) and all(
        getattr(cls, name) is getattr(T1CModule, name)
        for name in ("validation_step", "forward", "encode", "logits", "predict_with")
    )
