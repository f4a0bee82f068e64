"""The edge-list passes of an import: nested NIRGraphs inlined, nodes bypassed, joins added.

NIR sums every edge into a node and nests graphs; T1C-IR is one flat graph whose joins are
explicit ``Skip(residual)`` nodes. These functions work on ``(src, dst)`` name pairs only.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .. import ir
from .common import SEPARATOR, NIRConversionError


def successors(edges: list[tuple[str, str]], name: str) -> list[str]:
    """The nodes ``name`` feeds, in edge-list order."""
    return [d for s, d in edges if s == name]


def predecessors(edges: list[tuple[str, str]], name: str) -> list[str]:
    """The nodes feeding ``name``, in edge-list order."""
    return [s for s, d in edges if d == name]


def flatten_graph(nir: Any, graph: Any, prefix: str, file: str | None) -> tuple[dict, list, list]:
    """Nested NIRGraphs inlined with ``outer.inner`` names; their Input/Output nodes kept as
    markers (removed by :func:`bypass`). Edges to a subgraph name go to its Input node,
    edges from it leave its Output node (``sub.port`` names one port explicitly)."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    markers: list[str] = []

    def port(end: str, kind: type, role: str) -> str:
        head, _, tail = end.partition(SEPARATOR)
        sub = graph.nodes.get(end) or graph.nodes.get(head)
        if not isinstance(sub, nir.NIRGraph):
            if end not in graph.nodes:
                raise NIRConversionError(
                    f"an edge names node '{end}', which does not exist", file=file, node=prefix + end
                )
            return prefix + end
        if end in graph.nodes:  # the subgraph itself: its one port of that kind
            ports = [n for n, v in sub.nodes.items() if isinstance(v, kind)]
            if len(ports) != 1:
                raise NIRConversionError(
                    f"subgraph has {len(ports)} {kind.__name__} nodes; name the {role} port ('{end}.<name>')",
                    file=file,
                    node=prefix + end,
                )
            return f"{prefix}{end}{SEPARATOR}{ports[0]}"
        if not isinstance(sub.nodes.get(tail), kind):
            raise NIRConversionError(
                f"'{tail}' is not a {kind.__name__} of subgraph '{head}'", file=file, node=prefix + end
            )
        return prefix + end

    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            sub_prefix = f"{prefix}{name}{SEPARATOR}"
            sub_nodes, sub_edges, sub_markers = flatten_graph(nir, node, sub_prefix, file)
            nodes.update(sub_nodes)
            edges.extend(sub_edges)
            markers += sub_markers
            markers += [
                sub_prefix + n for n, v in node.nodes.items() if isinstance(v, (nir.Input, nir.Output))
            ]
        else:
            nodes[prefix + name] = node
    for src, dst in graph.edges:
        edges.append((port(str(src), nir.Output, "output"), port(str(dst), nir.Input, "input")))
    return nodes, edges, markers


def bypass(name: str, edges: list[tuple[str, str]], file: str | None) -> list[tuple[str, str]]:
    """Remove node ``name`` from the edge list, wiring each of its inputs to each of its outputs
    (sums distribute: ``W(a + b) = Wa + Wb`` is what NIR's several-edges rule computes)."""
    preds = predecessors(edges, name)
    out: dict[tuple[str, str], None] = {}  # ordered, and a membership test in O(1)
    for s, d in edges:
        if d == name:
            continue
        for src in preds if s == name else [s]:
            if (src, d) in out:
                raise NIRConversionError(
                    f"reaches '{d}' twice once '{name}' is removed (x + x); T1C-IR has no duplicate edges",
                    file=file,
                    node=src,
                )
            out[(src, d)] = None
    return list(out)


def insert_sums(nodes: dict, edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A ``Skip(residual)`` in front of every node that sums several edges (T1C-IR's join)."""
    in_degree = Counter(d for _, d in edges)  # a join added below changes no other node's
    for name in list(nodes):
        node = nodes[name]
        if isinstance(node, ir.Skip) and node.skip_type == "residual":
            continue
        if in_degree[name] < 2:
            continue
        join = f"{name}{SEPARATOR}sum"
        while join in nodes:
            join += "_"
        nodes[join] = ir.Skip(skip_type="residual")
        edges = [(s, join if d == name else d) for s, d in edges] + [(join, name)]
    return edges


def _peel(names: set[str], edges: list[tuple[str, str]], forward: bool) -> set[str]:
    """``names`` without those no cycle reaches (forward) or no cycle is reached from (backward)."""
    left = set(names)
    degree = Counter(d if forward else s for s, d in edges if s in left and d in left)
    ready = [n for n in left if degree[n] == 0]
    while ready:
        name = ready.pop()
        left.discard(name)
        for s, d in edges:
            nxt = d if forward else s
            if (s if forward else d) == name and nxt in left:
                degree[nxt] -= 1
                if degree[nxt] == 0:
                    ready.append(nxt)
    return left


def check_acyclic(nodes: dict, edges: list[tuple[str, str]], file: str | None) -> None:
    """Refuse a recurrent graph, naming the nodes on its cycles (in node order).

    Raises:
        NIRConversionError: the edges hold a cycle.
    """
    on_cycles = _peel(_peel(set(nodes), edges, forward=True), edges, forward=False)
    if on_cycles:
        names = [n for n in nodes if n in on_cycles]
        raise NIRConversionError(
            f"the graph is recurrent: a cycle runs through {names}. T1C-IR files cannot hold cycles yet "
            "(ir.read accepts acyclic graphs only), so recurrent NIR graphs (e.g. snnTorch's RLeaky and "
            "RSynaptic subgraphs, lif -> w_rec -> lif) are not converted",
            file=file,
            node=names[0],
        )
