"""Folder containment: a path a record names stays inside its folder, by name and on disk."""

from __future__ import annotations

import os

import pytest

from t1c.lightning.layout import inside_folder, path_inside, under_folder


def test_under_and_inside_folder(tmp_path):
    assert under_folder(tmp_path / "a.t1c", tmp_path) and not under_folder(tmp_path, tmp_path)
    assert not under_folder(tmp_path / ".." / "a.t1c", tmp_path)
    assert not under_folder(f"{tmp_path}x/a.t1c", tmp_path)  # a sibling folder sharing the prefix
    (tmp_path / "out").mkdir()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "link").symlink_to(tmp_path / "out")
    assert under_folder(tmp_path / "in" / "link" / "a", tmp_path / "in")
    assert not inside_folder(tmp_path / "in" / "link" / "a", tmp_path / "in")


@pytest.mark.parametrize(
    "value, plain, why",
    [
        ("", True, "non-empty string"),
        (3, True, "non-empty string"),
        ("/abs", False, "not a relative path"),
        ("a/../b", False, "not a path inside the folder"),
        ("a/b.t1c", True, "not a file name in the folder"),
        ("link/x", False, "leads outside the folder"),
    ],
)
def test_path_inside_refuses(tmp_path, value, plain, why):
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(ValueError, match=why):
        path_inside(value, str(tmp_path), "field", plain)


def test_path_inside_gives_the_absolute_path(tmp_path):
    assert path_inside("sub/a.ckpt", str(tmp_path), "checkpoint", False) == os.path.join(
        tmp_path, "sub", "a.ckpt"
    )
