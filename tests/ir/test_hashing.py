"""The content hash (`t1c.ir.hashing`): a canonical encoding, so the graph written and the
graph read back hash alike; any change of meaning changes the hash; large nodes hashed on
worker threads give the same digest."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

from t1c import ir
from t1c.ir import hashing
from t1c.ir.hashing import HASH_ATTRIBUTE, Digest

from .factories import FACTORIES, graph_around, mlp


def _digest(graph: ir.Graph) -> str:
    with Digest() as d:
        for name, node in graph.nodes.items():
            d.add(name, node)
        return d.hexdigest(graph.edges, graph.metadata)


def _fed(value) -> str:
    h = hashlib.sha256()
    hashing._feed(h, value)
    return h.hexdigest()


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_the_hash_written_is_the_hash_of_the_graph_read_back(kind, tmp_path):
    graph = graph_around(FACTORIES[kind]())
    path = tmp_path / "g.t1c"
    ir.write(path, graph)
    with h5py.File(path, "r") as f:
        stored = f.attrs[HASH_ATTRIBUTE]
    assert stored == _digest(graph) == _digest(ir.read(path))


def test_a_change_of_weight_edge_order_or_metadata_changes_the_hash():
    base = _digest(mlp(metadata={"epoch": 1}))
    changed_weight = mlp(metadata={"epoch": 1})
    changed_weight.nodes["fc2"].weight[1, 2] += 1e-6
    changed_meta = mlp(metadata={"epoch": 2})
    renamed = mlp(metadata={"epoch": 1})
    renamed.nodes["lif2"].metadata = {"note": "x"}
    assert len({base, _digest(changed_weight), _digest(changed_meta), _digest(renamed)}) == 4


def test_nodes_are_hashed_by_name_whatever_the_order_they_are_added_in():
    g = mlp()
    with Digest() as d:
        for name in reversed(list(g.nodes)):
            d.add(name, g.nodes[name])
        assert d.hexdigest(g.edges, g.metadata) == _digest(g)


def test_large_nodes_hashed_on_threads_give_the_same_digest(monkeypatch):
    g = mlp(64, 512, 10)
    inline = _digest(g)
    monkeypatch.setattr(hashing, "_THREADED_BYTES", 0)  # every node on a worker thread
    assert _digest(g) == inline


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.arange(4, dtype=np.int32), np.arange(4, dtype=np.int64)),  # int storage width
        (np.arange(4, dtype=">i8"), np.arange(4, dtype="<i8")),  # byte order
        (np.ones(3, dtype=">f4"), np.ones(3, dtype="<f4")),
        (np.array([True, False]), np.array([1, 0], dtype=np.int64)),  # booleans as integers
        (b"text", "text"),  # strings as stored: bytes or str
        (np.bytes_(b"text"), "text"),
        (np.int64(7), 7),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (np.array(3.0), 3.0),  # 0-d arrays as their item
        (np.array([b"a", b"b"]), np.array(["a", "b"], dtype=object)),
        ({"a": 1, "b": None}, {"a": 1}),  # None entries are left out, as the writer does
        ({"b": 1, "a": 2}, {"a": 2, "b": 1}),  # keys sorted
    ],
)
def test_equal_meanings_hash_alike(a, b):
    assert _fed(a) == _fed(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.ones(3, dtype=np.float32), np.ones(3, dtype=np.float64)),  # float widths differ
        (np.ones((2, 3), dtype=np.float32), np.ones((3, 2), dtype=np.float32)),  # shape
        (1, 1.0),
        (1, True),
        ("1", 1),
        ({"a": 1}, {"a": 2}),
        ("ab", ["a", "b"]),
    ],
)
def test_different_meanings_hash_differently(a, b):
    assert _fed(a) != _fed(b)


def test_a_nested_graph_is_hashed_by_its_content():
    inner = FACTORIES["subgraph"]().graph
    other = FACTORIES["subgraph"]().graph
    assert _fed(inner) == _fed(other)
    other.nodes["relu"].negative_slope = 0.5
    assert _fed(inner) != _fed(other)


@pytest.mark.parametrize(
    ("value", "name"), [(1j, "complex"), (object(), "object"), (np.ones(2) * 1j, "ndarray")]
)
def test_a_value_with_no_canonical_form_is_refused(value, name):
    # Before: a complex number or a plain object recursed until RecursionError.
    with pytest.raises(ir.T1CFormatError, match=f"cannot hash a value of type {name}"):
        _fed(value)
