"""The reference for t1c.nir's tests: NIR's equations simulated with nothing from t1c.nir.

:func:`simulate` is written from the equations in NIR's docstrings (forward Euler at ``dt``,
float64, numpy/torch functional ops) and knows nothing of T1C. T1C runs in float32 with
``b = 1 - 1/tau`` where the reference uses ``1 - dt/tau``, so the two round differently: the
graphs use small integer or power-of-two weights, binary input spikes and thresholds placed
between the values a membrane can take, and every comparison first asserts that no reference
membrane comes within ``MARGIN`` of a threshold. With that margin, spikes are compared exactly.

Also here: the small graph builders the test files share, and :func:`assert_refused`.
Import it after ``pytest.importorskip("nir")``.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from t1c import ir
from t1c.bridge import ir_to_torch
from t1c.nir import NIRConversionError, from_nir

DT = 1e-3
STEPS = 12
BATCH = 3
MARGIN = 1e-4
REPO = Path(__file__).resolve().parents[2]


# -- the reference: NIR's equations, nothing from t1c --------------------------------------
class NIRSim:
    """Runs a NIRGraph (nested graphs included) step by step in float64.

    ``margin`` is the smallest ``|v - threshold|`` any spiking neuron saw.

    Recurrence: an edge from a neuron to a node that leads back to that neuron delivers the
    neuron's spikes of the previous step (zeros at the first): the recurrent layer
    ``I_t = x_t + W s_{t-1} + b`` of snnTorch's ``RLeaky``/``RSynaptic`` (their NIR export is
    ``input -> lif -> w_rec -> lif``) and of nirtorch's executor, which feeds a module the
    cached previous output of one not yet run.
    """

    _NEURONS = (nir.LIF, nir.IF, nir.CubaLIF)

    def __init__(self, graph, dt: float) -> None:
        self.graph, self.dt = graph, dt
        self.state: dict = {}
        self.last: dict = {}  # a neuron's spikes of the previous step
        self.margin = np.inf
        self.subs = {n: NIRSim(g, dt) for n, g in graph.nodes.items() if isinstance(g, nir.NIRGraph)}

    def _edges(self) -> list[tuple[str, str]]:
        """Edges between this graph's nodes (``sub.port`` ends name the subgraph ``sub``)."""
        nodes = self.graph.nodes
        return [tuple(n if n in nodes else n.split(".")[0] for n in edge) for edge in self.graph.edges]

    def _reaches(self, start: str, goal: str) -> bool:
        seen, frontier = {start}, [start]
        while frontier:
            name = frontier.pop()
            if name == goal:
                return True
            nxt = [d for s, d in self._edges() if s == name and d not in seen]
            seen.update(nxt)
            frontier += nxt
        return False

    def _delayed(self) -> set[tuple[str, str]]:
        nodes = self.graph.nodes
        return {
            (s, d) for s, d in self._edges() if isinstance(nodes[s], self._NEURONS) and self._reaches(d, s)
        }

    def _order(self) -> list[str]:
        nodes, delayed = self.graph.nodes, self._delayed()
        edges = [e for e in self._edges() if e not in delayed]
        done: list[str] = []
        while len(done) < len(nodes):
            ready = [n for n in nodes if n not in done and all(s in done for s, d in edges if d == n)]
            assert ready, f"reference: no step order for {self.graph.edges}"
            done += ready[:1]
        return done

    def _spike(self, v: np.ndarray, thr) -> np.ndarray:
        self.margin = min(self.margin, float(np.abs(v - thr).min()))
        return (v > thr).astype(np.float64)

    def _previous(self, name: str, batch: int) -> np.ndarray:
        shape = np.shape(self.graph.nodes[name].v_threshold)
        return self.last.get(name, np.zeros((batch, *shape)))

    def step(self, x: np.ndarray) -> np.ndarray:
        vals: dict[str, np.ndarray] = {}
        edges, delayed = self._edges(), self._delayed()
        for name in self._order():
            node = self.graph.nodes[name]
            ins = [self._previous(s, len(x)) if (s, d) in delayed else vals[s] for s, d in edges if d == name]
            i = sum(ins[1:], ins[0]) if ins else x
            vals[name] = self._node(name, node, i)
        self.last.update({s: vals[s] for s, _ in delayed})
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
        if isinstance(node, nir.CubaLIF):  # tau_syn dI/dt = -I + w_in S, then the membrane from I
            cur = self.state.get(name + "/i", np.zeros_like(i))
            cur = self.state[name + "/i"] = cur + self.dt / node.tau_syn * (-cur + node.w_in * i)
            v = v + self.dt / node.tau_mem * (node.v_leak - v + node.r * cur)
        elif isinstance(node, nir.LIF):  # tau dv/dt = (v_leak - v) + R I
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


# -- builders ---------------------------------------------------------------------------------
def chain_nir(*nodes, shape=(4,)):
    return nir.NIRGraph.from_list(nir.Input(input_type=np.array(shape)), *nodes, type_check=False)


def t1c_chain(*nodes, shape=(4,)):
    return ir.Graph.from_chain(ir.Input(input_type={"input": np.array(shape)}), *nodes, ir.Output())


def bad_conv(**kw):
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


def assert_refused(convert, graph, reason: str) -> None:
    """``convert(graph, dt=DT)`` raises a NIRConversionError matching ``reason`` and naming a node of ``graph``."""
    with pytest.raises(NIRConversionError, match=reason) as info:
        convert(graph, dt=DT)
    assert info.value.node in graph.nodes


def every_imported_type(n_taus: int = 8) -> nir.NIRGraph:
    """One chain with a node of every NIR type from_nir imports as itself (float32 fields, as
    frameworks write them; varied time constants, not chosen to divide dt exactly)."""
    f32 = np.float32
    taus = np.linspace(7e-3, 3.1e-2, n_taus, dtype=f32)

    def conv(c_in: int, c_out: int, hw: tuple[int, int], seed: int):
        weight = np.random.default_rng(seed).normal(0, 0.3, (c_out, c_in, 3, 3)).astype(f32)
        return nir.Conv2d(
            input_shape=hw, weight=weight, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1,
            bias=np.full(c_out, 0.25, f32),
        )  # fmt: skip

    nodes = {
        "in": nir.Input(input_type=np.array([2, 8, 8])),
        "conv": conv(2, 4, (8, 8), 0),
        "if1": nir.IF(r=np.full((4, 8, 8), 3.7, f32), v_threshold=np.full((4, 8, 8), 1.3, f32)),
        "pool": nir.AvgPool2d(
            kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
        ),
        "conv2": conv(4, 4, (4, 4), 1),
        "thr": nir.Threshold(threshold=np.full((4, 4, 4), 0.5, f32)),
        "delay": nir.Delay(delay=np.zeros((4, 4, 4), f32)),
        "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(
            weight=np.full((n_taus, 64), 0.125, f32), bias=np.linspace(-1, 1, n_taus, dtype=f32)
        ),
        "lif": nir.LIF(
            tau=taus,
            r=np.full(n_taus, 1.5, f32),
            v_leak=np.full(n_taus, 0.1, f32),
            v_threshold=np.ones(n_taus, f32),
        ),
        "lin": nir.Linear(weight=np.random.default_rng(2).normal(0, 0.5, (6, n_taus)).astype(f32)),
        "cuba": nir.CubaLIF(
            tau_syn=np.linspace(3e-3, 9.3e-3, 6, dtype=f32),
            tau_mem=np.linspace(1.1e-2, 4.7e-2, 6, dtype=f32),
            r=np.full(6, 1.25, f32),
            v_leak=np.zeros(6, f32),
            v_threshold=np.ones(6, f32),
            w_in=np.full(6, 2.0, f32),
        ),  # fmt: skip
        "out": nir.Output(output_type=np.array([6])),
    }
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])))


def assert_same_nir(got, want) -> None:
    """Two NIR graphs with the same node names, types, edges and fields (values and dtypes),
    nested graphs compared the same way."""
    assert sorted(got.nodes) == sorted(want.nodes)
    assert sorted(map(tuple, got.edges)) == sorted(map(tuple, want.edges))
    for name, node in want.nodes.items():
        other = got.nodes[name]
        assert type(other) is type(node), (name, type(other).__name__, type(node).__name__)
        if isinstance(node, nir.NIRGraph):
            assert_same_nir(other, node)
            continue
        mine, theirs = other.to_dict(), node.to_dict()
        assert sorted(mine) == sorted(theirs), name
        for key, value in theirs.items():
            a, b = np.asarray(mine[key]), np.asarray(value)
            assert a.dtype == b.dtype and np.array_equal(a, b), (name, key, a, b)
