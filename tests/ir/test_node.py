"""The Node contract every primitive keeps: fields round-trip through a file under their
on-disk kinds, the registry knows every type, constructors coerce what users pass and
refuse impossible values (the primitives too small for a test file of their own: Input,
Output, Skip, Flatten, LIF). The families have their own files (test_linear.py, ...)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from t1c import ir

from .factories import FACTORIES, assert_refused, graph_around, lif, node_name

# -- round trips ----------------------------------------------------------------------


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
    ir.write(path, graph_around(node))
    name = node_name(node)
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
    ir.write(path, graph_around(lif(4)))
    with h5py.File(path, "r") as f:
        assert set(f["graph/nodes/node"]) == {"type", "tau", "r", "v_leak", "v_threshold"}
    back = ir.read(path).nodes["node"]
    assert (back.beta, back.reset_mechanism, back.reset_delay, back.strict_threshold) == (
        None,
        None,
        None,
        None,
    )


def test_beta_one_survives_as_infinite_tau(tmp_path):
    node = FACTORIES["lif_snntorch"]()
    path = tmp_path / "beta.t1c"
    ir.write(path, graph_around(node))
    back = ir.read(path).nodes["node"]
    assert back.beta[-1] == 1.0 and np.isinf(back.tau[-1]) and np.isinf(back.r[-1])


# -- constructors refuse impossible values --------------------------------------------------

LIF_OK = {"tau": np.full(3, 5.0), "r": np.ones(3), "v_leak": np.zeros(3), "v_threshold": np.ones(3)}

BAD = {
    "unknown_skip_type": (lambda: ir.Skip(skip_type="add"), "skip_type"),
    "skip_type_not_str": (lambda: ir.Skip(skip_type=3), "skip_type"),
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
    assert_refused(*BAD[case])


# -- defaults a PyTorch user expects -----------------------------------------------------


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
