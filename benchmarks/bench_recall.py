"""Recall after a silent delay: a task that needs recurrence, trained through the imported GraphExecutor.

The task: ``classes`` groups of ``channels`` input channels. For the first ``pulse`` steps
each channel of the sample's class fires with probability 0.5; then ``delay`` silent steps
(every input zero); the class is read out over the last ``readout`` steps
(``T = pulse + delay + readout``). The logits are the mean, over those steps, of an
``Affine`` readout of the hidden spikes.

The models, built as T1C-IR graphs and imported with :func:`t1c.bridge.ir_to_torch`:

* feedforward: ``input -> fc -> hidden (LIF) -> readout -> output``;
* recurrent: the same ``hidden`` neurons with all-to-all feedback, an ``Affine`` ``rec``
  before them in node order and the back edge ``hidden -> rec`` (docs/neurons.md,
  "Recurrent wiring"); ``rec`` starts as ``identity * diagonal`` plus small noise (the
  identity start of Le et al. 2015's IRNN: each neuron can hold its own spiking from the
  start; ``--identity 0`` starts from noise alone, and then reaches only about 50% in 300
  steps here).

The LIF neurons are snnTorch's ``Leaky`` (``v = beta*v + input``, subtract reset) with
``beta = 0.5``, not trained: a membrane keeps ``0.5**delay`` of its charge over the delay
(3e-5 for 15 steps), so the feedforward network has nothing left to read out and stays at
chance (``1/classes``); the recurrent one can keep the class in persistent spiking. Both
train with Adam on fresh batches for the same number of steps (backpropagation through time
through the back edge) and are scored on held-out samples.

Run: ``python benchmarks/bench_recall.py [--steps 100] [--seeds 0 1 2] [--hidden 32]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from t1c import ir
from t1c.bridge import GraphExecutor, ir_to_torch


@dataclasses.dataclass(frozen=True)
class RecallTask:
    """The sizes of the task (time in steps) and the neurons' decay."""

    classes: int = 4
    channels: int = 4  # input channels per class
    pulse: int = 3
    delay: int = 15
    readout: int = 3
    beta: float = 0.5

    @property
    def steps(self) -> int:
        return self.pulse + self.delay + self.readout

    @property
    def inputs(self) -> int:
        return self.classes * self.channels


def recall_batch(
    task: RecallTask, batch: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[T, batch, inputs]`` (a pulse on the class's channels, then silence) and labels ``[batch]``."""
    y = torch.randint(0, task.classes, (batch,), generator=generator)
    x = torch.zeros(task.steps, batch, task.classes, task.channels)
    pulse = (torch.rand(task.pulse, batch, task.channels, generator=generator) < 0.5).float()
    x[: task.pulse, torch.arange(batch), y] = pulse
    return x.flatten(2), y


def _leaky(n: int, beta: float) -> ir.LIF:
    tau = np.full(n, 1 / (1 - beta), np.float32)
    return ir.LIF(
        tau=tau, r=tau, v_leak=np.zeros(n, np.float32), v_threshold=np.ones(n, np.float32),
        beta=np.full(n, beta, np.float32), reset_mechanism="subtract", reset_delay=True,
    )  # fmt: skip


def _affine(out_features: int, in_features: int, gain: float, rng: np.random.Generator) -> ir.Affine:
    weight = rng.normal(0, gain / np.sqrt(in_features), (out_features, in_features)).astype(np.float32)
    return ir.Affine(weight=weight, bias=np.zeros(out_features, np.float32))


def recall_graph(
    task: RecallTask, *, recurrent: bool, hidden: int = 32, seed: int = 0, identity: float = 1.5
) -> ir.Graph:
    """The feedforward graph, or the recurrent one (the same nodes plus ``rec`` on a back edge)."""
    rng = np.random.default_rng(seed)
    nodes = {"input": ir.Input(input_type={"input": np.array([task.inputs])})}
    nodes["fc"] = _affine(hidden, task.inputs, 3.0, rng)
    edges = [("input", "fc"), ("fc", "hidden")]
    if recurrent:
        rec = _affine(hidden, hidden, 0.3, rng)
        rec.weight += np.float32(identity) * np.eye(hidden, dtype=np.float32)
        nodes["rec"] = rec  # before "hidden": the edge hidden -> rec is the back edge
        edges += [("rec", "hidden"), ("hidden", "rec")]
    nodes["hidden"] = _leaky(hidden, task.beta)
    nodes["readout"] = _affine(task.classes, hidden, 1.0, rng)
    nodes["output"] = ir.Output()
    edges += [("hidden", "readout"), ("readout", "output")]
    return ir.Graph(nodes, edges, allow_cycles=recurrent)


def logits(executor: GraphExecutor, task: RecallTask, x: torch.Tensor) -> torch.Tensor:
    """The readout's mean over the last ``task.readout`` steps: ``[batch, classes]``."""
    ys, _ = executor.run_sequence(x)
    return ys[-task.readout :].mean(0)


def train(
    graph: ir.Graph, task: RecallTask, *, steps: int, batch: int = 64, lr: float = 1e-2, seed: int = 0
) -> GraphExecutor:
    """Import ``graph`` and train it with Adam for ``steps`` fresh batches (cross-entropy of the logits)."""
    torch.manual_seed(seed)
    executor = ir_to_torch(graph).train()
    optimizer = torch.optim.Adam(executor.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = recall_batch(task, batch, generator)
        loss = F.cross_entropy(logits(executor, task, x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return executor.eval()


def accuracy(executor: GraphExecutor, task: RecallTask, samples: int = 512, seed: int = 1234) -> float:
    """Accuracy on ``samples`` held-out samples (their own generator seed)."""
    x, y = recall_batch(task, samples, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return float((logits(executor, task, x).argmax(1) == y).float().mean())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps (batches) per model")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=32, help="hidden LIF neurons (both models)")
    parser.add_argument("--delay", type=int, default=15, help="silent steps between pulse and readout")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--identity", type=float, default=1.5, help="rec's starting diagonal (0: noise only)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest here)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    task = RecallTask(delay=args.delay)
    print(
        f"recall after {task.delay} silent steps: {task.classes} classes (chance {1 / task.classes:.0%}), "
        f"T={task.steps}, {args.hidden} hidden LIF (beta={task.beta}), {args.steps} steps of batch {args.batch}"
    )
    print(f"{'model':<12} {'seed':>4} {'accuracy':>9} {'train s':>8}")
    for seed in args.seeds:
        for recurrent in (False, True):
            graph = recall_graph(
                task, recurrent=recurrent, hidden=args.hidden, seed=seed, identity=args.identity
            )
            start = time.perf_counter()
            executor = train(graph, task, steps=args.steps, batch=args.batch, lr=args.lr, seed=seed)
            seconds = time.perf_counter() - start
            name = "recurrent" if recurrent else "feedforward"
            print(f"{name:<12} {seed:>4} {accuracy(executor, task):>9.1%} {seconds:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
