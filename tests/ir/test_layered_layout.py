"""The layered layout (t1c.ir.layered_layout): layers, orderings, routes, bounds."""

from __future__ import annotations

import pytest

from t1c.ir.layered_layout import _inversions, assign_layers, layered_layout


def test_layers_are_longest_paths():
    edges = [("a", "b"), ("b", "c"), ("a", "c"), ("c", "d")]
    assert assign_layers("abcd", edges) == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_cycle_is_refused():
    with pytest.raises(ValueError, match="back edges"):
        assign_layers("ab", [("a", "b"), ("b", "a")])


def test_residual_block_routes_the_shortcut_beside_the_chain_without_crossings():
    nodes = ["in", "fc1", "lif1", "fc2", "skip", "out"]
    edges = [
        ("in", "fc1"),
        ("fc1", "lif1"),
        ("lif1", "fc2"),
        ("fc2", "skip"),
        ("in", "skip"),
        ("skip", "out"),
    ]
    layout = layered_layout(nodes, edges)
    assert layout.crossings == 0 and layout.layers == 6
    shortcut = layout.routes[4]
    assert len(shortcut) == 5  # in, three dummy points, skip
    assert all(x != layout.positions["fc1"][0] for x, _ in shortcut[1:-1])
    assert [layer for _, layer in shortcut] == [0, 1, 2, 3, 4]


def test_stacked_residual_blocks_have_no_crossings():
    nodes, edges, prev = ["in"], [], "in"
    for b in range(20):
        nodes += [f"a{b}", f"b{b}", f"s{b}"]
        edges += [(prev, f"a{b}"), (f"a{b}", f"b{b}"), (f"b{b}", f"s{b}"), (prev, f"s{b}")]
        prev = f"s{b}"
    layout = layered_layout(nodes, edges)
    assert layout.crossings == 0


def test_sweeps_remove_crossings_of_a_bad_start():
    # a and b feed d and c crosswise; the initial order (c before d) crosses once
    edges = [("a", "d"), ("b", "c")]
    assert layered_layout(["a", "b", "c", "d"], edges, sweeps=0).crossings == 1
    assert layered_layout(["a", "b", "c", "d"], edges).crossings == 0


def test_nodes_in_a_layer_are_one_unit_apart():
    layout = layered_layout(["r", "a", "b", "c"], [("r", "a"), ("r", "b"), ("r", "c")])
    xs = sorted(layout.positions[n][0] for n in "abc")
    assert [round(b - a, 6) for a, b in zip(xs, xs[1:])] == [1.0, 1.0]


def test_dummy_budget_routes_long_edges_straight():
    chain = [f"c{i}" for i in range(50)]
    edges = [(a, b) for a, b in zip(chain, chain[1:])] + [("c0", "c49")]
    assert len(layered_layout(chain, edges).routes[-1]) == 50
    assert len(layered_layout(chain, edges, max_dummies=10).routes[-1]) == 2


@pytest.mark.parametrize("values", [[], [1], [3, 1, 2], [5, 4, 3, 2, 1], [1, 1, 0]])
def test_inversions_match_brute_force(values):
    brute = sum(1 for i in range(len(values)) for j in range(i + 1, len(values)) if values[i] > values[j])
    assert _inversions(values) == brute
