"""Recipe: an snnTorch SNN on digits -> `.t1c` -> fine-tuned from the file with Lightning.

1. Build an snnTorch network 64-128-10 with two ``snn.Leaky`` layers.
2. Pretrain it for a few seconds in plain PyTorch on scikit-learn's bundled digits.
3. Export it with :func:`t1c.bridge.to_ir` to ``<out>/source.t1c``.
4. Fine-tune *the file* with :class:`~t1c.lightning.T1CModule`; :class:`~t1c.lightning.T1CExport`
   writes a `.t1c` beside every checkpoint and measures it in float and at 8 bits.
5. Print the float / quantized accuracy table from the manifest.

Run::

    python recipes/digits_snn.py                    # about a minute on a laptop CPU
    python recipes/digits_snn.py --max-epochs 0     # only build the source .t1c
    t1c fit --config configs/digits.yaml            # the same fine-tuning from YAML
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from t1c import demo, ir


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    demo.add_training_args(parser, out=Path("demo_runs/digits_snn"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    source = demo.prepare_source(
        args.out / "source.t1c",
        hidden=args.hidden,
        epochs=args.pretrain_epochs,
        num_steps=args.num_steps,
        force=True,
    )
    if args.max_epochs == 0:
        print(f"fine-tune it with: t1c fit --config configs/digits.yaml --model.graph={source}")
        return 0
    rows = demo.finetune_from_args(source, args)
    diffs = ir.topology_diff(ir.read(source), ir.read(rows[-1]["t1c"]))
    print("\nlast export vs source:", "topology identical" if not diffs else "; ".join(diffs))
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
