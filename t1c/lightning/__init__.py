"""Lightning integration: fine-tune a `.t1c` graph and export it back at every checkpoint.

* :class:`T1CModule`: a LightningModule around a :class:`~t1c.bridge.GraphExecutor`.
* :class:`T1CExport`: a Callback that writes a `.t1c` beside each checkpoint.
* :class:`DigitsDataModule`, :class:`TensorDataModule`: the built-in data.
* :class:`EventDataModule`: event frames from any tonic dataset (tonic: ``pip install -e '.[events]'``
  in a clone of t1c, or ``pip install 'tonic>=1.5'``).
"""

from __future__ import annotations

from t1c._lazy import lazy_exports

_EXPORTS = {
    "T1CModule": "module",
    "T1CExport": "callback",
    "DigitsDataModule": "data",
    "TensorDataModule": "data",
    "EventDataModule": "events",
    "DatasetNotFoundError": "events",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
