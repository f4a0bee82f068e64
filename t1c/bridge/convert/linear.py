"""Linear layers both ways: ``nn.Linear`` <-> ``Affine`` / ``SpikingAffine``.

Export: ``nn.Linear`` becomes ``Affine``, or ``SpikingAffine`` with the exporter's hints
when it exports with ``spiking=True``; a :class:`~t1c.bridge.SpikingAffineModule` keeps
its own hints. Import: ``Affine`` becomes ``nn.Linear``, ``SpikingAffine`` a
``SpikingAffineModule``.
"""

from __future__ import annotations

from torch import nn

from t1c import ir

from ..modules import SpikingAffineModule, as_numpy
from ..registry import ExportContext, ExportTable, ImportTable, convert_own_node, with_weights


def convert_linear(module: nn.Linear, ctx: ExportContext) -> ir.Node:
    """``nn.Linear`` -> ``Affine``, or ``SpikingAffine`` with the exporter's hints when spiking."""
    weight, bias = as_numpy(module.weight), as_numpy(module.bias)
    if ctx.spiking:
        return ir.SpikingAffine(
            weight=weight,
            bias=bias,
            spike_mode=ctx.spike_mode,
            weight_bits=ctx.weight_bits,
            accumulator_bits=ctx.accumulator_bits,
        )
    return ir.Affine(weight=weight, bias=bias)


def linear_from_node(node: ir.Affine) -> nn.Linear:
    """``Affine`` -> ``nn.Linear`` owning a copy of the weights."""
    out_f, in_f = node.weight.shape
    return with_weights(nn.Linear(in_f, out_f), node)


EXPORT: ExportTable = {nn.Linear: convert_linear, SpikingAffineModule: convert_own_node}
IMPORT: ImportTable = {ir.Affine: linear_from_node, ir.SpikingAffine: SpikingAffineModule.from_node}
