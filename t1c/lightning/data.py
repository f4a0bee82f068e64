"""Data for fine-tuning: the bundled digits set and user tensors or ``.npz`` files.

Both modules give static samples ``x`` (``[B, ...]``, float32) and integer labels ``y``;
:class:`~t1c.lightning.T1CModule` encodes ``x`` into spike trains itself, so the same data
serves every encoding and number of steps. Splits are stratified (each class keeps its
share in train and validation) and deterministic for a given ``seed``; no data is
downloaded.

When a Trainer sets a module up to fit a :class:`~t1c.lightning.T1CModule`, the data is
checked against the module's graph before training starts (:func:`check_data_fits`): a
sample shape the graph's ``Input`` does not take, or a label outside its output classes,
stops the run with one message naming the data, both shapes or the label and the class count.

Example:
    >>> dm = DigitsDataModule(batch_size=32)
    >>> dm.setup("fit")
    >>> x, y = next(iter(dm.train_dataloader()))
    >>> x.shape, y.dtype, dm.num_classes, dm.input_shape
    (torch.Size([32, 64]), torch.int64, 10, (64,))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["DigitsDataModule", "TensorDataModule", "check_data_fits", "stratified_split"]


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` with every class split in the same proportion, deterministic in ``seed``.

    Each class contributes ``round(n_class * val_fraction)`` samples to validation (at least
    one when it has two or more samples), so small classes are never left out of either side.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


class _SplitDataModule(pl.LightningDataModule):
    """Shared loaders: a seeded shuffle for training, a fixed order for validation."""

    def __init__(self, batch_size: int, val_fraction: float, seed: int, num_workers: int):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not 0.0 < float(val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
        self.batch_size = batch_size
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.num_workers = num_workers
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.num_classes = 0
        self.input_shape: tuple[int, ...] = ()
        #: Where the data comes from and the names of its train x/y and val x/y arrays (for messages).
        self.origin = type(self).__name__
        self.array_names: tuple[str, str, str, str] | None = ("x", "y", "x", "y")

    def setup(self, stage: str | None = None) -> None:
        """Load and split the data once; under a Trainer, check it against a T1CModule's graph."""
        if self.train_set is None:
            train_x, train_y, val_x, val_y = self._load()  # each subclass says where its data comes from
            self.train_set = TensorDataset(train_x, train_y)
            self.val_set = TensorDataset(val_x, val_y)
            self.num_classes = int(torch.cat([train_y, val_y]).max()) + 1
            self.input_shape = tuple(train_x.shape[1:])
        model = self.trainer.lightning_module if self.trainer is not None else None
        if model is not None:
            self.check_model(model)

    def check_model(self, model: Any) -> None:
        """Raise a ValueError when the data does not fit ``model``'s graph (:func:`check_data_fits`)."""
        self._require_setup()
        names = self.array_names or ("", "", "", "")
        for dataset, x_name, y_name in ((self.train_set, *names[:2]), (self.val_set, *names[2:])):
            samples, labels = dataset.tensors
            where = f"{self.origin} ({x_name}/{y_name})" if x_name else self.origin
            check_data_fits(model, tuple(samples.shape[1:]), labels, where)

    def _split(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        train, val = stratified_split(y.numpy(), self.val_fraction, self.seed)
        return x[train], y[train], x[val], y[val]

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        self._require_setup()
        return DataLoader(
            self.val_set,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _require_setup(self) -> None:
        if self.train_set is None:
            self.setup("fit")


class DigitsDataModule(_SplitDataModule):
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes); no download.

    Args:
        batch_size: samples per batch.
        val_fraction: share of each class held out for validation.
        seed: seeds the split and the training shuffle.
        num_workers: DataLoader workers (0 loads in the main process; the set is tiny).
        flatten: ``x`` of shape ``[64]`` (for MLPs) if True, else ``[1, 8, 8]`` (for convs).

    Pixels are scaled from 0..16 to [0, 1], ready for rate encoding.
    """

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
        flatten: bool = True,
    ):
        super().__init__(batch_size, val_fraction, seed, num_workers)
        self.flatten = bool(flatten)
        self.origin = "DigitsDataModule (scikit-learn's 8x8 digits)"
        self.array_names = None
        self.save_hyperparameters()

    def _load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.from_numpy(digits.data.astype(np.float32) / 16.0)
        if not self.flatten:
            x = x.reshape(-1, 1, 8, 8)
        return self._split(x, torch.from_numpy(digits.target.astype(np.int64)))


class TensorDataModule(_SplitDataModule):
    """User data: tensors/arrays in memory, or an ``.npz`` file.

    Give either ``x`` and ``y`` (split here, stratified), or ``path`` to an ``.npz`` holding
    ``x``/``y`` (split here) or ``train_x``/``train_y``/``val_x``/``val_y`` (used as given).

    Args:
        x: samples ``[N, ...]`` (numbers; cast to float32).
        y: integer class labels ``[N]``.
        path: an ``.npz`` file instead of ``x``/``y``.
        val_fraction: share of each class held out when the data is not pre-split.
        batch_size: samples per batch.
        seed: seeds the split and the training shuffle.
        num_workers: DataLoader workers.

    Example:
        >>> dm = TensorDataModule(torch.rand(20, 3), torch.arange(20) % 2, batch_size=4)
        >>> dm.setup("fit")
        >>> len(dm.train_set), len(dm.val_set), dm.num_classes
        (16, 4, 2)
    """

    def __init__(
        self,
        x: Tensor | np.ndarray | None = None,
        y: Tensor | np.ndarray | None = None,
        path: str | os.PathLike | None = None,
        val_fraction: float = 0.2,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, val_fraction, seed, num_workers)
        if path is None and (x is None or y is None):
            raise ValueError(
                "TensorDataModule needs x and y, or path= an .npz file with x/y or train_x/train_y/val_x/val_y"
            )
        if path is not None and (x is not None or y is not None):
            raise ValueError("TensorDataModule takes either x and y or path=, not both")
        self.path = None if path is None else Path(path)
        if self.path is not None and not self.path.is_file():
            raise FileNotFoundError(f"TensorDataModule(path={str(path)!r}): no such file")
        self._x, self._y = x, y
        self.origin = "TensorDataModule(x, y)" if self.path is None else f"data file '{self.path}'"
        self.save_hyperparameters(ignore=["x", "y"])

    def _load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if self.path is None:
            return self._split(*_as_xy(self._x, self._y, "x/y"))
        with np.load(self.path, allow_pickle=False) as data:
            keys = set(data.files)
            if {"train_x", "train_y", "val_x", "val_y"} <= keys:
                train = _as_xy(data["train_x"], data["train_y"], f"{self.path}: train_x/train_y")
                val = _as_xy(data["val_x"], data["val_y"], f"{self.path}: val_x/val_y")
                if train[0].shape[1:] != val[0].shape[1:]:
                    raise ValueError(
                        f"{self.path}: train_x samples have shape {list(train[0].shape[1:])} "
                        f"but val_x samples {list(val[0].shape[1:])}"
                    )
                self.array_names = ("train_x", "train_y", "val_x", "val_y")
                return (*train, *val)
            if {"x", "y"} <= keys:
                return self._split(*_as_xy(data["x"], data["y"], f"{self.path}: x/y"))
        raise ValueError(
            f"{self.path} holds {sorted(keys)}; expected arrays x and y, or train_x, train_y, val_x and val_y"
        )


def check_data_fits(model: Any, sample_shape: tuple[int, ...], labels: Tensor, where: str) -> None:
    """Check samples and labels against a :class:`~t1c.lightning.T1CModule`'s graph before training.

    Other models are not checked (their ``forward`` may reshape what it receives).

    Args:
        model: the LightningModule being fitted.
        sample_shape: the shape of one sample (without the batch dimension); with
            ``encoding="sequence"`` its first dimension is time.
        labels: the integer class labels of the data.
        where: the data's origin for the message, e.g. ``"data file 'x.npz' (x/y)"``.

    Raises:
        ValueError: a sample shape the graph's ``Input`` does not take, or a label outside
            the graph's output classes; the message names ``where``, both shapes or the
            label and the class count.
    """
    from .module import T1CModule

    if not isinstance(model, T1CModule):
        return
    graph = f"'{model.source_path}'" if model.source_path else "of the T1CModule"
    input_shape = tuple(model.input_shape)
    steps = model.encoding == "sequence"
    step_shape = tuple(sample_shape[1:]) if steps else tuple(sample_shape)
    fits = model._takes_step(step_shape) if steps else step_shape == input_shape
    if not fits:
        kind = "time steps" if steps else "samples"
        raise ValueError(
            f"{where}: {kind} have shape {list(step_shape)}, but the graph {graph} takes "
            f"{list(input_shape)} at its Input '{model.input_name}'; give data of shape "
            f"{list(input_shape)}, or fine-tune a graph whose input matches the data"
        )
    labels = torch.as_tensor(labels)
    outside = labels[(labels < 0) | (labels >= model.num_classes)]
    if len(outside):
        label = int(outside.max()) if int(outside.max()) >= model.num_classes else int(outside.min())
        raise ValueError(
            f"{where}: label {label} is outside the {model.num_classes} output classes (0..{model.num_classes - 1}) "
            f"of the graph {graph}; relabel the data as 0..{model.num_classes - 1}, or fine-tune a graph "
            f"with {int(labels.max()) + 1} outputs"
        )


def _as_xy(x, y, where: str) -> tuple[Tensor, Tensor]:
    """Float32 samples and int64 labels, checked to pair up."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"{where}: expected samples [N, ...] and labels [N], got shapes {list(x.shape)} and {list(y.shape)}"
        )
    if (y.is_floating_point() and not torch.equal(y, y.round())) or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"{where}: labels must be integer class indices, got dtype {y.dtype}")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{where}: labels must be >= 0, got {int(y.min())}")
    return x.to(torch.float32), y.to(torch.int64)
