"""Whole executors and graphs in quantized simulation, and the integers a deployed file carries.

* :func:`quantize_executor`: a copy of a float executor whose synapses run on integers
  (:mod:`~t1c.bridge.quantize.layers`), nested graphs too;
* :func:`ir_to_quantized`: an executor built from a graph's own integers;
* :func:`attach_integer_weights`: a graph whose weighted nodes carry their exact integers;
* :func:`batchnorm_folds` / :func:`folded_copy`: BatchNorm folded into the layer before
  it, with the one fold :func:`t1c.bridge.convert.normalization.fold_batchnorm` that the
  exporter uses too.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

from t1c import ir
from t1c.ir.linear import check_integer_weights
from t1c.ir.neurons import check_recurrent_integers

from ..convert import WEIGHTED_NODES
from ..convert.normalization import fold_batchnorm
from ..executor import GraphExecutor
from ..hybrid_modules import SubgraphModule
from ..importer import ir_to_torch
from ..neuron_modules import CubaLIFModule
from .integers import check_bits, quantize_layer, quantize_weights
from .layers import (
    QuantizedConv2d,
    QuantizedLinear,
    node_bits,
    own_bits,
    quantized_module,
    quantized_self_connection,
)
from .qat import disable_qat


def folded_copy(layer: nn.Linear | nn.Conv2d, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> nn.Module:
    """A copy of ``layer`` that computes ``bn(layer(x))`` with ``bn``'s running statistics.

    The weights come from :func:`~t1c.bridge.convert.normalization.fold_batchnorm`
    (float64), stored in the layer's dtype: the same function as the pair in evaluation
    mode, up to float rounding, and the same numbers as a folded export. The copy keeps
    the layer's class and hints (a ``SpikingAffineModule`` keeps its
    ``weight_bits``/``accumulator_bits``); a fake-quantized (QAT) layer is folded from its
    weights on the grid, as a plain layer.

    Raises:
        ValueError: ``bn`` has no running statistics, or another channel count.
    """
    bias = None if layer.bias is None else layer.bias.detach().cpu().double().numpy()
    try:
        weight, bias = fold_batchnorm(layer.weight.detach().cpu().double().numpy(), bias, bn)
    except ValueError as err:
        raise ValueError(f"cannot fold {type(bn).__name__} into {type(layer).__name__}: {err}") from None
    folded = copy.deepcopy(layer)
    if parametrize.is_parametrized(folded, "weight"):  # QAT: fold the weights on their grid
        disable_qat(folded)
    dtype, device = layer.weight.dtype, layer.weight.device
    with torch.no_grad():
        folded.weight = nn.Parameter(torch.from_numpy(weight).to(dtype).to(device))
        folded.bias = nn.Parameter(torch.from_numpy(bias).to(dtype).to(device))
    return folded


def batchnorm_folds(executor: GraphExecutor) -> dict[str, str]:
    """``{layer node: BatchNorm node}`` for every BatchNorm that folds exactly into the layer before it.

    A ``BatchNorm1d``/``BatchNorm2d`` node folds when its only input is an ``Affine``,
    ``SpikingAffine`` or ``Conv2d`` node that feeds nothing else, the BatchNorm has running
    statistics, and it normalizes the layer's output channels (a Conv2d's ``[C, H, W]``, or
    an Affine's 1-D ``[F]``; an Affine on ``[C, L]`` inputs produces ``[C, F]``, whose axis 1
    is not the layer's outputs, and does not fold).
    """
    folds: dict[str, str] = {}
    for bn_name in executor.node_names:
        bn = executor.module_for(bn_name)
        if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) or bn.running_mean is None:
            continue
        preds = [s for s, d in executor.edges if d == bn_name]
        if len(preds) != 1:
            continue
        layer_name = preds[0]
        layer = executor.module_for(layer_name)
        if not isinstance(layer, (nn.Linear, nn.Conv2d)) or layer.weight.shape[0] != bn.num_features:
            continue
        if [d for s, d in executor.edges if s == layer_name] != [bn_name]:
            continue
        shape = executor._value_shapes.get(layer_name)
        if isinstance(layer, nn.Linear) and (shape is None or len(shape) != 1):
            continue
        folds[layer_name] = bn_name
    return folds


def _apply_folds(executor: GraphExecutor) -> dict[str, str]:
    """Fold in place every pair of :func:`batchnorm_folds` (the BatchNorm becomes the identity)."""
    folds = batchnorm_folds(executor)
    for layer_name, bn_name in folds.items():
        bn = executor.module_for(bn_name)
        executor.set_module(layer_name, folded_copy(executor.module_for(layer_name), bn))
        executor.set_module(bn_name, nn.Identity())
    return folds


def _inner_executors(executor: GraphExecutor) -> list[tuple[str, SubgraphModule]]:
    return [
        (name, module)
        for name in executor.node_names
        if isinstance(module := executor.module_for(name), SubgraphModule)
    ]


def quantize_executor(
    executor: GraphExecutor,
    weight_bits: int = 8,
    accumulator_bits: int = 32,
    fold_batchnorm: bool = False,
) -> GraphExecutor:
    """A deep copy of ``executor`` whose synapses run in quantized simulation.

    ``SpikingAffine`` nodes use their own ``weight_bits``/``accumulator_bits`` hints;
    ``Affine`` and ``Conv2d`` nodes use the arguments, also inside nested graphs, and so does
    a ``CubaLIF``'s one-to-one ``w_rec`` (a synaptic weight). Neurons,
    pooling, the wiring, ``SepConv2d`` and every ANN node (activations, norms, Dropout,
    markers) are unchanged (float). The original executor is untouched. With QAT enabled
    (:func:`enable_qat`) the current fake-quantized weights are quantized, which gives
    back the same integers.

    Args:
        executor: the float executor.
        weight_bits: weight width of Affine/Conv2d.
        accumulator_bits: accumulator width of Affine/Conv2d.
        fold_batchnorm: fold each BatchNorm into the layer before it where
            :func:`batchnorm_folds` allows (its running statistics, exactly), and quantize
            the folded weights, as a chip without BatchNorm would run them; the BatchNorm
            becomes the identity. False (default): BatchNorm stays float after the integer layer.

    Returns:
        a new executor in eval mode, meant for evaluation (integer buffers, no parameters to train).
    """
    check_bits(weight_bits, "weight_bits", 1, 32)
    check_bits(accumulator_bits, "accumulator_bits", 1, 64)
    twin = copy.deepcopy(executor)
    _quantize_in_place(twin, weight_bits, accumulator_bits, fold_batchnorm)
    return twin.eval()


def _quantize_in_place(executor: GraphExecutor, weight_bits: int, accumulator_bits: int, fold: bool) -> None:
    if fold:
        _apply_folds(executor)
    for name in executor.node_names:
        module = executor.module_for(name)
        if module is None:
            continue
        quantized = quantized_module(module, weight_bits, accumulator_bits)
        if quantized is not None:
            executor.set_module(name, quantized)
    for _, sub in _inner_executors(executor):
        _quantize_in_place(sub.inner, weight_bits, accumulator_bits, fold)


def ir_to_quantized(
    graph: ir.Graph,
    weight_bits: int = 8,
    accumulator_bits: int = 32,
    fold_batchnorm: bool = False,
    *,
    executor: GraphExecutor | None = None,
) -> GraphExecutor:
    """An executor for ``graph`` in quantized simulation, built from the file's own integers.

    Nodes that carry ``weight_int``/``weight_scale``/``bias_int`` (see
    :func:`attach_integer_weights`) use exactly those; others are quantized like
    :func:`quantize_executor` does (nested graphs too). This is how a deployed file is
    checked: its integers, not a re-quantization of its floats, give the accuracy.

    With ``fold_batchnorm=True`` a layer that a BatchNorm folds into (:func:`batchnorm_folds`)
    is quantized from its folded float weights instead: its stored integers describe the
    unfolded weights (``weight ~= weight_int * weight_scale``) and are not used.

    ``executor``: a float executor that :func:`~t1c.bridge.ir_to_torch` built from ``graph``
    and that is no longer needed in float: it is quantized in place and returned, instead
    of building another one.
    """
    check_bits(weight_bits, "weight_bits", 1, 32)
    check_bits(accumulator_bits, "accumulator_bits", 1, 64)
    if executor is None:
        executor = ir_to_torch(graph)
    _quantize_graph_in_place(executor, graph, weight_bits, accumulator_bits, fold_batchnorm)
    return executor.eval()


def _quantize_graph_in_place(
    executor: GraphExecutor, graph: ir.Graph, weight_bits: int, accumulator_bits: int, fold: bool
) -> None:
    folded = _apply_folds(executor) if fold else {}
    for name, node in graph.nodes.items():
        if name in folded:
            module = executor.module_for(name)
            executor.set_module(
                name, quantized_module(module, *own_bits(module, weight_bits, accumulator_bits))
            )
        elif isinstance(node, WEIGHTED_NODES):
            layer = QuantizedConv2d if isinstance(node, ir.Conv2d) else QuantizedLinear
            executor.set_module(name, layer.from_node(node, weight_bits, accumulator_bits))
        elif isinstance(node, ir.CubaLIF) and node.w_rec is not None:  # w_rec: a synaptic weight
            module = executor.module_for(name)
            # a node_map may have given it a module of the user's: its w_rec is not ours to round
            twin = (
                quantized_self_connection(module, weight_bits, node)
                if isinstance(module, CubaLIFModule)
                else None
            )
            if twin is None:
                raise TypeError(
                    f"node '{name}': CubaLIF with w_rec runs in {type(executor.module_for(name)).__name__}, "
                    "which the quantized simulation cannot put on the integer grid; import it with the "
                    "default CubaLIFModule (no node_map entry for ir.CubaLIF)"
                )
            executor.set_module(name, twin)
    for name, sub in _inner_executors(executor):
        _quantize_graph_in_place(sub.inner, graph.nodes[name].graph, weight_bits, accumulator_bits, fold)


def attach_integer_weights(graph: ir.Graph, weight_bits: int = 8, accumulator_bits: int = 32) -> ir.Graph:
    """A copy of ``graph`` whose Affine/SpikingAffine/Conv2d nodes (nested ones too) carry their exact integers.

    Sets the optional fields ``weight_int``, ``weight_scale`` and ``bias_int`` to the values
    :func:`quantize_executor` simulates (SpikingAffine: its own bit widths; Affine/Conv2d:
    the arguments), so hardware receives exactly the integers whose accuracy was measured;
    likewise a ``CubaLIF``'s one-to-one recurrence ``w_rec`` gets ``w_rec_int`` and
    ``w_rec_scale`` (``weight_bits``, symmetric, one scale). The float ``weight``/``bias``/
    ``w_rec`` are kept, so readers that ignore the extension still work.
    """
    check_bits(weight_bits, "weight_bits", 1, 32)
    check_bits(accumulator_bits, "accumulator_bits", 1, 64)
    nodes = {}
    for name, node in graph.nodes.items():
        node = copy.deepcopy(node)
        if isinstance(node, WEIGHTED_NODES):
            bits, acc_bits, _ = node_bits(node, weight_bits, accumulator_bits)
            w_int, b_int, scale = quantize_layer(
                torch.from_numpy(node.weight), torch.from_numpy(node.bias), bits, acc_bits
            )
            node.weight_int, node.weight_scale, node.bias_int = w_int.numpy(), scale, b_int.numpy()
            check_integer_weights(node)
        elif isinstance(node, ir.CubaLIF) and node.w_rec is not None:
            w_int, node.w_rec_scale = quantize_weights(torch.from_numpy(node.w_rec), weight_bits)
            node.w_rec_int = w_int.numpy()
            check_recurrent_integers(node)
        elif isinstance(node, ir.Subgraph):
            node.graph = attach_integer_weights(node.graph, weight_bits, accumulator_bits)
        nodes[name] = node
    return ir.Graph(nodes, list(graph.edges), copy.deepcopy(graph.metadata), allow_cycles=graph.allow_cycles)
