"""Recipe: quantization-aware fine-tuning to 4-bit ``SpikingAffine`` layers.

1. Pretrain the digits SNN (64-128-10) in float, as ``recipes/digits_snn.py`` does.
2. Export it with ``spiking=True, weight_bits=4``: the Linear layers become ``SpikingAffine``
   nodes that tell the hardware to use 4-bit weights.
3. Measure the post-training-quantization accuracy: the float weights rounded to 4 bits.
4. Fine-tune with ``T1CModule(qat=True, qat_weight_bits=4)``: the forward pass uses 4-bit
   fake-quantized weights (straight-through gradients), so training recovers what rounding
   lost. ``T1CExport(weight_bits=4)`` measures each checkpoint in the 4-bit simulation and
   stores the integer weights in the file.

Run::

    python recipes/qat_4bit.py
    python recipes/qat_4bit.py --max-epochs 0   # only build the source .t1c
    t1c fit --config configs/qat_4bit.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from t1c import demo, ir

WEIGHT_BITS = 4


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    demo.add_training_args(parser, out=Path("demo_runs/qat_4bit"), max_epochs=3)
    return parser.parse_args(argv)


def build_source(path: Path, *, hidden: int, epochs: int, num_steps: int, seed: int = demo.SEED) -> ir.Graph:
    """Pretrain the digits SNN in float and export it with 4-bit SpikingAffine hints."""
    model = demo.build_digits_snn(hidden, seed=seed)
    dm = demo.digits_data(seed=seed)
    demo.pretrain(model, dm.train_dataloader(), epochs=epochs, num_steps=num_steps, seed=seed)
    graph = demo.export_model(
        model, path, torch.zeros(1, 64), spiking=True, weight_bits=WEIGHT_BITS, accumulator_bits=16
    )
    kinds = sorted(
        {f"{n.TYPE}({n.weight_bits}-bit)" for n in graph.nodes.values() if isinstance(n, ir.SpikingAffine)}
    )
    print(f"source graph: {path} ({', '.join(kinds)})")
    return graph


@torch.no_grad()
def quantized_accuracy(source: Path, *, num_steps: int, seed: int = demo.SEED) -> tuple[float, float]:
    """Float and post-training 4-bit accuracy of ``source`` on the validation split."""
    from t1c.bridge.quantize import quantize_executor
    from t1c.lightning import T1CModule

    module = T1CModule(str(source), num_steps=num_steps).eval()
    quantized = quantize_executor(module.executor, weight_bits=WEIGHT_BITS)
    right_f = right_q = total = 0
    for x, y in demo.digits_data(seed=seed).val_dataloader():
        right_f += int((module.predict_with(module.executor, x, seed=seed) == y).sum())
        right_q += int((module.predict_with(quantized, x, seed=seed) == y).sum())
        total += len(y)
    return right_f / total, right_q / total


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    source_path = args.out / "source.t1c"
    build_source(source_path, hidden=args.hidden, epochs=args.pretrain_epochs, num_steps=args.num_steps)
    float_acc, ptq_acc = quantized_accuracy(source_path, num_steps=args.num_steps)
    print(f"before QAT: float {float_acc:.3f}, {WEIGHT_BITS}-bit (rounded after training) {ptq_acc:.3f}")
    if args.max_epochs == 0:
        print(f"fine-tune it with: t1c fit --config configs/qat_4bit.yaml --model.graph={source_path}")
        return 0
    rows = demo.finetune_from_args(
        source_path,
        args,
        weight_bits=WEIGHT_BITS,
        module_kwargs={"qat": True, "qat_weight_bits": WEIGHT_BITS},
        export_kwargs={"weight_bits": WEIGHT_BITS},
    )
    last = rows[-1]
    if isinstance(last["quant_acc"], float):
        print(f"\nafter QAT: {WEIGHT_BITS}-bit accuracy {last['quant_acc']:.3f} (was {ptq_acc:.3f} before)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
