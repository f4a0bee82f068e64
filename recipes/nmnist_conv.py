"""Recipe: a conv SNN on N-MNIST event frames: snnTorch -> `.t1c` -> fine-tuned from the file.

1. Frame N-MNIST's events with tonic (:class:`~t1c.lightning.EventDataModule`: ``[T, 2, 34, 34]``).
2. Pretrain a conv SNN in plain snnTorch for a few epochs and export it to ``<out>/source.t1c``.
3. Fine-tune *the file* with ``T1CModule(encoding="sequence")``, a ``Trainer``, a
   ``ModelCheckpoint`` and ``T1CExport`` (a `.t1c` beside every checkpoint, float and 8-bit).
4. Print the float / 8-bit accuracy of every export.

N-MNIST goes in ``<data>/NMNIST/`` (tonic downloads it there when the machine is online).

Run::

    python recipes/nmnist_conv.py --data data                 # a few minutes per epoch on a CPU
    t1c fit --config configs/nmnist.yaml --model.graph=nmnist_runs/source.t1c   # the same from YAML
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import snntorch as snn
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from t1c import demo, ir
from t1c.bridge import to_ir
from t1c.lightning import EventDataModule, T1CExport, T1CModule


def build_conv_snn(channels: int = 32, beta: float = 0.9) -> nn.Sequential:
    """2x34x34 frames -> conv 5x5, pool, LIF -> conv 5x5, pool, LIF -> 10 LIF (snnTorch tutorial 7)."""
    return nn.Sequential(
        nn.Conv2d(2, channels // 2, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Conv2d(channels // 2, channels, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Flatten(), nn.Linear(channels * 5 * 5, 10), snn.Leaky(beta=beta, init_hidden=True),
    )  # fmt: skip


def pretrain(model: nn.Module, dm: EventDataModule, epochs: int, limit: int | float | None) -> None:
    """Plain snnTorch training: cross-entropy of output spike counts over the frames."""
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for i, (frames, y) in enumerate(dm.train_dataloader()):  # frames [B, T, 2, 34, 34]
            if isinstance(limit, int) and i >= limit:
                break
            loss = nn.functional.cross_entropy(demo.spike_counts(model, frames.transpose(0, 1)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    demo.reset_neurons(model)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    demo.add_training_args(parser, out=Path("nmnist_runs"), max_epochs=2, pretrain_epochs=1, hidden=32)
    parser.add_argument("--data", type=Path, default=Path("data"), help="tonic's save_to folder")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (framing runs there)")
    parser.add_argument(
        "--offline", action="store_true", help="never download: fail if the files are missing"
    )
    parser.set_defaults(num_steps=20)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)
    data = EventDataModule(
        "tonic.datasets.NMNIST", save_to=args.data, n_time_bins=args.num_steps, batch_size=args.batch_size,
        num_workers=args.workers, download=not args.offline, dataset_args={"first_saccade_only": True},
    )  # fmt: skip
    data.setup("fit")

    model = build_conv_snn(args.hidden)
    pretrain(model, data, args.pretrain_epochs, args.limit_train_batches)
    source = args.out / "source.t1c"
    source.parent.mkdir(parents=True, exist_ok=True)
    ir.write(source, to_ir(model, torch.zeros(1, 2, 34, 34)))
    print(f"source graph: {source} (pretrained {args.pretrain_epochs} epochs in snnTorch)")
    if args.max_epochs == 0:
        return 0

    module = T1CModule(source, encoding="sequence", num_steps=args.num_steps, lr=args.lr)
    checkpoints = args.out / "checkpoints"
    demo.clear_exports(checkpoints)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
        default_root_dir=args.out,
        logger=False,
        enable_progress_bar=not args.no_progress and sys.stdout.isatty(),
        callbacks=[
            ModelCheckpoint(dirpath=checkpoints, monitor="val_acc", mode="max", save_top_k=2, save_last=True),
            T1CExport(weight_bits=8, max_quant_gap=0.03),
        ],
    )
    trainer.fit(module, data)

    rows = demo.manifest_rows(checkpoints / "t1c_exports.json")
    print(demo.accuracy_table(rows, weight_bits=8))
    diffs = ir.topology_diff(ir.read(source), ir.read(rows[-1]["t1c"]))
    print("last export vs source:", "topology identical" if not diffs else "; ".join(diffs))
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
