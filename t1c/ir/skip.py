"""`Skip`: the node that joins or forwards branches (residual sums, concatenation)."""

from __future__ import annotations

import dataclasses

from .errors import T1CFormatError
from .node import Node, Shape, as_choice, merged_sum_shape, spec

SKIP_TYPES = ("residual", "concatenate", "passthrough")


@dataclasses.dataclass(eq=False, repr=False)
class Skip(Node):
    """``residual``: element-wise sum of the inputs; ``concatenate``: concatenation along
    the channel/feature dim (dim 0 without batch) in edge-list order; ``passthrough``:
    identity."""

    TYPE = "Skip"
    skip_type: str = spec("str", default="passthrough")

    def __post_init__(self) -> None:
        self.skip_type = as_choice(self.skip_type, "skip_type", SKIP_TYPES)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        if self.skip_type != "concatenate":
            if self.skip_type == "passthrough" and len(input_shapes) > 1:
                raise T1CFormatError(
                    f"a passthrough Skip takes one input, got {len(input_shapes)}", field="skip_type"
                )
            return merged_sum_shape(input_shapes)
        if not input_shapes:
            raise T1CFormatError("has no input")
        first = input_shapes[0]
        for other in input_shapes[1:]:
            if len(other) != len(first) or not first or other[1:] != first[1:]:
                raise T1CFormatError(
                    "concatenates inputs whose shapes differ beyond dim 0: "
                    f"{[list(s) for s in input_shapes]}",
                    field="skip_type",
                )
        if not first:
            raise T1CFormatError("cannot concatenate scalars", field="skip_type")
        return (sum(s[0] for s in input_shapes), *first[1:])
