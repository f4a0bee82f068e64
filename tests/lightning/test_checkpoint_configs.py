"""T1CExport follows every ModelCheckpoint configuration, with Lightning's own files as the reference.

After each fit (and after a resume) every folder holds exactly one `.t1c` per checkpoint Lightning
kept (``x.ckpt`` -> ``x.t1c``), each with that checkpoint's weights, plus ``last.t1c``; the
folder's manifest lists exactly its `.t1c` files, and ``same_as`` names a present entry of the
same manifest. Issue 22 items 4 and 3 (a manifest entry carrying the run's id), each reproducing
the original failure with a real tiny Trainer.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from test_callback import Plain, _loaders, _trainer

from t1c import ir
from t1c.lightning import T1CExport
from t1c.lightning.manifest import read_manifest

SCORES = (0.1, 0.3, 0.2, 0.4)  # val/score per epoch: top-1 keeps epoch 1, then epoch 3


def _fit(root: Path, callbacks, max_epochs=3, ckpt_path=None, seed=0):
    torch.manual_seed(seed)
    trainer = _trainer(root, callbacks, max_epochs)
    trainer.fit(Plain(SCORES), *_loaders(), ckpt_path=ckpt_path)
    return trainer


def _best(folder: Path, **kw) -> ModelCheckpoint:
    return ModelCheckpoint(dirpath=folder, monitor="val/score", mode="max", save_top_k=1, **kw)


def _every(folder: Path, **kw) -> ModelCheckpoint:
    return ModelCheckpoint(dirpath=folder, save_top_k=-1, **kw)


def _t1c_weights(path: Path) -> list[torch.Tensor]:
    graph = ir.read(path)
    affine = [n for n in graph.nodes.values() if n.TYPE in ("Affine", "SpikingAffine")]
    return [torch.from_numpy(getattr(n, f)) for n in affine for f in ("weight", "bias")]


def _ckpt_weights(path: Path) -> list[torch.Tensor]:
    state = torch.load(path, weights_only=True)["state_dict"]
    return [state[f"model.{layer}.{f}"] for layer in ("fc1", "fc2") for f in ("weight", "bias")]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _assert_follows_lightning(folder: Path, newest: str) -> None:
    """The folder's exports mirror its checkpoints; ``last.t1c`` without a ``last.ckpt`` is ``newest``'s."""
    checkpoints = {p.stem for p in folder.glob("*.ckpt")}
    exports = {p.stem for p in folder.glob("*.t1c")}
    assert exports == checkpoints | {"last"}, folder
    for stem in checkpoints:
        assert _same(_t1c_weights(folder / f"{stem}.t1c"), _ckpt_weights(folder / f"{stem}.ckpt")), stem
    if "last" not in checkpoints:
        assert _same(_t1c_weights(folder / "last.t1c"), _ckpt_weights(folder / newest)), folder
    manifest = read_manifest(folder / "t1c_exports.json")["exports"]
    assert set(manifest) == {f"{s}.t1c" for s in exports}, folder
    for name, entry in manifest.items():
        assert entry["same_as"] is None or (entry["same_as"] in manifest and entry["same_as"] != name), name
        stem = name[: -len(".t1c")]
        assert entry["checkpoint"] == (f"{stem}.ckpt" if stem in checkpoints else None), name


# -- two ModelCheckpoints: every checkpoint callback is followed ---------------------------------
def test_two_model_checkpoints_in_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _fit(tmp_path, [_best(a), _every(b), T1CExport()])
    assert {p.name for p in a.glob("*.ckpt")} == {"epoch=1-step=4.ckpt"}
    assert {p.name for p in b.glob("*.ckpt")} == {
        "epoch=0-step=2.ckpt",
        "epoch=1-step=4.ckpt",
        "epoch=2-step=6.ckpt",
    }
    _assert_follows_lightning(a, newest="epoch=1-step=4.ckpt")
    _assert_follows_lightning(b, newest="epoch=2-step=6.ckpt")


@pytest.mark.parametrize("best_name", [None, "best-{epoch}"])
def test_two_model_checkpoints_in_one_folder(tmp_path, best_name):
    folder = tmp_path / "ck"
    _fit(tmp_path, [_best(folder, filename=best_name), _every(folder), T1CExport()])
    # one template for both: the second checkpoint of a step is "-v1" (Lightning's version counter)
    assert len(list(folder.glob("*.ckpt"))) == 4
    _assert_follows_lightning(folder, newest="epoch=2-step=6.ckpt")


def test_two_model_checkpoints_in_two_folders_with_resume(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _fit(tmp_path, [_best(a), _every(b), T1CExport()], max_epochs=2)
    # resumed from b's checkpoint: a drops its epoch 1 for epoch 3, b keeps every epoch
    _fit(tmp_path, [_best(a), _every(b), T1CExport()], max_epochs=4, ckpt_path=b / "epoch=1-step=4.ckpt")
    assert {p.name for p in a.glob("*.ckpt")} == {"epoch=3-step=8.ckpt"}
    assert len(list(b.glob("*.ckpt"))) == 4
    _assert_follows_lightning(a, newest="epoch=3-step=8.ckpt")
    _assert_follows_lightning(b, newest="epoch=3-step=8.ckpt")


def test_two_model_checkpoints_in_one_folder_with_resume(tmp_path):
    folder = tmp_path / "ck"

    def callbacks():
        return [_best(folder, save_last=True), _every(folder), T1CExport()]

    _fit(tmp_path, callbacks(), max_epochs=2)
    _fit(tmp_path, callbacks(), max_epochs=4, ckpt_path=folder / "last.ckpt")
    assert {p.name for p in folder.glob("*.ckpt")} >= {"epoch=3-step=8.ckpt", "epoch=3-step=8-v1.ckpt"}
    _assert_follows_lightning(folder, newest="last.ckpt")


# -- a second run into the same folder, without resume ---------------------------------------------
def test_second_run_in_the_same_folder_keeps_last_t1c_current(tmp_path):
    folder = tmp_path / "ck"
    _fit(tmp_path, [_every(folder), T1CExport()], max_epochs=2)
    _fit(tmp_path, [_every(folder), T1CExport()], max_epochs=2, seed=1)  # other weights, "-v1" names
    assert {p.name for p in folder.glob("*-v1.ckpt")} == {"epoch=0-step=2-v1.ckpt", "epoch=1-step=4-v1.ckpt"}
    _assert_follows_lightning(folder, newest="epoch=1-step=4-v1.ckpt")
    manifest = read_manifest(folder / "t1c_exports.json")["exports"]
    assert manifest["last.t1c"]["run"] == manifest["epoch=1-step=4-v1.t1c"]["run"]


def test_second_run_beside_an_earlier_last_ckpt_warns_once_at_fit_start(tmp_path):
    folder = tmp_path / "ck"
    _fit(tmp_path, [_every(folder, save_last=True), T1CExport()], max_epochs=2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _fit(tmp_path, [_every(folder, save_last=True), T1CExport()], max_epochs=2, seed=1)
    lines = [str(w.message) for w in record if "last.t1c" in str(w.message)]
    assert len(lines) == 1 and "last-v1.t1c" in lines[0] and "last.ckpt" in lines[0], lines
    # last.t1c stays the export of the first run's last.ckpt; last-v1.t1c follows this run's
    _assert_follows_lightning(folder, newest="last-v1.ckpt")
    assert _same(_t1c_weights(folder / "last-v1.t1c"), _ckpt_weights(folder / "epoch=1-step=4-v1.ckpt"))


# -- issue 22 item 3: a manifest entry carrying this run's id ------------------------------------
def test_manifest_entry_with_this_runs_id_never_deletes_a_file_it_did_not_write(tmp_path):
    folder = tmp_path / "ck"
    _fit(tmp_path, [_best(folder, save_last=True), T1CExport()], max_epochs=2)
    manifest = json.loads((folder / "t1c_exports.json").read_text())
    run = manifest["exports"]["last.t1c"]["run"]
    victim = folder / "mine.t1c"  # the user's own file, listed by a stale or hostile manifest
    original = (folder / "last.t1c").read_bytes()
    victim.write_bytes(original)
    manifest["exports"]["mine.t1c"] = {
        **manifest["exports"]["epoch=1-step=4.t1c"],
        "checkpoint": "gone.ckpt",  # a checkpoint no ModelCheckpoint holds, not on disk
        "run": run,
    }
    (folder / "t1c_exports.json").write_text(json.dumps(manifest))
    _fit(tmp_path, [_best(folder, save_last=True), T1CExport()], max_epochs=4, ckpt_path=folder / "last.ckpt")
    # deleted as the export of a dropped checkpoint before the fix
    assert victim.read_bytes() == original
    assert "mine.t1c" in read_manifest(folder / "t1c_exports.json")["exports"]  # listed as it was
