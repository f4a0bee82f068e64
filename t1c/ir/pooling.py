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


@dataclasses.dataclass(eq=False, repr=False)
class _Pool2d(Node):
    """Base of the pools: a window of ``kernel_size`` moved by ``stride`` (default
    ``kernel_size``, as in torch) over an input padded by ``padding`` on each side."""

    kernel_size: np.ndarray = spec("int_pair")
    stride: np.ndarray | None = spec("int_pair", optional=True, default=None)
    padding: np.ndarray = spec("int_pair", default=0)

    def __post_init__(self) -> None:
        self.kernel_size = as_pair(self.kernel_size, "kernel_size", minimum=1)
        self.stride = (
            self.kernel_size.copy() if self.stride is None else as_pair(self.stride, "stride", minimum=1)
        )
        self.padding = as_pair(self.padding, "padding", minimum=0)
        if (2 * self.padding > self.kernel_size).any():
            raise T1CFormatError(
                f"padding {self.padding.tolist()} exceeds half the kernel {self.kernel_size.tolist()}",
                field="padding",
            )
        self.ceil_mode = as_bool(self.ceil_mode, "ceil_mode")

    def _output(self, input_shapes: list[Shape], dilation: np.ndarray) -> Shape:
        shape = _image(input_shapes)
        hw = conv_output_hw(
            shape[1:], self.kernel_size, self.stride, self.padding, dilation, ceil_mode=self.ceil_mode
        )
        if min(hw) < 1:
            raise T1CFormatError(f"leaves an empty output of size {list(hw)}", field="kernel_size")
        return (shape[0], *hw)


@dataclasses.dataclass(eq=False, repr=False)
class MaxPool2d(_Pool2d):
    """Max pooling; ``stride`` defaults to ``kernel_size`` as in torch."""

    TYPE = "MaxPool2d"
    dilation: np.ndarray = spec("int_pair", default=1)
    ceil_mode: bool = spec("bool", default=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.dilation = as_pair(self.dilation, "dilation", minimum=1)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return self._output(input_shapes, self.dilation)


@dataclasses.dataclass(eq=False, repr=False)
class AvgPool2d(_Pool2d):
    """Average pooling; ``stride`` defaults to ``kernel_size`` as in torch."""

    TYPE = "AvgPool2d"
    ceil_mode: bool = spec("bool", default=False)
    count_include_pad: bool = spec("bool", default=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.count_include_pad = as_bool(self.count_include_pad, "count_include_pad")

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return self._output(input_shapes, np.ones(2, dtype=np.int64))


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
