"""Plain-text reports of `.t1c` graphs for ``t1c inspect`` and ``t1c verify``.

Pure formatting over :mod:`t1c.ir` objects (numpy only, no torch, no file I/O), so the
command line stays fast and every line of a report can be tested without a file::

    from t1c import ir
    from t1c.inspect import format_graph

    print(format_graph(ir.read("net.t1c"), path="net.t1c"))

Names, metadata and paths come from files that may be hostile, so every piece of text
goes through :func:`safe_text`: control characters (terminal escapes), bidirectional
and other invisible format characters are shown escaped (``\\x1b``, ``\\u202e``), and
table cells (each field value of the ``fields`` column) are cut to :data:`MAX_CELL`
characters, so a report never reprograms the terminal and its size stays proportional to
the number of nodes and edges.

Parameters are counted in two kinds: weights (every float array of a node but the neuron
arrays: weights, biases, scales, normalization statistics) and neuron parameters (a LIF's
per-neuron arrays, :data:`NEURON_FIELDS`), which describe the neurons, not the synapses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .ir import Graph, Node, Subgraph, regions
from .ir.drawing import back_edges, escape_char

#: Arrays counted as parameters but not shown field by field (they are what the
#: parameter count sums up; showing them would flood the table).
_BULK_FIELDS = frozenset(
    {
        "weight",
        "bias",
        "depthwise_weight",
        "pointwise_weight",
        "depthwise_bias",
        "pointwise_bias",
        "bias_int",
        "running_mean",
        "running_var",
    }
)
#: A LIF's per-neuron float arrays: counted as neuron parameters, not as weights.
NEURON_FIELDS = frozenset({"tau", "r", "v_leak", "v_threshold", "beta"})
#: Fields that repeat the shape columns.
_SHAPE_FIELDS = frozenset({"shape"})
#: Widest a table cell, field value or metadata value is shown (longer text is cut, saying so).
MAX_CELL = 80
#: Input shapes listed for a node with many inputs (the rest are counted).
MAX_LISTED_INPUTS = 8


def safe_text(text: Any, limit: int | None = None) -> str:
    r"""``text`` with control and invisible characters escaped, cut after ``limit`` chars.

    Example:
        >>> safe_text("fc\x1b]0;owned\x07\u202e")
        'fc\\x1b]0;owned\\x07\\u202e'
        >>> safe_text("x" * 100, limit=20)
        'xxxxxxxxxxxxxxxxxxxx...(+80 chars)'
    """
    text = str(text)
    out: list[str] = []
    width = 0
    for i, ch in enumerate(text):
        piece = escape_char(ch)
        if limit is not None and width + len(piece) > limit:
            return "".join(out) + f"...(+{len(text) - i} chars)"
        out.append(piece)
        width += len(piece)
    return "".join(out)


@dataclasses.dataclass(frozen=True)
class NodeRow:
    """One line of the node table.

    Attributes:
        name: the node's name in the graph.
        type: the primitive's on-disk type name.
        input_shape: the shapes the node receives (batch excluded), ``-`` for none.
        output_shape: the shape it produces (batch excluded).
        weights: float weights stored for the node (weights, biases, scales, statistics).
        neuron_params: float neuron parameters stored for it (a LIF's per-neuron arrays).
        fields: the node's small fields as ``key=value`` text (skip type, bits, strides...).
    """

    name: str
    type: str
    input_shape: str
    output_shape: str
    weights: int
    neuron_params: int
    fields: str


def format_shape(shape: Sequence[int] | None) -> str:
    """``[64]``, ``[2, 16, 16]``; ``?`` when unknown."""
    if shape is None:
        return "?"
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def format_value(value: Any) -> str:
    """A short text for a field or metadata value.

    Small arrays are listed, a constant float array is shown as its one value (LIF
    parameters are usually uniform) and other large arrays by their range, so a line
    never grows with the layer size.
    """
    scalar = _format_scalar(value)
    if scalar is not None:
        return scalar
    arr = np.asarray(value)
    if arr.ndim == 0:
        return format_value(arr.item())
    if arr.size == 0:
        return "[]"
    if arr.dtype.kind in "fiu" and arr.size > 1 and bool(np.all(arr == arr.flat[0])):
        return format_value(arr.flat[0])
    if arr.size <= 4:
        return "[" + ", ".join(format_value(v) for v in arr.reshape(-1).tolist()) + "]"
    if arr.dtype.kind in "fiu":
        return f"{format_value(arr.min())}..{format_value(arr.max())}"
    return f"<{arr.dtype}{list(arr.shape)}>"


def _format_scalar(value: Any) -> str | None:
    """The text of a bool, number, string or nested graph; None for anything else."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, Graph):  # a nested Graph node
        return f"<graph: {len(value.nodes)} nodes, {len(value.edges)} edges>"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (str, bytes)):
        return value.decode() if isinstance(value, bytes) else value
    return None


def param_count(node: Node, only: frozenset[str] | None = None) -> int:
    """Number of float parameters a node stores (integer copies are not counted twice).

    Args:
        node: the node (a nested graph's nodes are counted too).
        only: count only the fields of these names (:data:`NEURON_FIELDS`); None counts all.
    """
    total = 0
    for name, value in node.to_fields().items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            total += int(value.size) if only is None or name in only else 0
        elif isinstance(value, Graph):
            total += sum(param_count(inner, only) for inner in value.nodes.values())
    return total


def node_fields(node: Node) -> str:
    """The node's small fields as ``key=value`` pairs, in declaration order; every field is
    shown, each value escaped and cut at :data:`MAX_CELL` characters."""
    parts = []
    for name, value in node.to_fields().items():
        if name in _BULK_FIELDS or name in _SHAPE_FIELDS:
            continue
        parts.append(f"{name}={safe_text(format_value(value), MAX_CELL)}")
    return " ".join(parts)


def node_rows(graph: Graph) -> list[NodeRow]:
    """One :class:`NodeRow` per node, in topological order (inputs before their users)."""
    rows = []
    for name in graph.topological_order():
        node = graph.nodes[name]
        in_shapes = graph.input_shapes.get(name, [])
        neuron_params = param_count(node, NEURON_FIELDS)
        rows.append(
            NodeRow(
                name=name,
                type=node.TYPE,
                input_shape=_input_shapes(in_shapes),
                output_shape=format_shape(graph.output_shapes.get(name)),
                weights=param_count(node) - neuron_params,
                neuron_params=neuron_params,
                fields=node_fields(node),
            )
        )
    return rows


def _input_shapes(shapes: Sequence[Sequence[int]]) -> str:
    """``[4] + [4]``; a node with many inputs lists the first few and counts them all."""
    if not shapes:
        return "-"
    text = " + ".join(format_shape(s) for s in shapes[:MAX_LISTED_INPUTS])
    if len(shapes) > MAX_LISTED_INPUTS:
        text += f" + ... ({len(shapes):,} inputs)"
    return text


def format_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    right: Iterable[int] = (),
    uncut: Iterable[int] = (),
) -> str:
    """Columns padded to their widest cell; the columns in ``right`` are right-aligned.

    Every cell goes through :func:`safe_text` (escaped, cut at :data:`MAX_CELL`), so no
    column is wider than that; the cells of the columns in ``uncut`` are escaped only (their
    text must be bounded already, as :func:`node_fields` bounds each value).
    """
    uncut = set(uncut)
    cells = [[safe_text(h, MAX_CELL) for h in headers]] + [
        [safe_text(c, None if i in uncut else MAX_CELL) for i, c in enumerate(row)] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = set(right)
    lines = []
    for k, row in enumerate(cells):
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(padded).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def flatten_metadata(metadata: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted key, text)`` pairs; nested dicts become ``outer.inner`` keys."""
    out: list[tuple[str, str]] = []
    for key, value in metadata.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(flatten_metadata(value, prefix=f"{full}."))
        else:
            out.append((full, format_value(value)))
    return out


def format_graph(graph: Graph, *, path: str | None = None, version: str | None = None) -> str:
    """The full ``t1c inspect`` report: header, node table, edges, metadata.

    Args:
        graph: a validated graph (shapes inferred).
        path: the file it came from, shown in the header.
        version: the file's format version, shown in the header.
    """
    rows = node_rows(graph)
    weights, neuron_params = sum(r.weights for r in rows), sum(r.neuron_params for r in rows)
    header = [f"file: {safe_text(path)}" if path is not None else "graph"]
    if version is not None:
        header.append(f"format version: {safe_text(version, MAX_CELL)}")
    inputs = safe_text(", ".join(graph.input_names), 4 * MAX_CELL)
    outputs = safe_text(", ".join(graph.output_names), 4 * MAX_CELL)
    header.append(
        f"{len(graph.nodes)} nodes, {len(graph.edges)} edges, {weights:,} weights, "
        f"{neuron_params:,} neuron parameters; "
        f"inputs: {inputs}; outputs: {outputs}"
    )
    header.append(f"content hash: {graph.content_hash()[:16]}")
    back = back_edges(graph)
    if back:
        header.append(f"recurrent: {len(back)} back edge(s) carry last step's values (marked below)")
    table = _node_table(rows)
    edges = _edge_lines(graph, back)
    meta = flatten_metadata(graph.metadata)
    for name, node in graph.nodes.items():
        meta += flatten_metadata(node.metadata, prefix=f"nodes/{name}/")
    meta_lines = [f"  {safe_text(k, MAX_CELL)}: {safe_text(v, MAX_CELL)}" for k, v in meta]
    edges, meta_lines = edges or ["  (none)"], meta_lines or ["  (none)"]
    return "\n".join(
        header
        + ["", "nodes (topological order):", table]
        + ["", "edges (file order):"]
        + edges
        + ["", "regions (HybridRegion markers, else node kinds):"]
        + region_lines(graph)
        + ["", "metadata:"]
        + meta_lines
        + nested_lines(graph)
    )


def _node_table(rows: Sequence[NodeRow]) -> str:
    return format_table(
        ["name", "type", "input shape", "output shape", "weights", "neuron params", "fields"],
        [
            (
                r.name,
                r.type,
                r.input_shape,
                r.output_shape,
                f"{r.weights:,}",
                f"{r.neuron_params:,}",
                r.fields,
            )
            for r in rows
        ],
        right=[4, 5],
        uncut=[6],
    )


def _edge_lines(graph: Graph, back: set[tuple[str, str]]) -> list[str]:
    """``  src -> dst`` for each edge of ``graph``, names escaped and cut; the ``back`` edges
    (:func:`~t1c.ir.drawing.back_edges`) marked."""
    return [
        f"  {safe_text(src, MAX_CELL)} -> {safe_text(dst, MAX_CELL)}"
        + ("  (back edge: last step's value)" if (src, dst) in back else "")
        for src, dst in graph.edges
    ]


def nested_lines(graph: Graph, prefix: str = "") -> list[str]:
    """For each nested ``Graph`` node: its node table and edges (and theirs, recursively)."""
    lines: list[str] = []
    for name, node in graph.nodes.items():
        if not isinstance(node, Subgraph):
            continue
        inner = node.graph
        if not inner.output_shapes:
            inner.validate()
        path = f"{prefix}{name}"
        lines += [
            "",
            f"nested graph '{safe_text(path, MAX_CELL)}' (topological order):",
            _node_table(node_rows(inner)),
        ]
        lines += _edge_lines(inner, back_edges(inner))
        lines += nested_lines(inner, prefix=f"{path}/")
    return lines


def region_lines(graph: Graph) -> list[str]:
    """One line per ANN/SNN region (:func:`t1c.ir.regions`): mode, marker, nodes."""
    lines = []
    for region in regions(graph):
        if region.marker is None:
            origin = "by node kinds"
        else:
            origin = f"marker '{region.marker}'" + (f" ({region.name})" if region.name else "")
        names = ", ".join(region.nodes[:MAX_LISTED_INPUTS])
        if len(region.nodes) > MAX_LISTED_INPUTS:
            names += f", ... ({len(region.nodes):,} nodes)"
        lines.append(f"  {region.mode}  {safe_text(origin, MAX_CELL)}: {safe_text(names, 4 * MAX_CELL)}")
    return lines or ["  (none)"]


def format_verify(diffs: Sequence[str], expected: str, actual: str) -> str:
    """The ``t1c verify`` report: ``topology identical`` or one line per difference."""
    expected, actual = safe_text(expected), safe_text(actual)
    if not diffs:
        return f"topology identical: {expected} and {actual}"
    lines = [f"topology differs: {expected} (expected) vs {actual} (actual), {len(diffs)} difference(s):"]
    lines += [f"  {safe_text(d, 4 * MAX_CELL)}" for d in diffs]
    return "\n".join(lines)
