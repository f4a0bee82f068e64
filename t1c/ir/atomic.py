"""Atomic file replacement, shared by every writer in t1c (`.t1c` files, manifests).

A writer fills a temporary file in the destination's folder (same file system, so the
rename is atomic) and renames it over the destination. An exception or a kill at any
point leaves either the old file or the new one, never a partial one; on failure the
temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def temp_beside(path: str | os.PathLike) -> Path:
    """A fresh, unused hidden name beside ``path`` (the caller creates the file).

    The file is not pre-created: opening an existing file for writing truncates it,
    and ext4 (``auto_da_alloc``) then flushes it to disk on close, which doubled the
    time of a large write. Writers create it exclusively (h5py mode ``"x"``), and it
    gets the umask's usual mode, not ``mkstemp``'s 0o600 that other users and the
    hardware toolchain's service account could not read once renamed.
    """
    path = Path(path)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        if not os.path.lexists(tmp):
            return tmp
    raise FileExistsError(f"could not find a free temporary name beside '{path}'")


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    Args:
        path: the destination.
        fsync: flush the new file and the folder to disk (durable across a power loss).
    """
    path = Path(path)
    tmp = temp_beside(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (best effort where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
