"""Reading and writing `.t1c` files (HDF5, layout in FORMAT.md).

One path for every primitive: ``write`` asks each node for its fields, ``read`` checks
each dataset against the field kinds the node's class declares and builds the node
through the registry. A reader of untrusted files must not be tricked, so ``read``:

* opens only regular files (a FIFO, device or folder is refused before it is opened,
  so a read never blocks), and reports a permission problem as a ``PermissionError``;
* refuses soft and external links (it never opens another file or follows a path), and
  member names HDF5 would take as a path (``a/b``: only a crafted file has one);
* refuses datasets whose bytes live outside the file (external raw storage, virtual
  datasets), so a crafted file cannot read other files on the machine into a graph;
* refuses HDF5 filters it does not know by name (:data:`KNOWN_FILTERS`), and keeps
  libhdf5's plugin search path empty while it reads, so a file cannot make libhdf5 load
  code from a plugin folder;
* checks each dataset's declared size against the bytes it really stores before
  reading it, and caps the total it reads at :data:`MAX_BYTES` (``max_bytes=`` raises
  it) and at a multiple of the file's size, so a file cannot make it allocate gigabytes
  from a header or a compression bomb; running out of memory anyway is a
  :class:`T1CFormatError`, not a ``MemoryError``;
* checks ``/version`` (a newer major version is refused) and ``/graph/type``;
* verifies the optional content hash (:data:`HASH_ATTRIBUTE`, written by default), so
  a corrupted weight is detected;
* turns every problem into a :class:`T1CFormatError` naming the file, node and field.

``write`` is atomic: it writes a temporary file in the destination folder and renames
it over the destination, so an exception or a kill leaves either the old file or the
new one, never a partial one. A symbolic link as destination is written through (the
file it points to is replaced, the link stays). ``docs/untrusted_files.md`` lists
what t1c guarantees for files from elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import stat
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5, h5a, h5d, h5f, h5g, h5l, h5o, h5p, h5pl, h5s, h5t

from .atomic import atomic_target
from .errors import T1CFormatError
from .graph import Graph
from .node import REGISTRY, Node

FORMAT_VERSION = "0.0.1"
#: The newest major format version this reader understands.
FORMAT_MAJOR = 0
#: Default bound on the bytes one ``read`` may allocate for datasets (after
#: decompression): 2 GiB, about 500 million float32 parameters. Checked against each
#: dataset's declared size before it is read. ``read(path, max_bytes=...)`` raises it.
MAX_BYTES = 2**31
#: The HDF5 filters a file may use (all built into libhdf5 or h5py): id -> name.
KNOWN_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
#: Root attribute holding the SHA-256 of the graph's content (nodes, edges and metadata);
#: readers that do not know it ignore it (FORMAT.md's layout lists datasets only).
HASH_ATTRIBUTE = "t1c_content_sha256"
COMPRESSIONS = (None, "gzip", "lzf")
_STR = h5py.string_dtype()
# A dataset may declare at most this many bytes beyond what it stores (compressed data
# legitimately stores less; a 2048x2048 all-zero gzip weight stores ~16 KiB).
_MAX_EXPANSION = 4096
_ALWAYS_OK_BYTES = 64 * 2**20
# Nested metadata groups deeper than this are refused (hard links can make a group its
# own child; following that would never end).
_MAX_METADATA_DEPTH = 32
# Graphs nested as nodes deeper than this are refused (same reason).
_MAX_GRAPH_DEPTH = 8
# Datasets of at most this many bytes are written with HDF5's compact layout (their data
# in their object header: fewer objects to write and read; any HDF5 reader reads them).
_COMPACT_BYTES = 1024
# Files are written in HDF5 1.8's format (read by every HDF5 since 2008, every h5py):
# its groups keep their links in their own header, about half the bytes of the older
# format's symbol tables (1.7 -> 0.9 KB for a Skip node), which also read faster.
_LIBVER = ("v108", "latest")


# -- writing -----------------------------------------------------------------------------
def write(
    path: str | os.PathLike,
    graph: Graph,
    *,
    compression: str | None = None,
    compression_opts: int | None = None,
    fsync: bool = False,
    content_hash: bool = True,
) -> None:
    """Write ``graph`` to ``path`` atomically.

    Atomicity (never a partial file, an existing file intact until the rename) holds
    with or without ``fsync``; ``fsync=True`` adds durability across a power loss at
    the cost of waiting for the disk (about 2x the write time for 134 MB here), which
    is why it is opt-in. The export callback turns it on: checkpoints are rare.

    The node and metadata groups record link creation order, so a graph read back
    lists its nodes (and so breaks topological-order ties) as the written one did.

    When ``path`` is a symbolic link, the file it points to is replaced and the link
    stays (as ``cp`` and most editors do); see :func:`t1c.ir.atomic.atomic_target`.

    Args:
        path: destination; its folder must exist.
        graph: a validated graph.
        compression: ``None``, ``"gzip"`` or ``"lzf"`` for array datasets; any HDF5
            reader (the existing toolchain's included) reads them transparently.
        compression_opts: gzip level 0..9.
        fsync: flush the file and its folder to disk around the rename (durable across
            a power loss). Off by default.
        content_hash: store the SHA-256 of the graph's content as the root attribute
            :data:`HASH_ATTRIBUTE`, which ``read`` verifies (on by default; readers that
            do not know it ignore it).
    """
    path = Path(path)
    if compression not in COMPRESSIONS:
        raise T1CFormatError(
            f"compression must be one of {COMPRESSIONS}, got {compression!r}", file=str(path)
        )
    if not graph.output_shapes:
        graph.validate()
    try:
        with (
            atomic_target(path, fsync=fsync) as tmp,
            h5py.File(tmp, "x", libver=_LIBVER) as f,
            _Digest() as digest,
        ):
            _write_graph(f, graph, compression, compression_opts, digest if content_hash else None)
            if content_hash:
                f.attrs.create(HASH_ATTRIBUTE, digest.hexdigest(graph.edges, graph.metadata), dtype=_STR)
    except T1CFormatError as err:
        raise err.within(file=str(path)) from None


def _write_graph(f: h5py.File, graph: Graph, compression, compression_opts, digest=None) -> None:
    out = _Creator(compression, compression_opts)
    out.value(f.id, "version", FORMAT_VERSION)
    g = out.group(f.id, "graph")
    out.value(g, "type", "Graph")
    _write_nodes_edges(out, g, graph, digest, "")
    if graph.metadata:
        _write_metadata(out, out.group(g, "metadata", ordered=True), graph.metadata, "metadata")


def _write_nodes_edges(out: _Creator, g: h5g.GroupID, graph: Graph, digest, prefix: str) -> None:
    """``nodes/`` and ``edges/`` of ``graph`` into ``g`` (``/graph``, or a nested Graph node's group)."""
    nodes = out.group(g, "nodes", ordered=True)  # keeps the graph's node order
    for name, node in graph.nodes.items():
        group = out.group(nodes, name)
        out.value(group, "type", node.TYPE)
        fields = node.to_fields()
        for field, value in fields.items():
            if isinstance(value, Graph):  # a nested graph: its nodes/ and edges/ in this group
                _write_nodes_edges(out, group, value, None, f"{prefix}{name}/")
                continue
            out.value(group, field, value, compress=True)
        if node.metadata:  # last in the group, as the toolchain writes it
            where = f"nodes/{prefix}{name}/metadata"
            _write_metadata(out, out.group(group, "metadata", ordered=True), node.metadata, where)
        if digest is not None:
            digest.add(name, node, fields)
    edges = out.group(g, "edges")
    out.value(edges, "src", np.array([s for s, _ in graph.edges], dtype=_STR))
    out.value(edges, "dst", np.array([d for _, d in graph.edges], dtype=_STR))


def _write_metadata(out: _Creator, group: h5g.GroupID, metadata: Mapping[str, Any], where: str) -> None:
    for key, value in metadata.items():
        key = str(key)
        if not key or "/" in key or "\x00" in key or key in (".", ".."):
            raise T1CFormatError(
                f"metadata key {key!r} cannot be an HDF5 name (no '/' or NUL, not '.' or '..')",
                field=f"{where}/{key!r}" if "\x00" in key else f"{where}/{key}",
            )
        if value is None:
            continue
        if isinstance(value, Mapping):
            _write_metadata(out, out.group(group, key, ordered=True), value, f"{where}/{key}")
            continue
        try:
            out.value(group, key, value)
        except T1CFormatError as err:
            raise T1CFormatError(err.reason, field=f"{where}/{key}") from None
        except (TypeError, ValueError, OverflowError) as err:
            raise T1CFormatError(
                f"cannot store {value!r} ({type(err).__name__}: {err}); use numbers, strings, bools, "
                "arrays or dicts of them",
                field=f"{where}/{key}",
            ) from None


class _Creator:
    """Makes one file's groups and datasets, with property lists made once per write.

    Every dataset but a compressed array goes through h5py's low-level API with a
    prepared file type, memory type and property list, ~3x faster than
    ``create_dataset``, which remakes them for each one; compressed arrays (chunked,
    filtered) go through ``create_dataset``. The file holds what ``create_dataset``
    writes, byte for byte: the same dtypes, shapes and values, strings as UTF-8
    variable-length strings, no time stamps (the same graph gives the same bytes).
    Scalars and arrays of at most :data:`_COMPACT_BYTES` are stored in their object
    header (HDF5's compact layout, read transparently by any HDF5 reader), larger
    uncompressed arrays contiguously.
    """

    def __init__(self, compression: str | None, compression_opts: int | None) -> None:
        self.compression, self.compression_opts = compression, compression_opts
        self._lcpl = {}  # as h5py names links: ASCII when the name is, else UTF-8
        for cset in (h5t.CSET_ASCII, h5t.CSET_UTF8):
            self._lcpl[cset] = lcpl = h5p.create(h5p.LINK_CREATE)
            lcpl.set_create_intermediate_group(True)
            lcpl.set_char_encoding(cset)
        self._gcpl = {}
        for ordered in (False, True):
            self._gcpl[ordered] = gcpl = h5p.create(h5p.GROUP_CREATE)
            gcpl.set_obj_track_times(False)
            if ordered:  # h5py's track_order=True
                gcpl.set_link_creation_order(h5p.CRT_ORDER_TRACKED | h5p.CRT_ORDER_INDEXED)
                gcpl.set_attr_creation_order(h5p.CRT_ORDER_TRACKED | h5p.CRT_ORDER_INDEXED)
        self._compact = h5p.create(h5p.DATASET_CREATE)
        self._compact.set_obj_track_times(False)
        self._compact.set_layout(h5d.COMPACT)
        self._contiguous = h5p.create(h5p.DATASET_CREATE)
        self._contiguous.set_obj_track_times(False)
        self._scalar = h5s.create(h5s.SCALAR)
        self._file_types: dict[np.dtype, h5t.TypeID] = {}

    def _name(self, name: str) -> tuple[bytes, h5p.PropLCID]:
        try:
            return name.encode("ascii"), self._lcpl[h5t.CSET_ASCII]
        except UnicodeEncodeError:
            return name.encode("utf-8"), self._lcpl[h5t.CSET_UTF8]

    def group(self, parent, name: str, *, ordered: bool = False) -> h5g.GroupID:
        """A new group ``name`` in ``parent``; ``ordered`` tracks link creation order."""
        encoded, lcpl = self._name(name)
        return h5g.create(parent, encoded, lcpl=lcpl, gcpl=self._gcpl[ordered])

    def value(self, parent, name: str, value: Any, *, compress: bool = False) -> None:
        """``value`` as dataset ``name``: text as UTF-8 strings, bool/int64/float64 scalars,
        arrays as their dtype (``compress``: with the write's compression, if any)."""
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if isinstance(value, str):
            arr = np.array(value, dtype=_STR)
        elif isinstance(value, (bool, np.bool_)):
            arr = np.array(value, dtype=np.bool_)
        elif isinstance(value, (int, np.integer)):
            arr = np.array(value, dtype=np.int64)
        elif isinstance(value, (float, np.floating)):
            arr = np.array(value, dtype=np.float64)
        else:
            arr = np.asarray(value)
            if arr.dtype.kind in "USO":
                items = [v.decode("utf-8") if isinstance(v, bytes) else v for v in arr.ravel()]
                if arr.ndim != 1 or not all(isinstance(v, str) for v in items):
                    raise T1CFormatError(
                        f"cannot store {value!r}: text must be a str or a flat list of str (convert with str())",
                        field=name,
                    )
                arr = np.array(items, dtype=_STR)
            elif arr.dtype.kind not in "fiub":
                raise T1CFormatError(f"cannot store a value of type {type(value).__name__}", field=name)
        if arr.ndim == 0:  # named as h5py names a scalar's link, in a scalar dataspace
            (encoded, lcpl), space, dcpl = self._name(name), self._scalar, self._compact
        elif compress and self.compression is not None and arr.size > 1 and arr.dtype.kind in "fiub":
            h5py.Group(parent).create_dataset(
                name,
                data=arr,
                dtype=arr.dtype,
                compression=self.compression,
                compression_opts=self.compression_opts,
            )  # chunked and filtered: rare, h5py picks the chunk shape
            return
        else:  # what create_dataset makes of an array without options: its name as given (no
            # link creation list), a simple dataspace, compact when small, no time stamps
            encoded, lcpl, space = name.encode("utf-8"), None, h5s.create_simple(arr.shape)
            dcpl = self._compact if arr.size * arr.dtype.itemsize <= _COMPACT_BYTES else self._contiguous
            arr = np.ascontiguousarray(arr)
        did = h5d.create(parent, encoded, self._file_type(arr.dtype), space, dcpl=dcpl, lcpl=lcpl)
        did.write(h5s.ALL, h5s.ALL, arr, mtype=_memory_type(arr.dtype))

    def _file_type(self, dtype: np.dtype) -> h5t.TypeID:
        """The file type ``create_dataset`` gives ``dtype``, made once per write (making it
        and the memory type, :func:`_memory_type`, is most of a small dataset's write)."""
        ftype = self._file_types.get(dtype)
        if ftype is None:
            ftype = self._file_types[dtype] = h5t.py_create(dtype, logical=True)
        return ftype


# Memory type h5py reads and writes each dtype with (``py_create(dtype)``), made once.
_MEMORY_TYPES: dict[np.dtype, h5t.TypeID] = {}


def _memory_type(dtype: np.dtype) -> h5t.TypeID:
    """The memory type h5py reads ``dtype`` into and writes it from, made once per dtype."""
    mtype = _MEMORY_TYPES.get(dtype)
    if mtype is None:
        mtype = _MEMORY_TYPES[dtype] = h5t.py_create(dtype)
    return mtype


# -- reading -----------------------------------------------------------------------------
def read_version(path: str | os.PathLike) -> str:
    """The format version string stored in a `.t1c` file.

    Raises:
        FileNotFoundError: there is no such file.
        PermissionError: the file cannot be opened for reading.
        T1CFormatError: not a regular file, not HDF5, or no scalar string ``/version``.
    """
    file = str(path)
    size = _regular_file_size(file)
    try:
        with _open(file, size) as f:
            return _read_string(_root(f).child("version", None, "version"), None, "version")
    except T1CFormatError as err:
        raise err.within(file=file) from None
    except MemoryError:
        raise T1CFormatError("ran out of memory reading it", file=file, field="version") from None
    except _READ_ERRORS as err:
        raise T1CFormatError(
            f"cannot be read ({type(err).__name__}: {err})", file=file, field="version"
        ) from err


def read(
    path: str | os.PathLike,
    *,
    validate: bool = True,
    max_bytes: int | None = None,
    max_elements: int | None = None,
) -> Graph:
    """Read a `.t1c` file into a validated :class:`~t1c.ir.Graph`.

    Args:
        path: the file.
        validate: validate the graph (structure, shapes) and verify the content hash
            when the file has one. ``False`` only checks that the file is well-formed
            T1C-IR, to inspect a broken graph.
        max_bytes: the most bytes the datasets may take once read (decompressed);
            ``None`` means :data:`MAX_BYTES` (2 GiB). Checked before anything is read.
        max_elements: the most elements any inferred shape may have (batch excluded);
            ``None`` means :data:`t1c.ir.graph.MAX_ELEMENTS`.

    Raises:
        FileNotFoundError: there is no such file.
        PermissionError: the file cannot be opened for reading.
        T1CFormatError: the file is not valid T1C-IR; the message names file, node, field.
    """
    file = str(path)
    limit = MAX_BYTES if max_bytes is None else int(max_bytes)
    size = _regular_file_size(file)
    reader = _Reader(size, limit)
    try:
        with _open(file, size) as f, _Digest() as digest:
            root = _root(f)
            _check_version(_read_string(root.child("version", None, "version"), None, "version"))
            expected = _stored_hash(f) if validate else None
            g = root.child("graph", None, "graph", want="group")
            graph_type = _read_string(g.child("type", None, "graph/type"), None, "graph/type")
            if graph_type != "Graph":
                raise T1CFormatError(f"must be 'Graph', got {graph_type!r}", field="graph/type")
            nodes_group = g.child("nodes", None, "graph/nodes", want="group", ordered=True)
            nodes = {}
            for name in nodes_group.links:
                _check_name(name, None, "graph/nodes")
                reader.node, reader.field = name, None
                nodes[name] = node = reader.node_from(nodes_group, name)
                if expected is not None:
                    digest.add(name, node)  # hashed on a worker thread while we read on
            reader.node = None
            edges = reader.edges_from(g.child("edges", None, "graph/edges", want="group"))
            metadata = {}
            if "metadata" in g.links:
                metadata = reader.metadata_from(
                    g.child("metadata", None, "graph/metadata", want="group", ordered=True), "metadata", 0
                )
            graph = Graph(nodes, edges, metadata, validate=validate, max_elements=max_elements)
            if expected is not None and digest.hexdigest(graph.edges, graph.metadata) != expected:
                raise T1CFormatError(
                    "the content hash does not match the nodes, edges and metadata: the file was "
                    "corrupted (or edited by a tool that did not update the hash) after t1c wrote it; "
                    "export it again, or read it with validate=False to inspect it",
                    field=HASH_ATTRIBUTE,
                )
        return graph
    except T1CFormatError as err:
        raise err.within(file=file) from None
    except MemoryError:
        raise T1CFormatError(
            f"ran out of memory reading it (max_bytes={limit}); free memory or lower max_bytes",
            file=file,
            node=reader.node,
            field=reader.field,
        ) from None
    except _READ_ERRORS as err:
        raise T1CFormatError(
            f"cannot be read ({type(err).__name__}: {err})", file=file, node=reader.node, field=reader.field
        ) from err


# What h5py and numpy raise on damaged files; all become a T1CFormatError.
_READ_ERRORS = (
    OSError,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    RuntimeError,
    OverflowError,
    AttributeError,
    UnicodeDecodeError,
)


def _check_version(version: str) -> None:
    parts = version.split(".")
    if not version or not all(p.isdigit() for p in parts):
        raise T1CFormatError(
            f"must be a format version like '{FORMAT_VERSION}', got {version!r}", field="version"
        )
    if int(parts[0]) > FORMAT_MAJOR:
        raise T1CFormatError(
            f"is {version}, a newer major format version than this t1c reads ({FORMAT_MAJOR}.x, "
            f"writes {FORMAT_VERSION}); upgrade t1c to read it",
            field="version",
        )


def _stored_hash(fid: h5f.FileID) -> str | None:
    """The file's content hash attribute, checked to be a scalar 64-hex-digit string."""
    name = HASH_ATTRIBUTE.encode()
    if not h5a.exists(fid, name):
        return None
    attr = h5a.open(fid, name)
    tid = attr.get_type()
    if attr.shape != () or tid.get_class() != h5t.STRING:
        raise T1CFormatError("must be a scalar string", field=HASH_ATTRIBUTE)
    # Read low-level (h5py's attrs[] takes ~5x longer): a variable-length string as bytes,
    # a fixed-length one as numpy bytes.
    out = np.empty((), dtype=object if tid.is_variable_str() else attr.dtype)
    attr.read(out)
    value = out[()]
    value = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise T1CFormatError(f"must be 64 hex digits (a SHA-256), got {value[:80]!r}", field=HASH_ATTRIBUTE)
    return value


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
    stat.S_IFSOCK: "a socket",
}


def _regular_file_size(path: str) -> int:
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
def _open(path: str, size: int) -> Iterator[h5f.FileID]:
    """The HDF5 file at ``path`` (checked by :func:`_regular_file_size`), plugins off.

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


# -- opening objects -----------------------------------------------------------------------
# A graph of many small nodes is bound by h5py's cost per object: an h5py.Group or
# h5py.Dataset costs several low-level calls more than the reader needs. The reader
# opens every object through these two classes instead, which list a group's links once
# and fetch a dataset's type, shape and stored size once (its creation properties only
# where its header says they can hold something to refuse), for every check.

_LINK_KINDS = {h5l.TYPE_SOFT: "SoftLink", h5l.TYPE_EXTERNAL: "ExternalLink"}
_WANTED = {"dataset": "a dataset", "group": "a group", "any": "a group or a dataset"}
_VLEN_STR = {h5t.CSET_ASCII: h5py.string_dtype("ascii"), h5t.CSET_UTF8: h5py.string_dtype("utf-8")}


class _Group:
    """An open group and its links, listed once: name -> link type.

    Names are in the order h5py lists them (creation order where the group tracks it,
    when ``ordered``); a name that is not valid UTF-8 stays ``bytes``.
    """

    __slots__ = ("id", "links")

    def __init__(self, gid: h5g.GroupID, *, ordered: bool = False) -> None:
        self.id = gid
        self.links: dict[str | bytes, int] = {}
        index = h5.INDEX_NAME
        if ordered and gid.get_create_plist().get_link_creation_order() & h5p.CRT_ORDER_TRACKED:
            index = h5.INDEX_CRT_ORDER
        gid.links.iterate(self._add, idx_type=index, info=True)

    def _add(self, name: bytes, info) -> None:
        try:
            self.links[name.decode("utf-8")] = info.type
        except UnicodeDecodeError:
            self.links[name] = info.type

    def child(
        self, name: str, node: str | None, field: str, *, want: str = "dataset", ordered: bool = False
    ) -> _Group | _Dataset:
        """The object linked as ``name``: a ``want`` of "group", "dataset" or "any".

        Links other than hard links are refused (never followed), as are datasets whose
        data is not in the file or that use a filter t1c does not know.
        """
        link_type = self.links.get(name)
        if link_type is None:
            raise T1CFormatError("is missing", node=node, field=field)
        if link_type != h5l.TYPE_HARD:
            kind = _LINK_KINDS.get(link_type, "user-defined link")
            raise T1CFormatError(
                f"is a {kind}; links are not followed, the data must be in the file", node=node, field=field
            )
        encoded = name.encode("utf-8")
        try:  # opened as the kind expected (a dataset for "any"): up to 40% cheaper than h5o.open
            obj = (h5g.open if want == "group" else h5d.open)(self.id, encoded)
        except (KeyError, ValueError, TypeError, OSError):  # another kind (or unreadable): h5o.open tells
            obj = h5o.open(self.id, encoded)
        if isinstance(obj, h5g.GroupID) and want != "dataset":
            return _Group(obj, ordered=ordered)
        if isinstance(obj, h5d.DatasetID) and want != "group":
            return _Dataset(obj, node, field)
        raise T1CFormatError(f"must be {_WANTED[want]}", node=node, field=field)


# Object header message types (HDF5 file format spec, IV.A.2): a dataset's header has a
# layout message; one with an external file list or a filter pipeline message needs the
# full check of its creation properties.
_LAYOUT_MESSAGE = 1 << 0x0008
_EXTERNAL_OR_FILTERS = (1 << 0x0007) | (1 << 0x000B)


def _known_types() -> dict[int, list[tuple[h5t.TypeID, np.dtype]]]:
    """The numeric file types t1c writes and what h5py reads each as, by type class (the
    commonest first): a file type equal to one is read as its dtype, without h5py's
    slower translation of the type."""
    known: dict[int, list[tuple[h5t.TypeID, np.dtype]]] = {}
    for code in ("<f4", "<f8", "<i8", "?", "<i4", "<f2", "<i1", "<i2", "<u1", "<u2", "<u4", "<u8"):
        tid = h5t.py_create(np.dtype(code), logical=True)
        known.setdefault(tid.get_class(), []).append((tid, tid.dtype))
    return known


_KNOWN_TYPES = _known_types()


class _Dataset:
    """An open dataset with its dtype, shape and stored size, checked on opening to keep
    its data in the file (no virtual dataset, no external storage) and to use only known
    filters.

    The creation properties (a copy HDF5 makes, the dearest part of opening a small
    dataset) are checked only where the object header can hold something to refuse: an
    external file list or filter pipeline message, no layout message, or no stored
    bytes (a virtual dataset stores none in the file); a dataset stored in the file
    without filters, compact or contiguous, has nothing there to refuse.
    """

    __slots__ = ("id", "dtype", "shape", "stored", "string")

    def __init__(self, did: h5d.DatasetID, node: str | None, field: str) -> None:
        self.stored: int = did.get_storage_size()
        messages = h5o.get_info(did).hdr.mesg.present if self.stored else 0
        if messages & (_LAYOUT_MESSAGE | _EXTERNAL_OR_FILTERS) != _LAYOUT_MESSAGE:
            _check_storage(did.get_create_plist(), node, field)
        space = did.get_space()
        if space.get_simple_extent_type() == h5s.NULL:
            raise T1CFormatError("holds no value (an empty dataspace)", node=node, field=field)
        self.id = did
        self.shape: tuple[int, ...] = space.get_simple_extent_dims()
        tid = did.get_type()
        type_class = tid.get_class()
        dtype = None
        if type_class == h5t.STRING and tid.is_variable_str():
            dtype = _VLEN_STR.get(tid.get_cset())  # a string's dtype, without h5py's cost
        else:
            for known, known_dtype in _KNOWN_TYPES.get(type_class, ()):
                if tid.equal(known):
                    dtype = known_dtype
                    break
        self.dtype: np.dtype = tid.dtype if dtype is None else dtype
        kind = self.dtype.kind
        self.string: bool = kind == "S" or (
            kind not in "fiub" and h5py.check_string_dtype(self.dtype) is not None
        )

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def read(self) -> np.ndarray:
        """All of it, into a new array of its dtype (strings as ``bytes`` objects)."""
        out = np.empty(self.shape, dtype=self.dtype)
        if out.size:
            self.id.read(h5s.ALL, h5s.ALL, out, mtype=_memory_type(self.dtype))
        return out


def _root(fid: h5f.FileID) -> _Group:
    return _Group(h5g.open(fid, b"/"))


def _check_storage(plist: h5p.PropDCID, node: str | None, field: str) -> None:
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


class _Reader:
    """Reads one file's nodes, edges and metadata, tracking where it is (for messages)
    and how many bytes the file may still make it allocate."""

    def __init__(self, size: int, max_bytes: int) -> None:
        """Cap the total at ``max_bytes`` and at a multiple of the file's ``size``."""
        self.node: str | None = None
        self.field: str | None = None
        self.depth = 0  # of nested Graph nodes
        self.max_bytes = max_bytes
        self.file_cap = max(_ALWAYS_OK_BYTES, _MAX_EXPANSION * size)
        self.budget = min(max_bytes, self.file_cap)

    def checked(self, dset: _Dataset, node: str | None, field: str) -> _Dataset:
        """Refuse a dataset whose declared size is out of proportion to what it stores."""
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
        if declared > self.budget:
            if self.max_bytes <= self.file_cap:
                why = (
                    f"of the max_bytes budget of {self.max_bytes} bytes for one read; if the file is "
                    "trusted and that much memory is free, pass max_bytes= to ir.read"
                )
            else:
                why = "of what this file's size allows to be read (datasets hard-linked many times?)"
            raise T1CFormatError(
                f"declares shape {list(dset.shape)} ({declared} bytes), more than the {self.budget} bytes "
                f"left {why}",
                node=node,
                field=field,
            )
        self.budget -= declared
        return dset

    def strings(self, dset: _Dataset, node, field) -> list[str]:
        if dset.ndim != 1 or not dset.string:
            raise T1CFormatError(
                f"must be a 1-D array of strings, got {dset.dtype} of shape {list(dset.shape)}",
                node=node,
                field=field,
            )
        self.checked(dset, node, field)
        try:
            return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in dset.read()]
        except UnicodeDecodeError as err:
            raise T1CFormatError(f"is not valid UTF-8 ({err})", node=node, field=field) from None

    def field_from(self, dset: _Dataset, kind: str, node: str, field: str) -> Any:
        if kind == "str":
            return _read_string(dset, node, field)
        dtype, shape = dset.dtype, dset.shape
        if kind in _SPELLED and shape == () and dset.string:
            # The toolchain re-writes numpy scalars it read as their str(): "8", "False".
            return _spelled(kind, _read_string(dset, node, field), node, field)
        if dset.string or dtype.kind not in "fiub":
            raise T1CFormatError(f"must hold numbers, got dtype {dtype}", node=node, field=field)
        if kind == "float_array":
            if dtype.kind != "f":
                raise T1CFormatError(f"must be a float array, got dtype {dtype}", node=node, field=field)
            self.checked(dset, node, field)
            # Straight into the result (~20% faster than dset[()] for large weights); float16/64
            # as stored: the node converts it and refuses float32 overflow.
            return dset.read()
        if kind == "int_array":
            if dtype.kind not in "iu":
                raise T1CFormatError(f"must be an integer array, got dtype {dtype}", node=node, field=field)
            return self.checked(dset, node, field).read()
        if kind in ("int_vector", "int_pair"):
            if dtype.kind not in "iu":
                raise T1CFormatError(f"must be an int64 array, got dtype {dtype}", node=node, field=field)
            if len(shape) != 1 or (kind == "int_pair" and shape != (2,)):
                want = "[2]" if kind == "int_pair" else "[k]"
                raise T1CFormatError(f"must have shape {want}, got {list(shape)}", node=node, field=field)
            return np.asarray(self.checked(dset, node, field).read(), dtype=np.int64)
        if shape != ():
            raise T1CFormatError(f"must be a scalar, got shape {list(shape)}", node=node, field=field)
        value = self.checked(dset, node, field).read()[()]
        if kind == "float":
            if dtype.kind not in "fiu":
                raise T1CFormatError(f"must be a number, got dtype {dtype}", node=node, field=field)
            return float(value)
        if kind == "int":
            if dtype.kind not in "iu":
                raise T1CFormatError(f"must be an integer, got dtype {dtype}", node=node, field=field)
            return int(value)
        if dtype.kind not in "biu":
            raise T1CFormatError(f"must be a boolean, got dtype {dtype}", node=node, field=field)
        return value  # checked to be 0/1 by the node

    def node_from(self, nodes_group: _Group, name: str):
        group = nodes_group.child(name, name, "nodes", want="group")
        self.field = "type"
        type_name = _read_string(group.child("type", name, "type"), name, "type")
        cls = REGISTRY.get(type_name)
        if cls is None:
            raise T1CFormatError(
                f"has unknown node type {type_name!r}; known types: {sorted(REGISTRY)}",
                node=name,
                field="type",
            )
        fields = {}
        present = group.links
        for field, (kind, optional) in cls.field_specs().items():
            self.field = field
            if kind == "graph":  # the node's own group holds nodes/ and edges/, as /graph does
                fields[field] = self.subgraph_from(group, name)
                continue
            if field not in present:
                if optional:
                    continue
                raise T1CFormatError(f"is missing (required by {type_name})", node=name, field=field)
            fields[field] = self.field_from(group.child(field, name, field), kind, name, field)
        metadata = {}
        if "metadata" in present:
            self.field = "metadata"
            try:
                metadata = self.metadata_from(
                    group.child("metadata", name, "metadata", want="group", ordered=True), "metadata", 0
                )
            except T1CFormatError as err:
                raise err.within(node=name) from None
        self.field = None
        try:
            node = cls.from_fields(fields)
        except T1CFormatError as err:
            raise err.within(node=name) from None
        if metadata:
            node.metadata = metadata
        return node

    def subgraph_from(self, group: _Group, name: str) -> Graph:
        """The graph nested as node ``name``: its group holds ``nodes/`` and ``edges/``.

        Errors name the inner node as ``outer/inner``. Nesting is capped (a group
        hard-linked into itself would never end).
        """
        self.depth += 1
        try:
            if self.depth > _MAX_GRAPH_DEPTH:
                raise T1CFormatError(
                    f"nests graphs deeper than {_MAX_GRAPH_DEPTH} levels (a group linked into itself?)",
                    node=name,
                    field="nodes",
                )
            nodes_group = group.child("nodes", name, "nodes", want="group", ordered=True)
            nodes = {}
            for inner in nodes_group.links:
                _check_name(inner, name, "nodes")
                self.node = f"{name}/{inner}"
                try:
                    nodes[inner] = self.node_from(nodes_group, inner)
                except T1CFormatError as err:
                    raise T1CFormatError(
                        err.reason, node=f"{name}/{err.node or inner}", field=err.field
                    ) from None
            self.node = name
            try:
                edges = self.edges_from(group.child("edges", name, "edges", want="group"))
            except T1CFormatError as err:
                raise err.within(node=name) from None
            return Graph(nodes, edges, validate=False)
        finally:
            self.depth -= 1

    def edges_from(self, group: _Group) -> list[tuple[str, str]]:
        self.field = "edges"
        src = self.strings(group.child("src", None, "graph/edges/src"), None, "graph/edges/src")
        dst = self.strings(group.child("dst", None, "graph/edges/dst"), None, "graph/edges/dst")
        if len(src) != len(dst):
            raise T1CFormatError(f"src has {len(src)} entries but dst has {len(dst)}", field="graph/edges")
        self.field = None
        return list(zip(src, dst))

    def metadata_from(self, group: _Group, where: str, depth: int) -> dict[str, Any]:
        if depth > _MAX_METADATA_DEPTH:
            raise T1CFormatError(
                f"nests deeper than {_MAX_METADATA_DEPTH} levels (a group linked into itself?)", field=where
            )
        out: dict[str, Any] = {}
        for key in group.links:
            _check_name(key, None, where)
            dset = group.child(key, None, f"{where}/{key}", want="any", ordered=True)
            if isinstance(dset, _Group):
                out[key] = self.metadata_from(dset, f"{where}/{key}", depth + 1)
                continue
            if dset.string:
                out[key] = (
                    _read_string(dset, None, f"{where}/{key}")
                    if dset.shape == ()
                    else self.strings(dset, None, f"{where}/{key}")
                )
                continue
            if dset.dtype.kind not in "fiub":
                raise T1CFormatError(f"has unsupported dtype {dset.dtype}", field=f"{where}/{key}")
            value = self.checked(dset, None, f"{where}/{key}").read()
            if dset.shape == ():
                value = value.item()
            out[key] = value
        return out


# Scalar kinds the toolchain may have stored as decimal strings (FORMAT_HYBRID.md, "read ->
# write by the reference is lossy"): only strings that spell a value of the kind are read.
_SPELLED = {
    "int": (re.compile(r"[+-]?[0-9]+"), int, "an integer"),
    "float": (
        re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"),
        float,
        "a finite decimal number",
    ),
    "bool": (re.compile(r"True|False"), lambda text: text == "True", "a boolean ('True' or 'False')"),
}


def _spelled(kind: str, text: str, node: str | None, field: str) -> Any:
    """The value a decimal string spells (``"8"``, ``"0.5"``, ``"False"``), or an error."""
    pattern, convert, what = _SPELLED[kind]
    if len(text) > 64 or not pattern.fullmatch(text):
        shown = text if len(text) <= 64 else text[:64] + "..."
        raise T1CFormatError(
            f"is the string {shown!r}, which does not spell {what}; store numbers with their numeric dtype",
            node=node,
            field=field,
        )
    return convert(text)


def _check_name(name: str | bytes, node: str | None, field: str) -> None:
    """Refuse a listed node name or metadata key that is not valid UTF-8 (listed as
    ``bytes``) or that HDF5 would take as a path: a crafted link named ``a/b`` would be
    opened through ``a``, which may be a link the listing never showed."""
    if isinstance(name, bytes) or "/" in name or name == ".":
        raise T1CFormatError(
            f"has a member named {name!r}; names must be UTF-8 without '/' and not '.'",
            node=node,
            field=field,
        )


def _read_string(dset: _Dataset, node, field) -> str:
    if dset.shape != () or not dset.string:
        raise T1CFormatError(
            f"must be a scalar string, got {dset.dtype} of shape {list(dset.shape)}", node=node, field=field
        )
    value = dset.read()[()]
    try:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError as err:
        raise T1CFormatError(f"is not valid UTF-8 ({err})", node=node, field=field) from None


# -- content hash ------------------------------------------------------------------------
# The hash covers what a graph means, not how HDF5 laid it out: node names and types,
# every field the node writes, node metadata (where a node type has it), the edges in
# order and the graph metadata. Each value is encoded canonically (text as UTF-8,
# integers as int64, floats by value, arrays little-endian with dtype and shape), so the
# graph written and the graph read back hash alike whatever the string storage or byte
# order in the file.
_THREADED_BYTES = 1 << 20  # nodes holding more than this are hashed on a worker thread


class _Digest:
    """SHA-256 of a graph's content, fed node by node; large nodes are hashed on worker
    threads (hashlib releases the GIL) while the caller goes on reading or writing."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._nodes: dict[str, bytes | Future] = {}

    def __enter__(self) -> _Digest:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, name: str, node: Node, fields: dict[str, Any] | None = None) -> None:
        """Hash ``node`` under ``name``; ``fields`` is its ``to_fields()`` when the caller has it."""
        if fields is None:
            fields = node.to_fields()
        size = sum(v.nbytes for v in fields.values() if isinstance(v, np.ndarray))
        if size < _THREADED_BYTES:
            self._nodes[name] = _node_digest(node, fields)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
        self._nodes[name] = self._pool.submit(_node_digest, node, fields)

    def hexdigest(self, edges: list[tuple[str, str]], metadata: Mapping[str, Any]) -> str:
        h = hashlib.sha256(b"t1c-graph-v1\n")
        for name in sorted(self._nodes):
            part = self._nodes[name]
            _feed(h, name)
            h.update(part.result() if isinstance(part, Future) else part)
        h.update(b"edges")
        for src, dst in edges:
            _feed(h, src)
            _feed(h, dst)
        h.update(b"metadata")
        _feed(h, metadata)
        return h.hexdigest()


def _node_digest(node: Node, fields: dict[str, Any] | None = None) -> bytes:
    h = hashlib.sha256()
    _feed(h, node.TYPE)
    _feed(h, node.to_fields() if fields is None else fields)
    _feed(h, node.metadata or {})
    return h.digest()


def _feed(h, value: Any) -> None:
    """Feed one value's canonical encoding to the hash ``h``."""
    kind = type(value)  # the common exact types first (the same bytes as the general cases below)
    if kind is str:
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(data) + data)
    elif kind is float:
        h.update(b"f" + repr(value).encode() + b";")
    elif kind is np.ndarray and value.ndim and value.dtype.kind in "fiub":
        _feed_numbers(h, value)
    elif kind is bool:
        h.update(b"b1;" if value else b"b0;")
    elif kind is int:
        h.update(b"i%d;" % value)
    elif value is None:
        h.update(b"N;")
    elif isinstance(value, Graph):
        with _Digest() as inner:
            for name, node in value.nodes.items():
                inner.add(name, node)
            h.update(b"G" + inner.hexdigest(value.edges, value.metadata).encode())
    elif isinstance(value, Node):
        h.update(b"T" + _node_digest(value))
    elif isinstance(value, Mapping):
        h.update(b"{")
        for key in sorted(value, key=str):
            if value[key] is not None:  # the writer leaves None entries out
                _feed(h, str(key))
                _feed(h, value[key])
        h.update(b"}")
    elif isinstance(value, (str, bytes)):
        data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(data) + data)
    elif isinstance(value, (bool, np.bool_)):
        h.update(b"b1;" if value else b"b0;")
    elif isinstance(value, (int, np.integer)):
        h.update(b"i%d;" % int(value))
    elif isinstance(value, (float, np.floating)):
        h.update(b"f" + repr(float(value)).encode() + b";")
    else:
        arr = np.asarray(value)
        if arr.ndim == 0:
            _feed(h, arr.item())
        elif arr.dtype.kind in "USO":
            h.update(b"S%d[" % arr.size)
            for item in arr.reshape(-1).tolist():
                _feed(h, item if isinstance(item, (str, bytes)) else str(item))
        elif arr.dtype.kind in "fiub":
            _feed_numbers(h, arr)
        else:
            raise T1CFormatError(f"cannot hash a value of type {type(value).__name__}")


def _feed_numbers(h, arr: np.ndarray) -> None:
    """Feed a numeric array of at least one dimension: integers and booleans as int64
    (int32 and int64 storage hash alike); floats keep their width, in little-endian order."""
    want = _INT64_LE if arr.dtype.kind in "iub" else arr.dtype.newbyteorder("<")
    arr = np.ascontiguousarray(arr, dtype=want)
    h.update(f"A{want.str}{list(arr.shape)};".encode())
    h.update(arr.reshape(-1).view(np.uint8))


_INT64_LE = np.dtype("<i8")
