"""Atomic replacement (`t1c.ir.atomic`), shared by every writer: the temporary file beside the
destination, its removal on failure, leftovers of killed writers removed only when no other
writer is busy, SIGTERM, and symbolic links written through."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from t1c import ir
from t1c.ir.atomic import atomic_target, resolve_target, stale_temps, temp_beside

from .factories import mlp


def test_the_destination_appears_only_when_the_body_ends(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with atomic_target(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"new")
        assert path.read_bytes() == b"old"
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("fsync", [False, True])
def test_an_exception_in_the_body_keeps_the_old_file_and_removes_the_temporary(tmp_path, fsync):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_target(path, fsync=fsync) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_temporary_names_are_fresh_and_hidden(tmp_path):
    names = {temp_beside(tmp_path / "net.t1c").name for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith(".net.t1c.") and len(n) == len(".net.t1c.") + 12 + len(".tmp") for n in names)


def test_stale_temps_lists_only_regular_files_of_the_exact_pattern(tmp_path):
    ours = tmp_path / ".net.t1c.0123456789ab.tmp"
    ours.write_bytes(b"")
    (tmp_path / ".net.t1c.0123456789AB.tmp").write_bytes(b"")  # upper-case hex: not ours
    (tmp_path / ".net.t1c.0123456789abc.tmp").write_bytes(b"")  # 13 digits
    (tmp_path / ".net.t1c.fedcba987654.tmp").mkdir()  # a folder
    (tmp_path / ".net.t1c.aaaaaaaaaaaa.tmp").symlink_to(ours)  # a link
    assert stale_temps(tmp_path / "net.t1c") == [ours]
    assert stale_temps(tmp_path / "missing" / "net.t1c") == []


def test_resolve_target_follows_links_only(tmp_path):
    real = tmp_path / "real.t1c"
    link = tmp_path / "link.t1c"
    link.symlink_to(real)
    assert resolve_target(link) == real
    assert resolve_target(real) == real


def test_leftover_temp_files_of_the_same_target_are_removed(tmp_path):
    path = tmp_path / "net.t1c"
    stale = tmp_path / ".net.t1c.0123456789ab.tmp"
    keep = [
        tmp_path / ".other.t1c.0123456789ab.tmp",  # another target
        tmp_path / ".net.t1c.notours.tmp",  # not t1c's pattern
        tmp_path / "net.t1c.0123456789ab.tmp",  # not hidden
    ]
    for p in [stale, *keep]:
        p.write_bytes(b"partial")
    ir.write(path, mlp())
    assert not stale.exists()
    assert all(p.exists() for p in keep)


def test_temp_files_are_kept_while_another_writer_holds_the_folder(tmp_path):
    path = tmp_path / "net.t1c"
    busy = tmp_path / ".net.t1c.0123456789ab.tmp"
    busy.write_bytes(b"being written")
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # what a writer in another process holds
        ir.write(path, mlp())
        assert busy.exists()
    finally:
        os.close(fd)
    ir.write(path, mlp())
    assert not busy.exists()


_TERMINATED_WRITER = """
import sys, time
from t1c.ir import writing
from tests.ir.factories import mlp

def stall(*args, **kwargs):
    print("writing", flush=True)
    time.sleep(120)

writing._write_graph = stall
writing.write(sys.argv[1], mlp())
"""


def test_sigterm_during_a_write_removes_the_temp_file(tmp_path):
    path = tmp_path / "net.t1c"
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", _TERMINATED_WRITER, str(path)], stdout=subprocess.PIPE, text=True, cwd=repo
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert any(p.name.startswith(".net.t1c.") for p in tmp_path.iterdir())
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGTERM  # still ends as SIGTERM would
    assert list(tmp_path.iterdir()) == []


def test_writing_to_a_symlink_writes_through_to_its_target(tmp_path):
    real = tmp_path / "store" / "net.t1c"
    real.parent.mkdir()
    ir.write(real, mlp(metadata={"v": "old"}))
    link = tmp_path / "net.t1c"
    link.symlink_to(real)
    ir.write(link, mlp(metadata={"v": "new"}))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert ir.read(real).metadata == {"v": "new"}
    assert sorted(p.name for p in real.parent.iterdir()) == ["net.t1c"]


def test_writing_to_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "net.t1c"
    link.symlink_to(tmp_path / "real.t1c")
    ir.write(link, mlp())
    assert link.is_symlink() and ir.read(tmp_path / "real.t1c").metadata == {}
