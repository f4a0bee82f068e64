"""Quantized simulation: what the chip computes with ``weight_bits`` weights and a saturating accumulator.

The float executor treats ``SpikingAffine`` exactly like ``Affine`` (SEMANTICS.md); this
package is the separate, documented mode in which every synapse runs on integers, one
concern per module:

* :mod:`.integers`: the pure functions (:func:`quantize_weights`, :func:`quantize_bias`,
  :func:`saturate`, :func:`quantized_linear`, :func:`quantized_conv2d`, ...), tested
  against a brute-force integer loop;
* :mod:`.layers`: thin modules over them (:class:`QuantizedLinear`, :class:`QuantizedConv2d`);
* :mod:`.executors`: whole executors and graphs (:func:`quantize_executor`,
  :func:`ir_to_quantized`, :func:`attach_integer_weights`, :func:`batchnorm_folds`,
  :func:`folded_copy`);
* :mod:`.qat`: straight-through fake quantization for quantization-aware training
  (:func:`fake_quantize`, :func:`enable_qat`, :func:`disable_qat`, :func:`qat_enabled`).

Every public name is served from here (``from t1c.bridge.quantize import
attach_integer_weights``). The package is torch's side of the bridge: it imports its modules
at once (nothing else in :mod:`t1c.bridge` imports it, so no circle can form).
"""

from __future__ import annotations

from .executors import (
    attach_integer_weights,
    batchnorm_folds,
    folded_copy,
    ir_to_quantized,
    quantize_executor,
)
from .integers import (
    accumulator_range,
    quantize_bias,
    quantize_layer,
    quantize_weights,
    quantized_conv2d,
    quantized_linear,
    saturate,
    weight_range,
)
from .layers import (
    QuantizedConv2d,
    QuantizedLinear,
)
from .qat import (
    FakeQuantize,
    disable_qat,
    enable_qat,
    fake_quantize,
    qat_enabled,
)

__all__ = [
    "FakeQuantize",
    "QuantizedConv2d",
    "QuantizedLinear",
    "accumulator_range",
    "attach_integer_weights",
    "batchnorm_folds",
    "disable_qat",
    "enable_qat",
    "fake_quantize",
    "folded_copy",
    "ir_to_quantized",
    "qat_enabled",
    "quantize_bias",
    "quantize_executor",
    "quantize_layer",
    "quantize_weights",
    "quantized_conv2d",
    "quantized_linear",
    "saturate",
    "weight_range",
]
