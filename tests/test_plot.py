"""Pictures of graphs (t1c.plot): SVG read back as XML, PNG decoded, hostile names, bounds."""

from __future__ import annotations

import sys
from collections import Counter

import pytest
from drawing_cases import (
    HOSTILE_NAMES,
    all_edges,
    all_names,
    concat_graph,
    fixture_graph,
    hostile_graph,
    hybrid_graph,
    parse_svg,
    recurrent_graph,
    residual_stack,
)

from t1c.ir.drawing import display_text
from t1c.plot import INSTALL_HINT, MAX_PICTURE_NODES, draw_graph, save_drawing

matplotlib = pytest.importorskip("matplotlib")

CASES = {
    "mlp": lambda: fixture_graph("mlp_snn"),
    "conv": lambda: fixture_graph("conv_snn"),
    "residual": lambda: fixture_graph("resnet_block"),
    "hybrid": hybrid_graph,
    "recurrent": recurrent_graph,
    "concatenate": concat_graph,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_svg_holds_every_node_name_once_and_every_edge(case, tmp_path):
    graph = CASES[case]()
    save_drawing(graph, tmp_path / "g.svg")
    svg = parse_svg(tmp_path / "g.svg")
    names = Counter(display_text(n) for n in all_names(graph))
    assert {t: c for t, c in Counter(svg["texts"]).items() if t in names} == names
    edges = [i for i in svg["ids"] if i.startswith("edge-")]
    assert len(edges) == len(set(edges)) == all_edges(graph)
    nodes = [i for i in svg["ids"] if i.startswith(("node-", "box-graph-"))]  # a nested graph is a box
    assert len(nodes) == len(set(nodes)) == sum(names.values())


def test_back_edge_and_joins_are_labelled(tmp_path):
    save_drawing(recurrent_graph(), tmp_path / "r.svg")
    assert "t-1" in parse_svg(tmp_path / "r.svg")["texts"]
    save_drawing(fixture_graph("resnet_block"), tmp_path / "s.svg")
    assert Counter(parse_svg(tmp_path / "s.svg")["texts"])["+"] == 2
    save_drawing(concat_graph(), tmp_path / "c.svg")
    assert {"cat 0", "cat 1"} <= set(parse_svg(tmp_path / "c.svg")["texts"])


def test_png_is_a_decodable_picture(tmp_path):
    path = tmp_path / "g.png"
    save_drawing(hybrid_graph(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 50


def test_hostile_names_are_escaped_in_svg(tmp_path):
    save_drawing(hostile_graph(), tmp_path / "h.svg")
    svg = parse_svg(tmp_path / "h.svg")  # valid XML, or this fails
    assert {f"{{http://www.w3.org/2000/svg}}{tag}" for tag in ("script", "foreignObject")}.isdisjoint(
        svg["tags"]
    )
    for name in HOSTILE_NAMES:
        assert svg["texts"].count(display_text(name)) == 1, name


def test_draw_graph_onto_given_axes_returns_its_figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 4))
    ax = fig.add_subplot()
    assert draw_graph(fixture_graph("mlp_snn"), ax) is fig
    assert tuple(fig.get_size_inches()) == (3, 4)
    assert any(t.get_text() == "lif1" for t in ax.texts)


def test_10000_node_graph_draws_a_summary(tmp_path):
    plan = save_drawing(residual_stack(3333), tmp_path / "big.png")
    assert len(plan.nodes) == 3 and plan.notes
    assert matplotlib.image.imread(tmp_path / "big.png").shape[0] > 10


def test_picture_node_limit_and_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="Mermaid"):
        draw_graph(recurrent_graph(), max_nodes=MAX_PICTURE_NODES + 1)
    with pytest.raises(ValueError, match=".svg or .png"):
        save_drawing(recurrent_graph(), tmp_path / "g.pdf")


def test_without_matplotlib_the_message_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError) as info:
        draw_graph(recurrent_graph())
    assert INSTALL_HINT in str(info.value) and "the plot extra" in str(info.value)
    assert "\n" not in str(info.value)
