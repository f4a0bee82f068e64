"""T1C-IR's ``CubaLIF`` <-> NIR's ``CubaLIF``, both ways, with snnTorch's exact fields in NIR metadata.

NIR's ``CubaLIF`` (forward Euler at ``dt``: current first, membrane from the new current,
reset to ``v_reset`` in the same step) is T1C-IR's plain ``CubaLIF`` with time constants
in steps (``tau / dt``). snnTorch's exact fields (``alpha``, ``beta``, ``input_gain``)
travel in the NIR node's metadata and come back while they still describe its fields; the
reset settings NIR cannot say are refused, or written by an approximate export with a
warning and kept in the metadata. A one-to-one recurrence (``w_rec``) is a diagonal
``Linear`` on a cycle with the neuron, as snnTorch writes it, folded back on import.
``docs/nir.md`` has the rules.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import ir
from .common import (
    META_ALPHA,
    META_BETA,
    META_INPUT_GAIN,
    META_NIR_FIELDS,
    META_RESET,
    META_RESET_DELAY,
    META_TYPE,
    SEPARATOR,
    f64,
    import_nir,
    node_metadata,
)
from .export_nodes import ExportContext, nir_time_constant, refuse_or_warn
from .import_nodes import ImportContext, check_v_reset, from_lif, meta_str

#: The name suffix of the diagonal ``Linear`` that says a CubaLIF's ``w_rec`` in NIR.
W_REC = "w_rec"


def _time_steps(name: str, node: Any, field: str, ctx: ImportContext) -> np.ndarray:
    """A CubaLIF time constant in steps (``tau / dt``, float32), or refused below one step."""
    tau = f64(getattr(node, field))
    steps = (tau / ctx.dt).astype(np.float32)
    if not np.all(np.isfinite(tau)) or bool(np.any(steps < 1.0)):
        raise ctx.fail(
            name,
            f"CubaLIF with {field} in [{tau.min():g}, {tau.max():g}] at dt={ctx.dt:g}: forward Euler "
            f"needs dt <= {field} (finite); pass a smaller dt",
        )
    return steps


def from_cuba_lif(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.CubaLIF`` -> plain ``ir.CubaLIF`` (``tau / dt`` steps, NIR's equations), or refused.

    The exact snnTorch fields that :func:`~t1c.nir.to_nir` keeps in the metadata come back
    when they still describe the NIR fields; the reset fields of an approximate export too.
    NIR's time constants stay in the metadata (``t1c_nir_fields``) for the way back.
    """
    check_v_reset(name, node, ctx)
    meta = node_metadata(node)
    fields: dict[str, Any] = {
        "tau_syn": _time_steps(name, node, "tau_syn", ctx),
        "tau_mem": _time_steps(name, node, "tau_mem", ctx),
        "r": f64(node.r),
        "v_leak": f64(node.v_leak),
        "v_threshold": f64(node.v_threshold),
        "w_in": np.broadcast_to(f64(node.w_in), np.shape(node.tau_syn)),
    }
    mechanism = meta_str(meta, META_RESET)
    if mechanism is not None:  # written by an approximate to_nir: the t1c neuron it came from
        fields.update(
            reset_mechanism=mechanism, reset_delay=bool(np.asarray(meta.get(META_RESET_DELAY, False)))
        )
    elif bool(np.any(fields["v_threshold"] < 0)):
        raise ctx.fail(
            name,
            "CubaLIF with v_threshold < 0: NIR resets to 0, which is above the threshold, and fires again "
            "from there; T1C-IR's reset (decided from last step's membrane) resets again instead",
        )
    fields.update(_exact_cuba_fields(node, meta, ctx.dt))
    nir_fields = {"tau_syn": np.asarray(node.tau_syn), "tau_mem": np.asarray(node.tau_mem)}
    return ir.CubaLIF(**fields, metadata={META_NIR_FIELDS: nir_fields})


def _exact_cuba_fields(node: Any, meta: Mapping[str, Any], dt: float) -> dict[str, np.ndarray]:
    """``alpha``/``beta``/``input_gain`` from the metadata, if they still describe ``node``.

    NIR's Euler step is ``I = (1 - dt/tau_syn) I + (dt/tau_syn) w_in S`` and
    ``v = (1 - dt/tau_mem) v + (dt/tau_mem)(v_leak + r I)``; the exact form
    ``I = alpha I + g S``, ``v = beta v + I`` is the same when ``dt/tau_syn = 1 - alpha`` (``1``
    without ``alpha``), ``(dt/tau_syn) w_in = g``, ``dt/tau_mem = 1 - beta``,
    ``(dt/tau_mem) r = 1`` and ``v_leak = 0`` (checked to 1e-6: a retrained graph drops them).
    """
    shape = np.shape(node.tau_syn)
    exact = {key: meta.get(key) for key in (META_ALPHA, META_BETA, META_INPUT_GAIN)}
    if exact[META_BETA] is None:
        return {}
    arrays = {key: (None if value is None else f64(value)) for key, value in exact.items()}
    if any(value is not None and value.shape != shape for value in arrays.values()):
        return {}
    alpha, beta, gain = arrays[META_ALPHA], arrays[META_BETA], arrays[META_INPUT_GAIN]
    syn_gap, mem_gap = dt / f64(node.tau_syn), dt / f64(node.tau_mem)
    checks = (
        (syn_gap, np.ones(shape) if alpha is None else 1.0 - alpha),
        (syn_gap * f64(node.w_in), np.ones(shape) if gain is None else gain),
        (mem_gap, 1.0 - beta),
        (mem_gap * f64(node.r), np.ones(shape)),
    )
    if not all(np.allclose(got, want, rtol=1e-6, atol=0) for got, want in checks):
        return {}
    if bool(np.any(f64(node.v_leak) != 0.0)):
        return {}
    fields = {"beta": beta}
    if alpha is not None:
        fields["alpha"] = alpha
    if gain is not None:
        fields["input_gain"] = gain
    return fields


def _cuba_reasons(node: ir.CubaLIF) -> list[str]:
    """The settings of a CubaLIF that NIR's CubaLIF (reset to 0 in the same step) does not say."""
    reasons = []
    mechanism = node.reset_mechanism or "zero"
    if mechanism != "zero":
        reasons.append(f"reset_mechanism={mechanism!r} (NIR's CubaLIF resets to v_reset, always)")
    if node.reset_delay:
        reasons.append("reset_delay=True (NIR's CubaLIF resets in the step it fires, not one step later)")
    if bool(np.any(node.v_threshold < 0)):
        reasons.append("v_threshold < 0 (NIR's reset to 0 lands above the threshold and fires again)")
    return reasons


def _check_cuba_exportable(name: str, node: ir.CubaLIF, ctx: ExportContext) -> None:
    """Refuse what no NIR CubaLIF can say, approximately or not."""
    fields = (node.tau_syn, node.tau_mem, node.r, node.w_in)
    if not all(np.all(np.isfinite(f)) for f in fields) or bool(
        np.any(np.minimum(node.tau_syn, node.tau_mem) < 1)
    ):
        raise ctx.fail(
            name,
            "CubaLIF with a decay of 1 (tau_syn, tau_mem, r or w_in = +inf) or a time constant below one step: "
            "NIR's CubaLIF needs finite time constants of at least dt",
        )


def _w_rec_as_nir(name: str, node: ir.CubaLIF, ctx: ExportContext) -> None:
    """``w_rec`` as snnTorch writes the one-to-one recurrence: a diagonal ``nir.Linear``
    ``<name>.w_rec`` on a cycle with the neuron (``ctx.side_nodes``/``side_edges``)."""
    nir = import_nir()
    rec = f"{name}{SEPARATOR}{W_REC}"
    if node.w_rec.ndim != 1:
        raise ctx.fail(
            name,
            f"CubaLIF with w_rec over a layer of shape {list(node.w_rec.shape)}: NIR says a one-to-one "
            "recurrence as a diagonal Linear, which needs a flat layer",
        )
    if rec in ctx.graph.nodes:
        raise ctx.fail(
            name, f"CubaLIF with w_rec: its NIR feedback node would be named '{rec}', which is taken"
        )
    ctx.side_nodes.append((rec, nir.Linear(weight=np.diag(node.w_rec))))
    ctx.side_edges += [(name, rec), (rec, name)]


def fold_w_rec(nodes: dict, edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The diagonal ``Linear`` that :func:`to_cuba_lif` writes for a ``w_rec`` (``<name>.w_rec``,
    zero bias, on a cycle with its CubaLIF only) back into the neuron's ``w_rec``: the same
    products, added as the neuron's last input, and the same NIR nodes when written back.

    Returns:
        The edges without the folded nodes' (``nodes`` is changed in place).
    """
    for name, node in list(nodes.items()):
        rec = f"{name}{SEPARATOR}{W_REC}"
        linear = nodes.get(rec)
        if not (isinstance(node, ir.CubaLIF) and node.w_rec is None and isinstance(linear, ir.Affine)):
            continue
        weight = linear.weight
        if (
            linear.metadata.get(META_TYPE) != "Linear"
            or linear.bias.any()
            or weight.shape[0] != weight.shape[1]
            or np.count_nonzero(weight - np.diag(np.diag(weight)))
            or sorted((s, d) for s, d in edges if rec in (s, d)) != [(name, rec), (rec, name)]
        ):
            continue
        nodes[name] = dataclasses.replace(node, w_rec=np.diag(weight).astype(np.float32))
        del nodes[rec]
        edges = [(s, d) for s, d in edges if rec not in (s, d)]
    return edges


def _without_current(node: ir.CubaLIF) -> bool:
    """An exact CubaLIF with no current stage and no input gain (snnTorch's ``RLeaky``):
    ``v = beta v + x_1 + x_2 + ...``, which NIR's ``LIF`` says."""
    return (
        node.beta is not None
        and node.alpha is None
        and node.input_gain is None
        and bool(np.all(node.tau_syn == 1))
        and bool(np.all(node.w_in == 1))
    )


def _leaky_as_nir_lif(node: ir.CubaLIF, dt: float) -> Any:
    """The CubaLIF of :func:`_without_current` as the ``nir.LIF`` snnTorch writes for ``RLeaky``
    (``tau = tau_mem dt``, ``r``), marked ``t1c_type=CubaLIF`` with ``t1c_beta`` for the way back."""
    nir = import_nir()
    return nir.LIF(
        tau=nir_time_constant(node, "tau_mem", dt),
        r=node.r.copy(),
        v_leak=node.v_leak.copy(),
        v_threshold=node.v_threshold.copy(),
        v_reset=np.zeros(node.shape, dtype=np.float32),
        metadata={META_TYPE: "CubaLIF", META_BETA: node.beta.copy()},
    )


def from_nir_lif(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.LIF`` -> ``ir.LIF`` (:func:`~t1c.nir.import_nodes.from_lif`), or the CubaLIF without
    a current stage that :func:`to_cuba_lif` wrote as one (``t1c_type=CubaLIF``): ``tau_syn =
    w_in = 1``, ``tau_mem = tau / dt``, and ``beta`` while ``t1c_beta`` still describes it."""
    meta = node_metadata(node)
    if meta_str(meta, META_TYPE) != "CubaLIF":
        return from_lif(name, node, ctx)
    check_v_reset(name, node, ctx)
    shape = np.shape(node.tau)
    ones = np.ones(shape, dtype=np.float32)
    fields: dict[str, Any] = {
        "tau_syn": ones,
        "tau_mem": _time_steps(name, node, "tau", ctx),
        "r": f64(node.r),
        "v_leak": f64(node.v_leak),
        "v_threshold": f64(node.v_threshold),
        "w_in": ones,
    }
    as_cuba = types.SimpleNamespace(
        tau_syn=np.full(shape, ctx.dt), tau_mem=node.tau, w_in=ones, r=node.r, v_leak=node.v_leak
    )  # NIR's CubaLIF with a one-step current stage: the same equations
    fields.update(_exact_cuba_fields(as_cuba, meta, ctx.dt))
    return ir.CubaLIF(**fields, metadata={META_NIR_FIELDS: {"tau_mem": np.asarray(node.tau)}})


def to_cuba_lif(name: str, node: ir.CubaLIF, ctx: ExportContext) -> list:
    """``ir.CubaLIF`` -> ``nir.CubaLIF`` (``tau * dt``, ``v_reset = 0``), the exact fields in the
    metadata, ``w_rec`` a diagonal ``Linear`` on a cycle; one without a current stage
    (``RLeaky``) -> ``nir.LIF`` as snnTorch writes it; refused where NIR's reset differs
    unless ``approximate`` (see ``docs/nir.md``)."""
    nir = import_nir()
    _check_cuba_exportable(name, node, ctx)
    if node.w_rec is not None:
        _w_rec_as_nir(name, node, ctx)
    reasons = _cuba_reasons(node)
    refuse_or_warn(name, "CubaLIF", reasons, ctx, note=" (from_nir restores them)")
    if not reasons and _without_current(node):
        return [(name, _leaky_as_nir_lif(node, ctx.dt))]
    meta: dict[str, Any] = {}
    if reasons:
        meta = {META_RESET: node.reset_mechanism or "zero", META_RESET_DELAY: bool(node.reset_delay)}
    for key, value in ((META_ALPHA, node.alpha), (META_BETA, node.beta), (META_INPUT_GAIN, node.input_gain)):
        if value is not None:
            meta[key] = value.copy()
    cuba = nir.CubaLIF(
        tau_syn=nir_time_constant(node, "tau_syn", ctx.dt),
        tau_mem=nir_time_constant(node, "tau_mem", ctx.dt),
        r=node.r.copy(),
        v_leak=node.v_leak.copy(),
        v_threshold=node.v_threshold.copy(),
        v_reset=np.zeros(node.shape, dtype=np.float32),
        w_in=node.w_in.copy(),
        metadata=meta,
    )
    return [(name, cuba)]
