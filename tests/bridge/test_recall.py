"""A recurrent graph trained after import: recall after a silent delay (benchmarks/bench_recall.py).

The feedforward graph cannot carry the class over the delay and the recurrent one learns to;
the executor's gradients through the back edge are those of the unrolled loop (BPTT); the
trained recurrent executor exports back to a graph with its cycle.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from t1c import ir
from t1c.bridge import ir_to_torch, to_ir

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """``benchmarks/bench_recall.py``, imported by path (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_recall", REPO / "benchmarks" / "bench_recall.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_recurrence_recalls_the_pulse_and_feedforward_cannot(bench):
    task = bench.RecallTask()
    scores = {}
    for recurrent in (False, True):
        graph = bench.recall_graph(task, recurrent=recurrent, hidden=32, seed=0)
        assert graph.cyclic == recurrent
        executor = bench.train(graph, task, steps=100, seed=0)
        assert executor.is_recurrent == recurrent
        scores[recurrent] = bench.accuracy(executor, task)
    assert scores[False] <= 0.35, scores  # chance is 0.25: nothing is left after the delay
    assert scores[True] >= 0.9, scores


def test_gradients_through_the_back_edge_are_the_unrolled_loops(bench):
    task = bench.RecallTask(delay=6)
    executor = ir_to_torch(bench.recall_graph(task, recurrent=True, hidden=8, seed=1)).train()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in executor.parameters():
            p.add_(0.3 * torch.randn_like(p))  # biases too: rec's bias reaches step 0
    x, y = bench.recall_batch(task, 16, torch.Generator().manual_seed(0))

    def loss_and_grads(outputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        loss = torch.nn.functional.cross_entropy(outputs[-task.readout :].mean(0), y)
        return loss, torch.autograd.grad(loss, list(executor.parameters()))

    ys, _ = executor.run_sequence(x)
    fc, rec, hidden, readout = (executor.module_for(n) for n in ("fc", "rec", "hidden", "readout"))
    spikes, v, by_hand = torch.zeros(16, 8), None, []
    for x_t in x:  # rec comes first each step, fed last step's spikes (zero at step 0)
        spikes, v = hidden(fc(x_t) + rec(spikes), v)
        by_hand.append(readout(spikes))
    by_hand = torch.stack(by_hand)
    assert torch.equal(ys, by_hand)
    loss, grads = loss_and_grads(ys)
    loss_ref, grads_ref = loss_and_grads(by_hand)
    assert loss == loss_ref
    for (name, _), grad, ref in zip(executor.named_parameters(), grads, grads_ref, strict=True):
        torch.testing.assert_close(grad, ref, msg=name)
    rec_weight = dict(zip((n for n, _ in executor.named_parameters()), grads, strict=True))
    assert any(g.abs().sum() > 0 for n, g in rec_weight.items() if "rec" in n)


def test_trained_recurrent_executor_exports_with_its_cycle(bench, tmp_path):
    task = bench.RecallTask(delay=6)
    source = bench.recall_graph(task, recurrent=True, hidden=8, seed=2)
    executor = bench.train(source, task, steps=5, seed=2)
    exported = to_ir(executor, torch.zeros(1, task.inputs))
    assert exported.cyclic and ir.topology_diff(source, exported) == []
    trained_rec = executor.module_for("rec").weight.detach().numpy()
    assert (exported.nodes["rec"].weight == trained_rec).all()
    assert not (source.nodes["rec"].weight == trained_rec).all()
    ir.write(tmp_path / "recall.t1c", exported)
    again = ir_to_torch(tmp_path / "recall.t1c")
    x, _ = bench.recall_batch(task, 8, torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(again.run_sequence(x)[0], executor.run_sequence(x)[0])


def test_bench_prints_both_accuracies(bench, capsys):
    assert bench.main(["--steps", "2", "--seeds", "0", "--hidden", "8", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "chance 25%" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("feedforward", "recurrent"))]
    assert [row[:2] for row in rows] == [["feedforward", "0"], ["recurrent", "0"]]
    assert all(row[2].endswith("%") for row in rows)
