"""Atomic file replacement, shared by every writer in t1c (`.t1c` files, manifests).

A writer fills a temporary file in the destination's folder (same file system, so the
rename is atomic) and renames it over the destination. An exception or a kill at any
point leaves either the old file or the new one, never a partial one; on failure the
temporary file is removed.

Temporary files are named ``.<name>.<12 hex digits>.tmp``. A kill -9 cannot remove its
own, so the next write of the same destination removes the ones left over, but only
when it can take the folder's lock exclusively: every writer holds that lock (shared)
while its temporary file exists, so a file another process is still writing is never
removed. SIGTERM (with its default action) removes the temporary file before the
process ends.

A destination that is a symbolic link is written through: the file it points to is
replaced, and the link stays a link (what ``cp`` and most editors do).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no folder locks, so leftovers are never removed
    fcntl = None  # type: ignore[assignment]


def resolve_target(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` replaces: ``path`` itself, or what its symlinks lead to."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def stale_temps(path: str | os.PathLike) -> list[Path]:
    """Regular files of t1c's temporary pattern beside ``path`` (``.<name>.<hex>.tmp``)."""
    path = Path(path)
    pattern = re.compile(r"\." + re.escape(path.name) + r"\.[0-9a-f]{12}\.tmp")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    found = []
    for name in names:
        if pattern.fullmatch(name):
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(path.parent / name).st_mode):
                    found.append(path.parent / name)
    return found


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[int | None]:
    """Hold ``folder``'s lock for the body (every t1c writer does while its temporary
    file exists).

    Yields the folder's descriptor when the lock was free: it is then held exclusively,
    so the caller may remove leftovers, and must downgrade it (``flock(fd, LOCK_SH)``)
    before writing. Yields None when another writer holds it (the lock is then held
    shared) or where folders cannot be locked.
    """
    fd = None
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    if fd is None:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except OSError:  # held by another writer (or no locks on this file system)
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_SH)
            alone = False
        yield fd if alone else None
    finally:
        os.close(fd)  # releases the lock


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM while a temporary file exists."""


@contextlib.contextmanager
def _cleanup_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into an exception for the body (so the temporary file is removed),
    then end the process with SIGTERM as it would have. Only where SIGTERM has its
    default action and we are on the main thread: a handler someone installed (a
    Trainer's, a server's) is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            yield
            return
    except (ValueError, AttributeError):
        yield
        return

    def raise_terminated(signum, frame):
        raise _Terminated

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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

    A symbolic link ``path`` is written through (its target is replaced). Leftover
    temporary files of the same destination are removed first when no other t1c writer
    is busy in the folder (see the module docstring).

    Args:
        path: the destination.
        fsync: flush the new file and the folder to disk (durable across a power loss).
    """
    path = resolve_target(path)
    with _folder_lock(path.parent) as exclusive, _cleanup_on_sigterm():
        if exclusive is not None:
            for old in stale_temps(path):
                with contextlib.suppress(OSError):
                    os.unlink(old)
            fcntl.flock(exclusive, fcntl.LOCK_SH)  # others may write beside us from now on
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
