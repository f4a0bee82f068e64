"""Pooling and resampling both ways: ``nn.MaxPool2d``, ``nn.AvgPool2d``, ``nn.Upsample``.

:func:`pool_node` builds a pool node from torch's arguments of the same names; it serves
the modules here and the functional ``F.max_pool2d``/``F.avg_pool2d`` calls that the
tracer (:mod:`t1c.bridge.tracing`) reads off a forward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from t1c import ir

from ..registry import ExportContext, ExportTable, ImportTable

PoolNode = type[ir.MaxPool2d] | type[ir.AvgPool2d]


def pool_node(cls: PoolNode, argument: Callable[[str], Any]) -> ir.Node:
    """A ``MaxPool2d``/``AvgPool2d`` node whose fields are torch's arguments of the same names.

    ``argument(name)`` gives each argument's value; a missing stride (None, empty) is
    the kernel size, as in torch.

    Raises:
        T1CFormatError: a value the node cannot hold.
    """
    fields = {f.name: argument(f.name) for f in dataclasses.fields(cls) if f.name != "metadata"}
    if fields["stride"] in (None, (), []):
        fields["stride"] = fields["kernel_size"]
    return cls(**fields)


def convert_maxpool2d(module: nn.MaxPool2d, ctx: ExportContext) -> ir.Node:
    """``nn.MaxPool2d`` -> ``MaxPool2d`` with kernel, stride, padding, dilation, ceil_mode."""
    if module.return_indices:
        raise ctx.fail(module, "return_indices=True has no T1C-IR equivalent")
    return pool_node(ir.MaxPool2d, lambda name: getattr(module, name))


def convert_avgpool2d(module: nn.AvgPool2d, ctx: ExportContext) -> ir.Node:
    """``nn.AvgPool2d`` -> ``AvgPool2d``; ``divisor_override`` cannot be expressed."""
    if module.divisor_override is not None:
        raise ctx.fail(
            module,
            f"divisor_override={module.divisor_override} cannot be expressed by AvgPool2d; "
            "remove it or pass custom_map",
        )
    return pool_node(ir.AvgPool2d, lambda name: getattr(module, name))


def _integer_scale(module: nn.Upsample, ctx: ExportContext) -> int:
    factors = module.scale_factor
    factors = tuple(factors) if isinstance(factors, (tuple, list)) else (factors, factors)
    if len(set(factors)) != 1 or float(factors[0]) != int(factors[0]):
        raise ctx.fail(
            module,
            f"scale_factor={module.scale_factor} must be one integer for both dims; use size= instead",
        )
    return int(factors[0])


def convert_upsample(module: nn.Upsample, ctx: ExportContext) -> ir.Node:
    """``nn.Upsample`` -> ``Upsample`` (size wins over scale_factor; nearest or bilinear)."""
    if module.mode not in ("nearest", "bilinear"):
        raise ctx.fail(module, f"mode={module.mode!r} is not supported (nearest, bilinear)")
    align = bool(module.align_corners) if module.align_corners is not None else False
    if module.size is not None:
        size = module.size if isinstance(module.size, (tuple, list)) else (module.size, module.size)
        return ir.Upsample(size=tuple(size), mode=module.mode, align_corners=align)
    return ir.Upsample(scale_factor=_integer_scale(module, ctx), mode=module.mode, align_corners=align)


def maxpool2d_from_node(node: ir.MaxPool2d) -> nn.MaxPool2d:
    """``MaxPool2d`` -> ``nn.MaxPool2d``."""
    return nn.MaxPool2d(
        tuple(node.kernel_size.tolist()),
        stride=tuple(node.stride.tolist()),
        padding=tuple(node.padding.tolist()),
        dilation=tuple(node.dilation.tolist()),
        ceil_mode=node.ceil_mode,
    )


def avgpool2d_from_node(node: ir.AvgPool2d) -> nn.AvgPool2d:
    """``AvgPool2d`` -> ``nn.AvgPool2d``."""
    return nn.AvgPool2d(
        tuple(node.kernel_size.tolist()),
        stride=tuple(node.stride.tolist()),
        padding=tuple(node.padding.tolist()),
        ceil_mode=node.ceil_mode,
        count_include_pad=node.count_include_pad,
    )


def upsample_from_node(node: ir.Upsample) -> nn.Upsample:
    """``Upsample`` -> ``nn.Upsample`` (``size`` or the integer ``scale_factor``)."""
    align = node.align_corners if node.mode == "bilinear" else None
    if node.size is not None:
        return nn.Upsample(size=tuple(node.size.tolist()), mode=node.mode, align_corners=align)
    return nn.Upsample(scale_factor=float(node.scale_factor), mode=node.mode, align_corners=align)


EXPORT: ExportTable = {
    nn.MaxPool2d: convert_maxpool2d,
    nn.AvgPool2d: convert_avgpool2d,
    nn.Upsample: convert_upsample,
}
IMPORT: ImportTable = {
    ir.MaxPool2d: maxpool2d_from_node,
    ir.AvgPool2d: avgpool2d_from_node,
    ir.Upsample: upsample_from_node,
}
