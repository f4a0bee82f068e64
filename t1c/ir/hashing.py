"""The content checks of a graph: the checksum ``write`` stores and ``read`` verifies.

Both checks cover what a graph means, not how HDF5 laid it out: node names and types,
every field the node writes, node metadata (where a node type has it), the edges in
order and the graph metadata. Each value is encoded canonically (text as UTF-8,
integers as int64, floats by value, arrays little-endian with dtype and shape), so the
graph written and the graph read back check alike whatever the string storage or byte
order in the file. They detect accidents (a flipped byte), not attacks: whoever can
edit a file can recompute them.

* :data:`CHECKSUM_ATTRIBUTE` (what ``write`` stores): the SHA-256 of that encoding in
  which each numeric array's bytes are replaced by their block sums
  (:func:`_block_sums`, 16 bytes per array), which numpy computes at memory speed:
  reading a file of large arrays costs about what reading its datasets costs.
* :data:`HASH_ATTRIBUTE` (what t1c wrote before): the SHA-256 of the encoding with every
  array's bytes, about twice the cost of reading them; still verified when a file has it.
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

#: Root attribute holding the content checksum ``write`` stores: 64 hex digits, the
#: SHA-256 of the graph's canonical encoding with each numeric array summarised by its
#: block sums. Readers that do not know it ignore it (FORMAT.md's layout lists datasets only).
CHECKSUM_ATTRIBUTE = "t1c_content_checksum"
#: Root attribute holding the SHA-256 of the graph's canonical encoding, every array byte
#: included, as t1c wrote it before :data:`CHECKSUM_ATTRIBUTE`; verified when present.
HASH_ATTRIBUTE = "t1c_content_sha256"
# What each attribute's digest starts from, and whether it feeds arrays as block sums.
_KINDS = {CHECKSUM_ATTRIBUTE: (b"t1c-graph-checksum-v1\n", True), HASH_ATTRIBUTE: (b"t1c-graph-v1\n", False)}
_THREADED_BYTES = 1 << 20  # SHA-256: nodes holding more than this are hashed on a worker thread


class Digest:
    """The value of a content ``attribute`` (:data:`CHECKSUM_ATTRIBUTE` or
    :data:`HASH_ATTRIBUTE`) for a graph, fed node by node.

    For the SHA-256 of every byte, large nodes are hashed on worker threads (hashlib
    releases the GIL) while the caller goes on reading or writing. The checksum's sums
    run at memory speed on the caller's thread, while the arrays are still in cache:
    threads gain nothing there and cost 1.3x on a loaded 2-core machine.
    """

    def __init__(self, attribute: str = CHECKSUM_ATTRIBUTE) -> None:
        self.attribute = attribute
        self._start, self._sums = _KINDS[attribute]
        self._pool: ThreadPoolExecutor | None = None
        self._nodes: dict[str, bytes | Future] = {}

    def __enter__(self) -> Digest:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, name: str, node: Node, fields: dict[str, Any] | None = None) -> None:
        """Digest ``node`` under ``name``; ``fields`` is its ``to_fields()`` when the caller has it."""
        if fields is None:
            fields = node.to_fields()
        size = sum(v.nbytes for v in fields.values() if isinstance(v, np.ndarray))
        if self._sums or size < _THREADED_BYTES:
            self._nodes[name] = _node_digest(node, fields, self._sums)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
        self._nodes[name] = self._pool.submit(_node_digest, node, fields, self._sums)

    def hexdigest(self, edges: list[tuple[str, str]], metadata: Mapping[str, Any]) -> str:
        h = _Feed(self._sums, self._start)
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
        return h.sha.hexdigest()


class _Feed:
    """A SHA-256 fed a canonical encoding; ``sums``: numeric arrays as their block sums."""

    __slots__ = ("sha", "update", "sums")

    def __init__(self, sums: bool, start: bytes = b"") -> None:
        self.sha = hashlib.sha256(start)
        self.update = self.sha.update
        self.sums = sums


def _node_digest(node: Node, fields: dict[str, Any] | None, sums: bool) -> bytes:
    h = _Feed(sums)
    _feed(h, node.TYPE)
    _feed(h, node.to_fields() if fields is None else fields)
    _feed(h, node.metadata or {})
    return h.sha.digest()


def _feed(h: _Feed, value: Any) -> None:
    """Feed one value's canonical encoding to ``h``.

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
        with Digest(CHECKSUM_ATTRIBUTE if h.sums else HASH_ATTRIBUTE) as inner:
            for name, node in value.nodes.items():
                inner.add(name, node)
            h.update(b"G" + inner.hexdigest(value.edges, value.metadata).encode())
    elif isinstance(value, Node):
        h.update(b"T" + _node_digest(value, None, h.sums))
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


def _feed_numbers(h: _Feed, arr: np.ndarray) -> None:
    """Feed a numeric array of at least one dimension: integers and booleans as int64
    (int32 and int64 storage hash alike); floats keep their width, in little-endian order.
    Its bytes follow its dtype and shape, or their :func:`_block_sums` when ``h.sums``."""
    want = _INT64_LE if arr.dtype.kind in "iub" else arr.dtype.newbyteorder("<")
    arr = np.ascontiguousarray(arr, dtype=want)
    h.update(f"A{want.str}{list(arr.shape)};".encode())
    data = arr.reshape(-1).view(np.uint8)
    h.update(_block_sums(data) if h.sums else data)


_INT64_LE = np.dtype("<i8")
_BLOCK_BYTES = 4096  # a page: as fast as one flat sum (512-byte blocks: 1.6x slower)


def _block_sums(data: np.ndarray) -> bytes:
    """A Fletcher checksum of ``data`` (bytes) over 4096-byte blocks, 17 bytes: ``b"W"``,
    then ``A`` and ``B`` as little-endian uint64.

    The bytes, zero-padded to whole blocks, are read as little-endian uint64 words; block
    ``j`` of ``m`` sums its 512 words to ``s_j`` (mod 2**64); ``A`` is the sum of the
    ``s_j`` and ``B`` the sum of ``(m - j) * s_j`` (mod 2**64). Any change within one
    word (a flipped bit, a burst of up to 64 bits) changes ``A``; a block zeroed, garbled,
    moved or swapped changes ``A`` or ``B`` but with odds of about 2**-64. Changes that
    cancel in one block's sum go unseen: the same bit flipped up in one word and down in
    another, words swapped within a block. numpy sums at memory speed (~30 GB/s here,
    against 0.8 GB/s for SHA-256 and 1.7 GB/s for zlib's CRC-32).
    """
    whole = data.size - data.size % _BLOCK_BYTES
    sums = np.add.reduce(data[:whole].view("<u8").reshape(-1, _BLOCK_BYTES // 8), axis=1)
    if whole < data.size:
        tail = np.zeros(_BLOCK_BYTES, dtype=np.uint8)
        tail[: data.size - whole] = data[whole:]
        sums = np.append(sums, np.add.reduce(tail.view("<u8")))
    weights = np.arange(sums.size, 0, -1, dtype=np.uint64)
    first, second = int(np.add.reduce(sums)), int(np.add.reduce(sums * weights))
    return b"W" + first.to_bytes(8, "little") + second.to_bytes(8, "little")
