"""The measurement's parts: joined batches, proven-equal executors, validation records."""

from __future__ import annotations

import torch

from t1c.bridge import ir_to_torch
from t1c.bridge.quantize import attach_integer_weights, ir_to_quantized
from t1c.lightning import T1CModule
from t1c.lightning.measure import (
    RECORD_BYTES,
    ValidationRecords,
    joined,
    same_computation,
)


def test_joined_groups_by_bytes_and_shape():
    def item(batch, steps=4, width=3):
        return torch.zeros(steps, batch, width), torch.arange(batch), torch.arange(batch)

    def batches(groups):
        return [None if g is None else int(g[0].shape[1]) for g in groups]

    nbytes = 4 * 64 * 3 * 4  # one [4, 64, 3] float32 batch
    assert batches(joined([item(64)] * 5, 2 * nbytes)) == [128, 128, 64]
    assert batches(joined([item(64)] * 3, 0)) == [64, 64, 64]
    assert batches(joined([item(64), item(64, steps=5), item(8, steps=5)], 10 * nbytes)) == [64, 72]
    assert batches(joined([item(64), item(64, width=2), None, item(64)], 10 * nbytes)) == [64, 64, None]
    xs, classes, labels = next(joined([item(2), item(3)], nbytes))
    assert xs.shape == (4, 5, 3) and classes.tolist() == labels.tolist() == [0, 1, 0, 1, 2]


def test_same_computation_is_proven_or_refused(fixtures_dir):
    module = T1CModule(fixtures_dir / "mlp_snn.t1c", num_steps=4)
    graph = attach_integer_weights(module.export_graph())
    assert same_computation(ir_to_torch(graph), module.executor)
    assert not same_computation(ir_to_quantized(graph, 8, 32), module.executor)
    with torch.no_grad():
        next(module.executor.parameters()).view(-1)[0] += 1e-6
    assert not same_computation(ir_to_torch(graph), module.executor)
    other = ir_to_torch(graph)
    lif = next(m for m in other.modules() if hasattr(m, "reset_mechanism"))
    lif.reset_mechanism = "none" if lif.reset_mechanism != "none" else "zero"
    assert not same_computation(other, ir_to_torch(graph))


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
