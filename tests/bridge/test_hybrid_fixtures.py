"""Hybrid ANN-SNN graphs imported into torch: every hybrid fixture's ``y`` is reproduced.

The fixtures (``tests/fixtures/hybrid``) hold ``x [T, B, ...]`` and the outputs ``y``
the toolchain's executor produced in evaluation mode, step by step from a zero state.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from t1c import ir
from t1c.bridge import ir_to_torch, load
from t1c.bridge.hybrid_modules import HybridRegionModule, SubgraphModule

HYBRID = Path(__file__).resolve().parents[1] / "fixtures" / "hybrid"
NAMES = sorted(p.stem for p in HYBRID.glob("*.t1c"))


def _load(name: str):
    data = np.load(HYBRID / f"{name}.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unit_relu_negative_slope warns (tested below)
        net = load(HYBRID / f"{name}.t1c")
    return net, torch.from_numpy(data["x"]), torch.from_numpy(data["y"])


def _spiking_output(net) -> bool:
    out = net.output_names[0]
    return any(net.node_types[s] == "LIF" for s, d in net.edges if d == out)


def _assert_reproduces(net, ys: torch.Tensor, y: torch.Tensor) -> None:
    assert ys.shape == y.shape
    if _spiking_output(net):
        assert torch.equal(ys, y), f"{int((ys != y).sum())} spikes differ"
    else:
        torch.testing.assert_close(ys, y, rtol=0, atol=1e-5)


def test_spiking_fixture_is_covered():
    net, _, _ = _load("mlp_bn1d_relu_lif")
    assert _spiking_output(net)


@pytest.mark.parametrize("name", NAMES)
def test_stepping_reproduces_hybrid_fixture(name):
    net, x, y = _load(name)
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = net(x[t], state, return_state=True)
            outs.append(out)
    _assert_reproduces(net, torch.stack(outs), y)


@pytest.mark.parametrize("name", NAMES)
def test_run_sequence_reproduces_hybrid_fixture(name):
    net, x, y = _load(name)
    with torch.no_grad():
        ys, _ = net.run_sequence(x)
    _assert_reproduces(net, ys, y)


def test_quirk_file_runs_like_the_graph_it_was():
    """The decimal-string file holds all the types in a chain; it runs, in eval mode."""
    net = load(HYBRID / "quirks" / "rewritten_by_reference.t1c")
    x = torch.randn(5, 8)
    with torch.no_grad():
        y1, y2 = net(x), net(x)
    assert torch.equal(y1, y2)  # Dropout is the identity, BatchNorm uses its statistics
    assert isinstance(net.module_for("bn1x"), nn.BatchNorm1d) and net.module_for("bn1x").momentum == 0.2


# -- the deployed function ----------------------------------------------------------------


def test_executor_is_returned_in_eval_mode_and_dropout_is_the_identity():
    net, x, y = _load("unit_dropout")
    assert not net.training and not net.module_for(net.node_names[1]).training
    with torch.no_grad():
        torch.testing.assert_close(net(x[0]), x[0], rtol=0, atol=0)
    net.train()  # training asks for it: dropout zeroes values and scales the others
    torch.manual_seed(0)
    with torch.no_grad():
        out = net(torch.ones(64, 6))
    p = net.module_for(net.node_names[1]).p
    assert (out == 0).any() and torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / (1 - p)))


def test_batchnorm_carries_the_stored_statistics_and_trains_on_request():
    graph = ir.read(HYBRID / "unit_bn1d.t1c")
    node = next(n for n in graph.nodes.values() if isinstance(n, ir.BatchNorm1d))
    net = ir_to_torch(graph)
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm1d))
    np.testing.assert_array_equal(bn.running_mean.numpy(), node.running_mean)
    np.testing.assert_array_equal(bn.running_var.numpy(), node.running_var)
    np.testing.assert_array_equal(bn.weight.detach().numpy(), node.weight)
    assert (bn.eps, bn.momentum) == (node.eps, node.momentum)
    with torch.no_grad():
        single = net(torch.randn(1, 6))  # stored statistics: a batch of one works
    assert single.shape == (1, 6)
    net.train()
    before = bn.running_mean.clone()
    with torch.no_grad():
        net(torch.randn(16, 6) + 3.0)
    assert not torch.equal(bn.running_mean, before)  # batch statistics update the running ones


def test_batchnorm_momentum_none_reaches_torch(tmp_path):
    bn = ir.BatchNorm1d(
        num_features=4,
        weight=np.ones(4),
        bias=np.zeros(4),
        running_mean=np.zeros(4),
        running_var=np.ones(4),
        momentum=None,
    )
    path = tmp_path / "bn.t1c"
    ir.write(path, ir.Graph.from_chain(ir.Input(input_type={"input": np.array([4])}), bn, ir.Output()))
    module = next(m for m in load(path).modules() if isinstance(m, nn.BatchNorm1d))
    assert module.momentum is None


def test_negative_slope_runs_as_relu_and_says_so():
    with pytest.warns(UserWarning, match="negative_slope = -0.5 runs as max"):
        net = load(HYBRID / "unit_relu_negative_slope.t1c")
    assert isinstance(net.module_for("n"), nn.ReLU)


def test_modules_match_the_node_fields():
    net, _, _ = _load("unit_gelu_exact")
    gelu = next(m for m in net.modules() if isinstance(m, nn.GELU))
    assert gelu.approximate == "none"
    net, _, _ = _load("unit_gelu_tanh")
    assert next(m for m in net.modules() if isinstance(m, nn.GELU)).approximate == "tanh"
    net, _, _ = _load("unit_softmax_dim0")
    smax = next(m for m in net.modules() if isinstance(m, nn.Softmax))
    assert smax.dim == 0 and smax.couples_batch  # run_sequence gives it one step at a time
    net, _, _ = _load("unit_prelu_per_channel_chw")
    prelu = next(m for m in net.modules() if isinstance(m, nn.PReLU))
    assert prelu.num_parameters == 3


def test_hybrid_region_module_keeps_the_marker():
    net, x, _ = _load("unit_hybrid_region_ann")
    marker = next(m for m in net.modules() if isinstance(m, HybridRegionModule))
    name = next(n for n, t in net.node_types.items() if t == "HybridRegion")
    node = ir.read(HYBRID / "unit_hybrid_region_ann.t1c").nodes[name]
    assert (marker.mode, marker.features, marker.name) == (node.mode, node.features, node.name)
    back = marker.to_node()
    assert (back.mode, back.features, back.name) == (node.mode, node.features, node.name)
    assert torch.equal(marker(x[0]), x[0])
    with pytest.raises(ir.T1CFormatError, match="mode"):
        HybridRegionModule("spiking", 8)


def test_node_metadata_is_kept_on_the_executor(tmp_path):
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([4])}),
        ir.HybridRegion(mode="ann", features=4, metadata={"stage": 0, "purpose": "encoder"}),
        ir.Output(),
    )
    path = tmp_path / "meta.t1c"
    ir.write(path, graph)
    net = load(path)
    assert net.node_metadata == {"hybridregion_1": {"stage": 0, "purpose": "encoder"}}


# -- nested graphs run as the subgraph they are -----------------------------------------------


def _lif(n: int) -> ir.LIF:
    return ir.LIF(tau=np.full(n, 4.0), r=np.full(n, 4.0), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5))


def _fc(n: int, seed: int) -> ir.Affine:
    return ir.Affine(weight=np.random.default_rng(seed).standard_normal((n, n)), bias=np.zeros(n))


def test_nested_graph_computes_its_inner_graph_stepping_and_in_sequence(tmp_path):
    inner = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([6])}),
        ir.ReLU(features=6),
        _fc(6, 1),
        _lif(6),
        ir.Output(),
        names=["input", "relu", "fc", "lif", "output"],
    )
    nested = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([6])}),
        _fc(6, 0),
        ir.Subgraph(graph=inner),
        ir.Output(),
        names=["input", "fc0", "block", "output"],
    )
    flat = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([6])}),
        _fc(6, 0),
        ir.ReLU(features=6),
        _fc(6, 1),
        _lif(6),
        ir.Output(),
        names=["input", "fc0", "relu", "fc", "lif", "output"],
    )
    path = tmp_path / "nested.t1c"
    ir.write(path, nested)
    net, ref = load(path), ir_to_torch(flat)
    assert isinstance(net.module_for("block"), SubgraphModule) and net.module_for("block").stateful
    x = torch.randn(5, 3, 6) * 2
    with torch.no_grad():
        # like with like (a matmul over T*B rows may round differently from T matmuls)
        want_seq, _ = ref.run_sequence(x)
        seq, seq_state = net.run_sequence(x)
        want_steps, state, ref_state, outs = [], None, None, []
        for t in range(x.shape[0]):
            out, state = net(x[t], state, return_state=True)
            ref_out, ref_state = ref(x[t], ref_state, return_state=True)
            outs.append(out)
            want_steps.append(ref_out)
    assert want_seq.abs().sum() > 0  # some spikes: the test can tell a pass-through apart
    assert torch.equal(seq, want_seq)
    assert torch.equal(torch.stack(outs), torch.stack(want_steps))
    assert torch.equal(state["block"]["lif"], ref_state["lif"])
    assert set(state["block"]) == {"lif"} and set(seq_state["block"]) == {"lif"}


def test_stateless_nested_graph_runs_in_one_call():
    inner = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([4])}), ir.Tanh(features=4), ir.Output()
    )
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([4])}), ir.Subgraph(graph=inner), ir.Output()
    )
    net = ir_to_torch(graph)
    x = torch.randn(2, 3, 4)
    with torch.no_grad():
        ys, state = net.run_sequence(x)
    assert not net.module_for("subgraph_1").stateful and state == {}
    torch.testing.assert_close(ys, torch.tanh(x), rtol=0, atol=0)


def _gamma(n: int) -> float:
    """Higham's gamma(n) for float32: the relative error bound of an n-term dot product."""
    u = torch.finfo(torch.float32).eps / 2
    return n * u / (1 - n * u)


def _batching_bound(module: nn.Module, x: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
    """How far two batchings' outputs of ``module`` can differ, given input ``x`` whose two
    versions differ by at most ``err`` (element-wise, float64)."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        w, b = module.weight.detach().double().abs(), module.bias.detach().double().abs()
        if isinstance(module, nn.Linear):
            apply, n = (lambda t, bias=None: nn.functional.linear(t, w, bias)), w.shape[1]
        else:
            n = w[0].numel()

            def apply(t, bias=None):
                return nn.functional.conv2d(
                    t, w, bias, module.stride, module.padding, module.dilation, module.groups
                )

        return apply(err) + 2 * _gamma(n + 1) * apply(x.abs(), b)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):  # element-wise: only scales err
        scale = module.weight.detach().double().abs() / (module.running_var.double() + module.eps).sqrt()
        return err * scale.reshape(1, -1, *[1] * (err.dim() - 2))
    if isinstance(module, nn.PReLU):
        return err * max(1.0, float(module.weight.detach().abs().max()))
    if isinstance(module, nn.MaxPool2d):
        return module(err)
    assert isinstance(module, (nn.ReLU, nn.LeakyReLU)), type(module)  # 1-Lipschitz
    return err


@pytest.mark.parametrize("name", ["mlp_bn1d_relu_lif", "conv_bn2d_prelu_lif"])
def test_spikes_are_the_same_on_every_cpu(name):
    """Why spikes may be compared exactly, and a float head after them within 1e-5, on any
    CPU and in run_sequence: a BLAS kernel sums dot products in an order of its choosing,
    so two batchings of a layer differ by at most 2 * gamma(n + 1) * (|w|.|x| + |b|)
    (Higham, section 3.1). Propagated through the chain (float64) and through the LIF
    update (with its own roundings), that bound stays below every membrane's distance to its threshold, so every
    threshold test goes the same way whatever the batching."""
    net, x, _ = _load(name)
    graph = ir.read(HYBRID / f"{name}.t1c")
    (lif_name,) = [n for n, t in net.node_types.items() if t == "LIF"]
    chain = graph.topological_order()
    chain = chain[1 : chain.index(lif_name)]  # the layers from the input to the LIF
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        net.module_for(n).register_forward_hook(
            lambda m, args, out, n=n: seen.__setitem__(n, args[0].double())
        )
        for n in [*chain, lif_name]
    ]
    lif = graph.nodes[lif_name]
    tau, r, v_leak, threshold = (
        torch.from_numpy(a).double() for a in (lif.tau, lif.r, lif.v_leak, lif.v_threshold)
    )
    beta = 1 - 1 / tau
    v = v_err = None
    with torch.no_grad():
        state = None
        for t in range(x.shape[0]):
            _, state = net(x[t], state, return_state=True)
            err = torch.zeros_like(x[t], dtype=torch.float64)
            for n in chain:
                err = _batching_bound(net.module_for(n), seen[n], err)
            drive = (1 - beta) * (v_leak + r * seen[lif_name])
            leak = 0 if v is None else beta * v
            # the update's own few float32 roundings, as in tests/batching.py: 2 * gamma(6) * terms
            own = 2 * _gamma(6) * (drive.abs() + (0 if v is None else leak.abs()))
            v = drive + leak
            v_err = (1 - beta) * r * err + own + (0 if v_err is None else beta * v_err)
            assert ((v - threshold).abs() > v_err).all(), (
                f"step {t}: a membrane is within rounding of its threshold"
            )
            v = torch.where(v >= threshold, torch.zeros_like(v), v)
    for hook in hooks:
        hook.remove()
    assert float(v_err.max()) > 0  # the bound was computed, not skipped
