"""Graphs that drawings are tested on, and parsers that read drawings back.

The graphs are the recipes' kinds: MLP, conv and residual (the reference fixtures),
hybrid (a ``HybridRegion`` region holding a nested ``Graph``) and recurrent
(``allow_cycles=True``). The parsers read Mermaid text and SVG files back so that
tests check what was drawn, not how.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from t1c import ir

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: Names a hostile file may hold (``/`` and NUL are refused by ir.Graph itself).
HOSTILE_NAMES = [
    'quote"d',
    "bra[ck]e{t}s(x)",
    "a --> b",
    "line\nbreak",
    "<script>alert(1)<\\script>",
    "%% comment",
    "back`tick`",
    "ünï©ødé ✓ \u202eevil",
    "amp&semi;#quot;",
    "$x^2$ \\frac",
    "end",
    "subgraph",
]


def _lif(n: int) -> ir.LIF:
    return ir.LIF(tau=np.full(n, 5.0), r=np.full(n, 5.0), v_leak=np.zeros(n), v_threshold=np.ones(n))


def fixture_graph(name: str) -> ir.Graph:
    """``mlp_snn``, ``conv_snn``, ``resnet_block`` or ``spiking_affine`` from tests/fixtures."""
    return ir.read(FIXTURES / f"{name}.t1c")


def hybrid_graph() -> ir.Graph:
    """input -> [ann region 'front': marker -> nested graph (ReLU, Flatten) -> fc -> lif] -> output."""
    inner = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([3, 4, 4])}),
        ir.ReLU(features=48),
        ir.Flatten(),
        ir.Output(),
        names=["input", "relu", "flat", "output"],
    )
    nodes = {
        "input": ir.Input(input_type={"input": np.array([3, 4, 4])}),
        "marker": ir.HybridRegion(mode="ann", features=48, name="front"),
        "sub": ir.Subgraph(graph=inner),
        "fc": ir.Affine(weight=np.ones((5, 48), np.float32)),
        "lif": _lif(5),
        "output": ir.Output(),
    }
    edges = [("input", "marker"), ("marker", "sub"), ("sub", "fc"), ("fc", "lif"), ("lif", "output")]
    return ir.Graph(nodes, edges)


def recurrent_graph() -> ir.Graph:
    """input -> fc -> lif -> output, with lif -> fc fed back (the back edge)."""
    nodes = {
        "input": ir.Input(input_type={"input": np.array([4])}),
        "fc": ir.Affine(weight=np.ones((4, 4), np.float32)),
        "lif": _lif(4),
        "output": ir.Output(),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "fc"), ("lif", "output")]
    return ir.Graph(nodes, edges, allow_cycles=True)


def recurrent_sum_graph() -> ir.Graph:
    """input -> fc -> sum -> lif -> output, with lif -> rec -> sum fed back (the back edge lif -> rec)."""
    nodes = {
        "input": ir.Input(input_type={"input": np.array([3])}),
        "fc": ir.Affine(weight=np.ones((4, 3), np.float32), bias=np.zeros(4, np.float32)),
        "rec": ir.Affine(weight=np.eye(4, dtype=np.float32), bias=np.ones(4, np.float32)),
        "sum": ir.Skip("residual"),
        "lif": _lif(4),
        "output": ir.Output(),
    }
    edges = [
        ("input", "fc"),
        ("fc", "sum"),
        ("rec", "sum"),
        ("sum", "lif"),
        ("lif", "rec"),
        ("lif", "output"),
    ]
    return ir.Graph(nodes, edges, allow_cycles=True)


def concat_graph() -> ir.Graph:
    """input -> a, input -> b, (b, a) -> cat (concatenate, b first) -> output."""
    nodes = {
        "input": ir.Input(input_type={"input": np.array([4])}),
        "a": ir.Affine(weight=np.ones((2, 4), np.float32)),
        "b": ir.Affine(weight=np.ones((3, 4), np.float32)),
        "cat": ir.Skip(skip_type="concatenate"),
        "output": ir.Output(),
    }
    edges = [("input", "a"), ("input", "b"), ("b", "cat"), ("a", "cat"), ("cat", "output")]
    return ir.Graph(nodes, edges)


def residual_stack(blocks: int, width: int = 4) -> ir.Graph:
    """input -> ``blocks`` x (fc -> lif -> residual Skip with the block's input) -> output."""
    nodes: dict[str, ir.Node] = {"input": ir.Input(input_type={"input": np.array([width])})}
    edges, prev = [], "input"
    for b in range(blocks):
        nodes[f"fc{b}"] = ir.Affine(weight=np.ones((width, width), np.float32))
        nodes[f"lif{b}"] = _lif(width)
        nodes[f"skip{b}"] = ir.Skip(skip_type="residual")
        edges += [(prev, f"fc{b}"), (f"fc{b}", f"lif{b}"), (f"lif{b}", f"skip{b}"), (prev, f"skip{b}")]
        prev = f"skip{b}"
    nodes["output"] = ir.Output()
    edges.append((prev, "output"))
    return ir.Graph(nodes, edges)


def deep_chain(n: int, width: int = 4) -> ir.Graph:
    """input -> alternating Affine, LIF -> output: ``n`` nodes named ``l0`` .. ``l{n-1}``."""
    inner = [
        ir.Affine(weight=np.ones((width, width), np.float32)) if i % 2 == 0 else _lif(width)
        for i in range(n - 2)
    ]
    nodes = [ir.Input(input_type={"input": np.array([width])}), *inner, ir.Output()]
    return ir.Graph.from_chain(*nodes, names=[f"l{i}" for i in range(n)])


def hostile_graph() -> ir.Graph:
    """A chain through nodes named :data:`HOSTILE_NAMES` (Input first, Output last)."""
    names = HOSTILE_NAMES
    inner = [ir.Skip(skip_type="passthrough") for _ in names[2:]]
    nodes = [ir.Input(input_type={"input": np.array([4])}), *inner, ir.Output()]
    return ir.Graph.from_chain(*nodes, names=names)


def all_names(graph: ir.Graph) -> list[str]:
    """Every node name, nested graphs' included."""
    names = []
    for name, node in graph.nodes.items():
        names.append(name)
        if isinstance(node, ir.Subgraph):
            names += all_names(node.graph)
    return names


def all_edges(graph: ir.Graph) -> int:
    """Number of edges, nested graphs' included."""
    inner = sum(all_edges(n.graph) for n in graph.nodes.values() if isinstance(n, ir.Subgraph))
    return len(graph.edges) + inner


# -- Mermaid -------------------------------------------------------------------------------
_NODE = re.compile(r'^\s*(n\w+)(\(\[|\[\[|\{\{|\[)"([^"]*)"(\]\)|\]\]|\}\}|\])$')
_BOX = re.compile(r'^\s*subgraph (n\w+)\["([^"]*)"\]$')
_EDGE = re.compile(r'^\s*(n\w+) (-->|==>|-\.->)(?:\|"([^"]*)"\|)? (n\w+)$')
_ENTITY = re.compile(r"#(\d+);")


def unescape(label: str) -> str:
    return _ENTITY.sub(lambda m: chr(int(m.group(1))), label)


def parse_mermaid(text: str) -> dict:
    """Nodes, boxes (with their parents) and edges of Mermaid text this project writes.

    Every line must be understood: a line the parser does not know fails the test.
    """
    lines = text.splitlines()
    assert lines[0] == "flowchart TD", lines[0]
    nodes: dict[str, list[str]] = {}
    boxes: dict[str, list[str]] = {}
    parent: dict[str, str | None] = {}
    edges: list[tuple[str, str, str, str]] = []
    stack: list[str] = []
    for line in lines[1:]:
        if (m := _NODE.match(line)) is not None:
            assert m.group(1) not in nodes and m.group(1) not in boxes, f"id defined twice: {line}"
            nodes[m.group(1)] = [unescape(part) for part in m.group(3).split("<br>")]
            parent[m.group(1)] = stack[-1] if stack else None
        elif (m := _BOX.match(line)) is not None:
            assert m.group(1) not in nodes and m.group(1) not in boxes, f"id defined twice: {line}"
            boxes[m.group(1)] = [unescape(part) for part in m.group(2).split("<br>")]
            parent[m.group(1)] = stack[-1] if stack else None
            stack.append(m.group(1))
        elif line.strip() == "end":
            stack.pop()
        elif (m := _EDGE.match(line)) is not None:
            src, arrow, label, dst = m.groups()
            assert src in nodes or src in boxes, line
            assert dst in nodes or dst in boxes, line
            edges.append((src, dst, arrow, unescape(label or "")))
        elif not line.strip().startswith(("linkStyle ", "%% ")):
            raise AssertionError(f"line not understood: {line!r}")
    assert not stack, "a subgraph is not closed"
    return {"nodes": nodes, "boxes": boxes, "parent": parent, "edges": edges}


# -- SVG -----------------------------------------------------------------------------------
SVG = "{http://www.w3.org/2000/svg}"


def parse_svg(path: Path) -> dict:
    """Text elements and element ids of an SVG file (parsing fails on invalid XML)."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    tags = {e.tag for e in root.iter()}
    return {"texts": texts, "ids": ids, "tags": tags}
