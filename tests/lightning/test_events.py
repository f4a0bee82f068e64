"""EventDataModule over tonic, with synthetic events in tonic's own formats (no downloads).

* a tiny camera dataset class (structured ``x, y, t, p`` events, ``sensor_size``) like tonic's;
* a folder in tonic's N-MNIST layout (``NMNIST/Train/<digit>/*.bin``) read by ``tonic.datasets.NMNIST``;
* HDF5 files in SHD's layout (``spikes/times``, ``spikes/units``, ``labels``, ``extra/...``)
  read by ``tonic.datasets.SHD``.

All of them go through the same tonic transforms, disk cache and collation as real data.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import lightning.pytorch as pl
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from t1c import ir
from t1c.bridge import ir_to_torch, to_ir
from t1c.lightning import T1CModule
from t1c.lightning.events import DatasetNotFoundError, EventDataModule, frame_shape

pytest.importorskip("tonic")

XYTP = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Tests never download: tonic's fetches go through urllib.request.urlopen."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to download {args[:1]}")

    monkeypatch.setattr("urllib.request.urlopen", refuse)


# -- synthetic events in tonic's formats -------------------------------------------------------
def _camera_events(label: int, seed: int, width: int, n: int = 300) -> np.ndarray:
    """Events of class ``label``: most in column band ``label`` (2 pixels wide), a few anywhere."""
    rng = np.random.default_rng(seed)
    events = np.empty(n, dtype=XYTP)
    band = rng.random(n) < 0.8
    events["x"] = np.where(band, 2 * label + rng.integers(0, 2, n), rng.integers(0, width, n))
    events["y"] = rng.integers(0, width, n)
    events["t"] = np.sort(rng.integers(0, 100_000, n))
    events["p"] = rng.integers(0, 2, n)
    return events


class TinyCamera:
    """A dataset with tonic's interface: 3 classes of events on a 6x6 two-polarity sensor."""

    sensor_size = (6, 6, 2)
    dtype = XYTP
    ordering = XYTP.names
    classes = ["left", "middle", "right"]

    def __init__(self, save_to: str, train: bool = True, transform=None, size: int = 30):
        self.location_on_system = str(Path(save_to) / "TinyCamera")
        self.train, self.transform = train, transform
        self.targets = [i % 3 for i in range(size if train else size // 2)]

    def events(self, index: int) -> np.ndarray:
        return _camera_events(self.targets[index], index + (0 if self.train else 10_000), 6)

    def __getitem__(self, index):
        events = self.events(index)
        return (self.transform(events) if self.transform else events), self.targets[index]

    def __len__(self) -> int:
        return len(self.targets)


def write_nmnist(root: Path, per_class: int = 4, classes: int = 3) -> Path:
    """N-MNIST's layout and 5-byte event encoding: ``<root>/NMNIST/{Train,Test}/<digit>/<n>.bin``."""
    for folder, offset in (("Train", 0), ("Test", 1000)):
        for digit in range(classes):
            path = root / "NMNIST" / folder / str(digit)
            path.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                ev = _camera_events(digit, offset + 10 * digit + i, 34)
                raw = np.zeros((len(ev), 5), dtype=np.uint8)
                raw[:, 0], raw[:, 1] = ev["x"], ev["y"]
                raw[:, 2] = (ev["p"] << 7) | ((ev["t"] >> 16) & 0x7F)
                raw[:, 3], raw[:, 4] = (ev["t"] >> 8) & 0xFF, ev["t"] & 0xFF
                (path / f"{i:05d}.bin").write_bytes(raw.tobytes())
    return root


def write_shd(root: Path, n_train: int = 12, n_test: int = 6, classes: int = 4) -> Path:
    """SHD's HDF5 layout: variable-length spike times (s) and units per sample, labels, extra keys."""
    (root / "SHD").mkdir(parents=True, exist_ok=True)
    for name, n, offset in (("shd_train.h5", n_train, 0), ("shd_test.h5", n_test, 500)):
        with h5py.File(root / "SHD" / name, "w") as f:
            times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
            units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
            labels = np.arange(n, dtype=np.uint16) % classes
            for i in range(n):
                rng = np.random.default_rng(offset + i)
                count = int(rng.integers(150, 250))
                times[i] = np.sort(rng.random(count).astype(np.float32))
                units[i] = (labels[i] * 175 + rng.integers(0, 175, count)).astype(np.uint16)
            f["labels"] = labels
            f["extra/keys"] = np.array([f"digit-{k}".encode() for k in range(classes)])
            f["extra/speaker"] = np.zeros(n, dtype=np.uint16)
    return root


def brute_frames(events: np.ndarray, frame: tuple[int, ...], bins: int) -> np.ndarray:
    """Counts per (bin, polarity, pixel), one event at a time, with tonic's bins of ``n_time_bins``:
    width ``(t_last - t_first) // bins`` from the first event, events past the last bin dropped."""
    out = np.zeros((bins, *frame), dtype=np.int64)
    t0 = int(events["t"][0])
    width = (int(events["t"][-1]) - t0) // bins
    for e in events:
        k = (int(e["t"]) - t0) // width
        if k < bins:
            index = (k, int(e["p"]), int(e["y"]), int(e["x"])) if len(frame) == 3 else (k, 0, int(e["x"]))
            out[index] += 1
    return out


def _dm(tmp_path: Path, **kwargs) -> EventDataModule:
    args = dict(dataset=TinyCamera, save_to=tmp_path / "data", n_time_bins=5, batch_size=8, download=False)
    return EventDataModule(**(args | kwargs))


# -- frames ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cache", [True, False])
def test_frames_are_brute_force_counts(tmp_path, cache):
    dm = _dm(tmp_path, cache=cache)
    dm.setup("fit")
    assert dm.input_shape == (2, 6, 6) and dm.num_classes == 3
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (8, 5, 2, 6, 6) and x.dtype == torch.float32 and y.dtype == torch.int64
    raw = TinyCamera(str(tmp_path), train=False)
    for i in range(8):
        assert int(y[i]) == raw.targets[i]
        assert np.array_equal(x[i].numpy(), brute_frames(raw.events(i), (2, 6, 6), 5)), i
    if cache:
        files = sorted(dm.cache_path("test").glob("*.hdf5"))
        assert len(files) == 8  # the framed samples read so far
        again = _dm(tmp_path)
        again.setup("fit")
        assert torch.equal(next(iter(again.val_dataloader()))[0], x)  # served from the cache


def test_cache_folder_changes_with_every_framing_parameter(tmp_path):
    base = _dm(tmp_path).cache_path("train")
    assert base.parent == tmp_path / "data" / "t1c_cache"
    for change in (
        {"n_time_bins": 6},
        {"denoise_time": 1000.0},
        {"target_size": [3, 3]},
        {"cache_dir": tmp_path},
    ):
        assert _dm(tmp_path, **change).cache_path("train") != base, change


def test_downsampling_and_denoising_use_tonic(tmp_path):
    dm = _dm(tmp_path, target_size=[3, 3], denoise_time=5_000.0, cache=False)
    dm.setup("fit")
    assert dm.input_shape == (2, 3, 3)
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape == (8, 5, 2, 3, 3)
    from tonic.transforms import Denoise

    raw = TinyCamera(str(tmp_path), train=False)
    for i in range(3):
        events = Denoise(filter_time=5_000.0)(raw.events(i))
        events["x"] //= 2
        events["y"] //= 2
        assert np.array_equal(x[i].numpy(), brute_frames(events, (2, 3, 3), 5)), i


def test_time_window_frames_are_padded_by_tonic(tmp_path):
    dm = _dm(tmp_path, n_time_bins=None, time_window=30_000.0, cache=False)
    dm.setup("fit")
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape[0] == 8 and x.shape[2:] == (2, 6, 6) and x.shape[1] >= 3
    with pytest.raises(ValueError, match="give exactly one"):
        _dm(tmp_path, n_time_bins=5, time_window=1.0)


def test_stratified_validation_split_without_a_test_split(tmp_path):
    class NoSplit(TinyCamera):
        def __init__(self, save_to: str, transform=None):
            super().__init__(save_to, True, transform)

    dm = _dm(tmp_path, dataset=NoSplit, val_fraction=0.2)
    dm.setup("fit")
    labels = [int(y) for _, y in dm.val_set]
    assert sorted(labels) == [0, 0, 1, 1, 2, 2] and len(dm.train_set) == 24
    with pytest.raises(ValueError, match="no test split"):
        dm.test_dataloader()
    kept = _dm(tmp_path, val_fraction=0.2)  # a test split kept apart for testing
    kept.setup("fit")
    assert len(kept.val_set) == 6 and len(kept.test_set) == 15


def test_loaders_follow_lightning_conventions(tmp_path):
    dm = _dm(tmp_path, num_workers=2, pin_memory=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.num_workers == 2 and loader.persistent_workers and not loader.pin_memory
    assert type(loader.collate_fn).__name__ == "PadTensors"
    first = [y.tolist() for _, y in dm.train_dataloader()]
    assert first == [y.tolist() for _, y in _dm(tmp_path).train_dataloader()]  # seeded shuffle


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset": "tonic.datasets.NoSuchSet"}, "not a class path"),
        ({"dataset": "nowhere.Set"}, "cannot import nowhere"),
        ({"dataset_args": {"train": False}}, "set by the data module"),
        ({"n_time_bins": 0}, "n_time_bins=0"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_fail_early(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _dm(tmp_path, **kwargs)


# -- real tonic classes on files in their layouts --------------------------------------------
def test_nmnist_layout_is_read_by_tonic(tmp_path):
    root = write_nmnist(tmp_path / "data")
    dm = EventDataModule("tonic.datasets.NMNIST", save_to=root, n_time_bins=4, batch_size=4, download=False)
    dm.setup("fit")
    assert dm.input_shape == (2, 34, 34) and dm.num_classes == 10
    assert len(dm.train_set) == 12 and len(dm.val_set) == 12  # N-MNIST's own test split
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 4, 2, 34, 34)
    files = sorted((root / "NMNIST" / "Test").rglob("*.bin"))
    from tonic.io import read_mnist_file

    for i in range(4):
        events = read_mnist_file(str(files[i]), dtype=XYTP)
        assert int(y[i]) == int(files[i].parent.name)
        assert np.array_equal(x[i].numpy(), brute_frames(events, (2, 34, 34), 4)), i


def test_shd_layout_is_read_by_tonic(tmp_path):
    root = write_shd(tmp_path / "data")
    dm = EventDataModule("tonic.datasets.SHD", save_to=root, n_time_bins=10, batch_size=6, download=False)
    dm.setup("fit")
    assert dm.input_shape == (1, 700) and dm.num_classes == 4
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (6, 10, 1, 700)
    with h5py.File(root / "SHD" / "shd_test.h5", "r") as f:
        for i in range(6):
            events = np.empty(len(f["spikes/times"][i]), dtype=[("t", int), ("x", int), ("p", int)])
            events["t"] = f["spikes/times"][i].astype(np.float64) * 1e6
            events["x"], events["p"] = f["spikes/units"][i], 0
            assert int(y[i]) == int(f["labels"][i])
            assert np.array_equal(x[i].numpy(), brute_frames(events, (1, 700), 10)), i


def test_dvs_gesture_layout_downsampled_to_32x32(tmp_path):
    """tonic's DVSGesture reads ``ibmGesture{Train,Test}/user*_<lighting>/<label>.npy`` (x, y, p, t in ms)."""
    root = tmp_path / "data"
    for folder, offset in (("ibmGestureTrain", 0), ("ibmGestureTest", 100)):
        for user in (1, 2):
            path = root / "DVSGesture" / folder / f"user{user:02d}_fluorescent"
            path.mkdir(parents=True)
            for label in range(3):
                ev = _camera_events(label, offset + 10 * user + label, 128, n=500)
                ev["t"] //= 1000  # milliseconds, as the .npy files hold them
                np.save(
                    path / f"{label}.npy", np.stack([ev["x"], ev["y"], ev["p"], ev["t"]], 1).astype(np.int64)
                )
    dm = EventDataModule(
        "tonic.datasets.DVSGesture",
        save_to=root,
        n_time_bins=5,
        target_size=[32, 32],
        batch_size=6,
        download=False,
    )
    dm.setup("fit")
    assert dm.input_shape == (2, 32, 32) and dm.num_classes == 11 and len(dm.val_set) == 6
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (6, 5, 2, 32, 32)
    raw = dm.val_set.dataset  # the tonic dataset under the cache: its file list and labels
    for i in range(6):
        columns = np.load(raw.data[i])
        events = np.empty(len(columns), dtype=[("x", int), ("y", int), ("p", int), ("t", int)])
        events["x"], events["y"] = columns[:, 0] // 4, columns[:, 1] // 4
        events["p"], events["t"] = columns[:, 2], columns[:, 3] * 1000
        assert int(y[i]) == raw.targets[i] == int(Path(raw.data[i]).stem)
        assert np.array_equal(x[i].numpy(), brute_frames(events, (2, 32, 32), 5)), i


def test_missing_dataset_says_where_to_put_the_files(tmp_path):
    for folder in (tmp_path / "empty", tmp_path / "absent"):
        if folder.name == "empty":
            (folder / "NMNIST").mkdir(parents=True)
        dm = EventDataModule("tonic.datasets.NMNIST", save_to=folder, download=False)
        with pytest.raises(DatasetNotFoundError) as info:
            dm.setup("fit")
        text = str(info.value)
        assert "\n" not in text
        assert str(folder / "NMNIST") in text and "train.zip" in text and "Train/" in text
        assert "online" in text and "download: true" in text


# -- training, export --------------------------------------------------------------------------
def _mlp_graph(path: Path, frame: tuple[int, ...], classes: int) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(int(np.prod(frame)), 32),
        snn.Leaky(beta=0.8, init_hidden=True),
        nn.Linear(32, classes),
        snn.Leaky(beta=0.8, init_hidden=True),
    )
    ir.write(path, to_ir(model, torch.zeros(1, *frame)))
    return path


def test_training_on_frames_lowers_the_loss_and_exports_reproduce_the_model(tmp_path):
    pl.seed_everything(0)
    dm = _dm(tmp_path, n_time_bins=6, batch_size=10)
    dm.setup("fit")
    model = T1CModule(_mlp_graph(tmp_path / "tiny.t1c", (2, 6, 6), 3), encoding="sequence", lr=1e-2)
    x, y = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        before = float(model.compute_loss(model(x), y))
    trainer = pl.Trainer(
        max_epochs=4,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
    with torch.no_grad():
        after = float(model.compute_loss(model(x), y))
    assert after < 0.8 * before
    ir.write(tmp_path / "trained.t1c", model.export_graph())
    loaded = ir_to_torch(tmp_path / "trained.t1c")
    for x, _ in dm.val_dataloader():
        ys_file, _ = loaded.run_sequence(x.transpose(0, 1))
        with torch.no_grad():
            assert torch.equal(ys_file, model(x))
        assert torch.equal(model.predict_with(loaded, x), model.predict_with(model.executor, x))


def test_shd_frames_feed_an_mlp_on_700_channels(tmp_path):
    root = write_shd(tmp_path / "data")
    dm = EventDataModule("tonic.datasets.SHD", save_to=root, n_time_bins=8, batch_size=4, download=False)
    model = T1CModule(_mlp_graph(tmp_path / "shd.t1c", (700,), 4), encoding="sequence", num_steps=8)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert model(x).shape == (8, 4, 4)  # [1, 700] frames flattened into the Input's [700]
    assert model.predict_with(model.executor, x).shape == (4,)
    assert frame_shape((700, 1, 1), has_y=False) == (1, 700)


# -- t1c fit --config configs/nmnist.yaml ------------------------------------------------------
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def recipe(monkeypatch):
    """``recipes/nmnist_conv.py``, imported as a script run from recipes/ (``_common`` beside it)."""
    import importlib.util

    monkeypatch.syspath_prepend(str(REPO / "recipes"))
    spec = importlib.util.spec_from_file_location("recipe_nmnist_conv", REPO / "recipes" / "nmnist_conv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fit_args(save_to: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        str(REPO / "configs" / "nmnist.yaml"),
        f"--data.init_args.save_to={save_to}",
        "--data.init_args.download=false",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=6",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *extra,
    ]


def test_fit_nmnist_config_on_a_folder_in_tonics_layout(in_tmp, recipe):
    import json

    from t1c.cli import main

    torch.manual_seed(0)
    source = in_tmp / "nmnist_runs" / "source.t1c"  # where configs/nmnist.yaml looks
    source.parent.mkdir(parents=True)
    graph = to_ir(recipe.build_conv_snn(channels=4), torch.zeros(1, 2, 34, 34))
    ir.write(source, graph)
    write_nmnist(in_tmp / "data")
    assert main(_fit_args(in_tmp / "data")) == 0
    manifests = list((in_tmp / "nmnist_runs" / "cli").rglob("t1c_exports.json"))
    assert len(manifests) == 1
    exports = json.loads(manifests[0].read_text())["exports"]
    assert "last.t1c" in exports
    for name, entry in exports.items():
        assert 0.0 <= entry["metrics"]["t1c/quant_acc"] <= 1.0
        assert entry["metrics"]["t1c/export_agreement"] == 1.0
        assert ir.topology_diff(graph, ir.read(manifests[0].parent / name)) == [], name
    assert list((in_tmp / "data" / "t1c_cache").glob("NMNIST-train-*"))


def test_fit_nmnist_config_on_an_empty_folder_says_what_is_missing(in_tmp, capsys, recipe):
    from t1c.cli import main

    source = in_tmp / "nmnist_runs" / "source.t1c"
    source.parent.mkdir(parents=True)
    ir.write(source, to_ir(recipe.build_conv_snn(channels=4), torch.zeros(1, 2, 34, 34)))
    (in_tmp / "empty").mkdir()
    assert main(_fit_args(in_tmp / "empty")) != 0
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(in_tmp / "empty" / "NMNIST") in err and "train.zip" in err and "online" in err


def test_nmnist_recipe_runs_tiny(tmp_path, capsys, recipe):
    threads = torch.get_num_threads()
    root = write_nmnist(tmp_path / "data")
    args = [
        "--data",
        str(root),
        "--offline",
        "--workers",
        "0",
        "--batch-size",
        "6",
        "--out",
        str(tmp_path / "run"),
    ]
    tiny = [
        "--pretrain-epochs",
        "1",
        "--max-epochs",
        "1",
        "--num-steps",
        "4",
        "--hidden",
        "4",
        "--no-progress",
    ]
    try:
        assert recipe.main([*args, *tiny, "--limit-train-batches", "2", "--limit-val-batches", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "float acc" in out and "8-bit acc" in out and "topology identical" in out
    assert ir.read(tmp_path / "run" / "source.t1c").nodes["input"].shape == (2, 34, 34)


def test_fit_shd_config_on_files_in_shds_layout(in_tmp, capsys):
    from t1c.cli import main

    source = in_tmp / "shd_runs" / "source.t1c"  # where configs/shd.yaml looks
    source.parent.mkdir(parents=True)
    _mlp_graph(source, (700,), 20)
    write_shd(in_tmp / "data")
    args = [
        "fit",
        "--config",
        str(REPO / "configs" / "shd.yaml"),
        "--data.init_args.download=false",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=4",
        "--data.init_args.n_time_bins=12",
        "--model.num_steps=12",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
    ]
    assert main(args) == 0
    assert list((in_tmp / "shd_runs" / "cli").rglob("last.t1c"))
    capsys.readouterr()
    assert main([*args[:-2], "--model.num_steps=10", "--trainer.enable_progress_bar=false"]) != 0
    err = capsys.readouterr().err
    assert "holds 12 time steps" in err and "num_steps=10" in err and "Traceback" not in err, err


def test_prepare_data_opens_every_split_and_explains_a_missing_one(tmp_path):
    root = write_shd(tmp_path / "data")
    EventDataModule("tonic.datasets.SHD", save_to=root, download=False).prepare_data()
    (root / "SHD" / "shd_test.h5").unlink()
    with pytest.raises(DatasetNotFoundError, match="shd_test.h5"):
        EventDataModule("tonic.datasets.SHD", save_to=root, download=False).prepare_data()
