"""Pure helpers of the export callback: file names, metric conversions, the manifest.

Nothing here touches a Trainer, so every rule the callback relies on is tested on its own:

* :func:`format_name` turns a ``"{epoch}-{step}"`` template into a file stem, the way
  :class:`~lightning.pytorch.callbacks.ModelCheckpoint` formats its checkpoint names.
* :func:`sanitize_stem` / :func:`export_path_for`: a checkpoint path -> the `.t1c` path beside
  it. A metric name with ``/`` (``val/acc``) makes ModelCheckpoint write into a sub-folder; the
  `.t1c` name flattens it instead, so an export never creates folders.
* :func:`scalar_metrics`, :func:`nest_metrics`, :func:`flatten_metrics`: Trainer metrics ->
  plain floats -> HDF5-safe nested metadata (HDF5 names cannot hold ``/``) and back.
* :func:`read_manifest` / :func:`write_manifest`: the ``t1c_exports.json`` file, written
  atomically; :func:`manifest_entries` validates what a manifest says (every path inside
  its folder, every field of its type) and :func:`manifest_lock` serializes the writers of
  one folder.

Example:
    >>> format_name("{epoch}-{val/acc:.2f}", {"epoch": 3, "val/acc": 0.912})
    'epoch=3-val/acc=0.91'
    >>> sanitize_stem("epoch=3-val/acc=0.91")
    'epoch=3-val_acc=0.91'
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from t1c.ir.atomic import atomic_target, temp_beside

EXPORT_SUFFIX = ".t1c"
CHECKPOINT_SUFFIX = ".ckpt"
MANIFEST_NAME = "t1c_exports.json"
LOCK_NAME = "t1c_exports.lock"
MANIFEST_VERSION = 1
LAST_STEM = "last"
# HDF5 group for a metric that is both a value and a prefix ("loss" next to "loss/train").
NESTED_VALUE_KEY = "_value"

_TEMPLATE_KEY = re.compile(r"\{([^{}:!]+)((?:![rsa])?(?::[^{}]*)?)\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+\-]")


# -- names -------------------------------------------------------------------------------
def format_name(template: str, metrics: Mapping[str, Any], auto_insert_metric_name: bool = True) -> str:
    """Fill a ``{name}`` / ``{name:fmt}`` template from ``metrics``, like ModelCheckpoint.

    With ``auto_insert_metric_name`` each field is written ``name=value``. A name missing
    from ``metrics`` is formatted as ``0`` (ModelCheckpoint's rule), so every rank formats
    the same name even when a metric has not been logged yet.

    Args:
        template: e.g. ``"{epoch}-{step}"`` or ``"{epoch:02d}-{val/acc:.3f}"``.
        metrics: values by name (floats, ints, or 0-d tensors).
        auto_insert_metric_name: prefix each value with ``name=``.

    Returns:
        The formatted stem (no suffix, not yet sanitized).

    Raises:
        ValueError: a format spec does not fit its value (the message names the field).
    """

    def fill(match: re.Match[str]) -> str:
        name, spec = match.group(1), match.group(2)
        value = _plain(metrics.get(name, 0))
        try:
            text = ("{0" + spec + "}").format(value)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"cannot format {name!r}={value!r} with {{{name}{spec}}} in template {template!r}: {err}"
            ) from None
        return f"{name}={text}" if auto_insert_metric_name else text

    return _TEMPLATE_KEY.sub(fill, template)


def sanitize_stem(stem: str) -> str:
    """A single safe file-name component from any stem.

    Path separators (``/``, ``\\``) and characters outside ``[A-Za-z0-9._=+-]`` become
    ``_``, so a metric name like ``val/acc`` never creates a folder and every rank derives
    the same name. Leading dots are dropped (no hidden files, no ``..``).

    Raises:
        ValueError: nothing usable is left (e.g. ``"..."``).
    """
    safe = _UNSAFE.sub("_", stem).lstrip(".")
    if not safe:
        raise ValueError(
            f"file name stem {stem!r} has no usable characters; use letters, digits, '-', '_', '='"
        )
    return safe


def checkpoint_stem(checkpoint_path: str | os.PathLike, checkpoint_dir: str | os.PathLike) -> str:
    """The sanitized stem of a checkpoint, relative to its ModelCheckpoint's folder.

    ``<dir>/epoch=1-val/acc=0.50.ckpt`` (a ``/`` from a metric name made a sub-folder)
    gives ``epoch=1-val_acc=0.50``.
    """
    path = Path(os.path.normpath(os.fspath(checkpoint_path)))
    root = Path(os.path.normpath(os.fspath(checkpoint_dir)))
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.name
    if rel.endswith(CHECKPOINT_SUFFIX):
        rel = rel[: -len(CHECKPOINT_SUFFIX)]
    return sanitize_stem(rel)


def export_path_for(
    checkpoint_path: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    export_dir: str | os.PathLike | None = None,
) -> str:
    """Where the `.t1c` of a checkpoint goes: same stem, in ``export_dir`` or the checkpoint folder."""
    folder = export_dir if export_dir is not None else checkpoint_dir
    return os.path.join(os.fspath(folder), checkpoint_stem(checkpoint_path, checkpoint_dir) + EXPORT_SUFFIX)


# -- metrics -----------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A one-element tensor / numpy scalar -> a Python number; anything else unchanged."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (ValueError, RuntimeError):
            return value
    return value


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite-or-not scalar entries of ``metrics`` as Python floats, sorted by name.

    Tensors with more than one element and non-numeric values are left out (a metadata
    entry must be one number).
    """
    out: dict[str, float] = {}
    for name in sorted(metrics):
        value = _plain(metrics[name])
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[str(name)] = float(value)
    return out


def nest_metrics(flat: Mapping[str, float]) -> dict[str, Any]:
    """``{"val/acc": 1}`` -> ``{"val": {"acc": 1}}``: HDF5 names cannot contain ``/``.

    A name that is both a value and a prefix (``loss`` and ``loss/train``) keeps its value
    under :data:`NESTED_VALUE_KEY`. Empty path components are dropped (``a//b`` -> ``a/b``)
    and every component becomes a valid HDF5 name (:func:`metadata_key`: ``val/..`` ->
    ``val/_..``), so no metric name can make a file unwritable.
    """
    nested: dict[str, Any] = {}
    for name in sorted(flat):
        parts = [metadata_key(p) for p in str(name).split("/") if p] or [NESTED_VALUE_KEY]
        node = nested
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {} if child is None else {NESTED_VALUE_KEY: child}
                node[part] = child
            node = child
        leaf = parts[-1]
        if isinstance(node.get(leaf), dict):
            node[leaf][NESTED_VALUE_KEY] = flat[name]
        else:
            node[leaf] = flat[name]
    return nested


def metadata_key(part: str) -> str:
    """One component of a metric name as an HDF5 name: NUL dropped, ``.`` and ``..`` prefixed.

    Example:
        >>> [metadata_key(p) for p in (".", "..", "acc")]
        ['_.', '_..', 'acc']
    """
    part = part.replace("\x00", "")
    if part in ("", ".", ".."):
        return "_" + part
    return part


def flatten_metrics(nested: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Inverse of :func:`nest_metrics` (for metadata read back from a file)."""
    flat: dict[str, float] = {}
    for key, value in nested.items():
        if key == NESTED_VALUE_KEY and prefix:
            flat[prefix] = float(_plain(value))
            continue
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, name))
        else:
            flat[name] = float(_plain(value))
    return flat


# -- manifest ----------------------------------------------------------------------------
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


def under_folder(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether the normalized ``path`` lies strictly inside ``folder``, by name (no link followed)."""
    root = os.path.normpath(os.fspath(folder))
    path = os.path.normpath(os.fspath(path))
    return path != root and path.startswith(root.rstrip(os.sep) + os.sep)


def inside_folder(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path``, all symbolic links followed, lies strictly inside ``folder``."""
    return under_folder(os.path.realpath(os.fspath(path)), os.path.realpath(os.fspath(folder)))


def _relative_inside(value: Any, folder: str, field: str, plain_name: bool) -> str:
    """``folder/value`` when ``value`` is a relative path staying inside ``folder``; else raise."""
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
    path = _relative_inside(name, folder, "the entry name", plain_name=True)
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
        "checkpoint": None
        if checkpoint is None
        else _relative_inside(checkpoint, folder, "checkpoint", False),
        "same_as": None if same_as is None else _relative_inside(same_as, folder, "same_as", True),
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


# -- files -------------------------------------------------------------------------------
def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` over ``dst`` atomically (a reader never sees a partial ``dst``)."""
    with atomic_target(dst) as tmp:
        shutil.copyfile(src, tmp)


def atomic_symlink(target: str | os.PathLike, link: str | os.PathLike) -> None:
    """Point ``link`` at ``target`` (stored relative to ``link``'s folder), replacing it atomically.

    Falls back to :func:`atomic_copy` where the file system refuses symbolic links.
    """
    link = Path(link)
    relative = os.path.relpath(os.fspath(target), os.fspath(link.parent))
    tmp = temp_beside(link)
    try:
        os.symlink(relative, tmp)
    except OSError:
        atomic_copy(target, link)
        return
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_file(path: str | os.PathLike) -> bool:
    """Remove a file or symbolic link if present; True when something was removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
