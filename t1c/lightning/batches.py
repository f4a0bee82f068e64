"""How a batch holds time, and the loaders and samples the export callback takes from a Trainer.

A plain LightningModule's batches hold one step per sample (``"static"``), or time steps:
``[B, T, ...]`` (``"BT"``, as tonic collates event frames) or ``[T, B, ...]`` (``"TB"``).
:func:`layout_of` tells them apart from the model's first layer and the labels' count;
:func:`one_step` takes an export sample ``[1, *step_shape]`` from a batch, and
:func:`time_first` makes the exported graph's input ``[T, B, ...]`` of one.

Example:
    >>> import torch
    >>> layout_of(torch.zeros(8, 5, 3), torch.nn.Linear(3, 2), batch_size=8)
    'BT'
    >>> one_step(torch.zeros(8, 5, 3), "BT").shape
    torch.Size([1, 3])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn

#: Each layout in words, for messages.
LAYOUT_WORDS = {
    "static": "one step per sample [B, ...]",
    "BT": "time second [B, T, ...]",
    "TB": "time first [T, B, ...]",
}


def first_layer(model: nn.Module | None) -> tuple[nn.Module | None, bool]:
    """The first module with weights of ``model`` (registration order) and whether a Flatten precedes it."""
    flatten = False
    for sub in model.modules() if model is not None else []:
        if isinstance(sub, nn.Flatten):
            flatten = True
        elif isinstance(sub, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return sub, flatten
    return None, flatten


def layout_of(x: torch.Tensor, model: nn.Module | None, batch_size: int | None) -> str:
    """How a batch input holds time: ``"static"``, ``"BT"`` (``[B, T, ...]``) or ``"TB"``.

    A batch is temporal when one step of one sample, not one sample, fits the model's first
    layer: a Linear's features (after a Flatten: their count), a ConvNd's rank and channels.
    Which of the first two axes is time follows from the labels' count ``batch_size``
    (``[B, T, ...]``, as tonic collates, when both fit).
    """
    layer, flatten = first_layer(model)
    if layer is None or x.ndim < 3:
        return "static"
    if isinstance(layer, nn.Linear):
        features = layer.in_features
        if flatten:
            temporal = math.prod(x.shape[1:]) != features and math.prod(x.shape[2:]) == features
        else:
            temporal = x.ndim == 3 and x.shape[-1] == features
    else:
        rank = layer.weight.ndim - 2  # ConvNd weights are [out, in, *kernel]
        temporal = x.ndim == rank + 3 and x.shape[2] == layer.in_channels
    if not temporal:
        return "static"
    if batch_size is not None and x.shape[1] == batch_size and x.shape[0] != batch_size:
        return "TB"
    return "BT"


def one_step(x: torch.Tensor, layout: str) -> torch.Tensor:
    """One time step of one sample, ``[1, *step_shape]``, of a batch in ``layout``."""
    if layout == "BT":
        return x[:1, 0]
    if layout == "TB":
        return x[0, :1]
    return x[:1]


def batch_size(x: torch.Tensor, layout: str) -> int:
    """The number of samples in a batch input held in ``layout``."""
    return int(x.shape[1] if layout == "TB" else x.shape[0])


def time_first(x: torch.Tensor, layout: str, steps: int | None) -> torch.Tensor:
    """The graph's input ``[T, B, *step]`` for a batch: its own steps, else ``steps`` copies of it (one if None)."""
    if layout == "BT":
        return x.transpose(0, 1)
    if layout == "TB":
        return x
    return x.unsqueeze(0).expand(steps or 1, *x.shape)


def example_input(pl_module: LightningModule) -> Any:
    """The module's ``example_input_array`` (the first of a tuple), or None."""
    sample = getattr(pl_module, "example_input_array", None)
    if isinstance(sample, (tuple, list)) and sample:
        return sample[0]
    return sample


def to_device(x: Any, device: torch.device) -> Any:
    """``x`` on ``device`` when it is a tensor, else ``x`` itself."""
    return x.to(device) if isinstance(x, torch.Tensor) else x


def first_loader(loaders: Any) -> Any:
    """The first of a Trainer's loaders (a mapping's first value, a sequence's first item), or None."""
    if isinstance(loaders, Mapping):
        loaders = next(iter(loaders.values()), None)
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    return loaders


def first_batch(trainer: Trainer) -> Any:
    """The first batch of the training data (drawn under the caller's preserved RNG), or None."""
    loader = trainer.train_dataloader
    source = getattr(trainer.fit_loop, "_data_source", None)
    if loader is None and source is not None and source.is_defined():  # not set up: no training left
        loader = source.dataloader()
    loader = first_loader(loader)
    if loader is None:
        return None
    try:
        return next(iter(loader))
    except (StopIteration, TypeError):
        return None


def val_loader(trainer: Trainer) -> Any:
    """The first validation loader of a Trainer (its data module's when not set up yet), or None."""
    loaders = trainer.val_dataloaders
    if loaders is None and trainer.datamodule is not None and hasattr(trainer.datamodule, "val_dataloader"):
        loaders = trainer.datamodule.val_dataloader()
    return first_loader(loaders)
