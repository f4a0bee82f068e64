"""The base of every T1C-IR primitive, and the one registry that `read`/`write` use.

A primitive is a dataclass whose fields carry their on-disk kind in the field metadata
(``kind``: one of :data:`FIELD_KINDS`). Serialisation therefore needs no per-type code:
``write`` asks a node for :meth:`Node.to_fields`, ``read`` looks the type name up in
:data:`REGISTRY` and calls :meth:`Node.from_fields`. Each primitive checks its own
fields in ``__post_init__`` and knows its own shape rule (:meth:`Node.output_shape`),
so shape logic lives in one place: the node.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from .errors import T1CFormatError

Shape = tuple[int, ...]

#: On-disk kinds of fields: float32 array of any rank, integer array of any rank,
#: int64 array of rank 1 (a shape), int64 array of two (an (h, w) pair), int64 scalar,
#: float scalar, bool scalar, string, and a whole graph (``nodes/`` and ``edges/`` in the
#: node's own group, as under ``/graph``: a nested ``Graph`` node).
FIELD_KINDS = ("float_array", "int_array", "int_vector", "int_pair", "int", "float", "bool", "str", "graph")

#: Type name -> primitive class, filled by ``Node.__init_subclass__``.
REGISTRY: dict[str, type[Node]] = {}


def spec(kind: str, *, optional: bool = False, omit_default: bool = False, **kwargs: Any) -> Any:
    """A dataclass field with its on-disk kind; optional fields are omitted when None.

    ``omit_default=True`` (with ``optional=True`` and a ``default``): the field is also
    left out of the file when it equals its default (Python ``==``), and a reader fills
    the default back in; this is how the toolchain writes its ANN types' scalars.
    """
    if kind not in FIELD_KINDS:
        raise ValueError(f"unknown field kind {kind!r}")
    meta = {"kind": kind, "optional": optional, "omit_default": omit_default}
    return dataclasses.field(metadata=meta, **kwargs)


@dataclasses.dataclass(eq=False)
class Node:
    """Base class of the primitives. Subclasses set ``TYPE`` (the on-disk type name)."""

    TYPE: ClassVar[str] = ""
    #: Free-form entries stored in the node's ``metadata/`` subgroup (same encoding as the
    #: graph's metadata); they do not change what the node computes.
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict, kw_only=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.TYPE:
            REGISTRY[cls.TYPE] = cls

    # -- serialisation ---------------------------------------------------------------
    @classmethod
    def field_specs(cls) -> dict[str, tuple[str, bool]]:
        """Field name -> (kind, optional) for every on-disk field of this type."""
        return {
            f.name: (f.metadata["kind"], f.metadata["optional"])
            for f in dataclasses.fields(cls)
            if "kind" in f.metadata
        }

    def to_fields(self) -> dict[str, Any]:
        """The datasets of this node's group, as numpy values or Python scalars."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if "kind" not in f.metadata:
                continue
            value = getattr(self, f.name)
            if value is None or (f.metadata.get("omit_default") and _equal(value, f.default)):
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Node:
        """Build from datasets already checked against :meth:`field_specs`."""
        specs = cls.field_specs()
        return cls(**{k: v for k, v in fields.items() if k in specs})

    # -- shapes ----------------------------------------------------------------------
    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        """Shape (batch excluded) of this node's output given its inputs' shapes.

        The default: a node with several inputs receives their sum, so they must agree,
        and the node passes that shape on.
        """
        return merged_sum_shape(input_shapes)

    def size_hint_note(self, shape: Shape) -> str | None:
        """Why a size hint of this node disagrees with the shape it receives, or None.

        Graph shape inference warns (once per node) with this text and goes on: a hint
        (``features`` of the ANN types) is never a reason to refuse a graph.
        """
        return None

    def param_shapes(self) -> dict[str, Shape]:
        """Shapes of the required array fields; part of what "same topology" means.

        Optional extension fields (integer weights, snnTorch neuron fields) are left out:
        adding them does not change the topology.
        """
        specs = self.field_specs()
        return {
            name: tuple(np.shape(value))
            for name, value in self.to_fields().items()
            if isinstance(value, np.ndarray) and not specs.get(name, ("", True))[1]
        }

    def __repr__(self) -> str:
        parts = []
        for name, value in self.to_fields().items():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                parts.append(f"{name}=<{value.dtype}{list(value.shape)}>")
            elif isinstance(value, np.ndarray):
                parts.append(f"{name}={value.tolist()}")
            else:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _equal(value: Any, default: Any) -> bool:
    """``value == default`` as the toolchain compares them (arrays: same shape and values).

    A float default also matches its float32 rounding: the toolchain compares a
    ``np.float32(1e-5)`` in float32 and leaves it out, while ``1e-5 + 1e-12`` is written.
    """
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return bool(np.array_equal(value, default))
    if isinstance(default, float) and isinstance(value, float) and value == float(np.float32(default)):
        return True
    return bool(value == default)


# -- field coercion, shared by the primitives' __post_init__ -----------------------------
#
# One rule for non-finite values: every float a node stores (arrays through
# ``as_float_array``, scalars through ``as_float``) must be finite, and a value that only
# becomes infinite when it is stored as float32 (a float64 of 1e300) is refused as an
# overflow. A primitive whose semantics give +inf a meaning asks for it explicitly
# (``allow_posinf=True``) and says where it is allowed (LIF: tau = r = +inf for beta == 1).
def as_float_array(
    value: Any, field: str, *, allow_none: bool = False, allow_posinf: bool = False
) -> np.ndarray | None:
    """A float32 array (copy-free when already float32) whose values are all finite.

    Args:
        value: anything ``np.asarray`` takes (a torch tensor too).
        field: the field name, for messages.
        allow_none: return None for None instead of refusing it.
        allow_posinf: let ``+inf`` through (the caller checks where it is legitimate);
            NaN, ``-inf`` and float32 overflow are still refused.

    Raises:
        T1CFormatError: not numbers, NaN/inf, or a value beyond float32's range.
    """
    if value is None:
        if allow_none:
            return None
        raise T1CFormatError("is required", field=field)
    if hasattr(value, "detach"):  # a torch tensor; no torch import here
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise T1CFormatError(f"must hold numbers, got dtype {arr.dtype}", field=field)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    check_finite(out, field, source=arr, allow_posinf=allow_posinf)
    return out


def check_finite(
    values: np.ndarray, field: str, *, source: np.ndarray | None = None, allow_posinf: bool = False
) -> None:
    """Refuse NaN, infinities (``+inf`` only with ``allow_posinf``) and float32 overflow.

    Args:
        values: the float array as stored.
        field: the field name, for messages.
        source: the values before conversion to ``values``' dtype, to tell an overflow
            (finite source, infinite result) from an infinity that was there already.
        allow_posinf: accept ``+inf`` that was ``+inf`` in the source too.
    """
    if values.size == 0:
        return
    flat = values.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        # One BLAS pass: NaN and inf propagate, so a finite result proves every value
        # finite; an overflowing sum of squares only sends us to the exact check below.
        if np.isfinite(np.dot(flat, flat)):
            return
    bad = ~np.isfinite(values)
    src = None if source is None else np.asarray(source)
    src_float = src is not None and src.dtype.kind == "f" and src.shape == values.shape
    if allow_posinf:
        keep = np.isposinf(values)
        if src_float:
            keep &= np.isposinf(src)
        bad &= ~keep
    if not bad.any():
        return
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"at index {list(index)}" if values.ndim else ""
    if src is not None and src.shape == values.shape and np.isfinite(src[index]):
        raise T1CFormatError(
            f"value {float(src[index]):g} {where} overflows float32 (largest finite value "
            f"{float(np.finfo(np.float32).max):g}); rescale it",
            field=field,
        )
    allowed = "NaN and -inf" if allow_posinf else "NaN and +/-inf"
    raise T1CFormatError(
        f"holds {float(values[index])} {where}; {allowed} are refused in every float field",
        field=field,
    )


def as_int_array(value: Any, field: str) -> np.ndarray | None:
    """An integer array (int32 when it fits, else int64), or None."""
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise T1CFormatError(f"must hold integers, got dtype {arr.dtype}", field=field)
    small = arr.size == 0 or (arr.min() >= -(2**31) and arr.max() < 2**31)
    return np.ascontiguousarray(arr, dtype=np.int32 if small else np.int64)


def check_integer_codes(node: Any, codes: str, scale: str, values: str) -> None:
    """The integer codes ``codes`` of the float array ``values``, already coerced and present,
    have ``values``' shape, and their ``scale`` is a positive number (``values ~= codes * scale``)."""
    ints, floats = getattr(node, codes), getattr(node, values)
    if ints.shape != floats.shape:
        raise T1CFormatError(
            f"has shape {list(ints.shape)} but {values} has {list(floats.shape)}", field=codes
        )
    factor = getattr(node, scale)
    if factor is None or not factor > 0:
        raise T1CFormatError(f"must be a positive number when {codes} is given", field=scale)


def as_float(
    value: Any, field: str, *, minimum: float | None = None, maximum: float | None = None
) -> float | None:
    """A finite Python float (None stays None), optionally within ``[minimum, maximum]``."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "fiu":
        raise T1CFormatError(f"must be a number, got {value!r}", field=field)
    out = float(arr.reshape(()))
    if not np.isfinite(out):
        raise T1CFormatError(f"must be finite, got {out}; NaN and +/-inf are refused", field=field)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        raise T1CFormatError(f"must be in [{minimum}, {maximum}], got {out:g}", field=field)
    return out


def as_int(value: Any, field: str, *, minimum: int | None = None) -> int:
    arr = np.asarray(value)
    if arr.ndim != 0 and arr.size == 1:
        arr = arr.reshape(())
    if arr.ndim != 0 or arr.dtype.kind not in "iub":
        raise T1CFormatError(f"must be an integer, got {value!r}", field=field)
    out = int(arr)
    if minimum is not None and out < minimum:
        raise T1CFormatError(f"must be >= {minimum}, got {out}", field=field)
    return out


def as_pair(value: Any, field: str, *, minimum: int = 0) -> np.ndarray:
    """An int64 (h, w) pair from an int or a 1- or 2-sequence, like torch's _pair."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iub":
        raise T1CFormatError(f"must be integers, got {value!r}", field=field)
    if arr.ndim == 0:
        arr = np.array([int(arr), int(arr)])
    if arr.shape == (1,):
        arr = np.repeat(arr, 2)
    if arr.shape != (2,):
        raise T1CFormatError(f"must be an int or a pair of ints, got {value!r}", field=field)
    arr = arr.astype(np.int64)
    if (arr < minimum).any():
        raise T1CFormatError(f"must be >= {minimum}, got {arr.tolist()}", field=field)
    return arr


def as_shape(value: Any, field: str) -> np.ndarray:
    """An int64 shape vector with positive entries."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise T1CFormatError(f"must be a 1-D array of ints, got {value!r}", field=field)
    if (arr <= 0).any():
        raise T1CFormatError(f"dimensions must be positive, got {arr.tolist()}", field=field)
    if int(np.prod(arr.astype(np.float64))) > 2**40:
        raise T1CFormatError(f"shape {arr.tolist()} is implausibly large", field=field)
    return arr.astype(np.int64)


def as_bool(value: Any, field: str) -> bool:
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "biu" or int(arr) not in (0, 1):
        raise T1CFormatError(f"must be a boolean, got {value!r}", field=field)
    return bool(arr)


def as_choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or value not in choices:
        raise T1CFormatError(f"must be one of {list(choices)}, got {value!r}", field=field)
    return value


def merged_sum_shape(input_shapes: list[Shape]) -> Shape:
    """The shape of the sum of several inputs; they must all agree."""
    if not input_shapes:
        raise T1CFormatError("has no input")
    first = input_shapes[0]
    for other in input_shapes[1:]:
        if other != first:
            raise T1CFormatError(
                f"receives the sum of inputs of different shapes {[list(s) for s in input_shapes]}"
            )
    return first
