"""GraphExecutor against native snnTorch, single thread, side by side.

(a) A training step (forward + backward, T=25, B=64) of a 784-256-10 SNN with two
    ``snn.Leaky``: ``GraphExecutor.run_sequence`` vs the snnTorch model stepped in a
    Python loop. Target: ratio <= 0.40. Also printed: the floor, the same step's two
    Linear layers alone over all ``T * B`` rows (the GEMMs any implementation does).
(b) Stepping a tiny 64-64-10 SNN (B=32, no grad): executor step vs snnTorch step.
    Target: ratio <= 0.75.
(c) A training step of a conv SNN (Conv2d 2->12 k5, MaxPool 2, Leaky, Conv2d 12->32 k5,
    MaxPool 2, Leaky, Linear 800->10, Leaky) on 2x34x34 input, T=25, B=16:
    ``run_sequence`` vs snnTorch, and against its floor (the conv/pool/linear layers alone
    over ``T * B`` samples). Target: executor <= 1.05 x floor.
(d) Peak memory of one training step, T=500, 700 inputs, B=64 (``bench_events.py``'s
    subprocess measurement: T1CModule vs the snnTorch loop). Target: T1CModule <= snnTorch.

The MLP's graph is built by hand from the snnTorch model's weights with the snn.Leaky ->
LIF mapping of docs/architecture.md (import side only); the conv SNN's by ``to_ir``.

Run: ``python benchmarks/bench_executor.py [--repeats N] [--no-memory]``. Each time is the
best of N runs, the contenders alternating, so that load from other processes hits all
alike; ratios are of these best times, measured in the same process.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from torch import nn

from t1c import ir
from t1c.bridge import ir_to_torch, to_ir


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


def _best_of(fns: list, repeats: int) -> list[float]:
    """Best time of each function, in seconds, timed alternately.

    The machine may be shared: alternating the contenders and keeping each one's fastest
    run exposes all to the same load and discards the runs that other processes slowed.
    """
    for fn in fns:  # warm up
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [min(ts) for ts in times]


def _check_spikes(expected: torch.Tensor, actual: torch.Tensor, what: str) -> None:
    """The contenders compute the same network: at most a few spikes may differ (a
    membrane within float rounding of its threshold, docs/lif_extensions.md)."""
    differ = int((expected != actual).sum())
    if differ > max(2, expected.numel() // 10_000):
        raise RuntimeError(
            f"{what}: executor and snnTorch disagree on {differ} spikes; the benchmark would be meaningless"
        )


def _train_step(model_fn, params, target, loss_fn):
    """A training step: zero the gradients, forward (spike counts), loss, backward."""

    def step() -> None:
        for p in params:
            p.grad = None
        loss_fn(model_fn().sum(0), target).backward()

    return step


def bench_training(repeats: int) -> tuple[float, float, float]:
    """(a): snnTorch, executor and floor times of the MLP training step."""
    torch.manual_seed(0)
    T, B = 25, 64
    net = SnnTorchNet((784, 256, 10))
    ex = ir_to_torch(to_graph(net))
    xs = (torch.rand(T, B, 784) < 0.2).float()
    target = torch.randint(0, 10, (B,))
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():  # the two models compute the same spikes
        _check_spikes(net(xs), ex.run_sequence(xs)[0], "(a)")
    fc1, fc2 = nn.Linear(784, 256), nn.Linear(256, 10)
    flat = xs.reshape(T * B, 784)
    steps = [
        _train_step(lambda: net(xs), list(net.parameters()), target, loss_fn),
        _train_step(lambda: ex.run_sequence(xs)[0], list(ex.parameters()), target, loss_fn),
        _train_step(
            lambda: fc2(fc1(flat)).reshape(T, B, 10), [*fc1.parameters(), *fc2.parameters()], target, loss_fn
        ),
    ]
    ref, mine, floor = _best_of(steps, repeats)
    return ref, mine, floor


def conv_snn() -> nn.Sequential:
    """Issue 12's conv SNN, snnTorch style (``init_hidden=True``), for 2x34x34 input."""
    return nn.Sequential(
        nn.Conv2d(2, 12, 5),
        nn.MaxPool2d(2),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Conv2d(12, 32, 5),
        nn.MaxPool2d(2),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Flatten(),
        nn.Linear(32 * 5 * 5, 10),
        snn.Leaky(beta=0.9, init_hidden=True),
    )


def bench_conv(repeats: int) -> tuple[float, float, float]:
    """(c): snnTorch, executor and floor times of the conv SNN training step."""
    from t1c.demo import reset_neurons

    torch.manual_seed(0)
    T, B = 25, 16
    model = conv_snn()
    xs = (torch.rand(T, B, 2, 34, 34) < 0.1).float()
    ex = ir_to_torch(to_ir(model, xs[0]))
    target = torch.randint(0, 10, (B,))
    loss_fn = nn.CrossEntropyLoss()

    def native() -> torch.Tensor:
        reset_neurons(model)
        return torch.stack([model(x) for x in xs])

    with torch.no_grad():
        _check_spikes(native(), ex.run_sequence(xs)[0], "(c)")
    layers = nn.Sequential(*copy_layers(model))
    flat = xs.reshape(T * B, 2, 34, 34)
    steps = [
        _train_step(native, list(model.parameters()), target, loss_fn),
        _train_step(lambda: ex.run_sequence(xs)[0], list(ex.parameters()), target, loss_fn),
        _train_step(lambda: layers(flat).reshape(T, B, 10), list(layers.parameters()), target, loss_fn),
    ]
    ref, mine, floor = _best_of(steps, repeats)
    return ref, mine, floor


def copy_layers(model: nn.Sequential) -> list[nn.Module]:
    """The conv SNN's layers without its neurons (fresh copies): the floor of its step."""
    return [copy.deepcopy(m) for m in model if not isinstance(m, snn.Leaky)]


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

    ref, mine = _best_of([snntorch_run, executor_run], repeats)
    return ref / steps, mine / steps


def bench_memory() -> dict[str, dict[str, float]]:
    """(d): ``bench_events.py``'s peak-RSS measurement, each contender in its own process."""
    script = Path(__file__).with_name("bench_events.py")
    out = {}
    for kind in ("snntorch", "t1c"):
        cmd = [
            sys.executable,
            str(script),
            "--child",
            kind,
            "--steps",
            "500",
            "--batch",
            "64",
            "--threads",
            "1",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[kind] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-memory", action="store_true", help="skip (d), the peak-memory subprocesses")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ref_a, ex_a, floor_a = bench_training(args.repeats)
    ref_b, ex_b = bench_stepping(args.repeats)
    ref_c, ex_c, floor_c = bench_conv(args.repeats)
    print(f"1 thread, best of {args.repeats} alternating runs")
    print(f"{'benchmark':<44}{'snnTorch':>12}{'executor':>12}{'floor':>12}{'ratio':>8}{'target':>10}")
    print(
        f"{'(a) train step 784-256-10, T=25, B=64':<44}{ref_a * 1e3:>10.2f}ms{ex_a * 1e3:>10.2f}ms"
        f"{floor_a * 1e3:>10.2f}ms{ex_a / ref_a:>8.2f}{'<=0.40':>10}"
        f"   (floor/snnTorch {floor_a / ref_a:.2f}, executor/floor {ex_a / floor_a:.2f})"
    )
    print(
        f"{'(b) step 64-64-10, B=32, no grad':<44}{ref_b * 1e6:>10.1f}us{ex_b * 1e6:>10.1f}us"
        f"{'':>12}{ex_b / ref_b:>8.2f}{'<=0.75':>10}"
    )
    print(
        f"{'(c) train step conv SNN 2x34x34, T=25, B=16':<44}{ref_c * 1e3:>10.2f}ms{ex_c * 1e3:>10.2f}ms"
        f"{floor_c * 1e3:>10.2f}ms{ex_c / floor_c:>8.2f}{'<=1.05 fl':>10}"
        f"   (executor/snnTorch {ex_c / ref_c:.2f}, floor/snnTorch {floor_c / ref_c:.2f})"
    )
    if not args.no_memory:
        mem = bench_memory()
        grow = {k: m["peak_mib"] - m["before_mib"] for k, m in mem.items()}
        print(
            f"(d) train step 700-256-20, T=500, B=64, peak RSS growth: snnTorch {grow['snntorch']:.0f} MiB, "
            f"T1CModule {grow['t1c']:.0f} MiB ({grow['t1c'] / grow['snntorch']:.2f}, target <= 1.00)"
        )


if __name__ == "__main__":
    main()
