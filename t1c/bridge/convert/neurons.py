"""Neurons both ways: ``snn.Leaky`` -> ``LIF``, ``LIFModule`` <-> ``LIF`` (the current-based
neurons are :mod:`.cuba`'s).

``snn.Leaky`` exports with snnTorch's exact semantics in the LIF extension fields
(docs/lif_extensions.md); snnTorch neurons without an exact T1C-IR form
(:data:`REFUSED_NEURONS`) are refused by name, and their submodules are never exported
as layers. snnTorch is optional: without it, the table holds t1c's
own :class:`~t1c.bridge.LIFModule` only (:func:`snntorch_converters`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from t1c import ir

from ..modules import LIFModule, as_numpy
from ..registry import Converter, ExportContext, ExportTable, ImportTable, Shape, convert_own_node

REFUSED_NEURONS: dict[str, str] = {
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


def is_stateful(module: nn.Module) -> bool:
    """Neurons carry state from call to call, so calling one twice is a time loop."""
    if getattr(module, "stateful", False):
        return True
    try:
        import snntorch
    except ImportError:
        return False
    return isinstance(module, snntorch.SpikingNeuron)


def neuron_array(
    value: torch.Tensor | float, shape: Shape, name: str, module: nn.Module, ctx: ExportContext
) -> np.ndarray:
    arr = np.asarray(as_numpy(torch.as_tensor(value)), dtype=np.float32)
    try:
        return np.ascontiguousarray(np.broadcast_to(arr, shape), dtype=np.float32)
    except ValueError:
        raise ctx.fail(
            module,
            f"{name} of shape {list(arr.shape)} does not broadcast to the neurons' shape {list(shape)}",
        ) from None


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


def leaky_refusals(module: nn.Module) -> list[str]:
    """The options of an ``snn.Leaky`` that no T1C-IR LIF expresses."""
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
    return refused


def convert_leaky(module: nn.Module, ctx: ExportContext) -> ir.Node:
    """``snn.Leaky`` -> ``LIF`` with snnTorch's exact semantics in the extension fields.

    ``tau = 1/(1 - beta)``, ``r = tau``, ``v_leak = 0``, ``v_threshold = threshold``,
    ``beta`` (clamped to [0, 1] as snnTorch does in every step), ``reset_mechanism``,
    ``reset_delay`` and ``strict_threshold=True``, all expanded to the neuron shape the
    hooks captured. ``beta == 1`` gives ``tau = r = +inf``. A neuron that ``forward``
    restarts from a zero membrane at every call (``ctx.state_restarts``) keeps nothing.
    """
    if ctx.output_shape is None:
        raise ctx.fail(module, "its neuron shape is unknown (it was not called by the sample forward pass)")
    refused = leaky_refusals(module)
    if refused:
        raise ctx.fail(
            module,
            f"{', '.join(refused)} cannot be expressed by a T1C-IR LIF node; "
            "remove it or pass custom_map={snn.Leaky: fn}",
        )
    shape = ctx.output_shape
    beta = np.clip(neuron_array(module.beta, shape, "beta", module, ctx), 0.0, 1.0)
    threshold = neuron_array(module.threshold, shape, "threshold", module, ctx)
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


#: Converters that read ``ctx.state_restarts`` (a neuron restarted at every call); any
#: other converter of such a neuron would export state that the model never keeps.
RESTART_AWARE: frozenset[Converter] = frozenset({convert_leaky})


def snntorch_converters() -> ExportTable:
    """``{snn.Leaky: convert_leaky}`` when snnTorch is installed, else empty (it is optional)."""
    try:
        import snntorch
    except ImportError:
        return {}
    return {snntorch.Leaky: convert_leaky}


EXPORT: ExportTable = {LIFModule: convert_own_node}
IMPORT: ImportTable = {ir.LIF: LIFModule.from_node}
