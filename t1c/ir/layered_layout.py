"""A layered (Sugiyama-style) layout of a directed acyclic graph, in pure Python.

The steps, each linear or close to it in the size of the graph:

1. **Layers** by longest path: a node sits one layer below its lowest input, so every
   edge points down.
2. **Dummy points** on edges that span several layers (a residual shortcut), one per
   layer crossed, so the ordering step can route them around the nodes they pass.
3. **Order** within each layer: start from the topological order, then alternate
   downward and upward barycenter sweeps (a node moves to the mean position of its
   neighbours in the layer before), keeping the ordering with the fewest crossings
   seen; a residual block (a chain beside its shortcut) comes out without crossings.
4. **Coordinates**: each node is pulled towards the mean x of its neighbours above
   (so chains are drawn straight), keeping one unit between neighbours in a layer.

The layout knows nothing of t1c: nodes are any hashable ids, and the caller removes
back edges (cycles) before and draws them itself. Graphviz is not needed.

Example:
    >>> layout = layered_layout(["a", "b", "c"], [("a", "b"), ("b", "c"), ("a", "c")])
    >>> [layout.positions[n][1] for n in "abc"]
    [0, 1, 2]
    >>> len(layout.routes[2])  # a -> c passes layer 1 through one dummy point
    3
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence

#: Barycenter sweeps (down and up count one each); more rarely helps small graphs.
SWEEPS = 8
#: Most dummy points placed in all; the longest edges beyond it are drawn straight, so a
#: node fed from far above by hundreds of edges cannot make the layout huge.
MAX_DUMMIES = 4000


@dataclasses.dataclass
class Layout:
    """Where everything goes.

    Attributes:
        positions: node -> ``(x, layer)``; ``x`` in units of one node slot, ``layer``
            counted from 0 at the top.
        routes: per edge (in the order given), the points it passes, endpoints included.
        layers: number of layers.
        crossings: edge crossings of the chosen ordering (between adjacent layers).
    """

    positions: dict[Hashable, tuple[float, int]]
    routes: list[list[tuple[float, int]]]
    layers: int
    crossings: int


def assign_layers(nodes: Sequence[Hashable], edges: Sequence[tuple[Hashable, Hashable]]) -> dict:
    """Node -> layer by longest path from the sources (Kahn's order, ties in ``nodes`` order).

    Raises:
        ValueError: the edges form a cycle (remove back edges first).
    """
    indegree = dict.fromkeys(nodes, 0)
    succ: dict = {n: [] for n in nodes}
    for src, dst in edges:
        succ[src].append(dst)
        indegree[dst] += 1
    layer = dict.fromkeys(nodes, 0)
    ready = [n for n in nodes if indegree[n] == 0]
    done = 0
    while ready:
        node = ready.pop()
        done += 1
        for nxt in succ[node]:
            layer[nxt] = max(layer[nxt], layer[node] + 1)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    if done != len(indegree):
        raise ValueError("the edges form a cycle; remove the back edges before the layout")
    return layer


def layered_layout(
    nodes: Sequence[Hashable],
    edges: Sequence[tuple[Hashable, Hashable]],
    sweeps: int = SWEEPS,
    max_dummies: int = MAX_DUMMIES,
) -> Layout:
    """Lay out the acyclic graph ``(nodes, edges)`` in layers (see the module docstring).

    Args:
        nodes: node ids; their order breaks ties (the first of two equal nodes goes left).
        edges: ``(src, dst)`` pairs without cycles.
        sweeps: barycenter sweeps at most.
        max_dummies: dummy points at most; edges are given them shortest first, and the
            others are routed straight from end to end.
    """
    layer = assign_layers(nodes, edges)
    rows: list[list] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for node in nodes:
        rows[layer[node]].append(node)
    routed, budget = set(), max_dummies
    for k in sorted(range(len(edges)), key=lambda k: layer[edges[k][1]] - layer[edges[k][0]]):
        budget -= layer[edges[k][1]] - layer[edges[k][0]] - 1
        if budget < 0:
            break
        routed.add(k)
    ups: dict = {n: [] for n in nodes}
    chains: list[list] = []
    for k, (src, dst) in enumerate(edges):
        chain = [src]
        for level in range(layer[src] + 1, layer[dst]) if k in routed else ():
            dummy = ("dummy", k, level)
            rows[level].append(dummy)
            ups[dummy] = [chain[-1]]
            chain.append(dummy)
        ups[dst].append(chain[-1])
        chain.append(dst)
        chains.append(chain)
    downs: dict = {n: [] for n in ups}
    for node, preds in ups.items():
        for p in preds:
            downs[p].append(node)
    rows, crossings = _order(rows, ups, downs, sweeps)
    x = _coordinates(rows, ups)
    positions = {n: (x[n], layer[n]) for n in nodes}
    routes = [[(x[p], layer[p] if p in layer else p[2]) for p in chain] for chain in chains]
    return Layout(positions, routes, len(rows), crossings)


def _order(rows: list[list], ups: dict, downs: dict, sweeps: int) -> tuple[list[list], int]:
    """Barycenter sweeps; the ordering with the fewest crossings and its count."""
    best = [list(r) for r in rows]
    best_crossings = _crossings(best, ups)
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        span = range(1, len(rows)) if down else range(len(rows) - 2, -1, -1)
        for i in span:
            ref = rows[i - 1] if down else rows[i + 1]
            pos = {n: k for k, n in enumerate(ref)}
            near = ups if down else downs
            rows[i] = _by_barycenter(rows[i], near, pos)
        crossings = _crossings(rows, ups)
        if crossings < best_crossings:
            best, best_crossings = [list(r) for r in rows], crossings
        if best_crossings == 0:
            break
    return best, best_crossings


def _by_barycenter(row: list, near: dict, pos: dict) -> list:
    """``row`` sorted by the mean position of each node's neighbours (in ``pos``)."""
    keys = []
    for k, node in enumerate(row):
        ps = [pos[n] for n in near[node] if n in pos]
        keys.append((sum(ps) / len(ps) if ps else k, k))
    return [row[k] for _, k in sorted((key, k) for k, key in enumerate(keys))]


def _crossings(rows: list[list], ups: dict) -> int:
    """Crossings between each pair of adjacent layers (a merge-count over the edge list)."""
    total = 0
    for upper, lower in zip(rows, rows[1:]):
        pos = {n: k for k, n in enumerate(upper)}
        ends = [(k, pos[p]) for k, n in enumerate(lower) for p in ups[n] if p in pos]
        ends.sort()
        total += _inversions([p for _, p in ends])
    return total


def _inversions(values: list[int]) -> int:
    """Pairs ``i < j`` with ``values[i] > values[j]`` (merge sort, O(n log n))."""
    if len(values) < 2:
        return 0
    mid = len(values) // 2
    left, right = sorted(values[:mid]), sorted(values[mid:])
    count = _inversions(values[:mid]) + _inversions(values[mid:])
    j = 0
    for v in left:
        while j < len(right) and right[j] < v:
            j += 1
        count += j
    return count


def _coordinates(rows: list[list], ups: dict) -> dict:
    """x of every node: towards the mean x of its inputs, one unit apart in a layer."""
    x: dict = {}
    for row in rows:
        wanted = []
        for k, node in enumerate(row):
            xs = [x[p] for p in ups[node] if p in x]
            wanted.append(sum(xs) / len(xs) if xs else k - (len(row) - 1) / 2)
        x.update(zip(row, _spread(wanted)))
    return x


def _spread(wanted: list[float]) -> list[float]:
    """Positions as close to ``wanted`` as possible, in order, at least one unit apart."""
    n = len(wanted)
    low = list(wanted)
    for k in range(1, n):
        low[k] = max(low[k], low[k - 1] + 1)
    high = list(wanted)
    for k in range(n - 2, -1, -1):
        high[k] = min(high[k], high[k + 1] - 1)
    mid = [(a + b) / 2 for a, b in zip(low, high)]
    for k in range(1, n):
        mid[k] = max(mid[k], mid[k - 1] + 1)
    return mid
