"""Reading and writing `.t1c` files (HDF5, layout in FORMAT.md).

One path for every primitive: ``write`` asks each node for its fields, ``read`` checks
each dataset against the field kinds the node's class declares and builds the node
through the registry. A reader of untrusted files must not be tricked, so ``read``:

* refuses soft and external links (it never opens another file or follows a path);
* checks each dataset's declared size against the bytes it really stores before
  reading it, so a file cannot make it allocate gigabytes from a header;
* turns every problem into a :class:`T1CFormatError` naming the file, node and field.

``write`` is atomic: it writes a temporary file in the destination folder and renames
it over the destination, so an exception or a kill leaves either the old file or the
new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import T1CFormatError
from .graph import Graph
from .io import Output
from .node import REGISTRY

FORMAT_VERSION = "0.0.1"
COMPRESSIONS = (None, "gzip", "lzf")
_STR = h5py.string_dtype()
# A dataset may declare at most this many bytes beyond what it stores (compressed data
# legitimately stores less; a 2048x2048 all-zero gzip weight stores ~16 KiB).
_MAX_EXPANSION = 4096
_ALWAYS_OK_BYTES = 64 * 2**20


# -- writing -----------------------------------------------------------------------------
def write(
    path: str | os.PathLike,
    graph: Graph,
    *,
    compression: str | None = None,
    compression_opts: int | None = None,
    fsync: bool = True,
) -> None:
    """Write ``graph`` to ``path`` atomically.

    Args:
        path: destination; its folder must exist.
        graph: a validated graph.
        compression: ``None``, ``"gzip"`` or ``"lzf"`` for array datasets; any HDF5
            reader (the existing toolchain's included) reads them transparently.
        compression_opts: gzip level 0..9.
        fsync: flush the file to disk before the rename (durable across power loss).
    """
    path = Path(path)
    if compression not in COMPRESSIONS:
        raise T1CFormatError(f"compression must be one of {COMPRESSIONS}, got {compression!r}", file=str(path))
    if not graph.output_shapes:
        graph.validate()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            _write_graph(f, graph, compression, compression_opts)
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_graph(f: h5py.File, graph: Graph, compression, compression_opts) -> None:
    f.create_dataset("version", data=FORMAT_VERSION, dtype=_STR)
    g = f.create_group("graph")
    g.create_dataset("type", data="Graph", dtype=_STR)
    nodes = g.create_group("nodes")
    for name, node in graph.nodes.items():
        group = nodes.create_group(name)
        group.create_dataset("type", data=node.TYPE, dtype=_STR)
        for field, value in node.to_fields().items():
            _write_value(group, field, value, compression, compression_opts)
    edges = g.create_group("edges")
    edges.create_dataset("src", data=[s for s, _ in graph.edges], dtype=_STR)
    edges.create_dataset("dst", data=[d for _, d in graph.edges], dtype=_STR)
    if graph.metadata:
        _write_metadata(g.create_group("metadata"), graph.metadata, "metadata")


def _write_value(group: h5py.Group, name: str, value: Any, compression=None, opts=None) -> None:
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
            group.create_dataset(name, data=[str(v) for v in arr.ravel()], dtype=_STR)
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
            raise T1CFormatError(f"metadata key {key!r} cannot be an HDF5 name (no '/')", field=f"{where}/{key}")
        if value is None:
            continue
        if isinstance(value, Mapping):
            _write_metadata(group.create_group(key), value, f"{where}/{key}")
            continue
        try:
            _write_value(group, key, value)
        except T1CFormatError as err:
            raise err.within(field=f"{where}/{key}") from None


# -- reading -----------------------------------------------------------------------------
def read_version(path: str | os.PathLike) -> str:
    """The format version string stored in a `.t1c` file."""
    with _open(path) as f:
        return _read_string(_child(f, "version", None, "version"), None, "version")


def read(path: str | os.PathLike, *, validate: bool = True) -> Graph:
    """Read a `.t1c` file into a validated :class:`~t1c.ir.Graph`.

    Raises:
        FileNotFoundError: there is no such file.
        T1CFormatError: the file is not valid T1C-IR; the message names file, node, field.
    """
    file = str(path)
    if not os.path.exists(file):
        raise FileNotFoundError(f"no such .t1c file: '{file}'")
    at = {"node": None, "field": None}
    try:
        with _open(file) as f:
            _read_string(_child(f, "version", None, "version"), None, "version")
            g = _child(f, "graph", None, "graph", group=True)
            nodes_group = _child(g, "nodes", None, "graph/nodes", group=True)
            nodes = {}
            for name in nodes_group:
                at["node"], at["field"] = name, None
                nodes[name] = _read_node(nodes_group, name, at)
            at["node"] = None
            edges = _read_edges(_child(g, "edges", None, "graph/edges", group=True), at)
            metadata = {}
            if "metadata" in g or g.get("metadata", getlink=True) is not None:
                metadata = _read_metadata(_child(g, "metadata", None, "graph/metadata", group=True), "metadata")
        return Graph(nodes, edges, metadata, validate=validate)
    except T1CFormatError as err:
        raise err.within(file=file) from None
    except (OSError, KeyError, TypeError, ValueError, RuntimeError, UnicodeDecodeError) as err:
        raise T1CFormatError(
            f"cannot be read ({type(err).__name__}: {err})", file=file, node=at["node"], field=at["field"]
        ) from err


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
    link = parent.get(name, getlink=True)
    if link is None:
        raise T1CFormatError("is missing", node=node, field=field)
    if not isinstance(link, h5py.HardLink):
        raise T1CFormatError(
            f"is a {type(link).__name__}; links are not followed, the data must be in the file",
            node=node, field=field,
        )
    obj = parent[name]
    want = h5py.Group if group else h5py.Dataset
    if not isinstance(obj, want):
        raise T1CFormatError(f"must be a {'group' if group else 'dataset'}", node=node, field=field)
    return obj


def _checked(dset: h5py.Dataset, node: str | None, field: str) -> h5py.Dataset:
    """Refuse a dataset whose declared size is out of proportion to what it stores."""
    declared = int(dset.size) * dset.dtype.itemsize
    stored = dset.id.get_storage_size()
    if declared > max(_ALWAYS_OK_BYTES, _MAX_EXPANSION * stored):
        raise T1CFormatError(
            f"declares shape {list(dset.shape)} ({declared} bytes) but stores only {stored} bytes",
            node=node, field=field,
        )
    return dset


def _is_string(dset: h5py.Dataset) -> bool:
    return h5py.check_string_dtype(dset.dtype) is not None or dset.dtype.kind == "S"


def _read_string(dset: h5py.Dataset, node, field) -> str:
    if dset.shape != () or not _is_string(dset):
        raise T1CFormatError(f"must be a scalar string, got {dset.dtype} of shape {list(dset.shape)}", node=node, field=field)
    value = dset[()]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _read_strings(dset: h5py.Dataset, node, field) -> list[str]:
    if dset.ndim != 1 or not _is_string(dset):
        raise T1CFormatError(f"must be a 1-D array of strings, got {dset.dtype} of shape {list(dset.shape)}", node=node, field=field)
    _checked(dset, node, field)
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in dset[()]]


def _read_field(dset: h5py.Dataset, kind: str, node: str, field: str) -> Any:
    if kind == "str":
        return _read_string(dset, node, field)
    dtype, shape = dset.dtype, dset.shape
    if _is_string(dset) or dtype.kind not in "fiub":
        raise T1CFormatError(f"must hold numbers, got dtype {dtype}", node=node, field=field)
    if kind == "float_array":
        if dtype.kind != "f":
            raise T1CFormatError(f"must be a float array, got dtype {dtype}", node=node, field=field)
        return np.asarray(_checked(dset, node, field)[()], dtype=np.float32)
    if kind == "int_array":
        if dtype.kind not in "iu":
            raise T1CFormatError(f"must be an integer array, got dtype {dtype}", node=node, field=field)
        return _checked(dset, node, field)[()]
    if kind in ("int_vector", "int_pair"):
        if dtype.kind not in "iu":
            raise T1CFormatError(f"must be an int64 array, got dtype {dtype}", node=node, field=field)
        if len(shape) != 1 or (kind == "int_pair" and shape != (2,)):
            want = "[2]" if kind == "int_pair" else "[k]"
            raise T1CFormatError(f"must have shape {want}, got {list(shape)}", node=node, field=field)
        return np.asarray(_checked(dset, node, field)[()], dtype=np.int64)
    if shape != ():
        raise T1CFormatError(f"must be a scalar, got shape {list(shape)}", node=node, field=field)
    if kind == "float":
        if dtype.kind not in "fiu":
            raise T1CFormatError(f"must be a number, got dtype {dtype}", node=node, field=field)
        return float(dset[()])
    if kind == "int":
        if dtype.kind not in "iu":
            raise T1CFormatError(f"must be an integer, got dtype {dtype}", node=node, field=field)
        return int(dset[()])
    if dtype.kind not in "biu":
        raise T1CFormatError(f"must be a boolean, got dtype {dtype}", node=node, field=field)
    return dset[()]  # checked to be 0/1 by the node


def _read_node(nodes_group: h5py.Group, name: str, at: dict):
    group = _child(nodes_group, name, name, "nodes", group=True)
    at["field"] = "type"
    type_name = _read_string(_child(group, "type", name, "type"), name, "type")
    cls = REGISTRY.get(type_name)
    if cls is None:
        raise T1CFormatError(
            f"has unknown node type {type_name!r}; known types: {sorted(REGISTRY)}", node=name, field="type"
        )
    fields = {}
    for field, (kind, optional) in cls.field_specs().items():
        at["field"] = field
        if group.get(field, getlink=True) is None:
            if optional:
                continue
            raise T1CFormatError(f"is missing (required by {type_name})", node=name, field=field)
        fields[field] = _read_field(_child(group, field, name, field), kind, name, field)
    at["field"] = None
    try:
        return cls.from_fields(fields)
    except T1CFormatError as err:
        raise err.within(node=name) from None


def _read_edges(group: h5py.Group, at: dict) -> list[tuple[str, str]]:
    at["field"] = "edges"
    src = _read_strings(_child(group, "src", None, "graph/edges/src"), None, "graph/edges/src")
    dst = _read_strings(_child(group, "dst", None, "graph/edges/dst"), None, "graph/edges/dst")
    if len(src) != len(dst):
        raise T1CFormatError(f"src has {len(src)} entries but dst has {len(dst)}", field="graph/edges")
    at["field"] = None
    return list(zip(src, dst))


def _read_metadata(group: h5py.Group, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in group:
        link = group.get(key, getlink=True)
        if isinstance(link, h5py.HardLink) and isinstance(group[key], h5py.Group):
            out[key] = _read_metadata(group[key], f"{where}/{key}")
            continue
        dset = _child(group, key, None, f"{where}/{key}")
        if _is_string(dset):
            out[key] = (
                _read_string(dset, None, f"{where}/{key}") if dset.shape == ()
                else _read_strings(dset, None, f"{where}/{key}")
            )
            continue
        if dset.dtype.kind not in "fiub":
            raise T1CFormatError(f"has unsupported dtype {dset.dtype}", field=f"{where}/{key}")
        value = _checked(dset, None, f"{where}/{key}")[()]
        if dset.shape == ():
            value = value.item()
        out[key] = value
    return out
