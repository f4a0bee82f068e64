"""registry: converter lookup (custom_map first, subclasses that change behaviour), arity, contexts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from t1c import ir
from t1c.bridge import ExportError, to_ir
from t1c.bridge.convert import export_converters
from t1c.bridge.registry import (
    ArityCalls,
    ExportContext,
    NodeGroup,
    converter_arity,
    find_converter,
    overridden_base,
)


def test_a_subclass_that_changes_behaviour_does_not_get_its_base_converter():
    class Doubled(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    with pytest.raises(
        ExportError, match=r"`0` \(Doubled\) \(it subclasses Linear but changes its behaviour\)"
    ):
        to_ir(nn.Sequential(Doubled(3, 4)), torch.rand(2, 3))
    graph = to_ir(nn.Sequential(Doubled(3, 4)), torch.rand(2, 3), custom_map={Doubled: lambda m: None})
    assert graph.edges == [("input", "output")]


def test_one_argument_converter_from_the_guide_works():
    # The seed called fn(module, ctx) always: "takes 1 positional argument but 2 were given".
    def fn(module):
        return ir.SpikingAffine(
            weight=module.weight.detach().numpy(), bias=None, weight_bits=4, accumulator_bits=12
        )

    graph = to_ir(nn.Sequential(nn.Linear(3, 4)), torch.rand(2, 3), custom_map={nn.Linear: fn})
    assert isinstance(graph.nodes["0"], ir.SpikingAffine) and graph.nodes["0"].weight_bits == 4


def test_converter_arity_comes_from_the_signature_not_from_catching_type_errors():
    calls = []

    def two(module, ctx=None):  # binds two arguments: called with the context
        calls.append(ctx)
        return None

    to_ir(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), torch.rand(2, 3), custom_map={nn.Linear: two})
    assert [c.path for c in calls] == ["0", "1"]

    def broken(module):
        raise TypeError("a bug inside the converter")

    with pytest.raises(TypeError, match="a bug inside the converter"):  # not retried with other arguments
        to_ir(nn.Sequential(nn.Linear(3, 4)), torch.rand(2, 3), custom_map={nn.Linear: broken})
    with pytest.raises(ExportError, match=r"converter .* for Linear has the signature \(a, b, c\)"):
        to_ir(nn.Sequential(nn.Linear(3, 4)), torch.rand(2, 3), custom_map={nn.Linear: lambda a, b, c: None})
    with pytest.raises(ExportError, match=r"custom_map\[Linear\] is int, not a function"):
        to_ir(nn.Sequential(nn.Linear(3, 4)), torch.rand(2, 3), custom_map={nn.Linear: 3})


def test_converter_lookup_follows_the_mro():
    class MyLinear(nn.Linear):
        pass

    assert find_converter(MyLinear(2, 2), None, export_converters()) is export_converters()[nn.Linear]


# -- the functions themselves -----------------------------------------------------------------
def test_converter_arity_reads_the_signature():
    assert converter_arity(lambda module: None) == 1
    assert converter_arity(lambda module, ctx: None) == 2
    assert converter_arity(lambda module, ctx=None: None) == 2
    assert converter_arity(lambda *args: None) == 2
    assert converter_arity(max) == 2  # no readable signature: called with both
    with pytest.raises(ExportError, match=r"custom_map\[Linear\] is str"):
        converter_arity("convert", nn.Linear)


def test_arity_calls_read_each_signature_once():
    calls = ArityCalls()
    seen = []

    def one(module):
        seen.append(("one", module))

    def two(module, ctx):
        seen.append(("two", module, ctx))

    calls(one, "m", "ctx")
    calls(two, "m", "ctx")
    calls(one, "n", "ctx")
    assert seen == [("one", "m"), ("two", "m", "ctx"), ("one", "n")]
    assert len(calls._arity) == 2


def test_custom_map_wins_and_applies_to_subclasses_as_written():
    def default(module):
        return None

    def mine(module):
        return None

    class Doubled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    defaults = {nn.Linear: default}
    assert find_converter(nn.Linear(2, 2), {nn.Linear: mine}, defaults) is mine
    assert find_converter(Doubled(2, 2), {nn.Linear: mine}, defaults) is mine  # the user knows
    assert find_converter(Doubled(2, 2), None, defaults) is None  # the default does not describe it
    assert overridden_base(Doubled(2, 2), defaults) is nn.Linear
    assert overridden_base(nn.Linear(2, 2), defaults) is None
    assert find_converter(nn.ReLU(), None, defaults) is None


def test_export_context_fail_names_path_and_type():
    err = ExportContext(path="block.fc").fail(nn.Linear(2, 2), "no reason")
    assert isinstance(err, ExportError) and str(err) == "cannot export `block.fc` (Linear): no reason"


def test_a_node_group_checks_its_parts_and_edges():
    node = ir.Affine(weight=np.eye(2, dtype=np.float32), bias=None)
    with pytest.raises(ValueError, match=r"main part 'x' is not one of its nodes \['a'\]"):
        NodeGroup({"a": node}, main="x")
    with pytest.raises(ValueError, match=r"edge \('a', 'b'\) names a part it does not have"):
        NodeGroup({"a": node}, main="a", edges=(("a", "b"),))
    with pytest.raises(ValueError, match=r"part 'b' must be a non-empty name of a t1c.ir node"):
        NodeGroup({"a": node, "b": "Affine"}, main="a")


def test_a_user_converter_may_return_a_node_group_that_closes_a_cycle():
    def fed_back(module):  # the Linear, plus a feedback Affine (3 -> 2) on a back edge into it
        w, b = module.weight.detach().numpy(), module.bias.detach().numpy()
        feedback = ir.Affine(weight=np.full((2, 3), 0.25, dtype=np.float32), bias=None)
        return NodeGroup(
            {"feedback": feedback, "main": ir.Affine(weight=w, bias=b)},
            main="main",
            edges=(("feedback", "main"), ("main", "feedback")),
        )

    graph = to_ir(nn.Sequential(nn.Linear(2, 3)), torch.rand(2, 2), custom_map={nn.Linear: fed_back})
    assert list(graph.nodes) == ["input", "0.feedback", "0", "output"]
    assert graph.edges == [("input", "0"), ("0.feedback", "0"), ("0", "0.feedback"), ("0", "output")]
    assert graph.allow_cycles and graph.cyclic
