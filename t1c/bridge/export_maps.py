"""Default converters from PyTorch/snnTorch modules to T1C-IR primitives.

A converter is ``fn(module, ctx) -> ir.Node | None`` or ``fn(module) -> ir.Node | None``
(the arity is read once from its signature, :func:`converter_arity`): it reads one
module's parameters and returns the primitive that computes the same thing, or ``None``
when the module is dropped from the graph (its input flows on unchanged, e.g.
``nn.Dropout``). The exporter looks a module's type up along its MRO, first in the
user's ``custom_map`` then in :func:`default_export_map`, so users extend or override
conversions with a plain dict::

    from t1c.bridge import to_ir

    def my_neuron(module, ctx):
        return ir.LIF(tau=..., r=..., v_leak=..., v_threshold=...)

    def my_linear(module):
        return ir.SpikingAffine(weight=module.weight.detach().numpy(), bias=None)

    graph = to_ir(model, sample, custom_map={MyNeuron: my_neuron, nn.Linear: my_linear})

``ctx`` (:class:`ExportContext`) carries what a converter cannot read off the module:
its qualified path (for error messages), the shapes captured by forward hooks (batch
excluded) and the exporter's hardware hints. BatchNorm is not converted but folded
into the preceding Linear/Conv2d (:func:`fold_batchnorm`), ReLU is dropped where it is
the identity (on spikes) and refused elsewhere, and Dropout is dropped (the identity when
deployed). ``hybrid=True`` (:func:`hybrid_export_map`) exports those and the other ANN
modules of FORMAT_HYBRID.md (LeakyReLU, PReLU, Sigmoid, Tanh, Softmax, GELU, ELU,
LayerNorm, t1c's HybridRegionModule and SubgraphModule) as their own nodes.

A default converter applies to a subclass only when the subclass changes no behaviour
(it defines no method besides ``__init__``/``extra_repr``): a subclass of ``nn.Linear``
with its own ``forward``, or snnTorch's ``DeltaLeaky`` (a ``Leaky`` subclass), computes
something else. snnTorch neurons without an exact T1C-IR form (:data:`REFUSED_NEURONS`)
are refused by name, and their submodules (``RLeaky.recurrent``) are never exported as
layers.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from t1c import ir

Shape = tuple[int, ...]


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

    def fail(self, module: nn.Module, reason: str) -> ExportError:
        """An :class:`ExportError` naming this module's path and type."""
        return ExportError(f"cannot export `{self.path}` ({type(module).__name__}): {reason}")


Converter = Callable[..., "ir.Node | None"]  # fn(module, ctx) or fn(module)


def converter_arity(fn: Converter, key: type | None = None) -> int:
    """How many arguments ``fn`` takes: 2 (``fn(module, ctx)``) or 1 (``fn(module)``).

    Read from the signature once per converter, never by calling it and catching
    ``TypeError`` (which would hide the converter's own errors). A callable without a
    readable signature (a builtin) is called with both.

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


def _np(tensor: torch.Tensor | None) -> np.ndarray | None:
    if tensor is None:
        return None
    return tensor.detach().cpu().to(torch.float32).numpy().copy()


# -- synapses -------------------------------------------------------------------------------
def convert_linear(module: nn.Linear, ctx: ExportContext) -> ir.Node:
    """``nn.Linear`` -> ``Affine``, or ``SpikingAffine`` with the exporter's hints when spiking."""
    weight, bias = _np(module.weight), _np(module.bias)
    if ctx.spiking:
        return ir.SpikingAffine(
            weight=weight,
            bias=bias,
            spike_mode=ctx.spike_mode,
            weight_bits=ctx.weight_bits,
            accumulator_bits=ctx.accumulator_bits,
        )
    return ir.Affine(weight=weight, bias=bias)


def _same_padding(module: nn.Conv2d, ctx: ExportContext) -> tuple[int, int]:
    """torch's ``padding='same'`` as numbers; refused when torch pads asymmetrically."""
    pads = []
    for k, d in zip(module.kernel_size, module.dilation):
        total = d * (k - 1)
        if total % 2:
            raise ctx.fail(
                module,
                f"padding='same' with kernel {tuple(module.kernel_size)} and dilation "
                f"{tuple(module.dilation)} pads one side more than the other, which Conv2d cannot "
                "express; use an odd kernel or explicit padding",
            )
        pads.append(total // 2)
    return pads[0], pads[1]


def convert_conv2d(module: nn.Conv2d, ctx: ExportContext) -> ir.Node:
    """``nn.Conv2d`` -> ``Conv2d`` (zero bias when ``bias=False``; 'same'/'valid' made numeric)."""
    if module.padding_mode != "zeros":
        raise ctx.fail(
            module,
            f"padding_mode={module.padding_mode!r} is not supported (only 'zeros'); "
            "pad explicitly or pass custom_map",
        )
    padding: Any = module.padding
    if padding == "same":
        padding = _same_padding(module, ctx)
    elif padding == "valid":
        padding = (0, 0)
    return ir.Conv2d(
        weight=_np(module.weight),
        bias=_np(module.bias),
        stride=tuple(module.stride),
        padding=tuple(padding),
        dilation=tuple(module.dilation),
        groups=module.groups,
    )


# -- shape and resampling -------------------------------------------------------------------
def convert_flatten(module: nn.Flatten, ctx: ExportContext) -> ir.Node:
    """``nn.Flatten`` -> ``Flatten`` with the dims shifted to exclude the batch dimension."""
    rank = len(ctx.input_shape) + 1 if ctx.input_shape is not None else None
    start, end = module.start_dim, module.end_dim
    if rank is not None:
        start = start + rank if start < 0 else start
    if start == 0:
        raise ctx.fail(module, "start_dim covers the batch dimension, which T1C-IR never flattens")
    start_ir = start - 1 if start > 0 else start
    end_ir = end - 1 if end >= 0 else end
    return ir.Flatten(start_dim=start_ir, end_dim=end_ir)


def convert_maxpool2d(module: nn.MaxPool2d, ctx: ExportContext) -> ir.Node:
    """``nn.MaxPool2d`` -> ``MaxPool2d`` with kernel, stride, padding, dilation, ceil_mode."""
    if module.return_indices:
        raise ctx.fail(module, "return_indices=True has no T1C-IR equivalent")
    return ir.MaxPool2d(
        kernel_size=module.kernel_size,
        stride=module.stride,  # torch already defaults it to kernel_size
        padding=module.padding,
        dilation=module.dilation,
        ceil_mode=module.ceil_mode,
    )


def convert_avgpool2d(module: nn.AvgPool2d, ctx: ExportContext) -> ir.Node:
    """``nn.AvgPool2d`` -> ``AvgPool2d``; ``divisor_override`` cannot be expressed."""
    if module.divisor_override is not None:
        raise ctx.fail(
            module,
            f"divisor_override={module.divisor_override} cannot be expressed by AvgPool2d; "
            "remove it or pass custom_map",
        )
    return ir.AvgPool2d(
        kernel_size=module.kernel_size,
        stride=module.stride,  # torch already defaults it to kernel_size
        padding=module.padding,
        ceil_mode=module.ceil_mode,
        count_include_pad=module.count_include_pad,
    )


def _integer_scale(module: nn.Upsample, ctx: ExportContext) -> int:
    factors = module.scale_factor
    factors = tuple(factors) if isinstance(factors, (tuple, list)) else (factors, factors)
    if len(set(factors)) != 1 or float(factors[0]) != int(factors[0]):
        raise ctx.fail(
            module,
            f"scale_factor={module.scale_factor} must be one integer for both dims; use size= instead",
        )
    return int(factors[0])


def convert_upsample(module: nn.Upsample, ctx: ExportContext) -> ir.Node:
    """``nn.Upsample`` -> ``Upsample`` (size wins over scale_factor; nearest or bilinear)."""
    if module.mode not in ("nearest", "bilinear"):
        raise ctx.fail(module, f"mode={module.mode!r} is not supported (nearest, bilinear)")
    align = bool(module.align_corners) if module.align_corners is not None else False
    if module.size is not None:
        size = module.size if isinstance(module.size, (tuple, list)) else (module.size, module.size)
        return ir.Upsample(size=tuple(size), mode=module.mode, align_corners=align)
    return ir.Upsample(scale_factor=_integer_scale(module, ctx), mode=module.mode, align_corners=align)


def convert_identity(module: nn.Identity, ctx: ExportContext) -> ir.Node:
    """``nn.Identity`` -> ``Skip(passthrough)``."""
    return ir.Skip(skip_type="passthrough")


# -- dropped modules ------------------------------------------------------------------------
RELU_FIX = (
    "pass hybrid=True to export it as a T1C-IR ReLU node (an nn.ReLU module; a hybrid ANN-SNN graph), "
    "remove it, apply it only to spikes (after a spiking neuron, where it is the identity), or pass "
    "custom_map={nn.ReLU: fn} if you know better"
)


def drop_relu(module: nn.Module, ctx: ExportContext) -> None:
    """``nn.ReLU`` is dropped where it is the identity: on a provably non-negative input
    (spikes, or pools/reshapes/sums of spikes). Outside a hybrid graph (``hybrid=True``,
    :func:`convert_relu`) T1C-IR has no ReLU, so anywhere else the graph would compute
    something else: refused."""
    if ctx.input_nonnegative:
        return None
    raise ctx.fail(
        module,
        "T1C-IR has no ReLU outside a hybrid graph and its input may be negative here (it does not come from a spiking "
        f"neuron), so dropping it would change what the model computes; {RELU_FIX}",
    )


def drop_silently(module: nn.Module, ctx: ExportContext) -> None:
    """``nn.Dropout`` is the identity at inference; dropped without a word."""
    return None


# -- BatchNorm folding ----------------------------------------------------------------------
BATCHNORM_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)


def fold_batchnorm(node: ir.Node, bn: nn.Module, ctx: ExportContext) -> ir.Node:
    """A copy of ``node`` (Affine/SpikingAffine/Conv2d) with ``bn``'s eval-mode transform folded in.

    ``bn(x) = (x - mean) / sqrt(var + eps) * gamma + beta``, per output channel, so
    ``W' = W * s`` and ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``.
    Computed in float64 so the folded graph matches the model's eval output closely.
    """
    if not isinstance(node, (ir.Affine, ir.SpikingAffine, ir.Conv2d)):
        raise ctx.fail(
            bn,
            f"BatchNorm is folded into the Linear/Conv2d before it, but it follows a "
            f"{node.TYPE}; move it after a Linear/Conv2d or pass hybrid=True to export it as a "
            "BatchNorm node",
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ctx.fail(bn, "track_running_stats=False: there are no running statistics to fold")
    channels = node.weight.shape[0]
    if bn.num_features != channels:
        raise ctx.fail(bn, f"has {bn.num_features} features but the layer before has {channels} outputs")
    mean = bn.running_mean.detach().cpu().double().numpy()
    var = bn.running_var.detach().cpu().double().numpy()
    gamma = bn.weight.detach().cpu().double().numpy() if bn.weight is not None else np.ones(channels)
    beta = bn.bias.detach().cpu().double().numpy() if bn.bias is not None else np.zeros(channels)
    scale = gamma / np.sqrt(var + bn.eps)
    shape = (channels,) + (1,) * (node.weight.ndim - 1)
    weight = node.weight.astype(np.float64) * scale.reshape(shape)
    bias = (node.bias.astype(np.float64) - mean) * scale + beta
    return dataclasses.replace(
        node,
        weight=weight.astype(np.float32),
        bias=bias.astype(np.float32),
        weight_int=None,
        weight_scale=None,
        bias_int=None,
    )


# -- snnTorch -------------------------------------------------------------------------------
def _neuron_array(value: torch.Tensor | float, shape: Shape, name: str, module: nn.Module, ctx) -> np.ndarray:
    arr = np.asarray(_np(torch.as_tensor(value)), dtype=np.float32)
    try:
        return np.ascontiguousarray(np.broadcast_to(arr, shape), dtype=np.float32)
    except ValueError:
        raise ctx.fail(
            module,
            f"{name} of shape {list(arr.shape)} does not broadcast to the neurons' shape {list(shape)}",
        ) from None


REFUSED_NEURONS: dict[str, str] = {
    "RLeaky": "its recurrent connection (`recurrent`, its own spikes fed back as input) has no T1C-IR form",
    "RSynaptic": "its recurrent connection and its synaptic current (alpha) have no T1C-IR form",
    "Synaptic": "its synaptic current (a second state decaying with alpha) has no T1C-IR form",
    "Alpha": "its two exponential synaptic currents (alpha kernel) have no T1C-IR form",
    "Lapicque": "its RC update (input scaled by time_step/C, leak by time_step/(R*C)) is not the "
    "T1C-IR LIF update spike for spike",
    "SLSTM": "its LSTM gates have no T1C-IR form",
    "SConv2dLSTM": "its convolutional LSTM gates have no T1C-IR form",
    "DeltaLeaky": "it fires on the change of the membrane (|v_t - v_(t-1)| > delta_threshold), which "
    "T1C-IR's LIF does not",
    "StateLeaky": "it integrates a whole sequence in one call (a causal decay kernel, no reset), not one "
    "time step",
    "LinearLeaky": "it integrates a whole sequence in one call (a causal decay kernel, no reset), not one "
    "time step",
    "LeakyParallel": "it runs a whole sequence through an nn.RNN in one call, not one time step",
    "AssociativeLeaky": "its matrix-valued associative-memory state has no T1C-IR form",
    "GradedSpikes": "it scales spikes by per-neuron factors, which T1C-IR has no node for",
}


def refused_neuron(module: nn.Module) -> str | None:
    """Why an snnTorch module without a converter cannot be exported, or None if it is
    not an snnTorch neuron/layer."""
    for cls in type(module).__mro__:
        if cls.__name__ in REFUSED_NEURONS and cls.__module__.startswith("snntorch"):
            return REFUSED_NEURONS[cls.__name__]
    if type(module).__module__.startswith("snntorch"):
        return f"snnTorch's {type(module).__name__} has no exact T1C-IR form"
    try:
        import snntorch
    except ImportError:
        return None
    if isinstance(module, snntorch.SpikingNeuron):
        return "it is an snnTorch neuron whose update T1C-IR cannot express exactly"
    return None


def _fires_on_positive(spike_fn: Callable) -> bool:
    """Whether ``spike_fn``'s forward value is the step ``x > 0`` (all of snnTorch's
    surrogates are); probed on values around 0, so a custom function that fires otherwise
    (a sigmoid, a shifted step, noise) is caught."""
    probe = torch.tensor([-1e3, -1.0, -1e-3, -1e-30, 0.0, 1e-30, 1e-3, 1.0, 1e3], dtype=torch.float32)
    try:
        with torch.no_grad():
            out = spike_fn(probe.clone())
    except Exception:  # noqa: BLE001 - any failure means "not provably a step"
        return False
    return (
        isinstance(out, torch.Tensor)
        and out.shape == probe.shape
        and bool(torch.equal(out.float(), (probe > 0).float()))
    )


def convert_leaky(module: nn.Module, ctx: ExportContext) -> ir.Node:
    """``snn.Leaky`` -> ``LIF`` with snnTorch's exact semantics in the extension fields.

    ``tau = 1/(1 - beta)``, ``r = tau``, ``v_leak = 0``, ``v_threshold = threshold``,
    ``beta`` (clamped to [0, 1] as snnTorch does in every step), ``reset_mechanism``,
    ``reset_delay`` and ``strict_threshold=True``, all expanded to the neuron shape the
    hooks captured. ``beta == 1`` gives ``tau = r = +inf``.
    """
    if ctx.output_shape is None:
        raise ctx.fail(module, "its neuron shape is unknown (it was not called by the sample forward pass)")
    refused = []
    if module.inhibition:
        refused.append("inhibition=True")
    if module.state_quant:
        refused.append("state_quant")
    if isinstance(module.graded_spikes_factor, nn.Parameter):
        refused.append("learn_graded_spikes_factor=True")
    elif not bool(torch.all(torch.as_tensor(module.graded_spikes_factor) == 1)):
        refused.append(f"graded_spikes_factor={module.graded_spikes_factor.tolist()}")
    if not _fires_on_positive(module.spike_grad):
        refused.append("a spike_grad whose forward is not the step x > 0")
    if refused:
        raise ctx.fail(
            module,
            f"{', '.join(refused)} cannot be expressed by a T1C-IR LIF node; "
            "remove it or pass custom_map={snn.Leaky: fn}",
        )
    shape = ctx.output_shape
    beta = np.clip(_neuron_array(module.beta, shape, "beta", module, ctx), 0.0, 1.0)
    threshold = _neuron_array(module.threshold, shape, "threshold", module, ctx)
    if ctx.state_restarts:
        return _memoryless_lif(module, threshold, ctx)
    with np.errstate(divide="ignore"):
        tau = np.where(beta >= 1.0, np.inf, 1.0 / (1.0 - beta.astype(np.float64))).astype(np.float32)
    return ir.LIF(
        tau=tau,
        r=tau.copy(),
        v_leak=np.zeros(shape, dtype=np.float32),
        v_threshold=threshold,
        beta=beta,
        reset_mechanism=str(module.reset_mechanism),
        reset_delay=bool(module.reset_delay),
        strict_threshold=True,
    )


def _memoryless_lif(module: nn.Module, threshold: np.ndarray, ctx: ExportContext) -> ir.Node:
    """A Leaky that ``forward`` restarts from a zero membrane at every call computes
    ``spike = input > threshold`` and keeps nothing: exactly a LIF with ``beta = 0`` and no
    reset (``v_t = 0 * v_(t-1) + i_t``). With a negative threshold snnTorch would subtract
    a reset already in the first update, which that LIF does not: refused."""
    if bool((threshold < 0).any()):
        raise ctx.fail(
            module,
            "forward hands it a zero membrane at every call (init_leaky() inside forward), and with a "
            "negative threshold that is no T1C-IR LIF; keep its state between calls (init_hidden=True)",
        )
    shape = threshold.shape
    return ir.LIF(
        tau=np.ones(shape, dtype=np.float32),
        r=np.ones(shape, dtype=np.float32),
        v_leak=np.zeros(shape, dtype=np.float32),
        v_threshold=threshold,
        beta=np.zeros(shape, dtype=np.float32),
        reset_mechanism="none",
        reset_delay=True,
        strict_threshold=True,
    )


# -- t1c's own modules ----------------------------------------------------------------------
def convert_t1c_module(module: nn.Module, ctx: ExportContext) -> ir.Node:
    """LIFModule, SkipModule, SepConv2dModule, SpikingAffineModule know their own node."""
    return module.to_node()


# -- hybrid ANN nodes (``hybrid=True``; FORMAT_HYBRID.md) -------------------------------------
def _features(module: nn.Module, ctx: ExportContext) -> int:
    """The number of values per sample that pass (the hybrid nodes' ``features`` size hint)."""
    if ctx.input_shape is None:
        raise ctx.fail(module, "its input shape is unknown (it was not called by the sample forward pass)")
    return int(np.prod(ctx.input_shape, dtype=np.int64))


def convert_relu(module: nn.ReLU, ctx: ExportContext) -> ir.Node:
    """``nn.ReLU`` -> ``ReLU``."""
    return ir.ReLU(features=_features(module, ctx))


def convert_leaky_relu(module: nn.LeakyReLU, ctx: ExportContext) -> ir.Node:
    """``nn.LeakyReLU(s)`` -> ``ReLU(negative_slope=s)``; a negative ``s`` is refused.

    A ReLU node with a negative slope runs as ``max(x, 0)`` (the toolchain that defines
    the format runs it so, and so does t1c), while torch computes ``s * x`` below zero.
    """
    slope = float(module.negative_slope)
    if slope < 0:
        raise ctx.fail(
            module,
            f"negative_slope={slope:g} is negative, and a T1C-IR ReLU node with a negative slope runs as "
            "max(x, 0) (FORMAT_HYBRID.md), not as torch's s * x below zero; use a slope >= 0 or nn.PReLU "
            "with the slope as its weight",
        )
    return ir.ReLU(features=_features(module, ctx), negative_slope=slope)


def convert_prelu(module: nn.PReLU, ctx: ExportContext) -> ir.Node:
    """``nn.PReLU(n)`` -> ``PReLU(weight=[n])`` (one shared slope or one per channel/feature)."""
    return ir.PReLU(features=_features(module, ctx), weight=_np(module.weight).reshape(-1))


def convert_batchnorm(module: nn.Module, ctx: ExportContext) -> ir.Node:
    """``nn.BatchNorm1d/2d`` -> ``BatchNorm1d/2d`` with the running statistics (eval mode).

    ``affine=False`` writes weight 1 and bias 0; ``momentum=None`` (cumulative average)
    is kept; ``track_running_stats=False`` is refused: torch then normalises with each
    batch's own statistics, which a deployed node cannot (there are none to store).
    """
    if not module.track_running_stats or module.running_mean is None or module.running_var is None:
        raise ctx.fail(
            module,
            "track_running_stats=False: torch normalises with each batch's statistics even in eval mode, "
            "and there are no running statistics to store in a BatchNorm node; train it with "
            "track_running_stats=True",
        )
    channels = module.num_features
    weight = _np(module.weight) if module.weight is not None else np.ones(channels, np.float32)
    bias = _np(module.bias) if module.bias is not None else np.zeros(channels, np.float32)
    cls = ir.BatchNorm2d if isinstance(module, nn.BatchNorm2d) else ir.BatchNorm1d
    return cls(
        num_features=channels,
        weight=weight,
        bias=bias,
        running_mean=_np(module.running_mean),
        running_var=_np(module.running_var),
        eps=float(module.eps),
        momentum=None if module.momentum is None else float(module.momentum),
    )


def convert_sigmoid(module: nn.Sigmoid, ctx: ExportContext) -> ir.Node:
    """``nn.Sigmoid`` -> ``Sigmoid``."""
    return ir.Sigmoid(features=_features(module, ctx))


def convert_tanh(module: nn.Tanh, ctx: ExportContext) -> ir.Node:
    """``nn.Tanh`` -> ``Tanh``."""
    return ir.Tanh(features=_features(module, ctx))


def convert_softmax(module: nn.Softmax, ctx: ExportContext) -> ir.Node:
    """``nn.Softmax(dim)`` -> ``Softmax(dim)``; ``dim`` counts the batch axis, as torch's.

    ``dim=None`` is torch's legacy implicit choice for the batched input's rank (0 for
    ranks 0, 1 and 3, else 1), written as the number it is. A negative ``dim`` that
    reaches the batch axis is written as 0.
    """
    features = _features(module, ctx)
    rank = len(ctx.input_shape) + 1
    dim = module.dim
    if dim is None and ctx.calls > 1:
        raise ctx.fail(
            module,
            f"dim=None picks the axis from each input's rank, and the module is called {ctx.calls} times "
            "(the exporter sees the first call's shape only); set dim explicitly",
        )
    if dim is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation note on the implicit dim
            dim = F._get_softmax_dim("softmax", rank, 0)
    elif dim < 0 and dim + rank == 0:
        dim = 0
    return ir.Softmax(features=features, dim=int(dim))


def convert_gelu(module: nn.GELU, ctx: ExportContext) -> ir.Node:
    """``nn.GELU("none")`` -> ``GELU(approximate=False)``, ``"tanh"`` -> ``approximate=True``."""
    if module.approximate not in ("none", "tanh"):
        raise ctx.fail(module, f"approximate={module.approximate!r} is not 'none' or 'tanh'")
    return ir.GELU(features=_features(module, ctx), approximate=module.approximate == "tanh")


def convert_elu(module: nn.ELU, ctx: ExportContext) -> ir.Node:
    """``nn.ELU(alpha)`` -> ``ELU(alpha)``."""
    return ir.ELU(features=_features(module, ctx), alpha=float(module.alpha))


def convert_layernorm(module: nn.LayerNorm, ctx: ExportContext) -> ir.Node:
    """``nn.LayerNorm`` -> ``LayerNorm``; without affine parameters (or without a bias), weight 1
    and bias 0 of shape ``normalized_shape``."""
    shape = tuple(int(d) for d in module.normalized_shape)
    weight = _np(module.weight) if module.weight is not None else np.ones(shape, np.float32)
    bias = _np(module.bias) if module.bias is not None else np.zeros(shape, np.float32)
    return ir.LayerNorm(normalized_shape=shape, weight=weight, bias=bias, eps=float(module.eps))


def convert_dropout(module: nn.Dropout, ctx: ExportContext) -> ir.Node:
    """``nn.Dropout(p)`` -> ``Dropout(p)`` (the identity when deployed; drops when training)."""
    return ir.Dropout(features=_features(module, ctx), p=float(module.p))


def refuse_feature_dropout(module: nn.Module, ctx: ExportContext) -> None:
    """``nn.Dropout1d/2d/3d`` with ``hybrid=True``: T1C-IR's Dropout drops single values, not
    whole channels, so a hybrid graph that trains would train something else."""
    raise ctx.fail(
        module,
        "T1C-IR has no channel dropout (its Dropout node drops single values when training); use "
        "nn.Dropout, or export without hybrid=True (dropout is then left out: the identity when deployed)",
    )


def hybrid_export_map() -> dict[type[nn.Module], Converter]:
    """The converters ``hybrid=True`` adds to (or changes in) :func:`default_export_map`."""
    from .hybrid_modules import HybridRegionModule, SubgraphModule

    return {
        nn.ReLU: convert_relu,
        nn.LeakyReLU: convert_leaky_relu,
        nn.PReLU: convert_prelu,
        nn.BatchNorm1d: convert_batchnorm,
        nn.BatchNorm2d: convert_batchnorm,
        nn.Sigmoid: convert_sigmoid,
        nn.Tanh: convert_tanh,
        nn.Softmax: convert_softmax,
        nn.GELU: convert_gelu,
        nn.ELU: convert_elu,
        nn.LayerNorm: convert_layernorm,
        nn.Dropout: convert_dropout,
        nn.Dropout1d: refuse_feature_dropout,
        nn.Dropout2d: refuse_feature_dropout,
        nn.Dropout3d: refuse_feature_dropout,
        HybridRegionModule: convert_t1c_module,
        SubgraphModule: convert_t1c_module,
    }


HYBRID_HINT = "pass hybrid=True to export it as its T1C-IR node"


def hybrid_hint(module: nn.Module) -> str:
    """``"; pass hybrid=True ..."`` when ``hybrid=True`` would export ``module`` exactly, else ``""``."""
    converter = find_converter(module, None, hybrid_export_map())
    if converter is None or converter is refuse_feature_dropout:
        return ""
    return f"; {HYBRID_HINT}"


def default_export_map(hybrid: bool = False) -> dict[type[nn.Module], Converter]:
    """The default ``{module type: converter}`` map (a fresh dict each call).

    snnTorch's ``Leaky`` is included when snnTorch is installed; exporting plain torch
    models never needs it. ``hybrid=True`` adds :func:`hybrid_export_map` (ReLU, BatchNorm,
    Dropout, ... become their own nodes instead of being dropped or folded).
    """
    from . import modules

    mapping: dict[type[nn.Module], Converter] = {
        nn.Linear: convert_linear,
        nn.Conv2d: convert_conv2d,
        nn.Flatten: convert_flatten,
        nn.MaxPool2d: convert_maxpool2d,
        nn.AvgPool2d: convert_avgpool2d,
        nn.Upsample: convert_upsample,
        nn.Identity: convert_identity,
        nn.ReLU: drop_relu,
        nn.Dropout: drop_silently,
        nn.Dropout1d: drop_silently,
        nn.Dropout2d: drop_silently,
        modules.LIFModule: convert_t1c_module,
        modules.SkipModule: convert_t1c_module,
        modules.SepConv2dModule: convert_t1c_module,
        modules.SpikingAffineModule: convert_t1c_module,
    }
    if hybrid:
        mapping.update(hybrid_export_map())
    try:
        import snntorch
    except ImportError:  # snnTorch is optional for exporting plain torch models
        return mapping
    mapping[snntorch.Leaky] = convert_leaky
    return mapping


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
