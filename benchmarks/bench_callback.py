"""What ``T1CExport()`` adds to a fit (issue 12 goal: at most +15%).

The digits demo configuration: a ``T1CModule`` (64-128-10 SNN, 25 steps), a ModelCheckpoint
every epoch (top-k -1 and last), 3 epochs, the 360 validation samples measured in float and
in quantized simulation at every export. Fits with and without the callback alternate in one
process, one thread, and the best of ``ROUNDS`` of each is compared, so a slower moment of a
shared machine does not count against one side. Run: ``python benchmarks/bench_callback.py``.
"""

from __future__ import annotations

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
ROUNDS = 3
GOAL = 0.15


def fit(source: Path, root: Path, with_callback: bool) -> tuple[float, int]:
    """Seconds of one fit, and the number of validation samples the callback measured on."""
    torch.manual_seed(0)
    module = T1CModule(str(source), num_steps=NUM_STEPS)
    callbacks = [ModelCheckpoint(dirpath=root / "ck", save_top_k=-1, save_last=True)]
    export = T1CExport()
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
    start = time.perf_counter()
    trainer.fit(module, data)
    seconds = time.perf_counter() - start
    samples = 0
    if with_callback:
        entry = next(iter(export.entries.values()))
        samples = int(entry["metrics"].get("t1c/num_samples", 0))
    return seconds, samples


def main() -> int:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = prepare_source(tmp / "digits_snn.t1c", epochs=1, log=lambda line: None)
        fit(source, tmp / "warmup", True)
        without, with_cb, samples = [], [], 0
        for i in range(ROUNDS):
            without.append(fit(source, tmp / f"off{i}", False)[0])
            seconds, samples = fit(source, tmp / f"on{i}", True)
            with_cb.append(seconds)
    base, cost = min(without), min(with_cb)
    overhead = cost / base - 1
    print(
        f"T1CExport overhead, digits demo config ({EPOCHS} epochs, {NUM_STEPS} steps, one thread, best of {ROUNDS})"
    )
    print(f"  without callback {base:6.2f} s   all: {' '.join(f'{t:.2f}' for t in without)}")
    print(f"  with callback    {cost:6.2f} s   all: {' '.join(f'{t:.2f}' for t in with_cb)}")
    print(
        f"  overhead         {overhead:+6.1%}   (goal <= +{GOAL:.0%}; {samples} validation samples measured per export)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
