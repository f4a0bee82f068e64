"""Recipe: a residual snnTorch block, exported through fx tracing and trained with its topology kept.

The model's ``forward`` adds a branch to its input (``h + branch(h)``). :func:`t1c.bridge.to_ir`
traces it with ``torch.fx`` and writes the sum as a ``Skip(residual)`` node with two incoming
edges. The graph is fine-tuned from the file with Lightning; every exported checkpoint keeps
the source topology (``T1CExport`` verifies it, and this script checks the last one again).

Run::

    python recipes/resnet_block.py
    python recipes/resnet_block.py --max-epochs 0   # only build the source .t1c
    t1c fit --config configs/resnet_block.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import snntorch as snn
import torch
from torch import nn

from t1c import demo, ir


class ResidualSNN(nn.Module):
    """64 pixels -> LIF stem -> residual block (two Linear layers around a LIF) -> 10 LIF.

    Args:
        hidden: width of the stem and of the residual block.
        beta: membrane decay of every neuron.
    """

    def __init__(self, hidden: int = 64, beta: float = demo.BETA) -> None:
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    demo.add_training_args(
        parser, out=Path("demo_runs/resnet_block"), max_epochs=3, pretrain_epochs=10, hidden=64
    )
    return parser.parse_args(argv)


def build_source(path: Path, *, hidden: int, epochs: int, num_steps: int, seed: int = demo.SEED) -> ir.Graph:
    """Pretrain :class:`ResidualSNN` briefly and export it to ``path``."""
    torch.manual_seed(seed)
    model = ResidualSNN(hidden)
    dm = demo.digits_data(seed=seed)
    demo.pretrain(model, dm.train_dataloader(), epochs=epochs, num_steps=num_steps, seed=seed)
    acc = demo.accuracy(model, dm.val_dataloader(), num_steps=num_steps, seed=seed)
    graph = demo.export_model(model, path, torch.zeros(1, 64))
    skips = {n: node.skip_type for n, node in graph.nodes.items() if isinstance(node, ir.Skip)}
    print(
        f"source graph: {path} (pretrained {epochs} epochs, validation accuracy {acc:.3f}; skip nodes {skips})"
    )
    return graph


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    source_path = args.out / "source.t1c"
    source = build_source(
        source_path, hidden=args.hidden, epochs=args.pretrain_epochs, num_steps=args.num_steps
    )
    if args.max_epochs == 0:
        print(f"fine-tune it with: t1c fit --config configs/resnet_block.yaml --model.graph={source_path}")
        return 0
    rows = demo.finetune_from_args(source_path, args)
    diffs = ir.topology_diff(source, ir.read(rows[-1]["t1c"]))
    print(
        f"\n{rows[-1]['t1c']} vs source:", "topology identical" if not diffs else "\n  " + "\n  ".join(diffs)
    )
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
