"""Input encodings and the data modules (no Trainer needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t1c.lightning.data import DigitsDataModule, TensorDataModule, stratified_split
from t1c.lightning.encoding import encode


# -- encodings ---------------------------------------------------------------------------
def test_rate_encoding_is_bernoulli_of_clamped_intensity():
    x = torch.tensor([[-0.5, 0.0, 0.3, 1.0, 2.0]])
    xs = encode(x, 4000, "rate", generator=torch.Generator().manual_seed(0))
    assert xs.shape == (4000, 1, 5)
    assert set(xs.unique().tolist()) <= {0.0, 1.0}
    rates = xs.mean(0)[0]
    assert rates[0] == 0 and rates[1] == 0 and rates[3] == 1 and rates[4] == 1
    assert abs(float(rates[2]) - 0.3) < 0.03


def test_rate_encoding_seeded_generator_is_deterministic():
    x = torch.rand(3, 8)
    a = encode(x, 10, "rate", generator=torch.Generator().manual_seed(7))
    b = encode(x, 10, "rate", generator=torch.Generator().manual_seed(7))
    c = encode(x, 10, "rate", generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_direct_encoding_repeats_input():
    x = torch.rand(2, 1, 3, 3)
    xs = encode(x, 5, "direct")
    assert xs.shape == (5, 2, 1, 3, 3)
    assert all(torch.equal(step, x) for step in xs)
    xs[0].zero_()
    assert x.abs().sum() > 0  # a copy, not a view of x


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"encoding": "latency"}, "encoding"), ({"num_steps": 0}, "num_steps")]
)
def test_encode_rejects_bad_arguments(kwargs, match):
    args = {"x": torch.rand(1, 2), "num_steps": 3, "encoding": "rate"} | kwargs
    with pytest.raises(ValueError, match=match):
        encode(**args)


# -- stratified split --------------------------------------------------------------------
def test_stratified_split_keeps_class_shares_and_is_deterministic():
    y = np.repeat(np.arange(4), [10, 20, 30, 3])
    train, val = stratified_split(y, 0.2, seed=1)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(y)
    assert np.bincount(y[val]).tolist() == [2, 4, 6, 1]
    again = stratified_split(y, 0.2, seed=1)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, stratified_split(y, 0.2, seed=2)[1])


# -- DigitsDataModule --------------------------------------------------------------------
def test_digits_data_module_shapes_range_and_split():
    dm = DigitsDataModule(batch_size=50, val_fraction=0.2, seed=0)
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == 1797
    assert abs(len(dm.val_set) - 0.2 * 1797) < 10
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (50, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert dm.num_classes == 10 and dm.input_shape == (64,)
    val_counts = torch.bincount(dm.val_set.tensors[1], minlength=10)
    assert int(val_counts.min()) >= 30  # each digit is in the validation set


def test_digits_unflattened_and_deterministic_loaders():
    dm = DigitsDataModule(batch_size=16, flatten=False, seed=3)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 8, 8) and dm.input_shape == (1, 8, 8)
    again = DigitsDataModule(batch_size=16, flatten=False, seed=3)
    assert torch.equal(x, next(iter(again.train_dataloader()))[0])
    assert torch.equal(next(iter(dm.val_dataloader()))[0], next(iter(again.val_dataloader()))[0])


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"batch_size": 0}, "batch_size"), ({"val_fraction": 1.0}, "val_fraction")]
)
def test_digits_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitsDataModule(**kwargs)


# -- TensorDataModule --------------------------------------------------------------------
def test_tensor_data_module_from_tensors():
    torch.manual_seed(0)
    dm = TensorDataModule(torch.rand(40, 2, 3), torch.arange(40) % 4, val_fraction=0.2, batch_size=8)
    dm.setup("fit")
    assert len(dm.train_set) == 32 and len(dm.val_set) == 8
    assert dm.input_shape == (2, 3) and dm.num_classes == 4
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 2, 3) and y.dtype == torch.int64


def test_tensor_data_module_from_npz_presplit_and_whole(tmp_path):
    rng = np.random.default_rng(0)
    split = tmp_path / "split.npz"
    np.savez(
        split,
        train_x=rng.random((12, 5)),
        train_y=np.arange(12) % 3,
        val_x=rng.random((6, 5)),
        val_y=np.arange(6) % 3,
    )
    dm = TensorDataModule(path=split, batch_size=4)
    dm.setup()
    assert len(dm.train_set) == 12 and len(dm.val_set) == 6
    assert dm.train_set.tensors[0].dtype == torch.float32
    whole = tmp_path / "whole.npz"
    np.savez(whole, x=rng.random((20, 5)), y=np.arange(20) % 2)
    dm = TensorDataModule(path=str(whole), val_fraction=0.5)
    dm.setup()
    assert len(dm.train_set) == 10 and len(dm.val_set) == 10


def test_tensor_data_module_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="needs x and y"):
        TensorDataModule(x=torch.rand(3, 2))
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        TensorDataModule(path=tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, inputs=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="expected arrays x and y"):
        TensorDataModule(path=bad).setup()
    with pytest.raises(ValueError, match="integer class indices"):
        TensorDataModule(torch.rand(10, 2), torch.rand(10)).setup()
    with pytest.raises(ValueError, match=r"shapes \[10, 2\] and \[9\]"):
        TensorDataModule(torch.rand(10, 2), torch.zeros(9, dtype=torch.long)).setup()


# -- data checked against the graph before training ----------------------------------------
def test_data_is_checked_against_the_graph(fixtures_dir, tmp_path):
    from t1c.lightning import T1CModule
    from t1c.lightning.data import check_data_fits

    model = T1CModule(fixtures_dir / "mlp_snn.t1c", num_steps=2)  # Input [64], 10 classes
    check_data_fits(model, (64,), torch.arange(10), "ok")
    with pytest.raises(
        ValueError, match=r"^here: samples have shape \[1, 8, 8\], but the graph '.*mlp_snn.t1c'"
    ):
        check_data_fits(model, (1, 8, 8), torch.arange(10), "here")
    with pytest.raises(ValueError, match=r"label 10 is outside the 10 output classes \(0\.\.9\)"):
        check_data_fits(model, (64,), torch.arange(11), "here")
    check_data_fits(torch.nn.Linear(3, 3), (1, 8, 8), torch.arange(99), "a plain model is not checked")

    sequence = T1CModule(fixtures_dir / "mlp_snn.t1c", encoding="sequence")
    check_data_fits(sequence, (7, 64), torch.arange(10), "steps of the input shape")
    check_data_fits(sequence, (7, 1, 64), torch.arange(10), "steps flattened to a 1-D input")
    with pytest.raises(ValueError, match=r"time steps have shape \[32\]"):
        check_data_fits(sequence, (7, 32), torch.arange(10), "here")


def test_fit_stops_at_setup_when_the_data_does_not_fit(fixtures_dir, tmp_path):
    import lightning.pytorch as pl

    from t1c.lightning import T1CModule

    labels = np.arange(30) % 10
    labels[3] = 10
    path = tmp_path / "eleven.npz"
    np.savez(path, x=np.zeros((30, 64), np.float32), y=labels)
    model = T1CModule(fixtures_dir / "mlp_snn.t1c", num_steps=2)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=rf"data file '{path}' \(x/y\): label 10 is outside the 10 output"):
        trainer.fit(model, TensorDataModule(path=path, batch_size=8))
    assert trainer.global_step == 0

    dm = DigitsDataModule(flatten=False)
    dm.setup("fit")  # set up before the Trainer attaches it: still checked
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=r"DigitsDataModule .*samples have shape \[1, 8, 8\].*takes \[64\]"):
        trainer.fit(model, dm)
    assert trainer.global_step == 0
