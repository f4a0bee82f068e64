"""LIFModule against snnTorch's Leaky: spike for spike, membrane-close, gradients close.

The LIF node is built by hand from the Leaky's parameters with the mapping of
docs/architecture.md (the export path is tested elsewhere), so this pins down the
import side's algorithm alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t1c import ir
from t1c.bridge import LIFModule

snn = pytest.importorskip("snntorch")

T, B, N = 40, 8, 16


def leaky_to_node(leaky) -> ir.LIF:
    """snn.Leaky -> LIF by architecture.md's mapping, arrays expanded to [N]."""
    beta = np.broadcast_to(leaky.beta.detach().numpy().astype(np.float32), (N,)).copy()
    thr = np.broadcast_to(leaky.threshold.detach().numpy().astype(np.float32), (N,)).copy()
    b = np.minimum(beta.astype(np.float64), 1.0)
    with np.errstate(divide="ignore"):
        tau = np.where(b >= 1, np.inf, 1 / (1 - b)).astype(np.float32)
    return ir.LIF(
        tau=tau,
        r=tau.copy(),
        v_leak=np.zeros(N, np.float32),
        v_threshold=thr,
        beta=beta,
        reset_mechanism=leaky.reset_mechanism,
        reset_delay=leaky.reset_delay,
        strict_threshold=True,
    )


def run_leaky(leaky, xs):
    mem = leaky.reset_mem()
    spikes, mems = [], []
    for t in range(xs.shape[0]):
        s, mem = leaky(xs[t], mem)
        spikes.append(s)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


def run_module(lif, xs):
    v = None
    spikes, mems = [], []
    for t in range(xs.shape[0]):
        s, v = lif(xs[t], v)
        spikes.append(s)
        mems.append(v)
    return torch.stack(spikes), torch.stack(mems)


CASES = {
    "default": dict(beta=0.9),
    "zero": dict(beta=0.8, reset_mechanism="zero"),
    "none": dict(beta=0.85, reset_mechanism="none"),
    "subtract_no_delay": dict(beta=0.9, reset_delay=False),
    "zero_no_delay": dict(beta=0.9, reset_mechanism="zero", reset_delay=False),
    "per_neuron": dict(beta=torch.linspace(0.5, 0.99, N), threshold=torch.linspace(0.5, 1.5, N)),
    "beta_one": dict(beta=1.0, threshold=2.0),
    "threshold": dict(beta=0.7, threshold=0.6),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_snntorch_leaky(case: str) -> None:
    torch.manual_seed(0)
    leaky = snn.Leaky(**CASES[case])
    lif = LIFModule.from_node(leaky_to_node(leaky))
    xs = (torch.rand(T, B, N) * 0.8).requires_grad_(True)
    spk_ref, mem_ref = run_leaky(leaky, xs)
    xs2 = xs.detach().clone().requires_grad_(True)
    spk, mem = run_module(lif, xs2)
    assert spk_ref.sum() > 0
    assert torch.equal(spk, spk_ref), f"{(spk != spk_ref).sum()} spikes differ"
    torch.testing.assert_close(mem, mem_ref, rtol=0, atol=1e-6)
    # Gradients through the surrogate (snnTorch's ATan) agree too.
    w = torch.randn(T, B, N)
    ((spk_ref * w).sum() + mem_ref.sum()).backward()
    ((spk * w).sum() + mem.sum()).backward()
    torch.testing.assert_close(xs2.grad, xs.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["default", "zero", "subtract_no_delay"])
def test_forward_sequence_matches_snntorch(case: str) -> None:
    torch.manual_seed(1)
    leaky = snn.Leaky(**CASES[case])
    lif = LIFModule.from_node(leaky_to_node(leaky))
    xs = torch.rand(T, B, N)
    spk_ref, mem_ref = run_leaky(leaky, xs)
    spk, v = lif.forward_sequence(xs)
    assert torch.equal(spk, spk_ref)
    torch.testing.assert_close(v, mem_ref[-1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("learn", ["beta", "threshold", "both"])
def test_learnable_parameters_match_snntorch(learn: str) -> None:
    torch.manual_seed(2)
    learn_beta, learn_thr = learn in ("beta", "both"), learn in ("threshold", "both")
    kwargs = dict(beta=torch.full((N,), 0.9), threshold=torch.full((N,), 0.8))
    leaky = snn.Leaky(**kwargs, learn_beta=learn_beta, learn_threshold=learn_thr)
    lif = LIFModule.from_node(leaky_to_node(leaky), learn_beta=learn_beta, learn_threshold=learn_thr)
    xs = torch.rand(T, B, N)
    w = torch.randn(T, B, N)
    spk_ref, mem_ref = run_leaky(leaky, xs)
    spk, mem = run_module(lif, xs)
    assert torch.equal(spk, spk_ref)
    ((spk_ref * w).sum() + mem_ref.sum()).backward()
    ((spk * w).sum() + mem.sum()).backward()
    if learn_beta:
        torch.testing.assert_close(lif.beta.grad, leaky.beta.grad, rtol=1e-4, atol=1e-4)
    if learn_thr:
        torch.testing.assert_close(lif.v_threshold.grad, leaky.threshold.grad, rtol=1e-4, atol=1e-4)
    # A training step changes the parameters, and to_node() exports them.
    with torch.no_grad():
        for p in lif.parameters():
            p -= 0.01 * p.grad
    node = lif.to_node()
    if learn_beta:
        # Exported as forward uses it: clamp(beta, 0, 1) (this step drives beta below 0).
        np.testing.assert_array_equal(node.beta, lif.beta.detach().clamp(0, 1).numpy())
        np.testing.assert_allclose(node.tau, 1 / (1 - node.beta.astype(np.float64)), rtol=1e-6)
    if learn_thr:
        np.testing.assert_array_equal(node.v_threshold, lif.v_threshold.detach().numpy())


def test_beta_one_round_trips_as_infinite_tau(tmp_path) -> None:
    leaky = snn.Leaky(beta=1.0)
    node = leaky_to_node(leaky)
    assert np.isinf(node.tau).all() and np.isinf(node.r).all()
    g = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([N])}), node, ir.Output(), names=["input", "lif", "output"]
    )
    ir.write(tmp_path / "b1.t1c", g)
    lif = LIFModule.from_node(ir.read(tmp_path / "b1.t1c").nodes["lif"])
    xs = torch.rand(T, B, N)
    spk, _ = run_module(lif, xs)
    assert torch.equal(spk, run_leaky(leaky, xs)[0])
