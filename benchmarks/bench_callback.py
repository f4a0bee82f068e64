"""What ``T1CExport()`` adds to a fit (issue 12 goal: at most +15%).

The digits demo configuration: a ``T1CModule`` (64-128-10 SNN, 25 steps), a ModelCheckpoint
every epoch (top-k -1 and last), 3 epochs, the 360 validation samples measured in float and
in quantized simulation at every export. Fits with and without the callback alternate in one
process, one thread, and the best of ``ROUNDS`` of each is compared, so a slower moment of a
shared machine does not count against one side. Times are the process's CPU time
(``time.process_time``, one thread, data loaded in the process), which other users of a
shared machine barely change, and wall time for reference. Next to the best-of ratio, the
median over rounds of each round's with/without ratio: fits in one process drift (here up to
20% across a run), which best-of on each side alone does not cancel; the paired median does,
and the rounds alternate which side runs first (the second fit of a pair runs slower). The
CPU time spent inside the callback's own hooks is reported too, and split into its main
parts (``PARTS``). Run:
``python benchmarks/bench_callback.py [--rounds N]`` (default 5; more rounds on a noisy machine).
"""

from __future__ import annotations

import argparse
import operator
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from t1c.demo import NUM_STEPS, digits_data, prepare_source
from t1c.lightning import T1CExport, T1CModule

EPOCHS = 3
ROUNDS = 5
GOAL = 0.15
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


#: Parts of an export timed on their own (CPU seconds, nested in the hooks' time): the object
#: doing it (attributes from the callback), its method, and what it is.
PARTS = {
    "measure": ("exporter.measurement", "measure", "float/quantized/live measurement"),
    "materialize": ("ledger", "materialize", "writing the files (fsync) and reading each back"),
    "check_written": ("exporter", "check_written", "  of which reading back (validated read, hash compare)"),
    "dry_run": ("exporter", "dry_run", "dry-run export at fit start"),
}


class TimedExport(T1CExport):
    """T1CExport with a stopwatch around each of its hooks, and around the parts in ``PARTS``."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self.parts = dict.fromkeys(PARTS, 0.0)
        # instance attributes shadow the methods: other attribute lookups cost nothing more
        for name in HOOKS:
            setattr(self, name, self._timed(name, getattr(self, name)))
        for name, (owner, method, _) in PARTS.items():
            part = operator.attrgetter(owner)(self)
            setattr(part, method, self._timed(name, getattr(part, method)))

    def _timed(self, name: str, method):
        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent = time.process_time() - start
                if name in PARTS:
                    self.parts[name] += spent
                else:
                    self.seconds += spent

        return timed


def fit(source: Path, root: Path, with_callback: bool) -> dict[str, float]:
    """CPU and wall seconds of one fit, CPU seconds inside the callback, samples it measured on."""
    torch.manual_seed(0)
    module = T1CModule(str(source), num_steps=NUM_STEPS)
    callbacks = [ModelCheckpoint(dirpath=root / "ck", save_top_k=-1, save_last=True)]
    export = TimedExport()
    if with_callback:
        callbacks.append(export)
    trainer = Trainer(
        max_epochs=EPOCHS,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        deterministic=True,
        num_sanity_val_steps=0,
    )
    data = digits_data()
    cpu, wall = time.process_time(), time.perf_counter()
    trainer.fit(module, data)
    result = {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall, "hooks": export.seconds}
    result.update(export.parts)
    entry = next(iter(export.entries.values()), {"metrics": {}})
    result["samples"] = entry["metrics"].get("t1c/num_samples", 0)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="fits with and without, alternating")
    rounds = parser.parse_args().rounds
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = prepare_source(tmp / "digits_snn.t1c", epochs=1, log=lambda line: None)
        fit(source, tmp / "warmup", True)
        off, on = [], []
        for i in range(rounds):  # alternate, so a busy moment of the machine hits both sides
            # ... and which side runs first too: the second fit of a pair runs slower (up to 10%
            # measured with an empty Callback), so a fixed order would charge that to one side
            for with_callback in (False, True) if i % 2 == 0 else (True, False):
                (on if with_callback else off).append(fit(source, tmp / f"{with_callback}{i}", with_callback))

    def best(runs: list[dict[str, float]], key: str) -> float:
        return min(r[key] for r in runs)

    print(
        f"T1CExport(), digits demo config ({EPOCHS} epochs, {NUM_STEPS} steps, one thread, best of {rounds})"
    )
    for key in ("cpu", "wall"):
        base, cost = best(off, key), best(on, key)
        # each round's pair ran back to back: the median of the pairs' ratios is robust to the
        # machine's drift across rounds (best-of on each side alone is not)
        paired = statistics.median(b[key] / a[key] - 1 for a, b in zip(off, on))
        print(
            f"  {key:4s} without {base:6.2f} s  with {cost:6.2f} s  overhead {cost / base - 1:+6.1%}"
            f"  (median of the {rounds} rounds' pairs {paired:+6.1%})"
        )
    hooks = best(on, "hooks")
    print(
        f"  cpu inside the callback's hooks {hooks:.2f} s = {hooks / best(off, 'cpu'):+.1%} of the fit without it "
        f"(goal <= +{GOAL:.0%}; {int(on[-1]['samples'])} validation samples measured per export)"
    )
    for name, (_, _, what) in PARTS.items():
        print(f"    {what:52s} {best(on, name):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
