"""PyTorch/snnTorch model -> validated T1C-IR graph: :func:`to_ir` and :class:`T1CExporter`.

How an export works:

1. **Units.** Every module with a converter (user ``custom_map`` first, then
   :func:`~t1c.bridge.export_maps.default_export_map`) is a unit; BatchNorm is a unit
   folded into the Linear/Conv2d before it (with ``hybrid=True`` it is converted to its
   own node, like ReLU, Dropout and the other ANN modules of FORMAT_HYBRID.md); a
   container without a converter is looked into; a leaf without one is an error (naming
   its path, and ``hybrid=True`` where that would export it) if the model calls it.
2. **Shapes.** One ``torch.no_grad()`` forward pass of ``sample`` in eval mode, with
   forward hooks on the units, records each unit's input/output shape and call order.
   The model's modes, parameters, buffers and snnTorch hidden state are restored
   afterwards, whatever happens.
3. **Data flow.** A :class:`~t1c.bridge.executor.GraphExecutor` is exported from its
   stored node names and edges, exactly. A model made only of ``nn.Sequential``
   containers (with Sequential's own ``forward``) is a chain by construction. Any other
   model is traced with ``torch.fx`` (units as leaves) so that ``x + y`` / ``torch.add``
   become ``Skip(residual)``, ``torch.cat`` ``Skip(concatenate)``, flattening reshapes
   ``Flatten`` and ``F.max_pool2d``/``F.avg_pool2d`` with constant arguments their pool
   nodes. Every other operation on the data flow (``x * 2``, slicing, ``torch.relu`` on
   values that may be negative, ...), a forward ``torch.fx`` cannot trace, and a time loop
   inside ``forward`` are refused with an :class:`ExportError` naming the operation and
   its source line. ``trace="order"`` opts out: the units are then chained in call order
   with a warning (right for chains only).
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
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

import t1c
from t1c import ir

from .export_maps import (
    BATCHNORM_TYPES,
    RELU_FIX,
    Converter,
    ExportContext,
    ExportError,
    convert_leaky,
    converter_arity,
    default_export_map,
    drop_relu,
    drop_silently,
    find_converter,
    fold_batchnorm,
    hybrid_hint,
    overridden_base,
    refused_neuron,
)

__all__ = ["ExportError", "T1CExporter", "to_ir"]

Shape = tuple[int, ...]
RESERVED = ("input", "output")
TRACE_MODES = ("exact", "order")


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
    refusal: str | None = None  # why an snnTorch neuron without a converter has no exact form
    overrides: str | None = None  # the default-converted base class whose behaviour it changes


@dataclasses.dataclass
class _Capture:
    """What the hooked forward pass saw."""

    order: list[str] = dataclasses.field(default_factory=list)  # first calls, in order
    calls: dict[str, int] = dataclasses.field(default_factory=dict)
    input_shapes: dict[str, Shape] = dataclasses.field(default_factory=dict)
    output_shapes: dict[str, Shape] = dataclasses.field(default_factory=dict)
    returns_tuple: dict[str, bool] = dataclasses.field(default_factory=dict)
    containers: list[nn.Module] = dataclasses.field(default_factory=list)
    restarts: set[str] = dataclasses.field(default_factory=set)  # Leaky handed a zero membrane per call
    replaced: set[str] = dataclasses.field(default_factory=set)  # Leaky handed some other membrane


def _find_units(
    model: nn.Module, custom_map: Mapping[type, Converter] | None, defaults: Mapping[type, Converter]
) -> tuple[dict[str, _Unit], list[nn.Module]]:
    """Units by qualified path, and the containers looked into (for the chain test)."""
    units: dict[str, _Unit] = {}
    containers: list[nn.Module] = []

    def visit(path: str, module: nn.Module) -> None:
        converter = find_converter(module, custom_map, defaults)
        refusal = refused_neuron(module) if converter is None else None
        if converter is not None:
            units[path] = _Unit(path, module, converter)
        elif isinstance(module, BATCHNORM_TYPES):
            units[path] = _Unit(path, module, None, batchnorm=True)
        elif refusal is not None or hybrid_hint(module) or next(iter(module.children()), None) is None:
            # A refused neuron is a leaf: its submodules (RLeaky.recurrent) are not layers; so is
            # a module that only hybrid=True converts (a SubgraphModule's inner executor).
            base = overridden_base(module, defaults)
            units[path] = _Unit(
                path, module, None, refusal=refusal, overrides=base.__name__ if base else None
            )
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


def _handed_state(args: tuple, kwargs: dict) -> Any:
    """The membrane a Leaky call is given explicitly (``lif(x, mem)``), or None."""
    return args[1] if len(args) > 1 else kwargs.get("mem")


def _state_handovers(
    model: nn.Module, units: Mapping[str, _Unit], args: tuple[Any, ...], cap: _Capture
) -> None:
    """Which snnTorch Leaky neurons does ``forward`` hand a membrane that is not their own
    previous state? Fills ``cap.restarts`` (a zero membrane at every call, as
    ``mem = lif.init_leaky()`` in forward does: the neuron keeps nothing between calls) and
    ``cap.replaced`` (any other membrane). Found by behaviour: two sample passes, comparing
    the membrane handed in the second with the one the first left. Only neurons with
    ``init_hidden=False`` can be handed one, so most models skip this."""
    try:
        import snntorch
    except ImportError:
        return
    watched = {
        path: unit.module
        for path, unit in units.items()
        if isinstance(unit.module, snntorch.Leaky)
        and unit.converter is not None
        and not unit.module.init_hidden
    }
    if not watched:
        return
    handed: dict[str, list[torch.Tensor | None]] = {path: [] for path in watched}
    left: dict[str, torch.Tensor] = {}

    def before(path: str) -> Callable:
        def record(module: nn.Module, a: tuple, kw: dict) -> None:
            state = _handed_state(a, kw)
            handed[path].append(state.detach().clone() if isinstance(state, torch.Tensor) else None)

        return record

    def after(path: str) -> Callable:
        def record(module: nn.Module, a: tuple, kw: dict, out: Any) -> None:
            if path not in left and isinstance(getattr(module, "mem", None), torch.Tensor):
                left[path] = module.mem.detach().clone()

        return record

    handles = []
    for path, module in watched.items():
        handles.append(module.register_forward_pre_hook(before(path), with_kwargs=True))
        handles.append(module.register_forward_hook(after(path), with_kwargs=True))
    try:
        with torch.no_grad():
            model(*args)  # what each neuron is handed, and the membrane it leaves
            if all(h[0] is None for h in handed.values() if h):
                return
            model(*args)
    except Exception as err:
        raise ExportError(
            f"a second sample forward pass of {type(model).__name__} failed ({type(err).__name__}: {err}); "
            "the exporter runs two to see which neuron state carries over between calls"
        ) from err
    finally:
        for handle in handles:
            handle.remove()
    for path, calls in handed.items():
        second, first_left = (calls[1] if len(calls) == 2 else None), left.get(path)
        if second is None or first_left is None:
            continue
        if second.shape == first_left.shape and torch.equal(second, first_left):
            continue  # handed its own previous membrane: it carries its state
        if not bool(second.any()):
            if bool(first_left.any()):
                cap.restarts.add(path)
            continue
        cap.replaced.add(path)


# -- data flow -------------------------------------------------------------------------------
@dataclasses.dataclass
class _Flow:
    """One step of the data flow: a unit call, a join/reshape made from a function, or an alias."""

    key: str
    inputs: list[str]
    path: str | None = None  # a unit's qualified path
    node: ir.Node | None = None  # a node made from a function call (Skip, Flatten, pools)
    alias: bool = False  # the value of inputs[0] passes through (a dropped function)
    relu: str | None = None  # an alias that is a ReLU: exact only on a non-negative input
    expect: Shape | None = None  # the shape torch's call is known to produce (checked)
    what: str | None = None  # the operation and its source line, for messages


def _is_stateful(module: nn.Module) -> bool:
    """Neurons carry state from call to call, so calling one twice is a time loop."""
    if getattr(module, "stateful", False):
        return True
    try:
        import snntorch
    except ImportError:
        return False
    return isinstance(module, snntorch.SpikingNeuron)


class _OperationRefused(ExportError):
    """A refusal whose message describes a traced operation (:func:`_describe`): worth
    tracing again with source lines so that it names the line."""


class _Untraceable(Exception):
    """The forward uses something the exporter cannot express exactly as graph wiring.

    Attributes:
        reason: what is wrong, naming the operation.
        node: the torch.fx node at fault (its source line goes into the message), if any.
        fix: what the user can do.
    """

    def __init__(self, reason: str, node: fx.Node | None = None, fix: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.node, self.fix = reason, node, fix


def _chain_flow(order: list[str]) -> tuple[list[_Flow], str]:
    flow, prev = [], "input"
    for path in order:
        flow.append(_Flow(key=path, inputs=[prev], path=path))
        prev = path
    return flow, prev


def _is_sequential_chain(containers: list[nn.Module]) -> bool:
    """Every container looked into runs ``nn.Sequential.forward`` itself: a chain by construction."""
    return all(type(c).forward is nn.Sequential.forward for c in containers)


class _UnitTracer(fx.Tracer):
    """Symbolic tracer that keeps the exporter's units (and snnTorch neurons) as leaves."""

    def __init__(self, leaves: set[int], stacks: bool = False) -> None:
        super().__init__()
        self._leaves = leaves
        self.record_stack_traces = stacks  # so that a refusal names its source line

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return id(m) in self._leaves


def _source_line(node: fx.Node | None) -> str:
    """`` at file.py:12: `code` `` for the user's line that made ``node`` ('' if unknown)."""
    trace = getattr(node, "stack_trace", None) or ""
    lines = trace.splitlines()
    torch_dir = str(Path(torch.__file__).resolve().parent)
    for i, line in enumerate(lines):
        match = re.match(r'\s*File "(.+)", line (\d+), in (\S+)', line)
        if not match or str(Path(match[1]).resolve()).startswith(torch_dir):
            continue
        code = lines[i + 1].strip() if i + 1 < len(lines) else ""
        return f" at {Path(match[1]).name}:{match[2]}" + (f": `{code}`" if code else "")
    return ""


def _op_name(node: fx.Node) -> str:
    """A readable name for the function or method an fx node calls (``F.max_pool2d``, ``x * y``)."""
    target = node.target
    if node.op == "call_method":
        return f"`Tensor.{target}`"
    if node.op == "call_module":
        return f"`self.{target}(...)`"
    for prefix, namespace in (("F.", F), ("torch.", torch)):
        for name in (getattr(target, "__name__", None), str(target).split(".")[-1]):
            if name and getattr(namespace, name, None) is target:
                return f"`{prefix}{name}`"
    if getattr(target, "__module__", None) == "_operator":
        symbol = _OPERATOR_SYMBOLS.get(target.__name__)
        return f"`{symbol}` (operator.{target.__name__})" if symbol else f"`operator.{target.__name__}`"
    return f"`{getattr(target, '__qualname__', target)}`"


_OPERATOR_SYMBOLS = {
    "mul": "x * y",
    "imul": "x *= y",
    "truediv": "x / y",
    "itruediv": "x /= y",
    "floordiv": "x // y",
    "sub": "x - y",
    "isub": "x -= y",
    "neg": "-x",
    "pow": "x ** y",
    "matmul": "x @ y",
    "getitem": "x[...]",
    "mod": "x % y",
    "gt": "x > y",
    "lt": "x < y",
    "ge": "x >= y",
    "le": "x <= y",
    "eq": "x == y",
}


def _describe(node: fx.Node) -> str:
    """``operation `x * y` (operator.mul, fx node `mul`) at net.py:12: `return ...` `` for messages."""
    return f"operation {_op_name(node)} (fx node `{node.name}`){_source_line(node)}"


_ADD = {operator.add, operator.iadd, torch.add}
_INPLACE = {operator.iadd}
_CAT = {torch.cat, torch.concat, torch.concatenate}
_RELU = {F.relu, torch.relu, torch.relu_, F.relu_}
_DROPOUT = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d}
_SAME_VALUE_METHODS = ("contiguous", "clone", "detach")  # return the same values
_STATE_MAKERS = {torch.zeros_like, torch.ones_like, torch.empty_like, torch.zeros, torch.ones}
_CONSTANT_TYPES = (int, float, bool, str, type(None), torch.dtype, torch.device)

# Value kinds while walking the fx graph.
_KEY, _TUPLE, _STATE, _OTHER = "key", "tuple", "state", "other"
_BATCH, _SHAPE = "batch", "shape"  # _OTHER payloads: the batch size, a data tensor's shape


def _max_pool2d_args(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):  # noqa: A002, ANN001, ANN202, E501 - F.max_pool2d's signature
    return locals()


def _avg_pool2d_args(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):  # noqa: A002, ANN001, ANN202, E501 - F.avg_pool2d's signature
    return locals()


def _dropout_args(input, p=0.5, training=True, inplace=False):  # noqa: A002, ANN001, ANN202 - F.dropout's signature
    return locals()


class _FlowReader:
    """Reads the data flow off a torch.fx graph whose leaves are the units.

    Every value is classified: the data flow (``_KEY``: a flow key; ``_TUPLE``: a unit's
    tuple output whose item 0 is the data), state (neuron membranes, parameters,
    constants made inside ``forward``) or plain Python values (``_OTHER``, with the batch
    size and shapes tracked so that flattening reshapes are recognised). Each operation
    on the data flow either becomes an exact step or raises :class:`_Untraceable`.
    """

    def __init__(self, graph: fx.Graph, units: Mapping[str, _Unit], cap: _Capture) -> None:
        self.graph, self.units, self.cap = graph, units, cap
        self.values: dict[fx.Node, tuple[str, Any]] = {}
        self.flow: list[_Flow] = []
        self.unit_calls: dict[str, int] = {}
        self.position = {node: i for i, node in enumerate(graph.nodes)}

    # -- values
    def val(self, arg: Any) -> tuple[str, Any]:
        if isinstance(arg, fx.Node):
            return self.values[arg]
        if isinstance(arg, _CONSTANT_TYPES):
            return (_OTHER, arg)
        if isinstance(arg, (tuple, list)) and all(isinstance(a, _CONSTANT_TYPES) for a in arg):
            return (_OTHER, tuple(arg))
        return (_STATE, None)

    def data(self, arg: Any, node: fx.Node) -> str:
        kind, key = self.val(arg)
        if kind in (_KEY, _TUPLE):
            return key
        raise _Untraceable(
            f"{_describe(node)} combines the data flow with a value not computed from the input "
            "(a constant, parameter or state), which no T1C-IR node does",
            node,
        )

    def has_data(self, node: fx.Node) -> bool:
        found: list[str] = []
        fx.node.map_arg((node.args, node.kwargs), lambda a: found.append(self.val(a)[0]))
        return any(kind in (_KEY, _TUPLE) for kind in found)

    def constant(self, value: Any, node: fx.Node, what: str) -> Any:
        kind, payload = self.val(value)
        if kind != _OTHER or (isinstance(value, fx.Node) and payload in (None, _BATCH, _SHAPE)):
            raise _Untraceable(
                f"{_describe(node)} takes {what} that is computed in forward, not a constant", node
            )
        return payload

    def step(self, fx_node: fx.Node, inputs: list[str], **kwargs: Any) -> tuple[str, Any]:
        self.flow.append(_Flow(key=fx_node.name, inputs=inputs, what=_describe(fx_node), **kwargs))
        return (_KEY, fx_node.name)

    # -- the walk
    def read(self) -> tuple[list[_Flow], str]:
        seen_input = False
        output_key: str | None = None
        for node in self.graph.nodes:
            if node.op == "placeholder":
                self.values[node] = (_KEY, "input") if not seen_input else (_STATE, None)
                seen_input = True
            elif node.op == "get_attr":
                self.values[node] = (_STATE, None)
            elif node.op == "call_module":
                self.values[node] = self.call_unit(node)
            elif node.op in ("call_function", "call_method"):
                self.values[node] = self.call(node)
            elif node.op == "output":
                output_key = self.output(node)
        missing = [p for p in self.cap.order if p not in self.unit_calls]
        if missing:
            raise _Untraceable(
                f"`{missing[0]}` ran in the sample forward pass but torch.fx does not see it called "
                "(a call inside a wrapped function or a branch?)"
            )
        for path, count in self.unit_calls.items():
            if count > 1 and _is_stateful(self.units[path].module):
                raise _Untraceable(f"the stateful `{path}` is called {count} times in the traced forward")
        if output_key is None:
            raise _Untraceable("the forward returns nothing computed from its input")
        return self.flow, output_key

    def call_unit(self, node: fx.Node) -> tuple[str, Any]:
        target = str(node.target)
        if target not in self.units:
            raise _Untraceable(f"module `{target}` is called but is not a unit", node)
        if self.cap.calls.get(target, 0) == 0:
            raise _Untraceable(
                f"`{target}` is called in the traced forward but did not run in the sample forward pass "
                "(data-dependent control flow?)",
                node,
            )
        if not node.args:
            raise _Untraceable(f"`{target}` is called without a positional input", node)
        extra: list[str] = []
        fx.node.map_arg((node.args[1:], node.kwargs), lambda a: extra.append(self.val(a)[0]))
        if any(kind in (_KEY, _TUPLE) for kind in extra):
            raise _Untraceable(
                f"`{target}` receives the data flow in a second argument (as its state?), which a "
                f"T1C-IR node cannot{_source_line(node)}",
                node,
            )
        source = self.data(node.args[0], node)
        self.unit_calls[target] = self.unit_calls.get(target, 0) + 1
        # Keyed by the fx node: a stateless module called twice becomes two nodes.
        self.flow.append(_Flow(key=node.name, inputs=[source], path=target))
        return (_TUPLE if self.cap.returns_tuple.get(target) else _KEY, node.name)

    def call(self, node: fx.Node) -> tuple[str, Any]:  # noqa: PLR0911, PLR0912 - one branch per operation
        op, target, args, kwargs = node.op, node.target, node.args, node.kwargs
        fn = op == "call_function"
        method = target if op == "call_method" else None
        if fn and target is operator.getitem:
            return self.getitem(node)
        if (fn and target is getattr) or method in ("size", "dim"):
            return self.shape_query(node)
        if not self.has_data(node):  # state bookkeeping (membranes, constants), not the data flow
            return (_STATE, None)
        if (fn and target in _ADD) or method in ("add", "add_"):
            return self.add(node)
        if fn and target in _CAT:
            return self.cat(node)
        if (fn and target is torch.flatten) or method == "flatten":
            return self.flatten(node)
        if method in ("view", "reshape") or (fn and target is torch.reshape):
            return self.reshape(node)
        if (fn and target in _RELU) or method in ("relu", "relu_"):
            return self.step(node, [self.data(args[0], node)], alias=True, relu=_describe(node))
        if fn and target in _DROPOUT:
            bound = _bind(_dropout_args, node)
            if bound["training"] is not False and bound["p"] != 0:
                raise _Untraceable(
                    f"{_describe(node)} has training={bound['training']!r}, so it drops values in "
                    "evaluation too; pass training=self.training",
                    node,
                )
            return self.step(node, [self.data(args[0], node)], alias=True)
        if method in _SAME_VALUE_METHODS and len(args) == 1 and not kwargs:
            return self.step(node, [self.data(args[0], node)], alias=True)
        if fn and target is F.max_pool2d:
            return self.pool(node, _max_pool2d_args)
        if fn and target is F.avg_pool2d:
            return self.pool(node, _avg_pool2d_args)
        if fn and target in _STATE_MAKERS:
            return (_STATE, None)
        raise _Untraceable(f"{_describe(node)} has no T1C-IR node", node)

    # -- operations
    def getitem(self, node: fx.Node) -> tuple[str, Any]:
        kind, payload = self.val(node.args[0])
        index = node.args[1]
        if kind == _TUPLE:
            return (_KEY, payload) if index == 0 else (_STATE, None)
        if kind == _OTHER and payload == _SHAPE:
            return (_OTHER, _BATCH if index == 0 else None)
        if kind in (_STATE, _OTHER):
            return (kind, None)
        raise _Untraceable(
            f"{_describe(node)} indexes or slices the data flow, which no T1C-IR node does", node
        )

    def shape_query(self, node: fx.Node) -> tuple[str, Any]:
        target, args = node.target, node.args
        kind = self.val(args[0])[0]
        data = kind in (_KEY, _TUPLE)
        if node.op == "call_method" and target == "size":
            if not data:
                return (_OTHER, None)
            dim = args[1] if len(args) > 1 else node.kwargs.get("dim")
            return (_OTHER, _SHAPE if dim is None else (_BATCH if dim == 0 else None))
        if node.op == "call_method":  # dim()
            return (_OTHER, None)
        if args[1] == "shape":
            return (_OTHER, _SHAPE if data else None)
        if args[1] in ("ndim", "dtype", "device", "is_cuda", "requires_grad"):
            return (_OTHER, None)
        if data:
            raise _Untraceable(f"{_describe(node)} reads `.{args[1]}` of the data flow", node)
        return (_STATE, None)

    def add(self, node: fx.Node) -> tuple[str, Any]:
        args, kwargs = node.args, node.kwargs
        if len(args) != 2 or kwargs:
            raise _Untraceable(f"{_describe(node)} is not a plain sum of two tensors (alpha= or out=?)", node)
        inputs = [self.data(args[0], node), self.data(args[1], node)]
        inplace = node.target in _INPLACE or node.target == "add_"
        if inplace and isinstance(args[0], fx.Node):
            later = [u for u in args[0].users if u is not node and self.position[u] > self.position[node]]
            if later:
                raise _Untraceable(
                    f"{_describe(node)} adds in place to a value that `{later[0].name}` reads afterwards; "
                    "write `y = y + x`",
                    node,
                )
        return self.step(node, inputs, node=ir.Skip(skip_type="residual"))

    def cat(self, node: fx.Node) -> tuple[str, Any]:
        args, kwargs = node.args, node.kwargs
        parts = args[0] if args else kwargs.get("tensors")
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if dim != 1 or not isinstance(parts, (tuple, list)):
            raise _Untraceable(
                f"{_describe(node)} concatenates along dim {dim}; only dim=1 is supported", node
            )
        inputs = [self.data(p, node) for p in parts]
        return self.step(node, inputs, node=ir.Skip(skip_type="concatenate"))

    def flatten(self, node: fx.Node) -> tuple[str, Any]:
        args, kwargs = node.args, node.kwargs
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        if not isinstance(start, int) or not isinstance(end, int) or start == 0:
            raise _Untraceable(
                f"{_describe(node)} flattens the batch dimension (start_dim must be >= 1)", node
            )
        flat = ir.Flatten(start_dim=start - 1 if start > 0 else start, end_dim=end - 1 if end >= 0 else end)
        return self.step(node, [self.data(args[0], node)], node=flat)

    def reshape(self, node: fx.Node) -> tuple[str, Any]:
        """``x.view(B, -1)``, ``x.view(-1, N)``, ``x.reshape(x.size(0), N)``: a Flatten (checked)."""
        args = node.args
        if node.kwargs:
            raise _Untraceable(f"{_describe(node)} is a reshape with keyword arguments", node)
        shape = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
        if len(shape) == 2:
            (k0, p0), (k1, p1) = self.val(shape[0]), self.val(shape[1])
            batch0 = k0 == _OTHER and p0 == _BATCH
            if batch0 and k1 == _OTHER and p1 == -1:
                return self.step(node, [self.data(args[0], node)], node=ir.Flatten(start_dim=0, end_dim=-1))
            known1 = k1 == _OTHER and isinstance(p1, int) and not isinstance(shape[1], fx.Node) and p1 > 0
            if known1 and (batch0 or (k0 == _OTHER and p0 == -1 and not isinstance(shape[0], fx.Node))):
                flat = ir.Flatten(start_dim=0, end_dim=-1)
                return self.step(node, [self.data(args[0], node)], node=flat, expect=(p1,))
        raise _Untraceable(
            f"{_describe(node)} is a reshape other than flattening all but the batch dimension "
            "((batch, -1), (-1, N) or (batch, N))",
            node,
        )

    def pool(self, node: fx.Node, signature: Callable) -> tuple[str, Any]:
        bound = _bind(signature, node)
        values = {k: self.constant(v, node, f"`{k}`") for k, v in bound.items() if k != "input"}
        if values.get("return_indices"):
            raise _Untraceable(
                f"{_describe(node)} has return_indices=True, which T1C-IR cannot express", node
            )
        if values.get("divisor_override") is not None:
            raise _Untraceable(
                f"{_describe(node)} has divisor_override, which AvgPool2d cannot express", node
            )
        kernel = values["kernel_size"]
        stride = values["stride"] if values["stride"] not in (None, (), []) else kernel
        try:
            if signature is _max_pool2d_args:
                pool: ir.Node = ir.MaxPool2d(
                    kernel_size=kernel,
                    stride=stride,
                    padding=values["padding"],
                    dilation=values["dilation"],
                    ceil_mode=values["ceil_mode"],
                )
            else:
                pool = ir.AvgPool2d(
                    kernel_size=kernel,
                    stride=stride,
                    padding=values["padding"],
                    ceil_mode=values["ceil_mode"],
                    count_include_pad=values["count_include_pad"],
                )
        except ir.T1CFormatError as err:
            raise _Untraceable(
                f"{_describe(node)} has arguments its T1C-IR node cannot hold ({err})", node
            ) from err
        return self.step(node, [self.data(bound["input"], node)], node=pool)

    def output(self, node: fx.Node) -> str:
        """The graph output: the forward's (first) returned value, which must be the data flow."""
        result = node.args[0]
        while isinstance(result, (tuple, list, dict)) and result:
            result = next(iter(result.values())) if isinstance(result, dict) else result[0]
        kind, key = self.val(result)
        if kind not in (_KEY, _TUPLE):
            raise _Untraceable(
                "the forward's first returned value is not computed from its input through exportable "
                "operations (a membrane or constant?); T1C-IR graphs output that value: return the "
                "output first"
            )
        return key


def _bind(signature: Callable, node: fx.Node) -> dict[str, Any]:
    """The fx node's arguments bound to ``signature`` (a copy of the torch function's)."""
    try:
        return signature(*node.args, **node.kwargs)
    except TypeError as err:
        raise _Untraceable(
            f"{_describe(node)} has arguments the exporter does not know ({err})", node
        ) from err


def _traced_flow(
    model: nn.Module, units: Mapping[str, _Unit], cap: _Capture, stacks: bool = False
) -> tuple[list[_Flow], str]:
    """The data flow of ``model``'s forward, from a torch.fx trace with the units as leaves.

    Traced without source lines (they cost a third of the export); a refusal traces again
    with them (``stacks``), so that its message names the line.
    """
    tracer = _UnitTracer({id(u.module) for u in units.values()}, stacks)
    try:
        graph = tracer.trace(model)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise _Untraceable(
            f"torch.fx cannot trace its forward ({type(err).__name__}: {first})",
            fix="remove data-dependent Python control flow from forward",
        ) from err
    try:
        return _FlowReader(graph, units, cap).read()
    except _Untraceable as err:
        if stacks or err.node is None:
            raise
    return _traced_flow(model, units, cap, stacks=True)  # raises again, now naming the source line


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


# Nodes whose output is never negative when all their inputs are not (LIF: spikes 0/1).
_KEEPS_NONNEGATIVE = (ir.MaxPool2d, ir.AvgPool2d, ir.Upsample, ir.Flatten, ir.Skip)


def _check_inplace(flow: list[_Flow], units: Mapping[str, _Unit], output_key: str) -> None:
    """Refuse an in-place module (``nn.ReLU(inplace=True)``) exported as a node whose input is
    read by another step too (or returned): torch overwrote that value, the graph would pass
    the original. Converters that drop the module where it is the identity are exempt."""
    readers: dict[str, int] = {output_key: 1}
    for step in flow:
        for key in step.inputs:
            readers[key] = readers.get(key, 0) + 1
    for step in flow:
        unit = units.get(step.path) if step.path is not None else None
        if unit is None or unit.converter in (None, drop_relu, drop_silently):
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


def _call_converter(converter: Converter, arity: dict[int, int], module: nn.Module, ctx: ExportContext):
    """``converter(module, ctx)`` or ``converter(module)``, its arity read once per converter."""
    key = id(converter)
    if key not in arity:
        arity[key] = converter_arity(converter, type(module))
    return converter(module, ctx) if arity[key] == 2 else converter(module)


class _Builder:
    """Turns the data flow into named nodes and edges (converting, dropping, folding)."""

    def __init__(self, units: Mapping[str, _Unit], cap: _Capture, hints: dict[str, Any]) -> None:
        self.units, self.cap, self.hints = units, cap, hints
        self.nodes: dict[str, ir.Node] = {}
        self.edges: list[tuple[str, str]] = []
        self.paths: dict[str, str] = {}
        self.expected: dict[str, tuple[Shape, str]] = {}
        self.taken: set[str] = set(RESERVED)
        self.resolved: dict[str, str] = {"input": "input"}
        self.stale: dict[str, str] = {}  # flow key -> BatchNorm path that changed its value
        self.nonnegative: set[str] = set()  # node names whose output is provably >= 0
        self.arity: dict[int, int] = {}

    def context(self, path: str, sources: list[str] | None = None) -> ExportContext:
        return ExportContext(
            path=path,
            input_shape=self.cap.input_shapes.get(path),
            output_shape=self.cap.output_shapes.get(path),
            input_nonnegative=bool(sources) and all(s in self.nonnegative for s in sources),
            calls=self.cap.calls.get(path, 1),
            state_restarts=path in self.cap.restarts,
            **self.hints,
        )

    def resolve(self, key: str, user: str) -> str:
        if key in self.stale:
            raise ExportError(
                f"cannot fold BatchNorm `{self.stale[key]}`: the value it normalizes is also used by "
                f"`{user}`; pass hybrid=True to export the BatchNorm as its own node"
            )
        return self.resolved[key]

    def add(self, step: _Flow) -> None:
        sources = [self.resolve(k, step.path or step.key) for k in step.inputs]
        if step.alias:
            if step.relu is not None and sources[0] not in self.nonnegative:
                where = self.paths.get(sources[0], sources[0])
                raise _OperationRefused(
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
            step.path in self.cap.restarts and unit.converter is not convert_leaky
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
                f"no converter for `{step.path}` ({name}){base}; T1C-IR cannot express it "
                f"by default{hybrid_hint(unit.module)}. Pass custom_map={{{name}: fn}} with "
                "fn(module) or fn(module, ctx) returning a t1c.ir node (see docs/support.md)"
            )
        try:
            node = _call_converter(unit.converter, self.arity, unit.module, ctx)
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
        if isinstance(node, ir.LIF) or (
            isinstance(node, _KEEPS_NONNEGATIVE) and sources and all(s in self.nonnegative for s in sources)
        ):
            self.nonnegative.add(name)

    def _fold(self, step: _Flow, unit: _Unit, ctx: ExportContext, source: str) -> None:
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
        self.nodes[source] = fold_batchnorm(prev, unit.module, ctx)
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
        return _Built(nodes, [*self.edges, (out, "output")], self.paths, self.expected)


def _validated(built: _Built, metadata: Mapping[str, Any], cap: _Capture | None) -> ir.Graph:
    """The graph, validated; errors and shape mismatches name the module at fault."""
    try:
        graph = ir.Graph(built.nodes, built.edges, metadata)
    except ir.T1CFormatError as err:
        where = built.paths.get(err.node or "", err.node)
        raise ExportError(f"the exported graph is invalid at `{where}`: {err}") from err
    for name, (shape, what) in built.expected.items():
        got = graph.output_shapes.get(name)
        if got is not None and tuple(got) != tuple(shape):
            raise _OperationRefused(
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
            sample: a batch ``[B, *input_shape]``, or a tuple of the forward's arguments.
                For a GraphExecutor, its input (or None: its structure is stored).
            custom_map: ``{module type: fn}`` with ``fn(module, ctx)`` or ``fn(module)``
                returning a t1c.ir node (or ``None``: the module is dropped); wins over
                the defaults.

        Raises:
            ExportError: a module or an operation in ``forward`` cannot be expressed
                exactly (the message names it, its source line and the fix), or the
                result is not a valid graph.
        """
        if not isinstance(model, nn.Module):
            raise ExportError(f"to_ir needs a torch.nn.Module, got {type(model).__name__}")
        if custom_map is not None and not isinstance(custom_map, Mapping):
            raise ExportError(
                f"custom_map must be a dict {{module type: fn}}, got {type(custom_map).__name__}"
            )
        from .executor import GraphExecutor

        # An executor exports the node types it stores (its ReLU/BatchNorm modules are nodes).
        defaults = default_export_map(hybrid=self.hybrid or isinstance(model, GraphExecutor))

        with _preserved(model):
            if isinstance(model, GraphExecutor):
                return self._export_executor(model, sample, custom_map, defaults)
            return self._export_module(model, sample, custom_map, defaults)

    # -- plain models --------------------------------------------------------------------
    def _export_module(self, model, sample, custom_map, defaults) -> ir.Graph:
        units, containers = _find_units(model, custom_map, defaults)
        args = _call_args(model, sample)
        cap, _ = _capture(model, units, args)
        _state_handovers(model, units, args, cap)
        self._input_shapes = dict(cap.input_shapes)
        self._output_shapes = dict(cap.output_shapes)
        metadata = {"producer": "t1c", "producer_version": t1c.__version__}
        input_shape = tuple(args[0].shape[1:])
        flow, output_key, traced = self._flow(model, units, containers, cap)
        try:
            return self._build(flow, output_key, units, cap, input_shape, metadata)
        except _OperationRefused:
            if not traced:
                raise
        # Refused at a traced operation: trace again with source lines (costly, so only now)
        # and build again, which raises the same refusal naming the line.
        flow, output_key, _ = self._flow(model, units, containers, cap, stacks=True)
        return self._build(flow, output_key, units, cap, input_shape, metadata)

    def _build(
        self,
        flow: list[_Flow],
        output_key: str,
        units: Mapping[str, _Unit],
        cap: _Capture,
        input_shape: Shape,
        metadata: dict[str, Any],
    ) -> ir.Graph:
        """The validated graph of ``flow``."""
        _check_inplace(flow, units, output_key)
        builder = _Builder(units, cap, self._hints)
        for step in flow:
            builder.add(step)
        return _validated(builder.finish(input_shape, output_key), metadata, cap)

    def _flow(self, model, units, containers, cap, stacks: bool = False) -> tuple[list[_Flow], str, bool]:
        """The data flow, and whether it was read off a torch.fx trace (``stacks``: with
        source lines, for messages)."""
        if not cap.order:
            raise ExportError(f"the forward pass of {type(model).__name__} called no convertible module")
        repeated = [p for p, n in cap.calls.items() if n > 1 and _is_stateful(units[p].module)]
        if repeated:
            return (
                *self._call_order(
                    model,
                    cap,
                    _Untraceable(
                        f"the stateful modules {repeated} are called several times in one forward (a time "
                        "loop inside forward?), but a T1C-IR graph computes one time step",
                        fix="write forward for one time step and loop outside the model",
                    ),
                ),
                False,
            )
        if _is_sequential_chain(containers) and all(n == 1 for n in cap.calls.values()):
            return (*_chain_flow(cap.order), False)
        try:
            return (*_traced_flow(model, units, cap, stacks), True)
        except _Untraceable as err:
            return (*self._call_order(model, cap, err), False)

    def _call_order(self, model: nn.Module, cap: _Capture, err: _Untraceable) -> tuple[list[_Flow], str]:
        """Refuse (``trace="exact"``), or chain the units in call order with a warning (``"order"``)."""
        name = type(model).__name__
        if self.trace == "order":
            warnings.warn(
                f"{name}: {err.reason}; trace='order': chaining its modules in call order instead, "
                "which is wrong unless the model is a plain chain",
                UserWarning,
                stacklevel=5,
            )
            return _chain_flow(cap.order)
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
        units = {name: _Unit(name, m, None) for name, m in modules.items() if m is not None}
        cap = _Capture()
        if sample is not None:  # the structure is stored; the pass only records shapes
            cap, _ = _capture(executor, units, (sample,))
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
            node = _call_converter(converter, builder.arity, module, ctx)
            if not isinstance(node, ir.Node):
                raise ctx.fail(module, "a GraphExecutor node must export to exactly one t1c.ir node")
            nodes[name] = node
        for name, metadata in executor.node_metadata.items():  # node metadata goes back with the node
            if name in nodes:
                nodes[name] = dataclasses.replace(nodes[name], metadata=dict(metadata))
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
    exporter = T1CExporter(
        spiking=spiking,
        spike_mode=spike_mode,
        weight_bits=weight_bits,
        accumulator_bits=accumulator_bits,
        trace=trace,
        hybrid=hybrid,
    )
    return exporter.export(model, sample, custom_map=custom_map)
