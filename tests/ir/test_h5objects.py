"""Opening a file's objects (`t1c.ir.h5objects`): links listed once and never followed, data
outside the file and unknown filters refused on opening, a dataset's dtype, shape and stored
size fetched once (and matching what h5py itself reports)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from t1c import ir
from t1c.ir import h5objects
from t1c.ir.h5objects import OpenDataset, OpenGroup, open_root
from t1c.ir.limits import STRING_COST, ByteBudget, open_hdf5


def _file(tmp_path: Path, fill) -> Path:
    path = tmp_path / "f.h5"
    with h5py.File(path, "w", track_order=True) as f:
        fill(f)
    return path


def _open(path: Path):
    return open_hdf5(str(path), path.stat().st_size)


def test_a_group_lists_its_links_once_in_creation_order_when_asked(tmp_path):
    def fill(f):
        g = f.create_group("g", track_order=True)
        for name in ("b", "a", "c"):
            g[name] = 1
        g.create_group("sub")

    path = _file(tmp_path, fill)
    with _open(path) as fid:
        root = open_root(fid)
        assert list(root.links) == ["g"]
        ordered = root.child("g", None, "g", want="group", ordered=True)
        by_name = root.child("g", None, "g", want="group")
        assert list(ordered.links) == ["b", "a", "c", "sub"]
        assert list(by_name.links) == ["a", "b", "c", "sub"]
        assert isinstance(ordered.child("sub", None, "sub", want="any"), OpenGroup)
        assert isinstance(ordered.child("a", None, "a", want="any"), OpenDataset)


@pytest.mark.parametrize(
    ("name", "want", "words"),
    [
        ("nope", "dataset", "is missing"),
        ("d", "group", "must be a group"),
        ("g", "dataset", "must be a dataset"),
    ],
)
def test_a_child_of_the_wrong_kind_or_missing_is_refused_naming_it(tmp_path, name, want, words):
    def fill(f):
        f["d"] = 1.0
        f.create_group("g")

    with _open(_file(tmp_path, fill)) as fid:
        with pytest.raises(ir.T1CFormatError, match=words) as info:
            open_root(fid).child(name, "node", "field", want=want)
    assert (info.value.node, info.value.field) == ("node", "field")


def test_a_dataset_knows_its_dtype_shape_and_storage_as_h5py_does(tmp_path):
    def fill(f):
        f["w"] = np.arange(6, dtype=np.float32).reshape(2, 3)
        f["s"] = "text"
        f["names"] = np.array(["a", "bc"], dtype=h5py.string_dtype())
        f["flag"] = np.bool_(True)
        f["big"] = np.arange(5, dtype=">i2")  # a type t1c does not write: h5py translates it

    path = _file(tmp_path, fill)
    names = ("w", "s", "names", "flag", "big")
    with h5py.File(path, "r") as f:  # what h5py's high-level API reports
        want = {
            n: (
                f[n].dtype,
                f[n].shape,
                f[n].id.get_storage_size(),
                h5py.check_string_dtype(f[n].dtype),
                f[n][()],
            )
            for n in names
        }
    with _open(path) as fid:
        root = open_root(fid)
        for name in names:
            dtype, shape, stored, strinfo, value = want[name]
            dset = root.child(name, None, name)
            assert (dset.dtype, dset.shape, dset.stored) == (dtype, shape, stored), name
            assert dset.string == (strinfo is not None), name
            np.testing.assert_array_equal(dset.read(), value)
        assert root.child("w", None, "w").size == 6 and root.child("w", None, "w").ndim == 2
        assert root.child("s", None, "s").read()[()] == b"text"


def test_a_dataset_with_no_value_is_refused(tmp_path):
    def fill(f):
        f.create_dataset("null", data=h5py.Empty("f4"))

    with _open(_file(tmp_path, fill)) as fid:
        with pytest.raises(ir.T1CFormatError, match="holds no value"):
            open_root(fid).child("null", "n", "null")


def test_a_gzip_dataset_passes_the_storage_check_and_reads(tmp_path):
    data = np.zeros((64, 64), dtype=np.float32)

    def fill(f):
        f.create_dataset("z", data=data, compression="gzip", shuffle=True, fletcher32=True)

    with _open(_file(tmp_path, fill)) as fid:
        dset = open_root(fid).child("z", None, "z")
        assert dset.stored < data.nbytes
        np.testing.assert_array_equal(dset.read(), data)


def test_known_file_types_read_as_h5py_reads_them():
    # The reader matches these types instead of asking h5py to translate each one.
    for known in h5objects._KNOWN_TYPES.values():
        for tid, dtype in known:
            assert tid.dtype == dtype and h5py.h5t.py_create(dtype, logical=True).equal(tid)


def test_plain_datasets_skip_the_creation_property_check_only_when_nothing_there_is_refused(tmp_path):
    # The reader skips the creation properties of a dataset whose header has a layout
    # message, no external file list or filter pipeline message, and stored bytes; a virtual
    # dataset has none of these messages, so it must store no bytes in the file.
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as o:
        o["w"] = np.ones(4, dtype=np.float32)
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(source), "w", shape=(4,))
        f.create_virtual_dataset("virtual", layout)
        f["plain"] = np.ones(4, dtype=np.float32)
        f.create_dataset("gzip", data=np.ones(4), compression="gzip")
        f.create_dataset("external", shape=(4,), dtype="f8", external=[(str(tmp_path / "x.bin"), 0, 32)])
    with h5py.File(path, "r") as f:
        assert f["virtual"].id.get_storage_size() == 0
        present = {n: h5py.h5o.get_info(f[n].id).hdr.mesg.present for n in ("plain", "gzip", "external")}
    assert (
        present["plain"] & h5objects._LAYOUT_MESSAGE and not present["plain"] & h5objects._EXTERNAL_OR_FILTERS
    )
    assert (
        present["gzip"] & h5objects._EXTERNAL_OR_FILTERS
        and present["external"] & h5objects._EXTERNAL_OR_FILTERS
    )


# -- links and data outside the file, wherever they are ------------------------------------


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


def test_strings_are_read_in_slices_that_fit_the_budget_and_charged(tmp_path):
    names = [f"name{i}" for i in range(1000)]

    def fill(f):
        f["names"] = np.array(names, dtype=h5py.string_dtype())
        f["one"] = "x" * 300

    path = _file(tmp_path, fill)
    with _open(path) as fid:
        root = open_root(fid)
        budget = ByteBudget(size=10 * 2**20, max_bytes=2**31)  # 64 MiB for strings: 6 per slice
        assert budget.strings_per_read() == 6
        left = budget.text_left
        got = root.child("names", None, "names").read_text(budget, None, "names")
        assert got == [n.encode() for n in names]
        assert left - budget.text_left == sum(len(n) for n in names) + STRING_COST * 1000
        assert root.child("one", None, "one").read_text(budget, None, "one") == [b"x" * 300]


def test_a_string_longer_than_t1c_reads_is_refused(tmp_path, monkeypatch):
    def fill(f):
        f["long"] = "x" * 300
        f["longs"] = np.array(["a", "x" * 300], dtype=h5py.string_dtype())

    monkeypatch.setattr(h5objects, "MAX_STRING_BYTES", 299)
    with _open(_file(tmp_path, fill)) as fid:
        root = open_root(fid)
        for name in ("long", "longs"):
            with pytest.raises(ir.T1CFormatError, match="a string of 300 bytes, more than the 299") as info:
                root.child(name, "n", name).read_text(ByteBudget(1000, 2**31), "n", name)
            assert info.value.field == name
