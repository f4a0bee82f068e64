"""Hybrid ANN-SNN export: ``to_ir(model, sample, hybrid=True)`` and its twins.

The ANN modules of FORMAT_HYBRID.md become their nodes and the exported graph computes
what the eval-mode model computes (floats within 1e-5; spikes exactly, stepped with the
same batch through the same torch modules, as in test_export_fuzz.py). What the
toolchain gets wrong is refused or kept (each has a test), modules without a node are
refused naming their path, and graphs imported with markers (every hybrid fixture, and
nested graphs) export back with the same topology.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import snntorch as snn
import torch
from test_support_matrix import names, run_steps, table
from torch import nn

from t1c import ir
from t1c.bridge import ExportError, ir_to_torch, to_ir
from t1c.bridge.exporter import T1CExporter
from t1c.bridge.hybrid_modules import HybridRegionModule
from t1c.snntorch import export_to_ir

HYBRID = Path(__file__).resolve().parents[1] / "fixtures" / "hybrid"
NAMES = sorted(p.stem for p in HYBRID.glob("*.t1c"))


def _randomize_batchnorm(bn: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        if bn.weight is not None:
            bn.weight.copy_(torch.randn(bn.num_features, generator=gen))
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen))
    return bn


def _export(model: nn.Module, x: torch.Tensor, **kwargs) -> ir.Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # never a warning and a file
        return to_ir(model, x, hybrid=True, **kwargs)


def _assert_computes(graph: ir.Graph, model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected = model.eval()(x)
        actual = ir_to_torch(graph)(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


# -- every module becomes its node --------------------------------------------------------
CASES = {
    "relu": (lambda: nn.ReLU(), (6,), ir.ReLU, {"negative_slope": 0.0}),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), (3, 4, 4), ir.ReLU, {"negative_slope": 0.2}),
    "leaky_relu_default": (lambda: nn.LeakyReLU(), (6,), ir.ReLU, {"negative_slope": 0.01}),
    "leaky_relu_zero": (lambda: nn.LeakyReLU(0.0), (6,), ir.ReLU, {"negative_slope": 0.0}),
    "prelu_shared": (lambda: nn.PReLU(init=0.3), (3, 4, 4), ir.PReLU, {}),
    "prelu_per_channel": (lambda: nn.PReLU(3, init=0.1), (3, 4, 4), ir.PReLU, {}),
    "bn1d": (lambda: nn.BatchNorm1d(6, eps=1e-3, momentum=0.3), (6,), ir.BatchNorm1d, {"momentum": 0.3}),
    "bn1d_cl": (lambda: nn.BatchNorm1d(3), (3, 5), ir.BatchNorm1d, {"eps": 1e-5}),
    "bn1d_no_affine": (lambda: nn.BatchNorm1d(6, affine=False), (6,), ir.BatchNorm1d, {}),
    "bn2d": (lambda: nn.BatchNorm2d(3), (3, 4, 4), ir.BatchNorm2d, {"num_features": 3}),
    "sigmoid": (lambda: nn.Sigmoid(), (6,), ir.Sigmoid, {"features": 6}),
    "tanh": (lambda: nn.Tanh(), (3, 4, 4), ir.Tanh, {"features": 48}),
    "softmax_1": (lambda: nn.Softmax(dim=1), (3, 4, 4), ir.Softmax, {"dim": 1}),
    "softmax_last": (lambda: nn.Softmax(dim=-1), (3, 4, 4), ir.Softmax, {"dim": -1}),
    "softmax_batch": (lambda: nn.Softmax(dim=0), (6,), ir.Softmax, {"dim": 0}),
    "softmax_negative_batch": (lambda: nn.Softmax(dim=-2), (6,), ir.Softmax, {"dim": 0}),
    "gelu_exact": (lambda: nn.GELU(), (6,), ir.GELU, {"approximate": False}),
    "gelu_tanh": (lambda: nn.GELU("tanh"), (6,), ir.GELU, {"approximate": True}),
    "elu": (lambda: nn.ELU(alpha=0.5), (6,), ir.ELU, {"alpha": 0.5}),
    "layernorm": (lambda: nn.LayerNorm(6, eps=1e-4), (6,), ir.LayerNorm, {"eps": 1e-4}),
    "layernorm_no_bias": (lambda: nn.LayerNorm((4, 4), bias=False), (3, 4, 4), ir.LayerNorm, {}),
    "dropout": (lambda: nn.Dropout(0.3), (6,), ir.Dropout, {"p": 0.3, "features": 6}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_module_becomes_its_node_and_computes_what_torch_computes(case, tmp_path):
    make, shape, node_type, fields = CASES[case]
    torch.manual_seed(0)
    module = make()
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        _randomize_batchnorm(module, 1)
    if isinstance(module, nn.LayerNorm) and module.weight is not None:
        with torch.no_grad():
            module.weight.normal_()
    model = nn.Sequential(module)
    x = torch.randn(4, *shape) * 3
    graph = _export(model, x)
    node = graph.nodes["0"]
    assert type(node) is node_type
    for name, value in fields.items():
        assert getattr(node, name) == pytest.approx(value), name
    _assert_computes(graph, model, x)
    ir.write(tmp_path / "m.t1c", graph)  # and the file computes it too
    _assert_computes(ir.read(tmp_path / "m.t1c"), model, x)


def test_exporter_class_snntorch_entry_point_and_default_agree():
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh())
    _randomize_batchnorm(model[1], 2)
    x = torch.randn(3, 4)
    graphs = [
        to_ir(model, x, hybrid=True),
        T1CExporter(hybrid=True).export(model, x),
        export_to_ir(model, x, hybrid=True),
    ]
    for graph in graphs:
        assert [type(graph.nodes[n]).__name__ for n in ("0", "1", "2")] == ["Affine", "BatchNorm1d", "Tanh"]
        assert ir.topology_diff(graphs[0], graph) == []
    with pytest.raises(ValueError, match="hybrid must be True or False"):
        T1CExporter(hybrid="yes")


# -- docs/support.md's hybrid table is true ---------------------------------------------------
HYBRID_ROWS = table("Hybrid modules (`hybrid=True`)")


@pytest.mark.parametrize("row", HYBRID_ROWS, ids=[r["torch / snnTorch"] for r in HYBRID_ROWS])
def test_support_matrix_hybrid_row(row, tmp_path):
    namespace = {"nn": nn, "snn": snn, "torch": torch, "HybridRegionModule": HybridRegionModule}
    torch.manual_seed(0)
    model = eval(row["example"], namespace)  # noqa: S307 - the project's own docs
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            _randomize_batchnorm(module, 5)
    xs = torch.randn(3, *eval(row["sample"])) * 2  # noqa: S307
    if row["status"] == "refused":
        with pytest.raises(ExportError, match=r"cannot export `\d+`|no converter for `\d+`"):
            to_ir(model, xs[0], hybrid=True)
        return
    assert row["status"] == "exact", row
    graph = _export(model, xs[0])
    body = [n for n in graph.topological_order() if n not in ("input", "output")]
    assert [graph.nodes[n].TYPE for n in body] == names(row["primitive"])
    ir.write(tmp_path / "row.t1c", graph)
    executor = ir_to_torch(tmp_path / "row.t1c")
    assert [type(executor.module_for(n)).__name__ for n in body] == names(row["module on import"])
    expected = run_steps(model.eval(), xs)
    torch.testing.assert_close(_stepped(executor, xs), expected, rtol=1e-5, atol=1e-5)


# -- the default stays as it was, and never exports a wrong file ---------------------------------
def test_default_folds_batchnorm_drops_dropout_and_relu_on_spikes():
    model = nn.Sequential(
        nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Dropout(0.2), snn.Leaky(beta=0.9, init_hidden=True), nn.ReLU()
    )
    _randomize_batchnorm(model[1], 3)
    graph = to_ir(model, torch.randn(2, 4))
    assert graph.topological_order() == ["input", "0", "3", "output"]  # folded, dropped, dropped


@pytest.mark.parametrize(
    ("model", "what"),
    [
        (nn.Sequential(nn.Linear(4, 5), nn.ReLU()), r"`1` \(ReLU\).*pass hybrid=True"),
        (nn.Sequential(nn.Linear(4, 5), nn.Sigmoid()), r"`1` \(Sigmoid\).*pass hybrid=True"),
        (nn.Sequential(nn.Linear(4, 5), nn.LeakyReLU(0.1)), r"`1` \(LeakyReLU\).*pass hybrid=True"),
        (nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5)), r"`1` \(LayerNorm\).*pass hybrid=True"),
        (nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.BatchNorm1d(5)), r"`1` \(Tanh\).*pass hybrid=True"),
        (
            nn.Sequential(nn.Linear(4, 5), snn.Leaky(beta=0.9, init_hidden=True), nn.BatchNorm1d(5)),
            r"`2` \(BatchNorm1d\).*pass hybrid=True",
        ),
        (
            nn.Sequential(nn.Linear(4, 4), HybridRegionModule("snn", 4)),
            r"`1` \(HybridRegionModule\).*hybrid=True",
        ),
    ],
)
def test_default_refuses_what_it_cannot_express_and_suggests_hybrid(model, what):
    with pytest.raises(ExportError, match=what):
        to_ir(model, torch.randn(2, 4))


# -- what the toolchain gets wrong ------------------------------------------------------------
def test_negative_leaky_relu_slope_is_refused():
    # A ReLU node with a negative slope runs as max(x, 0); torch computes s * x below zero.
    model = nn.Sequential(nn.Linear(4, 4), nn.LeakyReLU(-0.5))
    with pytest.raises(ExportError, match=r"`1` \(LeakyReLU\): negative_slope=-0.5 is negative"):
        to_ir(model, torch.randn(2, 4), hybrid=True)


@pytest.mark.parametrize("hybrid", [True, False])
def test_batchnorm_without_running_statistics_is_refused(hybrid):
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(ExportError, match=r"`1` \(BatchNorm1d\): track_running_stats=False"):
        to_ir(model, torch.randn(3, 4), hybrid=hybrid)


def test_momentum_none_is_kept_through_a_file(tmp_path):
    model = nn.Sequential(nn.BatchNorm1d(4, momentum=None))
    graph = to_ir(model, torch.randn(2, 4), hybrid=True)
    assert graph.nodes["0"].momentum is None
    ir.write(tmp_path / "bn.t1c", graph)
    executor = ir_to_torch(tmp_path / "bn.t1c")
    assert executor.module_for("0").momentum is None


def test_export_never_changes_batchnorm_statistics_or_modes():
    model = nn.Sequential(
        nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm1d(4))
    )
    model.train()
    model[3].eval()  # mixed modes come back as they were
    _randomize_batchnorm(model[1], 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    graph = to_ir(model, torch.randn(8, 4) * 5 + 3, hybrid=True)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert [m.training for m in model.modules()] == modes
    node = graph.nodes["1"]  # the exported statistics are the running ones, not the sample's
    np.testing.assert_array_equal(node.running_mean, before["1.running_mean"].numpy())
    np.testing.assert_array_equal(node.running_var, before["1.running_var"].numpy())


@pytest.mark.parametrize(("shape", "dim"), [((6,), 1), ((3, 5), 0), ((3, 4, 4), 1), ((), 0)])
def test_softmax_without_dim_exports_the_dim_torch_uses(shape, dim):
    model = nn.Sequential(nn.Softmax())
    x = torch.randn(4, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on the implicit dim, from the model itself
        graph = to_ir(model, x, hybrid=True)
        _assert_computes(graph, model, x)
    assert graph.nodes["0"].dim == dim


def test_multi_dim_layernorm_without_affine_writes_weights_of_its_shape(tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.LayerNorm((3, 4, 4), elementwise_affine=False))
    x = torch.randn(2, 2, 4, 4)
    graph = _export(model, x)
    node = graph.nodes["1"]
    assert node.weight.shape == node.bias.shape == (3, 4, 4)
    ir.write(tmp_path / "ln.t1c", graph)
    _assert_computes(ir.read(tmp_path / "ln.t1c"), model, x)


NO_NODE = [
    nn.SiLU,
    nn.ReLU6,
    nn.Dropout2d,
    nn.Hardtanh,
    nn.Mish,
    nn.SELU,
    nn.CELU,
    nn.Softplus,
    nn.Softmax2d,
]


@pytest.mark.parametrize("cls", NO_NODE, ids=lambda c: c.__name__)
@pytest.mark.parametrize("hybrid", [True, False])
def test_module_without_a_node_is_refused_naming_its_path(cls, hybrid):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.Identity(), cls()), nn.Flatten())
    x = torch.randn(2, 1, 5, 5)
    if cls is nn.Dropout2d and not hybrid:  # the default drops dropout (the identity when deployed)
        assert "1_1" not in to_ir(model, x).nodes
        return
    with pytest.raises(ExportError, match=rf"`1\.1` \({cls.__name__}\)"):
        to_ir(model, x, hybrid=hybrid)


# -- markers and nested graphs ----------------------------------------------------------------
def test_hybrid_region_module_exports_as_its_marker():
    model = nn.Sequential(
        nn.Linear(4, 6), HybridRegionModule("snn", 6, "core"), snn.Leaky(beta=0.9, init_hidden=True)
    )
    graph = _export(model, torch.randn(2, 4))
    node = graph.nodes["1"]
    assert (type(node), node.mode, node.features, node.name) == (ir.HybridRegion, "snn", 6, "core")
    assert [r.mode for r in ir.regions(graph)][-1] == "snn"


def _stepped(executor: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    state, ys = None, []
    with torch.no_grad():
        for x in xs:
            y, state = executor(x, state, return_state=True)
            ys.append(y)
    return torch.stack(ys)


@pytest.mark.parametrize("name", NAMES)
def test_imported_fixture_exports_back_with_the_same_topology(name):
    data = np.load(HYBRID / f"{name}.npz")
    xs = torch.from_numpy(data["x"])
    source = ir.read(HYBRID / f"{name}.t1c")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unit_relu_negative_slope warns on import (test_hybrid_fixtures)
        executor = ir_to_torch(source)
        exported = to_ir(executor, xs[0])
        assert ir.topology_diff(source, exported) == []
        assert ir.topology_diff(source, to_ir(executor, None)) == []  # the stored structure alone
        again = ir_to_torch(exported)
    for node_name, node in source.nodes.items():  # features and metadata come back as they were
        assert getattr(exported.nodes[node_name], "features", None) == getattr(node, "features", None)
        assert exported.nodes[node_name].metadata == node.metadata
    assert torch.equal(_stepped(again, xs), _stepped(executor, xs))  # the same modules, the same batch


def _nested() -> ir.Graph:
    shape = np.array([4], dtype=np.int64)
    inner = ir.Graph(
        {"input": ir.Input(input_type={"input": shape}), "r": ir.ReLU(features=4), "output": ir.Output()},
        [("input", "r"), ("r", "output")],
    )
    rng = np.random.default_rng(0)
    nodes = {
        "input": ir.Input(input_type={"input": shape}),
        "fc": ir.Affine(weight=rng.standard_normal((4, 4)).astype(np.float32), bias=np.zeros(4, np.float32)),
        "sub": ir.Subgraph(graph=inner, metadata={"stage": 1}),
        "hr": ir.HybridRegion(mode="snn", features=4, name="core"),
        "output": ir.Output(),
    }
    return ir.Graph(nodes, [("input", "fc"), ("fc", "sub"), ("sub", "hr"), ("hr", "output")])


def test_nested_graph_exports_back_as_a_nested_graph():
    source = _nested()
    executor = ir_to_torch(source)
    x = torch.randn(3, 4)
    exported = to_ir(executor, x)
    assert ir.topology_diff(source, exported) == []
    assert exported.nodes["sub"].metadata == {"stage": 1}
    with torch.no_grad():
        assert torch.equal(ir_to_torch(exported)(x), executor(x))
    # a SubgraphModule placed in a model exports as the nested graph it runs
    model = nn.Sequential(nn.Linear(4, 4), executor.module_for("sub"))
    graph = _export(model, x)
    assert isinstance(graph.nodes["1"], ir.Subgraph)
    assert ir.topology_diff(source.nodes["sub"].graph, graph.nodes["1"].graph) == []
    _assert_computes(graph, model, x)


# -- whole hybrid networks ----------------------------------------------------------------
def _mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(8, 16),
        _randomize_batchnorm(nn.BatchNorm1d(16), 10),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(16, 16),
        nn.LayerNorm(16),
        nn.LeakyReLU(0.1),
        nn.Linear(16, 16),
        nn.PReLU(16, init=0.2),
        nn.ELU(0.7),
        nn.GELU(),
        HybridRegionModule("snn", 16, "core"),
        nn.Linear(16, 12),
        snn.Leaky(beta=0.8, threshold=0.5, init_hidden=True),
        HybridRegionModule("ann", 12, "head"),
        nn.Linear(12, 10),
        _randomize_batchnorm(nn.BatchNorm1d(10, momentum=None), 11),
        nn.Tanh(),
        nn.Sigmoid(),
        nn.Softmax(dim=1),
    )


def _convnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        _randomize_batchnorm(nn.BatchNorm2d(4), 20),
        nn.PReLU(4, init=0.1),
        nn.Conv2d(4, 4, 3, padding=1),
        _randomize_batchnorm(nn.BatchNorm2d(4, eps=1e-3), 21),
        nn.ReLU(),
        nn.LayerNorm((4, 6, 6)),  # affine: the model and the import run the same kernel before spikes
        HybridRegionModule("snn", 144),
        nn.Conv2d(4, 4, 3, padding=1),
        snn.Leaky(beta=0.9, threshold=0.2, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        HybridRegionModule("ann", 36),
        nn.Linear(36, 16),
        nn.LayerNorm(16, elementwise_affine=False),
        nn.GELU("tanh"),
        nn.Dropout(0.5),
        nn.Linear(16, 8),
        nn.ELU(),
        nn.Softmax(),
    )


def _reset(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_mem()


@pytest.mark.parametrize(("make", "shape"), [(_mlp, (8,)), (_convnet, (2, 6, 6))], ids=["mlp", "conv"])
def test_hybrid_network_computes_what_torch_computes(make, shape):
    torch.manual_seed(0)
    model = make().eval()
    xs = torch.randn(6, 3, *shape) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on Softmax's implicit dim
        graph = to_ir(model, xs[0], hybrid=True)
    assert len(graph.nodes) == len(model) + 2  # every module is a node: nothing folded or dropped
    assert [r.mode for r in ir.regions(graph)][-2:] == ["snn", "ann"]
    leaky = next(i for i, m in enumerate(model) if isinstance(m, snn.Leaky))
    core = model[: leaky + 1]  # the same modules up to the spiking core: its spikes compare exactly
    core_graph = to_ir(core, xs[0], hybrid=True)
    for net, exported in ((model, graph), (core, core_graph)):
        _reset(net)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = torch.stack([net(x) for x in xs])
        actual = _stepped(ir_to_torch(exported), xs)
        if net is core:
            assert 0.05 < float(expected.mean()) < 0.95, "the core should spike, sometimes"
            assert torch.equal(actual, expected)
        else:
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


# -- T1CModule and T1CExport ----------------------------------------------------------------
def test_t1c_module_exports_its_hybrid_graph_back():
    from t1c.lightning import T1CModule

    source = ir.read(HYBRID / "mlp_bn1d_relu_lif.t1c")
    module = T1CModule(source, num_steps=2)
    bn = module.executor.module_for("bn1")
    with torch.no_grad():  # a training step's forward: batch statistics update the running ones
        module.executor.train()(torch.randn(8, 16) * 3 + 1)
    assert not torch.allclose(bn.running_mean, torch.from_numpy(source.nodes["bn1"].running_mean))
    stats = bn.running_mean.clone(), bn.running_var.clone()
    graph = module.export_graph()
    assert ir.topology_diff(source, graph) == []
    assert module.executor.training  # export leaves the training mode alone
    np.testing.assert_array_equal(graph.nodes["bn1"].running_mean, stats[0].numpy())  # the new statistics
    np.testing.assert_array_equal(graph.nodes["bn1"].running_var, stats[1].numpy())
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])


def test_t1c_export_passes_hybrid_through_export_kwargs():
    import lightning.pytorch as pl

    from t1c.lightning import T1CExport

    class Wrapper(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU())

    sample = torch.randn(1, 4)
    graph = T1CExport(export_kwargs={"hybrid": True}, sample=sample).exporter.export_graph(Wrapper())
    assert [type(graph.nodes[n]).__name__ for n in ("0", "1", "2")] == ["Affine", "BatchNorm1d", "ReLU"]
    with pytest.raises(ExportError, match="pass hybrid=True"):
        T1CExport(sample=sample).exporter.export_graph(Wrapper())


class SharedSoftmax(nn.Module):
    """One ``nn.Softmax()`` called twice: the hooks see the first call's rank only, and the
    rank decides the implicit dim ([B, F]: 1, [B, C, L]: 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.soft = nn.Softmax()

    def forward(self, x):
        return self.soft(self.fc(self.soft(x)))


def test_implicit_softmax_dim_called_on_several_shapes_is_refused():
    with pytest.raises(ExportError, match=r"`soft` \(Softmax\): dim=None .* called 2 times"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            to_ir(SharedSoftmax(), torch.randn(2, 6), hybrid=True)


class InplaceResidual(nn.Module):
    """``relu(y) + y`` with an in-place ReLU: torch adds relu(y) to itself."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=inplace)

    def forward(self, x):
        y = self.fc(x)
        return self.act(y) + y


def test_inplace_module_whose_input_is_read_again_is_refused():
    x = torch.randn(3, 4)
    with pytest.raises(ExportError, match=r"`act` \(ReLU\): inplace=True overwrites its input"):
        to_ir(InplaceResidual(inplace=True), x, hybrid=True)
    model = InplaceResidual(inplace=False)
    _assert_computes(_export(model, x), model, x)
    chain = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Dropout(inplace=True))
    _assert_computes(_export(chain, x), chain, x)
