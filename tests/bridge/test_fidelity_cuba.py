"""snnTorch's Synaptic, Lapicque and Alpha -> to_ir -> .t1c -> ir_to_torch spike exactly as before.

Beside ``test_fidelity.py`` (Leaky): each test runs the snnTorch model and the imported
executor on the same inputs from a zero state, for hundreds of steps with a batch of 4,
and requires 0 mismatching spikes; states are compared too (bit for bit when stepped,
within rounding through ``run_sequence``, whose matmuls over ``T * B`` rows may round
otherwise). Gradients through the synaptic state are compared with snnTorch's own.
"""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from test_fidelity import assert_same_spikes, run_explicit_state, scaled
from torch import nn

from t1c import ir
from t1c.bridge.exporter import ExportError, to_ir
from t1c.bridge.importer import ir_to_torch

STEPS, BATCH = 200, 4
MECHANISMS = ("subtract", "zero", "none")


def inputs(shape: tuple[int, ...], seed: int = 0, steps: int = STEPS) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, BATCH, *shape, generator=gen) < 0.4).float()


def reset_all(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()


def backward_both(model: nn.Module, executor: nn.Module, xs: torch.Tensor, outputs: int) -> None:
    """BPTT through the hidden-state snnTorch ``model`` and the imported ``executor`` on ``xs``,
    the loss a random readout of their ``outputs`` spikes summed over time (from the zero state)."""
    readout = torch.randn(outputs)
    reset_all(model)
    model.train()
    (torch.stack([model(x) for x in xs]) * readout).sum().backward()
    ys, _ = executor.run_sequence(xs)
    (ys * readout).sum().backward()
    reset_all(model)


def run_snntorch(model: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    reset_all(model)
    with torch.no_grad():
        out = torch.stack([model(x) for x in xs])
    reset_all(model)
    return out


def imported(graph: ir.Graph, tmp_path) -> nn.Module:
    path = tmp_path / "model.t1c"
    ir.write(path, graph)
    return ir_to_torch(ir.read(path))


def run_stepped(executor: nn.Module, xs: torch.Tensor) -> tuple[torch.Tensor, dict]:
    state, out = None, []
    with torch.no_grad():
        for x in xs:
            y, state = executor(x, state, return_state=True)
            out.append(y)
    return torch.stack(out), state


def check_mlp(neuron, tmp_path, gain: float = 3.0, seed: int = 0) -> None:
    """Linear -> neuron -> Linear -> neuron: spikes stepped and through run_sequence."""
    torch.manual_seed(seed)
    model = scaled(nn.Sequential(nn.Linear(20, 32), neuron(), nn.Linear(32, 10), neuron()), gain)
    xs = inputs((20,), seed)
    expected = run_snntorch(model, xs)
    executor = imported(to_ir(model, xs[0]), tmp_path)
    assert_same_spikes(expected, run_stepped(executor, xs)[0])
    with torch.no_grad():
        assert_same_spikes(expected, executor.run_sequence(xs)[0])


# -- Synaptic ----------------------------------------------------------------------------------
@pytest.mark.parametrize("delay", [True, False])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_synaptic_spikes_identically_for_every_reset(mechanism, delay, tmp_path):
    check_mlp(
        lambda: snn.Synaptic(
            alpha=0.8, beta=0.9, init_hidden=True, reset_mechanism=mechanism, reset_delay=delay
        ),
        tmp_path,
    )


def test_synaptic_current_and_membrane_equal_snntorch(tmp_path):
    """After Linear: the executor's (syn, mem) equal snnTorch's at every step, bit for bit;
    through run_sequence within rounding."""
    torch.manual_seed(1)
    fc = scaled(nn.Linear(12, 16), 2.0)
    lif = snn.Synaptic(alpha=0.7, beta=0.85, reset_mechanism="zero", init_hidden=False)
    xs = inputs((12,), 1)
    executor = ir_to_torch(
        to_ir(
            nn.Sequential(fc, snn.Synaptic(alpha=0.7, beta=0.85, reset_mechanism="zero", init_hidden=True)),
            xs[0],
        )
    )
    syn, mem = lif.reset_mem()
    state = None
    spikes = []
    with torch.no_grad():
        for x in xs:
            spk, syn, mem = lif(fc(x), syn, mem)
            y, state = executor(x, state, return_state=True)
            got_syn, got_mem, _ = state["1"]
            assert torch.equal(y, spk) and torch.equal(got_syn, syn) and torch.equal(got_mem, mem)
            spikes.append(spk)
        _, seq_state = executor.run_sequence(xs)
    assert 0.02 < torch.stack(spikes).mean().item() < 0.98
    assert torch.allclose(seq_state["1"][0], syn, atol=1e-5) and torch.allclose(
        seq_state["1"][1], mem, atol=1e-5
    )


def test_per_neuron_learned_alpha_beta_threshold(tmp_path):
    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(3)

    def neuron():
        lif = snn.Synaptic(
            alpha=torch.rand(32, generator=gen) * 0.9,
            beta=torch.rand(32, generator=gen) * 0.5 + 0.5,
            threshold=torch.rand(32, generator=gen) + 0.5,
            learn_alpha=True,
            learn_beta=True,
            learn_threshold=True,
            init_hidden=True,
            reset_mechanism="subtract",
        )
        return lif

    torch.manual_seed(2)
    model = scaled(nn.Sequential(nn.Linear(20, 32), neuron()), 3.0)
    assert isinstance(model[1].alpha, nn.Parameter)
    xs = inputs((20,), 2)
    expected = run_snntorch(model, xs)
    graph = to_ir(model, xs[0])
    np.testing.assert_array_equal(graph.nodes["1"].alpha, model[1].alpha.detach().clamp(0, 1).numpy())
    assert_same_spikes(expected, run_stepped(imported(graph, tmp_path), xs)[0])


class ExplicitState(nn.Module):
    """snnTorch's explicit-state style: the caller hands each neuron its state back."""

    def __init__(self, restart: bool = False) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(10, 24), nn.Linear(24, 6)
        self.lif1 = snn.Synaptic(alpha=0.9, beta=0.8, reset_mechanism="zero")
        self.lif2 = snn.Synaptic(alpha=0.6, beta=0.95)
        self.restart = restart

    def forward(self, x, state1=None, state2=None):
        if self.restart:
            state1 = self.lif1.reset_mem()
        syn1, mem1 = state1 if state1 is not None else (None, None)
        syn2, mem2 = state2 if state2 is not None else (None, None)
        spk1, syn1, mem1 = self.lif1(self.fc1(x), syn1, mem1)
        spk2, syn2, mem2 = self.lif2(self.fc2(spk1), syn2, mem2)
        return spk2, (syn1, mem1), (syn2, mem2)


def test_explicit_state_style(tmp_path):
    torch.manual_seed(4)
    model = scaled(ExplicitState(), 3.0)
    xs = inputs((10,), 4)
    graph = to_ir(model, xs[0])
    assert [type(n).__name__ for n in graph.nodes.values()].count("CubaLIF") == 2
    assert_same_spikes(run_explicit_state(model, xs), run_stepped(imported(graph, tmp_path), xs)[0])


def test_a_synaptic_restarted_at_every_call_is_refused():
    model = scaled(ExplicitState(restart=True), 3.0)
    with pytest.raises(ExportError, match=r"lif1.*zero membrane"):
        to_ir(model, torch.rand(2, 10))


@pytest.mark.parametrize("sequence", [False, True])
def test_convolutional_synaptic_network(sequence, tmp_path):
    """Conv2d -> Synaptic -> MaxPool -> Flatten -> Linear -> Synaptic."""
    torch.manual_seed(5)
    model = scaled(
        nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1),
            snn.Synaptic(alpha=0.7, beta=0.9, init_hidden=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 10),
            snn.Synaptic(alpha=0.5, beta=0.8, init_hidden=True, reset_mechanism="zero", reset_delay=False),
        ),
        2.0,
    )
    xs = inputs((2, 8, 8), 5, steps=200)
    expected = run_snntorch(model, xs)
    executor = imported(to_ir(model, xs[0]), tmp_path)
    if sequence:
        with torch.no_grad():
            got = executor.run_sequence(xs)[0]
        # run_sequence's convolution over T*B samples may round otherwise; report, allow none here
        assert_same_spikes(expected, got)
    else:
        assert_same_spikes(expected, run_stepped(executor, xs)[0])


def test_gradients_through_the_synaptic_state_equal_snntorchs():
    """BPTT through 60 steps: the imported executor's weight gradients equal snnTorch's."""
    torch.manual_seed(6)
    model = scaled(
        nn.Sequential(
            nn.Linear(8, 12),
            snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True, reset_delay=False),
            nn.Linear(12, 4),
            snn.Synaptic(alpha=0.6, beta=0.7, init_hidden=True, reset_mechanism="zero"),
        ),
        2.0,
    )
    xs = inputs((8,), 6, steps=60)
    executor = ir_to_torch(to_ir(model, xs[0])).train()
    backward_both(model, executor, xs, 4)
    for name, theirs in (("0", model[0]), ("2", model[2])):
        ours = executor.module_for(name)
        assert theirs.weight.grad.abs().sum() > 0
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-5)


def test_reexport_of_the_imported_executor_keeps_topology_and_parameters():
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Linear(6, 5),
        snn.Synaptic(alpha=torch.rand(5), beta=0.9, threshold=torch.rand(5) + 0.5, init_hidden=True),
        nn.Linear(5, 3),
        snn.Alpha(alpha=0.9, beta=0.8, init_hidden=True, reset_mechanism="subtract"),
        nn.Linear(3, 2),
        snn.Lapicque(beta=0.9, init_hidden=True, reset_mechanism="zero"),
    )
    graph = to_ir(model, torch.rand(2, 6))
    again = to_ir(ir_to_torch(graph), None)
    assert ir.topology_diff(graph, again) == []
    assert again.content_hash() == graph.content_hash()


# -- Lapicque ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "mechanism"),
    [
        ({"beta": 0.9}, "subtract"),
        ({"beta": 0.9}, "zero"),
        ({"beta": 0.9}, "none"),
        ({"beta": 0.8, "R": 2.0}, "zero"),
        ({"R": 0.5, "C": 3.0, "time_step": 0.25}, "subtract"),
        ({"R": 1, "C": 7.0}, "zero"),
    ],
)
def test_lapicque_spikes_identically(params, mechanism, tmp_path):
    check_mlp(
        lambda: snn.Lapicque(**params, threshold=0.25, init_hidden=True, reset_mechanism=mechanism),
        tmp_path,
        gain=15.0,
    )


def test_lapicque_is_not_a_leaky_of_the_same_beta():
    graph = to_ir(nn.Sequential(nn.Linear(3, 2), snn.Lapicque(beta=0.9, init_hidden=True)), torch.rand(1, 3))
    node = graph.nodes["1"]
    assert isinstance(node, ir.CubaLIF) and node.alpha is None and node.reset_delay is True
    assert node.beta[0] != np.float32(0.9)  # 1 + log(0.9), as snnTorch's forward computes it


@pytest.mark.parametrize(
    ("params", "what"),
    [
        ({"R": 3.0, "C": 5.0}, r"R=3 \(not a power of two"),
        ({"R": 1.0, "C": 5.0, "time_step": 0.3}, r"time_step=0.3"),
        ({"beta": 0.2}, r"outside \[0, 1\]"),
        ({"beta": 0.9, "inhibition": True}, "inhibition=True"),
    ],
)
def test_lapicque_without_an_exact_form_is_refused_by_name(params, what):
    model = nn.Sequential(nn.Linear(3, 2), snn.Lapicque(**params, init_hidden=True))
    with pytest.raises(ExportError, match=what):
        to_ir(model, torch.rand(2, 3))


# -- Alpha -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_alpha_spikes_identically(mechanism, tmp_path):
    check_mlp(
        lambda: snn.Alpha(alpha=0.9, beta=0.8, threshold=0.5, init_hidden=True, reset_mechanism=mechanism),
        tmp_path,
        gain=5.0,
    )


def test_alpha_per_neuron_and_close_decays(tmp_path):
    """alpha close to beta: tau is large and its float32 log rounding matters; stored, not recomputed."""
    gen = torch.Generator().manual_seed(8)
    beta = torch.rand(32, generator=gen) * 0.5 + 0.3
    torch.manual_seed(8)
    lif = snn.Alpha(alpha=beta + 0.01, beta=beta, threshold=0.5, init_hidden=True, learn_beta=True)
    model = scaled(nn.Sequential(nn.Linear(20, 32), lif), 2.0)
    xs = inputs((20,), 8)
    expected = run_snntorch(model, xs)
    graph = to_ir(model, xs[0])
    assert graph.nodes["1"].tau.max() > 10
    assert_same_spikes(expected, run_stepped(imported(graph, tmp_path), xs)[0])


def test_synaptic_options_without_an_exact_form_are_refused_by_name():
    for kwargs, what in (
        ({"inhibition": True}, "inhibition=True"),
        ({"state_quant": lambda m: m}, "state_quant"),
    ):
        model = nn.Sequential(nn.Linear(3, 2), snn.Synaptic(alpha=0.5, beta=0.5, init_hidden=True, **kwargs))
        with pytest.raises(ExportError, match=rf"Synaptic.*{what}.*CubaLIF"):
            to_ir(model, torch.rand(2, 3))


# -- RLeaky / RSynaptic, one-to-one (all_to_all=False) -------------------------------------------
@pytest.mark.parametrize("delay", [True, False])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_one_to_one_rleaky_spikes_identically(mechanism, delay, tmp_path):
    gen = torch.Generator().manual_seed(9)
    sizes = iter((32, 10))
    check_mlp(
        lambda: snn.RLeaky(
            beta=0.85,
            all_to_all=False,
            V=torch.rand(next(sizes), generator=gen) - 0.5,
            init_hidden=True,
            reset_mechanism=mechanism,
            reset_delay=delay,
        ),
        tmp_path,
    )


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_one_to_one_rsynaptic_spikes_identically(mechanism, tmp_path):
    check_mlp(
        lambda: snn.RSynaptic(
            alpha=0.7, beta=0.85, all_to_all=False, V=-0.25, init_hidden=True, reset_mechanism=mechanism
        ),
        tmp_path,
    )


class ExplicitRecurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 12)
        self.lif = snn.RLeaky(beta=0.9, all_to_all=False, V=0.5)

    def forward(self, x, spk=None, mem=None):
        spk, mem = self.lif(self.fc(x), spk, mem)
        return spk, mem


def test_one_to_one_rleaky_explicit_state_and_gradients(tmp_path):
    """The caller hands RLeaky its spikes and membrane back; BPTT gradients (weights and V)
    equal snnTorch's."""
    torch.manual_seed(10)
    model = scaled(ExplicitRecurrent(), 3.0)
    xs = inputs((10,), 10, steps=80)
    executor = ir_to_torch(to_ir(model, xs[0])).train()
    readout = torch.randn(12)
    spk = mem = None
    out = []
    for x in xs:
        spk, mem = model(x, spk, mem)
        out.append(spk)
    expected = torch.stack(out)
    (expected * readout).sum().backward()
    ys, _ = executor.run_sequence(xs)
    (ys * readout).sum().backward()
    assert_same_spikes(expected.detach(), ys.detach())
    torch.testing.assert_close(
        executor.module_for("fc").weight.grad, model.fc.weight.grad, rtol=1e-4, atol=1e-5
    )
    ours, theirs = executor.module_for("lif").w_rec.grad, model.lif.recurrent.V.grad
    torch.testing.assert_close(ours.sum(), theirs.sum(), rtol=1e-4, atol=1e-5)  # V is one shared scalar


def test_current_based_neurons_are_the_snn_part_of_a_hybrid_graph():
    model = nn.Sequential(
        nn.Linear(4, 4),
        nn.Sigmoid(),
        nn.Linear(4, 3),
        snn.Synaptic(alpha=0.5, beta=0.5, init_hidden=True),
        nn.Linear(3, 3),
        snn.Alpha(alpha=0.5, beta=0.4, init_hidden=True),
    )
    graph = to_ir(model, torch.rand(2, 4), hybrid=True)
    modes = {name: r.mode for r in ir.regions(graph) for name in r.nodes}
    assert modes["3"] == modes["5"] == modes["2"] == "snn" and modes["1"] == "ann"
