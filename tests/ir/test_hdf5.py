"""Reading and writing `.t1c` files: fixtures, metadata, compression, atomicity, imports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from t1c import ir

from .factories import chain, f32, lif, mlp

# Parametrisation needs the names at collection time; the path is tests/conftest.py's.
FIXTURE_NAMES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "fixtures").glob("*.t1c"))

# -- fixtures from the reference toolchain ---------------------------------------------------


def _walk(path: Path) -> dict[str, tuple]:
    """Every dataset of a file: name -> (dtype, string info, shape, value); groups -> 'group'."""
    out: dict[str, tuple] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = (obj.dtype, h5py.check_string_dtype(obj.dtype), obj.shape, obj[()])
        else:
            out[name] = ("group",)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


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


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_rewritten_fixture_has_exactly_the_same_datasets(fixtures_dir, tmp_path, name):
    src = fixtures_dir / f"{name}.t1c"
    out = tmp_path / f"{name}.t1c"
    ir.write(out, ir.read(src))
    want, got = _walk(src), _walk(out)
    assert sorted(got) == sorted(want)
    for key, entry in want.items():
        if entry == ("group",):
            assert got[key] == ("group",), key
            continue
        dtype, strinfo, shape, value = entry
        gdtype, gstrinfo, gshape, gvalue = got[key]
        assert gdtype == dtype, f"{key}: {gdtype} != {dtype}"
        assert gstrinfo == strinfo, f"{key}: {gstrinfo} != {strinfo}"
        assert gshape == shape, key
        if strinfo is not None:
            assert strinfo.encoding == "utf-8" and strinfo.length is None, key
        np.testing.assert_array_equal(gvalue, value, err_msg=key)


def test_fixture_dtypes_cover_every_on_disk_kind(fixtures_dir, tmp_path):
    out = tmp_path / "conv.t1c"
    ir.write(out, ir.read(fixtures_dir / "conv_snn.t1c"))
    with h5py.File(out, "r") as f:
        nodes = f["graph/nodes"]
        assert h5py.check_string_dtype(f["version"].dtype).encoding == "utf-8"
        assert nodes["conv1/weight"].dtype == np.float32
        assert nodes["conv1/stride"].dtype == np.int64 and nodes["conv1/groups"].shape == ()
        assert nodes["pool1/ceil_mode"].dtype == np.bool_
        assert h5py.check_string_dtype(f["graph/edges/src"].dtype).length is None


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


def test_written_file_has_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "mode.t1c"
    ir.write(path, mlp())
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_without_fsync_gives_the_same_file(tmp_path):
    ir.write(tmp_path / "a.t1c", mlp())
    ir.write(tmp_path / "b.t1c", mlp(), fsync=False)
    assert (tmp_path / "a.t1c").read_bytes() == (tmp_path / "b.t1c").read_bytes()


# -- metadata ---------------------------------------------------------------------------------


METADATA = {
    "epoch": 7,
    "lr": 0.001,
    "name": "digits MLP \u00b5",
    "best": True,
    "frozen": False,
    "scales": np.array([0.5, 0.25], dtype=np.float32),
    "counts": np.arange(6, dtype=np.int64).reshape(2, 3),
    "mask": np.array([True, False, True]),
    "classes": ["zero", "one", "two"],
    "nested": {"trainer": {"max_epochs": 2, "precision": "32"}, "ok": True},
}


def _assert_metadata_equal(want, got, where="metadata"):
    assert list(got) == list(want), where
    for key, value in want.items():
        back = got[key]
        if isinstance(value, dict):
            _assert_metadata_equal(value, back, f"{where}/{key}")
        elif isinstance(value, np.ndarray):
            assert isinstance(back, np.ndarray) and back.dtype == value.dtype, f"{where}/{key}"
            np.testing.assert_array_equal(back, value)
        else:
            assert type(back) is type(value) and back == value, f"{where}/{key}: {back!r} != {value!r}"


def test_metadata_round_trip(tmp_path):
    path = tmp_path / "meta.t1c"
    ir.write(path, mlp(metadata=METADATA))
    _assert_metadata_equal(METADATA, ir.read(path).metadata)


def test_no_metadata_reads_as_empty_dict(tmp_path):
    path = tmp_path / "nometa.t1c"
    ir.write(path, mlp())
    with h5py.File(path, "r") as f:
        assert "metadata" not in f["graph"]
    assert ir.read(path).metadata == {}


@pytest.mark.parametrize(
    "metadata,field",
    [
        ({"val/acc": 0.9}, "metadata/val/acc"),
        ({"outer": {"a/b": 1}}, "metadata/outer/a/b"),
        ({"..": 1}, "metadata/.."),
        ({"huge": 2**70}, "metadata/huge"),
        ({"thing": object()}, "metadata/thing"),
        ({"grid": [["a", "b"], ["c", "d"]]}, "metadata/grid"),
    ],
)
def test_metadata_that_cannot_be_stored_is_refused(tmp_path, metadata, field):
    path = tmp_path / "bad_meta.t1c"
    with pytest.raises(ir.T1CFormatError) as info:
        ir.write(path, mlp(metadata=metadata))
    assert info.value.field == field
    assert info.value.file == str(path)
    assert not path.exists() and os.listdir(tmp_path) == []


# -- compression ----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_compressed_files_read_back_identically(tmp_path, compression):
    g = mlp(64, 256, 10)
    g.nodes["fc1"].weight[:128] = 0.0  # something compressible
    plain, packed = tmp_path / "plain.t1c", tmp_path / f"{compression}.t1c"
    ir.write(plain, g)
    ir.write(packed, g, compression=compression)
    assert packed.stat().st_size < plain.stat().st_size
    back = ir.read(packed)
    assert ir.topology_diff(g, back) == []
    for name, node in g.nodes.items():
        for field, value in node.to_fields().items():
            np.testing.assert_array_equal(back.nodes[name].to_fields()[field], value)
    want, got = _walk(plain), _walk(packed)
    assert sorted(want) == sorted(got)
    with h5py.File(packed, "r") as f:  # plain h5py sees ordinary datasets
        assert f["graph/nodes/fc1/weight"].compression == compression
        for key, entry in want.items():
            if entry != ("group",):
                np.testing.assert_array_equal(f[key][()], entry[3], err_msg=key)
                assert f[key].dtype == entry[0]


def test_gzip_level_and_unknown_compression(tmp_path):
    ir.write(tmp_path / "g9.t1c", mlp(), compression="gzip", compression_opts=9)
    with h5py.File(tmp_path / "g9.t1c", "r") as f:
        assert f["graph/nodes/fc1/weight"].compression_opts == 9
    with pytest.raises(ir.T1CFormatError, match="compression"):
        ir.write(tmp_path / "x.t1c", mlp(), compression="zstd")


def test_highly_compressed_zero_weights_are_not_mistaken_for_a_bomb(tmp_path):
    g = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([2048])}),
        ir.Affine(weight=np.zeros((2048, 2048), dtype=np.float32)),
        ir.Output(),
        names=["input", "fc", "output"],
    )
    path = tmp_path / "zeros.t1c"
    ir.write(path, g, compression="gzip", compression_opts=9)
    assert path.stat().st_size < 200_000
    assert not ir.read(path).nodes["fc"].weight.any()


# -- atomic writes ----------------------------------------------------------------------------


def _previous(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "net.t1c"
    ir.write(path, mlp(metadata={"version": "old"}))
    return path, path.read_bytes()


class Boom(RuntimeError):
    pass


def _raise_boom(*args, **kwargs):
    raise Boom("disk on fire")


@pytest.mark.parametrize("existing", [False, True])
def test_exception_from_a_node_leaves_no_partial_file(tmp_path, existing):
    path, before = _previous(tmp_path) if existing else (tmp_path / "net.t1c", None)
    g = mlp(metadata={"version": "new"})
    g.nodes["lif2"].to_fields = _raise_boom  # after fc1, lif1 and fc2 are written
    with pytest.raises(Boom):
        ir.write(path, g)
    assert os.listdir(tmp_path) == (["net.t1c"] if existing else [])
    if existing:
        assert path.read_bytes() == before
        assert ir.read(path).metadata == {"version": "old"}


def test_exception_from_h5py_part_way_leaves_the_old_file(tmp_path, monkeypatch):
    path, before = _previous(tmp_path)
    calls = {"n": 0}
    create = h5py.h5d.create  # what the writer makes every dataset with

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise OSError("no space left on device")
        return create(*args, **kwargs)

    monkeypatch.setattr(h5py.h5d, "create", flaky)
    with pytest.raises(OSError, match="no space"):
        ir.write(path, mlp(metadata={"version": "new"}))
    monkeypatch.undo()
    assert calls["n"] == 6
    assert os.listdir(tmp_path) == ["net.t1c"]
    assert path.read_bytes() == before


def test_interrupt_during_fsync_leaves_the_old_file(tmp_path, monkeypatch):
    path, before = _previous(tmp_path)

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ir.write(path, mlp(metadata={"version": "new"}), fsync=True)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["net.t1c"]
    assert path.read_bytes() == before


_KILLED_WRITER = r"""
import sys, time
import numpy as np
from t1c import ir

layers, names = [ir.Input(input_type={"input": np.array([1024])})], ["input"]
for i in range(6):
    layers += [ir.Affine(weight=np.full((1024, 1024), i, dtype=np.float32)),
               ir.LIF(tau=np.full(1024, 5.0), r=np.ones(1024), v_leak=np.zeros(1024),
                      v_threshold=np.ones(1024))]
    names += [f"fc{i}", f"lif{i}"]
g = ir.Graph.from_chain(*layers, ir.Output(), names=names + ["output"])

def stall(*a, **k):
    print("stalled", flush=True)
    time.sleep(120)

g.nodes["lif5"].to_fields = stall  # ~24 MB are on disk by then
ir.write(sys.argv[1], g)
"""


def test_killed_writer_leaves_the_previous_file_intact(tmp_path):
    path, before = _previous(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "stalled"
        temps = [p for p in tmp_path.iterdir() if p.name != "net.t1c"]
        assert len(temps) == 1 and temps[0].name.startswith(".net.t1c.")
        deadline = time.monotonic() + 30
        while temps[0].stat().st_size < 10 * 2**20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert temps[0].stat().st_size >= 10 * 2**20  # really mid-write
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    assert ir.read(path).metadata == {"version": "old"}
    # The killed writer's hidden temp file cannot be removed by it: the next write of the
    # same target removes it (before, every kill left one: 3.98 GB after 60 kills).
    ir.write(path, mlp(metadata={"version": "new"}))
    assert ir.read(path).metadata == {"version": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["net.t1c"]


# -- t1c.ir needs numpy and h5py only --------------------------------------------------------


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


def test_f32_helper_is_deterministic():
    np.testing.assert_array_equal(f32(3, 2), f32(3, 2))
    assert lif(3).shape == (3,)


# -- many small nodes: the low-level read and write paths -----------------------------------


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


def test_small_datasets_are_compact_and_plain_h5py_reads_every_one(tmp_path):
    g = mlp(n_in=64, hidden=32, metadata={"lr": 0.5, "tags": ["a", "b"], "nested": {"n": 3}})
    path = tmp_path / "net.t1c"
    ir.write(path, g)
    layouts = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            layouts[name] = obj.id.get_create_plist().get_layout()

    with h5py.File(path, "r") as f:
        f.visititems(visit)
        assert f["graph/nodes/fc1/type"][()] == b"Affine"
        assert f["graph/metadata/tags"][()].tolist() == [b"a", b"b"]
        assert f["graph/metadata/nested/n"][()] == 3 and f["graph/metadata/nested/n"].dtype == np.int64
        assert list(f["graph/nodes"]) == list(g.nodes)  # creation order, as written
        np.testing.assert_array_equal(f["graph/nodes/fc1/weight"][()], g.nodes["fc1"].weight)
    assert layouts["graph/nodes/fc1/type"] == layouts["graph/nodes/lif1/tau"] == h5py.h5d.COMPACT
    assert layouts["graph/nodes/fc1/weight"] == h5py.h5d.CONTIGUOUS  # 8 KB: its own block
    assert ir.read(path).metadata == {"lr": 0.5, "tags": ["a", "b"], "nested": {"n": 3}}


def _nested(tmp_path: Path) -> Path:
    inner = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([4])}),
        ir.Skip(),
        ir.Output(),
        names=["input", "mid", "output"],
    )
    outer = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([4])}),
        ir.Subgraph(graph=inner),
        ir.Output(),
        names=["input", "sub", "output"],
    )
    path = tmp_path / "nested.t1c"
    ir.write(path, outer, content_hash=False)
    assert list(ir.read(path).nodes["sub"].graph.nodes) == ["input", "mid", "output"]
    return path


def _soft_link(f, group, name, tmp_path):
    del f[f"{group}/{name}"]
    f[group][name] = h5py.SoftLink("/version")


def _external_link(f, group, name, tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as o:
        o["x"] = "passthrough"
    del f[f"{group}/{name}"]
    f[group][name] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")


def _external_storage(f, group, name, tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    del f[f"{group}/{name}"]
    f[group].create_dataset(name, shape=(8,), dtype="f8", external=[(str(tmp_path / "secret.bin"), 0, 64)])


def _unknown_filter(f, group, name, tmp_path):
    del f[f"{group}/{name}"]
    d = f[group].create_dataset(
        name, shape=(8,), dtype="f8", chunks=(8,), compression=32004, allow_unknown_filter=True
    )
    d.id.write_direct_chunk((0,), np.zeros(8).tobytes())


_REFUSED = {_soft_link: "SoftLink", _external_link: "ExternalLink"}
_OUTSIDE = {**_REFUSED, _external_storage: "external file", _unknown_filter: "filter 32004"}
_PLACES = {  # group, member -> (node, field) named by the error
    ("graph/nodes/sub/nodes/mid", "skip_type"): ("sub/mid", "skip_type"),  # a nested graph's node's field
    ("graph/nodes/sub/nodes", "mid"): ("sub/mid", "nodes"),  # the nested node's group itself
    ("graph/metadata/run", "lr"): (None, "metadata/run/lr"),  # nested metadata
}


@pytest.mark.parametrize(
    ("mutate", "words", "group", "name"),
    [
        (mutate, words, group, name)
        for (group, name) in _PLACES
        for mutate, words in (_REFUSED if name == "mid" else _OUTSIDE).items()
    ],
)
def test_links_and_outside_data_are_refused_wherever_they_are(tmp_path, mutate, words, group, name):
    path = _nested(tmp_path)
    if group.startswith("graph/metadata"):
        g = ir.read(path)
        g.metadata = {"run": {"lr": 0.5}}
        ir.write(path, g, content_hash=False)
    with h5py.File(path, "a") as f:
        mutate(f, group, name, tmp_path)
    with pytest.raises(ir.T1CFormatError, match=words) as info:
        ir.read(path)
    assert (info.value.file, info.value.node, info.value.field) == (str(path), *_PLACES[group, name])


def test_member_names_that_hdf5_would_take_as_a_path_are_refused(tmp_path):
    # A link named "a/b" (only a crafted file has one) would be opened through "a".
    path = tmp_path / "net.t1c"
    ir.write(path, mlp(), content_hash=False)
    with h5py.File(path, "a") as f:  # h5py's default format: names in an unchecked local heap
        m = f["graph"].create_group("metadata")
        m.create_group("a").create_dataset("b", data=1)
        m["aQb"] = 2
    data = path.read_bytes()
    assert data.count(b"aQb\0") == 1
    path.write_bytes(data.replace(b"aQb\0", b"a/b\0"))
    with pytest.raises(ir.T1CFormatError, match="names must be UTF-8 without '/'") as info:
        ir.read(path)
    assert info.value.field == "metadata"
