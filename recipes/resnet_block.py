"""Recipe: a residual snnTorch block, exported through fx tracing and trained with its topology kept.

The model's ``forward`` adds a branch to its input (``h + branch(h)``). :func:`t1c.bridge.to_ir`
traces it with ``torch.fx`` and writes the sum as a ``Skip(residual)`` node with two incoming
edges. The graph is fine-tuned from the file with Lightning; ``ModelCheckpoint`` keeps the two
best epochs and ``T1CExport`` writes their `.t1c` files, each verified to keep the source
topology (this script checks ``last.t1c`` again).

This is a template: copy it and change the model or the callbacks. Run::

    python recipes/resnet_block.py
    python recipes/resnet_block.py --max-epochs 0   # only build the source .t1c
    t1c fit --config configs/resnet_block.yaml
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import snntorch as snn
import torch
from _common import parse_args, print_exports, report_topology
from digits_snn import pretrain
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from t1c import ir
from t1c.bridge import to_ir
from t1c.lightning import DigitsDataModule, T1CExport, T1CModule


class ResidualSNN(nn.Module):
    """64 pixels -> LIF stem -> residual block (two Linear layers around a LIF) -> 10 LIF."""

    def __init__(self, hidden: int = 64, beta: float = 0.9) -> None:
        super().__init__()
        self.stem = nn.Linear(64, hidden)
        self.lif_stem = snn.Leaky(beta=beta, init_hidden=True)
        self.fc1 = nn.Linear(hidden, hidden)
        self.lif1 = snn.Leaky(beta=beta, init_hidden=True)
        self.fc2 = nn.Linear(hidden, hidden)
        self.lif2 = snn.Leaky(beta=beta, init_hidden=True)
        self.head = nn.Linear(hidden, 10)
        self.lif_out = snn.Leaky(beta=beta, init_hidden=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lif_stem(self.stem(x))
        branch = self.fc2(self.lif1(self.fc1(h)))
        h = self.lif2(h + branch)  # the residual connection -> Skip(residual)
        return self.lif_out(self.head(h))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, __doc__.splitlines()[0], out="demo_runs/resnet_block", max_epochs=3, hidden=64)
    pl.seed_everything(0, verbose=False)
    data = DigitsDataModule(batch_size=64, seed=0)
    data.setup("fit")

    snn_model = ResidualSNN(args.hidden)
    pretrain(snn_model, data, args.pretrain_epochs, args.num_steps)
    graph = to_ir(snn_model.eval(), torch.zeros(1, 64))  # fx tracing finds the residual sum
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "source.t1c"
    ir.write(source, graph)
    skips = {name: node.skip_type for name, node in graph.nodes.items() if isinstance(node, ir.Skip)}
    print(f"source graph: {source} (skip nodes {skips})")
    if args.max_epochs == 0:
        print(f"fine-tune it with: t1c fit --config configs/resnet_block.yaml --model.graph={source}")
        return 0

    model = T1CModule(source, num_steps=args.num_steps, lr=args.lr)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        logger=CSVLogger(args.out),
        callbacks=[
            ModelCheckpoint(monitor="val_acc", mode="max", save_top_k=2, save_last=True),
            T1CExport(weight_bits=8, verify="raise"),  # stop if an export changes the topology
        ],
        deterministic=True,
        enable_progress_bar=args.progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
    )
    trainer.fit(model, data)

    folder = Path(trainer.checkpoint_callback.dirpath)
    print_exports(folder / "t1c_exports.json")
    return report_topology(source, folder / "last.t1c")


if __name__ == "__main__":
    sys.exit(main())
