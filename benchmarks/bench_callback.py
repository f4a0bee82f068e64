"""What ``T1CExport()`` adds to a fit, in each mode: synchronous, thread, process (issue 24 goal: +5%).

Two configurations, each with a ModelCheckpoint saving every epoch (top-k -1 and last) and the
validation data measured in float and in quantized simulation at every export: ``mlp``, the
digits demo (a ``T1CModule``, 64-128-10 SNN, 25 steps, 3 epochs), and ``conv``, a conv SNN
(conv 3x3 to 16 channels, LIF, 10 LIF) on the digits as 1x8x8 images. Fits without the
callback, with ``T1CExport(asynchronous=False)``, ``"thread"`` and ``"process"`` alternate in
one process (rotating which runs first: the second fit of a pair runs slower), and the best of
``ROUNDS`` of each is compared, so a slower moment of a shared machine does not count against
one side. Wall time is the figure that matters for the asynchronous modes (the export runs
beside training; the wait for the last export at the end of the fit counts);
process CPU time (all threads; the worker process's own CPU time after ``+``) is reported too, and the median over rounds of each round's
with/without wall ratio (fits in one process drift). The CPU time the training thread spends
inside the callback's hooks is reported too (``time.thread_time``), and the export thread's, and the
median wall time the fit's end waits for the last export (``final wait``). Training uses one torch
thread. ``--every K`` validates and checkpoints every K epochs over 3K epochs (the same three
exports in a fit K times as long; each side alike), which shows how the overhead falls as
epochs grow beside the exports. Run:
``python benchmarks/bench_callback.py [--rounds N] [--only mlp|conv] [--every K]`` (default 9
rounds, K = 1).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import snntorch as snn
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from t1c import ir
from t1c.bridge import to_ir
from t1c.demo import NUM_STEPS, digits_data, prepare_source
from t1c.lightning import T1CExport, T1CModule, TensorDataModule

EPOCHS = 3
ROUNDS = 9
GOAL = 0.05
SIDES = ("without", "sync", "thread", "process")
HOOKS = (
    "setup",
    "on_fit_start",
    "on_train_start",
    "on_train_batch_start",
    "on_train_batch_end",
    "on_validation_start",
    "on_validation_batch_end",
    "on_validation_end",
    "on_train_epoch_end",
    "on_save_checkpoint",
    "on_train_end",
    "on_fit_end",
    "state_dict",
)


class TimedExport(T1CExport):
    """T1CExport with a stopwatch (the training thread's CPU time) around each of its hooks, and
    one around each job of its export thread (that thread's CPU time)."""

    def __init__(self, asynchronous: bool | str) -> None:
        super().__init__(asynchronous=asynchronous)
        self.seconds = self.thread_seconds = 0.0
        self.final_wait = 0.0  # wall seconds in the hooks that wait for the exports at the fit's end
        # instance attributes shadow the methods: other attribute lookups cost nothing more
        for name in HOOKS:
            setattr(self, name, self._timed(getattr(self, name)))

    def setup(self, trainer, pl_module, stage):
        super().setup(trainer, pl_module, stage)
        if self.worker is None:
            return
        submit = self.worker.submit

        def timed_submit(job):
            def timed_job():
                start = time.thread_time()
                try:
                    return job()
                finally:
                    self.thread_seconds += time.thread_time() - start

            return submit(timed_job)

        self.worker.submit = self.ledger.background = timed_submit

    def _timed(self, method):
        final = method.__name__ in ("on_train_end", "on_fit_end")

        def timed(*args, **kwargs):
            start, wall = time.thread_time(), time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.thread_time() - start
                if final:
                    self.final_wait += time.perf_counter() - wall

        return timed


def conv_source(path: Path) -> Path:
    """The conv configuration's source graph: conv 3x3 (1 -> 16 channels), LIF, linear, LIF."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), snn.Leaky(beta=0.9, init_hidden=True),
        nn.Flatten(), nn.Linear(16 * 8 * 8, 10), snn.Leaky(beta=0.9, init_hidden=True),
    )  # fmt: skip
    ir.write(path, to_ir(model, torch.zeros(1, 1, 8, 8)))
    return path


def conv_data() -> TensorDataModule:
    """The digits as 1x8x8 images in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return TensorDataModule(x, torch.tensor(digits.target), batch_size=64)


def children_cpu() -> float:
    """CPU seconds of the reaped child processes (the export's worker process) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fit(source: Path, data, root: Path, side: str, every: int = 1) -> dict[str, float]:
    """CPU and wall seconds of one fit (validated and checkpointed every ``every`` epochs), the
    CPU seconds of its worker process, and the training thread's CPU seconds inside the callback."""
    torch.manual_seed(0)
    module = T1CModule(str(source), num_steps=NUM_STEPS)
    callbacks = [ModelCheckpoint(dirpath=root / "ck", save_top_k=-1, save_last=True, every_n_epochs=every)]
    export = TimedExport(asynchronous=side if side in ("thread", "process") else False)
    if side != "without":
        callbacks.append(export)
    trainer = Trainer(
        max_epochs=EPOCHS * every,
        check_val_every_n_epoch=every,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        deterministic=True,
        num_sanity_val_steps=0,
    )
    cpu, wall, worker = time.process_time(), time.perf_counter(), children_cpu()
    trainer.fit(module, data())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    for thread in threading.enumerate():  # the worker process is reaped after the fit: its CPU counts
        if thread.name == "t1c-export-reaper":
            thread.join()
    return {
        "cpu": cpu,
        "wall": wall,
        "worker": children_cpu() - worker,
        "hooks": export.seconds,
        "thread": export.thread_seconds,
        "final": export.final_wait,
    }


def compare(name: str, source: Path, data, tmp: Path, rounds: int, every: int = 1) -> None:
    """Fit each side ``rounds`` times, alternating, and print the best-of figures."""
    for side in ("thread", "process"):
        fit(source, data, tmp / f"{name}-warmup-{side}", side, every)
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for i in range(rounds):  # alternate, so a busy moment of the machine hits every side
        order = SIDES[i % len(SIDES) :] + SIDES[: i % len(SIDES)]
        for side in order:
            runs[side].append(fit(source, data, tmp / f"{name}-{side}{i}", side, every))
    base = {key: min(r[key] for r in runs["without"]) for key in ("cpu", "wall")}
    print(
        f"{name}: {EPOCHS * every} epochs, {NUM_STEPS} steps, an export every {every} epoch(s), one torch "
        f"thread, best of {rounds}"
    )
    print(f"  without        wall {base['wall']:6.2f} s  cpu {base['cpu']:6.2f} s")
    for side in SIDES[1:]:
        wall, cpu, worker = (min(r[key] for r in runs[side]) for key in ("wall", "cpu", "worker"))
        paired = statistics.median(b["wall"] / a["wall"] - 1 for a, b in zip(runs["without"], runs[side]))
        hooks, thread = (min(r[key] for r in runs[side]) for key in ("hooks", "thread"))
        final = statistics.median(r["final"] for r in runs[side])
        print(
            f"  {side:7s} overhead wall {wall:6.2f} s {wall / base['wall'] - 1:+6.1%} (paired median "
            f"{paired:+6.1%})  cpu {cpu:6.2f} s {cpu / base['cpu'] - 1:+6.1%} + {worker:4.2f} s  CPU in hooks {hooks:.3f} s, export "
            f"thread {thread:.3f} s, final wait {final * 1000:.0f} ms (goal: wall <= +{GOAL:.0%})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="fits of each side, alternating")
    parser.add_argument("--only", choices=("mlp", "conv"), help="one configuration (default: both)")
    parser.add_argument("--every", type=int, default=1, help="epochs per export (3 exports per fit)")
    args = parser.parse_args()
    rounds = args.rounds
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only in (None, "mlp"):
            mlp = prepare_source(tmp / "digits_snn.t1c", epochs=1, log=lambda line: None)
            compare("mlp", mlp, digits_data, tmp, rounds, args.every)
        if args.only in (None, "conv"):
            compare("conv", conv_source(tmp / "conv_snn.t1c"), conv_data, tmp, rounds, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
