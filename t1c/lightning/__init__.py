"""Lightning integration: fine-tune a `.t1c` graph and export it back at every checkpoint.

* :class:`T1CModule`: a LightningModule around a :class:`~t1c.bridge.GraphExecutor`.
* :class:`T1CExport`: a Callback that writes a `.t1c` beside each checkpoint.
* :class:`DigitsDataModule`, :class:`TensorDataModule`: the built-in data.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "T1CModule": "module",
    "T1CExport": "callback",
    "DigitsDataModule": "data",
    "TensorDataModule": "data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 't1c.lightning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
