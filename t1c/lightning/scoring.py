"""The figures of one export's measurement, computed by torchmetrics and synced across ranks by it.

:class:`ExportScores` takes, batch by batch, the class scores ``[B, C]`` of the exported graph
in float and in quantized simulation, the live module's predicted classes and the labels,
and computes the ``t1c/*`` figures: each metric of ``T1CExport(metrics=...)`` (default:
``MulticlassAccuracy(C, average="micro")`` as ``acc``) for both graphs, how much worse the
quantized graph is on each metric, the agreements and the sample count. Every figure is
a torchmetrics state, so ``compute`` sums it over ranks (a sampler that pads the last shard
counts a few samples twice).

Example:
    >>> import torch
    >>> scores = ExportScores(None)
    >>> y = torch.tensor([0, 1, 1, 0])
    >>> onehot = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 0]), 2).float()
    >>> scores.update(onehot, onehot, torch.tensor([0, 1, 0, 1]), y)
    >>> figures = scores.compute()
    >>> figures["t1c/float_acc"], figures["t1c/export_agreement"], figures["t1c/num_samples"]
    (0.75, 0.75, 4.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

METRIC_PREFIX = "t1c/"
#: The default metric's name: ``t1c/float_acc``, ``t1c/quant_acc``.
DEFAULT_METRIC = "acc"
#: How much worse the quantized graph is on the default metric (``max_quant_gap`` acts on every gap).
GAP_NAME = METRIC_PREFIX + "quant_gap"


def metric_collection(metrics: Any) -> MetricCollection | None:
    """``T1CExport(metrics=...)`` as one collection (None: the default accuracy).

    A ``Metric`` is named as ``MetricCollection`` names it (its class name), a mapping by its keys.

    Raises:
        ValueError: ``metrics`` is not a torchmetrics Metric, MetricCollection or mapping of Metrics.
    """
    if metrics is None or isinstance(metrics, MetricCollection):
        return metrics
    if isinstance(metrics, Metric):
        return MetricCollection([metrics])
    if isinstance(metrics, Mapping) and metrics and all(isinstance(m, Metric) for m in metrics.values()):
        return MetricCollection(dict(metrics))
    raise ValueError(
        f"T1CExport(metrics={type(metrics).__name__}): must be a torchmetrics Metric, a MetricCollection "
        "or a dict of Metrics, e.g. MulticlassF1Score(num_classes=10)"
    )


def gap_name(metric: str) -> str:
    """The logged name of a metric's gap: ``t1c/quant_gap`` for ``acc``, else ``t1c/quant_gap_<metric>``."""
    return GAP_NAME if metric == DEFAULT_METRIC else f"{GAP_NAME}_{metric}"


def quant_gap(float_value: float, quant_value: float, higher_is_better: bool | None) -> float:
    """How much worse the quantized value is (``float - quant`` unless lower is better).

    Example:
        >>> quant_gap(0.9, 0.85, True), quant_gap(0.2, 0.3, False)
        (0.05, 0.1)
    """
    gap = float_value - quant_value if higher_is_better is not False else quant_value - float_value
    return round(gap, 12)


class Totals(Metric):
    """Sums of a vector of ``size`` counts, synced across ranks by torchmetrics (``sum``).

    One state and one addition per update, whatever the number of counts: the agreements and
    sample count of a measurement, the spikes and neuron-steps of every layer.

    Example:
        >>> totals = Totals(2)
        >>> totals.update(torch.tensor([1.0, 4.0])); totals.update(torch.tensor([2.0, 4.0]))
        >>> totals.compute().tolist()
        [3.0, 8.0]
    """

    full_state_update = False

    def __init__(self, size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor) -> None:
        """Add ``values`` (``[size]``) to the totals."""
        self.total += values.to(self.total)

    def compute(self) -> torch.Tensor:
        """The totals (over every rank)."""
        return self.total


class ExportScores:
    """The ``t1c/*`` figures of one measurement.

    Args:
        metrics: the user's metrics (one collection, copied for each graph), or None for the
            default ``MulticlassAccuracy(C, average="micro")`` named ``acc`` (``C`` from the
            first scores).
        device: where the metric states live (the module's device).
    """

    def __init__(self, metrics: MetricCollection | None, device: torch.device | str = "cpu") -> None:
        self.template, self.device = metrics, device
        self.float: dict[str, Metric] = {}
        self.quant: dict[str, Metric] = {}
        #: float graph == live module, quantized graph == float graph, samples
        self.counts = Totals(3).to(device)
        self.updated = False

    def update(
        self, float_scores: torch.Tensor, quant_scores: torch.Tensor, live: torch.Tensor, y: torch.Tensor
    ) -> None:
        """One batch: both graphs' class scores ``[B, C]``, the live classes ``[B]``, the labels ``[B]``.

        Raises:
            ValueError: the shapes do not describe the same samples.
        """
        if (
            not float_scores.shape == quant_scores.shape
            or not live.shape == y.shape == float_scores.shape[:1]
        ):
            raise ValueError(
                f"scores of shape {list(float_scores.shape)} and {list(quant_scores.shape)}, live predictions "
                f"{list(live.shape)} for labels {list(y.shape)}"
            )
        if not self.updated:
            self.float, self.quant = (self.fresh_metrics(int(float_scores.shape[-1])) for _ in range(2))
            self.updated = True
        for name, metric in self.float.items():
            metric.update(float_scores, y)
            self.quant[name].update(quant_scores, y)
        float_pred = float_scores.argmax(-1)
        agree = torch.stack([(float_pred == live).sum(), (quant_scores.argmax(-1) == float_pred).sum()])
        self.counts.update(
            torch.cat([agree.to(torch.float64), agree.new_full((1,), y.shape[0]).to(torch.float64)])
        )

    def fresh_metrics(self, num_classes: int) -> dict[str, Metric]:
        """A reset copy of the user's metrics by name, or the default accuracy for ``num_classes``."""
        if self.template is None:
            accuracy = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
            return {DEFAULT_METRIC: accuracy.to(self.device)}
        metrics = dict(self.template.clone().items())
        for metric in metrics.values():
            metric.reset()
            metric.to(self.device)
        return metrics

    def compute(self) -> dict[str, float]:
        """The figures (synced over ranks by torchmetrics); ``{}`` when nothing was measured."""
        if not self.updated:
            return {}
        floats = scalars({k: m.compute() for k, m in self.float.items()})
        quants = scalars({k: m.compute() for k, m in self.quant.items()})
        figures = {METRIC_PREFIX + "float_" + k: v for k, v in floats.items()}
        figures.update({METRIC_PREFIX + "quant_" + k: v for k, v in quants.items()})
        for name, value in floats.items():
            higher = getattr(self.float[name], "higher_is_better", True)
            figures[gap_name(name)] = quant_gap(value, quants[name], higher)
        float_live, quant_float, samples = self.counts.compute().tolist()
        figures[METRIC_PREFIX + "export_agreement"] = float_live / samples
        figures[METRIC_PREFIX + "quant_agreement"] = quant_float / samples
        figures[METRIC_PREFIX + "num_samples"] = samples
        return figures


def scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The scalar results of a collection's ``compute`` as floats (others, e.g. per-class, left out)."""
    return {k: float(v) for k, v in values.items() if isinstance(v, torch.Tensor) and v.numel() == 1}
