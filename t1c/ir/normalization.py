"""Normalisation: `BatchNorm1d`, `BatchNorm2d` (with stored statistics) and `LayerNorm`.

Layout, dtypes and defaults follow FORMAT_HYBRID.md. The toolchain checks none of the
array lengths; these classes do, so a graph that exists can be run.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from .errors import T1CFormatError
from .node import Node, Shape, as_float, as_float_array, as_int, as_shape, merged_sum_shape, spec


def _positive_eps(value: Any) -> float:
    eps = as_float(value, "eps")
    if eps is None or not eps > 0:
        raise T1CFormatError(f"must be > 0 (it keeps the division finite), got {value!r}", field="eps")
    return eps


@dataclasses.dataclass(eq=False, repr=False)
class _BatchNorm(Node):
    """Batch normalisation with stored statistics, per channel ``c`` (axis 1 of ``[B, C, ...]``).

    Deployed (evaluation) meaning::

        y = (x - running_mean[c]) / sqrt(running_var[c] + eps) * weight[c] + bias[c]

    ``momentum`` only matters when training resumes: the running statistics are then
    updated as ``stat = (1 - momentum) * stat + momentum * batch_stat``. ``momentum =
    None`` (torch's cumulative average) is kept through a file with the extension flag
    ``cumulative_average`` (written only when true; a reader that ignores it sees the
    default momentum 0.1, which changes nothing at inference).
    """

    num_features: int = spec("int")
    weight: np.ndarray = spec("float_array")
    bias: np.ndarray = spec("float_array")
    running_mean: np.ndarray = spec("float_array")
    running_var: np.ndarray = spec("float_array")
    eps: float = spec("float", optional=True, omit_default=True, default=1e-5)
    momentum: float | None = spec("float", optional=True, omit_default=True, default=0.1)
    cumulative_average: bool = spec("bool", optional=True, omit_default=True, default=False)

    #: Input ranks (batch excluded) the type accepts, and how to say it.
    RANKS: ClassVar[tuple[int, ...]] = ()
    SHAPES: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.num_features = as_int(self.num_features, "num_features", minimum=1)
        for name in ("weight", "bias", "running_mean", "running_var"):
            arr = as_float_array(getattr(self, name), name)
            if arr.shape != (self.num_features,):
                raise T1CFormatError(
                    f"has shape {list(arr.shape)} but num_features is {self.num_features}", field=name
                )
            setattr(self, name, arr)
        if (self.running_var < 0).any():
            bad = float(self.running_var[self.running_var < 0][0])
            raise T1CFormatError(f"must be >= 0 (a variance), got {bad:g}", field="running_var")
        self.eps = _positive_eps(self.eps)
        if bool(self.cumulative_average):
            self.momentum = None
        self.momentum = as_float(self.momentum, "momentum", minimum=0.0, maximum=1.0)
        self.cumulative_average = self.momentum is None

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = merged_sum_shape(input_shapes)
        if len(shape) not in self.RANKS or shape[0] != self.num_features:
            raise T1CFormatError(
                f"expects inputs of shape {self.SHAPES} with C = {self.num_features} but receives {list(shape)}",
                field="num_features",
            )
        return shape


@dataclasses.dataclass(eq=False, repr=False)
class BatchNorm1d(_BatchNorm):
    """:class:`_BatchNorm` over ``[C]`` or ``[C, L]`` inputs (batch excluded), as ``nn.BatchNorm1d``."""

    TYPE = "BatchNorm1d"
    RANKS = (1, 2)
    SHAPES = "[C] or [C, L]"


@dataclasses.dataclass(eq=False, repr=False)
class BatchNorm2d(_BatchNorm):
    """:class:`_BatchNorm` over ``[C, H, W]`` inputs (batch excluded), as ``nn.BatchNorm2d``."""

    TYPE = "BatchNorm2d"
    RANKS = (3,)
    SHAPES = "[C, H, W]"


@dataclasses.dataclass(eq=False, repr=False)
class LayerNorm(Node):
    """Layer normalisation over the last ``k = len(normalized_shape)`` axes.

    With ``mu`` and ``var`` the mean and biased variance over those axes of one sample::

        y = (x - mu) / sqrt(var + eps) * weight + bias

    ``weight`` and ``bias`` have shape ``normalized_shape`` (broadcast over the rest), as
    ``torch.nn.LayerNorm(normalized_shape, eps)``.
    """

    TYPE = "LayerNorm"
    TOPOLOGY_FIELDS = ("normalized_shape",)
    normalized_shape: np.ndarray = spec("int_vector")
    weight: np.ndarray = spec("float_array")
    bias: np.ndarray = spec("float_array")
    eps: float = spec("float", optional=True, omit_default=True, default=1e-5)

    def __post_init__(self) -> None:
        self.normalized_shape = as_shape(self.normalized_shape, "normalized_shape")
        want = tuple(int(d) for d in self.normalized_shape)
        for name in ("weight", "bias"):
            arr = as_float_array(getattr(self, name), name)
            if arr.shape != want:
                raise T1CFormatError(
                    f"has shape {list(arr.shape)} but normalized_shape is {list(want)}", field=name
                )
            setattr(self, name, arr)
        self.eps = _positive_eps(self.eps)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = merged_sum_shape(input_shapes)
        want = tuple(int(d) for d in self.normalized_shape)
        if len(shape) < len(want) or tuple(shape[len(shape) - len(want) :]) != want:
            raise T1CFormatError(
                f"normalises the last axes {list(want)} but receives {list(shape)}", field="normalized_shape"
            )
        return shape
