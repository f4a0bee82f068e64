"""PyTorch/snnTorch model -> validated T1C-IR graph: :func:`to_ir` and :class:`T1CExporter`.

An export is one trip through four rooms, each entered once:

1. **Capture** (:mod:`t1c.bridge.capture`): find the units (every module with a
   converter, user ``custom_map`` first, then :func:`~t1c.bridge.convert.export_converters`;
   BatchNorm folded into the layer before it unless ``hybrid=True``), and record each
   unit's shapes and call order in one hooked ``torch.no_grad()`` eval forward pass of
   the sample. The model is left as it was.
2. **Data flow** (:mod:`t1c.bridge.tracing`): a chain for ``nn.Sequential`` models, else
   read off a ``torch.fx`` trace; anything that is not exact wiring is refused
   (``trace="order"`` chains the units in call order instead, with a warning).
3. **Convert** (:mod:`t1c.bridge.convert`): each unit through its converter, with an
   :class:`~t1c.bridge.registry.ExportContext`; BatchNorm folds into the node before it.
   A converter returns one node, or a :class:`~t1c.bridge.registry.NodeGroup` of wired
   nodes (an all-to-all ``RLeaky``: its neuron and its recurrent synapse on a back edge).
4. **Graph** (here): nodes named after the modules' qualified names, plus ``input`` and
   ``output`` (a group's other parts ``<module path>.<part>``); marked ``allow_cycles``
   only when a group closed a cycle. The :class:`~t1c.ir.Graph` validates itself and infers shapes, and each
   node's inferred shape is checked against the shape the hooks saw, so a bad export
   fails here, naming the module.

A :class:`~t1c.bridge.GraphExecutor` skips rooms 1 and 2: its stored node names and
edges are the graph, exactly.

Example:
    >>> import torch, snntorch as snn
    >>> from torch import nn
    >>> from t1c.bridge import to_ir
    >>> model = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True))
    >>> graph = to_ir(model, torch.zeros(1, 4))
    >>> graph.topological_order()
    ['input', '0', '1', 'output']
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import nn

import t1c
from t1c import ir

from .capture import (
    Capture,
    Unit,
    call_args,
    capture,
    find_units,
    preserved,
    refuse_other_dtypes,
    state_handovers,
)
from .convert import WEIGHTED_NODES, export_converters, hybrid_hint
from .convert.activations import IDENTITY_DROPS, RELU_FIX
from .convert.neurons import RESTART_AWARE, is_stateful
from .convert.normalization import fold_into_node
from .executor import GraphExecutor
from .registry import ArityCalls, Converter, ExportContext, ExportError, NodeGroup, Shape, find_converter
from .tracing import Flow, OperationRefused, Untraceable, chain_flow, is_sequential_chain, traced_flow

__all__ = ["ExportError", "T1CExporter", "to_ir"]

RESERVED = ("input", "output")
TRACE_MODES = ("exact", "order")


def _nested_graph(inner: nn.Module) -> ir.Graph:
    """A nested graph's inner executor as its graph (its stored structure, no sample)."""
    return to_ir(inner, None)


# -- building the graph ----------------------------------------------------------------------
def _safe_name(path: str, module: nn.Module | None, taken: set[str]) -> str:
    """An HDF5-safe, unique node name: the qualified path with '/' replaced by '_'."""
    base = path.replace("/", "_") if path else type(module).__name__.lower()
    name, i = base, 1
    while name in taken:
        name = f"{base}_{i}"
        i += 1
    taken.add(name)
    return name


@dataclasses.dataclass(repr=False)
class _Built:
    nodes: dict[str, ir.Node]
    edges: list[tuple[str, str]]
    paths: dict[str, str]  # node name -> module path (for messages and shape checks)
    expected: dict[str, tuple[Shape, str]] = dataclasses.field(default_factory=dict)  # name -> (shape, op)
    allow_cycles: bool = False  # its edges close a cycle (a NodeGroup's back edge; a recurrent executor)


# Nodes whose output is never negative when all their inputs are not (LIF: spikes 0/1).
_KEEPS_NONNEGATIVE = (ir.MaxPool2d, ir.AvgPool2d, ir.Upsample, ir.Flatten, ir.Skip)


def _check_inplace(flow: list[Flow], units: Mapping[str, Unit], output_key: str) -> None:
    """Refuse an in-place module (``nn.ReLU(inplace=True)``) exported as a node whose input is
    read by another step too (or returned): torch overwrote that value, the graph would pass
    the original. Converters that drop the module where it is the identity are exempt."""
    readers: dict[str, int] = {output_key: 1}
    for step in flow:
        for key in step.inputs:
            readers[key] = readers.get(key, 0) + 1
    for step in flow:
        unit = units.get(step.path) if step.path is not None else None
        if unit is None or unit.converter is None or unit.converter in IDENTITY_DROPS:
            continue
        if not getattr(unit.module, "inplace", False):
            continue
        if isinstance(unit.module, nn.Dropout) and not unit.module.training:
            continue  # dropout in eval mode leaves its input alone
        if readers.get(step.inputs[0], 0) > 1:
            raise ExportError(
                f"cannot export `{step.path}` ({type(unit.module).__name__}): inplace=True overwrites its input, "
                "which another operation reads too, so the graph would compute something else; use inplace=False"
            )


class _Builder:
    """Turns the data flow into named nodes and edges (converting, dropping, folding)."""

    def __init__(self, units: Mapping[str, Unit], cap: Capture, hints: dict[str, Any]) -> None:
        self.units, self.cap, self.hints = units, cap, hints
        self.nodes: dict[str, ir.Node] = {}
        self.edges: list[tuple[str, str]] = []
        self.paths: dict[str, str] = {}
        self.expected: dict[str, tuple[Shape, str]] = {}
        self.taken: set[str] = set(RESERVED)
        self.resolved: dict[str, str] = {"input": "input"}
        self.stale: dict[str, str] = {}  # flow key -> BatchNorm path that changed its value
        self.nonnegative: set[str] = set()  # node names whose output is provably >= 0
        self.grouped = False  # a converter returned a NodeGroup (which may close a cycle)
        self.calls = ArityCalls()

    def context(self, path: str, sources: list[str] | None = None) -> ExportContext:
        return ExportContext(
            path=path,
            input_shape=self.cap.input_shapes.get(path),
            output_shape=self.cap.output_shapes.get(path),
            input_nonnegative=bool(sources) and all(s in self.nonnegative for s in sources),
            calls=self.cap.calls.get(path, 1),
            state_restarts=path in self.cap.restarts,
            export_graph=_nested_graph,
            **self.hints,
        )

    def resolve(self, key: str, user: str) -> str:
        if key in self.stale:
            raise ExportError(
                f"cannot fold BatchNorm `{self.stale[key]}`: the value it normalizes is also used by "
                f"`{user}`; pass hybrid=True to export the BatchNorm as its own node"
            )
        return self.resolved[key]

    def add(self, step: Flow) -> None:
        sources = [self.resolve(k, step.path or step.key) for k in step.inputs]
        if step.alias:
            if step.relu is not None and sources[0] not in self.nonnegative:
                where = self.paths.get(sources[0], sources[0])
                raise OperationRefused(
                    f"cannot export {step.relu}: T1C-IR has no ReLU outside a hybrid graph and its input (`{where}`) may be "
                    f"negative, so dropping it would change what the model computes; {RELU_FIX}"
                )
            self.resolved[step.key] = sources[0]
            return
        if step.node is not None:
            self._emit(step.key, step.node, sources, None, None)
            if step.expect is not None:
                self.expected[self.resolved[step.key]] = (step.expect, step.what or step.key)
            return
        unit = self.units[step.path]
        ctx = self.context(step.path, sources)
        if unit.batchnorm:
            self._fold(step, unit, ctx, sources[0])
            return
        name = type(unit.module).__name__
        if step.path in self.cap.replaced or (
            step.path in self.cap.restarts and unit.converter not in RESTART_AWARE
        ):
            what = (
                "a zero membrane"
                if step.path in self.cap.restarts
                else "a membrane other than its own last one"
            )
            raise ExportError(
                f"cannot export `{step.path}` ({name}): forward hands it {what} at every call, so its state does "
                "not carry over from one time step to the next as a T1C-IR LIF's does; keep its state "
                "(init_hidden=True, or pass the returned membrane back in)"
            )
        if unit.refusal is not None:
            raise ExportError(
                f"cannot export `{step.path}` ({name}): {unit.refusal}, so no T1C-IR LIF computes this neuron "
                f"exactly; use snn.Leaky, or pass custom_map={{{name}: fn}} with fn(module) or fn(module, ctx) "
                "returning a t1c.ir node (see docs/support.md)"
            )
        if unit.converter is None:
            base = f" (it subclasses {unit.overrides} but changes its behaviour)" if unit.overrides else ""
            raise ExportError(
                f"no converter for `{step.path}` ({name}){base}; {hybrid_hint(unit.module)}. Pass "
                f"custom_map={{{name}: fn}} with fn(module) or fn(module, ctx) returning a t1c.ir node "
                "(see docs/support.md)"
            )
        try:
            node = self.calls(unit.converter, unit.module, ctx)
        except ExportError:
            raise
        except ir.T1CFormatError as err:
            raise ctx.fail(unit.module, f"the converter built an invalid node ({err})") from err
        if node is None:
            self.resolved[step.key] = sources[0]
            return
        if isinstance(node, NodeGroup):
            self._emit_group(step.key, node, sources, step.path, unit.module)
            return
        if not isinstance(node, ir.Node):
            raise ctx.fail(
                unit.module, f"its converter returned {type(node).__name__}, not a t1c.ir node or a NodeGroup"
            )
        self._emit(step.key, node, sources, step.path, unit.module)

    def _emit_group(self, key: str, group: NodeGroup, sources: list[str], path: str, module) -> None:
        """A module's wired nodes, in the group's order: ``main`` named after the module and fed
        its inputs, every other part ``<path>.<part>``; then the group's own edges."""
        names = {
            part: _safe_name(path, module, self.taken)
            if part == group.main
            else _safe_name(f"{path}.{part}", None, self.taken)
            for part in group.nodes
        }
        for part, node in group.nodes.items():
            if part == group.main:
                self._emit(key, node, sources, path, module, names[part])
            else:
                self.nodes[names[part]] = node
                self.paths[names[part]] = f"{path}.{part}"
        self.edges.extend((names[src], names[dst]) for src, dst in group.edges)
        self.grouped = True

    def _emit(
        self, key: str, node: ir.Node, sources: list[str], path: str | None, module, name: str | None = None
    ) -> None:
        if name is None:
            name = _safe_name(path if path is not None else key, module, self.taken)
        used: set[str] = set()
        for i, src in enumerate(sources):
            if src in used:  # the same value twice (cat([s, s]), x + x): edges must be distinct
                copy = _safe_name(f"{src}_copy", None, self.taken)
                self.nodes[copy] = ir.Skip(skip_type="passthrough")
                self.edges.append((src, copy))
                if src in self.nonnegative:
                    self.nonnegative.add(copy)
                sources[i] = src = copy
            used.add(src)
        self.nodes[name] = node
        for src in sources:
            self.edges.append((src, name))
        self.resolved[key] = name
        if path is not None:
            self.paths[name] = path
        if isinstance(node, (ir.LIF, ir.CubaLIF, ir.AlphaLIF)) or (
            isinstance(node, _KEEPS_NONNEGATIVE) and sources and all(s in self.nonnegative for s in sources)
        ):
            self.nonnegative.add(name)

    def _fold(self, step: Flow, unit: Unit, ctx: ExportContext, source: str) -> None:
        prev = self.nodes.get(source)
        if prev is None:
            raise ctx.fail(
                unit.module,
                "BatchNorm must follow a Linear or Conv2d to be folded into it; pass hybrid=True to export "
                "it as a BatchNorm node",
            )
        if any(src == source for src, _ in self.edges):
            raise ctx.fail(
                unit.module,
                f"the output of `{self.paths.get(source, source)}` is used elsewhere too, so the "
                "BatchNorm cannot be folded into it; pass hybrid=True to export it as a BatchNorm node",
            )
        self.nodes[source] = fold_into_node(prev, unit.module, ctx, WEIGHTED_NODES)
        self.nonnegative.discard(source)
        for key, name in list(self.resolved.items()):
            if name == source:
                self.stale[key] = step.path
        self.resolved[step.key] = source

    def finish(self, input_shape: Shape, output_key: str) -> _Built:
        out = self.resolve(output_key, "the model's output")
        nodes = {"input": ir.Input(input_type={"input": np.asarray(input_shape, dtype=np.int64)})}
        nodes.update(self.nodes)
        nodes["output"] = ir.Output()
        edges = [*self.edges, (out, "output")]
        cyclic = self.grouped and _closes_cycle(nodes, edges)
        return _Built(nodes, edges, self.paths, self.expected, allow_cycles=cyclic)


def _closes_cycle(nodes: dict[str, ir.Node], edges: list[tuple[str, str]]) -> bool:
    """Whether ``edges`` form a cycle (checked only where a NodeGroup may have closed one)."""
    try:
        return ir.Graph(nodes, edges, allow_cycles=True, validate=False).cyclic
    except ir.T1CFormatError:
        return False  # malformed: the validation that follows names the fault


def _validated(built: _Built, metadata: Mapping[str, Any], cap: Capture | None) -> ir.Graph:
    """The graph, validated; errors and shape mismatches name the module at fault."""
    try:
        graph = ir.Graph(built.nodes, built.edges, metadata, allow_cycles=built.allow_cycles)
    except ir.T1CFormatError as err:
        where = built.paths.get(err.node or "", err.node)
        raise ExportError(f"the exported graph is invalid at `{where}`: {err}") from err
    for name, (shape, what) in built.expected.items():
        got = graph.output_shapes.get(name)
        if got is not None and tuple(got) != tuple(shape):
            raise OperationRefused(
                f"cannot export {what}: it reshapes to [batch, {', '.join(map(str, shape))}] but flattening "
                f"its input gives {list(got)}, so it is not a flatten; use x.flatten(1)"
            )
    if cap is not None:
        counts: dict[str, int] = {}
        for path in built.paths.values():
            counts[path] = counts.get(path, 0) + 1
        for name, path in built.paths.items():
            if counts[path] > 1:  # hooks saw the first call only
                continue
            seen = cap.output_shapes.get(path)
            got = graph.output_shapes.get(name)
            if seen is not None and got is not None and tuple(seen) != tuple(got):
                raise ExportError(
                    f"`{path}` ({type(built.nodes[name]).__name__} node '{name}') computes shape {list(got)} "
                    f"in the exported graph but the module produced {list(seen)}; its converter or the "
                    "traced data flow is wrong"
                )
    return graph


# -- the exporter ----------------------------------------------------------------------------
class T1CExporter:
    """Exports PyTorch/snnTorch models to T1C-IR graphs (see the module docstring).

    Args:
        spiking: export ``nn.Linear`` as ``SpikingAffine`` with the three hints below.
        spike_mode: what the synapse inputs carry: ``binary``, ``graded`` or ``rate``.
        weight_bits: on-chip weight precision, 1..32.
        accumulator_bits: on-chip accumulator width, weight_bits..64.
        trace: ``"exact"`` (default): the data flow is a Sequential chain or read off a
            torch.fx trace, and anything without an exact T1C-IR form is refused.
            ``"order"``: where that would refuse the *wiring* (an operation with no node,
            an untraceable or looping forward), chain the modules in call order instead,
            with a warning; right only for plain chains. Modules are refused either way.
        hybrid: export ``nn.ReLU``, ``nn.LeakyReLU``, ``nn.PReLU``, ``nn.BatchNorm1d/2d``,
            ``nn.Sigmoid``, ``nn.Tanh``, ``nn.Softmax``, ``nn.GELU``, ``nn.ELU``,
            ``nn.LayerNorm``, ``nn.Dropout`` and t1c's ``HybridRegionModule``/``SubgraphModule``
            as their own nodes (FORMAT_HYBRID.md) instead of dropping ReLU/Dropout and folding
            BatchNorm. A ``GraphExecutor`` always exports the node types it was built from.

    After :meth:`export`, ``_input_shapes`` / ``_output_shapes`` hold the shapes the
    forward hooks captured (batch excluded) per module qualified name (per node name
    for a GraphExecutor).
    """

    def __init__(
        self,
        spiking: bool = False,
        spike_mode: str = "binary",
        weight_bits: int = 8,
        accumulator_bits: int = 16,
        trace: str = "exact",
        hybrid: bool = False,
    ) -> None:
        call = (
            f"T1CExporter(spiking={spiking!r}, spike_mode={spike_mode!r}, "
            f"weight_bits={weight_bits!r}, accumulator_bits={accumulator_bits!r}, trace={trace!r}, "
            f"hybrid={hybrid!r})"
        )
        if not isinstance(hybrid, bool):
            raise ValueError(f"{call}: hybrid must be True or False")
        if trace not in TRACE_MODES:
            raise ValueError(f"{call}: trace must be one of {list(TRACE_MODES)}")
        if not isinstance(spiking, bool):
            raise ValueError(f"{call}: spiking must be True or False")
        if spike_mode not in ir.SPIKE_MODES:
            raise ValueError(f"{call}: spike_mode must be one of {list(ir.SPIKE_MODES)}")
        if isinstance(weight_bits, bool) or not isinstance(weight_bits, int) or not 1 <= weight_bits <= 32:
            raise ValueError(f"{call}: weight_bits must be an int in 1..32")
        if (
            isinstance(accumulator_bits, bool)
            or not isinstance(accumulator_bits, int)
            or not weight_bits <= accumulator_bits <= 64
        ):
            raise ValueError(f"{call}: accumulator_bits must be an int in weight_bits..64")
        self.spiking = spiking
        self.spike_mode = spike_mode
        self.weight_bits = weight_bits
        self.accumulator_bits = accumulator_bits
        self.trace = trace
        self.hybrid = hybrid
        self._input_shapes: dict[str, Shape] = {}
        self._output_shapes: dict[str, Shape] = {}

    @property
    def _hints(self) -> dict[str, Any]:
        return {
            "spiking": self.spiking,
            "spike_mode": self.spike_mode,
            "weight_bits": self.weight_bits,
            "accumulator_bits": self.accumulator_bits,
        }

    def export(
        self, model: nn.Module, sample: Any, custom_map: Mapping[type, Converter] | None = None
    ) -> ir.Graph:
        """The validated T1C-IR graph of ``model``.

        Args:
            model: an ``nn.Module`` (snnTorch networks included) or a ``GraphExecutor``.
            sample: a float32 batch ``[B, *input_shape]`` (one sample: ``sample.unsqueeze(0)``),
                or a tuple of the forward's arguments. For a GraphExecutor, its input (or
                None: its structure is stored).
            custom_map: ``{module type: fn}`` with ``fn(module, ctx)`` or ``fn(module)``
                returning a t1c.ir node (or ``None``: the module is dropped); wins over
                the defaults.

        Raises:
            ExportError: a module or an operation in ``forward`` cannot be expressed
                exactly (the message names it, its source line and the fix), the model
                is not float32 (``model.float()``), the sample has no batch dimension,
                or the result is not a valid graph.
        """
        if not isinstance(model, nn.Module):
            raise ExportError(f"to_ir needs a torch.nn.Module, got {type(model).__name__}")
        if custom_map is not None and not isinstance(custom_map, Mapping):
            raise ExportError(
                f"custom_map must be a dict {{module type: fn}}, got {type(custom_map).__name__}"
            )
        refuse_other_dtypes(model)
        # An executor exports the node types it stores (its ReLU/BatchNorm modules are nodes).
        defaults = export_converters(hybrid=self.hybrid or isinstance(model, GraphExecutor))

        with preserved(model):
            if isinstance(model, GraphExecutor):
                return self._export_executor(model, sample, custom_map, defaults)
            return self._export_module(model, sample, custom_map, defaults)

    # -- plain models --------------------------------------------------------------------
    def _export_module(self, model, sample, custom_map, defaults) -> ir.Graph:
        units, containers = find_units(model, custom_map, defaults)
        args = call_args(model, sample)
        cap, _ = capture(model, units, args)
        state_handovers(model, units, args, cap)
        self._input_shapes = dict(cap.input_shapes)
        self._output_shapes = dict(cap.output_shapes)
        metadata = {"producer": "t1c", "producer_version": t1c.__version__}
        input_shape = tuple(args[0].shape[1:])
        flow, output_key, traced = self._flow(model, units, containers, cap)
        try:
            return self._build(flow, output_key, units, cap, input_shape, metadata)
        except OperationRefused:
            if not traced:
                raise
        # Refused at a traced operation: trace again with source lines (costly, so only now)
        # and build again, which raises the same refusal naming the line.
        flow, output_key, _ = self._flow(model, units, containers, cap, stacks=True)
        return self._build(flow, output_key, units, cap, input_shape, metadata)

    def _build(
        self,
        flow: list[Flow],
        output_key: str,
        units: Mapping[str, Unit],
        cap: Capture,
        input_shape: Shape,
        metadata: dict[str, Any],
    ) -> ir.Graph:
        """The validated graph of ``flow``."""
        _check_inplace(flow, units, output_key)
        builder = _Builder(units, cap, self._hints)
        for step in flow:
            builder.add(step)
        return _validated(builder.finish(input_shape, output_key), metadata, cap)

    def _flow(self, model, units, containers, cap, stacks: bool = False) -> tuple[list[Flow], str, bool]:
        """The data flow, and whether it was read off a torch.fx trace (``stacks``: with
        source lines, for messages)."""
        if not cap.order:
            raise ExportError(f"the forward pass of {type(model).__name__} called no convertible module")
        repeated = [p for p, n in cap.calls.items() if n > 1 and is_stateful(units[p].module)]
        if repeated:
            return (
                *self._call_order(
                    model,
                    cap,
                    Untraceable(
                        f"the stateful modules {repeated} are called several times in one forward (a time "
                        "loop inside forward?), but a T1C-IR graph computes one time step",
                        fix="write forward for one time step and loop outside the model",
                    ),
                ),
                False,
            )
        if is_sequential_chain(containers) and all(n == 1 for n in cap.calls.values()):
            return (*chain_flow(cap.order), False)
        try:
            return (*traced_flow(model, units, cap, stacks), True)
        except Untraceable as err:
            return (*self._call_order(model, cap, err), False)

    def _call_order(self, model: nn.Module, cap: Capture, err: Untraceable) -> tuple[list[Flow], str]:
        """Refuse (``trace="exact"``), or chain the units in call order with a warning (``"order"``)."""
        name = type(model).__name__
        if self.trace == "order":
            warnings.warn(
                f"{name}: {err.reason}; trace='order': chaining its modules in call order instead, "
                "which is wrong unless the model is a plain chain",
                UserWarning,
                stacklevel=5,
            )
            return chain_flow(cap.order)
        fix = (
            err.fix
            or "rewrite forward with the operations docs/support.md lists (fold a constant factor into the layer before it)"
        )
        raise ExportError(
            f"cannot export {name}: {err.reason}. Fix: {fix}, or pass trace='order' to chain the modules "
            "in call order (wrong unless the model is a plain chain)"
        ) from err

    # -- GraphExecutor -------------------------------------------------------------------
    def _export_executor(self, executor, sample, custom_map, defaults) -> ir.Graph:
        names = list(executor.node_names)
        modules = {name: executor.module_for(name) for name in names}
        units = {name: Unit(name, m, None) for name, m in modules.items() if m is not None}
        cap = Capture()
        if sample is not None:  # the structure is stored; the pass only records shapes
            cap, _ = capture(executor, units, (sample,))
        self._input_shapes = dict(cap.input_shapes)
        self._output_shapes = dict(cap.output_shapes)
        stored = executor._value_shapes  # the graph's inferred shapes, for converters (features)
        for name in names:
            sources = [src for src, dst in executor.edges if dst == name]
            if name not in cap.input_shapes and sources and stored.get(sources[0]) is not None:
                cap.input_shapes[name] = tuple(stored[sources[0]])
            if name not in cap.output_shapes and stored.get(name) is not None:
                cap.output_shapes[name] = tuple(stored[name])
        builder = _Builder(units, cap, self._hints)
        nodes: dict[str, ir.Node] = {}
        for name in names:
            kind = executor.node_types[name]
            module = modules[name]
            if kind in ("Input", "Output"):
                shape = np.asarray(executor.io_shapes[name], dtype=np.int64)
                nodes[name] = (
                    ir.Input(input_type={"input": shape})
                    if kind == "Input"
                    else ir.Output(output_type={"output": shape})
                )
                continue
            ctx = builder.context(name)
            if module is None:
                raise ExportError(f"GraphExecutor node '{name}' ({kind}) has no module to export")
            converter = find_converter(module, custom_map, defaults)
            if converter is None:
                raise ExportError(
                    f"no converter for `{name}` ({type(module).__name__}); pass "
                    f"custom_map={{{type(module).__name__}: fn}} with fn(module) or fn(module, ctx)"
                )
            node = builder.calls(converter, module, ctx)
            if not isinstance(node, ir.Node):
                raise ctx.fail(module, "a GraphExecutor node must export to exactly one t1c.ir node")
            nodes[name] = node
        for name, metadata in executor.node_metadata.items():  # node metadata goes back with the node
            if name in nodes:
                nodes[name] = dataclasses.replace(nodes[name], metadata=dict(metadata))
        built = _Built(nodes, list(executor.edges), {n: n for n in units}, allow_cycles=executor.is_recurrent)
        return _validated(built, dict(executor.metadata), cap)


def to_ir(
    model: nn.Module,
    sample: Any,
    custom_map: Mapping[type, Converter] | None = None,
    spiking: bool = False,
    spike_mode: str = "binary",
    weight_bits: int = 8,
    accumulator_bits: int = 16,
    trace: str = "exact",
    hybrid: bool = False,
) -> ir.Graph:
    """Export ``model`` to a validated T1C-IR graph that computes what the model computed.

    Args:
        model: a PyTorch/snnTorch ``nn.Module`` or a ``GraphExecutor``.
        sample: a batch ``[B, *input_shape]`` (one time step), or a tuple of the
            forward's positional arguments when it needs more than the input.
        custom_map: ``{module type: fn}``, ``fn(module, ctx)`` or ``fn(module)`` returning a
            t1c.ir node (or ``None`` to drop the module); wins over the defaults.
        spiking: export ``nn.Linear`` as ``SpikingAffine`` with the hints below.
        spike_mode: ``binary``, ``graded`` or ``rate``.
        weight_bits: 1..32.
        accumulator_bits: weight_bits..64.
        trace: ``"exact"`` (refuse any forward whose wiring is not provably exact) or
            ``"order"`` (chain the modules in call order instead, with a warning); see
            :class:`T1CExporter`.
        hybrid: export ReLU, LeakyReLU, PReLU, BatchNorm, Sigmoid, Tanh, Softmax, GELU,
            ELU, LayerNorm, Dropout and HybridRegion markers as their own nodes (a hybrid
            ANN-SNN graph, FORMAT_HYBRID.md); by default ReLU is dropped only where it is
            the identity (on spikes) and refused elsewhere, Dropout is dropped and BatchNorm
            folded into the layer before it. See :class:`T1CExporter`.

    Returns:
        The graph, with nodes named after the modules' qualified names plus ``input``
        and ``output``.

    Raises:
        ExportError: a module or operation cannot be expressed exactly (naming it and the fix).
    """
    # the exporter's arguments, in its own order
    exporter = T1CExporter(spiking, spike_mode, weight_bits, accumulator_bits, trace, hybrid)
    return exporter.export(model, sample, custom_map=custom_map)
