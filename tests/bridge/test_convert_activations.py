"""convert.activations: ReLU dropped on spikes or refused, Dropout dropped, their import factories."""

from __future__ import annotations

import warnings

import pytest
import snntorch as snn
import torch
from torch import nn

from t1c import ir
from t1c.bridge import ExportError, to_ir
from t1c.bridge.convert.activations import drop_relu, relu_from_node, softmax_from_node
from t1c.bridge.registry import ExportContext


def test_relu_on_a_value_that_may_be_negative_is_refused():
    # Dropping it (the seed's behaviour, with a warning) exported a different function.
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 2))
    with pytest.raises(ExportError, match=r"`1` \(ReLU\): T1C-IR has no ReLU.*may be negative.*custom_map"):
        to_ir(model, torch.rand(2, 3))


def test_relu_of_spikes_and_dropout_are_dropped_silently():
    model = nn.Sequential(
        nn.Linear(3, 4), snn.Leaky(beta=0.5, init_hidden=True), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 2)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = to_ir(model, torch.rand(2, 3))
    assert graph.edges == [("input", "0"), ("0", "1"), ("1", "4"), ("4", "output")]


def test_relu_can_be_dropped_on_purpose_with_a_one_argument_converter():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    graph = to_ir(model, torch.rand(2, 3), custom_map={nn.ReLU: lambda module: None})
    assert graph.edges == [("input", "0"), ("0", "2"), ("2", "output")]


def test_drop_relu_drops_only_a_nonnegative_input():
    assert drop_relu(nn.ReLU(), ExportContext(path="r", input_nonnegative=True)) is None
    with pytest.raises(ExportError, match=r"`r` \(ReLU\).*may be negative.*hybrid=True"):
        drop_relu(nn.ReLU(), ExportContext(path="r"))


def test_relu_import_follows_the_slope():
    assert type(relu_from_node(ir.ReLU(features=3))) is nn.ReLU
    leaky = relu_from_node(ir.ReLU(features=3, negative_slope=0.25))
    assert isinstance(leaky, nn.LeakyReLU) and leaky.negative_slope == 0.25
    with pytest.warns(UserWarning, match="runs as max"):
        assert type(relu_from_node(ir.ReLU(features=3, negative_slope=-0.5))) is nn.ReLU


def test_softmax_across_the_batch_is_marked():
    assert softmax_from_node(ir.Softmax(features=4, dim=0)).couples_batch
    assert not hasattr(softmax_from_node(ir.Softmax(features=4, dim=1)), "couples_batch")


def test_a_refusal_says_whether_hybrid_exports_the_module():
    """A GELU has a hybrid node: the message offers hybrid=True and does not say T1C-IR cannot
    express it (issue 22 item 6); a module with no node at all says so, and offers no hybrid."""
    with pytest.raises(ExportError) as gelu:
        to_ir(nn.Sequential(nn.Linear(4, 4), nn.GELU()), torch.zeros(1, 4))
    assert "pass hybrid=True" in str(gelu.value) and "cannot express" not in str(gelu.value)
    assert "no node that computes it" not in str(gelu.value)
    with pytest.raises(ExportError) as other:
        to_ir(nn.Sequential(nn.Linear(4, 4), nn.Hardswish()), torch.zeros(1, 4))
    assert "no node that computes it" in str(other.value) and "hybrid=True" not in str(other.value)
