"""Factors NIR applies between layers (``Scale``, ``SumPool2d``'s ``k*k``), folded into weights.

T1C-IR has no scaling node; a factor is exact only as part of a weight layer: the one before
it (rows and bias) when that layer feeds only the factor, else the next one (its columns),
reached through ``Flatten`` nodes. Anything else is refused naming the node.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from .common import f64
from .import_nodes import ImportContext
from .wiring import bypass, predecessors, successors

#: The T1C-IR weight layers a factor can fold into.
_WEIGHTED = (ir.Affine, ir.SpikingAffine, ir.Conv2d)


def _channel_factors(scale: np.ndarray, channels: int) -> np.ndarray | None:
    """A per-channel factor vector for a [C, H, W] signal scale, or None when it varies in H, W."""
    if scale.ndim == 0 or scale.size == 1:
        return np.full(channels, float(scale.reshape(-1)[0]))
    if scale.ndim != 3 or scale.shape[0] != channels:
        return None
    per = scale[:, :1, :1]
    return per.reshape(-1) if bool(np.all(scale == per)) else None


def _with_weights(node: ir.Node, weight: np.ndarray, bias: np.ndarray) -> ir.Node:
    """A copy of weight layer ``node`` with new float weights (its integer-weight fields dropped)."""
    fields = {
        k: v for k, v in node.to_fields().items() if k not in ("weight_int", "weight_scale", "bias_int")
    }
    fields.update(weight=weight.astype(np.float32), bias=bias.astype(np.float32))
    return type(node)(**fields, metadata=dict(node.metadata))


def _scale_outputs(node: ir.Node, scale: np.ndarray) -> ir.Node | None:
    """``s * layer(x)`` as one layer (weights and bias scaled per output), or None."""
    w, b = f64(node.weight), f64(node.bias)
    if isinstance(node, ir.Conv2d):
        per = _channel_factors(scale, w.shape[0])
        if per is None:
            return None
        return _with_weights(node, w * per[:, None, None, None], b * per)
    if scale.ndim > 1 or scale.size not in (1, w.shape[0]):
        return None
    per = np.broadcast_to(scale.reshape(-1), (w.shape[0],))
    return _with_weights(node, w * per[:, None], b * per)


def _scale_inputs(node: ir.Node, scale: np.ndarray) -> ir.Node | None:
    """``layer(s * x)`` as one layer (weights scaled per input), or None."""
    w, b = f64(node.weight), f64(node.bias)
    if isinstance(node, ir.Conv2d):
        per = _channel_factors(scale, node.in_channels)
        if per is None:
            return None
        per_group = w.shape[1]
        group_of_out = np.arange(w.shape[0]) // (w.shape[0] // node.groups)
        idx = group_of_out[:, None] * per_group + np.arange(per_group)[None, :]
        return _with_weights(node, w * per[idx][:, :, None, None], b)
    if scale.ndim > 1 or scale.size not in (1, w.shape[1]):
        return None
    return _with_weights(node, w * np.broadcast_to(scale.reshape(-1), (w.shape[1],))[None, :], b)


def fold_forward(
    name: str, factor: np.ndarray, nodes: dict, edges: list, ctx: ImportContext, what: str
) -> None:
    """Fold ``factor`` (an array of ``name``'s output shape, or a scalar) into the next weight
    layer, through Flatten nodes; refuse when that is not exact."""
    current = name
    while True:
        succs = successors(edges, current)
        if len(succs) != 1:
            raise ctx.fail(
                name,
                f"{what}: the factor can only move into a weight layer that is the one consumer, "
                f"but '{current}' feeds {len(succs)} nodes",
            )
        nxt = succs[0]
        if len(predecessors(edges, nxt)) != 1:
            raise ctx.fail(
                name,
                f"{what}: the next layer '{nxt}' also sums other inputs, so the factor cannot move into its weights",
            )
        node = nodes[nxt]
        if isinstance(node, ir.Flatten):
            if factor.ndim > 0:
                factor = factor.reshape(node.output_shape([factor.shape]))
            current = nxt
            continue
        folded = _scale_inputs(node, factor) if isinstance(node, _WEIGHTED) else None
        if folded is None:
            kind = type(node).__name__ if node is not None else "Scale"
            raise ctx.fail(
                name,
                f"{what}: no exact form; the next node '{nxt}' is a {kind}, not an Affine/Linear/Conv2d "
                "whose weights can take the factor (per input channel for Conv2d)",
            )
        nodes[nxt] = folded
        return


def fold_scale(name: str, scale: np.ndarray, nodes: dict, edges: list, ctx: ImportContext) -> list:
    """Fold Scale node ``name`` into the weight layer before it, else the one after it; remove it."""
    preds = predecessors(edges, name)
    folded = None
    if (
        len(preds) == 1
        and isinstance(nodes.get(preds[0]), _WEIGHTED)
        and successors(edges, preds[0]) == [name]
    ):
        folded = _scale_outputs(nodes[preds[0]], scale)
    if folded is not None:
        nodes[preds[0]] = folded
    else:
        fold_forward(name, scale, nodes, edges, ctx, "Scale")
    del nodes[name]
    return bypass(name, edges, ctx.file)
