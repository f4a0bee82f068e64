"""Validation records: one call per batch, the batches measured, the loader covered, and reused
only for the weights validation ran with."""

from __future__ import annotations

import torch

from t1c.lightning import T1CModule
from t1c.lightning.records import RECORD_BYTES, ValidationRecords


class _Executor(torch.nn.Module):
    def run_sequence(self, xs, state=None):
        return xs * 2, state


def test_validation_records_keep_one_call_per_batch_and_cover_the_loader():
    records, executor = ValidationRecords(), _Executor()
    records.start(executor)
    assert records.recording
    for index in range(3):
        x = torch.full((2, 4), float(index))
        executor.run_sequence(x[None])
        records.add((x, torch.tensor([0, 1])), index, 0)
    executor.run_sequence(torch.zeros(1, 2, 4))
    executor.run_sequence(torch.zeros(1, 2, 4))  # two calls for one batch: not recorded
    records.add((torch.zeros(2, 4), torch.tensor([0, 1])), 3, 0)
    records.stop(executor, step=7)
    assert not records.recording and "run_sequence" not in vars(executor)
    assert sorted(records.batches) == [0, 1, 2] and records.step == 7
    x, xs, ys, y = records.batches[1]
    assert torch.equal(ys, 2 * xs) and torch.equal(xs[0], x) and y.tolist() == [0, 1]
    assert records.covering(range(3), None) == [records.batches[i] for i in range(3)]
    assert records.covering(range(4), 2) == [records.batches[0], records.batches[1]]
    assert records.covering(range(4), None) is None  # batch 3 was not recorded
    assert records.covering(iter(range(3)), None) is None  # no length: the loader is iterated
    assert records.kept == 3 * 2 * 4 * 4 < RECORD_BYTES
    records.free()
    assert records.batches == {} and records.kept == 0 and records.step == 7
    records.clear()
    assert records.step is None


def test_validation_records_keep_only_the_batches_measured():
    records, executor = ValidationRecords(limit_batches=2), _Executor()
    records.start(executor)
    for index in range(4):
        x = torch.full((2, 4), float(index))
        executor.run_sequence(x[None])
        records.add((x, torch.tensor([0, 1])), index, 0)
    records.stop(executor, step=3)
    assert sorted(records.batches) == sorted(records.rates) == [0, 1]
    assert records.kept == 2 * 2 * 4 * 4
    assert records.covering(range(4), 2) == [records.batches[0], records.batches[1]]


def test_records_are_reused_only_for_the_weights_validation_ran_with(fixtures_dir):
    """A callback that swaps weights in for validation (weight averaging) or changes them after it
    makes the records another model's outputs: not reused for the export of the checkpoint's weights."""
    module = T1CModule(fixtures_dir / "mlp_snn.t1c")
    executor = module.executor
    records = ValidationRecords()
    records.start(executor)
    xs = torch.zeros(4, 2, 64)
    executor.run_sequence(xs)
    records.add((xs[0], torch.tensor([0, 1])), 0, 0)
    records.stop(executor, step=5)
    assert records.reusable(5, module) and not records.reusable(6, module)
    weight = next(executor.parameters())
    kept = weight.detach().clone()
    weight.data.view(-1)[0] += 0.5  # through .data: its version counter does not move
    assert not records.reusable(5, module)
    weight.data.copy_(kept)  # the weights validation ran with, swapped back in
    assert records.reusable(5, module)
    records.free()
    assert not records.reusable(5, module)
