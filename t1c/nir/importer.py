"""NIR -> T1C-IR for a whole graph: :func:`from_nir` (and :func:`read_nir` for files).

Nested graphs are inlined (:mod:`t1c.nir.wiring`), every node goes through its converter
(:func:`t1c.nir.maps.default_import_map`, a ``node_map`` first), factors are folded into
weights (:mod:`t1c.nir.folding`), joins become ``Skip(residual)`` nodes, a recurrent graph
is put in the node order that makes its back edges the ones NIR means
(:func:`t1c.nir.wiring.step_order`), and NIR's declared shapes are checked against T1C-IR's
shape inference.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import ir
from ..ir.errors import T1CFormatError
from .common import NIRConversionError, check_dt, import_nir, ints, node_metadata, plain_metadata
from .cuba import fold_w_rec
from .folding import fold_forward, fold_scale
from .import_nodes import ImportContext, ImportFn
from .maps import default_import_map
from .wiring import bypass, flatten_graph, insert_sums, step_order

#: The T1C-IR nodes that spike: a recurrent edge leaving one carries last step's spikes.
_NEURONS = (ir.LIF, ir.CubaLIF, ir.AlphaLIF)


def read_nir(graph_or_path: Any) -> tuple[Any, str | None]:
    """A ``nir.NIRGraph`` and the file it came from (``nir.read`` for paths)."""
    nir = import_nir()
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path, None
    if isinstance(graph_or_path, (str, os.PathLike)):
        path = Path(graph_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"from_nir: no such .nir file '{path}'")
        try:
            try:
                return nir.read(path), str(path)
            except ValueError:
                # nir 1.0 re-types a grouped Conv2d's input as weight.shape[1] channels and so
                # rejects its own files; read untyped: from_nir infers and checks every shape itself.
                return nir.read(path, type_check=False), str(path)
        except (OSError, KeyError, ValueError, TypeError, AssertionError) as err:
            raise NIRConversionError(
                f"is not a readable NIR graph ({type(err).__name__}: {err})", file=str(path)
            ) from None
    raise TypeError(f"from_nir takes a nir.NIRGraph or a .nir path, got {type(graph_or_path).__name__}")


def _check_declared_shapes(graph: ir.Graph, flat: Mapping[str, Any], ctx: ImportContext) -> None:
    """NIR's declared output types (and Conv2d input_shape) must be what T1C-IR computes."""
    for name, node in flat.items():
        if name not in graph.output_shapes:
            continue
        declared = node.output_type.get("output") if isinstance(node.output_type, dict) else None
        ours = tuple(graph.output_shapes[name])
        if declared is not None and ints(np.asarray(declared).reshape(-1)) != ours:
            hint = (
                " (NIR counts Flatten dims without the batch)"
                if isinstance(graph.nodes[name], ir.Flatten)
                else ""
            )
            raise ctx.fail(
                name,
                f"NIR declares output shape {np.asarray(declared).tolist()} but the T1C-IR node computes "
                f"{list(ours)}{hint}",
            )
        in_hw = getattr(node, "input_shape", None)
        if isinstance(graph.nodes[name], ir.Conv2d) and in_hw is not None:
            got = tuple(graph.input_shapes[name][0][1:])
            if ints(np.asarray(in_hw).reshape(-1)) != got:
                raise ctx.fail(
                    name, f"NIR Conv2d input_shape {np.asarray(in_hw).tolist()} but it receives {list(got)}"
                )


def from_nir(
    graph_or_path: Any,
    dt: float | None = None,
    *,
    node_map: Mapping[type, ImportFn] | None = None,
) -> ir.Graph:
    """A NIR graph as a T1C-IR graph, every node exact or refused.

    Args:
        graph_or_path: a ``nir.NIRGraph`` or a `.nir` file.
        dt: the time step at which NIR's continuous-time neurons are discretized (forward
            Euler: a LIF's ``tau`` becomes ``tau / dt`` steps). Required.
        node_map: ``{nir class: fn(name, node, ctx) -> ir.Node}`` entries that win over
            :func:`default_import_map`.

    Returns:
        A validated graph; nested NIRGraphs are inlined as ``outer.inner`` names, nodes
        that receive several edges get a ``Skip(residual)`` named ``<node>.sum`` in front.
        A graph with a cycle (a recurrent layer, as snnTorch writes ``RLeaky``) is an
        ``allow_cycles`` graph whose back edges leave the neuron on each cycle (its spikes
        reach the cycle one step later); the nodes are reordered for that.

    Raises:
        NIRConversionError: a node with no exact T1C-IR form (the node and reason named), or
            a cycle that does not run through exactly one neuron (its nodes named).
        TypeError: ``dt`` missing.
        ImportError: ``nir`` is not installed.

    Example:
        >>> graph = from_nir("model.nir", dt=1e-3)  # doctest: +SKIP
    """
    dt = check_dt(dt, "from_nir(graph_or_path, dt)")
    nir = import_nir()
    source, file = read_nir(graph_or_path)
    flat, edges, markers = flatten_graph(nir, source, "", file)
    for name in markers:
        edges = bypass(name, edges, file)
        del flat[name]
    in_degree = Counter(d for _, d in edges)
    ctx = ImportContext(dt=dt, file=file, in_degree={n: in_degree[n] for n in flat})
    converters = {**default_import_map(), **(node_map or {})}
    nodes: dict[str, ir.Node | None] = {}
    for name, node in flat.items():
        fn = converters.get(type(node))
        if fn is None:
            raise ctx.fail(
                name,
                f"no converter for NIR type {type(node).__name__}; pass node_map={{nir.{type(node).__name__}: fn}}",
            )
        try:
            nodes[name] = converted = fn(name, node, ctx)
            if converted is not None:
                converted.metadata = {**plain_metadata(node_metadata(node)), **converted.metadata}
        except T1CFormatError as err:
            if isinstance(err, NIRConversionError):
                raise
            raise NIRConversionError(err.reason, file=file, node=name, field=err.field) from None
    for name, scale in ctx.scales.items():
        edges = fold_scale(name, scale, nodes, edges, ctx)
    for name, factor in ctx.forward_folds:
        fold_forward(name, factor, nodes, edges, ctx, f"SumPool2d (sum = {factor.item():g} x average)")
    edges = insert_sums(nodes, fold_w_rec(nodes, edges))
    order, cyclic = step_order(nodes, edges, {n for n, v in nodes.items() if isinstance(v, _NEURONS)}, file)
    metadata = plain_metadata(source.metadata or {})
    metadata.update(source_format="nir", nir_dt=dt)
    try:
        graph = ir.Graph({n: nodes[n] for n in order}, edges, metadata, allow_cycles=cyclic)
    except T1CFormatError as err:
        raise NIRConversionError(err.reason, file=file, node=err.node, field=err.field) from None
    _check_declared_shapes(graph, flat, ctx)
    return graph
