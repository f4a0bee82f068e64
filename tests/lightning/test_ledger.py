"""The ledger of exports: planning, top-k deletion, ``last.t1c``, checked resumable entries (no Trainer)."""

from __future__ import annotations

import os

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from test_holdings import _rank_zero

from t1c.lightning.holdings import Held
from t1c.lightning.ledger import Action, Ledger, last_not_followed, plan, should_delete, state_entry


def _mc(tmp_path, **state):
    mc = ModelCheckpoint(dirpath=tmp_path)
    for key, value in state.items():
        setattr(mc, key, value)
    return mc


def test_plan_skips_what_is_already_exported(tmp_path):
    ledger = Ledger("r1", None, save_last=True)
    a = str(tmp_path / "a.ckpt")
    mc = _mc(tmp_path, best_k_models={a: torch.tensor(1.0)}, best_model_path=a, _last_global_step_saved=5)
    ledger.entries = {
        str(tmp_path / "a.t1c"): {"checkpoint": a, "global_step": 5, "link": False, "run": "r1"}
    }
    assert plan(ledger.held(_rank_zero(mc)), ledger.entries, ledger.run) == []
    mc._last_checkpoint_saved, mc._last_global_step_saved = a, 6  # the same name saved again later
    ledger.note_saves(_rank_zero(mc))
    assert plan(ledger.held(_rank_zero(mc)), ledger.entries, ledger.run) == [
        ("write", str(tmp_path / "a.t1c"), a, 6, None)
    ]


def test_plan_links_copies_and_loads(tmp_path):
    folder = str(tmp_path)
    a, last = os.path.join(folder, "a.ckpt"), os.path.join(folder, "last.ckpt")
    held = [Held(a, 4, folder, folder), Held(last, 4, folder, folder, link_to=a)]
    a_t1c, last_t1c = os.path.join(folder, "a.t1c"), os.path.join(folder, "last.t1c")
    assert plan(held, {}, "r1") == [
        Action("write", a_t1c, a, 4, None),
        Action("link", last_t1c, last, 4, a_t1c),  # linked to the export of the checkpoint it links to
    ]
    entries = {
        a_t1c: {"checkpoint": a, "global_step": 4, "run": "r1"},
        last_t1c: {"checkpoint": last, "global_step": 4, "run": "r1", "link": True, "same_as": a_t1c},
    }
    assert plan(held, entries, "r1") == []
    assert plan(held, entries, "r2") == plan(held, {}, "r1")  # another run's entries are not this run's
    from_file = [Held(a, 2, folder, folder, from_file=True)]
    assert plan(from_file, {}, "r1") == [Action("file", a_t1c, a, 2, None)]
    (tmp_path / "a.t1c").write_bytes(b"")
    assert plan(from_file, {a_t1c: {"checkpoint": a, "global_step": 2, "run": "r1"}}, "r1") == []
    other = str(tmp_path / "out")  # a checkpoint outside its ModelCheckpoint's folder, exports elsewhere
    assert plan([Held("/x/b.ckpt", 1, folder, other)], {}, "r1")[0].path == os.path.join(other, "b.t1c")


def test_should_delete_only_this_runs_dropped_checkpoints():
    run = "r1"
    assert should_delete({"checkpoint": "/x/a.ckpt", "run": run}, {"/x/b.ckpt"}, run)
    assert not should_delete({"checkpoint": "/x/a.ckpt", "run": run}, {"/x/a.ckpt"}, run)
    assert not should_delete({"checkpoint": None, "run": run}, set(), run)  # own exports, own last.t1c
    assert not should_delete({"checkpoint": "/x/a.ckpt", "kept": True, "run": run}, set(), run)
    assert not should_delete({"checkpoint": "/x/a.ckpt", "run": "another run"}, set(), run)


def _entry(folder, name, **kw):
    entry = {
        "file": f"{folder}/{name}",
        "dir": str(folder),
        "checkpoint": f"{folder}/{name[:-4]}.ckpt",
        "epoch": 0,
        "global_step": 3,
        "metrics": {"m": 1.0},
        "content_hash": "abc",
        "source_hash": None,
        "same_as": None,
        "link": False,
        "run": "r1",
        "kept": False,
    }
    entry.update(kw)
    return entry


def test_state_entry_checks_like_a_manifest_and_keeps_outside_checkpoints():
    checked = state_entry("/x/a.t1c", _entry("/x", "a.t1c", checkpoint="/elsewhere/a.ckpt", kept=True))
    assert checked["checkpoint"] == "/elsewhere/a.ckpt" and checked["kept"] is True
    assert checked["file"] == "/x/a.t1c" and checked["dir"] == "/x"
    with pytest.warns(UserWarning, match="state entry '/x/b.t1c' is ignored: .*'epoch' must be int"):
        assert state_entry("/x/b.t1c", _entry("/x", "b.t1c", epoch="0")) is None
    with pytest.warns(UserWarning, match="not in the entry's folder"):
        assert state_entry("/y/a.t1c", _entry("/x", "a.t1c")) is None


def test_reference_files_first_export_then_by_step():
    ledger = Ledger("r1", None, save_last=True)
    ledger.entries = {
        "/x/b.t1c": _entry("/x", "b.t1c", global_step=9),
        "/x/a.t1c": _entry("/x", "a.t1c", global_step=4),
    }
    assert ledger.reference_files() == ["/x/a.t1c", "/x/b.t1c"]
    ledger.reference_file = "/x/b.t1c"
    assert ledger.reference_files() == ["/x/b.t1c", "/x/a.t1c", "/x/b.t1c"]
    ledger.reference_file = "/x/gone.t1c"  # not an entry: never read
    assert ledger.reference_files() == ["/x/a.t1c", "/x/b.t1c"]


def test_update_last_copies_this_runs_newest_export(tmp_path):
    folder = str(tmp_path)
    for name in ("a.t1c", "b.t1c"):
        (tmp_path / name).write_bytes(name.encode())
    ledger = Ledger("r1", None, save_last=True)
    ledger.entries = {
        f"{folder}/a.t1c": _entry(folder, "a.t1c", global_step=2),
        f"{folder}/b.t1c": _entry(folder, "b.t1c", global_step=4),
        f"{folder}/c.t1c": _entry(folder, "c.t1c", global_step=6, run="r2"),  # another run's
    }
    ledger.owned = {f"{folder}/a.t1c", f"{folder}/b.t1c"}  # the files this run wrote
    ledger.update_last(folder, True, last_ckpt_exists=False, last_t1c_exists=False)
    last = ledger.entries[f"{folder}/last.t1c"]
    assert (last["same_as"], last["global_step"], last["checkpoint"]) == (f"{folder}/b.t1c", 4, None)
    assert (tmp_path / "last.t1c").read_bytes() == b"b.t1c"
    # a last.ckpt of another run beside it: this run's last.t1c goes (its entry; the file is left)
    ledger.update_last(folder, True, last_ckpt_exists=True, last_t1c_exists=True)
    assert f"{folder}/last.t1c" not in ledger.entries and (tmp_path / "last.t1c").exists()
    # a last.t1c on disk that is not this run's is never overwritten
    ledger.update_last(folder, True, last_ckpt_exists=False, last_t1c_exists=True)
    assert f"{folder}/last.t1c" not in ledger.entries


def test_update_last_takes_over_an_earlier_runs_last_and_removes_only_its_own(tmp_path):
    folder = str(tmp_path)
    for name in ("b.t1c", "c.t1c"):
        (tmp_path / name).write_bytes(name.encode())
    os.symlink("c.t1c", tmp_path / "last.t1c")  # an earlier run's last.t1c, a link to its export
    earlier_last = _entry(folder, "last.t1c", checkpoint=None, global_step=9, run="r0")
    ledger = Ledger("r1", None, save_last=True)
    ledger.entries = {
        f"{folder}/b.t1c": _entry(folder, "b.t1c", global_step=4),
        f"{folder}/last.t1c": earlier_last,
    }
    ledger.owned = {f"{folder}/b.t1c"}
    # a second run into the folder: last.t1c follows this fit's newest export (it kept r0's before)
    ledger.update_last(folder, True, last_ckpt_exists=False, last_t1c_exists=True)
    assert (tmp_path / "last.t1c").read_bytes() == b"b.t1c" and not os.path.islink(tmp_path / "last.t1c")
    assert (tmp_path / "c.t1c").read_bytes() == b"c.t1c"  # replaced, never written through
    last = ledger.entries[f"{folder}/last.t1c"]
    assert (last["run"], last["global_step"], last["same_as"]) == ("r1", 4, f"{folder}/b.t1c")
    # an entry carrying this run's id that this run did not write: never removed
    claimed = Ledger("r1", None, save_last=True)
    claimed.entries = {f"{folder}/last.t1c": _entry(folder, "last.t1c", checkpoint=None)}
    claimed.update_last(folder, True, last_ckpt_exists=False, last_t1c_exists=True)
    assert (tmp_path / "last.t1c").exists() and f"{folder}/last.t1c" in claimed.entries


def test_detach_copies_before_their_source_is_deleted(tmp_path):
    folder = str(tmp_path)
    (tmp_path / "a.t1c").write_bytes(b"a")
    os.symlink("a.t1c", tmp_path / "last.t1c")
    (tmp_path / "b.t1c").write_bytes(b"a")
    ledger = Ledger("r1", None, save_last=True)
    ledger.entries = {
        f"{folder}/a.t1c": _entry(folder, "a.t1c"),
        f"{folder}/last.t1c": _entry(folder, "last.t1c", link=True, same_as=f"{folder}/a.t1c"),
        f"{folder}/b.t1c": _entry(folder, "b.t1c", same_as=f"{folder}/a.t1c"),
        f"{folder}/c.t1c": _entry(folder, "c.t1c", link=True, same_as=f"{folder}/a.t1c"),  # not written here
    }
    os.symlink("a.t1c", tmp_path / "c.t1c")
    ledger.owned = {f"{folder}/{name}" for name in ("a.t1c", "last.t1c", "b.t1c")}
    ledger.detach_copies(f"{folder}/a.t1c", rank_zero=True)
    # same_as named a file top-k was about to delete; the link would have dangled
    assert not os.path.islink(tmp_path / "last.t1c") and (tmp_path / "last.t1c").read_bytes() == b"a"
    assert os.path.islink(tmp_path / "c.t1c") and ledger.entries[f"{folder}/c.t1c"]["same_as"] is None
    for name in ("last.t1c", "b.t1c"):
        entry = ledger.entries[f"{folder}/{name}"]
        assert entry["same_as"] is None and entry["link"] is False, name


def test_last_not_followed_names_why(tmp_path):
    folder = str(tmp_path)
    mc = _mc(tmp_path, save_last=True)
    assert last_not_followed([mc], None, []) == {}  # an empty folder
    (tmp_path / "last.ckpt").write_bytes(b"")
    (tmp_path / "last-v1.ckpt").write_bytes(b"")
    reason = last_not_followed([mc], None, [])[folder]
    assert "last.ckpt is an earlier run's" in reason and "last-v2.t1c is this fit's newest" in reason
    # two ModelCheckpoints in the folder: the one saving last.ckpt says which name follows
    plain = _mc(tmp_path, save_last=None)
    assert last_not_followed([plain, mc], None, []) == {folder: reason}
    assert "keeps no last.t1c there" in last_not_followed([plain], None, [])[folder]
    mc.last_model_path = str(tmp_path / "last.ckpt")  # resumed from it: last.t1c follows it
    assert last_not_followed([mc], None, []) == {}
    (tmp_path / "last.ckpt").unlink()
    (tmp_path / "last.t1c").write_bytes(b"")
    assert "listed in no manifest" in last_not_followed([plain], None, [])[folder]
    assert last_not_followed([plain], None, [f"{folder}/last.t1c"]) == {}
