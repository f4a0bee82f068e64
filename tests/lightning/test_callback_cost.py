"""The export callback's shortcuts (issue 12) keep every figure: reused validation outputs give
exactly the metrics of a full re-run, and a float graph counts as the live model only when proven."""

from __future__ import annotations

import torch
from test_callback import _fit_t1c

from t1c import ir
from t1c.bridge.quantize import QuantizedLinear, quantized_linear
from t1c.lightning import T1CExport, measure
from t1c.lightning.naming import flatten_metrics


class FullRun(T1CExport):
    """Measures without reusing validation (the reference computation), nor streaming it."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.records.reusable = lambda step, pl_module: False
        self.exporter.open_stream = lambda trainer, pl_module, submit: None


class Spy(T1CExport):
    """Notes whether each measurement reused validation's records."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.reused = []
        reusable = self.records.reusable

        def spying(step, pl_module):
            self.reused.append(reusable(step, pl_module))
            return self.reused[-1]

        self.records.reusable = spying


def _metrics(root):
    folder = root / "logs" / "version_0" / "checkpoints"
    return {
        k: v
        for k, v in flatten_metrics(
            ir.read(folder / "epoch=1-step=4.t1c").metadata["t1c_export"]["metrics"]
        ).items()
        if k.startswith("t1c/")
    }


def test_reused_validation_gives_the_figures_of_a_full_run(tmp_path, fixtures_dir):
    spy = Spy()
    _, module = _fit_t1c(tmp_path / "a", fixtures_dir, [spy])
    _fit_t1c(tmp_path / "b", fixtures_dir, [FullRun()])
    assert spy.reused == [True, True]  # one export per epoch, each after its validation
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    assert _metrics(tmp_path / "a")["t1c/export_agreement"] == 1.0
    assert "run_sequence" not in vars(module.executor)  # the recorder is gone after validation


class LoaderCounting(T1CExport):
    """Counts the measurement's passes over the validation loader."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.loader_passes = 0
        labelled = self.exporter.measurement.labelled

        def counting(loader):
            self.loader_passes += 1
            yield from labelled(loader)

        self.exporter.measurement.labelled = counting


def _fit_full_validation(root, fixtures_dir, export):
    """The measured figures of a fit whose validation runs over all 6 batches of the digits."""
    _fit_t1c(root, fixtures_dir, [export], limit_val_batches=None, logger=False)
    return flatten_metrics(export.entries[next(iter(export.entries))]["metrics"])


def test_recorded_validation_replaces_the_loader_and_joined_batches_count_the_same(
    tmp_path, fixtures_dir, monkeypatch
):
    """When validation ran over every batch, the measurement takes its batches (no second pass
    over the loader) and runs the quantized graph on several joined: same figures as a full
    re-run batch by batch, the short last batch (359 = 5 x 64 + 39) included."""
    sizes = []
    joined = measure.joined

    def spying(items, max_bytes):
        for item in joined(items, max_bytes):
            sizes.append(None if item is None else int(item[0].shape[1]))
            yield item

    monkeypatch.setattr(measure, "joined", spying)
    recorded = LoaderCounting(asynchronous="thread")  # measured in this process, where the spy counts
    got = _fit_full_validation(tmp_path / "a", fixtures_dir, recorded)
    assert recorded.loader_passes == 0
    assert recorded.records.batches == {}  # freed once the step is measured
    assert max(sizes) > 64 and sum(sizes) == 2 * got["t1c/num_samples"]  # two exports, joined batches
    monkeypatch.setattr(measure, "joined", joined)
    full = LoaderCounting()
    full.records.reusable = lambda step, pl_module: False
    full.exporter.open_stream = lambda trainer, pl_module, submit: None
    expected = _fit_full_validation(tmp_path / "b", fixtures_dir, full)
    assert full.loader_passes == 2
    measured = {k: v for k, v in got.items() if k.startswith("t1c/")}
    assert measured == {k: v for k, v in expected.items() if k.startswith("t1c/")}
    assert measured["t1c/num_samples"] == 359 and measured["t1c/export_agreement"] == 1.0
    limited = LoaderCounting(limit_batches=2)  # the first two recorded batches, still not the loader
    assert _fit_full_validation(tmp_path / "c", fixtures_dir, limited)["t1c/num_samples"] == 128
    assert limited.loader_passes == 0


def _float64_reference(layer, x):
    """The float64 accumulator, without the float32 shortcut."""
    return quantized_linear(x, layer.weight_int, layer.bias_int, layer.scale, layer.accumulator_bits)


def test_quantized_linear_float32_path_equals_the_float64_accumulator():
    torch.manual_seed(0)
    linear = torch.nn.Linear(300, 40)
    spikes = (torch.rand(7, 5, 300) < 0.3).float()
    for bits, acc_bits in ((8, 32), (8, 12), (16, 32)):
        layer = QuantizedLinear.from_linear(linear, bits, acc_bits)
        _, _, reach = layer._operands()
        assert (layer._float32_sum_bound(spikes, reach) is not None) == (reach < 2**24)
        assert torch.equal(layer(spikes), _float64_reference(layer, spikes))  # saturation included
        counts = spikes * 3
        assert torch.equal(layer(counts), _float64_reference(layer, counts))
    layer = QuantizedLinear.from_linear(linear, 8, 32)
    graded = torch.rand(4, 300)
    assert layer._float32_sum_bound(graded, layer._operands()[2]) is None  # float64 accumulator
    assert torch.equal(layer(graded), _float64_reference(layer, graded))
    with torch.no_grad():  # an in-place change of the integers is seen (cache keyed by version)
        layer.weight_int[0, 0] += 1
    assert torch.equal(layer(spikes), _float64_reference(layer, spikes))
    big = QuantizedLinear.from_linear(linear, 24, 48)  # fan-in sums above 2**24: float64
    assert big._float32_sum_bound(spikes, big._operands()[2]) is None
    assert torch.equal(big(spikes), _float64_reference(big, spikes))
