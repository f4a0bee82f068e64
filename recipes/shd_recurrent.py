"""Recipe: a recurrent snnTorch SNN on the Spiking Heidelberg Digits, exported to T1C-IR and trained from its `.t1c`.

1. ``EventDataModule`` frames SHD with tonic: 700 cochlea channels in ``--num-steps`` time
   bins, ``[B, T, 1, 700]`` batches (flattened into the graph's ``[700]`` input).
2. Build snnTorch's ``nn.Linear(700, H)``, ``snn.RLeaky(linear_features=H)`` (all-to-all
   feedback), ``nn.Linear(H, 20)``, ``snn.Leaky`` and export it with :func:`t1c.bridge.to_ir`:
   the RLeaky becomes a ``CubaLIF`` with its recurrent ``Linear`` as an ``Affine``
   (``rlif.recurrent``) on a back edge carrying last step's spikes, spike for spike
   (docs/neurons.md, "Recurrent wiring"). Write it to ``source.t1c``.
3. Train the file with ``T1CModule(encoding="sequence")`` (backpropagation through time) and a
   ``Trainer``: ``ModelCheckpoint`` keeps every epoch, ``T1CExport`` writes a recurrent `.t1c`
   beside each checkpoint, measured in float and in the 8-bit quantized simulation.

Published baseline: a recurrent SNN reaches about 83% test accuracy on SHD (Cramer et al. 2020,
"The Heidelberg Spiking Data Sets for the Systematic Evaluation of Spiking Neural Networks",
IEEE TNNLS). These defaults are a short run from a random start (5 epochs, 100 bins, no
augmentation or tuning): expect less. It has been run only on synthetic files in SHD's format
(the tests), not on SHD itself. SHD goes in ``<data>/SHD/`` (tonic downloads it when online)::

    python recipes/shd_recurrent.py --data data     # --max-epochs 0: only build the source .t1c
    t1c fit --config configs/shd_recurrent.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import snntorch as snn
import torch
from _common import parse_args, print_exports, report_topology
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from nmnist_conv import event_flags
from torch import nn

from t1c import ir
from t1c.bridge import to_ir
from t1c.lightning import EventDataModule, T1CExport, T1CModule

CHANNELS, CLASSES = 700, 20


def recurrent_snn(hidden: int = 256, beta: float = 0.95) -> nn.Sequential:
    """700 -> ``hidden`` RLeaky (all-to-all feedback) -> 20 Leaky; the children's names become node names."""
    return nn.Sequential(
        OrderedDict(
            fc=nn.Linear(CHANNELS, hidden),
            rlif=snn.RLeaky(beta=beta, linear_features=hidden, init_hidden=True),
            readout=nn.Linear(hidden, CLASSES),
            out=snn.Leaky(beta=beta, init_hidden=True),
        )
    )


def shd_flags(parser: argparse.ArgumentParser) -> None:
    event_flags(parser)  # --data, --batch-size, --workers, --offline
    parser.set_defaults(num_steps=100)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(
        argv, __doc__.splitlines()[0], out="shd_runs/recurrent", max_epochs=5, pretrain_epochs=None, hidden=256,
        add_arguments=shd_flags,
    )  # fmt: skip
    pl.seed_everything(0, verbose=False)
    data = EventDataModule(
        "tonic.datasets.SHD", save_to=args.data, n_time_bins=args.num_steps, batch_size=args.batch_size,
        num_workers=args.workers, download=not args.offline,
    )  # fmt: skip

    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "source.t1c"
    graph = to_ir(recurrent_snn(args.hidden), torch.zeros(1, CHANNELS))  # one step of a batch
    ir.write(source, graph)  # written with the cycle (root attribute t1c_recurrent)
    print(f"source graph: {source}")
    if args.max_epochs == 0:
        print(f"train it with: t1c fit --config configs/shd_recurrent.yaml --model.graph={source}")
        return 0

    model = T1CModule(source, encoding="sequence", num_steps=args.num_steps, lr=args.lr)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        logger=CSVLogger(args.out),  # each run in its own version_N folder
        callbacks=[
            ModelCheckpoint(save_top_k=-1, save_last=True),  # every epoch, plus last.ckpt
            T1CExport(weight_bits=8, max_quant_gap=0.03),  # recurrent .t1c per checkpoint; float vs 8-bit
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
