"""Data flow of non-chain models: torch.fx tracing into Skip(residual)/Skip(concatenate) nodes."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from batching import assert_batching_independent
from torch import nn

from t1c import ir
from t1c.bridge import ExportError
from t1c.bridge import exporter as exporter_module
from t1c.bridge.exporter import to_ir
from t1c.bridge.importer import ir_to_torch


def imported_output(graph: ir.Graph, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ir_to_torch(graph)(x)


class Residual(nn.Module):
    def __init__(self, op: str = "plus") -> None:
        super().__init__()
        self.op = op
        self.fc1 = nn.Linear(6, 6)
        self.fc2 = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        y = self.fc2(self.fc1(x))
        if self.op == "plus":
            y = y + x
        elif self.op == "torch.add":
            y = torch.add(x, y)
        else:
            y += x
        return self.head(y)


@pytest.mark.parametrize("op", ["plus", "torch.add", "inplace"])
def test_residual_sum_becomes_a_residual_skip(op):
    torch.manual_seed(0)
    model = Residual(op)
    x = torch.randn(4, 6)
    graph = to_ir(model, x)
    (skip,) = [n for n, node in graph.nodes.items() if isinstance(node, ir.Skip)]
    assert graph.nodes[skip].skip_type == "residual"
    assert sorted(graph.predecessors(skip)) == ["fc2", "input"]
    assert graph.successors(skip) == ["head"]
    torch.testing.assert_close(imported_output(graph, x), model(x).detach())


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(2, 5, 1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 2 * 2, 4)

    def forward(self, x):
        y = torch.cat([self.b(x), self.a(x)], dim=1)
        return self.fc(torch.flatten(self.pool(y), 1))


def test_concatenation_keeps_the_order_of_its_inputs():
    torch.manual_seed(1)
    model = Concat()
    x = torch.randn(3, 2, 4, 4)
    graph = to_ir(model, x)
    assert graph.nodes["cat"].skip_type == "concatenate"
    assert graph.predecessors("cat") == ["b", "a"]
    assert isinstance(graph.nodes["flatten"], ir.Flatten)
    torch.testing.assert_close(imported_output(graph, x), model(x).detach())


class SpikingResidual(nn.Module):
    """conv -> lif -> conv, plus the block input, -> lif; with a nested Sequential head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.lif1 = snn.Leaky(beta=0.9, init_hidden=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.lif2 = snn.Leaky(beta=0.8, init_hidden=True)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * 5 * 5, 6), snn.Leaky(beta=0.7, init_hidden=True)
        )

    def forward(self, x):
        y = self.conv2(self.lif1(self.conv1(x)))
        return self.head(self.lif2(y + x))


def test_spiking_residual_block_spikes_identically(tmp_path):
    torch.manual_seed(2)
    model = SpikingResidual()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(3)
    xs = (torch.rand(30, 2, 4, 5, 5, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    graph = to_ir(model, xs[0])
    assert graph.nodes["add"].skip_type == "residual"
    assert list(graph.nodes)[-4:] == ["head.0", "head.1", "head.2", "output"]
    ir.write(tmp_path / "res.t1c", graph)
    executor = ir_to_torch(ir.read(tmp_path / "res.t1c"))
    with torch.no_grad():
        expected = torch.stack([model(x) for x in xs])
        actual, _ = executor.run_sequence(xs)
    assert 0.02 < expected.mean() < 0.98
    assert_batching_independent(executor, xs)  # exact spikes: provably batching-independent
    assert int((expected != actual).sum()) == 0


class Reshapes(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 3 * 3, 4)

    def forward(self, x):
        y = F.relu(self.conv(x)) if self.how == "relu" else self.conv(x)
        if self.how == "view":
            y = y.view(y.size(0), -1)
        elif self.how == "reshape":
            y = y.reshape(x.shape[0], -1)
        else:
            y = y.flatten(1)
        return self.fc(y)


@pytest.mark.parametrize("how", ["view", "reshape", "method"])
def test_batch_flattening_reshapes_become_flatten(how):
    model = Reshapes(how)
    x = torch.randn(2, 1, 5, 5)
    graph = to_ir(model, x)
    assert [graph.nodes[n].TYPE for n in graph.topological_order()] == [
        "Input",
        "Conv2d",
        "Flatten",
        "Affine",
        "Output",
    ]
    torch.testing.assert_close(imported_output(graph, x), model(x).detach())


def test_functional_relu_on_values_that_may_be_negative_is_refused():
    # The seed dropped it with a warning: the file then computed something else.
    with pytest.raises(
        ExportError, match=r"`F\.relu` \(fx node `relu`\) at test_tracing\.py:\d+.*may be negative"
    ):
        to_ir(Reshapes("relu"), torch.randn(2, 1, 5, 5))


class ReluOfSpikes(nn.Module):
    """ReLUs of spikes, of pooled spikes and of their concatenation: all the identity."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.lif = snn.Leaky(beta=0.5, init_hidden=True)
        self.fc = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        s = F.max_pool2d(self.lif(self.conv(x)), 2)
        return self.fc(torch.relu(torch.cat([s, s.relu()], dim=1)).flatten(1))


def test_relu_of_spikes_is_the_identity_and_dropped():
    torch.manual_seed(6)
    model = ReluOfSpikes()
    xs = torch.rand(5, 2, 1, 6, 6) * 4
    graph = to_ir(model, xs[0])
    assert [graph.nodes[n].TYPE for n in graph.topological_order()] == [
        "Input",
        "Conv2d",
        "LIF",
        "MaxPool2d",
        "Skip",
        "Skip",
        "Flatten",
        "Affine",
        "Output",
    ]
    # the same value twice: the second edge comes through a Skip(passthrough) copy
    assert graph.predecessors("cat") == ["max_pool2d", "max_pool2d_copy"]
    executor = ir_to_torch(graph)
    state, out = None, []
    with torch.no_grad():
        expected = torch.stack([model(x) for x in xs])
        for x in xs:
            y, state = executor(x, state, return_state=True)
            out.append(y)
    torch.testing.assert_close(torch.stack(out), expected)


class FunctionalPool(nn.Module):
    def __init__(self, indices: bool = False, **pool) -> None:
        super().__init__()
        self.indices, self.pool = indices, pool
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.lif = snn.Leaky(beta=0.9, init_hidden=True)

    def forward(self, x):
        if self.indices:
            return self.lif(F.max_pool2d(self.conv(x), 2, return_indices=True)[0])
        return self.lif(F.max_pool2d(self.conv(x), 2, **self.pool))


def test_functional_max_pool_becomes_a_max_pool_node():
    torch.manual_seed(5)
    model = FunctionalPool(padding=1, ceil_mode=True)
    xs = torch.rand(6, 2, 1, 8, 8) * 3
    graph = to_ir(model, xs[0])
    pool = graph.nodes["max_pool2d"]
    assert isinstance(pool, ir.MaxPool2d) and tuple(pool.padding) == (1, 1) and pool.ceil_mode
    executor = ir_to_torch(graph)
    state, out = None, []
    with torch.no_grad():
        expected = torch.stack([model(x) for x in xs])
        for x in xs:
            y, state = executor(x, state, return_state=True)
            out.append(y)
    assert torch.equal(torch.stack(out), expected)


def test_functional_max_pool_with_unexpected_arguments_is_named():
    # The seed chained the modules around it and failed on LIF shapes instead.
    with pytest.raises(ExportError, match=r"F\.max_pool2d_with_indices.*at test_tracing\.py"):
        to_ir(FunctionalPool(indices=True), torch.rand(2, 1, 8, 8))


def test_functional_pool_arguments_computed_in_forward_are_refused():
    class Computed(FunctionalPool):
        def forward(self, x):
            return self.lif(F.max_pool2d(self.conv(x), x.shape[1] + 1))

    with pytest.raises(ExportError, match=r"F\.max_pool2d.*takes `kernel_size` that is computed in forward"):
        to_ir(Computed(), torch.rand(2, 1, 8, 8))


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x):
        y = self.fc1(x)
        if y.sum() > 1e9:
            y = y * 0
        return self.fc2(y)


def test_untraceable_forward_is_refused_unless_call_order_is_asked_for():
    model = Branchy()
    x = torch.randn(2, 3)
    with pytest.raises(ExportError, match=r"cannot export Branchy: torch\.fx cannot trace.*trace='order'"):
        to_ir(model, x)
    with pytest.warns(UserWarning, match="trace='order': chaining its modules in call order"):
        graph = to_ir(model, x, trace="order")
    assert graph.edges == [("input", "fc1"), ("fc1", "fc2"), ("fc2", "output")]
    torch.testing.assert_close(imported_output(graph, x), model(x).detach())


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x) * 2


def test_operation_without_equivalent_is_refused_naming_it_and_its_line():
    with pytest.raises(
        ExportError,
        match=r"`x \* y` \(operator\.mul\) \(fx node `mul`\) at test_tracing\.py:\d+: "
        r"`return self\.fc\(x\) \* 2` has no T1C-IR node\. Fix: .*trace='order'",
    ):
        to_ir(Scaled(), torch.randn(2, 3))
    with pytest.warns(UserWarning, match=r"`x \* y`.*has no T1C-IR node; trace='order'"):
        graph = to_ir(Scaled(), torch.randn(2, 3), trace="order")
    assert graph.edges == [("input", "fc"), ("fc", "output")]


class ScaledIntoNeuron(nn.Module):
    """The issue's example: the file spiked 18 times where the model spiked 49."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.lif = snn.Leaky(beta=0.9, init_hidden=True)

    def forward(self, x):
        return self.lif(self.fc(x) * 2)


def test_scaling_before_a_neuron_is_refused():
    with pytest.raises(ExportError, match=r"cannot export ScaledIntoNeuron: operation `x \* y`"):
        to_ir(ScaledIntoNeuron(), torch.randn(2, 3))


class TimeLoop(nn.Module):
    """snnTorch tutorial style: the time loop inside forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.lif = snn.Leaky(beta=0.9)

    def forward(self, x):
        mem = self.lif.init_leaky()
        out = []
        for _ in range(5):
            spk, mem = self.lif(self.fc(x), mem)
            out.append(spk)
        return torch.stack(out)


def test_time_loop_inside_forward_is_refused_or_exports_one_step_on_request():
    with pytest.raises(
        ExportError, match=r"\['lif'\] are called several times in one forward.*one time step"
    ):
        to_ir(TimeLoop(), torch.randn(2, 3))
    with pytest.warns(UserWarning, match=r"called several times in one forward"):
        graph = to_ir(TimeLoop(), torch.randn(2, 3), trace="order")
    assert graph.edges == [("input", "fc"), ("fc", "lif"), ("lif", "output")]


def test_sequential_models_are_not_traced(monkeypatch):
    def no_tracing(*args, **kwargs):
        raise AssertionError("nn.Sequential is a chain by construction; tracing it wastes time")

    monkeypatch.setattr(exporter_module, "traced_flow", no_tracing)
    model = nn.Sequential(
        nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 4), snn.Leaky(beta=0.5, init_hidden=True))
    )
    graph = to_ir(model, torch.randn(2, 3))
    assert graph.edges == [("input", "0"), ("0", "1.0"), ("1.0", "1.1"), ("1.1", "output")]


def test_batchnorm_in_a_traced_model_is_folded():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x)) + x

    torch.manual_seed(3)
    model = Net()
    model(torch.randn(8, 2, 4, 4) * 2 + 1)
    model.eval()
    x = torch.randn(2, 2, 4, 4)
    graph = to_ir(model, x)
    assert "bn" not in graph.nodes and graph.predecessors("add") == ["conv", "input"]
    torch.testing.assert_close(imported_output(graph, x), model(x).detach(), rtol=1e-5, atol=1e-5)


def test_batchnorm_whose_input_is_also_used_elsewhere_is_refused():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.bn = nn.BatchNorm1d(3)

        def forward(self, x):
            y = self.fc(x)
            return self.bn(y) + y

    with pytest.raises(Exception, match="BatchNorm"):
        to_ir(Net(), torch.randn(2, 3))


class SharedModules(nn.Module):
    """One Dropout and one Linear used twice: the Linear becomes two nodes with the same weights."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_in = nn.Linear(4, 6)
        self.shared = nn.Linear(6, 6)
        self.act = nn.Dropout(0.3)

    def forward(self, x):
        y = self.act(self.fc_in(x))
        return self.act(self.shared(self.shared(y)))


def test_stateless_modules_called_twice_become_separate_nodes():
    torch.manual_seed(4)
    model = SharedModules()
    x = torch.rand(3, 4)
    graph = to_ir(model, x)
    assert graph.edges == [
        ("input", "fc_in"),
        ("fc_in", "shared"),
        ("shared", "shared_1"),
        ("shared_1", "output"),
    ]
    assert graph.nodes["shared_1"].weight.tobytes() == graph.nodes["shared"].weight.tobytes()
