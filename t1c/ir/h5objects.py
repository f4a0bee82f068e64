"""Opening a `.t1c` file's groups and datasets through h5py's low-level API, for the reader.

A graph of many small nodes is bound by h5py's cost per object: an h5py.Group or
h5py.Dataset costs several low-level calls more than the reader needs. The reader
opens every object through :class:`OpenGroup` and :class:`OpenDataset` instead, which
list a group's links once and fetch a dataset's type, shape and stored size once (its
creation properties only where its header says they can hold something to refuse), for
every check. Links other than hard links are never followed, and data stored outside the
file or behind an unknown filter is refused on opening (:func:`t1c.ir.limits.check_storage`),
and strings are read in slices their budget can hold (:meth:`OpenDataset.read_text`).
"""

from __future__ import annotations

import math

import h5py
import numpy as np
from h5py import h5, h5d, h5f, h5g, h5l, h5o, h5p, h5s, h5t

from .errors import T1CFormatError
from .fileformat import memory_type
from .limits import MAX_STRING_BYTES, STRING_COST, ByteBudget, check_storage

_LINK_KINDS = {h5l.TYPE_SOFT: "SoftLink", h5l.TYPE_EXTERNAL: "ExternalLink"}
_WANTED = {"dataset": "a dataset", "group": "a group", "any": "a group or a dataset"}
_VLEN_STR = {h5t.CSET_ASCII: h5py.string_dtype("ascii"), h5t.CSET_UTF8: h5py.string_dtype("utf-8")}


class OpenGroup:
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
    ) -> OpenGroup | OpenDataset:
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
            return OpenGroup(obj, ordered=ordered)
        if isinstance(obj, h5d.DatasetID) and want != "group":
            return OpenDataset(obj, node, field)
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


class OpenDataset:
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
            check_storage(did.get_create_plist(), node, field)
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
            self.id.read(h5s.ALL, h5s.ALL, out, mtype=memory_type(self.dtype))
        return out

    def read_text(self, budget: ByteBudget, node: str | None, field: str) -> list[bytes]:
        """The strings of this scalar or 1-D string dataset, flat, as ``bytes``.

        A variable-length string is stored as a reference to its bytes, and a crafted file
        can point many references at one long stored string: reading them all at once
        would allocate its length that many times. They are therefore read in slices
        that cannot allocate more than what ``budget`` has left for strings (as many
        strings per slice as the file's size fits in it: no string is longer than the
        file), and each slice is charged its real size (plus
        :data:`~t1c.ir.limits.STRING_COST` per string) before it is decoded. A string of
        more than :data:`~t1c.ir.limits.MAX_STRING_BYTES` is refused.
        """
        if not self.shape and self.dtype.kind != "S":  # one variable-length string (a field, the type)
            value = self.read()[()]
            if len(value) > MAX_STRING_BYTES or len(value) + STRING_COST > budget.text_left:
                return _charged([value], budget, node, field)  # says why
            budget.text_left -= len(value) + STRING_COST
            return [value]
        budget.checked(self, node, field)
        if self.dtype.kind == "S":  # fixed-length: what it declares, checked
            return _charged(self.read().reshape(-1).tolist(), budget, node, field)
        count, step = self.shape[0], budget.strings_per_read()
        if count <= step:
            return _charged(self.read().tolist(), budget, node, field)
        values: list[bytes] = []
        selected = self.id.get_space()
        while len(values) < count:
            start = len(values)
            step = min(count - start, budget.strings_per_read())
            selected.select_hyperslab((start,), (step,))
            out = np.empty(step, dtype=self.dtype)
            self.id.read(h5s.create_simple((step,)), selected, out, mtype=memory_type(self.dtype))
            values += _charged(out.tolist(), budget, node, field)
        return values


def _charged(values: list[bytes], budget: ByteBudget, node: str | None, field: str) -> list[bytes]:
    """``values``, charged to ``budget`` (their bytes and a cost per string), the longest
    checked against :data:`~t1c.ir.limits.MAX_STRING_BYTES`."""
    lengths = [len(v) for v in values]
    longest = max(lengths, default=0)
    if longest > MAX_STRING_BYTES:
        raise T1CFormatError(
            f"holds a string of {longest} bytes, more than the {MAX_STRING_BYTES} bytes t1c reads in one string",
            node=node,
            field=field,
        )
    budget.charge_text(sum(lengths) + STRING_COST * len(values), node, field)
    return values


def open_root(fid: h5f.FileID) -> OpenGroup:
    return OpenGroup(h5g.open(fid, b"/"))
