"""The export callback's shortcuts (issue 12) keep every figure: reused validation outputs give
exactly the metrics of a full re-run, and a float graph counts as the live model only when proven."""

from __future__ import annotations

import torch
from test_callback import _fit_t1c

from t1c import ir
from t1c.bridge import ir_to_torch
from t1c.bridge.quantize import QuantizedLinear, attach_integer_weights, ir_to_quantized, quantized_linear
from t1c.lightning import T1CExport, T1CModule
from t1c.lightning import callback as callback_module
from t1c.lightning.callback import _joined, _same_computation
from t1c.lightning.naming import flatten_metrics


class FullRun(T1CExport):
    """Measures without reusing validation (the reference computation)."""

    def _validation_reusable(self, trainer, pl_module):
        return False


class Spy(T1CExport):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.reused = []

    def _validation_reusable(self, trainer, pl_module):
        self.reused.append(super()._validation_reusable(trainer, pl_module))
        return self.reused[-1]


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

    def _labelled(self, loader):
        self.loader_passes += 1
        yield from super()._labelled(loader)


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

    def spying(items, max_bytes):
        for item in _joined(items, max_bytes):
            sizes.append(None if item is None else int(item[0].shape[1]))
            yield item

    monkeypatch.setattr(callback_module, "_joined", spying)
    recorded = LoaderCounting()
    got = _fit_full_validation(tmp_path / "a", fixtures_dir, recorded)
    assert recorded.loader_passes == 0
    assert recorded._val_records == {}  # freed once the step is measured
    assert max(sizes) > 64 and sum(sizes) == 2 * got["t1c/num_samples"]  # two exports, joined batches
    monkeypatch.setattr(callback_module, "_joined", _joined)
    full = LoaderCounting()
    full._validation_reusable = lambda trainer, pl_module: False
    expected = _fit_full_validation(tmp_path / "b", fixtures_dir, full)
    assert full.loader_passes == 2
    measured = {k: v for k, v in got.items() if k.startswith("t1c/")}
    assert measured == {k: v for k, v in expected.items() if k.startswith("t1c/")}
    assert measured["t1c/num_samples"] == 359 and measured["t1c/export_agreement"] == 1.0
    limited = LoaderCounting(limit_batches=2)  # the first two recorded batches, still not the loader
    assert _fit_full_validation(tmp_path / "c", fixtures_dir, limited)["t1c/num_samples"] == 128
    assert limited.loader_passes == 0


def test_joined_groups_by_bytes_and_shape():
    def item(batch, steps=4, width=3):
        return torch.zeros(steps, batch, width), torch.arange(batch), torch.arange(batch)

    def batches(groups):
        return [None if g is None else int(g[0].shape[1]) for g in groups]

    nbytes = 4 * 64 * 3 * 4  # one [4, 64, 3] float32 batch
    assert batches(_joined([item(64)] * 5, 2 * nbytes)) == [128, 128, 64]
    assert batches(_joined([item(64)] * 3, 0)) == [64, 64, 64]
    assert batches(_joined([item(64), item(64, steps=5), item(8, steps=5)], 10 * nbytes)) == [64, 72]
    assert batches(_joined([item(64), item(64, width=2), None, item(64)], 10 * nbytes)) == [64, 64, None]
    xs, classes, labels = next(_joined([item(2), item(3)], nbytes))
    assert xs.shape == (4, 5, 3) and classes.tolist() == labels.tolist() == [0, 1, 0, 1, 2]


def test_same_computation_is_proven_or_refused(fixtures_dir):
    module = T1CModule(fixtures_dir / "mlp_snn.t1c", num_steps=4)
    graph = attach_integer_weights(module.export_graph())
    assert _same_computation(ir_to_torch(graph), module.executor)
    assert not _same_computation(ir_to_quantized(graph, 8, 32), module.executor)
    with torch.no_grad():
        next(module.executor.parameters()).view(-1)[0] += 1e-6
    assert not _same_computation(ir_to_torch(graph), module.executor)
    other = ir_to_torch(graph)
    lif = next(m for m in other.modules() if hasattr(m, "reset_mechanism"))
    lif.reset_mechanism = "none" if lif.reset_mechanism != "none" else "zero"
    assert not _same_computation(other, ir_to_torch(graph))


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
