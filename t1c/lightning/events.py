"""Event data (DVS cameras, spiking audio) for fine-tuning, over any tonic dataset.

:class:`EventDataModule` wraps a dataset of `tonic <https://tonic.readthedocs.io>`_
(``tonic.datasets.NMNIST``, ``DVSGesture``, ``SHD``, ... or any class with tonic's
interface) chosen by class path, and serves event frames ``[B, T, *frame]`` through
tonic's own pieces:

* ``tonic.transforms.Denoise`` and ``Downsample`` (optional), then
  ``tonic.transforms.ToFrame(sensor_size, n_time_bins)`` (or ``time_window``);
* ``tonic.DiskCachedDataset``: each framed sample is written once to an HDF5 cache
  whose folder name carries every framing parameter, so a change never serves stale frames;
* ``tonic.collation.PadTensors``: samples of different lengths (``time_window``) are
  padded with empty frames at the end.

Frames hold event counts per bin, polarity and pixel (``[P, H, W]`` per step for
cameras, ``[P, X]`` for audio), as float32. Pair the module with
``T1CModule(encoding="sequence")``.

Validation uses the dataset's test split when it has one (``train=False`` or
``split="test"``), else a stratified share of the training split (``val_fraction``).

Files. ``save_to`` is the folder tonic reads (``<save_to>/<DatasetClass>/...``). When the
files are missing, tonic downloads them if ``download`` is true and the machine is
online; otherwise :class:`DatasetNotFoundError` says, in one line, where to put them.
Files a user placed there by hand are used as they are (tonic's presence check, which
for N-MNIST wants the ``.zip`` and 10000 extracted files, is not needed).

Example (configs/nmnist.yaml does the same from YAML):
    >>> dm = EventDataModule("tonic.datasets.NMNIST", save_to="data", n_time_bins=20)  # doctest: +SKIP
    >>> dm.setup("fit")                                                             # doctest: +SKIP
    >>> x, y = next(iter(dm.train_dataloader()))                                    # doctest: +SKIP
    >>> x.shape, dm.input_shape, dm.num_classes                                     # doctest: +SKIP
    (torch.Size([64, 20, 2, 34, 34]), (2, 34, 34), 10)
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .data import stratified_split
from .encoding import is_count

__all__ = ["DatasetNotFoundError", "EventDataModule", "frame_shape"]

#: Arguments the data module passes to the dataset class itself.
_RESERVED = ("save_to", "train", "split", "transform", "target_transform", "transforms")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not in the folder it reads; the message says where to put them."""


def frame_shape(sensor_size: Sequence[int], has_y: bool = True) -> tuple[int, ...]:
    """The shape of one frame of tonic's ``ToFrame`` for a sensor ``(W, H, P)``.

    ``(P, H, W)`` for cameras, ``(P, W)`` for sensors without a ``y`` coordinate (audio).

    Example:
        >>> frame_shape((34, 34, 2)), frame_shape((700, 1, 1), has_y=False)
        ((2, 34, 34), (1, 700))
    """
    w, h, p = (int(v) for v in sensor_size)
    return (p, h, w) if has_y else (p, w)


class EventDataModule(pl.LightningDataModule):
    """Event frames ``[B, T, *frame]`` and labels ``[B]`` from a tonic dataset.

    Args:
        dataset: class path of the dataset (``"tonic.datasets.NMNIST"``) or the class. It
            takes ``save_to`` and ``transform`` like tonic's datasets, and ``train`` (or
            ``split``) when it has a test split.
        save_to: folder of the files (tonic reads ``<save_to>/<class name>/``).
        dataset_args: more arguments of the dataset class (``first_saccade_only: true``).
        n_time_bins: time bins per sample (tonic's ``ToFrame(n_time_bins=...)``);
            ``T1CModule(encoding="sequence", num_steps=...)`` must agree or be None, and
            says so at the first batch otherwise.
        time_window: instead of ``n_time_bins``, bins of this duration (the events' time
            unit, microseconds in tonic); samples then differ in length and are padded.
        denoise_time: apply ``tonic.transforms.Denoise(filter_time=denoise_time)`` first.
        target_size: downsample the sensor to ``[W, H]`` (``[X, 1]`` for audio) with
            ``tonic.transforms.Downsample``; frames then have that size.
        sensor_size: ``(W, H, P)`` when the dataset class has no ``sensor_size``.
        val_fraction: None: validate on the test split when the dataset has one, else on
            10% of the training split; a number: hold out that share of the training split
            (stratified by class) and keep the test split for ``test_dataloader``.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes (framing runs there; cached samples are
            cheap).
        pin_memory: page-locked batches for faster copies to a GPU; None: when CUDA is available.
        cache: keep framed samples in ``tonic.DiskCachedDataset`` files.
        cache_dir: folder of the cache; default ``<save_to>/t1c_cache``.
        download: let tonic download missing files (needs a connection).
        seed: seeds the split and the training shuffle.

    After :meth:`setup`: ``input_shape`` (one frame), ``num_classes``, ``train_set``,
    ``val_set`` (and ``test_set`` when a test split is kept apart).
    """

    def __init__(
        self,
        dataset: str | type = "tonic.datasets.NMNIST",
        save_to: str | os.PathLike = "data",
        dataset_args: dict[str, Any] | None = None,
        n_time_bins: int | None = 25,
        time_window: float | None = None,
        denoise_time: float | None = None,
        target_size: list[int] | None = None,
        sensor_size: list[int] | None = None,
        val_fraction: float | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
        download: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dataset_class = _resolve_class(dataset)
        self.dataset_name = f"{self.dataset_class.__module__}.{self.dataset_class.__qualname__}"
        self.dataset_args = dict(dataset_args or {})
        _check_args(self.dataset_args, n_time_bins, time_window, val_fraction, batch_size, num_workers)
        self.save_to = Path(os.path.expanduser(os.fspath(save_to)))
        self.n_time_bins, self.time_window = n_time_bins, time_window
        self.denoise_time = denoise_time
        self.target_size = None if target_size is None else [int(v) for v in target_size]
        self.sensor_size = self._sensor_size(sensor_size)
        self.val_fraction = val_fraction
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, int(seed)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.cache = bool(cache)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.save_to / "t1c_cache"
        self.download = bool(download)
        self.save_hyperparameters(ignore=["dataset"])
        self.hparams["dataset"] = self.dataset_name

        has_y = "y" in (getattr(getattr(self.dataset_class, "dtype", None), "names", None) or ("y",))
        frame_sensor = (
            self.sensor_size if self.target_size is None else (*self.target_size, self.sensor_size[2])
        )
        self.input_shape = frame_shape(frame_sensor, has_y)
        self.frame_sensor_size = tuple(int(v) for v in frame_sensor)
        self.num_classes = 0
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # -- the transforms ------------------------------------------------------------------
    def transform(self) -> Callable:
        """tonic's ``Compose([Denoise?, Downsample?, ToFrame])`` applied to each sample's events."""
        from tonic import transforms

        steps: list[Callable] = []
        if self.denoise_time is not None:
            steps.append(transforms.Denoise(filter_time=self.denoise_time))
        if self.target_size is not None:
            steps.append(
                transforms.Downsample(
                    sensor_size=tuple(self.sensor_size), target_size=tuple(self.target_size)
                )
            )
        framing = (
            {"n_time_bins": self.n_time_bins}
            if self.time_window is None
            else {"time_window": self.time_window}
        )
        steps.append(transforms.ToFrame(sensor_size=self.frame_sensor_size, **framing))
        return transforms.Compose(steps)

    def cache_path(self, split: str) -> Path:
        """The cache folder of a split; its name carries every parameter that changes the frames."""
        settings = {
            "dataset": self.dataset_name,
            "args": self.dataset_args,
            "n_time_bins": self.n_time_bins,
            "time_window": self.time_window,
            "denoise_time": self.denoise_time,
            "target_size": self.target_size,
            "sensor_size": list(self.sensor_size),
        }
        key = hashlib.sha1(json.dumps(settings, sort_keys=True, default=repr).encode()).hexdigest()[:12]
        return self.cache_dir / f"{self.dataset_class.__name__}-{split}-{key}"

    # -- Lightning hooks -----------------------------------------------------------------
    def prepare_data(self) -> None:
        """Open every split once, on one process per node: tonic downloads what is missing."""
        split_args = self._split_args()
        for args in split_args if split_args is not None else ({},):
            self._open(args)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        split_args = self._split_args()
        train_full, labels_source = self._framed("train", split_args[0] if split_args else {})
        labels = _labels(labels_source, train_full)
        self.num_classes = _num_classes(labels_source, labels)
        held_out = None
        if split_args is not None:
            held_out, _ = self._framed("test", split_args[1])
        if self.val_fraction is None and held_out is not None:
            self.train_set, self.val_set = train_full, held_out
            return
        train_idx, val_idx = stratified_split(np.asarray(labels), self.val_fraction or 0.1, self.seed)
        self.train_set, self.val_set = (
            Subset(train_full, train_idx.tolist()),
            Subset(train_full, val_idx.tolist()),
        )
        self.test_set = held_out

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        self._require_setup()
        if self.test_set is None:
            raise ValueError(
                f"EventDataModule: {self.dataset_name} has no test split apart from validation "
                "(val_fraction=None validates on it); set val_fraction to keep the test split for testing"
            )
        return self._loader(self.test_set, shuffle=False)

    # -- helpers -------------------------------------------------------------------------
    def _sensor_size(self, given: Sequence[int] | None) -> tuple[int, int, int]:
        size = given if given is not None else getattr(self.dataset_class, "sensor_size", None)
        if size is None or len(size) != 3:
            raise ValueError(
                f"EventDataModule(dataset={self.dataset_name!r}): the class has no sensor_size; pass "
                "sensor_size: [W, H, P] (e.g. [34, 34, 2], or [700, 1, 1] for audio)"
            )
        return tuple(int(v) for v in size)

    def _split_args(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Arguments selecting the training and test splits, or None when the class has no split."""
        params = inspect.signature(self.dataset_class).parameters
        if "train" in params:
            return {"train": True}, {"train": False}
        if "split" in params:
            return {"split": "train"}, {"split": "test"}
        return None

    def _framed(self, split: str, split_args: dict[str, Any]) -> tuple[Dataset, Any]:
        """The split's framed samples (cached on disk when ``cache``) and the raw dataset."""
        raw = self._open(split_args)
        if not self.cache:
            return _Float32(raw), raw
        from tonic import DiskCachedDataset

        return DiskCachedDataset(raw, cache_path=str(self.cache_path(split)), transform=_as_float32), raw

    def _open(self, split_args: dict[str, Any]) -> Any:
        """Instantiate the dataset class; its ``download`` explains missing files instead of failing later."""
        cls = self.dataset_class
        dataset = cls.__new__(cls)
        # tonic's datasets call self.download() when their files are missing: this instance's
        # one uses the files a user put there, downloads only when allowed, and explains failures.
        dataset.download = lambda: _fetch(dataset, cls, self.download, self.dataset_name)
        try:
            cls.__init__(
                dataset,
                save_to=str(self.save_to),
                transform=self.transform(),
                **self.dataset_args,
                **split_args,
            )
        finally:
            vars(dataset).pop("download", None)
        if len(dataset) == 0:
            raise DatasetNotFoundError(
                f"{self.dataset_name}: no samples found in {_location(dataset, self.save_to, cls)}; "
                + _where_hint(dataset, self.download)
            )
        return dataset

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        from tonic.collation import PadTensors

        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=PadTensors(batch_first=True),
        )

    def _require_setup(self) -> None:
        if self.train_set is None:
            self.setup("fit")


class _Float32(Dataset):
    """Framed samples of a dataset as float32 (the uncached path)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Any]:
        frames, target = self.dataset[index]
        return _as_float32(frames), target


def _as_float32(frames: Any) -> np.ndarray:
    """Event counts as float32 (exact up to 2**24 events per bin)."""
    return np.asarray(frames, dtype=np.float32)


def _resolve_class(dataset: str | type) -> type:
    if isinstance(dataset, type):
        return dataset
    module_name, _, name = str(dataset).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name, None) if module_name else None
    except ModuleNotFoundError as err:
        hint = (
            " (pip install 'tonic>=1.5', or pip install -e '.[events]' in a clone of t1c)"
            if module_name.split(".")[0] == "tonic"
            else ""
        )
        raise ValueError(f"EventDataModule(dataset={dataset!r}): cannot import {err.name}{hint}") from err
    if not isinstance(cls, type):
        raise ValueError(
            f"EventDataModule(dataset={dataset!r}): not a class path; use e.g. 'tonic.datasets.NMNIST'"
        )
    return cls


def _check_args(dataset_args, n_time_bins, time_window, val_fraction, batch_size, num_workers) -> None:
    reserved = sorted(set(dataset_args) & set(_RESERVED))
    if reserved:
        raise ValueError(
            f"EventDataModule(dataset_args=...): {reserved} are set by the data module; use save_to, "
            "val_fraction and the framing arguments instead"
        )
    if (n_time_bins is None) == (time_window is None):
        raise ValueError(
            f"EventDataModule(n_time_bins={n_time_bins!r}, time_window={time_window!r}): give exactly one "
            "(time bins per sample, or the duration of a bin)"
        )
    if n_time_bins is not None and not is_count(n_time_bins):
        raise ValueError(f"EventDataModule(n_time_bins={n_time_bins!r}): must be a positive integer")
    if time_window is not None and not time_window > 0:
        raise ValueError(f"EventDataModule(time_window={time_window!r}): must be positive")
    if val_fraction is not None and not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"EventDataModule(val_fraction={val_fraction!r}): must be None or in (0, 1)")
    if not is_count(batch_size):
        raise ValueError(f"EventDataModule(batch_size={batch_size!r}): must be a positive integer")
    if not is_count(num_workers, 0):
        raise ValueError(f"EventDataModule(num_workers={num_workers!r}): must be a non-negative integer")


def _location(dataset: Any, save_to: Path, cls: type) -> str:
    return str(getattr(dataset, "location_on_system", None) or save_to / cls.__name__)


def _expected_files(dataset: Any) -> list[str]:
    """The archive tonic would fetch and what it extracts to, as far as the instance says."""
    names = [getattr(dataset, "filename", None), getattr(dataset, "folder_name", None) or None]
    names.append(getattr(dataset, "data_filename", None))
    names = [str(n).rstrip("/") for n in names if n]
    return [n + "/" if "." not in n else n for n in dict.fromkeys(names)]


def _where_hint(dataset: Any, download: bool) -> str:
    files = _expected_files(dataset)
    what = f"put {' or '.join(files)} there" if files else "put the dataset's files there"
    url = getattr(dataset, "url", None)
    source = f" from {url}" if url else ""
    if download:
        return f"{what}, or run where the machine is online and tonic downloads them{source}"
    return f"{what}, or set download: true on a machine that is online and tonic downloads them{source}"


def _fetch(dataset: Any, cls: type, allowed: bool, name: str) -> None:
    """Stand-in for tonic's ``download()``: the files present, else tonic's download, else one clear error."""
    location = Path(_location(dataset, Path("."), cls))
    archive = getattr(dataset, "filename", None)
    has_archive = bool(archive) and (location / str(archive)).is_file()
    if not has_archive and _placed_by_hand(dataset, location):
        return  # files placed by hand (extracted, or a subset): use them as they are
    if not allowed and not has_archive:
        raise DatasetNotFoundError(f"{name}: no data in {location}; {_where_hint(dataset, False)}")
    try:
        cls.download(dataset)  # tonic checks the archive's md5, fetches it when needed, extracts it
    except Exception as err:  # urllib, zipfile, tarfile and OS errors: all mean "not here"
        raise DatasetNotFoundError(
            f"{name}: no usable data in {location} and tonic could not fetch it "
            f"({type(err).__name__}: {err}); {_where_hint(dataset, allowed)}"
        ) from err


def _placed_by_hand(dataset: Any, location: Path) -> bool:
    """Whether the split's extracted files are there: its folder (``folder_name``) or data file
    (``data_filename``) when the dataset names them, else any file under ``location``."""
    expected = [getattr(dataset, key, None) for key in ("folder_name", "data_filename")]
    expected = [location / str(e) for e in expected if e]
    if not expected:
        return location.is_dir() and any(p.is_file() for p in location.rglob("*"))
    return all(p.is_file() or (p.is_dir() and any(q.is_file() for q in p.rglob("*"))) for p in expected)


def _labels(raw: Any, framed: Dataset) -> list[int]:
    """Every sample's label: the dataset's ``targets`` when complete, else read sample by sample."""
    targets = getattr(raw, "targets", None)
    if targets is not None and len(targets) == len(raw):
        return [int(t) for t in targets]
    return [int(framed[i][1]) for i in range(len(framed))]  # also fills the cache


def _num_classes(raw: Any, labels: Sequence[int]) -> int:
    classes = getattr(raw, "classes", None)
    counted = max(labels) + 1 if len(labels) else 0
    try:
        return max(len(classes), counted) if classes is not None else counted
    except TypeError:
        return counted
