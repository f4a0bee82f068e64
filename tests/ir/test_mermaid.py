"""Mermaid text of graphs (`Graph.to_mermaid`, t1c.ir.mermaid), read back by a parser."""

from __future__ import annotations

from collections import Counter

import pytest
from drawing_cases import (
    HOSTILE_NAMES,
    all_edges,
    all_names,
    concat_graph,
    deep_chain,
    fixture_graph,
    hostile_graph,
    hybrid_graph,
    parse_mermaid,
    recurrent_graph,
    residual_stack,
)

from t1c.ir.drawing import display_text
from t1c.ir.mermaid import escape_label

CASES = {
    "mlp": lambda: fixture_graph("mlp_snn"),
    "conv": lambda: fixture_graph("conv_snn"),
    "residual": lambda: fixture_graph("resnet_block"),
    "spiking_affine": lambda: fixture_graph("spiking_affine"),
    "hybrid": hybrid_graph,
    "recurrent": recurrent_graph,
    "concatenate": concat_graph,
}


def drawn_names(parsed: dict) -> Counter:
    """The first label line (the name) of every node and nested-graph box."""
    names = Counter(label[0] for label in parsed["nodes"].values())
    names.update(label[0] for bid, label in parsed["boxes"].items() if not label[0].endswith(" region"))
    return names


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_node_and_edge_drawn_once(case):
    graph = CASES[case]()
    parsed = parse_mermaid(graph.to_mermaid())
    assert drawn_names(parsed) == Counter(display_text(n) for n in all_names(graph))
    assert len(parsed["edges"]) == all_edges(graph)
    assert len(set(parsed["edges"])) == len(parsed["edges"])


def test_labels_show_type_shape_counts_and_bits():
    parsed = parse_mermaid(fixture_graph("spiking_affine").to_mermaid())
    labels = {label[0]: label[1:] for label in parsed["nodes"].values()}
    spiking = next(v for v in labels.values() if v[0].startswith("SpikingAffine"))
    assert "weights" in spiking[1] and "bits" in spiking[1]
    lif = next(v for v in labels.values() if v[0].startswith("LIF"))
    assert lif[1].endswith("neurons")
    conv = parse_mermaid(fixture_graph("conv_snn").to_mermaid())
    assert any(v[1].startswith("Conv2d [") for v in conv["nodes"].values())


def test_residual_edges_are_thick_and_marked():
    graph = fixture_graph("resnet_block")
    parsed = parse_mermaid(graph.to_mermaid())
    skip_id = next(i for i, label in parsed["nodes"].items() if label[1].startswith("Skip"))
    into_skip = [e for e in parsed["edges"] if e[1] == skip_id]
    assert len(into_skip) == 2 and all(e[2] == "==>" and e[3] == "+" for e in into_skip)
    assert all(e[2] == "-->" for e in parsed["edges"] if e[1] != skip_id)


def test_concatenate_edges_carry_their_input_order():
    parsed = parse_mermaid(concat_graph().to_mermaid())
    names = {i: label[0] for i, label in parsed["nodes"].items()}
    joins = sorted((e[3], names[e[0]]) for e in parsed["edges"] if e[2] == "==>")
    assert joins == [("cat 0", "b"), ("cat 1", "a")]


def test_back_edge_is_dotted_and_marked():
    parsed = parse_mermaid(recurrent_graph().to_mermaid())
    names = {i: label[0] for i, label in parsed["nodes"].items()}
    back = [(names[s], names[d], label) for s, d, arrow, label in parsed["edges"] if arrow == "-.->"]
    assert back == [("lif", "fc", "t-1")]
    assert sum(1 for e in parsed["edges"] if e[2] == "-->") == 3


def test_acyclic_graphs_have_no_back_edges():
    for case in ("mlp", "residual", "hybrid"):
        assert all(e[2] != "-.->" for e in parse_mermaid(CASES[case]().to_mermaid())["edges"])


def test_nested_graph_and_region_are_boxes_holding_their_nodes():
    parsed = parse_mermaid(hybrid_graph().to_mermaid())
    by_name = {label[0]: i for i, label in {**parsed["nodes"], **parsed["boxes"]}.items()}
    region, sub = by_name["ann region"], by_name["sub"]
    assert parsed["boxes"][region] == ["ann region", "name front"]
    assert parsed["parent"][sub] == region
    assert parsed["parent"][by_name["relu"]] == sub and parsed["parent"][by_name["flat"]] == sub
    assert parsed["parent"][by_name["fc"]] == region
    assert parsed["parent"][by_name["output"]] is None
    assert (by_name["marker"], sub) in {(s, d) for s, d, _, _ in parsed["edges"]}


def test_hostile_names_cannot_break_the_text():
    graph = hostile_graph()
    text = graph.to_mermaid()
    parsed = parse_mermaid(text)  # every line understood: nothing injected
    assert drawn_names(parsed) == Counter(display_text(n) for n in HOSTILE_NAMES)
    assert len(parsed["edges"]) == len(graph.edges)
    for bad in ("<script", "%% comment", "`", '"d', "-->" + " b"):
        assert bad not in text
    assert len(text.splitlines()) == 1 + len(HOSTILE_NAMES) + len(graph.edges)


def test_escape_label_keeps_only_safe_characters():
    text = "".join(chr(c) for c in range(32, 0x250))
    escaped = escape_label(text)
    assert set(escaped) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.,:+-=/()[]#;"
    )


def test_10000_node_graph_is_summarised_with_a_note():
    text = residual_stack(3333).to_mermaid()
    parsed = parse_mermaid(text)
    assert "%% 10,001 nodes: runs of repeated blocks collapsed" in text
    names = [label[0] for label in parsed["nodes"].values()]
    assert names == ["input", "fc0 ... skip3332", "output"]
    assert parsed["nodes"][next(iter(parsed["nodes"]))] == ["input", "Input [4]"]
    collapsed = [label[1:] for label in parsed["nodes"].values() if label[0].startswith("fc0")]
    assert collapsed == [["3,333 x [Affine, LIF, Skip]", "9,999 nodes"]]
    assert len(parsed["edges"]) == 2


def test_max_nodes_cuts_and_says_so():
    parsed = parse_mermaid(deep_chain(40).to_mermaid(max_nodes=10))
    assert len(parsed["nodes"]) <= 10
    text = deep_chain(40).to_mermaid(max_nodes=1000)
    assert len(parse_mermaid(text)["nodes"]) == 40 and "%%" not in text
