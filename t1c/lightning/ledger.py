"""What the export callback has written: entries, top-k deletions, ``last.t1c``, resume.

The :class:`Ledger` keeps one entry per `.t1c` file of this run (plain types: it is the
callback's resumable state), plans what to write, copy, link or load for the checkpoints
every ModelCheckpoint holds (:func:`plan`), deletes the exports of checkpoints they dropped
(:func:`should_delete`; only files the run wrote, :attr:`Ledger.owned`), keeps ``last.t1c``
following the running fit (:func:`last_not_followed` says where it cannot), writes the
manifests, and merges the manifests of its folders at fit start. Only global rank zero
touches files; every rank keeps the same entries.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, wait
from typing import Any, NamedTuple

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from .exporting import Exporter, Pending, Submit
from .files import atomic_symlink, copy_replacing, remove_file
from .holdings import Held, held_by, model_checkpoints, resumed_from
from .layout import under_folder
from .manifest import MANIFEST_NAME, manifest_entries, manifest_entry, merge_manifest
from .naming import CHECKPOINT_SUFFIX, EXPORT_SUFFIX, LAST_STEM, export_path_for

STATE_VERSION = 2


class Action(NamedTuple):
    """One file to produce: ``kind`` ``"write"`` (the pending export of ``step``), ``"link"``
    (to ``source``), or ``"file"`` (the checkpoint file's own weights)."""

    kind: str
    path: str
    checkpoint: str | None
    step: int | None
    source: str | None


def should_delete(entry: Mapping[str, Any], held: set[str], run: str) -> bool:
    """An entry of ``run`` for a checkpoint its ModelCheckpoint no longer holds (decided with the disk)."""
    return (
        entry.get("run") == run
        and entry.get("checkpoint") is not None
        and entry["checkpoint"] not in held
        and not entry.get("kept")
    )


def held_export_path(h: Held) -> str:
    """The `.t1c` path of a held checkpoint's export (named after it, in its export folder)."""
    path = os.path.normpath(export_path_for(h.checkpoint, h.checkpoint_dir, h.export_dir))
    if h.export_dir != h.checkpoint_dir and not under_folder(h.checkpoint, h.checkpoint_dir):
        path = os.path.join(h.export_dir, os.path.basename(path))
    return path


def plan(held: Iterable[Held], entries: Mapping[str, Mapping[str, Any]], run: str) -> list[Action]:
    """The files to write, copy, link or load so that every held checkpoint has its export.

    A checkpoint whose entry of ``run`` already has its step (and link state) is skipped.
    """
    actions = []
    by_checkpoint: dict[str, str] = {}
    for h in held:
        path = held_export_path(h)
        by_checkpoint[h.checkpoint] = path
        entry = entries.get(path)
        if h.from_file:
            if (
                entry is None
                or entry.get("global_step") != h.step
                or entry.get("run") != run
                or not os.path.lexists(path)
            ):
                actions.append(Action("file", path, h.checkpoint, h.step, None))
            continue
        source = by_checkpoint.get(h.link_to) if h.link_to else None
        if h.link_to and source is None:
            source = next((p for p, e in entries.items() if e.get("checkpoint") == h.link_to), None)
        if entry is not None and entry["global_step"] == h.step and entry.get("run") == run:
            if not h.link_to and not entry.get("link"):
                continue
            if h.link_to and entry.get("link") and entry.get("same_as") == source:
                continue
        actions.append(Action("link" if h.link_to else "write", path, h.checkpoint, h.step, source))
    return actions


def last_not_followed(
    mcs: Iterable[ModelCheckpoint], dirpath: str | None, listed: Iterable[str]
) -> dict[str, str]:
    """The export folders whose ``last.t1c`` cannot follow this fit, each with the reason (read on rank zero).

    A ``last.ckpt`` this fit did not resume from is an earlier run's: ``last.t1c`` stays its
    export, and Lightning's version counter names this fit's last checkpoint ``last-v1.ckpt``
    (its export ``last-v1.t1c``). A ``last.t1c`` that no manifest ``listed`` is never overwritten.

    Args:
        mcs: the Trainer's ModelCheckpoints, their state restored (fit start).
        dirpath: the callback's export folder, or None (each ModelCheckpoint's).
        listed: the `.t1c` paths the manifests of this fit's folders list.
    """
    # per folder, the ModelCheckpoint saving last.ckpt (if any) decides
    mcs = sorted((mc for mc in mcs if mc.dirpath), key=lambda mc: not mc.save_last)
    ours = {os.path.normpath(mc.last_model_path) for mc in mcs if mc.last_model_path}
    listed = set(listed)
    reasons: dict[str, str] = {}
    seen: set[str] = set()
    for mc in mcs:
        checkpoint_dir = os.path.normpath(os.fspath(mc.dirpath))
        folder = dirpath or checkpoint_dir
        stem = mc.CHECKPOINT_NAME_LAST
        last_t1c = os.path.join(folder, LAST_STEM + EXPORT_SUFFIX)
        last_ckpt = os.path.join(checkpoint_dir, stem + mc.FILE_EXTENSION)
        if folder in seen or stem != LAST_STEM:
            continue
        seen.add(folder)
        if os.path.lexists(last_ckpt) and last_ckpt not in ours and mc._enable_version_counter:
            version = 1
            while os.path.lexists(os.path.join(checkpoint_dir, f"{stem}-v{version}{mc.FILE_EXTENSION}")):
                version += 1
            newest = (
                f"Lightning names this fit's {stem}-v{version}{mc.FILE_EXTENSION}, whose export "
                f"{stem}-v{version}{EXPORT_SUFFIX} is this fit's newest"
                if mc.save_last
                else "this fit keeps no last.t1c there"
            )
            reasons[folder] = (
                f"{last_ckpt} is an earlier run's (this fit did not resume from it), so {last_t1c} stays "
                f"its export: {newest}. Resume from it (ckpt_path) or give this fit its own folder to keep "
                "last.t1c current"
            )
        elif os.path.lexists(last_t1c) and last_t1c not in listed and not mc.save_last:
            reasons[folder] = (
                f"{last_t1c} is listed in no manifest, so it is never overwritten and this fit keeps no "
                "last.t1c there; move it away to keep last.t1c current"
            )
    return reasons


def state_entry(path: Any, entry: Any) -> dict[str, Any] | None:
    """An entry of a checkpoint's callback state, checked like a manifest entry (None: dropped, with a warning)."""
    try:
        if (
            not isinstance(path, str)
            or not isinstance(entry, Mapping)
            or not isinstance(entry.get("dir"), str)
        ):
            raise ValueError("not a path and an entry with a folder")
        folder = os.path.normpath(entry["dir"])
        if os.path.normpath(os.path.dirname(path)) != folder:
            raise ValueError(f"the file is not in the entry's folder {folder!r}")
        item = dict(entry)
        checkpoint = item.get("checkpoint")
        outside = isinstance(checkpoint, str) and not under_folder(checkpoint, folder)
        if isinstance(checkpoint, str):
            item["checkpoint"] = None if outside else os.path.relpath(checkpoint, folder)
        if isinstance(item.get("same_as"), str):
            item["same_as"] = os.path.relpath(item["same_as"], folder)
        checked = manifest_entry(os.path.basename(path), item, folder)
    except (ValueError, TypeError) as err:
        rank_zero_warn(f"T1CExport: the checkpoint's state entry {str(path)!r} is ignored: {err}")
        return None
    if outside:
        checked["checkpoint"] = os.path.normpath(
            checkpoint
        )  # checked for existence only, never read or deleted
    checked["kept"] = bool(entry.get("kept"))
    return checked


class Ledger:
    """The exports of one run and the files behind them.

    Args:
        run: this run's id (kept across resumes: files of other runs are never touched).
        dirpath: the folder every export goes to, or None (beside each checkpoint).
        save_last: keep ``last.t1c`` a copy of the newest export when no checkpoint owns it.
    """

    def __init__(self, run: str, dirpath: str | None, save_last: bool) -> None:
        self.run, self.dirpath, self.save_last = run, dirpath, save_last
        self.entries: dict[str, dict[str, Any]] = {}  # by absolute .t1c path (the resumable state)
        self.reference_file: str | None = None  # the first export written: the reference graph
        self.last_own_step: int | None = None  # the step of the last export without a ModelCheckpoint
        self.written: set[str] = set()  # .t1c files written in this fit (same-step copies)
        self.saved: dict[str, int] = {}  # checkpoints saved in this fit -> the step of their weights
        self.deleted: set[str] = set()  # files this run deleted (left out of merged manifests)
        # the files this run wrote or names after a checkpoint it holds: the only ones it deletes or
        # replaces (a manifest entry carrying the run's id proves nothing)
        self.owned: set[str] = set()
        self.check_disk = False  # first reconcile of a fit: read held checkpoints' steps from disk
        #: runs the files' changes off the training thread (None: at once); the callback
        #: reconciles again only when they are done
        self.background: Submit | None = None
        self.applying: Future | None = None  # the last apply submitted to the background

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The resumable state, plain types only (once the last apply in the background is done)."""
        if self.applying is not None:
            wait([self.applying])
        return {
            "version": STATE_VERSION,
            "entries": copy.deepcopy(self.entries),
            "reference_file": self.reference_file,
            "last_own_step": self.last_own_step,
            "run": self.run,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the state saved in a checkpoint; entries with an unsafe or mistyped field are dropped."""
        entries = state_dict.get("entries", {})
        self.entries = {}
        for path, entry in entries.items() if isinstance(entries, Mapping) else []:
            checked = state_entry(path, entry)
            if checked is not None:
                self.entries[checked["file"]] = checked
        reference = state_dict.get("reference_file")
        self.reference_file = reference if reference in self.entries else None
        step = state_dict.get("last_own_step")
        self.last_own_step = step if isinstance(step, int) else None
        run = state_dict.get("run")
        if isinstance(run, str) and run:
            self.run = run
        else:  # a state written before run ids: its entries are the resumed run's
            for entry in self.entries.values():
                entry["run"] = entry["run"] or self.run
        self.owned = {p for p, e in self.entries.items() if e["run"] == self.run}

    def reference_files(self) -> list[str]:
        """The written exports a reference graph is read back from: the first one, then by step."""
        by_step = sorted(self.entries, key=lambda p: self.entries[p]["global_step"])
        return [p for p in [self.reference_file, *by_step] if p and p in self.entries]

    # -- the checkpoints held ---------------------------------------------------------------
    def note_saves(self, trainer: Trainer) -> None:
        """Record the checkpoint each ModelCheckpoint saved last in this fit, with its step.

        Called at every save (a ModelCheckpoint saves top-k and ``last`` one after the other at
        one step) and every reconcile, so each checkpoint written in this fit is known with the
        step whose live weights were exported at its ``on_save_checkpoint``.
        """
        for mc in model_checkpoints(trainer):
            if mc._last_checkpoint_saved:
                self.saved[os.path.normpath(mc._last_checkpoint_saved)] = mc._last_global_step_saved

    def held(self, trainer: Trainer) -> list[Held]:
        """Every checkpoint the ModelCheckpoints hold now (and the one resumed from, at a fit's start)."""
        own = {
            e["checkpoint"]: e["global_step"]
            for e in self.entries.values()
            if e.get("checkpoint") and e.get("run") == self.run
        }
        held: list[Held] = []
        for mc in model_checkpoints(trainer):
            held.extend(
                held_by(
                    mc, trainer, saved=self.saved, known=own, check_disk=self.check_disk, dirpath=self.dirpath
                )
            )
        if self.check_disk:  # a fit's first reconcile: every run's exports name the checkpoints known
            known = {e["checkpoint"]: e["global_step"] for e in self.entries.values() if e.get("checkpoint")}
            held.extend(resumed_from(trainer, held, known, self.dirpath))
        self.check_disk = False
        return held

    def reconcile(self, trainer: Trainer, pl_module: LightningModule, exporter: Exporter) -> None:
        """Bring the `.t1c` files in line with the checkpoints the ModelCheckpoints hold now
        (planned here once the last changes applied in the background are done, then
        :meth:`apply`'d)."""
        if self.applying is not None:
            wait([self.applying])
        self.note_saves(trainer)
        held = self.held(trainer)
        named = {held_export_path(h) for h in held}  # a held checkpoint's export is never deleted
        self.owned.update(named)
        actions = plan(held, self.entries, self.run)
        held_paths = {h.checkpoint for h in held}
        candidates = [
            p
            for p, e in self.entries.items()
            if p in self.owned and p not in named and should_delete(e, held_paths, self.run)
        ]
        deletions: list[str] = []
        if candidates:
            gone = [not os.path.lexists(self.entries[p]["checkpoint"]) for p in candidates]
            gone = trainer.strategy.broadcast(gone)
            deletions = [p for p, g in zip(candidates, gone) if g]
            for p, g in zip(candidates, gone):
                if not g:
                    self.entries[p]["kept"] = True
        self.apply(trainer, pl_module, exporter, actions, deletions)

    # -- files ------------------------------------------------------------------------------
    def apply(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        exporter: Exporter,
        actions: list[Action],
        deletions: list[str],
        now: bool = False,
    ) -> None:
        """Write, copy, link and delete on rank zero; update entries on every rank; meet at a barrier.

        In :attr:`background` when set, unless ``now`` or a checkpoint file's own weights are to
        be exported (they are loaded into the live module: on the training thread).
        """
        if not actions and not deletions:
            return
        if not now and self.background is not None and all(a.kind != "file" for a in actions):
            self.applying = self.background(
                lambda: self.apply(trainer, pl_module, exporter, actions, deletions, now=True)
            )
            return
        touched: set[str] = set()
        rank_zero = trainer.is_global_zero
        for path in deletions:
            self.detach_copies(path, rank_zero)
            entry = self.entries.pop(path)
            touched.add(entry["dir"])
            self.deleted.add(path)
            self.owned.discard(path)
            if rank_zero:
                remove_file(path)
        for action in actions:
            entry = self.materialize(trainer, pl_module, exporter, action)
            if entry is not None:
                self.entries[action.path] = entry
                self.deleted.discard(action.path)
                self.owned.add(action.path)
                touched.add(entry["dir"])
        if self.save_last:
            names = (LAST_STEM + CHECKPOINT_SUFFIX, LAST_STEM + EXPORT_SUFFIX)
            on_disk = (
                {f: [os.path.lexists(os.path.join(f, n)) for n in names] for f in touched}
                if rank_zero
                else {}
            )
            on_disk = trainer.strategy.broadcast(on_disk)
            for folder in sorted(touched):
                self.update_last(folder, rank_zero, *on_disk[folder])
        if rank_zero:
            for folder in sorted(touched):
                merge_manifest(folder, self.entries, self.deleted, self.run)
        trainer.strategy.barrier("T1CExport")

    def detach_copies(self, path: str, rank_zero: bool) -> None:
        """Before ``path`` is deleted: the entries copied or linked from it stop naming it.

        ``same_as`` becomes None; a link this run made becomes a copy of the file (so it never
        dangles). A file this run did not write is left as it is.
        """
        for entry in self.entries.values():
            if entry.get("same_as") != path:
                continue
            entry["same_as"] = None
            if entry["file"] not in self.owned:
                continue
            if entry.get("link") and rank_zero and os.path.islink(entry["file"]):
                copy_replacing(entry["file"], entry["file"])
            entry["link"] = False

    def materialize(
        self, trainer: Trainer, pl_module: LightningModule, exporter: Exporter, action: Action
    ) -> dict[str, Any] | None:
        """Produce one file: link/copy an export of the step written in this fit, write the pending
        graph, or (``kind="file"``) export the checkpoint file's own weights; its entry, or None."""
        kind, path, checkpoint, step, source = action
        rank_zero = trainer.is_global_zero
        if kind == "file":
            pending = exporter.build_from_file(trainer, pl_module, checkpoint)
            if pending is None:
                return None
        else:
            same = self.same_step_export(path, step, source)
            if same is not None:
                # same_as only names an entry of the same manifest: from another folder, a copy
                beside = os.path.dirname(same) == os.path.dirname(path)
                link = kind == "link" and beside
                if rank_zero:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    (atomic_symlink if link else copy_replacing)(same, path)
                return {
                    **self.entries[same],
                    "file": path,
                    "dir": os.path.dirname(path),
                    "checkpoint": checkpoint,
                    "same_as": same if beside else None,
                    "link": link,
                    "kept": False,
                    "run": self.run,
                }
            pending = exporter.pending.get(step)
            if pending is None:
                if step not in exporter.submitted:  # a failed background export raises its own error
                    rank_zero_warn(
                        f"T1CExport: no export of step {step} is available for {checkpoint}; skipped"
                    )
                return None
        if rank_zero:
            exporter.write(path, pending, checkpoint)
        self.written.add(path)
        if self.reference_file is None:
            self.reference_file = path
        return self.written_entry(path, checkpoint, pending)

    def same_step_export(self, path: str, step: int | None, source: str | None) -> str | None:
        """An export already made of ``step`` that ``path`` copies: ``source``, else one written in this fit."""
        if source in self.entries:
            return source
        return next(
            (
                p
                for p in sorted(self.written)
                if p in self.entries and self.entries[p]["global_step"] == step and p != path
            ),
            None,
        )

    def written_entry(self, path: str, checkpoint: str | None, pending: Pending) -> dict[str, Any]:
        """The entry of ``pending`` written at ``path`` for ``checkpoint``."""
        return {
            "file": path,
            "dir": os.path.dirname(path),
            "checkpoint": checkpoint,
            "epoch": pending.epoch,
            "global_step": pending.step,
            "metrics": dict(pending.metrics),
            "content_hash": pending.content_hash,
            "source_hash": pending.source_hash,
            "same_as": None,
            "link": False,
            "kept": False,
            "run": self.run,
        }

    def update_last(
        self, folder: str, rank_zero: bool, last_ckpt_exists: bool, last_t1c_exists: bool
    ) -> None:
        """Keep ``last.t1c`` a copy of the running fit's newest export in ``folder``.

        An earlier run's ``last.t1c`` (an entry without a checkpoint) is taken over. Left alone
        when a checkpoint owns the name (this run's ``last.ckpt``), when a ``last.ckpt`` of
        another run lies beside it (a ``.t1c`` is never paired with another run's checkpoint),
        or when no manifest lists the file; only a ``last.t1c`` this run wrote is ever removed.
        """
        path = os.path.join(folder, LAST_STEM + EXPORT_SUFFIX)
        current = self.entries.get(path)
        if current is not None and current.get("checkpoint"):
            return
        foreign_last = last_ckpt_exists  # this run's last.ckpt would own the entry (returned above)
        exports = [e for p, e in self.entries.items() if e["dir"] == folder and p != path and p in self.owned]
        if not exports or foreign_last or (current is None and last_t1c_exists):
            if current is not None and path in self.owned:
                self.entries.pop(path)
                self.owned.discard(path)
                if rank_zero and not foreign_last:
                    remove_file(path)
            return
        newest = max(exports, key=lambda e: (e["global_step"], not e.get("same_as")))
        source = newest.get("same_as") or newest["file"]
        if (
            path in self.owned
            and current is not None
            and current.get("same_as") == source
            and current["global_step"] == newest["global_step"]
        ):
            return
        if rank_zero:
            copy_replacing(source, path)  # a link left there (another run's) is replaced, not written through
        self.owned.add(path)
        self.entries[path] = {
            **newest,
            "file": path,
            "checkpoint": None,
            "same_as": source,
            "link": False,
            "kept": False,
            "run": self.run,
        }

    # -- manifests --------------------------------------------------------------------------
    def start_fit(self, trainer: Trainer, folders: set[str]) -> None:
        """Fit start (states restored): forget the last fit's saves, merge the manifests of the
        fit's ``folders``, check the held checkpoints' steps on disk at the first reconcile, and
        warn once per folder whose ``last.t1c`` cannot follow this fit."""
        self.saved.clear()
        self.merge_from_disk(trainer, folders)
        self.check_disk = True
        if self.save_last and trainer.is_global_zero:
            reasons = last_not_followed(model_checkpoints(trainer), self.dirpath, self.entries)
            for folder in sorted(reasons):
                rank_zero_warn(f"T1CExport: {reasons[folder]}")

    def merge_from_disk(self, trainer: Trainer, folders: set[str]) -> None:
        """Fit start: read the manifests of this fit's ``folders`` (newer than the state inside a checkpoint).

        Entries that name a path outside their folder or have mistyped fields are ignored with
        a warning naming the manifest and the entry. Entries restored from a checkpoint's state
        are kept only for ``folders`` (absolute).
        """
        self.entries = {p: e for p, e in self.entries.items() if os.path.abspath(e["dir"]) in folders}
        found: dict[str, dict[str, Any]] = {}
        if trainer.is_global_zero:
            for folder in sorted(folders):
                found.update(self.manifest_found(os.path.join(folder, MANIFEST_NAME)))
        found = trainer.strategy.broadcast(found)
        self.entries.update(found)

    def manifest_found(self, manifest: str) -> dict[str, dict[str, Any]]:
        """The trustworthy entries of ``manifest`` whose files exist, completed from the known entries."""
        try:
            entries, problems = manifest_entries(manifest)
        except ValueError as err:
            rank_zero_warn(f"T1CExport: {err}; its entries are ignored")
            return {}
        for line in problems:
            rank_zero_warn(f"T1CExport: {line}")
        found = {}
        for path, entry in entries.items():
            if os.path.lexists(path):
                known = self.entries.get(path)
                if known and known.get("content_hash") == entry["content_hash"]:
                    if entry["run"] is None:  # a manifest written before run ids
                        entry["run"] = known.get("run")
                    if entry["checkpoint"] is None:  # a checkpoint outside the folder
                        entry["checkpoint"] = known.get("checkpoint")
                found[path] = {**entry, "kept": False}
        return found
