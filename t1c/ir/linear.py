"""Dense synapses: `Affine` and its hardware-annotated twin `SpikingAffine`."""

from __future__ import annotations

import dataclasses

import numpy as np

from .errors import T1CFormatError
from .node import (
    Node,
    Shape,
    as_choice,
    as_float,
    as_float_array,
    as_int,
    as_int_array,
    check_integer_codes,
    merged_sum_shape,
    spec,
)

SPIKE_MODES = ("binary", "graded", "rate")


def _dense_weights(node) -> None:
    """Coerce ``node.weight`` (2-D [out, in]) and ``node.bias`` ([out]; a missing bias is zero)."""
    weight = node.weight = as_float_array(node.weight, "weight")
    bias = as_float_array(node.bias, "bias", allow_none=True)
    if weight.ndim != 2:
        raise T1CFormatError(f"must be 2-D [out, in], got shape {list(weight.shape)}", field="weight")
    if bias is None:
        bias = np.zeros(weight.shape[0], dtype=np.float32)
    elif bias.shape != (weight.shape[0],):
        raise T1CFormatError(
            f"has shape {list(bias.shape)} but weight has {weight.shape[0]} outputs", field="bias"
        )
    node.bias = bias


def check_integer_weights(node) -> None:
    """Optional exact integers beside the float weights: ``weight ~= weight_int * weight_scale``.

    Written by the export callback so that hardware gets exactly the integers whose
    accuracy was measured; readers that ignore them use the float weights.
    """
    node.weight_int = as_int_array(node.weight_int, "weight_int")
    node.bias_int = as_int_array(node.bias_int, "bias_int")
    node.weight_scale = as_float(node.weight_scale, "weight_scale")
    if node.weight_int is None:
        if node.bias_int is not None or node.weight_scale is not None:
            raise T1CFormatError("bias_int/weight_scale need weight_int", field="weight_int")
        return
    check_integer_codes(node, "weight_int", "weight_scale", "weight")
    if node.bias_int is not None and node.bias_int.shape != node.bias.shape:
        raise T1CFormatError(
            f"has shape {list(node.bias_int.shape)}, expected {list(node.bias.shape)}", field="bias_int"
        )


def _dense_output(weight: np.ndarray, input_shapes: list[Shape]) -> Shape:
    shape = merged_sum_shape(input_shapes)
    if not shape or shape[-1] != weight.shape[1]:
        raise T1CFormatError(
            f"expects inputs of size {weight.shape[1]} but receives shape {list(shape)}",
            field="weight",
        )
    return (*shape[:-1], weight.shape[0])


@dataclasses.dataclass(eq=False, repr=False)
class Affine(Node):
    """``y = x @ W.T + b``. A missing bias is zero."""

    TYPE = "Affine"
    weight: np.ndarray = spec("float_array")
    bias: np.ndarray | None = spec("float_array", default=None)
    weight_int: np.ndarray | None = spec("int_array", optional=True, default=None)
    weight_scale: float | None = spec("float", optional=True, default=None)
    bias_int: np.ndarray | None = spec("int_array", optional=True, default=None)

    def __post_init__(self) -> None:
        _dense_weights(self)
        check_integer_weights(self)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return _dense_output(self.weight, input_shapes)


@dataclasses.dataclass(eq=False, repr=False)
class SpikingAffine(Node):
    """An `Affine` (identical in float simulation) with hardware hints.

    ``weight_bits`` (1..32) and ``accumulator_bits`` (weight_bits..64) say how the
    synapse is quantized on chip; ``spike_mode`` says what its input spikes carry
    (``binary`` 0/1, ``graded`` values, ``rate`` counts).
    """

    TYPE = "SpikingAffine"
    weight: np.ndarray = spec("float_array")
    bias: np.ndarray | None = spec("float_array", default=None)
    spike_mode: str = spec("str", default="binary")
    weight_bits: int = spec("int", default=8)
    accumulator_bits: int = spec("int", default=16)
    weight_int: np.ndarray | None = spec("int_array", optional=True, default=None)
    weight_scale: float | None = spec("float", optional=True, default=None)
    bias_int: np.ndarray | None = spec("int_array", optional=True, default=None)

    def __post_init__(self) -> None:
        _dense_weights(self)
        self.spike_mode = as_choice(self.spike_mode, "spike_mode", SPIKE_MODES)
        self.weight_bits = as_int(self.weight_bits, "weight_bits")
        self.accumulator_bits = as_int(self.accumulator_bits, "accumulator_bits")
        if not 1 <= self.weight_bits <= 32:
            raise T1CFormatError(f"must be in 1..32, got {self.weight_bits}", field="weight_bits")
        if not self.weight_bits <= self.accumulator_bits <= 64:
            raise T1CFormatError(
                f"must be in weight_bits..64 ({self.weight_bits}..64), got {self.accumulator_bits}",
                field="accumulator_bits",
            )
        check_integer_weights(self)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return _dense_output(self.weight, input_shapes)
