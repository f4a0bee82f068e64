"""The measurement's parts: joined batches, proven-equal executors."""

from __future__ import annotations

import torch

from t1c.bridge import ir_to_torch
from t1c.bridge.quantize import attach_integer_weights, ir_to_quantized
from t1c.lightning import T1CModule
from t1c.lightning.measure import joined, same_computation


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
