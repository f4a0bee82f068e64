"""snnTorch's all-to-all RLeaky/RSynaptic -> to_ir -> .t1c -> ir_to_torch spike exactly as before.

The recurrent ``nn.Linear``/``nn.Conv2d`` is an ``Affine``/``Conv2d`` on a back edge
(docs/neurons.md, "Recurrent wiring"). Each test runs the snnTorch model and the imported
executor from a zero state, for hundreds of steps with a batch of 4, and requires 0
mismatching spikes; membranes and currents are compared bit for bit where the weights sit
on a dyadic grid (every sum order is then exact, so also the numpy references of
``tests/references`` agree bit for bit), and within rounding with torch's random weights.
Gradients through the back edge (BPTT) are compared with snnTorch's own.
"""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from references.snntorch_neurons import conv2d_feedback, linear_feedback, rleaky, rsynaptic
from references.t1c_neurons import cuba_lif
from test_fidelity import assert_same_spikes, run_explicit_state
from test_fidelity_cuba import (
    MECHANISMS,
    backward_both,
    imported,
    inputs,
    reset_all,
    run_snntorch,
    run_stepped,
)
from torch import nn

from t1c import ir
from t1c.bridge import CubaLIFModule
from t1c.bridge.convert.cuba import convert_rleaky, convert_rsynaptic
from t1c.bridge.exporter import ExportError, to_ir
from t1c.bridge.importer import ir_to_torch
from t1c.bridge.quantize import attach_integer_weights, ir_to_quantized, quantize_executor
from t1c.bridge.quantize.layers import QuantizedConv2d, QuantizedLinear
from t1c.bridge.registry import ExportContext, NodeGroup

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

STEPS = 256
GRID = 2.0**-6


def on_grid(model: nn.Module, gain: float = 1.0, grid: float | None = GRID) -> nn.Module:
    """Every Linear/Conv2d weight and bias times ``gain``, rounded to a multiple of ``grid``
    (None: not rounded): with binary inputs every partial sum is then exact, whatever order
    a BLAS sums in."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                for p in (m.weight, m.bias):
                    p.mul_(gain)
                    if grid is not None:
                        p.copy_(torch.round(p / grid) * grid)
    return model


def rleaky_layer(n: int, **kw) -> snn.RLeaky:
    return snn.RLeaky(beta=kw.pop("beta", 0.85), linear_features=n, init_hidden=True, **kw)


def rsynaptic_layer(n: int, **kw) -> snn.RSynaptic:
    return snn.RSynaptic(alpha=0.7, beta=kw.pop("beta", 0.85), linear_features=n, init_hidden=True, **kw)


def check_deep_mlp(neuron, seed: int, tmp_path) -> tuple[int, int]:
    """Linear -> recurrent -> Linear -> recurrent -> Linear -> Leaky, on the grid; the
    mismatching spikes of every layer's output (asserted 0) and their total."""
    torch.manual_seed(seed)
    model = on_grid(
        nn.Sequential(
            nn.Linear(20, 32),
            neuron(32),
            nn.Linear(32, 16),
            neuron(16),
            nn.Linear(16, 10),
            snn.Leaky(beta=0.9, init_hidden=True),
        ),
        gain=3.0,
    )
    xs = inputs((20,), seed, steps=STEPS)
    expected = run_snntorch(model, xs)
    graph = to_ir(model, xs[0])
    assert graph.allow_cycles and graph.cyclic
    got, _ = run_stepped(imported(graph, tmp_path), xs)
    assert 0.02 < expected.mean().item() < 0.98
    assert_same_spikes(expected, got)
    return int((expected != got).sum()), expected.numel()


@pytest.mark.parametrize("delay", [True, False])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_rleaky_all_to_all_spikes_identically(mechanism, delay, tmp_path):
    check_deep_mlp(lambda n: rleaky_layer(n, reset_mechanism=mechanism, reset_delay=delay), 0, tmp_path)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_rsynaptic_all_to_all_spikes_identically(mechanism, tmp_path):
    check_deep_mlp(lambda n: rsynaptic_layer(n, reset_mechanism=mechanism), 1, tmp_path)


def test_learned_per_neuron_beta_alpha_threshold(tmp_path):
    gen = torch.Generator().manual_seed(3)

    def learned(cls):
        def make(n):
            kw = (
                {"alpha": torch.rand(n, generator=gen) * 0.9, "learn_alpha": True}
                if cls is snn.RSynaptic
                else {}
            )
            return cls(
                beta=torch.rand(n, generator=gen) * 0.5 + 0.5,
                threshold=torch.rand(n, generator=gen) + 0.5,
                learn_beta=True,
                learn_threshold=True,
                linear_features=n,
                init_hidden=True,
                reset_mechanism="subtract",
                **kw,
            )

        return make

    for cls in (snn.RLeaky, snn.RSynaptic):
        check_deep_mlp(learned(cls), 2, tmp_path)


# -- states, against snnTorch and the numpy references ----------------------------------------
def states_of(layer: nn.Module) -> dict[str, torch.Tensor]:
    names = ("spk", "syn", "mem") if isinstance(layer, snn.RSynaptic) else ("spk", "mem")
    return {n: getattr(layer, n).clone() for n in names}


def one_layer(
    neuron: nn.Module, shape: tuple[int, ...], seed: int, grid: float | None = GRID, steps: int = STEPS
):
    """``fc -> neuron`` (a Conv2d for an image ``shape``), its inputs, snnTorch's states per
    step, and the imported executor's states per step (stepped, through a file)."""
    torch.manual_seed(seed)
    rec = neuron.recurrent
    fc = (
        nn.Conv2d(shape[0], rec.in_channels, 3, padding=1)
        if len(shape) == 3
        else nn.Linear(shape[0], rec.in_features)
    )
    model = on_grid(nn.Sequential(fc, neuron), gain=3.0, grid=grid)
    xs = inputs(shape, seed, steps=steps)
    graph = to_ir(model, xs[0])
    executor = ir_to_torch(graph)
    reset_all(model)
    theirs, ours, state = [], [], None
    with torch.no_grad():
        for x in xs:
            model(x)
            theirs.append(states_of(neuron))
            _, state = executor(x, state, return_state=True)
            syn, mem, spk = state["1"]
            ours.append({"spk": spk, "syn": syn, "mem": mem})
        currents = torch.stack([fc(x) for x in xs]).numpy()
    reset_all(model)
    stack = lambda seq, k: torch.stack([s[k] for s in seq]).numpy()  # noqa: E731
    return (
        model,
        graph,
        currents,
        {k: stack(theirs, k) for k in theirs[0]},
        {k: stack(ours, k) for k in ours[0]},
    )


def references(neuron: nn.Module, graph: ir.Graph, currents: np.ndarray, mechanism: str, delay: bool):
    """The snnTorch numpy reference and the T1C-IR numpy reference of ``graph``'s neuron."""
    rec = neuron.recurrent
    w, b = rec.weight.detach().numpy(), rec.bias.detach().numpy()
    feedback = conv2d_feedback(w, b) if isinstance(rec, nn.Conv2d) else linear_feedback(w, b)
    kw = {"threshold": neuron.threshold.detach().numpy(), "reset_mechanism": mechanism, "reset_delay": delay}
    beta = neuron.beta.detach().numpy()
    if isinstance(neuron, snn.RSynaptic):
        theirs = rsynaptic(currents, alpha=neuron.alpha.detach().numpy(), beta=beta, feedback=feedback, **kw)
    else:
        theirs = rleaky(currents, beta=beta, feedback=feedback, **kw)
    return theirs, cuba_lif(graph.nodes["1"], [currents], feedback=feedback)


KINDS = {
    "rleaky-linear": (lambda m, d: rleaky_layer(24, reset_mechanism=m, reset_delay=d), (12,)),
    "rleaky-conv": (
        lambda m, d: snn.RLeaky(
            beta=0.8, conv2d_channels=3, kernel_size=3, init_hidden=True, reset_mechanism=m, reset_delay=d
        ),
        (2, 5, 5),
    ),
    "rsynaptic-linear": (lambda m, d: rsynaptic_layer(24, reset_mechanism=m), (12,)),
    "rsynaptic-conv": (
        lambda m, d: snn.RSynaptic(
            alpha=0.6, beta=0.8, conv2d_channels=3, kernel_size=(3, 5), init_hidden=True, reset_mechanism=m
        ),
        (2, 5, 5),
    ),
}


STATE_CASES = [
    (kind, mechanism, delay)
    for kind in KINDS
    for mechanism in MECHANISMS
    for delay in ((True, False) if kind.startswith("rleaky") else (True,))  # RSynaptic: snnTorch fails
]


@pytest.mark.parametrize(("kind", "mechanism", "delay"), STATE_CASES)
def test_states_equal_snntorch_and_both_references_bit_for_bit(kind, mechanism, delay):
    make, shape = KINDS[kind]
    neuron = make(mechanism, delay)
    steps = 128 if len(shape) == 3 else STEPS  # the numpy convolution is slow
    _, graph, currents, theirs, ours = one_layer(neuron, shape, seed=4, steps=steps)
    ref, t1c_ref = references(neuron, graph, currents, mechanism, delay)
    assert 0.02 < theirs["spk"].mean() < 0.98
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=f"{name} vs snnTorch")
        np.testing.assert_array_equal(ours[name], ref[name], err_msg=f"{name} vs the snnTorch reference")
        np.testing.assert_array_equal(ours[name], t1c_ref[name], err_msg=f"{name} vs the CubaLIF reference")


def test_random_weights_spike_identically_and_stay_within_rounding_of_the_reference():
    """Off the grid, torch's matmul is the same in snnTorch and the executor (spikes and states
    bit for bit); the float64-summed reference differs by the summation-order bound only."""
    neuron = snn.RLeaky(beta=0.9, linear_features=48, init_hidden=True, reset_mechanism="subtract")
    _, graph, currents, theirs, ours = one_layer(neuron, (16,), seed=5, grid=None)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name])
    ref, _ = references(neuron, graph, currents, "subtract", True)
    flips = np.flatnonzero((ref["spk"] != ours["spk"]).reshape(STEPS, -1).any(axis=1))
    until = flips[0] if flips.size else STEPS  # a flipped spike sends the two apart
    assert until >= 50
    np.testing.assert_allclose(ours["mem"][:until], ref["mem"][:until], rtol=0, atol=1e-5)


# -- explicit state, convolutional and deeper networks ------------------------------------------
class ExplicitRecurrent(nn.Module):
    """snnTorch's explicit-state style: the caller hands each neuron its states back."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(10, 24), nn.Linear(24, 6)
        self.lif1 = snn.RLeaky(beta=0.9, linear_features=24, reset_mechanism="zero")
        self.lif2 = snn.RSynaptic(alpha=0.8, beta=0.9, linear_features=6)

    def forward(self, x, s1=None, s2=None):
        spk1, mem1 = s1 if s1 is not None else (None, None)
        spk2, syn2, mem2 = s2 if s2 is not None else (None, None, None)
        spk1, mem1 = self.lif1(self.fc1(x), spk1, mem1)
        spk2, syn2, mem2 = self.lif2(self.fc2(spk1), spk2, syn2, mem2)
        return spk2, (spk1, mem1), (spk2, syn2, mem2)


def test_explicit_state_style(tmp_path):
    torch.manual_seed(6)
    model = on_grid(ExplicitRecurrent(), gain=3.0)
    xs = inputs((10,), 6, steps=STEPS)
    graph = to_ir(model, xs[0])
    assert [n for n in graph.nodes if "recurrent" in n] == ["lif1.recurrent", "lif2.recurrent"]
    assert_same_spikes(run_explicit_state(model, xs), run_stepped(imported(graph, tmp_path), xs)[0])


def test_conv_feedback_in_a_deeper_network(tmp_path):
    """Conv2d -> RLeaky(conv) -> MaxPool -> Flatten -> Linear -> RSynaptic(linear) -> Linear -> Leaky."""
    torch.manual_seed(7)
    kernel = 5
    model = on_grid(
        nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1),
            snn.RLeaky(
                beta=0.8, conv2d_channels=4, kernel_size=kernel, init_hidden=True, reset_mechanism="zero"
            ),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 12),
            rsynaptic_layer(12),
            nn.Linear(12, 5),
            snn.Leaky(beta=0.9, init_hidden=True),
        ),
        gain=2.0,
    )
    xs = inputs((2, 8, 8), 7, steps=200)
    expected = run_snntorch(model, xs)
    graph = to_ir(model, xs[0])
    rec = graph.nodes["1.recurrent"]
    assert isinstance(rec, ir.Conv2d) and rec.padding.tolist() == [kernel // 2] * 2
    assert 0.02 < expected.mean().item() < 0.98
    assert_same_spikes(expected, run_stepped(imported(graph, tmp_path), xs)[0])
    with torch.no_grad():  # a recurrent graph is stepped by run_sequence too
        assert_same_spikes(expected, ir_to_torch(graph).run_sequence(xs)[0])


# -- training through the back edge ----------------------------------------------------------------
@pytest.mark.parametrize("cls", [snn.RLeaky, snn.RSynaptic])
def test_bptt_gradients_through_the_back_edge_equal_snntorchs(cls):
    torch.manual_seed(8)
    extra = {"alpha": torch.rand(16) * 0.5 + 0.4, "learn_alpha": True} if cls is snn.RSynaptic else {}
    neuron = cls(
        beta=torch.rand(16) * 0.4 + 0.5, learn_beta=True, linear_features=16, init_hidden=True, **extra
    )
    model = on_grid(nn.Sequential(nn.Linear(8, 16), neuron, nn.Linear(16, 4)), gain=2.0)
    xs = inputs((8,), 8, steps=100)
    learn = {"learn_beta": True, "learn_alpha": cls is snn.RSynaptic}
    executor = ir_to_torch(
        to_ir(model, xs[0]), node_map={ir.CubaLIF: lambda node: CubaLIFModule(node, **learn)}
    ).train()
    backward_both(model, executor, xs, 4)
    pairs = [
        (executor.module_for("0").weight, model[0].weight),
        (executor.module_for("1.recurrent").weight, neuron.recurrent.weight),
        (executor.module_for("1.recurrent").bias, neuron.recurrent.bias),
        (executor.module_for("1").beta, neuron.beta),
    ]
    if cls is snn.RSynaptic:
        pairs.append((executor.module_for("1").alpha, neuron.alpha))
    for ours, theirs in pairs:
        assert theirs.grad.abs().sum() > 0
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-5)


def test_reexport_keeps_topology_and_parameters_also_after_an_optimizer_step(tmp_path):
    torch.manual_seed(9)
    model = nn.Sequential(
        nn.Linear(6, 8),
        rleaky_layer(8, reset_mechanism="zero"),
        nn.Linear(8, 5),
        rsynaptic_layer(5),
    )
    xs = inputs((6,), 9, steps=20)
    graph = to_ir(model, xs[0])
    ir.write(tmp_path / "net.t1c", graph)
    for source in (graph, tmp_path / "net.t1c"):
        again = to_ir(ir_to_torch(source), None)
        assert again.allow_cycles and again.edges == graph.edges and list(again.nodes) == list(graph.nodes)
        assert again.content_hash() == graph.content_hash()
    executor = ir_to_torch(graph).train()
    optimizer = torch.optim.SGD(executor.parameters(), lr=0.5)
    ys, _ = executor.run_sequence(xs)
    (ys * torch.randn(5)).sum().backward()
    optimizer.step()
    trained = to_ir(executor, None)
    assert ir.topology_diff(graph, trained) == [] and trained.content_hash() != graph.content_hash()
    np.testing.assert_array_equal(
        trained.nodes["1.recurrent"].weight, executor.module_for("1.recurrent").weight.detach().numpy()
    )
    assert to_ir(ir_to_torch(trained), None).content_hash() == trained.content_hash()


# -- quantized simulation --------------------------------------------------------------------------
def on_weight_grid(model: nn.Module, bits: int = 8) -> nn.Module:
    """Weights ``k * 2**-5`` with the largest ``|k| = 2**(bits-1) - 1``: the quantization grid itself."""
    q = 2 ** (bits - 1) - 1
    gen = torch.Generator().manual_seed(10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                k = torch.randint(-q // 3, q // 3 + 1, m.weight.shape, generator=gen).float()
                k.view(-1)[0] = q
                m.weight.copy_(k * 2.0**-5 / 4)
                m.bias.copy_(torch.randint(-8, 9, m.bias.shape, generator=gen).float() * 2.0**-7)
    return model


@pytest.mark.parametrize("conv", [False, True])
def test_the_back_edge_synapse_is_quantized_like_any_other(conv, tmp_path):
    torch.manual_seed(11)
    if conv:
        layers = [
            nn.Conv2d(2, 3, 3, padding=1),
            snn.RLeaky(beta=0.8, conv2d_channels=3, kernel_size=3, init_hidden=True),
        ]
        shape = (2, 6, 6)
    else:
        layers = [nn.Linear(12, 16), rsynaptic_layer(16)]
        shape = (12,)
    model = on_weight_grid(nn.Sequential(*layers))
    xs = inputs(shape, 11, steps=120)
    graph = to_ir(model, xs[0])
    float_spikes = run_stepped(ir_to_torch(graph), xs)[0]
    twin = quantize_executor(ir_to_torch(graph), weight_bits=8)
    assert isinstance(twin.module_for("1.recurrent"), QuantizedConv2d if conv else QuantizedLinear)
    with_ints = attach_integer_weights(graph, weight_bits=8)
    assert with_ints.allow_cycles and with_ints.nodes["1.recurrent"].weight_int is not None
    ir.write(tmp_path / "q.t1c", with_ints)
    from_file = ir_to_quantized(ir.read(tmp_path / "q.t1c"), weight_bits=8)
    assert isinstance(from_file.module_for("1.recurrent"), QuantizedConv2d if conv else QuantizedLinear)
    assert 0.02 < float_spikes.mean().item() < 0.98
    # the weights lie on the 8-bit grid: the integer simulation computes the float model exactly
    assert_same_spikes(float_spikes, run_stepped(twin, xs)[0])
    assert_same_spikes(float_spikes, run_stepped(from_file, xs)[0])


# -- the wiring, and what is refused -----------------------------------------------------------------
def test_the_wiring_is_docs_neurons_md():
    model = nn.Sequential(nn.Linear(3, 4), rleaky_layer(4), nn.Linear(4, 2))
    graph = to_ir(model, torch.rand(2, 3))
    assert list(graph.nodes) == ["input", "0", "1.recurrent", "1", "2", "output"]
    assert graph.edges == [
        ("input", "0"),
        ("0", "1"),
        ("1.recurrent", "1"),
        ("1", "1.recurrent"),
        ("1", "2"),
        ("2", "output"),
    ]
    np.testing.assert_array_equal(graph.nodes["1.recurrent"].bias, model[1].recurrent.bias.detach().numpy())
    executor = ir_to_torch(graph)
    assert executor.is_recurrent
    # step 0: the back edge carries zero spikes, so the recurrent Affine gives its bias, as snnTorch
    with torch.no_grad():
        _, state = executor(torch.zeros(1, 3), return_state=True)
    expected = model[0](torch.zeros(1, 3)) + model[1].recurrent.bias
    torch.testing.assert_close(state["1"][1], expected.detach(), rtol=0, atol=0)


def test_acyclic_exports_are_not_marked_recurrent():
    one_to_one = nn.Sequential(
        nn.Linear(3, 4), snn.RLeaky(beta=0.9, all_to_all=False, V=0.5, init_hidden=True)
    )
    assert not to_ir(one_to_one, torch.rand(2, 3)).allow_cycles

    class Pair(nn.Module):  # a user's module exported as two wired nodes without a cycle
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(self.fc(x))

    def two_layers(module):
        affine = ir.Affine(weight=module.fc.weight.detach().numpy(), bias=module.fc.bias.detach().numpy())
        return NodeGroup({"first": affine, "second": affine}, main="first", edges=(("first", "second"),))

    graph = to_ir(nn.Sequential(Pair()), torch.rand(2, 3), custom_map={Pair: two_layers})
    assert not graph.allow_cycles and list(graph.nodes) == ["input", "0", "0.second", "output"]


def test_recurrent_configurations_without_an_exact_form_are_refused_by_name():
    ctx = ExportContext(path="1", output_shape=(4, 6, 6))
    for k in (2, (3, 4)):
        even = snn.RLeaky(beta=0.9, conv2d_channels=4, kernel_size=k, init_hidden=True)
        with pytest.raises(ExportError, match=r"`1` \(RLeaky\): an even kernel_size .*snnTorch itself fails"):
            convert_rleaky(even, ctx)
    with pytest.raises(ExportError, match="sample forward pass"):  # snnTorch's forward fails first
        to_ir(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), even), torch.rand(2, 1, 6, 6))
    # snnTorch's own forward fails with reset_delay=False (docs/neurons.md); the converter refuses it anyway
    for kw in ({"all_to_all": False, "V": 0.5}, {"linear_features": 4}):
        undelayed = snn.RSynaptic(alpha=0.9, beta=0.8, reset_delay=False, **kw)
        with pytest.raises(ExportError, match=r"reset_delay=False \(snnTorch itself fails"):
            convert_rsynaptic(undelayed, ExportContext(path="1", output_shape=(4,)))
    odd = rleaky_layer(4)
    odd.recurrent = nn.Identity()
    with pytest.raises(ExportError, match=r"a recurrent Identity"):
        convert_rleaky(odd, ExportContext(path="1", output_shape=(4,)))
