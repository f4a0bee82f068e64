"""T1CExport in its asynchronous modes ("thread", the default, and "process"): every promise of
the synchronous mode.

Exports measured and written in the background (on the export thread, the costly calls in its
worker process) must name the weights they hold,
replace files atomically, follow the checkpoints' order for top-k deletion and ``last``,
list only complete files in the manifest, log their figures from the training thread at the
checkpoint's step, raise a failed export's own error at the next hook, and leave no temporary
file when the fit ends, fails or is interrupted (nor a worker process left running); a fit
killed mid-export resumes.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers.logger import Logger
from torchmetrics.classification import MulticlassAccuracy

from t1c import ir
from t1c.lightning import DigitsDataModule, T1CExport, T1CModule, exporting
from t1c.lightning.background import Worker
from t1c.lightning.callback import T1CExportError
from t1c.lightning.manifest import read_manifest
from t1c.lightning.measure import RecordedMeasurement
from t1c.lightning.streaming import StreamedScores
from t1c.lightning.worker_process import RemoteTraceback

EPOCHS = 3
MARKS = "T1C_TEST_MARKS"  # the folder where the patched calls below leave a file named after their process
MEASURE, WRITE = RecordedMeasurement.__call__, exporting.write_checked
GROUP = StreamedScores.run_group


def _mark(kind: str) -> None:
    folder = Path(os.environ[MARKS])
    folder.mkdir(exist_ok=True)
    (folder / f"{kind}-{os.getpid()}-{time.perf_counter_ns()}").touch()


def marked_measure(self):
    _mark("measure")
    return MEASURE(self)


def marked_group(self):
    _mark("measure")
    return GROUP(self)


def marked_write(path, graph, content_hash, step):
    _mark("write")
    WRITE(path, graph, content_hash, step)


def failing_write(path, graph, content_hash, step):
    if step == 8:
        raise T1CExportError(f"'{path}' read back differs from the graph measured at step 8")
    WRITE(path, graph, content_hash, step)


class SlowExport(T1CExport):
    """Each background export sleeps first, so training goes on while it runs; records where
    it ran and the training step when it ended."""

    def __init__(self, delay: float = 0.3, fail_at: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.threads: set[str] = set()
        self.ended: dict[int, int] = {}  # the export's step -> the training step when it ended
        self.trainer: pl.Trainer | None = None
        finish = self.exporter.finish

        def slow(snapshot):
            time.sleep(delay)
            self.threads.add(threading.current_thread().name)
            if snapshot.step == fail_at:
                raise T1CExportError(f"the export of step {fail_at} failed")
            pending = finish(snapshot)
            self.ended[snapshot.step] = self.trainer.global_step
            return pending

        self.exporter.finish = slow

    def on_fit_start(self, trainer, pl_module):
        self.trainer = trainer
        super().on_fit_start(trainer, pl_module)


class Recorder(Logger):
    """A logger that records each call's metrics, step and thread."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[dict, int, str]] = []

    @property
    def name(self):
        return "recorder"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.calls.append((dict(metrics), step, threading.current_thread().name))


class ManifestWatch(Callback):
    """At every training batch, while the worker may be writing, every file the manifest lists
    reads back whole (a validated read), each checkpoint's own export with its listed content
    hash (``last.t1c`` is replaced by the next export just before the manifest names it)."""

    def __init__(self, folder: Path):
        self.folder, self.checked = folder, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        path = self.folder / "t1c_exports.json"
        if not path.is_file():
            return
        for name, entry in read_manifest(path)["exports"].items():
            graph = ir.read(self.folder / name)
            if not name.startswith("last"):
                assert graph.content_hash() == entry["content_hash"], name
            self.checked += 1


class ProcessWatch(Callback):
    """Keeps the pid of the export's worker process (None: the fit has none)."""

    def __init__(self, export: T1CExport):
        self.export, self.pid = export, None

    def on_train_start(self, trainer, pl_module):
        process = self.export.worker.process
        self.pid = None if process is None else process.process.pid


def _gone(pid: int, within: float = 0.0) -> bool:
    """The process no longer exists (reaped: not even a zombie), ``within`` seconds from now."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


class Interrupt(Callback):
    """Raises ``error`` at the first training batch of epoch 1 (the export of epoch 0 in flight)."""

    def __init__(self, error: BaseException):
        self.error = error

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1:
            raise self.error


def _fit(folder, fixtures_dir, export, *extra, logger=False, ckpt_path=None, **mc):
    torch.manual_seed(0)
    mc = {"save_top_k": -1, "save_last": True, **mc}
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        limit_train_batches=4,
        num_sanity_val_steps=0,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        callbacks=[ModelCheckpoint(dirpath=folder, **mc), export, *extra],
    )
    trainer.fit(T1CModule(fixtures_dir / "mlp_snn.t1c", num_steps=4), DigitsDataModule(), ckpt_path=ckpt_path)
    return trainer


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def _pairs(folder: Path) -> dict:
    """Every checkpoint has its export, every listed export is on disk and complete."""
    manifest = read_manifest(folder / "t1c_exports.json")["exports"]
    assert {p.stem for p in folder.glob("*.t1c")} == {p.stem for p in folder.glob("*.ckpt")}
    assert set(manifest) == {p.name for p in folder.glob("*.t1c")}
    for name, entry in manifest.items():
        assert ir.read(folder / name).content_hash() == entry["content_hash"]
    assert not _hidden(folder)  # no temporary file left
    return manifest


def test_background_exports_hold_the_synchronous_exports_weights(tmp_path, fixtures_dir):
    """Training goes on while an export runs on the worker thread, yet every file holds the
    graph, step and figures the synchronous mode writes for the same checkpoint."""
    slow = SlowExport(asynchronous="process")  # measured and written in the worker process
    _fit(tmp_path / "async", fixtures_dir, slow, ManifestWatch(tmp_path / "async"))
    _fit(tmp_path / "sync", fixtures_dir, T1CExport(asynchronous=False))
    assert slow.threads and all(name.startswith("t1c-export") for name in slow.threads)
    assert any(ended > step for step, ended in slow.ended.items())  # trained on meanwhile
    background, synchronous = _pairs(tmp_path / "async"), _pairs(tmp_path / "sync")
    assert set(background) == set(synchronous) == {"epoch=0-step=4.t1c", "epoch=1-step=8.t1c",
                                                   "epoch=2-step=12.t1c", "last.t1c"}  # fmt: skip
    for name, entry in synchronous.items():
        assert background[name]["content_hash"] == entry["content_hash"]
        step = 12 if name == "last.t1c" else int(name.split("step=")[1][:-4])
        assert background[name]["global_step"] == entry["global_step"] == step
        assert background[name]["metrics"] == entry["metrics"]
        metadata = ir.read(tmp_path / "async" / name).metadata["t1c_export"]
        assert metadata["global_step"] == entry["global_step"]


def test_manifest_lists_only_complete_files_while_training(tmp_path, fixtures_dir):
    watch = ManifestWatch(tmp_path)
    _fit(tmp_path, fixtures_dir, SlowExport(delay=0.05), watch)
    assert watch.checked > 0  # files were listed, and each read back whole, during the fit
    _pairs(tmp_path)


def test_top_k_and_last_link_follow_the_checkpoints(tmp_path, fixtures_dir):
    export = SlowExport(delay=0.1)
    _fit(tmp_path, fixtures_dir, export, save_top_k=1, monitor="val_acc", mode="max", save_last="link")
    manifest = _pairs(tmp_path)
    best = next(n for n in manifest if n != "last.t1c")
    assert len(manifest) == 2 and (tmp_path / "last.t1c").is_symlink()
    linked = (tmp_path / "last.ckpt").resolve().stem  # the newest top-k checkpoint
    assert (tmp_path / "last.t1c").resolve().name == linked + ".t1c"
    assert manifest["last.t1c"]["link"] and manifest["last.t1c"]["global_step"] == int(linked.split("=")[-1])
    assert manifest[best]["global_step"] == int(best.split("step=")[1][:-4])


def test_figures_logged_from_the_training_thread_at_the_checkpoints_step(tmp_path, fixtures_dir):
    recorder = Recorder()
    _fit(tmp_path, fixtures_dir, SlowExport(delay=0.1), logger=recorder)
    logged = [(step, thread) for metrics, step, thread in recorder.calls if "t1c/quant_acc" in metrics]
    assert [step for step, _ in logged] == [4, 8, 12]
    assert {thread for _, thread in logged} == {threading.main_thread().name}


def test_a_failed_background_export_stops_the_fit_with_its_own_error(tmp_path, fixtures_dir):
    export = SlowExport(delay=0.1, fail_at=4, asynchronous="process")
    watch = ProcessWatch(export)
    with pytest.raises(T1CExportError, match="the export of step 4 failed"):
        _fit(tmp_path, fixtures_dir, export, watch)
    assert export.worker is None and _gone(watch.pid)  # stopped, the process reaped
    assert not (tmp_path / "epoch=0-step=4.t1c").exists() and not _hidden(tmp_path)
    assert not (tmp_path / "epoch=2-step=12.ckpt").exists()  # stopped before the last epoch


@pytest.mark.parametrize(
    ("error", "mode"), [(KeyboardInterrupt(), "process"), (RuntimeError("user code failed"), "thread")]
)
def test_an_interrupted_fit_leaves_no_temporary_file_then_resumes(tmp_path, fixtures_dir, error, mode):
    export = SlowExport(delay=0.5, asynchronous=mode)
    watch = ProcessWatch(export)
    expected = SystemExit if isinstance(error, KeyboardInterrupt) else RuntimeError  # Lightning: exit(1)
    with pytest.raises(expected):
        _fit(tmp_path, fixtures_dir, export, Interrupt(error), watch)
    assert not _hidden(tmp_path) and export.worker is None and (watch.pid is None) == (mode == "thread")
    assert watch.pid is None or _gone(watch.pid)
    assert not (tmp_path / "epoch=0-step=4.t1c").exists()  # abandoned with its fit, never half written
    _fit(tmp_path, fixtures_dir, T1CExport(), ckpt_path=tmp_path / "last.ckpt")
    manifest = _pairs(tmp_path)
    assert manifest["epoch=0-step=4.t1c"]["global_step"] == 4
    meta = ir.read(tmp_path / "epoch=0-step=4.t1c").metadata["t1c_export"]
    assert meta["weights"] == "loaded from the checkpoint file"


def test_process_mode_measures_and_writes_in_its_worker_process_then_reaps_it(
    tmp_path, fixtures_dir, monkeypatch
):
    """The quantized runs (fed batch by batch while validation runs), the writes and the
    read-backs happen in the worker process; it is reaped after the fit, on a daemon thread."""
    monkeypatch.setenv(MARKS, str(tmp_path / "marks"))
    monkeypatch.setattr(RecordedMeasurement, "__call__", marked_measure)
    monkeypatch.setattr(StreamedScores, "run_group", marked_group)
    monkeypatch.setattr(exporting, "write_checked", marked_write)
    export = T1CExport(asynchronous="process")
    watch = ProcessWatch(export)
    _fit(tmp_path / "ck", fixtures_dir, export, watch)
    marks = sorted(p.name.split("-")[:2] for p in (tmp_path / "marks").iterdir())
    assert watch.pid != os.getpid() and {pid for _, pid in marks} == {str(watch.pid)}
    kinds = [kind for kind, _ in marks]
    assert kinds.count("write") == 3 and kinds.count("measure") >= 3  # last.t1c is a copy
    assert export.worker is None and _gone(watch.pid, within=10)
    _pairs(tmp_path / "ck")


def test_an_error_in_the_worker_process_stops_the_fit_with_the_exports_own_error(
    tmp_path, fixtures_dir, monkeypatch
):
    monkeypatch.setattr(exporting, "write_checked", failing_write)
    export = T1CExport(asynchronous="process")
    watch = ProcessWatch(export)
    with pytest.raises(T1CExportError, match="read back differs from the graph measured at step 8") as raised:
        _fit(tmp_path, fixtures_dir, export, watch)
    assert isinstance(raised.value.__cause__, RemoteTraceback) and "failing_write" in str(
        raised.value.__cause__
    )
    assert export.worker is None and _gone(watch.pid) and not _hidden(tmp_path)
    assert (tmp_path / "epoch=0-step=4.t1c").is_file() and not (tmp_path / "epoch=1-step=8.t1c").exists()


def test_metrics_that_do_not_pickle_fall_back_to_the_thread_with_one_warning(tmp_path, fixtures_dir):
    class LocalAccuracy(MulticlassAccuracy):  # a local class: instances do not pickle
        pass

    export = T1CExport(asynchronous="process", metrics={"acc": LocalAccuracy(10)})
    watch = ProcessWatch(export)
    with pytest.warns(
        UserWarning, match=r"metrics=\.\.\.\) cannot be sent to the export process.*LocalAccuracy.*'thread'"
    ):
        _fit(tmp_path, fixtures_dir, export, watch)
    assert watch.pid is None  # the export thread did all the work
    assert "t1c/quant_acc" in _pairs(tmp_path)["last.t1c"]["metrics"]


def test_synchronous_mode_and_distributed_runs_have_no_worker(tmp_path, fixtures_dir):
    export = T1CExport(asynchronous=False)
    trainer = _fit(tmp_path, fixtures_dir, export)
    assert export.worker is None and trainer.global_step == 12
    _pairs(tmp_path)


def test_worker_runs_jobs_in_order_and_raises_the_first_error():
    worker, done = Worker(), []

    def job(i, fail=False):
        def run():
            time.sleep(0.02 * (3 - i))
            done.append(i)
            if fail:
                raise ValueError(f"job {i}")

        return run

    for i in range(3):
        worker.submit(job(i, fail=i > 0))
    assert worker.busy
    with pytest.raises(ValueError, match="job 1"):
        worker.wait()
    assert done == [0, 1, 2] and not worker.busy
    worker.submit(job(0))
    worker.settle()
    worker.check()  # finished without error: nothing raised
    worker.close()
    assert worker.pool is None


def test_worker_check_keeps_the_error_of_a_job_finishing_while_it_looks():
    class Finishing:
        """A failed job seen running at its first question and finished at every later one."""

        def __init__(self):
            self.asked = 0

        def done(self):
            self.asked += 1
            return self.asked > 1

        def cancelled(self):
            return False

        def exception(self, timeout=None):
            return ValueError("finished meanwhile")

    worker = Worker()
    worker.futures = [Finishing()]
    worker.check()  # running when asked: kept for the next check
    with pytest.raises(ValueError, match="finished meanwhile"):
        worker.check()
    assert worker.futures == []
