"""T1C-IR -> NIR for a whole graph: :func:`to_nir`.

Every node goes through its converter (:func:`t1c.nir.maps.default_nir_export_map`, a
``node_map`` first); a node that becomes a chain of NIR nodes is entered by its first and
left by its last, and NIR type-checks the result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .. import ir
from .common import NIRConversionError, check_dt, import_nir, plain_metadata
from .export_nodes import ExportContext, ExportFn
from .maps import default_nir_export_map


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
    for name, node in graph.nodes.items():
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
    edges = [(last[s], first[d]) for s, d in graph.edges] + inner
    metadata = dict(graph.metadata)
    metadata["t1c_dt"] = dt
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)
    except (ValueError, AssertionError) as err:
        raise NIRConversionError(f"NIR rejects the converted graph: {err}", file=file) from None
