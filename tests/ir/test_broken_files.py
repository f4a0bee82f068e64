"""A corpus of broken `.t1c` files, each built here with h5py or raw bytes.

Every one must fail with :class:`t1c.ir.T1CFormatError` (a ``ValueError``) whose
message names the file and, where there is one, the node and the field at fault. The
reader must never follow soft/external links or data stored outside the file, and
never allocate from a declared shape before checking it against the stored bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from t1c import ir

from .factories import f32, lif

STR = h5py.string_dtype()


def _base_graph() -> ir.Graph:
    """input[2,6,6] -> conv -> pool -> flat -> fc -> lif -> sa -> skip -> output."""
    return ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([2, 6, 6])}),
        ir.Conv2d(weight=f32(4, 2, 3, 3), padding=1),
        ir.MaxPool2d(kernel_size=2),
        ir.Flatten(),
        ir.Affine(weight=f32(8, 36), bias=f32(8, seed=1)),
        lif(8),
        ir.SpikingAffine(weight=f32(8, 8, seed=2), weight_bits=6, accumulator_bits=12),
        ir.Skip(skip_type="passthrough"),
        ir.Output(),
        names=["input", "conv", "pool", "flat", "fc", "lif", "sa", "skip", "output"],
        metadata={"note": "base"},
    )


def _replace(f: h5py.File, name: str, **kwargs) -> None:
    del f[name]
    f.create_dataset(name, **kwargs)


def _set_edges(f: h5py.File, src: list[str], dst: list[str]) -> None:
    _replace(f, "graph/edges/src", data=src, dtype=STR)
    _replace(f, "graph/edges/dst", data=dst, dtype=STR)


def _edges(f: h5py.File) -> tuple[list[str], list[str]]:
    return (
        [s.decode() for s in f["graph/edges/src"][()]],
        [d.decode() for d in f["graph/edges/dst"][()]],
    )


# -- mutations of a valid file: (mutate(f, tmp_path), node, field, words in the message) -----


def _add_edge(src: str, dst: str):
    def mutate(f, _):
        s, d = _edges(f)
        _set_edges(f, [*s, src], [*d, dst])

    return mutate


def _hard_linked_metadata_bomb(f, _):
    # One mostly-empty chunked dataset declaring 48 MB (within the per-dataset limit),
    # hard-linked 50 times: 2.4 GB of reads from a file of a few KB.
    m = f["graph/metadata"]
    d = m.create_dataset("k00", shape=(3500, 3500), dtype="f4", chunks=(64, 64), compression="gzip")
    d[0, 0] = 1.0
    for i in range(1, 50):
        m[f"k{i:02d}"] = d


def _external_link(f, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as o:
        o["w"] = np.ones((8, 36), dtype=np.float32)
    del f["graph/nodes/fc/weight"]
    f["graph/nodes/fc/weight"] = h5py.ExternalLink(str(other), "/w")


def _external_storage(f, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(8 * 36, dtype=np.float32).tobytes())
    del f["graph/nodes/fc/weight"]
    f.create_dataset(
        "graph/nodes/fc/weight", shape=(8, 36), dtype="f4", external=[(str(secret), 0, 8 * 36 * 4)]
    )


def _virtual_dataset(f, tmp_path):
    other = tmp_path / "source.h5"
    with h5py.File(other, "w") as o:
        o["w"] = np.ones((8, 36), dtype=np.float32)
    layout = h5py.VirtualLayout(shape=(8, 36), dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), "w", shape=(8, 36))
    del f["graph/nodes/fc/weight"]
    f["graph/nodes/fc"].create_virtual_dataset("weight", layout)


def _lif_shape(n: int):
    def mutate(f, _):
        for field in ("tau", "r", "v_leak", "v_threshold"):
            _replace(f, f"graph/nodes/lif/{field}", data=np.ones(n, dtype=np.float32))

    return mutate


def _poke(field: str, value: float):
    """Set element 0 of a float dataset to ``value`` (NaN, inf) in place."""

    def mutate(f, _):
        data = f[f"graph/nodes/{field}"][()]
        data.reshape(-1)[0] = value
        _replace(f, f"graph/nodes/{field}", data=data)

    return mutate


def _beta(value: float):
    def mutate(f, _):
        f.create_dataset("graph/nodes/lif/beta", data=np.full(8, value, dtype=np.float32))

    return mutate


MUTATIONS: dict[str, tuple[Callable, str | None, str | None, str]] = {
    "missing_version": (lambda f, _: f.__delitem__("version"), None, "version", "missing"),
    "version_not_string": (lambda f, _: _replace(f, "version", data=1), None, "version", "scalar string"),
    "version_array": (
        lambda f, _: _replace(f, "version", data=["0.0.1"], dtype=STR),
        None,
        "version",
        "scalar",
    ),
    "version_not_utf8": (
        lambda f, _: _replace(f, "version", data=np.bytes_(b"\xff\xfe")),
        None,
        "version",
        "UTF-8",
    ),
    "version_newer_major": (
        lambda f, _: _replace(f, "version", data="99.0", dtype=STR),
        None,
        "version",
        "newer major format version",
    ),
    "version_empty": (
        lambda f, _: _replace(f, "version", data="", dtype=STR),
        None,
        "version",
        "like '0.0.1'",
    ),
    "version_words": (
        lambda f, _: _replace(f, "version", data="latest", dtype=STR),
        None,
        "version",
        "like '0.0.1'",
    ),
    "missing_graph_type": (lambda f, _: f.__delitem__("graph/type"), None, "graph/type", "missing"),
    "graph_type_wrong": (
        lambda f, _: _replace(f, "graph/type", data="NotAGraph", dtype=STR),
        None,
        "graph/type",
        "must be 'Graph', got 'NotAGraph'",
    ),
    "graph_type_number": (
        lambda f, _: _replace(f, "graph/type", data=7),
        None,
        "graph/type",
        "scalar string",
    ),
    "missing_graph": (lambda f, _: f.__delitem__("graph"), None, "graph", "missing"),
    "graph_is_dataset": (
        lambda f, _: (f.__delitem__("graph"), f.create_dataset("graph", data=1)),
        None,
        "graph",
        "group",
    ),
    "missing_nodes": (lambda f, _: f.__delitem__("graph/nodes"), None, "graph/nodes", "missing"),
    "missing_edges_group": (lambda f, _: f.__delitem__("graph/edges"), None, "graph/edges", "missing"),
    "missing_edges_src": (lambda f, _: f.__delitem__("graph/edges/src"), None, "graph/edges/src", "missing"),
    "missing_edges_dst": (lambda f, _: f.__delitem__("graph/edges/dst"), None, "graph/edges/dst", "missing"),
    "edges_length_mismatch": (
        lambda f, _: _replace(f, "graph/edges/dst", data=_edges(f)[1][:-1], dtype=STR),
        None,
        "graph/edges",
        "entries",
    ),
    "edges_not_strings": (
        lambda f, _: _replace(f, "graph/edges/src", data=np.arange(8)),
        None,
        "graph/edges/src",
        "strings",
    ),
    "edges_2d": (
        lambda f, _: _replace(f, "graph/edges/dst", data=[_edges(f)[1]], dtype=STR),
        None,
        "graph/edges/dst",
        "1-D",
    ),
    "missing_node_type": (lambda f, _: f.__delitem__("graph/nodes/fc/type"), "fc", "type", "missing"),
    "unknown_node_type": (
        lambda f, _: _replace(f, "graph/nodes/fc/type", data="Frobnicate", dtype=STR),
        "fc",
        "type",
        "'Frobnicate'",
    ),
    "node_type_not_string": (
        lambda f, _: _replace(f, "graph/nodes/fc/type", data=3),
        "fc",
        "type",
        "scalar string",
    ),
    "missing_required_field": (
        lambda f, _: f.__delitem__("graph/nodes/fc/weight"),
        "fc",
        "weight",
        "missing (required by Affine)",
    ),
    "missing_lif_field": (
        lambda f, _: f.__delitem__("graph/nodes/lif/v_threshold"),
        "lif",
        "v_threshold",
        "missing",
    ),
    "weight_as_string": (
        lambda f, _: _replace(f, "graph/nodes/fc/weight", data="weights", dtype=STR),
        "fc",
        "weight",
        "numbers",
    ),
    "weight_as_int": (
        lambda f, _: _replace(f, "graph/nodes/fc/weight", data=np.ones((8, 36), dtype=np.int64)),
        "fc",
        "weight",
        "float array",
    ),
    "weight_complex": (
        lambda f, _: _replace(f, "graph/nodes/fc/weight", data=np.ones((8, 36), dtype=np.complex64)),
        "fc",
        "weight",
        "numbers",
    ),
    "weight_compound": (
        lambda f, _: _replace(f, "graph/nodes/fc/weight", data=np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])),
        "fc",
        "weight",
        "numbers",
    ),
    "conv_weight_1d": (
        lambda f, _: _replace(f, "graph/nodes/conv/weight", data=np.ones(72, dtype=np.float32)),
        "conv",
        "weight",
        "4-D",
    ),
    "bias_wrong_length": (
        lambda f, _: _replace(f, "graph/nodes/fc/bias", data=np.ones(7, dtype=np.float32)),
        "fc",
        "bias",
        "8 outputs",
    ),
    "int_pair_wrong_length": (
        lambda f, _: _replace(f, "graph/nodes/conv/stride", data=np.array([1, 1, 1])),
        "conv",
        "stride",
        "[2]",
    ),
    "int_pair_float": (
        lambda f, _: _replace(f, "graph/nodes/conv/padding", data=np.array([1.0, 1.0])),
        "conv",
        "padding",
        "int64",
    ),
    "stride_zero": (
        lambda f, _: _replace(f, "graph/nodes/conv/stride", data=np.array([0, 1])),
        "conv",
        "stride",
        ">= 1",
    ),
    "int_scalar_as_array": (
        lambda f, _: _replace(f, "graph/nodes/conv/groups", data=np.array([1])),
        "conv",
        "groups",
        "scalar",
    ),
    "bool_holding_7": (
        lambda f, _: _replace(f, "graph/nodes/pool/ceil_mode", data=np.int8(7)),
        "pool",
        "ceil_mode",
        "boolean",
    ),
    "bool_as_string": (
        lambda f, _: _replace(f, "graph/nodes/pool/ceil_mode", data="false", dtype=STR),
        "pool",
        "ceil_mode",
        "numbers",
    ),
    "bits_out_of_range": (
        lambda f, _: _replace(f, "graph/nodes/sa/weight_bits", data=np.int64(40)),
        "sa",
        "weight_bits",
        "1..32",
    ),
    "accumulator_below_weight_bits": (
        lambda f, _: _replace(f, "graph/nodes/sa/accumulator_bits", data=np.int64(4)),
        "sa",
        "accumulator_bits",
        "weight_bits..64",
    ),
    "unknown_spike_mode": (
        lambda f, _: _replace(f, "graph/nodes/sa/spike_mode", data="burst", dtype=STR),
        "sa",
        "spike_mode",
        "'burst'",
    ),
    "unknown_skip_type": (
        lambda f, _: _replace(f, "graph/nodes/skip/skip_type", data="add", dtype=STR),
        "skip",
        "skip_type",
        "'add'",
    ),
    "skip_type_not_string": (
        lambda f, _: _replace(f, "graph/nodes/skip/skip_type", data=1),
        "skip",
        "skip_type",
        "scalar string",
    ),
    "lif_arrays_differ": (
        lambda f, _: _replace(f, "graph/nodes/lif/r", data=np.ones(5, dtype=np.float32)),
        "lif",
        "r",
        "tau has [8]",
    ),
    "lif_tau_negative": (
        lambda f, _: _replace(f, "graph/nodes/lif/tau", data=-np.ones(8, dtype=np.float32)),
        "lif",
        "tau",
        "positive",
    ),
    "weight_nan": (_poke("fc/weight", np.nan), "fc", "weight", "nan"),
    "bias_inf": (_poke("fc/bias", np.inf), "fc", "bias", "inf"),
    "lif_r_nan": (_poke("lif/r", np.nan), "lif", "r", "nan"),
    "lif_r_inf_without_beta": (_poke("lif/r", np.inf), "lif", "r", "beta is not 1"),
    "lif_tau_inf_without_beta": (_poke("lif/tau", np.inf), "lif", "tau", "beta is not 1"),
    "lif_v_leak_inf": (_poke("lif/v_leak", -np.inf), "lif", "v_leak", "-inf"),
    "lif_v_threshold_nan": (_poke("lif/v_threshold", np.nan), "lif", "v_threshold", "nan"),
    "lif_beta_5": (_beta(5.0), "lif", "beta", "[0, 1]"),
    "lif_beta_negative": (_beta(-1.0), "lif", "beta", "[0, 1]"),
    "lif_beta_nan": (_beta(np.nan), "lif", "beta", "nan"),
    "weight_float64_overflows_float32": (
        lambda f, _: _replace(f, "graph/nodes/fc/weight", data=np.full((8, 36), 1e300)),
        "fc",
        "weight",
        "overflows float32",
    ),
    "weight_scale_nan": (
        lambda f, _: (
            f.create_dataset("graph/nodes/fc/weight_int", data=np.ones((8, 36), dtype=np.int8)),
            f.create_dataset("graph/nodes/fc/weight_scale", data=np.nan),
        ),
        "fc",
        "weight_scale",
        "finite",
    ),
    "input_shape_zero": (
        lambda f, _: _replace(f, "graph/nodes/input/shape", data=np.array([2, 0, 6])),
        "input",
        "shape",
        "positive",
    ),
    "weight_int_float": (
        lambda f, _: (
            f.create_dataset("graph/nodes/fc/weight_int", data=np.ones((8, 36))),
            f.create_dataset("graph/nodes/fc/weight_scale", data=1.0),
        ),
        "fc",
        "weight_int",
        "integer",
    ),
    "weight_int_without_scale": (
        lambda f, _: f.create_dataset("graph/nodes/fc/weight_int", data=np.ones((8, 36), dtype=np.int8)),
        "fc",
        "weight_scale",
        "positive",
    ),
    "edge_names_missing_node": (
        lambda f, _: _set_edges(f, _edges(f)[0], ["ghost", *_edges(f)[1][1:]]),
        "ghost",
        "edges/dst",
        "does not exist",
    ),
    "self_loop": (_add_edge("fc", "fc"), "fc", "edges", "self loop"),
    "duplicate_edge": (_add_edge("fc", "lif"), "lif", "edges", "duplicate"),
    "cycle": (_add_edge("sa", "fc"), "fc", "edges", "cycle"),
    "shape_conflict": (_lif_shape(9), "lif", "tau", "'fc' gives [8]"),
    "output_shape_conflict": (
        lambda f, _: _replace(f, "graph/nodes/output/shape", data=np.array([3])),
        "output",
        "shape",
        "declares shape [3]",
    ),
    "no_input_node": (
        lambda f, _: _replace(f, "graph/nodes/input/type", data="Output", dtype=STR),
        None,
        "nodes",
        "no Input",
    ),
    "unreachable_node": (
        lambda f, _: (
            f.create_group("graph/nodes/orphan").create_dataset("type", data="Skip", dtype=STR)
            and f["graph/nodes/orphan"].create_dataset("skip_type", data="passthrough", dtype=STR)
        ),
        "orphan",
        "edges",
        "not reachable",
    ),
    "node_group_is_dataset": (
        lambda f, _: (f.__delitem__("graph/nodes/fc"), f.create_dataset("graph/nodes/fc", data=1.0)),
        "fc",
        "nodes",
        "must be a group",
    ),
    "soft_link_field": (
        lambda f, _: (
            f.__delitem__("graph/nodes/fc/weight"),
            f["graph/nodes/fc"].__setitem__("weight", h5py.SoftLink("/graph/nodes/sa/weight")),
        ),
        "fc",
        "weight",
        "SoftLink",
    ),
    "soft_link_node": (
        lambda f, _: f["graph/nodes"].__setitem__("alias", h5py.SoftLink("/graph/nodes/fc")),
        "alias",
        "nodes",
        "SoftLink",
    ),
    "dangling_soft_link": (
        lambda f, _: (
            f.__delitem__("graph/edges/src"),
            f["graph/edges"].__setitem__("src", h5py.SoftLink("/nowhere")),
        ),
        None,
        "graph/edges/src",
        "SoftLink",
    ),
    "external_link": (_external_link, "fc", "weight", "ExternalLink"),
    "external_storage": (_external_storage, "fc", "weight", "external file"),
    "virtual_dataset": (_virtual_dataset, "fc", "weight", "virtual"),
    "huge_declared_shape": (
        lambda f, _: _replace(f, "graph/nodes/fc/weight", shape=(10**6, 10**5), dtype="f4"),
        "fc",
        "weight",
        "declares shape [1000000, 100000]",
    ),
    "huge_chunked_one_chunk": (
        lambda f, _: (
            _replace(f, "graph/nodes/fc/weight", shape=(10**5, 10**5), dtype="f4", chunks=(100, 100)),
            f["graph/nodes/fc/weight"].__setitem__((0, 0), 1.0),
        ),
        "fc",
        "weight",
        "declares shape [100000, 100000]",
    ),
    "huge_declared_input_shape": (
        lambda f, _: _replace(f, "graph/nodes/input/shape", shape=(10**9,), dtype="i8"),
        "input",
        "shape",
        "declares shape",
    ),
    "huge_declared_edges": (
        lambda f, _: _replace(f, "graph/edges/src", shape=(10**8,), dtype=STR),
        None,
        "graph/edges/src",
        "declares shape",
    ),
    "hard_linked_metadata_bomb": (_hard_linked_metadata_bomb, None, "metadata/k", "hard-linked many times"),
    "metadata_soft_link": (
        lambda f, _: f["graph/metadata"].__setitem__("x", h5py.SoftLink("/version")),
        None,
        "metadata/x",
        "SoftLink",
    ),
    "metadata_loop": (
        lambda f, _: f["graph/metadata"].__setitem__("self", f["graph/metadata"]),
        None,
        "metadata/self/self",
        "deeper than",
    ),
    "metadata_compound": (
        lambda f, _: f["graph/metadata"].create_dataset("x", data=np.zeros(2, dtype=[("a", "f4")])),
        None,
        "metadata/x",
        "unsupported dtype",
    ),
    "metadata_is_dataset": (
        lambda f, _: (f.__delitem__("graph/metadata"), f["graph"].create_dataset("metadata", data=1)),
        None,
        "graph/metadata",
        "group",
    ),
}


def _valid_file(path: Path) -> Path:
    ir.write(path, _base_graph(), fsync=False)
    return path


def test_base_file_is_valid(tmp_path):
    g = ir.read(_valid_file(tmp_path / "base.t1c"))
    assert ir.topology_diff(_base_graph(), g) == []


def _check(err: ir.T1CFormatError, path: Path, node: str | None, field: str | None, words: str) -> None:
    msg = str(err)
    assert isinstance(err, ValueError)
    assert err.file == str(path) and f"file '{path}'" in msg, msg
    assert err.node == node, msg
    if node is not None:
        assert f"node '{node}'" in msg
    if field is not None:
        assert err.field is not None and err.field.startswith(field), msg
        assert f"field '{err.field}'" in msg
    assert words in msg, msg


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_broken_file_is_refused(tmp_path, case):
    mutate, node, field, words = MUTATIONS[case]
    path = _valid_file(tmp_path / f"{case}.t1c")
    with h5py.File(path, "a") as f:
        mutate(f, tmp_path)
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(path)
    _check(info.value, path, node, field, words)


# -- files broken at the byte level ---------------------------------------------------------


def _truncate(fraction: float):
    def make(path: Path) -> None:
        data = _valid_file(path).read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return make


def _corrupt_middle(path: Path) -> None:
    data = bytearray(_valid_file(path).read_bytes())
    mid = len(data) // 2
    data[mid : mid + 512] = b"\xa5" * 512
    path.write_bytes(bytes(data))


RAW: dict[str, Callable[[Path], None]] = {
    "not_hdf5": lambda p: p.write_text("this is a text file, not a graph\n"),
    "empty_file": lambda p: p.write_bytes(b""),
    "hdf5_signature_only": lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40),
    "numpy_file": lambda p: np.save(p.open("wb"), np.zeros(3)),
    "truncated_half": _truncate(0.5),
    "truncated_tail": _truncate(0.9),
    "truncated_to_superblock": _truncate(0.02),
    "empty_hdf5": lambda p: h5py.File(p, "w").close(),
}


@pytest.mark.parametrize("case", sorted(RAW))
def test_byte_level_broken_file_is_refused(tmp_path, case):
    path = tmp_path / f"{case}.t1c"
    RAW[case](path)
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(path)
    _check(info.value, path, info.value.node, info.value.field, "")


def test_corrupted_bytes_never_escape_as_another_error(tmp_path):
    path = tmp_path / "corrupt.t1c"
    _corrupt_middle(path)
    try:
        ir.read(path)
    except ir.T1CFormatError as err:
        assert err.file == str(path)


def test_empty_file_says_so(tmp_path):
    path = tmp_path / "empty.t1c"
    path.write_bytes(b"")
    with pytest.raises(ir.T1CFormatError, match="is empty"):
        ir.read(path)


def test_validate_false_still_checks_the_file_but_not_the_graph(tmp_path):
    path = _valid_file(tmp_path / "cycle.t1c")
    with h5py.File(path, "a") as f:
        _add_edge("sa", "fc")(f, tmp_path)
    g = ir.read(path, validate=False)
    assert ("sa", "fc") in g.edges
    path = _valid_file(tmp_path / "ext.t1c")
    with h5py.File(path, "a") as f:
        _external_link(f, tmp_path)
    with pytest.raises(ir.T1CFormatError, match="ExternalLink"):
        ir.read(path, validate=False)


def test_corpus_is_large_enough():
    assert len(MUTATIONS) + len(RAW) >= 25
