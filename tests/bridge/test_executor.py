"""GraphExecutor: wiring semantics, explicit state, run_sequence == stepping, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from batching import assert_batching_independent, assert_matches_an_outcome
from torch import nn

from t1c import ir
from t1c.bridge import LIFModule, ir_to_torch
from t1c.bridge.executor import NodeExecutionError


def _lif(n, thr=0.5, **kw) -> ir.LIF:
    shape = (n,) if isinstance(n, int) else tuple(n)
    return ir.LIF(
        tau=np.full(shape, 4.0),
        r=np.full(shape, 4.0),
        v_leak=np.zeros(shape),
        v_threshold=np.full(shape, thr),
        **kw,
    )


def _affine(out_f, in_f, seed=0) -> ir.Affine:
    rng = np.random.default_rng(seed)
    return ir.Affine(weight=rng.normal(0, 0.5, (out_f, in_f)), bias=rng.normal(0, 0.1, out_f))


def _inp(*shape) -> ir.Input:
    return ir.Input(input_type={"input": np.array(shape)})


def mlp_graph() -> ir.Graph:
    return ir.Graph.from_chain(
        _inp(6),
        _affine(8, 6),
        _lif(8),
        _affine(3, 8, 1),
        _lif(3, reset_mechanism="subtract", reset_delay=True),
        ir.Output(),
        names=["input", "fc1", "lif1", "fc2", "lif2", "output"],
    )


def branchy_graph() -> ir.Graph:
    """Two outputs, a concatenation, a residual and a plain multi-input sum."""
    nodes = {
        "input": _inp(4),
        "a": _affine(5, 4, 1),
        "b": _affine(3, 4, 2),
        "c": _affine(5, 4, 3),
        "cat": ir.Skip(skip_type="concatenate"),
        "lif_cat": _lif(
            8,
            beta=np.full(8, 0.8, np.float32),
            reset_mechanism="subtract",
            reset_delay=True,
            strict_threshold=True,
        ),
        "res": ir.Skip(skip_type="residual"),
        "lif_sum": _lif(5),
        "out_cat": ir.Output(),
        "out_sum": ir.Output(),
    }
    edges = [
        ("input", "a"),
        ("input", "b"),
        ("input", "c"),
        ("b", "cat"),
        ("a", "cat"),
        ("cat", "lif_cat"),
        ("lif_cat", "out_cat"),
        ("a", "res"),
        ("c", "res"),
        ("res", "lif_sum"),
        ("c", "lif_sum"),
        ("lif_sum", "out_sum"),
    ]
    return ir.Graph(nodes, edges)


def step_all(net, xs, state=None):
    outs = []
    for t in range(xs.shape[0]):
        out, state = net(xs[t], state, return_state=True)
        outs.append(out)
    if isinstance(outs[0], dict):
        return {k: torch.stack([o[k] for o in outs]) for k in outs[0]}, state
    return torch.stack(outs), state


def test_semantics_of_concatenate_residual_and_sum() -> None:
    torch.manual_seed(0)
    net = ir_to_torch(branchy_graph())
    x = torch.randn(7, 4)
    out, state = net(x, return_state=True)
    assert list(out) == ["out_cat", "out_sum"]  # several outputs: a dict in graph order
    a, b, c = (net.module_for(n)(x) for n in "abc")
    ref_cat, _ = net.module_for("lif_cat")(torch.cat([b, a], dim=1))  # edge-list order: b then a
    ref_sum, _ = net.module_for("lif_sum")((a + c) + c)
    assert torch.equal(out["out_cat"], ref_cat)
    assert torch.equal(out["out_sum"], ref_sum)
    assert set(state) == {"lif_cat", "lif_sum"}


@pytest.mark.parametrize("graph_fn", [mlp_graph, branchy_graph])
def test_run_sequence_equals_stepping_with_gradients(graph_fn) -> None:
    torch.manual_seed(1)
    net = ir_to_torch(graph_fn())
    xs = torch.randn(12, 5, *net.io_shapes["input"]) * 2
    ys_step, st_step = step_all(net, xs)
    ys_seq, st_seq = net.run_sequence(xs)
    if isinstance(ys_step, dict):
        ys_step, ys_seq = torch.cat(list(ys_step.values()), -1), torch.cat(list(ys_seq.values()), -1)
    assert ys_step.sum() > 0
    # BLAS may round a [T*B, in] matmul's last bit differently from T matmuls of [B, in]
    # (it picks kernels by matrix size and CPU): spikes are compared exactly only because
    # no membrane of this input comes within that rounding of its threshold.
    assert_batching_independent(net, xs)
    assert torch.equal(ys_step, ys_seq)
    for st in (st_step, st_seq):  # membranes within the derived rounding bound
        assert_matches_an_outcome(net, xs, None, st)
    w = torch.randn_like(ys_step)
    grads = []
    for ys in (ys_step, ys_seq):
        net.zero_grad()
        (ys * w).sum().backward(retain_graph=True)
        grads.append([p.grad.clone() for p in net.parameters()])
    for g1, g2 in zip(*grads):
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)


def test_run_sequence_writes_spikes_only_into_values_no_one_else_reads() -> None:
    """Without a gradient, a LIF writes its spikes into its input when only it reads that
    value and a new-tensor module (nn.Linear) made it; never into the caller's input, a
    value another node reads, or one a forward hook saw. Outputs are the same either way."""

    def lif(n):
        return _lif(n, beta=np.full(n, 0.9, np.float32), reset_delay=True, strict_threshold=True)

    nodes = {
        "input": _inp(6),
        "fc1": _affine(8, 6),
        "lif1": lif(8),
        "fc2": _affine(3, 8, 1),
        "lif2": lif(3),
        "lif_in": lif(6),  # reads the caller's input
        "flat": ir.Flatten(),  # a view of the caller's input, read only by lif_flat
        "lif_flat": lif(6),
        "fc3": _affine(3, 6, 2),
        "lif3": lif(3),  # fc3's value is also an output
        "out": ir.Output(),
        "out_in": ir.Output(),
        "out_fc3": ir.Output(),
        "out_lif3": ir.Output(),
        "out_flat": ir.Output(),
    }
    edges = [
        ("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "out"),
        ("input", "lif_in"), ("lif_in", "out_in"),
        ("input", "fc3"), ("fc3", "out_fc3"), ("fc3", "lif3"), ("lif3", "out_lif3"),
        ("input", "flat"), ("flat", "lif_flat"), ("lif_flat", "out_flat"),
    ]  # fmt: skip
    net = ir_to_torch(ir.Graph(nodes, edges))
    torch.manual_seed(0)
    xs = torch.rand(20, 5, 6) * 2
    original = xs.clone()
    calls: dict[str, bool] = {}
    for name in ("lif1", "lif2", "lif_in", "lif3", "lif_flat"):
        module = net.module_for(name)

        def spy(x, v=None, *, overwrite_input=False, _name=name, _module=module):
            calls[_name] = overwrite_input
            return type(_module).forward_sequence(_module, x, v, overwrite_input=overwrite_input)

        module.forward_sequence = spy  # the instance's: the plan looks at the class
    reference, _ = net.run_sequence(xs)  # gradient mode: nothing is overwritten
    assert not any(calls.values())
    with torch.no_grad():
        ys, _ = net.run_sequence(xs)
    assert calls == {"lif1": True, "lif2": True, "lif_in": False, "lif3": False, "lif_flat": False}
    assert torch.equal(xs, original)
    fc3 = net.module_for("fc3")
    torch.testing.assert_close(
        ys["out_fc3"], fc3(xs.reshape(-1, 6)).detach().reshape(20, 5, 3), rtol=0, atol=0
    )
    for name in reference:
        assert torch.equal(ys[name], reference[name].detach()), name
    seen = []  # a hook may hold the value: then it is not overwritten
    handle = net.module_for("fc1").register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        hooked, _ = net.run_sequence(xs)
    handle.remove()
    assert calls["lif1"] is False and calls["lif2"] is True
    torch.testing.assert_close(seen[0], net.module_for("fc1")(xs.reshape(-1, 6)).detach(), rtol=0, atol=0)
    assert torch.equal(hooked["out"], reference["out"].detach())


def test_run_sequence_continues_from_state() -> None:
    torch.manual_seed(2)
    net = ir_to_torch(mlp_graph())
    xs = torch.randn(10, 3, 6) * 2
    ys_all, st_all = net.run_sequence(xs)
    ys1, st1 = net.run_sequence(xs[:4])
    ys2, st2 = net.run_sequence(xs[4:], st1)
    assert_batching_independent(net, xs)  # 40 rows vs 16 + 24: spikes provably the same
    assert torch.equal(torch.cat([ys1, ys2]), ys_all)
    assert_matches_an_outcome(net, xs, ys_all, st2)


def test_state_is_explicit_and_per_instance() -> None:
    torch.manual_seed(3)
    net1, net2 = ir_to_torch(mlp_graph()), ir_to_torch(mlp_graph())
    xs = torch.randn(6, 2, 6) * 3
    ref, _ = step_all(net1, xs)
    # Interleaving another executor (and calls without state) changes nothing.
    state1 = net1.reset_state()
    outs = []
    for t in range(xs.shape[0]):
        net2(torch.randn(2, 6) * 5)
        net1(torch.randn(2, 6) * 5)
        out, state1 = net1(xs[t], state1, return_state=True)
        outs.append(out)
    assert torch.equal(torch.stack(outs), ref)
    # With state=None every call starts from zero: the same input gives the same output.
    assert torch.equal(net1(xs[0]), net1(xs[0]))


def test_return_state_default_from_constructor() -> None:
    net = ir_to_torch(mlp_graph(), return_state=True)
    out, state = net(torch.randn(2, 6))
    assert out.shape == (2, 3) and set(state) == {"lif1", "lif2"}
    assert isinstance(net(torch.randn(2, 6), return_state=False), torch.Tensor)


def test_error_inside_a_node_names_it() -> None:
    net = ir_to_torch(mlp_graph(), node_map=lambda node, name: nn.Linear(3, 3) if name == "fc2" else None)
    with pytest.raises(NodeExecutionError, match=r"while executing node 'fc2' \(Affine\)") as info:
        net(torch.randn(2, 6))
    assert info.value.node == "fc2"
    with pytest.raises(NodeExecutionError, match="'fc2'"):
        net.run_sequence(torch.randn(3, 2, 6))


def test_bad_input_shape_names_the_input_node() -> None:
    net = ir_to_torch(mlp_graph())
    with pytest.raises(ValueError, match=r"Input node 'input' expects \[B, 6\]"):
        net(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"\[T, B, 6\]"):
        net.run_sequence(torch.randn(2, 6))


def test_a_sequence_of_the_wrong_shape_says_what_was_expected() -> None:
    net = ir_to_torch(mlp_graph())
    with pytest.raises(ValueError) as info:
        net.run_sequence(torch.randn(32, 25))  # [B, T]: no feature axis
    assert str(info.value) == "run_sequence expects [T, B, 6] (time first), got [32, 25]"
    with pytest.raises(ValueError, match=r"got \[32, 6\]; that is one time step: call the executor itself"):
        net.run_sequence(torch.randn(32, 6))
    with pytest.raises(
        ValueError, match=r"expects \[B, 6\] \(one time step\), got \[6\]; add a batch dimension"
    ):
        net(torch.randn(6))
    with pytest.raises(ValueError, match=r"got \[4, 2, 6\]; a sequence \[T, B, ...\] goes to run_sequence"):
        net(torch.randn(4, 2, 6))


def test_a_sequence_of_the_wrong_shape_names_the_input_among_several() -> None:
    nodes = {"a": _inp(3), "b": _inp(4), "fa": _affine(2, 3), "fb": _affine(2, 4), "out": ir.Output()}
    edges = [("a", "fa"), ("b", "fb"), ("fa", "out"), ("fb", "out")]
    net = ir_to_torch(ir.Graph(nodes, edges))
    with pytest.raises(
        ValueError,
        match=r"^run_sequence expects \[T, B, 4\] \(time first\) for Input node 'b', got \[5, 2, 3\]$",
    ):
        net.run_sequence({"a": torch.randn(5, 2, 3), "b": torch.randn(5, 2, 3)})


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.bool])
def test_input_of_another_dtype_says_so_in_one_line(dtype) -> None:
    net = ir_to_torch(mlp_graph())
    x = torch.rand(4, 2, 6).to(dtype)
    for run in (lambda: net(x[0]), lambda: net.run_sequence(x)):
        with pytest.raises(TypeError) as info:
            run()
        message = str(info.value)
        assert "\n" not in message and message.startswith(
            f"GraphExecutor input is {dtype} but its parameters are torch.float32"
        )
        assert "pass x.to(torch.float32)" in message
    ys, _ = net.run_sequence(x.float())  # the fix works
    assert ys.dtype == torch.float32


def test_float32_input_to_a_float64_executor_says_so() -> None:
    net = ir_to_torch(mlp_graph()).double()
    with pytest.raises(
        TypeError,
        match=r"^GraphExecutor input is torch.float32 but its parameters are torch.float64: pass x.to\(torch.float64\), or convert the executor: .to\(torch.float32\)$",
    ):
        net(torch.rand(2, 6))


def test_float64_moves_parameters_and_state() -> None:
    torch.manual_seed(4)
    net = ir_to_torch(mlp_graph()).to(torch.float64)
    xs = torch.randn(5, 2, 6, dtype=torch.float64)
    ys, state = net.run_sequence(xs)
    assert ys.dtype == torch.float64 and all(v.dtype == torch.float64 for v in state.values())
    ys_step, _ = step_all(net, xs)
    assert_batching_independent(net, xs)
    assert torch.equal(ys, ys_step)
    ref, _ = ir_to_torch(mlp_graph()).run_sequence(xs.float())
    assert (ys.float() != ref).float().mean() < 0.05  # same network, other rounding


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(5)
    net = ir_to_torch(branchy_graph())
    xs = torch.randn(8, 4, 4)
    ref, _ = net.run_sequence(xs)
    out, state = net.to("cuda").run_sequence(xs.cuda())
    assert all(v.is_cuda for v in state.values())
    for k in ref:
        torch.testing.assert_close(out[k].cpu(), ref[k])


def test_recurrent_graph_is_stepped() -> None:
    torch.manual_seed(6)
    nodes = {
        "input": _inp(4),
        "fc": _affine(6, 4),
        "lif": _lif(6),
        "rec": _affine(6, 6, 1),
        "output": ir.Output(),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    net = ir_to_torch(ir.Graph(nodes, edges, allow_cycles=True))
    assert net.is_recurrent
    xs = torch.randn(9, 3, 4) * 2
    ys, state = net.run_sequence(xs)
    assert set(state) == {"lif", "rec/output"}
    # By hand: the recurrent input is last step's output of "rec".
    fc, lif, rec = (net.module_for(n) for n in ("fc", "lif", "rec"))
    v, prev, outs = None, torch.zeros(3, 6), []
    for t in range(9):
        s, v = lif(fc(xs[t]) + prev, v)
        prev = rec(s)
        outs.append(s)
    assert torch.equal(ys, torch.stack(outs))


def test_structure_and_set_module() -> None:
    g = mlp_graph()
    net = ir_to_torch(g)
    assert net.node_names == list(g.nodes) and net.edges == g.edges
    assert net.node_types["lif1"] == "LIF" and net.input_names == ["input"] and net.output_names == ["output"]
    assert net.io_shapes == {"input": (6,), "output": (3,)}
    assert net.stateful_names == ["lif1", "lif2"]
    assert net.module_for("input") is None
    with pytest.raises(KeyError, match="nope"):
        net.module_for("nope")
    twin = copy.deepcopy(net)
    new = nn.Linear(8, 3)
    twin.set_module("fc2", new)
    assert twin.module_for("fc2") is new and net.module_for("fc2") is not new
    x = torch.randn(2, 6) * 5
    s1, _ = twin.module_for("lif1")(twin.module_for("fc1")(x))
    ref, _ = twin.module_for("lif2")(new(s1))
    assert torch.equal(twin(x), ref)
    with pytest.raises(KeyError, match="input"):
        twin.set_module("input", nn.Identity())


def test_node_names_that_torch_rejects_as_attributes() -> None:
    nodes = {"input": _inp(3), "layer.1": _affine(3, 3), "update": _lif(3), "output": ir.Output()}
    g = ir.Graph(nodes, [("input", "layer.1"), ("layer.1", "update"), ("update", "output")])
    net = ir_to_torch(g)
    assert isinstance(net.module_for("update"), LIFModule)
    out, state = net(torch.randn(2, 3), return_state=True)
    assert set(state) == {"update"}


def test_run_sequence_needs_a_time_step() -> None:
    with pytest.raises(ValueError, match="T = 0"):
        ir_to_torch(mlp_graph()).run_sequence(torch.zeros(0, 2, 6))


# -- held state (keep_state=True) ---------------------------------------------------------
def test_keep_state_continues_like_explicit_state_and_resets(fixtures_dir):
    data = np.load(fixtures_dir / "mlp_snn.npz")
    xs, ys = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    held = ir_to_torch(fixtures_dir / "mlp_snn.t1c", keep_state=True)
    for _ in range(2):  # the second pass proves reset_state() really zeroes
        held.reset_state()
        assert held.state is None
        outs = torch.stack([held(x) for x in xs])
        assert torch.equal(outs, ys)
        assert set(held.state) == {"lif1", "lif2"}
    # The plain executor keeps nothing: every call starts from zero.
    plain = ir_to_torch(fixtures_dir / "mlp_snn.t1c")
    plain(xs[0])
    assert plain.state is None


def test_keep_state_run_sequence_continues_from_held_state(fixtures_dir):
    data = np.load(fixtures_dir / "mlp_snn.npz")
    xs, ys = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    held = ir_to_torch(fixtures_dir / "mlp_snn.t1c", keep_state=True)
    first, _ = held.run_sequence(xs[:3])
    second, _ = held.run_sequence(xs[3:])
    assert torch.equal(torch.cat([first, second]), ys)


def test_held_state_is_per_instance_and_moves_with_to(fixtures_dir):
    a = ir_to_torch(fixtures_dir / "mlp_snn.t1c", keep_state=True)
    b = ir_to_torch(fixtures_dir / "mlp_snn.t1c", keep_state=True)
    a(torch.ones(2, 64) * 1.5)
    assert a.state is not None and b.state is None
    a.to(torch.float64)
    assert all(v.dtype == torch.float64 for v in a.state.values())
    assert next(a.parameters()).dtype == torch.float64


def _dyadic_affine(out_f, in_f, seed) -> ir.Affine:
    """Weights on a 1/64 grid: every sum of them over spikes is exact, in any order."""
    rng = np.random.default_rng(seed)
    return ir.Affine(
        weight=np.round(rng.normal(0, 0.6, (out_f, in_f)) * 64) / 64,
        bias=np.round(rng.normal(0, 0.2, out_f) * 64) / 64,
    )


def test_run_sequence_steps_only_the_cycles_and_equals_stepping() -> None:
    """fc1 -> lif1 (rec1 back) -> fc2 -> lif2 (rec2 back) -> fc3 -> lif3: run_sequence runs fc1
    over all T * B rows, steps rec1..lif2, and runs fc3/lif3 over the stacked spikes; outputs,
    every state and gradients equal stepping's, and it continues from a given state."""
    nodes = {
        "input": _inp(5),
        "fc1": _dyadic_affine(8, 5, 0),
        "rec1": _dyadic_affine(8, 8, 1),
        "lif1": _lif(8),
        "fc2": _dyadic_affine(6, 8, 2),
        "rec2": _dyadic_affine(6, 6, 3),
        "lif2": _lif(6, reset_mechanism="subtract"),
        "fc3": _dyadic_affine(3, 6, 4),
        "lif3": _lif(3),
        "output": ir.Output(),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("rec1", "lif1"), ("lif1", "rec1"), ("lif1", "fc2")]
    edges += [("fc2", "lif2"), ("rec2", "lif2"), ("lif2", "rec2"), ("lif2", "fc3"), ("fc3", "lif3")]
    net = ir_to_torch(ir.Graph(nodes, [*edges, ("lif3", "output")], allow_cycles=True)).train()
    window = net._window
    assert [s.name for s in window.steps] == ["rec1", "lif1", "fc2", "rec2", "lif2"]
    xs = (torch.rand(30, 4, 5, generator=torch.Generator().manual_seed(0)) < 0.5).float() * 2
    ys, state = net.run_sequence(xs)
    ref, ref_state = step_all(net, xs)
    assert 0.05 < ys.mean().item() < 0.95 and torch.equal(ys, ref)
    assert set(state) == set(ref_state) == {"lif1", "lif2", "lif3", "lif1/output", "lif2/output"}
    for name in state:
        assert torch.equal(torch.as_tensor(state[name]), torch.as_tensor(ref_state[name])), name
    readout = torch.randn(3)
    (ys * readout).sum().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    (ref * readout).sum().backward()
    for n, p in net.named_parameters():
        assert grads[n].abs().sum() > 0, n
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        first, mid = net.run_sequence(xs[:12])
        rest, _ = net.run_sequence(xs[12:], mid)
    assert torch.equal(torch.cat([first, rest]), ref.detach())
