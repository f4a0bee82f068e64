"""ir_to_torch and load: the default factory per primitive, node_map overrides, nested graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_executor import _affine, _inp, _lif, mlp_graph
from torch import nn

from t1c import ir
from t1c.bridge import GraphExecutor, LIFModule, SubgraphModule, ir_to_torch, load
from t1c.bridge.convert import NODE_FACTORIES


def test_every_primitive_has_a_default_factory() -> None:
    # Input and Output are the executor's own; every other registered type builds a module.
    assert set(NODE_FACTORIES) == set(ir.REGISTRY.values()) - {ir.Input, ir.Output}


def test_weights_are_copied_into_trainable_parameters() -> None:
    graph = mlp_graph()
    net = ir_to_torch(graph)
    fc1 = net.module_for("fc1")
    assert isinstance(fc1, nn.Linear) and isinstance(fc1.weight, nn.Parameter)
    np.testing.assert_array_equal(fc1.weight.detach().numpy(), graph.nodes["fc1"].weight)
    with torch.no_grad():
        fc1.weight.add_(1)
    assert not np.array_equal(fc1.weight.detach().numpy(), graph.nodes["fc1"].weight)  # a copy
    assert not net.training  # the deployed function


def test_nested_graph_builds_its_inner_executor() -> None:
    inner = ir.Graph.from_chain(
        _inp(6), _affine(4, 6), _lif(4), ir.Output(), names=["input", "fc", "lif", "output"]
    )
    outer = ir.Graph.from_chain(
        _inp(6),
        ir.Subgraph(graph=inner, metadata={"role": "core"}),
        ir.Output(),
        names=["input", "block", "output"],
    )
    net = ir_to_torch(outer)
    block = net.module_for("block")
    assert isinstance(block, SubgraphModule) and isinstance(block.inner, GraphExecutor)
    assert block.stateful and block.metadata == {"role": "core"}
    assert isinstance(block.inner.module_for("lif"), LIFModule)
    x = torch.rand(2, 6)
    y, state = net(x, return_state=True)
    ref, _ = ir_to_torch(inner)(x, return_state=True)
    assert torch.equal(y, ref) and set(state) == {"block"}


def test_node_map_overrides_defaults() -> None:
    seen = []

    def one_arg(node):
        return nn.Identity() if isinstance(node, ir.LIF) else None

    def two_args(node, name):
        seen.append(name)
        return nn.Tanh() if name == "lif2" else None

    x = torch.randn(4, 6)
    net = ir_to_torch(mlp_graph(), node_map=one_arg)
    assert isinstance(net.module_for("lif1"), nn.Identity)
    fc1, fc2 = net.module_for("fc1"), net.module_for("fc2")
    torch.testing.assert_close(net(x), fc2(fc1(x)))
    net = ir_to_torch(mlp_graph(), node_map=two_args)
    assert isinstance(net.module_for("lif2"), nn.Tanh) and isinstance(net.module_for("lif1"), LIFModule)
    assert {"fc1", "lif1", "fc2", "lif2"} <= set(seen)
    net = ir_to_torch(
        mlp_graph(), node_map={ir.Affine: lambda node: nn.Linear(*node.weight.shape[::-1], bias=False)}
    )
    assert net.module_for("fc1").bias is None


def test_invalid_graph_fails_before_build() -> None:
    built = []

    def spy(node):
        built.append(node)

    bad = ir.Graph(
        {"input": _inp(6), "fc": _affine(3, 5), "output": ir.Output()},
        [("input", "fc"), ("fc", "output")],
        validate=False,
    )
    with pytest.raises(ir.T1CFormatError, match="'fc'"):
        ir_to_torch(bad, node_map=spy)
    assert built == []


def test_unknown_primitive_says_how_to_fix() -> None:
    class Mystery(ir.Node):
        TYPE = ""

        def output_shape(self, input_shapes):
            return input_shapes[0]

    g = ir.Graph({"input": _inp(3), "m": Mystery(), "output": ir.Output()}, [("input", "m"), ("m", "output")])
    with pytest.raises(ir.T1CFormatError, match="node 'm'.*node_map"):
        ir_to_torch(g)
    net = ir_to_torch(g, node_map=lambda node: nn.ReLU() if isinstance(node, Mystery) else None)
    assert torch.equal(net(torch.tensor([[-1.0, 0.0, 2.0]])), torch.tensor([[0.0, 0.0, 2.0]]))


def test_load_reads_a_file(tmp_path) -> None:
    ir.write(tmp_path / "mlp.t1c", mlp_graph())
    net = load(tmp_path / "mlp.t1c")
    assert isinstance(net, GraphExecutor)
    ref = ir_to_torch(mlp_graph())
    xs = torch.randn(4, 2, 6)
    assert torch.equal(net.run_sequence(xs)[0], ref.run_sequence(xs)[0])


@pytest.mark.parametrize(
    "node, shape, ref",
    [
        (
            ir.Conv2d(
                weight=np.random.default_rng(0).normal(size=(4, 2, 3, 3)),
                bias=np.ones(4),
                stride=2,
                padding=1,
                dilation=1,
                groups=1,
            ),
            (2, 9, 9),
            lambda m, x: F.conv2d(x, m.weight, m.bias, 2, 1),
        ),
        (
            ir.Conv2d(weight=np.random.default_rng(1).normal(size=(4, 1, 3, 3)), groups=2, dilation=2),
            (2, 9, 9),
            lambda m, x: F.conv2d(x, m.weight, m.bias, 1, 0, 2, 2),
        ),
        (
            ir.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True),
            (2, 8, 8),
            lambda m, x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
        ),
        (
            ir.AvgPool2d(kernel_size=2, padding=1, count_include_pad=False),
            (2, 7, 7),
            lambda m, x: F.avg_pool2d(x, 2, 2, 1, count_include_pad=False),
        ),
        (ir.Upsample(scale_factor=2), (2, 3, 3), lambda m, x: F.interpolate(x, scale_factor=2)),
        (
            ir.Upsample(size=[5, 7], mode="bilinear", align_corners=True),
            (2, 3, 3),
            lambda m, x: F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True),
        ),
        (ir.Flatten(start_dim=1, end_dim=2), (2, 3, 4), lambda m, x: x.flatten(2, 3)),
        (ir.Flatten(start_dim=0, end_dim=-1), (2, 3, 4), lambda m, x: x.flatten(1)),
        (ir.Flatten(start_dim=-2, end_dim=-1), (2, 3, 4), lambda m, x: x.flatten(-2, -1)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, ir.Node) else "",
)
def test_default_modules_compute_the_primitive(node, shape, ref) -> None:
    g = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array(shape)}), node, ir.Output(), names=["input", "n", "output"]
    )
    net = ir_to_torch(g)
    x = torch.randn(2, *shape)
    out = net(x)
    assert tuple(out.shape[1:]) == g.output_shapes["n"]
    torch.testing.assert_close(out, ref(net.module_for("n"), x))
