"""What ``ir.write`` puts in the file: the same bytes every time, and datasets as h5py's
``create_dataset`` makes them (dtype, shape, layout, filters, creation properties), although
the writer makes them through h5py's low-level API."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from t1c import ir
from t1c.ir import h5objects, writing

from .factories import lif


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
