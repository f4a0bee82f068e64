"""GraphExecutor -> to_ir is exact: same names, edges (order included), types and weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from t1c import ir
from t1c.bridge.exporter import T1CExporter, to_ir
from t1c.bridge.importer import ir_to_torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.t1c"))


def assert_same_fields(expected: ir.Graph, actual: ir.Graph) -> None:
    """Every node field (extension fields and hints included) is identical."""
    for name, node in expected.nodes.items():
        a, b = node.to_fields(), actual.nodes[name].to_fields()
        assert sorted(a) == sorted(b), f"node '{name}' fields {sorted(a)} became {sorted(b)}"
        for field, value in a.items():
            np.testing.assert_array_equal(np.asarray(b[field]), np.asarray(value), err_msg=f"{name}.{field}")


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_reference_fixtures_export_back_exactly(name, fixtures_dir):
    source = ir.read(fixtures_dir / f"{name}.t1c")
    sample = torch.from_numpy(np.load(fixtures_dir / f"{name}.npz")["x"][0])
    exported = to_ir(ir_to_torch(source), sample)
    assert ir.topology_diff(source, exported) == []
    assert list(exported.nodes) == list(source.nodes)
    assert_same_fields(source, exported)
    assert exported.content_hash() == source.content_hash()


def rand(*shape: int) -> np.ndarray:
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)


def lif(shape: tuple[int, ...], **extra) -> ir.LIF:
    return ir.LIF(
        tau=np.full(shape, 5.0),
        r=np.full(shape, 5.0),
        v_leak=np.zeros(shape),
        v_threshold=np.full(shape, 0.5),
        **extra,
    )


def multi_branch_graph() -> ir.Graph:
    """Two conv branches concatenated, a residual around a SepConv, two outputs, dotted names."""
    nodes = {
        "input": ir.Input(input_type={"input": np.array([2, 8, 8])}),
        "block.a": ir.Conv2d(weight=rand(3, 2, 3, 3), bias=rand(3), padding=1),
        "block.b": ir.Conv2d(weight=rand(5, 2, 1, 1), bias=None),
        "block.cat": ir.Skip(skip_type="concatenate"),
        "block.lif": lif(
            (8, 8, 8),
            beta=np.full((8, 8, 8), 0.8, np.float32),
            reset_mechanism="subtract",
            reset_delay=True,
            strict_threshold=True,
        ),
        "sep": ir.SepConv2d(depthwise_weight=rand(8, 1, 3, 3), pointwise_weight=rand(8, 8, 1, 1), padding=1),
        "res": ir.Skip(skip_type="residual"),
        "pool": ir.AvgPool2d(kernel_size=2),
        "up": ir.Upsample(scale_factor=2),
        "mp": ir.MaxPool2d(kernel_size=2, stride=2),
        "pass": ir.Skip(skip_type="passthrough"),
        "flat": ir.Flatten(start_dim=0, end_dim=-1),
        "fc": ir.SpikingAffine(
            weight=rand(4, 128), bias=rand(4), spike_mode="rate", weight_bits=6, accumulator_bits=20
        ),
        "lif_out": lif((4,), reset_mechanism="none"),
        "output": ir.Output(),
        "aux": ir.Output(),
    }
    edges = [
        ("input", "block.b"),
        ("input", "block.a"),
        ("block.b", "block.cat"),
        ("block.a", "block.cat"),
        ("block.cat", "block.lif"),
        ("block.lif", "sep"),
        ("sep", "res"),
        ("block.lif", "res"),
        ("res", "pool"),
        ("pool", "up"),
        ("up", "mp"),
        ("mp", "pass"),
        ("pass", "flat"),
        ("flat", "fc"),
        ("fc", "lif_out"),
        ("lif_out", "output"),
        ("block.lif", "aux"),
    ]
    return ir.Graph(nodes, edges, metadata={"source": "test", "epoch": 3})


def test_multi_branch_graph_exports_back_exactly():
    source = multi_branch_graph()
    exporter = T1CExporter()
    exported = exporter.export(ir_to_torch(source), torch.rand(2, 2, 8, 8))
    assert ir.topology_diff(source, exported) == []
    assert exported.edges == source.edges and list(exported.nodes) == list(source.nodes)
    assert_same_fields(source, exported)
    assert exported.metadata == source.metadata
    assert exporter._output_shapes["block.cat"] == (8, 8, 8) and exporter._input_shapes["fc"] == (128,)


def test_executor_exports_without_a_sample():
    source = multi_branch_graph()
    exported = to_ir(ir_to_torch(source), None)
    assert exported.content_hash() == source.content_hash()


def test_spiking_flag_turns_executor_affines_into_spiking_affines(fixtures_dir):
    source = ir.read(fixtures_dir / "mlp_snn.t1c")
    exported = to_ir(ir_to_torch(source), None, spiking=True, weight_bits=4, accumulator_bits=10)
    assert exported.nodes["fc1"].TYPE == "SpikingAffine" and exported.nodes["fc1"].weight_bits == 4
    np.testing.assert_array_equal(exported.nodes["fc1"].weight, source.nodes["fc1"].weight)


def test_graph_trained_through_the_executor_exports_with_new_weights(fixtures_dir):
    torch.manual_seed(0)
    source = ir.read(fixtures_dir / "resnet_block.t1c")
    data = np.load(fixtures_dir / "resnet_block.npz")
    xs = torch.from_numpy(data["x"]).float()
    executor = ir_to_torch(source)
    opt = torch.optim.SGD(executor.parameters(), lr=0.1)
    for _ in range(3):
        ys, _ = executor.run_sequence(xs)
        loss = ((ys.mean(0) - 0.5) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    exported = to_ir(executor, xs[0])
    assert ir.topology_diff(source, exported) == []
    for name in ("fc1", "fc2", "head"):
        module = executor.module_for(name)
        np.testing.assert_array_equal(exported.nodes[name].weight, module.weight.detach().numpy())
        assert not np.array_equal(exported.nodes[name].weight, source.nodes[name].weight)
