"""One small factory per T1C-IR primitive (as NIR's tests have), plus tiny graphs.

Every factory sets every field, optional ones included where asked, with random values
from a seeded generator, so a round trip that drops or mangles a field shows up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from t1c import ir

RNG_SEED = 0


def _rng(seed: int = RNG_SEED) -> np.random.Generator:
    return np.random.default_rng(seed)


def f32(*shape: int, seed: int = RNG_SEED) -> np.ndarray:
    return _rng(seed).standard_normal(shape).astype(np.float32)


def make_input() -> ir.Input:
    return ir.Input(input_type={"input": np.array([3, 8, 8])})


def make_output() -> ir.Output:
    return ir.Output(output_type={"output": np.array([10])})


def make_affine() -> ir.Affine:
    return ir.Affine(weight=f32(5, 7), bias=f32(5, seed=1))


def make_affine_int() -> ir.Affine:
    w = _rng().integers(-127, 128, size=(5, 7))
    return ir.Affine(
        weight=w * 0.01, bias=np.arange(5) * 0.01, weight_int=w, weight_scale=0.01, bias_int=np.arange(5)
    )


def make_spiking_affine() -> ir.SpikingAffine:
    return ir.SpikingAffine(
        weight=f32(4, 6), bias=f32(4, seed=1), spike_mode="graded", weight_bits=4, accumulator_bits=12
    )


def make_spiking_affine_int() -> ir.SpikingAffine:
    w = _rng().integers(-7, 8, size=(4, 6))
    return ir.SpikingAffine(
        weight=w * 0.5,
        spike_mode="rate",
        weight_bits=4,
        accumulator_bits=10,
        weight_int=w,
        weight_scale=0.5,
        bias_int=np.zeros(4, dtype=np.int64),
    )


def make_conv2d() -> ir.Conv2d:
    return ir.Conv2d(
        weight=f32(6, 2, 3, 3), bias=f32(6, seed=1), stride=(2, 1), padding=(1, 0), dilation=2, groups=2
    )


def make_conv2d_int() -> ir.Conv2d:
    w = _rng().integers(-100, 100, size=(4, 3, 3, 3))
    return ir.Conv2d(weight=w / 64, bias=np.zeros(4), padding=1, weight_int=w, weight_scale=1 / 64)


def make_sepconv2d() -> ir.SepConv2d:
    return ir.SepConv2d(
        depthwise_weight=f32(3, 1, 3, 3),
        pointwise_weight=f32(8, 3, 1, 1, seed=1),
        depthwise_bias=f32(3, seed=2),
        pointwise_bias=f32(8, seed=3),
        stride=2,
        padding=(1, 2),
        dilation=(1, 1),
    )


def make_maxpool2d() -> ir.MaxPool2d:
    return ir.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)


def make_avgpool2d() -> ir.AvgPool2d:
    return ir.AvgPool2d(
        kernel_size=(2, 3), stride=(2, 1), padding=(1, 1), ceil_mode=False, count_include_pad=False
    )


def make_upsample_scale() -> ir.Upsample:
    return ir.Upsample(scale_factor=3, mode="nearest")


def make_upsample_size() -> ir.Upsample:
    return ir.Upsample(size=(9, 11), mode="bilinear", align_corners=True)


def make_flatten() -> ir.Flatten:
    return ir.Flatten(start_dim=1, end_dim=-1)


def _lif_arrays(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    rng = _rng()
    return {
        "tau": rng.uniform(2.0, 20.0, shape),
        "r": rng.uniform(0.5, 2.0, shape),
        "v_leak": rng.uniform(-0.1, 0.1, shape),
        "v_threshold": rng.uniform(0.5, 1.5, shape),
    }


def make_lif() -> ir.LIF:
    return ir.LIF(**_lif_arrays((4, 3, 3)))


def make_lif_snntorch() -> ir.LIF:
    beta = np.array([0.5, 0.9, 0.95, 1.0], dtype=np.float32)
    with np.errstate(divide="ignore"):
        tau = 1.0 / (1.0 - beta)
    return ir.LIF(
        tau=tau,
        r=tau,
        v_leak=np.zeros(4),
        v_threshold=np.ones(4),
        beta=beta,
        reset_mechanism="subtract",
        reset_delay=True,
        strict_threshold=True,
    )


def make_cuba_lif() -> ir.CubaLIF:
    shape = (3, 8, 8)  # the round-trip graphs feed [3, 8, 8]
    lif_arrays, rng = _lif_arrays(shape), _rng(1)
    return ir.CubaLIF(
        tau_syn=rng.uniform(1.0, 5.0, shape),
        tau_mem=lif_arrays.pop("tau"),
        w_in=rng.uniform(0.5, 2.0, shape),
        **lif_arrays,
    )


def make_cuba_lif_snntorch() -> ir.CubaLIF:
    """Every optional field set; alpha and beta include 1 (tau = +inf)."""
    shape = (3, 8, 8)
    alpha = np.resize(np.array([0.0, 0.5, 0.9, 1.0], np.float32), shape)
    beta = np.resize(np.array([0.8, 1.0, 0.95], np.float32), shape)
    with np.errstate(divide="ignore"):
        tau_syn, tau_mem = 1.0 / (1.0 - alpha), 1.0 / (1.0 - beta)
    return ir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=tau_mem,
        v_leak=np.zeros(shape),
        v_threshold=f32(*shape),
        w_in=tau_syn * 0.5,
        alpha=alpha,
        beta=beta,
        input_gain=np.full(shape, 0.5),
        w_rec=f32(*shape, seed=2),
        reset_mechanism="subtract",
        reset_delay=True,
    )


def make_alpha_lif() -> ir.AlphaLIF:
    shape = (3, 8, 8)
    alpha = np.resize(np.array([0.9, 0.95, 1.0], np.float32), shape)
    return ir.AlphaLIF(
        alpha=alpha,
        beta=alpha * 0.8,
        tau=f32(*shape),
        v_threshold=f32(*shape, seed=1),
        reset_mechanism="zero",
    )


def make_skip_residual() -> ir.Skip:
    return ir.Skip(skip_type="residual")


def make_skip_concatenate() -> ir.Skip:
    return ir.Skip(skip_type="concatenate")


def make_skip_passthrough() -> ir.Skip:
    return ir.Skip(skip_type="passthrough")


# -- the toolchain's ANN / normalisation / region types (FORMAT_HYBRID.md) ----------------
# Shapes fit the [3, 8, 8] input the round-trip test feeds (192 values); optional fields
# are set to non-defaults so that dropping one shows up.


def make_relu() -> ir.ReLU:
    return ir.ReLU(features=192)


def make_leaky_relu() -> ir.ReLU:
    return ir.ReLU(features=192, negative_slope=0.1)


def make_prelu() -> ir.PReLU:
    return ir.PReLU(features=192, weight=np.array([0.25, 0.1, 0.3]))


def make_sigmoid() -> ir.Sigmoid:
    return ir.Sigmoid(features=192)


def make_tanh() -> ir.Tanh:
    return ir.Tanh(features=192)


def make_softmax() -> ir.Softmax:
    return ir.Softmax(features=192, dim=1)


def make_gelu_exact() -> ir.GELU:
    return ir.GELU(features=192, approximate=False)


def make_elu() -> ir.ELU:
    return ir.ELU(features=192, alpha=0.5)


def make_dropout() -> ir.Dropout:
    return ir.Dropout(features=192, p=0.2)


def make_hybrid_region() -> ir.HybridRegion:
    return ir.HybridRegion(mode="snn", features=192, name="core")


def _bn_arrays(n: int) -> dict[str, np.ndarray]:
    rng = _rng()
    return {
        "weight": rng.standard_normal(n),
        "bias": rng.standard_normal(n),
        "running_mean": rng.standard_normal(n),
        "running_var": rng.uniform(0.5, 2.0, n),
    }


def make_batchnorm1d() -> ir.BatchNorm1d:
    return ir.BatchNorm1d(num_features=3, **_bn_arrays(3), eps=1e-3, momentum=0.2)


def make_batchnorm2d() -> ir.BatchNorm2d:
    return ir.BatchNorm2d(num_features=3, **_bn_arrays(3), momentum=None)


def make_layernorm() -> ir.LayerNorm:
    return ir.LayerNorm(normalized_shape=[8, 8], weight=f32(8, 8), bias=f32(8, 8, seed=1), eps=1e-6)


def make_subgraph() -> ir.Subgraph:
    """A nested graph [3, 8, 8] -> ReLU -> Flatten: 192 values."""
    inner = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([3, 8, 8])}),
        ir.ReLU(features=192),
        ir.Flatten(),
        ir.Output(),
        names=["input", "relu", "flat", "output"],
    )
    return ir.Subgraph(graph=inner)


FACTORIES: dict[str, Callable[[], ir.Node]] = {
    f.__name__.removeprefix("make_"): f
    for f in (
        make_input,
        make_output,
        make_affine,
        make_affine_int,
        make_spiking_affine,
        make_spiking_affine_int,
        make_conv2d,
        make_conv2d_int,
        make_sepconv2d,
        make_maxpool2d,
        make_avgpool2d,
        make_upsample_scale,
        make_upsample_size,
        make_flatten,
        make_lif,
        make_lif_snntorch,
        make_cuba_lif,
        make_cuba_lif_snntorch,
        make_alpha_lif,
        make_skip_residual,
        make_skip_concatenate,
        make_skip_passthrough,
        make_relu,
        make_leaky_relu,
        make_prelu,
        make_sigmoid,
        make_tanh,
        make_softmax,
        make_gelu_exact,
        make_elu,
        make_dropout,
        make_hybrid_region,
        make_batchnorm1d,
        make_batchnorm2d,
        make_layernorm,
        make_subgraph,
    )
}


def lif(n: int | tuple[int, ...], threshold: float = 1.0) -> ir.LIF:
    shape = (n,) if isinstance(n, int) else n
    return ir.LIF(
        tau=np.full(shape, 5.0),
        r=np.full(shape, 5.0),
        v_leak=np.zeros(shape),
        v_threshold=np.full(shape, threshold),
    )


def mlp(n_in: int = 8, hidden: int = 6, n_out: int = 3, metadata: dict | None = None) -> ir.Graph:
    """input -> fc1 -> lif1 -> fc2 -> lif2 -> output."""
    return ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([n_in])}),
        ir.Affine(weight=f32(hidden, n_in), bias=f32(hidden, seed=1)),
        lif(hidden),
        ir.Affine(weight=f32(n_out, hidden, seed=2), bias=f32(n_out, seed=3)),
        lif(n_out),
        ir.Output(),
        names=["input", "fc1", "lif1", "fc2", "lif2", "output"],
        metadata=metadata,
    )


def chain(n: int, skip_types: tuple[str, ...] = ("passthrough",)) -> ir.Graph:
    """input -> n - 2 Skips (``skip_types`` in turn) -> output, named ``n0`` .. ``n{n-1}``."""
    nodes = [ir.Input(input_type={"input": np.array([4])})]
    nodes += [ir.Skip(skip_type=skip_types[i % len(skip_types)]) for i in range(n - 2)]
    return ir.Graph.from_chain(*nodes, ir.Output(), names=[f"n{i}" for i in range(n)])


def residual(width_a: int = 16, width_b: int = 16) -> ir.Graph:
    """input -> fa -> skip, input -> fb -> skip -> output (a residual join)."""
    nodes = {
        "input": ir.Input(input_type={"input": np.array([8])}),
        "fa": ir.Affine(weight=f32(width_a, 8)),
        "fb": ir.Affine(weight=f32(width_b, 8, seed=1)),
        "skip": ir.Skip(skip_type="residual"),
        "output": ir.Output(),
    }
    edges = [("input", "fa"), ("input", "fb"), ("fa", "skip"), ("fb", "skip"), ("skip", "output")]
    return ir.Graph(nodes, edges)


# -- a node in a graph, through a file ----------------------------------------------------


def _input_shape_for(node: ir.Node) -> list[int]:
    if isinstance(node, (ir.Affine, ir.SpikingAffine)):
        return [node.weight.shape[1]]
    if isinstance(node, ir.Conv2d):
        return [node.in_channels, 9, 9]
    if isinstance(node, ir.SepConv2d):
        return [node.depthwise_weight.shape[0], 9, 9]
    if isinstance(node, ir.LIF):
        return list(node.shape)
    if isinstance(node, ir.Output):
        return list(node.shape)
    if isinstance(node, ir.BatchNorm1d):
        return [node.num_features, 5]
    return [3, 8, 8]


def graph_around(node: ir.Node) -> ir.Graph:
    """``node`` between an Input that fits it and an Output, named ``node`` (or itself)."""
    if isinstance(node, ir.Input):
        return ir.Graph({"input": node, "output": ir.Output()}, [("input", "output")])
    src = ir.Input(input_type={"input": np.array(_input_shape_for(node))})
    if isinstance(node, ir.Output):
        return ir.Graph({"input": src, "output": node}, [("input", "output")])
    return ir.Graph.from_chain(src, node, ir.Output(), names=["input", "node", "output"])


def node_name(node: ir.Node) -> str:
    """The name :func:`graph_around` gives ``node``."""
    return {ir.Input: "input", ir.Output: "output"}.get(type(node), "node")


def through_file(node: ir.Node, folder: Path) -> ir.Node:
    """``node`` written in :func:`graph_around`'s graph and read back."""
    path = folder / f"{type(node).__name__}.t1c"
    ir.write(path, graph_around(node))
    return ir.read(path).nodes[node_name(node)]


def shape_through(node: ir.Node, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of ``node`` fed ``in_shape`` in a validated graph (node named ``n``)."""
    g = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array(in_shape)}), node, ir.Output(), names=["i", "n", "o"]
    )
    return g.output_shapes["n"]


def assert_refused(build: Callable[[], object], field: str) -> None:
    """``build()`` raises a T1CFormatError (a ValueError) naming ``field`` in its message."""
    with pytest.raises(ir.T1CFormatError) as info:
        build()
    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert f"field '{field}'" in str(info.value)


def assert_shape_refused(node: ir.Node, in_shape: tuple[int, ...], field: str) -> None:
    """Fed ``in_shape``, ``node`` (named ``n`` by :func:`shape_through`) is refused naming ``field``."""
    with pytest.raises(ir.T1CFormatError) as info:
        shape_through(node, in_shape)
    assert (info.value.node, info.value.field) == ("n", field)


def assert_fields_survive(node: ir.Node, folder: Path) -> None:
    """Every field ``node`` writes reads back equal, and no other field appears."""
    back = through_file(node, folder)
    assert type(back) is type(node)
    assert back.to_fields().keys() == node.to_fields().keys()
    for field, value in node.to_fields().items():
        np.testing.assert_array_equal(back.to_fields()[field], value, err_msg=field)
