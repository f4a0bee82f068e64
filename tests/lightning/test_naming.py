"""File names from templates and checkpoints, and metric names as HDF5 names."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from t1c.lightning.naming import (
    checkpoint_stem,
    export_path_for,
    flatten_metrics,
    format_name,
    metadata_key,
    nest_metrics,
    sanitize_stem,
    scalar_metrics,
)


# -- names -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "template, metrics",
    [
        ("{epoch}-{step}", {"epoch": torch.tensor(3), "step": torch.tensor(120)}),
        ("{epoch:03d}", {"epoch": torch.tensor(5)}),
        ("{epoch}-{val_loss:.2f}", {"epoch": torch.tensor(2), "val_loss": torch.tensor(0.123456)}),
        ("{epoch}-{val/acc:.3f}", {"epoch": torch.tensor(1), "val/acc": torch.tensor(0.5)}),
        ("{missing:d}", {}),
        ("model-{epoch_test}-{epoch}", {"epoch": torch.tensor(1), "epoch_test": torch.tensor(7)}),
    ],
)
@pytest.mark.parametrize("auto_insert", [True, False])
def test_format_name_matches_model_checkpoint(template, metrics, auto_insert):
    mc = ModelCheckpoint(filename=template, auto_insert_metric_name=auto_insert)
    expected = mc.format_checkpoint_name(dict(metrics))[: -len(".ckpt")]
    assert format_name(template, metrics, auto_insert) == expected


def test_format_name_bad_spec_names_the_field():
    with pytest.raises(ValueError, match="'epoch'.*epoch:q"):
        format_name("{epoch:q}", {"epoch": 1})


def test_sanitize_stem_never_makes_folders():
    assert sanitize_stem("epoch=1-val/acc=0.50") == "epoch=1-val_acc=0.50"
    assert sanitize_stem("a\\b c") == "a_b_c"
    assert sanitize_stem("../x") == "_x"
    assert "/" not in sanitize_stem("//") and sanitize_stem("//") == "__"
    with pytest.raises(ValueError, match="no usable"):
        sanitize_stem("...")


def test_checkpoint_stem_and_export_path(tmp_path):
    root = tmp_path / "ckpts"
    assert checkpoint_stem(root / "epoch=1-val" / "acc=0.50.ckpt", root) == "epoch=1-val_acc=0.50"
    assert checkpoint_stem(root / "last.ckpt", root) == "last"
    assert checkpoint_stem("/elsewhere/x.ckpt", root) == "x"
    assert export_path_for(root / "epoch=3-step=120.ckpt", root) == str(root / "epoch=3-step=120.t1c")
    assert export_path_for(root / "a/b.ckpt", root, tmp_path / "out") == str(tmp_path / "out" / "a_b.t1c")


# -- metrics -----------------------------------------------------------------------------
def test_scalar_metrics_keeps_numbers_only():
    out = scalar_metrics({"b": torch.tensor(2.5), "a": 1, "v": torch.ones(3), "s": "x", "flag": True})
    assert out == {"a": 1.0, "b": 2.5}
    assert list(out) == ["a", "b"]


def test_nest_and_flatten_round_trip_with_collisions():
    flat = {"loss": 1.0, "loss/train": 2.0, "val/acc": 0.5, "t1c/float_acc": 0.9, "x": 3.0}
    nested = nest_metrics(flat)
    assert all("/" not in k for k in nested)
    assert nested["loss"] == {"_value": 1.0, "train": 2.0}
    assert flatten_metrics(nested) == flat
    assert flatten_metrics(nest_metrics({"a/b": 1.0, "a": 2.0})) == {"a/b": 1.0, "a": 2.0}


def test_metadata_key_makes_every_part_an_hdf5_name():
    assert [metadata_key(p) for p in (".", "..", "", "acc", "a\x00b")] == ["_.", "_..", "_", "acc", "ab"]
    assert nest_metrics({"a/./b": 1.0, "val/..": 2.0}) == {"a": {"_.": {"b": 1.0}}, "val": {"_..": 2.0}}
