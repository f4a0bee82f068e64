"""The t1c modules: LIF semantics against a literal reference, surrogates, IR round trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from t1c import ir
from t1c.bridge import LIFModule, SepConv2dModule, SkipModule, SpikingAffineModule

N = 10


def plain_node(**kw) -> ir.LIF:
    rng = np.random.default_rng(0)
    return ir.LIF(
        tau=rng.uniform(2, 12, N),
        r=rng.uniform(1, 4, N),
        v_leak=rng.uniform(-0.1, 0.2, N),
        v_threshold=rng.uniform(0.5, 1.2, N),
        **kw,
    )


def reference_lif(node: ir.LIF, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """docs/lif_extensions.md's plain-update algorithm, literally, in float32 numpy."""
    f = np.float32
    beta = f(1) - f(1) / node.tau
    thr = node.v_threshold
    mech = node.reset_mechanism or "zero"
    ge = (lambda x: x > 0) if node.strict_threshold else (lambda x: x >= 0)
    v = np.zeros(xs.shape[1:], f)
    spikes, mems = [], []
    for i in xs:
        if node.reset_delay:
            reset = ge(v - thr).astype(f)
            if mech == "zero":
                v = (f(1) - reset) * v
            v = beta * v + (f(1) - beta) * (node.v_leak + node.r * i)
            if mech == "subtract":
                v = v - reset * thr
            s = ge(v - thr).astype(f)
        else:
            v = beta * v + (f(1) - beta) * (node.v_leak + node.r * i)
            s = ge(v - thr).astype(f)
            if mech == "zero":
                v = np.where(s > 0, f(0), v)
            elif mech == "subtract":
                v = v - s * thr
        spikes.append(s)
        mems.append(v)
    return np.stack(spikes), np.stack(mems)


@pytest.mark.parametrize("mech", [None, "zero", "subtract", "none"])
@pytest.mark.parametrize("delay", [None, True])
@pytest.mark.parametrize("strict", [None, True])
def test_plain_lif_follows_documented_algorithm(mech, delay, strict) -> None:
    node = plain_node(reset_mechanism=mech, reset_delay=delay, strict_threshold=strict)
    xs = np.random.default_rng(1).uniform(0, 0.6, (30, 4, N)).astype(np.float32)
    ref_s, ref_v = reference_lif(node, xs)
    lif = LIFModule.from_node(node)
    v, spikes, mems = None, [], []
    for x in torch.from_numpy(xs):
        s, v = lif(x, v)
        spikes.append(s)
        mems.append(v)
    assert ref_s.sum() > 0
    np.testing.assert_array_equal(torch.stack(spikes).numpy(), ref_s)
    np.testing.assert_allclose(torch.stack(mems).numpy(), ref_v, rtol=0, atol=1e-6)
    s_seq, v_seq = lif.forward_sequence(torch.from_numpy(xs))
    np.testing.assert_array_equal(s_seq.numpy(), ref_s)
    np.testing.assert_allclose(v_seq.numpy(), ref_v[-1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("thr", [0.0, -0.5])
@pytest.mark.parametrize("mech", ["zero", "subtract", "none"])
@pytest.mark.parametrize("delay", [None, True])
@pytest.mark.parametrize("strict", [None, True])
def test_a_threshold_of_zero_or_below_follows_the_same_algorithm(thr, mech, delay, strict) -> None:
    # docs/lif_extensions.md: no special case; a neuron at rest fires where 0 >= thr (0 > thr strict).
    node = plain_node(reset_mechanism=mech, reset_delay=delay, strict_threshold=strict)
    node = dataclasses.replace(node, v_threshold=np.full(N, thr))
    xs = np.random.default_rng(2).uniform(-0.6, 0.6, (30, 4, N)).astype(np.float32)
    ref_s, ref_v = reference_lif(node, xs)
    lif = LIFModule.from_node(node)
    v, spikes = None, []
    for x in torch.from_numpy(xs):
        s, v = lif(x, v)
        spikes.append(s)
    assert ref_s.sum() > 0  # (subtracting a negative threshold raises v: then it fires at every step)
    np.testing.assert_array_equal(torch.stack(spikes).numpy(), ref_s)
    np.testing.assert_allclose(v.numpy(), ref_v[-1], rtol=0, atol=1e-6)
    s_seq, v_seq = lif.forward_sequence(torch.from_numpy(xs))
    np.testing.assert_array_equal(s_seq.numpy(), ref_s)
    np.testing.assert_allclose(v_seq.numpy(), ref_v[-1], rtol=0, atol=1e-6)


@pytest.mark.parametrize(("thr", "strict", "fires"), [(-0.5, None, 1.0), (0.0, None, 1.0), (0.0, True, 0.0)])
def test_a_neuron_at_rest_fires_where_its_threshold_allows(thr, strict, fires) -> None:
    lif = LIFModule(tau=[2.0], r=[1.0], v_leak=[0.0], v_threshold=[thr], strict_threshold=strict)
    spikes, _ = lif.forward_sequence(torch.zeros(3, 1, 1))
    assert spikes.flatten().tolist() == [fires] * 3


def test_threshold_equality_fires_unless_strict() -> None:
    base = dict(tau=np.ones(1), r=np.ones(1), v_leak=np.zeros(1), v_threshold=np.ones(1))
    x = torch.ones(1, 1)  # tau = 1: v = i exactly
    assert LIFModule(**base)(x)[0].item() == 1.0
    assert LIFModule(**base, strict_threshold=True)(x)[0].item() == 0.0


def test_zero_state_is_created_like_the_input() -> None:
    lif = LIFModule.from_node(plain_node()).to(torch.float64)
    s, v = lif(torch.rand(3, N, dtype=torch.float64))
    assert s.dtype == v.dtype == torch.float64 and v.shape == (3, N)
    with pytest.raises(ValueError, match=r"neurons of shape \[10\].*\[batch, 10\]"):
        lif(torch.rand(3, N + 1, dtype=torch.float64))


def test_surrogate_is_choosable_and_forward_stays_exact() -> None:
    snn_surrogate = pytest.importorskip("snntorch.surrogate")
    node = plain_node()
    xs = torch.rand(20, 4, N)
    default = LIFModule.from_node(node)
    custom = LIFModule.from_node(node, spike_grad=snn_surrogate.fast_sigmoid(slope=10))
    triangle = LIFModule.from_node(node, spike_grad=lambda x: (x > 0).float() + 0 * torch.relu(1 - x.abs()))
    outs, grads = [], []
    for lif in (default, custom, triangle):
        x = xs.clone().requires_grad_(True)
        s, _ = lif.forward_sequence(x)
        s.sum().backward()
        outs.append(s)
        grads.append(x.grad)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    assert grads[0].abs().sum() > 0 and grads[1].abs().sum() > 0
    assert not torch.allclose(grads[0], grads[1])
    with pytest.raises(TypeError, match="spike_grad"):
        LIFModule.from_node(node, spike_grad="atan")


def test_learnable_tau_in_plain_mode_trains_and_exports() -> None:
    torch.manual_seed(0)
    node = plain_node()
    lif = LIFModule.from_node(node, learn_beta=True, learn_threshold=True)
    assert {n for n, _ in lif.named_parameters()} == {"tau", "v_threshold"}
    s, _ = lif.forward_sequence(torch.rand(15, 4, N))
    s.sum().backward()
    assert lif.tau.grad.abs().sum() > 0 and lif.v_threshold.grad.abs().sum() > 0
    with torch.no_grad():
        lif.tau += 1.0
    back = lif.to_node()
    np.testing.assert_allclose(back.tau, node.tau + 1, rtol=1e-6)
    assert back.beta is None


def test_lif_to_node_round_trips_every_field() -> None:
    node = plain_node(
        beta=np.full(N, 0.9, np.float32), reset_mechanism="subtract", reset_delay=True, strict_threshold=True
    )
    back = LIFModule.from_node(node).to_node()
    assert back.to_fields().keys() == node.to_fields().keys()
    for key, value in node.to_fields().items():
        np.testing.assert_array_equal(np.asarray(back.to_fields()[key]), np.asarray(value))
    plain = LIFModule.from_node(plain_node()).to_node()
    assert plain.beta is None and plain.reset_mechanism is None and plain.reset_delay is None


def test_skip_module() -> None:
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    assert torch.equal(SkipModule("concatenate")(a, b), torch.cat([a, b], 1))
    assert torch.equal(SkipModule("residual")(a, a * 2), a + a * 2)
    assert SkipModule("passthrough")(a) is a
    with pytest.raises(ValueError, match="one input"):
        SkipModule("passthrough")(a, a)
    with pytest.raises(ValueError, match="skip_type='sum'"):
        SkipModule("sum")
    assert SkipModule.from_node(ir.Skip(skip_type="residual")).to_node().skip_type == "residual"


def test_sepconv_module_matches_functional_and_round_trips() -> None:
    rng = np.random.default_rng(2)
    node = ir.SepConv2d(
        depthwise_weight=rng.normal(size=(3, 1, 3, 3)),
        pointwise_weight=rng.normal(size=(5, 3, 1, 1)),
        depthwise_bias=rng.normal(size=3),
        pointwise_bias=rng.normal(size=5),
        stride=2,
        padding=1,
        dilation=1,
    )
    m = SepConv2dModule.from_node(node)
    x = torch.randn(2, 3, 8, 8)
    dw = F.conv2d(
        x, torch.from_numpy(node.depthwise_weight), torch.from_numpy(node.depthwise_bias), 2, 1, 1, 3
    )
    ref = F.conv2d(dw, torch.from_numpy(node.pointwise_weight), torch.from_numpy(node.pointwise_bias))
    torch.testing.assert_close(m(x), ref)
    back = m.to_node()
    for key, value in node.to_fields().items():
        np.testing.assert_array_equal(np.asarray(back.to_fields()[key]), np.asarray(value))
    assert tuple(m(x).shape[1:]) == node.output_shape([(3, 8, 8)])


def test_spiking_affine_module() -> None:
    rng = np.random.default_rng(3)
    node = ir.SpikingAffine(
        weight=rng.normal(size=(4, 6)),
        bias=rng.normal(size=4),
        spike_mode="graded",
        weight_bits=4,
        accumulator_bits=12,
    )
    m = SpikingAffineModule.from_node(node)
    assert isinstance(m, torch.nn.Linear)
    assert (m.spike_mode, m.weight_bits, m.accumulator_bits) == ("graded", 4, 12)
    x = torch.randn(3, 6)
    torch.testing.assert_close(m(x), x @ torch.from_numpy(node.weight).T + torch.from_numpy(node.bias))
    back = m.to_node()
    assert (back.spike_mode, back.weight_bits, back.accumulator_bits) == ("graded", 4, 12)
    np.testing.assert_array_equal(back.weight, node.weight)
    with pytest.raises(ValueError, match="accumulator_bits=2"):
        SpikingAffineModule(6, 4, weight_bits=4, accumulator_bits=2)
    with pytest.raises(ValueError, match="spike_mode='spiky'"):
        SpikingAffineModule(6, 4, spike_mode="spiky")


@pytest.mark.parametrize("snn_mode", [True, False], ids=["beta", "plain"])
@pytest.mark.parametrize("mech", ["zero", "subtract", "none"])
@pytest.mark.parametrize("delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("learn", [False, True], ids=["fixed", "learn"])
def test_forward_sequence_equals_stepping_values_and_gradients(snn_mode, mech, delay, learn) -> None:
    """The fused time loop (and the step fallback) against autograd through T steps,
    from a non-zero initial state, with gradients on inputs, state and parameters."""
    torch.manual_seed(7)
    kw = dict(
        tau=torch.linspace(2, 9, N),
        r=torch.linspace(1, 3, N),
        v_leak=torch.linspace(0, 0.2, N),
        v_threshold=torch.linspace(0.5, 1.2, N),
    )
    if snn_mode:
        kw["beta"] = torch.linspace(0.5, 1.0, N)
    lif = LIFModule(**kw, reset_mechanism=mech, reset_delay=delay, learn_beta=learn, learn_threshold=learn)
    xs = (torch.rand(25, 4, N) * 0.9).requires_grad_(True)
    v0 = (torch.rand(4, N) * 1.5).requires_grad_(True)
    w_s, w_v = torch.randn(25, 4, N), torch.randn(4, N)

    def grads_of(spikes, v):
        for p in (xs, v0, *lif.parameters()):
            p.grad = None
        ((spikes * w_s).sum() + (v * w_v).sum()).backward()
        return [p.grad.clone() for p in (xs, v0, *lif.parameters())]

    v, out = v0, []
    for t in range(25):
        s, v = lif(xs[t], v)
        out.append(s)
    ref_s, ref_v = torch.stack(out), v
    ref_g = grads_of(ref_s, ref_v)
    seq_s, seq_v = lif.forward_sequence(xs, v0)
    assert torch.equal(seq_s, ref_s) and torch.equal(seq_v, ref_v)
    with torch.no_grad():  # evaluation runs the loop without the autograd node
        eval_s, eval_v = lif.forward_sequence(xs, v0)
    assert torch.equal(eval_s, ref_s) and torch.equal(eval_v, ref_v)
    given_up = xs.detach().clone()
    with torch.no_grad():  # an input the caller gives up receives the spikes (fused, snnTorch mode)
        over_s, over_v = lif.forward_sequence(given_up, v0, overwrite_input=True)
    assert torch.equal(over_s, ref_s) and torch.equal(over_v, ref_v)
    assert (over_s.data_ptr() == given_up.data_ptr()) == (snn_mode and lif._fusable())
    kept = xs.detach().clone()  # recording a graph (autograd may have saved it): never overwritten
    lif.forward_sequence(kept, v0.detach(), overwrite_input=True)
    assert torch.equal(kept, xs)
    for g_ref, g_seq in zip(ref_g, grads_of(seq_s, seq_v)):
        torch.testing.assert_close(g_seq, g_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "at-threshold"])
def test_fused_spike_decision_equals_stepping_at_edge_values(strict) -> None:
    """Membranes exactly at the threshold, one ulp either side, tiny, infinite and NaN: the
    fused loop (which tests ``w > thr`` in strict mode) decides as stepping does (``w - thr > 0``)."""
    thr = torch.tensor([1.0, 1.0, 1.0, 1e-30, 2.0**-126, 0.0, 1.0, 1.0, 1.0, 3e38])
    n = thr.numel()
    lif = LIFModule(
        tau=torch.ones(n),
        r=torch.ones(n),
        v_leak=torch.zeros(n),
        v_threshold=thr,
        beta=torch.zeros(n),  # snnTorch mode, a = 0: a step's membrane is its input (NaN after inf)
        reset_mechanism="none",
        reset_delay=True,
        strict_threshold=strict,
    )
    assert lif._fusable()
    one = torch.tensor(1.0)
    steps = torch.tensor(
        [
            [
                1.0,
                torch.nextafter(one, 2 * one),
                torch.nextafter(one, 0 * one),
                1.0000001e-30,
                2.0**-125,
                1e-45,
            ]
            + [float("inf"), float("-inf"), float("nan"), -3e38],
            [1.0, 1.0, 1.0, 1e-30, 2.0**-126, 0.0, float("nan"), float("inf"), 1.0, float("inf")],
        ]
    ).unsqueeze(1)  # [T=2, B=1, n]
    v, out = None, []
    with torch.no_grad():
        for x in steps:
            s, v = lif(x, v)
            out.append(s)
        fused, _ = lif.forward_sequence(steps)
    assert torch.equal(fused, torch.stack(out))
    assert fused[0, 0, :3].tolist() == ([0.0, 1.0, 0.0] if strict else [1.0, 1.0, 0.0])


def test_cached_decay_follows_parameter_changes() -> None:
    lif = LIFModule(tau=[2.0], r=[2.0], v_leak=[0.0], v_threshold=[10.0])
    x = torch.ones(1, 1)
    with torch.no_grad():
        assert lif(x)[1].item() == 1.0  # b = 0.5: 0.5 * 2 * 1
        lif.tau.fill_(4.0)  # in place
        assert lif(x)[1].item() == 0.5  # b = 0.75: 0.25 * 2 * 1
        lif.r.fill_(8.0)
        assert lif(x)[1].item() == 2.0
        lif.tau = torch.tensor([1.0])  # replaced
        assert lif(x)[1].item() == 8.0
        lif.double()
        assert lif(x.double())[1].dtype == torch.float64


def test_inference_mode_then_training() -> None:
    lif = LIFModule.from_node(plain_node())
    with torch.inference_mode():
        lif.forward_sequence(torch.rand(3, 2, N))
    x = torch.rand(3, 2, N, requires_grad=True)
    s, _ = lif.forward_sequence(x)
    s.sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("mech", ["zero", "subtract"])
@pytest.mark.parametrize("delay", [True, False], ids=["delay", "immediate"])
def test_fused_backward_can_run_twice_and_leaves_its_inputs(mech, delay) -> None:
    """The backward works on copies of what the forward saved: a retained graph gives the
    same gradients again, and neither the input nor the initial state is modified."""
    torch.manual_seed(3)
    lif = LIFModule.from_node(plain_node(reset_mechanism=mech, reset_delay=delay), learn_threshold=True)
    xs = (torch.rand(15, 3, N) * 0.9).requires_grad_(True)
    v0 = torch.rand(3, N) * 1.2
    before = xs.detach().clone(), v0.clone()
    s, v = lif.forward_sequence(xs, v0)
    loss = (s * torch.randn_like(s)).sum() + v.sum()
    loss.backward(retain_graph=True)
    first = xs.grad.clone(), lif.v_threshold.grad.clone()
    xs.grad = lif.v_threshold.grad = None
    loss.backward()
    assert torch.equal(xs.grad, first[0]) and torch.equal(lif.v_threshold.grad, first[1])
    assert torch.equal(xs.detach(), before[0]) and torch.equal(v0, before[1])
