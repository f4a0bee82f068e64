"""Normalization both ways (``BatchNorm1d``, ``BatchNorm2d``, ``LayerNorm``), and the one
BatchNorm fold.

By default BatchNorm has no node: the exporter folds it into the Linear/Conv2d before it
(:func:`fold_into_node`, types :data:`FOLDED`); with ``hybrid=True``
(:data:`HYBRID_EXPORT`) it becomes its own node with the running statistics. The fold
itself, :func:`fold_batchnorm`, also serves the quantized simulation
(:mod:`t1c.bridge.quantize`), so a folded export and a folded quantized layer hold the
same numbers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from t1c import ir

from ..modules import as_numpy
from ..registry import ExportContext, ExportTable, ImportTable, copy_into, with_weights

#: Module types the default export folds into the layer before them.
FOLDED: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)


def _float64(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()


def fold_batchnorm(
    weight: np.ndarray, bias: np.ndarray | None, bn: nn.Module
) -> tuple[np.ndarray, np.ndarray]:
    """A layer's weights with ``bn``'s eval-mode transform folded in, in float64.

    ``bn(x) = (x - mean) / sqrt(var + eps) * gamma + beta`` per output channel ``o``, so
    with ``g = gamma / sqrt(var + eps)``: ``w'[o] = g[o] * w[o]`` and
    ``b'[o] = g[o] * (b[o] - mean[o]) + beta[o]`` (a missing affine part is gamma 1, beta
    0; a missing layer bias is 0). The caller stores the result in its own precision.
    Numpy, not torch: on the small per-channel vectors of an export it is several times
    faster, and every operation is correctly rounded in both, so the numbers are the same.

    Args:
        weight: the layer's weights, output channels first (Linear ``[out, in]``, Conv2d
            ``[out, in/groups, kh, kw]``).
        bias: the layer's bias ``[out]``, or None.
        bn: a ``BatchNorm1d``/``BatchNorm2d`` with running statistics.

    Returns:
        ``(weight, bias)`` as float64 arrays.

    Raises:
        ValueError: ``bn`` has no running statistics, or its channel count is not the
            layer's output count.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("track_running_stats=False: there are no running statistics to fold")
    out = weight.shape[0]
    if bn.num_features != out:
        raise ValueError(
            f"has {bn.num_features} features but the layer before has {out} outputs: the channel counts differ"
        )
    gamma = np.ones(out) if bn.weight is None else _float64(bn.weight)
    beta = np.zeros(out) if bn.bias is None else _float64(bn.bias)
    g = gamma / np.sqrt(_float64(bn.running_var) + bn.eps)
    w = np.asarray(weight, dtype=np.float64)
    b = np.zeros(out) if bias is None else np.asarray(bias, dtype=np.float64)
    return w * g.reshape((out,) + (1,) * (w.ndim - 1)), g * (b - _float64(bn.running_mean)) + beta


def fold_into_node(node: ir.Node, bn: nn.Module, ctx: ExportContext, layers: tuple[type, ...]) -> ir.Node:
    """A copy of ``node`` (one of ``layers``: the weighted nodes) with ``bn`` folded in
    (:func:`fold_batchnorm`), stored as float32; its integer weights, if any, are dropped."""
    if not isinstance(node, layers):
        raise ctx.fail(
            bn,
            f"BatchNorm is folded into the Linear/Conv2d before it, but it follows a "
            f"{node.TYPE}; move it after a Linear/Conv2d or pass hybrid=True to export it as a "
            "BatchNorm node",
        )
    try:
        weight, bias = fold_batchnorm(node.weight, node.bias, bn)
    except ValueError as err:
        raise ctx.fail(bn, str(err)) from None
    return dataclasses.replace(
        node,
        weight=weight.astype(np.float32),
        bias=bias.astype(np.float32),
        weight_int=None,
        weight_scale=None,
        bias_int=None,
    )


def convert_batchnorm(module: nn.Module, ctx: ExportContext) -> ir.Node:
    """``nn.BatchNorm1d/2d`` -> ``BatchNorm1d/2d`` with the running statistics (eval mode).

    ``affine=False`` writes weight 1 and bias 0; ``momentum=None`` (cumulative average)
    is kept; ``track_running_stats=False`` is refused: torch then normalises with each
    batch's own statistics, which a deployed node cannot (there are none to store).
    """
    if not module.track_running_stats or module.running_mean is None or module.running_var is None:
        raise ctx.fail(
            module,
            "track_running_stats=False: torch normalises with each batch's statistics even in eval mode, "
            "and there are no running statistics to store in a BatchNorm node; train it with "
            "track_running_stats=True",
        )
    channels = module.num_features
    weight = as_numpy(module.weight) if module.weight is not None else np.ones(channels, np.float32)
    bias = as_numpy(module.bias) if module.bias is not None else np.zeros(channels, np.float32)
    cls = ir.BatchNorm2d if isinstance(module, nn.BatchNorm2d) else ir.BatchNorm1d
    return cls(
        num_features=channels,
        weight=weight,
        bias=bias,
        running_mean=as_numpy(module.running_mean),
        running_var=as_numpy(module.running_var),
        eps=float(module.eps),
        momentum=None if module.momentum is None else float(module.momentum),
    )


def convert_layernorm(module: nn.LayerNorm) -> ir.Node:
    """``nn.LayerNorm`` -> ``LayerNorm``; without affine parameters (or without a bias), weight 1
    and bias 0 of shape ``normalized_shape``."""
    shape = tuple(int(d) for d in module.normalized_shape)
    weight = as_numpy(module.weight) if module.weight is not None else np.ones(shape, np.float32)
    bias = as_numpy(module.bias) if module.bias is not None else np.zeros(shape, np.float32)
    return ir.LayerNorm(normalized_shape=shape, weight=weight, bias=bias, eps=float(module.eps))


def batchnorm_from_node(node: ir.BatchNorm1d | ir.BatchNorm2d) -> nn.Module:
    """``BatchNorm1d/2d`` -> ``nn.BatchNorm1d/2d`` with the stored statistics, in eval mode."""
    cls = nn.BatchNorm1d if isinstance(node, ir.BatchNorm1d) else nn.BatchNorm2d
    module = cls(node.num_features, eps=node.eps, momentum=node.momentum)
    for name in ("weight", "bias", "running_mean", "running_var"):
        copy_into(getattr(module, name), getattr(node, name))
    return module.eval()


def layernorm_from_node(node: ir.LayerNorm) -> nn.LayerNorm:
    """``LayerNorm`` -> ``nn.LayerNorm`` with the stored weight and bias."""
    return with_weights(nn.LayerNorm(tuple(int(d) for d in node.normalized_shape), eps=node.eps), node)


# one converter and one factory serve both BatchNorm ranks
HYBRID_EXPORT: ExportTable = {
    **dict.fromkeys((nn.BatchNorm1d, nn.BatchNorm2d), convert_batchnorm),
    nn.LayerNorm: convert_layernorm,
}
IMPORT: ImportTable = {
    **dict.fromkeys((ir.BatchNorm1d, ir.BatchNorm2d), batchnorm_from_node),
    ir.LayerNorm: layernorm_from_node,
}
