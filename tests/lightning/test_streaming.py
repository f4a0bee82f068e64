"""The measurement streamed while validation runs: the figures of the whole measurement, taken
only for the very graph measured over every batch, and never for weights changed since."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from test_async_export import _fit, _pairs

from t1c import ir
from t1c.lightning import T1CExport, T1CModule
from t1c.lightning.measure import RecordedMeasurement, graph_executors, readout_of
from t1c.lightning.naming import flatten_metrics
from t1c.lightning.streaming import (
    STREAMS,
    StreamedScores,
    StreamSpec,
    close_stream,
    drop_stream,
    feed_stream,
    open_stream,
)


def _same_files(a, b) -> bool:
    """Two folders' manifests list the same files, checkpoints, steps and figures (not the run id)."""

    def entries(folder):
        return {
            name: {k: v for k, v in entry.items() if k != "run"} for name, entry in _pairs(folder).items()
        }

    return entries(a) == entries(b)


def _items(module: T1CModule, sizes: list[int]) -> list:
    """Validation-like items ``(spike trains, live class scores, labels)`` of the live executor."""
    torch.manual_seed(1)
    items = []
    for size in sizes:
        xs = (torch.rand(25, size, 64) < 0.3).float()
        with torch.no_grad():
            ys, _ = module.executor.run_sequence(xs)
        items.append((xs, module.logits(ys), torch.randint(0, 10, (size,))))
    return items


@pytest.mark.parametrize("float_is_live", [True, False])
def test_fed_batch_by_batch_gives_the_figures_of_the_whole_measurement(fixtures_dir, float_is_live):
    module = T1CModule(fixtures_dir / "mlp_snn.t1c").eval()
    graph = module.export_graph()
    items = _items(module, [64, 64, 64, 64, 39])  # joined in threes when the live outputs stand in
    device = torch.device("cpu")
    whole = RecordedMeasurement(
        items, {}, graph_executors(graph, (4, 16), device, float_is_live=float_is_live),
        readout_of(module), None, device,
    )()  # fmt: skip
    spec = StreamSpec((4, 16), float_is_live, readout_of(module), None, device)
    open_stream("k", spec, graph)  # built here from the graph, as in the worker process
    groups = []
    run_group = StreamedScores.run_group
    stream = STREAMS["k"]
    stream.run_group = lambda: (groups.append(len(stream.group)), run_group(stream))[1]
    for item in items:
        feed_stream("k", item)
    assert close_stream("k", {}) == whole and "k" not in STREAMS
    assert groups == ([3, 2] if float_is_live else [1] * 5)
    assert whole["t1c/num_samples"] == 295


def test_an_error_is_raised_by_the_export_that_takes_the_stream_and_dropping_is_silent(fixtures_dir):
    module = T1CModule(fixtures_dir / "mlp_snn.t1c").eval()
    spec = StreamSpec((8, 32), True, readout_of(module), None, torch.device("cpu"))
    open_stream("bad", spec, module.export_graph())
    feed_stream("bad", (torch.zeros(6, 2, 7), torch.zeros(2, 10), torch.zeros(2)))  # 7 inputs, not 64
    feed_stream("bad", _items(module, [2])[0])  # after an error: nothing more runs
    with pytest.raises(ValueError, match=r"got \[6, 2, 7\]"):
        close_stream("bad", {})
    open_stream("dropped", spec, module.export_graph())
    feed_stream("dropped", (torch.zeros(6, 2, 7), torch.zeros(2, 10), torch.zeros(2)))
    drop_stream("dropped")
    feed_stream("dropped", _items(module, [2])[0])  # a dropped stream takes nothing, raises nothing
    assert "dropped" not in STREAMS
    with pytest.raises(RuntimeError, match="streamed measurement dropped is not open"):
        close_stream("dropped", {})


class TakenStreams(T1CExport):
    """Notes, per export, whether the stream opened at its validation was taken."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.taken: list[bool] = []
        streams = self.exporter.streams
        take = streams.take

        def spying(trainer, step, source):
            opened = streams.stream is not None
            result = take(trainer, step, source)
            if opened:
                self.taken.append(result is not None)
            return result

        streams.take = spying


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_streamed_exports_equal_the_synchronous_ones(tmp_path, fixtures_dir, mode):
    streamed = TakenStreams(asynchronous=mode)
    _fit(tmp_path / "streamed", fixtures_dir, streamed)
    _fit(tmp_path / "sync", fixtures_dir, T1CExport(asynchronous=False))
    assert streamed.taken == [True, True, True]
    assert _same_files(tmp_path / "streamed", tmp_path / "sync")


class Nudge(Callback):
    """Changes a weight in place after validation, before ModelCheckpoint saves (it runs last)."""

    def on_validation_end(self, trainer, pl_module):
        weight = next(pl_module.executor.parameters())
        weight.data.mul_(1.5)  # through .data: no version counter moves


class Unreused(T1CExport):
    """The reference: measures without reusing validation, nor streaming it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.records.reusable = lambda step, pl_module: False
        self.exporter.open_stream = lambda trainer, pl_module, submit: None


@pytest.mark.parametrize("mode", ["thread", False])
def test_weights_changed_after_validation_are_measured_as_they_ship(tmp_path, fixtures_dir, mode):
    """The records and the stream are of the weights validation ran with: an export of other
    weights measures its own (the figures of a run that reuses nothing)."""
    export = TakenStreams(asynchronous=mode)
    _fit(tmp_path / "nudged", fixtures_dir, export, Nudge())
    _fit(tmp_path / "reference", fixtures_dir, Unreused(asynchronous=False), Nudge())
    assert export.taken == ([False] * 3 if mode else [])
    assert _same_files(tmp_path / "nudged", tmp_path / "reference")
    graph = ir.read(tmp_path / "nudged" / "epoch=2-step=12.t1c")
    assert flatten_metrics(graph.metadata["t1c_export"]["metrics"])["t1c/export_agreement"] == 1.0


def test_a_validation_without_a_checkpoint_drops_its_stream(tmp_path, fixtures_dir):
    export = TakenStreams(asynchronous="process")
    _fit(tmp_path / "a", fixtures_dir, export, every_n_epochs=2)
    _fit(tmp_path / "b", fixtures_dir, T1CExport(asynchronous=False), every_n_epochs=2)
    assert export.taken == [True]  # epoch 1's; epoch 0's and 2's streams were dropped unused
    assert _same_files(tmp_path / "a", tmp_path / "b")


class StopInValidation(Callback):
    """Raises at the second validation batch of epoch 1, while that validation's stream is fed."""

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if trainer.current_epoch == 1 and batch_idx == 1:
            raise RuntimeError("stopped mid-validation")


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_fit_failing_mid_validation_forgets_its_open_stream(tmp_path, fixtures_dir, mode):
    export = TakenStreams(asynchronous=mode)
    with pytest.raises(RuntimeError, match="stopped mid-validation"):
        _fit(tmp_path, fixtures_dir, export, StopInValidation())
    assert export.taken == [True] and export.exporter.streams.stream is None and export.worker is None
    assert not STREAMS  # nothing left open in this process (a process's streams end with it)
    assert sorted(p.name for p in tmp_path.glob("*.t1c")) == ["epoch=0-step=4.t1c", "last.t1c"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file
