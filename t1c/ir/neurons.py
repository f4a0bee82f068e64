"""Neurons: `LIF`, the leaky integrate-and-fire neuron, with snnTorch's extensions.

Plain meaning (every file without the optional fields), with ``beta = 1 - 1/tau``::

    v_t = beta * v_{t-1} + (1 - beta) * (v_leak + r * i_t)
    s_t = v_t >= v_threshold
    v_t = 0 where s_t                      (reset to zero, in the same step)

Optional fields (see ``docs/lif_extensions.md``) say what snnTorch's ``Leaky`` does and
the plain fields cannot: ``beta`` (the exact decay; when present the update is
``v_t = beta * v_{t-1} + i_t``), ``reset_mechanism`` (``zero``/``subtract``/``none``),
``reset_delay`` (the reset is applied one step late) and ``strict_threshold`` (fire on
``v > threshold``). A reader that ignores them falls back to the plain meaning.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .errors import T1CFormatError
from .node import Node, Shape, as_bool, as_choice, as_float_array, merged_sum_shape, spec

RESET_MECHANISMS = ("zero", "subtract", "none")


@dataclasses.dataclass(eq=False, repr=False)
class LIF(Node):
    """Leaky integrate-and-fire neurons, one per element of the parameter arrays."""

    TYPE = "LIF"
    tau: np.ndarray = spec("float_array")
    r: np.ndarray = spec("float_array")
    v_leak: np.ndarray = spec("float_array")
    v_threshold: np.ndarray = spec("float_array")
    beta: np.ndarray | None = spec("float_array", optional=True, default=None)
    reset_mechanism: str | None = spec("str", optional=True, default=None)
    reset_delay: bool | None = spec("bool", optional=True, default=None)
    strict_threshold: bool | None = spec("bool", optional=True, default=None)

    def __post_init__(self) -> None:
        # +inf is legitimate in tau and r only where beta == 1 (snnTorch's non-leaky
        # neuron, which the writer stores as tau = r = +inf); checked once beta is known.
        for name in ("tau", "r", "v_leak", "v_threshold"):
            setattr(self, name, as_float_array(getattr(self, name), name, allow_posinf=name in ("tau", "r")))
        shape = self.tau.shape
        for name in ("r", "v_leak", "v_threshold"):
            if getattr(self, name).shape != shape:
                raise T1CFormatError(
                    f"has shape {list(getattr(self, name).shape)} but tau has {list(shape)}", field=name
                )
        if (self.tau <= 0).any():
            raise T1CFormatError("must be positive (tau = 1 / (1 - beta))", field="tau")
        if self.beta is not None:
            self.beta = as_float_array(self.beta, "beta")
            if self.beta.shape != shape:
                raise T1CFormatError(
                    f"has shape {list(self.beta.shape)} but tau has {list(shape)}", field="beta"
                )
            if ((self.beta < 0) | (self.beta > 1)).any():
                bad = self.beta[(self.beta < 0) | (self.beta > 1)]
                raise T1CFormatError(
                    f"must be in [0, 1] (the decay per step), got {float(bad[0]):g}", field="beta"
                )
        for name in ("tau", "r"):
            infinite = np.isposinf(getattr(self, name))
            if infinite.any() and (self.beta is None or (self.beta[infinite] != 1).any()):
                raise T1CFormatError(
                    "is +inf where beta is not 1; +inf is only the stored form of beta == 1 "
                    "(give beta, or a finite value)",
                    field=name,
                )
        if self.reset_mechanism is not None:
            self.reset_mechanism = as_choice(self.reset_mechanism, "reset_mechanism", RESET_MECHANISMS)
        if self.reset_delay is not None:
            self.reset_delay = as_bool(self.reset_delay, "reset_delay")
        if self.strict_threshold is not None:
            self.strict_threshold = as_bool(self.strict_threshold, "strict_threshold")

    @property
    def shape(self) -> Shape:
        return tuple(self.tau.shape)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = merged_sum_shape(input_shapes)
        if shape != self.shape:
            raise T1CFormatError(
                f"has neurons of shape {list(self.shape)} but receives {list(shape)}", field="tau"
            )
        return shape
