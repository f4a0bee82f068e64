"""PyTorch/snnTorch model -> validated T1C-IR graph: :func:`to_ir` and :class:`T1CExporter`.

How an export works:

1. **Units.** Every module with a converter (user ``custom_map`` first, then
   :func:`~t1c.bridge.export_maps.default_export_map`) is a unit; BatchNorm is a unit
   folded into the Linear/Conv2d before it; a container without a converter is looked
   into; a leaf without one is an error (naming its path) if the model calls it.
2. **Shapes.** One ``torch.no_grad()`` forward pass of ``sample`` in eval mode, with
   forward hooks on the units, records each unit's input/output shape and call order.
   The model's modes, parameters, buffers and snnTorch hidden state are restored
   afterwards, whatever happens.
3. **Data flow.** A :class:`~t1c.bridge.executor.GraphExecutor` is exported from its
   stored node names and edges, exactly. A model made only of ``nn.Sequential``
   containers is a chain by construction. Any other model is traced with ``torch.fx``
   (units as leaves) so that ``x + y`` / ``torch.add`` become ``Skip(residual)`` and
   ``torch.cat`` becomes ``Skip(concatenate)``; when tracing fails, the units are
   chained in call order with a warning (right for chains, possibly wrong otherwise).
4. **Graph.** Nodes are named after the modules' qualified names, plus ``input`` and
   ``output``; the :class:`~t1c.ir.Graph` validates itself and infers shapes, and each
   node's inferred shape is checked against the shape the hooks saw, so a bad export
   fails here, naming the module.

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
import inspect
import operator
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

import t1c
from t1c import ir

from .export_maps import (
    BATCHNORM_TYPES,
    Converter,
    ExportContext,
    ExportError,
    default_export_map,
    find_converter,
    fold_batchnorm,
)

__all__ = ["ExportError", "T1CExporter", "to_ir"]

Shape = tuple[int, ...]
RESERVED = ("input", "output")


# -- keeping the model as it was -------------------------------------------------------------
@contextmanager
def _preserved(model: nn.Module) -> Iterator[None]:
    """Run a block, then put every submodule's attributes back as they were.

    Restores training flags, buffers (snnTorch's ``mem``), plain attributes that a
    forward pass sets (snnTorch's ``reset``) and removes attributes it added. Tensors
    are restored by reference, so parameters keep their identity for optimizers.
    """
    saved = []
    for module in model.modules():
        saved.append((module, dict(vars(module)), dict(module._buffers), dict(module._parameters)))
    try:
        yield
    finally:
        for module, attrs, buffers, params in saved:
            state = vars(module)
            state.clear()
            state.update(attrs)
            module._buffers.clear()
            module._buffers.update(buffers)
            module._parameters.clear()
            module._parameters.update(params)


# -- units and shapes ------------------------------------------------------------------------
@dataclasses.dataclass
class _Unit:
    """A module the exporter converts (or folds) as a whole."""

    path: str
    module: nn.Module
    converter: Converter | None  # None: BatchNorm (folded) or unknown (an error if called)
    batchnorm: bool = False


@dataclasses.dataclass
class _Capture:
    """What the hooked forward pass saw."""

    order: list[str] = dataclasses.field(default_factory=list)  # first calls, in order
    calls: dict[str, int] = dataclasses.field(default_factory=dict)
    input_shapes: dict[str, Shape] = dataclasses.field(default_factory=dict)
    output_shapes: dict[str, Shape] = dataclasses.field(default_factory=dict)
    returns_tuple: dict[str, bool] = dataclasses.field(default_factory=dict)
    containers: list[nn.Module] = dataclasses.field(default_factory=list)


def _find_units(
    model: nn.Module, custom_map: Mapping[type, Converter] | None, defaults: Mapping[type, Converter]
) -> tuple[dict[str, _Unit], list[nn.Module]]:
    """Units by qualified path, and the containers looked into (for the chain test)."""
    units: dict[str, _Unit] = {}
    containers: list[nn.Module] = []

    def visit(path: str, module: nn.Module) -> None:
        converter = find_converter(module, custom_map, defaults)
        if converter is not None:
            units[path] = _Unit(path, module, converter)
        elif isinstance(module, BATCHNORM_TYPES):
            units[path] = _Unit(path, module, None, batchnorm=True)
        elif next(iter(module.children()), None) is None:
            units[path] = _Unit(path, module, None)
        else:
            containers.append(module)
            for name, child in module.named_children():
                visit(f"{path}.{name}" if path else name, child)

    visit("", model)
    return units, containers


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        for item in value.values():
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _call_args(model: nn.Module, sample: Any) -> tuple[Any, ...]:
    """The positional arguments to call ``model`` with.

    A tuple/list ``sample`` is the argument list itself. A tensor is the first
    argument; required positional parameters after it (snnTorch's explicit
    ``forward(x, mem1, mem2)`` style) get ``None``, which snnTorch neurons read as
    "zero state".
    """
    args = tuple(sample) if isinstance(sample, (tuple, list)) else (sample,)
    if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() < 1:
        raise ExportError(
            f"sample must be a batched tensor [B, *input_shape] (or a tuple of forward arguments "
            f"starting with one), got {type(args[0]).__name__ if args else 'an empty tuple'}"
        )
    if isinstance(sample, (tuple, list)):
        return args
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return args
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in positional and p.default is inspect.Parameter.empty]
    return args + (None,) * max(0, len(required) - 1)


def _capture(model: nn.Module, units: Mapping[str, _Unit], args: tuple[Any, ...]) -> tuple[_Capture, Any]:
    """One no-grad eval forward pass with hooks on the units; returns what they saw."""
    cap = _Capture()
    handles = []

    def hook(path: str) -> Callable:
        def record(module: nn.Module, inputs: tuple, output: Any) -> None:
            cap.calls[path] = cap.calls.get(path, 0) + 1
            if cap.calls[path] > 1:
                return
            cap.order.append(path)
            first_in, first_out = _first_tensor(inputs), _first_tensor(output)
            if first_in is not None:
                cap.input_shapes[path] = tuple(first_in.shape[1:])
            if first_out is not None:
                cap.output_shapes[path] = tuple(first_out.shape[1:])
            cap.returns_tuple[path] = isinstance(output, tuple)

        return record

    for path, unit in units.items():
        handles.append(unit.module.register_forward_hook(hook(path)))
    try:
        model.eval()
        with torch.no_grad():
            output = model(*args)
    except ExportError:
        raise
    except Exception as err:
        raise ExportError(
            f"the sample forward pass of {type(model).__name__} failed ({type(err).__name__}: {err}); "
            "pass `sample` as the batch the model's forward takes, or a tuple of its arguments"
        ) from err
    finally:
        for handle in handles:
            handle.remove()
    return cap, output


# -- data flow -------------------------------------------------------------------------------
@dataclasses.dataclass
class _Flow:
    """One step of the data flow: a unit call, a join/reshape made from a function, or an alias."""

    key: str
    inputs: list[str]
    path: str | None = None  # a unit's qualified path
    node: ir.Node | None = None  # a node made from a function call (Skip, Flatten)
    alias: bool = False  # the value of inputs[0] passes through (a dropped function)


def _is_stateful(module: nn.Module) -> bool:
    """Neurons carry state from call to call, so calling one twice is a time loop."""
    if getattr(module, "stateful", False):
        return True
    try:
        import snntorch
    except ImportError:
        return False
    return isinstance(module, snntorch.SpikingNeuron)


class _Untraceable(Exception):
    """The traced forward uses something the exporter cannot express as graph wiring."""


def _chain_flow(order: list[str]) -> tuple[list[_Flow], str]:
    flow, prev = [], "input"
    for path in order:
        flow.append(_Flow(key=path, inputs=[prev], path=path))
        prev = path
    return flow, prev


class _UnitTracer(fx.Tracer):
    """Symbolic tracer that keeps the exporter's units (and snnTorch neurons) as leaves."""

    def __init__(self, leaves: set[int]) -> None:
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return id(m) in self._leaves


_ADD = {operator.add, operator.iadd, torch.add}
_CAT = {torch.cat, torch.concat, torch.concatenate}
_RELU = {F.relu, torch.relu}
_DROPOUT = {F.dropout, F.dropout1d, F.dropout2d}
_SHAPE_ATTRS = ("shape", "ndim", "dtype", "device")
_STATE_MAKERS = {torch.zeros_like, torch.ones_like, torch.empty_like, torch.zeros, torch.ones}

# Value kinds while walking the fx graph.
_KEY, _TUPLE, _STATE, _OTHER = "key", "tuple", "state", "other"


def _traced_flow(model: nn.Module, units: Mapping[str, _Unit], cap: _Capture) -> tuple[list[_Flow], str]:
    """The data flow of ``model``'s forward, from a torch.fx trace with the units as leaves."""
    tracer = _UnitTracer({id(u.module) for u in units.values()})
    try:
        graph = tracer.trace(model)
    except Exception as err:
        raise _Untraceable(f"torch.fx could not trace the forward ({type(err).__name__}: {err})") from err

    values: dict[fx.Node, tuple[str, Any]] = {}
    flow: list[_Flow] = []
    seen_inputs = False
    output_key: str | None = None

    def val(arg: Any) -> tuple[str, Any]:
        if isinstance(arg, fx.Node):
            return values[arg]
        if isinstance(arg, (int, float, bool, str, type(None), torch.dtype, torch.device)):
            return (_OTHER, arg)
        return (_STATE, None)

    def data(arg: Any, what: str) -> str:
        kind, key = val(arg)
        if kind == _TUPLE:
            return key
        if kind != _KEY:
            raise _Untraceable(f"{what} does not take the network's data flow as its input")
        return key

    def tensors(node: fx.Node) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        fx.node.map_arg((node.args, node.kwargs), lambda a: out.append(val(a)))
        return [v for v in out if v[0] in (_KEY, _TUPLE)]

    for node in graph.nodes:
        op, target = node.op, node.target
        if op == "placeholder":
            values[node] = (_KEY, "input") if not seen_inputs else (_STATE, None)
            seen_inputs = True
        elif op == "get_attr":
            values[node] = (_STATE, None)
        elif op == "call_module":
            if target not in units:
                raise _Untraceable(f"module `{target}` is called but is not a unit")
            if cap.calls.get(target, 0) == 0:
                raise _Untraceable(f"module `{target}` appears in the trace but was not called")
            # Keyed by the fx node: a stateless module called twice becomes two nodes.
            flow.append(_Flow(key=node.name, inputs=[data(node.args[0], f"`{target}`")], path=target))
            values[node] = (_TUPLE if cap.returns_tuple.get(target) else _KEY, node.name)
        elif op in ("call_function", "call_method"):
            values[node] = _function_value(node, val, data, tensors, flow)
        elif op == "output":
            output_key = _output_key(node.args[0], val)
    if output_key is None:
        raise _Untraceable("the forward returns nothing computed from its input")
    return flow, output_key


def _function_value(node: fx.Node, val, data, tensors, flow: list[_Flow]) -> tuple[str, Any]:
    """The value of one traced function/method call, adding a join/reshape step if needed."""
    op, target, args, kwargs = node.op, node.target, node.args, node.kwargs
    name = node.name
    is_fn = op == "call_function"
    if is_fn and target is operator.getitem:
        kind, key = val(args[0])
        if kind == _TUPLE:
            return (_KEY, key) if args[1] == 0 else (_STATE, None)
        if kind in (_STATE, _OTHER):
            return (kind, None)
        raise _Untraceable(f"indexing a tensor of the data flow ({node.format_node()})")
    if (is_fn and target is getattr and args[1] in _SHAPE_ATTRS) or (
        op == "call_method" and target in ("size", "dim")
    ):
        return (_OTHER, None)  # shape arithmetic
    if not tensors(node):  # state bookkeeping, not the data flow
        return (_STATE, None)
    if (is_fn and target in _ADD) or (op == "call_method" and target in ("add", "add_")):
        if len(args) != 2 or kwargs:
            raise _Untraceable(f"`{node.format_node()}` is not a plain sum of two tensors")
        inputs = [data(args[0], name), data(args[1], name)]
        flow.append(_Flow(key=name, inputs=inputs, node=ir.Skip(skip_type="residual")))
        return (_KEY, name)
    if is_fn and target in _CAT:
        parts = args[0] if args else kwargs.get("tensors")
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if dim != 1:
            raise _Untraceable(
                f"`{node.format_node()}` concatenates along dim {dim}; only dim 1 is supported"
            )
        inputs = [data(p, name) for p in parts]
        flow.append(_Flow(key=name, inputs=inputs, node=ir.Skip(skip_type="concatenate")))
        return (_KEY, name)
    if (is_fn and target is torch.flatten) or (op == "call_method" and target == "flatten"):
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        if not isinstance(start, int) or not isinstance(end, int) or start == 0:
            raise _Untraceable(f"`{node.format_node()}` flattens the batch dimension")
        node_ir = ir.Flatten(
            start_dim=start - 1 if start > 0 else start, end_dim=end - 1 if end >= 0 else end
        )
        flow.append(_Flow(key=name, inputs=[data(args[0], name)], node=node_ir))
        return (_KEY, name)
    if op == "call_method" and target in ("view", "reshape"):
        shape = args[1:] if not (len(args) == 2 and isinstance(args[1], (tuple, list))) else args[1]
        if len(shape) == 2 and shape[1] == -1 and val(shape[0])[0] == _OTHER:
            flow.append(
                _Flow(key=name, inputs=[data(args[0], name)], node=ir.Flatten(start_dim=0, end_dim=-1))
            )
            return (_KEY, name)
        raise _Untraceable(f"`{node.format_node()}` is a reshape other than (batch, -1)")
    if (is_fn and target in _RELU) or (op == "call_method" and target == "relu"):
        warnings.warn(
            f"`{name}` (relu in forward) was dropped from the T1C-IR graph: T1C-IR has no ReLU. Fine "
            "before spiking neurons; it changes what a non-spiking network computes.",
            UserWarning,
            stacklevel=4,
        )
        flow.append(_Flow(key=name, inputs=[data(args[0], name)], alias=True))
        return (_KEY, name)
    if is_fn and target in _DROPOUT:
        flow.append(_Flow(key=name, inputs=[data(args[0], name)], alias=True))
        return (_KEY, name)
    if is_fn and target in _STATE_MAKERS:
        return (_STATE, None)
    raise _Untraceable(f"`{node.format_node()}` has no T1C-IR equivalent")


def _output_key(result: Any, val) -> str | None:
    """The graph output: the first returned value that is part of the data flow."""
    if isinstance(result, (tuple, list)):
        for item in result:
            found = _output_key(item, val)
            if found is not None:
                return found
        return None
    if isinstance(result, dict):
        return _output_key(list(result.values()), val)
    kind, key = val(result)
    return key if kind in (_KEY, _TUPLE) else None


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


class _Builder:
    """Turns the data flow into named nodes and edges (converting, dropping, folding)."""

    def __init__(self, units: Mapping[str, _Unit], cap: _Capture, hints: dict[str, Any]) -> None:
        self.units, self.cap, self.hints = units, cap, hints
        self.nodes: dict[str, ir.Node] = {}
        self.edges: list[tuple[str, str]] = []
        self.paths: dict[str, str] = {}
        self.taken: set[str] = set(RESERVED)
        self.resolved: dict[str, str] = {"input": "input"}
        self.stale: dict[str, str] = {}  # flow key -> BatchNorm path that changed its value

    def context(self, path: str) -> ExportContext:
        return ExportContext(
            path=path,
            input_shape=self.cap.input_shapes.get(path),
            output_shape=self.cap.output_shapes.get(path),
            **self.hints,
        )

    def resolve(self, key: str, user: str) -> str:
        if key in self.stale:
            raise ExportError(
                f"cannot fold BatchNorm `{self.stale[key]}`: the value it normalizes is also used by "
                f"`{user}`; export the BatchNorm as its own layer with custom_map"
            )
        return self.resolved[key]

    def add(self, step: _Flow) -> None:
        sources = [self.resolve(k, step.path or step.key) for k in step.inputs]
        if step.alias:
            self.resolved[step.key] = sources[0]
            return
        if step.node is not None:
            self._emit(step.key, step.node, sources, None, None)
            return
        unit = self.units[step.path]
        ctx = self.context(step.path)
        if unit.batchnorm:
            self._fold(step, unit, ctx, sources[0])
            return
        if unit.converter is None:
            raise ExportError(
                f"no converter for `{step.path}` ({type(unit.module).__name__}); T1C-IR cannot express it "
                f"by default. Pass custom_map={{{type(unit.module).__name__}: fn}} with "
                "fn(module, ctx) -> t1c.ir node (see docs/support.md)"
            )
        try:
            node = unit.converter(unit.module, ctx)
        except ExportError:
            raise
        except ir.T1CFormatError as err:
            raise ctx.fail(unit.module, f"the converter built an invalid node ({err})") from err
        if node is None:
            self.resolved[step.key] = sources[0]
            return
        if not isinstance(node, ir.Node):
            raise ctx.fail(unit.module, f"its converter returned {type(node).__name__}, not a t1c.ir node")
        self._emit(step.key, node, sources, step.path, unit.module)

    def _emit(self, key: str, node: ir.Node, sources: list[str], path: str | None, module) -> None:
        name = _safe_name(path if path is not None else key, module, self.taken)
        self.nodes[name] = node
        for src in sources:
            self.edges.append((src, name))
        self.resolved[key] = name
        if path is not None:
            self.paths[name] = path

    def _fold(self, step: _Flow, unit: _Unit, ctx: ExportContext, source: str) -> None:
        prev = self.nodes.get(source)
        if prev is None:
            raise ctx.fail(unit.module, "BatchNorm must follow a Linear or Conv2d to be folded into it")
        if any(src == source for src, _ in self.edges):
            raise ctx.fail(
                unit.module,
                f"the output of `{self.paths.get(source, source)}` is used elsewhere too, so the "
                "BatchNorm cannot be folded into it",
            )
        self.nodes[source] = fold_batchnorm(prev, unit.module, ctx)
        for key, name in list(self.resolved.items()):
            if name == source:
                self.stale[key] = step.path
        self.resolved[step.key] = source

    def finish(self, input_shape: Shape, output_key: str) -> _Built:
        out = self.resolve(output_key, "the model's output")
        nodes = {"input": ir.Input(input_type={"input": np.asarray(input_shape, dtype=np.int64)})}
        nodes.update(self.nodes)
        nodes["output"] = ir.Output()
        return _Built(nodes, [*self.edges, (out, "output")], self.paths)


def _validated(built: _Built, metadata: Mapping[str, Any], cap: _Capture | None) -> ir.Graph:
    """The graph, validated; errors and shape mismatches name the module at fault."""
    try:
        graph = ir.Graph(built.nodes, built.edges, metadata)
    except ir.T1CFormatError as err:
        where = built.paths.get(err.node or "", err.node)
        raise ExportError(f"the exported graph is invalid at `{where}`: {err}") from err
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
    ) -> None:
        call = (
            f"T1CExporter(spiking={spiking!r}, spike_mode={spike_mode!r}, "
            f"weight_bits={weight_bits!r}, accumulator_bits={accumulator_bits!r})"
        )
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
            sample: a batch ``[B, *input_shape]``, or a tuple of the forward's arguments.
                For a GraphExecutor, its input (or None: its structure is stored).
            custom_map: ``{module type: fn(module, ctx) -> t1c.ir node or None}``;
                wins over the defaults (``None`` drops the module).

        Raises:
            ExportError: a module cannot be expressed (the message names its path), or
                the result is not a valid graph.
        """
        if not isinstance(model, nn.Module):
            raise ExportError(f"to_ir needs a torch.nn.Module, got {type(model).__name__}")
        if custom_map is not None and not isinstance(custom_map, Mapping):
            raise ExportError(
                f"custom_map must be a dict {{module type: fn}}, got {type(custom_map).__name__}"
            )
        defaults = default_export_map()
        from .executor import GraphExecutor

        with _preserved(model):
            if isinstance(model, GraphExecutor):
                return self._export_executor(model, sample, custom_map, defaults)
            return self._export_module(model, sample, custom_map, defaults)

    # -- plain models --------------------------------------------------------------------
    def _export_module(self, model, sample, custom_map, defaults) -> ir.Graph:
        units, containers = _find_units(model, custom_map, defaults)
        args = _call_args(model, sample)
        cap, _ = _capture(model, units, args)
        self._input_shapes = dict(cap.input_shapes)
        self._output_shapes = dict(cap.output_shapes)
        flow, output_key = self._flow(model, units, containers, cap)
        builder = _Builder(units, cap, self._hints)
        for step in flow:
            builder.add(step)
        built = builder.finish(tuple(args[0].shape[1:]), output_key)
        metadata = {"producer": "t1c", "producer_version": t1c.__version__}
        return _validated(built, metadata, cap)

    def _flow(self, model, units, containers, cap) -> tuple[list[_Flow], str]:
        if not cap.order:
            raise ExportError(f"the forward pass of {type(model).__name__} called no convertible module")
        repeated = [p for p, n in cap.calls.items() if n > 1 and _is_stateful(units[p].module)]
        if repeated:
            warnings.warn(
                f"modules {repeated} are called several times in one forward (a time loop inside "
                "forward?); exporting one step, chaining the modules in the order of their first call",
                UserWarning,
                stacklevel=4,
            )
            return _chain_flow(cap.order)
        if all(isinstance(c, nn.Sequential) for c in containers) and all(n == 1 for n in cap.calls.values()):
            return _chain_flow(cap.order)
        try:
            return _traced_flow(model, units, cap)
        except _Untraceable as err:
            warnings.warn(
                f"could not trace the data flow of {type(model).__name__} ({err}); chaining its modules "
                "in call order instead, which is wrong if the model branches (residual, concatenation)",
                UserWarning,
                stacklevel=4,
            )
            return _chain_flow(cap.order)

    # -- GraphExecutor -------------------------------------------------------------------
    def _export_executor(self, executor, sample, custom_map, defaults) -> ir.Graph:
        names = list(executor.node_names)
        modules = {name: executor.module_for(name) for name in names}
        units = {name: _Unit(name, m, None) for name, m in modules.items() if m is not None}
        cap = _Capture()
        if sample is not None:  # the structure is stored; the pass only records shapes
            cap, _ = _capture(executor, units, (sample,))
        self._input_shapes = dict(cap.input_shapes)
        self._output_shapes = dict(cap.output_shapes)
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
                    f"custom_map={{{type(module).__name__}: fn}}"
                )
            node = converter(module, ctx)
            if not isinstance(node, ir.Node):
                raise ctx.fail(module, "a GraphExecutor node must export to exactly one t1c.ir node")
            nodes[name] = node
        built = _Built(nodes, list(executor.edges), {n: n for n in units})
        return _validated(built, dict(executor.metadata), cap)


def to_ir(
    model: nn.Module,
    sample: Any,
    custom_map: Mapping[type, Converter] | None = None,
    spiking: bool = False,
    spike_mode: str = "binary",
    weight_bits: int = 8,
    accumulator_bits: int = 16,
) -> ir.Graph:
    """Export ``model`` to a validated T1C-IR graph that computes what the model computed.

    Args:
        model: a PyTorch/snnTorch ``nn.Module`` or a ``GraphExecutor``.
        sample: a batch ``[B, *input_shape]`` (one time step), or a tuple of the
            forward's positional arguments when it needs more than the input.
        custom_map: ``{module type: fn(module, ctx) -> t1c.ir node}``, wins over the defaults.
        spiking: export ``nn.Linear`` as ``SpikingAffine`` with the hints below.
        spike_mode: ``binary``, ``graded`` or ``rate``.
        weight_bits: 1..32.
        accumulator_bits: weight_bits..64.

    Returns:
        The graph, with nodes named after the modules' qualified names plus ``input``
        and ``output``.

    Raises:
        ExportError: a module cannot be expressed (naming its path and the fix).
    """
    exporter = T1CExporter(
        spiking=spiking, spike_mode=spike_mode, weight_bits=weight_bits, accumulator_bits=accumulator_bits
    )
    return exporter.export(model, sample, custom_map=custom_map)
