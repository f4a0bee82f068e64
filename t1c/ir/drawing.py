"""What a drawing of a graph shows: nodes with their labels, boxes, and kinds of edges.

:func:`drawing_plan` turns a :class:`~t1c.ir.Graph` into a :class:`DrawingPlan`, the one
description that every form of drawing renders (Mermaid text in :mod:`t1c.ir.mermaid`,
a matplotlib figure in :mod:`t1c.plot`), so each form shows the same things:

* a node per graph node, with generated ids (``n0``, ``n1``, ...) and a label of its name,
  type and output shape, its weight and neuron counts, and its quantization bits
  (``SpikingAffine``'s bit widths, or the width of the integer weights a file carries);
* edge kinds: ``plain``; ``residual`` and ``concatenate`` for the inputs of a ``Skip`` join
  of that type (concatenate edges carry their input position, which is meaningful);
  ``back`` for a recurrent graph's back edges (found by a depth-first search from the
  inputs, so a graph without cycles has none);
* boxes: a nested graph (``Subgraph``, on disk ``"Graph"``) is a box holding its nodes,
  and a ``HybridRegion`` marker starts a box holding the nodes it governs (the marker
  part of :func:`t1c.ir.regions`: each node joins the box of the latest marker upstream).

Big graphs are summarised, so drawing never takes long: above ``max_nodes`` drawn nodes,
runs of repeated blocks collapse into one node each (:func:`collapse_repeats`), then
chains of one-input nodes (:func:`collapse_chains`), and what is still above the limit
is cut after ``max_nodes`` nodes in topological order, a last node saying how many were
left out (:func:`cut_plan`); :attr:`DrawingPlan.notes` says which steps ran. All the
work is linear (or ``n log n``) in the size of the graph.

Names come from files and may be hostile: :func:`display_text` escapes control and
invisible characters and cuts long names; each renderer then escapes what its own
syntax needs. This module reads graphs by duck typing (``TYPE``, ``nodes``, ``edges``)
so that ``Graph.to_mermaid`` can use it without an import cycle.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import T1CFormatError

if TYPE_CHECKING:
    from .graph import Graph

#: Drawn nodes above which a graph is summarised (chains collapsed, then cut).
MAX_NODES = 300
#: Widest a name is shown; longer names are cut, saying how much was left out.
MAX_NAME = 48
#: Shortest chain that collapses into one node when a graph is summarised.
MIN_CHAIN = 3
#: Longest repeated unit (in blocks between bottleneck nodes) that collapses.
MAX_PERIOD = 8
#: Types whose float parameters are shown as weights (other nodes' as params).
SYNAPSE_TYPES = frozenset({"Affine", "SpikingAffine", "Conv2d", "SepConv2d"})
#: Unicode categories shown escaped: controls, format characters (bidi overrides,
#: zero-width), surrogates, private use, unassigned, line/paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


@dataclasses.dataclass(frozen=True)
class DrawNode:
    """One drawn node.

    Attributes:
        id: generated id (``n0``, ``n1``, ...), safe in any syntax.
        name: the node's name, escaped by :func:`display_text`.
        type: its type name (``"collapsed"`` or ``"omitted"`` for summary nodes).
        details: further label lines (type and shape, counts, bits), plain ASCII.
        box: id of the innermost box holding it, or None.
    """

    id: str
    name: str
    type: str
    details: tuple[str, ...]
    box: str | None = None


@dataclasses.dataclass(frozen=True)
class DrawBox:
    """A box holding nodes: a nested graph (``kind="graph"``) or a region (``"region"``).

    A nested graph's box stands for its graph node: edges to and from the node end at
    the box (:attr:`DrawEdge.src` / ``dst`` name the box id), and its ``name`` is the
    node's name; a region's is ``"ann region"`` / ``"snn region"``. ``entry`` and
    ``exit`` are the ids of a nested graph's Input and Output, where a drawing that
    cannot end edges at a box ends them.
    """

    id: str
    name: str
    details: tuple[str, ...]
    kind: str
    parent: str | None = None
    entry: str | None = None
    exit: str | None = None


@dataclasses.dataclass(frozen=True)
class DrawEdge:
    """One drawn edge between node or box ids; ``label`` is short ASCII (``+``, ``cat 1``)."""

    src: str
    dst: str
    kind: str = "plain"
    label: str = ""


@dataclasses.dataclass
class DrawingPlan:
    """Everything a drawing shows, in the order it is drawn (graph order, boxes first)."""

    nodes: list[DrawNode]
    boxes: list[DrawBox]
    edges: list[DrawEdge]
    notes: list[str]


def escape_char(ch: str) -> str:
    """``ch`` itself when printable and visible, else its ``\\x..``/``\\u..``/``\\U..`` escape."""
    if ch.isprintable() and unicodedata.category(ch) not in _ESCAPED_CATEGORIES:
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def display_text(text: Any, limit: int = MAX_NAME) -> str:
    r"""``text`` with control and invisible characters escaped, cut after ``limit`` characters.

    Example:
        >>> display_text("fc\n\u202e<b>")
        'fc\\x0a\\u202e<b>'
    """
    out: list[str] = []
    text = str(text)
    for i, ch in enumerate(text):
        out.append(escape_char(ch))
        if len(out) >= limit and i + 1 < len(text):
            return "".join(out) + f"...(+{len(text) - i - 1})"
    return "".join(out)


def drawing_plan(graph: Graph, max_nodes: int = MAX_NODES) -> DrawingPlan:
    """The nodes, boxes and edges that draw ``graph`` (see the module docstring).

    Args:
        graph: a validated graph (its shapes are shown); nested graphs are drawn inside.
        max_nodes: drawn nodes above which the graph is summarised.
    """
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be at least 1, got {max_nodes}")
    builder = _Builder()
    builder.add_graph(graph, box=None)
    plan = DrawingPlan(builder.nodes, builder.boxes, builder.edges, [])
    total = builder.graph_nodes
    if len(plan.nodes) > max_nodes:
        plan = collapse_repeats(plan)
        plan.notes.append(f"{total:,} nodes: runs of repeated blocks collapsed")
    if len(plan.nodes) > max_nodes:
        plan = collapse_chains(plan)
        plan.notes.append(f"chains of {MIN_CHAIN}+ one-input nodes collapsed")
    if len(plan.nodes) > max_nodes:
        plan = cut_plan(plan, max_nodes)
        plan.notes.append(
            f"only the first {max_nodes:,} nodes are drawn; raise max_nodes (t1c draw --max-nodes) to draw more"
        )
    return plan


class _Builder:
    """Walks a graph (and its nested graphs) once, giving every node and box an id."""

    def __init__(self) -> None:
        self.nodes: list[DrawNode] = []
        self.boxes: list[DrawBox] = []
        self.edges: list[DrawEdge] = []
        self.graph_nodes = 0
        self._next = 0

    def _id(self, prefix: str) -> str:
        self._next += 1
        return f"{prefix}{self._next - 1}"

    def add_graph(self, graph: Graph, box: str | None) -> tuple[str | None, str | None]:
        """Add ``graph``'s nodes and edges (inside box ``box``); the ids of its Input and Output."""
        order = graph.topological_order()
        shapes = graph.output_shapes
        boxes = _region_boxes(graph, order)
        region_ids = {m: self._id("n") for m in dict.fromkeys(boxes.values()) if m is not None}
        for marker, rid in region_ids.items():
            node = graph.nodes[marker]
            label = (f"name {display_text(node.name)}",) if node.name else ()
            self.boxes.append(DrawBox(rid, f"{node.mode} region", label, "region", box))
        ends: dict[str, str] = {}  # node name -> the id its edges start and end at
        for name in order:
            node, holder = graph.nodes[name], region_ids.get(boxes.get(name), box)
            self.graph_nodes += 1
            if node.TYPE == "Graph":
                inner_graph = node.graph
                if not inner_graph.output_shapes:
                    inner_graph.validate()
                gid = self._id("n")
                at = len(self.boxes)
                self.boxes.append(DrawBox(gid, display_text(name), (), "graph", holder))
                entry, exit_ = self.add_graph(inner_graph, gid)
                details = (_type_line(node, shapes.get(name)),)
                self.boxes[at] = DrawBox(gid, display_text(name), details, "graph", holder, entry, exit_)
                ends[name] = gid
                continue
            nid = self._id("n")
            self.nodes.append(
                DrawNode(nid, display_text(name), node.TYPE, node_details(node, shapes.get(name)), holder)
            )
            ends[name] = nid
        back = back_edges(graph)
        join_count: Counter[str] = Counter()
        for src, dst in graph.edges:
            kind, label = _edge_kind(graph.nodes[dst], (src, dst) in back)
            if kind == "concatenate":
                label = f"cat {join_count[dst]}"
                join_count[dst] += 1
            self.edges.append(DrawEdge(ends[src], ends[dst], kind, label))
        first_in = next(iter(graph.input_names), None)
        first_out = next(iter(graph.output_names), None)
        return ends.get(first_in), ends.get(first_out)


def _edge_kind(dst: Any, back: bool) -> tuple[str, str]:
    if back:
        return "back", "t-1"
    if dst.TYPE == "Skip" and dst.skip_type in ("residual", "concatenate"):
        return dst.skip_type, "+" if dst.skip_type == "residual" else ""
    return "plain", ""


def _region_boxes(graph: Graph, order: list[str]) -> dict[str, str | None]:
    """Node name -> the ``HybridRegion`` marker whose box holds it (latest marker upstream).

    The marker itself is drawn inside its box; Input and Output nodes are never boxed.
    """
    rank = {name: i for i, name in enumerate(order)}
    marker_of: dict[str, str | None] = {}
    for name in order:
        if graph.nodes[name].TYPE == "HybridRegion":
            marker_of[name] = name
            continue
        marks = [marker_of[p] for p in graph.predecessors(name) if marker_of.get(p) is not None]
        marker_of[name] = max(marks, key=rank.__getitem__) if marks else None
    return {n: m for n, m in marker_of.items() if graph.nodes[n].TYPE not in ("Input", "Output")}


def back_edges(graph: Graph) -> set[tuple[str, str]]:
    """The edges that carry last step's values: those the graph's step order runs backwards.

    That order is ``graph.topological_order()``, the one the executor steps (a cycle's
    nodes in node order), so the edge marked ``t-1`` is the one the executor delays: in
    t1c's recurrent layer ``fc, rec, neuron`` it is ``neuron -> rec`` (``rec`` reads last
    step's spikes and gives its bias at step 0), not ``rec -> neuron``. Empty for a graph
    without cycles. A graph whose order cannot be taken (a cycle it does not allow, drawn
    for inspection) gets the edges that reach a node still on the path of a depth-first
    search from the inputs instead. Linear in the size of the graph.
    """
    try:
        order = graph.topological_order()
    except T1CFormatError:
        return _depth_first_back_edges(graph)
    position = {name: i for i, name in enumerate(order)}
    return {(src, dst) for src, dst in graph.edges if position[dst] <= position[src]}


def _depth_first_back_edges(graph: Graph) -> set[tuple[str, str]]:
    """Edges reaching a node still on the path of a depth-first search from the inputs."""
    succ: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        succ.setdefault(src, []).append(dst)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    found: set[tuple[str, str]] = set()
    starts = list(graph.input_names) + list(graph.nodes)
    for start in starts:
        if start in state:
            continue
        state[start] = 1
        stack = [(start, iter(succ.get(start, ())))]
        while stack:
            name, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[name] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                found.add((name, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ.get(nxt, ()))))
    return found


def _shape_text(shape: Any) -> str:
    return "[?]" if shape is None else "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _type_line(node: Any, shape: Any) -> str:
    return f"{node.TYPE} {_shape_text(shape)}"


def node_details(node: Any, shape: Any) -> tuple[str, ...]:
    """Label lines after the name: type and output shape, then counts and bits when known.

    Example:
        >>> import numpy as np
        >>> from t1c import ir
        >>> node_details(ir.SpikingAffine(weight=np.ones((2, 4)), bias=np.zeros(2)), (2,))
        ('SpikingAffine [2]', '10 weights, w8/acc16 bits')
    """
    lines = [_type_line(node, shape)]
    facts = []
    weights = weight_count(node)
    if weights:
        facts.append(f"{weights:,} {'weights' if node.TYPE in SYNAPSE_TYPES else 'params'}")
    if node.TYPE == "LIF" and shape is not None:
        facts.append(f"{math.prod(int(d) for d in shape):,} neurons")
    if node.TYPE == "SpikingAffine":
        facts.append(f"w{int(node.weight_bits)}/acc{int(node.accumulator_bits)} bits")
    weight_int = getattr(node, "weight_int", None)
    if weight_int is not None:
        facts.append(f"int{integer_bits(weight_int)} weights")
    if facts:
        lines.append(", ".join(facts))
    return tuple(lines)


def weight_count(node: Any) -> int:
    """Float parameters of a node (weights, biases, norm statistics); 0 for a LIF.

    Neuron arrays (LIF's ``tau``...) are not weights: a LIF shows its neuron count.
    """
    if node.TYPE == "LIF":
        return 0
    return sum(
        int(v.size) for v in node.to_fields().values() if isinstance(v, np.ndarray) and v.dtype.kind == "f"
    )


def integer_bits(values: np.ndarray) -> int:
    """Signed width that holds ``values`` (the symmetric grid ``|w| <= 2**(bits-1) - 1``)."""
    top = int(np.max(np.abs(values))) if values.size else 0
    return max(top.bit_length() + 1, 2)


def collapse_repeats(plan: DrawingPlan) -> DrawingPlan:
    """``plan`` with each run of repeated blocks collapsed into one node.

    A bottleneck is a node that no edge jumps over in the plan's (topological) order,
    so every path passes through it; a block is what follows one bottleneck up to the
    next one, included. Blocks are alike when they hold the same types, edges (by
    relative position and kind) and box; a unit of 1 to :data:`MAX_PERIOD` blocks
    repeated at least twice in a row (a stack of residual blocks, a deep MLP's
    Affine-LIF pairs) becomes one node saying how many times which types repeat. Nodes
    of nested graphs are never collapsed.
    """
    pos = {n.id: k for k, n in enumerate(plan.nodes)}
    ends = {b.id: (b.entry, b.exit) for b in plan.boxes}
    spans = [
        (pos.get(ends.get(e.src, (e.src, e.src))[1]), pos.get(ends.get(e.dst, (e.dst, e.dst))[0]))
        for e in plan.edges
    ]
    cover = [0] * (len(plan.nodes) + 1)
    for a, b in spans:
        if a is not None and b is not None and a + 1 < b:
            cover[a + 1] += 1
            cover[b] -= 1
    bottlenecks, depth = [], 0
    for k in range(len(plan.nodes)):
        depth += cover[k]
        if depth == 0:
            bottlenecks.append(k)
    blocks = [range(a + 1, b + 1) for a, b in zip(bottlenecks, bottlenecks[1:])]
    graph_boxes = {b.id for b in plan.boxes if b.kind == "graph"}
    incoming: dict[int, list] = {}
    for e, (a, b) in zip(plan.edges, spans):
        if a is not None and b is not None:
            incoming.setdefault(b, []).append((a, e.kind, e.label))
    signatures = [_block_signature(plan, block, incoming, graph_boxes) for block in blocks]
    merged: dict[str, str] = {}
    replaced: dict[str, DrawNode] = {}
    i = 0
    while i < len(blocks):
        period, times = _best_repeat(signatures, i)
        if times < 2:
            i += 1
            continue
        ids = [plan.nodes[k].id for block in blocks[i : i + period * times] for k in block]
        unit = [plan.nodes[k].type for block in blocks[i : i + period] for k in block]
        first, last = plan.nodes[blocks[i][0]], plan.nodes[blocks[i + period * times - 1][-1]]
        kinds = ", ".join(unit[:6]) + (f", ... ({len(unit)} nodes)" if len(unit) > 6 else "")
        replaced[ids[0]] = DrawNode(
            ids[0],
            f"{first.name} ... {last.name}",
            "collapsed",
            (f"{times:,} x [{kinds}]", f"{len(ids):,} nodes"),
            first.box,
        )
        merged.update(dict.fromkeys(ids, ids[0]))
        i += period * times
    return _merge(plan, merged, replaced)


def _block_signature(
    plan: DrawingPlan, block: range, incoming: dict[int, list], graph_boxes: set[str]
) -> Any:
    """What makes two blocks alike (a unique object for blocks that never collapse)."""
    inside = [plan.nodes[k] for k in block]
    if any(n.box in graph_boxes for n in inside):
        return object()
    start = block[0] - 1
    edges = tuple(
        (a - start, b - start, kind, label) for b in block for a, kind, label in incoming.get(b, ())
    )
    return (tuple(n.type for n in inside), tuple(n.details for n in inside), edges, inside[0].box)


def _best_repeat(signatures: list, i: int) -> tuple[int, int]:
    """(period, times) of the unit starting at block ``i`` that repeats over the most blocks."""
    best = (1, 1)
    for period in range(1, MAX_PERIOD + 1):
        unit = signatures[i : i + period]
        if len(unit) < period:
            break
        times = 1
        while signatures[i + times * period : i + (times + 1) * period] == unit:
            times += 1
        if times >= 2 and period * times > best[0] * best[1]:
            best = (period, times)
    return best


def _merge(plan: DrawingPlan, merged: dict[str, str], replaced: dict[str, DrawNode]) -> DrawingPlan:
    """``plan`` with the nodes in ``merged`` replaced by the node they merge into.

    Edges inside a merged group vanish, and edges between the same two drawn ends are
    drawn once (as a plain edge, without label, when they differ).
    """
    nodes = [replaced.get(n.id, n) for n in plan.nodes if merged.get(n.id, n.id) == n.id]
    edges: dict[tuple[str, str], DrawEdge] = {}
    for e in plan.edges:
        src, dst = merged.get(e.src, e.src), merged.get(e.dst, e.dst)
        if src == dst:
            continue
        edge = dataclasses.replace(e, src=src, dst=dst)
        if (src, dst) in edges and edges[(src, dst)] != edge:
            edge = DrawEdge(src, dst, "back" if e.kind == "back" else "plain")
        edges[(src, dst)] = edge
    return DrawingPlan(nodes, plan.boxes, list(edges.values()), list(plan.notes))


def collapse_chains(plan: DrawingPlan) -> DrawingPlan:
    """``plan`` with each chain of :data:`MIN_CHAIN`+ nodes collapsed into one node.

    A chain is a path of nodes that each have one plain incoming and one plain outgoing
    edge, sit in the same box and are neither inputs nor outputs; the collapsed node
    names its first and last node and counts the types it holds.
    """
    ins: Counter[str] = Counter(e.dst for e in plan.edges)
    outs: Counter[str] = Counter(e.src for e in plan.edges)
    by_id = {n.id: n for n in plan.nodes}
    nxt = {e.src: e.dst for e in plan.edges if e.kind == "plain"}

    def linkable(a: str, b: str) -> bool:
        na, nb = by_id.get(a), by_id.get(b)
        return (
            na is not None
            and nb is not None
            and na.box == nb.box
            and all(ins[i] == 1 and outs[i] == 1 for i in (a, b))
            and all(n.type not in ("Input", "Output") for n in (na, nb))
        )

    starts = {e.src for e in plan.edges if e.kind == "plain" and linkable(e.src, e.dst)}
    inner = {e.dst for e in plan.edges if e.kind == "plain" and linkable(e.src, e.dst)}
    merged: dict[str, str] = {}  # node id -> id of the collapsed node holding it
    replaced: dict[str, DrawNode] = {}
    for start in (s for s in starts if s not in inner):
        chain = [start]
        while nxt.get(chain[-1]) in inner and linkable(chain[-1], nxt[chain[-1]]):
            chain.append(nxt[chain[-1]])
        if len(chain) < MIN_CHAIN:
            continue
        first, last = by_id[chain[0]], by_id[chain[-1]]
        types = Counter(by_id[i].type for i in chain)
        counts = ", ".join(f"{t} x{k:,}" for t, k in types.most_common(3))
        if len(types) > 3:
            counts += f", {len(types) - 3} more types"
        replaced[start] = DrawNode(
            start, f"{first.name} ... {last.name}", "collapsed", (f"{len(chain):,} nodes", counts), first.box
        )
        merged.update(dict.fromkeys(chain, start))
    return _merge(plan, merged, replaced)


def cut_plan(plan: DrawingPlan, max_nodes: int) -> DrawingPlan:
    """The first ``max_nodes - 1`` nodes of ``plan``, and one node counting the rest.

    Edges into the left-out nodes end at that node (once per drawn source); boxes
    left empty are dropped.
    """
    kept = plan.nodes[: max_nodes - 1]
    keep_ids = {n.id for n in kept}
    boxes_used = {n.box for n in kept}
    parent = {b.id: b.parent for b in plan.boxes}
    for box in list(boxes_used):
        while box is not None:
            boxes_used.add(box)
            box = parent.get(box)
    boxes = [b for b in plan.boxes if b.id in boxes_used]
    rest = len(plan.nodes) - len(kept)
    omitted = DrawNode("n_rest", f"{rest:,} more nodes", "omitted", ("not drawn",), None)
    edges, into_rest = [], set()
    for e in plan.edges:
        src_in, dst_in = e.src in keep_ids or e.src in boxes_used, e.dst in keep_ids or e.dst in boxes_used
        if src_in and dst_in:
            edges.append(e)
        elif src_in and e.src not in into_rest and e.kind != "back":
            into_rest.add(e.src)
            edges.append(DrawEdge(e.src, omitted.id))
    return DrawingPlan([*kept, omitted], boxes, edges, list(plan.notes))
