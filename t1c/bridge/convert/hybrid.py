"""Hybrid markers and nested graphs both ways: ``HybridRegionModule`` <-> ``HybridRegion``,
``SubgraphModule`` <-> a nested ``Graph`` node (:class:`t1c.ir.Subgraph`).

Both exist only in hybrid graphs (:data:`HYBRID_EXPORT`). A nested graph recurses: its
export goes through ``ctx.export_graph`` and its import through ``ctx.import_graph``, so
the exporter and importer stay the only places that know how a whole graph is built.
"""

from __future__ import annotations

from t1c import ir

from ..hybrid_modules import HybridRegionModule, SubgraphModule
from ..registry import ExportContext, ExportTable, ImportContext, ImportTable, convert_own_node


def convert_subgraph(module: SubgraphModule, ctx: ExportContext) -> ir.Node:
    """``SubgraphModule`` -> ``Subgraph``: its inner executor exported as the nested graph."""
    if ctx.export_graph is None:
        raise ctx.fail(
            module, "a nested graph needs the exporter (ctx.export_graph) to export its inner graph"
        )
    return ir.Subgraph(graph=ctx.export_graph(module.inner), metadata=dict(module.metadata))


def subgraph_from_node(node: ir.Subgraph, ctx: ImportContext) -> SubgraphModule:
    """``Subgraph`` -> ``SubgraphModule`` running the inner graph's executor."""
    return SubgraphModule(ctx.import_graph(node.graph), node.metadata)


HYBRID_EXPORT: ExportTable = {HybridRegionModule: convert_own_node, SubgraphModule: convert_subgraph}
IMPORT: ImportTable = {ir.HybridRegion: HybridRegionModule.from_node, ir.Subgraph: subgraph_from_node}
