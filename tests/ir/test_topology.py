"""topology_diff: same structure -> []; any structural change -> a readable message."""

from __future__ import annotations

import numpy as np

from t1c import ir

from .factories import mlp, residual


def _rebuild(g: ir.Graph, nodes=None, edges=None) -> ir.Graph:
    return ir.Graph(
        nodes if nodes is not None else dict(g.nodes), edges if edges is not None else list(g.edges)
    )


def test_identical_graphs_have_no_diff():
    assert ir.topology_diff(mlp(), mlp()) == []
    assert ir.same_topology(residual(), residual())


def test_changed_weight_values_are_not_a_topology_change():
    a, b = mlp(), mlp()
    b.nodes["fc1"].weight *= 3.0
    b.nodes["lif1"].v_threshold[:] = 0.25
    assert ir.topology_diff(a, b) == []


def test_read_back_graph_has_the_same_topology(tmp_path):
    g = residual()
    ir.write(tmp_path / "r.t1c", g)
    assert ir.topology_diff(g, ir.read(tmp_path / "r.t1c")) == []


def test_optional_integer_weights_do_not_change_topology():
    a = mlp()
    b = mlp()
    w = np.round(b.nodes["fc1"].weight * 10).astype(np.int64)
    b.nodes["fc1"] = ir.Affine(weight=w / 10, bias=b.nodes["fc1"].bias, weight_int=w, weight_scale=0.1)
    assert ir.topology_diff(a, _rebuild(b, nodes=b.nodes)) == []


def test_renamed_node_is_reported_as_missing_and_new():
    a = mlp()
    nodes = {("hidden" if k == "fc1" else k): v for k, v in a.nodes.items()}
    edges = [(("hidden" if s == "fc1" else s), ("hidden" if d == "fc1" else d)) for s, d in a.edges]
    diff = ir.topology_diff(a, ir.Graph(nodes, edges))
    assert "node 'fc1' (Affine) is missing" in diff
    assert "node 'hidden' (Affine) is new" in diff
    assert "edge input -> fc1 is missing" in diff and "edge input -> hidden is new" in diff


def test_changed_type_is_reported():
    a = mlp()
    b = dict(a.nodes)
    b["fc1"] = ir.SpikingAffine(weight=a.nodes["fc1"].weight, bias=a.nodes["fc1"].bias)
    assert ir.topology_diff(a, _rebuild(a, nodes=b)) == ["node 'fc1': type Affine became SpikingAffine"]


def test_changed_skip_type_is_reported():
    a = residual()
    b = dict(a.nodes)
    b["skip"] = ir.Skip(skip_type="concatenate")
    b["output"] = ir.Output()  # the first graph fixed its Output to [16]; concatenation gives [32]
    diff = ir.topology_diff(a, ir.Graph(b, a.edges))
    assert diff == ["node 'skip': skip_type residual became concatenate"]


def test_changed_param_shape_is_reported():
    a = mlp(8, 6, 3)
    b = mlp(8, 7, 3)
    diff = ir.topology_diff(a, b)
    assert "node 'fc1': weight shape [6, 8] became [7, 8]" in diff
    assert "node 'fc1': bias shape [6] became [7]" in diff
    assert "node 'lif1': tau shape [6] became [7]" in diff
    assert "node 'fc2': weight shape [3, 6] became [3, 7]" in diff


def test_removed_edge_is_reported():
    a = residual()
    # Drop the fb branch entirely so the smaller graph is still valid.
    nodes = {k: v for k, v in a.nodes.items() if k != "fb"}
    edges = [e for e in a.edges if "fb" not in e]
    diff = ir.topology_diff(a, ir.Graph(nodes, edges))
    assert "node 'fb' (Affine) is missing" in diff
    assert "edge input -> fb is missing" in diff and "edge fb -> skip is missing" in diff


def test_added_edge_is_reported():
    a = residual()
    nodes = dict(a.nodes)
    nodes["fc"] = ir.Affine(weight=np.ones((16, 8)))
    edges = [*a.edges[:3], ("input", "fc"), ("fc", "skip"), *a.edges[3:]]
    diff = ir.topology_diff(a, ir.Graph(nodes, edges))
    assert "node 'fc' (Affine) is new" in diff
    assert "edge input -> fc is new" in diff and "edge fc -> skip is new" in diff


def test_reordered_edges_are_reported():
    a = residual()
    edges = list(a.edges)
    edges[2], edges[3] = edges[3], edges[2]  # fb -> skip now comes before fa -> skip
    diff = ir.topology_diff(a, _rebuild(a, edges=edges))
    assert len(diff) == 1
    assert diff[0].startswith("edge order differs")
    assert "fa->skip, fb->skip" in diff[0] and "fb->skip, fa->skip" in diff[0]
    assert not ir.same_topology(a, _rebuild(a, edges=edges))
