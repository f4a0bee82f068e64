"""t1c.snntorch: export_to_ir / import_from_ir, named like snnTorch's NIR integration."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from batching import assert_batching_independent
from torch import nn

from t1c import ir
from t1c.bridge.executor import GraphExecutor
from t1c.snntorch import export_to_ir, import_from_ir


def model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 5),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(5, 2),
        snn.Leaky(beta=0.8, init_hidden=True),
    )


def test_export_to_ir_passes_keyword_arguments_on():
    graph = export_to_ir(model(), torch.rand(3, 6), spiking=True, weight_bits=5, accumulator_bits=9)
    assert isinstance(graph, ir.Graph)
    assert graph.nodes["0"].TYPE == "SpikingAffine" and graph.nodes["2"].accumulator_bits == 9


@pytest.mark.parametrize("source", ["graph", "path", "str"])
def test_import_from_ir_reads_a_graph_or_a_file(source, tmp_path):
    net = model()
    graph = export_to_ir(net, torch.rand(3, 6))
    ir.write(tmp_path / "net.t1c", graph)
    arg = {"graph": graph, "path": tmp_path / "net.t1c", "str": str(tmp_path / "net.t1c")}[source]
    executor = import_from_ir(arg)
    assert isinstance(executor, GraphExecutor)
    xs = (torch.rand(20, 3, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    with torch.no_grad():
        expected = torch.stack([net(x) for x in xs])
        actual, _ = executor.run_sequence(xs)
    assert_batching_independent(executor, xs)  # exact spikes: provably batching-independent
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_import_from_ir_passes_keyword_arguments_on():
    executor = import_from_ir(export_to_ir(model(), torch.rand(3, 6)), return_state=True)
    out, state = executor(torch.rand(3, 6))
    assert out.shape == (3, 2) and isinstance(state, dict)


def test_import_from_ir_refuses_other_types():
    with pytest.raises(TypeError, match="t1c.ir.Graph or the path"):
        import_from_ir(42)
