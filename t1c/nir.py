"""NIR <-> T1C-IR: fine-tune any NIR model for T1C hardware, and hand T1C graphs to NIR tools.

NIR (the ``nir`` package, 1.0.x) is the exchange format of Norse, Sinabs, Rockpool,
Lava-dl, Spyx, snnTorch and others. Its neurons are continuous-time; ``dt`` is the time
step at which they are discretized (forward Euler), so both directions need it::

    from t1c import ir
    from t1c.nir import from_nir, to_nir

    graph = from_nir("model.nir", dt=1e-3)      # -> ir.Graph, run it with ir_to_torch
    ir.write("model.t1c", graph)
    nir_graph = to_nir("model.t1c", dt=1e-3)    # -> nir.NIRGraph; nir.write("back.nir", nir_graph)

Every node maps exactly or is refused with a :class:`NIRConversionError` that names the
node and says why; the full table is in ``docs/nir.md``. The ``nir`` package is an
optional extra (``pip install 't1c[nir]'``) imported only when a function here is called,
so ``import t1c.nir`` and the rest of t1c work without it. Only numpy and :mod:`t1c.ir`
are used otherwise (no torch), so ``t1c inspect model.nir`` stays fast.

Conversions are ``{type: function}`` maps (:func:`default_import_map`,
:func:`default_export_map`); a ``node_map`` passed to :func:`from_nir`/:func:`to_nir`
wins over them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import ir
from .ir.errors import T1CFormatError

__all__ = [
    "INSTALL_HINT",
    "NIRConversionError",
    "default_export_map",
    "default_import_map",
    "from_nir",
    "import_nir",
    "read_nir",
    "to_nir",
]

#: What to run when the optional ``nir`` package is missing.
INSTALL_HINT = "pip install 't1c[nir]'"

#: NIR node metadata keys this module writes (and reads back) beside NIR's own fields.
META_TYPE = "t1c_type"  # the T1C-IR type when NIR's differs (SpikingAffine, Skip)
META_STRICT = "t1c_strict_threshold"  # False: a `>=` neuron, threshold moved one float32 ulp down
META_BETA = "t1c_beta"  # snnTorch's exact decay of a LIF exported from a `beta` node
SEPARATOR = "."  # between a nested NIRGraph's name and its nodes' names


class NIRConversionError(T1CFormatError):
    """A NIR graph or node with no exact T1C-IR form, or a T1C-IR node with no exact NIR form.

    A :class:`~t1c.ir.T1CFormatError` (and so a ``ValueError``): ``node`` names the node
    at fault, ``file`` the file it came from; the message says why and what to do.
    """


def import_nir():
    """The ``nir`` module, or an ImportError saying how to install it."""
    try:
        import nir
    except ImportError as err:
        raise ImportError(f"t1c.nir needs the optional 'nir' package (NIR 1.0): {INSTALL_HINT}") from err
    return nir


def _check_dt(dt: Any, call: str) -> float:
    if dt is None:
        raise TypeError(
            f"{call}: dt is required: the time step (in NIR's time unit, e.g. seconds) at which "
            f"NIR's continuous-time neurons are discretized, e.g. {call.split('(')[0]}(..., dt=1e-3)"
        )
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating, np.integer)):
        raise TypeError(f"{call}: dt must be a positive number, got {dt!r}")
    dt = float(dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"{call}: dt must be a positive finite number, got {dt!r}")
    return dt


class _FailsAtNode:
    """``ctx.fail(name, reason)``, shared by both directions' contexts."""

    file: str | None

    def fail(self, name: str, reason: str) -> NIRConversionError:
        """The error for node ``name``."""
        return NIRConversionError(reason, file=self.file, node=name)


# == NIR -> T1C-IR ===========================================================================
@dataclasses.dataclass
class ImportContext(_FailsAtNode):
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


def _f64(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _meta(node: Any) -> dict[str, Any]:
    meta = getattr(node, "metadata", None)
    return meta if isinstance(meta, dict) else {}


def _meta_str(meta: Mapping[str, Any], key: str) -> str | None:
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


def _from_affine(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    weight, bias = _weight_2d(name, node, ctx), np.asarray(node.bias)
    if bias.shape != (weight.shape[0],):
        bias = np.broadcast_to(bias, (weight.shape[0],)) if bias.size == 1 else bias
    meta = _meta(node)
    if _meta_str(meta, META_TYPE) == "SpikingAffine":
        hints = {k: meta[k] for k in ("spike_mode", "weight_bits", "accumulator_bits") if k in meta}
        if "spike_mode" in hints:
            hints["spike_mode"] = _meta_str(meta, "spike_mode")
        return ir.SpikingAffine(weight=weight, bias=bias, **hints)
    return ir.Affine(weight=weight, bias=bias)


def _from_linear(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    weight = _weight_2d(name, node, ctx)
    return ir.Affine(weight=weight, bias=np.zeros(weight.shape[0], dtype=np.float32))


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


def _from_conv2d(name: str, node: Any, ctx: ImportContext) -> ir.Node:
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


def _from_flatten(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    # NIR counts Flatten dims on its batch-free input_type (nir.ir.utils.calc_flatten_output),
    # as T1C-IR does; the declared output type is checked against ours after shape inference.
    return ir.Flatten(start_dim=int(np.asarray(node.start_dim)), end_dim=int(np.asarray(node.end_dim)))


def _pool_fields(name: str, node: Any, ctx: ImportContext) -> dict[str, np.ndarray]:
    return {
        "kernel_size": _pair(node.kernel_size, name, "kernel_size", ctx),
        "stride": _pair(node.stride, name, "stride", ctx),
        "padding": _pair(node.padding, name, "padding", ctx),
    }


def _from_avgpool2d(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    return ir.AvgPool2d(**_pool_fields(name, node, ctx), ceil_mode=False, count_include_pad=True)


def _from_sumpool2d(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    fields = _pool_fields(name, node, ctx)
    ctx.forward_folds.append((name, np.asarray(float(np.prod(fields["kernel_size"])))))
    return ir.AvgPool2d(**fields, ceil_mode=False, count_include_pad=True)


def _from_input(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    shape = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    if shape is None:
        raise ctx.fail(name, "Input has no shape; give nir.Input(input_type={'input': shape})")
    return ir.Input(input_type={"input": np.asarray(shape, dtype=np.int64)})


def _from_output(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    return ir.Output()  # its shape is inferred; NIR's declared one is checked afterwards


def _identity(name: str, ctx: ImportContext, skip_type: str | None = None) -> ir.Node:
    """An identity node as a Skip: ``skip_type`` if it names one, else by its number of inputs."""
    if skip_type not in ("residual", "passthrough"):
        skip_type = "residual" if ctx.in_degree.get(name, 0) > 1 else "passthrough"
    return ir.Skip(skip_type=skip_type)


def _from_scale(name: str, node: Any, ctx: ImportContext) -> ir.Node | None:
    scale = _f64(node.scale)
    if bool(np.all(scale == 1.0)):  # the identity: a Skip, nothing to fold
        return _identity(name, ctx, _meta_str(_meta(node), "skip_type"))
    ctx.scales[name] = scale
    return None


def _from_delay(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    if bool(np.all(_f64(node.delay) == 0.0)):
        return _identity(name, ctx)
    raise ctx.fail(name, "Delay: T1C-IR has no delay line (only a zero delay, the identity, converts)")


def _lif_threshold(threshold: np.ndarray, meta: Mapping[str, Any]) -> tuple[np.ndarray, bool | None]:
    """NIR's strict threshold as T1C fields; a `>=` neuron exported by :func:`to_nir` comes back."""
    thr = threshold.astype(np.float32)
    if _meta_false(meta, META_STRICT):  # v > nextafter(t, -inf)  <=>  v >= t, for float32 v
        return np.nextafter(thr, np.float32(np.inf)), None
    return thr, True


def _check_reset(name: str, node: Any, ctx: ImportContext) -> None:
    v_reset = getattr(node, "v_reset", None)
    if v_reset is not None and bool(np.any(_f64(v_reset) != 0.0)):
        raise ctx.fail(
            name,
            f"{type(node).__name__} with v_reset != 0: T1C-IR neurons reset to zero and cannot say another "
            "value (shift v_leak and v_threshold by -v_reset in the source model)",
        )


def _from_lif(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    _check_reset(name, node, ctx)
    tau, meta = _f64(node.tau), _meta(node)
    if not np.all(np.isfinite(tau)) or bool(np.any(tau <= ctx.dt)):
        raise ctx.fail(
            name,
            f"LIF with tau in [{tau.min():g}, {tau.max():g}] at dt={ctx.dt:g}: forward Euler needs "
            "dt < tau (finite); pass a smaller dt",
        )
    tau_t1c = (tau / ctx.dt).astype(np.float32)
    if bool(np.any(tau_t1c <= 1.0)):
        raise ctx.fail(name, f"LIF tau/dt rounds to 1 in float32 at dt={ctx.dt:g}; pass a smaller dt")
    threshold, strict = _lif_threshold(_f64(node.v_threshold), meta)
    fields: dict[str, Any] = {
        "tau": tau_t1c,
        "r": _f64(node.r),
        "v_leak": _f64(node.v_leak),
        "v_threshold": threshold,
        "strict_threshold": strict,
    }
    beta = meta.get(META_BETA)
    if beta is not None and _beta_matches(_f64(beta), node, ctx.dt):
        fields.update(beta=_f64(beta), reset_mechanism="zero", reset_delay=False)
    return ir.LIF(**fields)


def _beta_matches(beta: np.ndarray, node: Any, dt: float) -> bool:
    """Whether a stored ``t1c_beta`` still describes this NIR LIF (it may have been retrained)."""
    if beta.shape != np.shape(node.tau) or not bool(np.all((beta > 0) & (beta < 1))):
        return False
    if not bool(np.all(_f64(node.v_threshold) > 0)):  # snnTorch's algorithm differs there
        return False
    return bool(
        np.allclose(_f64(node.tau), dt / (1.0 - beta), rtol=1e-6, atol=0)
        and np.allclose(_f64(node.r), 1.0 / (1.0 - beta), rtol=1e-6, atol=0)
        and np.all(_f64(node.v_leak) == 0.0)
    )


def _from_if(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    _check_reset(name, node, ctx)
    r, thr = _f64(node.r), _f64(node.v_threshold)
    if not (np.all(np.isfinite(r)) and bool(np.all(r > 0))):
        raise ctx.fail(name, "IF with r <= 0 or non-finite r: T1C-IR's integrator (beta = 1) needs r > 0")
    if not bool(np.all(thr > 0)):
        raise ctx.fail(
            name,
            "IF with v_threshold <= 0: T1C-IR's beta = 1 neuron (snnTorch's algorithm) resets on the first "
            "step when the threshold is not positive, NIR's IF does not",
        )
    # v' = v / (r dt) turns dv/dt = r I into v' += I; the threshold scales the same way.
    threshold, strict = _lif_threshold(thr / (r * ctx.dt), _meta(node))
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
    )


def _from_threshold(name: str, node: Any, ctx: ImportContext) -> ir.Node:
    # tau = 1 step: b = 1 - 1/1 = 0 and (1 - b)*(0 + 1*i) = i exactly, so v_t = i_t and s = i > thr.
    thr = _f64(node.threshold)
    threshold, strict = _lif_threshold(thr, _meta(node))
    ones = np.ones(thr.shape)
    return ir.LIF(
        tau=ones, r=ones, v_leak=np.zeros(thr.shape), v_threshold=threshold, strict_threshold=strict
    )


def _refuse(reason: str) -> ImportFn:
    def refuse(name: str, node: Any, ctx: ImportContext) -> ir.Node:
        raise ctx.fail(name, f"{type(node).__name__}: {reason}")

    return refuse


_NO_STATELESS_READOUT = (
    "T1C-IR neurons output spikes, while this node outputs its membrane (no spike, no reset); "
    "there is no exact form. Replace it with a LIF, or drop it and read the layer before it"
)


def default_import_map() -> dict[type, ImportFn]:
    """NIR node class -> converter, for every class of ``nir`` 1.0 (refusals included)."""
    nir = import_nir()
    return {
        nir.Input: _from_input,
        nir.Output: _from_output,
        nir.Affine: _from_affine,
        nir.Linear: _from_linear,
        nir.Conv2d: _from_conv2d,
        nir.Flatten: _from_flatten,
        nir.AvgPool2d: _from_avgpool2d,
        nir.SumPool2d: _from_sumpool2d,
        nir.Scale: _from_scale,
        nir.Delay: _from_delay,
        nir.LIF: _from_lif,
        nir.IF: _from_if,
        nir.Threshold: _from_threshold,
        nir.LI: _refuse(_NO_STATELESS_READOUT),
        nir.I: _refuse(_NO_STATELESS_READOUT),
        nir.CubaLI: _refuse(
            "a synaptic current state (tau_syn) and a membrane output; T1C-IR neurons have neither"
        ),
        nir.CubaLIF: _refuse(
            "a synaptic current state (tau_syn) that T1C-IR's LIF does not have; no exact form "
            "(a LIF after a synapse filter needs a second state)"
        ),
        nir.Conv1d: _refuse(
            "T1C-IR has no 1-D convolution; a Conv2d with a [C, 1, N] input and a 1 x k kernel computes "
            "the same: reshape the model and export that"
        ),
    }


def read_nir(graph_or_path: Any) -> tuple[Any, str | None]:
    """A ``nir.NIRGraph`` and the file it came from (``nir.read`` for paths)."""
    nir = import_nir()
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path, None
    if isinstance(graph_or_path, (str, os.PathLike)):
        path = Path(graph_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"from_nir: no such .nir file '{path}'")
        try:
            try:
                return nir.read(path), str(path)
            except ValueError:
                # nir 1.0 re-types a grouped Conv2d's input as weight.shape[1] channels and so
                # rejects its own files; read untyped: from_nir infers and checks every shape itself.
                return nir.read(path, type_check=False), str(path)
        except (OSError, KeyError, ValueError, TypeError, AssertionError) as err:
            raise NIRConversionError(
                f"is not a readable NIR graph ({type(err).__name__}: {err})", file=str(path)
            ) from None
    raise TypeError(f"from_nir takes a nir.NIRGraph or a .nir path, got {type(graph_or_path).__name__}")


def _flatten_graph(nir: Any, graph: Any, prefix: str, file: str | None) -> tuple[dict, list, list]:
    """Nested NIRGraphs inlined with ``outer.inner`` names; their Input/Output nodes kept as
    markers (removed by :func:`_bypass`). Edges to a subgraph name go to its Input node,
    edges from it leave its Output node (``sub.port`` names one port explicitly)."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    markers: list[str] = []

    def port(end: str, kind: type, role: str) -> str:
        head, _, tail = end.partition(SEPARATOR)
        sub = graph.nodes.get(end) or graph.nodes.get(head)
        if not isinstance(sub, nir.NIRGraph):
            if end not in graph.nodes:
                raise NIRConversionError(
                    f"an edge names node '{end}', which does not exist", file=file, node=prefix + end
                )
            return prefix + end
        if end in graph.nodes:  # the subgraph itself: its one port of that kind
            ports = [n for n, v in sub.nodes.items() if isinstance(v, kind)]
            if len(ports) != 1:
                raise NIRConversionError(
                    f"subgraph has {len(ports)} {kind.__name__} nodes; name the {role} port ('{end}.<name>')",
                    file=file,
                    node=prefix + end,
                )
            return f"{prefix}{end}{SEPARATOR}{ports[0]}"
        if not isinstance(sub.nodes.get(tail), kind):
            raise NIRConversionError(
                f"'{tail}' is not a {kind.__name__} of subgraph '{head}'", file=file, node=prefix + end
            )
        return prefix + end

    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            sub_prefix = f"{prefix}{name}{SEPARATOR}"
            sub_nodes, sub_edges, sub_markers = _flatten_graph(nir, node, sub_prefix, file)
            nodes.update(sub_nodes)
            edges.extend(sub_edges)
            markers += sub_markers
            markers += [
                sub_prefix + n for n, v in node.nodes.items() if isinstance(v, (nir.Input, nir.Output))
            ]
        else:
            nodes[prefix + name] = node
    for src, dst in graph.edges:
        edges.append((port(str(src), nir.Output, "output"), port(str(dst), nir.Input, "input")))
    return nodes, edges, markers


def _bypass(name: str, edges: list[tuple[str, str]], file: str | None) -> list[tuple[str, str]]:
    """Remove node ``name`` from the edge list, wiring each of its inputs to each of its outputs
    (sums distribute: ``W(a + b) = Wa + Wb`` is what NIR's several-edges rule computes)."""
    preds = _predecessors(edges, name)
    out: dict[tuple[str, str], None] = {}  # ordered, and a membership test in O(1)
    for s, d in edges:
        if d == name:
            continue
        for src in preds if s == name else [s]:
            if (src, d) in out:
                raise NIRConversionError(
                    f"reaches '{d}' twice once '{name}' is removed (x + x); T1C-IR has no duplicate edges",
                    file=file,
                    node=src,
                )
            out[(src, d)] = None
    return list(out)


#: Node metadata keys this module interprets (they are not copied as plain metadata).
_OWN_KEYS = frozenset(
    {META_TYPE, META_STRICT, META_BETA, "spike_mode", "weight_bits", "accumulator_bits", "skip_type"}
)


def _plain_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A node's free-form metadata that both formats can store (numbers, strings, bools,
    numeric arrays, dicts of them), without the keys this module writes for itself."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or key in _OWN_KEYS:
            continue
        if isinstance(value, Mapping):
            out[key] = _plain_metadata(value)
        elif isinstance(value, (str, bool, int, float, np.generic)) or (
            isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
        ):
            out[key] = value
    return out


def _successors(edges: list[tuple[str, str]], name: str) -> list[str]:
    return [d for s, d in edges if s == name]


def _predecessors(edges: list[tuple[str, str]], name: str) -> list[str]:
    return [s for s, d in edges if d == name]


_WEIGHTED = (ir.Affine, ir.SpikingAffine, ir.Conv2d)


def _channel_factors(scale: np.ndarray, channels: int) -> np.ndarray | None:
    """A per-channel factor vector for a [C, H, W] signal scale, or None when it varies in H, W."""
    if scale.ndim == 0 or scale.size == 1:
        return np.full(channels, float(scale.reshape(-1)[0]))
    if scale.ndim != 3 or scale.shape[0] != channels:
        return None
    per = scale[:, :1, :1]
    return per.reshape(-1) if bool(np.all(scale == per)) else None


def _with_weights(node: ir.Node, weight: np.ndarray, bias: np.ndarray) -> ir.Node:
    fields = {
        k: v for k, v in node.to_fields().items() if k not in ("weight_int", "weight_scale", "bias_int")
    }
    fields.update(weight=weight.astype(np.float32), bias=bias.astype(np.float32))
    return type(node)(**fields, metadata=dict(node.metadata))


def _scale_outputs(node: ir.Node, scale: np.ndarray) -> ir.Node | None:
    """``s * layer(x)`` as one layer (weights and bias scaled per output), or None."""
    w, b = _f64(node.weight), _f64(node.bias)
    if isinstance(node, ir.Conv2d):
        per = _channel_factors(scale, w.shape[0])
        if per is None:
            return None
        return _with_weights(node, w * per[:, None, None, None], b * per)
    if scale.ndim > 1 or scale.size not in (1, w.shape[0]):
        return None
    per = np.broadcast_to(scale.reshape(-1), (w.shape[0],))
    return _with_weights(node, w * per[:, None], b * per)


def _scale_inputs(node: ir.Node, scale: np.ndarray) -> ir.Node | None:
    """``layer(s * x)`` as one layer (weights scaled per input), or None."""
    w, b = _f64(node.weight), _f64(node.bias)
    if isinstance(node, ir.Conv2d):
        per = _channel_factors(scale, node.in_channels)
        if per is None:
            return None
        per_group = w.shape[1]
        group_of_out = np.arange(w.shape[0]) // (w.shape[0] // node.groups)
        idx = group_of_out[:, None] * per_group + np.arange(per_group)[None, :]
        return _with_weights(node, w * per[idx][:, :, None, None], b)
    if scale.ndim > 1 or scale.size not in (1, w.shape[1]):
        return None
    return _with_weights(node, w * np.broadcast_to(scale.reshape(-1), (w.shape[1],))[None, :], b)


def _fold_forward(
    name: str, factor: np.ndarray, nodes: dict, edges: list, ctx: ImportContext, what: str
) -> None:
    """Fold ``factor`` (an array of ``name``'s output shape, or a scalar) into the next weight
    layer, through Flatten nodes; refuse when that is not exact."""
    current = name
    while True:
        succs = _successors(edges, current)
        if len(succs) != 1:
            raise ctx.fail(
                name,
                f"{what}: the factor can only move into a weight layer that is the one consumer, "
                f"but '{current}' feeds {len(succs)} nodes",
            )
        nxt = succs[0]
        if len(_predecessors(edges, nxt)) != 1:
            raise ctx.fail(
                name,
                f"{what}: the next layer '{nxt}' also sums other inputs, so the factor cannot move into its weights",
            )
        node = nodes[nxt]
        if isinstance(node, ir.Flatten):
            if factor.ndim > 0:
                factor = factor.reshape(node.output_shape([factor.shape]))
            current = nxt
            continue
        folded = _scale_inputs(node, factor) if isinstance(node, _WEIGHTED) else None
        if folded is None:
            kind = type(node).__name__ if node is not None else "Scale"
            raise ctx.fail(
                name,
                f"{what}: no exact form; the next node '{nxt}' is a {kind}, not an Affine/Linear/Conv2d "
                "whose weights can take the factor (per input channel for Conv2d)",
            )
        nodes[nxt] = folded
        return


def _fold_scale(name: str, scale: np.ndarray, nodes: dict, edges: list, ctx: ImportContext) -> list:
    """Fold Scale node ``name`` into the weight layer before it, else the one after it; remove it."""
    preds = _predecessors(edges, name)
    folded = None
    if (
        len(preds) == 1
        and isinstance(nodes.get(preds[0]), _WEIGHTED)
        and _successors(edges, preds[0]) == [name]
    ):
        folded = _scale_outputs(nodes[preds[0]], scale)
    if folded is not None:
        nodes[preds[0]] = folded
    else:
        _fold_forward(name, scale, nodes, edges, ctx, "Scale")
    del nodes[name]
    return _bypass(name, edges, ctx.file)


def _check_declared_shapes(graph: ir.Graph, flat: Mapping[str, Any], ctx: ImportContext) -> None:
    """NIR's declared output types (and Conv2d input_shape) must be what T1C-IR computes."""
    for name, node in flat.items():
        if name not in graph.output_shapes:
            continue
        declared = node.output_type.get("output") if isinstance(node.output_type, dict) else None
        ours = tuple(graph.output_shapes[name])
        if declared is not None and _ints(np.asarray(declared).reshape(-1)) != ours:
            hint = (
                " (NIR counts Flatten dims without the batch)"
                if isinstance(graph.nodes[name], ir.Flatten)
                else ""
            )
            raise ctx.fail(
                name,
                f"NIR declares output shape {np.asarray(declared).tolist()} but the T1C-IR node computes "
                f"{list(ours)}{hint}",
            )
        in_hw = getattr(node, "input_shape", None)
        if isinstance(graph.nodes[name], ir.Conv2d) and in_hw is not None:
            got = tuple(graph.input_shapes[name][0][1:])
            if _ints(np.asarray(in_hw).reshape(-1)) != got:
                raise ctx.fail(
                    name, f"NIR Conv2d input_shape {np.asarray(in_hw).tolist()} but it receives {list(got)}"
                )


def from_nir(
    graph_or_path: Any,
    dt: float | None = None,
    *,
    node_map: Mapping[type, ImportFn] | None = None,
) -> ir.Graph:
    """A NIR graph as a T1C-IR graph, every node exact or refused.

    Args:
        graph_or_path: a ``nir.NIRGraph`` or a `.nir` file.
        dt: the time step at which NIR's continuous-time neurons are discretized (forward
            Euler: a LIF's ``tau`` becomes ``tau / dt`` steps). Required.
        node_map: ``{nir class: fn(name, node, ctx) -> ir.Node}`` entries that win over
            :func:`default_import_map`.

    Returns:
        A validated graph; nested NIRGraphs are inlined as ``outer.inner`` names, nodes
        that receive several edges get a ``Skip(residual)`` named ``<node>.sum`` in front.

    Raises:
        NIRConversionError: a node with no exact T1C-IR form (the node and reason named).
        TypeError: ``dt`` missing.
        ImportError: ``nir`` is not installed.

    Example:
        >>> graph = from_nir("model.nir", dt=1e-3)  # doctest: +SKIP
    """
    dt = _check_dt(dt, "from_nir(graph_or_path, dt)")
    nir = import_nir()
    source, file = read_nir(graph_or_path)
    flat, edges, markers = _flatten_graph(nir, source, "", file)
    for name in markers:
        edges = _bypass(name, edges, file)
        del flat[name]
    in_degree = Counter(d for _, d in edges)
    ctx = ImportContext(dt=dt, file=file, in_degree={n: in_degree[n] for n in flat})
    converters = {**default_import_map(), **(node_map or {})}
    nodes: dict[str, ir.Node | None] = {}
    for name, node in flat.items():
        fn = converters.get(type(node))
        if fn is None:
            raise ctx.fail(
                name,
                f"no converter for NIR type {type(node).__name__}; pass node_map={{nir.{type(node).__name__}: fn}}",
            )
        try:
            nodes[name] = converted = fn(name, node, ctx)
            if converted is not None:
                converted.metadata = {**_plain_metadata(_meta(node)), **converted.metadata}
        except T1CFormatError as err:
            if isinstance(err, NIRConversionError):
                raise
            raise NIRConversionError(err.reason, file=file, node=name, field=err.field) from None
    for name, scale in ctx.scales.items():
        edges = _fold_scale(name, scale, nodes, edges, ctx)
    for name, factor in ctx.forward_folds:
        _fold_forward(name, factor, nodes, edges, ctx, f"SumPool2d (sum = {factor.item():g} x average)")
    edges = _insert_sums(nodes, edges)
    metadata = _plain_metadata(source.metadata or {})
    metadata.update(source_format="nir", nir_dt=dt)
    try:
        graph = ir.Graph(nodes, edges, metadata)
    except T1CFormatError as err:
        raise NIRConversionError(err.reason, file=file, node=err.node, field=err.field) from None
    _check_declared_shapes(graph, flat, ctx)
    return graph


def _insert_sums(nodes: dict, edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A ``Skip(residual)`` in front of every node that sums several edges (T1C-IR's join)."""
    in_degree = Counter(d for _, d in edges)  # a join added below changes no other node's
    for name in list(nodes):
        node = nodes[name]
        if isinstance(node, ir.Skip) and node.skip_type == "residual":
            continue
        if in_degree[name] < 2:
            continue
        join = f"{name}{SEPARATOR}sum"
        while join in nodes:
            join += "_"
        nodes[join] = ir.Skip(skip_type="residual")
        edges = [(s, join if d == name else d) for s, d in edges] + [(join, name)]
    return edges


# == T1C-IR -> NIR ===========================================================================
@dataclasses.dataclass
class ExportContext(_FailsAtNode):
    """What an export converter may look at besides its node.

    Attributes:
        dt: the time step.
        approximate: export LIF extension fields that NIR cannot say as NIR's LIF (warning).
        graph: the (validated) graph being exported; ``graph.input_shapes`` etc.
        file: the `.t1c` file, if any.
    """

    dt: float
    approximate: bool
    graph: ir.Graph
    file: str | None


#: ``fn(name, node, ctx) -> [(nir name, nir node), ...]``: a chain (usually one node).
ExportFn = Callable[[str, ir.Node, ExportContext], "list[tuple[str, Any]]"]


def _to_input(name: str, node: ir.Input, ctx: ExportContext) -> list:
    nir = import_nir()
    return [(name, nir.Input(input_type={"input": np.asarray(node.shape, dtype=np.int64)}))]


def _to_output(name: str, node: ir.Output, ctx: ExportContext) -> list:
    nir = import_nir()
    shape = ctx.graph.output_shapes[name]
    return [(name, nir.Output(output_type={"output": np.asarray(shape, dtype=np.int64)}))]


def _to_affine(name: str, node: ir.Affine, ctx: ExportContext) -> list:
    nir = import_nir()
    meta: dict[str, Any] = {}
    if isinstance(node, ir.SpikingAffine):
        meta = {
            META_TYPE: "SpikingAffine",
            "spike_mode": node.spike_mode,
            "weight_bits": node.weight_bits,
            "accumulator_bits": node.accumulator_bits,
        }
    return [(name, nir.Affine(weight=node.weight.copy(), bias=node.bias.copy(), metadata=meta))]


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in values)


def _to_conv2d(name: str, node: ir.Conv2d, ctx: ExportContext) -> list:
    nir = import_nir()
    hw = _ints(ctx.graph.input_shapes[name][0][1:])
    if node.groups > 1:  # nir 1.0 types a Conv2d input as weight.shape[1] channels; NIR infers it
        hw = None
    return [
        (
            name,
            nir.Conv2d(
                input_shape=hw,
                weight=node.weight.copy(),
                stride=_ints(node.stride),
                padding=_ints(node.padding),
                dilation=_ints(node.dilation),
                groups=int(node.groups),
                bias=node.bias.copy(),
            ),
        )
    ]


def _to_sepconv2d(name: str, node: ir.SepConv2d, ctx: ExportContext) -> list:
    nir = import_nir()
    c = int(ctx.graph.input_shapes[name][0][0])
    out_hw = _ints(ctx.graph.output_shapes[name][1:])  # the depthwise output: pointwise is 1x1
    dw = node.depthwise_weight
    depthwise = nir.Conv2d(
        input_shape=None,  # grouped: nir 1.0 would type it as 1 channel; NIRGraph infers it
        weight=dw.copy(),
        stride=_ints(node.stride),
        padding=_ints(node.padding),
        dilation=_ints(node.dilation),
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


def _to_flatten(name: str, node: ir.Flatten, ctx: ExportContext) -> list:
    nir = import_nir()
    shape = np.asarray(ctx.graph.input_shapes[name][0], dtype=np.int64)
    return [(name, nir.Flatten(input_type={"input": shape}, start_dim=node.start_dim, end_dim=node.end_dim))]


def _to_avgpool2d(name: str, node: ir.AvgPool2d, ctx: ExportContext) -> list:
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


def _to_skip(name: str, node: ir.Skip, ctx: ExportContext) -> list:
    nir = import_nir()
    if node.skip_type == "concatenate":
        raise ctx.fail(name, "Skip(concatenate): NIR has no concatenation (several edges into a node sum)")
    shape = ctx.graph.output_shapes[name]
    # NIR sums the edges into a node; a Scale of ones passes that sum on and keeps the name.
    scale = np.ones(shape, dtype=np.float32)
    return [(name, nir.Scale(scale=scale, metadata={META_TYPE: "Skip", "skip_type": node.skip_type}))]


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


def _to_lif(name: str, node: ir.LIF, ctx: ExportContext) -> list:
    nir = import_nir()
    reasons = _lif_reasons(node)
    if reasons and not ctx.approximate:
        raise ctx.fail(
            name,
            "LIF has no exact NIR form: " + "; ".join(reasons) + ". Pass approximate=True to export NIR's "
            "reset-to-zero LIF with the same update instead (a warning says how it differs)",
        )
    if reasons:
        warnings.warn(
            f"to_nir: node '{name}' exported approximately: " + "; ".join(reasons) + " become NIR's "
            "same-step reset to zero, so spikes differ once a neuron has fired",
            stacklevel=4,
        )
    threshold, meta = _nir_threshold(node)
    shape = node.shape
    zeros = np.zeros(shape, dtype=np.float32)
    if node.beta is None:
        tau, r = _f64(node.tau), node.r.copy()
        if np.all(tau == 1.0) and np.all(r == 1.0) and np.all(node.v_leak == 0.0):
            return [(name, nir.Threshold(threshold=threshold, metadata=meta))]
        if not (np.all(np.isfinite(tau)) and np.all(np.isfinite(r))) or bool(np.any(tau <= 1.0)):
            raise ctx.fail(
                name,
                "LIF with tau <= 1 step or non-finite tau/r: NIR's LIF needs tau > dt (finite); "
                "only tau = r = 1, v_leak = 0 (a Threshold) exports",
            )
        return [
            (
                name,
                nir.LIF(
                    tau=tau * ctx.dt,
                    r=r,
                    v_leak=node.v_leak.copy(),
                    v_threshold=threshold,
                    v_reset=zeros,
                    metadata=meta,
                ),
            )
        ]
    beta = np.clip(_f64(node.beta), 0.0, 1.0)
    if np.all(beta == 1.0):  # v += i: NIR's IF with r*dt = 1
        return [
            (
                name,
                nir.IF(r=np.full(shape, 1.0 / ctx.dt), v_threshold=threshold, v_reset=zeros, metadata=meta),
            )
        ]
    if np.all(beta == 0.0):
        return [(name, nir.Threshold(threshold=threshold, metadata=meta))]
    if not bool(np.all((beta > 0) & (beta < 1))):
        raise ctx.fail(
            name,
            "LIF mixes beta = 1 (or 0) neurons with leaky ones: NIR needs one node type per layer "
            "(IF, Threshold or LIF); split the layer",
        )
    # tau = dt/(1 - beta), r = 1/(1 - beta): (1 - dt/tau) v + (dt/tau) r I = beta v + I.
    meta = {**meta, META_BETA: beta}
    lif = nir.LIF(
        tau=ctx.dt / (1.0 - beta),
        r=1.0 / (1.0 - beta),
        v_leak=np.zeros(shape),
        v_threshold=threshold,
        v_reset=zeros,
        metadata=meta,
    )
    return [(name, lif)]


def _no_nir(reason: str) -> ExportFn:
    def refuse(name: str, node: ir.Node, ctx: ExportContext) -> list:
        raise ctx.fail(name, f"{node.TYPE}: {reason}")

    return refuse


def default_export_map() -> dict[type[ir.Node], ExportFn]:
    """T1C-IR primitive class -> converter (refusals included)."""
    return {
        ir.Input: _to_input,
        ir.Output: _to_output,
        ir.Affine: _to_affine,
        ir.SpikingAffine: _to_affine,
        ir.Conv2d: _to_conv2d,
        ir.SepConv2d: _to_sepconv2d,
        ir.Flatten: _to_flatten,
        ir.AvgPool2d: _to_avgpool2d,
        ir.Skip: _to_skip,
        ir.LIF: _to_lif,
        ir.MaxPool2d: _no_nir("NIR has no max pooling (only AvgPool2d and SumPool2d)"),
        ir.Upsample: _no_nir("NIR has no upsampling node"),
    }


def to_nir(
    graph_or_path: ir.Graph | str | os.PathLike,
    dt: float | None = None,
    *,
    approximate: bool = False,
    node_map: Mapping[type[ir.Node], ExportFn] | None = None,
) -> Any:
    """A T1C-IR graph as a ``nir.NIRGraph``, every node exact or refused.

    Args:
        graph_or_path: an ``ir.Graph`` or a `.t1c` file.
        dt: the time step one T1C step stands for (a LIF's ``tau`` steps become
            ``tau * dt``). Required.
        approximate: export LIF nodes whose snnTorch fields (subtract/none reset,
            ``reset_delay``) NIR cannot say as NIR's same-step reset-to-zero LIF, with a
            warning, instead of refusing them.
        node_map: ``{ir class: fn(name, node, ctx) -> [(name, nir node), ...]}`` entries
            that win over :func:`default_export_map`.

    Returns:
        A ``nir.NIRGraph`` (type-checked by NIR); write it with ``nir.write(path, g)``.

    Raises:
        NIRConversionError: a node with no exact NIR form (the node and reason named).
        TypeError: ``dt`` missing.
        ImportError: ``nir`` is not installed.
    """
    dt = _check_dt(dt, "to_nir(graph_or_path, dt)")
    nir = import_nir()
    file = None
    if isinstance(graph_or_path, ir.Graph):
        graph = graph_or_path
        graph.validate()
    elif isinstance(graph_or_path, (str, os.PathLike)):
        graph, file = ir.read(graph_or_path), str(graph_or_path)
    else:
        raise TypeError(f"to_nir takes an ir.Graph or a .t1c path, got {type(graph_or_path).__name__}")
    ctx = ExportContext(dt=dt, approximate=approximate, graph=graph, file=file)
    converters = {**default_export_map(), **(node_map or {})}
    nodes: dict[str, Any] = {}
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    inner: list[tuple[str, str]] = []
    for name, node in graph.nodes.items():
        fn = converters.get(type(node))
        if fn is None:
            raise ctx.fail(name, f"no NIR converter for {node.TYPE}; pass node_map={{ir.{node.TYPE}: fn}}")
        chain = fn(name, node, ctx)
        for _, converted in chain:  # the node's own metadata travels; this module's keys win
            converted.metadata = {**_plain_metadata(node.metadata), **(converted.metadata or {})}
        for (a, _), (b, _) in zip(chain[:-1], chain[1:]):
            inner.append((a, b))
        nodes.update(chain)
        first[name], last[name] = chain[0][0], chain[-1][0]
    edges = [(last[s], first[d]) for s, d in graph.edges] + inner
    metadata = dict(graph.metadata)
    metadata["t1c_dt"] = dt
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)
    except (ValueError, AssertionError) as err:
        raise NIRConversionError(f"NIR rejects the converted graph: {err}", file=file) from None
