"""The mapping table: which NIR node becomes which T1C-IR node, and back, family by family.

Both directions are ``{type: converter}`` maps built fresh on each call; a ``node_map``
passed to :func:`~t1c.nir.from_nir` / :func:`~t1c.nir.to_nir` wins over them. A type with
no exact form on the other side maps to a refusal that says why (``docs/nir.md``).
"""

from __future__ import annotations

from .. import ir
from .common import import_nir, refusal
from .cuba import from_cuba_lif, from_nir_lif, to_cuba_lif
from .export_nodes import (
    ExportFn,
    to_affine,
    to_avgpool2d,
    to_conv2d,
    to_flatten,
    to_input,
    to_lif,
    to_output,
    to_sepconv2d,
    to_skip,
)
from .import_nodes import (
    ImportFn,
    from_affine,
    from_avgpool2d,
    from_conv2d,
    from_delay,
    from_flatten,
    from_if,
    from_input,
    from_linear,
    from_output,
    from_scale,
    from_sumpool2d,
    from_threshold,
)

_NO_STATELESS_READOUT = (
    "T1C-IR neurons output spikes, while this node outputs its membrane (no spike, no reset); "
    "there is no exact form. Replace it with a LIF, or drop it and read the layer before it"
)


def default_import_map() -> dict[type, ImportFn]:
    """NIR node class -> converter, for every class of ``nir`` 1.0 (refusals included).

    Returns:
        A fresh ``{nir class: fn(name, nir_node, ctx) -> ir.Node}`` dict.

    Raises:
        ImportError: ``nir`` is not installed.
    """
    nir = import_nir()
    return {
        # graph ends
        nir.Input: from_input,
        nir.Output: from_output,
        # weight layers
        nir.Affine: from_affine,
        nir.Linear: from_linear,
        nir.Conv2d: from_conv2d,
        # reshaping and pooling
        nir.Flatten: from_flatten,
        nir.AvgPool2d: from_avgpool2d,
        nir.SumPool2d: from_sumpool2d,
        # identities and factors
        nir.Scale: from_scale,
        nir.Delay: from_delay,
        # neurons
        nir.LIF: from_nir_lif,
        nir.IF: from_if,
        nir.Threshold: from_threshold,
        nir.CubaLIF: from_cuba_lif,
        # refused: no exact T1C-IR form
        nir.LI: refusal(_NO_STATELESS_READOUT),
        nir.I: refusal(_NO_STATELESS_READOUT),
        nir.CubaLI: refusal(
            "outputs its membrane (no spike, no reset); T1C-IR's CubaLIF outputs spikes. Replace it with a "
            "CubaLIF, or drop it and read the layer before it"
        ),
        nir.Conv1d: refusal(
            "T1C-IR has no 1-D convolution; a Conv2d with a [C, 1, N] input and a 1 x k kernel computes "
            "the same: reshape the model and export that"
        ),
    }


def default_nir_export_map() -> dict[type[ir.Node], ExportFn]:
    """T1C-IR primitive class -> NIR converter (refusals included).

    Returns:
        A fresh ``{ir class: fn(name, node, ctx) -> [(nir name, nir node), ...]}`` dict.
    """
    return {
        # graph ends
        ir.Input: to_input,
        ir.Output: to_output,
        # weight layers
        ir.Affine: to_affine,
        ir.SpikingAffine: to_affine,
        ir.Conv2d: to_conv2d,
        ir.SepConv2d: to_sepconv2d,
        # reshaping and pooling
        ir.Flatten: to_flatten,
        ir.AvgPool2d: to_avgpool2d,
        # identities and joins
        ir.Skip: to_skip,
        # neurons
        ir.LIF: to_lif,
        ir.CubaLIF: to_cuba_lif,
        # refused: no exact NIR form
        ir.MaxPool2d: refusal("NIR has no max pooling (only AvgPool2d and SumPool2d)"),
        ir.Upsample: refusal("NIR has no upsampling node"),
        ir.AlphaLIF: refusal(
            "NIR has no alpha neuron. Two leaky integrators (LI) summed into a Threshold compute its "
            "membrane, but its spike wipes both synaptic currents, which no NIR node can say; no exact form"
        ),
    }
