"""Names of the export callback: file names from templates and checkpoints, metric names.

Nothing here touches a Trainer or a file, so every naming rule the callback relies on is
tested on its own:

* :func:`format_name` turns a ``"{epoch}-{step}"`` template into a file stem, the way
  :class:`~lightning.pytorch.callbacks.ModelCheckpoint` formats its checkpoint names.
* :func:`sanitize_stem` / :func:`export_path_for`: a checkpoint path -> the `.t1c` path beside
  it. A metric name with ``/`` (``val/acc``) makes ModelCheckpoint write into a sub-folder; the
  `.t1c` name flattens it instead, so an export never creates folders.
* :func:`scalar_metrics`, :func:`nest_metrics`, :func:`flatten_metrics`: Trainer metrics ->
  plain floats -> HDF5-safe nested metadata (HDF5 names cannot hold ``/``) and back.

Example:
    >>> format_name("{epoch}-{val/acc:.2f}", {"epoch": 3, "val/acc": 0.912})
    'epoch=3-val/acc=0.91'
    >>> sanitize_stem("epoch=3-val/acc=0.91")
    'epoch=3-val_acc=0.91'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EXPORT_SUFFIX = ".t1c"
CHECKPOINT_SUFFIX = ".ckpt"
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
