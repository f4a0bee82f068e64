"""Shape-only nodes: `Flatten`."""

from __future__ import annotations

import dataclasses

from .errors import T1CFormatError
from .node import Node, Shape, as_int, merged_sum_shape, spec


@dataclasses.dataclass(eq=False, repr=False)
class Flatten(Node):
    """Flattens dims ``start_dim..end_dim``, counted without the batch dimension.

    In torch terms: ``x.flatten(start_dim + 1, end_dim + 1 if end_dim >= 0 else end_dim)``.
    """

    TYPE = "Flatten"
    start_dim: int = spec("int", default=0)
    end_dim: int = spec("int", default=-1)

    def __post_init__(self) -> None:
        self.start_dim = as_int(self.start_dim, "start_dim")
        self.end_dim = as_int(self.end_dim, "end_dim")

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = merged_sum_shape(input_shapes)
        rank = len(shape)
        start = self.start_dim + rank if self.start_dim < 0 else self.start_dim
        end = self.end_dim + rank if self.end_dim < 0 else self.end_dim
        if not 0 <= start < max(rank, 1):
            raise T1CFormatError(
                f"{self.start_dim} is out of range for shape {list(shape)}", field="start_dim"
            )
        if not start <= end < max(rank, 1):
            raise T1CFormatError(f"{self.end_dim} is out of range for shape {list(shape)}", field="end_dim")
        flat = 1
        for d in shape[start : end + 1]:
            flat *= d
        return (*shape[:start], flat, *shape[end + 1 :])
