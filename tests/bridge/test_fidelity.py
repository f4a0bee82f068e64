"""The bar: snnTorch model -> to_ir -> ir.write -> ir.read -> ir_to_torch spikes exactly as before.

Every test runs the original snnTorch model and the imported executor step by step on
the same random binary inputs from a zero state and requires 0 mismatching spikes.
"""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from batching import assert_batching_independent
from torch import nn

from t1c import ir
from t1c.bridge.exporter import to_ir
from t1c.bridge.importer import ir_to_torch

STEPS = 40


def reset_hidden(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, snn.Leaky) and module.init_hidden:
            module.mem = torch.zeros(0)


def run_hidden(model: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    """Step an init_hidden=True model from zero state; spikes [T, B, ...]."""
    reset_hidden(model)
    with torch.no_grad():
        out = [model(x) for x in xs]
    reset_hidden(model)
    return torch.stack([o[0] if isinstance(o, tuple) else o for o in out])


def run_imported(graph: ir.Graph, tmp_path, xs: torch.Tensor, *, sequence: bool = False) -> torch.Tensor:
    """Write, read, import and step the graph from zero state."""
    path = tmp_path / "model.t1c"
    ir.write(path, graph)
    executor = ir_to_torch(ir.read(path))
    with torch.no_grad():
        if sequence:
            return executor.run_sequence(xs)[0]
        state, out = None, []
        for x in xs:
            y, state = executor(x, state, return_state=True)
            out.append(y)
    return torch.stack(out)


def binary_inputs(shape: tuple[int, ...], seed: int = 0, p: float = 0.4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(STEPS, *shape, generator=gen) < p).float()


def run_explicit_state(model: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    """Spikes ``[T, ...]`` of a model stepped as ``spk, s1, s2 = model(x, s1, s2)`` from ``None``
    states (snnTorch's explicit-state style), without gradients."""
    s1 = s2 = None
    expected = []
    with torch.no_grad():
        for x in xs:
            spk, s1, s2 = model(x, s1, s2)
            expected.append(spk)
    return torch.stack(expected)


def assert_same_spikes(expected: torch.Tensor, actual: torch.Tensor) -> None:
    assert expected.shape == actual.shape
    rate = expected.mean().item()
    assert 0.02 < rate < 0.98, f"spike rate {rate:.3f}: the test would not exercise the neurons"
    mismatches = int((expected != actual).sum())
    assert mismatches == 0, f"{mismatches} of {expected.numel()} spikes differ"


def mlp(**leaky) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(20, 32),
        snn.Leaky(init_hidden=True, **leaky),
        nn.Linear(32, 10),
        snn.Leaky(init_hidden=True, **leaky),
    )


def scaled(model: nn.Module, gain: float) -> nn.Module:
    """Scale the synapses up so that neurons spike often enough to test resets."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.mul_(gain)
    return model


@pytest.mark.parametrize(
    "leaky",
    [
        {"beta": 0.9},
        {"beta": 0.8, "reset_mechanism": "zero"},
        {"beta": 0.7, "reset_mechanism": "none", "threshold": 2.0},
        {"beta": 0.9, "reset_delay": False},
        {"beta": 0.85, "reset_mechanism": "zero", "reset_delay": False},
        {"beta": 1.0},
        {"beta": 0.0, "threshold": 0.3},
    ],
    ids=["default", "zero", "none", "subtract-no-delay", "zero-no-delay", "beta-one", "beta-zero"],
)
def test_leaky_variants_spike_identically(leaky, tmp_path):
    torch.manual_seed(0)
    model = scaled(mlp(**leaky), 3.0)
    xs = binary_inputs((8, 20))
    graph = to_ir(model, xs[0])
    assert_same_spikes(run_hidden(model, xs), run_imported(graph, tmp_path, xs))


def test_per_neuron_beta_and_threshold(tmp_path):
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(20, 32),
        snn.Leaky(beta=torch.rand(32), threshold=torch.rand(32) + 0.5, init_hidden=True),
        nn.Linear(32, 10),
        snn.Leaky(beta=torch.rand(10), threshold=torch.rand(10) + 0.5, init_hidden=True),
    )
    scaled(model, 3.0)
    xs = binary_inputs((8, 20), seed=1)
    graph = to_ir(model, xs[0])
    assert_same_spikes(run_hidden(model, xs), run_imported(graph, tmp_path, xs))


def test_learned_beta_and_threshold_after_training(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Linear(20, 32),
        snn.Leaky(beta=torch.full((32,), 0.8), learn_beta=True, learn_threshold=True, init_hidden=True),
        nn.Linear(32, 10),
        snn.Leaky(beta=0.6, learn_beta=True, learn_threshold=True, init_hidden=True),
    )
    scaled(model, 3.0)
    betas = [model[1].beta.detach().clone(), model[3].beta.detach().clone()]
    thresholds = [model[1].threshold.detach().clone(), model[3].threshold.detach().clone()]
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    xs = binary_inputs((8, 20), seed=2)
    for _ in range(4):
        reset_hidden(model)
        loss = sum((model(x).mean() - 0.3) ** 2 for x in xs[:10])  # aim at a 30% spike rate
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(model[1].beta.detach(), betas[0]) and not torch.equal(
        model[3].beta.detach(), betas[1]
    )
    assert not torch.equal(model[1].threshold.detach(), thresholds[0])
    assert not torch.equal(model[3].threshold.detach(), thresholds[1])
    graph = to_ir(model, xs[0])
    np.testing.assert_array_equal(graph.nodes["1"].beta, model[1].beta.detach().clamp(0, 1).numpy())
    assert_same_spikes(run_hidden(model, xs), run_imported(graph, tmp_path, xs))


class ExplicitMem(nn.Module):
    """snnTorch tutorial style: membranes passed in and returned by forward."""

    def __init__(self, reset_mechanism: str = "subtract") -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.lif1 = snn.Leaky(beta=0.9, reset_mechanism=reset_mechanism)
        self.fc2 = nn.Linear(32, 10)
        self.lif2 = snn.Leaky(beta=0.8, reset_mechanism=reset_mechanism)

    def forward(self, x, mem1, mem2):
        spk1, mem1 = self.lif1(self.fc1(x), mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
        return spk2, mem1, mem2


@pytest.mark.parametrize("mechanism", ["subtract", "zero"])
def test_explicit_membrane_style(mechanism, tmp_path):
    torch.manual_seed(3)
    model = scaled(ExplicitMem(mechanism), 3.0)
    xs = binary_inputs((8, 20), seed=3)
    graph = to_ir(model, xs[0])
    assert graph.edges == [
        ("input", "fc1"),
        ("fc1", "lif1"),
        ("lif1", "fc2"),
        ("fc2", "lif2"),
        ("lif2", "output"),
    ]
    assert_same_spikes(run_explicit_state(model, xs), run_imported(graph, tmp_path, xs))


def conv_snn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        snn.Leaky(beta=0.8, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 10),
        snn.Leaky(beta=0.7, init_hidden=True),
    )


@pytest.mark.parametrize("sequence", [False, True], ids=["stepped", "run_sequence"])
def test_convolutional_snn(sequence, tmp_path):
    torch.manual_seed(4)
    model = scaled(conv_snn(), 2.5)
    with torch.no_grad():  # weights on a 1/64 grid: every sum of spikes is exact in any order
        for p in model.parameters():
            p.copy_(torch.round(p * 64) / 64)
    xs = binary_inputs((4, 1, 12, 12), seed=4)
    graph = to_ir(model, xs[0])
    assert [graph.nodes[n].TYPE for n in graph.topological_order()] == [
        "Input",
        "Conv2d",
        "LIF",
        "MaxPool2d",
        "Conv2d",
        "LIF",
        "MaxPool2d",
        "Flatten",
        "Affine",
        "LIF",
        "Output",
    ]
    if sequence:  # one conv over T*B images vs T over B: provably the same spikes
        assert_batching_independent(ir_to_torch(graph), xs)
    assert_same_spikes(run_hidden(model, xs), run_imported(graph, tmp_path, xs, sequence=sequence))


def test_training_through_an_imported_graph_reduces_the_loss():
    torch.manual_seed(5)
    model = scaled(mlp(beta=0.9), 2.0)
    xs = binary_inputs((16, 20), seed=5)
    executor = ir_to_torch(to_ir(model, xs[0]))
    target = torch.zeros(16, 10)
    target[:, :5] = 1.0  # first five neurons should fire, the rest stay quiet
    opt = torch.optim.Adam(executor.parameters(), lr=0.02)

    def loss_now():
        ys, _ = executor.run_sequence(xs[:15])
        return ((ys.mean(0) - target) ** 2).mean()

    first = loss_now().item()
    for _ in range(25):
        loss = loss_now()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss_now().item() < 0.7 * first
