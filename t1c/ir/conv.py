"""Convolutions: `Conv2d` and the depthwise-separable `SepConv2d`.

Both compute exactly what ``torch.nn.functional.conv2d`` computes with the same
arguments, on inputs of shape [C, H, W] (batch excluded).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .errors import T1CFormatError
from .linear import check_integer_weights
from .node import Node, Shape, as_float_array, as_int, as_pair, merged_sum_shape, spec


def conv_output_hw(
    hw: tuple[int, int],
    kernel: np.ndarray,
    stride: np.ndarray,
    padding: np.ndarray,
    dilation: np.ndarray,
    *,
    ceil_mode: bool = False,
) -> tuple[int, int]:
    """torch's output-size rule for convolutions and pools, per spatial dim."""
    out = []
    for size, k, s, p, d in zip(hw, kernel, stride, padding, dilation):
        span = int(size) + 2 * int(p) - int(d) * (int(k) - 1) - 1
        n = (-(-span // int(s)) if ceil_mode else span // int(s)) + 1
        if ceil_mode and (n - 1) * int(s) >= int(size) + int(p):
            n -= 1  # torch: the last window must start inside the input or left padding
        out.append(n)
    return out[0], out[1]


def _image_input(input_shapes: list[Shape], channels: int, field: str) -> Shape:
    shape = merged_sum_shape(input_shapes)
    if len(shape) != 3 or shape[0] != channels:
        raise T1CFormatError(
            f"expects inputs of shape [{channels}, H, W] but receives {list(shape)}", field=field
        )
    return shape


def _check_out_hw(hw: tuple[int, int], field: str) -> None:
    if min(hw) < 1:
        raise T1CFormatError(f"leaves an empty output of size {list(hw)}", field=field)


def _bias(bias: np.ndarray | None, n: int, field: str) -> np.ndarray:
    if bias is None:
        return np.zeros(n, dtype=np.float32)
    if bias.shape != (n,):
        raise T1CFormatError(f"has shape {list(bias.shape)}, expected [{n}]", field=field)
    return bias


@dataclasses.dataclass(eq=False, repr=False)
class Conv2d(Node):
    """2-D convolution; ``weight`` is [out, in/groups, kH, kW]. A missing bias is zero."""

    TYPE = "Conv2d"
    weight: np.ndarray = spec("float_array")
    bias: np.ndarray | None = spec("float_array", default=None)
    stride: np.ndarray = spec("int_pair", default=1)
    padding: np.ndarray = spec("int_pair", default=0)
    dilation: np.ndarray = spec("int_pair", default=1)
    groups: int = spec("int", default=1)
    weight_int: np.ndarray | None = spec("int_array", optional=True, default=None)
    weight_scale: float | None = spec("float", optional=True, default=None)
    bias_int: np.ndarray | None = spec("int_array", optional=True, default=None)

    def __post_init__(self) -> None:
        self.weight = as_float_array(self.weight, "weight")
        if self.weight.ndim != 4:
            raise T1CFormatError(
                f"must be 4-D [out, in/groups, kH, kW], got {list(self.weight.shape)}", field="weight"
            )
        self.bias = _bias(as_float_array(self.bias, "bias", allow_none=True), self.weight.shape[0], "bias")
        self.stride = as_pair(self.stride, "stride", minimum=1)
        self.padding = as_pair(self.padding, "padding", minimum=0)
        self.dilation = as_pair(self.dilation, "dilation", minimum=1)
        self.groups = as_int(self.groups, "groups", minimum=1)
        if self.weight.shape[0] % self.groups:
            raise T1CFormatError(
                f"{self.groups} groups do not divide {self.weight.shape[0]} output channels",
                field="groups",
            )
        check_integer_weights(self)

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = _image_input(input_shapes, self.in_channels, "weight")
        hw = conv_output_hw(shape[1:], self.weight.shape[2:], self.stride, self.padding, self.dilation)
        _check_out_hw(hw, "weight")
        return (self.weight.shape[0], *hw)


@dataclasses.dataclass(eq=False, repr=False)
class SepConv2d(Node):
    """Depthwise conv (groups = C, with stride/padding/dilation), then a 1x1 pointwise conv."""

    TYPE = "SepConv2d"
    depthwise_weight: np.ndarray = spec("float_array")
    pointwise_weight: np.ndarray = spec("float_array")
    depthwise_bias: np.ndarray | None = spec("float_array", default=None)
    pointwise_bias: np.ndarray | None = spec("float_array", default=None)
    stride: np.ndarray = spec("int_pair", default=1)
    padding: np.ndarray = spec("int_pair", default=0)
    dilation: np.ndarray = spec("int_pair", default=1)

    def __post_init__(self) -> None:
        dw = self.depthwise_weight = as_float_array(self.depthwise_weight, "depthwise_weight")
        pw = self.pointwise_weight = as_float_array(self.pointwise_weight, "pointwise_weight")
        if dw.ndim != 4 or dw.shape[1] != 1:
            raise T1CFormatError(f"must be [C, 1, kH, kW], got {list(dw.shape)}", field="depthwise_weight")
        if pw.ndim != 4 or pw.shape[1] != dw.shape[0] or pw.shape[2:] != (1, 1):
            raise T1CFormatError(
                f"must be [C', {dw.shape[0]}, 1, 1], got {list(pw.shape)}", field="pointwise_weight"
            )
        self.depthwise_bias = _bias(
            as_float_array(self.depthwise_bias, "depthwise_bias", allow_none=True),
            dw.shape[0],
            "depthwise_bias",
        )
        self.pointwise_bias = _bias(
            as_float_array(self.pointwise_bias, "pointwise_bias", allow_none=True),
            pw.shape[0],
            "pointwise_bias",
        )
        self.stride = as_pair(self.stride, "stride", minimum=1)
        self.padding = as_pair(self.padding, "padding", minimum=0)
        self.dilation = as_pair(self.dilation, "dilation", minimum=1)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        dw = self.depthwise_weight
        shape = _image_input(input_shapes, dw.shape[0], "depthwise_weight")
        hw = conv_output_hw(shape[1:], dw.shape[2:], self.stride, self.padding, self.dilation)
        _check_out_hw(hw, "depthwise_weight")
        return (self.pointwise_weight.shape[0], *hw)
