"""Convolutions (`t1c.ir.conv`): Conv2d and SepConv2d fields, checks, torch's shape rule, files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from t1c import ir
from t1c.ir.conv import conv_output_hw

from .factories import FACTORIES, assert_fields_survive, assert_refused, f32, shape_through

BAD = {
    "conv_weight_2d": (lambda: ir.Conv2d(weight=np.ones((3, 3))), "weight"),
    "conv_bias_length": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), bias=np.ones(3)), "bias"),
    "conv_stride_zero": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), stride=0), "stride"),
    "conv_stride_triple": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), stride=(1, 1, 1)), "stride"),
    "conv_padding_negative": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), padding=-1), "padding"),
    "conv_dilation_zero": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), dilation=(1, 0)), "dilation"),
    "conv_groups_zero": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), groups=0), "groups"),
    "conv_groups_not_dividing": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), groups=3), "groups"),
    "conv_weight_int_shape": (
        lambda: ir.Conv2d(
            weight=np.ones((4, 1, 3, 3)), weight_int=np.ones((4, 1, 3), dtype=int), weight_scale=1.0
        ),
        "weight_int",
    ),
    "sepconv_depthwise_shape": (
        lambda: ir.SepConv2d(depthwise_weight=np.ones((3, 2, 3, 3)), pointwise_weight=np.ones((4, 3, 1, 1))),
        "depthwise_weight",
    ),
    "sepconv_pointwise_shape": (
        lambda: ir.SepConv2d(depthwise_weight=np.ones((3, 1, 3, 3)), pointwise_weight=np.ones((4, 2, 1, 1))),
        "pointwise_weight",
    ),
    "sepconv_pointwise_not_1x1": (
        lambda: ir.SepConv2d(depthwise_weight=np.ones((3, 1, 3, 3)), pointwise_weight=np.ones((4, 3, 3, 3))),
        "pointwise_weight",
    ),
    "sepconv_depthwise_bias": (
        lambda: ir.SepConv2d(
            depthwise_weight=np.ones((3, 1, 3, 3)),
            pointwise_weight=np.ones((4, 3, 1, 1)),
            depthwise_bias=np.ones(4),
        ),
        "depthwise_bias",
    ),
    "sepconv_pointwise_bias": (
        lambda: ir.SepConv2d(
            depthwise_weight=np.ones((3, 1, 3, 3)),
            pointwise_weight=np.ones((4, 3, 1, 1)),
            pointwise_bias=np.ones(3),
        ),
        "pointwise_bias",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_constructor_refuses_impossible_value(case):
    assert_refused(*BAD[case])


def test_missing_bias_is_zeros_of_the_output_size():
    conv = ir.Conv2d(weight=np.ones((5, 2, 3, 3)))
    sep = ir.SepConv2d(depthwise_weight=np.ones((3, 1, 3, 3)), pointwise_weight=np.ones((6, 3, 1, 1)))
    for bias, n in ((conv.bias, 5), (sep.depthwise_bias, 3), (sep.pointwise_bias, 6)):
        assert bias.dtype == np.float32 and bias.shape == (n,) and not bias.any()


def test_int_becomes_pair_and_arrays_become_float32():
    conv = ir.Conv2d(weight=np.ones((2, 1, 3, 3), dtype=np.float64), stride=2, padding=[1], dilation=(2, 3))
    assert conv.weight.dtype == np.float32
    for field, want in (("stride", [2, 2]), ("padding", [1, 1]), ("dilation", [2, 3])):
        value = getattr(conv, field)
        assert value.dtype == np.int64 and value.tolist() == want
    assert conv.groups == 1


def test_in_channels_counts_every_group():
    assert ir.Conv2d(weight=np.ones((6, 2, 3, 3)), groups=3).in_channels == 6


@pytest.mark.parametrize("kind", ["conv2d", "conv2d_int", "sepconv2d"])
def test_fields_survive_a_file(kind, tmp_path):
    assert_fields_survive(FACTORIES[kind](), tmp_path)


@pytest.mark.parametrize(
    ("size", "k", "s", "p", "d"),
    list(itertools.product([5, 8], [1, 3], [1, 2, 3], [0, 1], [1, 2])),
)
def test_output_size_rule_counts_the_windows(size, k, s, p, d):
    got = conv_output_hw((size, size), [k, k], [s, s], [p, p], [d, d])
    span = d * (k - 1) + 1
    windows = len(range(0, size + 2 * p - span + 1, s))  # every full window in the padded input
    assert got == (windows, windows)


torch = pytest.importorskip("torch")
F = torch.nn.functional

CONV_CASES = [
    # (in_shape [C,H,W], out_ch, kernel, stride, padding, dilation, groups)
    ((3, 11, 9), 4, (3, 3), (1, 1), (0, 0), (1, 1), 1),
    ((4, 12, 13), 6, (3, 5), (2, 3), (1, 2), (1, 1), 2),
    ((2, 16, 16), 8, (3, 3), (2, 2), (1, 1), (2, 2), 1),
    ((6, 7, 10), 6, (1, 4), (3, 1), (0, 3), (1, 2), 6),
    ((1, 5, 5), 2, (5, 5), (1, 1), (0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_shape_matches_torch(case):
    (c, h, w), out_ch, k, s, p, d, groups = case
    weight = f32(out_ch, c // groups, *k)
    node = ir.Conv2d(weight=weight, stride=s, padding=p, dilation=d, groups=groups)
    want = F.conv2d(
        torch.zeros(1, c, h, w), torch.from_numpy(weight), stride=s, padding=p, dilation=d, groups=groups
    )
    assert shape_through(node, (c, h, w)) == tuple(want.shape[1:])


@pytest.mark.parametrize("case", CONV_CASES[:4])
def test_sepconv2d_shape_matches_torch(case):
    (c, h, w), out_ch, k, s, p, d, _ = case
    dw, pw = f32(c, 1, *k), f32(out_ch, c, 1, 1)
    node = ir.SepConv2d(depthwise_weight=dw, pointwise_weight=pw, stride=s, padding=p, dilation=d)
    mid = F.conv2d(torch.zeros(1, c, h, w), torch.from_numpy(dw), stride=s, padding=p, dilation=d, groups=c)
    want = F.conv2d(mid, torch.from_numpy(pw))
    assert shape_through(node, (c, h, w)) == tuple(want.shape[1:])


def test_conv_that_leaves_no_output_is_refused():
    with pytest.raises(ir.T1CFormatError, match="empty output") as info:
        shape_through(ir.Conv2d(weight=np.ones((2, 1, 5, 5))), (1, 3, 3))
    assert info.value.node == "n"


def test_conv_with_wrong_channels_is_refused():
    with pytest.raises(ir.T1CFormatError, match="\\[4, H, W\\]"):
        shape_through(ir.Conv2d(weight=np.ones((2, 2, 3, 3)), groups=2), (3, 8, 8))


def test_sepconv_with_wrong_channels_is_refused_naming_the_depthwise_weight():
    node = ir.SepConv2d(depthwise_weight=np.ones((3, 1, 3, 3)), pointwise_weight=np.ones((4, 3, 1, 1)))
    with pytest.raises(
        ir.T1CFormatError, match=r"expects inputs of shape \[3, H, W\] but receives \[2, 8, 8\]"
    ) as info:
        shape_through(node, (2, 8, 8))
    assert (info.value.node, info.value.field) == ("n", "depthwise_weight")
