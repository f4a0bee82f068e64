"""Recipe: a conv SNN on N-MNIST event frames, exported to `.t1c` and fine-tuned from the file.

1. ``EventDataModule`` frames N-MNIST with tonic: ``[B, T, 2, 34, 34]`` batches, cached on disk.
2. Pretrain a conv snnTorch network on the frames; export it with ``to_ir`` to ``source.t1c``.
3. Fine-tune the file with ``T1CModule(encoding="sequence")`` and a ``Trainer``:
   ``ModelCheckpoint`` keeps every epoch, ``T1CExport`` writes a `.t1c` beside each
   checkpoint, measured in float and in the 8-bit quantized simulation.

N-MNIST goes in ``<data>/NMNIST/`` (tonic downloads it there when the machine is online).
A template: copy it and change the model, the dataset or the callbacks. Run::

    python recipes/nmnist_conv.py --data data     # --max-epochs 0: only build the source .t1c
    t1c fit --config configs/nmnist.yaml --model.graph=nmnist_runs/source.t1c
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import snntorch as snn
import torch
import torch.nn.functional as F
from _common import parse_args, print_exports, report_topology
from digits_snn import reset
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from t1c import ir
from t1c.bridge import to_ir
from t1c.lightning import EventDataModule, T1CExport, T1CModule


def build_conv_snn(channels: int = 32, beta: float = 0.9) -> nn.Sequential:
    """2x34x34 frames -> conv 5x5, pool, LIF -> conv 5x5, pool, LIF -> 10 LIF (snnTorch tutorial 7)."""
    return nn.Sequential(
        nn.Conv2d(2, channels // 2, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Conv2d(channels // 2, channels, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Flatten(), nn.Linear(channels * 5 * 5, 10), snn.Leaky(beta=beta, init_hidden=True),
    )  # fmt: skip


def pretrain(model: nn.Module, data: EventDataModule, epochs: int, limit: int | float | None) -> None:
    """Plain snnTorch: cross-entropy of the output spike counts over the frames ``[B, T, ...]``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for i, (frames, y) in enumerate(data.train_dataloader()):
            if isinstance(limit, int) and i >= limit:
                break
            reset(model)
            counts = sum(model(frames[:, t]) for t in range(frames.shape[1]))
            loss = F.cross_entropy(counts, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    reset(model)


def event_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=Path("data"), help="tonic's save_to folder")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (framing runs there)")
    parser.add_argument("--offline", action="store_true", help="never download; fail if files are missing")
    parser.set_defaults(num_steps=20)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(
        argv, __doc__.splitlines()[0], out="nmnist_runs", max_epochs=2, pretrain_epochs=1, hidden=32,
        add_arguments=event_flags,
    )  # fmt: skip
    pl.seed_everything(0, verbose=False)
    data = EventDataModule(
        "tonic.datasets.NMNIST", save_to=args.data, n_time_bins=args.num_steps, batch_size=args.batch_size,
        num_workers=args.workers, download=not args.offline, dataset_args={"first_saccade_only": True},
    )  # fmt: skip

    snn_model = build_conv_snn(args.hidden)
    pretrain(snn_model, data, args.pretrain_epochs, args.limit_train_batches)
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "source.t1c"
    ir.write(source, to_ir(snn_model.eval(), torch.zeros(1, 2, 34, 34)))
    print(f"source graph: {source}")
    if args.max_epochs == 0:
        print(f"fine-tune it with: t1c fit --config configs/nmnist.yaml --model.graph={source}")
        return 0

    model = T1CModule(source, encoding="sequence", num_steps=args.num_steps, lr=args.lr)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        logger=CSVLogger(args.out),  # each run in its own version_N folder
        callbacks=[
            ModelCheckpoint(save_top_k=-1, save_last=True),  # every epoch, plus last.ckpt
            T1CExport(weight_bits=8, max_quant_gap=0.03),  # .t1c per checkpoint; float vs 8-bit
        ],
        enable_progress_bar=args.progress,
        enable_model_summary=False,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
    )
    trainer.fit(model, data)

    rows = print_exports(Path(trainer.checkpoint_callback.dirpath) / "t1c_exports.json")
    return report_topology(source, rows[-1].t1c)


if __name__ == "__main__":
    sys.exit(main())
