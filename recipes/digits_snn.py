"""Recipe: an snnTorch digits SNN, exported to `.t1c` and fine-tuned from the file with Lightning.

1. Build a 64-128-10 snnTorch network (two ``snn.Leaky`` layers) and pretrain it in plain
   PyTorch on scikit-learn's bundled 8x8 digits (no download).
2. Export it with :func:`t1c.bridge.to_ir` and write ``source.t1c``.
3. Fine-tune the file with ``T1CModule`` and a Lightning ``Trainer``: ``ModelCheckpoint``
   keeps every epoch, and ``T1CExport`` writes a `.t1c` beside each checkpoint, measured in
   float and in the 8-bit quantized simulation.

This is a template: copy it and change the model, the data module or the callbacks. Run::

    python recipes/digits_snn.py
    python recipes/digits_snn.py --max-epochs 0     # only build the source .t1c
    t1c fit --config configs/digits.yaml --model.graph=demo_runs/digits_snn/source.t1c
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
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from t1c import ir
from t1c.bridge import to_ir
from t1c.lightning import DigitsDataModule, T1CExport, T1CModule
from t1c.lightning.encoding import encode


def build_model(hidden: int = 128, beta: float = 0.9) -> nn.Sequential:
    """64 pixels -> ``hidden`` LIF -> 10 LIF; the children's names become the graph's node names."""
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(64, hidden),
            lif1=snn.Leaky(beta=beta, init_hidden=True),
            fc2=nn.Linear(hidden, 10),
            lif2=snn.Leaky(beta=beta, init_hidden=True),
        )
    )


def reset(model: nn.Module) -> None:
    """Put every neuron of ``model`` back at rest (zero membrane)."""
    for module in model.modules():
        if isinstance(module, snn.Leaky):
            module.reset_mem()


def pretrain(model: nn.Module, data: pl.LightningDataModule, epochs: int, num_steps: int) -> None:
    """Plain PyTorch: cross-entropy of the output spike counts, on rate-encoded pixels."""
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(epochs):
        for x, y in data.train_dataloader():
            reset(model)
            counts = sum(model(step) for step in encode(x, num_steps, "rate"))  # as T1CModule encodes
            loss = F.cross_entropy(counts, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    reset(model)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, __doc__.splitlines()[0], out="demo_runs/digits_snn")
    pl.seed_everything(0, verbose=False)
    data = DigitsDataModule(batch_size=64, seed=0)
    data.setup("fit")

    # 1-2. snnTorch model, pretrained in plain PyTorch, exported to a .t1c file.
    snn_model = build_model(args.hidden)
    pretrain(snn_model, data, args.pretrain_epochs, args.num_steps)
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "source.t1c"
    ir.write(source, to_ir(snn_model.eval(), torch.zeros(1, 64)))
    print(f"source graph: {source}")
    if args.max_epochs == 0:
        print(f"fine-tune it with: t1c fit --config configs/digits.yaml --model.graph={source}")
        return 0

    # 3. Fine-tune the file with Lightning; a .t1c beside every checkpoint.
    model = T1CModule(source, num_steps=args.num_steps, lr=args.lr)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        logger=CSVLogger(args.out),  # each run in its own version_N folder
        callbacks=[
            ModelCheckpoint(save_top_k=-1, save_last=True),  # every epoch, plus last.ckpt
            T1CExport(weight_bits=8),  # .t1c per checkpoint; float vs 8-bit metrics
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
    return report_topology(source, rows[-1].t1c)


if __name__ == "__main__":
    sys.exit(main())
