"""Folder containment: every path an export folder's records name stays inside that folder.

A manifest or a checkpoint's callback state is untrusted input. Before the callback reads,
copies or deletes a file a record names, the name must be a relative path that stays
inside the record's folder, by name (no ``..``, not absolute) and on disk (no symbolic link
leading out). :func:`path_inside` applies those rules; :func:`under_folder` and
:func:`inside_folder` are the two tests it is built from.

Example:
    >>> under_folder("/runs/ck/a.t1c", "/runs/ck"), under_folder("/runs/ck/../x", "/runs/ck")
    (True, False)
"""

from __future__ import annotations

import os
from typing import Any


def under_folder(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether the normalized ``path`` lies strictly inside ``folder``, by name (no link followed)."""
    root = os.path.normpath(os.fspath(folder))
    path = os.path.normpath(os.fspath(path))
    return path != root and path.startswith(root.rstrip(os.sep) + os.sep)


def inside_folder(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path``, all symbolic links followed, lies strictly inside ``folder``."""
    return under_folder(os.path.realpath(os.fspath(path)), os.path.realpath(os.fspath(folder)))


def path_inside(value: Any, folder: str, field: str, plain_name: bool) -> str:
    """``folder/value`` when ``value`` is a relative path staying inside ``folder``; else raise.

    Args:
        value: the path as a record gives it.
        folder: the record's folder (normalized).
        field: what the value is, for the message (``"checkpoint"``, ``"the entry name"``).
        plain_name: the value must be a file name in ``folder`` (no separator at all).

    Raises:
        ValueError: the value is not a string, is absolute, has ``..``/``.``/empty parts (or a
            separator where a plain name is wanted) or leads out through a symbolic link.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, not {value!r}")
    if "\x00" in value or os.path.isabs(value) or value.startswith(("/", "\\")):
        raise ValueError(f"{field} {value!r} is not a relative path")
    parts = value.replace("\\", "/").split("/")
    if any(p in ("", ".", "..") for p in parts) or (plain_name and len(parts) > 1):
        what = "a file name in the folder" if plain_name else "a path inside the folder"
        raise ValueError(f"{field} {value!r} is not {what}")
    path = os.path.normpath(os.path.join(folder, value))
    if not inside_folder(path, folder):
        raise ValueError(f"{field} {value!r} leads outside the folder (a symbolic link)")
    return path
