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
attach_integer_weights``), lazily, like :mod:`t1c.bridge` itself.
"""

from __future__ import annotations

from t1c._lazy import lazy_exports

_EXPORTS = {
    "accumulator_range": "integers",
    "quantize_bias": "integers",
    "quantize_layer": "integers",
    "quantize_weights": "integers",
    "quantized_conv2d": "integers",
    "quantized_linear": "integers",
    "saturate": "integers",
    "weight_range": "integers",
    "QuantizedConv2d": "layers",
    "QuantizedLinear": "layers",
    "attach_integer_weights": "executors",
    "batchnorm_folds": "executors",
    "folded_copy": "executors",
    "ir_to_quantized": "executors",
    "quantize_executor": "executors",
    "FakeQuantize": "qat",
    "disable_qat": "qat",
    "enable_qat": "qat",
    "fake_quantize": "qat",
    "qat_enabled": "qat",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
