"""Writing `.t1c` files (`t1c.ir.writing`): the reference layout and dtypes, the same bytes as
h5py's create_dataset makes, metadata, compression, atomicity."""

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
from t1c.ir import writing

from .factories import f32, lif, mlp

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


def test_f32_helper_is_deterministic():
    np.testing.assert_array_equal(f32(3, 2), f32(3, 2))
    assert lif(3).shape == (3,)


# -- layout: what HDF5 objects the writer makes ------------------------------------------


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


# -- the same bytes as h5py's create_dataset makes, every time ----------------------------


def _exported_like() -> ir.Graph:
    """A graph as the export callback writes one: integer weights and nested metadata with
    scalars, strings, lists and arrays of several dtypes, small (compact) and larger ones."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.integers(-127, 128, size=(32, 16)), rng.integers(-127, 128, size=(10, 32))
    affine = {
        n: ir.Affine(
            weight=(w * 0.01).astype(np.float32),
            bias=(np.arange(w.shape[0]) * 0.01).astype(np.float32),
            weight_int=w.astype(np.int32),
            weight_scale=0.01,
            bias_int=np.arange(w.shape[0], dtype=np.int32),
        )
        for n, w in (("fc1", w1), ("fc2", w2))
    }
    metadata = {
        "producer": "t1c",
        "t1c_export": {
            "epoch": 2,
            "integer_weights": True,
            "weights": "live model at the checkpoint's save",
            "metrics": {"t1c": {"quant_acc": 0.94, "num_samples": 359.0}, "val_loss": 0.18},
            "source_hash": "ab" * 32,
        },
        "größe": [1, 2, 3],  # a non-ASCII name for an array
        "tags": ["a", "ß"],
        "big": np.arange(300.0),  # 2400 bytes: contiguous
        "ints": np.arange(8, dtype=np.int32),
        "flags": np.array([True, False]),
        "half": np.ones((2, 3), np.float16),
    }
    return ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([16])}),
        affine["fc1"],
        lif(32),
        affine["fc2"],
        lif(10),
        ir.Output(),
        names=["input", "fc1", "lif1", "fc2", "lif2", "output"],
        metadata=metadata,
    )


def _datasets(path: Path) -> dict[str, tuple]:
    """Every dataset: name -> (file type, shape, creation properties, value, link charset)."""
    out: dict[str, tuple] = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                parent, _, leaf = name.rpartition("/")
                gid = f[parent or "/"].id  # held: the link proxy does not keep it open
                cset = gid.links.get_info(leaf.encode()).cset
                out[name] = (obj.id.get_type(), obj.shape, obj.id.get_create_plist(), obj[()], cset)

        f.visititems(visit)
    return out


def _as_create_dataset_writes(path: Path, reference: Path, compression: str | None) -> None:
    """Write every dataset of ``path`` again with ``create_dataset``, as t1c wrote arrays
    before it used the low-level API (compact layout asked for up to ``_COMPACT_BYTES``)."""
    with h5py.File(path, "r") as src, h5py.File(reference, "w", libver=writing.LIBVER) as dst:

        def copy(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            data = obj[()]
            if h5py.check_string_dtype(obj.dtype) is not None:
                text = data.decode() if isinstance(data, bytes) else [v.decode() for v in data]
                data = np.array(text, dtype=h5py.string_dtype())
            kwargs: dict = {}
            field = name.startswith("graph/nodes/") and data.dtype.kind in "fiub"  # a node's numbers
            if compression and field and data.size > 1:
                kwargs = {"compression": compression}
            elif data.size * data.dtype.itemsize <= writing.COMPACT_BYTES:
                kwargs = {"dcpl": h5py.h5p.create(h5py.h5p.DATASET_CREATE)}
                kwargs["dcpl"].set_layout(h5py.h5d.COMPACT)
            dst.require_group(name.rpartition("/")[0] or "/").create_dataset(
                name.rpartition("/")[2], data=data, dtype=data.dtype, **kwargs
            )

        src.visititems(copy)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_same_graph_same_bytes_and_datasets_as_create_dataset_makes_them(tmp_path, compression):
    g = _exported_like()
    a, b, ref = tmp_path / "a.t1c", tmp_path / "b.t1c", tmp_path / "ref.h5"
    ir.write(a, g, compression=compression)
    ir.write(b, _exported_like(), compression=compression, fsync=True)
    assert a.read_bytes() == b.read_bytes()

    _as_create_dataset_writes(a, ref, compression)
    ours, theirs = _datasets(a), _datasets(ref)
    assert list(ours) == list(theirs) and len(ours) > 40
    layouts = set()
    for name, (ftype, shape, dcpl, value, cset) in ours.items():
        rtype, rshape, rdcpl, rvalue, rcset = theirs[name]
        if shape == ():  # create_dataset ignores a layout for scalars; t1c stores them compact
            assert rdcpl.get_layout() == h5py.h5d.CONTIGUOUS, name
            rdcpl = rdcpl.copy()
            rdcpl.set_layout(h5py.h5d.COMPACT)
        assert ftype.equal(rtype), name
        assert shape == rshape, name
        assert dcpl.get_layout() == rdcpl.get_layout(), name
        assert dcpl.get_nfilters() == rdcpl.get_nfilters(), name
        assert [dcpl.get_filter(i)[:3] for i in range(dcpl.get_nfilters())] == [
            rdcpl.get_filter(i)[:3] for i in range(rdcpl.get_nfilters())
        ], name
        assert dcpl == rdcpl, name  # every creation property (H5Pequal): time stamps, fill value, chunks
        assert not dcpl.get_obj_track_times(), name
        np.testing.assert_array_equal(value, rvalue, err_msg=name)
        assert cset == rcset, name  # link names encoded as h5py encodes them
        layouts.add(dcpl.get_layout())
    assert h5py.h5d.COMPACT in layouts
    assert (h5py.h5d.CHUNKED if compression else h5py.h5d.CONTIGUOUS) in layouts
    assert ours["graph/metadata/big"][2].get_layout() == h5py.h5d.CONTIGUOUS
    assert ours["graph/metadata/größe"][0].dtype == np.int64
    back = ir.read(a)
    assert back.content_hash() == g.content_hash()
    assert back.metadata["größe"].tolist() == [1, 2, 3] and back.metadata["tags"] == ["a", "ß"]
