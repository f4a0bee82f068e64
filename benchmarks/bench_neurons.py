"""The current-based and recurrent neurons imported through ``bridge.ir_to_torch`` against
native snnTorch, single thread, side by side (issue 23).

For each of ``snn.Synaptic`` and the one-to-one ``snn.RLeaky`` (``all_to_all=False``, a
per-neuron ``V``), in a 700-256-20 network (Linear -> neuron -> Linear -> neuron, SHD's
input size), T=50, B=32:

(a) a training step (forward + backward of the spike-count cross-entropy): the imported
    ``GraphExecutor.run_sequence`` vs the snnTorch model stepped in a Python loop, on the
    same weights. Target: ratio <= 1.00 (no slower than snnTorch).
(b) ``run_sequence`` vs stepping the executor one ``forward`` per step, with and without a
    gradient. Target: ratio <= 1.00 (as fast as stepping or faster).

Run: ``python benchmarks/bench_neurons.py [--repeats N]``. Each time is the best of N runs,
the contenders alternating, so that load from other processes hits all alike; ratios are
of these best times, measured in the same process.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from collections.abc import Callable

import snntorch as snn
import torch
from bench_executor import _best_of, _check_spikes, _train_step
from torch import nn

from t1c.bridge import ir_to_torch, to_ir
from t1c.demo import reset_neurons

SIZES, T, B = (700, 256, 20), 50, 32

#: The snnTorch neurons benchmarked, ``init_hidden`` style.
NEURONS: dict[str, Callable[[], nn.Module]] = {
    "Synaptic": lambda: snn.Synaptic(alpha=0.9, beta=0.85, init_hidden=True),
    "RLeaky one-to-one": lambda: snn.RLeaky(beta=0.9, all_to_all=False, V=0.3, init_hidden=True),
}


def network(kind: str) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(SIZES[0], SIZES[1]),
            n1=NEURONS[kind](),
            fc2=nn.Linear(SIZES[1], SIZES[2]),
            n2=NEURONS[kind](),
        )
    )


def native_run(model: nn.Sequential, xs: torch.Tensor) -> torch.Tensor:
    """snnTorch's own loop: hidden state reset, one call per step."""
    for module in model.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()
    return torch.stack([model(x) for x in xs])


def stepped(executor: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    state, out = None, []
    for x in xs:
        y, state = executor(x, state, return_state=True)
        out.append(y)
    return torch.stack(out)


def bench(kind: str, repeats: int) -> dict[str, float]:
    """Best times (seconds) of the training step (native, executor) and of the executor's
    ``run_sequence`` and stepping, with and without a gradient."""
    model = network(kind)
    xs = (torch.rand(T, B, SIZES[0], generator=torch.Generator().manual_seed(1)) < 0.1).float()
    executor = ir_to_torch(to_ir(model, xs[0])).train()
    reset_neurons(model)
    with torch.no_grad():  # the two compute the same spikes
        _check_spikes(native_run(model, xs), executor.run_sequence(xs)[0], kind)
    target = torch.randint(0, SIZES[2], (B,), generator=torch.Generator().manual_seed(2))
    loss_fn = nn.CrossEntropyLoss()
    params = list(executor.parameters())
    native, mine = _best_of(
        [
            _train_step(lambda: native_run(model, xs), list(model.parameters()), target, loss_fn),
            _train_step(lambda: executor.run_sequence(xs)[0], params, target, loss_fn),
        ],
        repeats,
    )
    seq_grad, step_grad = _best_of(
        [
            _train_step(lambda: executor.run_sequence(xs)[0], params, target, loss_fn),
            _train_step(lambda: stepped(executor, xs), params, target, loss_fn),
        ],
        repeats,
    )
    with torch.no_grad():
        seq, step = _best_of([lambda: executor.run_sequence(xs), lambda: stepped(executor, xs)], repeats)
    times = {"native": native, "executor": mine, "seq_grad": seq_grad, "step_grad": step_grad}
    return {**times, "seq": seq, "step": step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    shape = f"{'-'.join(map(str, SIZES))}, T={T}, B={B}"
    print(f"1 thread, best of {args.repeats} alternating runs; {shape}")
    results = {kind: bench(kind, args.repeats) for kind in NEURONS}
    print(f"{'(a) train step':<34}{'snnTorch':>12}{'executor':>12}{'ratio':>8}{'target':>10}")
    for kind, r in results.items():
        print(
            f"{'    ' + kind:<34}{r['native'] * 1e3:>10.2f}ms{r['executor'] * 1e3:>10.2f}ms"
            f"{r['executor'] / r['native']:>8.2f}{'<=1.00':>10}"
        )
    print(f"{'(b) executor':<34}{'stepping':>12}{'run_seq':>12}{'ratio':>8}{'target':>10}")
    for kind, r in results.items():
        for label, seq, step in (("grad", r["seq_grad"], r["step_grad"]), ("no grad", r["seq"], r["step"])):
            print(
                f"{'    ' + kind + ', ' + label:<34}{step * 1e3:>10.2f}ms{seq * 1e3:>10.2f}ms"
                f"{seq / step:>8.2f}{'<=1.00':>10}"
            )


if __name__ == "__main__":
    main()
