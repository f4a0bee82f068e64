"""Recipe: a hybrid ANN-SNN (conv encoder with BatchNorm and ReLU, spiking core, ANN head) fine-tuned from its file.

1. Build the hybrid model: a Conv2d-BatchNorm2d-ReLU-MaxPool encoder (ANN), a Linear into
   snnTorch ``Leaky`` neurons (the spiking core) and a Linear head whose output, averaged
   over time, gives the class scores. Pretrain it briefly in plain PyTorch on scikit-learn's
   8x8 digits as ``1x8x8`` images (no download); each step sees the image itself (direct).
2. Export it with ``to_ir(..., hybrid=True)``: BatchNorm2d and ReLU become their own nodes
   (BatchNorm keeps its statistics and momentum) and ``source.t1c`` is written.
3. Fine-tune the file with ``T1CModule`` (BatchNorm trains; each ``.t1c`` of ``T1CExport``
   carries the new statistics), measured in float and in 8-bit simulation, with BatchNorm
   kept float after the integer conv and folded into it (docs/quantization.md).

Run::

    python recipes/hybrid_conv.py
    python recipes/hybrid_conv.py --max-epochs 0    # only build the source .t1c
    t1c fit --config configs/hybrid_conv.yaml
"""

from __future__ import annotations

import sys
from collections import OrderedDict
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
from t1c.bridge.quantize import ir_to_quantized
from t1c.lightning import DigitsDataModule, T1CExport, T1CModule


def build_model(hidden: int = 64, channels: int = 8, beta: float = 0.9) -> nn.Sequential:
    """1x8x8 -> conv/BN/ReLU/pool (ANN) -> Linear + LIF (SNN) -> Linear head: 10 scores per step."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, channels, 3, padding=1),
            bn1=nn.BatchNorm2d(channels),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            flat=nn.Flatten(),
            fc1=nn.Linear(channels * 16, hidden),
            lif1=snn.Leaky(beta=beta, init_hidden=True),
            head=nn.Linear(hidden, 10),
        )
    )


def pretrain(model: nn.Module, data: pl.LightningDataModule, epochs: int, num_steps: int) -> None:
    """Plain PyTorch: cross-entropy of the head's output at every step (T1CModule's ``ce_membrane``)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(epochs):
        for x, y in data.train_dataloader():
            reset(model)
            loss = sum(F.cross_entropy(model(x), y) for _ in range(num_steps)) / num_steps
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    reset(model)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, __doc__.splitlines()[0], out="demo_runs/hybrid_conv", hidden=64)
    pl.seed_everything(0, verbose=False)
    data = DigitsDataModule(batch_size=64, seed=0, flatten=False)  # x: [B, 1, 8, 8]
    data.setup("fit")

    # 1-2. The hybrid model, pretrained in plain PyTorch, exported with its ANN nodes.
    hybrid = build_model(args.hidden)
    pretrain(hybrid, data, args.pretrain_epochs, args.num_steps)
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "source.t1c"
    ir.write(source, to_ir(hybrid.eval(), torch.zeros(1, 1, 8, 8), hybrid=True))
    print(f"source graph: {source} ({', '.join(n.TYPE for n in ir.read(source).nodes.values())})")
    if args.max_epochs == 0:
        print(f"fine-tune it with: t1c fit --config configs/hybrid_conv.yaml --model.graph={source}")
        return 0

    # 3. Fine-tune the file with Lightning; a .t1c beside every checkpoint.
    model = T1CModule(source, num_steps=args.num_steps, encoding="direct", loss="ce_membrane", lr=args.lr)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        logger=CSVLogger(args.out),
        callbacks=[
            ModelCheckpoint(save_top_k=-1, save_last=True),
            T1CExport(weight_bits=8),  # verifies the hybrid topology; float vs 8-bit metrics
        ],
        deterministic=True,
        enable_progress_bar=args.progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
    )
    trainer.fit(model, data)

    rows = print_exports(Path(trainer.checkpoint_callback.dirpath) / "t1c_exports.json")
    last = ir.read(rows[-1].t1c)
    folded = ir_to_quantized(last, weight_bits=8, fold_batchnorm=True)
    x, y = data.val_set.tensors
    acc = float((model.predict_with(folded, x) == y).float().mean())
    print(f"8-bit acc of last.t1c with BatchNorm folded into the conv: {acc:.1%}")
    return report_topology(source, rows[-1].t1c)


if __name__ == "__main__":
    sys.exit(main())
