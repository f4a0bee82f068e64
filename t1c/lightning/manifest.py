"""The manifest ``t1c_exports.json``: checkpoint -> `.t1c` -> metrics, beside the files.

:func:`read_manifest` / :func:`write_manifest` read and write the file (atomically, strict
JSON); :func:`manifest_entries` keeps only what a manifest may be trusted with (every path
inside its folder, every field of its type, :func:`manifest_entry`); :func:`manifest_lock`
serializes the writers of one folder and :func:`merge_manifest` writes one run's entries
into a folder's manifest without losing another run's.

Example:
    >>> stored_entry({"checkpoint": "/ck/a.ckpt", "epoch": 0, "global_step": 2, "metrics": {},
    ...               "content_hash": "c"}, "/ck")["checkpoint"]
    'a.ckpt'
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from t1c.ir.atomic import atomic_target

from .files import remove_file
from .layout import inside_folder, path_inside, under_folder
from .naming import EXPORT_SUFFIX

MANIFEST_NAME = "t1c_exports.json"
LOCK_NAME = "t1c_exports.lock"
MANIFEST_VERSION = 1


def empty_manifest() -> dict[str, Any]:
    return {"version": MANIFEST_VERSION, "exports": {}}


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest at ``path``; an empty one when the file does not exist.

    Raises:
        ValueError: the file is not a manifest (the message names it; delete or move it).
    """
    path = Path(path)
    if not path.is_file():
        return empty_manifest()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path} is not a readable t1c export manifest ({err}); move it away to start a new one"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("exports"), dict):
        raise ValueError(
            f"{path} is not a t1c export manifest (no 'exports' mapping); move it away to start a new one"
        )
    data.setdefault("version", MANIFEST_VERSION)
    return data


def _typed(item: Mapping[str, Any], field: str, types: tuple[type, ...], optional: bool) -> Any:
    value = item.get(field)
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in types:
        value = "a bool"
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types) + (" or null" if optional else "")
        raise ValueError(f"field {field!r} must be {names}, not {value!r}")
    return value


def manifest_entry(name: Any, item: Any, folder: str | os.PathLike) -> dict[str, Any]:
    """Validate one manifest entry; its paths (absolute, normalized) and typed fields.

    Args:
        name: the entry's key: the `.t1c` file name, a plain name in ``folder``.
        item: the entry's mapping as read from JSON.
        folder: the manifest's folder.

    Returns:
        ``file``, ``dir``, ``checkpoint`` (or None), ``same_as`` (or None), ``epoch``,
        ``global_step``, ``metrics``, ``content_hash``, ``source_hash``, ``link``, ``run``.

    Raises:
        ValueError: a path leads outside ``folder`` (absolute, ``..``, separators in a
            file name, a symbolic link out) or a field has the wrong type; says which.
    """
    folder = os.path.normpath(os.fspath(folder))
    path = path_inside(name, folder, "the entry name", plain_name=True)
    if not path.endswith(EXPORT_SUFFIX):
        raise ValueError(f"the entry name {name!r} does not end with {EXPORT_SUFFIX}")
    if not isinstance(item, Mapping):
        raise ValueError(f"the entry is {type(item).__name__}, not a mapping")
    checkpoint = item.get("checkpoint")
    same_as = item.get("same_as")
    metrics = _typed(item, "metrics", (dict,), optional=True) or {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not (
            isinstance(value, (int, float)) or value in ("nan", "inf", "-inf")
        ):
            raise ValueError(f"metric {key!r} must be a number, not {value!r}")
    entry = {
        "file": path,
        "dir": folder,
        "checkpoint": None if checkpoint is None else path_inside(checkpoint, folder, "checkpoint", False),
        "same_as": None if same_as is None else path_inside(same_as, folder, "same_as", True),
        "epoch": _typed(item, "epoch", (int,), optional=False),
        "global_step": _typed(item, "global_step", (int,), optional=False),
        "metrics": {str(k): float(v) for k, v in metrics.items()},
        "content_hash": _typed(item, "content_hash", (str,), optional=True),
        "source_hash": _typed(item, "source_hash", (str,), optional=True),
        "link": bool(_typed(item, "link", (bool,), optional=True)),
        "run": _typed(item, "run", (str,), optional=True),
    }
    if entry["epoch"] < 0 or entry["global_step"] < 0:
        raise ValueError("epoch and global_step must be >= 0")
    if entry["same_as"] == path:
        raise ValueError("same_as names the entry itself")
    return entry


def manifest_entries(path: str | os.PathLike) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The trustworthy entries of the manifest at ``path``, and a line for each one left out.

    An entry whose name, ``checkpoint`` or ``same_as`` leads outside the manifest's folder, or
    whose fields have the wrong type, is left out (the caller warns with the line): nothing
    a manifest says can make t1c read, copy or delete a file elsewhere.

    Raises:
        ValueError: the file is not a manifest at all (:func:`read_manifest`).
    """
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    entries: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    if os.path.islink(path) and not inside_folder(path, folder):
        return entries, [f"{path}: ignored: a symbolic link leading outside its folder"]
    for name, item in read_manifest(path)["exports"].items():
        try:
            entry = manifest_entry(name, item, folder)
        except ValueError as err:
            problems.append(f"{path}: entry {name!r} ignored: {err}")
            continue
        entries[entry["file"]] = entry
    return entries, problems


@contextlib.contextmanager
def manifest_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``<folder>/t1c_exports.lock`` (other runs wait).

    The lock file stays (an empty file): removing it while another writer waits on it would let
    a third writer lock a new file at the same time.
    """
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_manifest(path: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest`` as JSON atomically (temporary file in the same folder + rename).

    Non-finite floats are written as strings (``"nan"``, ``"inf"``) so the file stays
    strict JSON that any tool reads.
    """
    path = Path(path)
    text = json.dumps(_json_safe(manifest), indent=2, sort_keys=True) + "\n"
    with atomic_target(path, fsync=True) as tmp:
        tmp.write_text(text, encoding="utf-8")


def stored_entry(entry: Mapping[str, Any], folder: str) -> dict[str, Any]:
    """An entry as the manifest stores it: paths relative to ``folder`` (a checkpoint outside it: null)."""
    checkpoint = entry.get("checkpoint")
    same_as = entry.get("same_as")
    inside = checkpoint is not None and under_folder(checkpoint, folder)
    return {
        "checkpoint": os.path.relpath(checkpoint, folder) if inside else None,
        "epoch": entry["epoch"],
        "global_step": entry["global_step"],
        "metrics": dict(entry["metrics"]),
        "content_hash": entry["content_hash"],
        "source_hash": entry.get("source_hash"),
        "same_as": os.path.basename(same_as) if same_as else None,
        "link": bool(entry.get("link")),
        "run": entry.get("run"),
    }


def merge_manifest(
    folder: str, entries: Mapping[str, Mapping[str, Any]], deleted: set[str], run: str
) -> None:
    """Merge one run's entries of ``folder`` into its manifest, under the folder's lock.

    Entries of other runs on disk are kept (two trainers in one folder lose nothing); the
    run's entries replace theirs of the same name, and what it ``deleted`` goes. A ``same_as``
    naming no entry of the manifest is written as null.

    Args:
        folder: the manifest's folder.
        entries: the run's entries by absolute `.t1c` path (those of other folders are left out).
        deleted: the files the run deleted.
        run: the run's id.
    """
    manifest = os.path.join(folder, MANIFEST_NAME)
    with manifest_lock(folder):
        try:
            disk, _ = manifest_entries(manifest)
        except ValueError:
            disk = {}
        if os.path.islink(manifest):
            remove_file(manifest)  # never write through a link
        merged = {
            p: e for p, e in disk.items() if p not in entries and p not in deleted and e.get("run") != run
        }
        merged.update({p: e for p, e in entries.items() if e["dir"] == folder})
        exports = {os.path.basename(p): stored_entry(e, folder) for p, e in sorted(merged.items())}
        for entry in exports.values():  # same_as only ever names a present entry of this manifest
            if entry["same_as"] not in exports:
                entry["same_as"] = None
        write_manifest(manifest, {"version": MANIFEST_VERSION, "exports": exports})


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
