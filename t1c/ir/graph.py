"""`Graph`: named nodes plus an ordered edge list, validated and shape-checked.

The edge order is part of the graph: a node with several inputs (``Skip`` with
``concatenate``) takes them in edge-list order. Validation runs when a graph is built,
so a graph that exists is a graph that can be written and run.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .errors import T1CFormatError
from .io import Input, Output
from .node import Node, Shape

Edge = tuple[str, str]

#: Default bound on the elements of any inferred shape (batch excluded): 2**28, i.e.
#: 1 GiB of float32 per sample at one node. A crafted file can declare a tiny input and
#: an ``Upsample`` by 65536 that a pool brings back down: the file is small and valid,
#: but its first forward pass would ask for hundreds of GiB. Pass ``max_elements`` to
#: :class:`Graph` (or :func:`t1c.ir.read`) to allow larger activations.
MAX_ELEMENTS = 2**28


class Graph:
    """A T1C-IR graph.

    Args:
        nodes: node name -> primitive. Names are HDF5 group names, so no ``/``.
        edges: ``(src, dst)`` pairs; the order is meaningful (see module docstring).
        metadata: free-form entries (ints, floats, strings, bools, arrays, nested dicts)
            stored under ``/graph/metadata``.
        allow_cycles: accept a recurrent graph: a cycle is run with its back edges
            carrying last step's values (SEMANTICS.md), and shapes are inferred around it
            (a node fed only through a back edge takes its shape once its input has one).
        validate: check and infer shapes now (the default). Only turn off to inspect a
            broken graph.
        max_elements: refuse a node whose inferred output has more elements than this
            (batch excluded); ``None`` means :data:`MAX_ELEMENTS`.

    Example:
        >>> import numpy as np
        >>> from t1c import ir
        >>> g = ir.Graph.from_chain(
        ...     ir.Input(input_type={"input": np.array([4])}),
        ...     ir.Affine(weight=np.ones((2, 4)), bias=np.zeros(2)),
        ...     ir.Output(),
        ...     names=["input", "fc", "output"])
        >>> g.output_shapes["fc"]
        (2,)
    """

    def __init__(
        self,
        nodes: Mapping[str, Node],
        edges: Iterable[Edge],
        metadata: Mapping[str, Any] | None = None,
        *,
        allow_cycles: bool = False,
        validate: bool = True,
        max_elements: int | None = None,
    ) -> None:
        self.nodes: dict[str, Node] = dict(nodes)
        self.edges: list[Edge] = [(str(s), str(d)) for s, d in edges]
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.allow_cycles = allow_cycles
        self.max_elements = MAX_ELEMENTS if max_elements is None else int(max_elements)
        self._adjacency: tuple[dict[str, list[str]], dict[str, list[str]]] | None = None
        self._adjacency_of: tuple[int, int] = (0, -1)
        self.input_shapes: dict[str, list[Shape]] = {}
        self.output_shapes: dict[str, Shape] = {}
        self._order: list[str] | None = None
        self._cyclic = False
        if validate:
            self.validate()

    @classmethod
    def from_chain(cls, *nodes: Node, names: Iterable[str] | None = None, metadata=None) -> Graph:
        """A plain chain ``nodes[0] -> nodes[1] -> ...``; names default to ``type_index``."""
        names = (
            list(names)
            if names is not None
            else [f"{type(n).__name__.lower()}_{i}" for i, n in enumerate(nodes)]
        )
        if len(names) != len(nodes):
            raise T1CFormatError(f"{len(names)} names for {len(nodes)} nodes")
        return cls(dict(zip(names, nodes)), list(zip(names[:-1], names[1:])), metadata)

    # -- structure ---------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [n for n, node in self.nodes.items() if isinstance(node, Input)]

    @property
    def output_names(self) -> list[str]:
        return [n for n, node in self.nodes.items() if isinstance(node, Output)]

    def predecessors(self, name: str) -> list[str]:
        """Sources of ``name``'s incoming edges, in edge-list order."""
        return list(self._adjacent()[0].get(name, ()))

    def successors(self, name: str) -> list[str]:
        """Destinations of ``name``'s outgoing edges, in edge-list order."""
        return list(self._adjacent()[1].get(name, ()))

    def _adjacent(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """(predecessors, successors) of every node, built once per edge list.

        Rebuilt when ``edges`` is replaced or changes length, and on every
        :meth:`validate`; so lookups are O(degree) and validation is linear in the
        size of the graph (it was quadratic: 680 s for a 100k-node chain).
        """
        key = (id(self.edges), len(self.edges))
        if self._adjacency is None or self._adjacency_of != key:
            preds: dict[str, list[str]] = {}
            succs: dict[str, list[str]] = {}
            for src, dst in self.edges:
                succs.setdefault(src, []).append(dst)
                preds.setdefault(dst, []).append(src)
            self._adjacency, self._adjacency_of = (preds, succs), key
        return self._adjacency

    def validate(self) -> None:
        """Check structure, order the nodes and infer every node's shapes."""
        self._adjacency = None
        self._check_structure()
        self._order = self._topological_order()
        self._check_reachable()
        self.infer_shapes()

    def _check_structure(self) -> None:
        for name, node in self.nodes.items():
            if not isinstance(name, str) or not name or "/" in name or "\x00" in name or name in (".", ".."):
                raise T1CFormatError(
                    "node names must be non-empty, not '.' or '..', and contain no '/' or NUL "
                    "(they are HDF5 group names); rename the node",
                    node=repr(name) if isinstance(name, str) and "\x00" in name else str(name),
                )
            if not isinstance(node, Node):
                raise T1CFormatError(f"is not a T1C-IR primitive but {type(node).__name__}", node=name)
        seen: set[Edge] = set()
        for i, (src, dst) in enumerate(self.edges):
            for end, field in ((src, "edges/src"), (dst, "edges/dst")):
                if end not in self.nodes:
                    raise T1CFormatError(
                        f"edge {i} ({src} -> {dst}) names a node that does not exist", node=end, field=field
                    )
            if src == dst:
                raise T1CFormatError(f"edge {i} is a self loop", node=src, field="edges")
            if (src, dst) in seen:
                raise T1CFormatError(f"edge {i} ({src} -> {dst}) is a duplicate", node=dst, field="edges")
            seen.add((src, dst))
        if not self.input_names:
            raise T1CFormatError("the graph has no Input node", field="nodes")
        if not self.output_names:
            raise T1CFormatError("the graph has no Output node", field="nodes")

    def _topological_order(self) -> list[str]:
        """Kahn's algorithm; ties broken by node insertion order, so it is deterministic."""
        rank = {n: i for i, n in enumerate(self.nodes)}
        indegree = dict.fromkeys(self.nodes, 0)
        for _, dst in self.edges:
            indegree[dst] += 1
        succ = self._adjacent()[1]

        ready = [(rank[n], n) for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order: list[str] = []
        self._cyclic = False
        while ready:
            _, name = heapq.heappop(ready)
            order.append(name)
            for nxt in succ.get(name, ()):
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    heapq.heappush(ready, (rank[nxt], nxt))
        if len(order) != len(self.nodes):
            done = set(order)
            stuck = [n for n in self.nodes if n not in done]
            if not self.allow_cycles:
                raise T1CFormatError(
                    f"the graph has a cycle through {stuck}; pass allow_cycles=True for a recurrent graph",
                    node=stuck[0],
                    field="edges",
                )
            order += stuck  # recurrent: back edges carry last step's values
            self._cyclic = True
        return order

    def _check_reachable(self) -> None:
        succ = self._adjacent()[1]
        seen = set(self.input_names)
        frontier = list(seen)
        while frontier:
            name = frontier.pop()
            for nxt in succ.get(name, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        for name in self.nodes:
            if name not in seen:
                raise T1CFormatError("is not reachable from any Input node", node=name, field="edges")

    @property
    def cyclic(self) -> bool:
        """Whether the edges form a cycle (only a graph with ``allow_cycles`` may)."""
        self.topological_order()
        return self._cyclic

    def topological_order(self) -> list[str]:
        """Node names in an order in which every node comes after its inputs."""
        if self._order is None:
            self._check_structure()
            self._order = self._topological_order()
        return list(self._order)

    def infer_shapes(self) -> dict[str, Shape]:
        """Each node's output shape (batch excluded), from the Input shapes onward.

        A conflict names the node and the nodes that feed it, with their shapes.
        """
        shapes: dict[str, Shape] = {}
        inputs: dict[str, list[Shape]] = {}
        pred_of = self._adjacent()[0]
        pending = self.topological_order()
        while pending:  # more than one round only around a cycle
            waiting = []
            for name in pending:
                preds = [p for p in pred_of.get(name, ()) if p in shapes]
                if not preds and not isinstance(self.nodes[name], Input) and pred_of.get(name):
                    waiting.append(name)  # fed only through a back edge: after its source
                    continue
                inputs[name] = self._infer_node(name, preds, shapes)
            if len(waiting) == len(pending):
                raise T1CFormatError("has no input to infer its shape from", node=waiting[0], field="edges")
            pending = waiting
        if self._cyclic:  # a node inferred before its back edge's source: check every input
            for name, in_shapes in list(inputs.items()):
                if len(in_shapes) != len(pred_of.get(name, ())):
                    shape = shapes[name]
                    inputs[name] = self._infer_node(name, pred_of[name], shapes)
                    if shapes[name] != shape:
                        raise T1CFormatError(
                            f"gives {list(shapes[name])} with its back edge and {list(shape)} without",
                            node=name,
                            field="edges",
                        )
        self.input_shapes, self.output_shapes = inputs, shapes
        return dict(shapes)

    def _infer_node(self, name: str, preds: list[str], shapes: dict[str, Shape]) -> list[Shape]:
        """Infer ``name``'s output shape into ``shapes`` from ``preds``; its input shapes."""
        in_shapes = [shapes[p] for p in preds]
        if not in_shapes and not isinstance(self.nodes[name], Input):
            raise T1CFormatError("has no input to infer its shape from", node=name, field="edges")
        try:
            shapes[name] = tuple(int(d) for d in self.nodes[name].output_shape(in_shapes))
        except T1CFormatError as err:
            if len(preds) > 1 or (preds and "receives" in err.reason):
                feeds = ", ".join(f"'{p}' gives {list(shapes[p])}" for p in preds)
                err = T1CFormatError(f"{err.reason} (inputs: {feeds})", node=err.node, field=err.field)
            raise err.within(node=name) from None
        self._check_size(name, shapes[name])
        _warn_size_hint(self.nodes[name], name, shapes[name])
        node = self.nodes[name]
        if isinstance(node, Output) and node.shape is None:
            node.output_type = {"output": np.asarray(shapes[name], dtype=np.int64)}
        return in_shapes

    def _check_size(self, name: str, shape: Shape) -> None:
        elements = math.prod(shape)
        if elements > self.max_elements:
            raise T1CFormatError(
                f"infers an output of shape {list(shape)} ({elements:,} elements per sample), more "
                f"than the limit of {self.max_elements:,}; if the model really needs it, pass "
                "max_elements= to ir.Graph / ir.read",
                node=name,
            )

    # -- comparison --------------------------------------------------------------------
    def content_hash(self) -> str:
        """SHA-256 over node names, types, fields and edges (not metadata)."""
        h = hashlib.sha256()
        for name in sorted(self.nodes):
            node = self.nodes[name]
            h.update(f"node:{name}:{node.TYPE}\n".encode())
            for field, value in sorted(node.to_fields().items()):
                if isinstance(value, Graph):  # a nested graph
                    h.update(f"{field}:graph:{value.content_hash()}\n".encode())
                    continue
                arr = np.asarray(value)
                h.update(f"{field}:{arr.dtype.str}:{arr.shape}\n".encode())
                h.update(arr.tobytes() if arr.dtype.kind != "U" else str(value).encode())
        for src, dst in self.edges:
            h.update(f"edge:{src}->{dst}\n".encode())
        return h.hexdigest()

    # -- drawing -----------------------------------------------------------------------
    def to_mermaid(self, max_nodes: int | None = None) -> str:
        """This graph as Mermaid flowchart text (:mod:`t1c.ir.mermaid`; ``t1c draw``).

        Args:
            max_nodes: drawn nodes above which the drawing is summarised (chains
                collapsed, then cut); ``None`` means :data:`t1c.ir.drawing.MAX_NODES`.
        """
        from .drawing import MAX_NODES
        from .mermaid import to_mermaid

        return to_mermaid(self, MAX_NODES if max_nodes is None else max_nodes)

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes, {len(self.edges)} edges, inputs={self.input_names}, outputs={self.output_names})"


def _warn_size_hint(node: Node, name: str, shape: Shape) -> None:
    """Warn once per node when its size hint (``features``) disagrees with ``shape``."""
    note = node.size_hint_note(shape)
    if note is None or getattr(node, "_size_hint_warned", False):
        return
    node._size_hint_warned = True
    warnings.warn(f"node '{name}' ({node.TYPE}): {note}", UserWarning, stacklevel=4)
