"""Reading `.t1c` files (HDF5, layout in FORMAT.md) from any source, trusted or not.

One path for every primitive: ``read`` checks each dataset against the field kinds the
node's class declares (:meth:`~t1c.ir.Node.field_specs`) and builds the node through
:data:`~t1c.ir.REGISTRY`. A reader of untrusted files must not be tricked, so ``read``
holds the file to the bounds of :mod:`t1c.ir.limits` (regular files only, no links or
outside data, known filters, a byte budget checked before each dataset is read), opens
its objects through :mod:`t1c.ir.h5objects`, checks ``/version`` (a newer major version
is refused) and ``/graph/type``, verifies the optional content checksum and hash
(:mod:`t1c.ir.hashing`), and turns every problem into a :class:`T1CFormatError` naming
the file, node and field; running out of memory is one too, not a ``MemoryError``.
``docs/untrusted_files.md`` lists what t1c guarantees for files from elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

import numpy as np
from h5py import h5a, h5f, h5t

from .errors import T1CFormatError
from .fileformat import FORMAT_MAJOR, FORMAT_VERSION, RECURRENT_ATTRIBUTE
from .graph import Graph
from .h5objects import OpenDataset, OpenGroup, open_root
from .hashing import CHECKSUM_ATTRIBUTE, HASH_ATTRIBUTE, Digest
from .limits import (
    MAX_BYTES,
    MAX_GRAPH_DEPTH,
    MAX_METADATA_DEPTH,
    ByteBudget,
    check_name,
    open_hdf5,
    regular_file_size,
)
from .node import REGISTRY, Node


def read_version(path: str | os.PathLike) -> str:
    """The format version string stored in a `.t1c` file.

    Raises:
        FileNotFoundError: there is no such file.
        PermissionError: the file cannot be opened for reading.
        T1CFormatError: not a regular file, not HDF5, or no scalar string ``/version``.
    """
    file = str(path)
    size = regular_file_size(file)
    try:
        with open_hdf5(file, size) as f:
            return _read_string(
                open_root(f).child("version", None, "version"), ByteBudget(size, MAX_BYTES), None, "version"
            )
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
        validate: validate the graph (structure, shapes) and verify the content checksum
            and the content hash, each when the file has it. ``False`` only checks that
            the file is well-formed T1C-IR, to inspect a broken graph.
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
    size = regular_file_size(file)
    reader = _Reader(size, limit)
    try:
        with open_hdf5(file, size) as f, contextlib.ExitStack() as digesting:
            root = open_root(f)
            version = _read_string(root.child("version", None, "version"), reader.budget, None, "version")
            _check_version(version, root, file)
            expected = _stored_checks(f) if validate else {}
            digests = [digesting.enter_context(Digest(attribute)) for attribute in expected]
            g = root.child("graph", None, "graph", want="group")
            graph_type = _read_string(g.child("type", None, "graph/type"), reader.budget, None, "graph/type")
            if graph_type != "Graph":
                raise T1CFormatError(f"must be 'Graph', got {graph_type!r}", field="graph/type")
            nodes = reader.root_nodes_from(
                g.child("nodes", None, "graph/nodes", want="group", ordered=True), digests
            )
            edges = reader.edges_from(g.child("edges", None, "graph/edges", want="group"))
            metadata = {}
            if "metadata" in g.links:
                metadata = reader.metadata_from(
                    g.child("metadata", None, "graph/metadata", want="group", ordered=True), "metadata", 0
                )
            recurrent = _recurrent(f)
            graph = Graph(
                nodes, edges, metadata, allow_cycles=recurrent, validate=validate, max_elements=max_elements
            )
            for digest in digests:
                if digest.hexdigest(graph.edges, graph.metadata) != expected[digest.attribute]:
                    raise T1CFormatError(
                        "the content hash does not match the nodes, edges and metadata: the file was "
                        "corrupted (or edited by a tool that did not update it) after t1c wrote it; "
                        "export it again, or read it with validate=False to inspect it",
                        field=digest.attribute,
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


# A format version: ASCII digits, MAJOR[.MINOR[.PATCH]], each part of sane length.
_VERSION = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9}){0,2}")


def _check_version(version: str, root: OpenGroup, file: str) -> None:
    """Refuse a NIR file (with how to convert it), a version that is not ASCII
    ``MAJOR.MINOR.PATCH``, and a newer major version."""
    shown = version if len(version) <= 40 else version[:40] + "..."
    if "node" in root.links and "graph" not in root.links:  # NIR's layout: /version and /node
        name = os.path.basename(file)
        raise T1CFormatError(
            f"is a NIR file (NIR version {shown!r}: a /node group, no /graph), not a .t1c file; convert it "
            f"with `t1c convert {name} {os.path.splitext(name)[0]}.t1c --dt <time step>`, or train from it "
            f"with T1CModule({name!r}, nir_dt=<time step>) (docs/nir.md)"
        )
    if not _VERSION.fullmatch(version):
        raise T1CFormatError(
            f"must be a format version like '{FORMAT_VERSION}' (MAJOR.MINOR.PATCH in ASCII digits), got {shown!r}",
            field="version",
        )
    if int(version.split(".")[0]) > FORMAT_MAJOR:
        raise T1CFormatError(
            f"is {version}, a newer major format version than this t1c reads ({FORMAT_MAJOR}.x, "
            f"writes {FORMAT_VERSION}); upgrade t1c to read it",
            field="version",
        )


def _recurrent(fid: h5f.FileID) -> bool:
    """Whether the file marks its graph recurrent (:data:`RECURRENT_ATTRIBUTE` is 1)."""
    name = RECURRENT_ATTRIBUTE.encode()
    if not h5a.exists(fid, name):
        return False
    attr = h5a.open(fid, name)
    if attr.shape != () or attr.get_type().get_class() != h5t.INTEGER:
        raise T1CFormatError("must be an integer scalar", field=RECURRENT_ATTRIBUTE)
    out = np.empty((), dtype=np.int64)
    attr.read(out)
    if int(out) not in (0, 1):
        raise T1CFormatError(f"must be 0 or 1, got {int(out)}", field=RECURRENT_ATTRIBUTE)
    return bool(out)


def _stored_checks(fid: h5f.FileID) -> dict[str, str]:
    """The file's content checksum and content hash (attribute -> value), those it has.

    t1c writes the checksum alone (older t1c the hash alone); a file with both has both
    verified, so the two cannot disagree unnoticed."""
    found = {}
    for attribute in (CHECKSUM_ATTRIBUTE, HASH_ATTRIBUTE):
        value = _stored_check(fid, attribute)
        if value is not None:
            found[attribute] = value
    return found


def _stored_check(fid: h5f.FileID, attribute: str) -> str | None:
    """The root ``attribute`` (a content check), checked to be a scalar 64-hex-digit string."""
    name = attribute.encode()
    if not h5a.exists(fid, name):
        return None
    attr = h5a.open(fid, name)
    tid = attr.get_type()
    if attr.shape != () or tid.get_class() != h5t.STRING:
        raise T1CFormatError("must be a scalar string", field=attribute)
    # Read low-level (h5py's attrs[] takes ~5x longer): a variable-length string as bytes,
    # a fixed-length one as numpy bytes.
    out = np.empty((), dtype=object if tid.is_variable_str() else attr.dtype)
    attr.read(out)
    value = out[()]
    value = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise T1CFormatError(f"must be 64 hex digits (a SHA-256), got {value[:80]!r}", field=attribute)
    return value


class _Reader:
    """Reads one file's nodes, edges and metadata, tracking where it is (for messages)
    and how many bytes the file may still make it allocate."""

    def __init__(self, size: int, max_bytes: int) -> None:
        """Cap the total at ``max_bytes`` and at a multiple of the file's ``size``."""
        self.node: str | None = None
        self.field: str | None = None
        self.depth = 0  # of nested Graph nodes
        self.budget = ByteBudget(size, max_bytes)

    def root_nodes_from(self, group: OpenGroup, digests: list[Digest]) -> dict[str, Node]:
        """The root graph's nodes, in the file's order, each fed to the content ``digests``."""
        nodes = {}
        for name in group.links:
            check_name(name, None, "graph/nodes")
            self.node, self.field = name, None
            nodes[name] = node = self.node_from(group, name)
            for digest in digests:
                digest.add(name, node)  # SHA-256 (older files): large nodes on a thread while we read on
        self.node = None
        return nodes

    def strings(self, dset: OpenDataset, node, field) -> list[str]:
        if dset.ndim != 1 or not dset.string:
            raise T1CFormatError(
                f"must be a 1-D array of strings, got {dset.dtype} of shape {list(dset.shape)}",
                node=node,
                field=field,
            )
        try:
            return [v.decode("utf-8") for v in dset.read_text(self.budget, node, field)]
        except UnicodeDecodeError as err:
            raise T1CFormatError(f"is not valid UTF-8 ({err})", node=node, field=field) from None

    def field_from(self, dset: OpenDataset, kind: str, node: str, field: str) -> Any:
        """The value of ``dset`` as a field of on-disk ``kind`` (:data:`~t1c.ir.node.FIELD_KINDS`)."""
        if kind == "str":
            return _read_string(dset, self.budget, node, field)
        if kind in _SPELLED and dset.shape == () and dset.string:
            # The toolchain re-writes numpy scalars it read as their str(): "8", "False".
            return _spelled(kind, _read_string(dset, self.budget, node, field), node, field)
        if dset.string or dset.dtype.kind not in "fiub":
            raise T1CFormatError(f"must hold numbers, got dtype {dset.dtype}", node=node, field=field)
        if kind in _ARRAY_KINDS:
            return self._array_from(dset, kind, node, field)
        return self._scalar_from(dset, kind, node, field)

    def _array_from(self, dset: OpenDataset, kind: str, node: str, field: str) -> np.ndarray:
        dtype, shape = dset.dtype, dset.shape
        if kind == "float_array":
            if dtype.kind != "f":
                raise T1CFormatError(f"must be a float array, got dtype {dtype}", node=node, field=field)
            self.budget.checked(dset, node, field)
            # Straight into the result (~20% faster than dset[()] for large weights); float16/64
            # as stored: the node converts it and refuses float32 overflow.
            return dset.read()
        if kind == "int_array":
            if dtype.kind not in "iu":
                raise T1CFormatError(f"must be an integer array, got dtype {dtype}", node=node, field=field)
            return self.budget.checked(dset, node, field).read()
        if dtype.kind not in "iu":
            raise T1CFormatError(f"must be an int64 array, got dtype {dtype}", node=node, field=field)
        if len(shape) != 1 or (kind == "int_pair" and shape != (2,)):
            want = "[2]" if kind == "int_pair" else "[k]"
            raise T1CFormatError(f"must have shape {want}, got {list(shape)}", node=node, field=field)
        return np.asarray(self.budget.checked(dset, node, field).read(), dtype=np.int64)

    def _scalar_from(self, dset: OpenDataset, kind: str, node: str, field: str) -> Any:
        dtype, shape = dset.dtype, dset.shape
        if shape != ():
            raise T1CFormatError(f"must be a scalar, got shape {list(shape)}", node=node, field=field)
        value = self.budget.checked(dset, node, field).read()[()]
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

    def node_from(self, nodes_group: OpenGroup, name: str):
        group = nodes_group.child(name, name, "nodes", want="group")
        self.field = "type"
        type_name = _read_string(group.child("type", name, "type"), self.budget, name, "type")
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

    def subgraph_from(self, group: OpenGroup, name: str) -> Graph:
        """The graph nested as node ``name``: its group holds ``nodes/`` and ``edges/``.

        Errors name the inner node as ``outer/inner``. Nesting is capped (a group
        hard-linked into itself would never end).
        """
        self.depth += 1
        try:
            if self.depth > MAX_GRAPH_DEPTH:
                raise T1CFormatError(
                    f"nests graphs deeper than {MAX_GRAPH_DEPTH} levels (a group linked into itself?)",
                    node=name,
                    field="nodes",
                )
            nodes_group = group.child("nodes", name, "nodes", want="group", ordered=True)
            nodes = {}
            for inner in nodes_group.links:
                check_name(inner, name, "nodes")
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

    def edges_from(self, group: OpenGroup) -> list[tuple[str, str]]:
        self.field = "edges"
        src = self.strings(group.child("src", None, "graph/edges/src"), None, "graph/edges/src")
        dst = self.strings(group.child("dst", None, "graph/edges/dst"), None, "graph/edges/dst")
        if len(src) != len(dst):
            raise T1CFormatError(f"src has {len(src)} entries but dst has {len(dst)}", field="graph/edges")
        self.field = None
        return list(zip(src, dst))

    def metadata_from(self, group: OpenGroup, where: str, depth: int) -> dict[str, Any]:
        if depth > MAX_METADATA_DEPTH:
            raise T1CFormatError(
                f"nests deeper than {MAX_METADATA_DEPTH} levels (a group linked into itself?)", field=where
            )
        out: dict[str, Any] = {}
        for key in group.links:
            check_name(key, None, where)
            dset = group.child(key, None, f"{where}/{key}", want="any", ordered=True)
            if isinstance(dset, OpenGroup):
                out[key] = self.metadata_from(dset, f"{where}/{key}", depth + 1)
                continue
            if dset.string:
                out[key] = (
                    _read_string(dset, self.budget, None, f"{where}/{key}")
                    if dset.shape == ()
                    else self.strings(dset, None, f"{where}/{key}")
                )
                continue
            if dset.dtype.kind not in "fiub":
                raise T1CFormatError(f"has unsupported dtype {dset.dtype}", field=f"{where}/{key}")
            value = self.budget.checked(dset, None, f"{where}/{key}").read()
            if dset.shape == ():
                value = value.item()
            out[key] = value
        return out


_ARRAY_KINDS = frozenset(("float_array", "int_array", "int_vector", "int_pair"))

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


def _read_string(dset: OpenDataset, budget: ByteBudget, node, field) -> str:
    if dset.shape != () or not dset.string:
        raise T1CFormatError(
            f"must be a scalar string, got {dset.dtype} of shape {list(dset.shape)}", node=node, field=field
        )
    (value,) = dset.read_text(budget, node, field)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as err:
        raise T1CFormatError(f"is not valid UTF-8 ({err})", node=node, field=field) from None
