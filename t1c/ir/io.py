"""Graph endpoints: `Input` and `Output`.

Both store a ``shape`` dataset on disk (batch excluded). In memory they follow NIR's
``input_type``/``output_type`` dicts, e.g. ``Input(input_type={"input": np.array([784])})``;
a plain shape is accepted as well.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .errors import T1CFormatError
from .node import Node, Shape, as_shape, merged_sum_shape


def _port_shape(value: Any, field: str) -> dict[str, np.ndarray]:
    if isinstance(value, dict):
        if len(value) != 1:
            raise T1CFormatError(f"must name exactly one port, got {list(value)}", field=field)
        ((key, shape),) = value.items()
        return {str(key): as_shape(shape, "shape")}
    return {field.split("_")[0]: as_shape(value, "shape")}


@dataclasses.dataclass(eq=False, repr=False)
class Input(Node):
    """Where a time step's input enters the graph: passes ``x_t`` on unchanged."""

    TYPE = "Input"
    input_type: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        self.input_type = _port_shape(self.input_type, "input_type")

    @property
    def shape(self) -> Shape:
        return tuple(int(d) for d in next(iter(self.input_type.values())))

    @classmethod
    def field_specs(cls) -> dict[str, tuple[str, bool]]:
        return {"shape": ("int_vector", False)}

    def to_fields(self) -> dict[str, Any]:
        return {"shape": np.asarray(self.shape, dtype=np.int64)}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Input:
        return cls(input_type={"input": fields["shape"]})

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        if input_shapes:
            raise T1CFormatError("an Input node cannot have incoming edges")
        return self.shape


@dataclasses.dataclass(eq=False, repr=False)
class Output(Node):
    """Marks what the graph returns. Its shape is inferred when not given."""

    TYPE = "Output"
    output_type: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.output_type is not None:
            self.output_type = _port_shape(self.output_type, "output_type")

    @property
    def shape(self) -> Shape | None:
        if self.output_type is None:
            return None
        return tuple(int(d) for d in next(iter(self.output_type.values())))

    @classmethod
    def field_specs(cls) -> dict[str, tuple[str, bool]]:
        return {"shape": ("int_vector", False)}

    def to_fields(self) -> dict[str, Any]:
        if self.shape is None:
            raise T1CFormatError("Output shape is unknown; run shape inference first", field="shape")
        return {"shape": np.asarray(self.shape, dtype=np.int64)}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Output:
        return cls(output_type={"output": fields["shape"]})

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = merged_sum_shape(input_shapes)
        if self.shape is not None and self.shape != shape:
            raise T1CFormatError(
                f"declares shape {list(self.shape)} but receives {list(shape)}", field="shape"
            )
        return shape
