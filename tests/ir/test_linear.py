"""Dense synapses (`t1c.ir.linear`): Affine and SpikingAffine fields, checks, shape rule, files."""

from __future__ import annotations

import numpy as np
import pytest

from t1c import ir

from .factories import FACTORIES, assert_refused, f32, shape_through, through_file

W = f32(4, 3)

BAD = {
    "weight_bits_zero": (lambda: ir.SpikingAffine(weight=W, weight_bits=0), "weight_bits"),
    "weight_bits_33": (
        lambda: ir.SpikingAffine(weight=W, weight_bits=33, accumulator_bits=64),
        "weight_bits",
    ),
    "accumulator_65": (lambda: ir.SpikingAffine(weight=W, accumulator_bits=65), "accumulator_bits"),
    "accumulator_below_weight": (
        lambda: ir.SpikingAffine(weight=W, weight_bits=8, accumulator_bits=4),
        "accumulator_bits",
    ),
    "bits_not_int": (lambda: ir.SpikingAffine(weight=W, weight_bits=7.5), "weight_bits"),
    "unknown_spike_mode": (lambda: ir.SpikingAffine(weight=W, spike_mode="burst"), "spike_mode"),
    "affine_weight_1d": (lambda: ir.Affine(weight=np.ones(4)), "weight"),
    "affine_weight_strings": (lambda: ir.Affine(weight=np.array([["a"]])), "weight"),
    "affine_bias_length": (lambda: ir.Affine(weight=W, bias=np.zeros(3)), "bias"),
    "spiking_affine_bias_length": (lambda: ir.SpikingAffine(weight=W, bias=np.zeros(5)), "bias"),
    "spiking_affine_weight_3d": (lambda: ir.SpikingAffine(weight=np.ones((2, 3, 4))), "weight"),
    "affine_weight_int_shape": (
        lambda: ir.Affine(weight=W, weight_int=np.zeros((3, 4), dtype=int), weight_scale=1.0),
        "weight_int",
    ),
    "affine_weight_int_float": (
        lambda: ir.Affine(weight=W, weight_int=np.zeros((4, 3)), weight_scale=1.0),
        "weight_int",
    ),
    "affine_weight_scale_missing": (
        lambda: ir.Affine(weight=W, weight_int=np.zeros((4, 3), dtype=int)),
        "weight_scale",
    ),
    "affine_weight_scale_negative": (
        lambda: ir.Affine(weight=W, weight_int=np.zeros((4, 3), dtype=int), weight_scale=-1.0),
        "weight_scale",
    ),
    "affine_bias_int_without_weight_int": (
        lambda: ir.Affine(weight=W, bias_int=np.zeros(4, dtype=int)),
        "weight_int",
    ),
    "affine_bias_int_shape": (
        lambda: ir.Affine(
            weight=W,
            weight_int=np.zeros((4, 3), dtype=int),
            weight_scale=1.0,
            bias_int=np.zeros(2, dtype=int),
        ),
        "bias_int",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_constructor_refuses_impossible_value(case):
    assert_refused(*BAD[case])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ir.Affine(weight=np.ones(4)), "must be 2-D [out, in], got shape [4]"),
        (lambda: ir.Affine(weight=W, bias=np.zeros(3)), "has shape [3] but weight has 4 outputs"),
        (lambda: ir.SpikingAffine(weight=W, bias=np.zeros(2)), "has shape [2] but weight has 4 outputs"),
    ],
)
def test_weight_and_bias_messages_say_what_is_wrong(build, message):
    with pytest.raises(ir.T1CFormatError) as info:
        build()
    assert message in str(info.value)


def test_missing_bias_is_zeros_of_the_output_size():
    for node in (ir.Affine(weight=W), ir.SpikingAffine(weight=W)):
        assert node.bias.dtype == np.float32 and node.bias.shape == (4,) and not node.bias.any()


def test_spiking_affine_defaults():
    node = ir.SpikingAffine(weight=W)
    assert (node.spike_mode, node.weight_bits, node.accumulator_bits) == ("binary", 8, 16)


def test_bits_at_the_limits_are_accepted():
    node = ir.SpikingAffine(weight=W, weight_bits=32, accumulator_bits=64)
    assert (node.weight_bits, node.accumulator_bits) == (32, 64)
    node = ir.SpikingAffine(weight=W, weight_bits=1, accumulator_bits=1)
    assert (node.weight_bits, node.accumulator_bits) == (1, 1)


@pytest.mark.parametrize("cls", [ir.Affine, ir.SpikingAffine])
def test_output_replaces_the_last_axis(cls):
    node = cls(weight=f32(5, 3))
    assert shape_through(node, (3,)) == (5,)
    assert shape_through(node, (7, 3)) == (7, 5)  # leading axes pass through, as nn.Linear


@pytest.mark.parametrize("cls", [ir.Affine, ir.SpikingAffine])
def test_input_of_the_wrong_size_is_refused_naming_the_weight(cls):
    with pytest.raises(ir.T1CFormatError, match=r"expects inputs of size 3 but receives shape \[4\]") as info:
        shape_through(cls(weight=f32(5, 3)), (4,))
    assert (info.value.node, info.value.field) == ("n", "weight")


@pytest.mark.parametrize("kind", ["affine_int", "spiking_affine_int"])
def test_integer_weights_survive_a_file_exactly(kind, tmp_path):
    node = FACTORIES[kind]()
    back = through_file(node, tmp_path)
    np.testing.assert_array_equal(back.weight_int, node.weight_int)
    np.testing.assert_array_equal(back.bias_int, node.bias_int)
    assert back.weight_scale == node.weight_scale
    np.testing.assert_allclose(back.weight, back.weight_int * back.weight_scale, rtol=1e-6)


def test_spiking_affine_hints_survive_a_file(tmp_path):
    back = through_file(FACTORIES["spiking_affine"](), tmp_path)
    assert (back.spike_mode, back.weight_bits, back.accumulator_bits) == ("graded", 4, 12)
    assert back.weight_int is None and back.weight_scale is None and back.bias_int is None
