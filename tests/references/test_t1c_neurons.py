"""docs/neurons.md's mapping is exact: CubaLIF/AlphaLIF, as documented, equal snnTorch's neurons.

The node references (``t1c_neurons``) run the nodes that the documented export mapping
builds from snnTorch's parameters; the snnTorch references (``snntorch_neurons``, equal to
snnTorch itself: ``test_snntorch_neurons.py``) run the neurons. Spikes and states must be
equal bit for bit. Pure numpy, so the cases are many and fast.
"""

from __future__ import annotations

import numpy as np
import pytest

from references import snntorch_neurons as snn_ref
from references.t1c_neurons import alpha_lif, cuba_lif
from t1c import ir

T, B, N = 256, 4, 16
MECHANISMS = ("subtract", "zero", "none")
RNG = np.random.default_rng(0)
XS = RNG.uniform(-0.3, 0.8, (T, B, N)).astype(np.float32)
W_REC = (np.round(RNG.standard_normal((N, N)) * 0.2 * 64) / 64).astype(np.float32)  # dyadic grid
B_REC = (np.round(RNG.standard_normal(N) * 0.1 * 64) / 64).astype(np.float32)


def per_neuron(low: float, high: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, N).astype(np.float32)


def _time_constant(decay: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return (1 / (1 - decay.astype(np.float64))).astype(np.float32)


def exported(*, beta, threshold, alpha=None, mechanism, delay, w_rec=None, input_gain=None) -> ir.CubaLIF:
    """The CubaLIF that docs/neurons.md's export table writes (arrays expanded to [N])."""
    full = lambda v: np.broadcast_to(np.asarray(v, np.float32), (N,)).copy()  # noqa: E731
    beta = full(beta)
    tau_mem = _time_constant(beta)
    if alpha is None:
        tau_syn = np.ones(N, np.float32)
        w_in = full(1.0 if input_gain is None else input_gain)
    else:
        alpha = full(alpha)
        tau_syn = _time_constant(alpha)
        w_in = tau_syn
    return ir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=tau_mem,
        v_leak=np.zeros(N),
        v_threshold=full(threshold),
        w_in=w_in,
        alpha=alpha,
        beta=beta,
        input_gain=None if input_gain is None else full(input_gain),
        w_rec=None if w_rec is None else full(w_rec),
        reset_mechanism=mechanism,
        reset_delay=delay,
    )


def assert_equal(ref: dict, got: dict, names=("spk", "mem")) -> None:
    assert ref["spk"].any() and not ref["spk"].all()
    for name in names:
        mismatches = int((ref[name] != got[name]).sum())
        assert mismatches == 0, f"{name}: {mismatches} of {ref[name].size} differ"


PARAMS = {
    "scalar": dict(alpha=0.8, beta=0.9, threshold=1.5),
    "per_neuron": dict(
        alpha=per_neuron(0.5, 1.0, 1), beta=per_neuron(0.6, 1.0, 2), threshold=per_neuron(0.8, 2, 3)
    ),
}


@pytest.mark.parametrize("params", sorted(PARAMS))
@pytest.mark.parametrize("delay", [True, False])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_synaptic(mechanism: str, delay: bool, params: str) -> None:
    p = PARAMS[params]
    ref = snn_ref.synaptic(XS, **p, reset_mechanism=mechanism, reset_delay=delay)
    got = cuba_lif(exported(**p, mechanism=mechanism, delay=delay), [XS])
    assert_equal(ref, got, ("spk", "syn", "mem"))


FEEDBACK = {
    "linear": (snn_ref.linear_feedback(W_REC, B_REC), None),
    "one_to_one_scalar": (None, 0.3),
    "one_to_one_neuron": (None, per_neuron(-0.5, 0.5, 4)),
}


@pytest.mark.parametrize("kind", sorted(FEEDBACK))
@pytest.mark.parametrize("delay", [True, False])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_rleaky(mechanism: str, delay: bool, kind: str) -> None:
    """All-to-all: the Affine's output is the node's second input (a back edge carrying spikes)."""
    affine, v = FEEDBACK[kind]
    p = dict(beta=per_neuron(0.6, 1.0, 5), threshold=1.0)
    feedback = affine or snn_ref.one_to_one_feedback(v)
    ref = snn_ref.rleaky(XS * 0.5, **p, feedback=feedback, reset_mechanism=mechanism, reset_delay=delay)
    got = cuba_lif(exported(**p, mechanism=mechanism, delay=delay, w_rec=v), [XS * 0.5], affine)
    assert_equal(ref, got)


@pytest.mark.parametrize("kind", sorted(FEEDBACK))
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_rsynaptic(mechanism: str, kind: str) -> None:
    affine, v = FEEDBACK[kind]
    p = dict(alpha=per_neuron(0.3, 0.8, 6), beta=0.9, threshold=1.0)
    feedback = affine or snn_ref.one_to_one_feedback(v)
    ref = snn_ref.rsynaptic(XS * 0.3, **p, feedback=feedback, reset_mechanism=mechanism)
    got = cuba_lif(exported(**p, mechanism=mechanism, delay=True, w_rec=v), [XS * 0.3], affine)
    assert_equal(ref, got, ("spk", "syn", "mem"))


LAPICQUE = {"beta": dict(beta=0.9), "R_C": dict(R=2.0, C=5.0), "R_C_dt": dict(R=0.5, C=3.0, time_step=0.25)}


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("case", sorted(LAPICQUE))
def test_lapicque(case: str, mechanism: str) -> None:
    """R and time_step powers of two: beta = 1 - dt/(RC), input_gain = R*dt/(RC), as the forward computes."""
    R, C, dt = snn_ref.lapicque_rc(**LAPICQUE[case])
    decay, gain = np.float32(1) - dt / (R * C), R * (np.float32(1) / (R * C)) * dt
    xs = XS * 2
    ref = snn_ref.lapicque(xs, R=R, C=C, time_step=dt, threshold=0.5, reset_mechanism=mechanism)
    node = exported(beta=decay, threshold=0.5, mechanism=mechanism, delay=True, input_gain=gain)
    assert_equal(ref, cuba_lif(node, [xs]))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_alpha(mechanism: str) -> None:
    alpha, beta = per_neuron(0.85, 0.95, 7), per_neuron(0.5, 0.8, 8)
    node = ir.AlphaLIF(
        alpha=alpha,
        beta=beta,
        tau=snn_ref.alpha_tau(alpha, beta),
        v_threshold=np.full(N, 0.3),
        reset_mechanism=mechanism,
    )
    ref = snn_ref.alpha_neuron(XS * 0.5, alpha=alpha, beta=beta, threshold=0.3, reset_mechanism=mechanism)
    assert_equal(ref, alpha_lif(node, XS * 0.5), ("spk", "exc", "inh", "mem"))


def test_plain_form_is_nir_cuba_lif_at_one_step() -> None:
    """A plain CubaLIF (float32) runs NIR's equations (float64 Euler, dt = 1): same spikes."""
    fields = dict(
        tau_syn=per_neuron(1.5, 8, 9),
        tau_mem=per_neuron(2, 20, 10),
        r=per_neuron(0.5, 2, 11),
        v_leak=per_neuron(-0.1, 0.1, 12),
        v_threshold=np.full(N, 0.5),
        w_in=per_neuron(0.5, 2, 13),
    )
    ref = snn_ref.nir_cuba_lif(XS, **fields, dt=1.0)
    got = cuba_lif(ir.CubaLIF(**fields), [XS])
    assert ref["margin"] > 1e-5
    np.testing.assert_array_equal(got["spk"], ref["spk"])
    np.testing.assert_allclose(got["mem"], ref["v"], atol=1e-5)


def test_summing_before_the_neuron_is_not_exact() -> None:
    """Why RLeaky's feedback enters the node itself: a summing Skip adds x + rec first."""
    rec = snn_ref.linear_feedback(W_REC, B_REC)
    ref = snn_ref.rleaky(XS * 0.5, beta=0.9, feedback=rec)
    beta, thr = np.float32(0.9), np.float32(1.0)
    mem, spk, mems = np.zeros((B, N), np.float32), np.zeros((B, N), np.float32), []
    for x in XS * 0.5:
        reset = (mem - thr > 0).astype(np.float32)
        mem = beta * mem + (x + rec(spk)) - reset * thr  # LIF(beta) after Skip(residual)
        spk = (mem - thr > 0).astype(np.float32)
        mems.append(mem)
    assert (np.stack(mems) != ref["mem"]).sum() > 0
