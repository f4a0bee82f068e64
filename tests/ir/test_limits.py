"""The bounds a file is held to (`t1c.ir.limits`): the byte budget checked before a dataset is
read, member names, regular files only, empty files; and that a legitimately small file
(zero weights compressed 80x) is not taken for a bomb."""

from __future__ import annotations

import os
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from t1c import ir
from t1c.ir.limits import KNOWN_FILTERS, MAX_BYTES, ByteBudget, check_name, open_hdf5, regular_file_size

from .factories import mlp


def _declared(shape, stored, dtype=np.float32):
    """What the budget needs to know of an open dataset."""
    return SimpleNamespace(shape=shape, size=int(np.prod(shape)), dtype=np.dtype(dtype), stored=stored)


def test_the_budget_is_charged_what_each_dataset_declares():
    budget = ByteBudget(size=10**6, max_bytes=1000)
    dset = _declared((100,), stored=400)
    assert budget.checked(dset, "fc", "bias") is dset
    assert budget.left == 600
    budget.checked(_declared((150,), stored=600), "fc", "weight")
    assert budget.left == 0
    with pytest.raises(
        ir.T1CFormatError, match="more than the 0 bytes left of the max_bytes budget of 1000"
    ) as info:
        budget.checked(_declared((1,), stored=4), "fc", "extra")
    assert "pass max_bytes= to ir.read" in str(info.value)
    assert (info.value.node, info.value.field) == ("fc", "extra")


def test_a_dataset_declaring_data_it_does_not_store_is_refused():
    budget = ByteBudget(size=10**6, max_bytes=MAX_BYTES)
    with pytest.raises(ir.T1CFormatError, match=r"declares shape \[4\] \(16 bytes\) but stores no data"):
        budget.checked(_declared((4,), stored=0), None, "w")
    huge = _declared((2**20, 64), stored=1024)  # 256 MiB from 1 KiB: more than 4096x
    with pytest.raises(ir.T1CFormatError, match=r"\(268435456 bytes\) but stores only 1024 bytes"):
        budget.checked(huge, None, "w")
    assert budget.left == MAX_BYTES  # nothing charged for a refused dataset


def test_a_small_file_cannot_spend_the_whole_budget():
    budget = ByteBudget(size=1000, max_bytes=MAX_BYTES)  # the file caps the total, not max_bytes
    assert budget.left == 64 * 2**20
    budget.checked(_declared((2**24,), stored=2**14), None, "a")  # 64 MiB, stored 16 KiB: 4096x
    with pytest.raises(ir.T1CFormatError, match="datasets hard-linked many times"):
        budget.checked(_declared((1,), stored=4), None, "b")


def test_zero_dimensional_and_empty_datasets_cost_nothing():
    budget = ByteBudget(size=100, max_bytes=8)
    budget.checked(_declared((0, 5), stored=0), None, "empty")
    budget.checked(_declared((), stored=8, dtype=np.int64), None, "scalar")
    assert budget.left == 0


@pytest.mark.parametrize("name", [b"\xff", "a/b", "."])
def test_names_hdf5_would_take_as_a_path_or_that_are_not_utf8_are_refused(name):
    with pytest.raises(ir.T1CFormatError, match="names must be UTF-8 without '/' and not '.'") as info:
        check_name(name, "n", "nodes")
    assert (info.value.node, info.value.field) == ("n", "nodes")


@pytest.mark.parametrize("name", ["a.b", "..", "fc1", "\u00b5"])
def test_ordinary_names_pass(name):
    check_name(name, None, "metadata")


def test_regular_file_size_is_the_size_and_refuses_the_rest(tmp_path):
    path = tmp_path / "x.t1c"
    path.write_bytes(b"1234567")
    assert regular_file_size(str(path)) == 7
    with pytest.raises(FileNotFoundError, match="no such .t1c file"):
        regular_file_size(str(tmp_path / "nope.t1c"))
    with pytest.raises(ir.T1CFormatError, match="is a folder, not a regular file"):
        regular_file_size(str(tmp_path))
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ir.T1CFormatError, match="is a FIFO"):
        regular_file_size(str(tmp_path / "fifo"))


def test_open_says_empty_or_not_hdf5(tmp_path):
    (tmp_path / "empty.t1c").write_bytes(b"")
    with (
        pytest.raises(ir.T1CFormatError, match="^file .* is empty"),
        open_hdf5(str(tmp_path / "empty.t1c"), 0),
    ):
        pass
    (tmp_path / "text.t1c").write_bytes(b"hello")
    with (
        pytest.raises(ir.T1CFormatError, match="is not an HDF5 file, or is truncated"),
        open_hdf5(str(tmp_path / "text.t1c"), 5),
    ):
        pass


def test_open_gives_a_file_that_closes_with_its_objects(tmp_path):
    path = tmp_path / "net.t1c"
    ir.write(path, mlp())
    with open_hdf5(str(path), path.stat().st_size) as fid:
        group = h5py.h5g.open(fid, b"/graph")
        assert fid.valid and group.valid
    assert not fid.valid and not group.valid


def test_known_filters_are_the_ones_libhdf5_and_h5py_build_in():
    assert KNOWN_FILTERS == {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
    assert MAX_BYTES == 2**31


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


def test_strings_are_charged_against_a_budget_of_a_few_times_the_file_size():
    small = ByteBudget(size=1000, max_bytes=MAX_BYTES)
    assert small.text_left == 64 * 2**20  # the floor
    large = ByteBudget(size=100 * 2**20, max_bytes=MAX_BYTES)
    assert large.text_left == 400 * 2**20  # 4x the file
    small.charge_text(64 * 2**20 - 10, None, "a")
    with pytest.raises(ir.T1CFormatError, match="strings sharing one stored string many times") as info:
        small.charge_text(11, "n", "b")
    assert (info.value.node, info.value.field) == ("n", "b")


def test_strings_per_read_fit_in_what_is_left_even_if_each_were_as_long_as_the_file():
    budget = ByteBudget(size=2**20, max_bytes=MAX_BYTES)
    assert budget.strings_per_read() == 64
    budget.charge_text(60 * 2**20, None, "a")
    assert budget.strings_per_read() == 4
    budget.charge_text(4 * 2**20 - 1, None, "a")
    assert budget.strings_per_read() == 1  # always one
