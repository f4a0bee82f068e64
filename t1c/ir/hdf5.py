"""Reading and writing `.t1c` files (HDF5, layout in FORMAT.md).

One path for every primitive: ``write`` asks each node for its fields, ``read`` checks
each dataset against the field kinds the node's class declares and builds the node
through the registry. A reader of untrusted files must not be tricked, so ``read``:

* refuses soft and external links (it never opens another file or follows a path);
* refuses datasets whose bytes live outside the file (external raw storage, virtual
  datasets), so a crafted file cannot read other files on the machine into a graph;
* checks each dataset's declared size against the bytes it really stores before
  reading it, and caps the total it reads at a multiple of the file's size, so a file
  cannot make it allocate gigabytes from a header;
* turns every problem into a :class:`T1CFormatError` naming the file, node and field.

``write`` is atomic: it writes a temporary file in the destination folder and renames
it over the destination, so an exception or a kill leaves either the old file or the
new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .atomic import atomic_target
from .errors import T1CFormatError
from .graph import Graph
from .node import REGISTRY

FORMAT_VERSION = "0.0.1"
COMPRESSIONS = (None, "gzip", "lzf")
_STR = h5py.string_dtype()
# A dataset may declare at most this many bytes beyond what it stores (compressed data
# legitimately stores less; a 2048x2048 all-zero gzip weight stores ~16 KiB).
_MAX_EXPANSION = 4096
_ALWAYS_OK_BYTES = 64 * 2**20
# Nested metadata groups deeper than this are refused (hard links can make a group its
# own child; following that would never end).
_MAX_METADATA_DEPTH = 32


# -- writing -----------------------------------------------------------------------------
def write(
    path: str | os.PathLike,
    graph: Graph,
    *,
    compression: str | None = None,
    compression_opts: int | None = None,
    fsync: bool = False,
) -> None:
    """Write ``graph`` to ``path`` atomically.

    Atomicity (never a partial file, an existing file intact until the rename) holds
    with or without ``fsync``; ``fsync=True`` adds durability across a power loss at
    the cost of waiting for the disk (about 2x the write time for 134 MB here), which
    is why it is opt-in. The export callback turns it on: checkpoints are rare.

    The node and metadata groups record link creation order, so a graph read back
    lists its nodes (and so breaks topological-order ties) as the written one did.

    Args:
        path: destination; its folder must exist.
        graph: a validated graph.
        compression: ``None``, ``"gzip"`` or ``"lzf"`` for array datasets; any HDF5
            reader (the existing toolchain's included) reads them transparently.
        compression_opts: gzip level 0..9.
        fsync: flush the file and its folder to disk around the rename (durable across
            a power loss). Off by default.
    """
    path = Path(path)
    if compression not in COMPRESSIONS:
        raise T1CFormatError(
            f"compression must be one of {COMPRESSIONS}, got {compression!r}", file=str(path)
        )
    if not graph.output_shapes:
        graph.validate()
    try:
        with atomic_target(path, fsync=fsync) as tmp, h5py.File(tmp, "x") as f:
            _write_graph(f, graph, compression, compression_opts)
    except T1CFormatError as err:
        raise err.within(file=str(path)) from None


def _write_graph(f: h5py.File, graph: Graph, compression, compression_opts) -> None:
    f.create_dataset("version", data=FORMAT_VERSION, dtype=_STR)
    g = f.create_group("graph")
    g.create_dataset("type", data="Graph", dtype=_STR)
    nodes = g.create_group("nodes", track_order=True)  # keeps the graph's node order
    for name, node in graph.nodes.items():
        group = nodes.create_group(name)
        group.create_dataset("type", data=node.TYPE, dtype=_STR)
        for field, value in node.to_fields().items():
            _write_value(group, field, value, compression, compression_opts)
    edges = g.create_group("edges")
    edges.create_dataset("src", data=[s for s, _ in graph.edges], dtype=_STR)
    edges.create_dataset("dst", data=[d for _, d in graph.edges], dtype=_STR)
    if graph.metadata:
        _write_metadata(g.create_group("metadata", track_order=True), graph.metadata, "metadata")


def _write_value(group: h5py.Group, name: str, value: Any, compression=None, opts=None) -> None:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        group.create_dataset(name, data=value, dtype=_STR)
    elif isinstance(value, (bool, np.bool_)):
        group.create_dataset(name, data=np.bool_(value))
    elif isinstance(value, (int, np.integer)):
        group.create_dataset(name, data=np.int64(value))
    elif isinstance(value, (float, np.floating)):
        group.create_dataset(name, data=np.float64(value))
    else:
        arr = np.asarray(value)
        if arr.dtype.kind in "USO":
            items = [v.decode("utf-8") if isinstance(v, bytes) else v for v in arr.ravel()]
            if arr.ndim != 1 or not all(isinstance(v, str) for v in items):
                raise T1CFormatError(
                    f"cannot store {value!r}: text must be a str or a flat list of str (convert with str())",
                    field=name,
                )
            group.create_dataset(name, data=items, dtype=_STR)
            return
        if arr.dtype.kind not in "fiub":
            raise T1CFormatError(f"cannot store a value of type {type(value).__name__}", field=name)
        kwargs = {}
        if compression is not None and arr.ndim >= 1 and arr.size > 1:
            kwargs = {"compression": compression, "compression_opts": opts}
        group.create_dataset(name, data=arr, **kwargs)


def _write_metadata(group: h5py.Group, metadata: Mapping[str, Any], where: str) -> None:
    for key, value in metadata.items():
        key = str(key)
        if not key or "/" in key or key in (".", ".."):
            raise T1CFormatError(
                f"metadata key {key!r} cannot be an HDF5 name (no '/')", field=f"{where}/{key}"
            )
        if value is None:
            continue
        if isinstance(value, Mapping):
            _write_metadata(group.create_group(key, track_order=True), value, f"{where}/{key}")
            continue
        try:
            _write_value(group, key, value)
        except T1CFormatError as err:
            raise T1CFormatError(err.reason, field=f"{where}/{key}") from None
        except (TypeError, ValueError, OverflowError) as err:
            raise T1CFormatError(
                f"cannot store {value!r} ({type(err).__name__}: {err}); use numbers, strings, bools, "
                "arrays or dicts of them",
                field=f"{where}/{key}",
            ) from None


# -- reading -----------------------------------------------------------------------------
def read_version(path: str | os.PathLike) -> str:
    """The format version string stored in a `.t1c` file.

    Raises:
        FileNotFoundError: there is no such file.
        T1CFormatError: the file is not HDF5 or has no scalar string ``/version``.
    """
    file = str(path)
    if not os.path.exists(file):
        raise FileNotFoundError(f"no such .t1c file: '{file}'")
    try:
        with _open(file) as f:
            return _read_string(_child(f, "version", None, "version"), None, "version")
    except T1CFormatError as err:
        raise err.within(file=file) from None
    except _READ_ERRORS as err:
        raise T1CFormatError(
            f"cannot be read ({type(err).__name__}: {err})", file=file, field="version"
        ) from err


def read(path: str | os.PathLike, *, validate: bool = True) -> Graph:
    """Read a `.t1c` file into a validated :class:`~t1c.ir.Graph`.

    Raises:
        FileNotFoundError: there is no such file.
        T1CFormatError: the file is not valid T1C-IR; the message names file, node, field.
    """
    file = str(path)
    if not os.path.exists(file):
        raise FileNotFoundError(f"no such .t1c file: '{file}'")
    reader = _Reader(budget=max(_ALWAYS_OK_BYTES, _MAX_EXPANSION * os.path.getsize(file)))
    try:
        with _open(file) as f:
            _read_string(_child(f, "version", None, "version"), None, "version")
            g = _child(f, "graph", None, "graph", group=True)
            nodes_group = _child(g, "nodes", None, "graph/nodes", group=True)
            nodes = {}
            for name in nodes_group:
                reader.node, reader.field = name, None
                nodes[name] = reader.node_from(nodes_group, name)
            reader.node = None
            edges = reader.edges_from(_child(g, "edges", None, "graph/edges", group=True))
            metadata = {}
            if g.get("metadata", getlink=True) is not None:
                metadata = reader.metadata_from(
                    _child(g, "metadata", None, "graph/metadata", group=True), "metadata", 0
                )
        return Graph(nodes, edges, metadata, validate=validate)
    except T1CFormatError as err:
        raise err.within(file=file) from None
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


@contextlib.contextmanager
def _open(path):
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        size = os.path.getsize(path) if os.path.exists(path) else None
        what = "is empty" if size == 0 else "is not an HDF5 file, or is truncated"
        raise T1CFormatError(f"{what} ({err})", file=str(path)) from None
    try:
        yield f
    finally:
        f.close()


def _child(parent: h5py.Group, name: str, node: str | None, field: str, *, group: bool = False):
    """``parent[name]``, refusing links and data stored outside the file."""
    link = parent.get(name, getlink=True)
    if link is None:
        raise T1CFormatError("is missing", node=node, field=field)
    if not isinstance(link, h5py.HardLink):
        raise T1CFormatError(
            f"is a {type(link).__name__}; links are not followed, the data must be in the file",
            node=node,
            field=field,
        )
    obj = parent[name]
    want = h5py.Group if group else h5py.Dataset
    if not isinstance(obj, want):
        raise T1CFormatError(f"must be a {'group' if group else 'dataset'}", node=node, field=field)
    if not group and (obj.is_virtual or obj.external):
        where = "a virtual dataset" if obj.is_virtual else f"stored in external file(s) {obj.external}"
        raise T1CFormatError(
            f"is {where}; data outside the file is never read, store it in the file", node=node, field=field
        )
    return obj


class _Reader:
    """Reads one file's nodes, edges and metadata, tracking where it is (for messages)
    and how many bytes the file may still make it allocate."""

    def __init__(self, budget: int) -> None:
        self.node: str | None = None
        self.field: str | None = None
        self.budget = budget

    def checked(self, dset: h5py.Dataset, node: str | None, field: str) -> h5py.Dataset:
        """Refuse a dataset whose declared size is out of proportion to what it stores."""
        declared = int(dset.size) * dset.dtype.itemsize
        stored = dset.id.get_storage_size()
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
            raise T1CFormatError(
                f"declares shape {list(dset.shape)} ({declared} bytes), more than the {self.budget} bytes "
                "left of what this file's size allows to be read (datasets hard-linked many times?)",
                node=node,
                field=field,
            )
        self.budget -= declared
        return dset

    def strings(self, dset: h5py.Dataset, node, field) -> list[str]:
        if dset.ndim != 1 or not _is_string(dset):
            raise T1CFormatError(
                f"must be a 1-D array of strings, got {dset.dtype} of shape {list(dset.shape)}",
                node=node,
                field=field,
            )
        self.checked(dset, node, field)
        try:
            return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in dset[()]]
        except UnicodeDecodeError as err:
            raise T1CFormatError(f"is not valid UTF-8 ({err})", node=node, field=field) from None

    def field_from(self, dset: h5py.Dataset, kind: str, node: str, field: str) -> Any:
        if kind == "str":
            return _read_string(dset, node, field)
        dtype, shape = dset.dtype, dset.shape
        if _is_string(dset) or dtype.kind not in "fiub":
            raise T1CFormatError(f"must hold numbers, got dtype {dtype}", node=node, field=field)
        if kind == "float_array":
            if dtype.kind != "f":
                raise T1CFormatError(f"must be a float array, got dtype {dtype}", node=node, field=field)
            self.checked(dset, node, field)
            if dtype == np.float32 and dset.size:
                # Straight into the result: ~20% faster than dset[()] for large weights.
                out = np.empty(shape, dtype=np.float32)
                dset.read_direct(out)
                return out
            return np.asarray(dset[()], dtype=np.float32)
        if kind == "int_array":
            if dtype.kind not in "iu":
                raise T1CFormatError(f"must be an integer array, got dtype {dtype}", node=node, field=field)
            return np.asarray(self.checked(dset, node, field)[()])
        if kind in ("int_vector", "int_pair"):
            if dtype.kind not in "iu":
                raise T1CFormatError(f"must be an int64 array, got dtype {dtype}", node=node, field=field)
            if len(shape) != 1 or (kind == "int_pair" and shape != (2,)):
                want = "[2]" if kind == "int_pair" else "[k]"
                raise T1CFormatError(f"must have shape {want}, got {list(shape)}", node=node, field=field)
            return np.asarray(self.checked(dset, node, field)[()], dtype=np.int64)
        if shape != ():
            raise T1CFormatError(f"must be a scalar, got shape {list(shape)}", node=node, field=field)
        value = self.checked(dset, node, field)[()]
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

    def node_from(self, nodes_group: h5py.Group, name: str):
        group = _child(nodes_group, name, name, "nodes", group=True)
        self.field = "type"
        type_name = _read_string(_child(group, "type", name, "type"), name, "type")
        cls = REGISTRY.get(type_name)
        if cls is None:
            raise T1CFormatError(
                f"has unknown node type {type_name!r}; known types: {sorted(REGISTRY)}",
                node=name,
                field="type",
            )
        fields = {}
        for field, (kind, optional) in cls.field_specs().items():
            self.field = field
            if group.get(field, getlink=True) is None:
                if optional:
                    continue
                raise T1CFormatError(f"is missing (required by {type_name})", node=name, field=field)
            fields[field] = self.field_from(_child(group, field, name, field), kind, name, field)
        self.field = None
        try:
            return cls.from_fields(fields)
        except T1CFormatError as err:
            raise err.within(node=name) from None

    def edges_from(self, group: h5py.Group) -> list[tuple[str, str]]:
        self.field = "edges"
        src = self.strings(_child(group, "src", None, "graph/edges/src"), None, "graph/edges/src")
        dst = self.strings(_child(group, "dst", None, "graph/edges/dst"), None, "graph/edges/dst")
        if len(src) != len(dst):
            raise T1CFormatError(f"src has {len(src)} entries but dst has {len(dst)}", field="graph/edges")
        self.field = None
        return list(zip(src, dst))

    def metadata_from(self, group: h5py.Group, where: str, depth: int) -> dict[str, Any]:
        if depth > _MAX_METADATA_DEPTH:
            raise T1CFormatError(
                f"nests deeper than {_MAX_METADATA_DEPTH} levels (a group linked into itself?)", field=where
            )
        out: dict[str, Any] = {}
        for key in group:
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.HardLink) and isinstance(group[key], h5py.Group):
                out[key] = self.metadata_from(group[key], f"{where}/{key}", depth + 1)
                continue
            dset = _child(group, key, None, f"{where}/{key}")
            if _is_string(dset):
                out[key] = (
                    _read_string(dset, None, f"{where}/{key}")
                    if dset.shape == ()
                    else self.strings(dset, None, f"{where}/{key}")
                )
                continue
            if dset.dtype.kind not in "fiub":
                raise T1CFormatError(f"has unsupported dtype {dset.dtype}", field=f"{where}/{key}")
            value = self.checked(dset, None, f"{where}/{key}")[()]
            if dset.shape == ():
                value = value.item()
            out[key] = value
        return out


def _is_string(dset: h5py.Dataset) -> bool:
    return h5py.check_string_dtype(dset.dtype) is not None or dset.dtype.kind == "S"


def _read_string(dset: h5py.Dataset, node, field) -> str:
    if dset.shape != () or not _is_string(dset):
        raise T1CFormatError(
            f"must be a scalar string, got {dset.dtype} of shape {list(dset.shape)}", node=node, field=field
        )
    value = dset[()]
    try:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError as err:
        raise T1CFormatError(f"is not valid UTF-8 ({err})", node=node, field=field) from None
