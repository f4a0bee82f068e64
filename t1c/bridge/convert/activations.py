"""Activations and Dropout both ways (``ReLU``, ``PReLU``, ``Sigmoid``, ``Tanh``, ``Softmax``,
``GELU``, ``ELU``, ``Dropout``; FORMAT_HYBRID.md, docs/hybrid.md).

By default (:data:`EXPORT`) ``nn.ReLU`` is dropped where it is the identity (on spikes)
and refused elsewhere, and Dropout is dropped (the identity when deployed). With
``hybrid=True`` (:data:`HYBRID_EXPORT`) they and the other activations become their own
nodes. Import builds the plain torch module that computes each node.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch.nn.functional as F
from torch import nn

from t1c import ir

from ..modules import as_numpy
from ..registry import Converter, ExportContext, ExportTable, ImportTable, copy_into

RELU_FIX = (
    "pass hybrid=True to export it as a T1C-IR ReLU node (an nn.ReLU module; a hybrid ANN-SNN graph), "
    "remove it, apply it only to spikes (after a spiking neuron, where it is the identity), or pass "
    "custom_map={nn.ReLU: fn} if you know better"
)


# -- dropped by default ---------------------------------------------------------------------
def drop_relu(module: nn.Module, ctx: ExportContext) -> None:
    """``nn.ReLU`` is dropped where it is the identity: on a provably non-negative input
    (spikes, or pools/reshapes/sums of spikes). Outside a hybrid graph (``hybrid=True``,
    :func:`convert_relu`) T1C-IR has no ReLU, so anywhere else the graph would compute
    something else: refused."""
    if ctx.input_nonnegative:
        return None
    raise ctx.fail(
        module,
        "T1C-IR has no ReLU outside a hybrid graph and its input may be negative here (it does not come from a spiking "
        f"neuron), so dropping it would change what the model computes; {RELU_FIX}",
    )


def drop_silently(module: nn.Module) -> None:
    """``nn.Dropout`` is the identity at inference; dropped without a word."""
    return None


#: Converters that drop a module only where it is the identity, so an in-place module
#: they drop overwrites its input with the same values.
IDENTITY_DROPS: frozenset[Converter] = frozenset({drop_relu, drop_silently})


# -- their own nodes (hybrid=True) ----------------------------------------------------------
def _features(module: nn.Module, ctx: ExportContext) -> int:
    """The number of values per sample that pass (the hybrid nodes' ``features`` size hint)."""
    if ctx.input_shape is None:
        raise ctx.fail(module, "its input shape is unknown (it was not called by the sample forward pass)")
    return int(np.prod(ctx.input_shape, dtype=np.int64))


def convert_relu(module: nn.ReLU, ctx: ExportContext) -> ir.Node:
    """``nn.ReLU`` -> ``ReLU``."""
    return ir.ReLU(features=_features(module, ctx))


def convert_leaky_relu(module: nn.LeakyReLU, ctx: ExportContext) -> ir.Node:
    """``nn.LeakyReLU(s)`` -> ``ReLU(negative_slope=s)``; a negative ``s`` is refused.

    A ReLU node with a negative slope runs as ``max(x, 0)`` (the toolchain that defines
    the format runs it so, and so does t1c), while torch computes ``s * x`` below zero.
    """
    slope = float(module.negative_slope)
    if slope < 0:
        raise ctx.fail(
            module,
            f"negative_slope={slope:g} is negative, and a T1C-IR ReLU node with a negative slope runs as "
            "max(x, 0) (FORMAT_HYBRID.md), not as torch's s * x below zero; use a slope >= 0 or nn.PReLU "
            "with the slope as its weight",
        )
    return ir.ReLU(features=_features(module, ctx), negative_slope=slope)


def convert_prelu(module: nn.PReLU, ctx: ExportContext) -> ir.Node:
    """``nn.PReLU(n)`` -> ``PReLU(weight=[n])`` (one shared slope or one per channel/feature)."""
    return ir.PReLU(features=_features(module, ctx), weight=as_numpy(module.weight).reshape(-1))


def convert_sigmoid(module: nn.Sigmoid, ctx: ExportContext) -> ir.Node:
    """``nn.Sigmoid`` -> ``Sigmoid``."""
    return ir.Sigmoid(features=_features(module, ctx))


def convert_tanh(module: nn.Tanh, ctx: ExportContext) -> ir.Node:
    """``nn.Tanh`` -> ``Tanh``."""
    return ir.Tanh(features=_features(module, ctx))


def convert_softmax(module: nn.Softmax, ctx: ExportContext) -> ir.Node:
    """``nn.Softmax(dim)`` -> ``Softmax(dim)``; ``dim`` counts the batch axis, as torch's.

    ``dim=None`` is torch's legacy implicit choice for the batched input's rank (0 for
    ranks 0, 1 and 3, else 1), written as the number it is. A negative ``dim`` that
    reaches the batch axis is written as 0.
    """
    features = _features(module, ctx)
    rank = len(ctx.input_shape) + 1
    dim = module.dim
    if dim is None and ctx.calls > 1:
        raise ctx.fail(
            module,
            f"dim=None picks the axis from each input's rank, and the module is called {ctx.calls} times "
            "(the exporter sees the first call's shape only); set dim explicitly",
        )
    if dim is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation note on the implicit dim
            dim = F._get_softmax_dim("softmax", rank, 0)
    elif dim < 0 and dim + rank == 0:
        dim = 0
    return ir.Softmax(features=features, dim=int(dim))


def convert_gelu(module: nn.GELU, ctx: ExportContext) -> ir.Node:
    """``nn.GELU("none")`` -> ``GELU(approximate=False)``, ``"tanh"`` -> ``approximate=True``."""
    if module.approximate not in ("none", "tanh"):
        raise ctx.fail(module, f"approximate={module.approximate!r} is not 'none' or 'tanh'")
    return ir.GELU(features=_features(module, ctx), approximate=module.approximate == "tanh")


def convert_elu(module: nn.ELU, ctx: ExportContext) -> ir.Node:
    """``nn.ELU(alpha)`` -> ``ELU(alpha)``."""
    return ir.ELU(features=_features(module, ctx), alpha=float(module.alpha))


def convert_dropout(module: nn.Dropout, ctx: ExportContext) -> ir.Node:
    """``nn.Dropout(p)`` -> ``Dropout(p)`` (the identity when deployed; drops when training)."""
    return ir.Dropout(features=_features(module, ctx), p=float(module.p))


def refuse_feature_dropout(module: nn.Module, ctx: ExportContext) -> None:
    """``nn.Dropout1d/2d/3d`` with ``hybrid=True``: T1C-IR's Dropout drops single values, not
    whole channels, so a hybrid graph that trains would train something else."""
    raise ctx.fail(
        module,
        "T1C-IR has no channel dropout (its Dropout node drops single values when training); use "
        "nn.Dropout, or export without hybrid=True (dropout is then left out: the identity when deployed)",
    )


# -- import -----------------------------------------------------------------------------------
def relu_from_node(node: ir.ReLU) -> nn.Module:
    """``ReLU`` -> ``nn.LeakyReLU(s)`` for a positive slope, else ``nn.ReLU`` (a negative slope
    runs as ``max(x, 0)``, with a warning)."""
    if node.negative_slope > 0:
        return nn.LeakyReLU(node.negative_slope)
    if node.negative_slope < 0:
        warnings.warn(
            f"a ReLU node with negative_slope = {node.negative_slope:g} runs as max(x, 0), as the toolchain "
            "that defines the format runs it (docs/hybrid.md); a negative slope has no T1C-IR form",
            UserWarning,
            stacklevel=5,
        )
    return nn.ReLU()


def prelu_from_node(node: ir.PReLU) -> nn.PReLU:
    """``PReLU`` -> ``nn.PReLU`` with the stored slopes."""
    module = nn.PReLU(num_parameters=node.weight.size)
    copy_into(module.weight, node.weight)
    return module


def softmax_from_node(node: ir.Softmax) -> nn.Softmax:
    """``Softmax`` -> ``nn.Softmax(dim)``; across the batch axis it gets ``couples_batch = True``,
    so that ``run_sequence`` gives it one time step at a time."""
    module = nn.Softmax(dim=node.dim)
    if node.couples_batch():
        module.couples_batch = True
    return module


EXPORT: ExportTable = {
    nn.ReLU: drop_relu,
    nn.Dropout: drop_silently,
    nn.Dropout1d: drop_silently,
    nn.Dropout2d: drop_silently,
}
HYBRID_EXPORT: ExportTable = {
    nn.ReLU: convert_relu,
    nn.LeakyReLU: convert_leaky_relu,
    nn.PReLU: convert_prelu,
    nn.Sigmoid: convert_sigmoid,
    nn.Tanh: convert_tanh,
    nn.Softmax: convert_softmax,
    nn.GELU: convert_gelu,
    nn.ELU: convert_elu,
    nn.Dropout: convert_dropout,
    nn.Dropout1d: refuse_feature_dropout,
    nn.Dropout2d: refuse_feature_dropout,
    nn.Dropout3d: refuse_feature_dropout,
}
IMPORT: ImportTable = {
    ir.ReLU: relu_from_node,
    ir.PReLU: prelu_from_node,
    ir.Sigmoid: lambda node: nn.Sigmoid(),
    ir.Tanh: lambda node: nn.Tanh(),
    ir.Softmax: softmax_from_node,
    ir.GELU: lambda node: nn.GELU(approximate="tanh" if node.approximate else "none"),
    ir.ELU: lambda node: nn.ELU(alpha=node.alpha),
    ir.Dropout: lambda node: nn.Dropout(p=node.p),
}
