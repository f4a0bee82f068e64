"""Writing `.t1c` files (HDF5, layout in FORMAT.md), atomically.

One path for every primitive: ``write`` asks each node for its fields
(:meth:`~t1c.ir.Node.to_fields`) and stores each as a dataset of the node's group. It is
atomic: it writes a temporary file in the destination folder and renames it over the
destination, so an exception or a kill leaves either the old file or the new one, never
a partial one. A symbolic link as destination is written through (the file it points to
is replaced, the link stays). The content checksum
(:data:`~t1c.ir.hashing.CHECKSUM_ATTRIBUTE`) is stored by default.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5g, h5p, h5s, h5t

from .atomic import atomic_target
from .errors import T1CFormatError
from .fileformat import FORMAT_VERSION, RECURRENT_ATTRIBUTE, STRING_DTYPE, memory_type
from .graph import Graph
from .hashing import CHECKSUM_ATTRIBUTE, Digest

#: The compressions ``write`` offers for array datasets.
COMPRESSIONS = (None, "gzip", "lzf")
#: Datasets of at most this many bytes are written with HDF5's compact layout (their data
#: in their object header: fewer objects to write and read; any HDF5 reader reads them).
COMPACT_BYTES = 1024
#: Files are written in HDF5 1.8's format (read by every HDF5 since 2008, every h5py):
#: its groups keep their links in their own header, about half the bytes of the older
#: format's symbol tables (1.7 -> 0.9 KB for a Skip node), which also read faster.
LIBVER = ("v108", "latest")


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
        content_hash: store the checksum of the graph's content as the root attribute
            :data:`CHECKSUM_ATTRIBUTE`, which ``read`` verifies (on by default; readers
            that do not know it ignore it). The SHA-256 attribute that t1c wrote before
            (:data:`~t1c.ir.hashing.HASH_ATTRIBUTE`, read 2x slower) is no longer written:
            older t1c readers read these files without checking them, as any file
            without it.
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
            h5py.File(tmp, "x", libver=LIBVER) as f,
            Digest(CHECKSUM_ATTRIBUTE) as digest,
        ):
            _write_graph(f, graph, compression, compression_opts, digest if content_hash else None)
            if graph.cyclic:
                f.attrs.create(RECURRENT_ATTRIBUTE, 1, dtype=np.int64)
            if content_hash:
                f.attrs.create(
                    CHECKSUM_ATTRIBUTE, digest.hexdigest(graph.edges, graph.metadata), dtype=STRING_DTYPE
                )
    except T1CFormatError as err:
        raise err.within(file=str(path)) from None
    except (OSError, RuntimeError) as err:
        code = _out_of_space(err)
        if code is None:
            raise
        raise OSError(
            code, f"cannot write '{path}': {_OUT_OF_SPACE[code]}; an existing file there is unchanged"
        ) from err


# What libhdf5 reports (as an errno in an h5py error's text) when a write finds no room.
_OUT_OF_SPACE = {
    errno.ENOSPC: "the disk is full (free some space and write it again)",
    errno.EDQUOT: "the disk quota is exceeded (free some space and write it again)",
    errno.EFBIG: "the file would be larger than this file system or the file size limit (ulimit -f) allows",
}
_ERRNO = re.compile(r"errno = (\d+)")


def _out_of_space(err: BaseException) -> int | None:
    """The errno in :data:`_OUT_OF_SPACE` behind an h5py error, or None.

    A failed write is an ``OSError`` from h5py whose text carries libhdf5's ``errno = N``;
    closing the file then often fails too, and that ``RuntimeError`` is what escapes,
    with the first error as its context: the whole chain is searched.
    """
    for _ in range(8):  # an exception chain is short; a cycle must not hang here
        if err is None:
            return None
        codes = [getattr(err, "errno", None), *(int(n) for n in _ERRNO.findall(str(err)))]
        for code in codes:
            if code in _OUT_OF_SPACE:
                return code
        err = err.__cause__ or err.__context__
    return None


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
    out.value(edges, "src", np.array([s for s, _ in graph.edges], dtype=STRING_DTYPE))
    out.value(edges, "dst", np.array([d for _, d in graph.edges], dtype=STRING_DTYPE))


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
    Scalars and arrays of at most :data:`COMPACT_BYTES` are stored in their object
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
            arr = np.array(value, dtype=STRING_DTYPE)
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
                arr = np.array(items, dtype=STRING_DTYPE)
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
            dcpl = self._compact if arr.size * arr.dtype.itemsize <= COMPACT_BYTES else self._contiguous
            arr = np.ascontiguousarray(arr)
        did = h5d.create(parent, encoded, self._file_type(arr.dtype), space, dcpl=dcpl, lcpl=lcpl)
        did.write(h5s.ALL, h5s.ALL, arr, mtype=memory_type(arr.dtype))

    def _file_type(self, dtype: np.dtype) -> h5t.TypeID:
        """The file type ``create_dataset`` gives ``dtype``, made once per write (making it
        and the memory type, :func:`memory_type`, is most of a small dataset's write)."""
        ftype = self._file_types.get(dtype)
        if ftype is None:
            ftype = self._file_types[dtype] = h5t.py_create(dtype, logical=True)
        return ftype
