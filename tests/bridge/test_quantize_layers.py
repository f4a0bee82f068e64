"""quantize.layers: QuantizedLinear and QuantizedConv2d against the pure functions they wrap."""

from __future__ import annotations

import pytest
import torch
from test_quantize import _spikes
from torch import nn

from t1c.bridge import quantize as Q


@pytest.mark.parametrize(
    "edit",
    [
        "spikes",
        "counts",
        "negative",
        "half",
        "sixteenths",
        "fraction",
        "nan",
        "inf",
        "-inf",
        "tiny",
        "too_large",
        "-0.0",
    ],
)
def test_quantized_linear_module_float32_path_is_the_float64_function(edit):
    """QuantizedLinear accumulates inputs on a power-of-two grid in float32 only when exact; the
    odd element sits in the second 64k block of the input, which the grid check reads block by
    block (a half or sixteenths keep every sum exact in float32 here, a third does not)."""
    torch.manual_seed(3)
    w_int, scale = Q.quantize_weights(torch.randn(10, 16), 8)  # a narrow layer takes the float32 path too
    b_int = Q.quantize_bias(torch.randn(10) * 0.1, scale, 32)
    layer = Q.QuantizedLinear(w_int, b_int, scale, 8, 32)
    x = _spikes(5000, 16, seed=4)  # 80k elements: two blocks
    odd = {
        "counts": 7.0,
        "negative": -3.0,
        "half": 0.5,
        "sixteenths": 3 / 16,
        "fraction": 1 / 3,
        "nan": float("nan"),
        "inf": float("inf"),
        "-inf": float("-inf"),
        "tiny": 1e-30,
        "too_large": 2.0**24,
        "-0.0": -0.0,
    }.get(edit)
    if odd is not None:
        x[4500, 3] = odd
    exact = edit in ("spikes", "counts", "negative", "half", "sixteenths", "-0.0")
    assert (layer._float32_sum_bound(x, layer._operands()[2]) is not None) == exact
    expected = Q.quantized_linear(x, w_int, b_int, scale, 32)  # float64 accumulator
    got = layer(x)
    assert got.dtype == torch.float32
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.nan_to_num(), expected.nan_to_num())


def test_the_float32_grid_is_the_finest_power_of_two_step_that_keeps_sums_exact():
    """Multiples of ``2**-s`` take the float32 path while ``max(1, |x|) * reach * 2**s`` stays
    below ``2**24``; half that step does not."""
    w_int, b_int = torch.tensor([[100, -37, 5]]), torch.tensor([11])
    layer = Q.QuantizedLinear(w_int, b_int, 0.01, 8, 32)
    reach = layer._operands()[2]  # 142 + 11: sums within 2**8, so steps of 2**-16
    assert reach == 153
    for step, exact in ((2.0**-16, True), (2.0**-17, False)):
        x = torch.tensor([[1.0, 0.0, 1.0], [step, 1 - step, -3 * step]])
        assert (layer._float32_sum_bound(x, reach) is not None) == exact
        assert torch.equal(layer(x), Q.quantized_linear(x, w_int, b_int, 0.01, 32))


def test_quantized_linear_module_follows_replaced_weights():
    """The float32 operands are cached per weight buffer: a buffer freed and replaced (its
    memory possibly reused at the same address) is not mistaken for the cached one."""
    g = torch.Generator().manual_seed(5)
    layer = Q.QuantizedLinear(torch.randint(-100, 100, (64, 128), generator=g), None, 0.01, 8, 32)
    x = _spikes(8, 128, seed=6)
    layer(x)
    for _ in range(10):
        w_new = torch.randint(-100, 100, (64, 128), generator=g)
        layer.weight_int = None  # the old buffer is freed unless something holds it
        layer.weight_int = w_new.clone()
        assert torch.equal(layer(x), Q.quantized_linear(x, w_new, layer.bias_int, 0.01, 32))


def test_quantized_linear_graded_input_saturates_in_scale_units():
    w_int, b_int, scale = torch.tensor([[3, -2]]), torch.tensor([1]), 0.25
    x = torch.tensor([[0.5, 0.25], [10.0, 0.0]])
    out = Q.quantized_linear(x, w_int, b_int, scale, accumulator_bits=5)
    # 0.5*3 - 0.25*2 + 1 = 2.0 ; 10*3 + 1 = 31 -> saturated at 15
    assert out.flatten().tolist() == [2.0 * scale, 15 * scale]


def test_quantized_linear_high_precision_matches_float():
    torch.manual_seed(0)
    lin = nn.Linear(16, 4)
    x = _spikes(3, 16, seed=1)
    q = Q.QuantizedLinear.from_linear(lin, weight_bits=24, accumulator_bits=64)
    assert torch.allclose(q(x), lin(x), atol=1e-5)


def test_quantized_conv_module_matches_float_at_high_precision():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    x = _spikes(1, 2, 8, 8, seed=2)
    q = Q.QuantizedConv2d.from_conv(conv, weight_bits=24, accumulator_bits=64)
    assert torch.allclose(q(x), conv(x), atol=1e-5)
    assert "stride=(2, 2)" in repr(q)


_CONV_GEOMETRIES = [
    {"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1},
    {"stride": (2, 1), "padding": (0, 2), "dilation": (1, 2), "groups": 2},
    {"stride": (1, 2), "padding": (2, 0), "dilation": (2, 1), "groups": 4},
]


def _conv_layer(geometry: dict, weight_bits: int = 8, accumulator_bits: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = 2 ** (weight_bits - 1) - 1
    w_int = torch.randint(-q, q + 1, (8, 4 // geometry["groups"], 3, 3), generator=g)
    b_int = torch.randint(-3 * q, 3 * q + 1, (8,), generator=g)
    return Q.QuantizedConv2d(w_int, b_int, 0.0071, weight_bits, accumulator_bits, **geometry)


def _conv_inputs(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    x = torch.rand(70, 4, 9, 8, generator=g)  # 70 samples: several chunks
    return {
        "spikes": (x < 0.3).float(),
        "counts": torch.floor(x * 5),
        "sixteenths": torch.floor(x * 17) / 16,  # images of 17 grey levels, as the digits
        "float64 spikes": (x < 0.3).double(),
        "graded": x,
        "negative graded": (x - 0.5) * 1e3,
    }[kind]


@pytest.mark.parametrize("geometry", _CONV_GEOMETRIES)
@pytest.mark.parametrize(
    "kind", ["spikes", "counts", "sixteenths", "float64 spikes", "graded", "negative graded"]
)
def test_quantized_conv_module_float32_path_is_the_float64_function(kind, geometry, monkeypatch):
    """Spikes, counts and grey levels accumulate in float32 (the float64 function is not
    called), graded inputs in float64; both give the float64 function's result bit for bit."""
    layer, x = _conv_layer(geometry), _conv_inputs(kind)
    expected = Q.quantized_conv2d(x, layer.weight_int, layer.bias_int, layer.scale, 32, **geometry)
    exact = "graded" not in kind
    assert (layer._float32_sum_bound(x, layer._operands()[2]) is not None) == exact
    if exact:
        monkeypatch.setattr("t1c.bridge.quantize.layers.quantized_conv2d", None)  # not called
    got = layer(x)
    assert got.dtype == x.dtype
    assert torch.equal(got, expected)


@pytest.mark.parametrize("geometry", _CONV_GEOMETRIES)
def test_quantized_conv_module_saturates_at_its_accumulator_bits(geometry):
    """A narrow accumulator saturates in the float32 path as in the float64 function."""
    layer, x = _conv_layer(geometry, weight_bits=6, accumulator_bits=8, seed=1), _conv_inputs("counts")
    high = 2**7 - 1
    assert layer._float32_sum_bound(x, layer._operands()[2]) > high  # sums can pass the limit
    expected = Q.quantized_conv2d(x, layer.weight_int, layer.bias_int, layer.scale, 8, **geometry)
    got = layer(x)
    assert torch.equal(got, expected)
    assert (got == high * layer.scale).any() and (got == -(high + 1) * layer.scale).any()


def test_quantized_conv_module_takes_the_float64_path_when_onednn_rounds():
    """oneDNN set to bf16 math for float32 convolutions: spikes take the float64 accumulator."""
    layer, x = _conv_layer(_CONV_GEOMETRIES[0]), _conv_inputs("spikes")
    expected = layer(x)
    assert layer._float32_exact(x)
    conv = torch.backends.mkldnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = "bf16"
    try:
        assert not layer._float32_exact(x)
        assert torch.equal(layer(x), expected)
    finally:
        conv.fp32_precision = before


def test_a_cubalif_self_connection_is_quantized_as_a_weight_and_its_parameters_stay_float():
    import numpy as np
    import snntorch as snn

    from t1c.bridge import ir_to_torch, to_ir

    v = torch.tensor([0.5, -0.3, 0.1, 0.26])
    model = nn.Sequential(nn.Linear(3, 4), snn.RLeaky(beta=0.9, all_to_all=False, V=v, init_hidden=True))
    graph = to_ir(model, torch.rand(2, 3))
    executor = ir_to_torch(graph)
    for twin in (Q.quantize_executor(executor, weight_bits=2), Q.ir_to_quantized(graph, weight_bits=2)):
        neuron = twin.module_for("1")
        scale = 0.5  # max|V| / (2**(2-1) - 1)
        np.testing.assert_array_equal(
            neuron.w_rec.detach().numpy(), np.array([1, -1, 0, 1], np.float32) * scale
        )
        assert torch.equal(neuron.beta, executor.module_for("1").beta)  # the neuron's parameters: float
    assert torch.equal(executor.module_for("1").w_rec.detach(), v)  # the original is untouched


def _rleaky_graph(v: torch.Tensor):
    import snntorch as snn

    from t1c.bridge import to_ir

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), snn.RLeaky(beta=0.9, all_to_all=False, V=v, init_hidden=True))
    return to_ir(model, torch.rand(2, 3))


def test_the_file_carries_a_self_connections_integers_and_the_simulation_uses_them(tmp_path):
    import numpy as np

    from t1c import ir
    from t1c.bridge import ir_to_torch

    graph = _rleaky_graph(torch.tensor([0.5, -0.3, 0.1, 0.26]))
    with_ints = Q.attach_integer_weights(graph, weight_bits=2)
    assert graph.nodes["1"].w_rec_int is None  # a copy
    node = with_ints.nodes["1"]
    np.testing.assert_array_equal(node.w_rec_int, [1, -1, 0, 1])  # max|V| / 1 = 0.5 per code
    assert node.w_rec_scale == 0.5 and node.w_rec.tolist() == graph.nodes["1"].w_rec.tolist()
    ir.write(tmp_path / "q.t1c", with_ints)
    reread = ir.read(tmp_path / "q.t1c")
    xs = (torch.rand(30, 2, 3, generator=torch.Generator().manual_seed(1)) * 3).round()
    with torch.no_grad():
        simulated = Q.quantize_executor(ir_to_torch(graph), weight_bits=2).run_sequence(xs)[0]
        assert torch.equal(Q.ir_to_quantized(reread, weight_bits=2).run_sequence(xs)[0], simulated)
    # the stored integers win over a re-quantization of the floats (and over weight_bits)
    node = reread.nodes["1"]
    node.w_rec_int, node.w_rec_scale = np.array([3, 0, -2, 1]), 0.25
    twin = Q.ir_to_quantized(reread, weight_bits=2).module_for("1")
    np.testing.assert_array_equal(twin.w_rec.detach().numpy(), [0.75, 0.0, -0.5, 0.25])


def test_a_cubalif_without_self_connection_gets_no_integers():
    import snntorch as snn

    from t1c.bridge import to_ir

    model = nn.Sequential(nn.Linear(3, 4), snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True))
    graph = to_ir(model, torch.rand(2, 3))
    node = Q.attach_integer_weights(graph, weight_bits=4).nodes["1"]
    assert node.w_rec is None and node.w_rec_int is None and node.w_rec_scale is None
    assert node.to_fields().keys() == graph.nodes["1"].to_fields().keys()  # nothing more is written


def test_a_cubalif_self_connection_in_a_users_module_is_refused_by_name():
    import snntorch as snn

    from t1c import ir
    from t1c.bridge import CubaLIFModule, ir_to_torch, to_ir

    class Mine(nn.Module):  # a user's module for the node
        def __init__(self, node):
            super().__init__()
            self.inner = CubaLIFModule.from_node(node)

        def forward(self, *args, **kwargs):
            return self.inner(*args, **kwargs)

    v = torch.tensor([0.5, -0.3, 0.1, 0.26])
    model = nn.Sequential(nn.Linear(3, 4), snn.RLeaky(beta=0.9, all_to_all=False, V=v, init_hidden=True))
    graph = to_ir(model, torch.rand(2, 3))
    executor = ir_to_torch(graph, node_map={ir.CubaLIF: Mine})
    with pytest.raises(TypeError, match="node '1': CubaLIF with w_rec runs in Mine"):
        Q.ir_to_quantized(graph, weight_bits=2, executor=executor)


def test_an_input_tracked_by_autograd_takes_the_float64_path_with_the_same_values():
    """The float32 path scales in place, which autograd refuses: a tracked input goes through
    the float64 accumulator (gradients flow) and gets the same values."""
    layers = {
        "conv": (_conv_layer(_CONV_GEOMETRIES[0]), _conv_inputs("spikes")),
        "linear": (Q.QuantizedLinear(torch.randint(-9, 9, (5, 7)), None, 0.1, 8, 32), _spikes(20, 7, seed=8)),
    }
    for layer, x in layers.values():
        tracked = x.clone().requires_grad_()
        got = layer(tracked)
        got.sum().backward()
        assert torch.equal(got, layer(x))
        assert tracked.grad is not None and tracked.grad.abs().sum() > 0
