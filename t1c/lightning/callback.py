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
import dataclasses
import logging
import math
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn

from t1c import ir

from .module import eval_mode
from .naming import (
    CHECKPOINT_SUFFIX,
    EXPORT_SUFFIX,
    LAST_STEM,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    atomic_copy,
    atomic_symlink,
    export_path_for,
    format_name,
    manifest_entries,
    manifest_entry,
    manifest_lock,
    nest_metrics,
    remove_file,
    sanitize_stem,
    scalar_metrics,
    under_folder,
    write_manifest,
)

log = logging.getLogger(__name__)

VERIFY_MODES = ("raise", "warn", "off")
GAP_ACTIONS = ("warn", "raise")
METRIC_PREFIX = "t1c/"
METADATA_KEY = "t1c_export"
_STATE_VERSION = 2
#: Most bytes of validation spike trains kept for the quantized measurement (beyond: encoded again).
RECORD_BYTES = 64 * 2**20
#: The quantized measurement runs consecutive validation batches joined, up to this many bytes
#: of spike trains: fewer, larger operations per time step. In the digits demo config, 3
#: batches of 64 at once ran about 15% faster than one at a time, and all 6 at once slower
#: than one at a time (larger temporaries are fresh memory, faulted in page by page).
MEASURE_JOIN_BYTES = 3 * 2**19


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
    from_file: bool = False


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
        sample: the export sample of a plain LightningModule's model: one time step of one
            sample, ``[1, *input_shape]``. Default: ``example_input_array``, else the first
            training batch's input, one time step of one sample taken from it (``[B, T, ...]``
            and ``[T, B, ...]`` batches are told apart by the model's first layer and the labels).

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
        sample: torch.Tensor | None = None,
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
        if sample is not None and not isinstance(sample, torch.Tensor):
            raise ValueError(
                f"T1CExport(sample={type(sample).__name__}): must be a tensor [1, *input_shape], one time step"
            )
        self.sample = sample

        # entries by absolute .t1c path (plain types: this is the resumable state)
        self.entries: dict[str, dict[str, Any]] = {}
        self._reference_file: str | None = None
        self._last_own_step: int | None = None
        # this run's id, kept across resumes: files of other runs in the folder are never touched
        self._run = uuid.uuid4().hex
        # in memory only
        self._pending: dict[int, _Pending] = {}
        self._reference: ir.Graph | None = None
        self._reference_hash: tuple[ir.Graph, str] | None = None  # a reference and its content hash
        self._sample: Any = None
        self._sample_source = ""
        self._layout: str | None = None  # "static", "BT" or "TB": how the batches hold time
        self._own_dir: str | None = None
        self._dirty = False
        self._check_disk = False  # first reconcile of a fit: read held checkpoints' steps from disk
        self._written: set[str] = set()  # .t1c files written in this fit (same-step copies)
        self._saved: dict[str, int] = {}  # checkpoints saved in this fit -> the step of their weights
        self._deleted: set[str] = set()  # files this run deleted (left out of merged manifests)
        self._module: LightningModule | None = None
        # validation's own spike trains and live outputs of this step, by batch index
        # batch index -> (input, spike trains or None, live outputs, labels or None)
        self._val_records: dict[
            int, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]
        ] = {}
        self._val_kept = 0  # bytes of spike trains in _val_records
        self._val_step: int | None = None
        self._recording: list | None = None
        self._no_metrics_reason: str | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(dirpath=self.dirpath, filename=self.filename)

    # -- hooks, in the order the Trainer calls them --------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        folder = self.dirpath or os.path.join(trainer.log_dir or trainer.default_root_dir, "checkpoints")
        self._own_dir = os.path.normpath(trainer.strategy.broadcast(folder))
        self._run = trainer.strategy.broadcast(self._run)  # one id on every rank (a resume restores its own)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # callback and ModelCheckpoint states are restored before this hook
        self._module = pl_module
        self._saved.clear()
        self._merge_manifests_from_disk(trainer)
        self._check_disk = True
        self._dirty = True

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._should_skip(trainer):
            with _rng_preserved(pl_module):
                self._dry_run(trainer, pl_module)
        self._reconcile(trainer)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._layout is None:
            self._observe_batch(batch, pl_module)
        self._reconcile(trainer)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._reconcile(trainer)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val_records, self._val_step, self._val_kept = {}, None, 0
        if trainer.sanity_checking or self._should_skip(trainer) or not _validates_like_t1c_module(pl_module):
            return
        executor = pl_module.executor
        run_sequence = type(executor).run_sequence

        def recording(xs: Any, state: Any = None) -> Any:
            ys, state = run_sequence(executor, xs, state)
            if self._recording is not None:
                self._recording.append((xs, ys))
            return ys, state

        executor.run_sequence = recording  # shadows the method on this instance until on_validation_end
        self._recording = []

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._recording is None:
            return
        if dataloader_idx == 0 and len(self._recording) == 1 and isinstance(batch, (tuple, list)):
            xs, ys = self._recording[0]
            size = xs.numel() * xs.element_size()
            if self._val_kept + size > RECORD_BYTES:
                xs = None  # encoded again when measured (the same seeded encoding)
            else:
                self._val_kept += size
            y = batch[1] if len(batch) > 1 else None
            self._val_records[batch_idx] = (
                batch[0].detach(),
                None if xs is None else xs.detach(),
                ys.detach(),
                y.detach() if isinstance(y, torch.Tensor) and y.ndim == 1 else None,
            )
        self._recording.clear()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._recording is not None:
            self._recording = None
            vars(pl_module.executor).pop("run_sequence", None)
            self._val_step = trainer.global_step
        if not trainer.sanity_checking:
            self._reconcile(trainer)

    def _validation_reusable(self, trainer: Trainer, pl_module: LightningModule) -> bool:
        """Whether this step's validation outputs are the live model's on the weights exported now."""
        return (
            bool(self._val_records)
            and self._val_step == trainer.global_step
            and _validates_like_t1c_module(pl_module)
        )

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reconcile(trainer)
        if self._should_export_own(trainer):
            self._export_own(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._note_saves(trainer)
        if not self._should_export_at_save(trainer):
            return
        with _rng_preserved(pl_module):
            self._prepare(trainer, pl_module)
        self._dirty = True

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reconcile(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # ModelCheckpoint.on_train_end may save after our on_train_end; a resume with no
        # training left reconciles only here
        self._reconcile(trainer)
        self._pending.clear()
        self._written.clear()
        self._saved.clear()
        self._module = None

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "entries": copy.deepcopy(self.entries),
            "reference_file": self._reference_file,
            "last_own_step": self._last_own_step,
            "run": self._run,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved in a checkpoint; entries with an unsafe or mistyped field are dropped."""
        entries = state_dict.get("entries", {})
        self.entries = {}
        for path, entry in entries.items() if isinstance(entries, Mapping) else []:
            checked = _state_entry(path, entry)
            if checked is not None:
                self.entries[checked["file"]] = checked
        reference = state_dict.get("reference_file")
        self._reference_file = reference if reference in self.entries else None
        step = state_dict.get("last_own_step")
        self._last_own_step = step if isinstance(step, int) else None
        run = state_dict.get("run")
        if isinstance(run, str) and run:
            self._run = run
        else:  # a state written before run ids: its entries are the resumed run's
            for entry in self.entries.values():
                entry["run"] = entry["run"] or self._run

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
        """An entry of this run for a checkpoint its ModelCheckpoint no longer holds (decided with the disk)."""
        return (
            entry.get("run") == self._run
            and entry.get("checkpoint") is not None
            and entry["checkpoint"] not in held
            and not entry.get("kept")
        )

    # -- export ---------------------------------------------------------------------------
    def _prepare(self, trainer: Trainer, pl_module: LightningModule) -> _Pending:
        """Export, verify and measure the in-memory model once per global step.

        Callers hold :func:`_rng_preserved`: building evaluation modules and encoding inputs
        draw random numbers, and training must continue with the stream it would have had.
        """
        step = trainer.global_step
        if step not in self._pending:
            self._pending[step] = self._build(trainer, pl_module, step, trainer.current_epoch, live=True)
            if self._val_step == step:  # measured: validation's records have served, free their memory
                self._val_records, self._val_kept = {}, 0
        return self._pending[step]

    def _build(
        self, trainer: Trainer, pl_module: LightningModule, step: int, epoch: int, live: bool
    ) -> _Pending:
        """Export, verify and measure ``pl_module``'s current weights as the export of ``step``.

        ``live``: the weights are the training model's now, so the Trainer's metrics describe
        them; otherwise they were loaded from a checkpoint file and only what is measured here
        goes into the metadata.
        """
        graph, reference = self._export_verified(pl_module, f"epoch {epoch}, step {step}")
        first = reference is graph
        graph = self._with_integers(graph)
        if first:  # the first export is the reference: as it ships
            self._reference = reference = graph
        metrics: dict[str, float] = {}
        if live:
            metrics = scalar_metrics(
                {k: v for k, v in trainer.callback_metrics.items() if not k.startswith(METRIC_PREFIX)}
            )
            metrics = trainer.strategy.broadcast(metrics)
        measured = self._measure(trainer, pl_module, graph)
        metrics.update(measured)
        self._log(trainer, measured, step)
        self._check_gap(measured, f"epoch {epoch}, step {step}")
        content_hash = graph.content_hash()  # metadata is not hashed: set below freely
        source_hash = content_hash if reference is None or reference is graph else self._hash_of(reference)
        meta: dict[str, Any] = {
            "epoch": epoch,
            "global_step": step,
            "metrics": nest_metrics(metrics),
            "source_hash": source_hash,
            "weights": "live model at the checkpoint's save" if live else "loaded from the checkpoint file",
            "integer_weights": self.integer_weights,
        }
        if self.integer_weights or measured:  # only what was written or measured is claimed
            meta.update(weight_bits=self.weight_bits, accumulator_bits=self.accumulator_bits)
        graph.metadata[METADATA_KEY] = meta
        return _Pending(
            step=step,
            epoch=epoch,
            graph=graph,
            metrics=metrics,
            content_hash=content_hash,
            source_hash=source_hash,
        )

    def _hash_of(self, reference: ir.Graph) -> str:
        """``reference.content_hash()``, computed once per reference graph (it is not changed)."""
        if self._reference_hash is None or self._reference_hash[0] is not reference:
            self._reference_hash = (reference, reference.content_hash())
        return self._reference_hash[1]

    def _dry_run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Export and verify once before training, so a model that cannot be exported fails in seconds."""
        if not _is_t1c_module(pl_module) and self._layout is None:
            batch = _first_batch(trainer)
            if batch is not None:
                self._observe_batch(batch, pl_module)
        graph, reference = self._export_verified(pl_module, "fit start (dry run)")
        if reference is graph:  # the first written export is the reference, not the untrained weights
            self._reference = None
        self._with_integers(graph)

    def _export_verified(self, pl_module: LightningModule, when: str) -> tuple[ir.Graph, ir.Graph | None]:
        """The exported graph and its reference (:meth:`_reference_graph`), topology verified."""
        graph = self._export_graph(pl_module)
        reference = self._reference_graph(pl_module, graph)
        self._verify(graph, reference, when)
        return graph, reference

    def _with_integers(self, graph: ir.Graph) -> ir.Graph:
        """``graph`` with its exact integers attached when ``integer_weights`` (a copy), else itself."""
        if not self.integer_weights:
            return graph
        from t1c.bridge.quantize import attach_integer_weights

        return attach_integer_weights(graph, self.weight_bits, self.accumulator_bits)

    def _observe_batch(self, batch: Any, pl_module: LightningModule) -> None:
        """Learn from a training batch how it holds time, and take an export sample from it."""
        if _is_t1c_module(pl_module):
            self._layout = "t1c"
            return
        x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
        if not isinstance(x, torch.Tensor):
            return
        y = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        size = int(y.shape[0]) if isinstance(y, torch.Tensor) and y.ndim >= 1 else None
        try:
            model = self._find_model(pl_module)
        except T1CExportError:
            model = None
        self._layout = _layout_of(x, model, size)
        self._sample = _one_step(x.detach(), self._layout).clone()
        self._sample_source = (
            f"the first training batch (input {list(x.shape)}, {_LAYOUT_WORDS[self._layout]})"
        )

    def _sample_for(self, pl_module: LightningModule, model: nn.Module) -> tuple[Any, str]:
        """The export sample of a plain module (``model``: the module exported) and where it came from."""
        if self.sample is not None:
            return self.sample, "T1CExport(sample=...)"
        example = _example_input(pl_module)
        if isinstance(example, torch.Tensor):
            layout = self._layout if self._layout in ("BT", "TB") else _layout_of(example, model, None)
            return _one_step(example, layout), f"example_input_array {list(example.shape)}"
        if example is not None:
            return example, "example_input_array"
        return self._sample, self._sample_source

    def _export_graph(self, pl_module: LightningModule) -> ir.Graph:
        """``T1CModule.export_graph()``, else ``to_ir`` on a copy of the wrapped model."""
        if _is_t1c_module(pl_module):
            return pl_module.export_graph()
        from t1c.bridge import to_ir
        from t1c.bridge.export_maps import ExportError

        model = self._find_model(pl_module)
        sample, source = self._sample_for(pl_module, model)
        if sample is None and self._layout is None:  # e.g. a resume with no training left
            batch = _first_batch(pl_module.trainer)
            if batch is not None:
                self._observe_batch(batch, pl_module)
                sample, source = self._sample_for(pl_module, model)
        if sample is None:
            raise T1CExportError(
                f"T1CExport cannot export {type(pl_module).__name__}: it has no `example_input_array` and no "
                "training batch was seen yet; set `self.example_input_array` in its __init__ or pass "
                "T1CExport(sample=torch.zeros(1, *input_shape))"
            )
        twin = _copy_module(model).eval()
        device = next((p.device for p in twin.parameters()), torch.device("cpu"))
        try:
            with torch.no_grad():
                return to_ir(twin, _to_device(sample, device), **self.export_kwargs)
        except ExportError as err:
            shape = list(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
            raise ExportError(
                f"T1CExport cannot export {type(pl_module).__name__}'s {type(model).__name__} with the sample "
                f"{shape} taken from {source}: {err} -- if that sample is not one time step of one sample "
                "[1, *input_shape], set `example_input_array` on the LightningModule or pass "
                "T1CExport(sample=...); if the model is split across attributes, pass T1CExport(module_attr=...) "
                "naming one module that holds all of it"
            ) from err

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
            f"parameters: {names}); pass T1CExport(module_attr='<attribute name>') naming one module that "
            "holds the whole network"
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
                if path and path in self.entries and os.path.isfile(path):
                    self._reference = ir.read(path)
                    break
        if self._reference is None:
            self._reference = graph
        return self._reference

    def _verify(self, graph: ir.Graph, reference: ir.Graph | None, when: str) -> None:
        if self.verify == "off" or reference is None or reference is graph:
            return
        diff = ir.topology_diff(reference, graph)
        if not diff:
            return
        text = (
            f"the graph exported at {when} does not have the topology of the source graph:\n  - "
            + "\n  - ".join(diff)
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
        integers stored in the file, a copy of the live model) under ``no_grad`` with the
        global RNG restored afterwards, so training is not disturbed. A plain
        LightningModule's ``forward`` gives the live predictions (see :func:`_classes`).
        """
        if self._no_metrics_reason is not None:
            return {}
        loader = _val_loader(trainer)
        if loader is None:
            self._no_metrics("there is no validation data")
            return {}
        from t1c.bridge import ir_to_torch
        from t1c.bridge.quantize import ir_to_quantized

        device = pl_module.device
        float_exec = ir_to_torch(graph).to(device).eval()
        t1c_module = _is_t1c_module(pl_module)
        reuse = t1c_module and self._validation_reusable(trainer, pl_module)
        # a float graph that provably computes what the live executor does is not run: it is
        # quantized in place instead of building a second executor
        float_is_live = reuse and _same_computation(float_exec, pl_module.executor)
        quant_exec = ir_to_quantized(
            graph, self.weight_bits, self.accumulator_bits, executor=float_exec if float_is_live else None
        ).to(device)
        counts = torch.zeros(4, dtype=torch.float64)
        with torch.no_grad():
            if t1c_module:
                counts = self._measure_t1c(
                    pl_module, loader, reuse, None if float_is_live else float_exec, quant_exec
                )
            else:
                for batch in self._labelled(loader):
                    if batch is None:
                        return {}
                    y = batch[1].to(device)
                    try:
                        preds = self._predict_plain(pl_module, batch, float_exec, quant_exec)
                        _check_shapes(*preds, y)
                    except Exception as err:  # a plain module's forward is the user's: say why, keep training
                        self._no_metrics(f"{type(pl_module).__name__}.forward could not be compared ({err})")
                        return {}
                    counts += _counts(*preds, y)
        if counts is None:
            return {}
        counts = trainer.strategy.reduce(counts.to(device), reduce_op="sum").cpu()
        return quant_metrics(*counts.tolist())

    def _labelled(self, loader: Any) -> Iterator[Any]:
        """The validation batches used for the metrics (``limit_batches``); None (and a warning)
        for a batch without a label tensor ``[B]`` as its second element, then stop."""
        for index, batch in enumerate(loader):
            if self.limit_batches is not None and index >= self.limit_batches:
                return
            y = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
            if not isinstance(y, torch.Tensor) or y.ndim != 1:
                self._no_metrics("the validation batches have no label tensor [B] as their second element")
                yield None
                return
            yield batch

    def _measure_t1c(
        self,
        pl_module: LightningModule,
        loader: Any,
        reuse: bool,
        float_exec: nn.Module | None,
        quant_exec: nn.Module,
    ) -> torch.Tensor | None:
        """The counts of a T1CModule; the live outputs are validation's own where it ran the same
        computation on the weights exported now (``reuse``), and they stand for the float
        graph's when it provably computes what the live executor does (``float_exec`` None).

        The quantized graph runs over consecutive batches joined (:data:`MEASURE_JOIN_BYTES`):
        on spikes its sums are exact integers, so its per-sample results do not depend on the
        batch (graded inputs go through a float64 accumulator, whose last bits may); the float
        graph, which rounds by batch shape in float32, always runs batch by batch, as
        validation did."""
        device = pl_module.device
        batches = self._live_batches(pl_module, loader, reuse)
        counts = torch.zeros(4, dtype=torch.float64)
        for item in _joined(batches, MEASURE_JOIN_BYTES if float_exec is None else 0):
            if item is None:
                return None
            xs, pred_live, y = item
            # the quantized executor is this measurement's own: no autograd state to keep
            with torch.inference_mode():
                pred_quant = pl_module.logits(quant_exec.run_sequence(xs)[0]).argmax(-1).to(device)
            pred_float = (
                pred_live
                if float_exec is None
                else pl_module.logits(float_exec.run_sequence(xs)[0]).argmax(-1).to(device)
            )
            _check_shapes(pred_float, pred_quant, pred_live, y)
            counts += _counts(pred_float, pred_quant, pred_live, y)
        return counts

    def _live_batches(
        self, pl_module: LightningModule, loader: Any, reuse: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
        """``(spike trains, live classes, labels)`` of each measured batch; a None (and stop)
        for a batch without labels.

        When validation recorded every batch the measurement takes (the loader's length,
        ``limit_batches``) with its labels, those batches, without iterating the loader
        again; else the loader's batches, with validation's live outputs where it ran on the
        same input, and a copy of the live executor for the others.
        """
        device = pl_module.device
        recorded = self._recorded_batches(loader) if reuse else None
        if recorded is not None:
            for x, xs, ys, y in recorded:
                xs = xs if xs is not None else _encode_for_eval(pl_module, x)
                yield xs, pl_module.logits(ys).argmax(-1).to(device), y.to(device)
            return
        live = None
        for index, batch in enumerate(self._labelled(loader)):
            if batch is None:
                yield None
                return
            x = _to_device(batch[0], device)
            record = self._val_records.get(index) if reuse else None
            if record is not None and record[0].shape == x.shape and torch.equal(record[0], x):
                ys = record[2]  # validation's own live outputs, on its own spike trains
                xs = record[1] if record[1] is not None else _encode_for_eval(pl_module, x)
            else:
                if live is None:
                    live = _copy_module(pl_module.executor).eval()
                xs = _encode_for_eval(pl_module, x)
                ys = live.run_sequence(xs)[0]
            yield xs, pl_module.logits(ys).argmax(-1).to(device), batch[1].to(device)

    def _recorded_batches(self, loader: Any) -> list[tuple] | None:
        """Validation's records when they hold every batch the measurement takes from
        ``loader`` (a loader with a length), each with its labels; else None."""
        try:
            wanted = len(loader)
        except TypeError:  # an iterable without a length: take its batches
            return None
        if self.limit_batches is not None:
            wanted = min(wanted, self.limit_batches)
        records = [self._val_records.get(index) for index in range(wanted)]
        if not records or any(record is None or record[3] is None for record in records):
            return None
        return records

    def _predict_plain(
        self, pl_module: LightningModule, batch: Any, float_exec: nn.Module, quant_exec: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Float, quantized and live classes of one batch of a plain LightningModule.

        The module itself, in eval mode under no_grad as Lightning validates it: a copy of
        snnTorch neurons with init_hidden is not reset by snntorch.utils.reset (class-level).
        """
        x = _to_device(batch[0], pl_module.device)
        layout = self._layout or "static"
        with eval_mode(pl_module):
            out = pl_module(x)
        live_classes, steps = _classes(out, _batch_size(x, layout))
        xs = _time_first(x, layout, steps)
        pred_float, pred_quant = (e.run_sequence(xs)[0].sum(0).argmax(-1) for e in (float_exec, quant_exec))
        return pred_float, pred_quant, live_classes

    def _no_metrics(self, reason: str) -> None:
        """Warn once that the t1c/* metrics are not measured, and why."""
        self._no_metrics_reason = reason
        rank_zero_warn(
            f"T1CExport: t1c/float_acc, t1c/quant_acc and t1c/export_agreement are not measured: {reason}. "
            "A plain LightningModule's forward must return outputs [B, C] or per step [T, B, C] / [B, T, C] "
            "for the batch's input, with the labels [B] as the batch's second element (docs/export_callback.md)"
        )

    def _log(self, trainer: Trainer, metrics: Mapping[str, float], step: int) -> None:
        if not metrics or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.log_metrics(dict(metrics), step=step)
            logger.save()

    def _check_gap(self, metrics: Mapping[str, float], when: str) -> None:
        gap = metrics.get(METRIC_PREFIX + "quant_gap")
        if self.max_quant_gap is None or gap is None or gap <= self.max_quant_gap:
            return
        text = (
            f"quantized accuracy at {self.weight_bits} bits is {gap:.4f} below float at {when} "
            f"(max_quant_gap={self.max_quant_gap})"
        )
        if self.on_quant_gap == "raise":
            raise T1CExportError(
                f"T1CExport(on_quant_gap='raise'): {text}; train with QAT or raise weight_bits"
            )
        rank_zero_warn(f"T1CExport: {text}")

    def _from_checkpoint_file(self, trainer: Trainer, checkpoint: str) -> _Pending | None:
        """The export of a checkpoint file's own weights (loaded with ``weights_only=True``)."""
        loaded = None
        if trainer.is_global_zero:
            loaded = _load_checkpoint_weights(checkpoint)
        loaded = trainer.strategy.broadcast(loaded)
        if isinstance(loaded, str) or loaded is None:
            rank_zero_warn(f"T1CExport: {checkpoint} has no .t1c and its weights {loaded}; skipped")
            return None
        state, step, epoch = loaded
        pl_module = self._module
        if pl_module is None:
            return None
        try:
            with _rng_preserved(pl_module), _weights_loaded(pl_module, state):
                return self._build(trainer, pl_module, step, epoch, live=False)
        except RuntimeError as err:
            if isinstance(err, T1CExportError):
                raise
            rank_zero_warn(
                f"T1CExport: the weights of {checkpoint} do not fit {type(pl_module).__name__} "
                f"({str(err).splitlines()[0]}); it gets no .t1c"
            )
            return None

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
        self._note_saves(trainer)
        held: list[_Held] = []
        for mc in _model_checkpoints(trainer):
            held.extend(self._held_by(mc, trainer))
        held.extend(self._resumed_from(trainer, held))
        self._check_disk = False
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

    def _note_saves(self, trainer: Trainer) -> None:
        """Record the checkpoint each ModelCheckpoint saved last in this fit, with its step.

        Called at every save (a ModelCheckpoint saves top-k and ``last`` one after the other at
        one step) and every reconcile, so each checkpoint written in this fit is known with the
        step whose live weights were exported at its ``on_save_checkpoint``.
        """
        for mc in _model_checkpoints(trainer):
            if mc._last_checkpoint_saved:
                self._saved[os.path.normpath(mc._last_checkpoint_saved)] = mc._last_global_step_saved

    def _disk_steps(self, trainer: Trainer, paths: list[str]) -> dict[str, int | None]:
        """The global step stored in each checkpoint file (None: unreadable), read on rank zero."""
        steps: dict[str, int | None] = {}
        if trainer.is_global_zero:
            steps = {p: _checkpoint_step(p) for p in paths}
        return trainer.strategy.broadcast(steps)

    def _held_by(self, mc: ModelCheckpoint, trainer: Trainer) -> list[_Held]:
        """The checkpoints ``mc`` holds now, each with the global step of its weights.

        Only the checkpoints saved in this fit (:meth:`_note_saves`) have the step of their
        save (their weights are the pending export's). Any other is a file from before: its step is the one its
        entry records, checked against the file at the first reconcile of a fit (a crash may
        have left a newer file than its export); a checkpoint without an entry, or whose
        entry is stale, is exported from the file's own weights (``from_file``).
        """
        if not mc.dirpath:
            return []
        checkpoint_dir = os.path.normpath(os.fspath(mc.dirpath))
        saved = os.path.normpath(mc._last_checkpoint_saved) if mc._last_checkpoint_saved else ""
        saved_step = mc._last_global_step_saved if saved else None
        known = {
            e["checkpoint"]: e["global_step"]
            for e in self.entries.values()
            if e.get("checkpoint") and e.get("run") == self._run
        }
        last = os.path.normpath(mc.last_model_path) if mc.last_model_path else ""
        paths = [os.path.normpath(p) for p in [*mc.best_k_models, mc.best_model_path] if p]
        others = [p for p in dict.fromkeys([*paths, last]) if p and p not in self._saved]
        check = [p for p in others if self._check_disk or p not in known]
        on_disk = self._disk_steps(trainer, check) if check else {}

        def held(path: str, link_to: str | None = None) -> _Held:
            export_dir = self.dirpath or (
                checkpoint_dir if under_folder(path, checkpoint_dir) else os.path.dirname(path)
            )
            if link_to is not None:
                return _Held(path, saved_step, checkpoint_dir, export_dir, link_to=link_to)
            if path in self._saved:
                return _Held(path, self._saved[path], checkpoint_dir, export_dir)
            if path in on_disk:
                step = on_disk[path]
                stale = step is None or known.get(path) != step
                return _Held(path, step, checkpoint_dir, export_dir, from_file=stale)
            return _Held(path, known[path], checkpoint_dir, export_dir)

        out = [held(p) for p in dict.fromkeys(p for p in paths if p != last)]
        if last:
            if mc.save_last == "link" and saved and saved != last and mc.save_top_k != 0:
                out.append(held(last, link_to=saved))
            else:
                out.append(held(last))
        return [h for h in out if h.step is not None or h.from_file]

    def _resumed_from(self, trainer: Trainer, held: list[_Held]) -> list[_Held]:
        """The checkpoint this fit resumed from, when no ModelCheckpoint holds it (another folder)."""
        if not self._check_disk or not trainer.ckpt_path:
            return []
        path = os.path.normpath(os.path.abspath(os.fspath(trainer.ckpt_path)))
        if any(h.checkpoint == path for h in held) or not path.endswith(".ckpt"):
            return []
        folder = os.path.dirname(path)
        known = {e["checkpoint"]: e["global_step"] for e in self.entries.values() if e.get("checkpoint")}
        step = self._disk_steps(trainer, [path]).get(path)
        if step is None:
            return []
        return [_Held(path, step, folder, self.dirpath or folder, from_file=known.get(path) != step)]

    def _plan(self, held: Iterable[_Held]) -> list[tuple[str, str, str | None, int | None, str | None]]:
        """``(kind, t1c_path, checkpoint, step, source)`` for every file to write, copy, link or load."""
        actions = []
        by_checkpoint: dict[str, str] = {}
        for h in held:
            path = os.path.normpath(export_path_for(h.checkpoint, h.checkpoint_dir, h.export_dir))
            if h.export_dir != h.checkpoint_dir and not under_folder(h.checkpoint, h.checkpoint_dir):
                path = os.path.join(h.export_dir, os.path.basename(path))
            by_checkpoint[h.checkpoint] = path
            entry = self.entries.get(path)
            if h.from_file:
                if (
                    entry is None
                    or entry.get("global_step") != h.step
                    or entry.get("run") != self._run
                    or not os.path.lexists(path)
                ):
                    actions.append(("file", path, h.checkpoint, h.step, None))
                continue
            source = by_checkpoint.get(h.link_to) if h.link_to else None
            if h.link_to and source is None:
                source = next((p for p, e in self.entries.items() if e.get("checkpoint") == h.link_to), None)
            if entry is not None and entry["global_step"] == h.step and entry.get("run") == self._run:
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
            self._deleted.add(path)
            if rank_zero:
                remove_file(path)
        for kind, path, checkpoint, step, source in actions:
            entry = self._materialize(trainer, kind, path, checkpoint, step, source, rank_zero)
            if entry is not None:
                self.entries[path] = entry
                self._deleted.discard(path)
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
                self._update_last(folder, rank_zero, *on_disk[folder])
        if rank_zero:
            for folder in sorted(touched):
                self._write_manifest(folder)
        trainer.strategy.barrier("T1CExport")

    def _materialize(
        self,
        trainer: Trainer,
        kind: str,
        path: str,
        checkpoint: str | None,
        step: int | None,
        source: str | None,
        rank_zero: bool,
    ) -> dict[str, Any] | None:
        """Produce one file: link/copy an export of ``step`` written in this fit, write the pending
        graph, or (``kind="file"``) export the checkpoint file's own weights."""
        folder = os.path.dirname(path)
        if kind == "file":
            pending = self._from_checkpoint_file(trainer, checkpoint)
            if pending is None:
                return None
            same = None
        else:
            same = source if source in self.entries else None
            if same is None:
                same = next(
                    (
                        p
                        for p in sorted(self._written)
                        if p in self.entries and self.entries[p]["global_step"] == step and p != path
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
                "run": self._run,
            }
        if rank_zero:
            os.makedirs(folder, exist_ok=True)
            name = os.path.relpath(checkpoint, folder) if checkpoint else ""
            pending.graph.metadata[METADATA_KEY]["checkpoint"] = name
            ir.write(path, pending.graph, fsync=True)
            self._check_written(path, pending)
        self._written.add(path)
        if self._reference_file is None:
            self._reference_file = path
        return {
            "file": path,
            "dir": folder,
            "checkpoint": checkpoint,
            "epoch": pending.epoch,
            "global_step": pending.step,
            "metrics": dict(pending.metrics),
            "content_hash": pending.content_hash,
            "source_hash": pending.source_hash,
            "same_as": None,
            "link": False,
            "kept": False,
            "run": self._run,
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

    def _update_last(
        self, folder: str, rank_zero: bool, last_ckpt_exists: bool, last_t1c_exists: bool
    ) -> None:
        """Own ``last.t1c``: a copy of this run's newest export in ``folder``.

        Left alone when a checkpoint owns the name, when its entry belongs to another run, or
        when a ``last.ckpt`` of another run lies beside it (a ``.t1c`` is never paired with
        another run's checkpoint).
        """
        path = os.path.join(folder, LAST_STEM + EXPORT_SUFFIX)
        current = self.entries.get(path)
        if current is not None and (current.get("checkpoint") or current.get("run") != self._run):
            return
        foreign_last = last_ckpt_exists  # this run's last.ckpt would own the entry (returned above)
        exports = [
            e
            for p, e in self.entries.items()
            if e["dir"] == folder and p != path and e.get("run") == self._run
        ]
        if not exports or foreign_last or (current is None and last_t1c_exists):
            if current is not None:
                self.entries.pop(path)
                if rank_zero and not foreign_last:
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
        """Merge this run's entries of ``folder`` into its manifest, under the folder's lock.

        Entries of other runs on disk are kept (two trainers in one folder lose nothing);
        this run's entries replace theirs of the same name, and what it deleted goes.
        """
        manifest = os.path.join(folder, MANIFEST_NAME)
        with manifest_lock(folder):
            try:
                disk, _ = manifest_entries(manifest)
            except ValueError:
                disk = {}
            if os.path.islink(manifest):
                remove_file(manifest)  # never write through a link
            merged = {
                p: e
                for p, e in disk.items()
                if p not in self.entries and p not in self._deleted and e.get("run") != self._run
            }
            merged.update({p: e for p, e in self.entries.items() if e["dir"] == folder})
            exports = {os.path.basename(p): _manifest_entry(e, folder) for p, e in sorted(merged.items())}
            write_manifest(manifest, {"version": MANIFEST_VERSION, "exports": exports})

    def _merge_manifests_from_disk(self, trainer: Trainer) -> None:
        """Fit start: read this run's folders' manifests (newer than the state inside a checkpoint).

        Entries that name a path outside their folder or have mistyped fields are ignored with
        a warning naming the manifest and the entry. Entries restored from a checkpoint's state
        are kept only for this fit's folders and the folder of the checkpoint resumed from.
        """
        folders = {
            os.path.normpath(os.fspath(mc.dirpath)) for mc in _model_checkpoints(trainer) if mc.dirpath
        }
        if self.dirpath:
            folders.add(self.dirpath)
        if self._own_dir:
            folders.add(self._own_dir)
        if trainer.ckpt_path:
            folders.add(os.path.dirname(os.path.normpath(os.path.abspath(os.fspath(trainer.ckpt_path)))))
        folders = {os.path.abspath(f) for f in folders}
        self.entries = {p: e for p, e in self.entries.items() if os.path.abspath(e["dir"]) in folders}
        found: dict[str, dict[str, Any]] = {}
        if trainer.is_global_zero:
            for folder in sorted(folders):
                manifest = os.path.join(folder, MANIFEST_NAME)
                try:
                    entries, problems = manifest_entries(manifest)
                except ValueError as err:
                    rank_zero_warn(f"T1CExport: {err}; its entries are ignored")
                    continue
                for line in problems:
                    rank_zero_warn(f"T1CExport: {line}")
                for path, entry in entries.items():
                    if os.path.lexists(path):
                        known = self.entries.get(path)
                        if known and known.get("content_hash") == entry["content_hash"]:
                            if entry["run"] is None:  # a manifest written before run ids
                                entry["run"] = known.get("run")
                            if entry["checkpoint"] is None:  # a checkpoint outside the folder
                                entry["checkpoint"] = known.get("checkpoint")
                        found[path] = {**entry, "kept": False}
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
        METRIC_PREFIX + "num_samples": float(total),
    }


def _manifest_entry(entry: Mapping[str, Any], folder: str) -> dict[str, Any]:
    """An entry as the manifest stores it: paths relative to ``folder`` (a checkpoint outside it: null)."""
    checkpoint = entry.get("checkpoint")
    same_as = entry.get("same_as")
    inside = checkpoint is not None and under_folder(checkpoint, folder)
    return {
        "checkpoint": os.path.relpath(checkpoint, folder) if inside else None,
        "epoch": entry["epoch"],
        "global_step": entry["global_step"],
        "metrics": dict(entry["metrics"]),
        "content_hash": entry["content_hash"],
        "source_hash": entry.get("source_hash"),
        "same_as": os.path.basename(same_as) if same_as else None,
        "link": bool(entry.get("link")),
        "run": entry.get("run"),
    }


def _state_entry(path: Any, entry: Any) -> dict[str, Any] | None:
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


def _torch_load(path: str, mmap: bool) -> Any:
    """``torch.load(weights_only=True)``: no code in a checkpoint runs (paths allowed, as ``t1c export``)."""
    from t1c.cli import SAFE_CHECKPOINT_GLOBALS

    with torch.serialization.safe_globals(list(SAFE_CHECKPOINT_GLOBALS)):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _checkpoint_step(path: str) -> int | None:
    """The ``global_step`` stored in a checkpoint file, None when it cannot be read safely."""
    if not os.path.isfile(path):
        return None
    try:
        step = _torch_load(path, mmap=True).get("global_step")
    except Exception:  # torch reports unreadable files with many exception types
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _load_checkpoint_weights(path: str) -> tuple[dict[str, torch.Tensor], int, int] | str:
    """``(state_dict, global_step, epoch)`` of a checkpoint file, or why it cannot be used."""
    if not os.path.isfile(path):
        return "are gone (the file does not exist)"
    try:
        data = _torch_load(path, mmap=False)
    except Exception as err:  # torch reports unreadable files with many exception types
        return f"cannot be loaded with torch.load(weights_only=True) ({type(err).__name__})"
    state, step, epoch = data.get("state_dict"), data.get("global_step"), data.get("epoch")
    if not isinstance(state, Mapping) or not isinstance(step, int) or not isinstance(epoch, int):
        return "are not in it (no state_dict, global_step and epoch)"
    return dict(state), step, epoch


@contextlib.contextmanager
def _weights_loaded(module: nn.Module, state: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """``module`` holds ``state`` inside the block, its own weights again afterwards (in place)."""
    own = {k: v.detach().clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        module.load_state_dict(state, strict=True)
    try:
        yield
    finally:
        with torch.no_grad():
            module.load_state_dict(own, strict=True)


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


_LAYOUT_WORDS = {
    "static": "one step per sample [B, ...]",
    "BT": "time second [B, T, ...]",
    "TB": "time first [T, B, ...]",
}


def _first_layer(model: nn.Module | None) -> tuple[nn.Module | None, bool]:
    """The first module with weights of ``model`` (registration order) and whether a Flatten precedes it."""
    flatten = False
    for sub in model.modules() if model is not None else []:
        if isinstance(sub, nn.Flatten):
            flatten = True
        elif isinstance(sub, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return sub, flatten
    return None, flatten


def _layout_of(x: torch.Tensor, model: nn.Module | None, batch_size: int | None) -> str:
    """How a batch input holds time: ``"static"``, ``"BT"`` (``[B, T, ...]``) or ``"TB"``.

    A batch is temporal when one step of one sample, not one sample, fits the model's first
    layer: a Linear's features (after a Flatten: their count), a ConvNd's rank and channels.
    Which of the first two axes is time follows from the labels' count ``batch_size``
    (``[B, T, ...]``, as tonic collates, when both fit).
    """
    layer, flatten = _first_layer(model)
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


def _one_step(x: torch.Tensor, layout: str) -> torch.Tensor:
    """One time step of one sample, ``[1, *step_shape]``, of a batch in ``layout``."""
    if layout == "BT":
        return x[:1, 0]
    if layout == "TB":
        return x[0, :1]
    return x[:1]


def _batch_size(x: torch.Tensor, layout: str) -> int:
    return int(x.shape[1] if layout == "TB" else x.shape[0])


def _time_first(x: torch.Tensor, layout: str, steps: int | None) -> torch.Tensor:
    """The graph's input ``[T, B, *step]`` for a batch: its own steps, else ``steps`` copies of it (one if None)."""
    if layout == "BT":
        return x.transpose(0, 1)
    if layout == "TB":
        return x
    return x.unsqueeze(0).expand(steps or 1, *x.shape)


def _classes(out: Any, batch_size: int) -> tuple[torch.Tensor, int | None]:
    """Predicted classes ``[B]`` from a forward's output, and its number of steps (None: one).

    ``[B, C]``: argmax. ``[T, B, C]`` or ``[B, T, C]`` (spikes or values per step): argmax of
    the sum over time. A tuple/list (``spk_rec, mem_rec``): its first element.
    """
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim not in (2, 3):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"forward returned {shape}, not [B, C], [T, B, C] or [B, T, C]")
    if out.ndim == 2:
        return out.argmax(-1), None
    if out.shape[1] == batch_size:
        return out.sum(0).argmax(-1), int(out.shape[0])
    return out.sum(1).argmax(-1), int(out.shape[1])


def _first_batch(trainer: Trainer) -> Any:
    """The first batch of the training data (drawn under the caller's preserved RNG), or None."""
    loader = trainer.train_dataloader
    source = getattr(trainer.fit_loop, "_data_source", None)
    if loader is None and source is not None and source.is_defined():  # not set up: no training left
        loader = source.dataloader()
    loader = _first_loader(loader)
    if loader is None:
        return None
    try:
        return next(iter(loader))
    except (StopIteration, TypeError):
        return None


def _validates_like_t1c_module(pl_module: LightningModule) -> bool:
    """A T1CModule whose validation is T1CModule's own: ``run_sequence`` on ``encode(x, seed=eval_seed)``.

    Then the outputs its validation step computes are exactly ``predict_with(executor, x)``'s.
    """
    from .module import T1CModule

    cls = type(pl_module)
    return isinstance(pl_module, T1CModule) and all(
        getattr(cls, name) is getattr(T1CModule, name)
        for name in ("validation_step", "forward", "encode", "logits", "predict_with")
    )


def _encode_for_eval(pl_module: LightningModule, x: torch.Tensor) -> torch.Tensor:
    """The spike trains ``predict_with`` feeds its executor: ``encode(x, seed=eval_seed)``."""
    return pl_module.encode(x, seed=int(pl_module.hparams.eval_seed))


# attributes that hold caches, metadata or the backward pass only: no effect on forward values
_NOT_COMPUTATION = frozenset(
    {"metadata", "node_metadata", "_held_state", "_coef_cache", "spike_grad", "training"}
)


def _same_computation(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules provably compute the same forward function.

    Same module tree (names and types), and every attribute of every module equal: tensors
    bit for bit (same dtype and shape), plain values, containers and dataclasses recursively,
    references to submodules by their name. Anything else (an unknown object) counts as a
    difference, so a False may be conservative, a True never is.
    """
    names_a = {id(m): n for n, m in a.named_modules()}
    names_b = {id(m): n for n, m in b.named_modules()}
    missing = object()

    def same(u: Any, v: Any) -> bool:
        if isinstance(u, nn.Module) or isinstance(v, nn.Module):
            return id(u) in names_a and id(v) in names_b and names_a[id(u)] == names_b[id(v)]
        if isinstance(u, torch.Tensor) or isinstance(v, torch.Tensor):
            return (
                isinstance(u, torch.Tensor)
                and isinstance(v, torch.Tensor)
                and u.dtype == v.dtype
                and u.shape == v.shape
                and torch.equal(u, v)
            )
        if type(u) is not type(v):
            return False
        if u is None or isinstance(u, (bool, int, str, type, frozenset, set)):
            return u == v
        if isinstance(u, float):
            return u == v or (math.isnan(u) and math.isnan(v))
        if dataclasses.is_dataclass(u):
            return all(same(getattr(u, f.name), getattr(v, f.name)) for f in dataclasses.fields(u))
        if isinstance(u, (list, tuple)):
            return len(u) == len(v) and all(same(x, y) for x, y in zip(u, v))
        if isinstance(u, dict):
            return u.keys() == v.keys() and all(same(u[k], v[k]) for k in u)
        return False

    modules_a, modules_b = list(a.named_modules()), list(b.named_modules())
    if [(n, type(m)) for n, m in modules_a] != [(n, type(m)) for n, m in modules_b]:
        return False
    for (_, ma), (_, mb) in zip(modules_a, modules_b):
        va, vb = vars(ma), vars(mb)
        for key in set(va) | set(vb):
            if key in _NOT_COMPUTATION or key == "_modules" or "hook" in key:
                continue
            if not same(va.get(key, missing), vb.get(key, missing)):
                return False
    return True


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


def _check_shapes(
    pred_float: torch.Tensor, pred_quant: torch.Tensor, pred_live: torch.Tensor, y: torch.Tensor
) -> None:
    if not pred_float.shape == pred_quant.shape == pred_live.shape == y.shape:
        raise ValueError(
            f"predictions of shape {list(pred_live.shape)}, {list(pred_float.shape)} and "
            f"{list(pred_quant.shape)} for labels {list(y.shape)}"
        )


def _joined(
    items: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None], max_bytes: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
    """Consecutive ``(xs [T, B, ...], classes [B], labels [B])`` joined along their batch
    dimensions while the joined ``xs`` stay within ``max_bytes`` (one at a time when 0) and
    alike in all but ``B``; a None is passed on and ends them."""
    group: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    size = 0
    for item in items:
        if item is None:
            if group:
                yield _cat(group)
            yield None
            return
        xs = item[0]
        nbytes = xs.numel() * xs.element_size()
        first = group[0][0] if group else None
        if first is not None and (
            size + nbytes > max_bytes
            or (xs.dtype, xs.device, xs.shape[:1], xs.shape[2:])
            != (first.dtype, first.device, first.shape[:1], first.shape[2:])
        ):
            yield _cat(group)
            group, size = [], 0
        group.append(item)
        size += nbytes
    if group:
        yield _cat(group)


def _cat(
    group: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if len(group) == 1:
        return group[0]
    xs, classes, labels = zip(*group)
    return torch.cat(xs, 1), torch.cat(classes), torch.cat(labels)


def _counts(
    pred_float: torch.Tensor, pred_quant: torch.Tensor, pred_live: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``[float correct, quantized correct, float == live, samples]`` (float64, on the CPU; one transfer)."""
    agreeing = torch.stack(
        [(pred_float == y).sum(), (pred_quant == y).sum(), (pred_float == pred_live).sum()]
    )
    samples = torch.tensor([y.shape[0]], dtype=torch.float64)
    return torch.cat([agreeing.to("cpu", torch.float64), samples])


def _to_device(x: Any, device: torch.device) -> Any:
    return x.to(device) if isinstance(x, torch.Tensor) else x


def _val_loader(trainer: Trainer) -> Any:
    loaders = trainer.val_dataloaders
    if loaders is None and trainer.datamodule is not None and hasattr(trainer.datamodule, "val_dataloader"):
        loaders = trainer.datamodule.val_dataloader()
    return _first_loader(loaders)


def _first_loader(loaders: Any) -> Any:
    """The first of a Trainer's loaders (a mapping's first value, a sequence's first item), or None."""
    if isinstance(loaders, Mapping):
        loaders = next(iter(loaders.values()), None)
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    return loaders
