"""What the sample forward pass does with a model's units, seen through forward hooks.

The first room of an export (:mod:`t1c.bridge.exporter`):

* :func:`find_units`: every module with a converter (the user's ``custom_map`` first, then
  the default table, :mod:`t1c.bridge.convert`) is a *unit*; BatchNorm is a unit folded
  into the layer before it (unless ``hybrid=True`` converts it); a container without a
  converter is looked into; a leaf without one is a unit that fails if the model calls it.
* :func:`capture`: one ``torch.no_grad()`` eval forward pass of the sample, with hooks on
  the units, records each unit's input/output shape and call order.
* :func:`state_handovers`: which snnTorch neurons ``forward`` hands a membrane that is
  not their own last one (two more passes, only for neurons with ``init_hidden=False``).
* :func:`preserved`: the model's modes, parameters, buffers and snnTorch hidden state
  are put back afterwards, whatever happens.
* :func:`refuse_other_dtypes`: a T1C-IR graph holds float32 and computes in float32, so a
  float64/bfloat16/float16 model is refused (the fix: ``model.float()``), and so is a
  sample pass that computes in another dtype; so is a sample that torch runs without its
  batch dimension (the fix: ``sample.unsqueeze(0)``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .convert import exports_in_hybrid
from .convert.neurons import refused_neuron
from .convert.normalization import FOLDED
from .registry import Converter, ExportError, Shape, find_converter, overridden_base


# -- keeping the model as it was -------------------------------------------------------------
@contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
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
class Unit:
    """A module the exporter converts (or folds) as a whole."""

    path: str
    module: nn.Module
    converter: Converter | None  # None: BatchNorm (folded) or unknown (an error if called)
    batchnorm: bool = False
    refusal: str | None = None  # why an snnTorch neuron without a converter has no exact form
    overrides: str | None = None  # the default-converted base class whose behaviour it changes


@dataclasses.dataclass
class Capture:
    """What the hooked forward pass saw."""

    order: list[str] = dataclasses.field(default_factory=list)  # first calls, in order
    calls: dict[str, int] = dataclasses.field(default_factory=dict)
    input_shapes: dict[str, Shape] = dataclasses.field(default_factory=dict)
    output_shapes: dict[str, Shape] = dataclasses.field(default_factory=dict)
    returns_tuple: dict[str, bool] = dataclasses.field(default_factory=dict)
    containers: list[nn.Module] = dataclasses.field(default_factory=list)
    restarts: set[str] = dataclasses.field(default_factory=set)  # Leaky handed a zero membrane per call
    replaced: set[str] = dataclasses.field(default_factory=set)  # Leaky handed some other membrane


def find_units(
    model: nn.Module, custom_map: Mapping[type, Converter] | None, defaults: Mapping[type, Converter]
) -> tuple[dict[str, Unit], list[nn.Module]]:
    """Units by qualified path, and the containers looked into (for the chain test)."""
    units: dict[str, Unit] = {}
    containers: list[nn.Module] = []

    def visit(path: str, module: nn.Module) -> None:
        converter = find_converter(module, custom_map, defaults)
        refusal = refused_neuron(module) if converter is None else None
        if converter is not None:
            units[path] = Unit(path, module, converter)
        elif isinstance(module, FOLDED):
            units[path] = Unit(path, module, None, batchnorm=True)
        elif refusal is not None or exports_in_hybrid(module) or next(iter(module.children()), None) is None:
            # A refused neuron is a leaf: its submodules (RLeaky.recurrent) are not layers; so is
            # a module that only hybrid=True converts (a SubgraphModule's inner executor).
            base = overridden_base(module, defaults)
            units[path] = Unit(path, module, None, refusal=refusal, overrides=base.__name__ if base else None)
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


def call_args(model: nn.Module, sample: Any) -> tuple[Any, ...]:
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


# -- dtypes and the batch dimension --------------------------------------------------------
FLOAT32_FIX = "convert the model first: model.float() (and the sample: sample.float())"

#: Layers that torch also runs on one sample without a batch dimension, and the input rank
#: of such a call: where a sample without its batch dimension shows.
UNBATCHED_RANK: tuple[tuple[type[nn.Module], int], ...] = (
    (nn.Linear, 1),
    (nn.Conv2d, 3),
    (nn.MaxPool2d, 3),
    (nn.AvgPool2d, 3),
)


def _where(path: str, module: nn.Module) -> str:
    return f"`{path}` ({type(module).__name__})" if path else type(module).__name__


def refuse_other_dtypes(model: nn.Module) -> None:
    """Refuse a model holding a floating parameter or buffer of another dtype than float32.

    A T1C-IR graph stores float32 and computes in float32, so the export of a float64,
    bfloat16 or float16 model would compute something else. 0-d tensors (snnTorch's scalar
    ``beta``/``threshold`` made from a numpy float64) are left out: torch computes with
    them in the dtype of the tensors they meet.
    """
    for path, module in model.named_modules():
        held = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        for name, tensor in held:
            if tensor.is_floating_point() and tensor.dim() > 0 and tensor.dtype != torch.float32:
                raise ExportError(
                    f"cannot export {_where(path, module)}: its {name} is {tensor.dtype}, but a T1C-IR graph "
                    f"holds float32 and computes in float32, so it would compute something else; {FLOAT32_FIX}"
                )


def _refuse_other_input_dtype(path: str, module: nn.Module, first_in: torch.Tensor, sample: Any) -> None:
    """Refuse a unit that computed on float64 values, or on the sample's own dtype when that
    is not float32 (a float64 or bfloat16 sample through a model without weights, say).
    Lower precision that autocast brings in (the sample float32, weights float32) is left
    alone: the graph computes what the weights say, in float32."""
    dtype = first_in.dtype
    if not first_in.is_floating_point() or dtype == torch.float32:
        return
    if dtype == torch.float64 or (isinstance(sample, torch.Tensor) and dtype == sample.dtype):
        raise ExportError(
            f"cannot export {_where(path, module)}: it computed on {dtype} values, but a T1C-IR graph "
            f"computes in float32, so it would compute something else; {FLOAT32_FIX}"
        )


def _refuse_unbatched(path: str, module: nn.Module, first_in: torch.Tensor) -> None:
    """Refuse a layer that torch ran on one sample without a batch dimension."""
    for kind, rank in UNBATCHED_RANK:
        if isinstance(module, kind) and first_in.dim() == rank:
            raise ExportError(
                f"{_where(path, module)} received {list(first_in.shape)}, one sample without a batch "
                "dimension, but the exporter runs the model on a batch [B, *input_shape]; add a batch "
                "dimension: sample.unsqueeze(0)"
            )


def _failed_pass_fix(args: tuple[Any, ...]) -> str:
    """The fix a failed sample pass names: the sample's dtype when it is not float32."""
    first = args[0]
    if isinstance(first, torch.Tensor) and first.is_floating_point() and first.dtype != torch.float32:
        return f"the sample is {first.dtype} and a T1C-IR graph computes in float32: pass sample.float()"
    return "pass `sample` as the batch the model's forward takes, or a tuple of its arguments"


def capture(model: nn.Module, units: Mapping[str, Unit], args: tuple[Any, ...]) -> tuple[Capture, Any]:
    """One no-grad eval forward pass with hooks on the units; returns what they saw.

    Raises:
        ExportError: the pass failed, a layer ran on one sample without a batch dimension,
            or a unit computed in another dtype than float32.
    """
    cap = Capture()
    handles = []

    def hook(path: str) -> Callable:
        def record(module: nn.Module, inputs: tuple, output: Any) -> None:
            cap.calls[path] = cap.calls.get(path, 0) + 1
            if cap.calls[path] > 1:
                return
            cap.order.append(path)
            first_in, first_out = _first_tensor(inputs), _first_tensor(output)
            if first_in is not None:
                _refuse_unbatched(path, module, first_in)
                _refuse_other_input_dtype(path, module, first_in, args[0])
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
            f"{_failed_pass_fix(args)}"
        ) from err
    finally:
        for handle in handles:
            handle.remove()
    return cap, output


def _state_names(module: nn.Module) -> tuple[str, ...]:
    """The names of an snnTorch neuron's state arguments after the input, in ``forward``'s
    order (``Synaptic.forward(input_, syn, mem)``), which are also its state attributes."""
    import snntorch

    for cls, names in (
        (snntorch.RSynaptic, ("spk", "syn", "mem")),
        (snntorch.RLeaky, ("spk", "mem")),
        (snntorch.Synaptic, ("syn", "mem")),
        (snntorch.Alpha, ("syn_exc", "syn_inh", "mem")),
    ):
        if isinstance(module, cls):
            return names
    return ("mem",)


def _handed_state(module: nn.Module, args: tuple, kwargs: dict) -> tuple[Any, ...]:
    """The states a neuron call is given explicitly (``lif(x, mem)``), None where not given."""
    names = _state_names(module)
    return tuple(args[1 + i] if len(args) > 1 + i else kwargs.get(n) for i, n in enumerate(names))


def _watched_neurons(units: Mapping[str, Unit]) -> dict[str, nn.Module]:
    """The converted snnTorch neurons that ``forward`` may hand a state
    (``init_hidden=False``), by path; empty without snnTorch."""
    try:
        import snntorch
    except ImportError:
        return {}
    kinds = (
        snntorch.Leaky,
        snntorch.Synaptic,
        snntorch.Lapicque,
        snntorch.Alpha,
        snntorch.RLeaky,
        snntorch.RSynaptic,
    )
    return {
        path: unit.module
        for path, unit in units.items()
        if isinstance(unit.module, kinds) and unit.converter is not None and not unit.module.init_hidden
    }


def _handovers_seen(
    model: nn.Module, watched: Mapping[str, nn.Module], args: tuple[Any, ...]
) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, tuple[Any, ...]]]:
    """Two sample passes (one when no neuron is handed a state): the states each watched
    neuron is handed, per call, and the states its first call leaves."""
    handed: dict[str, list[tuple[Any, ...]]] = {path: [] for path in watched}
    left: dict[str, tuple[Any, ...]] = {}

    def copy(value: Any) -> torch.Tensor | None:
        return value.detach().clone() if isinstance(value, torch.Tensor) else None

    def before(path: str) -> Callable:
        def record(module: nn.Module, a: tuple, kw: dict) -> None:
            handed[path].append(tuple(copy(v) for v in _handed_state(module, a, kw)))

        return record

    def after(path: str) -> Callable:
        def record(module: nn.Module, a: tuple, kw: dict, out: Any) -> None:
            if path not in left:
                left[path] = tuple(copy(getattr(module, n, None)) for n in _state_names(module))

        return record

    handles = []
    for path, module in watched.items():
        handles.append(module.register_forward_pre_hook(before(path), with_kwargs=True))
        handles.append(module.register_forward_hook(after(path), with_kwargs=True))
    try:
        with torch.no_grad():
            model(*args)  # what each neuron is handed, and the membrane it leaves
            if not all(v is None for h in handed.values() if h for v in h[0]):
                model(*args)
    except Exception as err:
        raise ExportError(
            f"a second sample forward pass of {type(model).__name__} failed ({type(err).__name__}: {err}); "
            "the exporter runs two to see which neuron state carries over between calls"
        ) from err
    finally:
        for handle in handles:
            handle.remove()
    return handed, left


def state_handovers(model: nn.Module, units: Mapping[str, Unit], args: tuple[Any, ...], cap: Capture) -> None:
    """Which snnTorch neurons does ``forward`` hand a state that is not their own previous
    one? Fills ``cap.restarts`` (a zero state at every call, as ``mem = lif.init_leaky()``
    in forward does: the neuron keeps nothing between calls) and ``cap.replaced`` (any
    other state). Found by behaviour: two sample passes, comparing the states handed in the
    second with those the first left. Only neurons with ``init_hidden=False`` can be handed
    one, so most models skip this."""
    watched = _watched_neurons(units)
    if not watched:
        return
    handed, left = _handovers_seen(model, watched, args)
    for path, calls in handed.items():
        if len(calls) != 2 or path not in left:
            continue
        pairs = [(h, f) for h, f in zip(calls[1], left[path]) if h is not None and f is not None]
        if all(h.shape == f.shape and torch.equal(h, f) for h, f in pairs):
            continue  # handed its own previous state (or none): it carries its state
        if not any(bool(h.any()) for h, _ in pairs):
            if any(bool(f.any()) for _, f in pairs):
                cap.restarts.add(path)
            continue
        cap.replaced.add(path)
