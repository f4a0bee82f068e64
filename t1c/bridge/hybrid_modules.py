"""Torch modules for the hybrid node types that have no plain ``torch.nn`` twin.

* :class:`HybridRegionModule`: the identity, keeping a ``HybridRegion`` marker's
  ``mode``, ``features`` and ``name`` so that an imported graph exports its markers back.
* :class:`SubgraphModule`: a nested ``Graph`` node, run as the graph it is (an inner
  :class:`~t1c.bridge.GraphExecutor`), stateful when the inner graph is.

A ``HybridRegionModule`` is built from its node (``from_node``) and turns back into one
(``to_node``), like :mod:`t1c.bridge.modules`; a ``SubgraphModule`` is built around an
inner executor by the importer and exported by the exporter, which know whole graphs
(:mod:`t1c.bridge.convert.hybrid`). The other hybrid types map to plain torch modules
(``docs/hybrid.md`` has the table).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from t1c import ir


class HybridRegionModule(nn.Module):
    """``y = x``; marks where an ``ann`` or ``snn`` region starts (T1C-IR ``HybridRegion``).

    Args:
        mode: ``"snn"`` or ``"ann"``.
        features: the width of the tensor that passes (a size hint, not checked).
        name: a human label, or None.

    Put one in a model (``nn.Sequential(encoder, HybridRegionModule("snn", 128, "core"),
    core)``) to mark regions; it computes nothing.
    """

    def __init__(self, mode: str, features: int, name: str | None = None) -> None:
        super().__init__()
        node = ir.HybridRegion(mode=mode, features=features, name=name)  # checks the fields
        self.mode: str = node.mode
        self.features: int = node.features
        self.name: str | None = node.name

    @classmethod
    def from_node(cls, node: ir.HybridRegion) -> HybridRegionModule:
        return cls(node.mode, node.features, node.name)

    def to_node(self) -> ir.HybridRegion:
        return ir.HybridRegion(mode=self.mode, features=self.features, name=self.name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        name = f", name={self.name!r}" if self.name else ""
        return f"mode={self.mode!r}, features={self.features}{name}"


class SubgraphModule(nn.Module):
    """A nested ``Graph`` node: its input goes to the inner ``Input``, the inner ``Output``
    is its output (T1C-IR ``Graph`` used as a node; see :class:`t1c.ir.Subgraph`).

    When the inner graph has stateful nodes (LIF...), the module is stateful like an
    ``LIFModule``: ``forward(x, state) -> (y, state)`` with the inner executor's state
    dict, and ``forward_sequence`` runs the inner graph's ``run_sequence``.

    Args:
        inner: the inner :class:`~t1c.bridge.GraphExecutor`.
        metadata: the ``Graph`` node's own metadata.

    Attributes:
        inner: the inner executor.
        stateful: whether the inner graph carries state from step to step.
        couples_batch: whether an inner node mixes the samples of a batch (Softmax over
            dim 0), so that ``run_sequence`` gives it one step at a time.
    """

    def __init__(self, inner: nn.Module, metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.stateful = bool(inner.stateful_names) or inner.is_recurrent
        # A softmax across the batch inside: run_sequence must not fold time into the batch.
        self.couples_batch = any(
            getattr(m, "couples_batch", False) for m in inner.modules() if m is not inner
        )

    def forward(self, x: torch.Tensor, state: Any = None) -> Any:
        if not self.stateful:
            return self.inner(x)
        return self.inner(x, state, return_state=True)

    def forward_sequence(self, xs: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``T`` steps at once (``xs`` is ``[T, B, ...]``), as stepping would."""
        return self.inner.run_sequence(xs, state)
