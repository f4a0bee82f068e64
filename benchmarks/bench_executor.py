"""GraphExecutor against native snnTorch, single thread, side by side.

(a) A training step (forward + backward, T=25, B=64) of a 784-256-10 SNN with two
    ``snn.Leaky``: ``GraphExecutor.run_sequence`` vs the snnTorch model stepped in a
    Python loop. Target: ratio <= 0.6.
(b) Stepping a tiny 64-64-10 SNN (B=32, no grad): executor step vs snnTorch step.
    Target: ratio <= 0.75.

The executor's graph is built by hand from the snnTorch model's weights with the
snn.Leaky -> LIF mapping of docs/architecture.md, so this depends on the import side only.

Run: ``python benchmarks/bench_executor.py [--repeats N]``. Each time is the best of N
runs, the two contenders alternating, so that load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import snntorch as snn
import torch
from torch import nn

from t1c import ir
from t1c.bridge import ir_to_torch


class SnnTorchNet(nn.Module):
    """Linear -> Leaky -> Linear -> Leaky, stepped by hand as snnTorch's tutorials do."""

    def __init__(self, sizes: tuple[int, int, int], beta: float = 0.9) -> None:
        super().__init__()
        self.fc1 = nn.Linear(sizes[0], sizes[1])
        self.lif1 = snn.Leaky(beta=beta)
        self.fc2 = nn.Linear(sizes[1], sizes[2])
        self.lif2 = snn.Leaky(beta=beta)

    def step(self, x, mem1, mem2):
        spk1, mem1 = self.lif1(self.fc1(x), mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
        return spk2, mem1, mem2

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        out = []
        for t in range(xs.shape[0]):
            spk2, mem1, mem2 = self.step(xs[t], mem1, mem2)
            out.append(spk2)
        return torch.stack(out)


def _lif_node(leaky: snn.Leaky, n: int) -> ir.LIF:
    beta = np.full(n, float(leaky.beta), dtype=np.float32)
    tau = (1 / (1 - beta.astype(np.float64))).astype(np.float32)
    return ir.LIF(
        tau=tau,
        r=tau.copy(),
        v_leak=np.zeros(n, np.float32),
        v_threshold=np.full(n, float(leaky.threshold), np.float32),
        beta=beta,
        reset_mechanism=leaky.reset_mechanism,
        reset_delay=leaky.reset_delay,
        strict_threshold=True,
    )


def to_graph(net: SnnTorchNet) -> ir.Graph:
    """The snnTorch model as a T1C-IR graph (weights copied, Leaky mapped to LIF)."""

    def affine(fc: nn.Linear) -> ir.Affine:
        return ir.Affine(weight=fc.weight.detach().numpy(), bias=fc.bias.detach().numpy())

    return ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([net.fc1.in_features])}),
        affine(net.fc1),
        _lif_node(net.lif1, net.fc1.out_features),
        affine(net.fc2),
        _lif_node(net.lif2, net.fc2.out_features),
        ir.Output(),
        names=["input", "fc1", "lif1", "fc2", "lif2", "output"],
    )


def _compare(ref_fn, new_fn, repeats: int) -> tuple[float, float]:
    """Best time of each function, in seconds, timed alternately.

    The machine may be shared: alternating the two and keeping each one's fastest run
    exposes both to the same load and discards the runs that other processes slowed.
    """
    ref_fn(), new_fn()  # warm up
    ref_times, new_times = [], []
    for _ in range(repeats):
        for fn, times in ((ref_fn, ref_times), (new_fn, new_times)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return min(ref_times), min(new_times)


def bench_training(repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    T, B = 25, 64
    net = SnnTorchNet((784, 256, 10))
    ex = ir_to_torch(to_graph(net))
    xs = (torch.rand(T, B, 784) < 0.2).float()
    target = torch.randint(0, 10, (B,))
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():  # the two models compute the same spikes
        ys, _ = ex.run_sequence(xs)
        if not torch.equal(ys, net(xs)):
            raise RuntimeError("executor and snnTorch disagree; the benchmark would be meaningless")

    def snntorch_step():
        net.zero_grad(set_to_none=True)
        loss_fn(net(xs).sum(0), target).backward()

    def executor_step():
        ex.zero_grad(set_to_none=True)
        ys, _ = ex.run_sequence(xs)
        loss_fn(ys.sum(0), target).backward()

    return _compare(snntorch_step, executor_step, repeats)


def bench_stepping(repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    B, steps = 32, 200
    net = SnnTorchNet((64, 64, 10))
    ex = ir_to_torch(to_graph(net))
    xs = torch.rand(steps, B, 64)

    @torch.no_grad()
    def snntorch_run():
        mem1, mem2 = net.lif1.reset_mem(), net.lif2.reset_mem()
        for t in range(steps):
            _, mem1, mem2 = net.step(xs[t], mem1, mem2)

    @torch.no_grad()
    def executor_run():
        state = None
        for t in range(steps):
            _, state = ex(xs[t], state, return_state=True)

    ref, mine = _compare(snntorch_run, executor_run, repeats)
    return ref / steps, mine / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ref_a, ex_a = bench_training(args.repeats)
    ref_b, ex_b = bench_stepping(args.repeats)
    print(f"{'benchmark':<44}{'snnTorch':>12}{'executor':>12}{'ratio':>8}{'target':>8}")
    print(
        f"{'(a) train step 784-256-10, T=25, B=64':<44}{ref_a * 1e3:>10.2f}ms{ex_a * 1e3:>10.2f}ms"
        f"{ex_a / ref_a:>8.2f}{'<=0.60':>8}"
    )
    print(
        f"{'(b) step 64-64-10, B=32, no grad':<44}{ref_b * 1e6:>10.1f}us{ex_b * 1e6:>10.1f}us"
        f"{ex_b / ref_b:>8.2f}{'<=0.75':>8}"
    )


if __name__ == "__main__":
    main()
