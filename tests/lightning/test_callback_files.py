"""T1CExport and untrusted or shared folders: crafted manifests, crashes, resumes, two runs, odd metric names.

Issue 10 items 1, 5, 6 and 7, each with a real tiny Trainer reproducing the original failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from test_callback import Plain, _fit_plain, _loaders, _t1c_names, _trainer
from test_manifest import _entry

from t1c import ir
from t1c.lightning import T1CExport
from t1c.lightning.manifest import read_manifest
from t1c.lightning.naming import nest_metrics


def _fc1_weight(path: Path) -> torch.Tensor:
    graph = ir.read(path)
    return torch.from_numpy(
        next(n for n in graph.nodes.values() if n.TYPE in ("Affine", "SpikingAffine")).weight
    )


def _assert_pairs(folder: Path) -> dict:
    """Every .t1c named after a checkpoint holds that checkpoint's weights and step."""
    manifest = read_manifest(folder / "t1c_exports.json")["exports"]
    assert set(manifest) <= _t1c_names(folder)
    for name, entry in manifest.items():
        if entry["checkpoint"] is None:
            continue
        ckpt = torch.load(folder / entry["checkpoint"], weights_only=True)
        assert entry["global_step"] == ckpt["global_step"], name
        assert torch.equal(_fc1_weight(folder / name), ckpt["state_dict"]["model.fc1.weight"]), name
        assert ir.read(folder / name).metadata["t1c_export"]["global_step"] == ckpt["global_step"], name
    return manifest


# -- item 1: a crafted manifest --------------------------------------------------------------
def test_crafted_manifest_touches_nothing_outside_the_folder(tmp_path):
    folder, outside = tmp_path / "ck", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    victim, secret = outside / "victim.t1c", outside / "secret.t1c"
    victim.write_bytes(b"keep me")
    secret.write_bytes(b"private")
    (folder / "escape.t1c").symlink_to(victim)
    exports = {
        "../outside/victim.t1c": _entry(),  # deleted by the next fit before the fix
        str(victim): _entry(),  # an absolute name
        "escape.t1c": _entry(),  # a link leading out
        "evil.t1c": _entry(checkpoint=None, same_as="../outside/secret.t1c", global_step=10**9),
        "sub.t1c": _entry(checkpoint="../outside/x.ckpt"),
        "typed.t1c": _entry(epoch="0"),
        "missing.t1c": {"checkpoint": "gone.ckpt"},  # KeyError: 'epoch' before the fix
        "listed.t1c": [1, 2],  # AttributeError before the fix
        "metrics.t1c": _entry(metrics=["a"]),
    }
    for name in ("evil.t1c", "sub.t1c", "typed.t1c", "missing.t1c", "listed.t1c", "metrics.t1c"):
        (folder / name).write_bytes(b"not mine")
    (folder / "t1c_exports.json").write_text(json.dumps({"version": 1, "exports": exports}))
    with pytest.warns(UserWarning) as record:
        _fit_plain(tmp_path, [ModelCheckpoint(dirpath=folder, save_top_k=-1), T1CExport()], max_epochs=1)
    lines = [str(w.message) for w in record if "t1c_exports.json" in str(w.message)]
    for name in exports:
        assert any(f"entry {name!r} ignored" in line for line in lines), name
    assert victim.read_bytes() == b"keep me" and secret.read_bytes() == b"private"
    assert os.path.islink(folder / "escape.t1c")
    # last.t1c is this run's export, not a copy of the file the manifest pointed at
    assert ir.read(folder / "last.t1c").metadata["t1c_export"]["global_step"] == 2
    manifest = _assert_pairs(folder)
    assert set(manifest) == {"epoch=0-step=2.t1c", "last.t1c"}  # the bad entries are not carried on


# -- item 5: a crash between a checkpoint's save and its export, then resume -----------------
class CrashAfterSave(T1CExport):
    """Dies at the first reconcile after the checkpoints of ``step`` were saved, before their export."""

    def __init__(self, step: int):
        super().__init__()
        self.crash_step = step

        reconcile = self.ledger.reconcile

        def crashing(trainer, pl_module, exporter):  # runs only after a save or a fit start
            if trainer.global_step == self.crash_step and exporter.pending:
                raise RuntimeError("simulated crash")
            reconcile(trainer, pl_module, exporter)

        self.ledger.reconcile = crashing


def _mc(folder):
    return ModelCheckpoint(dirpath=folder, save_top_k=-1, save_last=True)


@pytest.mark.parametrize("resume_epochs", [3, 2])
def test_crash_after_save_then_resume_exports_each_checkpoints_own_weights(tmp_path, resume_epochs):
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit_plain(tmp_path, [_mc(tmp_path), CrashAfterSave(step=4)], max_epochs=2)
    assert (tmp_path / "epoch=1-step=4.ckpt").is_file() and not (tmp_path / "epoch=1-step=4.t1c").exists()
    assert read_manifest(tmp_path / "t1c_exports.json")["exports"]["last.t1c"]["global_step"] == 2  # stale
    # resume from last.ckpt (step 4); with max_epochs=2 no training is left
    _fit_plain(
        tmp_path, [_mc(tmp_path), T1CExport()], max_epochs=resume_epochs, ckpt_path=tmp_path / "last.ckpt"
    )
    manifest = _assert_pairs(tmp_path)
    expected = {"epoch=0-step=2.t1c", "epoch=1-step=4.t1c", "last.t1c"}
    if resume_epochs == 3:
        expected.add("epoch=2-step=6.t1c")
    assert set(manifest) == expected == _t1c_names(tmp_path)
    assert manifest["last.t1c"]["global_step"] == 2 * resume_epochs
    meta = ir.read(tmp_path / "epoch=1-step=4.t1c").metadata["t1c_export"]
    assert meta["weights"] == "loaded from the checkpoint file"


def test_resume_from_another_folder_pairs_each_file_with_its_checkpoint(tmp_path):
    """``--ckpt_path v0/last.ckpt`` starting version_1: one .t1c per checkpoint, whichever folder."""
    v0, v1 = tmp_path / "v0", tmp_path / "v1"
    _fit_plain(tmp_path, [_mc(v0), T1CExport()], max_epochs=2)
    _fit_plain(tmp_path, [_mc(v1), T1CExport()], max_epochs=3, ckpt_path=v0 / "last.ckpt")
    for folder in (v0, v1):
        manifest = _assert_pairs(folder)
        stems = {p.stem for p in folder.glob("*.ckpt")}
        assert {Path(n).stem for n in manifest} == stems == {Path(n).stem for n in _t1c_names(folder)}
        assert all(e["same_as"] != n for n, e in manifest.items())
    assert set(read_manifest(v1 / "t1c_exports.json")["exports"]) == {"epoch=2-step=6.t1c", "last.t1c"}


# -- item 6: two trainers in one folder ------------------------------------------------------
class RunInside(pl.Callback):
    """Runs ``fn`` (a whole second fit) at the start of this run's second epoch."""

    def __init__(self, fn):
        self.fn = fn

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self.fn()


def test_two_trainers_in_one_folder_lose_nothing_and_never_pair_across_runs(tmp_path):
    folder = tmp_path / "shared"

    def other_run():
        with torch.random.fork_rng():
            _fit_plain(tmp_path / "b", [_mc(folder), T1CExport()], max_epochs=2, scores=(0.5, 0.6))

    _fit_plain(tmp_path / "a", [_mc(folder), T1CExport(), RunInside(other_run)], max_epochs=2)
    manifest = _assert_pairs(folder)
    checkpoints = {p.name for p in folder.glob("*.ckpt")}
    assert len(checkpoints) == 6  # 2 epochs + last, for each run ("-v1" names for the second)
    assert {e["checkpoint"] for e in manifest.values()} == checkpoints  # each run's exports are all listed
    assert len({e["run"] for e in manifest.values()}) == 2


# -- item 7: metric names that are no HDF5 names ---------------------------------------------
class OddNames(Plain):
    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        self.log("val/..", 1.0)
        self.log("val/.", 2.0)
        self.log("..", 3.0)


def test_odd_metric_names_never_stop_training(tmp_path):
    torch.manual_seed(0)

    trainer = _trainer(tmp_path, [ModelCheckpoint(dirpath=tmp_path), T1CExport()], max_epochs=1)
    trainer.fit(OddNames(), *_loaders())  # T1CFormatError "metadata key '..'" before the fix
    metrics = ir.read(tmp_path / "epoch=0-step=2.t1c").metadata["t1c_export"]["metrics"]
    assert metrics["val"]["_.."] == 1.0 and metrics["val"]["_."] == 2.0 and metrics["_.."] == 3.0
    assert nest_metrics({"a/./b": 1.0}) == {"a": {"_.": {"b": 1.0}}}
