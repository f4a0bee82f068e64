"""Skips both ways: ``nn.Identity`` -> ``Skip(passthrough)``, ``SkipModule`` <-> ``Skip``.

Sums and concatenations in a forward (``x + y``, ``torch.cat``) become ``Skip`` nodes
too; the tracer (:mod:`t1c.bridge.tracing`) builds those.
"""

from __future__ import annotations

from torch import nn

from t1c import ir

from ..modules import SkipModule
from ..registry import ExportTable, ImportTable, convert_own_node


def convert_identity(module: nn.Identity) -> ir.Node:
    """``nn.Identity`` -> ``Skip(passthrough)``."""
    return ir.Skip(skip_type="passthrough")


EXPORT: ExportTable = {nn.Identity: convert_identity, SkipModule: convert_own_node}
IMPORT: ImportTable = {ir.Skip: SkipModule.from_node}
