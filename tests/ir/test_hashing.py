"""The content checks (`t1c.ir.hashing`): a canonical encoding, so the graph written and the
graph read back check alike; any change of meaning changes them; large nodes hashed on
worker threads give the same digest; the checksum's block sums see what they promise to."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from t1c import ir
from t1c.ir import hashing
from t1c.ir.hashing import CHECKSUM_ATTRIBUTE, HASH_ATTRIBUTE, Digest

from .factories import FACTORIES, graph_around, mlp


def _digest(graph: ir.Graph, attribute: str = HASH_ATTRIBUTE) -> str:
    with Digest(attribute) as d:
        for name, node in graph.nodes.items():
            d.add(name, node)
        return d.hexdigest(graph.edges, graph.metadata)


def _fed(value, sums: bool = False) -> str:
    h = hashing._Feed(sums)
    hashing._feed(h, value)
    return h.sha.hexdigest()


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_the_checksum_written_is_the_checksum_of_the_graph_read_back(kind, tmp_path):
    graph = graph_around(FACTORIES[kind]())
    path = tmp_path / "g.t1c"
    ir.write(path, graph)
    with h5py.File(path, "r") as f:
        stored = f.attrs[CHECKSUM_ATTRIBUTE]
        assert HASH_ATTRIBUTE not in f.attrs  # the SHA-256 of every byte is no longer written
    assert stored == _digest(graph, CHECKSUM_ATTRIBUTE) == _digest(ir.read(path), CHECKSUM_ATTRIBUTE)
    assert stored != _digest(graph)


def test_the_sha256_of_every_byte_is_what_t1c_wrote_before():
    # Computed by the writer before the checksum (commit 5e1f25c): its files still verify.
    expected = "147d31ac6930ab9077ebc47b077228d3985ef0b6553a9c45f0a5a05c20b9c5f7"
    assert _digest(mlp(metadata={"epoch": 1})) == expected


@pytest.mark.parametrize("attribute", [CHECKSUM_ATTRIBUTE, HASH_ATTRIBUTE])
def test_a_change_of_weight_edge_order_or_metadata_changes_the_hash(attribute):
    base = _digest(mlp(metadata={"epoch": 1}), attribute)
    changed_weight = mlp(metadata={"epoch": 1})
    changed_weight.nodes["fc2"].weight[1, 2] += 1e-6
    changed_meta = mlp(metadata={"epoch": 2})
    renamed = mlp(metadata={"epoch": 1})
    renamed.nodes["lif2"].metadata = {"note": "x"}
    changed = [_digest(g, attribute) for g in (changed_weight, changed_meta, renamed)]
    assert len({base, *changed}) == 4


@pytest.mark.parametrize("attribute", [CHECKSUM_ATTRIBUTE, HASH_ATTRIBUTE])
def test_nodes_are_hashed_by_name_whatever_the_order_they_are_added_in(attribute):
    g = mlp()
    with Digest(attribute) as d:
        for name in reversed(list(g.nodes)):
            d.add(name, g.nodes[name])
        assert d.hexdigest(g.edges, g.metadata) == _digest(g, attribute)


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
    assert _fed(a, sums=True) == _fed(b, sums=True)


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
    assert _fed(a, sums=True) != _fed(b, sums=True)


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


# -- the checksum's block sums --------------------------------------------------------------


def _sums(arr: np.ndarray) -> bytes:
    return hashing._block_sums(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def test_block_sums_are_the_documented_fletcher_sums():
    data = np.arange(3 * 512 + 5, dtype=np.uint64)  # three whole 4 KiB blocks and a padded tail
    words = np.zeros(4 * 512, dtype=np.uint64)
    words[: data.size] = data
    s = [int(b) for b in words.reshape(4, 512).sum(axis=1)]
    a, b = sum(s) % 2**64, sum((4 - j) * v for j, v in enumerate(s)) % 2**64
    assert _sums(data) == b"W" + a.to_bytes(8, "little") + b.to_bytes(8, "little")
    assert _sums(np.zeros(0, np.float32)) == b"W" + bytes(16)


def test_block_sums_see_flips_bursts_and_moved_blocks():
    rng = np.random.default_rng(0)
    base = rng.standard_normal(5 * 1024 + 7, dtype=np.float32)  # 5 blocks and a tail
    seen = _sums(base)
    raw = base.view(np.uint8)
    for bit in range(0, raw.size * 8, 997):  # single bit flips everywhere
        flipped = raw.copy()
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert _sums(flipped) != seen, bit
    burst = raw.copy()
    burst[100:108] = ~burst[100:108]  # a 64-bit burst
    assert _sums(burst) != seen
    blocks = raw[: 5 * 4096].reshape(5, 4096)
    swapped = np.concatenate([blocks[[1, 0, 2, 3, 4]].reshape(-1), raw[5 * 4096 :]])
    zeroed = raw.copy()
    zeroed[4096:8192] = 0
    assert len({seen, _sums(swapped), _sums(zeroed)}) == 3


def test_weights_of_a_graph_enter_the_checksum_by_their_sums():
    # Two arrays with the same block sums give the same checksum: the words of one block
    # swapped (the documented blind spot); a changed value does not.
    g, swapped, changed = mlp(), mlp(), mlp()
    w = swapped.nodes["fc1"].weight.reshape(-1)
    w[[0, 2]] = w[[2, 0]]  # two 64-bit words (float pairs) of the first block exchanged
    w[[1, 3]] = w[[3, 1]]
    changed.nodes["fc1"].weight[0, 0] += 1.0
    checksum = _digest(g, CHECKSUM_ATTRIBUTE)
    assert _digest(swapped, CHECKSUM_ATTRIBUTE) == checksum != _digest(changed, CHECKSUM_ATTRIBUTE)
    assert _digest(swapped) != _digest(g)  # the SHA-256 of every byte sees it
