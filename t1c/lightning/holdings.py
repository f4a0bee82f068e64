"""Which checkpoints a fit's ModelCheckpoints hold now, and the step of each one's weights.

The export callback never needs the files on disk to name an export: each ModelCheckpoint's
own record (``best_k_models``, ``best_model_path``, ``last_model_path``, the path and step of
its latest save) says which checkpoints it holds. :func:`held_by` turns that record into
:class:`Held` checkpoints, each with the global step of its weights (or marked to be exported
from the file's own weights); :func:`fit_folders` lists the folders a fit writes to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from .checkpoints import checkpoint_step
from .layout import under_folder


@dataclass(frozen=True)
class Held:
    """A checkpoint a ModelCheckpoint holds now: its path, the step of its weights, a link target.

    Attributes:
        checkpoint: the checkpoint's path (normalized).
        step: the global step of its weights (None: unknown).
        checkpoint_dir: its ModelCheckpoint's folder.
        export_dir: the folder its `.t1c` goes to.
        link_to: the checkpoint it links to (``save_last="link"``), or None.
        from_file: export it from the file's own weights (no export of this fit fits it).
    """

    checkpoint: str
    step: int | None
    checkpoint_dir: str
    export_dir: str
    link_to: str | None = None
    from_file: bool = False


def model_checkpoints(trainer: Trainer) -> list[ModelCheckpoint]:
    """The Trainer's ModelCheckpoint callbacks."""
    return [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]


def disk_steps(trainer: Trainer, paths: list[str]) -> dict[str, int | None]:
    """The global step stored in each checkpoint file (None: unreadable), read on rank zero."""
    steps: dict[str, int | None] = {}
    if trainer.is_global_zero:
        steps = {p: checkpoint_step(p) for p in paths}
    return trainer.strategy.broadcast(steps)


def held_by(
    mc: ModelCheckpoint,
    trainer: Trainer,
    *,
    saved: Mapping[str, int],
    known: Mapping[str, int],
    check_disk: bool,
    dirpath: str | None,
) -> list[Held]:
    """The checkpoints ``mc`` holds now, each with the global step of its weights.

    Only the checkpoints saved in this fit (``saved``: path -> step of its save) have the step
    of their save (their weights are the pending export's). Any other is a file from before:
    its step is the one its entry records (``known``), checked against the file when
    ``check_disk`` (the first reconcile of a fit: a crash may have left a newer file than its
    export); a checkpoint without an entry, or whose entry is stale, is exported from the
    file's own weights (``from_file``). ``dirpath``: the callback's export folder, if set.
    """
    if not mc.dirpath:
        return []
    checkpoint_dir = os.path.normpath(os.fspath(mc.dirpath))
    last_saved = os.path.normpath(mc._last_checkpoint_saved) if mc._last_checkpoint_saved else ""
    saved_step = mc._last_global_step_saved if last_saved else None
    last = os.path.normpath(mc.last_model_path) if mc.last_model_path else ""
    paths = [os.path.normpath(p) for p in [*mc.best_k_models, mc.best_model_path] if p]
    others = [p for p in dict.fromkeys([*paths, last]) if p and p not in saved]
    check = [p for p in others if check_disk or p not in known]
    on_disk = disk_steps(trainer, check) if check else {}

    def held(path: str, link_to: str | None = None) -> Held:
        export_dir = dirpath or (
            checkpoint_dir if under_folder(path, checkpoint_dir) else os.path.dirname(path)
        )
        if link_to is not None:
            return Held(path, saved_step, checkpoint_dir, export_dir, link_to=link_to)
        if path in saved:
            return Held(path, saved[path], checkpoint_dir, export_dir)
        if path in on_disk:
            step = on_disk[path]
            stale = step is None or known.get(path) != step
            return Held(path, step, checkpoint_dir, export_dir, from_file=stale)
        return Held(path, known[path], checkpoint_dir, export_dir)

    out = [held(p) for p in dict.fromkeys(p for p in paths if p != last)]
    if last:
        if mc.save_last == "link" and last_saved and last_saved != last and mc.save_top_k != 0:
            out.append(held(last, link_to=last_saved))
        else:
            out.append(held(last))
    return [h for h in out if h.step is not None or h.from_file]


def resumed_from(
    trainer: Trainer, held: list[Held], known: Mapping[str, int], dirpath: str | None
) -> list[Held]:
    """The checkpoint this fit resumed from, when no ModelCheckpoint holds it (another folder).

    ``known``: checkpoint -> the step its entry records, of any run.
    """
    if not trainer.ckpt_path:
        return []
    path = os.path.normpath(os.path.abspath(os.fspath(trainer.ckpt_path)))
    if any(h.checkpoint == path for h in held) or not path.endswith(".ckpt"):
        return []
    folder = os.path.dirname(path)
    step = disk_steps(trainer, [path]).get(path)
    if step is None:
        return []
    return [Held(path, step, folder, dirpath or folder, from_file=known.get(path) != step)]


def fit_folders(trainer: Trainer, dirpath: str | None, own_dir: str | None) -> set[str]:
    """The absolute folders a fit exports to: its ModelCheckpoints', ``dirpath``, ``own_dir``
    (exports without a ModelCheckpoint) and the folder of the checkpoint it resumed from."""
    folders = {os.path.normpath(os.fspath(mc.dirpath)) for mc in model_checkpoints(trainer) if mc.dirpath}
    if dirpath:
        folders.add(dirpath)
    if own_dir:
        folders.add(own_dir)
    if trainer.ckpt_path:
        folders.add(os.path.dirname(os.path.normpath(os.path.abspath(os.fspath(trainer.ckpt_path)))))
    return {os.path.abspath(f) for f in folders}
