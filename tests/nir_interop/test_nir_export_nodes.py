"""t1c.nir.export_nodes: each T1C-IR node's NIR form runs like T1C (the reference), or is refused."""

from __future__ import annotations

import numpy as np
import pytest

from t1c import ir

nir = pytest.importorskip("nir")

from nir_reference import DT, MARGIN, assert_refused, ints, run_t1c, simulate, spikes_in, t1c_chain  # noqa: E402

from t1c.nir import from_nir, to_nir  # noqa: E402


def test_export_matches_nir_reference_at_the_threshold():
    """A plain T1C LIF fires on v >= thr; NIR on v > thr: the exported threshold is the next
    float32 below, so a membrane exactly on the threshold still fires in NIR."""
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([2])}),
        ir.Affine(weight=np.eye(2), bias=np.zeros(2)),
        ir.LIF(tau=np.full(2, 2.0), r=np.full(2, 2.0), v_leak=np.zeros(2), v_threshold=np.ones(2)),
        ir.Output(),
        names=["input", "fc", "lif", "output"],
    )
    xs = np.array([[[1.0, 0.5]], [[0.0, 0.75]], [[1.0, 0.0]]], dtype=np.float32)  # v hits 1.0 exactly
    got = run_t1c(graph, xs)
    assert got[0, 0, 0] == 1  # >= fires on equality
    exported = to_nir(graph, dt=DT)
    assert exported.nodes["lif"].metadata["t1c_strict_threshold"] is False
    np.testing.assert_array_equal(simulate(exported, xs)[0], got)


def test_round_trip_snntorch_leaky_zero_reset_keeps_beta(tmp_path):
    beta = np.array([0.5, 0.75, 0.25], dtype=np.float32)
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([3])}),
        ir.Affine(weight=np.eye(3), bias=np.zeros(3)),
        ir.LIF(
            tau=1 / (1 - beta),
            r=1 / (1 - beta),
            v_leak=np.zeros(3),
            v_threshold=np.full(3, 1.0 + 2**-12),
            beta=beta,
            reset_mechanism="zero",
            reset_delay=False,
            strict_threshold=True,
        ),
        ir.Output(),
        names=["input", "fc", "lif", "output"],
    )
    exported = to_nir(graph, dt=DT)
    path = tmp_path / "leaky.nir"
    nir.write(path, exported)
    back = from_nir(path, dt=DT)
    np.testing.assert_array_equal(back.nodes["lif"].beta, beta)
    xs = spikes_in((3,))
    expected, margin = simulate(nir.read(path, type_check=False), xs)
    assert margin > MARGIN
    np.testing.assert_array_equal(run_t1c(back, xs), run_t1c(graph, xs))
    np.testing.assert_array_equal(run_t1c(graph, xs), expected)


def test_if_round_trip_and_sepconv_spiking_affine_export():
    beta1 = ir.LIF(
        tau=np.full(4, np.inf),
        r=np.full(4, np.inf),
        v_leak=np.zeros(4),
        v_threshold=np.full(4, 1.5),
        beta=np.ones(4),
        reset_mechanism="zero",
        reset_delay=False,
        strict_threshold=True,
    )
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([3])}),
        ir.SpikingAffine(
            weight=np.ones((4, 3)), bias=np.zeros(4), spike_mode="graded", weight_bits=4, accumulator_bits=12
        ),
        beta1,
        ir.Output(),
        names=["input", "sa", "if", "output"],
    )
    graph.nodes["sa"].metadata = {"origin": "test", "layer": 3}
    exported = to_nir(graph, dt=DT)
    assert isinstance(exported.nodes["if"], nir.IF) and isinstance(exported.nodes["sa"], nir.Affine)
    assert exported.nodes["sa"].metadata["weight_bits"] == 4
    back = from_nir(exported, dt=DT)
    assert ir.topology_diff(graph, back) == []
    assert isinstance(back.nodes["sa"], ir.SpikingAffine) and back.nodes["sa"].spike_mode == "graded"
    assert back.nodes["sa"].metadata == {"origin": "test", "layer": 3}  # plain node metadata travels
    xs = spikes_in((3,))
    np.testing.assert_array_equal(run_t1c(back, xs), run_t1c(graph, xs))

    sep = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([2, 5, 5])}),
        ir.SepConv2d(
            depthwise_weight=ints((2, 1, 3, 3), 14),
            pointwise_weight=ints((3, 2, 1, 1), 15),
            padding=1,
            stride=2,
        ),
        ir.Output(),
        names=["input", "sep", "output"],
    )
    exported = to_nir(sep, dt=DT)
    dw, pw = exported.nodes["sep.depthwise"], exported.nodes["sep.pointwise"]
    assert dw.groups == 2 and pw.weight.shape == (3, 2, 1, 1)
    assert ("sep.depthwise", "sep.pointwise") in exported.edges
    xs = np.random.default_rng(1).random((2, 1, 2, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(run_t1c(from_nir(exported, dt=DT), xs), run_t1c(sep, xs), rtol=0, atol=1e-6)
    np.testing.assert_allclose(simulate(exported, xs)[0], run_t1c(sep, xs), rtol=0, atol=1e-5)


# -- refusals ---------------------------------------------------------------------------------
def _leaky(**kw):
    args = dict(
        tau=np.full(4, 2.0),
        r=np.full(4, 2.0),
        v_leak=np.zeros(4),
        v_threshold=np.ones(4),
        beta=np.full(4, 0.5),
    )
    args.update(kw)
    return ir.LIF(**args)


NODE_REFUSALS = {
    "concatenate": (
        lambda: ir.Graph(
            {
                "input": ir.Input(input_type={"input": np.array([4])}),
                "cat": ir.Skip(skip_type="concatenate"),
                "output": ir.Output(),
            },
            [("input", "cat"), ("cat", "output")],
        ),
        "no concatenation",
    ),
    "subtract_reset": (lambda: t1c_chain(_leaky(reset_mechanism="subtract")), "reset_mechanism='subtract'"),
    "reset_delay": (lambda: t1c_chain(_leaky(reset_mechanism="zero", reset_delay=True)), "reset_delay=True"),
    "no_reset": (lambda: t1c_chain(_leaky(reset_mechanism="none")), "always resets"),
    "tau_le_1": (
        lambda: t1c_chain(
            ir.LIF(tau=np.full(4, 0.5), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4))
        ),
        "tau <= 1",
    ),
    "mixed_beta": (
        lambda: t1c_chain(_leaky(beta=np.array([1.0, 0.5, 0.5, 0.5]), reset_delay=False)),
        "split the layer",
    ),
    "avgpool_ceil": (
        lambda: t1c_chain(ir.AvgPool2d(kernel_size=2, ceil_mode=True), shape=(2, 5, 5)),
        "ceil_mode",
    ),
    "avgpool_exclude_pad": (
        lambda: t1c_chain(ir.AvgPool2d(kernel_size=2, padding=1, count_include_pad=False), shape=(2, 4, 4)),
        "count_include_pad",
    ),
}


@pytest.mark.parametrize("case", sorted(NODE_REFUSALS))
def test_to_nir_refuses_with_node_and_reason(case):
    build, reason = NODE_REFUSALS[case]
    assert_refused(to_nir, build(), reason)


def test_approximate_exports_snntorch_leaky_with_a_warning():
    graph = t1c_chain(_leaky(reset_mechanism="subtract", reset_delay=True, strict_threshold=True))
    with pytest.warns(UserWarning, match="exported approximately: reset_mechanism='subtract'"):
        exported = to_nir(graph, dt=DT, approximate=True)
    node = exported.nodes["lif_1"]
    np.testing.assert_allclose(1 - DT / node.tau, 0.5)  # the update is kept: v = 0.5 v + I
    np.testing.assert_allclose(DT / node.tau * node.r, 1.0)
