"""Current-based neurons both ways: ``snn.Synaptic``/``snn.Lapicque`` and the one-to-one
``snn.RLeaky``/``snn.RSynaptic`` (``all_to_all=False``) -> ``CubaLIF``, ``snn.Alpha`` -> ``AlphaLIF``, and t1c's :class:`~t1c.bridge.CubaLIFModule` /
:class:`~t1c.bridge.AlphaLIFModule` <-> their nodes.

The mapping is ``docs/neurons.md``'s ("snnTorch <-> T1C-IR"): every parameter expanded
to the neuron shape the hooks captured, the decays clamped to [0, 1] as the forwards
clamp them, ``reset_mechanism`` and ``reset_delay`` copied. A configuration with no exact
form is refused by name (:func:`_refusals`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from t1c import ir

from ..neuron_modules import AlphaLIFModule, CubaLIFModule, time_constant
from ..registry import ExportContext, ExportTable, ImportTable, convert_own_node
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


def _one_to_one(
    module: nn.Module, ctx: ExportContext, extra: list[str]
) -> tuple[tuple[int, ...], np.ndarray]:
    """An ``RLeaky``/``RSynaptic``'s neuron shape and ``w_rec = V`` (one-to-one form only)."""
    if module.all_to_all:
        raise ctx.fail(
            module,
            "its recurrent connection (all_to_all=True: the `recurrent` Linear/Conv2d fed its own spikes) is "
            "not exported yet (docs/neurons.md plans it as a back edge); use all_to_all=False with V, or pass "
            f"custom_map={{{type(module).__name__}: fn}}",
        )
    shape = _checked_shape(module, ctx, extra)
    with torch.no_grad():
        v = module.recurrent.V
    return shape, neuron_array(v, shape, "V", module, ctx)


def convert_rleaky(module: nn.Module, ctx: ExportContext) -> ir.CubaLIF:
    """``snn.RLeaky(all_to_all=False, V)`` -> an exact ``CubaLIF`` without a current stage,
    ``w_rec = V``: ``u = (beta*v + x) + V*s_prev``, added in snnTorch's order."""
    shape, w_rec = _one_to_one(module, ctx, [])
    beta = np.clip(neuron_array(module.beta, shape, "beta", module, ctx), 0.0, 1.0)
    return _exact_cuba(module, ctx, shape, beta, w_rec=w_rec)


def convert_rsynaptic(module: nn.Module, ctx: ExportContext) -> ir.CubaLIF:
    """``snn.RSynaptic(all_to_all=False, V)`` -> a ``Synaptic``'s ``CubaLIF`` with ``w_rec = V``
    feeding the current; ``reset_delay=False`` is refused (snnTorch fails or ignores it)."""
    extra = [] if module.reset_delay else ["reset_delay=False (snnTorch itself fails or ignores it)"]
    shape, w_rec = _one_to_one(module, ctx, extra)
    return _synaptic(module, ctx, shape, w_rec=w_rec)


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
