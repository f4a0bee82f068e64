"""Mermaid flowchart text of a graph (renders on GitHub and in most Markdown viewers).

::

    from t1c import ir

    print(ir.read("net.t1c").to_mermaid())

The text draws the :func:`~t1c.ir.drawing.drawing_plan` of the graph, top to bottom:
Input and Output nodes are rounded, ``Skip`` joins hexagons, other nodes rectangles,
collapsed chains double-edged; residual and concatenate edges are thick (``==>``,
labelled ``+`` and ``cat i``), back edges of a recurrent graph dotted (``-.->``,
labelled ``t-1``), each kind in its own colour; nested graphs and ``HybridRegion``
regions are ``subgraph`` boxes. Every node and box is defined before the first edge.

Nothing from the file reaches the text unescaped: ids are generated (``n0``, ``n1``,
...) and every label character other than letters, digits, space and ``_.,:+-=/()[]``
is written as a Mermaid entity code (``#34;``), so a name cannot close a label, start a
comment (``%%``), add an edge or inject HTML.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .drawing import MAX_NODES, DrawBox, DrawingPlan, DrawNode, drawing_plan

if TYPE_CHECKING:
    from .graph import Graph

#: Label characters written as they are; everything else becomes ``#<code>;``.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.,:+-=/()[]")
#: Node shape brackets by type (the rest are rectangles).
_SHAPES = {
    "Input": ('(["', '"])'),
    "Output": ('(["', '"])'),
    "Skip": ('{{"', '"}}'),
    "collapsed": ('[["', '"]]'),
    "omitted": ('[["', '"]]'),
}
_ARROWS = {"plain": "-->", "residual": "==>", "concatenate": "==>", "back": "-.->"}
_COLOURS = {
    "residual": "stroke:#1f77b4,stroke-width:3px",
    "concatenate": "stroke:#2ca02c,stroke-width:3px",
    "back": "stroke:#d62728,stroke-width:2px",
}


def escape_label(text: str) -> str:
    """``text`` with every character outside a small safe set as a Mermaid entity code.

    Example:
        >>> escape_label('a"b --> <i>')
        'a#34;b --#62; #60;i#62;'
    """
    return "".join(ch if ch in _PLAIN else f"#{ord(ch)};" for ch in text)


def _label(name: str, details: tuple[str, ...]) -> str:
    return "<br>".join(escape_label(line) for line in (name, *details))


def _node_line(node: DrawNode, indent: str) -> str:
    open_, close = _SHAPES.get(node.type, ('["', '"]'))
    return f"{indent}{node.id}{open_}{_label(node.name, node.details)}{close}"


def _id_rank(item: DrawNode | DrawBox) -> float:
    """Generated ids in the order they were given (graph order); summary nodes last."""
    digits = item.id[1:]
    return int(digits) if digits.isdigit() else math.inf


def plan_to_mermaid(plan: DrawingPlan, direction: str = "TD") -> str:
    """The Mermaid flowchart of a :class:`~t1c.ir.drawing.DrawingPlan`."""
    lines = [f"flowchart {direction}"]
    lines += [f"%% {escape_label(note)}" for note in plan.notes]
    children: dict[str | None, list] = {}
    for item in sorted([*plan.boxes, *plan.nodes], key=_id_rank):
        children.setdefault(item.parent if isinstance(item, DrawBox) else item.box, []).append(item)

    def emit(holder: str | None, depth: int) -> None:
        indent = "    " * (depth + 1)
        for item in children.get(holder, ()):
            if isinstance(item, DrawNode):
                lines.append(_node_line(item, indent))
                continue
            lines.append(f'{indent}subgraph {item.id}["{_label(item.name, item.details)}"]')
            emit(item.id, depth + 1)
            lines.append(f"{indent}end")

    emit(None, 0)
    styles: dict[str, list[str]] = {}
    for k, edge in enumerate(plan.edges):
        label = f'|"{escape_label(edge.label)}"|' if edge.label else ""
        lines.append(f"    {edge.src} {_ARROWS[edge.kind]}{label} {edge.dst}")
        if edge.kind in _COLOURS:
            styles.setdefault(edge.kind, []).append(str(k))
    lines += [f"    linkStyle {','.join(ks)} {_COLOURS[kind]}" for kind, ks in styles.items()]
    return "\n".join(lines) + "\n"


def to_mermaid(graph: Graph, max_nodes: int = MAX_NODES) -> str:
    """The Mermaid flowchart of ``graph`` (a summary above ``max_nodes`` drawn nodes)."""
    return plan_to_mermaid(drawing_plan(graph, max_nodes))
