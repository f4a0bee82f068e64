"""convert.normalization: the one BatchNorm fold, shared by the export and the quantized path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from t1c.bridge import ExportError, to_ir
from t1c.bridge.convert.normalization import fold_batchnorm
from t1c.bridge.quantize import folded_copy


def test_batchnorm1d_is_folded_into_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5))
    model.train()
    for _ in range(3):  # move the running statistics away from (0, 1)
        model(torch.randn(16, 6) * 3 + 1)
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 2)
        model[1].bias.uniform_(-1, 1)
    graph = to_ir(model, torch.rand(4, 6))
    assert list(graph.nodes) == ["input", "0", "output"]
    node = graph.nodes["0"]
    x = torch.randn(8, 6)
    model.eval()
    folded = x @ torch.from_numpy(node.weight).T + torch.from_numpy(node.bias)
    torch.testing.assert_close(folded, model(x).detach(), rtol=1e-5, atol=1e-5)


def test_batchnorm2d_is_folded_into_conv_without_bias():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, affine=False))
    for _ in range(3):
        model(torch.randn(8, 3, 6, 6) * 2 - 1)
    node = to_ir(model, torch.rand(1, 3, 6, 6)).nodes["0"]
    x = torch.randn(2, 3, 6, 6)
    model.eval()
    folded = F.conv2d(x, torch.from_numpy(node.weight), torch.from_numpy(node.bias), padding=1)
    torch.testing.assert_close(folded, model(x).detach(), rtol=1e-5, atol=1e-5)


def test_batchnorm_that_cannot_be_folded_is_refused():
    with pytest.raises(ExportError, match=r"`1` \(BatchNorm1d\).*follows a Flatten"):
        to_ir(nn.Sequential(nn.Flatten(), nn.BatchNorm1d(6)), torch.rand(2, 2, 3))
    with pytest.raises(ExportError, match=r"`0` \(BatchNorm1d\).*must follow a Linear or Conv2d"):
        to_ir(nn.Sequential(nn.BatchNorm1d(3)), torch.rand(2, 3))
    no_stats = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(ExportError, match="track_running_stats=False"):
        to_ir(no_stats, torch.rand(2, 3))


def _trained_bn(channels: int, seed: int) -> nn.BatchNorm1d:
    torch.manual_seed(seed)
    bn = nn.BatchNorm1d(channels)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels))
        bn.running_var.copy_(torch.rand(channels) + 0.1)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    return bn.eval()


def test_fold_batchnorm_is_the_pair_in_float64():
    layer, bn = nn.Linear(5, 4), _trained_bn(4, 0)
    w, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
    weight, bias = fold_batchnorm(w, b, bn)
    assert weight.dtype == bias.dtype == np.float64
    x = torch.randn(8, 5, dtype=torch.float64)
    with torch.no_grad():
        pair = bn.double()(layer.double()(x))
    torch.testing.assert_close(x @ torch.from_numpy(weight).T + torch.from_numpy(bias), pair)
    _, no_bias = fold_batchnorm(w, None, bn)
    expected = bn.bias.double() - bn.running_mean.double() * bn.weight.double() / torch.sqrt(
        bn.running_var.double() + bn.eps
    )
    torch.testing.assert_close(torch.from_numpy(no_bias), expected)
    with pytest.raises(ValueError, match="channel counts differ"):
        fold_batchnorm(w, b, nn.BatchNorm1d(3))


def test_export_and_quantized_fold_give_the_same_bytes():
    layer, bn = nn.Linear(5, 4), _trained_bn(4, 1)
    node = to_ir(nn.Sequential(layer, bn), torch.rand(2, 5)).nodes["0"]
    copy = folded_copy(layer, bn)
    assert node.weight.tobytes() == copy.weight.detach().numpy().tobytes()
    assert node.bias.tobytes() == copy.bias.detach().numpy().tobytes()
