"""NIR <-> T1C-IR (t1c.nir): every row of docs/nir.md, against a reference simulation of NIR.

The reference (:func:`simulate_nir`) is written from the equations in NIR's docstrings
(forward Euler at ``dt``, float64, numpy/torch functional ops) and knows nothing of T1C.
T1C runs in float32 with ``b = 1 - 1/tau`` where the reference uses ``1 - dt/tau``, so the
two round differently: the graphs use small integer or power-of-two weights, binary input
spikes and thresholds placed between the values a membrane can take, and every comparison
first asserts that no reference membrane comes within ``MARGIN`` of a threshold. With that
margin, spikes are compared exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from t1c import ir
from t1c.bridge import ir_to_torch

nir = pytest.importorskip("nir")

from t1c.nir import NIRConversionError, from_nir, to_nir  # noqa: E402

DT = 1e-3
STEPS = 12
BATCH = 3
MARGIN = 1e-4
REPO = Path(__file__).resolve().parents[1]


# -- the reference: NIR's equations, nothing from t1c --------------------------------------
class NIRSim:
    """Runs a NIRGraph (nested graphs included) step by step in float64.

    ``margin`` is the smallest ``|v - threshold|`` any spiking neuron saw.
    """

    def __init__(self, graph, dt: float) -> None:
        self.graph, self.dt = graph, dt
        self.state: dict = {}
        self.margin = np.inf
        self.subs = {n: NIRSim(g, dt) for n, g in graph.nodes.items() if isinstance(g, nir.NIRGraph)}

    def _edges(self) -> list[tuple[str, str]]:
        """Edges between this graph's nodes (``sub.port`` ends name the subgraph ``sub``)."""
        nodes = self.graph.nodes
        return [tuple(n if n in nodes else n.split(".")[0] for n in edge) for edge in self.graph.edges]

    def _order(self) -> list[str]:
        nodes, edges = self.graph.nodes, self._edges()
        done: list[str] = []
        while len(done) < len(nodes):
            ready = [n for n in nodes if n not in done and all(s in done for s, d in edges if d == n)]
            assert ready, f"reference: no topological order for {self.graph.edges}"
            done += ready[:1]
        return done

    def _spike(self, v: np.ndarray, thr) -> np.ndarray:
        self.margin = min(self.margin, float(np.abs(v - thr).min()))
        return (v > thr).astype(np.float64)

    def step(self, x: np.ndarray) -> np.ndarray:
        vals: dict[str, np.ndarray] = {}
        edges = self._edges()
        for name in self._order():
            node = self.graph.nodes[name]
            ins = [vals[s] for s, d in edges if d == name]
            i = sum(ins[1:], ins[0]) if ins else x
            vals[name] = self._node(name, node, i)
        (out,) = [vals[n] for n, v in self.graph.nodes.items() if isinstance(v, nir.Output)]
        return out

    def _node(self, name: str, node, i: np.ndarray) -> np.ndarray:
        t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
        if isinstance(node, nir.NIRGraph):
            sub = self.subs[name]
            out = sub.step(i)
            self.margin = min(self.margin, sub.margin)
            return out
        if isinstance(node, (nir.Input, nir.Output)):
            return i
        if isinstance(node, nir.Delay):  # y(t) = x(t - delay); only delay 0 is simulated
            assert not node.delay.any()
            return i
        if isinstance(node, nir.Affine):
            return i @ node.weight.T + node.bias
        if isinstance(node, nir.Linear):
            return i @ node.weight.T
        if isinstance(node, nir.Scale):
            return i * node.scale
        if isinstance(node, nir.Conv2d):
            pad = node.padding if isinstance(node.padding, str) else tuple(int(p) for p in node.padding)
            y = F.conv2d(
                t(i), t(node.weight), t(node.bias), tuple(node.stride), pad, tuple(node.dilation), node.groups
            )
            return y.numpy()
        if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            k, s, p = (tuple(int(v) for v in a) for a in (node.kernel_size, node.stride, node.padding))
            div = 1 if isinstance(node, nir.SumPool2d) else None
            return F.avg_pool2d(t(i), k, s, p, divisor_override=div).numpy()
        if isinstance(node, nir.Flatten):  # dims counted without the batch
            end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
            return (
                i.reshape(i.shape[: node.start_dim + 1] + (-1,))
                if end == -1
                else torch.flatten(t(i), node.start_dim + 1, end).numpy()
            )
        v = self.state.get(name, np.zeros_like(i))
        if isinstance(node, nir.LIF):  # tau dv/dt = (v_leak - v) + R I
            v = v + self.dt / node.tau * (node.v_leak - v + node.r * i)
        elif isinstance(node, nir.IF):  # dv/dt = R I
            v = v + self.dt * node.r * i
        elif isinstance(node, nir.Threshold):
            return self._spike(i, node.threshold)
        else:
            raise AssertionError(f"reference does not simulate {type(node).__name__}")
        z = self._spike(v, node.v_threshold)
        self.state[name] = np.where(z > 0, node.v_reset, v)
        return z


def simulate(graph, xs: np.ndarray, dt: float = DT) -> tuple[np.ndarray, float]:
    sim = NIRSim(graph, dt)
    ys = np.stack([sim.step(x.astype(np.float64)) for x in xs])
    return ys, sim.margin


def run_t1c(graph: ir.Graph, xs: np.ndarray) -> np.ndarray:
    executor = ir_to_torch(graph)
    with torch.no_grad():
        ys, _ = executor.run_sequence(torch.from_numpy(xs.astype(np.float32)))
    return ys.numpy()


def spikes_in(shape, seed: int = 0, p: float = 0.4) -> np.ndarray:
    return (np.random.default_rng(seed).random((STEPS, BATCH, *shape)) < p).astype(np.float32)


def ints(shape, seed: int, low: int = -1, high: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, size=shape).astype(np.float32)


def lif(n, tau_steps: float = 2.0, r: float = 2.0, thr: float = 1.0 + 2**-12, **kw):
    """A NIR LIF whose Euler step at DT is ``v = (1 - 1/tau_steps) v + I`` (dyadic membranes)."""
    shape = (n,) if isinstance(n, int) else n
    return nir.LIF(
        tau=np.full(shape, tau_steps * DT),
        r=np.full(shape, r, dtype=np.float32),
        v_leak=np.zeros(shape, dtype=np.float32),
        v_threshold=np.full(shape, thr, dtype=np.float32),
        **kw,
    )


def check_against_reference(nir_graph, tmp_path: Path, in_shape, seed: int = 0) -> ir.Graph:
    """Write with nir.write, convert the file, run both; spikes must be identical."""
    path = tmp_path / "model.nir"
    nir.write(path, nir_graph)
    graph = from_nir(path, dt=DT)
    xs = spikes_in(in_shape, seed)
    expected, margin = simulate(nir.read(path, type_check=False), xs)
    assert margin > MARGIN, f"test design: a membrane came within {margin} of a threshold"
    got = run_t1c(graph, xs)
    assert 0 < expected.sum() < expected.size, "test design: the output should spike, but not always"
    np.testing.assert_array_equal(got, expected)
    return graph


# -- NIR -> T1C-IR, against the reference --------------------------------------------------
def test_mlp_lif_affine_linear(tmp_path):
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([6])),
        nir.Affine(weight=ints((8, 6), 1), bias=np.full(8, 0.5, dtype=np.float32)),
        lif(8),
        nir.Linear(weight=ints((4, 8), 2, 0, 3)),
        lif(4, tau_steps=4.0, r=4.0, thr=0.75 + 2**-12),
        nir.Output(output_type=np.array([4])),
    )
    graph = check_against_reference(g, tmp_path, (6,))
    lif_node = graph.nodes["lif"]
    assert isinstance(lif_node, ir.LIF) and lif_node.strict_threshold is True
    np.testing.assert_array_equal(lif_node.tau, np.full(8, 2.0, dtype=np.float32))  # tau / dt
    assert isinstance(graph.nodes["linear"], ir.Affine) and not graph.nodes["linear"].bias.any()
    assert graph.metadata["nir_dt"] == DT


def test_lif_is_forward_euler_with_strict_threshold_and_zero_reset():
    """v = 0.5 v + I exactly; v == thr does not fire (NIR is strict), v > thr fires and resets."""
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1])), lif(1, thr=1.0), nir.Output(output_type=np.array([1]))
    )
    xs = np.array([1.0, 0.5, 0.5, 0.0, 1.0], dtype=np.float32).reshape(5, 1, 1)
    # v: 1 (== thr, no spike), 1.0 (no), 1.0 (no), 0.5, 1.25 -> spike, reset
    got = run_t1c(from_nir(g, dt=DT), xs).reshape(-1)
    np.testing.assert_array_equal(got, [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(simulate(g, xs)[0].reshape(-1), got)


def test_conv_if_sumpool_flatten(tmp_path):
    """Conv2d with padding='same' and input_shape, IF, SumPool2d folded into the Linear, Flatten."""
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([2, 6, 6])),
            "conv": nir.Conv2d(
                input_shape=(6, 6),
                weight=ints((4, 2, 3, 3), 3),
                stride=1,
                padding="same",
                dilation=1,
                groups=1,
                bias=np.zeros(4, dtype=np.float32),
            ),
            "if": nir.IF(r=np.full((4, 6, 6), 2 / DT), v_threshold=np.full((4, 6, 6), 3.0)),
            "pool": nir.SumPool2d(
                kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
            ),
            "flat": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
            "fc": nir.Linear(weight=ints((5, 36), 4)),
            "lif": lif(5, thr=0.5 + 2**-12),
            "out": nir.Output(output_type=np.array([5])),
        },
        edges=[
            ("in", "conv"),
            ("conv", "if"),
            ("if", "pool"),
            ("pool", "flat"),
            ("flat", "fc"),
            ("fc", "lif"),
            ("lif", "out"),
        ],
    )
    graph = check_against_reference(g, tmp_path, (2, 6, 6))
    assert isinstance(graph.nodes["pool"], ir.AvgPool2d)
    np.testing.assert_array_equal(graph.nodes["fc"].weight, g.nodes["fc"].weight * 4)  # k*k folded
    np.testing.assert_array_equal(graph.nodes["conv"].padding, [1, 1])
    neuron = graph.nodes["if"]
    assert neuron.beta is not None and (neuron.beta == 1).all() and np.isinf(neuron.tau).all()


def test_conv_stride_groups_avgpool_and_flatten_dims(tmp_path):
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([2, 8, 8])),
            "conv": nir.Conv2d(
                input_shape=None,  # nir 1.0 types a grouped Conv2d's input wrongly; NIR infers it
                weight=ints((4, 1, 3, 3), 5, 0, 2),
                stride=(2, 2),
                padding=(1, 1),
                dilation=1,
                groups=2,
                bias=np.full(4, -0.5, dtype=np.float32),
            ),
            "lif": lif((4, 4, 4), thr=1.0 + 2**-12),
            "pool": nir.AvgPool2d(
                kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
            ),
            "flat": nir.Flatten(input_type=np.array([4, 2, 2]), start_dim=1, end_dim=2),  # [4, 4]
            "flat2": nir.Flatten(input_type=np.array([4, 4]), start_dim=0, end_dim=-1),
            "fc": nir.Affine(weight=ints((3, 16), 6), bias=np.zeros(3, dtype=np.float32)),
            "lif2": lif(3, thr=0.5 + 2**-12),
            "out": nir.Output(output_type=np.array([3])),
        },
        edges=[
            ("in", "conv"),
            ("conv", "lif"),
            ("lif", "pool"),
            ("pool", "flat"),
            ("flat", "flat2"),
            ("flat2", "fc"),
            ("fc", "lif2"),
            ("lif2", "out"),
        ],
    )
    graph = check_against_reference(g, tmp_path, (2, 8, 8), seed=1)
    assert graph.output_shapes["flat"] == (4, 4)
    assert graph.nodes["conv"].groups == 2


def test_residual_sum_becomes_skip(tmp_path):
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([6])),
            "fc1": nir.Affine(weight=ints((6, 6), 7), bias=np.zeros(6, dtype=np.float32)),
            "lif1": lif(6),
            "fc2": nir.Affine(weight=ints((6, 6), 8), bias=np.zeros(6, dtype=np.float32)),
            "lif2": lif(6, thr=0.5 + 2**-12),
            "out": nir.Output(output_type=np.array([6])),
        },
        edges=[
            ("in", "fc1"),
            ("fc1", "lif1"),
            ("lif1", "fc2"),
            ("fc2", "lif2"),
            ("in", "lif2"),
            ("lif2", "out"),
        ],
    )
    graph = check_against_reference(g, tmp_path, (6,))
    assert isinstance(graph.nodes["lif2.sum"], ir.Skip) and graph.nodes["lif2.sum"].skip_type == "residual"
    assert graph.predecessors("lif2.sum") == ["fc2", "in"] and graph.predecessors("lif2") == ["lif2.sum"]


def test_nested_subgraph_is_inlined_with_prefixed_names(tmp_path):
    block = nir.NIRGraph(
        nodes={
            "i": nir.Input(input_type=np.array([6])),
            "fc": nir.Affine(weight=ints((5, 6), 9), bias=np.zeros(5, dtype=np.float32)),
            "lif": lif(5),
            "o": nir.Output(output_type=np.array([5])),
        },
        edges=[("i", "fc"), ("fc", "lif"), ("lif", "o")],
    )
    g = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([6])),
            "block": block,
            "head": nir.Affine(weight=ints((3, 5), 10, 0, 3), bias=np.zeros(3, dtype=np.float32)),
            "lif": lif(3, thr=0.5 + 2**-12),
            "output": nir.Output(output_type=np.array([3])),
        },
        edges=[("input", "block"), ("block", "head"), ("head", "lif"), ("lif", "output")],
    )
    graph = check_against_reference(g, tmp_path, (6,))
    assert set(graph.nodes) == {"input", "block.fc", "block.lif", "head", "lif", "output"}
    assert graph.edges[0] == ("input", "block.fc")


def test_scale_folds_into_weight_layers(tmp_path):
    """Scale after a layer goes into its rows; Scale after neurons goes into the next layer's columns."""
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([4])),
        nir.Affine(weight=ints((6, 4), 11), bias=np.full(6, 0.25, dtype=np.float32)),
        nir.Scale(scale=np.array([2.0, 0.5, 1.0, 4.0, 2.0, 0.5])),
        lif(6),
        nir.Scale(scale=np.full(6, 0.5)),
        nir.Affine(weight=ints((3, 6), 12, 0, 3), bias=np.zeros(3, dtype=np.float32)),
        lif(3, thr=0.5 + 2**-12),
        nir.Output(output_type=np.array([3])),
    )
    graph = check_against_reference(g, tmp_path, (4,))
    assert not any(n.startswith("scale") for n in graph.nodes)
    np.testing.assert_array_equal(graph.nodes["affine"].bias, [0.5, 0.125, 0.25, 1.0, 0.5, 0.125])


def test_threshold_and_zero_delay_and_identity_scale(tmp_path):
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([5])),
        nir.Affine(weight=ints((4, 5), 13), bias=np.zeros(4, dtype=np.float32)),
        nir.Delay(delay=np.zeros(4)),
        nir.Scale(scale=np.ones(4)),
        nir.Threshold(threshold=np.full(4, 0.5)),
        nir.Output(output_type=np.array([4])),
    )
    graph = check_against_reference(g, tmp_path, (5,))
    assert graph.nodes["delay"].skip_type == "passthrough" and graph.nodes["scale"].skip_type == "passthrough"
    assert (graph.nodes["threshold"].tau == 1).all()


def test_conv_scale_folds_per_channel_and_subgraph_ports(tmp_path):
    """A per-channel Scale after a Conv2d goes into its filters; edges may name a subgraph's port."""
    per_channel = np.broadcast_to(np.array([2.0, 0.5, 1.0, 4.0])[:, None, None], (4, 4, 4)).copy()
    block = nir.NIRGraph(
        nodes={
            "x": nir.Input(input_type=np.array([2, 4, 4])),
            "conv": nir.Conv2d(
                input_shape=(4, 4),
                weight=ints((4, 2, 3, 3), 16),
                stride=1,
                padding=1,
                dilation=1,
                groups=1,
                bias=np.full(4, 0.5, dtype=np.float32),
            ),
            "scale": nir.Scale(scale=per_channel),
            "y": nir.Output(output_type=np.array([4, 4, 4])),
        },
        edges=[("x", "conv"), ("conv", "scale"), ("scale", "y")],
    )
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([2, 4, 4])),
            "block": block,
            "lif": lif((4, 4, 4)),
            "out": nir.Output(output_type=np.array([4, 4, 4])),
        },
        edges=[("in", "block"), ("block", "lif"), ("lif", "out")],
    )
    graph = check_against_reference(g, tmp_path, (2, 4, 4))
    assert "block.scale" not in graph.nodes
    np.testing.assert_array_equal(graph.nodes["block.conv"].bias, [1.0, 0.25, 0.5, 2.0])
    # nir 1.0's type check knows only the subgraph's name; untyped graphs may name its ports
    ports = nir.NIRGraph(
        nodes=dict(g.nodes),
        edges=[("in", "block.x"), ("block.y", "lif"), ("lif", "out")],
        type_check=False,
    )
    assert ir.topology_diff(graph, from_nir(ports, dt=DT)) == []


def test_node_map_overrides_win():
    g = _chain_nir(nir.Delay(delay=np.full(4, 2e-3)))
    with pytest.raises(NIRConversionError, match="no delay line"):
        from_nir(g, dt=DT)
    graph = from_nir(g, dt=DT, node_map={nir.Delay: lambda name, node, ctx: ir.Skip(skip_type="passthrough")})
    assert graph.nodes["delay"].skip_type == "passthrough"
    pool = _t1c_chain(ir.MaxPool2d(kernel_size=2), shape=(2, 4, 4))
    mine = {
        ir.MaxPool2d: lambda name, node, ctx: [
            (
                name,
                nir.AvgPool2d(
                    kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
                ),
            )
        ]
    }
    assert isinstance(to_nir(pool, dt=DT, node_map=mine).nodes["maxpool2d_1"], nir.AvgPool2d)


# -- T1C-IR -> NIR -> T1C-IR ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp_snn", "resnet_block", "spiking_affine"])
def test_round_trip_plain_lif_fixtures(name, fixtures_dir, tmp_path):
    source = ir.read(fixtures_dir / f"{name}.t1c")
    path = tmp_path / f"{name}.nir"
    nir.write(path, to_nir(fixtures_dir / f"{name}.t1c", dt=DT))
    back = from_nir(path, dt=DT)
    assert ir.topology_diff(source, back) == []
    for node_name, node in source.nodes.items():  # field for field, so outputs are bit-identical
        got = back.nodes[node_name].to_fields()
        for field, value in node.to_fields().items():
            np.testing.assert_array_equal(got[field], value, err_msg=f"{node_name}.{field}")
    xs = (np.random.default_rng(0).random((STEPS, 4, *source.nodes["input"].shape)) < 0.5).astype(np.float32)
    np.testing.assert_array_equal(run_t1c(back, xs), run_t1c(source, xs))
    fixture = np.load(fixtures_dir / f"{name}.npz")  # and still what the toolchain computed
    np.testing.assert_allclose(run_t1c(back, fixture["x"]), fixture["y"], rtol=0, atol=1e-5)


def test_export_matches_nir_reference_at_the_threshold():
    """A plain T1C LIF fires on v >= thr; NIR on v > thr: the exported threshold is the next
    float32 below, so a membrane exactly on the threshold still fires in NIR."""
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([2])}),
        ir.Affine(weight=np.eye(2), bias=np.zeros(2)),
        ir.LIF(tau=np.full(2, 2.0), r=np.full(2, 2.0), v_leak=np.zeros(2), v_threshold=np.ones(2)),
        ir.Output(),
        names=["input", "fc", "lif", "output"],
    )
    xs = np.array([[[1.0, 0.5]], [[0.0, 0.75]], [[1.0, 0.0]]], dtype=np.float32)  # v hits 1.0 exactly
    got = run_t1c(graph, xs)
    assert got[0, 0, 0] == 1  # >= fires on equality
    exported = to_nir(graph, dt=DT)
    assert exported.nodes["lif"].metadata["t1c_strict_threshold"] is False
    np.testing.assert_array_equal(simulate(exported, xs)[0], got)


def test_round_trip_snntorch_leaky_zero_reset_keeps_beta(tmp_path):
    beta = np.array([0.5, 0.75, 0.25], dtype=np.float32)
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([3])}),
        ir.Affine(weight=np.eye(3), bias=np.zeros(3)),
        ir.LIF(
            tau=1 / (1 - beta),
            r=1 / (1 - beta),
            v_leak=np.zeros(3),
            v_threshold=np.full(3, 1.0 + 2**-12),
            beta=beta,
            reset_mechanism="zero",
            reset_delay=False,
            strict_threshold=True,
        ),
        ir.Output(),
        names=["input", "fc", "lif", "output"],
    )
    exported = to_nir(graph, dt=DT)
    path = tmp_path / "leaky.nir"
    nir.write(path, exported)
    back = from_nir(path, dt=DT)
    np.testing.assert_array_equal(back.nodes["lif"].beta, beta)
    xs = spikes_in((3,))
    expected, margin = simulate(nir.read(path, type_check=False), xs)
    assert margin > MARGIN
    np.testing.assert_array_equal(run_t1c(back, xs), run_t1c(graph, xs))
    np.testing.assert_array_equal(run_t1c(graph, xs), expected)


def test_if_round_trip_and_sepconv_spiking_affine_export():
    beta1 = ir.LIF(
        tau=np.full(4, np.inf),
        r=np.full(4, np.inf),
        v_leak=np.zeros(4),
        v_threshold=np.full(4, 1.5),
        beta=np.ones(4),
        reset_mechanism="zero",
        reset_delay=False,
        strict_threshold=True,
    )
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([3])}),
        ir.SpikingAffine(
            weight=np.ones((4, 3)), bias=np.zeros(4), spike_mode="graded", weight_bits=4, accumulator_bits=12
        ),
        beta1,
        ir.Output(),
        names=["input", "sa", "if", "output"],
    )
    graph.nodes["sa"].metadata = {"origin": "test", "layer": 3}
    exported = to_nir(graph, dt=DT)
    assert isinstance(exported.nodes["if"], nir.IF) and isinstance(exported.nodes["sa"], nir.Affine)
    assert exported.nodes["sa"].metadata["weight_bits"] == 4
    back = from_nir(exported, dt=DT)
    assert ir.topology_diff(graph, back) == []
    assert isinstance(back.nodes["sa"], ir.SpikingAffine) and back.nodes["sa"].spike_mode == "graded"
    assert back.nodes["sa"].metadata == {"origin": "test", "layer": 3}  # plain node metadata travels
    xs = spikes_in((3,))
    np.testing.assert_array_equal(run_t1c(back, xs), run_t1c(graph, xs))

    sep = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([2, 5, 5])}),
        ir.SepConv2d(
            depthwise_weight=ints((2, 1, 3, 3), 14),
            pointwise_weight=ints((3, 2, 1, 1), 15),
            padding=1,
            stride=2,
        ),
        ir.Output(),
        names=["input", "sep", "output"],
    )
    exported = to_nir(sep, dt=DT)
    dw, pw = exported.nodes["sep.depthwise"], exported.nodes["sep.pointwise"]
    assert dw.groups == 2 and pw.weight.shape == (3, 2, 1, 1)
    assert ("sep.depthwise", "sep.pointwise") in exported.edges
    xs = np.random.default_rng(1).random((2, 1, 2, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(run_t1c(from_nir(exported, dt=DT), xs), run_t1c(sep, xs), rtol=0, atol=1e-6)
    np.testing.assert_allclose(simulate(exported, xs)[0], run_t1c(sep, xs), rtol=0, atol=1e-5)


# -- refusals ---------------------------------------------------------------------------------
def _chain_nir(*nodes, shape=(4,)):
    return nir.NIRGraph.from_list(nir.Input(input_type=np.array(shape)), *nodes, type_check=False)


def _bad_conv(**kw):
    args = dict(
        input_shape=(6, 6),
        weight=np.ones((2, 2, 2, 2)),
        stride=1,
        padding="same",
        dilation=1,
        groups=1,
        bias=np.zeros(2),
    )
    args.update(kw)
    return nir.Conv2d(**args)


NIR_REFUSALS = {
    "v_reset": (lambda: _chain_nir(lif(4, v_reset=np.full(4, 0.1))), "v_reset != 0"),
    "dt_ge_tau": (lambda: _chain_nir(lif(4, tau_steps=1.0)), "dt < tau"),
    "LI": (
        lambda: _chain_nir(nir.LI(tau=np.ones(4), r=np.ones(4), v_leak=np.zeros(4))),
        "outputs its membrane",
    ),
    "I": (lambda: _chain_nir(nir.I(r=np.ones(4))), "outputs its membrane"),
    "CubaLIF": (
        lambda: _chain_nir(
            nir.CubaLIF(
                tau_syn=np.ones(4),
                tau_mem=np.ones(4),
                r=np.ones(4),
                v_leak=np.zeros(4),
                v_threshold=np.ones(4),
            )
        ),
        "synaptic current",
    ),
    "CubaLI": (
        lambda: _chain_nir(
            nir.CubaLI(tau_syn=np.ones(4), tau_mem=np.ones(4), r=np.ones(4), v_leak=np.zeros(4))
        ),
        "synaptic current",
    ),
    "Delay": (lambda: _chain_nir(nir.Delay(delay=np.full(4, 2e-3))), "no delay line"),
    "Conv1d": (
        lambda: _chain_nir(
            nir.Conv1d(
                input_shape=8,
                weight=np.ones((2, 2, 3)),
                stride=1,
                padding=0,
                dilation=1,
                groups=1,
                bias=np.zeros(2),
            ),
            shape=(2, 8),
        ),
        "no 1-D convolution",
    ),
    "same_even_kernel": (lambda: _chain_nir(_bad_conv(), shape=(2, 6, 6)), "pads one side more"),
    "same_stride": (
        lambda: _chain_nir(_bad_conv(weight=np.ones((2, 2, 3, 3)), stride=2), shape=(2, 6, 6)),
        "undefined",
    ),
    "sumpool_last": (
        lambda: _chain_nir(
            nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
            shape=(2, 4, 4),
        ),
        "the next node 'output' is a Output",
    ),
    "sumpool_before_lif": (
        lambda: _chain_nir(
            nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
            lif((2, 2, 2)),
            shape=(2, 4, 4),
        ),
        "not an Affine/Linear/Conv2d",
    ),
    "scale_between_neurons": (
        lambda: _chain_nir(lif(4), nir.Scale(scale=np.full(4, 2.0)), lif(4)),
        "not an Affine",
    ),
    "if_negative_threshold": (
        lambda: _chain_nir(nir.IF(r=np.ones(4), v_threshold=np.full(4, -1.0))),
        "v_threshold <= 0",
    ),
    "if_negative_r": (lambda: _chain_nir(nir.IF(r=-np.ones(4), v_threshold=np.ones(4))), "r > 0"),
    "declared_output_shape": (
        lambda: nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type=np.array([4])),
                "fc": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
                "output": nir.Output(output_type=np.array([5])),
            },
            edges=[("input", "fc"), ("fc", "output")],
            type_check=False,
        ),
        "NIR declares output shape",
    ),
    "conv_input_shape": (
        lambda: _chain_nir(_bad_conv(weight=np.ones((2, 2, 3, 3)), input_shape=(5, 5)), shape=(2, 6, 6)),
        r"NIR declares output shape \[2, 5, 5\]",
    ),
    "conv_input_shape_same_output": (  # (5 + 2 - 3) // 2 + 1 == (6 + 2 - 3) // 2 + 1
        lambda: _chain_nir(
            _bad_conv(weight=np.ones((2, 2, 3, 3)), input_shape=(5, 5), stride=2, padding=1), shape=(2, 6, 6)
        ),
        r"input_shape \[5, 5\] but it receives \[6, 6\]",
    ),
    "scale_varies_over_hw": (
        lambda: _chain_nir(
            _bad_conv(weight=np.ones((2, 2, 3, 3))),
            nir.Scale(scale=np.arange(72, dtype=np.float64).reshape(2, 6, 6) + 1),
            lif((2, 6, 6)),
            shape=(2, 6, 6),
        ),
        "not an Affine",
    ),
    "affine_3d": (
        lambda: _chain_nir(nir.Affine(weight=np.ones((2, 3, 4)), bias=np.zeros(3))),
        "2-D Affine only",
    ),
}


@pytest.mark.parametrize("case", sorted(NIR_REFUSALS))
def test_from_nir_refuses_with_node_and_reason(case):
    build, reason = NIR_REFUSALS[case]
    graph = build()
    with pytest.raises(NIRConversionError, match=reason) as info:
        from_nir(graph, dt=DT)
    assert info.value.node in graph.nodes


def _t1c_chain(*nodes, shape=(4,)):
    return ir.Graph.from_chain(ir.Input(input_type={"input": np.array(shape)}), *nodes, ir.Output())


def _leaky(**kw):
    args = dict(
        tau=np.full(4, 2.0),
        r=np.full(4, 2.0),
        v_leak=np.zeros(4),
        v_threshold=np.ones(4),
        beta=np.full(4, 0.5),
    )
    args.update(kw)
    return ir.LIF(**args)


T1C_REFUSALS = {
    "maxpool": (lambda: _t1c_chain(ir.MaxPool2d(kernel_size=2), shape=(2, 4, 4)), "no max pooling"),
    "upsample": (lambda: _t1c_chain(ir.Upsample(scale_factor=2), shape=(2, 4, 4)), "no upsampling"),
    "concatenate": (
        lambda: ir.Graph(
            {
                "input": ir.Input(input_type={"input": np.array([4])}),
                "cat": ir.Skip(skip_type="concatenate"),
                "output": ir.Output(),
            },
            [("input", "cat"), ("cat", "output")],
        ),
        "no concatenation",
    ),
    "subtract_reset": (lambda: _t1c_chain(_leaky(reset_mechanism="subtract")), "reset_mechanism='subtract'"),
    "reset_delay": (lambda: _t1c_chain(_leaky(reset_mechanism="zero", reset_delay=True)), "reset_delay=True"),
    "no_reset": (lambda: _t1c_chain(_leaky(reset_mechanism="none")), "always resets"),
    "tau_le_1": (
        lambda: _t1c_chain(
            ir.LIF(tau=np.full(4, 0.5), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4))
        ),
        "tau <= 1",
    ),
    "mixed_beta": (
        lambda: _t1c_chain(_leaky(beta=np.array([1.0, 0.5, 0.5, 0.5]), reset_delay=False)),
        "split the layer",
    ),
    "avgpool_ceil": (
        lambda: _t1c_chain(ir.AvgPool2d(kernel_size=2, ceil_mode=True), shape=(2, 5, 5)),
        "ceil_mode",
    ),
    "avgpool_exclude_pad": (
        lambda: _t1c_chain(ir.AvgPool2d(kernel_size=2, padding=1, count_include_pad=False), shape=(2, 4, 4)),
        "count_include_pad",
    ),
}


@pytest.mark.parametrize("case", sorted(T1C_REFUSALS))
def test_to_nir_refuses_with_node_and_reason(case):
    build, reason = T1C_REFUSALS[case]
    graph = build()
    with pytest.raises(NIRConversionError, match=reason) as info:
        to_nir(graph, dt=DT)
    assert info.value.node in graph.nodes


def test_conv_fixture_refused_for_its_maxpool(fixtures_dir):
    with pytest.raises(NIRConversionError, match="node 'pool1': MaxPool2d"):
        to_nir(fixtures_dir / "conv_snn.t1c", dt=DT)


def test_approximate_exports_snntorch_leaky_with_a_warning():
    graph = _t1c_chain(_leaky(reset_mechanism="subtract", reset_delay=True, strict_threshold=True))
    with pytest.warns(UserWarning, match="exported approximately: reset_mechanism='subtract'"):
        exported = to_nir(graph, dt=DT, approximate=True)
    node = exported.nodes["lif_1"]
    np.testing.assert_allclose(1 - DT / node.tau, 0.5)  # the update is kept: v = 0.5 v + I
    np.testing.assert_allclose(DT / node.tau * node.r, 1.0)


def test_dt_is_required_and_checked():
    graph = ir.read(REPO / "tests" / "fixtures" / "mlp_snn.t1c")
    with pytest.raises(TypeError, match="dt is required"):
        to_nir(graph)
    with pytest.raises(TypeError, match="dt is required"):
        from_nir(to_nir(graph, dt=DT))
    with pytest.raises(ValueError, match="positive"):
        to_nir(graph, dt=-1.0)


def test_nir_is_optional(tmp_path):
    """Without the nir package, t1c imports and runs; t1c.nir says how to install it."""
    code = (
        "import sys; sys.modules['nir'] = None\n"
        "import t1c, t1c.ir, t1c.bridge, t1c.nir, t1c.cli\n"
        "from t1c.lightning import T1CExport, T1CModule\n"
        "from t1c.bridge import ir_to_torch\n"
        "ir_to_torch(t1c.ir.read(sys.argv[1]))\n"
        "try:\n"
        "    t1c.nir.from_nir('model.nir', dt=1e-3)\n"
        "except ImportError as err:\n"
        "    print('ERR', err)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "tests" / "fixtures" / "mlp_snn.t1c")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert "ERR t1c.nir needs the optional 'nir' package" in out and "pip install 't1c[nir]'" in out


# -- command line and T1CModule -----------------------------------------------------------
def _mlp_nir(path: Path) -> Path:
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([64])),
        nir.Affine(weight=np.random.default_rng(0).normal(0, 0.3, (32, 64)), bias=np.zeros(32)),
        lif(32, tau_steps=5.0, r=5.0, thr=1.0),
        nir.Affine(weight=np.random.default_rng(1).normal(0, 0.3, (10, 32)), bias=np.zeros(10)),
        lif(10, tau_steps=5.0, r=5.0, thr=1.0),
        nir.Output(output_type=np.array([10])),
    )
    nir.write(path, g)
    return path


def test_cli_convert_both_ways_and_inspect(in_tmp, fixtures_dir, capsys):
    from t1c.cli import EXIT_ERROR, EXIT_OK, main

    _mlp_nir(in_tmp / "model.nir")
    assert main(["convert", "model.nir", "model.t1c", "--dt", "1e-3"]) == EXIT_OK
    graph = ir.read("model.t1c")
    assert ir.topology_diff(from_nir("model.nir", dt=DT), graph) == []
    assert main(["convert", "model.t1c", "back.nir", "--dt", "1e-3"]) == EXIT_OK
    assert ir.topology_diff(graph, from_nir("back.nir", dt=DT)) == []
    assert main(["inspect", "model.nir", "--dt", "1e-3"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "converted at dt=0.001" in out and "LIF" in out and "affine_1" in out
    assert main(["inspect", "model.nir"]) == EXIT_ERROR
    assert main(["convert", str(fixtures_dir / "conv_snn.t1c"), "conv.nir", "--dt", "1e-3"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "pass --dt" in err and "node 'pool1': MaxPool2d" in err
    assert not Path("conv.nir").exists()


def test_t1cmodule_reads_nir_and_fit_exports_t1c(in_tmp):
    from t1c.cli import EXIT_OK, main
    from t1c.lightning import T1CModule

    _mlp_nir(in_tmp / "model.nir")
    with pytest.raises(ValueError, match="needs nir_dt"):
        T1CModule("model.nir")
    module = T1CModule("model.nir", nir_dt=DT, num_steps=4)
    assert module.source_path == "model.nir" and module.num_classes == 10
    rng = np.random.default_rng(0)
    np.savez("data.npz", x=rng.random((40, 64), dtype=np.float32), y=np.arange(40) % 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(
            [
                "fit",
                "--model.graph=model.nir",
                "--model.nir_dt=1e-3",
                "--model.num_steps=4",
                "--data=t1c.lightning.TensorDataModule",
                "--data.path=data.npz",
                "--data.batch_size=20",
                "--trainer.max_epochs=1",
                "--trainer.logger=false",
                "--trainer.enable_progress_bar=false",
                "--trainer.default_root_dir=run",
                "--trainer.callbacks+=t1c.lightning.T1CExport",
                "--trainer.callbacks.verify=raise",
                "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                "--trainer.callbacks.save_last=true",
            ]
        )
    assert rc == EXIT_OK
    exports = sorted(Path("run").rglob("*.t1c"))
    assert exports
    source = from_nir("model.nir", dt=DT)
    for path in exports:
        assert ir.topology_diff(source, ir.read(path)) == []
    Path("model.nir").unlink()  # the imported graph travels in the checkpoint
    (ckpt,) = Path("run").rglob("last.ckpt")
    restored = T1CModule.load_from_checkpoint(ckpt)
    assert ir.topology_diff(source, restored.export_graph()) == []
