"""Lightning checkpoints, read safely, and the ``t1c_export`` facts written into a `.t1c` from one.

A checkpoint is a pickle, and a plain ``torch.load`` runs whatever code the pickle names.
Every checkpoint t1c reads goes through :func:`load_checkpoint`, the one
``torch.load(weights_only=True)`` of the package: it builds tensors, containers, numbers
and strings (and the paths of :data:`SAFE_CHECKPOINT_GLOBALS`) and refuses everything else.
:func:`export_metadata` builds the ``graph.metadata["t1c_export"]`` mapping that both the
export callback and ``t1c export`` write.

Example:
    >>> export_metadata(epoch=3, global_step=120, source_hash="ab")
    {'epoch': 3, 'global_step': 120, 'source_hash': 'ab'}
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import PosixPath, PurePosixPath, PureWindowsPath, WindowsPath
from typing import IO, Any

import torch

from .naming import nest_metrics

#: The key of the export facts in a `.t1c` file's graph metadata.
METADATA_KEY = "t1c_export"

#: What a Lightning checkpoint may hold beyond tensors and plain values: paths in the
#: hyperparameters of a model or data module (``TensorDataModule(path=Path(...))``).
SAFE_CHECKPOINT_GLOBALS = (PurePosixPath, PureWindowsPath, PosixPath, WindowsPath)


@contextlib.contextmanager
def safe_checkpoint_globals() -> Iterator[None]:
    """Allow :data:`SAFE_CHECKPOINT_GLOBALS` in the weights-only loads made inside the block
    (``LightningModule.load_from_checkpoint(..., weights_only=True)`` among them)."""
    with torch.serialization.safe_globals(list(SAFE_CHECKPOINT_GLOBALS)):
        yield


def load_checkpoint(source: str | os.PathLike | IO[bytes], *, mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)`` onto the CPU: no code in the checkpoint can run.

    Args:
        source: a checkpoint file's path, or a binary file object holding its bytes.
        mmap: map the file instead of reading it (a path only; for a look at one field).

    Raises:
        pickle.UnpicklingError: the checkpoint holds objects other than those allowed; torch
            reports a file that is not a checkpoint with other exception types.
    """
    with safe_checkpoint_globals():
        return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)


def checkpoint_step(path: str) -> int | None:
    """The ``global_step`` stored in a checkpoint file, None when it cannot be read safely."""
    if not os.path.isfile(path):
        return None
    try:
        step = load_checkpoint(path, mmap=True).get("global_step")
    except Exception:  # torch reports unreadable files with many exception types
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def checkpoint_weights(path: str) -> tuple[dict[str, torch.Tensor], int, int] | str:
    """``(state_dict, global_step, epoch)`` of a checkpoint file, or why it cannot be used."""
    if not os.path.isfile(path):
        return "are gone (the file does not exist)"
    try:
        data = load_checkpoint(path)
    except Exception as err:  # torch reports unreadable files with many exception types
        return f"cannot be loaded with torch.load(weights_only=True) ({type(err).__name__})"
    state, step, epoch = data.get("state_dict"), data.get("global_step"), data.get("epoch")
    if not isinstance(state, Mapping) or not isinstance(step, int) or not isinstance(epoch, int):
        return "are not in it (no state_dict, global_step and epoch)"
    return dict(state), step, epoch


def export_metadata(
    *,
    epoch: int,
    global_step: int,
    source_hash: str | None,
    exported_by: str | None = None,
    checkpoint: str | None = None,
    metrics: Mapping[str, float] | None = None,
    weights: str | None = None,
    integer_weights: bool | None = None,
    weight_bits: int | None = None,
    accumulator_bits: int | None = None,
) -> dict[str, Any]:
    """The ``t1c_export`` facts of one export, in the order they are written; an argument
    left as None is left out (nothing is claimed that was not done).

    Args:
        epoch: the epoch of the exported weights.
        global_step: the global step of the exported weights.
        source_hash: content hash of the reference (source) graph.
        exported_by: what wrote the file when it is not the callback (``"t1c export"``).
        checkpoint: the checkpoint's path relative to the file (the callback adds it when it
            knows the file's place).
        metrics: flat metric names -> values, stored nested (:func:`~t1c.lightning.naming.nest_metrics`).
        weights: where the weights came from (the live model, the checkpoint file).
        integer_weights: whether the file carries the quantized integers.
        weight_bits: bits per weight of the integers or of the measured simulation.
        accumulator_bits: accumulator width of the integers or of the measured simulation.
    """
    values = {
        "exported_by": exported_by,
        "checkpoint": checkpoint,
        "epoch": epoch,
        "global_step": global_step,
        "metrics": None if metrics is None else nest_metrics(metrics),
        "source_hash": source_hash,
        "weights": weights,
        "integer_weights": integer_weights,
        "weight_bits": weight_bits,
        "accumulator_bits": accumulator_bits,
    }
    always = ("epoch", "global_step", "source_hash")
    return {key: value for key, value in values.items() if value is not None or key in always}
