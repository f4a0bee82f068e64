"""Pictures of graphs with matplotlib (the optional extra ``plot``: ``pip install -e '.[plot]'``).

::

    from t1c import ir
    from t1c.plot import draw_graph

    fig = draw_graph(ir.read("net.t1c"))     # a matplotlib Figure, no window opened
    fig.savefig("net.svg")

The picture draws the same :func:`~t1c.ir.drawing.drawing_plan` as the Mermaid text,
placed by :func:`~t1c.ir.layered_layout.layered_layout` (layers top to bottom, no
Graphviz): a rounded box per node (name in bold, then type, output shape, counts and
bits), grey arrows for plain edges, thick blue arrows labelled ``+`` into residual
joins, thick green ones labelled ``cat i`` into concatenations, and dashed red arcs for
the back edges of a recurrent graph; nested graphs and ``HybridRegion`` regions are
shaded boxes around their nodes. Figures are built with ``matplotlib.figure.Figure``
(never pyplot), so nothing opens a window or touches global state.

matplotlib is imported only when a picture is drawn; without it, :func:`draw_graph`
raises ``ImportError`` naming the extra (:data:`INSTALL_HINT`). Text from the file is
shown with mathtext off (a ``$`` in a name stays a ``$``), and SVG files keep text as
``<text>`` elements that matplotlib escapes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .ir.drawing import MAX_NODES, DrawingPlan, drawing_plan
from .ir.layered_layout import layered_layout

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .ir import Graph

#: What to install when matplotlib is missing.
INSTALL_HINT = "the plot extra: pip install -e '.[plot]' in a clone, or pip install 'matplotlib>=3.7'"
#: Most nodes a picture draws (``max_nodes`` above it is refused): layout and rendering
#: stay within seconds.
MAX_PICTURE_NODES = 2000
#: Picture formats :func:`save_drawing` writes, by file suffix.
FORMATS = {".svg": "svg", ".png": "png"}
#: Most pixels in a PNG (lower resolution beyond); 12 million is about 50 MB in memory.
MAX_PIXELS = 12e6
FONT_SIZE = 7.0
CHAR_WIDTH = 0.06  # inches per character at FONT_SIZE (a generous mean for sans-serif)
LINE_HEIGHT = 0.15  # inches per text line
_FILL = {
    "Input": "#e6e6e6",
    "Output": "#e6e6e6",
    "LIF": "#fdd9b5",
    "SpikingAffine": "#fdd9b5",
    "Skip": "#cfe2f3",
    "collapsed": "#ffffff",
    "omitted": "#ffffff",
}
_EDGE_STYLE = {
    "plain": {"color": "#555555", "linewidth": 1.0, "linestyle": "-"},
    "residual": {"color": "#1f77b4", "linewidth": 2.2, "linestyle": "-"},
    "concatenate": {"color": "#2ca02c", "linewidth": 2.2, "linestyle": "-"},
    "back": {"color": "#d62728", "linewidth": 1.4, "linestyle": "--"},
}
_BOX_FILL = {"graph": "#f3e8fb", "region": "#eaf4ea"}


def _matplotlib() -> Any:
    """The ``matplotlib`` module, or an ImportError that says how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"drawing a picture needs matplotlib: {INSTALL_HINT}") from None
    return matplotlib


def _picture_nodes(max_nodes: int) -> int:
    if not 1 <= max_nodes <= MAX_PICTURE_NODES:
        raise ValueError(
            f"a picture draws 1..{MAX_PICTURE_NODES:,} nodes, got max_nodes={max_nodes}; Mermaid text "
            "(Graph.to_mermaid, t1c draw -o FILE.mmd) has no such limit"
        )
    return max_nodes


def draw_graph(graph: Graph, ax: Axes | None = None, *, max_nodes: int = MAX_NODES) -> Figure:
    """Draw ``graph`` onto ``ax`` (a new figure sized to fit when None) and return the figure.

    Args:
        graph: a validated graph; nested graphs are drawn inside their boxes.
        ax: the axes to draw on; its figure keeps its size.
        max_nodes: drawn nodes above which the graph is summarised (see
            :func:`~t1c.ir.drawing.drawing_plan`; the figure's title says what was done).

    Raises:
        ImportError: matplotlib is not installed (the message names the plot extra).
    """
    return draw_plan(drawing_plan(graph, _picture_nodes(max_nodes)), ax)


def save_drawing(
    graph: Graph, path: str | os.PathLike, *, fmt: str | None = None, max_nodes: int = MAX_NODES
):
    """Draw ``graph`` and save the picture to ``path`` (``fmt`` ``"svg"``/``"png"``, else from the suffix).

    Returns:
        The :class:`~t1c.ir.drawing.DrawingPlan` drawn (its ``notes`` say whether it was summarised).
    """
    fmt = fmt or FORMATS.get(os.path.splitext(str(path))[1].lower())
    if fmt not in FORMATS.values():
        raise ValueError(f"cannot tell the picture format of '{path}': use .svg or .png")
    matplotlib = _matplotlib()
    plan = drawing_plan(graph, _picture_nodes(max_nodes))
    fig = draw_plan(plan)
    width, height = fig.get_size_inches()
    # a big drawing stays a sane number of pixels (at most MAX_PIXELS, 30,000 a side)
    dpi = min(100.0, 30000.0 / max(width, height, 1.0), (MAX_PIXELS / max(width * height, 1.0)) ** 0.5)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "t1c"}):
        fig.savefig(path, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
    return plan


def draw_plan(plan: DrawingPlan, ax: Axes | None = None) -> Figure:
    """Draw a :class:`~t1c.ir.drawing.DrawingPlan` (see :func:`draw_graph`)."""
    _matplotlib()
    from matplotlib.figure import Figure

    geometry = _Geometry(plan)
    if ax is None:
        fig = Figure(figsize=(geometry.width + 0.4, geometry.height + 0.6))
        ax = fig.add_axes((0, 0, 1, 1))
    else:
        fig = ax.get_figure()
    ax.set_axis_off()
    ax.set_xlim(geometry.left - 0.2, geometry.left + geometry.width + 0.2)
    ax.set_ylim(geometry.top - geometry.height - 0.2, geometry.top + 0.4)
    for box in plan.boxes:  # outer boxes first: inner ones are drawn on top
        _draw_box(ax, box, geometry)
    for k, edge in enumerate(plan.edges):
        _draw_edge(ax, k, edge, geometry)
    for node in plan.nodes:
        _draw_node(ax, node, geometry)
    if plan.notes:
        ax.text(
            geometry.left,
            geometry.top + 0.3,
            "; ".join(plan.notes),
            fontsize=FONT_SIZE,
            style="italic",
            va="top",
            parse_math=False,
        )
    return fig


class _Geometry:
    """Where nodes, edges and boxes of a plan go, in inches (y grows upwards)."""

    def __init__(self, plan: DrawingPlan) -> None:
        self.entry = {b.id: b.entry for b in plan.boxes if b.entry is not None}
        self.exit = {b.id: b.exit for b in plan.boxes if b.exit is not None}
        ids = [n.id for n in plan.nodes]
        known = set(ids)
        ends = [self.ends(e) for e in plan.edges]
        forward = [k for k, e in enumerate(plan.edges) if e.kind != "back" and known.issuperset(ends[k])]
        layout = layered_layout(ids, [ends[k] for k in forward])
        self.routes = dict(zip(forward, layout.routes))
        lines = max((len(n.details) + 1 for n in plan.nodes), default=1)
        chars = max((len(t) for n in plan.nodes for t in (n.name, *n.details)), default=8)
        self.node_w = chars * CHAR_WIDTH + 0.3
        self.node_h = lines * LINE_HEIGHT + 0.2
        self.slot_w = self.node_w + 0.5
        self.slot_h = self.node_h + 0.75
        self.centre = {n: self.point(p) for n, p in layout.positions.items()}
        self.extent = self._box_extents(plan)
        xs = [x for x0, _, x1, _ in self.extent.values() for x in (x0, x1)]
        xs += [c[0] + s * self.node_w / 2 for c in self.centre.values() for s in (-1, 1)]
        xs += [self.point(p)[0] for route in layout.routes for p in route]
        xs += [self.arc_right(e) for k, e in enumerate(plan.edges) if k not in self.routes]
        ys = [y for _, y0, _, y1 in self.extent.values() for y in (y0, y1)]
        ys += [c[1] + s * self.node_h / 2 for c in self.centre.values() for s in (-1, 1)]
        self.left, self.top = min(xs, default=0.0), max(ys, default=0.0)
        self.width = max(xs, default=1.0) - self.left
        self.height = self.top - min(ys, default=-1.0)

    def ends(self, edge: Any) -> tuple[str, str]:
        """The node ids an edge is drawn between (a nested graph's Output and Input for its box)."""
        return self.exit.get(edge.src, edge.src), self.entry.get(edge.dst, edge.dst)

    def arc_right(self, edge: Any) -> float:
        """How far right a back edge's arc reaches (its label included); 0 when it is not drawn."""
        src, dst = self.ends(edge)
        if src not in self.centre or dst not in self.centre:
            return 0.0
        (sx, sy), (dx, dy) = self.centre[src], self.centre[dst]
        return max(sx, dx) + self.node_w / 2 + 0.3 * abs(sy - dy) + 0.4

    def point(self, position: tuple[float, int]) -> tuple[float, float]:
        return position[0] * self.slot_w, -position[1] * self.slot_h

    def _box_extents(self, plan: DrawingPlan) -> dict[str, tuple[float, float, float, float]]:
        """Box id -> (x0, y0, x1, y1) around its nodes and inner boxes, inner boxes first."""
        members: dict[str, list[tuple[float, float, float, float]]] = {b.id: [] for b in plan.boxes}
        for node in plan.nodes:
            if node.box in members and node.id in self.centre:
                x, y = self.centre[node.id]
                members[node.box].append(
                    (x - self.node_w / 2, y - self.node_h / 2, x + self.node_w / 2, y + self.node_h / 2)
                )
        extent: dict[str, tuple[float, float, float, float]] = {}
        for box in reversed(plan.boxes):
            parts = members[box.id]
            if not parts:
                continue
            pad, title = 0.15, LINE_HEIGHT * (len(box.details) + 1) + 0.1
            x0, y0 = min(p[0] for p in parts) - pad, min(p[1] for p in parts) - pad
            x1, y1 = max(p[2] for p in parts) + pad, max(p[3] for p in parts) + pad + title
            extent[box.id] = (x0, y0, x1, y1)
            if box.parent in members:
                members[box.parent].append(extent[box.id])
        return extent


def _draw_node(ax: Axes, node: Any, geo: _Geometry) -> None:
    from matplotlib.patches import FancyBboxPatch

    x, y = geo.centre[node.id]
    patch = FancyBboxPatch(
        (x - geo.node_w / 2, y - geo.node_h / 2),
        geo.node_w,
        geo.node_h,
        boxstyle="round,pad=0,rounding_size=0.08",
        facecolor=_FILL.get(node.type, "#d9ead3"),
        edgecolor="#333333",
        linewidth=0.8,
        linestyle="--" if node.type in ("collapsed", "omitted") else "-",
        zorder=3,
    )
    patch.set_gid(f"node-{node.id}")
    ax.add_patch(patch)
    top = y + geo.node_h / 2 - 0.1
    ax.text(
        x,
        top,
        node.name,
        fontsize=FONT_SIZE,
        weight="bold",
        ha="center",
        va="top",
        zorder=4,
        parse_math=False,
    )
    if node.details:
        ax.text(
            x,
            top - LINE_HEIGHT,
            "\n".join(node.details),
            fontsize=FONT_SIZE,
            ha="center",
            va="top",
            zorder=4,
            linespacing=1.2,
            parse_math=False,
        )


def _draw_edge(ax: Axes, k: int, edge: Any, geo: _Geometry) -> None:
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path

    style = _EDGE_STYLE[edge.kind]
    src, dst = geo.ends(edge)
    if src not in geo.centre or dst not in geo.centre:
        return
    (sx, sy), (dx, dy) = geo.centre[src], geo.centre[dst]
    common = {"arrowstyle": "-|>", "mutation_scale": 9, "zorder": 2, **style}
    if k in geo.routes:
        points = [geo.point(p) for p in geo.routes[k]]
        points[0] = (sx, sy - geo.node_h / 2)
        points[-1] = (dx, dy + geo.node_h / 2)
        arrow = FancyArrowPatch(path=Path(points), **common)
        mid = points[-2] if len(points) > 2 else ((sx + dx) / 2, (sy + dy) / 2)
        label_at = ((mid[0] + points[-1][0]) / 2, (mid[1] + points[-1][1]) / 2)
    else:  # a back edge: an arc on the right, from the source's side back up to its target's
        start, end = (sx + geo.node_w / 2, sy), (dx + geo.node_w / 2, dy)
        arrow = FancyArrowPatch(start, end, connectionstyle="arc3,rad=0.6", **common)
        label_at = (geo.arc_right(edge) - 0.3, (sy + dy) / 2)
    arrow.set_gid(f"edge-{k}")
    ax.add_patch(arrow)
    if edge.label:
        ax.text(
            *label_at,
            edge.label,
            fontsize=FONT_SIZE,
            color=style["color"],
            ha="center",
            va="center",
            zorder=5,
            parse_math=False,
            bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none"},
        )


def _draw_box(ax: Axes, box: Any, geo: _Geometry) -> None:
    from matplotlib.patches import FancyBboxPatch

    if box.id not in geo.extent:
        return
    x0, y0, x1, y1 = geo.extent[box.id]
    patch = FancyBboxPatch(
        (x0, y0),
        x1 - x0,
        y1 - y0,
        boxstyle="round,pad=0,rounding_size=0.12",
        facecolor=_BOX_FILL.get(box.kind, "#f4f4f4"),
        edgecolor="#777777",
        linewidth=0.8,
        zorder=1,
    )
    patch.set_gid(f"box-{box.kind}-{box.id}")
    ax.add_patch(patch)
    ax.text(
        x0 + 0.1, y1 - 0.08, box.name, fontsize=FONT_SIZE, weight="bold", va="top", zorder=4, parse_math=False
    )
    if box.details:
        ax.text(
            x0 + 0.1,
            y1 - 0.08 - LINE_HEIGHT,
            "\n".join(box.details),
            fontsize=FONT_SIZE,
            va="top",
            zorder=4,
            parse_math=False,
        )
