"""t1c.nir.import_nodes: each NIR node's T1C-IR form runs like NIR's equations (the reference), or is refused."""

from __future__ import annotations

import numpy as np
import pytest

from t1c import ir

nir = pytest.importorskip("nir")

from nir_reference import (  # noqa: E402
    DT,
    assert_refused,
    bad_conv,
    chain_nir,
    check_against_reference,
    ints,
    lif,
    run_t1c,
    simulate,
)

from t1c.nir import from_nir  # noqa: E402


def test_mlp_lif_affine_linear(tmp_path):
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([6])),
        nir.Affine(weight=ints((8, 6), 1), bias=np.full(8, 0.5, dtype=np.float32)),
        lif(8),
        nir.Linear(weight=ints((4, 8), 2, 0, 3)),
        lif(4, tau_steps=4.0, r=4.0, thr=0.75 + 2**-12),
        nir.Output(output_type=np.array([4])),
    )
    graph = check_against_reference(g, tmp_path, (6,))
    lif_node = graph.nodes["lif"]
    assert isinstance(lif_node, ir.LIF) and lif_node.strict_threshold is True
    np.testing.assert_array_equal(lif_node.tau, np.full(8, 2.0, dtype=np.float32))  # tau / dt
    assert isinstance(graph.nodes["linear"], ir.Affine) and not graph.nodes["linear"].bias.any()
    assert graph.metadata["nir_dt"] == DT


def test_lif_is_forward_euler_with_strict_threshold_and_zero_reset():
    """v = 0.5 v + I exactly; v == thr does not fire (NIR is strict), v > thr fires and resets."""
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1])), lif(1, thr=1.0), nir.Output(output_type=np.array([1]))
    )
    xs = np.array([1.0, 0.5, 0.5, 0.0, 1.0], dtype=np.float32).reshape(5, 1, 1)
    # v: 1 (== thr, no spike), 1.0 (no), 1.0 (no), 0.5, 1.25 -> spike, reset
    got = run_t1c(from_nir(g, dt=DT), xs).reshape(-1)
    np.testing.assert_array_equal(got, [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(simulate(g, xs)[0].reshape(-1), got)


def test_conv_if_sumpool_flatten(tmp_path):
    """Conv2d with padding='same' and input_shape, IF, SumPool2d folded into the Linear, Flatten."""
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([2, 6, 6])),
            "conv": nir.Conv2d(
                input_shape=(6, 6),
                weight=ints((4, 2, 3, 3), 3),
                stride=1,
                padding="same",
                dilation=1,
                groups=1,
                bias=np.zeros(4, dtype=np.float32),
            ),
            "if": nir.IF(r=np.full((4, 6, 6), 2 / DT), v_threshold=np.full((4, 6, 6), 3.0)),
            "pool": nir.SumPool2d(
                kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
            ),
            "flat": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
            "fc": nir.Linear(weight=ints((5, 36), 4)),
            "lif": lif(5, thr=0.5 + 2**-12),
            "out": nir.Output(output_type=np.array([5])),
        },
        edges=[
            ("in", "conv"),
            ("conv", "if"),
            ("if", "pool"),
            ("pool", "flat"),
            ("flat", "fc"),
            ("fc", "lif"),
            ("lif", "out"),
        ],
    )
    graph = check_against_reference(g, tmp_path, (2, 6, 6))
    assert isinstance(graph.nodes["pool"], ir.AvgPool2d)
    np.testing.assert_array_equal(graph.nodes["fc"].weight, g.nodes["fc"].weight * 4)  # k*k folded
    np.testing.assert_array_equal(graph.nodes["conv"].padding, [1, 1])
    neuron = graph.nodes["if"]
    assert neuron.beta is not None and (neuron.beta == 1).all() and np.isinf(neuron.tau).all()


def test_conv_stride_groups_avgpool_and_flatten_dims(tmp_path):
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([2, 8, 8])),
            "conv": nir.Conv2d(
                input_shape=None,  # nir 1.0 types a grouped Conv2d's input wrongly; NIR infers it
                weight=ints((4, 1, 3, 3), 5, 0, 2),
                stride=(2, 2),
                padding=(1, 1),
                dilation=1,
                groups=2,
                bias=np.full(4, -0.5, dtype=np.float32),
            ),
            "lif": lif((4, 4, 4), thr=1.0 + 2**-12),
            "pool": nir.AvgPool2d(
                kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
            ),
            "flat": nir.Flatten(input_type=np.array([4, 2, 2]), start_dim=1, end_dim=2),  # [4, 4]
            "flat2": nir.Flatten(input_type=np.array([4, 4]), start_dim=0, end_dim=-1),
            "fc": nir.Affine(weight=ints((3, 16), 6), bias=np.zeros(3, dtype=np.float32)),
            "lif2": lif(3, thr=0.5 + 2**-12),
            "out": nir.Output(output_type=np.array([3])),
        },
        edges=[
            ("in", "conv"),
            ("conv", "lif"),
            ("lif", "pool"),
            ("pool", "flat"),
            ("flat", "flat2"),
            ("flat2", "fc"),
            ("fc", "lif2"),
            ("lif2", "out"),
        ],
    )
    graph = check_against_reference(g, tmp_path, (2, 8, 8), seed=1)
    assert graph.output_shapes["flat"] == (4, 4)
    assert graph.nodes["conv"].groups == 2


def test_threshold_and_zero_delay_and_identity_scale(tmp_path):
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([5])),
        nir.Affine(weight=ints((4, 5), 13), bias=np.zeros(4, dtype=np.float32)),
        nir.Delay(delay=np.zeros(4)),
        nir.Scale(scale=np.ones(4)),
        nir.Threshold(threshold=np.full(4, 0.5)),
        nir.Output(output_type=np.array([4])),
    )
    graph = check_against_reference(g, tmp_path, (5,))
    assert graph.nodes["delay"].skip_type == "passthrough" and graph.nodes["scale"].skip_type == "passthrough"
    assert (graph.nodes["threshold"].tau == 1).all()


# -- refusals ---------------------------------------------------------------------------------
NODE_REFUSALS = {
    "v_reset": (lambda: chain_nir(lif(4, v_reset=np.full(4, 0.1))), "v_reset != 0"),
    "dt_ge_tau": (lambda: chain_nir(lif(4, tau_steps=1.0)), "dt < tau"),
    "Delay": (lambda: chain_nir(nir.Delay(delay=np.full(4, 2e-3))), "no delay line"),
    "same_even_kernel": (lambda: chain_nir(bad_conv(), shape=(2, 6, 6)), "pads one side more"),
    "same_stride": (
        lambda: chain_nir(bad_conv(weight=np.ones((2, 2, 3, 3)), stride=2), shape=(2, 6, 6)),
        "undefined",
    ),
    "if_negative_threshold": (
        lambda: chain_nir(nir.IF(r=np.ones(4), v_threshold=np.full(4, -1.0))),
        "v_threshold <= 0",
    ),
    "if_negative_r": (lambda: chain_nir(nir.IF(r=-np.ones(4), v_threshold=np.ones(4))), "r > 0"),
    "affine_3d": (
        lambda: chain_nir(nir.Affine(weight=np.ones((2, 3, 4)), bias=np.zeros(3))),
        "2-D Affine only",
    ),
}


@pytest.mark.parametrize("case", sorted(NODE_REFUSALS))
def test_from_nir_refuses_with_node_and_reason(case):
    build, reason = NODE_REFUSALS[case]
    assert_refused(from_nir, build(), reason)
