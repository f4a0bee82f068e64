"""The edge-list passes of an import: nested NIRGraphs inlined, nodes bypassed, joins added,
and the node order that puts a recurrent graph's back edges where NIR means them.

NIR sums every edge into a node, nests graphs and allows cycles; T1C-IR is one flat graph
whose joins are explicit ``Skip(residual)`` nodes and whose back edges are the edges to an
earlier node. These functions work on ``(src, dst)`` name pairs only.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .. import ir
from .common import META_JOIN, SEPARATOR, NIRConversionError


def successors(edges: list[tuple[str, str]], name: str) -> list[str]:
    """The nodes ``name`` feeds, in edge-list order."""
    return [d for s, d in edges if s == name]


def predecessors(edges: list[tuple[str, str]], name: str) -> list[str]:
    """The nodes feeding ``name``, in edge-list order."""
    return [s for s, d in edges if d == name]


def flatten_graph(nir: Any, graph: Any, prefix: str, file: str | None) -> tuple[dict, list, list]:
    """Nested NIRGraphs inlined with ``outer.inner`` names; their Input/Output nodes kept as
    markers (removed by :func:`bypass`). Edges to a subgraph name go to its Input node,
    edges from it leave its Output node (``sub.port`` names one port explicitly); a
    subgraph's own edges come where the outer edges first name it, so the edge list reads
    in the outer graph's order."""
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

    inner: dict[str, list[tuple[str, str]]] = {}  # a subgraph's edges, placed at its first outer edge
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            sub_prefix = f"{prefix}{name}{SEPARATOR}"
            sub_nodes, inner[name], sub_markers = flatten_graph(nir, node, sub_prefix, file)
            nodes.update(sub_nodes)
            markers += sub_markers
            markers += [
                sub_prefix + n for n, v in node.nodes.items() if isinstance(v, (nir.Input, nir.Output))
            ]
        else:
            nodes[prefix + name] = node
    for src, dst in graph.edges:
        for end in (str(src), str(dst)):
            edges += inner.pop(end.partition(SEPARATOR)[0], [])
        edges.append((port(str(src), nir.Output, "output"), port(str(dst), nir.Input, "input")))
    for rest in inner.values():
        edges += rest
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
    """A ``Skip(residual)`` in front of every node that sums several edges (T1C-IR's join),
    marked ``t1c_nir_sum`` so that :func:`~t1c.nir.to_nir` writes NIR's edges back instead.

    Not in front of an exact-form ``CubaLIF`` (one with ``beta``, restored from the metadata
    ``to_nir`` wrote): it adds its inputs one at a time in edge order, as snnTorch's
    recurrent neurons add input and feedback (``docs/neurons.md``), which a sum first would
    round differently.
    """
    in_degree = Counter(d for _, d in edges)  # a join added below changes no other node's
    for name in list(nodes):
        node = nodes[name]
        if isinstance(node, ir.Skip) and node.skip_type == "residual":
            continue
        if isinstance(node, ir.CubaLIF) and node.beta is not None:
            continue
        if in_degree[name] < 2:
            continue
        join = f"{name}{SEPARATOR}sum"
        while join in nodes:
            join += "_"
        nodes[join] = ir.Skip(skip_type="residual", metadata={META_JOIN: True})
        edges = [(s, join if d == name else d) for s, d in edges] + [(join, name)]
    return edges


def cycles(names: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with a cycle (several nodes, or one with an edge to
    itself), each in ``names`` order; iterative Kosaraju, so deep graphs do not recurse."""
    succ: dict[str, list[str]] = {n: [] for n in names}
    pred: dict[str, list[str]] = {n: [] for n in names}
    for s, d in edges:
        succ[s].append(d)
        pred[d].append(s)
    finished: list[str] = []
    seen: set[str] = set()
    for root in names:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(succ[root]))]
        while stack:
            name, todo = stack[-1]
            nxt = next((n for n in todo if n not in seen), None)
            if nxt is None:
                stack.pop()
                finished.append(name)
            else:
                seen.add(nxt)
                stack.append((nxt, iter(succ[nxt])))
    component: dict[str, int] = {}
    for root in reversed(finished):
        if root in component:
            continue
        component[root] = root_id = len(component)
        frontier = [root]
        while frontier:
            for prev in pred[frontier.pop()]:
                if prev not in component:
                    component[prev] = root_id
                    frontier.append(prev)
    groups: dict[int, list[str]] = {}
    for name in names:
        groups.setdefault(component[name], []).append(name)
    loops = {s for s, d in edges if s == d}
    return [g for g in groups.values() if len(g) > 1 or g[0] in loops]


def step_order(
    nodes: dict, edges: list[tuple[str, str]], neurons: set[str], file: str | None
) -> tuple[list[str], bool]:
    """The node order that makes T1C-IR's back edges the ones NIR's recurrence means.

    A cycle must run through exactly one neuron: its edges into the cycle carry last step's
    spikes (zero at the first step), as snnTorch's ``RLeaky``/``RSynaptic`` compute
    (``docs/nir.md``, "Recurrent graphs"). The order puts every node after the nodes that
    feed it through the other edges, otherwise keeping ``nodes`` order (an acyclic graph
    keeps it unchanged); T1C-IR's executor then treats exactly those edges as back edges
    (an edge to an earlier node).

    Args:
        nodes: node name -> node, in the order to keep where the edges allow.
        edges: ``(src, dst)`` pairs.
        neurons: the names of the spiking neurons (the nodes whose output may wait a step).
        file: for the error.

    Returns:
        The names in step order, and whether the graph has a cycle.

    Raises:
        NIRConversionError: a node with an edge to itself, or a cycle through no neuron or
            through several (their names in the message).
    """
    names = list(nodes)
    back: set[tuple[str, str]] = set()
    for group in cycles(names, edges):
        members = set(group)
        spiking = [n for n in group if n in neurons]
        if len(group) == 1 or len(spiking) != 1:
            what = (
                "an edge from the node to itself (T1C-IR has no self edge; put the feedback weight "
                "on the cycle as a Linear)"
                if len(group) == 1
                else f"a cycle through {len(spiking)} neurons {spiking}; the nodes on it: {group}. A "
                "recurrent edge waits one step behind the neuron it leaves, so a cycle must run through "
                "exactly one neuron (snnTorch's RLeaky/RSynaptic form, neuron -> weight -> neuron)"
            )
            raise NIRConversionError(f"the graph is recurrent with {what}", file=file, node=group[0])
        back.update((s, d) for s, d in edges if s == spiking[0] and d in members)
    if not back:
        return names, False
    feeds: dict[str, list[str]] = {n: [] for n in names}
    for s, d in edges:
        if (s, d) not in back:
            feeds[d].append(s)
    placed: dict[str, None] = {}  # ordered; each node after what feeds it (back edges aside)
    for root in names:
        stack = [root]
        while stack:
            name = stack[-1]
            waiting = [n for n in feeds[name] if n not in placed]
            if name in placed or not waiting:
                placed[name] = None
                stack.pop()
            else:
                stack += reversed(waiting)
    return list(placed), True
