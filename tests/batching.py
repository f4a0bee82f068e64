"""What ``run_sequence`` and stepping share on every CPU: a rounding bound and a spike proof.

``GraphExecutor.run_sequence`` runs a stateless layer once over ``T * B`` rows where
stepping runs it ``T`` times over ``B`` rows. A GEMM or convolution kernel (MKL,
OpenBLAS, oneDNN) chooses its blocking, and so the order in which it sums a dot product,
by the matrix sizes and the CPU. Any order gives ``|fl(w.x + b) - (w.x + b)| <=
gamma(n + 1) * (|w|.|x| + |b|)`` with ``gamma(k) = k*u / (1 - k*u)``, ``u`` the unit
roundoff and ``n`` the fan-in (Higham, *Accuracy and Stability of Numerical Algorithms*,
2nd ed., section 3.1), so two batchings of the same layer differ by at most twice that.

:func:`outcomes` steps a graph in float64 (nearly exact) with the float32 modules'
weights and coefficients and propagates that bound through the graph: through each
layer, each sum of branches and each LIF update (whose own few roundings add
``2 * gamma(6)`` times the magnitude of the update's terms), decaying with the membrane.
Where a threshold test is farther from the threshold than the bound, every batching on
every CPU takes the same decision. Where it is not (a membrane a few ulps from its
threshold), no one can say which way a float32 run goes, so both are followed. The
result is the short list of spike trains a float32 run can produce, each with float64
membranes and the bound within which any batching's membranes lie; with one outcome,
the spikes of every batching are provably identical (by induction over time and layers).

Only the modules the fixtures and tests use are covered (Linear, Conv2d, MaxPool2d,
AvgPool2d, Flatten, SkipModule, LIFModule, summed inputs); another raises ``TypeError``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from t1c.bridge import LIFModule, SkipModule
from t1c.bridge.executor import _CALL, _CALL_MULTI, _CALL_SUM, _INPUT, _STATEFUL, _SUM, GraphExecutor

#: (value, bound): a float64 value and the bound on how far two batchings' values differ.
Pair = tuple[torch.Tensor, torch.Tensor]


def gamma(k: int, dtype: torch.dtype) -> float:
    """Higham's ``gamma(k) = k*u / (1 - k*u)`` for ``dtype``'s unit roundoff ``u``."""
    u = torch.finfo(dtype).eps / 2
    return k * u / (1 - k * u)


def _grid(t: torch.Tensor) -> int | None:
    """The least ``s`` with every value of ``t`` a multiple of ``2**-s`` (None above 40)."""
    for s in range(41):
        scaled = t * 2.0**s
        if torch.equal(scaled, scaled.round()):
            return s
    return None


def _exact(value: torch.Tensor, bound: torch.Tensor, w: torch.Tensor, b, mag, dtype) -> bool:
    """Whether every partial sum of the layer is exact in ``dtype``, whatever the order: the
    input is the same in every batching and all terms lie on a grid ``2**-s`` whose
    magnitude stays below ``2**(mantissa bits) * 2**-s`` (e.g. spikes times 1/64ths)."""
    grids = [_grid(value), _grid(w), 0 if b is None else _grid(b)]
    if bool(bound.any()) or None in grids:
        return False
    s = grids[0] + max(grids[1], grids[2])
    return float(mag.max()) * 2.0**s < 2 / torch.finfo(dtype).eps


def _weighted(module: nn.Module, x: Pair, dtype: torch.dtype) -> Pair:
    """A Linear or Conv2d: its value, and its input's bound carried through ``|W|`` plus
    the summation-order bound of its own dot products."""
    value, bound = x
    w, b = module.weight.detach().double(), module.bias
    b = None if b is None else b.detach().double()
    if isinstance(module, nn.Conv2d):
        conv = dict(
            stride=module.stride, padding=module.padding, dilation=module.dilation, groups=module.groups
        )
        fan_in = w[0].numel()
        y = F.conv2d(value, w, b, **conv)
        mag = F.conv2d(value.abs(), w.abs(), None if b is None else b.abs(), **conv)
        carried = F.conv2d(bound, w.abs(), None, **conv)
    else:
        fan_in = w.shape[1]
        y = F.linear(value, w, b)
        mag = F.linear(value.abs(), w.abs(), None if b is None else b.abs())
        carried = F.linear(bound, w.abs())
    if _exact(value, bound, w, b, mag, dtype):
        return y, torch.zeros_like(y)
    return y, carried * (1 + gamma(fan_in + 1, dtype)) + 2 * gamma(fan_in + 1, dtype) * mag


def _summed(pairs: list[Pair], dtype: torch.dtype) -> Pair:
    value = sum(p[0] for p in pairs[1:]) + pairs[0][0]
    mag = sum(p[0].abs() for p in pairs)
    bound = sum(p[1] for p in pairs)  # identical inputs add up identically: no new term
    return value, bound + 2 * gamma(len(pairs), dtype) * mag * (bound > 0)


def _module(module: nn.Module, args: list[Pair], dtype: torch.dtype) -> Pair:
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        return _weighted(module, args[0], dtype)
    if isinstance(module, (nn.MaxPool2d, nn.Flatten)):
        # max(a) - max(a') <= max|a - a'|: the pooled bound bounds the pooled values.
        return module(args[0][0]), module(args[0][1])
    if isinstance(module, nn.AvgPool2d):
        k = module.kernel_size if isinstance(module.kernel_size, int) else max(module.kernel_size)
        value, bound = module(args[0][0]), module(args[0][1])
        return value, bound + 2 * gamma(k * k + 1, dtype) * module(args[0][0].abs()) * (bound > 0)
    if isinstance(module, SkipModule):
        if module.skip_type == "residual":
            return _summed(args, dtype)
        return module(*[a[0] for a in args]), module(*[a[1] for a in args])
    raise TypeError(f"batching_bound: no rounding bound derived for {type(module).__name__}; add it")


class Undecidable(AssertionError):
    """A threshold test that different batchings may decide differently."""

    def __init__(self, key: tuple, x: float, bound: float) -> None:
        self.key = key
        super().__init__(
            f"LIF '{key[0]}' step {key[1]}, neuron {key[3]}: membrane {x:+.3g} from its threshold, "
            f"within the rounding bound {bound:.3g}"
        )


class Outcome(NamedTuple):
    """One spike history a float32 run can produce: float64 values and their bounds."""

    outputs: torch.Tensor  # [T, B, ...]
    output_bound: torch.Tensor
    states: dict[str, torch.Tensor]  # final membranes
    state_bounds: dict[str, torch.Tensor]
    forced: dict[tuple, bool]  # the undecidable tests and the way this outcome took them


class _LIFBound:
    """One LIF node stepped in float64 with the float32 module's own coefficients."""

    def __init__(self, module: LIFModule, dtype: torch.dtype, name: str, forced: dict) -> None:
        decay, gain = module._coefficients()
        self.m, self.name, self.dtype, self.forced = module, name, dtype, forced
        self.a = decay.detach().double()
        self.gain = None if gain is None else gain.detach().double()
        self.thr = module.v_threshold.detach().double()
        self.v_leak, self.r = module.v_leak.detach().double(), module.r.detach().double()

    def fire(self, x: torch.Tensor, bound: torch.Tensor, key: tuple) -> torch.Tensor:
        """``H(x)``; a test within ``bound`` of the threshold follows ``forced`` or raises."""
        s = (x > 0 if self.m.strict_threshold else x >= 0).double()
        close = ((x.abs() <= bound) & (bound > 0)).flatten()
        for index in close.nonzero().flatten().tolist():
            k = (*key, index)
            if k not in self.forced:
                raise Undecidable(k, float(x.flatten()[index]), float(bound.flatten()[index]))
            s.view(-1)[index] = float(self.forced[k])
        return s

    def step(self, i: Pair, v: Pair, prev: torch.Tensor | None, t: int) -> tuple[torch.Tensor, Pair]:
        (i, di), (v, dv) = i, v
        m, a, thr, g6 = self.m, self.a, self.thr, 2 * gamma(6, self.dtype)
        if self.gain is None:
            drive, d_drive, mag = i, di, i.abs()
        else:
            v_leak, r = self.v_leak, self.r
            drive = self.gain * (v_leak + r * i)
            d_drive = self.gain * r.abs() * di
            mag = self.gain.abs() * (v_leak.abs() + (r * i).abs())
        delayed = m.reset_delay or m.snntorch_mode
        mech = m.reset_mechanism
        reset = None
        if delayed:  # with reset_delay the stored v is last step's tested one: same decision
            reset = (
                prev
                if m.reset_delay and prev is not None
                else self.fire(v - thr, dv, (self.name, t, "reset"))
            )
        if delayed and mech == "zero":
            v, dv = (1 - reset) * v, (1 - reset) * dv
        w = a * v + drive
        dw = a * dv + d_drive
        # Correctly rounded element-wise ops on identical values give identical results.
        dw = dw + g6 * ((a * v).abs() + mag + thr.abs()) * (dw > 0)
        if delayed and mech == "subtract":
            w = w - reset * thr
        s = self.fire(w - thr, dw, (self.name, t, "spike"))
        if delayed and not m.reset_delay:  # snnTorch's immediate reset: undo a double reset
            do_reset = s - reset
            if mech == "subtract":
                w = w - do_reset * thr
            elif mech == "zero":
                w, dw = w - do_reset * w, dw * (1 - do_reset).abs()
        elif not delayed and mech == "zero":
            w, dw = (1 - s) * w, (1 - s) * dw
        elif not delayed and mech == "subtract":
            w = w - s * thr
        return s, (w, dw)


@torch.no_grad()
def _run(net: GraphExecutor, xs: torch.Tensor, forced: dict[tuple, bool]) -> Outcome:
    dtype = xs.dtype
    lifs: dict[str, _LIFBound] = {}
    states: dict[str, Pair] = {}
    spikes: dict[str, torch.Tensor] = {}
    outputs, bounds = [], []
    for t in range(xs.shape[0]):
        vals: list = [None] * net._n_slots
        for kind, pos, module, ins, _frees, name, *_ in net._plan:
            args = [vals[i] for i in ins]
            if kind == _INPUT:
                x = xs[t].double()
                vals[pos] = (x, torch.zeros_like(x))
            elif kind == _SUM:
                vals[pos] = _summed(args, dtype)
            elif kind == _STATEFUL:
                if not isinstance(module, LIFModule):
                    raise TypeError(f"batching bound: no rounding bound derived for {type(module).__name__}")
                lif = lifs.setdefault(name, _LIFBound(module, dtype, name, forced))
                i = _summed(args, dtype) if len(args) > 1 else args[0]
                v = states.get(name) or (torch.zeros_like(i[0]), torch.zeros_like(i[0]))
                s, states[name] = lif.step(i, v, spikes.get(name), t)
                spikes[name] = s
                vals[pos] = (s, torch.zeros_like(s))
            elif kind in (_CALL, _CALL_MULTI):
                vals[pos] = _module(module, args, dtype)
            elif kind == _CALL_SUM:
                vals[pos] = _module(module, [_summed(args, dtype)], dtype)
        value, bound = vals[net._out_slots[0]]
        outputs.append(value)
        bounds.append(bound)
    return Outcome(
        torch.stack(outputs),
        torch.stack(bounds),
        {n: v for n, (v, _) in states.items()},
        {n: d for n, (_, d) in states.items()},
        dict(forced),
    )


def outcomes(net: GraphExecutor, xs: torch.Tensor, limit: int = 16) -> list[Outcome]:
    """Every spike history a float32 run of ``net`` on ``xs`` can produce, any batching, any CPU.

    Args:
        net: a non-recurrent executor with one input (outputs: the first output node's).
        xs: its input ``[T, B, ...]``.
        limit: the most outcomes to follow before giving up.

    Raises:
        AssertionError: more than ``limit`` outcomes.
    """
    done, todo = [], [{}]
    while todo:
        forced = todo.pop()
        try:
            done.append(_run(net, xs, forced))
        except Undecidable as err:
            todo += [{**forced, err.key: True}, {**forced, err.key: False}]
        if len(done) + len(todo) > limit:
            raise AssertionError(
                f"more than {limit} possible spike histories: the input is too close to threshold"
            )
    return done


def assert_batching_independent(net: GraphExecutor, xs: torch.Tensor) -> None:
    """Check that every batching of ``net`` on ``xs`` spikes identically (one outcome)."""
    found = outcomes(net, xs)
    assert len(found) == 1, (
        f"spikes depend on rounding: undecidable threshold tests {sorted(found[0].forced)}; "
        "compare with assert_matches_an_outcome instead"
    )


def assert_matches_an_outcome(
    net: GraphExecutor,
    xs: torch.Tensor,
    ys: torch.Tensor | None,
    state: dict[str, torch.Tensor] | None = None,
) -> Outcome:
    """Check that ``ys`` (the first output) and the final membranes ``state`` are what
    some float32 run gives: spikes equal to an outcome's, other outputs and the membranes
    within its bound. Returns that outcome.
    """
    for outcome in outcomes(net, xs):
        if ys is not None and ys.shape != outcome.outputs.shape:
            raise AssertionError(f"output shape {list(ys.shape)}, expected {list(outcome.outputs.shape)}")
        if ys is not None and not bool(((ys.double() - outcome.outputs).abs() <= outcome.output_bound).all()):
            continue
        if state is not None and not all(
            bool(((state[k].double() - outcome.states[k]).abs() <= outcome.state_bounds[k]).all())
            for k in outcome.states
        ):
            continue
        return outcome
    raise AssertionError("the outputs/membranes match none of the spike histories a float32 run can produce")
