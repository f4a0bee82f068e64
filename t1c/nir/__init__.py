"""NIR <-> T1C-IR: fine-tune any NIR model for T1C hardware, and hand T1C graphs to NIR tools.

NIR (the ``nir`` package, 1.0.x) is the exchange format of Norse, Sinabs, Rockpool,
Lava-dl, Spyx, snnTorch and others. Its neurons are continuous-time; ``dt`` is the time
step at which they are discretized (forward Euler), so both directions need it::

    from t1c import ir
    from t1c.nir import from_nir, to_nir

    graph = from_nir("model.nir", dt=1e-3)      # -> ir.Graph, run it with ir_to_torch
    ir.write("model.t1c", graph)
    nir_graph = to_nir("model.t1c", dt=1e-3)    # -> nir.NIRGraph; nir.write("back.nir", nir_graph)

Every node maps exactly or is refused with a :class:`NIRConversionError` that names the
node and says why; the full table is in ``docs/nir.md``. The ``nir`` package is an
optional extra (``pip install -e '.[nir]'`` from a clone, or ``pip install 'nir>=1.0,<1.1'``) imported only when a function here is called,
so ``import t1c.nir`` and the rest of t1c work without it. Only numpy and :mod:`t1c.ir`
are used otherwise (no torch), so ``t1c inspect model.nir`` stays fast.

Conversions are ``{type: function}`` maps (:func:`default_import_map`,
:func:`default_nir_export_map`); a ``node_map`` passed to :func:`from_nir`/:func:`to_nir`
wins over them.

Modules, each importing only those above it: :mod:`~t1c.nir.common` (error, ``nir`` import,
``dt``, metadata keys), :mod:`~t1c.nir.import_nodes` / :mod:`~t1c.nir.export_nodes` (one
node each way), :mod:`~t1c.nir.cuba` (the current-based neuron, both ways),
:mod:`~t1c.nir.maps` (the mapping table), :mod:`~t1c.nir.wiring` and
:mod:`~t1c.nir.folding` (the graph passes of an import; wiring also orders cycles), :mod:`~t1c.nir.importer`
(:func:`from_nir`) and :mod:`~t1c.nir.exporter` (:func:`to_nir`).
"""

from .common import INSTALL_HINT, NIRConversionError, import_nir
from .exporter import to_nir
from .importer import from_nir, read_nir
from .maps import default_import_map, default_nir_export_map

__all__ = [
    "INSTALL_HINT",
    "NIRConversionError",
    "default_import_map",
    "default_nir_export_map",
    "from_nir",
    "import_nir",
    "read_nir",
    "to_nir",
]
