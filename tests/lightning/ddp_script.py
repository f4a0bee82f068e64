"""Run by tests/lightning/test_ddp.py: a 2-process CPU DDP fit with T1CExport.

Usage: python ddp_script.py OUT_DIR FIXTURE.t1c. Each rank writes ``rank<N>.json`` with the
callback's entries so the test can check that every rank holds the same state.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from t1c.lightning import DigitsDataModule, T1CExport, T1CModule


def main(out: Path, fixture: Path) -> None:
    torch.manual_seed(0)
    export = T1CExport()
    trainer = pl.Trainer(
        default_root_dir=out,
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=2,
        limit_train_batches=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            ModelCheckpoint(dirpath=out / "ck", save_top_k=1, monitor="val_acc", mode="max", save_last=True),
            export,
        ],
    )
    trainer.fit(T1CModule(fixture, num_steps=4), DigitsDataModule(batch_size=64))
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(export.state_dict(), sort_keys=True))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
