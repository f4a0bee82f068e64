"""CubaLIFModule and AlphaLIFModule against the numpy references, not only against our executor.

``references.t1c_neurons`` transcribes the nodes' equations from docs/neurons.md;
``references.snntorch_neurons`` transcribes snnTorch's forwards from its source. The
modules must equal both, bit for bit, in every form (exact and plain, current stage or
not, input gain, one-to-one recurrence, several inputs added in edge order).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from references import snntorch_neurons as snn_ref
from references.t1c_neurons import alpha_lif, cuba_lif

from t1c import ir
from t1c.bridge import AlphaLIFModule, CubaLIFModule, ir_to_torch

T, B, N = 256, 4, 16
RNG = np.random.default_rng(0)
XS = RNG.uniform(-0.5, 0.6, (T, B, N)).astype(np.float32)
X2 = RNG.uniform(-0.3, 0.3, (T, B, N)).astype(np.float32)
ONES = np.ones(N, np.float32)


def cuba(**fields) -> ir.CubaLIF:
    base = {
        "tau_syn": 5 * ONES,
        "tau_mem": 10 * ONES,
        "r": 10 * ONES,
        "v_leak": 0 * ONES,
        "v_threshold": ONES,
        "w_in": 5 * ONES,
    }
    base.update(fields)
    return ir.CubaLIF(**base)


def run(module, *inputs: np.ndarray, sequence: bool = False) -> dict[str, np.ndarray]:
    xs = [torch.from_numpy(x) for x in inputs]
    with torch.no_grad():
        if sequence:
            spikes, _ = module.forward_sequence(xs)
            return {"spk": spikes.numpy()}
        state, out = None, {"spk": [], "a": [], "b": []}
        for t in range(T):
            s, state = module([x[t] for x in xs], state)
            out["spk"].append(s.numpy())
            out["a"].append(state[0].numpy())
            out["b"].append(state[-1 if isinstance(module, AlphaLIFModule) else 1].numpy())
    return {k: np.stack(v) for k, v in out.items()}


EXACT = {
    "alpha": RNG.uniform(0.5, 0.95, N).astype(np.float32),
    "beta": RNG.uniform(0.6, 0.99, N).astype(np.float32),
}
FORMS = {
    "synaptic": {**EXACT},
    "no current, gain": {"beta": EXACT["beta"], "input_gain": RNG.uniform(0.2, 1.5, N).astype(np.float32)},
    "one-to-one": {**EXACT, "w_rec": RNG.uniform(-0.5, 0.5, N).astype(np.float32)},
    "plain": {},
    "plain one-to-one": {"w_rec": RNG.uniform(-0.5, 0.5, N).astype(np.float32)},
}


@pytest.mark.parametrize("delay", [None, True])
@pytest.mark.parametrize("mechanism", ["subtract", "zero", "none"])
@pytest.mark.parametrize("form", list(FORMS))
def test_cubalif_module_equals_the_node_reference(form, mechanism, delay):
    node = cuba(**FORMS[form], reset_mechanism=mechanism, reset_delay=delay, v_threshold=0.5 * ONES)
    expected = cuba_lif(node, [XS, X2])
    got = run(CubaLIFModule.from_node(node), XS, X2)
    assert 0.02 < expected["spk"].mean() < (0.998 if mechanism == "none" else 0.98)  # "none" saturates
    np.testing.assert_array_equal(got["spk"], expected["spk"])
    np.testing.assert_array_equal(got["a"], expected["syn"])
    np.testing.assert_array_equal(got["b"], expected["mem"])
    np.testing.assert_array_equal(
        run(CubaLIFModule.from_node(node), XS, X2, sequence=True)["spk"], expected["spk"]
    )


@pytest.mark.parametrize("delay", [True, False])
@pytest.mark.parametrize("mechanism", ["subtract", "zero", "none"])
def test_cubalif_module_equals_snntorchs_synaptic_from_its_source(mechanism, delay):
    alpha, beta = EXACT["alpha"], EXACT["beta"]
    expected = snn_ref.synaptic(
        XS, alpha=alpha, beta=beta, threshold=0.5, reset_mechanism=mechanism, reset_delay=delay
    )
    with np.errstate(divide="ignore"):
        node = cuba(
            alpha=alpha, beta=beta, v_threshold=0.5 * ONES, reset_mechanism=mechanism, reset_delay=delay
        )
    got = run(CubaLIFModule.from_node(node), XS)
    np.testing.assert_array_equal(got["spk"], expected["spk"])
    np.testing.assert_array_equal(got["a"], expected["syn"])
    np.testing.assert_array_equal(got["b"], expected["mem"])


@pytest.mark.parametrize("mechanism", ["subtract", "zero", "none"])
def test_alphalif_module_equals_the_references(mechanism):
    alpha, beta = EXACT["beta"], EXACT["beta"] * np.float32(0.8)
    tau = snn_ref.alpha_tau(alpha, beta)
    node = ir.AlphaLIF(alpha=alpha, beta=beta, tau=tau, v_threshold=0.3 * ONES, reset_mechanism=mechanism)
    expected = alpha_lif(node, XS + X2)
    source = snn_ref.alpha_neuron(XS + X2, alpha=alpha, beta=beta, threshold=0.3, reset_mechanism=mechanism)
    got = run(AlphaLIFModule.from_node(node), XS + X2)
    assert 0.02 < expected["spk"].mean() < 0.98
    for ref in (expected, source):
        np.testing.assert_array_equal(got["spk"], ref["spk"])
        np.testing.assert_array_equal(got["a"], ref["exc"])
        np.testing.assert_array_equal(got["b"], ref["mem"])


def test_the_executor_hands_a_cubalif_its_inputs_in_edge_order():
    """Two Affine inputs: the exact form adds them one at a time after the decayed current,
    as the node says (not their sum first); the reference fixes the order."""
    w1, w2 = np.eye(N, dtype=np.float32), np.eye(N, dtype=np.float32)
    node = cuba(**EXACT, v_threshold=0.5 * ONES)
    nodes = {
        "input": ir.Input(input_type={"input": np.array([2 * N])}),
        "a": ir.Affine(weight=np.hstack([w1, 0 * w1]), bias=np.zeros(N)),
        "b": ir.Affine(weight=np.hstack([0 * w2, w2]), bias=np.zeros(N)),
        "lif": node,
        "output": ir.Output(),
    }
    edges = [("input", "a"), ("input", "b"), ("a", "lif"), ("b", "lif"), ("lif", "output")]
    executor = ir_to_torch(ir.Graph(nodes, edges))
    xs = torch.from_numpy(np.concatenate([XS, X2], axis=-1))
    expected = cuba_lif(node, [XS, X2])
    with torch.no_grad():
        ys, state = executor.run_sequence(xs)
    np.testing.assert_array_equal(ys.numpy(), expected["spk"])
    np.testing.assert_array_equal(state["lif"][0].numpy(), expected["syn"][-1])
    summed = cuba_lif(node, [XS + X2])
    assert not np.array_equal(summed["syn"], expected["syn"])  # the order is visible


def test_to_node_from_node_round_trip_and_learned_decays():
    node = cuba(**FORMS["one-to-one"], reset_mechanism="subtract", reset_delay=True)
    module = CubaLIFModule.from_node(node)
    assert ir.Graph.from_chain(
        ir.Input(input_type={"input": [N]}), module.to_node(), ir.Output()
    ).content_hash() == (
        ir.Graph.from_chain(ir.Input(input_type={"input": [N]}), node, ir.Output()).content_hash()
    )
    assert isinstance(module.w_rec, torch.nn.Parameter)
    learning = CubaLIFModule.from_node(node, learn_alpha=True, learn_beta=True, learn_threshold=True)
    with torch.no_grad():
        learning.alpha.fill_(0.5)
        learning.beta.fill_(1.5)  # clamped to 1, as the forward uses it
    trained = learning.to_node()
    np.testing.assert_array_equal(trained.tau_syn, 2 * ONES)
    np.testing.assert_array_equal(trained.w_in, 2 * ONES)
    assert np.isposinf(trained.tau_mem).all() and (trained.beta == 1).all()


def test_modules_refuse_what_they_cannot_run():
    with pytest.raises(ValueError, match="no alpha to learn"):
        CubaLIFModule.from_node(cuba(), learn_alpha=True)
    with pytest.raises(TypeError, match="needs an ir.CubaLIF"):
        CubaLIFModule.from_node(ir.AlphaLIF(alpha=ONES / 2, beta=ONES / 4, tau=ONES, v_threshold=ONES))
    with pytest.raises(ValueError, match=r"expects \[B, 16\]"):
        CubaLIFModule.from_node(cuba())(torch.zeros(2, 3))


def test_gradient_flows_through_the_synaptic_current_to_alpha():
    module = CubaLIFModule.from_node(cuba(**EXACT, v_threshold=0.5 * ONES), learn_alpha=True)
    spikes, _ = module.forward_sequence(torch.from_numpy(XS[:50]))
    spikes.sum().backward()
    assert module.alpha.grad is not None and module.alpha.grad.abs().sum() > 0


# -- the decays are computed once and follow every parameter update ---------------------------------
@pytest.mark.parametrize("form", ["exact", "plain"])
def test_cached_decays_are_reused_while_the_parameters_are_unchanged(form):
    module = CubaLIFModule.from_node(cuba(**EXACT) if form == "exact" else cuba())
    with torch.no_grad():
        first = module._coefficients()
        assert all(a is b for a, b in zip(module._coefficients(), first))  # cached
        (module.beta if form == "exact" else module.tau_mem).mul_(0.5)  # in place: a new version
        assert module._coefficients()[1] is not first[1]


def test_an_optimizer_step_on_the_decays_is_seen_by_the_next_call():
    node = cuba(alpha=0.5 * ONES, beta=0.5 * ONES, v_threshold=100 * ONES)
    module = CubaLIFModule.from_node(node, learn_alpha=True, learn_beta=True)
    x, state = torch.ones(1, N), (torch.ones(1, N), torch.ones(1, N), torch.zeros(1, N))

    def membrane(m: CubaLIFModule) -> torch.Tensor:
        with torch.no_grad():
            return m(x, state)[1][1]

    before = membrane(module)  # the decays cached (no gradient recorded)
    _, (_, v, _) = module(x, state)
    v.sum().backward()  # recorded: computed afresh, so the gradient reaches alpha and beta
    assert (module.alpha.grad > 0).all() and (module.beta.grad > 0).all()
    torch.optim.SGD(module.parameters(), lr=0.1).step()  # updates them in place
    after = membrane(module)
    assert not torch.equal(after, before)
    assert torch.equal(after, membrane(CubaLIFModule.from_node(module.to_node())))  # a module without a cache


SEQUENCE_MODULES = {
    "cuba": lambda: CubaLIFModule.from_node(cuba(**EXACT)),
    "alpha": lambda: AlphaLIFModule.from_node(
        ir.AlphaLIF(alpha=ONES * 0.9, beta=ONES * 0.8, tau=ONES * 1.89, v_threshold=ONES)
    ),
}


@pytest.mark.parametrize("kind", sorted(SEQUENCE_MODULES))
def test_forward_sequence_takes_the_steps_apart_once(kind):
    """One unbind, whose backward stacks the steps' gradients once; indexing each step would
    give each its own zero-filled [T, B, ...] gradient, a backward pass quadratic in T."""
    xs = torch.from_numpy(XS[:20]).requires_grad_(True)
    spikes, _ = SEQUENCE_MODULES[kind]().forward_sequence(xs)
    seen, todo = set(), [spikes.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is not None and fn not in seen:
            seen.add(fn)
            todo.extend(f for f, _ in fn.next_functions)
    names = {type(fn).__name__ for fn in seen}
    assert "UnbindBackward0" in names and "SelectBackward0" not in names, names
