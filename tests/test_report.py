"""t1c.report: a manifest's exports as rows (every metric, training order) and the accuracy table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from t1c.lightning.manifest import write_manifest
from t1c.report import ExportRow, accuracy_table, manifest_rows

#: The accuracy table's header, split into words (``t1c fit`` prints the same table).
ACCURACY_HEADER = ["checkpoint", "epoch", "step", "float", "acc", "8-bit", "acc", "gap", "agreement"]
ACCURACY = {
    "t1c/float_acc": 0.95,
    "t1c/quant_acc": 0.9444,
    "t1c/quant_gap": 0.0056,
    "t1c/export_agreement": 1.0,
}


def _write(tmp_path, exports):
    path = tmp_path / "t1c_exports.json"
    write_manifest(path, {"version": 1, "exports": exports})
    return path


def _manifest(tmp_path):
    """Two epochs and last.ckpt, listed newest first as a manifest may be."""
    entry = {"epoch": 0, "global_step": 23, "checkpoint": "epoch=0-step=23.ckpt", "metrics": ACCURACY}
    later = dict(entry, epoch=1, global_step=46, checkpoint="epoch=1-step=46.ckpt")
    last = dict(later, checkpoint="last.ckpt")
    return _write(tmp_path, {"last.t1c": last, "epoch=1-step=46.t1c": later, "epoch=0-step=23.t1c": entry})


def _row(checkpoint="epoch=0-step=23.ckpt", metrics=None, epoch=0, step=23):
    return ExportRow(t1c=Path("x.t1c"), checkpoint=checkpoint, epoch=epoch, step=step, metrics=metrics or {})


# -- rows ----------------------------------------------------------------------------------
def test_manifest_rows_in_step_order(tmp_path):
    rows = manifest_rows(_manifest(tmp_path))
    assert [r.checkpoint for r in rows] == ["epoch=0-step=23.ckpt", "epoch=1-step=46.ckpt", "last.ckpt"]
    assert rows[0].t1c == tmp_path / "epoch=0-step=23.t1c"
    assert (rows[0].epoch, rows[0].step) == (0, 23)
    assert rows[0].metrics["t1c/quant_acc"] == pytest.approx(0.9444)


def test_rows_are_ordered_by_step_as_a_number_with_last_after_its_step(tmp_path):
    exports = {
        "last.t1c": {"epoch": 9, "global_step": 100, "checkpoint": "last.ckpt"},
        "epoch=9-step=100.t1c": {"epoch": 9, "global_step": 100, "checkpoint": "epoch=9-step=100.ckpt"},
        "epoch=0-step=23.t1c": {"epoch": 0, "global_step": 23, "checkpoint": "epoch=0-step=23.ckpt"},
        "loaded.t1c": {"epoch": 0, "checkpoint": "other.ckpt"},  # no step: first
    }
    rows = manifest_rows(_write(tmp_path, exports))
    assert [r.t1c.name for r in rows] == [
        "loaded.t1c",
        "epoch=0-step=23.t1c",
        "epoch=9-step=100.t1c",
        "last.t1c",
    ]
    assert rows[0].step is None


def test_rows_carry_every_metric_of_the_entry(tmp_path):
    metrics = {**ACCURACY, "t1c/num_samples": 359, "val_acc": 0.96, "my/custom": -2.5, "t1c/gap_nan": "nan"}
    path = _write(
        tmp_path, {"a.t1c": {"epoch": 0, "global_step": 5, "checkpoint": "a.ckpt", "metrics": metrics}}
    )
    (row,) = manifest_rows(path)
    assert set(row.metrics) == set(metrics)
    assert row.metrics["t1c/num_samples"] == 359.0 and isinstance(row.metrics["t1c/num_samples"], float)
    assert row.metrics["val_acc"] == 0.96 and row.metrics["my/custom"] == -2.5
    assert math.isnan(row.metrics["t1c/gap_nan"])  # the manifest writes NaN as "nan"


def test_rows_without_metrics_or_checkpoint(tmp_path):
    path = _write(tmp_path, {"a.t1c": {"epoch": 0, "global_step": 5, "checkpoint": None}})
    (row,) = manifest_rows(path)
    assert row == ExportRow(t1c=tmp_path / "a.t1c", checkpoint=None, epoch=0, step=5, metrics={})


def test_no_manifest_file_is_no_rows(tmp_path):
    assert manifest_rows(tmp_path / "t1c_exports.json") == []


def test_an_entry_that_is_not_a_mapping_is_named(tmp_path):
    path = _write(tmp_path, {"a.t1c": ["not", "an", "entry"]})
    with pytest.raises(ValueError, match=r"t1c_exports\.json: entry 'a\.t1c' is list"):
        manifest_rows(path)


# -- the table -----------------------------------------------------------------------------
def test_accuracy_table_formats_percentages(tmp_path):
    table = accuracy_table(manifest_rows(_manifest(tmp_path)), weight_bits=8)
    lines = table.splitlines()
    assert lines[0].split() == ACCURACY_HEADER
    assert lines[2].split() == ["epoch=0-step=23.ckpt", "0", "23", "95.0%", "94.4%", "+0.6", "pt", "100.0%"]


def test_accuracy_table_is_the_demo_table_byte_for_byte(tmp_path):
    """The demo's metrics (with the Trainer's beside them) give exactly the table `make demo` prints."""
    trainer = {"train_acc": 0.99, "val_acc": 0.97, "val_loss": 0.13, "t1c/num_samples": 359.0}
    first = {
        "t1c/float_acc": 0.978,
        "t1c/quant_acc": 0.9722,
        "t1c/quant_gap": 0.0058,
        "t1c/export_agreement": 1.0,
    }
    final = {
        "t1c/float_acc": 0.9639,
        "t1c/quant_acc": 0.9639,
        "t1c/quant_gap": 0.0,
        "t1c/export_agreement": 1.0,
    }
    entry = {
        "epoch": 0,
        "global_step": 23,
        "checkpoint": "epoch=0-step=23.ckpt",
        "metrics": {**trainer, **first},
    }
    later = {
        "epoch": 4,
        "global_step": 115,
        "checkpoint": "epoch=4-step=115.ckpt",
        "metrics": {**trainer, **final},
    }
    last = dict(later, checkpoint="last.ckpt")
    path = _write(tmp_path, {"last.t1c": last, "epoch=4-step=115.t1c": later, "epoch=0-step=23.t1c": entry})
    assert accuracy_table(manifest_rows(path)) == (
        "checkpoint             epoch  step  float acc  8-bit acc      gap  agreement\n"
        "---------------------  -----  ----  ---------  ---------  -------  ---------\n"
        "epoch=0-step=23.ckpt       0    23      97.8%      97.2%  +0.6 pt     100.0%\n"
        "epoch=4-step=115.ckpt      4   115      96.4%      96.4%  +0.0 pt     100.0%\n"
        "last.ckpt                  4   115      96.4%      96.4%  +0.0 pt     100.0%"
    )


def test_accuracy_table_names_the_width_of_the_quantized_simulation():
    header = accuracy_table([_row(metrics=ACCURACY)], weight_bits=4).splitlines()[0]
    assert "4-bit acc" in header and "8-bit" not in header


def test_accuracy_table_without_metrics_shows_no_accuracy_columns():
    table = accuracy_table([_row(), _row(checkpoint=None, epoch=None, step=None)])
    lines = table.splitlines()
    assert lines[0].split() == ["checkpoint", "epoch", "step"]
    assert lines[2].split() == ["epoch=0-step=23.ckpt", "0", "23"]
    assert lines[3].split() == ["-", "-", "-"]


def test_accuracy_table_ignores_other_metrics():
    """A metric the table does not know is not shown, least of all as an accuracy."""
    table = accuracy_table([_row(metrics={"val_acc": 0.5, "t1c/num_samples": 359.0})])
    assert table.splitlines()[0].split() == ["checkpoint", "epoch", "step"]
    assert "50.0%" not in table and "359" not in table


def test_accuracy_table_shows_a_column_when_any_row_has_it():
    rows = [
        _row(metrics={"t1c/float_acc": 0.9}),
        _row(checkpoint="last.ckpt", metrics={"t1c/float_acc": 0.8}),
    ]
    rows.append(_row(checkpoint="b.ckpt", metrics={"t1c/quant_acc": 0.7}))
    lines = accuracy_table(rows).splitlines()
    assert lines[0].split() == ["checkpoint", "epoch", "step", "float", "acc", "8-bit", "acc"]
    assert lines[2].split()[3:] == ["90.0%", "-"]
    assert lines[4].split()[3:] == ["-", "70.0%"]


def test_accuracy_table_shows_nan_and_values_that_are_not_numbers_as_they_are():
    rows = [_row(metrics={"t1c/float_acc": math.nan, "t1c/quant_acc": "broken"})]
    assert accuracy_table(rows).splitlines()[2].split()[3:] == ["nan%", "broken"]
