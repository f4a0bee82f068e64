"""How long to_ir takes on a 200-module convolutional SNN (target: < 0.5 s).

50 blocks of [Conv2d, BatchNorm2d, Leaky, Dropout] on 8x8 inputs: one hooked forward
pass, BatchNorm folding, 100 nodes converted and a validated graph. nn.Sequential is a
chain by construction, so no torch.fx tracing happens; the same blocks with residual
sums in a custom forward are traced with torch.fx. Run: ``python benchmarks/bench_export.py``.
"""

from __future__ import annotations

import statistics
import sys
import time

import snntorch as snn
import torch
from torch import nn

from t1c.bridge.exporter import to_ir

BLOCKS = 50
TARGET_S = 0.5


def build() -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(BLOCKS):
        layers += [
            nn.Conv2d(8, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            snn.Leaky(beta=0.9, init_hidden=True),
            nn.Dropout(0.1),
        ]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """The same blocks with a residual sum around each: traced with torch.fx."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = build()

    def forward(self, x):
        for i in range(0, len(self.blocks), 4):
            x = x + self.blocks[i + 3](self.blocks[i + 2](self.blocks[i + 1](self.blocks[i](x))))
        return x


def timed(model: nn.Module, sample: torch.Tensor, label: str) -> float:
    to_ir(model, sample)  # warm-up (first-call imports and allocator)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        graph = to_ir(model, sample)
        times.append(time.perf_counter() - start)
    best, median = min(times), statistics.median(times)
    print(
        f"to_ir of a 200-module conv SNN, {label} ({len(graph.nodes)} nodes): "
        f"median {median * 1000:.1f} ms, best {best * 1000:.1f} ms (target < {TARGET_S * 1000:.0f} ms)"
    )
    return median


def main() -> int:
    # The tensors are tiny; on a loaded shared machine intra-op threads only contend.
    torch.set_num_threads(1)
    sample = torch.rand(1, 8, 8, 8)
    chain = timed(build(), sample, "nn.Sequential")
    traced = timed(Residual(), sample, "residual, fx-traced")
    return 0 if max(chain, traced) < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
