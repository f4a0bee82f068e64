"""Reading `.t1c` files (`t1c.ir.reading`): the reference fixtures, what the reader accepts
(strings as bytes, unknown datasets), the field kinds it checks and the messages naming the
node and field, the version, node order, and that reading needs no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from drawing_cases import recurrent_sum_graph

from t1c import ir
from t1c.ir import fileformat

from .factories import chain, graph_around, mlp

# Parametrisation needs the names at collection time; the path is tests/conftest.py's.
FIXTURE_NAMES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "fixtures").glob("*.t1c"))


def test_fixtures_are_present():
    assert set(FIXTURE_NAMES) >= {"conv_snn", "mlp_snn", "resnet_block", "spiking_affine"}


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_reads(fixtures_dir, name):
    g = ir.read(fixtures_dir / f"{name}.t1c")
    data = np.load(fixtures_dir / f"{name}.npz")
    (in_name,) = g.input_names
    (out_name,) = g.output_names
    assert data["x"].shape[2:] == g.output_shapes[in_name]
    assert data["y"].shape[2:] == g.output_shapes[out_name]
    assert ir.read_version(fixtures_dir / f"{name}.t1c") == ir.FORMAT_VERSION == "0.0.1"


def test_read_version_and_missing_files(tmp_path):
    path = tmp_path / "v.t1c"
    ir.write(path, mlp())
    assert ir.read_version(path) == "0.0.1"
    with pytest.raises(FileNotFoundError):
        ir.read_version(tmp_path / "nope.t1c")
    with pytest.raises(FileNotFoundError):
        ir.read(tmp_path / "nope.t1c")
    (tmp_path / "text.t1c").write_text("hello")
    with pytest.raises(ir.T1CFormatError, match="not an HDF5 file") as info:
        ir.read_version(tmp_path / "text.t1c")
    assert str(tmp_path / "text.t1c") in str(info.value)
    with h5py.File(tmp_path / "noversion.t1c", "w") as f:
        f.create_group("graph")
    with pytest.raises(ir.T1CFormatError, match="missing") as info:
        ir.read_version(tmp_path / "noversion.t1c")
    assert info.value.file == str(tmp_path / "noversion.t1c") and info.value.field == "version"


def test_strings_stored_as_fixed_length_bytes_are_read(tmp_path):
    path = tmp_path / "bytes.t1c"
    ir.write(path, mlp())
    with h5py.File(path, "a") as f:
        for name in ("version", "graph/nodes/fc1/type"):
            value = f[name][()]
            del f[name]
            f.create_dataset(name, data=np.bytes_(value))
        src = [s.decode() for s in f["graph/edges/src"][()]]
        del f["graph/edges/src"]
        f.create_dataset("graph/edges/src", data=np.array(src, dtype="S"))
    assert ir.topology_diff(mlp(), ir.read(path)) == []


def test_unknown_datasets_inside_a_node_are_ignored(tmp_path):
    path = tmp_path / "extra.t1c"
    ir.write(path, mlp())
    with h5py.File(path, "a") as f:
        f["graph/nodes/lif1/v_reset"] = np.zeros(6, dtype=np.float32)
    assert ir.topology_diff(mlp(), ir.read(path)) == []


def test_node_order_survives_a_file(tmp_path):
    g = mlp()
    path = tmp_path / "order.t1c"
    ir.write(path, g)
    assert list(ir.read(path).nodes) == list(g.nodes) == ["input", "fc1", "lif1", "fc2", "lif2", "output"]


def test_no_metadata_reads_as_empty_dict(tmp_path):
    path = tmp_path / "nometa.t1c"
    ir.write(path, mlp())
    with h5py.File(path, "r") as f:
        assert "metadata" not in f["graph"]
    assert ir.read(path).metadata == {}


def test_import_t1c_ir_does_not_import_torch():
    code = "import sys, t1c.ir; sys.exit(1 if 'torch' in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr or "importing t1c.ir imported torch"


def test_reading_and_writing_does_not_import_torch(tmp_path, fixtures_dir):
    code = (
        "import sys; from t1c import ir\n"
        f"g = ir.read({str(fixtures_dir / 'resnet_block.t1c')!r})\n"
        f"ir.write({str(tmp_path / 'x.t1c')!r}, g)\n"
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr or "reading/writing imported torch"


def test_a_2000_node_chain_reads_back_node_for_node(tmp_path):
    g = chain(2000, ("residual", "passthrough"))
    path = tmp_path / "chain.t1c"
    ir.write(path, g)
    back = ir.read(path)
    assert list(back.nodes) == list(g.nodes)
    assert back.edges == g.edges
    assert [n.skip_type for n in back.nodes.values() if isinstance(n, ir.Skip)] == [
        n.skip_type for n in g.nodes.values() if isinstance(n, ir.Skip)
    ]
    assert back.output_shapes["n1999"] == (4,)
    # New-style groups and compact scalars: a Skip node took 1.7 KB with h5py's defaults.
    assert path.stat().st_size < 1200 * 2000


# -- each field kind is checked against what the file holds ---------------------------------


def _replaced(tmp_path: Path, node: ir.Node, field: str, data) -> Path:
    """A file holding ``node`` (named ``node``) with ``field`` replaced by ``data``."""
    path = tmp_path / "net.t1c"
    ir.write(path, graph_around(node), content_hash=False)
    with h5py.File(path, "a") as f:
        group = f["graph/nodes/node"]
        del group[field]
        group[field] = data
    return path


@pytest.mark.parametrize(
    ("node", "field", "data", "message"),
    [
        (
            ir.Affine(weight=np.ones((2, 3))),
            "weight",
            np.ones((2, 3), dtype=np.int64),
            "must be a float array, got dtype int64",
        ),
        (ir.Affine(weight=np.ones((2, 3))), "weight", np.array([b"x"]), "must hold numbers"),
        (
            ir.Affine(weight=np.ones((2, 3)), weight_int=np.ones((2, 3), dtype=int), weight_scale=1.0),
            "weight_int",
            np.ones((2, 3)),
            "must be an integer array, got dtype float64",
        ),
        (
            ir.MaxPool2d(kernel_size=2),
            "stride",
            np.array([2.0, 2.0]),
            "must be an int64 array, got dtype float64",
        ),
        (ir.MaxPool2d(kernel_size=2), "stride", np.array([2, 2, 2]), "must have shape [2], got [3]"),
        (
            ir.LayerNorm(normalized_shape=[8], weight=np.ones(8), bias=np.ones(8)),
            "normalized_shape",
            np.ones((1, 1), dtype=np.int64),
            "must have shape [k], got [1, 1]",
        ),
        (
            ir.Conv2d(weight=np.ones((2, 1, 1, 1))),
            "groups",
            np.array([1, 1]),
            "must be a scalar, got shape [2]",
        ),
        (
            ir.Conv2d(weight=np.ones((2, 1, 1, 1))),
            "groups",
            np.float64(1.0),
            "must be an integer, got dtype float64",
        ),
        (ir.MaxPool2d(kernel_size=2), "ceil_mode", np.float64(0.0), "must be a boolean, got dtype float64"),
        (ir.Skip(), "skip_type", np.int64(3), "must be a scalar string, got int64 of shape []"),
        (
            ir.Conv2d(weight=np.ones((2, 1, 1, 1))),
            "groups",
            "two",
            "is the string 'two', which does not spell an integer",
        ),
    ],
)
def test_a_field_of_the_wrong_kind_is_refused_naming_node_and_field(tmp_path, node, field, data, message):
    path = _replaced(tmp_path, node, field, data)
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(path)
    assert (info.value.file, info.value.node, info.value.field) == (str(path), "node", field)
    assert message in str(info.value)


def test_numbers_of_other_widths_are_read_as_the_kind(tmp_path):
    node = ir.Conv2d(weight=np.ones((2, 1, 1, 1)), stride=2)
    path = _replaced(tmp_path, node, "stride", np.array([2, 2], dtype=np.int32))
    with h5py.File(path, "a") as f:
        del f["graph/nodes/node/groups"]
        f["graph/nodes/node/groups"] = np.uint8(1)
        del f["graph/nodes/node/weight"]
        f["graph/nodes/node/weight"] = np.ones((2, 1, 1, 1), dtype=np.float64)
    back = ir.read(path).nodes["node"]
    assert back.stride.tolist() == [2, 2] and back.stride.dtype == np.int64
    assert back.groups == 1 and type(back.groups) is int
    assert back.weight.dtype == np.float32


def test_a_missing_required_field_names_the_type(tmp_path):
    path = tmp_path / "net.t1c"
    ir.write(path, mlp(), content_hash=False)
    with h5py.File(path, "a") as f:
        del f["graph/nodes/lif1/tau"]
    with pytest.raises(ir.T1CFormatError, match=r"is missing \(required by LIF\)") as info:
        ir.read(path)
    assert (info.value.node, info.value.field) == ("lif1", "tau")


@pytest.mark.parametrize(
    ("version", "words"),
    [
        ("1.0.0", "newer major format version than this t1c reads (0.x, writes 0.0.1); upgrade t1c"),
        ("", "must be a format version like '0.0.1'"),
        ("0.x", "must be a format version like '0.0.1'"),
    ],
)
def test_version_is_checked_before_the_graph(tmp_path, version, words):
    path = tmp_path / "net.t1c"
    ir.write(path, mlp())
    with h5py.File(path, "a") as f:
        del f["version"]
        f["version"] = version
        del f["graph/nodes"]  # never reached
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(path)
    assert info.value.field == "version" and words in str(info.value)


def test_max_elements_is_passed_to_the_graph(tmp_path):
    path = tmp_path / "chain.t1c"
    ir.write(path, chain(3))
    with pytest.raises(ir.T1CFormatError, match="elements"):
        ir.read(path, max_elements=3)
    assert ir.read(path, max_elements=4).output_shapes["n2"] == (4,)


# -- recurrent graphs -------------------------------------------------------------------------


def test_a_recurrent_graph_reads_back_with_its_cycle(tmp_path):
    graph = recurrent_sum_graph()
    ir.write(tmp_path / "rec.t1c", graph)
    with h5py.File(tmp_path / "rec.t1c") as f:
        assert int(f.attrs[fileformat.RECURRENT_ATTRIBUTE]) == 1
    back = ir.read(tmp_path / "rec.t1c")
    assert back.allow_cycles and back.cyclic
    assert back.edges == graph.edges and list(back.nodes) == list(graph.nodes)
    assert back.content_hash() == graph.content_hash()


def test_an_acyclic_graph_is_written_without_the_recurrent_mark(tmp_path):
    graph = mlp()
    plain, allowed = tmp_path / "plain.t1c", tmp_path / "allowed.t1c"
    ir.write(plain, graph)
    ir.write(allowed, ir.Graph(graph.nodes, graph.edges, graph.metadata, allow_cycles=True))
    assert plain.read_bytes() == allowed.read_bytes()
    with h5py.File(plain) as f:
        assert fileformat.RECURRENT_ATTRIBUTE not in f.attrs


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "has a cycle"),
        (0, "has a cycle"),
        (2, "must be 0 or 1"),
        (np.ones(2, np.int64), "integer scalar"),
    ],
)
def test_a_cycle_needs_the_recurrent_mark(tmp_path, value, words):
    path = tmp_path / "rec.t1c"
    ir.write(path, recurrent_sum_graph())
    with h5py.File(path, "a") as f:
        del f.attrs[fileformat.RECURRENT_ATTRIBUTE]
        if value is not None:
            f.attrs[fileformat.RECURRENT_ATTRIBUTE] = value
    with pytest.raises(ir.T1CFormatError, match=words) as info:
        ir.read(path)
    assert str(path) in str(info.value)
