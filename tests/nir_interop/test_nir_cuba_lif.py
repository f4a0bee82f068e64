"""NIR's CubaLIF <-> T1C-IR's CubaLIF: imports run NIR's equations, exports keep snnTorch's exact fields.

The oracles are the numpy references of ``tests/references``: ``nir_cuba_lif`` is NIR's
documented equations (forward Euler, float64), ``synaptic`` snnTorch's ``Synaptic``, and
``cuba_lif`` the T1C-IR node's equations (docs/neurons.md), which any executor of the node
must compute. None of them uses t1c.nir.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from t1c import ir

nir = pytest.importorskip("nir")

from nir_reference import assert_refused, chain_nir, t1c_chain  # noqa: E402
from references.snntorch_neurons import nir_cuba_lif, synaptic  # noqa: E402
from references.t1c_neurons import cuba_lif  # noqa: E402

from t1c.nir import NIRConversionError, from_nir, to_nir  # noqa: E402

T, B, N = 600, 4, 16
RNG = np.random.default_rng(23)
ALPHA = RNG.uniform(0.5, 0.95, N).astype(np.float32)
BETA = RNG.uniform(0.6, 0.97, N).astype(np.float32)
THRESHOLD = RNG.uniform(0.8, 1.6, N).astype(np.float32)


def currents(scale: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 1.0, (T, B, N)).astype(np.float32) * np.float32(scale)


def snntorch_synaptic_as_nir(dt: float = 1e-4):
    """A NIR CubaLIF as snnTorch's ``export_nir`` writes ``Synaptic`` (float32 parameters)."""
    tau_syn, tau_mem = dt / (1 - ALPHA), dt / (1 - BETA)
    return nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        v_threshold=THRESHOLD,
        v_leak=np.zeros_like(BETA),
        r=tau_mem / dt,
        w_in=tau_syn / dt,
        v_reset=np.zeros_like(THRESHOLD),
    )


def norse_cuba_lif():
    """Norse-style parameters: milliseconds, r = 1, a leak voltage, per-neuron time constants."""
    return nir.CubaLIF(
        tau_syn=np.linspace(4e-3, 8e-3, N),
        tau_mem=np.linspace(1e-2, 2e-2, N),
        r=np.ones(N),
        v_leak=np.full(N, 0.05),
        v_threshold=np.full(N, 0.3),
        w_in=np.linspace(0.5, 1.5, N),
    )


def nir_params(node) -> dict:
    fields = ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")
    return {f: np.asarray(getattr(node, f)) for f in fields}


def imported_node(nir_node, dt: float, tmp_path) -> ir.CubaLIF:
    """The CubaLIF that ``from_nir`` makes of ``nir_node``, through a written .nir and .t1c file."""
    nir.write(tmp_path / "model.nir", chain_nir(nir_node, nir.Output(output_type=np.array([N])), shape=(N,)))
    ir.write(tmp_path / "model.t1c", from_nir(tmp_path / "model.nir", dt=dt))
    node = ir.read(tmp_path / "model.t1c").nodes["cubalif"]
    assert isinstance(node, ir.CubaLIF)
    return node


def assert_same_spikes(nir_run: dict, t1c_run: dict, current: bool = True) -> None:
    """Spikes equal; membranes within float32 rounding, and no decision closer than that to flipping.

    ``current``: compare the synaptic currents too (an exact form without ``alpha`` has none).
    """
    gap = float(np.abs(nir_run["v"] - t1c_run["mem"]).max())
    assert nir_run["margin"] > 10 * gap, f"test design: margin {nir_run['margin']} vs membrane gap {gap}"
    assert 0.02 < nir_run["spk"].mean() < 0.5, "test design: the neurons should spike, but not always"
    np.testing.assert_array_equal(t1c_run["spk"], nir_run["spk"])
    if current:
        np.testing.assert_allclose(t1c_run["syn"], nir_run["i"], rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("build", "dt", "scale"), [(snntorch_synaptic_as_nir, 1e-4, 0.3), (norse_cuba_lif, 1e-3, 2.0)]
)
def test_foreign_cuba_lif_imports_as_nirs_equations(build, dt, scale, tmp_path):
    """NIR's reference on the NIR node == the T1C node reference on the imported node, 600 steps."""
    nir_node = build()
    node = imported_node(nir_node, dt, tmp_path)
    assert node.beta is None and node.reset_mechanism is None and node.reset_delay is None  # plain: NIR's
    np.testing.assert_array_equal(
        node.tau_syn, (np.asarray(nir_node.tau_syn, np.float64) / dt).astype(np.float32)
    )
    xs = currents(scale)
    assert_same_spikes(nir_cuba_lif(xs, **nir_params(nir_node), dt=dt), cuba_lif(node, [xs]))


def test_snntorch_written_cuba_lif_is_synaptic_zero_reset_not_delayed(tmp_path):
    """The import of snnTorch's export spikes as snnTorch's Synaptic(reset "zero", not delayed)."""
    node = imported_node(snntorch_synaptic_as_nir(), 1e-4, tmp_path)
    xs = currents(0.3, seed=1)
    ref = synaptic(xs, alpha=ALPHA, beta=BETA, threshold=THRESHOLD, reset_mechanism="zero", reset_delay=False)
    np.testing.assert_array_equal(cuba_lif(node, [xs])["spk"], ref["spk"])


def exact_synaptic(**reset) -> ir.CubaLIF:
    """snnTorch's Synaptic as docs/neurons.md's export writes it (exact and plain fields)."""
    tau_syn = (1 / (1 - ALPHA.astype(np.float64))).astype(np.float32)
    tau_mem = (1 / (1 - BETA.astype(np.float64))).astype(np.float32)
    zeros = np.zeros(N, np.float32)
    return ir.CubaLIF(
        tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem, v_leak=zeros, v_threshold=THRESHOLD, w_in=tau_syn,
        alpha=ALPHA, beta=BETA, **reset,
    )  # fmt: skip


def exact_lapicque() -> ir.CubaLIF:
    gain = np.full(N, 2.0, np.float32)
    tau_mem = (1 / (1 - BETA.astype(np.float64))).astype(np.float32)
    ones = np.ones(N, np.float32)
    return ir.CubaLIF(
        tau_syn=ones, tau_mem=tau_mem, r=tau_mem, v_leak=0 * ones, v_threshold=THRESHOLD, w_in=gain,
        beta=BETA, input_gain=gain, reset_mechanism="zero", reset_delay=False,
    )  # fmt: skip


FIELDS = ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in", "alpha", "beta", "input_gain", "w_rec")


def assert_same_node(got: ir.CubaLIF, want: ir.CubaLIF) -> None:
    for field in FIELDS:
        a, b = getattr(got, field), getattr(want, field)
        assert (a is None) == (b is None), field
        if a is not None:
            assert a.dtype == b.dtype == np.float32, field
            np.testing.assert_array_equal(a, b, err_msg=field)
    assert (got.reset_mechanism or "zero", bool(got.reset_delay)) == (
        want.reset_mechanism or "zero",
        bool(want.reset_delay),
    )


@pytest.mark.parametrize("build", [lambda: exact_synaptic(), exact_lapicque], ids=["synaptic", "lapicque"])
def test_exact_cuba_lif_exports_to_nirs_equations_and_comes_back(build, tmp_path):
    """to_nir writes NIR fields whose equations are the exact neuron's; from_nir restores every field."""
    node = build()
    dt = 1e-3
    nir.write(tmp_path / "out.nir", to_nir(t1c_chain(node, shape=(N,)), dt=dt))
    written = nir.read(tmp_path / "out.nir").nodes["cubalif_1"]
    assert isinstance(written, nir.CubaLIF)
    np.testing.assert_array_equal(written.metadata["t1c_beta"], BETA)
    xs = currents(0.3, seed=2)
    nir_run = nir_cuba_lif(xs, **nir_params(written), dt=dt)
    assert_same_spikes(nir_run, cuba_lif(node, [xs]), current=node.alpha is not None)
    assert_same_node(from_nir(tmp_path / "out.nir", dt=dt).nodes["cubalif_1"], node)


def test_retrained_fields_drop_the_stale_exact_fields():
    g = to_nir(t1c_chain(exact_synaptic(), shape=(N,)), dt=1e-3)
    g.nodes["cubalif_1"].tau_mem = g.nodes["cubalif_1"].tau_mem * 1.01  # retrained in another tool
    node = from_nir(g, dt=1e-3).nodes["cubalif_1"]
    assert node.alpha is None and node.beta is None


def test_snntorch_default_reset_is_refused_by_name_or_exported_approximately():
    """Synaptic's default (subtract, delayed) has no NIR form; approximate=True warns and round-trips."""
    node = exact_synaptic(reset_mechanism="subtract", reset_delay=True)
    graph = t1c_chain(node, shape=(N,))
    with pytest.raises(NIRConversionError, match=r"reset_mechanism='subtract'.*reset_delay=True") as info:
        to_nir(graph, dt=1e-3)
    assert info.value.node == "cubalif_1"
    with pytest.warns(UserWarning, match="exported approximately"):
        g = to_nir(graph, dt=1e-3, approximate=True)
    assert_same_node(from_nir(g, dt=1e-3).nodes["cubalif_1"], node)


def test_plain_cuba_lif_round_trip_is_bit_exact():
    ones = np.ones(N, np.float32)
    node = ir.CubaLIF(
        tau_syn=np.linspace(1, 9, N, dtype=np.float32), tau_mem=np.linspace(2, 30, N, dtype=np.float32),
        r=np.linspace(0.5, 2, N, dtype=np.float32), v_leak=0.1 * ones, v_threshold=ones, w_in=3 * ones,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = from_nir(to_nir(t1c_chain(node, shape=(N,)), dt=1e-3), dt=1e-3).nodes["cubalif_1"]
    assert_same_node(back, node)


def _nir_cuba(**changes):
    fields = dict(
        tau_syn=np.full(4, 2e-3),
        tau_mem=np.full(4, 4e-3),
        r=np.ones(4),
        v_leak=np.zeros(4),
        v_threshold=np.ones(4),
    )
    fields.update(changes)
    return chain_nir(nir.CubaLIF(**fields))


IMPORT_REFUSALS = {
    "v_reset": (lambda: _nir_cuba(v_reset=np.full(4, 0.5)), "v_reset != 0"),
    "tau_syn below dt": (lambda: _nir_cuba(tau_syn=np.full(4, 5e-4)), "needs dt <= tau_syn"),
    "infinite tau_mem": (lambda: _nir_cuba(tau_mem=np.full(4, np.inf)), "needs dt <= tau_mem"),
    "negative threshold": (lambda: _nir_cuba(v_threshold=np.full(4, -0.5)), "v_threshold < 0"),
}


@pytest.mark.parametrize("case", sorted(IMPORT_REFUSALS))
def test_from_nir_refuses_with_node_and_reason(case):
    build, reason = IMPORT_REFUSALS[case]
    assert_refused(from_nir, build(), reason)


def _t1c_cuba_fields(**changes) -> dict:
    ones = np.ones(4, np.float32)
    fields = dict(tau_syn=2 * ones, tau_mem=4 * ones, r=ones, v_leak=0 * ones, v_threshold=ones, w_in=ones)
    fields.update(changes)
    return fields


def _t1c_cuba(**changes):
    return t1c_chain(ir.CubaLIF(**_t1c_cuba_fields(**changes)))


EXPORT_REFUSALS = {
    "w_rec over [C, H, W]": (
        lambda: t1c_chain(
            ir.CubaLIF(
                **{k: v.reshape(2, 2) for k, v in _t1c_cuba_fields(w_rec=np.full(4, 0.5, np.float32)).items()}
            ),
            shape=(2, 2),
        ),
        r"w_rec over a layer of shape \[2, 2\].*diagonal Linear",
    ),
    "decay of 1": (
        lambda: _t1c_cuba(tau_mem=np.full(4, np.inf), r=np.full(4, np.inf), beta=np.ones(4)),
        "decay of 1",
    ),
    "none reset": (lambda: _t1c_cuba(reset_mechanism="none"), "reset_mechanism='none'"),
    "negative threshold": (lambda: _t1c_cuba(v_threshold=np.full(4, -0.5)), "v_threshold < 0"),
}


@pytest.mark.parametrize("case", sorted(EXPORT_REFUSALS))
def test_to_nir_refuses_with_node_and_reason(case):
    build, reason = EXPORT_REFUSALS[case]
    assert_refused(to_nir, build(), reason)
