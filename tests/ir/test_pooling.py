"""Spatial resampling (`t1c.ir.pooling`): MaxPool2d, AvgPool2d, Upsample fields, checks,
torch's shape rules, files."""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest

from t1c import ir

from .factories import (
    FACTORIES,
    assert_fields_survive,
    assert_refused,
    graph_around,
    shape_through,
)

BAD = {
    "maxpool_kernel_zero": (lambda: ir.MaxPool2d(kernel_size=0), "kernel_size"),
    "maxpool_stride_zero": (lambda: ir.MaxPool2d(kernel_size=2, stride=0), "stride"),
    "maxpool_padding_too_big": (lambda: ir.MaxPool2d(kernel_size=2, padding=2), "padding"),
    "maxpool_ceil_mode_7": (lambda: ir.MaxPool2d(kernel_size=2, ceil_mode=7), "ceil_mode"),
    "maxpool_dilation_zero": (lambda: ir.MaxPool2d(kernel_size=2, dilation=0), "dilation"),
    "avgpool_kernel_triple": (lambda: ir.AvgPool2d(kernel_size=(2, 2, 2)), "kernel_size"),
    "avgpool_padding_too_big": (lambda: ir.AvgPool2d(kernel_size=(2, 4), padding=(1, 3)), "padding"),
    "avgpool_count_include_pad_str": (
        lambda: ir.AvgPool2d(kernel_size=2, count_include_pad="yes"),
        "count_include_pad",
    ),
    "upsample_nothing": (lambda: ir.Upsample(), "scale_factor"),
    "upsample_scale_zero": (lambda: ir.Upsample(scale_factor=0), "scale_factor"),
    "upsample_size_zero": (lambda: ir.Upsample(size=(0, 4)), "size"),
    "upsample_mode": (lambda: ir.Upsample(scale_factor=2, mode="bicubic"), "mode"),
    "upsample_align_nearest": (lambda: ir.Upsample(scale_factor=2, align_corners=True), "align_corners"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_constructor_refuses_impossible_value(case):
    assert_refused(*BAD[case])


@pytest.mark.parametrize("cls", [ir.MaxPool2d, ir.AvgPool2d])
def test_padding_beyond_half_the_kernel_says_both(cls):
    with pytest.raises(ir.T1CFormatError, match=r"padding \[2, 1\] exceeds half the kernel \[3, 3\]"):
        cls(kernel_size=3, padding=(2, 1))


def test_pool_stride_defaults_to_kernel_size():
    assert ir.MaxPool2d(kernel_size=3).stride.tolist() == [3, 3]
    assert ir.AvgPool2d(kernel_size=(2, 4)).stride.tolist() == [2, 4]
    assert ir.MaxPool2d(kernel_size=3, stride=1).stride.tolist() == [1, 1]


def test_default_stride_is_written_as_the_kernel_size(tmp_path):
    path = tmp_path / "pool.t1c"
    ir.write(path, graph_around(ir.AvgPool2d(kernel_size=(2, 4))))
    with h5py.File(path, "r") as f:
        assert f["graph/nodes/node/stride"][()].tolist() == [2, 4]
        assert "dilation" not in f["graph/nodes/node"]  # AvgPool2d has none


@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d", "upsample_scale", "upsample_size"])
def test_fields_survive_a_file(kind, tmp_path):
    assert_fields_survive(FACTORIES[kind](), tmp_path)


def test_upsample_size_wins_and_scale_factor_is_not_written(tmp_path):
    node = ir.Upsample(scale_factor=2, size=(5, 6))
    assert node.scale_factor is None
    path = tmp_path / "up.t1c"
    ir.write(path, graph_around(node))
    with h5py.File(path, "r") as f:
        assert "scale_factor" not in f["graph/nodes/node"]
    assert ir.read(path).output_shapes["node"] == (3, 5, 6)


def test_upsample_takes_torchs_float_scale_factor_when_it_is_whole():
    assert ir.Upsample(scale_factor=2.0).scale_factor == 2
    assert type(ir.Upsample(scale_factor=np.float32(3.0)).scale_factor) is int
    with pytest.raises(ir.T1CFormatError) as info:
        ir.Upsample(scale_factor=1.5)
    assert info.value.field == "scale_factor"


def test_pool_that_leaves_no_output_is_refused_naming_the_kernel():
    with pytest.raises(ir.T1CFormatError, match=r"leaves an empty output of size \[0, 0\]") as info:
        shape_through(ir.MaxPool2d(kernel_size=4), (1, 3, 3))
    assert (info.value.node, info.value.field) == ("n", "kernel_size")


@pytest.mark.parametrize("node", [ir.MaxPool2d(kernel_size=2), ir.Upsample(scale_factor=2)])
def test_image_primitive_on_a_vector_is_refused(node):
    with pytest.raises(ir.T1CFormatError, match="\\[C, H, W\\]") as info:
        shape_through(node, (16,))
    assert info.value.node == "n"


torch = pytest.importorskip("torch")
F = torch.nn.functional

POOL_CASES = list(
    itertools.product(
        [(3, 9, 9), (2, 10, 7), (1, 6, 6)],  # input
        [(2, 2, 0), (3, 2, 1), (3, 3, 1), (2, 1, 1)],  # kernel, stride, padding
        [False, True],  # ceil_mode
    )
)


@pytest.mark.parametrize("in_shape,kernel_stride_pad,ceil_mode", POOL_CASES)
def test_pool_shapes_match_torch(in_shape, kernel_stride_pad, ceil_mode):
    k, s, p = kernel_stride_pad
    x = torch.zeros(1, *in_shape)
    for dilation in (1, 2):
        want = F.max_pool2d(x, k, s, p, dilation=dilation, ceil_mode=ceil_mode).shape[1:]
        node = ir.MaxPool2d(kernel_size=k, stride=s, padding=p, dilation=dilation, ceil_mode=ceil_mode)
        assert shape_through(node, in_shape) == tuple(want), ("max", dilation)
    want = F.avg_pool2d(x, k, s, p, ceil_mode=ceil_mode).shape[1:]
    node = ir.AvgPool2d(kernel_size=k, stride=s, padding=p, ceil_mode=ceil_mode)
    assert shape_through(node, in_shape) == tuple(want)


def test_ceil_mode_drops_a_window_that_starts_in_the_right_padding():
    # torch's special case: with ceil_mode the last window must start inside the input.
    x = torch.zeros(1, 1, 5, 5)
    want = F.max_pool2d(x, 2, 2, 1, ceil_mode=True).shape[1:]
    assert shape_through(
        ir.MaxPool2d(kernel_size=2, stride=2, padding=1, ceil_mode=True), (1, 5, 5)
    ) == tuple(want)
    assert tuple(want) == (1, 3, 3)


def test_pool_default_stride_matches_torch():
    x = torch.zeros(1, 2, 9, 7)
    want = F.max_pool2d(x, 3).shape[1:]
    assert shape_through(ir.MaxPool2d(kernel_size=3), (2, 9, 7)) == tuple(want)


@pytest.mark.parametrize(
    "node_kwargs,torch_kwargs",
    [
        ({"scale_factor": 2}, {"scale_factor": 2, "mode": "nearest"}),
        ({"scale_factor": 3, "mode": "bilinear"}, {"scale_factor": 3, "mode": "bilinear"}),
        ({"size": (7, 5)}, {"size": (7, 5), "mode": "nearest"}),
        (
            {"size": 6, "mode": "bilinear", "align_corners": True},
            {"size": (6, 6), "mode": "bilinear", "align_corners": True},
        ),
    ],
)
def test_upsample_shape_matches_torch(node_kwargs, torch_kwargs):
    want = F.interpolate(torch.zeros(1, 3, 4, 5), **torch_kwargs).shape[1:]
    assert shape_through(ir.Upsample(**node_kwargs), (3, 4, 5)) == tuple(want)
