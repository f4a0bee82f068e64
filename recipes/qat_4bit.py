"""Recipe: quantization-aware fine-tuning to 4-bit ``SpikingAffine`` layers.

1. Pretrain the digits SNN of ``recipes/digits_snn.py`` (64-128-10) in float.
2. Export it with ``spiking=True, weight_bits=4``: its Linear layers become ``SpikingAffine``
   nodes that tell the hardware to use 4-bit weights.
3. Measure post-training quantization: the float weights rounded to 4 bits, in the
   quantized simulation.
4. Fine-tune with ``T1CModule(qat=True, qat_weight_bits=4)``: the forward pass uses 4-bit
   fake-quantized weights (straight-through gradients), so training recovers what rounding
   lost. ``T1CExport(weight_bits=4)`` measures every checkpoint in the 4-bit simulation and
   stores the integer weights in its `.t1c`.

This is a template: copy it and change the model, the widths or the callbacks. Run::

    python recipes/qat_4bit.py
    python recipes/qat_4bit.py --max-epochs 0   # only build the source .t1c
    t1c fit --config configs/qat_4bit.yaml
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from _common import parse_args, print_exports
from digits_snn import build_model, pretrain
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from t1c import ir
from t1c.bridge import to_ir
from t1c.bridge.quantize import quantize_executor
from t1c.lightning import DigitsDataModule, T1CExport, T1CModule

WEIGHT_BITS = 4


@torch.no_grad()
def quantized_accuracy(source: Path, data: pl.LightningDataModule, num_steps: int) -> float:
    """Validation accuracy of ``source`` in the WEIGHT_BITS quantized simulation (as T1CExport measures)."""
    module = T1CModule(source, num_steps=num_steps).eval()
    quantized = quantize_executor(module.executor, weight_bits=WEIGHT_BITS)
    hits = [module.predict_with(quantized, x) == y for x, y in data.val_dataloader()]
    return float(torch.cat(hits).float().mean())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, __doc__.splitlines()[0], out="demo_runs/qat_4bit", max_epochs=3)
    pl.seed_everything(0, verbose=False)
    data = DigitsDataModule(batch_size=64, seed=0)
    data.setup("fit")

    # 1-2. Pretrain in float, export with 4-bit SpikingAffine hints.
    snn_model = build_model(args.hidden)
    pretrain(snn_model, data, args.pretrain_epochs, args.num_steps)
    graph = to_ir(
        snn_model.eval(), torch.zeros(1, 64), spiking=True, weight_bits=WEIGHT_BITS, accumulator_bits=16
    )
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "source.t1c"
    ir.write(source, graph)
    kinds = sorted(
        {f"{n.TYPE}({n.weight_bits}-bit)" for n in graph.nodes.values() if n.TYPE == "SpikingAffine"}
    )
    print(f"source graph: {source} ({', '.join(kinds)})")

    # 3. Post-training quantization: what rounding the float weights costs.
    before = quantized_accuracy(source, data, args.num_steps)
    print(f"before QAT: {WEIGHT_BITS}-bit accuracy {before:.3f} (float weights rounded after training)")
    if args.max_epochs == 0:
        print(f"fine-tune it with: t1c fit --config configs/qat_4bit.yaml --model.graph={source}")
        return 0

    # 4. Quantization-aware fine-tuning; each checkpoint's .t1c carries its 4-bit integers.
    model = T1CModule(source, num_steps=args.num_steps, lr=args.lr, qat=True, qat_weight_bits=WEIGHT_BITS)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        logger=CSVLogger(args.out),
        callbacks=[
            ModelCheckpoint(save_top_k=-1, save_last=True),
            T1CExport(weight_bits=WEIGHT_BITS),  # metrics in the 4-bit simulation, integer weights stored
        ],
        deterministic=True,
        enable_progress_bar=args.progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
    )
    trainer.fit(model, data)

    rows = print_exports(Path(trainer.checkpoint_callback.dirpath) / "t1c_exports.json", WEIGHT_BITS)
    after = rows[-1].metrics.get("t1c/quant_acc")
    if isinstance(after, float):
        print(f"\nafter QAT: {WEIGHT_BITS}-bit accuracy {after:.3f} (was {before:.3f} before)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
