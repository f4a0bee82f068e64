"""Current-based neurons both ways: ``snn.Synaptic``/``snn.Lapicque`` and
``snn.RLeaky``/``snn.RSynaptic`` -> ``CubaLIF``, ``snn.Alpha`` -> ``AlphaLIF``, and t1c's
:class:`~t1c.bridge.CubaLIFModule` / :class:`~t1c.bridge.AlphaLIFModule` <-> their nodes.

The one-to-one ``RLeaky``/``RSynaptic`` (``all_to_all=False``) is one ``CubaLIF`` with
``w_rec = V``; the all-to-all form is a :class:`~t1c.bridge.registry.NodeGroup`: the
``CubaLIF`` plus its recurrent ``nn.Linear``/``nn.Conv2d`` as an ``Affine``/``Conv2d``
(named ``<neuron>.recurrent``) on a back edge.

The mapping is ``docs/neurons.md``'s ("snnTorch <-> T1C-IR"): every parameter expanded
to the neuron shape the hooks captured, the decays clamped to [0, 1] as the forwards
clamp them, ``reset_mechanism`` and ``reset_delay`` copied. A configuration with no exact
form is refused by name (:func:`_refusals`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from t1c import ir

from ..modules import time_constant
from ..neuron_modules import AlphaLIFModule, CubaLIFModule
from ..registry import ExportContext, ExportTable, ImportTable, NodeGroup, convert_own_node
from .conv import convert_conv2d
from .linear import convert_linear
from .neurons import leaky_refusals, neuron_array


def _checked_shape(module: nn.Module, ctx: ExportContext, extra: list[str]) -> tuple[int, ...]:
    """The neuron shape, after refusing what no node expresses (``extra``: the neuron's own)."""
    if ctx.output_shape is None:
        raise ctx.fail(module, "its neuron shape is unknown (it was not called by the sample forward pass)")
    refused = leaky_refusals(module) + extra
    if refused:
        raise ctx.fail(
            module,
            f"{', '.join(refused)} cannot be expressed by a T1C-IR {_NODE_OF[type(module).__name__]} node; "
            f"remove it or pass custom_map={{{type(module).__name__}: fn}}",
        )
    return ctx.output_shape


_NODE_OF = {
    "Synaptic": "CubaLIF",
    "Lapicque": "CubaLIF",
    "Alpha": "AlphaLIF",
    "RLeaky": "CubaLIF",
    "RSynaptic": "CubaLIF",
}


def _exact_cuba(
    module: nn.Module,
    ctx: ExportContext,
    shape: tuple[int, ...],
    beta: np.ndarray,
    alpha: np.ndarray | None = None,
    input_gain: np.ndarray | None = None,
    **exact: object,
) -> ir.CubaLIF:
    """The exact ``CubaLIF`` of an snnTorch neuron with decay ``beta`` (and current decay
    ``alpha``, input gain ``input_gain`` where it has them), with the plain fields a reader
    without the exact ones approximates it by: ``tau_mem = r = 1/(1-beta)``, ``tau_syn =
    1/(1-alpha)`` (1 without a current stage), ``w_in`` the same (or the gain), ``v_leak = 0``.
    ``exact`` adds ``w_rec`` or sets ``reset_delay`` (Lapicque has none: its reset is always
    delayed)."""
    tau_mem = time_constant(beta)
    tau_syn = time_constant(alpha) if alpha is not None else np.ones(shape, dtype=np.float32)
    w_in = input_gain if input_gain is not None else tau_syn
    fields = {
        "reset_mechanism": str(module.reset_mechanism),
        "reset_delay": bool(getattr(module, "reset_delay", True)),
    }
    return ir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=tau_mem.copy(),
        v_leak=np.zeros(shape, dtype=np.float32),
        v_threshold=neuron_array(module.threshold, shape, "threshold", module, ctx),
        w_in=w_in.copy(),
        alpha=alpha,
        beta=beta,
        input_gain=input_gain,
        **{**fields, **exact},
    )


def convert_synaptic(module: nn.Module, ctx: ExportContext) -> ir.CubaLIF:
    """``snn.Synaptic`` -> an exact ``CubaLIF``: ``alpha``, ``beta`` (clamped), and the plain
    fields ``tau_syn = w_in = 1/(1-alpha)``, ``tau_mem = r = 1/(1-beta)``, ``v_leak = 0``."""
    return _synaptic(module, ctx, _checked_shape(module, ctx, []))


def _synaptic(module: nn.Module, ctx: ExportContext, shape: tuple[int, ...], **exact: object) -> ir.CubaLIF:
    """A ``Synaptic``'s (or ``RSynaptic``'s) exact ``CubaLIF`` on the checked ``shape``."""
    alpha = np.clip(neuron_array(module.alpha, shape, "alpha", module, ctx), 0.0, 1.0)
    beta = np.clip(neuron_array(module.beta, shape, "beta", module, ctx), 0.0, 1.0)
    return _exact_cuba(module, ctx, shape, beta, alpha, **exact)


def _power_of_two(value: torch.Tensor) -> bool:
    v = float(value)
    return v > 0 and np.isfinite(v) and np.frexp(v)[0] == 0.5


def convert_lapicque(module: nn.Module, ctx: ExportContext) -> ir.CubaLIF:
    """``snn.Lapicque`` -> an exact ``CubaLIF`` without a current stage: ``beta = 1 - dt/(RC)``
    and ``input_gain = R * dt/(RC)`` in float32, as its forward computes them (always a
    delayed reset). Exact only when ``R`` and ``time_step`` are powers of two (the input term
    then rounds once) and the decay is in [0, 1]."""
    extra = []
    for name in ("R", "C", "time_step"):
        if torch.as_tensor(getattr(module, name)).numel() != 1:
            extra.append(f"a per-neuron {name}")
    for name in ("R", "time_step"):
        if not extra and not _power_of_two(torch.as_tensor(getattr(module, name))):
            extra.append(
                f"{name}={float(getattr(module, name)):g} (not a power of two: the input term rounds three times)"
            )
    shape = _checked_shape(module, ctx, extra)
    r, c, dt = (torch.as_tensor(getattr(module, n), dtype=torch.float32) for n in ("R", "C", "time_step"))
    with torch.no_grad():
        beta = 1 - dt / (r * c)
        gain = r * (1 / (r * c)) * dt
    if not 0.0 <= float(beta) <= 1.0:
        raise ctx.fail(
            module,
            f"its decay 1 - time_step/(R*C) = {float(beta):g} is outside [0, 1] (beta < 1/e?), which no "
            "T1C-IR CubaLIF expresses",
        )
    beta_arr = neuron_array(beta, shape, "beta", module, ctx)
    gain_arr = neuron_array(gain, shape, "input_gain", module, ctx)
    return _exact_cuba(module, ctx, shape, beta_arr, input_gain=gain_arr, reset_delay=True)


def convert_alpha(module: nn.Module, ctx: ExportContext) -> ir.AlphaLIF:
    """``snn.Alpha`` -> ``AlphaLIF`` with ``tau`` computed by torch's float32 ``log`` on the
    module's own tensors, exactly as its forward computes it (``alpha.py``)."""
    shape = _checked_shape(module, ctx, [])
    with torch.no_grad():
        a, b = module.alpha.clamp(0, 1), module.beta.clamp(0, 1)
        tau = torch.log(a) / (torch.log(b) - torch.log(a)) + 1
    return ir.AlphaLIF(
        alpha=neuron_array(a, shape, "alpha", module, ctx),
        beta=neuron_array(b, shape, "beta", module, ctx),
        tau=neuron_array(tau, shape, "tau", module, ctx),
        v_threshold=neuron_array(module.threshold, shape, "threshold", module, ctx),
        reset_mechanism=str(module.reset_mechanism),
    )


def _recurrence(
    module: nn.Module, ctx: ExportContext, extra: list[str]
) -> tuple[tuple[int, ...], dict[str, object], ir.Node | None]:
    """An ``RLeaky``/``RSynaptic``'s neuron shape, the ``CubaLIF`` fields of its recurrence
    (``w_rec = V``, one-to-one) and its recurrent synapse node (all-to-all), after refusing
    what no graph expresses (``extra``: the neuron's own settings)."""
    if not module.all_to_all:
        shape = _checked_shape(module, ctx, extra)
        with torch.no_grad():
            v = module.recurrent.V
        return shape, {"w_rec": neuron_array(v, shape, "V", module, ctx)}, None
    rec = module.recurrent
    if isinstance(rec, nn.Conv2d) and any(k % 2 == 0 for k in rec.kernel_size):
        extra = [
            *extra,
            f"an even kernel_size {tuple(rec.kernel_size)} (padding k // 2 makes the recurrent output larger "
            "than the layer: snnTorch itself fails)",
        ]
    elif not isinstance(rec, (nn.Linear, nn.Conv2d)):
        extra = [
            *extra,
            f"a recurrent {type(rec).__name__} (all_to_all=True feeds back an nn.Linear or nn.Conv2d)",
        ]
    shape = _checked_shape(module, ctx, extra)
    sub = dataclasses.replace(ctx, path=f"{ctx.path}.recurrent", input_shape=shape, output_shape=shape)
    synapse = convert_linear(rec, sub) if isinstance(rec, nn.Linear) else convert_conv2d(rec, sub)
    return shape, {}, synapse


def _with_feedback(neuron: ir.CubaLIF, synapse: ir.Node | None) -> ir.CubaLIF | NodeGroup:
    """The neuron alone (one-to-one), or wired to its recurrent synapse (all-to-all) as
    docs/neurons.md lays out: the synapse first in graph order, the model's input edge before
    the synapse's into the neuron, and the neuron's spikes on the back edge into the synapse
    (so it sees last step's spikes, zero at step 0: its bias enters at the first step)."""
    if synapse is None:
        return neuron
    return NodeGroup(
        {"recurrent": synapse, "neuron": neuron},
        main="neuron",
        edges=(("recurrent", "neuron"), ("neuron", "recurrent")),
    )


def convert_rleaky(module: nn.Module, ctx: ExportContext) -> ir.CubaLIF | NodeGroup:
    """``snn.RLeaky`` -> an exact ``CubaLIF`` without a current stage: ``u = (beta*v + x) +
    rec(s_prev)``, added in snnTorch's order. One-to-one (``all_to_all=False``): ``w_rec = V``;
    all-to-all: the recurrent ``nn.Linear``/``nn.Conv2d`` as an ``Affine``/``Conv2d`` on a back
    edge (a :class:`~t1c.bridge.registry.NodeGroup`)."""
    shape, fields, synapse = _recurrence(module, ctx, [])
    beta = np.clip(neuron_array(module.beta, shape, "beta", module, ctx), 0.0, 1.0)
    return _with_feedback(_exact_cuba(module, ctx, shape, beta, **fields), synapse)


def convert_rsynaptic(module: nn.Module, ctx: ExportContext) -> ir.CubaLIF | NodeGroup:
    """``snn.RSynaptic`` -> a ``Synaptic``'s ``CubaLIF`` whose current the recurrence feeds
    (``w_rec = V``, or the recurrent synapse on a back edge, as :func:`convert_rleaky`);
    ``reset_delay=False`` is refused (snnTorch fails or ignores it)."""
    extra = [] if module.reset_delay else ["reset_delay=False (snnTorch itself fails or ignores it)"]
    shape, fields, synapse = _recurrence(module, ctx, extra)
    return _with_feedback(_synaptic(module, ctx, shape, **fields), synapse)


def snntorch_converters() -> ExportTable:
    """``{snn.Synaptic, snn.Lapicque, snn.Alpha, snn.RLeaky, snn.RSynaptic: converter}`` when
    snnTorch is installed, else empty."""
    try:
        import snntorch
    except ImportError:
        return {}
    return {
        snntorch.Synaptic: convert_synaptic,
        snntorch.Lapicque: convert_lapicque,
        snntorch.Alpha: convert_alpha,
        snntorch.RLeaky: convert_rleaky,
        snntorch.RSynaptic: convert_rsynaptic,
    }


EXPORT: ExportTable = {CubaLIFModule: convert_own_node, AlphaLIFModule: convert_own_node}
IMPORT: ImportTable = {ir.CubaLIF: CubaLIFModule.from_node, ir.AlphaLIF: AlphaLIFModule.from_node}
