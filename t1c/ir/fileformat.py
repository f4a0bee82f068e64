"""What the reader and the writer of `.t1c` files share: the format version and HDF5 types.

The HDF5 types are made once per process: making a type (``h5t.py_create``) costs more
than reading or writing a small dataset, so both sides take them from here.
"""

from __future__ import annotations

import h5py
import numpy as np
from h5py import h5t

#: The format version ``write`` stores as ``/version`` (FORMAT.md).
FORMAT_VERSION = "0.0.1"
#: The newest major format version this reader understands.
FORMAT_MAJOR = 0
#: Root attribute (int64 scalar 1) that marks a recurrent graph: its edges may form a cycle,
#: run with back edges carrying last step's values (SEMANTICS.md). Written only when the
#: graph has a cycle, so other files are unchanged; a reader that does not know it refuses
#: the cycle instead of misreading it.
RECURRENT_ATTRIBUTE = "t1c_recurrent"
#: Variable-length UTF-8 strings, as every string of a `.t1c` file is written.
STRING_DTYPE = h5py.string_dtype()

# Memory type h5py reads and writes each dtype with (``py_create(dtype)``), made once.
_MEMORY_TYPES: dict[np.dtype, h5t.TypeID] = {}


def memory_type(dtype: np.dtype) -> h5t.TypeID:
    """The memory type h5py reads ``dtype`` into and writes it from, made once per dtype."""
    mtype = _MEMORY_TYPES.get(dtype)
    if mtype is None:
        mtype = _MEMORY_TYPES[dtype] = h5t.py_create(dtype)
    return mtype
