"""t1c.nir.wiring: several edges into a node become a Skip(residual) join; nested graphs are inlined."""

from __future__ import annotations

import numpy as np
import pytest

from t1c import ir

nir = pytest.importorskip("nir")

from nir_reference import check_against_reference, ints, lif  # noqa: E402

from t1c.nir import NIRConversionError, from_nir  # noqa: E402


def test_residual_sum_becomes_skip(tmp_path):
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([6])),
            "fc1": nir.Affine(weight=ints((6, 6), 7), bias=np.zeros(6, dtype=np.float32)),
            "lif1": lif(6),
            "fc2": nir.Affine(weight=ints((6, 6), 8), bias=np.zeros(6, dtype=np.float32)),
            "lif2": lif(6, thr=0.5 + 2**-12),
            "out": nir.Output(output_type=np.array([6])),
        },
        edges=[
            ("in", "fc1"),
            ("fc1", "lif1"),
            ("lif1", "fc2"),
            ("fc2", "lif2"),
            ("in", "lif2"),
            ("lif2", "out"),
        ],
    )
    graph = check_against_reference(g, tmp_path, (6,))
    assert isinstance(graph.nodes["lif2.sum"], ir.Skip) and graph.nodes["lif2.sum"].skip_type == "residual"
    assert graph.predecessors("lif2.sum") == ["fc2", "in"] and graph.predecessors("lif2") == ["lif2.sum"]


def test_nested_subgraph_is_inlined_with_prefixed_names(tmp_path):
    block = nir.NIRGraph(
        nodes={
            "i": nir.Input(input_type=np.array([6])),
            "fc": nir.Affine(weight=ints((5, 6), 9), bias=np.zeros(5, dtype=np.float32)),
            "lif": lif(5),
            "o": nir.Output(output_type=np.array([5])),
        },
        edges=[("i", "fc"), ("fc", "lif"), ("lif", "o")],
    )
    g = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([6])),
            "block": block,
            "head": nir.Affine(weight=ints((3, 5), 10, 0, 3), bias=np.zeros(3, dtype=np.float32)),
            "lif": lif(3, thr=0.5 + 2**-12),
            "output": nir.Output(output_type=np.array([3])),
        },
        edges=[("input", "block"), ("block", "head"), ("head", "lif"), ("lif", "output")],
    )
    graph = check_against_reference(g, tmp_path, (6,))
    assert set(graph.nodes) == {"input", "block.fc", "block.lif", "head", "lif", "output"}
    assert graph.edges[0] == ("input", "block.fc")


@pytest.mark.parametrize("neuron", ["LIF", "CubaLIF"])
def test_recurrent_graph_is_refused_naming_the_nodes_on_its_cycle(neuron, tmp_path):
    """snnTorch's RLeaky/RSynaptic export: a subgraph input -> lif -> w_rec -> lif -> output."""
    n = 4
    cell = (
        lif(n)
        if neuron == "LIF"
        else nir.CubaLIF(
            tau_syn=np.full(n, 2e-3), tau_mem=np.full(n, 4e-3), r=np.ones(n), v_leak=np.zeros(n),
            v_threshold=np.ones(n),
        )
    )  # fmt: skip
    rnn = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n])),
            "lif": cell,
            "w_rec": nir.Linear(weight=np.diag(np.full(n, 0.5))),
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([3])),
            "fc": nir.Linear(weight=ints((n, 3), 5)),
            "rnn": rnn,
            "fc2": nir.Linear(weight=ints((2, n), 6)),
            "out": nir.Output(output_type=np.array([2])),
        },
        edges=[("in", "fc"), ("fc", "rnn"), ("rnn", "fc2"), ("fc2", "out")],
    )
    nir.write(tmp_path / "rnn.nir", g)
    with pytest.raises(
        NIRConversionError, match=r"recurrent: a cycle runs through \['rnn.lif', 'rnn.w_rec'\]"
    ) as info:
        from_nir(tmp_path / "rnn.nir", dt=1e-3)
    assert info.value.node == "rnn.lif"
