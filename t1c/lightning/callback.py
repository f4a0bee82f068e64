"""Export to T1C-IR at every checkpoint: ``Trainer(callbacks=[T1CExport()])``.

Whenever the Trainer saves a checkpoint, a `.t1c` file of the same weights is written next
to it (``epoch=3-step=120.ckpt`` -> ``epoch=3-step=120.t1c``), ``last.t1c`` is kept
current, and a manifest ``t1c_exports.json`` beside the files maps checkpoint -> `.t1c` ->
metrics with the epoch and step they were measured at. Each export is checked against the
source graph's topology, and for a :class:`~t1c.lightning.T1CModule` the validation data is
run through the exported graph in float and in quantized simulation::

    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint
    from t1c.lightning import DigitsDataModule, T1CExport, T1CModule

    module = T1CModule("mlp_snn.t1c")
    trainer = Trainer(max_epochs=5, callbacks=[
        ModelCheckpoint(monitor="val/acc", mode="max", save_top_k=2, save_last=True),
        T1CExport(weight_bits=8, max_quant_gap=0.05),
    ])
    trainer.fit(module, DigitsDataModule())
    # checkpoints/epoch=4-step=..ckpt + .t1c, last.t1c, t1c_exports.json; logged t1c/float_acc,
    # t1c/quant_acc, t1c/quant_gap, t1c/export_agreement

How a checkpoint's path is found. ``on_save_checkpoint`` runs before the checkpoint file is
written and is not told its path. So the callback exports the in-memory model there, once per
global step, into a pending slot (measured, verified, metadata filled: what is measured is
what ships). At its next hook, after ModelCheckpoint has finished saving, it reads each
ModelCheckpoint's own record (``best_k_models``, ``best_model_path``, ``last_model_path``,
the last path it saved and at which step) and writes one `.t1c` per checkpoint held. The
files on disk are never needed to name an export, and callback order does not matter:
Lightning runs ModelCheckpoint last, so each of its saves is followed by one of our hooks.
A second checkpoint of the same step (``last.ckpt``) copies the file already written, or
links it with ``save_last="link"``. When ModelCheckpoint drops a checkpoint (top-k) and the
file is gone, its `.t1c` and manifest entry go too.

Without a ModelCheckpoint the callback saves on its own schedule: ``dirpath``, ``filename``
(``"{epoch}-{step}"`` style) and ``every_n_epochs`` work like ModelCheckpoint's.

Distributed training. Every rank exports (the model is the same) and evaluates its own
shard of the validation data (Lightning's distributed sampler); the counts are summed across
ranks with ``strategy.reduce``, so every rank logs and stores the same figures (a sampler
that pads the last shard counts a few samples twice). Only global rank zero writes, deletes
and reads files; the decisions it takes from the disk are broadcast, and ranks meet at a
barrier after each write, so names and the manifest are identical everywhere.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn

from t1c import ir

from .naming import (
    EXPORT_SUFFIX,
    LAST_STEM,
    MANIFEST_NAME,
    atomic_copy,
    atomic_symlink,
    export_path_for,
    format_name,
    nest_metrics,
    read_manifest,
    remove_file,
    sanitize_stem,
    scalar_metrics,
    write_manifest,
)

log = logging.getLogger(__name__)

VERIFY_MODES = ("raise", "warn", "off")
GAP_ACTIONS = ("warn", "raise")
METRIC_PREFIX = "t1c/"
METADATA_KEY = "t1c_export"
_STATE_VERSION = 1


class T1CExportError(RuntimeError):
    """An export failed a check the user asked for (topology, quantization gap)."""


@dataclass
class _Pending:
    """A graph exported at one global step, waiting for the checkpoint paths of that step."""

    step: int
    epoch: int
    graph: ir.Graph
    metrics: dict[str, float]
    content_hash: str
    source_hash: str | None


@dataclass(frozen=True)
class _Held:
    """A checkpoint a ModelCheckpoint holds now: its path, the step of its weights, a link target."""

    checkpoint: str
    step: int | None
    checkpoint_dir: str
    export_dir: str
    link_to: str | None = None


class T1CExport(Callback):
    r"""Write a `.t1c` of the model beside every checkpoint, verified and measured.

    Args:
        dirpath: folder for the `.t1c` files and the manifest. Default: beside each
            checkpoint; without a ModelCheckpoint, ``<log_dir>/checkpoints``.
        filename: name template used only without a ModelCheckpoint, formatted like
            ModelCheckpoint's (``"{epoch}-{step}"``, ``"{epoch}-{val/acc:.2f}"``).
        every_n_epochs: export period used only without a ModelCheckpoint (0: never).
        save_last: keep ``last.t1c`` pointing at the newest export (a copy).
        verify: ``"raise"`` (default) stops training with the readable topology diff when
            an export's topology differs from the source graph (``T1CModule.source_graph``,
            else the first export); ``"warn"`` logs it; ``"off"`` skips the check.
        weight_bits: bits per weight in the quantized simulation (SpikingAffine nodes keep
            their own hint).
        accumulator_bits: accumulator width in the quantized simulation.
        integer_weights: store the quantized simulation's integers and scales in each file
            (``weight_int``, ``weight_scale``, ``bias_int``), the exact values measured.
        limit_batches: validation batches used for the float/quantized metrics (None: all).
        max_quant_gap: largest accepted ``t1c/quant_gap`` (float minus quantized accuracy);
            None: no limit.
        on_quant_gap: what a gap above ``max_quant_gap`` does: ``"warn"`` or ``"raise"``.
        module_attr: attribute of a plain LightningModule holding the model to export;
            default: ``model``, ``net``, or its only child module with parameters.
        export_kwargs: extra keyword arguments for :func:`t1c.bridge.to_ir` (``custom_map``,
            ``spiking``...), for plain LightningModules.

    Raises:
        ValueError: an argument is out of range; the message repeats it.
    """

    def __init__(
        self,
        dirpath: str | os.PathLike | None = None,
        filename: str | None = None,
        every_n_epochs: int = 1,
        save_last: bool = True,
        verify: Literal["raise", "warn", "off"] = "raise",
        weight_bits: int = 8,
        accumulator_bits: int = 32,
        integer_weights: bool = True,
        limit_batches: int | None = None,
        max_quant_gap: float | None = None,
        on_quant_gap: Literal["warn", "raise"] = "warn",
        module_attr: str | None = None,
        export_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_init(
            dirpath=dirpath,
            filename=filename,
            every_n_epochs=every_n_epochs,
            verify=verify,
            weight_bits=weight_bits,
            accumulator_bits=accumulator_bits,
            limit_batches=limit_batches,
            max_quant_gap=max_quant_gap,
            on_quant_gap=on_quant_gap,
            module_attr=module_attr,
        )
        self.dirpath = os.path.normpath(os.fspath(dirpath)) if dirpath is not None else None
        self.filename = filename or "{epoch}-{step}"
        self.every_n_epochs = every_n_epochs
        self.save_last = bool(save_last)
        self.verify = verify
        self.weight_bits = weight_bits
        self.accumulator_bits = accumulator_bits
        self.integer_weights = bool(integer_weights)
        self.limit_batches = limit_batches
        self.max_quant_gap = max_quant_gap
        self.on_quant_gap = on_quant_gap
        self.module_attr = module_attr
        self.export_kwargs = dict(export_kwargs or {})

        # entries by absolute .t1c path (plain types: this is the resumable state)
        self.entries: dict[str, dict[str, Any]] = {}
        self._reference_file: str | None = None
        self._last_own_step: int | None = None
        # in memory only
        self._pending: dict[int, _Pending] = {}
        self._reference: ir.Graph | None = None
        self._sample: Any = None
        self._own_dir: str | None = None
        self._dirty = False

    @property
    def state_key(self) -> str:
        return self._generate_state_key(dirpath=self.dirpath, filename=self.filename)

    # -- hooks, in the order the Trainer calls them --------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        folder = self.dirpath or os.path.join(trainer.log_dir or trainer.default_root_dir, "checkpoints")
        self._own_dir = os.path.normpath(trainer.strategy.broadcast(folder))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._merge_manifests_from_disk(trainer)
        self._dirty = True
        self._reconcile(trainer)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._sample is None and _example_input(pl_module) is None:
            self._sample = _batch_input(batch)
        self._reconcile(trainer)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._reconcile(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._reconcile(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reconcile(trainer)
        if self._should_export_own(trainer):
            self._export_own(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self._should_export_at_save(trainer):
            return
        with _rng_preserved(pl_module):
            self._prepare(trainer, pl_module)
        self._dirty = True

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reconcile(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # ModelCheckpoint.on_train_end may save after our on_train_end
        self._reconcile(trainer)
        self._pending.clear()

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "entries": copy.deepcopy(self.entries),
            "reference_file": self._reference_file,
            "last_own_step": self._last_own_step,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.entries = copy.deepcopy(dict(state_dict.get("entries", {})))
        self._reference_file = state_dict.get("reference_file")
        self._last_own_step = state_dict.get("last_own_step")

    # -- predicates -----------------------------------------------------------------------
    @staticmethod
    def _should_skip(trainer: Trainer) -> bool:
        """No exports outside fitting, during the sanity check or with ``fast_dev_run``."""
        return bool(trainer.fast_dev_run) or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking

    def _should_export_at_save(self, trainer: Trainer) -> bool:
        """A checkpoint is being saved: export unless skipped or this step is already exported."""
        return not self._should_skip(trainer) and bool(trainer.checkpoint_callbacks)

    def _should_export_own(self, trainer: Trainer) -> bool:
        """Without a ModelCheckpoint: every ``every_n_epochs`` epochs, once per global step."""
        return (
            not self._should_skip(trainer)
            and not _model_checkpoints(trainer)
            and self.every_n_epochs >= 1
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
            and trainer.global_step != self._last_own_step
        )

    def _should_delete(self, entry: Mapping[str, Any], held: set[str]) -> bool:
        """An entry of a checkpoint its ModelCheckpoint no longer holds (decided with the disk)."""
        return (
            entry.get("checkpoint") is not None and entry["checkpoint"] not in held and not entry.get("kept")
        )

    # -- export ---------------------------------------------------------------------------
    def _prepare(self, trainer: Trainer, pl_module: LightningModule) -> _Pending:
        """Export, verify and measure the in-memory model once per global step.

        Callers hold :func:`_rng_preserved`: building evaluation modules and encoding inputs
        draw random numbers, and training must continue with the stream it would have had.
        """
        step = trainer.global_step
        if step in self._pending:
            return self._pending[step]
        graph = self._export_graph(pl_module)
        reference = self._reference_graph(pl_module, graph)
        self._verify(graph, reference, trainer)
        if self.integer_weights and _is_t1c_module(pl_module):
            from t1c.bridge.quantize import attach_integer_weights

            graph = attach_integer_weights(graph, self.weight_bits, self.accumulator_bits)
        metrics = scalar_metrics(
            {k: v for k, v in trainer.callback_metrics.items() if not k.startswith(METRIC_PREFIX)}
        )
        metrics = trainer.strategy.broadcast(metrics)
        measured = self._measure(trainer, pl_module, graph)
        metrics.update(measured)
        self._log(trainer, measured)
        self._check_gap(measured, trainer)
        source_hash = reference.content_hash() if reference is not None else graph.content_hash()
        pending = _Pending(
            step=step,
            epoch=trainer.current_epoch,
            graph=graph,
            metrics=metrics,
            content_hash=graph.content_hash(),
            source_hash=source_hash,
        )
        graph.metadata[METADATA_KEY] = {
            "epoch": pending.epoch,
            "global_step": step,
            "metrics": nest_metrics(metrics),
            "source_hash": source_hash,
            "weight_bits": self.weight_bits,
            "accumulator_bits": self.accumulator_bits,
        }
        self._pending[step] = pending
        return pending

    def _export_graph(self, pl_module: LightningModule) -> ir.Graph:
        """``T1CModule.export_graph()``, else ``to_ir`` on a copy of the wrapped model."""
        if _is_t1c_module(pl_module):
            return pl_module.export_graph()
        from t1c.bridge import to_ir

        model = self._find_model(pl_module)
        sample = _example_input(pl_module)
        if sample is None:
            sample = self._sample
        if sample is None:
            raise T1CExportError(
                f"T1CExport cannot export {type(pl_module).__name__}: it has no `example_input_array` and no "
                "training batch was seen yet; set `self.example_input_array` in its __init__"
            )
        twin = _copy_module(model).eval()
        device = next((p.device for p in twin.parameters()), torch.device("cpu"))
        with torch.no_grad():
            return to_ir(twin, _to_device(sample, device), **self.export_kwargs)

    def _find_model(self, pl_module: LightningModule) -> nn.Module:
        """The module to export: ``module_attr``, ``model``, ``net``, or the only child with parameters."""
        if self.module_attr is not None:
            model = getattr(pl_module, self.module_attr, None)
            if not isinstance(model, nn.Module):
                raise T1CExportError(
                    f"T1CExport(module_attr={self.module_attr!r}): {type(pl_module).__name__}.{self.module_attr} "
                    f"is {type(model).__name__}, not a torch.nn.Module"
                )
            return model
        for attr in ("model", "net"):
            model = getattr(pl_module, attr, None)
            if isinstance(model, nn.Module):
                return model
        children = [(n, m) for n, m in pl_module.named_children() if any(True for _ in m.parameters())]
        if len(children) == 1:
            return children[0][1]
        names = ", ".join(n for n, _ in children) or "none"
        raise T1CExportError(
            f"T1CExport cannot tell which sub-module of {type(pl_module).__name__} to export (children with "
            f"parameters: {names}); pass T1CExport(module_attr='<attribute name>')"
        )

    def _reference_graph(self, pl_module: LightningModule, graph: ir.Graph) -> ir.Graph | None:
        """``source_graph`` of a T1CModule; else the first export (kept across resume)."""
        source = getattr(pl_module, "source_graph", None)
        if isinstance(source, ir.Graph):
            return source
        if self._reference is None:
            for path in [self._reference_file] + sorted(
                self.entries, key=lambda p: self.entries[p]["global_step"]
            ):
                if path and os.path.isfile(path):
                    self._reference = ir.read(path)
                    break
        if self._reference is None:
            self._reference = graph
        return self._reference

    def _verify(self, graph: ir.Graph, reference: ir.Graph | None, trainer: Trainer) -> None:
        if self.verify == "off" or reference is None or reference is graph:
            return
        diff = ir.topology_diff(reference, graph)
        if not diff:
            return
        text = (
            f"the graph exported at epoch {trainer.current_epoch}, step {trainer.global_step} does not have the "
            "topology of the source graph:\n  - " + "\n  - ".join(diff)
        )
        if self.verify == "raise":
            raise T1CExportError(
                f"T1CExport(verify='raise'): {text}\nFix the model (the hardware toolchain compiled the source "
                "topology) or pass T1CExport(verify='warn')"
            )
        rank_zero_warn(f"T1CExport: {text}")

    def _measure(self, trainer: Trainer, pl_module: LightningModule, graph: ir.Graph) -> dict[str, float]:
        """Float and quantized accuracy of ``graph`` and its agreement with the live module.

        Evaluates copies (the float executor, the quantized one built from the very
        integers stored in the file, a deep copy of the live executor) under ``no_grad``
        with the global RNG restored afterwards, so training is not disturbed.
        """
        if not _is_t1c_module(pl_module):
            return {}
        loader = _val_loader(trainer)
        if loader is None:
            rank_zero_warn(
                "T1CExport: no validation data, so t1c/float_acc and t1c/quant_acc are not measured"
            )
            return {}
        from t1c.bridge import ir_to_torch
        from t1c.bridge.quantize import ir_to_quantized

        device = pl_module.device
        float_exec = ir_to_torch(graph).to(device).eval()
        quant_exec = ir_to_quantized(graph, self.weight_bits, self.accumulator_bits).to(device).eval()
        live = _copy_module(pl_module.executor).eval()
        counts = torch.zeros(4, dtype=torch.float64)
        with torch.no_grad():
            for index, batch in enumerate(loader):
                if self.limit_batches is not None and index >= self.limit_batches:
                    break
                x, y = _to_device(batch[0], device), batch[1].to(device)
                pred_float = pl_module.predict_with(float_exec, x).to(device)
                pred_quant = pl_module.predict_with(quant_exec, x).to(device)
                pred_live = pl_module.predict_with(live, x).to(device)
                counts += torch.tensor(
                    [
                        (pred_float == y).sum().item(),
                        (pred_quant == y).sum().item(),
                        (pred_float == pred_live).sum().item(),
                        y.shape[0],
                    ],
                    dtype=torch.float64,
                )
        counts = trainer.strategy.reduce(counts.to(device), reduce_op="sum").cpu()
        return quant_metrics(*counts.tolist())

    def _log(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        if not metrics or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.log_metrics(dict(metrics), step=trainer.global_step)
            logger.save()

    def _check_gap(self, metrics: Mapping[str, float], trainer: Trainer) -> None:
        gap = metrics.get(METRIC_PREFIX + "quant_gap")
        if self.max_quant_gap is None or gap is None or gap <= self.max_quant_gap:
            return
        text = (
            f"quantized accuracy at {self.weight_bits} bits is {gap:.4f} below float at epoch "
            f"{trainer.current_epoch}, step {trainer.global_step} (max_quant_gap={self.max_quant_gap})"
        )
        if self.on_quant_gap == "raise":
            raise T1CExportError(
                f"T1CExport(on_quant_gap='raise'): {text}; train with QAT or raise weight_bits"
            )
        rank_zero_warn(f"T1CExport: {text}")

    # -- without a ModelCheckpoint ----------------------------------------------------------
    def _export_own(self, trainer: Trainer, pl_module: LightningModule) -> None:
        with _rng_preserved(pl_module):
            pending = self._prepare(trainer, pl_module)
        values: dict[str, Any] = dict(pending.metrics)
        values.update(epoch=trainer.current_epoch, step=trainer.global_step)
        stem = trainer.strategy.broadcast(sanitize_stem(format_name(self.filename, values)))
        folder = self._own_dir or self.dirpath or "."
        path = os.path.join(folder, stem + EXPORT_SUFFIX)
        actions = [("write", path, None, pending.step, None)]
        self._apply(trainer, actions, deletions=[])
        self._last_own_step = trainer.global_step

    # -- reconciling with ModelCheckpoint ---------------------------------------------------
    def _reconcile(self, trainer: Trainer) -> None:
        """Bring the `.t1c` files in line with the checkpoints ModelCheckpoint holds now."""
        if not self._dirty:
            return
        self._dirty = False
        held: list[_Held] = []
        for mc in _model_checkpoints(trainer):
            held.extend(self._held_by(mc))
        actions = self._plan(held)
        held_paths = {h.checkpoint for h in held}
        candidates = [p for p, e in self.entries.items() if self._should_delete(e, held_paths)]
        deletions: list[str] = []
        if candidates:
            gone = [not os.path.lexists(self.entries[p]["checkpoint"]) for p in candidates]
            gone = trainer.strategy.broadcast(gone)
            deletions = [p for p, g in zip(candidates, gone) if g]
            for p, g in zip(candidates, gone):
                if not g:
                    self.entries[p]["kept"] = True
        self._apply(trainer, actions, deletions)
        # every save of an earlier step has been resolved; the current step may still get one
        self._pending = {s: p for s, p in self._pending.items() if s >= trainer.global_step}

    def _held_by(self, mc: ModelCheckpoint) -> list[_Held]:
        """The checkpoints ``mc`` holds now, each with the global step of its weights."""
        if not mc.dirpath:
            return []
        checkpoint_dir = os.path.normpath(os.fspath(mc.dirpath))
        export_dir = self.dirpath or checkpoint_dir
        saved = os.path.normpath(mc._last_checkpoint_saved) if mc._last_checkpoint_saved else ""
        saved_step = mc._last_global_step_saved if saved else None
        known = {e["checkpoint"]: e["global_step"] for e in self.entries.values() if e.get("checkpoint")}
        last = os.path.normpath(mc.last_model_path) if mc.last_model_path else ""
        paths = [os.path.normpath(p) for p in [*mc.best_k_models, mc.best_model_path] if p]
        held: list[_Held] = []
        for path in dict.fromkeys(p for p in paths if p != last):
            if path == saved or path not in known:
                step = saved_step
            else:
                step = known[path]
            held.append(_Held(path, step, checkpoint_dir, export_dir))
        if last:
            if mc.save_last == "link" and saved and saved != last and mc.save_top_k != 0:
                held.append(_Held(last, saved_step, checkpoint_dir, export_dir, link_to=saved))
            else:
                step = saved_step if last == saved else known.get(last)
                held.append(_Held(last, step, checkpoint_dir, export_dir))
        for h in held:
            if h.step is None:
                rank_zero_warn(
                    f"T1CExport: checkpoint {h.checkpoint} was saved without this callback seeing its weights "
                    "(saved before the callback was added, or the run stopped before its export); it has no .t1c"
                )
        return held

    def _plan(self, held: Iterable[_Held]) -> list[tuple[str, str, str | None, int, str | None]]:
        """``(kind, t1c_path, checkpoint, step, source)`` for every file to write, copy or link."""
        actions = []
        by_checkpoint: dict[str, str] = {}
        for h in held:
            if h.step is None:
                continue
            path = os.path.normpath(export_path_for(h.checkpoint, h.checkpoint_dir, h.export_dir))
            by_checkpoint[h.checkpoint] = path
            entry = self.entries.get(path)
            source = by_checkpoint.get(h.link_to) if h.link_to else None
            if h.link_to and source is None:
                source = next((p for p, e in self.entries.items() if e.get("checkpoint") == h.link_to), None)
            if entry is not None and entry["global_step"] == h.step:
                if not h.link_to and not entry.get("link"):
                    continue
                if h.link_to and entry.get("link") and entry.get("same_as") == source:
                    continue
            kind = "link" if h.link_to else "write"
            actions.append((kind, path, h.checkpoint, h.step, source))
        return actions

    def _apply(self, trainer: Trainer, actions: list, deletions: list[str]) -> None:
        """Write, copy, link and delete on rank zero; update entries on every rank; meet at a barrier."""
        if not actions and not deletions:
            return
        touched: set[str] = set()
        rank_zero = trainer.is_global_zero
        for path in deletions:
            entry = self.entries.pop(path)
            touched.add(entry["dir"])
            if rank_zero:
                remove_file(path)
        for kind, path, checkpoint, step, source in actions:
            entry = self._materialize(kind, path, checkpoint, step, source, rank_zero)
            if entry is not None:
                self.entries[path] = entry
                touched.add(entry["dir"])
        if self.save_last:
            for folder in sorted(touched):
                self._update_last(folder, rank_zero)
        if rank_zero:
            for folder in sorted(touched):
                self._write_manifest(folder)
        trainer.strategy.barrier("T1CExport")

    def _materialize(
        self, kind: str, path: str, checkpoint: str | None, step: int, source: str | None, rank_zero: bool
    ) -> dict[str, Any] | None:
        """Produce one file: link/copy an existing export of ``step`` or write the pending graph."""
        folder = os.path.dirname(path)
        same = source if source in self.entries else None
        if same is None:
            same = next(
                (
                    p
                    for p, e in self.entries.items()
                    if e["global_step"] == step and p != path and not e.get("same_as")
                ),
                None,
            )
        pending = self._pending.get(step)
        if same is None and pending is None:
            rank_zero_warn(f"T1CExport: no export of step {step} is available for {checkpoint}; skipped")
            return None
        if same is not None:
            base = dict(self.entries[same])
            if rank_zero:
                os.makedirs(folder, exist_ok=True)
                (atomic_symlink if kind == "link" else atomic_copy)(same, path)
            return {
                **base,
                "file": path,
                "dir": folder,
                "checkpoint": checkpoint,
                "same_as": same,
                "link": kind == "link",
                "kept": False,
            }
        if rank_zero:
            os.makedirs(folder, exist_ok=True)
            name = os.path.relpath(checkpoint, folder) if checkpoint else ""
            pending.graph.metadata[METADATA_KEY]["checkpoint"] = name
            ir.write(path, pending.graph, fsync=True)
            self._check_written(path, pending)
        if self._reference_file is None:
            self._reference_file = path
        return {
            "file": path,
            "dir": folder,
            "checkpoint": checkpoint,
            "epoch": pending.epoch,
            "global_step": step,
            "metrics": dict(pending.metrics),
            "content_hash": pending.content_hash,
            "source_hash": pending.source_hash,
            "same_as": None,
            "link": False,
            "kept": False,
        }

    @staticmethod
    def _check_written(path: str, pending: _Pending) -> None:
        """Read the file back: it must hold exactly the graph whose accuracy was measured."""
        written = ir.read(path).content_hash()
        if written != pending.content_hash:
            raise T1CExportError(
                f"T1CExport: '{path}' read back differs from the graph measured at step "
                f"{pending.step} (content hash {written[:12]} != {pending.content_hash[:12]})"
            )

    def _update_last(self, folder: str, rank_zero: bool) -> None:
        """Own ``last.t1c``: a copy of the newest export in ``folder`` (unless a checkpoint owns the name)."""
        path = os.path.join(folder, LAST_STEM + EXPORT_SUFFIX)
        current = self.entries.get(path)
        if current is not None and current.get("checkpoint"):
            return
        exports = [e for p, e in self.entries.items() if e["dir"] == folder and p != path]
        if not exports:
            if current is not None:
                self.entries.pop(path)
                if rank_zero:
                    remove_file(path)
            return
        newest = max(exports, key=lambda e: (e["global_step"], not e.get("same_as")))
        source = newest.get("same_as") or newest["file"]
        if (
            current is not None
            and current.get("same_as") == source
            and current["global_step"] == newest["global_step"]
        ):
            return
        if rank_zero:
            atomic_copy(source, path)
        self.entries[path] = {
            **newest,
            "file": path,
            "checkpoint": None,
            "same_as": source,
            "link": False,
            "kept": False,
        }

    # -- manifest -------------------------------------------------------------------------
    def _write_manifest(self, folder: str) -> None:
        exports = {}
        for path, entry in sorted(self.entries.items()):
            if entry["dir"] != folder:
                continue
            exports[os.path.basename(path)] = _manifest_entry(entry, folder)
        write_manifest(os.path.join(folder, MANIFEST_NAME), {"version": 1, "exports": exports})

    def _merge_manifests_from_disk(self, trainer: Trainer) -> None:
        """Resume: the manifests on disk are newer than the state inside the checkpoint."""
        folders = {e["dir"] for e in self.entries.values()}
        folders.update(
            os.path.normpath(os.fspath(mc.dirpath)) for mc in _model_checkpoints(trainer) if mc.dirpath
        )
        if self.dirpath:
            folders.add(self.dirpath)
        if self._own_dir:
            folders.add(self._own_dir)
        found: dict[str, dict[str, Any]] = {}
        if trainer.is_global_zero:
            for folder in sorted(folders):
                manifest = read_manifest(os.path.join(folder, MANIFEST_NAME))
                for name, item in manifest["exports"].items():
                    path = os.path.normpath(os.path.join(folder, name))
                    if os.path.lexists(path):
                        found[path] = _entry_from_manifest(item, path, folder)
        found = trainer.strategy.broadcast(found)
        self.entries.update(found)


# -- module-level helpers ----------------------------------------------------------------
def quant_metrics(float_correct: float, quant_correct: float, agree: float, total: float) -> dict[str, float]:
    """The ``t1c/*`` figures from counts summed over the evaluated samples (and ranks).

    Example:
        >>> quant_metrics(90, 85, 100, 100)["t1c/quant_gap"]
        0.05
    """
    if total <= 0:
        return {}
    float_acc, quant_acc = float_correct / total, quant_correct / total
    return {
        METRIC_PREFIX + "float_acc": float_acc,
        METRIC_PREFIX + "quant_acc": quant_acc,
        METRIC_PREFIX + "quant_gap": round(float_acc - quant_acc, 12),
        METRIC_PREFIX + "export_agreement": agree / total,
    }


def _manifest_entry(entry: Mapping[str, Any], folder: str) -> dict[str, Any]:
    checkpoint = entry.get("checkpoint")
    same_as = entry.get("same_as")
    return {
        "checkpoint": os.path.relpath(checkpoint, folder) if checkpoint else None,
        "epoch": entry["epoch"],
        "global_step": entry["global_step"],
        "metrics": dict(entry["metrics"]),
        "content_hash": entry["content_hash"],
        "source_hash": entry.get("source_hash"),
        "same_as": os.path.basename(same_as) if same_as else None,
        "link": bool(entry.get("link")),
    }


def _entry_from_manifest(item: Mapping[str, Any], path: str, folder: str) -> dict[str, Any]:
    checkpoint = item.get("checkpoint")
    same_as = item.get("same_as")
    return {
        "file": path,
        "dir": folder,
        "checkpoint": os.path.normpath(os.path.join(folder, checkpoint)) if checkpoint else None,
        "epoch": int(item["epoch"]),
        "global_step": int(item["global_step"]),
        "metrics": dict(item.get("metrics", {})),
        "content_hash": item.get("content_hash"),
        "source_hash": item.get("source_hash"),
        "same_as": os.path.normpath(os.path.join(folder, same_as)) if same_as else None,
        "link": bool(item.get("link")),
        "kept": False,
    }


def _check_init(**kw: Any) -> None:
    def bad(name: str, why: str) -> ValueError:
        return ValueError(f"T1CExport({name}={kw[name]!r}): {why}")

    if kw["filename"] is not None and (not isinstance(kw["filename"], str) or not kw["filename"].strip()):
        raise bad("filename", "must be a non-empty template such as '{epoch}-{step}'")
    if not isinstance(kw["every_n_epochs"], int) or kw["every_n_epochs"] < 0:
        raise bad("every_n_epochs", "must be an int >= 0 (0: never export without a ModelCheckpoint)")
    if kw["verify"] not in VERIFY_MODES:
        raise bad("verify", f"must be one of {VERIFY_MODES}")
    if not isinstance(kw["weight_bits"], int) or not 1 <= kw["weight_bits"] <= 32:
        raise bad("weight_bits", "must be an int in 1..32")
    if not isinstance(kw["accumulator_bits"], int) or not 1 <= kw["accumulator_bits"] <= 64:
        raise bad("accumulator_bits", "must be an int in 1..64")
    if kw["limit_batches"] is not None and (
        not isinstance(kw["limit_batches"], int) or kw["limit_batches"] < 1
    ):
        raise bad("limit_batches", "must be None (all batches) or an int >= 1")
    if kw["max_quant_gap"] is not None and (
        isinstance(kw["max_quant_gap"], bool)
        or not isinstance(kw["max_quant_gap"], (int, float))
        or not 0 <= kw["max_quant_gap"] <= 1
    ):
        raise bad("max_quant_gap", "must be None or an accuracy difference in [0, 1]")
    if kw["on_quant_gap"] not in GAP_ACTIONS:
        raise bad("on_quant_gap", f"must be one of {GAP_ACTIONS}")
    if kw["module_attr"] is not None and (not isinstance(kw["module_attr"], str) or not kw["module_attr"]):
        raise bad("module_attr", "must be None or the name of an attribute holding an nn.Module")


def _model_checkpoints(trainer: Trainer) -> list[ModelCheckpoint]:
    return [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]


def _is_t1c_module(pl_module: LightningModule) -> bool:
    """A T1CModule, or any module with its export/evaluation protocol."""
    return callable(getattr(pl_module, "export_graph", None)) and callable(
        getattr(pl_module, "predict_with", None)
    )


def _example_input(pl_module: LightningModule) -> Any:
    sample = getattr(pl_module, "example_input_array", None)
    if isinstance(sample, (tuple, list)) and sample:
        return sample[0]
    return sample


def _batch_input(batch: Any) -> Any:
    """A batch's input: ``batch[0]`` of a tuple/list, ``batch`` itself otherwise, detached."""
    x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    return x.detach().clone() if isinstance(x, torch.Tensor) else x


def _rng_preserved(pl_module: LightningModule) -> contextlib.AbstractContextManager:
    """Restore the global RNG state (CPU, and the module's GPU) when the block ends."""
    device = pl_module.device
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def _copy_module(module: nn.Module) -> nn.Module:
    """A deep copy that also works mid-training.

    snnTorch neurons keep their membrane from the last forward pass as an attribute that is
    part of the autograd graph, which ``copy.deepcopy`` refuses; such tensors are copied
    detached.
    """
    memo: dict[int, Any] = {}
    for sub in module.modules():
        for value in [*vars(sub).values(), *sub._buffers.values()]:
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(module, memo)


def _to_device(x: Any, device: torch.device) -> Any:
    return x.to(device) if isinstance(x, torch.Tensor) else x


def _val_loader(trainer: Trainer) -> Any:
    loaders = trainer.val_dataloaders
    if loaders is None and trainer.datamodule is not None and hasattr(trainer.datamodule, "val_dataloader"):
        loaders = trainer.datamodule.val_dataloader()
    if isinstance(loaders, Mapping):
        loaders = next(iter(loaders.values()), None)
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    return loaders
