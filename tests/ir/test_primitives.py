"""Every primitive round-trips through a file; constructors refuse impossible values."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from t1c import ir
from t1c.ir.node import Node

from .factories import FACTORIES, f32, lif

# -- round trips ----------------------------------------------------------------------


def _input_shape_for(node: Node) -> list[int]:
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


def _graph_around(node: Node) -> ir.Graph:
    if isinstance(node, ir.Input):
        return ir.Graph({"input": node, "output": ir.Output()}, [("input", "output")])
    src = ir.Input(input_type={"input": np.array(_input_shape_for(node))})
    if isinstance(node, ir.Output):
        return ir.Graph({"input": src, "output": node}, [("input", "output")])
    return ir.Graph.from_chain(src, node, ir.Output(), names=["input", "node", "output"])


def _node_name(node: Node) -> str:
    return {ir.Input: "input", ir.Output: "output"}.get(type(node), "node")


def _assert_same_value(a, b, what: str) -> None:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), what
        assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} became {b.dtype}"
        assert a.shape == b.shape, what
        np.testing.assert_array_equal(a, b, err_msg=what)
    elif isinstance(a, ir.Graph):  # a nested graph: same nodes, fields and edges
        assert isinstance(b, ir.Graph) and a.content_hash() == b.content_hash(), what
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for key in a:
            _assert_same_value(a[key], b[key], f"{what}[{key}]")
    else:
        assert type(a) is type(b), f"{what}: {type(a).__name__} became {type(b).__name__}"
        assert a == b, what


_DISK_DTYPE = {
    "float_array": lambda d: d == np.float32,
    "int_array": lambda d: d.kind in "iu",
    "int_vector": lambda d: d == np.int64,
    "int_pair": lambda d: d == np.int64,
    "int": lambda d: d == np.int64,
    "float": lambda d: d.kind == "f",
    "bool": lambda d: d == np.bool_,
    "str": lambda d: h5py.check_string_dtype(d) is not None,
}


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_primitive_round_trips_through_a_file(kind, tmp_path):
    node = FACTORIES[kind]()
    path = tmp_path / f"{kind}.t1c"
    ir.write(path, _graph_around(node))
    name = _node_name(node)
    back = ir.read(path).nodes[name]

    assert type(back) is type(node)
    for field in dataclasses.fields(node):
        _assert_same_value(getattr(node, field.name), getattr(back, field.name), f"{kind}.{field.name}")
    written, read_back = node.to_fields(), back.to_fields()
    assert written.keys() == read_back.keys()
    for field in written:
        _assert_same_value(written[field], read_back[field], f"{kind}:{field}")

    specs = type(node).field_specs()
    with h5py.File(path, "r") as f:
        group = f[f"graph/nodes/{name}"]
        assert group["type"][()].decode() == node.TYPE
        on_disk = set(group) - {"type"}
        nested = {f for f in written if specs[f][0] == "graph"}  # stored as nodes/ + edges/
        expected = (set(written) - nested) | ({"nodes", "edges"} if nested else set())
        assert on_disk == expected, f"{kind}: datasets {sorted(on_disk)} != fields {sorted(written)}"
        for field in on_disk - {"nodes", "edges"} if nested else on_disk:
            kind_of_field = specs[field][0]
            assert _DISK_DTYPE[kind_of_field](group[field].dtype), f"{kind}.{field}: {group[field].dtype}"


def test_every_registered_primitive_has_a_factory():
    covered = {FACTORIES[k]().TYPE for k in FACTORIES}
    assert covered == set(ir.REGISTRY)


def test_optional_fields_are_omitted_when_unset(tmp_path):
    path = tmp_path / "plain.t1c"
    ir.write(path, _graph_around(lif(4)))
    with h5py.File(path, "r") as f:
        assert set(f["graph/nodes/node"]) == {"type", "tau", "r", "v_leak", "v_threshold"}
    back = ir.read(path).nodes["node"]
    assert (back.beta, back.reset_mechanism, back.reset_delay, back.strict_threshold) == (
        None,
        None,
        None,
        None,
    )


def test_upsample_size_wins_and_scale_factor_is_not_written(tmp_path):
    node = ir.Upsample(scale_factor=2, size=(5, 6))
    assert node.scale_factor is None
    path = tmp_path / "up.t1c"
    ir.write(path, _graph_around(node))
    with h5py.File(path, "r") as f:
        assert "scale_factor" not in f["graph/nodes/node"]
    assert ir.read(path).output_shapes["node"] == (3, 5, 6)


def test_beta_one_survives_as_infinite_tau(tmp_path):
    node = FACTORIES["lif_snntorch"]()
    path = tmp_path / "beta.t1c"
    ir.write(path, _graph_around(node))
    back = ir.read(path).nodes["node"]
    assert back.beta[-1] == 1.0 and np.isinf(back.tau[-1]) and np.isinf(back.r[-1])


# -- constructors refuse impossible values --------------------------------------------------

W = f32(4, 3)
LIF_OK = {"tau": np.full(3, 5.0), "r": np.ones(3), "v_leak": np.zeros(3), "v_threshold": np.ones(3)}

BAD = {
    "weight_bits_zero": (lambda: ir.SpikingAffine(weight=W, weight_bits=0), "weight_bits"),
    "weight_bits_33": (
        lambda: ir.SpikingAffine(weight=W, weight_bits=33, accumulator_bits=64),
        "weight_bits",
    ),
    "accumulator_65": (lambda: ir.SpikingAffine(weight=W, accumulator_bits=65), "accumulator_bits"),
    "accumulator_below_weight": (
        lambda: ir.SpikingAffine(weight=W, weight_bits=8, accumulator_bits=4),
        "accumulator_bits",
    ),
    "bits_not_int": (lambda: ir.SpikingAffine(weight=W, weight_bits=7.5), "weight_bits"),
    "unknown_spike_mode": (lambda: ir.SpikingAffine(weight=W, spike_mode="burst"), "spike_mode"),
    "unknown_skip_type": (lambda: ir.Skip(skip_type="add"), "skip_type"),
    "skip_type_not_str": (lambda: ir.Skip(skip_type=3), "skip_type"),
    "affine_weight_1d": (lambda: ir.Affine(weight=np.ones(4)), "weight"),
    "affine_weight_strings": (lambda: ir.Affine(weight=np.array([["a"]])), "weight"),
    "affine_bias_length": (lambda: ir.Affine(weight=W, bias=np.zeros(3)), "bias"),
    "spiking_affine_bias_length": (lambda: ir.SpikingAffine(weight=W, bias=np.zeros(5)), "bias"),
    "affine_weight_int_shape": (
        lambda: ir.Affine(weight=W, weight_int=np.zeros((3, 4), dtype=int), weight_scale=1.0),
        "weight_int",
    ),
    "affine_weight_int_float": (
        lambda: ir.Affine(weight=W, weight_int=np.zeros((4, 3)), weight_scale=1.0),
        "weight_int",
    ),
    "affine_weight_scale_missing": (
        lambda: ir.Affine(weight=W, weight_int=np.zeros((4, 3), dtype=int)),
        "weight_scale",
    ),
    "affine_weight_scale_negative": (
        lambda: ir.Affine(weight=W, weight_int=np.zeros((4, 3), dtype=int), weight_scale=-1.0),
        "weight_scale",
    ),
    "affine_bias_int_without_weight_int": (
        lambda: ir.Affine(weight=W, bias_int=np.zeros(4, dtype=int)),
        "weight_int",
    ),
    "affine_bias_int_shape": (
        lambda: ir.Affine(
            weight=W,
            weight_int=np.zeros((4, 3), dtype=int),
            weight_scale=1.0,
            bias_int=np.zeros(2, dtype=int),
        ),
        "bias_int",
    ),
    "conv_weight_2d": (lambda: ir.Conv2d(weight=np.ones((3, 3))), "weight"),
    "conv_bias_length": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), bias=np.ones(3)), "bias"),
    "conv_stride_zero": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), stride=0), "stride"),
    "conv_stride_triple": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), stride=(1, 1, 1)), "stride"),
    "conv_padding_negative": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), padding=-1), "padding"),
    "conv_dilation_zero": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), dilation=(1, 0)), "dilation"),
    "conv_groups_zero": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), groups=0), "groups"),
    "conv_groups_not_dividing": (lambda: ir.Conv2d(weight=np.ones((4, 1, 3, 3)), groups=3), "groups"),
    "sepconv_depthwise_shape": (
        lambda: ir.SepConv2d(depthwise_weight=np.ones((3, 2, 3, 3)), pointwise_weight=np.ones((4, 3, 1, 1))),
        "depthwise_weight",
    ),
    "sepconv_pointwise_shape": (
        lambda: ir.SepConv2d(depthwise_weight=np.ones((3, 1, 3, 3)), pointwise_weight=np.ones((4, 2, 1, 1))),
        "pointwise_weight",
    ),
    "sepconv_pointwise_bias": (
        lambda: ir.SepConv2d(
            depthwise_weight=np.ones((3, 1, 3, 3)),
            pointwise_weight=np.ones((4, 3, 1, 1)),
            pointwise_bias=np.ones(3),
        ),
        "pointwise_bias",
    ),
    "maxpool_kernel_zero": (lambda: ir.MaxPool2d(kernel_size=0), "kernel_size"),
    "maxpool_stride_zero": (lambda: ir.MaxPool2d(kernel_size=2, stride=0), "stride"),
    "maxpool_padding_too_big": (lambda: ir.MaxPool2d(kernel_size=2, padding=2), "padding"),
    "maxpool_ceil_mode_7": (lambda: ir.MaxPool2d(kernel_size=2, ceil_mode=7), "ceil_mode"),
    "avgpool_count_include_pad_str": (
        lambda: ir.AvgPool2d(kernel_size=2, count_include_pad="yes"),
        "count_include_pad",
    ),
    "upsample_nothing": (lambda: ir.Upsample(), "scale_factor"),
    "upsample_scale_zero": (lambda: ir.Upsample(scale_factor=0), "scale_factor"),
    "upsample_size_zero": (lambda: ir.Upsample(size=(0, 4)), "size"),
    "upsample_mode": (lambda: ir.Upsample(scale_factor=2, mode="bicubic"), "mode"),
    "upsample_align_nearest": (lambda: ir.Upsample(scale_factor=2, align_corners=True), "align_corners"),
    "flatten_dim_str": (lambda: ir.Flatten(start_dim="1"), "start_dim"),
    "lif_r_shape": (lambda: ir.LIF(**{**LIF_OK, "r": np.ones(4)}), "r"),
    "lif_v_leak_shape": (lambda: ir.LIF(**{**LIF_OK, "v_leak": np.ones((3, 1))}), "v_leak"),
    "lif_threshold_shape": (lambda: ir.LIF(**{**LIF_OK, "v_threshold": np.ones(2)}), "v_threshold"),
    "lif_beta_shape": (lambda: ir.LIF(**LIF_OK, beta=np.ones(2)), "beta"),
    "lif_tau_zero": (lambda: ir.LIF(**{**LIF_OK, "tau": np.zeros(3)}), "tau"),
    "lif_tau_nan": (lambda: ir.LIF(**{**LIF_OK, "tau": np.full(3, np.nan)}), "tau"),
    "lif_tau_missing": (lambda: ir.LIF(**{**LIF_OK, "tau": None}), "tau"),
    "lif_reset_mechanism": (lambda: ir.LIF(**LIF_OK, reset_mechanism="hard"), "reset_mechanism"),
    "lif_reset_delay_2": (lambda: ir.LIF(**LIF_OK, reset_delay=2), "reset_delay"),
    "lif_strict_threshold_str": (lambda: ir.LIF(**LIF_OK, strict_threshold="true"), "strict_threshold"),
    "input_shape_zero": (lambda: ir.Input(input_type={"input": np.array([0, 3])}), "shape"),
    "input_shape_float": (lambda: ir.Input(input_type={"input": np.array([2.5])}), "shape"),
    "input_two_ports": (lambda: ir.Input(input_type={"a": [1], "b": [2]}), "input_type"),
    "output_shape_negative": (lambda: ir.Output(output_type={"output": [-1]}), "shape"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_constructor_refuses_impossible_value(case):
    build, field = BAD[case]
    with pytest.raises(ir.T1CFormatError) as info:
        build()
    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert f"field '{field}'" in str(info.value)


# -- defaults a PyTorch user expects -----------------------------------------------------


def test_pool_stride_defaults_to_kernel_size():
    assert ir.MaxPool2d(kernel_size=3).stride.tolist() == [3, 3]
    assert ir.AvgPool2d(kernel_size=(2, 4)).stride.tolist() == [2, 4]
    assert ir.MaxPool2d(kernel_size=3, stride=1).stride.tolist() == [1, 1]


def test_missing_bias_is_zeros_of_the_output_size():
    for node, field, n in (
        (ir.Affine(weight=W), "bias", 4),
        (ir.SpikingAffine(weight=W), "bias", 4),
        (ir.Conv2d(weight=np.ones((5, 2, 3, 3))), "bias", 5),
        (
            ir.SepConv2d(depthwise_weight=np.ones((3, 1, 3, 3)), pointwise_weight=np.ones((6, 3, 1, 1))),
            "pointwise_bias",
            6,
        ),
    ):
        bias = getattr(node, field)
        assert bias.dtype == np.float32 and bias.shape == (n,) and not bias.any()


def test_int_becomes_pair_and_arrays_become_float32():
    conv = ir.Conv2d(weight=np.ones((2, 1, 3, 3), dtype=np.float64), stride=2, padding=[1], dilation=(2, 3))
    assert conv.weight.dtype == np.float32
    for field, want in (("stride", [2, 2]), ("padding", [1, 1]), ("dilation", [2, 3])):
        value = getattr(conv, field)
        assert value.dtype == np.int64 and value.tolist() == want
    assert conv.groups == 1


def test_spiking_affine_defaults():
    node = ir.SpikingAffine(weight=W)
    assert (node.spike_mode, node.weight_bits, node.accumulator_bits) == ("binary", 8, 16)


def test_bits_at_the_limits_are_accepted():
    node = ir.SpikingAffine(weight=W, weight_bits=32, accumulator_bits=64)
    assert (node.weight_bits, node.accumulator_bits) == (32, 64)
    node = ir.SpikingAffine(weight=W, weight_bits=1, accumulator_bits=1)
    assert (node.weight_bits, node.accumulator_bits) == (1, 1)


def test_float32_weights_are_not_copied():
    weight = np.ones((3, 2), dtype=np.float32)
    assert ir.Affine(weight=weight).weight is weight


def test_torch_tensors_are_accepted_without_torch_in_t1c_ir():
    torch = pytest.importorskip("torch")
    node = ir.Affine(weight=torch.ones(2, 3, requires_grad=True), bias=torch.zeros(2))
    assert node.weight.dtype == np.float32 and node.weight.shape == (2, 3)


def test_input_accepts_a_plain_shape_and_output_shape_is_inferred():
    g = ir.Graph.from_chain(ir.Input(input_type=[4, 2]), ir.Flatten(), ir.Output(), names=["i", "f", "o"])
    assert g.nodes["i"].shape == (4, 2)
    assert g.nodes["o"].shape == (8,)


def test_upsample_takes_torchs_float_scale_factor_when_it_is_whole():
    assert ir.Upsample(scale_factor=2.0).scale_factor == 2
    assert type(ir.Upsample(scale_factor=np.float32(3.0)).scale_factor) is int
    with pytest.raises(ir.T1CFormatError) as info:
        ir.Upsample(scale_factor=1.5)
    assert info.value.field == "scale_factor"
