"""The picture of each export's spike rates: drawn, logged to TensorBoard (and W&B, MLflow), kept as PNG."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger
from matplotlib.image import imread
from test_callback import _trainer
from test_rates import _Fixed

from t1c.lightning import T1CExport, rate_plots
from t1c.lightning.manifest import read_manifest
from t1c.lightning.rate_plots import (
    FIGURE_TAG,
    RatePlots,
    figure_pixels,
    log_figure,
    png_bytes,
    png_path,
    rates_figure,
)
from t1c.lightning.rates import layer_rates, quantization_harm

RED = "#d62728"


class _Scored(_Fixed):
    """:func:`test_rates._Fixed` (lif2 silent at 4 bits) logging ``val/score`` = ``scores[epoch]``."""

    def __init__(self, scores=(0.1, 0.3, 0.2)):
        super().__init__()
        self.scores = scores

    def validation_step(self, batch, batch_idx):
        self.log("val/score", float(self.scores[self.current_epoch % len(self.scores)]))


def _loaders():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y)
    return [torch.utils.data.DataLoader(ds, batch_size=8) for _ in range(2)]


def _fit(root: Path, export: T1CExport, max_epochs=2, scores=(0.1, 0.3, 0.2), **kw):
    """Fit :class:`_Scored` keeping every checkpoint (or ``checkpoint``'s); the warnings it gave."""
    checkpoint = kw.pop("checkpoint", None) or ModelCheckpoint(dirpath=root / "ck", save_top_k=-1)
    trainer = _trainer(root, [checkpoint, export], max_epochs=max_epochs, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(_Scored(scores), *_loaders())
    return trainer, [str(w.message) for w in caught]


def _images(log_dir: str) -> dict[str, list]:
    """The images of a TensorBoard run folder by tag, read back from its event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir, size_guidance={"images": 0})
    events.Reload()
    return {tag: events.Images(tag) for tag in events.Tags()["images"]}


def _figure_warnings(messages: list[str]) -> list[str]:
    return [m for m in messages if "rate_figure" in m or "matplotlib" in m]


# -- the figure ----------------------------------------------------------------------------
def test_the_figure_marks_the_layers_quantization_silences_or_saturates():
    rates = {"lif10": (0.3, 0.0), "lif1": (0.2, 0.18), "lif2": (0.5, 1.0), "lif3": (0.0, 0.0)}
    ax = rates_figure(rates, "at step 4", "quantized (4 bits)").axes[0]
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == ["lif1", "lif2", "lif3", "lif10"]  # numbers as numbers
    bars = ax.patches
    assert [b.get_height() for b in bars] == pytest.approx([0.2, 0.5, 0.0, 0.3, 0.18, 1.0, 0.0, 0.0])
    marks = {round(t.get_position()[0] - 0.2): t.get_text() for t in ax.texts}
    # the figure marks exactly what the warning names (rates.py's decision), above the quantized bar
    assert marks == {1: "saturated", 3: "silent"}
    assert {names: what for names, what in quantization_harm(rates)} == {
        "lif2": "saturated",
        "lif10": "silent",
    }
    assert [t.get_color() == RED for t in labels] == [False, True, False, True]
    assert [bars[4 + i].get_hatch() for i in range(4)] == [None, "//", None, "//"]
    assert ax.get_title() == "at step 4"
    assert [t.get_text() for t in ax.figure.legends[0].get_texts()] == ["float", "quantized (4 bits)"]


def test_a_figure_with_nothing_harmed_marks_nothing_and_names_stay_text():
    ax = rates_figure({"$x$": (0.2, 0.19)}).axes[0]
    label = ax.get_xticklabels()[0]
    assert len(ax.texts) == 0 and label.get_text() == "$x$" and not label.get_parse_math()
    pixels = figure_pixels(ax.figure)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    with pytest.raises(ValueError, match="no layer rates"):
        rates_figure({})


def test_png_names_follow_the_export():
    assert png_path("ck/epoch=3-step=92.t1c") == "ck/epoch=3-step=92.rates.png"


# -- loggers -----------------------------------------------------------------------------
def test_the_figure_of_every_export_reaches_tensorboard(tmp_path):
    trainer, messages = _fit(
        tmp_path, T1CExport(weight_bits=4), logger=TensorBoardLogger(tmp_path, name="tb")
    )
    exports = read_manifest(tmp_path / "ck" / "t1c_exports.json")["exports"]
    steps = sorted({e["global_step"] for e in exports.values()})
    assert steps == [2, 4]
    images = _images(trainer.logger.log_dir)
    assert list(images) == [FIGURE_TAG]
    assert [image.step for image in images[FIGURE_TAG]] == steps  # one image per export
    for image in images[FIGURE_TAG]:
        pixels = imread(io.BytesIO(image.encoded_image_string), format="png")
        assert pixels.shape[:2] == (image.height, image.width) and image.width > 100
    assert _figure_warnings(messages) == []
    assert not list((tmp_path / "ck").glob("*.png"))  # PNG files only when asked


def test_switched_off_no_figure_reaches_tensorboard(tmp_path):
    trainer, _ = _fit(
        tmp_path, T1CExport(weight_bits=4, rate_figure=False), logger=TensorBoardLogger(tmp_path)
    )
    assert _images(trainer.logger.log_dir) == {}
    assert (tmp_path / "ck" / "epoch=1-step=4.t1c").is_file()


@pytest.mark.parametrize("logger", ["csv", False])
def test_without_a_logger_that_takes_images_nothing_is_drawn_and_nothing_warns(tmp_path, monkeypatch, logger):
    drawn = []
    monkeypatch.setattr(rate_plots, "rates_figure", lambda *a, **k: drawn.append(a))
    logger = CSVLogger(tmp_path, name="logs") if logger == "csv" else False
    _, messages = _fit(tmp_path, T1CExport(weight_bits=4), logger=logger)
    assert drawn == [] and _figure_warnings(messages) == []
    assert sorted(p.name for p in (tmp_path / "ck").iterdir() if p.suffix in (".t1c", ".png")) == [
        "epoch=0-step=2.t1c",
        "epoch=1-step=4.t1c",
        "last.t1c",
    ]


def test_asked_for_without_a_logger_that_takes_images_one_warning(tmp_path):
    _, messages = _fit(tmp_path, T1CExport(weight_bits=4, rate_figure=True), logger=False)
    assert len(_figure_warnings(messages)) == 1
    assert "no logger of this Trainer takes images" in _figure_warnings(messages)[0]


def test_without_matplotlib_one_warning_names_the_extra_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(rate_plots, "matplotlib_available", lambda: False)
    for mode, expected in (("png", 1), ("auto", 0)):
        root = tmp_path / mode
        _, messages = _fit(root, T1CExport(weight_bits=4, rate_figure=mode), logger=TensorBoardLogger(root))
        assert len(_figure_warnings(messages)) == expected, messages
        if expected:
            assert "pip install -e '.[plot]'" in _figure_warnings(messages)[0]
        assert not list((root / "ck").glob("*.png"))
        assert _images(str(root / "lightning_logs" / "version_0")) == {}


def test_wandb_and_mlflow_get_the_figure_through_lightning(tmp_path):
    class Wandb(WandbLogger):
        def log_image(self, key, images, step=None, **kwargs):
            calls.append(("wandb", key, images[0].shape, step))

    class Client:
        def log_figure(self, run_id, figure, artifact_file):
            calls.append(("mlflow", run_id, type(figure).__name__, artifact_file))

    class MLflow(MLFlowLogger):
        experiment = Client()
        run_id = "run-1"

    calls: list = []
    fig = rates_figure({"lif1": (0.2, 0.1)})
    pixels = figure_pixels(fig)
    for logger in (Wandb.__new__(Wandb), MLflow.__new__(MLflow), CSVLogger(tmp_path)):
        log_figure(logger, fig, pixels, 7, "epoch=1-step=7")
    assert calls == [
        ("wandb", FIGURE_TAG, pixels.shape, 7),
        ("mlflow", "run-1", "Figure", f"{FIGURE_TAG}/epoch=1-step=7.png"),
    ]
    assert pixels.ndim == 3 and pixels.shape[2] == 3


# -- PNG files beside the exports --------------------------------------------------------
@pytest.mark.parametrize(
    ("scores", "save_last", "kept"),
    [((0.1, 0.3, 0.2), "link", "epoch=1-step=4"), ((0.1, 0.2, 0.3), True, "epoch=2-step=6")],
)
def test_a_png_beside_every_export_shows_it_and_goes_with_it(tmp_path, scores, save_last, kept):
    folder = tmp_path / "ck"
    checkpoint = ModelCheckpoint(
        dirpath=folder, monitor="val/score", mode="max", save_top_k=1, save_last=save_last
    )
    _fit(tmp_path, T1CExport(weight_bits=4, rate_figure="png"), 3, checkpoint=checkpoint, scores=scores)
    t1c = sorted(p.name[: -len(".t1c")] for p in folder.glob("*.t1c"))
    pngs = sorted(p.name[: -len(".rates.png")] for p in folder.glob("*.png"))
    assert t1c == [kept, "last"]  # top-k dropped the others
    assert pngs == t1c and not list(folder.glob(".*"))  # no temporary file left
    # each PNG is the picture of its own export's rates (last.t1c's was redrawn as it moved on)
    plots = RatePlots("png", 4)
    for name, entry in read_manifest(folder / "t1c_exports.json")["exports"].items():
        figure = plots.figure(layer_rates(entry["metrics"]), entry["epoch"], entry["global_step"])
        assert (folder / png_path(name)).read_bytes() == png_bytes(figure)
        pixels = imread(folder / png_path(name))
        assert pixels.ndim == 3 and pixels.shape[0] > 100


def test_invalid_modes_are_refused_repeating_the_call():
    for mode in ("yes", 1, None):
        with pytest.raises(ValueError, match=r"T1CExport\(rate_figure="):
            T1CExport(rate_figure=mode)


def test_after_a_resume_the_pictures_of_exports_deleted_go_too(tmp_path):
    folder = tmp_path / "ck"

    def fit(max_epochs, ckpt_path=None):
        checkpoint = ModelCheckpoint(
            dirpath=folder, monitor="val/score", mode="max", save_top_k=1, save_last=True
        )
        trainer = _trainer(tmp_path, [checkpoint, T1CExport(weight_bits=4, rate_figure="png")], max_epochs)
        trainer.fit(_Scored((0.1, 0.2, 0.3)), *_loaders(), ckpt_path=ckpt_path)

    fit(1)
    assert sorted(p.name for p in folder.glob("*.png")) == ["epoch=0-step=2.rates.png", "last.rates.png"]
    fit(3, ckpt_path=folder / "last.ckpt")  # a new callback: epoch 0's export was drawn by the first
    assert sorted(p.name for p in folder.glob("*.png")) == ["epoch=2-step=6.rates.png", "last.rates.png"]
    assert sorted(p.name for p in folder.glob("*.t1c")) == ["epoch=2-step=6.t1c", "last.t1c"]


def test_a_deleted_export_loses_its_picture_even_one_drawn_before_a_resume(tmp_path):
    trainer = SimpleNamespace(is_global_zero=True, loggers=[])
    export = str(tmp_path / "epoch=0-step=2.t1c")
    Path(export).write_bytes(b"t1c")
    entry = {"epoch": 0, "global_step": 2, "content_hash": "h", "metrics": {"t1c/rate/lif1/float": 0.5}}
    entry["metrics"]["t1c/rate/lif1/quant"] = 0.0
    before = RatePlots("png", 4)
    before.start_fit(trainer)
    before.write_pngs(trainer, {export: entry}, {export}, set())
    assert Path(png_path(export)).is_file()
    after = RatePlots("png", 4)  # a new process: it drew nothing
    after.start_fit(trainer)
    Path(export).unlink()
    after.write_pngs(trainer, {}, set(), {export})
    assert not Path(png_path(export)).exists()
    other = RatePlots("png", 4)  # not this run's export: no picture
    other.start_fit(trainer)
    Path(export).write_bytes(b"t1c")
    other.write_pngs(trainer, {export: entry}, set(), set())
    assert not Path(png_path(export)).exists()
