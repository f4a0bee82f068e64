"""One export: the model found, the topology verified, the gap checked, the file read back."""

from __future__ import annotations

import math

import pytest
from torch import nn

from t1c import ir
from t1c.lightning.exporting import (
    Pending,
    T1CExportError,
    check_gap,
    check_written,
    find_model,
    verify_topology,
)
from t1c.lightning.scoring import quant_gap


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.head, self.loss = nn.Linear(2, 2), nn.Linear(2, 2), nn.CrossEntropyLoss()


def test_find_model():
    one = nn.Module()
    one.body, one.loss = nn.Linear(2, 2), nn.CrossEntropyLoss()
    assert find_model(one, None) is one.body
    two = _Two()
    with pytest.raises(T1CExportError, match="encoder, head.*module_attr"):
        find_model(two, None)
    assert find_model(two, "head") is two.head
    with pytest.raises(T1CExportError, match="module_attr='loss_fn'"):
        find_model(two, "loss_fn")
    two.net = nn.Linear(1, 1)
    assert find_model(two, None) is two.net


def test_gap_check_warns_or_raises():
    check_gap({"t1c/quant_gap": 0.05}, 0.1, "warn", 8, "epoch 0, step 2")
    check_gap({"t1c/quant_gap": 0.5}, None, "raise", 8, "epoch 0, step 2")  # no limit
    with pytest.warns(UserWarning, match="max_quant_gap=0.1"):
        check_gap({"t1c/quant_gap": 0.2}, 0.1, "warn", 8, "epoch 0, step 2")
    with pytest.raises(T1CExportError, match="at 8 bits is 0.2000 below float at epoch 0, step 2"):
        check_gap({"t1c/quant_gap": 0.2}, 0.1, "raise", 8, "epoch 0, step 2")
    assert not math.isnan(quant_gap(0.5, 0.0, True))


# -- what is measured is what ships ------------------------------------------------------------
def test_check_written_accepts_the_measured_graph_and_refuses_another(tmp_path, fixtures_dir):
    graph = ir.read(fixtures_dir / "mlp_snn.t1c")
    path = tmp_path / "epoch=0-step=1.t1c"
    ir.write(path, graph)
    measured = Pending(1, 0, graph, {}, graph.content_hash(), None)
    check_written(str(path), measured.content_hash, measured.step)  # the file holds the measured graph

    other = ir.read(fixtures_dir / "mlp_snn.t1c")
    other.nodes["fc1"].weight[0, 0] += 1.0
    stale = Pending(1, 0, other, {}, other.content_hash(), None)
    with pytest.raises(T1CExportError, match="differs from the graph measured at step 1"):
        check_written(str(path), stale.content_hash, stale.step)


def test_verify_topology_raises_warns_or_stays_quiet(fixtures_dir):
    source = ir.read(fixtures_dir / "mlp_snn.t1c")
    same = ir.read(fixtures_dir / "mlp_snn.t1c")
    same.nodes["fc1"].weight[0, 0] += 1.0  # weights may differ
    verify_topology(same, source, "raise", "epoch 0, step 2")
    nodes = dict(source.nodes)
    renamed = ir.Graph(
        {("fc9" if n == "fc1" else n): v for n, v in nodes.items()},
        [tuple("fc9" if x == "fc1" else x for x in e) for e in source.edges],
        source.metadata,
    )
    with pytest.raises(T1CExportError, match=r"(?s)exported at epoch 0, step 2 does not have.*verify='warn'"):
        verify_topology(renamed, source, "raise", "epoch 0, step 2")
    with pytest.warns(UserWarning, match="does not have the topology"):
        verify_topology(renamed, source, "warn", "epoch 0, step 2")
    verify_topology(renamed, source, "off", "epoch 0, step 2")
