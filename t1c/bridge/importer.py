"""The default map from T1C-IR primitive types to the torch modules that compute them.

:func:`t1c.bridge.ir_to_torch` looks each node's type up in :data:`DEFAULT_NODE_MAP`
(after the user's ``node_map``, which wins). A factory takes the node and returns an
``nn.Module``, or None for nodes the executor handles itself (``Input``, ``Output``).
Weights are copied, so the module owns them as ``nn.Parameter``\\ s and trains.

The hybrid ANN types (FORMAT_HYBRID.md) become the plain torch modules that compute
them (``ReLU`` -> ``nn.ReLU``/``nn.LeakyReLU``, ``BatchNorm1d`` -> ``nn.BatchNorm1d``
with the stored statistics, ...; the full table is in ``docs/hybrid.md``), a
``HybridRegion`` a :class:`~t1c.bridge.hybrid_modules.HybridRegionModule` and a nested
``Graph`` a :class:`~t1c.bridge.hybrid_modules.SubgraphModule`. A Softmax across the
batch axis (``dim = 0``) gets ``couples_batch = True``: ``run_sequence`` then gives it one
time step at a time instead of folding time into the batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

from t1c import ir

from .hybrid_modules import HybridRegionModule, SubgraphModule
from .modules import LIFModule, SepConv2dModule, SkipModule, SpikingAffineModule

NodeFactory = Callable[[ir.Node], "nn.Module | None"]


def _copy_(param: torch.Tensor, value) -> None:
    with torch.no_grad():
        param.copy_(torch.from_numpy(value))


def _linear(node: ir.Affine) -> nn.Linear:
    out_f, in_f = node.weight.shape
    module = nn.Linear(in_f, out_f)
    _copy_(module.weight, node.weight)
    _copy_(module.bias, node.bias)
    return module


def _conv2d(node: ir.Conv2d) -> nn.Conv2d:
    w = node.weight
    module = nn.Conv2d(
        w.shape[1] * node.groups,
        w.shape[0],
        tuple(w.shape[2:]),
        stride=tuple(node.stride.tolist()),
        padding=tuple(node.padding.tolist()),
        dilation=tuple(node.dilation.tolist()),
        groups=node.groups,
    )
    _copy_(module.weight, w)
    _copy_(module.bias, node.bias)
    return module


def _maxpool2d(node: ir.MaxPool2d) -> nn.MaxPool2d:
    return nn.MaxPool2d(
        tuple(node.kernel_size.tolist()),
        stride=tuple(node.stride.tolist()),
        padding=tuple(node.padding.tolist()),
        dilation=tuple(node.dilation.tolist()),
        ceil_mode=node.ceil_mode,
    )


def _avgpool2d(node: ir.AvgPool2d) -> nn.AvgPool2d:
    return nn.AvgPool2d(
        tuple(node.kernel_size.tolist()),
        stride=tuple(node.stride.tolist()),
        padding=tuple(node.padding.tolist()),
        ceil_mode=node.ceil_mode,
        count_include_pad=node.count_include_pad,
    )


def _upsample(node: ir.Upsample) -> nn.Upsample:
    align = node.align_corners if node.mode == "bilinear" else None
    if node.size is not None:
        return nn.Upsample(size=tuple(node.size.tolist()), mode=node.mode, align_corners=align)
    return nn.Upsample(scale_factor=float(node.scale_factor), mode=node.mode, align_corners=align)


def _flatten(node: ir.Flatten) -> nn.Flatten:
    start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
    end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
    return nn.Flatten(start, end)


def _relu(node: ir.ReLU) -> nn.Module:
    if node.negative_slope > 0:
        return nn.LeakyReLU(node.negative_slope)
    if node.negative_slope < 0:
        warnings.warn(
            f"a ReLU node with negative_slope = {node.negative_slope:g} runs as max(x, 0), as the toolchain "
            "that defines the format runs it (docs/hybrid.md); a negative slope has no T1C-IR form",
            UserWarning,
            stacklevel=4,
        )
    return nn.ReLU()


def _prelu(node: ir.PReLU) -> nn.PReLU:
    module = nn.PReLU(num_parameters=node.weight.size)
    _copy_(module.weight, node.weight)
    return module


def _batchnorm(node: ir.BatchNorm1d | ir.BatchNorm2d) -> nn.Module:
    cls = nn.BatchNorm1d if isinstance(node, ir.BatchNorm1d) else nn.BatchNorm2d
    module = cls(node.num_features, eps=node.eps, momentum=node.momentum)
    for name in ("weight", "bias", "running_mean", "running_var"):
        _copy_(getattr(module, name), getattr(node, name))
    return module.eval()


def _softmax(node: ir.Softmax) -> nn.Softmax:
    module = nn.Softmax(dim=node.dim)
    if node.couples_batch():
        module.couples_batch = True
    return module


def _gelu(node: ir.GELU) -> nn.GELU:
    return nn.GELU(approximate="tanh" if node.approximate else "none")


def _layernorm(node: ir.LayerNorm) -> nn.LayerNorm:
    module = nn.LayerNorm(tuple(int(d) for d in node.normalized_shape), eps=node.eps)
    _copy_(module.weight, node.weight)
    _copy_(module.bias, node.bias)
    return module


def _none(node: ir.Node) -> None:
    return None


#: primitive class -> factory(node) -> nn.Module | None.
DEFAULT_NODE_MAP: dict[type[ir.Node], NodeFactory] = {
    ir.Input: _none,
    ir.Output: _none,
    ir.Affine: _linear,
    ir.SpikingAffine: SpikingAffineModule.from_node,
    ir.Conv2d: _conv2d,
    ir.SepConv2d: SepConv2dModule.from_node,
    ir.MaxPool2d: _maxpool2d,
    ir.AvgPool2d: _avgpool2d,
    ir.Upsample: _upsample,
    ir.Flatten: _flatten,
    ir.LIF: LIFModule.from_node,
    ir.Skip: SkipModule.from_node,
    ir.ReLU: _relu,
    ir.PReLU: _prelu,
    ir.BatchNorm1d: _batchnorm,
    ir.BatchNorm2d: _batchnorm,
    ir.Sigmoid: lambda node: nn.Sigmoid(),
    ir.Tanh: lambda node: nn.Tanh(),
    ir.Softmax: _softmax,
    ir.GELU: _gelu,
    ir.ELU: lambda node: nn.ELU(alpha=node.alpha),
    ir.LayerNorm: _layernorm,
    ir.Dropout: lambda node: nn.Dropout(p=node.p),
    ir.HybridRegion: HybridRegionModule.from_node,
    ir.Subgraph: SubgraphModule.from_node,
}


def default_factory(node: ir.Node) -> NodeFactory | None:
    """The default factory for ``node``'s type, or None when there is none."""
    return DEFAULT_NODE_MAP.get(type(node))
