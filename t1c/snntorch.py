"""snnTorch-style entry points, named like snnTorch's NIR integration.

snnTorch users know ``export_to_nir(net, sample)`` and ``import_from_nir(graph)``; these
are the same two calls for T1C-IR::

    import torch, snntorch as snn
    from torch import nn
    from t1c.snntorch import export_to_ir, import_from_ir
    from t1c import ir

    net = nn.Sequential(nn.Linear(784, 128), snn.Leaky(beta=0.9, init_hidden=True))
    graph = export_to_ir(net, torch.zeros(1, 784))
    ir.write("net.t1c", graph)
    executor = import_from_ir("net.t1c")      # a trainable torch module

They are thin wrappers over :func:`t1c.bridge.to_ir` and :func:`t1c.bridge.ir_to_torch`.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from t1c import ir

__all__ = ["export_to_ir", "import_from_ir"]


def export_to_ir(model: nn.Module, sample: Any, **kwargs: Any) -> ir.Graph:
    """Export an snnTorch (or plain PyTorch) model to a validated T1C-IR graph.

    Args:
        model: the network.
        sample: one time step's batch ``[B, *input_shape]``, or a tuple of the
            forward's arguments.
        **kwargs: passed to :func:`t1c.bridge.to_ir` (``custom_map``, ``spiking``,
            ``spike_mode``, ``weight_bits``, ``accumulator_bits``, ``trace``, ``hybrid``:
            ``hybrid=True`` exports ReLU, BatchNorm, Dropout and the other ANN modules of a
            hybrid ANN-SNN network as their own nodes).

    Returns:
        The graph; write it with :func:`t1c.ir.write`.

    Raises:
        t1c.bridge.ExportError: a module or an operation in ``forward`` has no exact
            T1C-IR form (snnTorch neurons other than ``Leaky``, ``x * 2``, ...); the
            message names it and the fix. ``trace="order"`` chains the modules in call
            order instead of refusing the wiring, with a warning.
    """
    from t1c.bridge.exporter import to_ir

    return to_ir(model, sample, **kwargs)


def import_from_ir(graph_or_path: ir.Graph | str | os.PathLike, **kwargs: Any) -> nn.Module:
    """Build a trainable torch module (a ``GraphExecutor``) from a graph or a `.t1c` file.

    Args:
        graph_or_path: an :class:`t1c.ir.Graph`, or the path of a `.t1c` file to read.
        **kwargs: passed to :func:`t1c.bridge.ir_to_torch`.

    Returns:
        The executor; ``executor(x)`` runs one time step, ``run_sequence`` a sequence.
    """
    from t1c.bridge.importer import ir_to_torch

    if isinstance(graph_or_path, ir.Graph):
        graph = graph_or_path
    elif isinstance(graph_or_path, (str, os.PathLike)):
        graph = ir.read(graph_or_path)
    else:
        raise TypeError(
            f"import_from_ir needs a t1c.ir.Graph or the path of a .t1c file, got {type(graph_or_path).__name__}"
        )
    return ir_to_torch(graph, **kwargs)
