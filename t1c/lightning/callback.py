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
shard of the validation data (Lightning's distributed sampler); the figures are torchmetrics
states synced across ranks by ``compute()``, so every rank logs and stores the same figures (a sampler
that pads the last shard counts a few samples twice). Only global rank zero writes, deletes
and reads files; the decisions it takes from the disk are broadcast, and ranks meet at a
barrier after each write, so names and the manifest are identical everywhere.

Who does what. The hooks below only decide *when*, like ModelCheckpoint, which leaves the
bytes to the Trainer: an :class:`~t1c.lightning.exporting.Exporter` builds, verifies,
measures (:mod:`t1c.lightning.measure`) and writes one export; a
:class:`~t1c.lightning.ledger.Ledger` keeps what was written, plans the files for the
checkpoints held (:mod:`t1c.lightning.holdings`), deletes, keeps ``last.t1c`` and the
manifest (:mod:`t1c.lightning.manifest`) and is the state saved in checkpoints; the
:class:`~t1c.lightning.records.ValidationRecords` hold what validation computed.

Asynchronous exports (the default), like ``AsyncCheckpointIO``, change one of them, not the
hooks: the exporter's snapshot is taken at the save, and a
:class:`~t1c.lightning.background.Worker` finishes it (measure, metadata) and runs the ledger's
changes to the files, one job at a time in checkpoint order; in the ``"process"`` mode it
hands the costly calls (measure, write, read back) to a worker process
(:mod:`t1c.lightning.worker_process`) through the exporter's ``remote``. A T1CModule's
weights are final when its validation starts, so the next export's measurement is opened
there and fed each recorded batch (:mod:`t1c.lightning.streaming`); the export at the
checkpoint takes its figures when it measured that very graph. Each hook logs the finished
exports' figures (:meth:`T1CExport._log_exports`, the one place an export's results reach the
loggers) and raises a failed job's error; the end of the fit waits for the worker, an
exception abandons what it has not started.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from .background import Worker, export_mode
from .exporting import Exporter, T1CExportError, log_metrics, rng_preserved
from .feeding import Encoder, Feed, Readout, check_feed
from .holdings import fit_folders, model_checkpoints
from .ledger import Action, Ledger
from .measure import Measurement
from .naming import EXPORT_SUFFIX, format_name, sanitize_stem
from .rate_plots import RatePlots
from .records import ValidationRecords, validates_like_t1c_module
from .scoring import metric_collection
from .worker_process import start_process

__all__ = ["T1CExport", "T1CExportError"]

VERIFY_MODES = ("raise", "warn", "off")
GAP_ACTIONS = ("warn", "raise")


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
            else the first export); ``"warn"`` logs it; ``"off"`` skips the check. The same
            for the self-check of a plain module's first measured export: the float graph must
            predict what its forward predicts on a validation batch (see ``encoder``).
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
        encoder: how a plain LightningModule's forward turns a batch input into its network's
            input sequence: ``"rate"``, ``"latency"`` (snnTorch's ``spikegen``, ``num_steps``
            steps), ``"delta"`` (``spikegen.delta`` of the batch's steps), ``"direct"`` (the
            batch at every step), or a callable ``x [B, ...] -> [T, B, ...]`` (e.g.
            ``functools.partial(spikegen.latency, num_steps=25, tau=5)``). None: the batch's own
            steps, or the static batch repeated for the steps the forward returns.
        num_steps: the steps of ``encoder`` (of a static batch's repeats when None).
        readout: how the exported graph's outputs ``[T, B, C]`` become class scores:
            ``"spike_count"`` (sum over time, default), ``"mean"``, ``"last_step"``, or a callable
            ``ys -> [B, C]``.
        metrics: a torchmetrics ``Metric``, ``MetricCollection`` or dict of Metrics computed on
            the class scores of the float and the quantized graph (``t1c/float_<name>``,
            ``t1c/quant_<name>``), synced across ranks by torchmetrics. None:
            ``MulticlassAccuracy(C, average="micro")`` named ``acc``.
        rate_figure: ``"auto"``: each export's spike-rate figure to the loggers taking images (if matplotlib
            is installed); ``True``: also warn if not; ``"png"``: also ``<export>.rates.png``; ``False``: none.
        asynchronous: take a snapshot at the checkpoint and measure, write and read back the
            export in the background while training goes on; its files, manifest entries and
            logged figures appear at the first hook after it is done, its errors are raised
            there, and the end of the fit waits for it. ``"thread"`` (``True``, the default):
            a background thread does it all; ``"process"``: the thread keeps the order and hands
            the measurement, write and read-back to a worker process forked for the fit (Linux;
            it runs beside training without holding the GIL). ``False``: every export is done
            before the next training step. Distributed runs are synchronous (the measurement
            syncs its figures across ranks).

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
        encoder: Encoder = None,
        num_steps: int | None = None,
        readout: Readout = "spike_count",
        metrics: Any = None,
        rate_figure: bool | Literal["auto", "png"] = "auto",
        asynchronous: bool | Literal["thread", "process"] = True,
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
            sample=sample,
        )
        check_feed(encoder, num_steps, readout)
        self.dirpath = os.path.normpath(os.fspath(dirpath)) if dirpath is not None else None
        self.filename = filename or "{epoch}-{step}"
        self.every_n_epochs = every_n_epochs
        self.save_last = bool(save_last)
        self.verify = verify
        self.weight_bits, self.accumulator_bits = weight_bits, accumulator_bits
        self.integer_weights = bool(integer_weights)
        self.limit_batches = limit_batches
        self.max_quant_gap, self.on_quant_gap = max_quant_gap, on_quant_gap
        self.module_attr, self.export_kwargs, self.sample = module_attr, dict(export_kwargs or {}), sample
        self.feed = Feed(encoder, num_steps, readout)
        self.metrics = metric_collection(metrics)
        self.asynchronous = export_mode(asynchronous)  # "thread", "process" or None
        self.rate_plots = RatePlots(rate_figure, weight_bits)

        # What the hooks delegate to (each hook's docstring names the ones it touches): the ledger (what
        # was written, top-k deletion, last.t1c, manifests, resume), the records (validation's own
        # outputs, for the measurement), the exporter (builds, verifies, measures, writes an export)
        self.ledger = Ledger(uuid.uuid4().hex, self.dirpath, self.save_last)
        self.records = ValidationRecords(limit_batches)
        self.exporter = Exporter(
            verify=verify,
            integer_weights=self.integer_weights,
            module_attr=module_attr,
            export_kwargs=self.export_kwargs,
            sample=sample,
            gap=(max_quant_gap, on_quant_gap),
            measurement=Measurement(
                weight_bits,
                accumulator_bits,
                limit_batches,
                self.records,
                self.feed,
                self.metrics,
                verify != "off",
            ),
            reference_files=self.ledger.reference_files,
        )
        self.worker: Worker | None = None  # runs exports off the training thread (setup; None: synchronous)
        self._own_dir: str | None = None  # the folder of exports without a ModelCheckpoint (setup)
        self._dirty = False  # a save or a fit start since the last reconcile

    @property
    def state_key(self) -> str:
        return self._generate_state_key(dirpath=self.dirpath, filename=self.filename)

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        """This run's exports by absolute `.t1c` path (file, checkpoint, step, metrics...)."""
        return self.ledger.entries

    # -- hooks, in the order the Trainer calls them --------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Fix the folder of exports without a ModelCheckpoint and one run id on every rank."""
        if stage != "fit":
            return
        folder = self.dirpath or os.path.join(trainer.log_dir or trainer.default_root_dir, "checkpoints")
        self._own_dir = os.path.normpath(trainer.strategy.broadcast(folder))
        self.ledger.run = trainer.strategy.broadcast(self.ledger.run)  # a resume restores its own
        if self.asynchronous and trainer.world_size > 1:
            rank_zero_info(
                "T1CExport: exports are synchronous under distributed training (the measurement syncs "
                "its figures across ranks, which a background thread cannot do while the ranks train)"
            )
        elif self.asynchronous:
            self.worker = Worker(start_process(self.metrics) if self.asynchronous == "process" else None)
            self.ledger.background = self.worker.submit
            self.exporter.remote = self.worker.process.call if self.worker.process else None

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Stop the background thread and process (their work was waited for at the end of the fit;
        the process is reaped on a daemon thread)."""
        self._stop_worker(wait=False)

    def _stop_worker(self, wait: bool = True) -> None:
        """Abandon the jobs not started, wait for the running one, stop the thread and process
        (worker; ``wait``: until the process is reaped)."""
        if self.worker is not None:
            self.worker.close(wait=wait)
            self.worker = None
            self.ledger.background = self.exporter.remote = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Merge the manifests of this fit's folders (ledger); states are restored before this hook.
        Decide whether the rate figures are drawn (rate plots)."""
        self.ledger.start_fit(trainer, fit_folders(trainer, self.dirpath, self._own_dir))
        self.rate_plots.start_fit(trainer)
        self._dirty = True

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Dry run (exporter): a model that cannot be exported fails before the first step."""
        if not self.should_skip(trainer):
            with rng_preserved(pl_module):
                self.exporter.dry_run(trainer, pl_module)
        self._reconcile(trainer, pl_module)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Learn how the batches hold time from the first one (exporter)."""
        if self.exporter.layout is None:
            self.exporter.observe_batch(batch, pl_module)
        self._reconcile(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Resolve the saves made since the last hook (ledger)."""
        self._reconcile(trainer, pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record a T1CModule's validation (records), for the measurement of the next export; with a
        worker, open that measurement to run beside validation (exporter's streams)."""
        self.records.clear()
        if trainer.sanity_checking or self.should_skip(trainer) or not validates_like_t1c_module(pl_module):
            return
        if self.worker is not None:
            self.worker.settle()  # one export at a time: the previous one is done
            with rng_preserved(pl_module):  # before recording: exporting runs the executor once
                self.exporter.open_stream(trainer, pl_module, self.worker.submit)
        self.records.start(pl_module.executor)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep what the executor computed for this batch (records), and feed it to the stream."""
        if self.records.recording:
            self.records.add(batch, batch_idx, dataloader_idx)
            self.exporter.streams.feed(pl_module, batch_idx, dataloader_idx)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Stop recording (records); resolve the saves made during validation (ledger)."""
        if self.records.recording:
            self.records.stop(pl_module.executor, trainer.global_step)
        if not trainer.sanity_checking:
            self._reconcile(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Without a ModelCheckpoint: export on the callback's own schedule (exporter, ledger)."""
        self._reconcile(trainer, pl_module)
        if self.should_export_own(trainer):
            self._export_own(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Export the in-memory model into the pending slot of this step (exporter); its path is
        read from ModelCheckpoint's record at the next hook."""
        self.ledger.note_saves(trainer)
        if not self.should_export_at_save(trainer):
            return
        self._prepare(trainer, pl_module)
        self._dirty = True

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Wait for the exports in flight (worker); resolve the saves of the last step (ledger)."""
        self._reconcile(trainer, pl_module, wait=True)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Resolve the last saves and wait for them (ledger, worker); forget this fit's pending
        exports (exporter)."""
        # ModelCheckpoint.on_train_end may save after our on_train_end; a resume with no
        # training left reconciles only here
        self._reconcile(trainer, pl_module, wait=True)
        self.exporter.forget_fit()
        self.ledger.written.clear()
        self.ledger.saved.clear()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """The fit fails or is interrupted: abandon the exports not started, let the running one
        finish its file (no temporary file is left) and forget its outcome (worker)."""
        self._stop_worker()
        self.exporter.forget_fit()
        self.exporter.take_finished()

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The ledger's entries, reference file and run id: plain types only, so resume works."""
        return self.ledger.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved in a checkpoint; entries with an unsafe or mistyped field are dropped."""
        self.ledger.load_state_dict(state_dict)

    # -- predicates -----------------------------------------------------------------------
    @staticmethod
    def should_skip(trainer: Trainer) -> bool:
        """No exports outside fitting, during the sanity check or with ``fast_dev_run``."""
        return bool(trainer.fast_dev_run) or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking

    def should_export_at_save(self, trainer: Trainer) -> bool:
        """A checkpoint is being saved: export unless skipped (a ModelCheckpoint saves it)."""
        return not self.should_skip(trainer) and bool(trainer.checkpoint_callbacks)

    def should_export_own(self, trainer: Trainer) -> bool:
        """Without a ModelCheckpoint: every ``every_n_epochs`` epochs, once per global step."""
        return (
            not self.should_skip(trainer)
            and not model_checkpoints(trainer)
            and self.every_n_epochs >= 1
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
            and trainer.global_step != self.ledger.last_own_step
        )

    # -- what the hooks delegate ------------------------------------------------------------
    def _reconcile(self, trainer: Trainer, pl_module: LightningModule, wait: bool = False) -> None:
        """After a save or a fit start: bring the `.t1c` files in line with the checkpoints held.

        With a worker: first raise the error of a failed background job (``wait``: after waiting
        for every job). The plan is made now, from the ModelCheckpoints' record at this hook;
        the ledger applies it in the worker behind the exports in flight, so the files change in
        the order of the checkpoints. The figures of finished exports are logged here.
        """
        if self.worker is not None:
            if wait:
                self.worker.wait()
            else:
                self.worker.check()
        self._log_exports(trainer)
        if self._dirty:
            self._dirty = False
            self.ledger.reconcile(trainer, pl_module, self.exporter)
            self._run(lambda: self._write_pngs(trainer))
            # every save of an earlier step has been resolved; the current step may still get one
            step = trainer.global_step
            self._run(lambda: self.exporter.forget_before(step))
        if wait and self.worker is not None:
            self.worker.wait()
            self._log_exports(trainer)

    def _run(self, job: Callable[[], Any]) -> None:
        """Run ``job`` in the worker, behind the jobs in flight (now without a worker)."""
        if self.worker is None:
            job()
        else:
            self.worker.submit(job)

    def _log_exports(self, trainer: Trainer) -> None:
        """Log each finished export's figures to the Trainer's loggers, at its checkpoint's step."""
        for pending in self.exporter.take_finished():
            log_metrics(trainer, pending.measured, pending.step)
            self.rate_plots.log(trainer, pending.measured, pending.epoch, pending.step)

    def _write_pngs(self, trainer: Trainer) -> None:
        """The rate figures beside the exports of this run, and none beside deleted ones (rate
        plots; in the worker when there is one, behind the ledger's writes)."""
        self.rate_plots.write_pngs(trainer, self.ledger.entries, self.ledger.owned, self.ledger.deleted)

    def _prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Export the live model of this step (exporter): its snapshot now, the rest in the
        worker once the work in flight is done (only one export is measured at a time)."""
        if self.exporter.prepared(trainer.global_step):  # a second checkpoint of this step
            return
        if self.worker is not None and not self.exporter.streams.streaming(trainer.global_step):
            self.worker.settle()  # (a stream settled when it opened)
        with rng_preserved(pl_module):
            self.exporter.prepare(trainer, pl_module, self.worker.submit if self.worker else None)
        if self.worker is None:
            self._log_exports(trainer)

    def _export_own(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Export to ``filename`` in the callback's own folder (no ModelCheckpoint), in the worker
        once the export is finished (its name may hold its figures)."""
        step = trainer.global_step
        self._prepare(trainer, pl_module)
        self.ledger.last_own_step = step
        if self.worker is None:
            self._write_own(trainer, pl_module, step)
        else:
            self.ledger.applying = self.worker.submit(lambda: self._write_own(trainer, pl_module, step))

    def _write_own(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        """Write the export of ``step`` made without a ModelCheckpoint, named after its own metrics."""
        pending = self.exporter.pending.get(step)
        if pending is None:  # its export failed: the worker raises its error
            return
        values: dict[str, Any] = dict(pending.metrics)
        values.update(epoch=pending.epoch, step=pending.step)
        stem = trainer.strategy.broadcast(sanitize_stem(format_name(self.filename, values)))
        path = os.path.join(self._own_dir or self.dirpath or ".", stem + EXPORT_SUFFIX)
        action = Action("write", path, None, pending.step, None)
        self.ledger.apply(trainer, pl_module, self.exporter, [action], [], now=True)
        self._write_pngs(trainer)


def _check_init(**kw: Any) -> None:
    """Raise a ``ValueError`` repeating the call for the first argument out of range."""

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
    if kw["sample"] is not None and not isinstance(kw["sample"], torch.Tensor):
        raise ValueError(
            f"T1CExport(sample={type(kw['sample']).__name__}): must be a tensor [1, *input_shape], one time step"
        )
