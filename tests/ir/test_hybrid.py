"""The toolchain's hybrid node types in t1c.ir: files, fields, checks, metadata, nesting, regions.

The contract is FORMAT_HYBRID.md; the reference files are ``tests/fixtures/hybrid``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from t1c import ir
from t1c.inspect import format_graph

from .factories import FACTORIES, f32, graph_around, lif, node_name

HYBRID = Path(__file__).resolve().parents[1] / "fixtures" / "hybrid"
HYBRID_NAMES = sorted(p.stem for p in HYBRID.glob("*.t1c"))
STR = h5py.string_dtype()


def _datasets(path: Path) -> dict[str, tuple[str, tuple[int, ...], object]]:
    """Every dataset of a file: name -> (dtype text, shape, value); groups as ``"group"``."""
    out: dict = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Group):
            out[name] = "group"
            return
        is_str = h5py.check_string_dtype(obj.dtype) is not None
        value = obj[()]
        if is_str:
            value = value.decode() if isinstance(value, bytes) else [v.decode() for v in value]
        out[name] = ("str" if is_str else obj.dtype.str, obj.shape, value)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def _graph(*nodes: ir.Node, shape=(8,)) -> ir.Graph:
    return ir.Graph.from_chain(ir.Input(input_type={"input": np.array(shape)}), *nodes, ir.Output())


# -- the reference files ---------------------------------------------------------------


def test_all_27_fixtures_are_there():
    assert len(HYBRID_NAMES) == 27


@pytest.mark.parametrize("name", HYBRID_NAMES)
def test_fixture_written_back_has_the_same_datasets_dtypes_and_values(name, tmp_path):
    src = HYBRID / f"{name}.t1c"
    out = tmp_path / "back.t1c"
    ir.write(out, ir.read(src))
    want, got = _datasets(src), _datasets(out)
    assert want.keys() == got.keys()
    for key, w in want.items():
        g = got[key]
        if w == "group":
            assert g == "group", key
            continue
        assert w[:2] == g[:2], f"{key}: {w[:2]} became {g[:2]}"
        np.testing.assert_array_equal(np.asarray(w[2], dtype=object), np.asarray(g[2], dtype=object), key)


def test_quirk_file_with_decimal_strings_reads_as_the_graph_it_was(tmp_path):
    path = HYBRID / "quirks" / "rewritten_by_reference.t1c"
    graph = ir.read(path)
    assert graph.nodes["bn1"].num_features == 8 and type(graph.nodes["bn1"].num_features) is int
    assert graph.nodes["smax1"].dim == 1
    assert graph.nodes["gelu_exact"].approximate is False
    assert graph.nodes["hrn"].name == "core" and graph.nodes["hrn"].mode == "snn"
    # t1c writes the real dtypes back; every stored string scalar comes back as its number
    out = tmp_path / "fixed.t1c"
    ir.write(out, graph)
    quirky, fixed = _datasets(path), _datasets(out)
    assert quirky.keys() == fixed.keys()
    for key, (dtype, shape, value) in ((k, v) for k, v in quirky.items() if v != "group"):
        if key.endswith(("/features", "/num_features", "/dim")):
            assert dtype == "str" and fixed[key][0] == "<i8" and fixed[key][2] == int(value), key
        else:
            assert fixed[key][:2] == (dtype, shape), key


def test_snn_fields_rewritten_as_strings_read_too(tmp_path):
    """The same toolchain quirk on the SNN primitives (groups, start_dim, ceil_mode...)."""
    src = HYBRID.parent / "conv_snn.t1c"
    path = tmp_path / "rewritten.t1c"
    path.write_bytes(src.read_bytes())
    with h5py.File(path, "r+") as f:
        for key in list(_datasets(src)):
            dset = f.get(key)
            if isinstance(dset, h5py.Dataset) and dset.shape == () and dset.dtype.kind in "ib":
                text = str(np.bool_(dset[()])) if dset.dtype.kind == "b" else str(int(dset[()]))
                del f[key]
                f.create_dataset(key, data=text, dtype=STR)
        assert f["graph/nodes/pool2/count_include_pad"][()] == b"True"
    original, rewritten = ir.read(src), ir.read(path)
    assert original.content_hash() == rewritten.content_hash()


def test_unknown_type_names_the_type_the_node_and_the_file():
    path = HYBRID / "quirks" / "unknown_type_SiLU.t1c"
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(path)
    err = info.value
    assert "SiLU" in str(err) and err.node == "n" and err.field == "type"
    assert "unknown_type_SiLU.t1c" in str(err)


def _name(node: ir.Node) -> str:
    """The name ``_graph`` (``Graph.from_chain``) gives its first node."""
    return f"{type(node).__name__.lower()}_1"


def _with_dataset(tmp_path: Path, node: ir.Node, field: str, data, dtype=None) -> Path:
    """A file holding ``_graph(node)`` with ``field`` of the node replaced by ``data``."""
    path = tmp_path / "edited.t1c"
    ir.write(path, _graph(node), content_hash=False)
    with h5py.File(path, "r+") as f:
        group = f[f"graph/nodes/{_name(node)}"]
        if field in group:
            del group[field]
        group.create_dataset(field, data=data, dtype=dtype)
    return path


@pytest.mark.parametrize(
    ("node", "field", "text", "value"),
    [
        (ir.ReLU(features=8), "features", "8", 8),
        (ir.ReLU(features=8), "negative_slope", "0.25", 0.25),
        (ir.ReLU(features=8), "negative_slope", "-1e-2", -0.01),
        (ir.GELU(features=8), "approximate", "False", False),
        (ir.Softmax(features=8), "dim", "-1", -1),
    ],
)
def test_decimal_strings_that_spell_a_value_are_read(tmp_path, node, field, text, value):
    back = ir.read(_with_dataset(tmp_path, node, field, text, STR)).nodes[_name(node)]
    assert getattr(back, field) == value and type(getattr(back, field)) is type(value)


@pytest.mark.parametrize(
    ("node", "field", "text"),
    [
        (ir.ReLU(features=8), "features", "8.0"),
        (ir.ReLU(features=8), "features", "eight"),
        (ir.ReLU(features=8), "features", "0"),  # spells an int, but not a valid feature count
        (ir.ReLU(features=8), "negative_slope", "nan"),
        (ir.ReLU(features=8), "negative_slope", "1e999"),
        (ir.GELU(features=8), "approximate", "false"),
        (ir.GELU(features=8), "approximate", "1"),
    ],
)
def test_strings_that_spell_no_valid_value_are_refused(tmp_path, node, field, text):
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(_with_dataset(tmp_path, node, field, text, STR))
    assert info.value.node == _name(node) and info.value.field == field


# -- on-disk encoding: dtypes and "written only when not the default" -------------------


def _node_datasets(graph: ir.Graph, tmp_path: Path, name: str) -> dict:
    path = tmp_path / "g.t1c"
    ir.write(path, graph)
    with h5py.File(path, "r") as f:
        group = f[f"graph/nodes/{name}"]
        return {k: (group[k].dtype, group[k][()]) for k in group if isinstance(group[k], h5py.Dataset)}


@pytest.mark.parametrize(
    ("node", "absent"),
    [
        (ir.HybridRegion(mode="ann", features=8, name=""), "name"),
        (ir.HybridRegion(mode="ann", features=8, name=None), "name"),
    ],
)
def test_defaults_are_not_written(tmp_path, node, absent):
    stored = _node_datasets(_graph(node), tmp_path, _name(node))
    assert absent not in stored
    assert "type" in stored


def test_scalars_are_written_with_the_toolchains_dtypes(tmp_path):
    nodes = [
        ir.ReLU(features=8, negative_slope=np.float32(0.5)),
        ir.GELU(features=8, approximate=np.bool_(False)),
        ir.Softmax(features=8, dim=np.int32(1)),
        ir.Dropout(features=8, p=0.1),
        ir.HybridRegion(mode="snn", features=8, name="core"),
    ]
    path = tmp_path / "g.t1c"
    ir.write(path, _graph(*nodes))
    with h5py.File(path, "r") as f:
        n = f["graph/nodes"]
        assert n["relu_1/features"].dtype == np.int64 and n["relu_1/negative_slope"].dtype == np.float64
        assert n["gelu_2/approximate"].dtype == np.bool_ and n["gelu_2/approximate"][()] == False  # noqa: E712
        assert n["softmax_3/dim"].dtype == np.int64 and n["softmax_3/dim"][()] == 1
        assert n["dropout_4/p"].dtype == np.float64
        assert h5py.check_string_dtype(n["hybridregion_5/mode"].dtype) is not None
        assert list(n["hybridregion_5"]) == ["features", "mode", "name", "type"]


# -- checks the toolchain lacks -------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ir.HybridRegion(mode="ANN", features=8), "mode"),
        (lambda: ir.HybridRegion(mode="snn", features=0), "features"),
    ],
)
def test_constructors_refuse_impossible_values(build, field):
    with pytest.raises(ir.T1CFormatError) as info:
        build()
    assert info.value.field == field


def test_features_is_a_size_hint_a_mismatch_warns_once_and_never_fails(tmp_path):
    region = ir.HybridRegion(mode="snn", features=47)
    with pytest.warns(
        UserWarning, match=r"node 'hybridregion_1' \(HybridRegion\): features = 47 .*48 values"
    ):
        graph = _graph(region, shape=(3, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph.validate()  # the same node again: no second warning
        ir.write(tmp_path / "g.t1c", graph)
    assert graph.nodes["hybridregion_1"].features == 47
    with pytest.warns(UserWarning, match="size hint"):  # a freshly read node warns once too
        back = ir.read(tmp_path / "g.t1c")
    assert back.nodes["hybridregion_1"].features == 47


def test_a_matching_hint_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _graph(ir.ReLU(features=48), ir.HybridRegion(mode="ann", features=48), shape=(3, 4, 4))


# -- node metadata -------------------------------------------------------------------------

META = {
    "stage": 0,
    "purpose": "feature extraction",
    "rate_coded": True,
    "gain": 0.5,
    "extra": {"ids": [1, 2]},
}


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_node_metadata_round_trips_for_every_type(kind, tmp_path):
    node = FACTORIES[kind]()
    node.metadata = dict(META)
    path = tmp_path / "m.t1c"
    ir.write(path, graph_around(node))
    name = node_name(node)
    back = ir.read(path).nodes[name]
    assert back.metadata["stage"] == 0 and back.metadata["purpose"] == "feature extraction"
    assert back.metadata["rate_coded"] is True and back.metadata["gain"] == 0.5
    np.testing.assert_array_equal(back.metadata["extra"]["ids"], [1, 2])
    with h5py.File(path, "r") as f:
        group = f[f"graph/nodes/{name}"]
        assert isinstance(group.get("metadata"), h5py.Group)
        assert group["metadata/stage"].dtype == np.int64
        assert group["metadata/rate_coded"].dtype == np.bool_


def test_node_metadata_is_part_of_the_content_hash_check(tmp_path):
    graph = _graph(ir.ReLU(features=8, metadata={"stage": 1}))
    path = tmp_path / "m.t1c"
    ir.write(path, graph)
    with h5py.File(path, "r+") as f:
        f["graph/nodes/relu_1/metadata/stage"][()] = 2
    with pytest.raises(ir.T1CFormatError, match="content hash"):
        ir.read(path)


# -- nested graphs ------------------------------------------------------------------------


def _inner(width: int = 8) -> ir.Graph:
    return ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([width])}),
        ir.ReLU(features=width),
        lif(width, threshold=0.5),
        ir.Output(),
        names=["input", "relu", "lif", "output"],
    )


def test_nested_graph_round_trips_with_its_layout(tmp_path):
    outer = _graph(ir.Affine(weight=f32(8, 8)), ir.Subgraph(graph=_inner(), metadata={"block": "core"}))
    path = tmp_path / "nested.t1c"
    ir.write(path, outer)
    with h5py.File(path, "r") as f:
        group = f["graph/nodes/subgraph_2"]
        assert group["type"][()].decode() == "Graph"
        assert set(group) == {"type", "nodes", "edges", "metadata"}
        assert [v.decode() for v in group["edges/src"][()]] == ["input", "relu", "lif"]
    back = ir.read(path)
    sub = back.nodes["subgraph_2"]
    assert isinstance(sub, ir.Subgraph) and list(sub.graph.nodes) == ["input", "relu", "lif", "output"]
    assert sub.metadata == {"block": "core"}
    assert back.output_shapes["subgraph_2"] == (8,)
    assert ir.topology_diff(outer, back) == []


def test_nested_graph_needs_one_input_and_one_output():
    two_out = ir.Graph(
        {"input": ir.Input(input_type={"input": np.array([4])}), "a": ir.Output(), "b": ir.Output()},
        [("input", "a"), ("input", "b")],
    )
    with pytest.raises(ir.T1CFormatError, match="exactly one Input and one Output"):
        ir.Subgraph(graph=two_out)


def test_nested_graph_input_shape_is_checked():
    with pytest.raises(ir.T1CFormatError, match=r"inner Input 'input' takes \[8\]"):
        _graph(ir.Subgraph(graph=_inner(8)), shape=(6,))


def test_bad_inner_node_is_named_by_its_path(tmp_path):
    path = tmp_path / "nested.t1c"
    ir.write(path, _graph(ir.Subgraph(graph=_inner())), content_hash=False)
    with h5py.File(path, "r+") as f:
        del f["graph/nodes/subgraph_1/nodes/relu/features"]
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(path)
    assert info.value.node == "subgraph_1/relu" and info.value.field == "features"


def test_a_nested_graph_linked_into_itself_is_refused(tmp_path):
    path = tmp_path / "loop.t1c"
    ir.write(path, _graph(ir.Subgraph(graph=_inner())), content_hash=False)
    with h5py.File(path, "r+") as f:
        inner_nodes = f["graph/nodes/subgraph_1/nodes"]
        del inner_nodes["relu"]
        inner_nodes["relu"] = f["graph/nodes/subgraph_1"]  # hard link: the group contains itself
    with pytest.raises(ir.T1CFormatError, match="nests graphs deeper"):
        ir.read(path)


# -- regions ----------------------------------------------------------------------------------


def test_regions_by_node_kinds_without_markers():
    graph = ir.read(HYBRID / "mlp_bn1d_relu_lif.t1c")
    got = [(r.mode, r.nodes, r.marker) for r in ir.regions(graph)]
    order = [n for n in graph.topological_order() if n not in ("input", "output")]
    assert [m for m, _, _ in got] == ["ann", "snn"]
    assert all(marker is None for _, _, marker in got)
    ann, snn = got[0][1], got[1][1]
    assert ann + snn == tuple(order)
    assert any(graph.nodes[n].TYPE == "BatchNorm1d" for n in ann)
    assert any(graph.nodes[n].TYPE == "LIF" for n in snn)
    assert graph.nodes[snn[0]].TYPE == "Affine"  # a synapse belongs to the neurons it feeds


def test_regions_follow_markers():
    w = f32(8, 8)
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([8])}),
        ir.HybridRegion(mode="ann", features=8, name="encoder"),
        ir.Affine(weight=w),
        ir.ReLU(features=8),
        ir.HybridRegion(mode="snn", features=8, name="core"),
        ir.Affine(weight=w),
        lif(8),
        ir.Output(),
        names=["input", "enc", "fc1", "relu", "core", "fc2", "lif", "output"],
    )
    regions = ir.regions(graph)
    assert [(r.mode, r.marker, r.name, r.nodes) for r in regions] == [
        ("ann", "enc", "encoder", ("enc", "fc1", "relu")),
        ("snn", "core", "core", ("core", "fc2", "lif")),
    ]
    report = format_graph(graph)
    assert "regions (HybridRegion markers, else node kinds):" in report
    assert "snn  marker 'core' (core): core, fc2, lif" in report


def test_inspect_shows_the_new_types_their_fields_and_node_metadata():
    graph = ir.read(HYBRID / "quirks" / "rewritten_by_reference.t1c")
    graph.nodes["hrn"].metadata = {"stage": 2}
    report = format_graph(graph)
    for text in (
        "BatchNorm1d",
        "num_features=8 eps=0.001 momentum=0.2",
        "negative_slope=0.1",
        "approximate=False",
        "mode=snn features=8 name=core",
        "dim=1",
        "nodes/hrn/stage: 2",
    ):
        assert text in report, text


# -- topology ---------------------------------------------------------------------------------


def test_topology_diff_covers_the_structural_fields(tmp_path):
    graph = ir.read(HYBRID / "quirks" / "rewritten_by_reference.t1c")
    other = ir.read(HYBRID / "quirks" / "rewritten_by_reference.t1c")
    assert ir.topology_diff(graph, other) == []
    other.nodes["hrn"].mode = "ann"
    other.nodes["smax1"].dim = -1
    other.nodes["gelu_exact"].approximate = True
    other.nodes["bn1"].running_mean = np.ones(8, dtype=np.float32)  # statistics: not topology
    assert sorted(ir.topology_diff(graph, other)) == [
        "node 'gelu_exact': approximate False became True",
        "node 'hrn': mode 'snn' became 'ann'",
        "node 'smax1': dim 1 became -1",
    ]


def test_topology_diff_looks_inside_nested_graphs():
    a = _graph(ir.Subgraph(graph=_inner()))
    inner = _inner()
    inner.nodes["relu"] = ir.Sigmoid(features=8)
    b = _graph(ir.Subgraph(graph=inner))
    assert ir.topology_diff(a, b) == [
        "node 'subgraph_1' (nested graph): node 'relu': type ReLU became Sigmoid"
    ]


def test_inspect_lists_a_nested_graphs_nodes():
    report = format_graph(_graph(ir.Affine(weight=f32(8, 8)), ir.Subgraph(graph=_inner())))
    assert "subgraph_2  Graph" in report and "graph=<graph: 4 nodes, 3 edges>" in report
    nested = report.split("nested graph 'subgraph_2' (topological order):")[1]
    assert "relu    ReLU" in nested and "lif     LIF" in nested and "  relu -> lif" in nested
