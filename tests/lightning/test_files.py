"""Atomic copies and links of export files, and removal of a file that may be gone."""

from __future__ import annotations

import os

from t1c.lightning.files import atomic_symlink, copy_replacing, remove_file


def test_atomic_copy_and_symlink(tmp_path):
    src = tmp_path / "a.t1c"
    src.write_bytes(b"one")
    copy_replacing(src, tmp_path / "last.t1c")
    assert (tmp_path / "last.t1c").read_bytes() == b"one"
    atomic_symlink(src, tmp_path / "last.t1c")
    assert os.path.islink(tmp_path / "last.t1c")
    assert os.readlink(tmp_path / "last.t1c") == "a.t1c"  # relative: the folder can move
    assert sorted(os.listdir(tmp_path)) == ["a.t1c", "last.t1c"]


def test_a_copy_replaces_a_link_at_its_name_and_never_writes_through_it(tmp_path):
    other = tmp_path / "other_run.t1c"
    other.write_bytes(b"another run's export")
    (tmp_path / "epoch=1.t1c").symlink_to("other_run.t1c")  # a link another run left at the name
    src = tmp_path / "a.t1c"
    src.write_bytes(b"this run")
    copy_replacing(src, tmp_path / "epoch=1.t1c")
    assert not os.path.islink(tmp_path / "epoch=1.t1c")
    assert (tmp_path / "epoch=1.t1c").read_bytes() == b"this run"
    assert other.read_bytes() == b"another run's export"


def test_remove_file_says_whether_something_was_removed(tmp_path):
    path = tmp_path / "a.t1c"
    path.write_bytes(b"x")
    (tmp_path / "link.t1c").symlink_to(tmp_path / "missing.t1c")  # a dangling link is removed too
    assert remove_file(path) and not path.exists()
    assert not remove_file(path)
    assert remove_file(tmp_path / "link.t1c") and os.listdir(tmp_path) == []
