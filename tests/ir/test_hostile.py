"""Hostile files and hostile folders (issue 10): each test reproduces one reported hole.

Reads that hang, crawl or explode; files that make libhdf5 look for plugins; weights
that change without anyone noticing; names that reprogram the terminal; writes that
leave temporary files behind or replace a symbolic link.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from t1c import ir
from t1c.inspect import MAX_CELL, format_graph, format_verify
from t1c.ir import h5objects, reading
from t1c.ir.hashing import CHECKSUM_ATTRIBUTE, HASH_ATTRIBUTE, Digest

from .factories import chain, f32, lif, mlp

STR = h5py.string_dtype()


# -- 3. t1c inspect shows hostile text escaped and stays small -----------------------------


def test_inspect_escapes_terminal_control_and_bidi_characters():
    evil = "fc\x1b]0;owned\x07\x1b[2J"
    g = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([4])}),
        ir.Affine(weight=f32(2, 4)),
        ir.Output(),
        names=["input", evil, "out\u202etxt.exe"],
        metadata={"note\x1b[31m": "rtl \u202e override \u2066 isolate \x00 nul", "line": "a\nb"},
    )
    report = format_graph(g, path="net\x1b[2J.t1c")
    for raw in ("\x1b", "\x07", "\u202e", "\u2066", "\x00"):
        assert raw not in report
    assert "fc\\x1b]0;owned\\x07\\x1b[2J" in report
    assert "out\\u202etxt.exe" in report
    assert "a\\x0ab" in report  # a newline inside a value cannot start a fake line
    assert "\x1b" not in format_verify([f"node '{evil}' differs"], "a\x1b.t1c", "b.t1c")


def test_inspect_of_a_skip_with_20000_inputs_stays_small():
    n = 20_000
    nodes: dict[str, ir.Node] = {"input": ir.Input(input_type={"input": np.array([1])})}
    edges = []
    for i in range(n):
        nodes[f"b{i}"] = ir.Skip()
        edges.append(("input", f"b{i}"))
    nodes["cat"] = ir.Skip(skip_type="concatenate")
    nodes["output"] = ir.Output()
    edges += [(f"b{i}", "cat") for i in range(n)] + [("cat", "output")]
    g = ir.Graph(nodes, edges)
    assert g.output_shapes["cat"] == (n,)
    report = format_graph(g)
    lines = report.splitlines()
    # Every line is bounded (cells are cut at MAX_CELL), so the report is linear in the
    # node count: before, each of the 20,003 rows was padded to a 120 KB cell (2.3 GB).
    assert max(len(line) for line in lines) < 8 * MAX_CELL
    assert len(report) < 200 * len(lines)
    assert "(20,000 inputs)" in report


# -- 4. no HDF5 plugins, no unknown filters -------------------------------------------------


def _with_unknown_filter(path: Path) -> Path:
    ir.write(path, mlp())
    with h5py.File(path, "a") as f:
        del f["graph/nodes/fc1/weight"]
        d = f["graph/nodes/fc1"].create_dataset(
            "weight", shape=(6, 8), dtype="f4", chunks=(6, 8), compression=32004, allow_unknown_filter=True
        )
        d.id.write_direct_chunk((0, 0), np.zeros((6, 8), np.float32).tobytes())
    return path


def test_unknown_filter_is_refused_by_name_before_reading(tmp_path):
    # Before: libhdf5 searched its plugin folders for filter 32004 while reading.
    path = _with_unknown_filter(tmp_path / "lz4.t1c")
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(path)
    err = info.value
    assert (err.file, err.node, err.field) == (str(path), "fc1", "weight")
    assert "filter 32004" in str(err) and "gzip" in str(err)


def test_plugin_search_path_is_empty_while_reading_and_restored_after(tmp_path, monkeypatch):
    from h5py import h5pl

    path = tmp_path / "net.t1c"
    ir.write(path, mlp())
    before = [h5pl.get(i) for i in range(h5pl.size())]
    seen = []
    node_from = reading._Reader.node_from

    def spy(self, group, name):
        seen.append(h5pl.size())
        return node_from(self, group, name)

    monkeypatch.setattr(reading._Reader, "node_from", spy)
    ir.read(path)
    assert seen and set(seen) == {0}
    assert [h5pl.get(i) for i in range(h5pl.size())] == before


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_filters_t1c_writes_are_read(tmp_path, compression):
    path = tmp_path / "c.t1c"
    ir.write(path, mlp(), compression=compression)
    assert ir.topology_diff(mlp(), ir.read(path)) == []


# -- 8. only regular files; permission errors said as such ----------------------------------


def _read_in_thread(path) -> BaseException | None:
    """Read ``path`` on a daemon thread; fail the test if it blocks."""
    box: list[BaseException | None] = []

    def run():
        try:
            ir.read(path)
            box.append(None)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            box.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert box, f"ir.read('{path}') blocked"
    return box[0]


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.t1c"
    os.mkfifo(fifo)
    err = _read_in_thread(fifo)
    assert isinstance(err, ir.T1CFormatError) and "FIFO" in str(err) and err.file == str(fifo)


def test_fifo_given_to_ir_to_torch_is_refused_without_blocking(tmp_path):
    from t1c.bridge import ir_to_torch

    fifo = tmp_path / "pipe.t1c"
    os.mkfifo(fifo)
    box: list[BaseException] = []

    def run():
        try:
            ir_to_torch(fifo)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            box.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert box and isinstance(box[0], ir.T1CFormatError) and "FIFO" in str(box[0])


@pytest.mark.parametrize(
    ("path", "words"), [("/dev/zero", "character device"), ("/dev/null", "character device")]
)
def test_devices_are_refused_clearly(path, words):
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    err = _read_in_thread(path)
    assert isinstance(err, ir.T1CFormatError) and words in str(err), err
    with pytest.raises(ir.T1CFormatError, match=words):
        ir.read_version(path)


def test_folder_is_refused(tmp_path):
    with pytest.raises(ir.T1CFormatError, match="folder"):
        ir.read(tmp_path)


def test_permission_denied_is_a_permission_error(tmp_path, monkeypatch):
    path = tmp_path / "net.t1c"
    ir.write(path, mlp())
    real_open = os.open

    def denied(file, flags, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    for reader in (ir.read, ir.read_version):
        with pytest.raises(PermissionError, match="permission denied") as info:
            reader(path)
        assert "not an HDF5 file" not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_a_permission_error(tmp_path):
    path = tmp_path / "net.t1c"
    ir.write(path, mlp())
    path.chmod(0)
    try:
        with pytest.raises(PermissionError, match="permission denied"):
            ir.read(path)
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


# -- 9. validation is linear ----------------------------------------------------------------


class _CountingList(list):
    """A list that counts full iterations (what a per-node edge scan does)."""

    def __init__(self, items):
        super().__init__(items)
        self.scans = 0

    def __iter__(self):
        self.scans += 1
        return super().__iter__()


def test_validation_scans_the_edge_list_a_constant_number_of_times():
    # Before: predecessors()/successors() scanned every edge for every node (680 s for a
    # 100k-node chain). Counting scans proves the fix without timing anything.
    g = chain(2_000)
    g.edges = _CountingList(g.edges)
    g.validate()
    assert g.edges.scans <= 5
    assert g.predecessors("n5") == ["n4"] and g.successors("n5") == ["n6"]
    assert g.edges.scans <= 6


def test_10k_node_chain_builds_writes_and_reads(tmp_path):
    g = chain(10_000)
    path = tmp_path / "chain.t1c"
    ir.write(path, g)
    back = ir.read(path)
    assert back.topological_order() == [f"n{i}" for i in range(10_000)]


def test_adjacency_follows_a_replaced_or_extended_edge_list():
    g = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([4])}), ir.Skip(), ir.Skip(), ir.Output(), names="abcd"
    )
    assert g.successors("a") == ["b"]
    g.edges.append(("a", "c"))
    assert g.successors("a") == ["b", "c"]
    g.edges = [("a", "c"), ("c", "d"), ("a", "b"), ("b", "d")]
    assert g.predecessors("d") == ["c", "b"]


# -- 10. decompression bomb: absolute budget, checked before reading ------------------------


def _gzip_zero_bomb(path: Path, side: int = 32768, chunk: int = 1024) -> Path:
    """A file holding an all-zero ``side`` x ``side`` float32 weight, gzip-compressed.

    Every chunk is written pre-compressed (write_direct_chunk), so building a 4 GiB
    weight takes a moment and about 4 MB of disk.
    """
    g = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([side])}), ir.Affine(weight=np.zeros((1, side))), ir.Output()
    )
    ir.write(path, g, content_hash=False)
    packed = zlib.compress(np.zeros((chunk, chunk), np.float32).tobytes(), 9)
    with h5py.File(path, "a") as f:
        del f["graph/nodes/affine_1/weight"]
        del f["graph/nodes/affine_1/bias"]
        d = f["graph/nodes/affine_1"].create_dataset(
            "weight", shape=(side, side), dtype="f4", chunks=(chunk, chunk), compression="gzip"
        )
        for i in range(0, side, chunk):
            for j in range(0, side, chunk):
                d.id.write_direct_chunk((i, j), packed)
        f["graph/nodes/affine_1"].create_dataset("bias", data=np.zeros(side, np.float32))
    return path


_BOMB_READER = """
import resource, sys
from t1c import ir
try:
    ir.read(sys.argv[1])
    print("read")
except ir.T1CFormatError as err:
    print("refused:", err)
print("peak_mib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_gzip_bomb_is_refused_before_it_is_decompressed(tmp_path):
    # Before: this 4.3 MB file made ir.read allocate 4 GiB (gzip stays under the
    # 4096x-file-size rule), and a raw numpy MemoryError escaped under a memory limit.
    path = _gzip_zero_bomb(tmp_path / "bomb.t1c")
    assert path.stat().st_size < 8 * 2**20
    result = subprocess.run(
        [sys.executable, "-c", _BOMB_READER, str(path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "refused:" in out and "max_bytes" in out and "affine_1" in out, out
    peak = int(out.rsplit("peak_mib", 1)[1])
    assert peak < 1024, f"reading the bomb peaked at {peak} MiB"


def test_max_bytes_is_the_budget_and_can_be_raised(tmp_path):
    path = tmp_path / "net.t1c"
    ir.write(path, mlp(n_in=256, hidden=256))
    with pytest.raises(ir.T1CFormatError, match="max_bytes") as info:
        ir.read(path, max_bytes=100_000)
    assert info.value.node is not None
    assert ir.read(path, max_bytes=10**7).nodes["fc1"].weight.shape == (256, 256)


def test_memory_error_becomes_a_format_error(tmp_path, monkeypatch):
    path = tmp_path / "net.t1c"
    ir.write(path, mlp())

    read = h5objects.OpenDataset.read  # where every dataset's array is allocated and read

    def no_memory(self):
        if self.ndim == 2:  # the first weight matrix
            raise MemoryError("Unable to allocate 4.00 GiB")
        return read(self)

    monkeypatch.setattr(h5objects.OpenDataset, "read", no_memory)
    with pytest.raises(ir.T1CFormatError, match="ran out of memory") as info:
        ir.read(path)
    assert info.value.file == str(path) and info.value.node == "fc1"


# -- 11. inferred shapes are bounded ---------------------------------------------------------


def _upsample_bomb() -> tuple[dict, list]:
    nodes = {
        "input": ir.Input(input_type={"input": np.array([1, 4, 4])}),
        "up": ir.Upsample(scale_factor=65536),
        "pool": ir.AvgPool2d(kernel_size=65536),
        "output": ir.Output(),
    }
    return nodes, [("input", "up"), ("up", "pool"), ("pool", "output")]


def test_upsample_bomb_is_refused_naming_the_node(tmp_path):
    # Before: an 18 KB file read and imported, then the first forward pass asked for 256 GiB.
    nodes, edges = _upsample_bomb()
    with pytest.raises(ir.T1CFormatError, match="max_elements") as info:
        ir.Graph(nodes, edges)
    assert info.value.node == "up" and "[1, 262144, 262144]" in str(info.value)
    path = tmp_path / "bomb.t1c"
    ir.write(path, ir.Graph(nodes, edges, max_elements=2**40))
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(ir.T1CFormatError, match="node 'up'"):
        ir.read(path)
    assert ir.read(path, max_elements=2**40).output_shapes["pool"] == (1, 4, 4)


# -- 14. one rule for non-finite values ------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ir.Affine(weight=np.full((2, 2), np.nan)), "weight"),
        (lambda: ir.Affine(weight=np.ones((2, 2)), bias=[0.0, np.inf]), "bias"),
        (lambda: ir.Affine(weight=np.full((2, 2), 1e300)), "weight"),
        (lambda: ir.Conv2d(weight=np.full((1, 1, 1, 1), -np.inf)), "weight"),
        (
            lambda: ir.SepConv2d(depthwise_weight=np.ones((1, 1, 1, 1)), pointwise_weight=[[[[np.nan]]]]),
            "pointwise",
        ),
        (lambda: lif(3, threshold=np.inf), "v_threshold"),
        (lambda: ir.LIF(tau=[5.0], r=[np.nan], v_leak=[0.0], v_threshold=[1.0]), "r"),
        (lambda: ir.LIF(tau=[np.inf], r=[1.0], v_leak=[0.0], v_threshold=[1.0]), "tau"),
        (lambda: ir.LIF(tau=[np.inf], r=[np.inf], v_leak=[0], v_threshold=[1], beta=[0.5]), "tau"),
        (lambda: ir.LIF(tau=[5.0], r=[5.0], v_leak=[0], v_threshold=[1], beta=[5.0]), "beta"),
        (lambda: ir.LIF(tau=[5.0], r=[5.0], v_leak=[0], v_threshold=[1], beta=[-1.0]), "beta"),
        (
            lambda: ir.Affine(
                weight=np.ones((2, 2), int), weight_int=np.ones((2, 2), int), weight_scale=np.inf
            ),
            "weight_scale",
        ),
    ],
)
def test_non_finite_and_out_of_range_floats_are_refused(make, field):
    with pytest.raises(ir.T1CFormatError) as info:
        make()
    assert info.value.field is not None and info.value.field.startswith(field)


def test_beta_one_keeps_infinite_tau_and_r():
    node = ir.LIF(tau=[np.inf, 2.0], r=[np.inf, 2.0], v_leak=[0, 0], v_threshold=[1, 1], beta=[1.0, 0.5])
    assert np.isposinf(node.tau[0]) and np.isposinf(node.r[0])


def test_float64_overflow_is_an_error_not_a_warning(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ir.T1CFormatError, match="overflows float32"):
            ir.Affine(weight=np.full((2, 2), 1e300))


# -- 15. content hash ------------------------------------------------------------------------


def _weight_offset(path: Path, dataset: str) -> tuple[int, int]:
    with h5py.File(path, "r") as f:
        d = f[dataset]
        return d.id.get_offset(), d.id.get_storage_size()


def test_content_hash_is_written_and_verified(tmp_path):
    path = tmp_path / "net.t1c"
    g = mlp(metadata={"run": {"lr": 0.01, "tags": ["a", "b"], "ok": True, "n": 3, "arr": np.arange(3)}})
    ir.write(path, g)
    with h5py.File(path, "r") as f:
        assert len(f.attrs[CHECKSUM_ATTRIBUTE]) == 64
        assert HASH_ATTRIBUTE not in f.attrs
    assert ir.read(path).metadata["run"]["n"] == 3
    ir.write(path, g, content_hash=False)
    with h5py.File(path, "r") as f:
        assert HASH_ATTRIBUTE not in f.attrs and CHECKSUM_ATTRIBUTE not in f.attrs


def _flip_weight_bit(path: Path) -> None:
    """Flip the lowest mantissa bit of fc1's first weight: still a finite float32."""
    offset, _ = _weight_offset(path, "graph/nodes/fc1/weight")
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


def _add_sha256(path: Path, graph: ir.Graph) -> None:
    """Store the SHA-256 attribute t1c wrote before the checksum, as it wrote it."""
    with Digest(HASH_ATTRIBUTE) as digest:
        for name, node in graph.nodes.items():
            digest.add(name, node)
        value = digest.hexdigest(graph.edges, graph.metadata)
    with h5py.File(path, "a") as f:
        f.attrs.create(HASH_ATTRIBUTE, value, dtype=STR)


def test_a_flipped_weight_bit_is_refused_by_the_checksum(tmp_path):
    path = tmp_path / "net.t1c"
    ir.write(path, mlp(n_in=64, hidden=32))
    _flip_weight_bit(path)
    with pytest.raises(ir.T1CFormatError, match="content hash does not match") as info:
        ir.read(path)
    assert (info.value.file, info.value.field) == (str(path), CHECKSUM_ATTRIBUTE)
    assert f"'{path}'" in str(info.value) and CHECKSUM_ATTRIBUTE in str(info.value)
    ir.read(path, validate=False)  # still inspectable


def test_a_file_with_only_the_sha256_still_verifies(tmp_path):
    # Every file t1c wrote before the checksum: the SHA-256 of every byte is checked.
    path, g = tmp_path / "old.t1c", mlp(n_in=64, hidden=32)
    ir.write(path, g, content_hash=False)
    _add_sha256(path, g)
    assert ir.topology_diff(ir.read(path), g) == []
    _flip_weight_bit(path)
    with pytest.raises(ir.T1CFormatError, match="content hash does not match") as info:
        ir.read(path)
    assert (info.value.file, info.value.field) == (str(path), HASH_ATTRIBUTE)


def test_a_file_whose_checksum_and_sha256_disagree_is_refused(tmp_path):
    path, g = tmp_path / "both.t1c", mlp(n_in=64, hidden=32)
    ir.write(path, g)
    _add_sha256(path, g)
    assert ir.topology_diff(ir.read(path), g) == []  # both present and right: read
    other = mlp(n_in=64, hidden=32)
    other.nodes["fc1"].weight[0, 0] += 1.0
    with h5py.File(path, "a") as f:
        del f.attrs[HASH_ATTRIBUTE]
    _add_sha256(path, other)  # the SHA-256 of another graph: the checksum still matches
    with pytest.raises(ir.T1CFormatError, match="content hash does not match") as info:
        ir.read(path)
    assert info.value.field == HASH_ATTRIBUTE


def test_a_file_with_neither_check_reads_as_it_is(tmp_path):
    # The reference toolchain's files carry neither: nothing to verify, the weights as stored.
    path, g = tmp_path / "plain.t1c", mlp(n_in=64, hidden=32)
    ir.write(path, g, content_hash=False)
    _flip_weight_bit(path)
    back = ir.read(path).nodes["fc1"].weight
    want = g.nodes["fc1"].weight.copy()
    want.view(np.uint32)[0, 0] ^= 1
    assert np.array_equal(back, want)


@pytest.mark.parametrize("seed", range(8))
def test_random_byte_edits_to_weights_are_detected(tmp_path, seed):
    # Before: 37 random byte edits read back as valid graphs with different weights.
    path = tmp_path / "net.t1c"
    ir.write(path, mlp(n_in=64, hidden=32))
    offset, size = _weight_offset(path, "graph/nodes/fc1/weight")
    rng = np.random.default_rng(seed)
    data = bytearray(path.read_bytes())
    for pos in rng.choice(size, size=int(rng.integers(1, 4)), replace=False):
        data[offset + int(pos)] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(path)
    assert info.value.file == str(path)
    message = str(info.value)
    assert "content hash" in message or "nan" in message or "inf" in message, message
    if "content hash" in message:
        ir.read(path, validate=False)  # still inspectable


def test_edited_metadata_and_edges_are_detected(tmp_path):
    path = tmp_path / "net.t1c"
    ir.write(path, mlp(metadata={"note": "x"}))
    with h5py.File(path, "a") as f:
        del f["graph/metadata/note"]
        f["graph/metadata"].create_dataset("note", data="y", dtype=STR)
    with pytest.raises(ir.T1CFormatError, match="content hash") as info:
        ir.read(path)
    assert info.value.field == CHECKSUM_ATTRIBUTE


@pytest.mark.parametrize("attribute", [CHECKSUM_ATTRIBUTE, HASH_ATTRIBUTE])
@pytest.mark.parametrize("value", ["not a hash", np.int64(3)])
def test_malformed_hash_attribute_is_refused(tmp_path, value, attribute):
    path = tmp_path / "net.t1c"
    ir.write(path, mlp())
    with h5py.File(path, "a") as f:
        f.attrs[attribute] = value
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(path)
    assert info.value.field == attribute


# -- 16. NUL in names ------------------------------------------------------------------------


def test_node_name_with_nul_is_refused_by_the_graph():
    with pytest.raises(ir.T1CFormatError, match="NUL") as info:
        ir.Graph.from_chain(
            ir.Input(input_type={"input": np.array([2])}),
            ir.Skip(),
            ir.Output(),
            names=["in", "a\x00b", "out"],
        )
    assert info.value.node == "'a\\x00b'"


def test_metadata_key_with_nul_is_refused(tmp_path):
    with pytest.raises(ir.T1CFormatError, match="NUL"):
        ir.write(tmp_path / "m.t1c", mlp(metadata={"a\x00b": 1}))


def test_read_version_and_read_agree_on_hostile_text_version(tmp_path):
    path = tmp_path / "net.t1c"
    ir.write(path, mlp())
    with h5py.File(path, "a") as f:
        del f["version"]
        f.create_dataset("version", data="1.0\x1b[2J", dtype=STR)
    assert ir.read_version(path) == "1.0\x1b[2J"
    with pytest.raises(ir.T1CFormatError, match="version"):
        ir.read(path)


# -- 19. strings sharing one stored string ---------------------------------------------------


def _point_at_one_string(path: Path, names: list[str], text: str) -> None:
    """Make every string of the datasets ``names`` (contiguous, already in the file) refer to
    one stored copy of ``text``: a variable-length string is a 16-byte reference to its
    bytes, so the file stays small however many references there are."""
    with h5py.File(path, "a") as f:
        first = f[names[0]]
        first[(0,) if first.shape else ()] = text
        offsets = [(f[n].id.get_offset(), f[n].size) for n in names]
    with open(path, "r+b") as fh:
        fh.seek(offsets[0][0])
        reference = fh.read(16)
        for offset, count in offsets:
            fh.seek(offset)
            fh.write(reference * count)


_STRING_BOMB_READER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))  # before: it took all of this
from t1c import ir
try:
    ir.read(sys.argv[1])
    print("read")
except ir.T1CFormatError as err:
    print("refused:", err)
# This process's own high-water mark (ru_maxrss would keep a large parent's across exec).
with open("/proc/self/status") as status:
    print("peak_mib", next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024)
"""


def test_many_references_to_one_long_string_are_refused_with_bounded_memory(tmp_path):
    # Before: this 1 MB file (60000 references to one 100 kB string) made ir.read
    # allocate 6 GB ("memory allocation failed for VL data" under a 3 GiB limit).
    path = tmp_path / "strings.t1c"
    ir.write(path, mlp(), content_hash=False)
    with h5py.File(path, "a") as f:
        f["graph"].create_group("metadata").create_dataset("notes", shape=(60000,), dtype=STR)
    _point_at_one_string(path, ["graph/metadata/notes"], "x" * 100_000)
    assert path.stat().st_size < 2 * 2**20
    result = subprocess.run(
        [sys.executable, "-c", _STRING_BOMB_READER, str(path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (
        "refused:" in out and "field 'metadata/notes'" in out and "strings sharing one stored string" in out
    ), out
    peak = int(out.rsplit("peak_mib", 1)[1])
    assert peak < 400, f"reading the string bomb peaked at {peak} MiB"


def test_many_scalar_strings_sharing_one_stored_string_are_refused(tmp_path):
    # Before: 200 metadata entries referring to one 1 MiB string read as 200 MiB of text.
    path = tmp_path / "scalars.t1c"
    ir.write(path, mlp(), content_hash=False)
    names = [f"graph/metadata/k{i}" for i in range(200)]
    with h5py.File(path, "a") as f:
        for name in names:
            f.create_dataset(name, data="", dtype=STR)
    _point_at_one_string(path, names, "y" * 2**20)
    assert path.stat().st_size < 2 * 2**20
    with pytest.raises(ir.T1CFormatError, match="strings sharing one stored string") as info:
        ir.read(path)
    assert info.value.field.startswith("metadata/k")


def test_an_honest_file_of_long_strings_reads(tmp_path):
    notes = [f"{i}:" + "z" * 5000 for i in range(2000)]  # 10 MB of text, every string stored
    path = tmp_path / "long.t1c"
    ir.write(path, mlp(metadata={"notes": notes, "one": "w" * 3_000_000}))
    back = ir.read(path).metadata
    assert back["notes"] == notes and back["one"] == "w" * 3_000_000


# -- 20. versions in ASCII only; NIR files said as such ---------------------------------------


def _with_version(tmp_path: Path, version: str) -> Path:
    path = tmp_path / "net.t1c"
    ir.write(path, mlp())
    with h5py.File(path, "a") as f:
        del f["version"]
        f.create_dataset("version", data=version, dtype=STR)
    return path


@pytest.mark.parametrize(
    "version",
    [
        "\u0660.\u0660.\u0661",  # Arabic-Indic digits: str.isdigit() is True, int() reads them
        "0.0.\u00b9",  # a superscript one
        "1" * 5000,  # before: int() refused it with Python's own "Exceeds the limit (4300 digits)"
        "0.0.1.2",
        "0..1",
        " 0.0.1",
    ],
)
def test_only_ascii_major_minor_patch_versions_are_accepted(tmp_path, version):
    path = _with_version(tmp_path, version)
    with pytest.raises(ir.T1CFormatError, match=r"MAJOR\.MINOR\.PATCH in ASCII digits") as info:
        ir.read(path)
    assert (info.value.file, info.value.field) == (str(path), "version")
    assert len(str(info.value)) < 300  # a 5000-digit version is not repeated whole


@pytest.mark.parametrize("version", ["0.0.1", "0.1", "0", "0.0.17"])
def test_versions_of_this_major_are_read(tmp_path, version):
    assert ir.read(_with_version(tmp_path, version)).nodes.keys() == mlp().nodes.keys()


def test_a_nir_file_is_named_as_such_with_how_to_convert_it(tmp_path):
    nir = pytest.importorskip("nir")
    graph = nir.NIRGraph.from_list(
        nir.Affine(np.ones((2, 3)), np.zeros(2)),
        nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
    )
    path = tmp_path / "model.nir"
    nir.write(path, graph)
    # Before: "is 1.0.8, a newer major format version than this t1c reads; upgrade t1c".
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(path)
    message = str(info.value)
    assert "is a NIR file" in message and "newer" not in message and "upgrade" not in message
    assert "t1c convert model.nir model.t1c --dt" in message and "T1CModule('model.nir', nir_dt=" in message
    assert info.value.file == str(path)


# -- 21. a full disk is an OSError that says so ----------------------------------------------

_FILE_SIZE_LIMITED_WRITER = """
import resource, signal, sys
import numpy as np
from t1c import ir
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
graph = ir.Graph.from_chain(
    ir.Input(input_type={"input": np.array([512])}), ir.Affine(weight=np.ones((512, 512))), ir.Output()
)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
try:
    ir.write(sys.argv[1], graph)
    print("written")
except OSError as err:
    print("OSError", err.errno, err)
except BaseException as err:
    print("other", type(err).__name__, err)
"""


@pytest.mark.parametrize("limit", [3000, 500_000])  # in the first metadata write; in the weight
def test_a_write_that_finds_no_room_is_an_oserror_naming_the_file(tmp_path, limit):
    # libhdf5's real write failure (the process may write files of at most `limit` bytes).
    # Before: a RuntimeError "Can't decrement id ref count (unable to extend file ...)".
    import errno

    path, before = tmp_path / "net.t1c", b"the previous file"
    path.write_bytes(before)
    result = subprocess.run(
        [sys.executable, "-c", _FILE_SIZE_LIMITED_WRITER, str(path), str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OSError {errno.EFBIG} "), result.stdout
    assert f"cannot write '{path}'" in result.stdout and "file size limit" in result.stdout
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["net.t1c"]


def test_a_full_disk_is_said_as_such(tmp_path, monkeypatch):
    # What h5py raises when libhdf5's write() gets ENOSPC; closing the file then fails too.
    import errno

    path = tmp_path / "net.t1c"
    ir.write(path, mlp(metadata={"v": "old"}))
    before = path.read_bytes()
    create = h5py.h5d.create
    calls = {"n": 0}

    def full(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(
                errno.ENOSPC,
                "Can't synchronously write data (file write failed: errno = 28, error message = "
                "'No space left on device')",
            )
        return create(*args, **kwargs)

    monkeypatch.setattr(h5py.h5d, "create", full)
    with pytest.raises(OSError, match="the disk is full") as info:
        ir.write(path, mlp(metadata={"v": "new"}))
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["net.t1c"]
