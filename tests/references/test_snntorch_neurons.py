"""The numpy references equal snnTorch 1.0 itself, and refuse what snnTorch cannot run.

Every neuron runs ``T`` steps on a batch, in both of snnTorch's state styles (states passed
and returned; ``init_hidden=True``), for every reset mechanism and ``reset_delay``, with
scalar parameters and with learnable per-neuron ones. Spikes must be equal bit for bit, and
so must the states: the references do snnTorch's float32 operations in snnTorch's order.
Recurrent weights lie on a dyadic grid so that any summation order is exact (see the
references' docstring).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

snn = pytest.importorskip("snntorch")

from references.snntorch_neurons import (  # noqa: E402
    Refused,
    alpha_neuron,
    alpha_tau,
    conv2d_feedback,
    lapicque,
    lapicque_rc,
    linear_feedback,
    nir_cuba_lif,
    one_to_one_feedback,
    rleaky,
    rsynaptic,
    synaptic,
)

T, B, N = 256, 4, 24
CONV = (2, 6, 6)
MECHANISMS = ("subtract", "zero", "none")
STYLES = ("explicit", "hidden")
#: snnTorch's state arguments, in call order, and the references' names for them.
STATES = {
    snn.Synaptic: ("syn", "mem"),
    snn.RLeaky: ("spk", "mem"),
    snn.RSynaptic: ("spk", "syn", "mem"),
    snn.Alpha: ("syn_exc", "syn_inh", "mem"),
    snn.Lapicque: ("mem",),
}
REFERENCE_NAME = {"syn_exc": "exc", "syn_inh": "inh"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matmuls on a shared machine: torch's thread pool only adds contention (20x here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torch_log(x: np.ndarray) -> np.ndarray:
    """torch's float32 log (not correctly rounded), for the log-derived constants."""
    return torch.log(torch.from_numpy(np.asarray(x, np.float32))).numpy()


def inputs(shape=(N,), low=-0.3, high=0.8, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, (T, B, *shape)).astype(np.float32)


def per_neuron(low: float, high: float, shape=(N,), seed=1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(low, high, shape).astype(np.float32))


def run_snntorch(make, xs: np.ndarray, style: str) -> dict[str, np.ndarray]:
    """Run ``make(init_hidden=...)`` over ``xs``; the spikes and states it returns each step."""
    neuron = make(init_hidden=style == "hidden")
    names = STATES[type(neuron)]
    returned = ["spk", *(n for n in names if n != "spk")]  # what a call returns, in order
    states = neuron.reset_mem()
    states = states if isinstance(states, tuple) else (states,)
    record: dict[str, list[np.ndarray]] = {REFERENCE_NAME.get(n, n): [] for n in returned}
    with torch.no_grad():
        for x in torch.from_numpy(xs):
            if style == "hidden":
                values = {"spk": neuron(x)} | {n: getattr(neuron, n) for n in returned[1:]}
            else:
                values = dict(zip(returned, neuron(x, *states), strict=True))
                states = tuple(values[n] for n in names)
            for name, value in values.items():
                record[REFERENCE_NAME.get(name, name)].append(value.numpy().copy())
    return {k: np.stack(v) for k, v in record.items()}


def assert_same(ref: dict[str, np.ndarray], make, xs: np.ndarray) -> None:
    """snnTorch's neuron from ``make``, in both state styles, equals ``ref`` bit for bit."""
    assert ref["spk"].any() and not ref["spk"].all(), "the case must spike, and not always"
    for style in STYLES:
        got = run_snntorch(make, xs, style)
        for name, value in got.items():
            assert value.dtype == np.float32 and value.shape == ref[name].shape, name
            mismatches = int((value != ref[name]).sum())
            assert mismatches == 0, f"{style} {name}: {mismatches} of {value.size} values differ"


def grid(t: torch.Tensor, step: float = 2.0**-6) -> torch.Tensor:
    """``t`` rounded to multiples of ``step`` (exact sums in any order)."""
    return torch.round(t / step) * step


def _put_on_grid(layer: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(grid(p))


# -- Synaptic --------------------------------------------------------------------------------
@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("learnable", [False, True])
def test_synaptic(mechanism: str, reset_delay: bool, learnable: bool) -> None:
    if learnable:
        params = dict(
            alpha=per_neuron(0.5, 0.95), beta=per_neuron(0.6, 1.0, seed=2), threshold=per_neuron(0.8, 2.0)
        )
        learn = dict(learn_alpha=True, learn_beta=True, learn_threshold=True)
    else:
        params, learn = dict(alpha=0.8, beta=0.9, threshold=1.5), {}
    xs = inputs()
    ref = synaptic(
        xs,
        **{k: np.asarray(v) for k, v in params.items()},
        reset_mechanism=mechanism,
        reset_delay=reset_delay,
    )
    assert_same(
        ref,
        lambda **kw: snn.Synaptic(
            **params, **learn, reset_mechanism=mechanism, reset_delay=reset_delay, **kw
        ),
        xs,
    )


def test_synaptic_zero_reset_keeps_the_current() -> None:
    """The trap: "zero" wipes the new membrane, input included, and leaves ``syn`` alone."""
    xs = np.full((3, 1, 1), 2.0, np.float32)
    ref = synaptic(xs, alpha=0.5, beta=0.5, threshold=1.0, reset_mechanism="zero")
    np.testing.assert_array_equal(ref["mem"][:, 0, 0], [2.0, 0.0, 3.5])  # a Leaky's zero: 3.0 at step 1
    np.testing.assert_array_equal(ref["syn"][:, 0, 0], [2.0, 3.0, 3.5])


# -- RLeaky ----------------------------------------------------------------------------------
def _recurrent(kind: str, learnable: bool):
    """snnTorch constructor arguments, the neuron shape, and how to read its feedback."""
    if kind == "linear":
        return (
            dict(linear_features=N),
            (N,),
            lambda m: linear_feedback(m.recurrent.weight.detach().numpy(), m.recurrent.bias.detach().numpy()),
        )
    if kind == "conv":
        kw = dict(conv2d_channels=CONV[0], kernel_size=3)
        return (
            kw,
            CONV,
            lambda m: conv2d_feedback(m.recurrent.weight.detach().numpy(), m.recurrent.bias.detach().numpy()),
        )
    v = per_neuron(-0.5, 0.5, seed=3) if kind == "one_to_one_neuron" else torch.tensor(0.3)
    return (
        dict(all_to_all=False, V=v, learn_recurrent=learnable),
        (N,),
        lambda m: one_to_one_feedback(m.V.detach().numpy()),
    )


def _make_recurrent(cls, args: dict, shape, learnable: bool, **fixed):
    params = dict(beta=0.9, threshold=1.0)
    if learnable:
        params = dict(
            beta=per_neuron(0.6, 1.0, (shape[0], 1, 1) if len(shape) == 3 else shape, seed=4),
            threshold=per_neuron(0.8, 1.5, shape),
        )
        params |= dict(learn_beta=True, learn_threshold=True)
    seed = torch.random.initial_seed()

    def make(**kw):
        torch.manual_seed(seed)  # every call builds the same recurrent weights
        neuron = cls(**params, **args, **fixed, **kw)
        if hasattr(neuron.recurrent, "weight"):
            _put_on_grid(neuron.recurrent)
        return neuron

    plain = {k: v for k, v in params.items() if not k.startswith("learn")}
    return make, {k: np.asarray(v.detach() if torch.is_tensor(v) else v) for k, v in plain.items()}


FEEDBACK = ("linear", "conv", "one_to_one_scalar", "one_to_one_neuron")


@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("kind", FEEDBACK)
def test_rleaky(kind: str, mechanism: str, reset_delay: bool) -> None:
    learnable = kind != "one_to_one_scalar" and mechanism != "none"
    args, shape, feedback_of = _recurrent(kind, learnable)
    make, params = _make_recurrent(
        snn.RLeaky, args, shape, learnable, reset_mechanism=mechanism, reset_delay=reset_delay
    )
    xs = inputs(shape, low=-0.4, high=0.6)
    ref = rleaky(
        xs, **params, feedback=feedback_of(make()), reset_mechanism=mechanism, reset_delay=reset_delay
    )
    assert_same(ref, make, xs)


def test_rleaky_bias_enters_at_the_first_step() -> None:
    """The trap: ``rec(0)`` is the Linear's bias, so step 0 already has it."""
    neuron = snn.RLeaky(beta=0.9, linear_features=2)
    with torch.no_grad():
        neuron.recurrent.weight.zero_()
        neuron.recurrent.bias.copy_(torch.tensor([0.25, -0.5]))
    spk, mem = neuron(torch.zeros(1, 2), *neuron.reset_mem())
    np.testing.assert_array_equal(mem.detach().numpy(), [[0.25, -0.5]])
    ref = rleaky(
        np.zeros((1, 1, 2), np.float32), beta=0.9, feedback=linear_feedback(np.zeros((2, 2)), [0.25, -0.5])
    )
    np.testing.assert_array_equal(ref["mem"][0], [[0.25, -0.5]])


@pytest.mark.parametrize("kernel_size", [2, (3, 4)])
def test_even_recurrent_kernel_is_refused_as_snntorch_fails(kernel_size) -> None:
    neuron = snn.RLeaky(beta=0.9, conv2d_channels=2, kernel_size=kernel_size)
    with pytest.raises(RuntimeError, match="must match"):
        neuron(torch.zeros(1, *CONV))
    with pytest.raises(Refused, match="kernel_size"):
        conv2d_feedback(neuron.recurrent.weight.detach().numpy(), neuron.recurrent.bias.detach().numpy())


# -- RSynaptic -------------------------------------------------------------------------------
@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("kind", FEEDBACK)
def test_rsynaptic(kind: str, mechanism: str) -> None:
    learnable = kind in ("linear", "one_to_one_neuron")
    args, shape, feedback_of = _recurrent(kind, learnable)
    alpha = per_neuron(0.3, 0.8, shape, seed=5) if learnable else 0.6
    extra = dict(alpha=alpha, learn_alpha=learnable, reset_mechanism=mechanism)
    make, params = _make_recurrent(snn.RSynaptic, args, shape, learnable, **extra)
    xs = inputs(shape, low=-0.3, high=0.4)
    ref = rsynaptic(
        xs, **params, alpha=np.asarray(alpha), feedback=feedback_of(make()), reset_mechanism=mechanism
    )
    assert_same(ref, make, xs)


def test_rsynaptic_without_reset_delay_is_refused_as_snntorch_fails() -> None:
    """snnTorch reads the spk/mem *arguments* there: it fails, or resets a local and returns the delayed result."""
    x = torch.rand(B, N)

    def make(**kw):
        torch.manual_seed(0)
        return snn.RSynaptic(alpha=0.6, beta=0.9, linear_features=N, reset_delay=False, **kw)

    with pytest.raises(TypeError):
        make(init_hidden=True)(x)
    with pytest.raises(TypeError):
        make()(x)
    with pytest.raises(RuntimeError):
        neuron = make()
        neuron(x, *neuron.reset_mem())
    zeros = [torch.zeros(B, N)] * 3
    torch.manual_seed(0)
    delayed = snn.RSynaptic(alpha=0.6, beta=0.9, linear_features=N)
    for a, b in zip(make()(x, *zeros), delayed(x, *zeros), strict=True):
        assert torch.equal(a, b)  # reset_delay=False is silently ignored
    with pytest.raises(Refused, match="reset_delay=False"):
        rsynaptic(inputs(), alpha=0.6, beta=0.9, feedback=one_to_one_feedback(1.0), reset_delay=False)


# -- Alpha -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("learnable", [False, True])
def test_alpha(mechanism: str, learnable: bool) -> None:
    if learnable:
        params = dict(
            alpha=per_neuron(0.85, 0.95), beta=per_neuron(0.5, 0.8, seed=6), threshold=per_neuron(0.1, 0.5)
        )
        learn = dict(learn_beta=True, learn_threshold=True)
    else:
        params, learn = dict(alpha=0.9, beta=0.8, threshold=0.3), {}
    xs = inputs(low=-0.2, high=0.6)
    plain = {k: np.asarray(v) for k, v in params.items()}
    ref = alpha_neuron(xs, **plain, reset_mechanism=mechanism, log=torch_log)
    assert_same(ref, lambda **kw: snn.Alpha(**params, **learn, reset_mechanism=mechanism, **kw), xs)


def test_alpha_tau_depends_on_the_log_implementation() -> None:
    """tau equals snnTorch's with torch's log; a correctly rounded log moves it by many ulps.

    ``log(b) - log(a)`` cancels when ``beta`` is close to ``alpha``, so one ulp of a log
    becomes tens of ulps of tau: a file must carry tau as computed, not recompute it.
    """
    alpha = per_neuron(0.5, 0.999, (4096,), seed=7)
    beta = alpha * per_neuron(0.05, 0.99, (4096,), seed=8)
    neuron = snn.Alpha(alpha=alpha, beta=beta)
    tau = (neuron.alpha.log() / (neuron.beta.clamp(0, 1).log() - neuron.alpha.log()) + 1).numpy()
    np.testing.assert_array_equal(alpha_tau(alpha.numpy(), beta.numpy(), log=torch_log), tau)
    exact = alpha_tau(alpha.numpy(), beta.numpy())
    ulps = np.abs(exact.view(np.int32) - tau.view(np.int32))
    assert 2 < ulps.max() < 100
    np.testing.assert_allclose(exact, tau, rtol=1e-5)


def test_alpha_refusals_match_snntorch() -> None:
    with pytest.raises(TypeError, match="cannot assign"):
        snn.Alpha(alpha=0.9, beta=0.8, learn_alpha=True)  # alpha.py: self.alpha = self.alpha.clamp(0, 1)
    for alpha, beta in ((0.8, 0.9), (0.9, 0.9), (1.0, 1.0)):
        with pytest.raises(ValueError):
            snn.Alpha(alpha=alpha, beta=beta)
        with pytest.raises(Refused):
            alpha_neuron(inputs(), alpha=alpha, beta=beta)


# -- Lapicque --------------------------------------------------------------------------------
LAPICQUE = {
    "beta": dict(beta=0.9),
    "beta_R": dict(beta=0.85, R=2.0),
    "beta_C": dict(beta=0.8, C=3.0),
    "R_C": dict(R=2.5, C=4.0),
    "R_C_time_step": dict(R=1.5, C=7.0, time_step=0.5),
}


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("case", sorted(LAPICQUE))
def test_lapicque(case: str, mechanism: str) -> None:
    kwargs = LAPICQUE[case]
    threshold = per_neuron(0.2, 0.6) if case == "beta" else torch.tensor(0.4)
    learn = case == "beta"

    def make(**kw):
        return snn.Lapicque(
            **kwargs, threshold=threshold, learn_threshold=learn, reset_mechanism=mechanism, **kw
        )

    R, C, dt = lapicque_rc(**kwargs, log=torch_log)
    module = make()
    for mine, theirs in ((R, module.R), (C, module.C), (dt, module.time_step)):
        np.testing.assert_array_equal(mine, theirs.detach().float().numpy().reshape(()))
    xs = inputs(low=-0.5, high=1.5)
    ref = lapicque(
        xs, R=R, C=C, time_step=dt, threshold=threshold.detach().numpy(), reset_mechanism=mechanism
    )
    assert_same(ref, make, xs)


def test_lapicque_is_not_a_leaky_of_its_beta() -> None:
    """The forward never reads beta: the decay is 1 + log(beta), the input gain log(1/beta)."""
    R, C, dt = lapicque_rc(beta=0.9)
    ref = lapicque(np.ones((2, 1, 1), np.float32), R=R, C=C, time_step=dt, reset_mechanism="none")
    gain = np.float32(-np.log(0.9))
    np.testing.assert_allclose(ref["mem"][:, 0, 0], [gain, gain * (1 - gain) + gain], rtol=1e-6)


def test_lapicque_refusals_match_snntorch() -> None:
    for kwargs in (
        dict(beta=torch.tensor([0.9, 0.8])),
        dict(R=torch.tensor([1.0, 2.0]), C=torch.tensor([1.0, 1.0])),
    ):
        with pytest.raises(RuntimeError, match="ambiguous"):
            snn.Lapicque(**kwargs)
        with pytest.raises(Refused, match="per-neuron"):
            lapicque_rc(**kwargs)
    with pytest.raises(ValueError):
        snn.Lapicque(R=2.0)
    with pytest.raises(Refused):
        lapicque_rc(R=2.0)


# -- NIR's CubaLIF ---------------------------------------------------------------------------
def _cuba_from_synaptic(alpha, beta, dt: float) -> dict:
    """snnTorch's own NIR export of a Synaptic (export_nir.py): tau = dt/(1-decay), r = tau_mem/dt, w_in = tau_syn/dt."""
    tau_syn, tau_mem = dt / (1 - np.float64(alpha)), dt / (1 - np.float64(beta))
    return dict(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=0.0, w_in=tau_syn / dt, dt=dt)


def test_nir_cuba_lif_matches_synaptic_away_from_the_threshold() -> None:
    alpha, beta = per_neuron(0.5, 0.95).numpy(), per_neuron(0.6, 0.99, seed=2).numpy()
    xs = inputs(low=-0.1, high=0.3)
    ref = nir_cuba_lif(xs, **_cuba_from_synaptic(alpha, beta, 1e-4), v_threshold=np.full(N, 1.0))
    got = run_snntorch(
        lambda **kw: snn.Synaptic(
            alpha=torch.from_numpy(alpha),
            beta=torch.from_numpy(beta),
            reset_mechanism="zero",
            reset_delay=False,
            **kw,
        ),
        xs,
        "explicit",
    )
    # float64 Euler vs float32 snnTorch: the membranes differ by ~1e-6; every spike decision was farther.
    assert ref["margin"] > 1e-5 and ref["spk"].sum() > 100
    np.testing.assert_array_equal(ref["spk"], got["spk"])
    np.testing.assert_allclose(ref["v"], got["mem"], atol=1e-4)


def test_nir_cuba_lif_by_hand() -> None:
    """Two steps computed by hand: leak towards v_leak, reset to v_reset, input weight w_in."""
    xs = np.array([[[1.0]], [[1.0]]])
    ref = nir_cuba_lif(
        xs, tau_syn=2.0, tau_mem=4.0, r=2.0, v_leak=0.5, v_threshold=0.6, v_reset=-0.25, w_in=3.0, dt=1.0
    )
    # i1 = 0 + 1/2 (0 + 3) = 1.5; v1 = 0 + 1/4 (0.5 + 3) = 0.875 > 0.6 -> spike, v = -0.25
    # i2 = 1.5 + 1/2 (-1.5 + 3) = 2.25; v2 = -0.25 + 1/4 (0.5 + 0.25 + 4.5) = 1.0625 -> spike
    np.testing.assert_array_equal(ref["i"][:, 0, 0], [1.5, 2.25])
    np.testing.assert_array_equal(ref["spk"][:, 0, 0], [1.0, 1.0])
    np.testing.assert_array_equal(ref["v"][:, 0, 0], [-0.25, -0.25])
    assert ref["margin"] == pytest.approx(0.275)
