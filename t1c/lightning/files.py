"""Changes to the files of an export folder that a reader never sees half done.

A `.t1c` that is a second checkpoint's copy of an export (``last.t1c``) is copied or linked
atomically (``last.t1c`` replacing whatever lies there, a link too, so that a copy never
writes through a link into another export), a link is turned into a copy before the file it
points to goes, and a file is removed without caring whether it is still there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from t1c.ir.atomic import atomic_target, temp_beside


def atomic_symlink(target: str | os.PathLike, link: str | os.PathLike) -> None:
    """Point ``link`` at ``target`` (stored relative to ``link``'s folder), replacing it atomically.

    Falls back to :func:`copy_replacing` where the file system refuses symbolic links.
    """
    link = Path(link)
    relative = os.path.relpath(os.fspath(target), os.fspath(link.parent))
    tmp = temp_beside(link)
    try:
        os.symlink(relative, tmp)
    except OSError:
        copy_replacing(target, link)
        return
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def copy_replacing(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` to ``dst`` atomically, replacing ``dst`` itself: a symbolic link there is
    replaced, never written through (``src`` may be that link: it becomes a copy of its file)."""
    tmp = temp_beside(Path(dst))
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_replacing(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically, replacing the name itself (a link there is never written through)."""
    if os.path.islink(path):
        remove_file(path)
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)


def remove_file(path: str | os.PathLike) -> bool:
    """Remove a file or symbolic link if present; True when something was removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
