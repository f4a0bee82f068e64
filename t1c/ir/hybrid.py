"""Hybrid ANN-SNN structure: `HybridRegion` markers, nested graphs, and the graph's regions.

* :class:`HybridRegion`: an identity node that marks where a region run in ``ann`` mode
  (rate-based, continuous values) or ``snn`` mode (spiking, temporal) starts.
* :class:`Subgraph`: a whole :class:`~t1c.ir.Graph` used as a node (on disk
  ``type = "Graph"`` with its own ``nodes/`` and ``edges/``). It computes its inner graph:
  the node's input goes to the inner ``Input``, the inner ``Output`` is the node's output.
* :func:`regions`: the ANN and SNN parts of a graph, by markers or by node kinds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .activations import check_features, features_note
from .errors import T1CFormatError
from .graph import Graph
from .io import Input, Output
from .node import Node, Shape, as_choice, merged_sum_shape, spec

MODES = ("snn", "ann")
#: Node types that make a part of a graph spiking / analog when no marker says so.
SNN_TYPES = frozenset({"LIF", "CubaLIF", "AlphaLIF", "SpikingAffine"})
ANN_TYPES = frozenset(
    {
        "ReLU",
        "PReLU",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "GELU",
        "ELU",
        "BatchNorm1d",
        "BatchNorm2d",
        "LayerNorm",
        "Dropout",
    }
)


@dataclasses.dataclass(eq=False, repr=False)
class HybridRegion(Node):
    """Region marker: ``y = x``. Its fields say what follows, not what it computes.

    Args:
        mode: ``"snn"`` or ``"ann"`` (case-sensitive; an enum with a ``value`` works).
        features: width of the tensor that passes, a size hint (a mismatch warns).
        name: a human label; ``None`` and ``""`` are both "no name" (not written).
    """

    TYPE = "HybridRegion"
    TOPOLOGY_FIELDS = ("mode", "name")
    mode: str = spec("str")
    features: int = spec("int")
    name: str | None = spec("str", optional=True, default=None)

    def __post_init__(self) -> None:
        mode = getattr(self.mode, "value", self.mode)
        self.mode = as_choice(mode, "mode", MODES)
        self.features = check_features(self.features)
        if isinstance(self.name, bytes):
            self.name = self.name.decode("utf-8", "replace")
        if self.name is not None and not isinstance(self.name, str):
            raise T1CFormatError(f"must be a string or None, got {self.name!r}", field="name")
        self.name = self.name or None

    def size_hint_note(self, shape: Shape) -> str | None:
        return features_note(self, shape)


@dataclasses.dataclass(eq=False, repr=False)
class Subgraph(Node):
    """A graph nested as one node (on-disk type ``"Graph"``), run as the graph it is.

    The inner graph has exactly one ``Input`` and one ``Output``; the node receives the
    inner input's shape and produces the inner output's. Stateful inner nodes keep their
    state from step to step like any other. The node's ``metadata`` (one ``metadata/``
    group on disk) stands for the inner graph's: built from a graph with metadata and no
    node metadata, the node takes the graph's.
    """

    TYPE = "Graph"
    graph: Graph = spec("graph")

    def __post_init__(self) -> None:
        if not isinstance(self.graph, Graph):
            raise T1CFormatError(f"must be a t1c.ir.Graph, got {type(self.graph).__name__}", field="graph")
        ins, outs = self.graph.input_names, self.graph.output_names
        if len(ins) != 1 or len(outs) != 1:
            raise T1CFormatError(
                f"a nested graph needs exactly one Input and one Output to be a node, has inputs {ins} "
                f"and outputs {outs}",
                field="graph",
            )
        if not self.metadata and self.graph.metadata:
            self.metadata = dict(self.graph.metadata)

    @property
    def input_name(self) -> str:
        return self.graph.input_names[0]

    @property
    def output_name(self) -> str:
        return self.graph.output_names[0]

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = merged_sum_shape(input_shapes)
        inner: Input = self.graph.nodes[self.input_name]
        if tuple(shape) != inner.shape:
            raise T1CFormatError(
                f"its inner Input '{self.input_name}' takes {list(inner.shape)} but the node receives "
                f"{list(shape)}",
                field="graph",
            )
        if not self.graph.output_shapes:
            self.graph.validate()
        return self.graph.output_shapes[self.output_name]


@dataclasses.dataclass(frozen=True)
class Region:
    """One ANN or SNN part of a graph.

    Attributes:
        mode: ``"ann"`` or ``"snn"``.
        nodes: its nodes, in topological order (markers included, Input/Output not).
        marker: the ``HybridRegion`` node that starts it, or None when the mode comes
            from the node kinds (LIF / SpikingAffine: snn; activations, norms: ann).
        name: the marker's name, if any.
    """

    mode: str
    nodes: tuple[str, ...]
    marker: str | None = None
    name: str | None = None


def _kind_mode(node: Node) -> str | None:
    if node.TYPE in SNN_TYPES:
        return "snn"
    if node.TYPE in ANN_TYPES:
        return "ann"
    return None


def regions(graph: Graph) -> list[Region]:
    """The graph's ANN and SNN parts, in topological order.

    With ``HybridRegion`` markers, a marker starts a region that holds every node
    downstream of it up to the next marker (a node fed from several regions joins the
    one whose marker comes last). Nodes that no marker reaches, and every node of a graph
    without markers, get the mode of their kind: ``LIF``/``CubaLIF``/``AlphaLIF``/``SpikingAffine`` are ``snn``,
    the ANN activations and norms ``ann``; a kind-neutral node (Affine, Conv2d, pools,
    Flatten, Skip, nested graphs) takes the mode of the first moded node it feeds (a
    synapse belongs to its neurons), else of the node that feeds it, else ``ann``.
    Consecutive nodes (topological order) with the same marker and mode form a region.
    """
    order = graph.topological_order()
    rank = {name: i for i, name in enumerate(order)}
    marker_of: dict[str, str | None] = {}
    for name in order:
        if isinstance(graph.nodes[name], HybridRegion):
            marker_of[name] = name
            continue
        marks = [marker_of[p] for p in graph.predecessors(name) if marker_of.get(p) is not None]
        marker_of[name] = max(marks, key=rank.__getitem__) if marks else None
    down: dict[str, str | None] = {}
    for name in reversed(order):
        mode = _kind_mode(graph.nodes[name])
        if mode is None:
            mode = next((down[s] for s in graph.successors(name) if down.get(s) is not None), None)
        down[name] = mode
    modes: dict[str, str] = {}
    for name in order:
        marker = marker_of[name]
        if marker is not None:
            modes[name] = graph.nodes[marker].mode
            continue
        up = next((modes[p] for p in graph.predecessors(name) if p in modes), None)
        modes[name] = down[name] or up or "ann"
    out: list[Region] = []
    current: list[str] = []
    key: tuple[Any, ...] | None = None
    for name in order:
        if isinstance(graph.nodes[name], (Input, Output)):
            continue
        this = (marker_of[name], modes[name])
        if this != key and current:
            out.append(_region(graph, key, current))
            current = []
        key = this
        current.append(name)
    if current:
        out.append(_region(graph, key, current))
    return out


def _region(graph: Graph, key: tuple[Any, ...], nodes: list[str]) -> Region:
    marker, mode = key
    name = graph.nodes[marker].name if marker is not None else None
    return Region(mode=mode, nodes=tuple(nodes), marker=marker, name=name)
