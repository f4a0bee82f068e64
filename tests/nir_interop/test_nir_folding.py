"""t1c.nir.folding: Scale and SumPool2d factors go into a neighbouring weight layer exactly, or are refused."""

from __future__ import annotations

import numpy as np
import pytest

from t1c import ir

nir = pytest.importorskip("nir")

from nir_reference import DT, assert_refused, bad_conv, chain_nir, check_against_reference, ints, lif  # noqa: E402

from t1c.nir import from_nir  # noqa: E402


def test_scale_folds_into_weight_layers(tmp_path):
    """Scale after a layer goes into its rows; Scale after neurons goes into the next layer's columns."""
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([4])),
        nir.Affine(weight=ints((6, 4), 11), bias=np.full(6, 0.25, dtype=np.float32)),
        nir.Scale(scale=np.array([2.0, 0.5, 1.0, 4.0, 2.0, 0.5])),
        lif(6),
        nir.Scale(scale=np.full(6, 0.5)),
        nir.Affine(weight=ints((3, 6), 12, 0, 3), bias=np.zeros(3, dtype=np.float32)),
        lif(3, thr=0.5 + 2**-12),
        nir.Output(output_type=np.array([3])),
    )
    graph = check_against_reference(g, tmp_path, (4,))
    assert not any(n.startswith("scale") for n in graph.nodes)
    np.testing.assert_array_equal(graph.nodes["affine"].bias, [0.5, 0.125, 0.25, 1.0, 0.5, 0.125])


def test_conv_scale_folds_per_channel_and_subgraph_ports(tmp_path):
    """A per-channel Scale after a Conv2d goes into its filters; edges may name a subgraph's port."""
    per_channel = np.broadcast_to(np.array([2.0, 0.5, 1.0, 4.0])[:, None, None], (4, 4, 4)).copy()
    block = nir.NIRGraph(
        nodes={
            "x": nir.Input(input_type=np.array([2, 4, 4])),
            "conv": nir.Conv2d(
                input_shape=(4, 4),
                weight=ints((4, 2, 3, 3), 16),
                stride=1,
                padding=1,
                dilation=1,
                groups=1,
                bias=np.full(4, 0.5, dtype=np.float32),
            ),
            "scale": nir.Scale(scale=per_channel),
            "y": nir.Output(output_type=np.array([4, 4, 4])),
        },
        edges=[("x", "conv"), ("conv", "scale"), ("scale", "y")],
    )
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([2, 4, 4])),
            "block": block,
            "lif": lif((4, 4, 4)),
            "out": nir.Output(output_type=np.array([4, 4, 4])),
        },
        edges=[("in", "block"), ("block", "lif"), ("lif", "out")],
    )
    graph = check_against_reference(g, tmp_path, (2, 4, 4))
    assert "block.scale" not in graph.nodes
    np.testing.assert_array_equal(graph.nodes["block.conv"].bias, [1.0, 0.25, 0.5, 2.0])
    # nir 1.0's type check knows only the subgraph's name; untyped graphs may name its ports
    ports = nir.NIRGraph(
        nodes=dict(g.nodes),
        edges=[("in", "block.x"), ("block.y", "lif"), ("lif", "out")],
        type_check=False,
    )
    assert ir.topology_diff(graph, from_nir(ports, dt=DT)) == []


# -- refusals ---------------------------------------------------------------------------------
FOLD_REFUSALS = {
    "sumpool_last": (
        lambda: chain_nir(
            nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
            shape=(2, 4, 4),
        ),
        "the next node 'output' is a Output",
    ),
    "sumpool_before_lif": (
        lambda: chain_nir(
            nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
            lif((2, 2, 2)),
            shape=(2, 4, 4),
        ),
        "not an Affine/Linear/Conv2d",
    ),
    "scale_between_neurons": (
        lambda: chain_nir(lif(4), nir.Scale(scale=np.full(4, 2.0)), lif(4)),
        "not an Affine",
    ),
    "scale_varies_over_hw": (
        lambda: chain_nir(
            bad_conv(weight=np.ones((2, 2, 3, 3))),
            nir.Scale(scale=np.arange(72, dtype=np.float64).reshape(2, 6, 6) + 1),
            lif((2, 6, 6)),
            shape=(2, 6, 6),
        ),
        "not an Affine",
    ),
}


@pytest.mark.parametrize("case", sorted(FOLD_REFUSALS))
def test_from_nir_refuses_with_node_and_reason(case):
    build, reason = FOLD_REFUSALS[case]
    assert_refused(from_nir, build(), reason)
