"""The manifest t1c_exports.json: strict JSON written atomically, untrusted entries refused, one writer at a time."""

from __future__ import annotations

import json
import os

import pytest

from t1c.lightning.manifest import (
    manifest_entries,
    manifest_entry,
    manifest_lock,
    merge_manifest,
    read_manifest,
    stored_entry,
    write_manifest,
)


def _entry(**kw):
    entry = {"checkpoint": "gone.ckpt", "epoch": 0, "global_step": 1, "metrics": {}, "content_hash": "x"}
    entry.update(kw)
    return entry


def test_manifest_round_trip_is_atomic_strict_json(tmp_path):
    path = tmp_path / "t1c_exports.json"
    assert read_manifest(path) == {"version": 1, "exports": {}}
    manifest = {"version": 1, "exports": {"a.t1c": {"metrics": {"x": float("nan"), "y": 1.0}}}}
    write_manifest(path, manifest)
    data = json.loads(path.read_text())  # strict JSON (no NaN token)
    assert data["exports"]["a.t1c"]["metrics"] == {"x": "nan", "y": 1.0}
    assert read_manifest(path)["exports"]["a.t1c"]["metrics"]["y"] == 1.0
    assert os.listdir(tmp_path) == ["t1c_exports.json"]


def test_read_manifest_refuses_other_files(tmp_path):
    bad = tmp_path / "t1c_exports.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a t1c export manifest"):
        read_manifest(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="move it away"):
        read_manifest(bad)


@pytest.mark.parametrize(
    "name, item, why",
    [
        ("../a.t1c", _entry(), "not a file name"),
        ("/abs/a.t1c", _entry(), "not a relative path"),
        ("a/b.t1c", _entry(), "not a file name"),
        ("..", _entry(), "not a file name"),
        ("a.h5", _entry(), "does not end with .t1c"),
        ("a.t1c", _entry(checkpoint="../x.ckpt"), "not a path inside the folder"),
        ("a.t1c", _entry(checkpoint="/x.ckpt"), "not a relative path"),
        ("a.t1c", _entry(same_as="sub/b.t1c"), "not a file name"),
        ("a.t1c", _entry(same_as="a.t1c"), "itself"),
        ("a.t1c", _entry(global_step=True), "'global_step' must be int"),
        ("a.t1c", _entry(epoch=None), "'epoch' must be int"),
        ("a.t1c", _entry(link="yes"), "'link' must be bool"),
        ("a.t1c", _entry(metrics={"x": "1"}), "metric 'x' must be a number"),
        ("a.t1c", "text", "not a mapping"),
    ],
)
def test_manifest_entry_refuses(tmp_path, name, item, why):
    with pytest.raises(ValueError, match=why):
        manifest_entry(name, item, tmp_path)


def test_manifest_entries_names_the_manifest_and_entry(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.ckpt").write_bytes(b"")
    (tmp_path / "link.ckpt").symlink_to(tmp_path / "out" / "x.ckpt")
    path = tmp_path / "t1c_exports.json"
    path.write_text(json.dumps({"exports": {"a.t1c": _entry(checkpoint="sub/a.ckpt", metrics={"m": "nan"})}}))
    entries, problems = manifest_entries(path)
    assert problems == [] and entries[str(tmp_path / "a.t1c")]["checkpoint"] == str(
        tmp_path / "sub" / "a.ckpt"
    )
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "out.ckpt").symlink_to(tmp_path / "out" / "x.ckpt")  # a link leading out of inner/
    (inner / "t1c_exports.json").write_text(json.dumps({"exports": {"b.t1c": _entry(checkpoint="out.ckpt")}}))
    entries, problems = manifest_entries(inner / "t1c_exports.json")
    assert entries == {}
    assert problems == [
        f"{inner / 't1c_exports.json'}: entry 'b.t1c' ignored: checkpoint 'out.ckpt' leads outside the folder "
        "(a symbolic link)"
    ]


def test_manifest_lock_is_exclusive(tmp_path):
    import fcntl

    with manifest_lock(tmp_path):
        fd = os.open(tmp_path / "t1c_exports.lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(tmp_path / "t1c_exports.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
    os.close(fd)


def _full(folder, name, run, **kw):
    """An entry as the callback keeps it (absolute paths)."""
    entry = {
        "file": os.path.join(folder, name),
        "dir": str(folder),
        "checkpoint": os.path.join(folder, name[: -len(".t1c")] + ".ckpt"),
        "epoch": 0,
        "global_step": 2,
        "metrics": {"m": 1.0},
        "content_hash": "c",
        "source_hash": "s",
        "same_as": None,
        "link": False,
        "run": run,
    }
    entry.update(kw)
    return entry


def test_stored_entry_is_relative_and_drops_outside_checkpoints(tmp_path):
    entry = _full(tmp_path, "a.t1c", "r1", same_as=str(tmp_path / "b.t1c"), link=1)
    stored = stored_entry(entry, str(tmp_path))
    assert stored == {
        "checkpoint": "a.ckpt",
        "epoch": 0,
        "global_step": 2,
        "metrics": {"m": 1.0},
        "content_hash": "c",
        "source_hash": "s",
        "same_as": "b.t1c",
        "link": True,
        "run": "r1",
    }
    assert "file" not in stored and "dir" not in stored
    outside = stored_entry(_full(tmp_path, "a.t1c", "r1", checkpoint="/elsewhere/a.ckpt"), str(tmp_path))
    assert outside["checkpoint"] is None


def test_merge_manifest_keeps_other_runs_and_drops_what_this_run_deleted(tmp_path):
    folder = str(tmp_path)
    write_manifest(
        tmp_path / "t1c_exports.json",
        {
            "version": 1,
            "exports": {
                "theirs.t1c": stored_entry(_full(folder, "theirs.t1c", "r2"), folder),
                "mine_old.t1c": stored_entry(_full(folder, "mine_old.t1c", "r1"), folder),
                "gone.t1c": stored_entry(_full(folder, "gone.t1c", "r2"), folder),
                "copy.t1c": stored_entry(
                    _full(folder, "copy.t1c", "r2", same_as=f"{folder}/gone.t1c"), folder
                ),
            },
        },
    )
    mine = {str(tmp_path / "mine.t1c"): _full(folder, "mine.t1c", "r1", global_step=4)}
    elsewhere = _full(str(tmp_path / "other"), "x.t1c", "r1")
    mine[elsewhere["file"]] = elsewhere  # another folder's entry is not written here
    merge_manifest(folder, mine, deleted={str(tmp_path / "gone.t1c")}, run="r1")
    exports = read_manifest(tmp_path / "t1c_exports.json")["exports"]
    # another run's entry stays; this run's own old entry (not in its entries) and a deleted file go
    assert set(exports) == {"theirs.t1c", "mine.t1c", "copy.t1c"}
    assert exports["copy.t1c"]["same_as"] is None  # it named a file that is gone
    assert exports["mine.t1c"]["global_step"] == 4 and exports["theirs.t1c"]["run"] == "r2"
    assert sorted(os.listdir(tmp_path)) == ["t1c_exports.json", "t1c_exports.lock"]
