"""Recurrent NIR graphs (cycles) <-> recurrent T1C-IR graphs, both ways and through files.

Imports are checked against ``nir_reference.simulate``, NIR's equations in float64 with a
recurrent edge delivering last step's spikes (written without t1c.nir); exports against
snnTorch's own NIR importer, which builds ``RLeaky``/``RSynaptic`` from the cycle.
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest
import torch

from t1c import ir

nir = pytest.importorskip("nir")

from nir_reference import (  # noqa: E402
    DT,
    assert_same_nir,
    check_against_reference,
    ints,
    lif,
    run_t1c,
    simulate,
    spikes_in,
)

from t1c.nir import from_nir, to_nir  # noqa: E402

N = 4
F32 = np.float32


def cuba(n: int = N, thr: float = 1.5 + 2**-12) -> nir.CubaLIF:
    """A NIR CubaLIF whose Euler step at DT is ``I = I/2 + S``, ``v = v/2 + I`` (dyadic)."""
    return nir.CubaLIF(
        tau_syn=np.full(n, 2 * DT, F32), tau_mem=np.full(n, 2 * DT, F32), r=np.full(n, 2.0, F32),
        v_leak=np.zeros(n, F32), v_threshold=np.full(n, thr, F32), w_in=np.full(n, 2.0, F32),
        v_reset=np.zeros(n, F32),
    )  # fmt: skip


def feedback(n: int = N, bias: float = 0.25, seed: int = 3) -> nir.Affine:
    return nir.Affine(weight=ints((n, n), seed) * F32(0.5), bias=np.full(n, bias, F32))


def snntorch_rnn(cell, rec, n_in: int = 3, head: bool = True) -> nir.NIRGraph:
    """A network around a recurrent layer as snnTorch's export_nir writes RLeaky/RSynaptic:
    a subgraph ``input -> lif -> w_rec -> lif -> output`` (``head``: a Linear after it)."""
    n = rec.weight.shape[0]
    rnn = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n])),
            "lif": cell,
            "w_rec": rec,
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )
    nodes = {
        "in": nir.Input(input_type=np.array([n_in])),
        "fc": nir.Linear(weight=ints((n, n_in), 5)),
        "rnn": rnn,
    }
    if not head:
        nodes["out"] = nir.Output(output_type=np.array([n]))
        return nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "rnn"), ("rnn", "out")])
    nodes.update(fc2=nir.Linear(weight=ints((2, n), 6)), out=nir.Output(output_type=np.array([2])))
    return nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "rnn"), ("rnn", "fc2"), ("fc2", "out")])


def rnn_graph(neuron: str) -> nir.NIRGraph:
    return snntorch_rnn(lif(N) if neuron == "LIF" else cuba(), feedback())


@pytest.mark.parametrize("neuron", ["LIF", "CubaLIF"])
def test_snntorch_recurrent_subgraph_runs_nirs_equations(neuron, tmp_path):
    """snnTorch's RLeaky/RSynaptic form imports as a recurrent graph spiking as NIR's reference."""
    graph = check_against_reference(rnn_graph(neuron), tmp_path, (3,))
    assert graph.cyclic and graph.allow_cycles
    order = list(graph.nodes)
    assert order.index("rnn.w_rec") < order.index("rnn.lif")  # so (lif, w_rec) is the back edge
    assert graph.predecessors("rnn.lif.sum") == ["fc", "rnn.w_rec"]  # NIR sums input and feedback


@pytest.mark.parametrize("rec_listed_first", [True, False])
def test_foreign_flat_cycle_runs_nirs_equations_whatever_the_node_order(rec_listed_first, tmp_path):
    """A CubaLIF with an Affine feedback at the top level (as nirviz's example writes it)."""
    nodes = {
        "in": nir.Input(input_type=np.array([3])),
        "affine1": nir.Affine(weight=ints((N, 3), 8), bias=np.zeros(N, F32)),
    }
    pair = {"affine_rec": feedback(seed=9), "cu1": cuba()}
    nodes.update(pair if rec_listed_first else dict(reversed(pair.items())))
    nodes["out"] = nir.Output(output_type=np.array([N]))
    edges = [
        ("in", "affine1"),
        ("affine1", "cu1"),
        ("affine_rec", "cu1"),
        ("cu1", "affine_rec"),
        ("cu1", "out"),
    ]
    check_against_reference(nir.NIRGraph(nodes=nodes, edges=edges), tmp_path, (3,), seed=1)  # fmt: skip


def test_neuron_fed_back_to_itself_sums_last_steps_spikes(tmp_path):
    """An edge from a LIF to itself: NIR sums it with the input; the join makes it a back edge."""
    nodes = {
        "in": nir.Input(input_type=np.array([3])),
        "fc": nir.Linear(weight=ints((N, 3), 5)),
        "lif": lif(N),
    }
    nodes["out"] = nir.Output(output_type=np.array([N]))
    edges = [("in", "fc"), ("fc", "lif"), ("lif", "lif"), ("lif", "out")]
    graph = check_against_reference(nir.NIRGraph(nodes=nodes, edges=edges), tmp_path, (3,), seed=2)
    assert graph.predecessors("lif.sum") == ["fc", "lif"] and list(graph.nodes).index("lif.sum") < list(
        graph.nodes
    ).index("lif")


def test_feedback_bias_reaches_the_neuron_at_the_first_step(tmp_path):
    """snnTorch's rec(0) = bias: with no input at all, a bias above threshold fires at step 0."""
    g = snntorch_rnn(lif(N), nir.Affine(weight=np.zeros((N, N), F32), bias=np.full(N, 1.5, F32)))
    nir.write(tmp_path / "m.nir", g)
    xs = np.zeros((4, 2, 3), F32)
    expected, _ = simulate(nir.read(tmp_path / "m.nir"), xs)
    got = run_t1c(from_nir(tmp_path / "m.nir", dt=DT), xs)
    assert expected[0].any()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("neuron", ["LIF", "CubaLIF"])
def test_convert_round_trip_nir_t1c_nir_keeps_the_recurrent_subgraph(neuron, in_tmp):
    """t1c convert, both ways through files: the same nodes (the subgraph too), edges and fields."""
    from t1c.cli import EXIT_OK, main

    nir.write("model.nir", rnn_graph(neuron))
    assert main(["convert", "model.nir", "model.t1c", "--dt", str(DT)]) == EXIT_OK
    graph = ir.read("model.t1c")
    assert graph.cyclic
    assert ir.topology_diff(from_nir("model.nir", dt=DT), graph) == []
    xs = spikes_in((3,), seed=4)
    np.testing.assert_array_equal(run_t1c(graph, xs), simulate(nir.read("model.nir"), xs)[0])
    assert main(["convert", "model.t1c", "back.nir", "--dt", str(DT)]) == EXIT_OK
    assert_same_nir(nir.read("back.nir"), nir.read("model.nir"))


def bridge_rsynaptic(n: int = 6) -> ir.Graph:
    """An RSynaptic layer as docs/neurons.md's "Recurrent wiring" writes it: rec before the
    neuron, (fc, neuron) before (rec, neuron), and the back edge (neuron, rec)."""
    rng = np.random.default_rng(7)
    alpha, beta = rng.uniform(0.5, 0.9, n).astype(F32), rng.uniform(0.6, 0.95, n).astype(F32)
    tau_syn = (1 / (1 - alpha.astype(np.float64))).astype(F32)
    tau_mem = (1 / (1 - beta.astype(np.float64))).astype(F32)
    neuron = ir.CubaLIF(
        tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem, v_leak=np.zeros(n, F32), v_threshold=np.full(n, 1.0, F32),
        w_in=tau_syn, alpha=alpha, beta=beta, reset_mechanism="zero", reset_delay=False,
    )  # fmt: skip
    nodes = {
        "input": ir.Input(input_type={"input": np.array([3])}),
        "fc": ir.Affine(weight=rng.normal(0, 1, (n, 3)).astype(F32), bias=np.zeros(n, F32)),
        "rec": ir.Affine(weight=rng.normal(0, 0.5, (n, n)).astype(F32), bias=np.full(n, 0.1, F32)),
        "neuron": neuron,
        "output": ir.Output(),
    }
    edges = [("input", "fc"), ("fc", "neuron"), ("rec", "neuron"), ("neuron", "rec"), ("neuron", "output")]
    return ir.Graph(nodes, edges, allow_cycles=True)


def test_t1c_recurrent_graph_exports_with_its_cycle_and_comes_back(tmp_path):
    """to_nir writes the cycle (NIR sums input and feedback); from_nir gives the same graph back."""
    graph = bridge_rsynaptic()
    nir.write(tmp_path / "rnn.nir", to_nir(graph, dt=1e-4))
    written = nir.read(tmp_path / "rnn.nir")
    assert {("fc", "neuron"), ("rec", "neuron"), ("neuron", "rec")} <= set(map(tuple, written.edges))
    assert isinstance(written.nodes["neuron"], nir.CubaLIF) and isinstance(written.nodes["rec"], nir.Affine)
    back = from_nir(tmp_path / "rnn.nir", dt=1e-4)
    assert ir.topology_diff(graph, back) == []
    assert list(back.nodes) == list(graph.nodes) and set(back.edges) == set(graph.edges)
    assert back.predecessors("neuron") == ["fc", "rec"]  # no join: input, then feedback, as snnTorch adds
    xs = (np.random.default_rng(1).random((300, 4, 3)) < 0.3).astype(F32)
    np.testing.assert_array_equal(run_t1c(back, xs), run_t1c(graph, xs))


def snntorch_import_nir(monkeypatch):
    """snnTorch 1.0's importer module. It imports nirtorch only for import_from_nir's last
    call (nirtorch.nir_to_torch), which these tests do not make: a stand-in module is enough."""
    monkeypatch.setitem(sys.modules, "nirtorch", types.ModuleType("nirtorch"))
    monkeypatch.delitem(sys.modules, "snntorch.import_nir", raising=False)
    return importlib.import_module("snntorch.import_nir")


def test_snntorch_reads_the_exported_cycle_back_as_rsynaptic(monkeypatch):
    """snnTorch's import_from_nir finds the lif <-> w_rec pair and builds RSynaptic with our weights."""
    snn_import = snntorch_import_nir(monkeypatch)
    graph = bridge_rsynaptic()
    grouped = snn_import._replace_rnn_subgraph_with_nirgraph(to_nir(graph, dt=1e-4))  # snnTorch's dt
    module = snn_import._nir_to_snntorch_module(grouped.nodes["neuron"])
    assert type(module).__name__ == "RSynaptic" and module.all_to_all
    rec = graph.nodes["rec"]
    np.testing.assert_array_equal(module.recurrent.weight.detach().numpy(), rec.weight)
    np.testing.assert_array_equal(module.recurrent.bias.detach().numpy(), rec.bias)
    np.testing.assert_allclose(module.alpha.numpy(), graph.nodes["neuron"].alpha, rtol=0, atol=1e-6)
    np.testing.assert_allclose(module.beta.numpy(), graph.nodes["neuron"].beta, rtol=0, atol=1e-6)


def test_snntorch_reads_a_round_tripped_rleaky_subgraph_back_as_rleaky(monkeypatch, tmp_path):
    """snnTorch's RLeaky export (dt = 1e-4, beta 0.5) -> .t1c -> NIR: snnTorch builds the same RLeaky."""
    snn_import = snntorch_import_nir(monkeypatch)
    dt = 1e-4
    cell = nir.LIF(
        tau=np.full(N, 2 * dt),
        r=np.full(N, 2.0),
        v_leak=np.zeros(N),
        v_threshold=np.ones(N),
        v_reset=np.zeros(N),
    )
    rec = feedback()
    ir.write(tmp_path / "m.t1c", from_nir(snntorch_rnn(cell, rec), dt=dt))
    back = to_nir(tmp_path / "m.t1c", dt=dt)
    module = snn_import._nir_to_snntorch_module(back.nodes["rnn"])
    assert type(module).__name__ == "RLeaky" and module.all_to_all
    assert float(module.beta) == pytest.approx(0.5, abs=1e-12) and float(module.threshold) == 1.0
    np.testing.assert_array_equal(module.recurrent.weight.detach().numpy(), rec.weight)
    np.testing.assert_array_equal(module.recurrent.bias.detach().numpy(), rec.bias)
    assert isinstance(module.recurrent, torch.nn.Linear)


@pytest.mark.parametrize("neuron", ["LIF", "CubaLIF"])
def test_long_runs_spike_as_nirs_equations(neuron, tmp_path):
    """500 steps, batch 4: every spike of the imported recurrent layer equals NIR's reference."""
    cell = lif(N) if neuron == "LIF" else cuba(thr=0.9)  # a threshold no membrane comes near
    nir.write(tmp_path / "m.nir", snntorch_rnn(cell, feedback(), head=False))
    xs = (np.random.default_rng(11).random((500, 4, 3)) < 0.3).astype(F32)
    expected, margin = simulate(nir.read(tmp_path / "m.nir"), xs)
    assert margin > 1e-4, f"test design: a membrane came within {margin} of a threshold"
    assert 0.05 < expected.mean() < 0.95, "test design: the layer should spike, but not always"
    np.testing.assert_array_equal(run_t1c(from_nir(tmp_path / "m.nir", dt=DT), xs), expected)


def one_to_one(**exact) -> ir.Graph:
    """A CubaLIF layer with a one-to-one recurrence (snnTorch's ``all_to_all=False``): ``w_rec``."""
    zeros, ones = np.zeros(N, F32), np.ones(N, F32)
    neuron = ir.CubaLIF(
        tau_syn=2 * ones, tau_mem=2 * ones, r=2 * ones, v_leak=zeros, v_threshold=np.full(N, 1.5 + 2**-12, F32),
        w_in=2 * ones, w_rec=np.array([0.5, -1.0, 0.25, 1.0], F32), **exact,
    )  # fmt: skip
    fc = ir.Affine(weight=ints((N, 3), 13), bias=zeros)
    return ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([3])}),
        fc,
        neuron,
        ir.Output(),
        names=["in", "fc", "rnn.lif", "out"],
    )


@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")  # snnTorch's torch.from_numpy
def test_w_rec_exports_as_snntorchs_diagonal_linear_cycle_and_comes_back(tmp_path, monkeypatch):
    """w_rec -> a diagonal Linear '<neuron>.w_rec' on a cycle: NIR's reference spikes as the T1C
    graph, from_nir folds it back into w_rec, and snnTorch builds a one-to-one RSynaptic of it."""
    graph, dt = one_to_one(), 1e-4  # snnTorch's importer assumes dt = 1e-4
    nir.write(tmp_path / "m.nir", to_nir(graph, dt=dt))
    written = nir.read(tmp_path / "m.nir")
    rec = written.nodes["rnn"].nodes["lif.w_rec"]  # nested: the names share the prefix 'rnn'
    assert isinstance(rec, nir.Linear)
    np.testing.assert_array_equal(rec.weight, np.diag(graph.nodes["rnn.lif"].w_rec))
    xs = (np.random.default_rng(5).random((200, 4, 3)) < 0.5).astype(F32)
    expected, margin = simulate(written, xs, dt)
    assert margin > 1e-4 and 0.05 < expected.mean() < 0.95, "test design"
    np.testing.assert_array_equal(run_t1c(graph, xs), expected)
    back = from_nir(tmp_path / "m.nir", dt=dt)
    assert ir.topology_diff(graph, back) == [] and set(back.nodes) == set(graph.nodes)
    np.testing.assert_array_equal(back.nodes["rnn.lif"].w_rec, graph.nodes["rnn.lif"].w_rec)
    snn_import = snntorch_import_nir(monkeypatch)
    module = snn_import._nir_to_snntorch_module(written.nodes["rnn"])
    assert type(module).__name__ == "RSynaptic" and not module.all_to_all
    np.testing.assert_array_equal(module.recurrent.V.detach().numpy(), graph.nodes["rnn.lif"].w_rec)


def bridge_rleaky() -> ir.Graph:
    """An RLeaky layer as docs/neurons.md writes it: a CubaLIF with beta, no current stage."""
    ones, beta = np.ones(N, F32), np.full(N, 0.5, F32)
    neuron = ir.CubaLIF(
        tau_syn=ones, tau_mem=2 * ones, r=2 * ones, v_leak=0 * ones, v_threshold=np.full(N, 1 + 2**-12, F32),
        w_in=ones, beta=beta, reset_mechanism="zero", reset_delay=False,
    )  # fmt: skip
    rec = feedback()
    nodes = {
        "input": ir.Input(input_type={"input": np.array([3])}),
        "fc": ir.Affine(weight=ints((N, 3), 5), bias=np.zeros(N, F32)),
        "rec": ir.Affine(weight=rec.weight, bias=rec.bias),
        "neuron": neuron,
        "output": ir.Output(),
    }
    edges = [("input", "fc"), ("fc", "neuron"), ("rec", "neuron"), ("neuron", "rec"), ("neuron", "output")]
    return ir.Graph(nodes, edges, allow_cycles=True)


def test_rleaky_form_exports_as_snntorchs_lif_cycle_and_comes_back(tmp_path, monkeypatch):
    """A CubaLIF without a current stage is written as the nir.LIF snnTorch writes for RLeaky: NIR's
    reference spikes as the T1C graph, from_nir gives the CubaLIF back, snnTorch builds RLeaky."""
    graph, dt = bridge_rleaky(), 1e-4
    nir.write(tmp_path / "m.nir", to_nir(graph, dt=dt))
    written = nir.read(tmp_path / "m.nir")
    assert isinstance(written.nodes["neuron"], nir.LIF)
    xs = (np.random.default_rng(6).random((300, 4, 3)) < 0.4).astype(F32)
    expected, margin = simulate(written, xs, dt)
    assert margin > 1e-4 and 0.05 < expected.mean() < 0.95, "test design"
    np.testing.assert_array_equal(run_t1c(graph, xs), expected)
    back = from_nir(tmp_path / "m.nir", dt=dt)
    assert ir.topology_diff(graph, back) == [] and back.nodes["neuron"].beta is not None
    snn_import = snntorch_import_nir(monkeypatch)
    grouped = snn_import._replace_rnn_subgraph_with_nirgraph(written)
    module = snn_import._nir_to_snntorch_module(grouped.nodes["neuron"])
    assert type(module).__name__ == "RLeaky" and module.all_to_all and float(module.beta) == 0.5
    np.testing.assert_array_equal(module.recurrent.weight.detach().numpy(), graph.nodes["rec"].weight)
    np.testing.assert_array_equal(module.recurrent.bias.detach().numpy(), graph.nodes["rec"].bias)


def test_snntorchs_own_rleaky_export_imports_spike_for_spike():
    """snnTorch's ``export_to_nir`` (with nirtorch) of Linear + all-to-all RLeaky, as it writes it
    (flat ``1.lif`` / ``1.w_rec`` on a cycle): ``from_nir`` runs the snnTorch model's spikes.

    Zero reset without delay is the setting NIR's LIF expresses; weights on a 1/64 grid so the
    recurrent matmul's summation order cannot round differently."""
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 6),
        snn.RLeaky(
            beta=0.875, linear_features=6, reset_mechanism="zero", reset_delay=False, init_hidden=True
        ),
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.round(parameter * 64) / 64)
    xs = (torch.rand(200, 4, 5, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    with torch.no_grad():
        expected = torch.stack([model(x) for x in xs]).numpy()
    written = export_to_nir(model, torch.zeros(5))  # snnTorch's dt: 1e-4
    assert {("1.lif", "1.w_rec"), ("1.w_rec", "1.lif")} <= set(map(tuple, written.edges))
    graph = from_nir(written, dt=1e-4)
    assert graph.cyclic
    assert 0.05 < expected.mean() < 0.95, "test design: the layer should spike, but not always"
    np.testing.assert_array_equal(run_t1c(graph, xs.numpy()), expected)
