"""PyTorch/snnTorch <-> T1C-IR.

* :func:`to_ir` / :class:`T1CExporter`: a PyTorch or snnTorch model -> :class:`t1c.ir.Graph`.
* :func:`ir_to_torch` / :func:`load`: a graph or `.t1c` file -> a trainable :class:`GraphExecutor`.
* :mod:`t1c.bridge.quantize`: the quantized simulation of what the hardware computes.

Names are resolved lazily so that ``import t1c.bridge`` stays cheap and each submodule
imports torch/snnTorch only when it is used.
"""

from __future__ import annotations

from t1c._lazy import lazy_exports

_EXPORTS = {
    "to_ir": "exporter",
    "T1CExporter": "exporter",
    "ExportError": "registry",
    "ir_to_torch": "importer",
    "load": "importer",
    "GraphExecutor": "executor",
    "LIFModule": "modules",
    "SkipModule": "modules",
    "SepConv2dModule": "modules",
    "SpikingAffineModule": "modules",
    "CubaLIFModule": "neuron_modules",
    "AlphaLIFModule": "neuron_modules",
    "HybridRegionModule": "hybrid_modules",
    "SubgraphModule": "hybrid_modules",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
