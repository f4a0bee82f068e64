"""The bounds a `.t1c` file from elsewhere is held to before and while it is read.

A reader of untrusted files must not be tricked (``docs/untrusted_files.md``):

* only regular files are opened (a FIFO, device or folder is refused before it is
  opened, so a read never blocks), and a permission problem is a ``PermissionError``;
* libhdf5's plugin search path is empty while a file is open, so a file cannot make
  libhdf5 load code from a plugin folder; filters t1c does not know by name
  (:data:`KNOWN_FILTERS`) and data stored outside the file are refused;
* member names HDF5 would take as a path (``a/b``: only a crafted file has one) are
  refused;
* each dataset's declared size is checked against the bytes it really stores before it
  is read, and the total a read allocates is capped at :data:`MAX_BYTES` (``max_bytes=``
  raises it) and at a multiple of the file's size (:class:`ByteBudget`), so a file cannot
  make t1c allocate gigabytes from a header or a compression bomb;
* strings are charged their real size before they are decoded, against a budget of a
  few times the file's size (:meth:`ByteBudget.charge_text`), and one string is capped
  at :data:`MAX_STRING_BYTES`, so references sharing one long stored string cannot make
  t1c allocate gigabytes either;
* nesting (metadata groups, graphs as nodes) is capped, since hard links can make a
  group its own child.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator

from h5py import h5d, h5f, h5p, h5pl

from .errors import T1CFormatError

#: Default bound on the bytes one ``read`` may allocate for datasets (after
#: decompression): 2 GiB, about 500 million float32 parameters. Checked against each
#: dataset's declared size before it is read. ``read(path, max_bytes=...)`` raises it.
MAX_BYTES = 2**31
#: The HDF5 filters a file may use (all built into libhdf5 or h5py): id -> name.
KNOWN_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
#: Nested metadata groups deeper than this are refused (hard links can make a group its
#: own child; following that would never end).
MAX_METADATA_DEPTH = 32
#: Graphs nested as nodes deeper than this are refused (same reason).
MAX_GRAPH_DEPTH = 8
#: The most bytes one string of a file may hold (a field, a metadata entry, a node name
#: in the edges): 16 MiB.
MAX_STRING_BYTES = 16 * 2**20
#: What each string read is charged beside its length (the Python objects holding it).
STRING_COST = 128
# The strings of one read may take this many bytes, or 4x the file's size if more: an
# honest file stores each string it holds (its bytes and a 16-byte reference), while a
# crafted one can point many references at one stored string.
_TEXT_FLOOR = 64 * 2**20
_TEXT_PER_FILE_BYTE = 4
# A dataset may declare at most this many bytes beyond what it stores (compressed data
# legitimately stores less; a 2048x2048 all-zero gzip weight stores ~16 KiB).
_MAX_EXPANSION = 4096
_ALWAYS_OK_BYTES = 64 * 2**20


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
    stat.S_IFSOCK: "a socket",
}


def regular_file_size(path: str) -> int:
    """The size of ``path``, refusing anything but a readable regular file.

    The file is opened non-blocking first, so a FIFO never blocks, and the check is made
    on what was opened (``fstat``), not on a name that could change in between.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"no such .t1c file: '{path}'") from None
    except PermissionError as err:
        raise PermissionError(
            err.errno, f"cannot read .t1c file '{path}': permission denied (check its mode and owner)", path
        ) from None
    except IsADirectoryError:
        raise T1CFormatError(
            "is a folder, not a regular file; give the path of a .t1c file", file=path
        ) from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        what = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise T1CFormatError(f"is {what}, not a regular file; t1c reads only regular .t1c files", file=path)
    return info.st_size


class _NoPlugins:
    """Empties libhdf5's plugin search path while any t1c read is open (reference-counted,
    so concurrent reads in threads share it) and restores it afterwards."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: list[bytes] = []

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = [h5pl.get(i) for i in range(h5pl.size())]
                while h5pl.size():
                    h5pl.remove(0)
            self._users += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for folder in self._saved:
                    h5pl.append(folder)
                self._saved = []


_NO_PLUGINS = _NoPlugins()


@contextlib.contextmanager
def open_hdf5(path: str, size: int) -> Iterator[h5f.FileID]:
    """The HDF5 file at ``path`` (checked by :func:`regular_file_size`), plugins off.

    Opened read-only as ``h5py.File(path, "r")`` opens it, without the high-level
    object (whose closing walks every open h5py object); closing it closes every
    object still open in it, as ``File.close`` does."""
    with _NO_PLUGINS:
        fapl = h5p.create(h5p.FILE_ACCESS)
        fapl.set_fclose_degree(h5f.CLOSE_STRONG)
        try:
            fid = h5f.open(os.fsencode(path), h5f.ACC_RDONLY, fapl=fapl)
        except OSError as err:
            what = "is empty" if size == 0 else "is not an HDF5 file, or is truncated"
            raise T1CFormatError(f"{what} ({err})", file=str(path)) from None
        try:
            yield fid
        finally:
            fid.close()


def check_storage(plist: h5p.PropDCID, node: str | None, field: str) -> None:
    """Refuse data stored outside the file and filters t1c does not know by id and name
    (libhdf5 would look for a plugin)."""
    if plist.get_layout() == h5d.VIRTUAL:
        raise T1CFormatError(
            "is a virtual dataset; data outside the file is never read, store it in the file",
            node=node,
            field=field,
        )
    if plist.get_external_count():
        files = [plist.get_external(i) for i in range(plist.get_external_count())]
        files = [(os.fsdecode(name), offset, size) for name, offset, size in files]
        raise T1CFormatError(
            f"is stored in external file(s) {files}; data outside the file is never read, store it in the file",
            node=node,
            field=field,
        )
    for i in range(plist.get_nfilters()):
        code, _flags, _values, name = plist.get_filter(i)
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        if code not in KNOWN_FILTERS:
            raise T1CFormatError(
                f"uses HDF5 filter {code} ({name or 'unnamed'}), which t1c does not read; known filters: "
                f"{', '.join(sorted(KNOWN_FILTERS.values()))} (rewrite it with h5py using gzip or lzf)",
                node=node,
                field=field,
            )


def check_name(name: str | bytes, node: str | None, field: str) -> None:
    """Refuse a listed node name or metadata key that is not valid UTF-8 (listed as
    ``bytes``) or that HDF5 would take as a path: a crafted link named ``a/b`` would be
    opened through ``a``, which may be a link the listing never showed."""
    if isinstance(name, bytes) or "/" in name or name == ".":
        raise T1CFormatError(
            f"has a member named {name!r}; names must be UTF-8 without '/' and not '.'",
            node=node,
            field=field,
        )


class ByteBudget:
    """How many bytes one read may still allocate for datasets.

    The total is capped at ``max_bytes`` and at a multiple of the file's size, and each
    dataset's declared size is checked against what it stores before it is read.
    """

    __slots__ = ("size", "max_bytes", "file_cap", "left", "text_cap", "text_left")

    def __init__(self, size: int, max_bytes: int) -> None:
        """Cap the total at ``max_bytes`` and at a multiple of the file's ``size``, and the
        strings at a smaller multiple of it (:meth:`charge_text`)."""
        self.size = size
        self.max_bytes = max_bytes
        self.file_cap = max(_ALWAYS_OK_BYTES, _MAX_EXPANSION * size)
        self.left = min(max_bytes, self.file_cap)
        self.text_cap = self.text_left = max(_TEXT_FLOOR, _TEXT_PER_FILE_BYTE * size)

    def charge_text(self, nbytes: int, node: str | None, field: str) -> None:
        """Charge ``nbytes`` of strings before they are read; refuse them when the file's
        strings would take more than its size allows (many references to one stored string)."""
        if nbytes > self.text_left:
            raise T1CFormatError(
                f"holds more text than a file of this size can (over {self.text_cap} bytes of strings in "
                "one read: strings sharing one stored string many times?); t1c refuses the file",
                node=node,
                field=field,
            )
        self.text_left -= nbytes

    def strings_per_read(self) -> int:
        """How many variable-length strings one read may fetch: no string is longer than
        the file, so that many of them fit in what is left for strings (at least one)."""
        return max(1, self.text_left // max(self.size, 1))

    def checked(self, dset, node: str | None, field: str):
        """Charge ``dset`` (an open dataset with ``shape``, ``size``, ``dtype`` and
        ``stored``) and return it; refuse it when its declared size is out of proportion
        to what it stores or to what is left."""
        declared = int(dset.size) * dset.dtype.itemsize
        stored = dset.stored
        if declared > 0 and stored == 0:
            raise T1CFormatError(
                f"declares shape {list(dset.shape)} ({declared} bytes) but stores no data",
                node=node,
                field=field,
            )
        if declared > max(_ALWAYS_OK_BYTES, _MAX_EXPANSION * stored):
            raise T1CFormatError(
                f"declares shape {list(dset.shape)} ({declared} bytes) but stores only {stored} bytes",
                node=node,
                field=field,
            )
        if declared > self.left:
            if self.max_bytes <= self.file_cap:
                why = (
                    f"of the max_bytes budget of {self.max_bytes} bytes for one read; if the file is "
                    "trusted and that much memory is free, pass max_bytes= to ir.read"
                )
            else:
                why = "of what this file's size allows to be read (datasets hard-linked many times?)"
            raise T1CFormatError(
                f"declares shape {list(dset.shape)} ({declared} bytes), more than the {self.left} bytes "
                f"left {why}",
                node=node,
                field=field,
            )
        self.left -= declared
        return dset
