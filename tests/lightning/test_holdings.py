"""Which checkpoints a ModelCheckpoint holds, with the step of each one's weights (a mocked Trainer)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from t1c.lightning.holdings import Held, fit_folders, held_by, resumed_from
from t1c.lightning.ledger import Ledger


def _mc(tmp_path, **state):
    mc = ModelCheckpoint(
        dirpath=tmp_path, **{k: state.pop(k) for k in ("save_last", "save_top_k") if k in state}
    )
    for key, value in state.items():
        setattr(mc, key, value)
    return mc


def _rank_zero(mc=None):
    """A one-process trainer: rank zero, broadcast returns its argument."""
    return SimpleNamespace(
        is_global_zero=True,
        strategy=SimpleNamespace(broadcast=lambda obj: obj),
        checkpoint_callbacks=[mc] if mc is not None else [],
        ckpt_path=None,
    )


def _held_by(ledger, mc, trainer, check_disk=False):
    """``held_by`` with what the ledger knows: this run's saves and entries."""
    own = {e["checkpoint"]: e["global_step"] for e in ledger.entries.values() if e.get("run") == ledger.run}
    return held_by(mc, trainer, saved=ledger.saved, known=own, check_disk=check_disk, dirpath=ledger.dirpath)


def test_held_by_takes_steps_only_from_saves_entries_or_the_files(tmp_path):
    a, b, last = str(tmp_path / "a.ckpt"), str(tmp_path / "b.ckpt"), str(tmp_path / "last.ckpt")
    torch.save({"global_step": 15}, b)  # b: saved before this callback saw it (a crash, a resume)
    mc = _mc(
        tmp_path,
        save_last=True,
        best_k_models={a: torch.tensor(1.0), b: torch.tensor(2.0)},
        best_model_path=b,
        last_model_path=last,
        _last_checkpoint_saved=last,
        _last_global_step_saved=20,
    )
    ledger = Ledger("r1", None, save_last=True)
    ledger.entries = {str(tmp_path / "a.t1c"): {"checkpoint": a, "global_step": 10, "run": "r1"}}
    trainer = _rank_zero(mc)
    ledger.note_saves(trainer)
    held = {h.checkpoint: h for h in _held_by(ledger, mc, trainer)}
    # before the fix, b was given step 20 (the latest save) and exported with its weights
    assert {k: (h.step, h.from_file) for k, h in held.items()} == {
        a: (10, False),
        b: (15, True),
        last: (20, False),
    }
    assert all(h.link_to is None for h in held.values())
    # at a fit's first reconcile, known entries are checked against their files too
    held = {h.checkpoint: h for h in _held_by(ledger, mc, trainer, check_disk=True)}
    assert held[a].from_file and held[a].step is None  # a.ckpt is gone: nothing to pair it with


def test_held_by_link_mode_points_last_at_the_saved_checkpoint(tmp_path):
    b, last = str(tmp_path / "b.ckpt"), str(tmp_path / "last.ckpt")
    mc = _mc(
        tmp_path,
        save_last="link",
        best_k_models={b: torch.tensor(2.0)},
        best_model_path=b,
        last_model_path=last,
        _last_checkpoint_saved=b,
        _last_global_step_saved=30,
    )
    ledger = Ledger("r1", None, save_last=True)
    ledger.note_saves(_rank_zero(mc))
    held = {h.checkpoint: h for h in _held_by(ledger, mc, _rank_zero(mc))}
    assert held[last].link_to == b and held[last].step == 30


def test_held_by_with_dirpath_and_a_checkpoint_outside_its_folder(tmp_path):
    inside, outside = str(tmp_path / "ck" / "a.ckpt"), str(tmp_path / "elsewhere" / "b.ckpt")
    mc = _mc(tmp_path / "ck", best_k_models={inside: torch.tensor(1.0)}, best_model_path=outside)
    saved = {inside: 3, outside: 2}
    trainer = _rank_zero(mc)
    held = held_by(mc, trainer, saved=saved, known={}, check_disk=False, dirpath=None)
    assert [(h.checkpoint, h.export_dir) for h in held] == [
        (inside, str(tmp_path / "ck")),
        (outside, str(tmp_path / "elsewhere")),  # beside the checkpoint, never in the new folder
    ]
    held = held_by(mc, trainer, saved=saved, known={}, check_disk=False, dirpath=str(tmp_path / "out"))
    assert {h.export_dir for h in held} == {str(tmp_path / "out")}


def test_resumed_from_a_checkpoint_no_model_checkpoint_holds(tmp_path):
    path = tmp_path / "old" / "last.ckpt"
    path.parent.mkdir()
    torch.save({"global_step": 7}, path)
    trainer = SimpleNamespace(**{**vars(_rank_zero()), "ckpt_path": str(path)})
    assert resumed_from(trainer, [], {}, None) == [
        Held(str(path), 7, str(path.parent), str(path.parent), from_file=True)
    ]
    assert resumed_from(trainer, [], {str(path): 7}, None)[0].from_file is False  # its export is known
    held = [Held(str(path), 7, str(path.parent), str(path.parent))]
    assert resumed_from(trainer, held, {}, None) == []  # a ModelCheckpoint holds it


def test_fit_folders(tmp_path):
    mc = ModelCheckpoint(dirpath=tmp_path / "ck")
    trainer = SimpleNamespace(checkpoint_callbacks=[mc], ckpt_path=str(tmp_path / "v0" / "last.ckpt"))
    folders = fit_folders(trainer, str(tmp_path / "out"), str(tmp_path / "own"))
    assert folders == {str(tmp_path / n) for n in ("ck", "out", "own", "v0")}
