"""The t1c/* figures computed by torchmetrics: the default accuracy, a user's metrics, the gap."""

from __future__ import annotations

import pytest
import torch
from torchmetrics import MeanSquaredError, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from t1c.lightning.scoring import ExportScores, metric_collection, quant_gap


def _onehot(classes, count=3):
    return torch.nn.functional.one_hot(torch.as_tensor(classes), count).float()


def _scored(metrics, n=100):
    """100 samples of 3 classes: float right on 90, quantized on 85, float == live on 99."""
    y = torch.arange(n) % 3
    pred_float, pred_quant, live = y.clone(), y.clone(), y.clone()
    pred_float[:10] = (y[:10] + 1) % 3
    pred_quant[:15] = (y[:15] + 1) % 3
    live[:10] = pred_float[:10]
    live[10] = (y[10] + 2) % 3
    scores = ExportScores(metrics)
    for part in range(0, n, 32):  # in batches, as the measurement feeds them
        s = slice(part, part + 32)
        scores.update(_onehot(pred_float[s]), _onehot(pred_quant[s]), live[s], y[s])
    return scores.compute(), (pred_float, pred_quant, y)


def test_default_figures_equal_counted_ones():
    figures, _ = _scored(None)
    assert figures == {
        "t1c/float_acc": pytest.approx(0.9),
        "t1c/quant_acc": pytest.approx(0.85),
        "t1c/quant_gap": pytest.approx(0.05),
        "t1c/export_agreement": pytest.approx(0.99),
        "t1c/quant_agreement": pytest.approx(0.95),  # the quantized graph predicts what float does
        "t1c/num_samples": 100.0,
    }
    assert ExportScores(None).compute() == {}  # nothing measured: no figure


def test_user_metrics_for_both_graphs_and_the_gap_of_each():
    collection = MetricCollection(
        {"f1": MulticlassF1Score(3, average="macro"), "acc": MulticlassAccuracy(3, average="micro")}
    )
    figures, (pred_float, pred_quant, y) = _scored(collection)
    reference = MulticlassF1Score(3, average="macro")
    assert figures["t1c/float_f1"] == pytest.approx(float(reference(pred_float, y)))
    assert figures["t1c/quant_f1"] == pytest.approx(
        float(MulticlassF1Score(3, average="macro")(pred_quant, y))
    )
    assert figures["t1c/quant_gap_f1"] == pytest.approx(figures["t1c/float_f1"] - figures["t1c/quant_f1"])
    assert figures["t1c/quant_gap"] == pytest.approx(0.05)  # of the metric named acc
    assert "t1c/float_acc" in figures and figures["t1c/num_samples"] == 100.0
    assert collection["f1"].update_count == 0  # the user's metric objects are copied, not updated


def test_metric_arguments_are_checked_and_named():
    assert list(metric_collection(MulticlassAccuracy(3)).keys()) == ["MulticlassAccuracy"]
    assert list(metric_collection({"acc": MulticlassAccuracy(3, average="micro")}).keys()) == ["acc"]
    assert metric_collection(None) is None
    with pytest.raises(ValueError, match=r"metrics=str.*torchmetrics Metric"):
        metric_collection("accuracy")
    with pytest.raises(ValueError, match="shapes|scores of shape"):
        ExportScores(None).update(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(3), torch.zeros(3))


def test_gap_follows_higher_is_better():
    assert quant_gap(0.9, 0.85, True) == pytest.approx(0.05)
    assert quant_gap(0.2, 0.3, MeanSquaredError.higher_is_better) == pytest.approx(0.1)
