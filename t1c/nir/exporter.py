"""T1C-IR -> NIR for a whole graph: :func:`to_nir`.

Every node goes through its converter (:func:`t1c.nir.maps.default_nir_export_map`, a
``node_map`` first); a node that becomes a chain of NIR nodes is entered by its first and
left by its last, and NIR type-checks the result. The joins :func:`~t1c.nir.from_nir` put
in front of a node become NIR's edges again (NIR sums them), and a recurrent layer whose
nodes share a name prefix (``rleaky.lif``, ``rleaky.w_rec``) becomes the nested subgraph
snnTorch writes (``rleaky``: ``input -> lif <-> w_rec``, ``lif -> output``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import ir
from .common import META_JOIN, SEPARATOR, NIRConversionError, check_dt, import_nir, plain_metadata
from .export_nodes import ExportContext, ExportFn
from .maps import default_nir_export_map
from .wiring import bypass, cycles

#: The names snnTorch gives a recurrent subgraph's ports.
_PORTS = ("input", "output")


def _joins_as_edges(graph: ir.Graph) -> tuple[list[str], list[tuple[str, str]]]:
    """The graph's node names and edges without the joins ``from_nir`` added (``t1c_nir_sum``):
    their inputs go straight to the node they fed, where NIR sums them. A join kept (its
    removal would make an edge twice) stays a ``Scale`` of ones."""
    names, edges = list(graph.nodes), list(graph.edges)
    for name, node in graph.nodes.items():
        if isinstance(node, ir.Skip) and node.skip_type == "residual" and node.metadata.get(META_JOIN):
            try:
                edges = bypass(name, edges, None)
            except NIRConversionError:
                continue
            names.remove(name)
    return names, edges


def _nest(nir: Any, nodes: dict[str, Any], edges: list[tuple[str, str]], shapes: dict[str, Any]) -> None:
    """Recurrent layers as snnTorch writes them: the nodes ``P.x`` of a prefix ``P`` (not a node
    itself) that hold a cycle, entered and left through one node each, become a subgraph
    ``P`` with ``input``/``output`` ports (in place). ``shapes``: NIR name -> (in, out) shape."""
    prefixes = {n.split(SEPARATOR, 1)[0] for n in nodes if SEPARATOR in n}
    for prefix in sorted(prefixes - set(nodes)):
        inner = [n for n in nodes if n.startswith(prefix + SEPARATOR)]
        local = {n: n[len(prefix) + 1 :] for n in inner}
        inside = [(s, d) for s, d in edges if s in local and d in local]
        entering = [(s, d) for s, d in edges if d in local and s not in local]
        leaving = [(s, d) for s, d in edges if s in local and d not in local]
        entry, exit_ = {d for _, d in entering}, {s for s, _ in leaving}
        if (
            not cycles(inner, inside)
            or len(entry) != 1
            or len(exit_) != 1
            or set(_PORTS) & set(local.values())
        ):
            continue
        (entry_name,), (exit_name,) = entry, exit_
        sub_nodes = {
            "input": nir.Input(input_type={"input": shapes[entry_name][0]}),
            **{local[n]: nodes.pop(n) for n in inner},
            "output": nir.Output(output_type={"output": shapes[exit_name][1]}),
        }
        sub_edges = [("input", local[entry_name])] + [(local[s], local[d]) for s, d in inside]
        sub_edges.append((local[exit_name], "output"))
        nodes[prefix] = nir.NIRGraph(nodes=sub_nodes, edges=sub_edges, type_check=False)
        kept = [e for e in edges if e not in inside]
        edges[:] = [(prefix if s in local else s, prefix if d in local else d) for s, d in kept]


def to_nir(
    graph_or_path: ir.Graph | str | os.PathLike,
    dt: float | None = None,
    *,
    approximate: bool = False,
    node_map: Mapping[type[ir.Node], ExportFn] | None = None,
) -> Any:
    """A T1C-IR graph as a ``nir.NIRGraph``, every node exact or refused.

    Args:
        graph_or_path: an ``ir.Graph`` or a `.t1c` file.
        dt: the time step one T1C step stands for (a LIF's ``tau`` steps become
            ``tau * dt``). Required.
        approximate: export LIF nodes whose snnTorch fields (subtract/none reset,
            ``reset_delay``) NIR cannot say as NIR's same-step reset-to-zero LIF, with a
            warning, instead of refusing them.
        node_map: ``{ir class: fn(name, node, ctx) -> [(name, nir node), ...]}`` entries
            that win over :func:`default_nir_export_map`.

    Returns:
        A ``nir.NIRGraph`` (type-checked by NIR); write it with ``nir.write(path, g)``.

    Raises:
        NIRConversionError: a node with no exact NIR form (the node and reason named).
        TypeError: ``dt`` missing.
        ImportError: ``nir`` is not installed.
    """
    dt = check_dt(dt, "to_nir(graph_or_path, dt)")
    nir = import_nir()
    file = None
    if isinstance(graph_or_path, ir.Graph):
        graph = graph_or_path
        graph.validate()
    elif isinstance(graph_or_path, (str, os.PathLike)):
        graph, file = ir.read(graph_or_path), str(graph_or_path)
    else:
        raise TypeError(f"to_nir takes an ir.Graph or a .t1c path, got {type(graph_or_path).__name__}")
    ctx = ExportContext(dt=dt, approximate=approximate, graph=graph, file=file)
    converters = {**default_nir_export_map(), **(node_map or {})}
    nodes: dict[str, Any] = {}
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    inner: list[tuple[str, str]] = []
    names, graph_edges = _joins_as_edges(graph)
    for name in names:
        node = graph.nodes[name]
        fn = converters.get(type(node))
        if fn is None:
            raise ctx.fail(name, f"no NIR converter for {node.TYPE}; pass node_map={{ir.{node.TYPE}: fn}}")
        chain = fn(name, node, ctx)
        for _, converted in chain:  # the node's own metadata travels; t1c.nir's keys win
            converted.metadata = {**plain_metadata(node.metadata), **(converted.metadata or {})}
        for (a, _), (b, _) in zip(chain[:-1], chain[1:]):
            inner.append((a, b))
        nodes.update(chain)
        first[name], last[name] = chain[0][0], chain[-1][0]
    nodes.update(ctx.side_nodes)
    edges = [(last[s], first[d]) for s, d in graph_edges] + inner + ctx.side_edges
    shapes = {
        first[n]: np.asarray(graph.input_shapes[n][0], dtype=np.int64) for n in names if graph.input_shapes[n]
    }
    ends = {last[n]: np.asarray(graph.output_shapes[n], dtype=np.int64) for n in names}
    _nest(nir, nodes, edges, {n: (shapes.get(n), ends.get(n)) for n in nodes})
    metadata = dict(graph.metadata)
    metadata["t1c_dt"] = dt
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)
    except (ValueError, AssertionError) as err:
        raise NIRConversionError(f"NIR rejects the converted graph: {err}", file=file) from None
