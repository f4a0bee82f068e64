"""Convolutions both ways: ``nn.Conv2d`` <-> ``Conv2d``, ``SepConv2dModule`` <-> ``SepConv2d``.

Only zero padding exists in T1C-IR; torch's ``padding="same"``/``"valid"`` are written
as the numbers they stand for (an even kernel that pads one side more is refused).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from t1c import ir

from ..modules import SepConv2dModule, as_numpy
from ..registry import ExportContext, ExportTable, ImportTable, convert_own_node, with_weights


def _same_padding(module: nn.Conv2d, ctx: ExportContext) -> tuple[int, int]:
    """torch's ``padding='same'`` as numbers; refused when torch pads asymmetrically."""
    pads = []
    for k, d in zip(module.kernel_size, module.dilation):
        total = d * (k - 1)
        if total % 2:
            raise ctx.fail(
                module,
                f"padding='same' with kernel {tuple(module.kernel_size)} and dilation "
                f"{tuple(module.dilation)} pads one side more than the other, which Conv2d cannot "
                "express; use an odd kernel or explicit padding",
            )
        pads.append(total // 2)
    return pads[0], pads[1]


def convert_conv2d(module: nn.Conv2d, ctx: ExportContext) -> ir.Node:
    """``nn.Conv2d`` -> ``Conv2d`` (zero bias when ``bias=False``; 'same'/'valid' made numeric)."""
    if module.padding_mode != "zeros":
        raise ctx.fail(
            module,
            f"padding_mode={module.padding_mode!r} is not supported (only 'zeros'); "
            "pad explicitly or pass custom_map",
        )
    padding: Any = module.padding
    if padding == "same":
        padding = _same_padding(module, ctx)
    elif padding == "valid":
        padding = (0, 0)
    return ir.Conv2d(
        weight=as_numpy(module.weight),
        bias=as_numpy(module.bias),
        stride=tuple(module.stride),
        padding=tuple(padding),
        dilation=tuple(module.dilation),
        groups=module.groups,
    )


def conv2d_from_node(node: ir.Conv2d) -> nn.Conv2d:
    """``Conv2d`` -> ``nn.Conv2d`` owning a copy of the weights."""
    w = node.weight
    conv = nn.Conv2d(
        w.shape[1] * node.groups,
        w.shape[0],
        tuple(w.shape[2:]),
        stride=tuple(node.stride.tolist()),
        padding=tuple(node.padding.tolist()),
        dilation=tuple(node.dilation.tolist()),
        groups=node.groups,
    )
    return with_weights(conv, node)


EXPORT: ExportTable = {nn.Conv2d: convert_conv2d, SepConv2dModule: convert_own_node}
IMPORT: ImportTable = {ir.Conv2d: conv2d_from_node, ir.SepConv2d: SepConv2dModule.from_node}
