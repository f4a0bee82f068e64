"""convert.pooling: nn.MaxPool2d, nn.AvgPool2d, nn.Upsample <-> their nodes, and pool_node."""

from __future__ import annotations

import pytest
import torch
from test_export import only_node
from torch import nn

from t1c import ir
from t1c.bridge import ExportError, to_ir
from t1c.bridge.convert.pooling import pool_node
from t1c.bridge.importer import ir_to_torch


def test_pools_and_upsample_keep_all_parameters():
    model = nn.Sequential(
        nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True),
        nn.AvgPool2d((2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=False, count_include_pad=False),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Upsample(size=(7, 9), mode="bilinear", align_corners=True),
    )
    x = torch.rand(1, 2, 11, 10)
    graph = to_ir(model, x)
    mp, ap, up, us = (graph.nodes[k] for k in "0123")
    assert mp.kernel_size.tolist() == [3, 3] and mp.stride.tolist() == [2, 2] and mp.ceil_mode
    assert ap.kernel_size.tolist() == [2, 3] and ap.stride.tolist() == [1, 2]
    assert ap.padding.tolist() == [1, 1] and not ap.count_include_pad
    assert up.scale_factor == 2 and up.mode == "nearest"
    assert us.size.tolist() == [7, 9] and us.mode == "bilinear" and us.align_corners
    assert graph.output_shapes["output"] == tuple(model(x).shape[1:])


def test_pool_default_stride_is_kernel():
    node = only_node(to_ir(nn.Sequential(nn.MaxPool2d(2)), torch.rand(1, 1, 4, 4)))
    assert node.stride.tolist() == [2, 2]


def test_avgpool_divisor_override_is_refused():
    with pytest.raises(ExportError, match=r"`0` \(AvgPool2d\): divisor_override"):
        to_ir(nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), torch.rand(1, 1, 4, 4))


def test_upsample_fractional_scale_is_refused():
    with pytest.raises(ExportError, match="scale_factor"):
        to_ir(nn.Sequential(nn.Upsample(scale_factor=1.5)), torch.rand(1, 1, 4, 4))


def test_pool_node_takes_torch_arguments_by_name_and_defaults_the_stride():
    args = {
        "kernel_size": (2, 3),
        "stride": None,
        "padding": 1,
        "ceil_mode": True,
        "count_include_pad": False,
    }
    node = pool_node(ir.AvgPool2d, args.__getitem__)
    assert isinstance(node, ir.AvgPool2d) and node.stride.tolist() == [2, 3] and not node.count_include_pad
    args = {"kernel_size": 3, "stride": 1, "padding": 0, "dilation": 2, "ceil_mode": False}
    node = pool_node(ir.MaxPool2d, args.__getitem__)
    assert node.dilation.tolist() == [2, 2] and node.stride.tolist() == [1, 1]
    with pytest.raises(ir.T1CFormatError):
        pool_node(ir.MaxPool2d, {**args, "kernel_size": 0}.__getitem__)


def test_pools_import_back_with_the_same_arguments():
    model = nn.Sequential(
        nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.AvgPool2d(2, padding=1), nn.Upsample(size=(5, 4))
    )
    x = torch.rand(2, 1, 7, 7)
    net = ir_to_torch(to_ir(model, x))
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=0)
