"""Recipe: a recurrent SNN on the Spiking Heidelberg Digits, built as a T1C-IR graph and trained from its `.t1c`.

1. ``EventDataModule`` frames SHD with tonic: 700 cochlea channels in ``--num-steps`` time
   bins, ``[B, T, 1, 700]`` batches (flattened into the graph's ``[700]`` input).
2. Build 700 -> ``--hidden`` LIF with all-to-all feedback -> 20 LIF as a recurrent graph
   (the same spikes as snnTorch's ``nn.Linear(700, H)``, ``snn.RLeaky(all_to_all=True,
   linear_features=H)``, ``nn.Linear(H, 20)``, ``snn.Leaky``): the feedback ``Affine`` ``rec``
   comes before the neurons in node order, and the back edge ``hidden -> rec`` carries last
   step's spikes (docs/neurons.md, "Recurrent wiring"). Write it to ``source.t1c``.
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
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
from _common import parse_args, print_exports, report_topology
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from nmnist_conv import event_flags

from t1c import ir
from t1c.lightning import EventDataModule, T1CExport, T1CModule

CHANNELS, CLASSES = 700, 20


def leaky(n: int, beta: float) -> ir.LIF:
    """``n`` neurons of snnTorch's ``Leaky``/``RLeaky``: ``v = beta*v + inputs``, subtract reset, one step late."""
    tau = np.full(n, 1 / (1 - beta), np.float32)
    return ir.LIF(
        tau=tau, r=tau, v_leak=np.zeros(n, np.float32), v_threshold=np.ones(n, np.float32),
        beta=np.full(n, beta, np.float32), reset_mechanism="subtract", reset_delay=True,
    )  # fmt: skip


def linear(out_features: int, in_features: int, rng: np.random.Generator) -> ir.Affine:
    """An ``Affine`` initialised as ``torch.nn.Linear``: uniform in +-1/sqrt(in_features)."""
    bound = 1 / np.sqrt(in_features)
    weight = rng.uniform(-bound, bound, (out_features, in_features)).astype(np.float32)
    return ir.Affine(weight=weight, bias=rng.uniform(-bound, bound, out_features).astype(np.float32))


def recurrent_snn(hidden: int = 256, beta: float = 0.95, seed: int = 0) -> ir.Graph:
    """700 -> ``hidden`` recurrent LIF (all-to-all feedback ``rec``) -> 20 LIF, as a recurrent graph."""
    rng = np.random.default_rng(seed)
    nodes = {
        "input": ir.Input(input_type={"input": np.array([CHANNELS])}),
        "fc": linear(hidden, CHANNELS, rng),
        "rec": linear(hidden, hidden, rng),  # before "hidden": its input is last step's spikes
        "hidden": leaky(hidden, beta),  # sums fc (this step) + rec (feedback), fc's edge first
        "readout": linear(CLASSES, hidden, rng),
        "out": leaky(CLASSES, beta),
        "output": ir.Output(),
    }
    edges = [("input", "fc"), ("fc", "hidden"), ("rec", "hidden"), ("hidden", "rec")]
    edges += [("hidden", "readout"), ("readout", "out"), ("out", "output")]
    return ir.Graph(nodes, edges, allow_cycles=True)


def shd_flags(parser: argparse.ArgumentParser) -> None:
    event_flags(parser)  # --data, --batch-size, --workers, --offline
    parser.set_defaults(num_steps=100)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(
        argv, __doc__.splitlines()[0], out="shd_runs/recurrent", max_epochs=5, pretrain_epochs=0, hidden=256,
        add_arguments=shd_flags,
    )  # fmt: skip
    pl.seed_everything(0, verbose=False)
    data = EventDataModule(
        "tonic.datasets.SHD", save_to=args.data, n_time_bins=args.num_steps, batch_size=args.batch_size,
        num_workers=args.workers, download=not args.offline,
    )  # fmt: skip

    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "source.t1c"
    ir.write(source, recurrent_snn(args.hidden))  # written with the cycle (root attribute t1c_recurrent)
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
