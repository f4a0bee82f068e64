"""T1C-IR -> NIR, one node at a time: ``fn(name, node, ctx) -> [(nir name, nir node), ...]``.

Each converter gives the NIR node(s) with the same equations (a chain: ``SepConv2d`` is two
``Conv2d``), or raises ``ctx.fail`` naming the node and why (``docs/nir.md`` has the table).
Shapes that NIR wants spelled out come from the validated graph in the :class:`ExportContext`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import ir
from .common import (
    META_BETA,
    META_NIR_FIELDS,
    META_STRICT,
    META_TYPE,
    SEPARATOR,
    FailsAtNode,
    f64,
    import_nir,
    ints,
)

#: How a refused LIF's message names the option that exports it approximately; the
#: ``t1c convert`` command puts its flag, ``--approximate``, in its place.
APPROXIMATE_HINT = "Pass approximate=True"


@dataclasses.dataclass
class ExportContext(FailsAtNode):
    """What an export converter may look at besides its node.

    Attributes:
        dt: the time step.
        approximate: export LIF extension fields that NIR cannot say as NIR's LIF (warning).
        graph: the (validated) graph being exported; ``graph.input_shapes`` etc.
        file: the `.t1c` file, if any.
        side_nodes, side_edges: NIR nodes and edges a converter adds beside its chain (a
            CubaLIF's ``w_rec`` as a diagonal ``Linear`` on a cycle with the neuron).
    """

    dt: float
    approximate: bool
    graph: ir.Graph
    file: str | None
    side_nodes: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    side_edges: list[tuple[str, str]] = dataclasses.field(default_factory=list)


#: ``fn(name, node, ctx) -> [(nir name, nir node), ...]``: a chain (usually one node).
ExportFn = Callable[[str, ir.Node, ExportContext], "list[tuple[str, Any]]"]


def to_input(name: str, node: ir.Input, ctx: ExportContext) -> list:
    """``ir.Input`` -> ``nir.Input`` with the same batch-free shape."""
    nir = import_nir()
    return [(name, nir.Input(input_type={"input": np.asarray(node.shape, dtype=np.int64)}))]


def to_output(name: str, node: ir.Output, ctx: ExportContext) -> list:
    """``ir.Output`` -> ``nir.Output`` typed with the inferred shape."""
    nir = import_nir()
    shape = ctx.graph.output_shapes[name]
    return [(name, nir.Output(output_type={"output": np.asarray(shape, dtype=np.int64)}))]


def to_affine(name: str, node: ir.Affine, ctx: ExportContext) -> list:
    """``ir.Affine`` / ``ir.SpikingAffine`` -> ``nir.Affine`` (a SpikingAffine's hints in metadata);
    an Affine imported from a ``nir.Linear`` (``t1c_type=Linear``) whose bias is still zero ->
    ``nir.Linear``."""
    nir = import_nir()
    if node.metadata.get(META_TYPE) == "Linear" and not node.bias.any() and type(node) is ir.Affine:
        return [(name, nir.Linear(weight=node.weight.copy()))]
    meta: dict[str, Any] = {}
    if isinstance(node, ir.SpikingAffine):
        meta = {
            META_TYPE: "SpikingAffine",
            "spike_mode": node.spike_mode,
            "weight_bits": node.weight_bits,
            "accumulator_bits": node.accumulator_bits,
        }
    return [(name, nir.Affine(weight=node.weight.copy(), bias=node.bias.copy(), metadata=meta))]


def to_conv2d(name: str, node: ir.Conv2d, ctx: ExportContext) -> list:
    """``ir.Conv2d`` -> ``nir.Conv2d`` with numeric padding and (ungrouped) its input shape."""
    nir = import_nir()
    hw = ints(ctx.graph.input_shapes[name][0][1:])
    if node.groups > 1:  # nir 1.0 types a Conv2d input as weight.shape[1] channels; NIR infers it
        hw = None
    return [
        (
            name,
            nir.Conv2d(
                input_shape=hw,
                weight=node.weight.copy(),
                stride=ints(node.stride),
                padding=ints(node.padding),
                dilation=ints(node.dilation),
                groups=int(node.groups),
                bias=node.bias.copy(),
            ),
        )
    ]


def to_sepconv2d(name: str, node: ir.SepConv2d, ctx: ExportContext) -> list:
    """``ir.SepConv2d`` -> ``<name>.depthwise`` and ``<name>.pointwise`` ``nir.Conv2d`` nodes."""
    nir = import_nir()
    c = int(ctx.graph.input_shapes[name][0][0])
    out_hw = ints(ctx.graph.output_shapes[name][1:])  # the depthwise output: pointwise is 1x1
    dw = node.depthwise_weight
    depthwise = nir.Conv2d(
        input_shape=None,  # grouped: nir 1.0 would type it as 1 channel; NIRGraph infers it
        weight=dw.copy(),
        stride=ints(node.stride),
        padding=ints(node.padding),
        dilation=ints(node.dilation),
        groups=c,
        bias=node.depthwise_bias.copy(),
    )
    pointwise = nir.Conv2d(
        input_shape=out_hw,
        weight=node.pointwise_weight.copy(),
        stride=(1, 1),
        padding=(0, 0),
        dilation=(1, 1),
        groups=1,
        bias=node.pointwise_bias.copy(),
    )
    return [(f"{name}{SEPARATOR}depthwise", depthwise), (f"{name}{SEPARATOR}pointwise", pointwise)]


def to_flatten(name: str, node: ir.Flatten, ctx: ExportContext) -> list:
    """``ir.Flatten`` -> ``nir.Flatten`` with the same dims and its input type."""
    nir = import_nir()
    shape = np.asarray(ctx.graph.input_shapes[name][0], dtype=np.int64)
    return [(name, nir.Flatten(input_type={"input": shape}, start_dim=node.start_dim, end_dim=node.end_dim))]


def to_avgpool2d(name: str, node: ir.AvgPool2d, ctx: ExportContext) -> list:
    """``ir.AvgPool2d`` -> ``nir.AvgPool2d``, or refused where NIR would divide differently."""
    nir = import_nir()
    if node.ceil_mode:
        raise ctx.fail(name, "AvgPool2d with ceil_mode=True: NIR's pools round the output size down")
    if (node.padding > 0).any() and not node.count_include_pad:
        raise ctx.fail(
            name, "AvgPool2d with padding and count_include_pad=False: NIR's AvgPool2d divides by k*k"
        )
    return [
        (
            name,
            nir.AvgPool2d(
                kernel_size=node.kernel_size.copy(), stride=node.stride.copy(), padding=node.padding.copy()
            ),
        )
    ]


def to_skip(name: str, node: ir.Skip, ctx: ExportContext) -> list:
    """``ir.Skip`` (residual, passthrough) -> a ``nir.Scale`` of ones, or the ``nir.Delay`` of zero
    it was imported from (``t1c_type=Delay``); concatenate is refused."""
    nir = import_nir()
    if node.skip_type == "concatenate":
        raise ctx.fail(name, "Skip(concatenate): NIR has no concatenation (several edges into a node sum)")
    shape = ctx.graph.output_shapes[name]
    if node.metadata.get(META_TYPE) == "Delay":  # NIR sums a Delay's edges too
        return [(name, nir.Delay(delay=np.zeros(shape, dtype=np.float32)))]
    # NIR sums the edges into a node; a Scale of ones passes that sum on and keeps the name.
    scale = np.ones(shape, dtype=np.float32)
    return [(name, nir.Scale(scale=scale, metadata={META_TYPE: "Skip", "skip_type": node.skip_type}))]


def refuse_or_warn(name: str, kind: str, reasons: list[str], ctx: ExportContext, note: str = "") -> None:
    """Refuse a neuron whose settings (``reasons``) NIR's reset cannot say, or, with
    ``ctx.approximate``, warn that it is exported with NIR's same-step reset to zero.

    Args:
        name, kind: the node and its NIR type (``"LIF"``, ``"CubaLIF"``).
        reasons: the settings at fault, each saying why; none: nothing happens.
        ctx: the export context.
        note: added to the warning.

    Raises:
        NIRConversionError: ``reasons`` and not ``ctx.approximate``.
    """
    if reasons and not ctx.approximate:
        raise ctx.fail(
            name,
            f"{kind} has no exact NIR form: " + "; ".join(reasons) + f". {APPROXIMATE_HINT} to export NIR's "
            f"reset-to-zero {kind} with the same update instead (a warning says how it differs)",
        )
    if reasons:
        warnings.warn(
            f"to_nir: node '{name}' exported approximately: " + "; ".join(reasons) + " become NIR's "
            f"same-step reset to zero, so spikes differ once a neuron has fired{note}",
            stacklevel=5,
        )


def _lif_reasons(node: ir.LIF) -> list[str]:
    reasons = []
    mechanism = node.reset_mechanism or "zero"
    if mechanism == "subtract":
        reasons.append(
            "reset_mechanism='subtract' (NIR's LIF resets to v_reset, it does not subtract the threshold)"
        )
    elif mechanism == "none":
        reasons.append("reset_mechanism='none' (NIR's LIF always resets)")
    if node.reset_delay:
        reasons.append("reset_delay=True (NIR's LIF resets in the step it fires, not one step later)")
    if node.beta is not None and bool(np.any(node.v_threshold <= 0)):
        reasons.append("beta with v_threshold <= 0 (snnTorch's algorithm then resets at the first step)")
    return reasons


def _nir_threshold(node: ir.LIF) -> tuple[np.ndarray, dict[str, Any]]:
    """NIR fires on ``v > thr``; a ``>=`` neuron gets the next float32 below its threshold
    (identical for every float32 membrane) and a metadata flag that brings it back."""
    if node.strict_threshold:
        return node.v_threshold.copy(), {}
    return np.nextafter(node.v_threshold, np.float32(-np.inf)), {META_STRICT: False}


def to_lif(name: str, node: ir.LIF, ctx: ExportContext) -> list:
    """``ir.LIF`` -> ``nir.LIF`` / ``nir.IF`` / ``nir.Threshold``, or refused (see ``docs/nir.md``)."""
    refuse_or_warn(name, "LIF", _lif_reasons(node), ctx)
    threshold, meta = _nir_threshold(node)
    if node.beta is None:
        return [(name, _plain_lif_as_nir(name, node, threshold, meta, ctx))]
    return [(name, _beta_lif_as_nir(name, node, threshold, meta, ctx))]


def _plain_lif_as_nir(name: str, node: ir.LIF, threshold: np.ndarray, meta: dict, ctx: ExportContext) -> Any:
    """A plain LIF (``tau`` steps, ``r``, ``v_leak``) as NIR's LIF, or a Threshold for ``tau = r = 1``."""
    nir = import_nir()
    tau, r = f64(node.tau), node.r.copy()
    if np.all(tau == 1.0) and np.all(r == 1.0) and np.all(node.v_leak == 0.0):
        return nir.Threshold(threshold=threshold, metadata=meta)
    if not (np.all(np.isfinite(tau)) and np.all(np.isfinite(r))) or bool(np.any(tau <= 1.0)):
        raise ctx.fail(
            name,
            "LIF with tau <= 1 step or non-finite tau/r: NIR's LIF needs tau > dt (finite); "
            "only tau = r = 1, v_leak = 0 (a Threshold) exports",
        )
    zeros = np.zeros(node.shape, dtype=np.float32)
    return nir.LIF(
        tau=nir_time_constant(node, "tau", ctx.dt),
        r=r,
        v_leak=node.v_leak.copy(),
        v_threshold=threshold,
        v_reset=zeros,
        metadata=meta,
    )


def nir_time_constant(node: ir.LIF | ir.CubaLIF, field: str, dt: float) -> np.ndarray:
    """``field`` (in steps) as NIR's time constant: ``steps * dt`` in float64, or the value
    :func:`~t1c.nir.from_nir` read (``t1c_nir_fields``) while it still gives these steps."""
    steps = getattr(node, field)
    fields = node.metadata.get(META_NIR_FIELDS)
    read = np.asarray(fields.get(field)) if isinstance(fields, dict) and field in fields else None
    if read is not None and read.shape == steps.shape and read.dtype.kind == "f":
        if np.array_equal((f64(read) / dt).astype(np.float32), steps):
            return read.copy()
    return f64(steps) * dt


def _imported_if_fields(node: ir.LIF, dt: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``(r, v_threshold)`` of the ``nir.IF`` that :func:`~t1c.nir.from_nir` made ``node`` of,
    when the node still has the threshold they give at ``dt`` (``v_threshold / (r dt)``)."""
    fields = node.metadata.get(META_NIR_FIELDS)
    if not (isinstance(fields, dict) and node.strict_threshold and {"r", "v_threshold"} <= set(fields)):
        return None
    r, thr = np.asarray(fields["r"]), np.asarray(fields["v_threshold"])
    if r.shape != node.shape or thr.shape != node.shape:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = (f64(thr) / (f64(r) * dt)).astype(np.float32)
    return (r.copy(), thr.copy()) if np.array_equal(derived, node.v_threshold) else None


def _beta_lif_as_nir(name: str, node: ir.LIF, threshold: np.ndarray, meta: dict, ctx: ExportContext) -> Any:
    """A ``beta`` LIF (``v = beta v + i``) as NIR's IF (beta 1), Threshold (beta 0) or LIF, or refused."""
    nir = import_nir()
    shape = node.shape
    zeros = np.zeros(shape, dtype=np.float32)
    beta = np.clip(f64(node.beta), 0.0, 1.0)
    if np.all(beta == 1.0):  # v += i: NIR's IF with r*dt = 1, or the IF it was imported from
        r, threshold = _imported_if_fields(node, ctx.dt) or (np.full(shape, 1.0 / ctx.dt), threshold)
        return nir.IF(r=r, v_threshold=threshold, v_reset=zeros, metadata=meta)
    if np.all(beta == 0.0):
        return nir.Threshold(threshold=threshold, metadata=meta)
    if not bool(np.all((beta > 0) & (beta < 1))):
        raise ctx.fail(
            name,
            "LIF mixes beta = 1 (or 0) neurons with leaky ones: NIR needs one node type per layer "
            "(IF, Threshold or LIF); split the layer",
        )
    # tau = dt/(1 - beta), r = 1/(1 - beta): (1 - dt/tau) v + (dt/tau) r I = beta v + I.
    return nir.LIF(
        tau=ctx.dt / (1.0 - beta),
        r=1.0 / (1.0 - beta),
        v_leak=np.zeros(shape),
        v_threshold=threshold,
        v_reset=zeros,
        metadata={**meta, META_BETA: beta},
    )
