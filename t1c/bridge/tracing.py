"""The data flow of a model's forward, read off a ``torch.fx`` trace (the second room of
an export, after :mod:`t1c.bridge.capture`).

A model made only of ``nn.Sequential`` containers (with Sequential's own ``forward``)
is a chain by construction (:func:`chain_flow`). Any other model is traced with
``torch.fx``, the units as leaves (:func:`traced_flow`): ``x + y`` / ``torch.add``
become ``Skip(residual)``, ``torch.cat`` ``Skip(concatenate)``, flattening reshapes
``Flatten`` and ``F.max_pool2d``/``F.avg_pool2d`` with constant arguments their pool
nodes; dropout in evaluation, ``contiguous``/``clone``/``detach`` and ReLU on spikes
pass their input on. Every other operation on the data flow (``x * 2``, slicing,
``torch.relu`` on values that may be negative, ...), a forward ``torch.fx`` cannot
trace, and a time loop inside ``forward`` raise :class:`Untraceable`, naming the
operation and its source line.

The result is a list of :class:`Flow` steps, each a unit call, a node made from a
function call, or an alias, which :mod:`t1c.bridge.exporter` turns into the graph.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from t1c import ir

from .capture import Capture, Unit
from .convert.neurons import is_stateful
from .convert.pooling import pool_node
from .convert.reshape import flatten_node
from .registry import ExportError, Shape


# -- steps -------------------------------------------------------------------------------
@dataclasses.dataclass
class Flow:
    """One step of the data flow: a unit call, a join/reshape made from a function, or an alias."""

    key: str
    inputs: list[str]
    path: str | None = None  # a unit's qualified path
    node: ir.Node | None = None  # a node made from a function call (Skip, Flatten, pools)
    alias: bool = False  # the value of inputs[0] passes through (a dropped function)
    relu: str | None = None  # an alias that is a ReLU: exact only on a non-negative input
    expect: Shape | None = None  # the shape torch's call is known to produce (checked)
    what: str | None = None  # the operation and its source line, for messages


class OperationRefused(ExportError):
    """A refusal whose message describes a traced operation (:func:`_describe`): worth
    tracing again with source lines so that it names the line."""


class Untraceable(Exception):
    """The forward uses something the exporter cannot express exactly as graph wiring.

    Attributes:
        reason: what is wrong, naming the operation.
        node: the torch.fx node at fault (its source line goes into the message), if any.
        fix: what the user can do.
    """

    def __init__(self, reason: str, node: fx.Node | None = None, fix: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.node, self.fix = reason, node, fix


def chain_flow(order: list[str]) -> tuple[list[Flow], str]:
    flow, prev = [], "input"
    for path in order:
        flow.append(Flow(key=path, inputs=[prev], path=path))
        prev = path
    return flow, prev


def is_sequential_chain(containers: list[nn.Module]) -> bool:
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
    on the data flow either becomes an exact step or raises :class:`Untraceable`.
    """

    def __init__(self, graph: fx.Graph, units: Mapping[str, Unit], cap: Capture) -> None:
        self.graph, self.units, self.cap = graph, units, cap
        self.values: dict[fx.Node, tuple[str, Any]] = {}
        self.flow: list[Flow] = []
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
        raise Untraceable(
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
            raise Untraceable(
                f"{_describe(node)} takes {what} that is computed in forward, not a constant", node
            )
        return payload

    def step(self, fx_node: fx.Node, inputs: list[str], **kwargs: Any) -> tuple[str, Any]:
        self.flow.append(Flow(key=fx_node.name, inputs=inputs, what=_describe(fx_node), **kwargs))
        return (_KEY, fx_node.name)

    # -- the walk
    def read(self) -> tuple[list[Flow], str]:
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
            raise Untraceable(
                f"`{missing[0]}` ran in the sample forward pass but torch.fx does not see it called "
                "(a call inside a wrapped function or a branch?)"
            )
        for path, count in self.unit_calls.items():
            if count > 1 and is_stateful(self.units[path].module):
                raise Untraceable(f"the stateful `{path}` is called {count} times in the traced forward")
        if output_key is None:
            raise Untraceable("the forward returns nothing computed from its input")
        return self.flow, output_key

    def call_unit(self, node: fx.Node) -> tuple[str, Any]:
        target = str(node.target)
        if target not in self.units:
            raise Untraceable(f"module `{target}` is called but is not a unit", node)
        if self.cap.calls.get(target, 0) == 0:
            raise Untraceable(
                f"`{target}` is called in the traced forward but did not run in the sample forward pass "
                "(data-dependent control flow?)",
                node,
            )
        if not node.args:
            raise Untraceable(f"`{target}` is called without a positional input", node)
        extra: list[str] = []
        fx.node.map_arg((node.args[1:], node.kwargs), lambda a: extra.append(self.val(a)[0]))
        if any(kind in (_KEY, _TUPLE) for kind in extra):
            raise Untraceable(
                f"`{target}` receives the data flow in a second argument (as its state?), which a "
                f"T1C-IR node cannot{_source_line(node)}",
                node,
            )
        source = self.data(node.args[0], node)
        self.unit_calls[target] = self.unit_calls.get(target, 0) + 1
        # Keyed by the fx node: a stateless module called twice becomes two nodes.
        self.flow.append(Flow(key=node.name, inputs=[source], path=target))
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
                raise Untraceable(
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
        raise Untraceable(f"{_describe(node)} has no T1C-IR node", node)

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
        raise Untraceable(
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
            raise Untraceable(f"{_describe(node)} reads `.{args[1]}` of the data flow", node)
        return (_STATE, None)

    def add(self, node: fx.Node) -> tuple[str, Any]:
        args, kwargs = node.args, node.kwargs
        if len(args) != 2 or kwargs:
            raise Untraceable(f"{_describe(node)} is not a plain sum of two tensors (alpha= or out=?)", node)
        inputs = [self.data(args[0], node), self.data(args[1], node)]
        inplace = node.target in _INPLACE or node.target == "add_"
        if inplace and isinstance(args[0], fx.Node):
            later = [u for u in args[0].users if u is not node and self.position[u] > self.position[node]]
            if later:
                raise Untraceable(
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
            raise Untraceable(
                f"{_describe(node)} concatenates along dim {dim}; only dim=1 is supported", node
            )
        inputs = [self.data(p, node) for p in parts]
        return self.step(node, inputs, node=ir.Skip(skip_type="concatenate"))

    def flatten(self, node: fx.Node) -> tuple[str, Any]:
        args, kwargs = node.args, node.kwargs
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        if not isinstance(start, int) or not isinstance(end, int) or start == 0:
            raise Untraceable(
                f"{_describe(node)} flattens the batch dimension (start_dim must be >= 1)", node
            )
        return self.step(node, [self.data(args[0], node)], node=flatten_node(start, end))

    def reshape(self, node: fx.Node) -> tuple[str, Any]:
        """``x.view(B, -1)``, ``x.view(-1, N)``, ``x.reshape(x.size(0), N)``: a Flatten (checked)."""
        args = node.args
        if node.kwargs:
            raise Untraceable(f"{_describe(node)} is a reshape with keyword arguments", node)
        shape = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
        if len(shape) == 2:
            (k0, p0), (k1, p1) = self.val(shape[0]), self.val(shape[1])
            batch0 = k0 == _OTHER and p0 == _BATCH
            if batch0 and k1 == _OTHER and p1 == -1:
                return self.step(node, [self.data(args[0], node)], node=flatten_node(1, -1))
            known1 = k1 == _OTHER and isinstance(p1, int) and not isinstance(shape[1], fx.Node) and p1 > 0
            if known1 and (batch0 or (k0 == _OTHER and p0 == -1 and not isinstance(shape[0], fx.Node))):
                flat = flatten_node(1, -1)
                return self.step(node, [self.data(args[0], node)], node=flat, expect=(p1,))
        raise Untraceable(
            f"{_describe(node)} is a reshape other than flattening all but the batch dimension "
            "((batch, -1), (-1, N) or (batch, N))",
            node,
        )

    def pool(self, node: fx.Node, signature: Callable) -> tuple[str, Any]:
        bound = _bind(signature, node)
        values = {k: self.constant(v, node, f"`{k}`") for k, v in bound.items() if k != "input"}
        if values.get("return_indices"):
            raise Untraceable(f"{_describe(node)} has return_indices=True, which T1C-IR cannot express", node)
        if values.get("divisor_override") is not None:
            raise Untraceable(f"{_describe(node)} has divisor_override, which AvgPool2d cannot express", node)
        try:
            pool = pool_node(
                ir.MaxPool2d if signature is _max_pool2d_args else ir.AvgPool2d, values.__getitem__
            )
        except ir.T1CFormatError as err:
            raise Untraceable(
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
            raise Untraceable(
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
        raise Untraceable(
            f"{_describe(node)} has arguments the exporter does not know ({err})", node
        ) from err


def traced_flow(
    model: nn.Module, units: Mapping[str, Unit], cap: Capture, stacks: bool = False
) -> tuple[list[Flow], str]:
    """The data flow of ``model``'s forward, from a torch.fx trace with the units as leaves.

    Traced without source lines (they cost a third of the export); a refusal traces again
    with them (``stacks``), so that its message names the line.
    """
    tracer = _UnitTracer({id(u.module) for u in units.values()}, stacks)
    try:
        graph = tracer.trace(model)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise Untraceable(
            f"torch.fx cannot trace its forward ({type(err).__name__}: {first})",
            fix="remove data-dependent Python control flow from forward",
        ) from err
    try:
        return _FlowReader(graph, units, cap).read()
    except Untraceable as err:
        if stacks or err.node is None:
            raise
    return traced_flow(model, units, cap, stacks=True)  # raises again, now naming the source line
