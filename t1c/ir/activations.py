"""Element-wise ANN activations: `ReLU` (LeakyReLU too), `PReLU`, `Sigmoid`, `Tanh`,
`Softmax`, `GELU`, `ELU`, and `Dropout`, as the existing toolchain writes them.

Layout, dtypes and defaults follow FORMAT_HYBRID.md: each type stores a ``features``
integer (the number of values that pass, a *size hint*: nothing computes with it) and
its own scalars, each written only when it differs from its default. None of these
nodes changes the shape of its tensor. The equations are given per class for one time
step's input ``x`` of shape ``[B, *shape]`` (batch first, ``c`` = index along axis 1).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .errors import T1CFormatError
from .node import Node, Shape, as_bool, as_float, as_float_array, as_int, merged_sum_shape, spec


def check_features(value, field: str = "features") -> int:
    """A positive integer size hint."""
    return as_int(value, field, minimum=1)


def _or_default(value: float | None, default: float) -> float:
    """``None`` means "not given" (the toolchain writes nothing for it): the default."""
    return default if value is None else value


def features_note(node: Node, shape: Shape, field: str = "features") -> str | None:
    """The size-hint warning text when ``node.<field>`` is not the number of values in ``shape``."""
    hint = getattr(node, field)
    size = math.prod(shape)
    if hint == size:
        return None
    return (
        f"{field} = {hint} but the node receives {list(shape)} ({size} values); {field} is only a "
        "size hint, so it is kept as written and ignored"
    )


@dataclasses.dataclass(eq=False, repr=False)
class _ElementWise(Node):
    """Base of the shape-preserving activations: any input shape, ``features`` a size hint."""

    features: int = spec("int")

    def __post_init__(self) -> None:
        self.features = check_features(self.features)

    def size_hint_note(self, shape: Shape) -> str | None:
        return features_note(self, shape)


@dataclasses.dataclass(eq=False, repr=False)
class ReLU(_ElementWise):
    """Rectifier; with a positive ``negative_slope`` s, torch's LeakyReLU.

    ``y = x if x >= 0 else s * x`` when ``s > 0``; ``y = max(x, 0)`` when ``s <= 0``.
    A negative slope is stored and read but computes the plain rectifier: that is what
    the toolchain that defines the format runs (FORMAT_HYBRID.md, ``unit_relu_negative_slope``),
    so ``nn.LeakyReLU`` with a negative slope has no T1C-IR form.
    """

    TYPE = "ReLU"
    negative_slope: float = spec("float", optional=True, omit_default=True, default=0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.negative_slope = _or_default(as_float(self.negative_slope, "negative_slope"), 0.0)


@dataclasses.dataclass(eq=False, repr=False)
class PReLU(_ElementWise):
    """Parametric ReLU: ``y = x if x >= 0 else a * x``.

    ``weight`` holds one slope shared by every value (length 1) or one per channel /
    feature (length C = the size of axis 1: per channel for ``[C, H, W]``, per feature
    for ``[F]``), as ``torch.nn.PReLU(num_parameters)``.
    """

    TYPE = "PReLU"
    weight: np.ndarray = spec("float_array")

    def __post_init__(self) -> None:
        super().__post_init__()
        weight = as_float_array(self.weight, "weight")
        if weight.ndim == 0:
            weight = weight.reshape(1)
        if weight.ndim != 1 or weight.size < 1:
            raise T1CFormatError(
                f"must be 1-D with 1 or C slopes, got shape {list(weight.shape)}", field="weight"
            )
        self.weight = weight

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = merged_sum_shape(input_shapes)
        n = self.weight.size
        if n != 1 and (not shape or shape[0] != n):
            raise T1CFormatError(
                f"has {n} slopes but receives {list(shape)}: the slopes must be 1 or the size of "
                f"dim 0 ({shape[0] if shape else 'none'})",
                field="weight",
            )
        return shape


@dataclasses.dataclass(eq=False, repr=False)
class Sigmoid(_ElementWise):
    """Logistic function: ``y = 1 / (1 + exp(-x))``."""

    TYPE = "Sigmoid"


@dataclasses.dataclass(eq=False, repr=False)
class Tanh(_ElementWise):
    """Hyperbolic tangent: ``y = tanh(x)``."""

    TYPE = "Tanh"


@dataclasses.dataclass(eq=False, repr=False)
class Softmax(_ElementWise):
    """``y = exp(x) / sum(exp(x))`` over axis ``dim`` of the **batched** tensor.

    ``dim`` counts the batch axis, as ``torch.nn.Softmax(dim)`` on ``[B, *shape]`` does
    (unlike Flatten's dims): -1 is the last axis, 1 the channels/features, 0 mixes the
    samples of a batch. A negative ``dim`` must not reach the batch axis (write 0 for it).
    """

    TYPE = "Softmax"
    TOPOLOGY_FIELDS = ("dim",)
    dim: int = spec("int", optional=True, omit_default=True, default=-1)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.dim = as_int(self.dim, "dim")

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = merged_sum_shape(input_shapes)
        rank = len(shape) + 1  # with the batch axis
        if not -len(shape) <= self.dim < rank:
            raise T1CFormatError(
                f"{self.dim} is out of range for a batched input [B, {', '.join(map(str, shape))}] "
                f"(0..{rank - 1}, or -1..-{len(shape)}; 0 is the batch axis)",
                field="dim",
            )
        return shape

    def couples_batch(self) -> bool:
        """Whether the softmax runs across the samples of a batch (``dim == 0``)."""
        return self.dim == 0


@dataclasses.dataclass(eq=False, repr=False)
class GELU(_ElementWise):
    """Gaussian error linear unit.

    ``approximate`` (the default): ``y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``;
    ``approximate = False``: ``y = 0.5 x (1 + erf(x / sqrt(2)))`` (torch's default
    ``nn.GELU()``). Only ``False`` is written.
    """

    TYPE = "GELU"
    TOPOLOGY_FIELDS = ("approximate",)
    approximate: bool = spec("bool", optional=True, omit_default=True, default=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.approximate = as_bool(self.approximate, "approximate")


@dataclasses.dataclass(eq=False, repr=False)
class ELU(_ElementWise):
    """Exponential linear unit: ``y = x if x > 0 else alpha * (exp(x) - 1)``."""

    TYPE = "ELU"
    alpha: float = spec("float", optional=True, omit_default=True, default=1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.alpha = _or_default(as_float(self.alpha, "alpha"), 1.0)


@dataclasses.dataclass(eq=False, repr=False)
class Dropout(_ElementWise):
    """Dropout with probability ``p`` in [0, 1]: the identity ``y = x`` in a deployed graph.

    Only training (an executor in training mode) zeroes each value with probability ``p``
    and scales the others by ``1 / (1 - p)``, as ``torch.nn.Dropout`` does.
    """

    TYPE = "Dropout"
    p: float = spec("float", optional=True, omit_default=True, default=0.5)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.p = _or_default(as_float(self.p, "p", minimum=0.0, maximum=1.0), 0.5)
