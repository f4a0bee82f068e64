"""T1C-IR graph or ``.t1c`` file -> trainable :class:`~t1c.bridge.GraphExecutor`:
:func:`ir_to_torch` and :func:`load`.

Each node gets the module its factory builds: the user's ``node_map`` first, then the
default table (:data:`t1c.bridge.convert.NODE_FACTORIES`, one file per primitive family;
``docs/architecture.md`` lists which module each primitive becomes). Weights are copied,
so the modules own them as ``nn.Parameter``\\ s and train. A nested ``Graph`` node
recurses: its inner executor is built here, with the same defaults, and handed to its
:class:`~t1c.bridge.SubgraphModule`.

Example:
    >>> from t1c import ir
    >>> from t1c.bridge import ir_to_torch
    >>> graph = ir.Graph.from_chain(
    ...     ir.Input(input_type={"input": [2]}),
    ...     ir.Affine(weight=[[1.0, 0.0], [0.0, 1.0]], bias=[0.0, 0.0]),
    ...     ir.Output(),
    ... )
    >>> ir_to_torch(graph).module_for(graph.topological_order()[1])
    Linear(in_features=2, out_features=2, bias=True)
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from t1c import ir

from .convert import NODE_FACTORIES
from .executor import GraphExecutor
from .registry import ArityCalls, ImportContext

NodeMap = Callable[..., "nn.Module | None"] | Mapping[type, Callable[[ir.Node], "nn.Module | None"]]


def _call_node_map(node_map: NodeMap | None) -> Callable[[ir.Node, str], nn.Module | None] | None:
    """Normalise the user's node_map to ``f(node, name) -> module | None``."""
    if node_map is None:
        return None
    if isinstance(node_map, Mapping):
        for key in node_map:
            if not (isinstance(key, type) and issubclass(key, ir.Node)):
                raise TypeError(f"node_map keys must be T1C-IR primitive classes (e.g. ir.LIF), got {key!r}")

        def from_mapping(node: ir.Node, name: str) -> nn.Module | None:
            factory = node_map.get(type(node))
            return None if factory is None else factory(node)

        return from_mapping
    if not callable(node_map):
        raise TypeError(f"node_map must be a function node -> nn.Module | None or a dict, got {node_map!r}")
    try:
        params = inspect.signature(node_map).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        two = len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)
    except (TypeError, ValueError):
        two = False
    if two:
        return node_map
    return lambda node, name: node_map(node)


def _graph_of(graph_or_path: ir.Graph | str | os.PathLike, validate: bool) -> ir.Graph:
    """The graph itself (validated when asked), or the file read (read always validates)."""
    if isinstance(graph_or_path, (str, os.PathLike)):
        return ir.read(graph_or_path)
    if isinstance(graph_or_path, ir.Graph):
        if validate:
            graph_or_path.validate()
        return graph_or_path
    raise TypeError(f"ir_to_torch needs an ir.Graph or a .t1c path, got {type(graph_or_path).__name__}")


def _modules(graph: ir.Graph, user: Callable[[ir.Node, str], nn.Module | None] | None) -> dict[str, Any]:
    """Node name -> its module (None for ``Input``/``Output``, which the executor handles)."""
    calls = ArityCalls()
    modules: dict[str, nn.Module | None] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, (ir.Input, ir.Output)):
            modules[name] = None
            continue
        module = user(node, name) if user is not None else None
        if module is None:
            factory = NODE_FACTORIES.get(type(node))
            if factory is None:
                raise ir.T1CFormatError(
                    f"no torch module for primitive type '{node.TYPE}'; pass "
                    f"node_map={{ir.{type(node).__name__}: factory}} or a function returning an nn.Module",
                    node=name,
                )
            module = calls(factory, node, ImportContext(name, import_graph=ir_to_torch))
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"node_map returned {type(module).__name__} for node '{name}'; expected an nn.Module"
            )
        modules[name] = module
    return modules


def ir_to_torch(
    graph_or_path: ir.Graph | str | os.PathLike,
    node_map: NodeMap | None = None,
    return_state: bool = False,
    validate: bool = True,
    keep_state: bool = False,
) -> GraphExecutor:
    """Build a :class:`GraphExecutor` from a graph or a ``.t1c`` file.

    Args:
        graph_or_path: an ``ir.Graph`` or the path of a ``.t1c`` file.
        node_map: overrides tried before the defaults: a function
            ``node -> nn.Module | None`` (or ``(node, name) -> ...``), or a dict
            ``{primitive class: factory(node)}``. None falls back to the default.
        return_state: make the executor's ``forward`` return ``(output, state)``.
        validate: validate the graph first (an invalid graph raises
            :class:`t1c.ir.T1CFormatError` before any module is built).
        keep_state: the executor holds its state between calls (snnTorch's
            ``init_hidden`` style): ``executor(x)`` continues from the previous step
            until ``reset_state()``. Off by default: ``state=None`` means zero state.

    Returns:
        The executor, in evaluation mode: it computes the deployed function (Dropout is
        the identity, BatchNorm uses the stored statistics). Call ``.train()`` to
        fine-tune. Its weights are ``nn.Parameter`` copies of the graph's.

    Raises:
        T1CFormatError: invalid graph, or a node no map knows how to build.
    """
    graph = _graph_of(graph_or_path, validate)
    modules = _modules(graph, _call_node_map(node_map))
    return GraphExecutor(graph, modules, return_state=return_state, keep_state=keep_state).eval()


def load(path: str | os.PathLike, **kwargs: Any) -> GraphExecutor:
    """Read a ``.t1c`` file into a :class:`GraphExecutor` (``kwargs`` as :func:`ir_to_torch`)."""
    return ir_to_torch(path, **kwargs)


__all__ = ["ir_to_torch", "load"]
