"""What both directions of :mod:`t1c.nir` share: the error, the optional ``nir`` import,
the ``dt`` check, the metadata keys t1c writes into NIR nodes, and small value helpers."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import numpy as np

from ..ir.errors import T1CFormatError

#: What to run when the optional ``nir`` package is missing.
INSTALL_HINT = "pip install 'nir>=1.0,<1.1' (from a clone: pip install -e '.[nir]')"

#: NIR node metadata keys t1c.nir writes (and reads back) beside NIR's own fields.
META_TYPE = "t1c_type"  # the other side's type where the two differ (SpikingAffine, Skip; NIR's Linear)
META_STRICT = "t1c_strict_threshold"  # False: a `>=` neuron, threshold moved one float32 ulp down
META_BETA = "t1c_beta"  # snnTorch's exact decay of a LIF or CubaLIF exported from a `beta` node
META_ALPHA = "t1c_alpha"  # snnTorch's exact current decay of a CubaLIF (with META_BETA)
META_INPUT_GAIN = "t1c_input_gain"  # a CubaLIF's exact input gain (Lapicque; with META_BETA)
META_RESET = "t1c_reset_mechanism"  # a CubaLIF's reset, written by an approximate export only
META_RESET_DELAY = "t1c_reset_delay"  # a CubaLIF's reset_delay, written with META_RESET
META_NIR_FIELDS = "t1c_nir_fields"  # on a T1C-IR node: the NIR fields it was derived from (IF's r, threshold)
META_JOIN = "t1c_nir_sum"  # on a Skip(residual): from_nir's join of the edges NIR sums into a node
SEPARATOR = "."  # between a nested NIRGraph's name and its nodes' names


class NIRConversionError(T1CFormatError):
    """A NIR graph or node with no exact T1C-IR form, or a T1C-IR node with no exact NIR form.

    A :class:`~t1c.ir.T1CFormatError` (and so a ``ValueError``): ``node`` names the node
    at fault, ``file`` the file it came from; the message says why and what to do.
    """


def import_nir():
    """The ``nir`` module, or an ImportError saying how to install it."""
    try:
        import nir
    except ImportError as err:
        raise ImportError(f"t1c.nir needs the optional 'nir' package (NIR 1.0): {INSTALL_HINT}") from err
    return nir


def check_dt(dt: Any, call: str) -> float:
    """``dt`` as a positive finite float, or a TypeError/ValueError naming ``call``.

    Args:
        dt: the time step given by the caller (``None`` when missing).
        call: the signature to repeat in the message, e.g. ``"to_nir(graph_or_path, dt)"``.

    Returns:
        ``float(dt)``.

    Raises:
        TypeError: ``dt`` missing or not a number.
        ValueError: ``dt`` not positive or not finite.
    """
    if dt is None:
        raise TypeError(
            f"{call}: dt is required: the time step (in NIR's time unit, e.g. seconds) at which "
            f"NIR's continuous-time neurons are discretized, e.g. {call.split('(')[0]}(..., dt=1e-3)"
        )
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating, np.integer)):
        raise TypeError(f"{call}: dt must be a positive number, got {dt!r}")
    dt = float(dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"{call}: dt must be a positive finite number, got {dt!r}")
    return dt


class FailsAtNode:
    """``ctx.fail(name, reason)``, shared by both directions' contexts."""

    file: str | None

    def fail(self, name: str, reason: str) -> NIRConversionError:
        """The error for node ``name``."""
        return NIRConversionError(reason, file=self.file, node=name)


def refusal(reason: str) -> Callable[[str, Any, FailsAtNode], NoReturn]:
    """A converter (either direction) that refuses every node it is given, saying ``reason``.

    Args:
        reason: why the node's type has no exact form on the other side.

    Returns:
        ``fn(name, node, ctx)`` raising ``ctx.fail(name, "<node type>: <reason>")``.
    """

    def refuse(name: str, node: Any, ctx: FailsAtNode) -> NoReturn:
        raise ctx.fail(name, f"{type(node).__name__}: {reason}")

    return refuse


def f64(value: Any) -> np.ndarray:
    """``value`` as a float64 array (NIR's fields are computed on in float64)."""
    return np.asarray(value, dtype=np.float64)


def ints(values: Any) -> tuple[int, ...]:
    """``values`` as a tuple of Python ints (shapes, strides)."""
    return tuple(int(d) for d in values)


def node_metadata(node: Any) -> dict[str, Any]:
    """A NIR node's ``metadata`` dict, or ``{}`` when it has none."""
    meta = getattr(node, "metadata", None)
    return meta if isinstance(meta, dict) else {}


#: Node metadata keys t1c.nir interprets (they are not copied as plain metadata).
_OWN_KEYS = frozenset(
    {
        META_TYPE,
        META_STRICT,
        META_BETA,
        META_ALPHA,
        META_INPUT_GAIN,
        META_RESET,
        META_RESET_DELAY,
        META_NIR_FIELDS,
        META_JOIN,
        "spike_mode",
        "weight_bits",
        "accumulator_bits",
        "skip_type",
    }
)


def plain_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A node's free-form metadata that both formats can store (numbers, strings, bools,
    numeric arrays, dicts of them), without the keys t1c.nir writes for itself."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or key in _OWN_KEYS:
            continue
        if isinstance(value, Mapping):
            out[key] = plain_metadata(value)
        elif isinstance(value, (str, bool, int, float, np.generic)) or (
            isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
        ):
            out[key] = value
    return out
