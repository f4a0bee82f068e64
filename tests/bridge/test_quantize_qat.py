"""quantize.qat: straight-through fake quantization, enable_qat / disable_qat."""

from __future__ import annotations

import copy

import torch
from torch import nn

from t1c.bridge import quantize as Q


def test_fake_quantize_forward_on_grid_backward_identity():
    torch.manual_seed(0)
    w = torch.randn(4, 3, requires_grad=True)
    out = Q.fake_quantize(w, 3)
    w_int, scale = Q.quantize_weights(w, 3)
    assert torch.equal(out, (w_int.double() * scale).float())
    (out * torch.arange(12.0).reshape(4, 3)).sum().backward()
    assert torch.equal(w.grad, torch.arange(12.0).reshape(4, 3))


def test_enable_and_disable_qat_keep_weights_on_grid():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Conv2d(1, 2, 3))
    Q.enable_qat(Q.enable_qat(net, weight_bits=3), weight_bits=3)  # idempotent
    assert Q.qat_enabled(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net[0](torch.ones(2, 5)).sum().backward()
    opt.step()
    for layer in net:
        w_int, scale = Q.quantize_weights(layer.weight, 3)
        assert torch.allclose(layer.weight.double(), w_int.double() * scale, atol=1e-6)
    Q.disable_qat(net)
    assert not Q.qat_enabled(net)
    assert type(net[0]) is nn.Linear and type(net[1]) is nn.Conv2d
    w_int, scale = Q.quantize_weights(net[0].weight, 3)
    assert torch.allclose(net[0].weight.double(), w_int.double() * scale, atol=1e-6)
    assert set(dict(net.named_parameters())) == {"0.weight", "0.bias", "1.weight", "1.bias"}


def test_disable_qat_on_a_copy_leaves_the_original_training():
    net = Q.enable_qat(nn.Sequential(nn.Linear(3, 2)), weight_bits=4)
    plain = Q.disable_qat(copy.deepcopy(net))
    assert type(plain[0]) is nn.Linear and Q.qat_enabled(net)
    assert torch.equal(net[0].weight, plain[0].weight)  # the original still has its weight
    net[0](torch.ones(1, 3)).sum().backward()
    assert net[0].parametrizations.weight.original.grad is not None


def _recurrent_executor():
    import snntorch as snn

    from t1c.bridge import ir_to_torch, to_ir

    torch.manual_seed(0)
    v = torch.tensor([0.5, -0.3, 0.1, 0.26])
    model = nn.Sequential(nn.Linear(3, 4), snn.RLeaky(beta=0.9, all_to_all=False, V=v, init_hidden=True))
    return ir_to_torch(to_ir(model, torch.rand(2, 3))).train()


def test_qat_rounds_a_cubalif_self_connection_as_a_weight():
    from t1c.bridge import CubaLIFModule

    executor = Q.enable_qat(_recurrent_executor(), weight_bits=2)
    neuron = executor.module_for("1")
    assert Q.qat_enabled(executor) and isinstance(neuron, CubaLIFModule)
    assert neuron.w_rec.tolist() == [0.5, -0.5, 0.0, 0.5]  # on the 2-bit grid, scale 0.5
    original = neuron.parametrizations["w_rec"].original
    xs = torch.rand(6, 2, 3) * 4
    executor.run_sequence(xs)[0].sum().backward()
    assert original.grad is not None and original.grad.abs().sum() > 0  # straight through
    twin = Q.quantize_executor(executor, weight_bits=2).module_for("1")  # the same codes
    assert type(twin) is CubaLIFModule and twin.w_rec.tolist() == [0.5, -0.5, 0.0, 0.5]
    plain = Q.disable_qat(copy.deepcopy(executor))
    assert not Q.qat_enabled(plain) and type(plain.module_for("1")) is CubaLIFModule
    assert plain.module_for("1").w_rec.tolist() == [0.5, -0.5, 0.0, 0.5]
    assert Q.qat_enabled(executor) and neuron.w_rec.tolist() == [
        0.5,
        -0.5,
        0.0,
        0.5,
    ]  # the original still trains
    assert set(dict(plain.named_parameters())) == set(dict(_recurrent_executor().named_parameters()))
