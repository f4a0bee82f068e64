"""The content hash of a graph: the SHA-256 that ``write`` stores and ``read`` verifies.

The hash covers what a graph means, not how HDF5 laid it out: node names and types,
every field the node writes, node metadata (where a node type has it), the edges in
order and the graph metadata. Each value is encoded canonically (text as UTF-8,
integers as int64, floats by value, arrays little-endian with dtype and shape), so the
graph written and the graph read back hash alike whatever the string storage or byte
order in the file. It detects accidents (a flipped byte), not attacks: whoever can edit
a file can recompute it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .errors import T1CFormatError
from .graph import Graph
from .node import Node

#: Root attribute holding the SHA-256 of the graph's content (nodes, edges and metadata);
#: readers that do not know it ignore it (FORMAT.md's layout lists datasets only).
HASH_ATTRIBUTE = "t1c_content_sha256"
_THREADED_BYTES = 1 << 20  # nodes holding more than this are hashed on a worker thread


class Digest:
    """SHA-256 of a graph's content, fed node by node; large nodes are hashed on worker
    threads (hashlib releases the GIL) while the caller goes on reading or writing."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._nodes: dict[str, bytes | Future] = {}

    def __enter__(self) -> Digest:
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
    """Feed one value's canonical encoding to the hash ``h``.

    The common exact types are tested first, inline (most calls end here); the others
    go to :func:`_feed_structure` and :func:`_feed_other`, which give the same bytes for
    subclasses and numpy scalars.
    """
    kind = type(value)
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
    elif not _feed_structure(h, value):
        _feed_other(h, value)


def _feed_structure(h, value: Any) -> bool:
    """Feed a nested graph, a node or a mapping; False when ``value`` is none of them."""
    if isinstance(value, Graph):
        with Digest() as inner:
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
    else:
        return False
    return True


def _feed_other(h, value: Any) -> None:
    """Feed text, a scalar (numpy's too) or anything ``np.asarray`` makes an array of."""
    if isinstance(value, (str, bytes)):
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
        if arr.dtype.kind not in "fiubUSO" or (arr.ndim == 0 and arr.dtype.kind == "O"):
            # (a 0-d array of such a value would give the value back: never ending)
            raise T1CFormatError(f"cannot hash a value of type {type(value).__name__}")
        if arr.ndim == 0:
            _feed(h, arr.item())
        elif arr.dtype.kind in "USO":
            h.update(b"S%d[" % arr.size)
            for item in arr.reshape(-1).tolist():
                _feed(h, item if isinstance(item, (str, bytes)) else str(item))
        else:
            _feed_numbers(h, arr)


def _feed_numbers(h, arr: np.ndarray) -> None:
    """Feed a numeric array of at least one dimension: integers and booleans as int64
    (int32 and int64 storage hash alike); floats keep their width, in little-endian order."""
    want = _INT64_LE if arr.dtype.kind in "iub" else arr.dtype.newbyteorder("<")
    arr = np.ascontiguousarray(arr, dtype=want)
    h.update(f"A{want.str}{list(arr.shape)};".encode())
    h.update(arr.reshape(-1).view(np.uint8))


_INT64_LE = np.dtype("<i8")
