"""Spatial resampling: `MaxPool2d`, `AvgPool2d` and `Upsample`, as torch computes them."""

from __future__ import annotations

import dataclasses

import numpy as np

from .conv import conv_output_hw
from .errors import T1CFormatError
from .node import Node, Shape, as_bool, as_choice, as_int, as_pair, merged_sum_shape, spec

UPSAMPLE_MODES = ("nearest", "bilinear")


def _image(input_shapes: list[Shape]) -> Shape:
    shape = merged_sum_shape(input_shapes)
    if len(shape) != 3:
        raise T1CFormatError(f"expects inputs of shape [C, H, W] but receives {list(shape)}")
    return shape


def _pool_fields(node) -> None:
    node.kernel_size = as_pair(node.kernel_size, "kernel_size", minimum=1)
    node.stride = (
        node.kernel_size.copy() if node.stride is None else as_pair(node.stride, "stride", minimum=1)
    )
    node.padding = as_pair(node.padding, "padding", minimum=0)
    if (2 * node.padding > node.kernel_size).any():
        raise T1CFormatError(
            f"padding {node.padding.tolist()} exceeds half the kernel {node.kernel_size.tolist()}",
            field="padding",
        )
    node.ceil_mode = as_bool(node.ceil_mode, "ceil_mode")


def _pool_output(node, input_shapes: list[Shape], dilation: np.ndarray) -> Shape:
    shape = _image(input_shapes)
    hw = conv_output_hw(
        shape[1:], node.kernel_size, node.stride, node.padding, dilation, ceil_mode=node.ceil_mode
    )
    if min(hw) < 1:
        raise T1CFormatError(f"leaves an empty output of size {list(hw)}", field="kernel_size")
    return (shape[0], *hw)


@dataclasses.dataclass(eq=False, repr=False)
class MaxPool2d(Node):
    """Max pooling; ``stride`` defaults to ``kernel_size`` as in torch."""

    TYPE = "MaxPool2d"
    kernel_size: np.ndarray = spec("int_pair")
    stride: np.ndarray | None = spec("int_pair", optional=True, default=None)
    padding: np.ndarray = spec("int_pair", default=0)
    dilation: np.ndarray = spec("int_pair", default=1)
    ceil_mode: bool = spec("bool", default=False)

    def __post_init__(self) -> None:
        _pool_fields(self)
        self.dilation = as_pair(self.dilation, "dilation", minimum=1)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return _pool_output(self, input_shapes, self.dilation)


@dataclasses.dataclass(eq=False, repr=False)
class AvgPool2d(Node):
    """Average pooling; ``stride`` defaults to ``kernel_size`` as in torch."""

    TYPE = "AvgPool2d"
    kernel_size: np.ndarray = spec("int_pair")
    stride: np.ndarray | None = spec("int_pair", optional=True, default=None)
    padding: np.ndarray = spec("int_pair", default=0)
    ceil_mode: bool = spec("bool", default=False)
    count_include_pad: bool = spec("bool", default=True)

    def __post_init__(self) -> None:
        _pool_fields(self)
        self.count_include_pad = as_bool(self.count_include_pad, "count_include_pad")

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return _pool_output(self, input_shapes, np.ones(2, dtype=np.int64))


@dataclasses.dataclass(eq=False, repr=False)
class Upsample(Node):
    """``interpolate(x, size or scale_factor, mode, align_corners)``; ``size`` wins."""

    TYPE = "Upsample"
    scale_factor: int | None = spec("int", optional=True, default=None)
    size: np.ndarray | None = spec("int_pair", optional=True, default=None)
    mode: str = spec("str", default="nearest")
    align_corners: bool = spec("bool", default=False)

    def __post_init__(self) -> None:
        if self.size is not None:
            self.size = as_pair(self.size, "size", minimum=1)
            self.scale_factor = None
        elif self.scale_factor is None:
            raise T1CFormatError("needs scale_factor or size", field="scale_factor")
        else:
            scale = self.scale_factor
            if isinstance(scale, (float, np.floating)) and float(scale).is_integer():
                scale = int(scale)  # torch's nn.Upsample stores scale_factor=2 as 2.0
            self.scale_factor = as_int(scale, "scale_factor", minimum=1)
        self.mode = as_choice(self.mode, "mode", UPSAMPLE_MODES)
        self.align_corners = as_bool(self.align_corners, "align_corners")
        if self.align_corners and self.mode == "nearest":
            raise T1CFormatError("align_corners only applies to mode 'bilinear'", field="align_corners")

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        c, h, w = _image(input_shapes)
        if self.size is not None:
            return (c, int(self.size[0]), int(self.size[1]))
        return (c, h * self.scale_factor, w * self.scale_factor)
