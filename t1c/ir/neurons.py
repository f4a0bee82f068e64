"""Neurons: `LIF` (leaky integrate-and-fire, with snnTorch's extensions), `CubaLIF`, `AlphaLIF`.

`LIF`, plain meaning (every file without the optional fields), with ``beta = 1 - 1/tau``::

    v_t = beta * v_{t-1} + (1 - beta) * (v_leak + r * i_t)
    s_t = v_t >= v_threshold
    v_t = 0 where s_t                      (reset to zero, in the same step)

Optional fields (see ``docs/lif_extensions.md``) say what snnTorch's ``Leaky`` does and
the plain fields cannot: ``beta`` (the exact decay; when present the update is
``v_t = beta * v_{t-1} + i_t``), ``reset_mechanism`` (``zero``/``subtract``/``none``),
``reset_delay`` (the reset is applied one step late) and ``strict_threshold`` (fire on
``v > threshold``). A reader that ignores them falls back to the plain meaning.

`CubaLIF` is the current-based neuron (NIR's ``CubaLIF``, and snnTorch's ``Synaptic``,
``RSynaptic``, ``RLeaky`` and ``Lapicque`` exactly); `AlphaLIF` is snnTorch's ``Alpha``.
``docs/neurons.md`` gives their equations and the snnTorch mapping.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from .errors import T1CFormatError
from .node import (
    Node,
    Shape,
    as_bool,
    as_choice,
    as_float,
    as_float_array,
    as_int_array,
    check_integer_codes,
    merged_sum_shape,
    spec,
)

RESET_MECHANISMS = ("zero", "subtract", "none")


class _Neurons(Node):
    """What the neuron types share: one neuron per element of ``SHAPE_FIELD``'s array.

    Their shape rule: every input has the neurons' shape, and so does the output (the
    spikes).
    """

    SHAPE_FIELD: ClassVar[str] = ""

    @property
    def shape(self) -> Shape:
        return tuple(getattr(self, self.SHAPE_FIELD).shape)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        received = merged_sum_shape(input_shapes)
        if received != self.shape:
            raise T1CFormatError(
                f"has neurons of shape {list(self.shape)} but receives {list(received)}",
                field=self.SHAPE_FIELD,
            )
        return received


@dataclasses.dataclass(eq=False, repr=False)
class LIF(_Neurons):
    """Leaky integrate-and-fire neurons, one per element of the parameter arrays."""

    TYPE = "LIF"
    SHAPE_FIELD = "tau"
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
        _check_same_shape(self, ("r", "v_leak", "v_threshold"), "tau")
        if (self.tau <= 0).any():
            raise T1CFormatError("must be positive (tau = 1 / (1 - beta))", field="tau")
        self.beta = _decay(self, "beta", "tau")
        for name in ("tau", "r"):
            _check_posinf_where_one(getattr(self, name), name, self.beta, "beta")
        _check_reset_fields(self)
        if self.strict_threshold is not None:
            self.strict_threshold = as_bool(self.strict_threshold, "strict_threshold")


@dataclasses.dataclass(eq=False, repr=False)
class CubaLIF(_Neurons):
    """Current-based leaky integrate-and-fire neurons, one per element of the parameter arrays.

    Plain meaning (``beta`` absent): NIR's ``CubaLIF`` at one step per time unit, with
    ``a = 1 - 1/tau_syn``, ``b = 1 - 1/tau_mem`` and ``x_t`` the sum of the inputs (and of
    ``w_rec * s_{t-1}``, a one-to-one recurrence, when ``w_rec`` is present)::

        syn_t = a * syn_{t-1} + (1 - a) * (w_in * x_t)
        u_t   = b * v_{t-1} + (1 - b) * (v_leak + r * syn_t)

    Exact meaning (``beta`` present), snnTorch's operation order: the inputs are added one at
    a time in edge-list order, then ``w_rec * s_{t-1}``::

        syn_t = alpha * syn_{t-1} + g * x1_t + x2_t + ... + w_rec * s_{t-1}   (alpha present)
        u_t   = beta * v_{t-1} + syn_t
        u_t   = beta * v_{t-1} + g * x1_t + x2_t + ... + w_rec * s_{t-1}     (alpha absent)

    with ``g = input_gain`` (absent: no product). The reset is decided from ``v_{t-1}``
    (``reset = v_{t-1} > v_threshold``): "subtract" ``u - reset * v_threshold``, "zero"
    ``u - reset * u`` (the whole new membrane), then ``s_t = u_t > v_threshold``; with
    ``reset_delay`` False the reset happens in the same step as well
    (``do = s_t - reset``: ``u - do * v_threshold`` or ``u - do * u``), and ``v_t = u_t``.
    Both meanings use this reset; its defaults (``reset_mechanism`` "zero", ``reset_delay``
    False) give NIR's reset to zero in the same step, for ``v_threshold >= 0``. The node
    outputs ``s_t``. ``docs/neurons.md`` has the whole story.

    Optional exact integers beside the float ``w_rec`` (a synaptic weight, as an
    ``Affine``'s ``weight_int``/``weight_scale``): ``w_rec ~= w_rec_int * w_rec_scale``,
    written by :func:`~t1c.bridge.quantize.attach_integer_weights`; readers that ignore them
    use ``w_rec``.
    """

    TYPE = "CubaLIF"
    SHAPE_FIELD = "tau_syn"
    tau_syn: np.ndarray = spec("float_array")
    tau_mem: np.ndarray = spec("float_array")
    r: np.ndarray = spec("float_array")
    v_leak: np.ndarray = spec("float_array")
    v_threshold: np.ndarray = spec("float_array")
    w_in: np.ndarray = spec("float_array")
    alpha: np.ndarray | None = spec("float_array", optional=True, default=None)
    beta: np.ndarray | None = spec("float_array", optional=True, default=None)
    input_gain: np.ndarray | None = spec("float_array", optional=True, default=None)
    w_rec: np.ndarray | None = spec("float_array", optional=True, default=None)
    reset_mechanism: str | None = spec("str", optional=True, default=None)
    reset_delay: bool | None = spec("bool", optional=True, default=None)
    w_rec_int: np.ndarray | None = spec("int_array", optional=True, default=None)
    w_rec_scale: float | None = spec("float", optional=True, default=None)

    def __post_init__(self) -> None:
        # +inf: tau_syn and w_in only where alpha == 1, tau_mem and r only where beta == 1
        # (the stored form of a decay of 1, as LIF's tau); checked once the decays are known.
        for name in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in"):
            infinite_ok = name in ("tau_syn", "tau_mem", "r", "w_in")
            setattr(self, name, as_float_array(getattr(self, name), name, allow_posinf=infinite_ok))
        _check_same_shape(self, ("tau_mem", "r", "v_leak", "v_threshold", "w_in"), "tau_syn")
        for name in ("tau_syn", "tau_mem"):
            if (getattr(self, name) <= 0).any():
                raise T1CFormatError("must be positive (a time constant, in steps)", field=name)
        self.alpha = _decay(self, "alpha", "tau_syn")
        self.beta = _decay(self, "beta", "tau_syn")
        for name, decay in (("tau_syn", "alpha"), ("w_in", "alpha"), ("tau_mem", "beta"), ("r", "beta")):
            _check_posinf_where_one(getattr(self, name), name, getattr(self, decay), decay)
        for name in ("input_gain", "w_rec"):
            value = as_float_array(getattr(self, name), name, allow_none=True)
            if value is not None and value.shape != self.shape:
                raise T1CFormatError(
                    f"has shape {list(value.shape)} but tau_syn has {list(self.shape)}", field=name
                )
            setattr(self, name, value)
        if self.beta is None:
            for name in ("alpha", "input_gain"):
                if getattr(self, name) is not None:
                    raise T1CFormatError(
                        "is part of the exact (snnTorch) form, which needs beta too", field=name
                    )
        _check_reset_fields(self)
        check_recurrent_integers(self)


@dataclasses.dataclass(eq=False, repr=False)
class AlphaLIF(_Neurons):
    """snnTorch's ``Alpha`` neurons: two synaptic currents, the membrane their weighted sum.

    With ``x_t`` the sum of the inputs and ``reset = v_{t-1} > v_threshold`` (last step's
    membrane; the membrane itself is not carried)::

        exc_t = alpha * exc_{t-1} + x_t
        inh_t = beta * inh_{t-1} - x_t
        v_t   = tau * (exc_t + inh_t)
        "zero" (default): exc_t, inh_t, v_t each minus itself times reset
        "subtract":       exc_t -= reset * v_threshold;  inh_t -= reset * inh_t;
                          v_t -= reset * (-inh_{t-1})
        s_t = v_t > v_threshold

    ``tau`` is the float32 value snnTorch computes, ``log(alpha) / (log(beta) - log(alpha)) + 1``;
    it is stored, never recomputed, because float32 logs differ between libraries and the
    difference cancels badly when ``beta`` is close to ``alpha`` (``docs/neurons.md``).
    """

    TYPE = "AlphaLIF"
    SHAPE_FIELD = "tau"
    alpha: np.ndarray = spec("float_array")
    beta: np.ndarray = spec("float_array")
    tau: np.ndarray = spec("float_array")
    v_threshold: np.ndarray = spec("float_array")
    reset_mechanism: str | None = spec("str", optional=True, default=None)

    def __post_init__(self) -> None:
        for name in ("tau", "v_threshold"):
            setattr(self, name, as_float_array(getattr(self, name), name))
        _check_same_shape(self, ("v_threshold",), "tau")
        for name in ("alpha", "beta"):
            decay = _decay(self, name, "tau")
            if decay is None:
                raise T1CFormatError("is required", field=name)
            setattr(self, name, decay)
        if self.reset_mechanism is not None:
            self.reset_mechanism = as_choice(self.reset_mechanism, "reset_mechanism", RESET_MECHANISMS)


# -- checks shared by the neurons --------------------------------------------------------------
def _check_same_shape(node: Node, names: tuple[str, ...], reference: str) -> None:
    shape = getattr(node, reference).shape
    for name in names:
        if getattr(node, name).shape != shape:
            raise T1CFormatError(
                f"has shape {list(getattr(node, name).shape)} but {reference} has {list(shape)}", field=name
            )


def _decay(node: Node, name: str, reference: str) -> np.ndarray | None:
    """The optional decay field ``name`` as float32, of ``reference``'s shape, within [0, 1]."""
    value = as_float_array(getattr(node, name), name, allow_none=True)
    if value is None:
        return None
    shape = getattr(node, reference).shape
    if value.shape != shape:
        raise T1CFormatError(f"has shape {list(value.shape)} but {reference} has {list(shape)}", field=name)
    outside = (value < 0) | (value > 1)
    if outside.any():
        raise T1CFormatError(
            f"must be in [0, 1] (the decay per step), got {float(value[outside][0]):g}", field=name
        )
    return value


def _check_posinf_where_one(values: np.ndarray, name: str, decay: np.ndarray | None, decay_name: str) -> None:
    infinite = np.isposinf(values)
    if infinite.any() and (decay is None or (decay[infinite] != 1).any()):
        raise T1CFormatError(
            f"is +inf where {decay_name} is not 1; +inf is only the stored form of {decay_name} == 1 "
            f"(give {decay_name}, or a finite value)",
            field=name,
        )


def check_recurrent_integers(node: CubaLIF) -> None:
    """Coerce and check the optional integers of ``w_rec``: ``w_rec_int`` (of ``w_rec``'s shape)
    and a positive ``w_rec_scale`` come together, and only with ``w_rec``."""
    node.w_rec_int = as_int_array(node.w_rec_int, "w_rec_int")
    node.w_rec_scale = as_float(node.w_rec_scale, "w_rec_scale")
    if node.w_rec_int is None:
        if node.w_rec_scale is not None:
            raise T1CFormatError("w_rec_scale needs w_rec_int", field="w_rec_int")
        return
    if node.w_rec is None:
        raise T1CFormatError("needs w_rec (it holds w_rec's integers)", field="w_rec_int")
    check_integer_codes(node, "w_rec_int", "w_rec_scale", "w_rec")


def _check_reset_fields(node: LIF | CubaLIF) -> None:
    if node.reset_mechanism is not None:
        node.reset_mechanism = as_choice(node.reset_mechanism, "reset_mechanism", RESET_MECHANISMS)
    if node.reset_delay is not None:
        node.reset_delay = as_bool(node.reset_delay, "reset_delay")
