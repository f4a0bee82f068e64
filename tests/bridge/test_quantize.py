"""Quantized simulation against a brute-force integer reference, and on the fixture graphs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from t1c import ir
from t1c.bridge import quantize as Q
from t1c.bridge.quantize.integers import scaled_output


# -- brute-force references: Python ints, nested loops -----------------------------------
def _sat(value: int, acc_bits: int) -> int:
    return max(-(2 ** (acc_bits - 1)), min(2 ** (acc_bits - 1) - 1, value))


def reference_linear(x, w_int, b_int, acc_bits):
    """Integer sums ``sum_i x[b,i] * w[o,i] + bias[o]``, saturated, as nested int loops."""
    x, w, b = x.tolist(), w_int.tolist(), b_int.tolist()
    return [
        [_sat(sum(int(x[n][i]) * w[o][i] for i in range(len(w[o]))) + b[o], acc_bits) for o in range(len(w))]
        for n in range(len(x))
    ]


def reference_conv2d(x, w_int, b_int, acc_bits, stride, padding):
    """Direct convolution over integer lists with zero padding, saturated per output element."""
    x, w, b = x.tolist(), w_int.tolist(), b_int.tolist()
    batch, cin, height, width = len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])
    cout, kh, kw = len(w), len(w[0][0]), len(w[0][0][0])
    oh = (height + 2 * padding - kh) // stride + 1
    ow = (width + 2 * padding - kw) // stride + 1
    out = [[[[0] * ow for _ in range(oh)] for _ in range(cout)] for _ in range(batch)]
    for n in range(batch):
        for o in range(cout):
            for r in range(oh):
                for c in range(ow):
                    total = b[o]
                    for ci in range(cin):
                        for i in range(kh):
                            for j in range(kw):
                                y, z = r * stride + i - padding, c * stride + j - padding
                                if 0 <= y < height and 0 <= z < width:
                                    total += int(x[n][ci][y][z]) * w[o][ci][i][j]
                    out[n][o][r][c] = _sat(total, acc_bits)
    return out


def _saturating_weights(*shape: int) -> torch.Tensor:
    """Rows of one sign (alternating) so sums grow with fan-in and narrow accumulators saturate; row 0 mixed."""
    sign = torch.tensor([1.0 if o % 2 else -1.0 for o in range(shape[0])]).reshape(
        -1, *[1] * (len(shape) - 1)
    )
    w = sign * (torch.randn(*shape).abs() + 1.0)
    w[0] = torch.randn(*shape[1:])
    return w


def _spikes(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.5).float()


# -- quantize_weights / quantize_bias / saturate -----------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 8, 16])
def test_quantize_weights_symmetric_grid(bits):
    torch.manual_seed(bits)
    w = torch.randn(7, 5)
    w_int, scale = Q.quantize_weights(w, bits)
    q = 2 ** (bits - 1) - 1
    assert w_int.dtype == torch.int64
    assert scale == pytest.approx(float(w.abs().max()) / q)
    assert int(w_int.abs().max()) == q
    assert torch.allclose(w_int.double() * scale, w.double(), atol=scale / 2 + 1e-12)


def test_quantize_weights_rounds_half_to_even():
    w = torch.tensor([7.0, 0.5, 1.5, 2.5, -0.5, -2.5])  # scale 1 at 4 bits (max 7)
    w_int, scale = Q.quantize_weights(w, 4)
    assert scale == 1.0
    assert w_int.tolist() == [7, 0, 2, 2, 0, -2]


def test_quantize_weights_one_bit_is_sign_with_mean_scale():
    w = torch.tensor([0.5, -1.5, 0.0, 2.0])
    w_int, scale = Q.quantize_weights(w, 1)
    assert w_int.tolist() == [1, -1, 1, 1]
    assert scale == pytest.approx(1.0)


def test_quantize_weights_all_zero_has_unit_scale():
    w_int, scale = Q.quantize_weights(torch.zeros(3, 2), 8)
    assert scale == 1.0 and not w_int.any()


@pytest.mark.parametrize("bits", [0, 33, 2.5, True])
def test_quantize_weights_rejects_bad_widths(bits):
    with pytest.raises(ValueError, match="weight_bits"):
        Q.quantize_weights(torch.ones(2), bits)


def test_quantize_weights_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        Q.quantize_weights(torch.tensor([1.0, float("nan")]), 8)


def test_quantize_bias_uses_weight_scale_and_accumulator_range():
    b = torch.tensor([0.26, -0.74, 1000.0, -1000.0])
    b_int = Q.quantize_bias(b, 0.5, accumulator_bits=6)
    assert b_int.tolist() == [1, -1, 31, -32]
    assert Q.quantize_bias(None, 0.5, 8, n=3).tolist() == [0, 0, 0]


def test_saturate_clamps_to_twos_complement_range():
    acc = torch.tensor([-200, -128, 0, 127, 300])
    assert Q.saturate(acc, 8).tolist() == [-128, -128, 0, 127, 127]
    big = torch.tensor([2**62, -(2**62)], dtype=torch.int64)
    assert Q.saturate(big, 64).tolist() == [2**62, -(2**62)]


# -- quantized_linear / quantized_conv2d vs. the integer loops ---------------------------
@pytest.mark.parametrize(("bits", "acc_bits"), [(2, 4), (4, 7), (8, 12), (16, 19), (8, 32)])
def test_quantized_linear_matches_integer_reference(bits, acc_bits):
    torch.manual_seed(bits * 100 + acc_bits)
    w, b = _saturating_weights(8, 64), torch.randn(8) * 0.3
    w_int, scale = Q.quantize_weights(w, bits)
    b_int = Q.quantize_bias(b, scale, acc_bits)
    x = _spikes(5, 64, seed=bits).double()  # float64 out: acc * scale with a single rounding
    out = Q.quantized_linear(x, w_int, b_int, scale, acc_bits)
    expected = torch.tensor(reference_linear(x, w_int, b_int, acc_bits), dtype=torch.float64)
    got = out / scale
    assert torch.equal(torch.round(got), expected)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-9)
    assert torch.allclose(Q.quantized_linear(x.float(), w_int, b_int, scale, acc_bits), out.float())
    if acc_bits < 32:  # the narrow accumulators really saturate in this test
        assert (expected.abs() >= 2 ** (acc_bits - 1) - 1).any()


@pytest.mark.parametrize("batch", [2, 27])
@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 0)])
@pytest.mark.parametrize(("bits", "acc_bits"), [(2, 3), (4, 5), (8, 10), (16, 17)])
def test_quantized_conv2d_matches_integer_reference(bits, acc_bits, stride, padding, batch, monkeypatch):
    """Also over a batch that goes through F.conv2d in chunks of 8 samples, each saturated."""
    monkeypatch.setattr("t1c.bridge.quantize.integers._CONV_CHUNK_ELEMENTS", 64)
    torch.manual_seed(bits)
    w, b = _saturating_weights(3, 2, 3, 3), torch.randn(3) * 0.2
    w_int, scale = Q.quantize_weights(w, bits)
    b_int = Q.quantize_bias(b, scale, acc_bits)
    x = _spikes(batch, 2, 6, 6, seed=bits).double()
    out = Q.quantized_conv2d(x, w_int, b_int, scale, acc_bits, stride=stride, padding=padding)
    expected = torch.tensor(reference_conv2d(x, w_int, b_int, acc_bits, stride, padding), dtype=torch.float64)
    assert out.shape == expected.shape
    assert torch.equal(torch.round(out / scale), expected)
    assert torch.allclose(out / scale, expected, rtol=1e-12, atol=1e-9)
    assert (expected.abs() >= 2 ** (acc_bits - 1) - 1).any()


def _random_conv(seed: int) -> dict:
    """A convolution of random geometry: stride 1/2, padding 0/1/2, dilation 1/2, groups 1/2/all
    channels, kernels 1/3/5 (not square), weights at 2..16 bits, and graded inputs (negative,
    tiny, large, of mixed magnitudes; float32 or float64) over a batch of several chunks."""
    rng = np.random.default_rng(seed)
    channels = int(rng.choice([1, 2, 4, 6]))
    groups = int(rng.choice([g for g in (1, 2, channels) if channels % g == 0]))
    k_h, k_w = (int(k) for k in rng.choice([1, 3, 5], 2))
    stride, padding, dilation = (tuple(int(v) for v in rng.choice(c, 2)) for c in ([1, 2], [0, 1, 2], [1, 2]))
    size = [
        d * (k - 1) + 1 - 2 * p + int(rng.integers(0, 6)) for d, k, p in zip(dilation, (k_h, k_w), padding)
    ]
    q = 2 ** (int(rng.integers(2, 17)) - 1) - 1
    g = torch.Generator().manual_seed(seed)
    w_int = torch.randint(
        -q, q + 1, (groups * int(rng.integers(1, 4)), channels // groups, k_h, k_w), generator=g
    )
    x = torch.rand(int(rng.choice([9, 40, 131])), channels, *(max(1, s) for s in size), generator=g)
    x = x.to(torch.float64 if seed % 2 else torch.float32)
    x = {0: x - 0.5, 1: x * 1e-30, 2: (x - 0.5) * 1e6, 3: (x - 0.5) * torch.exp(10 * (x - 0.3))}[seed % 4]
    b_int = torch.randint(-4 * q, 4 * q + 1, (w_int.shape[0],), generator=g)
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return {"x": x, "w_int": w_int, "b_int": b_int, "geometry": geometry}


@pytest.mark.parametrize("seed", range(48))
def test_quantized_conv2d_in_chunks_is_one_float64_conv_bit_for_bit(seed, monkeypatch):
    """Graded inputs: the chunked float64 accumulator gives F.conv2d's float64 sums for the
    whole batch, bit for bit (float64 outputs show every bit of them)."""
    monkeypatch.setattr("t1c.bridge.quantize.integers._CONV_CHUNK_ELEMENTS", 1 << 10)
    c = _random_conv(seed)
    x, w, b, geometry = c["x"], c["w_int"].double(), c["b_int"].double(), c["geometry"]
    for bits in (12, 48):
        whole = torch.nn.functional.conv2d(x.double(), w, b, **geometry)
        expected = scaled_output(whole, 0.0123, bits, x)
        got = Q.quantized_conv2d(x, c["w_int"], c["b_int"], 0.0123, bits, **geometry)
        assert got.dtype == x.dtype
        assert torch.equal(got, expected)


# -- graphs and executors (need t1c.bridge.importer) -------------------------------------
@pytest.fixture
def spiking_affine(fixtures_dir):
    return ir.read(fixtures_dir / "spiking_affine.t1c"), np.load(fixtures_dir / "spiking_affine.npz")


def _ir_to_torch():
    return pytest.importorskip("t1c.bridge.importer").ir_to_torch


def test_spiking_affine_fixture_runs_in_quantized_simulation(spiking_affine):
    graph, data = spiking_affine
    executor = _ir_to_torch()(graph)
    before = {k: v.clone() for k, v in executor.state_dict().items()}
    qexec = Q.quantize_executor(executor)
    assert all(torch.equal(v, executor.state_dict()[k]) for k, v in before.items())
    bits = {
        name: (qexec.module_for(name).weight_bits, qexec.module_for(name).accumulator_bits)
        for name in ("sa1", "sa2", "sa3")
    }
    assert bits == {"sa1": (8, 16), "sa2": (4, 12), "sa3": (2, 8)}
    xs = torch.from_numpy(data["x"])
    with torch.no_grad():
        ys_q, _ = qexec.run_sequence(xs)
        ys_f, _ = executor.run_sequence(xs)
    assert torch.allclose(ys_f, torch.from_numpy(data["y"]), atol=1e-4)
    sa3 = qexec.module_for("sa3")
    units = ys_q.double() / sa3.scale  # the output is sa3's saturated accumulator
    assert torch.allclose(units, torch.round(units), atol=1e-6)
    assert units.abs().max() <= 128
    assert not torch.allclose(ys_q, ys_f)  # 2-bit weights really change the result


def test_quantize_executor_converts_affine_and_conv(fixtures_dir):
    graph = ir.read(fixtures_dir / "conv_snn.t1c")
    qexec = Q.quantize_executor(_ir_to_torch()(graph), weight_bits=6, accumulator_bits=20)
    assert isinstance(qexec.module_for("conv1"), Q.QuantizedConv2d)
    assert isinstance(qexec.module_for("fc"), Q.QuantizedLinear)
    assert qexec.module_for("fc").weight_bits == 6
    ys, _ = qexec.run_sequence(torch.from_numpy(np.load(fixtures_dir / "conv_snn.npz")["x"]))
    assert ys.shape == (6, 3, 10)


@pytest.mark.parametrize("name", ["spiking_affine", "conv_snn", "mlp_snn"])
def test_integers_in_file_reproduce_simulation_bit_for_bit(fixtures_dir, tmp_path, name):
    graph = ir.read(fixtures_dir / f"{name}.t1c")
    with_ints = Q.attach_integer_weights(graph, weight_bits=5, accumulator_bits=14)
    assert all(getattr(n, "weight_int", None) is None for n in graph.nodes.values())  # a copy
    ir.write(tmp_path / "q.t1c", with_ints)
    reread = ir.read(tmp_path / "q.t1c")
    for node_name, node in reread.nodes.items():
        if isinstance(node, (ir.Affine, ir.SpikingAffine, ir.Conv2d)):
            assert node.weight_int is not None and node.weight_scale > 0, node_name
    xs = torch.from_numpy(np.load(fixtures_dir / f"{name}.npz")["x"])
    simulated = Q.quantize_executor(_ir_to_torch()(graph), weight_bits=5, accumulator_bits=14)
    from_file = Q.ir_to_quantized(reread)
    float_executor = _ir_to_torch()(reread)
    in_place = Q.ir_to_quantized(reread, executor=float_executor)  # the float executor, quantized in place
    assert in_place is float_executor and not in_place.training
    with torch.no_grad():
        assert torch.equal(simulated.run_sequence(xs)[0], from_file.run_sequence(xs)[0])
        assert torch.equal(in_place.run_sequence(xs)[0], from_file.run_sequence(xs)[0])


# -- hybrid graphs: ANN nodes float, BatchNorm kept float or folded ------------------------
def _python_codes(w: torch.Tensor, bits: int) -> tuple[list, float]:
    """Symmetric per-tensor codes with Python's round (half to even), as the docs state them."""
    q = 2 ** (bits - 1) - 1
    flat = [float(v) for v in w.double().flatten().tolist()]
    scale = max(abs(v) for v in flat) / q
    codes = [max(-q, min(q, round(v / scale))) for v in flat]
    return torch.tensor(codes).reshape(w.shape).tolist(), scale


def _reference_dense(x: list, w: torch.Tensor, b: torch.Tensor, bits: int, acc_bits: int) -> list:
    """One quantized dense layer on Python numbers: codes, bias at their scale, saturated sum times scale."""
    w_int, scale = _python_codes(w, bits)
    b_int = [round(float(v) / scale) for v in b.double().tolist()]
    return [
        [
            _sat_real(sum(xi * wi for xi, wi in zip(row, w_int[o])) + b_int[o], acc_bits) * scale
            for o in range(len(w_int))
        ]
        for row in x
    ]


def _sat_real(value: float, acc_bits: int) -> float:
    return max(-(2 ** (acc_bits - 1)), min(2 ** (acc_bits - 1) - 1, value))


def _hybrid_mlp(seed: int = 0) -> tuple[nn.Sequential, ir.Graph]:
    """Linear -> BatchNorm1d (random statistics) -> ReLU -> Linear, exported with ``hybrid=True``."""
    from t1c.bridge import to_ir

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(9, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 4))
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(6))
        bn.running_var.copy_(torch.rand(6) + 0.2)
        bn.weight.copy_(torch.randn(6))
        bn.bias.copy_(torch.randn(6))
    return model.eval(), to_ir(model.eval(), torch.zeros(1, 9), hybrid=True)


@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize(("bits", "acc_bits"), [(4, 6), (8, 32)])
def test_hybrid_mlp_matches_brute_force_reference(fold, bits, acc_bits):
    """BatchNorm kept float after the integer layer, or folded into it exactly, against Python loops."""
    model, graph = _hybrid_mlp()
    fc1, bn, fc2 = model[0], model[1], model[3]
    x = _spikes(7, 9, seed=1)
    rows = [[int(v) for v in row] for row in x.tolist()]
    g = (bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)).tolist()
    mean, beta = bn.running_mean.double().tolist(), bn.bias.double().tolist()
    if fold:  # w' = g w, b' = g (b - mean) + beta, stored as float32 like the layer
        w1 = (fc1.weight.double() * torch.tensor(g).reshape(-1, 1)).float()
        b1 = torch.tensor(
            [g[o] * (float(fc1.bias.detach()[o]) - mean[o]) + beta[o] for o in range(6)]
        ).float()
        hidden = _reference_dense(rows, w1, b1, bits, acc_bits)
    else:
        acc = _reference_dense(rows, fc1.weight, fc1.bias, bits, acc_bits)
        hidden = [
            [(float(np.float32(v)) - mean[o]) * g[o] + beta[o] for o, v in enumerate(row)] for row in acc
        ]
    hidden = [[max(v, 0.0) for v in row] for row in hidden]
    expected = torch.tensor(
        _reference_dense(hidden, fc2.weight, fc2.bias, bits, acc_bits), dtype=torch.float64
    )

    executor = _ir_to_torch()(graph)
    for qexec in (
        Q.quantize_executor(executor, bits, acc_bits, fold_batchnorm=fold),
        Q.ir_to_quantized(graph, bits, acc_bits, fold_batchnorm=fold),
    ):
        with torch.no_grad():
            out = qexec(x)
        assert torch.allclose(out.double(), expected, rtol=1e-5, atol=1e-4)
        bn_module = qexec.module_for(
            [n for n, node in graph.nodes.items() if isinstance(node, ir.BatchNorm1d)][0]
        )
        assert isinstance(bn_module, nn.Identity) == fold
    assert executor.module_for(graph.input_names[0]) is None  # the float executor is untouched
    assert not any(isinstance(m, (Q.QuantizedLinear, nn.Identity)) for m in executor.modules())


@pytest.mark.parametrize("affine", [True, False])
def test_folded_copy_is_the_same_function(affine):
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=affine)
    bn = nn.BatchNorm2d(5, affine=affine, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(5))
        bn.running_var.copy_(torch.rand(5) + 0.1)
    conv.eval(), bn.eval()
    x = torch.randn(2, 3, 6, 6)
    folded = Q.folded_copy(conv, bn)
    with torch.no_grad():
        assert torch.allclose(folded(x), bn(conv(x)), atol=1e-5)
    assert conv.bias is None or not torch.equal(folded.bias, conv.bias)  # a copy: the layer is untouched
    qat = Q.enable_qat(copy.deepcopy(conv), weight_bits=4)
    on_grid = Q.disable_qat(copy.deepcopy(qat))
    folded_qat = Q.folded_copy(qat, bn)
    assert type(folded_qat) is nn.Conv2d and Q.qat_enabled(qat)  # the QAT layer itself is untouched
    assert torch.equal(folded_qat.weight, Q.folded_copy(on_grid, bn).weight)
    with pytest.raises(ValueError, match="track_running_stats=False"):
        Q.folded_copy(conv, nn.BatchNorm2d(5, track_running_stats=False))
    with pytest.raises(ValueError, match="channel counts differ"):
        Q.folded_copy(conv, nn.BatchNorm2d(4))


def test_batchnorm_folds_only_where_exact(hybrid_fixtures_dir):
    ir_to_torch = _ir_to_torch()
    load = lambda name: ir_to_torch(ir.read(hybrid_fixtures_dir / f"{name}.t1c"))  # noqa: E731
    assert Q.batchnorm_folds(load("mlp_bn1d_relu_lif")) == {"fc1": "bn1"}
    assert Q.batchnorm_folds(load("conv_bn2d_prelu_lif")) == {"conv1": "bn1"}
    assert Q.batchnorm_folds(load("unit_bn1d")) == {}  # fed by the Input: nothing to fold into
    from t1c.bridge import to_ir

    # an Affine whose output feeds a second node as well, and an Affine on [C, L] (axis 1 is not its outputs)
    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.bn, self.relu = nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU()

        def forward(self, x):
            h = self.fc(x)
            return self.bn(h) + self.relu(h)

    assert Q.batchnorm_folds(ir_to_torch(to_ir(Branch().eval(), torch.zeros(1, 4), hybrid=True))) == {}
    cl = nn.Sequential(nn.Linear(5, 3), nn.BatchNorm1d(3)).eval()
    assert Q.batchnorm_folds(ir_to_torch(to_ir(cl, torch.zeros(1, 3, 5), hybrid=True))) == {}


def test_hybrid_fixtures_run_in_quantized_simulation(hybrid_fixtures_dir):
    """At 16 bits the quantized hybrid graphs are close to float, with BatchNorm kept or folded."""
    for name in ("mlp_bn1d_relu_lif", "conv_bn2d_prelu_lif"):
        graph = ir.read(hybrid_fixtures_dir / f"{name}.t1c")
        data = np.load(hybrid_fixtures_dir / f"{name}.npz")
        xs = torch.from_numpy(data["x"]).float()  # [T, B, ...]
        executor = _ir_to_torch()(graph)
        with torch.no_grad():
            reference = executor.run_sequence(xs)[0]
            assert torch.allclose(reference, torch.from_numpy(data["y"]).float(), atol=1e-5)
            for fold in (False, True):
                qexec = Q.ir_to_quantized(
                    Q.attach_integer_weights(graph, 16, 48), 16, 48, fold_batchnorm=fold
                )
                out = qexec.run_sequence(xs)[0]
                assert out.shape == reference.shape
                assert (out - reference).abs().float().mean() < 0.05, (name, fold)


def test_nested_graph_layers_are_quantized():
    inner_shape = np.array([4], dtype=np.int64)
    rng = np.random.default_rng(0)
    inner = ir.Graph(
        {
            "input": ir.Input(input_type={"input": inner_shape}),
            "fc": ir.Affine(
                weight=rng.standard_normal((4, 4)).astype(np.float32), bias=np.zeros(4, np.float32)
            ),
            "output": ir.Output(),
        },
        [("input", "fc"), ("fc", "output")],
    )
    graph = ir.Graph(
        {
            "input": ir.Input(input_type={"input": inner_shape}),
            "sub": ir.Subgraph(graph=inner),
            "output": ir.Output(),
        },
        [("input", "sub"), ("sub", "output")],
    )
    with_ints = Q.attach_integer_weights(graph, weight_bits=3)
    w_int, scale = Q.quantize_weights(torch.from_numpy(inner.nodes["fc"].weight), 3)
    assert np.array_equal(with_ints.nodes["sub"].graph.nodes["fc"].weight_int, w_int.numpy())
    assert graph.nodes["sub"].graph.nodes["fc"].weight_int is None  # a copy
    x = _spikes(5, 4, seed=2)
    expected = (
        torch.tensor(reference_linear(x, w_int, torch.zeros(4, dtype=torch.int64), 32)).double() * scale
    )
    for qexec in (Q.quantize_executor(_ir_to_torch()(graph), 3), Q.ir_to_quantized(with_ints)):
        with torch.no_grad():
            assert torch.allclose(qexec(x).double(), expected, atol=1e-6)
