"""Issue 22.1: a plain LightningModule that rate-codes static digits inside ``forward``.

Without ``T1CExport(encoder=..., num_steps=...)`` the exported graph is fed the static batch:
the self-check of the first export says so in one message and no float/quantized figure is
logged. With the option the callback's float accuracy is the module's own, within the
sampling noise of rate coding.
"""

from __future__ import annotations

import csv
import warnings

import lightning.pytorch as pl
import pytest
import snntorch as snn
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from sklearn.datasets import load_digits
from snntorch import spikegen, utils
from torch import nn

from t1c.lightning import T1CExport
from t1c.lightning.callback import T1CExportError
from t1c.lightning.manifest import read_manifest

STEPS = 25
FIX = "T1CExport(encoder='rate', num_steps=25)"


class RateCoded(pl.LightningModule):
    """The issue's module, as a user writes it."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 64),
            snn.Leaky(beta=0.9, init_hidden=True),
            nn.Linear(64, 10),
            snn.Leaky(beta=0.9, init_hidden=True),
        )

    def forward(self, x):
        utils.reset(self.net)
        spk = spikegen.rate(x, num_steps=STEPS)
        return torch.stack([self.net(s) for s in spk]).sum(0)

    def training_step(self, b, i):
        x, y = b
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, b, i):
        x, y = b
        self.log("val_acc", (self(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=5e-3)


def _fit(root, callback):
    """One epoch on 640 digits, validated on 256: (module's val_acc, manifest metrics, warnings, logged rows)."""
    pl.seed_everything(0)
    d = load_digits()
    x, y = torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target)
    loader = lambda s: torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[s], y[s]), batch_size=64)  # noqa: E731
    trainer = pl.Trainer(
        max_epochs=1,
        default_root_dir=root,
        logger=CSVLogger(root, name="logs", version=0),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[ModelCheckpoint(dirpath=root), callback],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(RateCoded(), loader(slice(0, 640)), loader(slice(640, 896)))
    metrics = read_manifest(root / "t1c_exports.json")["exports"]["epoch=0-step=10.t1c"]["metrics"]
    rows = list(csv.DictReader(open(root / "logs" / "version_0" / "metrics.csv")))
    messages = [str(w.message) for w in caught if "T1CExport" in str(w.message)]
    return float(trainer.callback_metrics["val_acc"]), metrics, messages, rows


def test_without_the_option_one_warning_names_it_and_no_figure_is_logged(tmp_path):
    val_acc, metrics, messages, rows = _fit(tmp_path, T1CExport(verify="warn"))
    assert val_acc > 0.5  # the module learned
    mismatch = [m for m in messages if "does not reflect" in m or "would not reflect" in m]
    assert len(mismatch) == 1 and FIX in mismatch[0] and "RateCoded.forward" in mismatch[0], messages
    assert "repeated for 1 step(s)" in mismatch[0]  # what the graph was fed
    # before the fix: t1c/float_acc 0.086 beside val_acc 0.919, and no word
    assert not any(k.startswith("t1c/") for k in metrics)
    assert not any(k.startswith("t1c/") and v for row in rows for k, v in row.items())


def test_without_the_option_verify_raise_stops_with_the_fix(tmp_path):
    with pytest.raises(T1CExportError, match=r"(?s)would not reflect the module's forward.*encoder='rate'"):
        _fit(tmp_path, T1CExport())


def test_with_the_option_float_accuracy_is_the_modules_own(tmp_path):
    val_acc, metrics, messages, _ = _fit(tmp_path, T1CExport(encoder="rate", num_steps=STEPS))
    assert not [m for m in messages if "reflect" in m]
    assert metrics["t1c/num_samples"] == 256
    # rate coding draws other spikes than validation did: equal within its sampling noise
    assert metrics["t1c/float_acc"] == pytest.approx(val_acc, abs=0.05)
    assert metrics["t1c/export_agreement"] >= 0.9  # the same spikes on both sides (one seed per batch)
    assert abs(metrics["t1c/quant_gap"]) <= 0.05 and "t1c/rate/1/float" in metrics
