"""t1c.nir.wiring: several edges into a node become a Skip(residual) join (and NIR's edges again on
export); nested graphs are inlined; cycles must run through exactly one neuron."""

from __future__ import annotations

import numpy as np
import pytest

from t1c import ir

nir = pytest.importorskip("nir")

from nir_reference import assert_same_nir, check_against_reference, ints, lif  # noqa: E402

from t1c.nir import NIRConversionError, from_nir, to_nir  # noqa: E402


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
    nir.write(tmp_path / "back.nir", to_nir(graph, dt=1e-3))  # the join is NIR's two edges again
    assert_same_nir(nir.read(tmp_path / "back.nir"), nir.read(tmp_path / "model.nir"))


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


def _cycle(*cycle_nodes, shape: int = 4) -> nir.NIRGraph:
    """``in -> fc -> first`` with the given nodes in a cycle (``a -> b -> ... -> a``), first -> out."""
    names = [f"c{i}" for i in range(len(cycle_nodes))]
    nodes = {"in": nir.Input(input_type=np.array([shape])), "fc": nir.Linear(weight=ints((shape, shape), 5))}
    nodes.update(zip(names, cycle_nodes))
    nodes["out"] = nir.Output(output_type=np.array([shape]))
    ring = list(zip(names, names[1:] + names[:1]))
    return nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "c0"), *ring, ("c0", "out")])


def _weights(shape: int = 4):
    return nir.Linear(weight=np.eye(shape, dtype=np.float32) * np.float32(0.5))


CYCLE_REFUSALS = {
    "no neuron": (lambda: _cycle(_weights(), _weights()), r"cycle through 0 neurons \[\]"),
    "two neurons": (
        lambda: _cycle(lif(4), _weights(), lif(4), _weights()),
        r"cycle through 2 neurons \['c0', 'c2'\].*exactly one neuron",
    ),
    "self edge": (lambda: _cycle(nir.Scale(scale=np.ones(4, np.float32))), "edge from the node to itself"),
}


@pytest.mark.parametrize("case", sorted(CYCLE_REFUSALS))
def test_cycles_without_one_neuron_are_refused_naming_their_nodes(case):
    """A recurrent edge waits one step behind its neuron: a cycle must hold exactly one."""
    build, reason = CYCLE_REFUSALS[case]
    with pytest.raises(NIRConversionError, match=reason) as info:
        from_nir(build(), dt=1e-3)
    assert info.value.node == "c0"
