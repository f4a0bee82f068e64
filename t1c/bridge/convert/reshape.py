"""Reshapes both ways: ``nn.Flatten`` <-> ``Flatten`` (T1C-IR dims exclude the batch).

:func:`flatten_node` shifts torch's dims (batch counted) to the node's; it serves
``nn.Flatten`` here and the flattening calls (``torch.flatten``, ``x.view(B, -1)``) that
the tracer reads off a forward.
"""

from __future__ import annotations

from torch import nn

from t1c import ir

from ..registry import ExportContext, ExportTable, ImportTable


def flatten_node(start_dim: int, end_dim: int) -> ir.Flatten:
    """``Flatten`` for torch's ``flatten(start_dim, end_dim)`` (batch counted, ``start_dim != 0``)."""
    return ir.Flatten(
        start_dim=start_dim - 1 if start_dim > 0 else start_dim,
        end_dim=end_dim - 1 if end_dim >= 0 else end_dim,
    )


def convert_flatten(module: nn.Flatten, ctx: ExportContext) -> ir.Node:
    """``nn.Flatten`` -> ``Flatten`` with the dims shifted to exclude the batch dimension."""
    rank = len(ctx.input_shape) + 1 if ctx.input_shape is not None else None
    start = module.start_dim
    if rank is not None:
        start = start + rank if start < 0 else start
    if start == 0:
        raise ctx.fail(module, "start_dim covers the batch dimension, which T1C-IR never flattens")
    return flatten_node(start, module.end_dim)


def flatten_from_node(node: ir.Flatten) -> nn.Flatten:
    """``Flatten`` -> ``nn.Flatten`` with the dims shifted to count the batch dimension."""
    start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
    end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
    return nn.Flatten(start, end)


EXPORT: ExportTable = {nn.Flatten: convert_flatten}
IMPORT: ImportTable = {ir.Flatten: flatten_from_node}
