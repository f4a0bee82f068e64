"""All-to-all recurrent layers: the imported GraphExecutor against native snnTorch, single thread.

(a) A training step (forward + backward, T=50, B=32) of a 700-256-20 recurrent SNN (the
    Spiking Heidelberg Digits shape): ``nn.Linear -> snn.RLeaky(linear_features=256) ->
    nn.Linear -> snn.Leaky``, snnTorch stepped in a Python loop (``init_hidden=True``) vs
    the executor that ``ir_to_torch(to_ir(model))`` builds from the same weights (the
    recurrent ``nn.Linear`` an ``Affine`` on a back edge, docs/neurons.md), run by
    ``run_sequence`` (the input layer over all ``T * B`` rows at once, the cycle stepped,
    the layers after it over the stacked spikes). Target: ratio <= 1.00 (no slower than
    snnTorch).
(b) The same with ``snn.RSynaptic(linear_features=256)``. Target: ratio <= 1.00.
(c) The executor's own ``run_sequence`` vs stepping it by hand (``executor(x, state)``
    ``T`` times) on (a)'s network, no gradient. Target: ratio <= 1.00.

Run: ``python benchmarks/bench_recurrent.py [--repeats N]``. Each time is the best of N
runs, the contenders alternating, so that load from other processes hits all alike;
ratios are of these best times, measured in the same process.
"""

from __future__ import annotations

import argparse

import snntorch as snn
import torch
from bench_executor import _best_of
from torch import nn

from t1c.bridge import ir_to_torch, to_ir

T, B, SIZES = 50, 32, (700, 256, 20)


def recurrent_net(kind: str) -> nn.Sequential:
    """``Linear -> RLeaky/RSynaptic (all-to-all) -> Linear -> Leaky``, with firing weights."""
    torch.manual_seed(0)
    n_in, n_hidden, n_out = SIZES
    neuron = (
        snn.RLeaky(beta=0.9, linear_features=n_hidden, init_hidden=True)
        if kind == "RLeaky"
        else snn.RSynaptic(alpha=0.8, beta=0.9, linear_features=n_hidden, init_hidden=True)
    )
    model = nn.Sequential(
        nn.Linear(n_in, n_hidden), neuron, nn.Linear(n_hidden, n_out), snn.Leaky(beta=0.9, init_hidden=True)
    )
    with torch.no_grad():
        model[0].weight.mul_(4.0)
    return model


def _run_snntorch(model: nn.Sequential, xs: torch.Tensor) -> torch.Tensor:
    for m in model.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_mem()
    return torch.stack([model(x) for x in xs])


def _train_step(forward, params, target: torch.Tensor):
    """Zero the gradients, forward (spike counts), cross-entropy, backward."""
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        for p in params:
            p.grad = None
        loss_fn(forward().sum(0), target).backward()

    return step


def bench_train(kind: str, repeats: int) -> tuple[float, float, float]:
    """(a)/(b): snnTorch's and the executor's train-step times, and the hidden firing rate."""
    model = recurrent_net(kind)
    xs = (torch.rand(T, B, SIZES[0], generator=torch.Generator().manual_seed(1)) < 0.1).float()
    executor = ir_to_torch(to_ir(model, xs[0])).train()
    with torch.no_grad():  # run_sequence's input layer over T * B rows may round otherwise: a few spikes
        expected, got = _run_snntorch(model, xs), executor.run_sequence(xs)[0]
    differ = int((expected != got).sum())
    if differ > max(2, expected.numel() // 1000):
        raise RuntimeError(f"{kind}: executor and snnTorch disagree on {differ} spikes")
    rate = float(model[1].spk.mean()) if hasattr(model[1], "spk") else float("nan")
    model.train()
    target = torch.randint(0, SIZES[2], (B,))
    theirs = _train_step(lambda: _run_snntorch(model, xs), list(model.parameters()), target)
    ours = _train_step(lambda: executor.run_sequence(xs)[0], list(executor.parameters()), target)
    ref, ex = _best_of([theirs, ours], repeats)
    return ref, ex, rate


def bench_sequence(repeats: int) -> tuple[float, float]:
    """(c): the executor stepped by hand vs its ``run_sequence``, no gradient."""
    model = recurrent_net("RLeaky")
    xs = (torch.rand(T, B, SIZES[0], generator=torch.Generator().manual_seed(2)) < 0.1).float()
    executor = ir_to_torch(to_ir(model, xs[0]))

    def stepped() -> torch.Tensor:
        state, out = None, []
        for x in xs:
            y, state = executor(x, state, return_state=True)
            out.append(y)
        return torch.stack(out)

    with torch.no_grad():
        differ = int((stepped() != executor.run_sequence(xs)[0]).sum())
        if differ > max(2, xs.shape[0] * xs.shape[1] * SIZES[2] // 1000):
            raise RuntimeError(f"(c): run_sequence and stepping disagree on {differ} spikes")
        return tuple(_best_of([stepped, lambda: executor.run_sequence(xs)], repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for label, kind in (("(a) train step RLeaky", "RLeaky"), ("(b) train step RSynaptic", "RSynaptic")):
        ref, ex, rate = bench_train(kind, args.repeats)
        rows.append((f"{label} {'-'.join(map(str, SIZES))}, T={T}, B={B}", ref, ex, f"rate {rate:.2f}"))
    step, seq = bench_sequence(args.repeats)
    print(f"1 thread, best of {args.repeats} alternating runs")
    print(f"{'benchmark':<52}{'snnTorch':>12}{'executor':>12}{'ratio':>8}{'target':>9}")
    for label, ref, ex, note in rows:
        print(f"{label:<52}{ref * 1e3:>10.2f}ms{ex * 1e3:>10.2f}ms{ex / ref:>8.2f}{'<=1.00':>9}   ({note})")
    print(
        f"{'(c) run_sequence vs stepping, RLeaky net, no grad':<52}{step * 1e3:>10.2f}ms{seq * 1e3:>10.2f}ms"
        f"{seq / step:>8.2f}{'<=1.00':>9}   (columns: stepped, run_sequence)"
    )


if __name__ == "__main__":
    main()
