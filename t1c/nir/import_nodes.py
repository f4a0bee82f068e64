"""NIR -> T1C-IR, one node at a time: ``fn(name, nir_node, ctx) -> ir.Node``.

Each converter gives the T1C-IR node with the same equations, or raises ``ctx.fail`` naming
the node and why (``docs/nir.md`` has the table). What a node cannot do alone is left in the
:class:`ImportContext` for the graph passes of :mod:`t1c.nir.importer`: a ``SumPool2d``'s
``k*k`` and a ``Scale``'s factors are folded into a neighbouring weight layer there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import ir
from .common import META_BETA, META_NIR_FIELDS, META_STRICT, META_TYPE, FailsAtNode, f64, node_metadata


@dataclasses.dataclass
class ImportContext(FailsAtNode):
    """What an import converter may look at besides its node.

    Attributes:
        dt: the time step.
        file: the `.nir` file, if the graph came from one.
        in_degree: node name -> number of incoming edges (nested graphs flattened).
        forward_folds: ``(node name, factor)`` pairs to fold into the next weight layer
            (a converter appends here, e.g. SumPool2d's ``k*k``).
        scales: node name -> scale array of the ``Scale`` nodes still to be folded.
    """

    dt: float
    file: str | None
    in_degree: dict[str, int]
    forward_folds: list[tuple[str, np.ndarray]] = dataclasses.field(default_factory=list)
    scales: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


#: ``fn(name, nir_node, ctx) -> ir.Node`` (``None`` for a Scale left to the fold pass).
ImportFn = Callable[[str, Any, ImportContext], "ir.Node | None"]


def meta_str(meta: Mapping[str, Any], key: str) -> str | None:
    """The string at ``meta[key]`` (NIR's files give 0-d arrays or bytes), or None."""
    value = meta.get(key)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _meta_false(meta: Mapping[str, Any], key: str) -> bool:
    value = meta.get(key)
    return value is not None and np.asarray(value).dtype.kind in "bi" and not bool(np.asarray(value))


def _pair(value: Any, name: str, field: str, ctx: ImportContext) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.size not in (1, 2) or (arr != np.round(arr)).any():
        raise ctx.fail(name, f"{field}={value!r} is not an int or a pair of ints")
    return np.broadcast_to(arr.reshape(-1), (2,)).astype(np.int64)


def _weight_2d(name: str, node: Any, ctx: ImportContext) -> np.ndarray:
    weight = np.asarray(node.weight)
    if weight.ndim != 2:
        raise ctx.fail(
            name, f"weight of shape {list(weight.shape)} is not [out, in]; T1C-IR has 2-D Affine only"
        )
    return weight


def from_input(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.Input`` -> ``ir.Input`` with the same batch-free shape."""
    shape = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    if shape is None:
        raise ctx.fail(name, "Input has no shape; give nir.Input(input_type={'input': shape})")
    return ir.Input(input_type={"input": np.asarray(shape, dtype=np.int64)})


def from_output(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.Output`` -> ``ir.Output``."""
    return ir.Output()  # its shape is inferred; NIR's declared one is checked afterwards


def from_affine(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.Affine`` -> ``ir.Affine``, or ``ir.SpikingAffine`` when :func:`~t1c.nir.to_nir` wrote one."""
    weight, bias = _weight_2d(name, node, ctx), np.asarray(node.bias)
    if bias.shape != (weight.shape[0],):
        bias = np.broadcast_to(bias, (weight.shape[0],)) if bias.size == 1 else bias
    meta = node_metadata(node)
    if meta_str(meta, META_TYPE) == "SpikingAffine":
        hints = {k: meta[k] for k in ("spike_mode", "weight_bits", "accumulator_bits") if k in meta}
        if "spike_mode" in hints:
            hints["spike_mode"] = meta_str(meta, "spike_mode")
        return ir.SpikingAffine(weight=weight, bias=bias, **hints)
    return ir.Affine(weight=weight, bias=bias)


def from_linear(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.Linear`` -> ``ir.Affine`` with a zero bias, marked ``t1c_type=Linear`` for the way back."""
    weight = _weight_2d(name, node, ctx)
    return ir.Affine(
        weight=weight, bias=np.zeros(weight.shape[0], dtype=np.float32), metadata={META_TYPE: "Linear"}
    )


def _same_padding(name: str, node: Any, ctx: ImportContext) -> np.ndarray:
    """NIR's ``padding="same"`` as T1C-IR's symmetric padding, or refused."""
    stride = _pair(node.stride, name, "stride", ctx)
    if (stride != 1).any():
        raise ctx.fail(
            name, f"padding='same' with stride {stride.tolist()} is undefined (torch refuses it too)"
        )
    dilation = _pair(node.dilation, name, "dilation", ctx)
    kernel = np.asarray(node.weight.shape[2:], dtype=np.int64)
    total = dilation * (kernel - 1)
    if (total % 2).any():
        raise ctx.fail(
            name,
            f"padding='same' with kernel {kernel.tolist()} and dilation {dilation.tolist()} pads one side "
            "more than the other; T1C-IR's Conv2d pads symmetrically (use an odd kernel)",
        )
    return total // 2


def from_conv2d(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.Conv2d`` -> ``ir.Conv2d`` (``"valid"``/``"same"`` padding as numbers)."""
    weight = np.asarray(node.weight)
    if weight.ndim != 4:
        raise ctx.fail(name, f"weight of shape {list(weight.shape)} is not [out, in/groups, kH, kW]")
    padding = node.padding
    if isinstance(padding, str):
        padding = np.zeros(2, dtype=np.int64) if padding == "valid" else _same_padding(name, node, ctx)
    else:
        padding = _pair(padding, name, "padding", ctx)
    return ir.Conv2d(
        weight=weight,
        bias=np.asarray(node.bias),
        stride=_pair(node.stride, name, "stride", ctx),
        padding=padding,
        dilation=_pair(node.dilation, name, "dilation", ctx),
        groups=int(np.asarray(node.groups)),
    )


def from_flatten(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.Flatten`` -> ``ir.Flatten`` with the same dims."""
    # NIR counts Flatten dims on its batch-free input_type (nir.ir.utils.calc_flatten_output),
    # as T1C-IR does; the declared output type is checked against ours after shape inference.
    return ir.Flatten(start_dim=int(np.asarray(node.start_dim)), end_dim=int(np.asarray(node.end_dim)))


def _pool_fields(name: str, node: Any, ctx: ImportContext) -> dict[str, np.ndarray]:
    return {
        "kernel_size": _pair(node.kernel_size, name, "kernel_size", ctx),
        "stride": _pair(node.stride, name, "stride", ctx),
        "padding": _pair(node.padding, name, "padding", ctx),
    }


def from_avgpool2d(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.AvgPool2d`` -> ``ir.AvgPool2d`` (``count_include_pad=True``, ``ceil_mode=False``)."""
    return ir.AvgPool2d(**_pool_fields(name, node, ctx), ceil_mode=False, count_include_pad=True)


def from_sumpool2d(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.SumPool2d`` -> ``ir.AvgPool2d``, its ``k*k`` left in ``ctx.forward_folds``."""
    fields = _pool_fields(name, node, ctx)
    ctx.forward_folds.append((name, np.asarray(float(np.prod(fields["kernel_size"])))))
    return ir.AvgPool2d(**fields, ceil_mode=False, count_include_pad=True)


def _identity(name: str, ctx: ImportContext, skip_type: str | None = None) -> ir.Node:
    """An identity node as a Skip: ``skip_type`` if it names one, else by its number of inputs."""
    if skip_type not in ("residual", "passthrough"):
        skip_type = "residual" if ctx.in_degree.get(name, 0) > 1 else "passthrough"
    return ir.Skip(skip_type=skip_type)


def from_scale(name: str, node: Any, ctx: ImportContext) -> ir.Node | None:
    """``nir.Scale`` of ones -> ``ir.Skip``; any other scale -> ``None``, left in ``ctx.scales``."""
    scale = f64(node.scale)
    if bool(np.all(scale == 1.0)):  # the identity: a Skip, nothing to fold
        return _identity(name, ctx, meta_str(node_metadata(node), "skip_type"))
    ctx.scales[name] = scale
    return None


def from_delay(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.Delay`` of zero -> ``ir.Skip`` marked ``t1c_type=Delay``; any other delay is refused."""
    if bool(np.all(f64(node.delay) == 0.0)):
        skip = _identity(name, ctx)
        skip.metadata = {META_TYPE: "Delay"}
        return skip
    raise ctx.fail(name, "Delay: T1C-IR has no delay line (only a zero delay, the identity, converts)")


def _lif_threshold(threshold: np.ndarray, meta: Mapping[str, Any]) -> tuple[np.ndarray, bool | None]:
    """NIR's strict threshold as T1C fields; a `>=` neuron exported by :func:`~t1c.nir.to_nir` comes back."""
    thr = threshold.astype(np.float32)
    if _meta_false(meta, META_STRICT):  # v > nextafter(t, -inf)  <=>  v >= t, for float32 v
        return np.nextafter(thr, np.float32(np.inf)), None
    return thr, True


def check_v_reset(name: str, node: Any, ctx: ImportContext) -> None:
    """Refuse a NIR neuron that resets to a ``v_reset`` other than 0 (T1C-IR's reset to zero)."""
    v_reset = getattr(node, "v_reset", None)
    if v_reset is not None and bool(np.any(f64(v_reset) != 0.0)):
        raise ctx.fail(
            name,
            f"{type(node).__name__} with v_reset != 0: T1C-IR neurons reset to zero and cannot say another "
            "value (shift v_leak and v_threshold by -v_reset in the source model)",
        )


def from_lif(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.LIF`` -> plain ``ir.LIF`` with ``tau / dt`` steps (forward Euler), or refused.

    NIR's ``tau`` stays in the metadata (``t1c_nir_fields``): ``to_nir`` writes it back as it was.
    """
    check_v_reset(name, node, ctx)
    tau, meta = f64(node.tau), node_metadata(node)
    if not np.all(np.isfinite(tau)) or bool(np.any(tau <= ctx.dt)):
        raise ctx.fail(
            name,
            f"LIF with tau in [{tau.min():g}, {tau.max():g}] at dt={ctx.dt:g}: forward Euler needs "
            "dt < tau (finite); pass a smaller dt",
        )
    tau_t1c = (tau / ctx.dt).astype(np.float32)
    if bool(np.any(tau_t1c <= 1.0)):
        raise ctx.fail(name, f"LIF tau/dt rounds to 1 in float32 at dt={ctx.dt:g}; pass a smaller dt")
    threshold, strict = _lif_threshold(f64(node.v_threshold), meta)
    fields: dict[str, Any] = {
        "tau": tau_t1c,
        "r": f64(node.r),
        "v_leak": f64(node.v_leak),
        "v_threshold": threshold,
        "strict_threshold": strict,
    }
    beta = meta.get(META_BETA)
    if beta is not None and _beta_matches(f64(beta), node, ctx.dt):
        fields.update(beta=f64(beta), reset_mechanism="zero", reset_delay=False)
    return ir.LIF(**fields, metadata={META_NIR_FIELDS: {"tau": np.asarray(node.tau)}})


def _beta_matches(beta: np.ndarray, node: Any, dt: float) -> bool:
    """Whether a stored ``t1c_beta`` still describes this NIR LIF (it may have been retrained)."""
    if beta.shape != np.shape(node.tau) or not bool(np.all((beta > 0) & (beta < 1))):
        return False
    if not bool(np.all(f64(node.v_threshold) > 0)):  # snnTorch's algorithm differs there
        return False
    return bool(
        np.allclose(f64(node.tau), dt / (1.0 - beta), rtol=1e-6, atol=0)
        and np.allclose(f64(node.r), 1.0 / (1.0 - beta), rtol=1e-6, atol=0)
        and np.all(f64(node.v_leak) == 0.0)
    )


def from_if(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.IF`` -> ``ir.LIF`` with ``beta = 1``, ``r * dt`` moved into the threshold, or refused.

    NIR's ``r`` and ``v_threshold`` stay in the metadata (``t1c_nir_fields``) for the way back.
    """
    check_v_reset(name, node, ctx)
    r, thr = f64(node.r), f64(node.v_threshold)
    if not (np.all(np.isfinite(r)) and bool(np.all(r > 0))):
        raise ctx.fail(name, "IF with r <= 0 or non-finite r: T1C-IR's integrator (beta = 1) needs r > 0")
    if not bool(np.all(thr > 0)):
        raise ctx.fail(
            name,
            "IF with v_threshold <= 0: T1C-IR's beta = 1 neuron (snnTorch's algorithm) resets on the first "
            "step when the threshold is not positive, NIR's IF does not",
        )
    # v' = v / (r dt) turns dv/dt = r I into v' += I; the threshold scales the same way.
    threshold, strict = _lif_threshold(thr / (r * ctx.dt), node_metadata(node))
    inf = np.full(r.shape, np.inf)
    return ir.LIF(
        tau=inf,
        r=inf,
        v_leak=np.zeros(r.shape),
        v_threshold=threshold,
        beta=np.ones(r.shape),
        reset_mechanism="zero",
        reset_delay=False,
        strict_threshold=strict,
        metadata={META_NIR_FIELDS: {"r": np.asarray(node.r), "v_threshold": np.asarray(node.v_threshold)}},
    )


def from_threshold(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    """``nir.Threshold`` -> ``ir.LIF`` with ``tau = r = 1``, ``v_leak = 0`` (``v = i``)."""
    # tau = 1 step: b = 1 - 1/1 = 0 and (1 - b)*(0 + 1*i) = i exactly, so v_t = i_t and s = i > thr.
    thr = f64(node.threshold)
    threshold, strict = _lif_threshold(thr, node_metadata(node))
    ones = np.ones(thr.shape)
    return ir.LIF(
        tau=ones, r=ones, v_leak=np.zeros(thr.shape), v_threshold=threshold, strict_threshold=strict
    )
