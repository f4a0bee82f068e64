"""Topology comparison: do two graphs have the same structure?

"Same topology" means: the same node names with the same types, the exact same edge
list (order included), the same skip types, the same parameter shapes, the same values
of the fields a type lists in ``TOPOLOGY_FIELDS`` (what it computes, which training does
not change: ``Softmax.dim``, ``GELU.approximate``, ``LayerNorm.normalized_shape``,
``HybridRegion.mode``/``name``), and for a nested graph the same inner topology.
Weights and statistics may differ; that is what fine-tuning changes. The export callback uses this to prove that a
re-exported graph is the graph the hardware toolchain already knows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .graph import Graph
from .hybrid import Subgraph
from .io import Input, Output
from .node import Node
from .skip import Skip


def topology_diff(expected: Graph, actual: Graph) -> list[str]:
    """Readable differences between two graphs' topology; empty when they match."""
    diffs: list[str] = []
    for name in expected.nodes:
        if name not in actual.nodes:
            diffs.append(f"node '{name}' ({expected.nodes[name].TYPE}) is missing")
    for name in actual.nodes:
        if name not in expected.nodes:
            diffs.append(f"node '{name}' ({actual.nodes[name].TYPE}) is new")
    for name, a in expected.nodes.items():
        b = actual.nodes.get(name)
        if b is not None:
            diffs += _node_diffs(name, a, b)
    return diffs + _edge_diffs(expected.edges, actual.edges)


def _node_diffs(name: str, a: Node, b: Node) -> list[str]:
    """What differs in topology between two nodes of the same name."""
    if a.TYPE != b.TYPE:
        return [f"node '{name}': type {a.TYPE} became {b.TYPE}"]
    diffs: list[str] = []
    if isinstance(a, Skip) and a.skip_type != b.skip_type:
        diffs.append(f"node '{name}': skip_type {a.skip_type} became {b.skip_type}")
    for field in getattr(type(a), "TOPOLOGY_FIELDS", ()):
        va, vb = getattr(a, field), getattr(b, field)
        if not _same_value(va, vb):
            diffs.append(f"node '{name}': {field} {_shown(va)} became {_shown(vb)}")
    if isinstance(a, Subgraph):
        diffs += [f"node '{name}' (nested graph): {d}" for d in topology_diff(a.graph, b.graph)]
    if isinstance(a, Input):  # its one field is the shape itself: compare the values
        if list(a.shape) != list(b.shape):
            diffs.append(f"node '{name}': shape {list(a.shape)} became {list(b.shape)}")
        return diffs
    pa, pb = a.param_shapes(), b.param_shapes()
    for field in sorted(set(pa) | set(pb)):
        if pa.get(field) != pb.get(field):
            sa = list(pa[field]) if field in pa else "absent"
            sb = list(pb[field]) if field in pb else "absent"
            if isinstance(a, Output):  # an inferred shape: what differs here is its rank
                diffs.append(f"node '{name}': shape of rank {sa[0]} became rank {sb[0]}")
            else:
                diffs.append(f"node '{name}': {field} shape {sa} became {sb}")
    return diffs


def _edge_diffs(expected: list[tuple[str, str]], actual: list[tuple[str, str]]) -> list[str]:
    """Missing and new edges, or the order when only the order differs."""
    if expected == actual:
        return []
    diffs: list[str] = []
    ea, eb = set(expected), set(actual)
    diffs += [f"edge {src} -> {dst} is missing" for src, dst in expected if (src, dst) not in eb]
    diffs += [f"edge {src} -> {dst} is new" for src, dst in actual if (src, dst) not in ea]
    if ea == eb:
        diffs.append(
            "edge order differs: expected "
            + ", ".join(f"{s}->{d}" for s, d in expected)
            + "; got "
            + ", ".join(f"{s}->{d}" for s, d in actual)
        )
    return diffs


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return a == b


def _shown(value: Any) -> str:
    return str(value.tolist()) if isinstance(value, np.ndarray) else repr(value)


def same_topology(expected: Graph, actual: Graph) -> bool:
    return not topology_diff(expected, actual)
