"""Graph validation, deterministic order, and shape inference (Flatten's against torch; the
families' own rules are in their files: test_conv.py, test_pooling.py, ...)."""

from __future__ import annotations

import numpy as np
import pytest

from t1c import ir

from .factories import lif, mlp, residual, shape_through


def _inp(*shape: int) -> ir.Input:
    return ir.Input(input_type={"input": np.array(shape)})


def _fc(n_out: int, n_in: int) -> ir.Affine:
    return ir.Affine(weight=np.ones((n_out, n_in)))


# -- structure --------------------------------------------------------------------------


def _chain_nodes() -> dict[str, ir.Node]:
    return {"input": _inp(4), "fc": _fc(3, 4), "output": ir.Output()}


STRUCTURE_ERRORS = {
    "edge_to_missing_node": (
        lambda: ir.Graph(_chain_nodes(), [("input", "fc"), ("fc", "ghost"), ("fc", "output")]),
        "ghost",
        "does not exist",
    ),
    "edge_from_missing_node": (
        lambda: ir.Graph(_chain_nodes(), [("input", "fc"), ("phantom", "fc"), ("fc", "output")]),
        "phantom",
        "does not exist",
    ),
    "self_loop": (
        lambda: ir.Graph(_chain_nodes(), [("input", "fc"), ("fc", "fc"), ("fc", "output")]),
        "fc",
        "self loop",
    ),
    "duplicate_edge": (
        lambda: ir.Graph(_chain_nodes(), [("input", "fc"), ("fc", "output"), ("fc", "output")]),
        "output",
        "duplicate",
    ),
    "no_input": (
        lambda: ir.Graph({"fc": _fc(3, 4), "output": ir.Output()}, [("fc", "output")]),
        None,
        "no Input",
    ),
    "no_output": (
        lambda: ir.Graph({"input": _inp(4), "fc": _fc(3, 4)}, [("input", "fc")]),
        None,
        "no Output",
    ),
    "unreachable_node": (
        lambda: ir.Graph({**_chain_nodes(), "orphan": _fc(3, 3)}, [("input", "fc"), ("fc", "output")]),
        "orphan",
        "not reachable",
    ),
    "unreachable_output": (
        lambda: ir.Graph({"input": _inp(4), "fc": _fc(3, 4), "output": ir.Output()}, [("input", "fc")]),
        "output",
        "not reachable",
    ),
    "cycle": (
        lambda: ir.Graph(
            {"input": _inp(4), "a": ir.Affine(weight=np.ones((4, 4))), "b": lif(4), "output": ir.Output()},
            [("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")],
        ),
        "a",
        "cycle",
    ),
    "edge_into_input": (
        lambda: ir.Graph(
            {"input": _inp(4), "in2": _inp(4), "output": ir.Output()},
            [("input", "in2"), ("in2", "output")],
        ),
        "in2",
        "cannot have incoming edges",
    ),
    "name_with_slash": (
        lambda: ir.Graph({"input": _inp(4), "a/b": ir.Output()}, [("input", "a/b")]),
        "a/b",
        "'/'",
    ),
    "not_a_node": (
        lambda: ir.Graph(
            {"input": _inp(4), "fc": object(), "output": ir.Output()}, [("input", "fc"), ("fc", "output")]
        ),
        "fc",
        "not a T1C-IR primitive",
    ),
    "chain_names_mismatch": (lambda: ir.Graph.from_chain(_inp(4), ir.Output(), names=["a"]), None, "names"),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE_ERRORS))
def test_invalid_structure_is_refused(case):
    build, node, words = STRUCTURE_ERRORS[case]
    with pytest.raises(ir.T1CFormatError, match=words) as info:
        build()
    assert info.value.node == node
    if node is not None:
        assert f"node '{node}'" in str(info.value)


def test_cycle_is_accepted_with_allow_cycles():
    nodes = {"input": _inp(4), "a": ir.Affine(weight=np.ones((4, 4))), "b": lif(4), "output": ir.Output()}
    edges = [("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")]
    g = ir.Graph(nodes, edges, allow_cycles=True)
    assert g.topological_order() == ["input", "a", "b", "output"]
    assert g.output_shapes["output"] == (4,)


def test_validate_false_keeps_a_broken_graph_for_inspection():
    g = ir.Graph({"fc": _fc(3, 4)}, [("fc", "nowhere")], validate=False)
    assert g.edges == [("fc", "nowhere")]
    with pytest.raises(ir.T1CFormatError, match="does not exist"):
        g.validate()


def test_accessors():
    g = residual()
    assert g.input_names == ["input"] and g.output_names == ["output"]
    assert g.predecessors("skip") == ["fa", "fb"]
    assert g.successors("input") == ["fa", "fb"]
    assert g.input_shapes["skip"] == [(16,), (16,)]
    assert g.output_shapes["output"] == (16,)
    assert "5 nodes" in repr(g)


# -- deterministic order ------------------------------------------------------------------


def _diamond(order: list[str]) -> ir.Graph:
    pool = {
        "input": _inp(4),
        "left": _fc(4, 4),
        "right": _fc(4, 4),
        "mid": ir.Skip(skip_type="passthrough"),
        "join": ir.Skip(skip_type="residual"),
        "output": ir.Output(),
    }
    edges = [
        ("input", "left"),
        ("input", "right"),
        ("right", "mid"),
        ("left", "join"),
        ("mid", "join"),
        ("join", "output"),
    ]
    return ir.Graph({name: pool[name] for name in order}, edges)


def test_topological_order_is_deterministic_and_follows_insertion_order():
    names = ["input", "left", "right", "mid", "join", "output"]
    g = _diamond(names)
    assert g.topological_order() == names
    assert _diamond(names).topological_order() == g.topological_order()
    swapped = ["input", "right", "mid", "left", "join", "output"]
    assert _diamond(swapped).topological_order() == swapped
    # Insertion order only breaks ties; dependencies always win.
    backwards = list(reversed(names))
    order = _diamond(backwards).topological_order()
    for src, dst in g.edges:
        assert order.index(src) < order.index(dst)
    assert order == ["input", "right", "mid", "left", "join", "output"]


def test_topological_order_is_stable_across_a_file(tmp_path):
    g = _diamond(["input", "right", "mid", "left", "join", "output"])
    ir.write(tmp_path / "d.t1c", g)
    assert ir.read(tmp_path / "d.t1c").topological_order() == g.topological_order()


# -- shape inference --------------------------------------------------------------------------


def test_shape_inference_through_a_chain():
    g = mlp(8, 6, 3)
    assert g.output_shapes == {
        "input": (8,),
        "fc1": (6,),
        "lif1": (6,),
        "fc2": (3,),
        "lif2": (3,),
        "output": (3,),
    }
    assert g.input_shapes["fc2"] == [(6,)]
    assert g.input_shapes["input"] == []


def test_residual_shape_conflict_names_the_skip_and_both_feeds():
    with pytest.raises(ir.T1CFormatError) as info:
        residual(16, 32)
    msg = str(info.value)
    assert info.value.node == "skip"
    assert "node 'skip'" in msg and "'fa' gives [16]" in msg and "'fb' gives [32]" in msg


def test_sum_of_mismatched_inputs_names_both_feeds():
    nodes = {"input": _inp(8), "a": _fc(4, 8), "b": _fc(5, 8), "lif": lif(4), "output": ir.Output()}
    edges = [("input", "a"), ("input", "b"), ("a", "lif"), ("b", "lif"), ("lif", "output")]
    with pytest.raises(ir.T1CFormatError, match="'a' gives \\[4\\].*'b' gives \\[5\\]") as info:
        ir.Graph(nodes, edges)
    assert info.value.node == "lif"


def test_wrong_input_size_names_the_node_and_its_feed():
    with pytest.raises(ir.T1CFormatError, match="'input' gives \\[5\\]") as info:
        ir.Graph.from_chain(_inp(5), _fc(3, 4), ir.Output(), names=["input", "fc", "output"])
    assert (info.value.node, info.value.field) == ("fc", "weight")


def test_lif_of_the_wrong_shape_is_refused():
    with pytest.raises(ir.T1CFormatError, match="neurons of shape \\[3\\]") as info:
        ir.Graph.from_chain(_inp(4), lif(3), ir.Output(), names=["input", "lif", "output"])
    assert info.value.node == "lif"


def test_output_declaring_the_wrong_shape_is_refused():
    with pytest.raises(ir.T1CFormatError, match="declares shape") as info:
        ir.Graph.from_chain(_inp(4), ir.Output(output_type={"output": [5]}), names=["input", "output"])
    assert (info.value.node, info.value.field) == ("output", "shape")


def test_concatenate_skip_sums_channels_in_edge_order():
    nodes = {
        "input": _inp(2, 4, 4),
        "a": ir.Conv2d(weight=np.ones((3, 2, 1, 1))),
        "b": ir.Conv2d(weight=np.ones((5, 2, 1, 1))),
        "cat": ir.Skip(skip_type="concatenate"),
        "output": ir.Output(),
    }
    edges = [("input", "a"), ("input", "b"), ("b", "cat"), ("a", "cat"), ("cat", "output")]
    g = ir.Graph(nodes, edges)
    assert g.predecessors("cat") == ["b", "a"]
    assert g.input_shapes["cat"] == [(5, 4, 4), (3, 4, 4)]
    assert g.output_shapes["cat"] == (8, 4, 4)


def test_concatenate_of_different_spatial_shapes_is_refused():
    nodes = {
        "input": _inp(2, 4, 4),
        "a": ir.Conv2d(weight=np.ones((3, 2, 1, 1))),
        "b": ir.MaxPool2d(kernel_size=2),
        "cat": ir.Skip(skip_type="concatenate"),
        "output": ir.Output(),
    }
    edges = [("input", "a"), ("input", "b"), ("a", "cat"), ("b", "cat"), ("cat", "output")]
    with pytest.raises(ir.T1CFormatError, match="'a' gives \\[3, 4, 4\\].*'b' gives \\[2, 2, 2\\]") as info:
        ir.Graph(nodes, edges)
    assert info.value.node == "cat"


def test_passthrough_skip_takes_one_input():
    nodes = {"input": _inp(4), "a": _fc(4, 4), "p": ir.Skip(skip_type="passthrough"), "output": ir.Output()}
    edges = [("input", "a"), ("input", "p"), ("a", "p"), ("p", "output")]
    with pytest.raises(ir.T1CFormatError, match="passthrough") as info:
        ir.Graph(nodes, edges)
    assert info.value.node == "p"


torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "in_shape,start,end",
    [
        ((3, 4, 5), 0, -1),
        ((3, 4, 5), 1, -1),
        ((3, 4, 5), 0, 1),
        ((3, 4, 5), 1, 2),
        ((3, 4, 5), -2, -1),
        ((7,), 0, -1),
    ],
)
def test_flatten_shape_matches_torch(in_shape, start, end):
    x = torch.zeros(1, *in_shape)
    want = torch.flatten(x, start + 1 if start >= 0 else start, end + 1 if end >= 0 else end).shape[1:]
    assert shape_through(ir.Flatten(start_dim=start, end_dim=end), in_shape) == tuple(want)


@pytest.mark.parametrize("start,end,field", [(3, -1, "start_dim"), (2, 1, "end_dim"), (0, 5, "end_dim")])
def test_flatten_out_of_range_is_refused(start, end, field):
    with pytest.raises(ir.T1CFormatError) as info:
        shape_through(ir.Flatten(start_dim=start, end_dim=end), (3, 4, 5))
    assert (info.value.node, info.value.field) == ("n", field)


def test_content_hash_tracks_weights_and_edges_but_not_metadata():
    a, b = mlp(), mlp(metadata={"epoch": 3})
    assert a.content_hash() == b.content_hash()
    b.nodes["fc1"].weight[0, 0] += 1
    assert a.content_hash() != b.content_hash()


def _recurrent_layer(rec: ir.Node) -> tuple[dict[str, ir.Node], list[tuple[str, str]]]:
    """fc -> neuron with ``rec`` on the back edge (docs/neurons.md's wiring: rec first)."""
    nodes = {"input": _inp(3), "fc": _fc(4, 3), "rec": rec, "sum": ir.Skip("residual"), "b": lif(4)}
    nodes["output"] = ir.Output()
    edges = [("input", "fc"), ("fc", "sum"), ("rec", "sum"), ("sum", "b"), ("b", "rec"), ("b", "output")]
    return nodes, edges


def test_a_node_fed_only_by_a_back_edge_takes_its_source_shape():
    g = ir.Graph(*_recurrent_layer(_fc(4, 4)), allow_cycles=True)
    assert g.cyclic
    assert g.output_shapes["rec"] == (4,)
    assert g.input_shapes["rec"] == [(4,)]
    assert g.input_shapes["sum"] == [(4,), (4,)]
    assert g.output_shapes["output"] == (4,)


def test_a_back_edge_of_the_wrong_shape_is_refused_naming_the_node():
    with pytest.raises(ir.T1CFormatError, match="'fc' gives \\[4\\], 'rec' gives \\[5\\]") as info:
        ir.Graph(*_recurrent_layer(_fc(5, 4)), allow_cycles=True)
    assert info.value.node == "sum"


def test_an_acyclic_graph_is_not_cyclic_even_when_cycles_are_allowed():
    assert not ir.Graph(_chain_nodes(), [("input", "fc"), ("fc", "output")], allow_cycles=True).cyclic
