"""Run a T1C-IR graph as a trainable PyTorch module: :class:`GraphExecutor`.

Like ``torch.fx.Interpreter``, the executor turns the graph into a *plan* once, at
construction (topological order, each node's input slots, when each value is last
used), so a time step does no graph work: it walks the plan, calls each node's module
and frees values after their last use. Semantics follow ``SEMANTICS.md``:

* a node with several incoming edges receives their **sum**, except a ``Skip``
  (:class:`~t1c.bridge.SkipModule`), which receives them separately, in edge-list order;
* stateful nodes (``LIF``) carry state from step to step. State is explicit: a dict
  ``{node name: tensor}`` in and out, ``state=None`` meaning the zero state. The executor
  keeps no state between calls.

:meth:`GraphExecutor.run_sequence` runs ``T`` steps at once, as stepping would:
stateless nodes see all ``T * B`` samples in one call (one matmul per layer) and only
stateful nodes loop over time. Every element-wise computation is the same as in
stepping, but a BLAS/oneDNN matmul or convolution over ``T * B`` rows may sum in another
order than ``T`` calls over ``B`` rows (kernels are chosen by size and CPU), so
``run_sequence`` is not bit-identical to stepping: membranes agree within a rounding
bound, and spikes agree except where a membrane lies within that bound of its threshold.
``docs/lif_extensions.md`` ("Running many steps") states the bound.

Example:
    >>> import torch
    >>> from t1c.bridge import load
    >>> net = load("net.t1c")                                  # doctest: +SKIP
    >>> ys, state = net.run_sequence(torch.rand(25, 8, 784))   # doctest: +SKIP
    >>> y, state = net(torch.rand(8, 784), state, return_state=True)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from t1c import ir

from .modules import LIFModule

State = dict[str, torch.Tensor]

# Plan step kinds: an Input; a module on one input; on the sum of its inputs; on its
# inputs as separate arguments; a stateful module (on the sum; on its inputs in edge
# order, a ``multi_input`` neuron such as CubaLIF); no module (Output): the sum.
_INPUT, _CALL, _CALL_SUM, _CALL_MULTI, _STATEFUL, _SUM, _STATEFUL_MULTI = range(7)


class _Step(NamedTuple):
    """One node of the precomputed plan."""

    kind: int
    slot: int  # where its value goes
    module: nn.Module | None
    inputs: tuple[int, ...]  # slots of its incoming values, in edge-list order
    frees: tuple[int, ...]  # slots last used here, cleared after it runs
    name: str
    node_type: str
    # A LIF step whose input value nothing else reads, in memory nothing else holds (a
    # sum of several inputs, or the output of a module in NEW_TENSOR_FORWARDS that only
    # this step reads): the modules whose forward hooks could still hold that value
    # (checked when it runs; empty for a sum). None: the input may be read elsewhere.
    input_given_up_by: tuple[nn.Module, ...] | None = None


#: ``forward`` methods that always return a tensor in memory of its own (never their input
#: or a view of it, a parameter, or a tensor they keep). Modules of t1c that do so say it
#: with a class attribute ``returns_new_tensor = True``.
NEW_TENSOR_FORWARDS = frozenset({nn.Linear.forward, nn.Conv1d.forward, nn.Conv2d.forward})


def _returns_new_tensor(module: nn.Module | None) -> bool:
    cls = type(module)
    return cls.forward in NEW_TENSOR_FORWARDS or cls.__dict__.get("returns_new_tensor", False)


class NodeExecutionError(RuntimeError):
    """An exception raised inside a node's module, re-raised naming the node.

    Attributes:
        node: the node's name.
        node_type: its T1C-IR type.
    """

    def __init__(self, node: str, node_type: str, err: BaseException) -> None:
        self.node = node
        self.node_type = node_type
        super().__init__(f"while executing node '{node}' ({node_type}): {type(err).__name__}: {err}")


def _module_key(name: str, taken: set[str]) -> str:
    """A ``ModuleDict`` key for node ``name``: the name itself when torch accepts it."""
    key = name
    if "." in key or hasattr(nn.ModuleDict(), key):
        key = "node_" + key.replace(".", "_")
    base, i = key, 1
    while key in taken:
        key, i = f"{base}_{i}", i + 1
    taken.add(key)
    return key


class GraphExecutor(nn.Module):
    """A T1C-IR graph as an ``nn.Module``; build it with :func:`~t1c.bridge.ir_to_torch` or
    :func:`~t1c.bridge.load`.

    Args:
        graph: the graph (validated).
        modules: node name -> module (None for ``Input``/``Output``).
        return_state: make ``forward`` return ``(output, state)`` by default.

    Inputs and outputs: with one ``Input`` node ``forward`` takes a tensor
    ``[B, *shape]``; with several, a dict ``{input name: tensor}`` (or a sequence in graph
    order). With one ``Output`` node it returns a tensor; with several, a dict
    ``{output name: tensor}`` in graph order.

    Structure (for export): :attr:`node_names` (graph order), :attr:`edges`,
    :attr:`node_types`, :meth:`module_for`, :attr:`io_shapes`, :attr:`metadata`,
    :attr:`input_names`, :attr:`output_names`.

    A node's module is stateful when it has ``stateful = True``; it is then called as
    ``module(x, state) -> (out, state)`` (``state=None`` for the zero state), and may
    offer ``forward_sequence(xs, state)`` for :meth:`run_sequence`. A module with
    ``multi_input = True`` gets each incoming value as a separate argument; a stateful one
    (``CubaLIFModule``) gets them as a list, ``module([x1, x2, ...], state)``, and must
    offer ``forward_sequence([xs1, xs2, ...], state)``. Stateless
    modules must treat batch elements independently (``run_sequence`` folds time into
    the batch), unless they set ``couples_batch = True`` (a Softmax over the batch axis):
    ``run_sequence`` then calls them once per time step.

    Held state (``keep_state=True``, snnTorch's ``init_hidden`` style): a call without
    ``state`` continues from the state this instance kept after its previous call,
    ``reset_state()`` zeroes it, and ``.to(device/dtype)`` moves it with the weights.
    It belongs to this instance only; reset it at every batch when training.

    Recurrent graphs (``ir.Graph(..., allow_cycles=True)``): an edge back to an earlier
    node carries its source's output of the previous step (zero at the first step),
    kept in the state under ``"<source>/output"`` (``/`` never occurs in node names).
    ``run_sequence`` steps the cycle and runs the nodes before and after it over whole sequences.
    """

    def __init__(
        self,
        graph: ir.Graph,
        modules: Mapping[str, nn.Module | None],
        *,
        return_state: bool = False,
        keep_state: bool = False,
    ) -> None:
        super().__init__()
        self.node_names: list[str] = list(graph.nodes)
        self.edges: list[tuple[str, str]] = [(s, d) for s, d in graph.edges]
        self.node_types: dict[str, str] = {n: node.TYPE for n, node in graph.nodes.items()}
        self.input_names: list[str] = list(graph.input_names)
        self.output_names: list[str] = list(graph.output_names)
        self.io_shapes: dict[str, tuple[int, ...]] = {}
        for name in self.input_names + self.output_names:
            shape = graph.nodes[name].shape
            if shape is None:
                shape = graph.output_shapes.get(name)
            self.io_shapes[name] = None if shape is None else tuple(int(d) for d in shape)
        self.metadata: dict[str, Any] = dict(graph.metadata)
        #: node name -> the node's metadata (only nodes that have some), for export.
        self.node_metadata: dict[str, dict[str, Any]] = {
            n: dict(node.metadata) for n, node in graph.nodes.items() if node.metadata
        }
        self.return_state = return_state
        self.keep_state = keep_state
        self._held_state: State | None = None
        self._order: list[str] = graph.topological_order()
        self._value_shapes: dict[str, tuple[int, ...]] = dict(graph.output_shapes)
        taken: set[str] = set()
        self._keys: dict[str, str] = {}
        self.nodes = nn.ModuleDict()
        for name in self.node_names:
            module = modules.get(name)
            if module is not None:
                key = self._keys[name] = _module_key(name, taken)
                self.nodes[key] = module
        self._build_plan()

    # -- structure -------------------------------------------------------------------
    def module_for(self, name: str) -> nn.Module | None:
        """The module that computes node ``name`` (None for ``Input``/``Output``)."""
        if name not in self.node_types:
            raise KeyError(f"the graph has no node '{name}'; nodes: {self.node_names}")
        key = self._keys.get(name)
        return None if key is None else self.nodes[key]

    def set_module(self, name: str, module: nn.Module) -> None:
        """Replace node ``name``'s module (e.g. by a quantized twin) and update the plan."""
        if self.module_for(name) is None:
            raise KeyError(f"node '{name}' ({self.node_types[name]}) has no module to replace")
        if not isinstance(module, nn.Module):
            raise TypeError(f"set_module('{name}', ...) needs an nn.Module, got {type(module).__name__}")
        self.nodes[self._keys[name]] = module
        self._build_plan()

    @property
    def stateful_names(self) -> list[str]:
        """Names of the nodes that carry state, in execution order."""
        return [step.name for step in self._plan if step.kind in (_STATEFUL, _STATEFUL_MULTI)]

    @property
    def is_recurrent(self) -> bool:
        """Whether the graph has back edges (a cycle), carrying last step's values."""
        return bool(self._back_sources)

    def _build_plan(self) -> None:
        """Precompute everything a time step needs, so the step loop does no graph work."""
        order = self._order
        slot = {name: i for i, name in enumerate(order)}
        preds: dict[str, list[str]] = {n: [] for n in order}
        for src, dst in self.edges:
            preds[dst].append(src)
        back: set[tuple[str, str]] = {(s, d) for s, d in self.edges if slot[s] >= slot[d]}
        self._back_sources: list[str] = sorted({s for s, _ in back}, key=slot.__getitem__)
        # Back edges read a "previous value" slot placed after the regular ones.
        prev_slot = {s: len(order) + i for i, s in enumerate(self._back_sources)}
        last_use: dict[int, int] = {}
        ins_of: dict[str, tuple[int, ...]] = {}
        for pos, name in enumerate(order):
            ins = tuple(prev_slot[p] if (p, name) in back else slot[p] for p in preds[name])
            ins_of[name] = ins
            for i in ins:
                if i < len(order):
                    last_use[i] = pos
        keep = {slot[n] for n in self.output_names} | {slot[s] for s in self._back_sources}
        readers: dict[int, int] = {}
        for ins in ins_of.values():
            for i in ins:
                readers[i] = readers.get(i, 0) + 1
        frees: dict[int, list[int]] = {}
        for i, pos in last_use.items():
            if i not in keep:
                frees.setdefault(pos, []).append(i)
        plan: list[_Step] = []
        for pos, name in enumerate(order):
            module = self.module_for(name)
            kind, ins = self._step_kind(name, module, ins_of[name])
            given_up = _input_given_up(kind, module, ins, readers, plan, len(order))
            plan.append(
                _Step(
                    kind, pos, module, ins, tuple(frees.get(pos, ())), name, self.node_types[name], given_up
                )
            )
        self._plan: list[_Step] = plan
        self._n_slots = len(order) + len(self._back_sources)
        self._out_slots = [slot[n] for n in self.output_names]
        self._back_slots = [(slot[s], prev_slot[s], s) for s in self._back_sources]
        self._window = _recurrent_window(plan, back, slot, self._out_slots)

    def _step_kind(
        self, name: str, module: nn.Module | None, ins: tuple[int, ...]
    ) -> tuple[int, tuple[int, ...]]:
        """A plan step's kind and input slots (an Input reads its position among the inputs)."""
        if name in self.input_names:
            return _INPUT, (self.input_names.index(name),)
        if module is None:
            return _SUM, ins
        if getattr(module, "stateful", False):
            return (_STATEFUL_MULTI if getattr(module, "multi_input", False) else _STATEFUL), ins
        if getattr(module, "multi_input", False):
            return _CALL_MULTI, ins
        return (_CALL if len(ins) == 1 else _CALL_SUM), ins

    # -- running ---------------------------------------------------------------------
    def reset_state(self) -> None:
        """Zero the held state (``keep_state=True``); returns the zero state, None.

        Also serves explicit-state code: ``state = net.reset_state()`` then
        ``y, state = net(x, state, return_state=True)`` at every step.
        """
        self._held_state = None
        return None

    @property
    def state(self) -> State | None:
        """The state held after the last call (``keep_state=True``), None when zero."""
        return self._held_state

    def _initial_state(self, state: State | None) -> State:
        if state is None and self.keep_state:
            state = self._held_state
        return {} if state is None else state

    def _keep(self, new_state: State) -> None:
        if self.keep_state:
            self._held_state = new_state

    def _apply(self, fn, recurse: bool = True):
        """``.to()``, ``.cuda()``, ``.double()``... move the held state too."""
        super()._apply(fn, recurse)
        if self._held_state is not None:
            self._held_state = _map_tensors(fn, self._held_state)
        return self

    def _inputs(self, x: Any, seq: bool) -> list[torch.Tensor]:
        names = self.input_names
        if isinstance(x, torch.Tensor):
            xs = [x]
        elif isinstance(x, Mapping):
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"inputs for Input nodes {missing} are missing; got keys {list(x)}")
            xs = [x[n] for n in names]
        elif isinstance(x, (list, tuple)):
            xs = list(x)
        else:
            raise TypeError(
                f"GraphExecutor input must be a tensor, a dict or a sequence, got {type(x).__name__}"
            )
        if len(xs) != len(names):
            raise ValueError(
                f"the graph has {len(names)} Input nodes {names} but got {len(xs)} input(s); "
                "pass a dict {input name: tensor}"
            )
        lead = 2 if seq else 1
        for name, t in zip(names, xs):
            shape = self.io_shapes[name]
            if (
                not isinstance(t, torch.Tensor)
                or tuple(t.shape[lead:]) != shape
                or t.dim() != lead + len(shape)
            ):
                raise ValueError(_shape_mismatch(name, shape, t, seq, several=len(names) > 1))
        return xs

    def _outputs(self, vals: list) -> torch.Tensor | dict[str, torch.Tensor]:
        if len(self._out_slots) == 1:
            return vals[self._out_slots[0]]
        return {n: vals[i] for n, i in zip(self.output_names, self._out_slots)}

    def forward(self, x: Any, state: State | None = None, return_state: bool | None = None) -> Any:
        """One time step.

        Args:
            x: ``[B, *input_shape]`` (a dict by input name when there are several inputs).
            state: from the previous step, or None for the zero state.
            return_state: return ``(output, state)``; defaults to the constructor's choice.

        Returns:
            The output (a dict by output name when there are several), or
            ``(output, state)``.
        """
        xs = self._inputs(x, seq=False)
        state = self._initial_state(state)
        vals: list = [None] * self._n_slots
        new_state: State = {}
        if self._back_slots:
            self._load_back(vals, state, xs[0])
        self._run_step(xs, vals, state, new_state)
        for cur, _prev, src in self._back_slots:
            new_state[f"{src}/output"] = vals[cur]
        self._keep(new_state)
        out = self._outputs(vals)
        if return_state if return_state is not None else self.return_state:
            return out, new_state
        return out

    def _load_back(self, vals: list, state: State, like: torch.Tensor) -> None:
        for _cur, prev, src in self._back_slots:
            value = state.get(f"{src}/output")
            if value is None:
                shape = self._value_shapes[src]
                value = like.new_zeros((like.shape[0], *shape))
            vals[prev] = value

    def _run_step(
        self, xs: list, vals: list, state: State, new_state: State, plan: list[_Step] | None = None
    ) -> None:
        step = None
        try:
            for step in self._plan if plan is None else plan:
                kind, pos, module, ins, frees, name, _, _ = step
                if kind == _CALL:
                    vals[pos] = module(vals[ins[0]])
                elif kind == _STATEFUL:
                    vals[pos], new_state[name] = module(_summed(vals, ins), state.get(name))
                elif kind == _STATEFUL_MULTI:
                    vals[pos], new_state[name] = module([vals[i] for i in ins], state.get(name))
                elif kind == _INPUT:
                    vals[pos] = xs[ins[0]]
                elif kind == _SUM:
                    vals[pos] = _summed(vals, ins)
                elif kind == _CALL_SUM:
                    vals[pos] = module(_summed(vals, ins))
                else:
                    vals[pos] = module(*[vals[i] for i in ins])
                for i in frees:
                    vals[i] = None
        except NodeExecutionError:
            raise
        except Exception as err:
            raise self._failure(step, err, xs) from err

    def run_sequence(self, xs: Any, state: State | None = None) -> tuple[Any, State]:
        """Run ``T`` time steps: :meth:`forward` ``T`` times, up to matmul rounding.

        Stateless nodes run once over all ``T * B`` samples; stateful nodes loop over time
        (``forward_sequence`` when they have it). In a recurrent graph the nodes from the
        first back edge's destination to the last back edge's source (the cycle, in plan
        order) are stepped together; the nodes before and after them run as above. Layers
        summed in another order than stepping round differently in the last bits (see
        the module docstring); spikes differ only where a membrane is that close to its
        threshold.

        Args:
            xs: ``[T, B, *input_shape]`` (a dict by input name for several inputs).
            state: initial state, or None for the zero state.

        Returns:
            ``(ys, state)``: outputs ``[T, B, *output_shape]`` (a dict for several
            outputs) and the state after the last step.
        """
        seqs = self._inputs(xs, seq=True)
        if seqs[0].shape[0] == 0:
            raise ValueError("run_sequence needs at least one time step, got xs with T = 0")
        state = self._initial_state(state)
        vals: list = [None] * self._n_slots
        new_state: State = {}
        if self._window is None:
            self._sequence_steps(self._plan, seqs, vals, state, new_state)
        else:  # the nodes before the cycle over all T * B samples, the cycle stepped, then the rest
            window = self._window
            self._sequence_steps(self._plan[: window.start], seqs, vals, state, new_state)
            self._step_window(seqs, vals, state, new_state)
            self._sequence_steps(self._plan[window.stop :], seqs, vals, state, new_state)
        self._keep(new_state)
        return self._outputs(vals), new_state

    def _sequence_steps(
        self, plan: list[_Step], seqs: list, vals: list, state: State, new_state: State
    ) -> None:
        """Run ``plan``'s steps over whole sequences ``[T, B, ...]`` (see :meth:`run_sequence`)."""
        step = None
        try:
            for step in plan:
                _sequence_step(step, seqs, vals, state, new_state)
                for i in step.frees:
                    vals[i] = None
        except NodeExecutionError:
            raise
        except Exception as err:
            raise self._failure(step, err, seqs) from err

    def _step_window(self, seqs: list, vals: list, state: State, new_state: State) -> None:
        """Step the recurrent window (:func:`_recurrent_window`) ``T`` times: it reads the
        sequences computed before it at step ``t``, its back edges carry the previous step's
        values, and the values read after it are stacked back into sequences."""
        window = self._window
        step_vals: list = [None] * self._n_slots
        self._load_back(step_vals, state, seqs[0][0])
        collected: dict[int, list[torch.Tensor]] = {i: [] for i in window.gives}
        step_state = state
        # unbound once: its backward stacks T gradients (indexing [t] would fill T full-size ones)
        read = {i: vals[i].unbind(0) for i in window.reads}
        for t in range(seqs[0].shape[0]):
            for i, values in read.items():
                step_vals[i] = values[t]
            next_state: State = {}
            self._run_step(seqs, step_vals, step_state, next_state, window.steps)
            for i, values in collected.items():
                values.append(step_vals[i])
            for cur, prev, _src in self._back_slots:
                step_vals[prev] = step_vals[cur]
            step_state = next_state
        new_state.update(step_state)
        for cur, _prev, src in self._back_slots:
            new_state[f"{src}/output"] = step_vals[cur]
        for i, values in collected.items():
            vals[i] = torch.stack(values)
        for step in window.steps:  # the sequences read last inside the window
            for i in step.frees:
                vals[i] = None

    def _failure(self, step: _Step, err: Exception, xs: list[torch.Tensor]) -> Exception:
        """What to raise for ``err``, raised while running ``step``: a one-line ``TypeError``
        when an input's dtype is not the one dtype of the parameters (the usual cause, which
        torch reports deep inside a node), else :class:`NodeExecutionError` naming the node.
        Runs only after a failure, so it costs a working call nothing."""
        held = itertools.chain(self.parameters(), self.buffers())
        dtypes = {t.dtype for t in held if t.is_floating_point()}
        given = next((x.dtype for x in xs if x.dtype not in dtypes), None)
        if len(dtypes) != 1 or given is None:
            return NodeExecutionError(step.name, step.node_type, err)
        (want,) = dtypes
        other = f", or convert the executor: .to({given})" if given.is_floating_point else ""
        return TypeError(
            f"GraphExecutor input is {given} but its parameters are {want}: pass x.to({want}){other}"
        )

    def extra_repr(self) -> str:
        return f"inputs={self.input_names}, outputs={self.output_names}, edges={len(self.edges)}"


def _shape_mismatch(name: str, shape: tuple[int, ...], got: Any, seq: bool, several: bool) -> str:
    """One line: what Input node ``name`` expected (time first for ``run_sequence``), what it
    got, and the fix when the input is one axis short or long."""
    dims = ", ".join(map(str, shape))
    got_text = list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
    rank = got.dim() if isinstance(got, torch.Tensor) else -1
    fits = isinstance(got, torch.Tensor) and tuple(got.shape[rank - len(shape) :]) == shape
    if seq:
        text = f"run_sequence expects [T, B, {dims}] (time first)"
        text += f" for Input node '{name}', got {got_text}" if several else f", got {got_text}"
        if fits and rank == len(shape) + 1:
            text += "; that is one time step: call the executor itself, or add a time axis: xs.unsqueeze(0)"
        return text
    text = f"Input node '{name}' expects [B, {dims}] (one time step), got {got_text}"
    if fits and rank == len(shape):
        text += "; add a batch dimension: x.unsqueeze(0)"
    elif fits and rank == len(shape) + 2:
        text += "; a sequence [T, B, ...] goes to run_sequence"
    return text


class _Window(NamedTuple):
    """The recurrent part of a plan: the steps from the first back edge's destination to the
    last back edge's source, which :meth:`GraphExecutor.run_sequence` steps over time."""

    start: int  # plan position of its first step
    stop: int  # one past its last step
    steps: list[_Step]
    reads: tuple[int, ...]  # slots before it that it reads (sequences, read at step t)
    gives: tuple[int, ...]  # its slots read after it or returned (stacked into sequences)


def _recurrent_window(
    plan: list[_Step], back: set[tuple[str, str]], slot: dict[str, int], out_slots: list[int]
) -> _Window | None:
    """The window of a recurrent plan (None without back edges). Every node before it depends
    on nothing in it, and every node after it only reads it, so those run over whole sequences.
    Back edges join only the nodes a graph's order puts after the acyclic part (Kahn's order,
    then the nodes of and after the cycles), so no ``Input`` is ever inside the window."""
    if not back:
        return None
    start = min(slot[d] for _, d in back)
    stop = max(slot[s] for s, _ in back) + 1
    steps = plan[start:stop]
    reads = sorted({i for step in steps for i in step.inputs if i < start})
    later = {i for step in plan[stop:] for i in step.inputs} | set(out_slots)
    return _Window(start, stop, steps, tuple(reads), tuple(sorted(i for i in later if start <= i < stop)))


def _input_given_up(
    kind: int,
    module: nn.Module | None,
    ins: tuple[int, ...],
    readers: dict[int, int],
    plan: list[_Step],
    n: int,
) -> tuple[nn.Module, ...] | None:
    """For a LIF step (``_Step.input_given_up_by``): the modules whose hooks could still hold
    its input when nothing else reads that input, in memory nothing else holds; else None.

    ``plan`` holds the steps before it; slots from ``n`` on are back edges' previous values.
    """
    if kind != _STATEFUL or getattr(type(module), "forward_sequence", None) is not LIFModule.forward_sequence:
        return None
    if len(ins) > 1:
        return ()  # a sum of several inputs: a fresh tensor
    if ins[0] < n and readers[ins[0]] == 1:  # not a back edge's previous value
        producer = plan[ins[0]]  # a module call: never an Output's kept value
        if producer.kind in (_CALL, _CALL_SUM) and _returns_new_tensor(producer.module):
            return (producer.module,)
    return None


def _may_overwrite(producers: tuple[nn.Module, ...]) -> bool:
    """Whether a LIF may write its spikes into its given-up input now: no gradient is being
    recorded (autograd may have saved the value), and no forward hook (which may have kept
    it) on its producer or on every module."""
    return not (
        torch.is_grad_enabled()
        or nn.modules.module._global_forward_hooks
        or any(m._forward_hooks for m in producers)
    )


def _sequence_step(step: _Step, seqs: list, vals: list, state: State, new_state: State) -> None:
    """Run one plan step over whole sequences ``[T, B, ...]``: a stateless module once over
    all ``T * B`` samples (per step if it ``couples_batch``), a stateful one over time."""
    kind, pos, module, ins, _, name, _, given_up_by = step
    if kind == _INPUT:
        vals[pos] = seqs[ins[0]]
    elif kind == _STATEFUL:
        overwrite = given_up_by is not None and _may_overwrite(given_up_by)
        vals[pos], new_state[name] = _stateful_sequence(
            module, _summed(vals, ins), state.get(name), overwrite
        )
    elif kind == _STATEFUL_MULTI:
        vals[pos], new_state[name] = module.forward_sequence([vals[i] for i in ins], state.get(name))
    elif kind == _SUM:
        vals[pos] = _summed(vals, ins)
    else:
        args = [_summed(vals, ins)] if kind == _CALL_SUM else [vals[i] for i in ins]
        T, B = seqs[0].shape[:2]
        if getattr(module, "couples_batch", False):  # mixes a step's samples
            vals[pos] = torch.stack([module(*[a[t] for a in args]) for t in range(T)])
        else:
            out = module(*[a.reshape(T * B, *a.shape[2:]) for a in args])
            vals[pos] = out.reshape(T, B, *out.shape[1:])


def _summed(vals: list, ins: tuple[int, ...]) -> torch.Tensor:
    """The sum of a node's incoming values (SEMANTICS.md: several inputs are summed)."""
    total = vals[ins[0]]
    for i in ins[1:]:
        total = total + vals[i]
    return total


def _map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], value: Any) -> Any:
    """``fn`` applied to every tensor in a state (tensors, tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, Mapping):
        return {k: _map_tensors(fn, v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(fn, v) for v in value)
    return value


def _stateful_sequence(
    module: nn.Module, xs: torch.Tensor, s: Any, overwrite_input: bool = False
) -> tuple[torch.Tensor, Any]:
    """Run a stateful module over time: its ``forward_sequence`` (told it may write into
    ``xs`` when ``overwrite_input``: a LIF's given-up input) or a step loop."""
    seq_fn = getattr(module, "forward_sequence", None)
    if overwrite_input:
        return seq_fn(xs, s, overwrite_input=True)
    if seq_fn is not None:
        return seq_fn(xs, s)
    outs = []
    for t in range(xs.shape[0]):
        out, s = module(xs[t], s)
        outs.append(out)
    return torch.stack(outs), s


__all__ = ["GraphExecutor", "NodeExecutionError"]
