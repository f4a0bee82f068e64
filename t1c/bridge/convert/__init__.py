"""The default conversion tables, one family of T1C-IR primitives per file, both ways.

Each family module (:mod:`.linear`, :mod:`.conv`, :mod:`.pooling`, :mod:`.reshape`,
:mod:`.skip`, :mod:`.neurons`, :mod:`.cuba`, :mod:`.activations`, :mod:`.normalization`,
:mod:`.hybrid`) holds its export converters (``EXPORT``; ``HYBRID_EXPORT`` for what
``hybrid=True`` adds or changes; a family without one has none) and its import factories (``IMPORT``); this package
joins them into one table per direction, read by :mod:`t1c.bridge.exporter` and
:mod:`t1c.bridge.importer` alike, with no per-type branches. The type lists others need are derived from these
tables: :data:`HYBRID_EXPORT` (the ANN modules only a hybrid graph has as nodes) and
:data:`WEIGHTED_NODES` (the synapse nodes that carry integer weights).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from t1c import ir

from ..registry import ExportTable, ImportTable, find_converter
from . import activations, conv, cuba, hybrid, linear, neurons, normalization, pooling, reshape, skip

_FAMILIES = (linear, conv, pooling, reshape, skip, neurons, cuba, activations, normalization, hybrid)

#: ``{primitive class: factory(node) or factory(node, ctx)}``: how ``ir_to_torch`` builds each node.
NODE_FACTORIES: ImportTable = {t: f for fam in _FAMILIES for t, f in fam.IMPORT.items()}

#: The converters ``hybrid=True`` adds to (or changes in) the default export table.
HYBRID_EXPORT: ExportTable = {t: c for fam in _FAMILIES for t, c in getattr(fam, "HYBRID_EXPORT", {}).items()}

#: The nodes that hold one weight/bias pair and may carry exact integers (``weight_int``).
WEIGHTED_NODES: tuple[type[ir.Node], ...] = tuple(
    t for t in NODE_FACTORIES if "weight_int" in {f.name for f in dataclasses.fields(t)}
)


def export_converters(hybrid: bool = False) -> ExportTable:
    """The default ``{module type: converter}`` table for an export (a fresh dict each call).

    snnTorch's ``Leaky``, ``Synaptic``, ``Lapicque`` and ``Alpha`` are included when snnTorch is installed; exporting plain torch
    models never needs it. ``hybrid=True`` adds :data:`HYBRID_EXPORT` (ReLU, BatchNorm,
    Dropout, ... become their own nodes instead of being dropped or folded).
    """
    table: ExportTable = {t: c for fam in _FAMILIES for t, c in getattr(fam, "EXPORT", {}).items()}
    if hybrid:
        table.update(HYBRID_EXPORT)
    table.update(neurons.snntorch_converters())
    table.update(cuba.snntorch_converters())
    return table


HYBRID_HINT = (
    "a spiking export has no node for it, but T1C-IR's hybrid node set does "
    "(docs/hybrid.md): pass hybrid=True to export it as that node"
)
NO_FORM = "T1C-IR has no node that computes it"


def exports_in_hybrid(module: nn.Module) -> bool:
    """Whether ``hybrid=True`` would export ``module`` exactly (as a hybrid node)."""
    converter = find_converter(module, None, HYBRID_EXPORT)
    return converter is not None and converter is not activations.refuse_feature_dropout


def hybrid_hint(module: nn.Module) -> str:
    """Why ``module`` has no converter: :data:`HYBRID_HINT` when ``hybrid=True`` would export it
    exactly, else :data:`NO_FORM`."""
    return HYBRID_HINT if exports_in_hybrid(module) else NO_FORM
