"""The contracts of conversion in both directions, and how a converter is looked up.

* Export: a converter is ``fn(module, ctx) -> ir.Node | None`` or ``fn(module) -> ...``
  (the arity is read once from its signature, :func:`converter_arity`); ``ctx`` is an
  :class:`ExportContext`. It returns the primitive that computes what the module
  computes, or ``None`` when the module is dropped (its input flows on unchanged). A
  module that is several wired nodes (an all-to-all ``RLeaky``: the neuron and its
  recurrent synapse on a back edge) returns a :class:`NodeGroup` instead.
  :func:`find_converter` looks a module's type up along its MRO, first in the user's
  ``custom_map``, then in the default table (:mod:`t1c.bridge.convert`).
* Import: a factory is ``fn(node) -> nn.Module`` or ``fn(node, ctx)`` with an
  :class:`ImportContext` (a nested graph builds its inner executor through it).

Anything without an exact T1C-IR form raises :class:`ExportError` naming the module.
The tables themselves live in :mod:`t1c.bridge.convert`, one file per IR family.

Example:
    >>> from torch import nn
    >>> from t1c import ir
    >>> table = {nn.Linear: lambda m: ir.Affine(weight=m.weight.detach().numpy(), bias=None)}
    >>> converter = find_converter(nn.Linear(2, 3), None, table)
    >>> converter_arity(converter)
    1
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from t1c import ir

Shape = tuple[int, ...]
Converter = Callable[..., "ir.Node | NodeGroup | None"]  # fn(module, ctx) or fn(module)
Factory = Callable[..., "nn.Module"]  # fn(node) or fn(node, ctx)
ExportTable = dict[type[nn.Module], Converter]  # {module type: converter}
ImportTable = dict[type[ir.Node], Factory]  # {primitive class: factory}


class ExportError(ValueError):
    """A module that cannot be expressed in T1C-IR, or an export that came out wrong.

    The message names the module's qualified path and type and says what to do.
    """


@dataclasses.dataclass(frozen=True)
class ExportContext:
    """What a converter knows besides the module itself.

    Attributes:
        path: the module's qualified name in the model (``block.conv1``), for messages.
        input_shape: shape of the module's (first) input, batch excluded.
        output_shape: shape of the module's (first) output, batch excluded.
        spiking: export ``nn.Linear`` as ``SpikingAffine`` with the hints below.
        spike_mode: ``SpikingAffine.spike_mode``.
        weight_bits: ``SpikingAffine.weight_bits``.
        accumulator_bits: ``SpikingAffine.accumulator_bits``.
        input_nonnegative: the module's input is provably never negative in the
            exported graph (spikes, or pools/reshapes/sums of spikes), so a ReLU there
            is the identity.
        calls: how many times the sample forward pass called the module (the shapes
            above are its first call's).
        state_restarts: the neuron is handed a zero membrane by ``forward`` at every
            call (``mem = lif.init_leaky()`` then ``lif(x, mem)``), so it keeps nothing
            from one call to the next.
        export_graph: exports a module that runs a whole graph (a nested graph's inner
            executor) to its :class:`~t1c.ir.Graph`, from the structure it stores.
    """

    path: str
    input_shape: Shape | None = None
    output_shape: Shape | None = None
    spiking: bool = False
    spike_mode: str = "binary"
    weight_bits: int = 8
    accumulator_bits: int = 16
    input_nonnegative: bool = False
    calls: int = 1
    state_restarts: bool = False
    export_graph: Callable[[nn.Module], ir.Graph] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def fail(self, module: nn.Module, reason: str) -> ExportError:
        """An :class:`ExportError` naming this module's path and type."""
        return ExportError(f"cannot export `{self.path}` ({type(module).__name__}): {reason}")


@dataclasses.dataclass(frozen=True)
class NodeGroup:
    """Several wired nodes that together compute one module: what a converter returns when
    one node is not enough (an all-to-all ``snn.RLeaky`` is its ``CubaLIF`` plus the
    recurrent ``Affine`` on a back edge, docs/neurons.md).

    The exporter adds the nodes in the order given, then the module's input edges into
    ``main``, then ``edges`` in the order given; so ``main``'s inputs from the model come
    first in its edge order. ``main`` is named after the module (``lif1``) and gives the
    module's output; every other part ``p`` is named ``<module path>.<p>`` (name a part
    after the submodule it comes from, ``recurrent``: the node is then named after that
    submodule's qualified path). A graph whose groups close a cycle is exported with
    ``allow_cycles=True``; any other graph is exported as before.

    Attributes:
        nodes: ``{part: node}``, in graph order (a back edge's destination goes before its
            source, so it carries the source's value of the previous step).
        main: the part that receives the module's inputs and gives its output.
        edges: ``(source part, destination part)`` edges between the parts.

    Example:
        >>> import numpy as np
        >>> w = np.eye(2, dtype=np.float32)
        >>> group = NodeGroup(
        ...     {"recurrent": ir.Affine(weight=w, bias=None), "neuron": ir.Affine(weight=w, bias=None)},
        ...     main="neuron",
        ...     edges=(("recurrent", "neuron"), ("neuron", "recurrent")),
        ... )
        >>> list(group.nodes), group.main
        (['recurrent', 'neuron'], 'neuron')
    """

    nodes: Mapping[str, ir.Node]
    main: str
    edges: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.main not in self.nodes:
            raise ValueError(f"NodeGroup: main part {self.main!r} is not one of its nodes {list(self.nodes)}")
        for part, node in self.nodes.items():
            if not isinstance(part, str) or not part or not isinstance(node, ir.Node):
                raise ValueError(f"NodeGroup: part {part!r} must be a non-empty name of a t1c.ir node")
        for src, dst in self.edges:
            if src not in self.nodes or dst not in self.nodes:
                raise ValueError(f"NodeGroup: edge ({src!r}, {dst!r}) names a part it does not have")


@dataclasses.dataclass(frozen=True)
class ImportContext:
    """What a factory knows besides the node itself.

    Attributes:
        name: the node's name in its graph.
        import_graph: builds the module that runs a whole graph (a nested graph's inner
            executor), with the importer's defaults.
    """

    name: str
    import_graph: Callable[[ir.Graph], nn.Module]


def converter_arity(fn: Converter, key: type | None = None) -> int:
    """How many arguments ``fn`` takes: 2 (``fn(module, ctx)``) or 1 (``fn(module)``).

    Read from the signature once per converter, never by calling it and catching
    ``TypeError`` (which would hide the converter's own errors). A callable without a
    readable signature (a builtin) is called with both. Factories follow the same rule.

    Raises:
        ExportError: ``fn`` cannot be called with one or two positional arguments.
    """
    if not callable(fn):
        raise ExportError(
            f"custom_map[{getattr(key, '__name__', key)}] is {type(fn).__name__}, not a function; "
            "map module types to fn(module) or fn(module, ctx) returning a t1c.ir node"
        )
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2
    for arity in (2, 1):
        try:
            sig.bind(*([None] * arity))
        except TypeError:
            continue
        return arity
    raise ExportError(
        f"the converter {getattr(fn, '__qualname__', fn)!s} for {getattr(key, '__name__', key)} has the "
        f"signature {sig}; a converter is fn(module) or fn(module, ctx) returning a t1c.ir node or None"
    )


class ArityCalls:
    """Calls converters (or factories) as ``fn(x, ctx)`` or ``fn(x)``, each one's arity read once."""

    def __init__(self) -> None:
        self._arity: dict[int, int] = {}

    def __call__(self, fn: Callable[..., Any], subject: Any, ctx: Any) -> Any:
        """``fn(subject, ctx)`` or ``fn(subject)``."""
        key = id(fn)
        if key not in self._arity:
            self._arity[key] = converter_arity(fn, type(subject))
        return fn(subject, ctx) if self._arity[key] == 2 else fn(subject)


_BEHAVIOUR_FREE = frozenset({"__init__", "extra_repr", "__repr__", "__str__", "reset_parameters"})


def _same_behaviour(sub: type, base: type) -> bool:
    """Whether no class from ``sub`` up to (excluding) ``base`` defines a method of its own
    (other than construction and printing), so ``base``'s converter describes ``sub`` too."""
    for cls in sub.__mro__:
        if cls is base:
            return True
        for name, value in vars(cls).items():
            if name in _BEHAVIOUR_FREE:
                continue
            if inspect.isfunction(value) or isinstance(value, (staticmethod, classmethod, property)):
                return False
    return True


def overridden_base(module: nn.Module, defaults: Mapping[type, Converter]) -> type | None:
    """The class with a default converter that ``module``'s class subclasses while changing its
    behaviour (so that converter was not used), or None."""
    for cls in type(module).__mro__[1:]:
        if cls in defaults:
            return None if _same_behaviour(type(module), cls) else cls
    return None


def find_converter(
    module: nn.Module, custom_map: Mapping[type, Converter] | None, defaults: Mapping[type, Converter]
) -> Converter | None:
    """The converter for ``module``: the user's map wins, each searched along the MRO.

    A default converter found on a base class applies only if the subclass changes no
    behaviour (:func:`_same_behaviour`); the user's own map applies to subclasses as written.
    """
    mro = type(module).__mro__
    for cls in mro:
        if custom_map and cls in custom_map:
            return custom_map[cls]
    for cls in mro:
        if cls in defaults:
            return defaults[cls] if _same_behaviour(type(module), cls) else None
    return None


# -- helpers every family uses ------------------------------------------------------------
def convert_own_node(module: nn.Module) -> ir.Node:
    """t1c's own modules (``LIFModule``, ``SkipModule``, ...) know their node: ``module.to_node()``."""
    return module.to_node()


def copy_into(param: torch.Tensor, value: np.ndarray) -> None:
    """Copy a node's array into a module's parameter or buffer."""
    with torch.no_grad():
        param.copy_(torch.from_numpy(value))


def with_weights(module: nn.Module, node: ir.Node) -> nn.Module:
    """``module`` holding copies of ``node``'s ``weight`` and ``bias`` (so it owns and trains them)."""
    copy_into(module.weight, node.weight)
    copy_into(module.bias, node.bias)
    return module
