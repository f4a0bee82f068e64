"""Numpy references of snnTorch 1.0's neurons and of NIR's ``CubaLIF``: test oracles.

Each function below is transcribed from the ``forward`` of one snnTorch neuron
(``snntorch/_neurons/{synaptic,rleaky,rsynaptic,alpha,lapicque}.py`` and the firing and
reset helpers of ``neurons.py``), operation for operation, in float32, with nothing from
snnTorch, torch or t1c. Element-wise float32 operations round the same way in numpy and
torch (IEEE 754, correctly rounded), so the spikes of a reference equal snnTorch's bit
for bit wherever the operations are element-wise. Two things are not element-wise:

* the recurrent ``nn.Linear`` / ``nn.Conv2d`` of ``RLeaky``/``RSynaptic`` (all-to-all):
  a BLAS sums a dot product in an order of its own. The references sum it exactly (float64)
  and round once; the result equals torch's whenever every partial sum is exact, e.g.
  weights and biases on a dyadic grid (multiples of ``2**-k``) fed binary spikes, which is
  what the tests use. Off that grid the two differ by the summation-order bound.
* the ``log`` in ``Alpha``'s ``tau`` and in ``Lapicque``'s capacitance: torch's float32
  ``log`` is not correctly rounded (1 ulp). The references take the ``log`` to use as an
  argument (default: the correctly rounded float32 log).

What every neuron here shares (``neurons.py``): the spike is ``H(mem - threshold)`` with
``H(x) = x > 0`` (the ATan surrogate's forward), and the reset is decided from the
membrane *stored before the update* (``mem_reset``), i.e. one step late. The states start
at zero. A configuration snnTorch itself cannot run raises :class:`Refused` naming it.

NIR's ``CubaLIF`` (:func:`nir_cuba_lif`) is simulated from the equations in its docstring
(``nir/ir/neuron.py``), forward Euler at ``dt``, in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

F32 = np.float32
RESET_MECHANISMS = ("subtract", "zero", "none")
Feedback = Callable[[np.ndarray], np.ndarray]


class Refused(ValueError):
    """A configuration that snnTorch 1.0 itself fails on, so there is nothing to reproduce."""


def correctly_rounded_log(x: np.ndarray) -> np.ndarray:
    """``log`` of float32 values, rounded once to float32 (numpy's float32 log is not)."""
    return np.log(np.asarray(x, dtype=np.float64)).astype(F32)


def _f32(value) -> np.ndarray:
    return np.asarray(value, dtype=F32)


def _heaviside(x: np.ndarray) -> np.ndarray:
    """snnTorch's spike: ``(x > 0).float()``."""
    return (x > 0).astype(F32)


def _check_mechanism(reset_mechanism: str) -> None:
    if reset_mechanism not in RESET_MECHANISMS:
        raise Refused(f"reset_mechanism={reset_mechanism!r}: snnTorch accepts {RESET_MECHANISMS}")


# -- the recurrent connections of RLeaky / RSynaptic ------------------------------------------
def linear_feedback(weight, bias) -> Feedback:
    """``nn.Linear(n, n)`` (with its bias: ``rec(0) == bias``), summed exactly, rounded once."""
    w, b = np.asarray(weight, np.float64), np.asarray(bias, np.float64)

    def rec(spk: np.ndarray) -> np.ndarray:
        return (spk.astype(np.float64) @ w.T + b).astype(F32)

    return rec


def conv2d_feedback(weight, bias) -> Feedback:
    """``nn.Conv2d(c, c, k, padding=k // 2)``, as RLeaky builds it, summed exactly.

    An even kernel size makes the output larger than the input, and snnTorch fails when it
    adds the two; so does this reference (:class:`Refused`).
    """
    w, b = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
    kh, kw = w.shape[2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise Refused(
            f"kernel_size={(kh, kw)}: padding kernel_size // 2 makes the recurrent output larger "
            "than the layer, and snnTorch's RLeaky/RSynaptic fail on the sum"
        )

    def rec(spk: np.ndarray) -> np.ndarray:
        h, wd = spk.shape[2:]
        padded = np.pad(spk.astype(np.float64), ((0, 0), (0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
        out = np.zeros((spk.shape[0], w.shape[0], h, wd))
        for i in range(kh):
            for j in range(kw):
                out += np.einsum("bchw,oc->bohw", padded[:, :, i : i + h, j : j + wd], w[:, :, i, j])
        return (out + b[None, :, None, None]).astype(F32)

    return rec


def one_to_one_feedback(v) -> Feedback:
    """``all_to_all=False``: ``spk * V``, ``V`` a scalar or one weight per neuron."""
    v = _f32(v)
    return lambda spk: spk * v


# -- snnTorch's reset, shared by Synaptic, RLeaky, RSynaptic and Lapicque ------------------------
def _delayed_reset(base: np.ndarray, reset: np.ndarray, threshold: np.ndarray, mechanism: str) -> np.ndarray:
    """The state function's reset of the *new* membrane by last step's decision.

    "zero" wipes the whole new membrane (``base - reset * base``), current input included;
    Leaky's zero reset (not reproduced here) zeroes the old membrane before the update.
    """
    if mechanism == "subtract":
        return base - reset * threshold
    if mechanism == "zero":
        return base - reset * base
    return base


def _fire(mem: np.ndarray, reset: np.ndarray, threshold: np.ndarray, mechanism: str, reset_delay: bool):
    """Spike from the new membrane; ``reset_delay=False`` resets at once, avoiding a double reset."""
    spk = _heaviside(mem - threshold)
    if not reset_delay:
        do_reset = spk / F32(1.0) - reset  # spk / graded_spikes_factor - reset
        if mechanism == "subtract":
            mem = mem - do_reset * threshold
        elif mechanism == "zero":
            mem = mem - do_reset * mem
    return spk, mem


def _stack(**series: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.stack(values) for name, values in series.items()}


# -- the neurons ---------------------------------------------------------------------------------
def synaptic(
    xs: np.ndarray,
    *,
    alpha,
    beta,
    threshold=1.0,
    reset_mechanism: str = "subtract",
    reset_delay: bool = True,
) -> dict[str, np.ndarray]:
    """``snn.Synaptic``: ``syn = clamp(alpha)*syn + x``, ``mem = clamp(beta)*mem + syn``.

    Args:
        xs: input currents ``[T, B, ...]``.
        alpha, beta, threshold: scalars or per-neuron arrays (broadcast as in torch).
        reset_mechanism, reset_delay: as snnTorch's arguments.

    Returns:
        ``{"spk", "syn", "mem"}``, each ``[T, B, ...]`` float32 (the values returned at each step).
    """
    _check_mechanism(reset_mechanism)
    a, b, thr = np.clip(_f32(alpha), 0, 1), np.clip(_f32(beta), 0, 1), _f32(threshold)
    syn = np.zeros_like(xs[0], dtype=F32)
    mem = np.zeros_like(syn)
    out: dict[str, list[np.ndarray]] = {"spk": [], "syn": [], "mem": []}
    for x in xs.astype(F32):
        reset = _heaviside(mem - thr)
        syn = a * syn + x
        # "zero": syn -= 0 * reset leaves the current as it is; only the membrane is wiped.
        mem = _delayed_reset(b * mem + syn, reset, thr, reset_mechanism)
        spk, mem = _fire(mem, reset, thr, reset_mechanism, reset_delay)
        for name, value in (("spk", spk), ("syn", syn), ("mem", mem)):
            out[name].append(value)
    return _stack(**out)


def rleaky(
    xs: np.ndarray,
    *,
    beta,
    feedback: Feedback,
    threshold=1.0,
    reset_mechanism: str = "subtract",
    reset_delay: bool = True,
) -> dict[str, np.ndarray]:
    """``snn.RLeaky``: ``mem = (clamp(beta)*mem + x) + rec(spk_prev)``, added in that order.

    ``feedback`` is :func:`linear_feedback`, :func:`conv2d_feedback` or
    :func:`one_to_one_feedback`; it sees last step's spikes (zero at the first step, so an
    ``nn.Linear``'s bias already enters at step 0).

    Returns:
        ``{"spk", "mem"}``, each ``[T, B, ...]`` float32.
    """
    _check_mechanism(reset_mechanism)
    b, thr = np.clip(_f32(beta), 0, 1), _f32(threshold)
    mem = np.zeros_like(xs[0], dtype=F32)
    spk = np.zeros_like(mem)
    out: dict[str, list[np.ndarray]] = {"spk": [], "mem": []}
    for x in xs.astype(F32):
        reset = _heaviside(mem - thr)
        mem = _delayed_reset(b * mem + x + feedback(spk), reset, thr, reset_mechanism)
        spk, mem = _fire(mem, reset, thr, reset_mechanism, reset_delay)
        out["spk"].append(spk)
        out["mem"].append(mem)
    return _stack(**out)


def rsynaptic(
    xs: np.ndarray,
    *,
    alpha,
    beta,
    feedback: Feedback,
    threshold=1.0,
    reset_mechanism: str = "subtract",
    reset_delay: bool = True,
) -> dict[str, np.ndarray]:
    """``snn.RSynaptic``: ``syn = (clamp(alpha)*syn + x) + rec(spk_prev)``, ``mem = clamp(beta)*mem + syn``.

    Raises:
        Refused: ``reset_delay=False``. snnTorch's forward then reads the ``spk``/``mem``
            *arguments* (rsynaptic.py, ``do_reset = spk / ...``): ``None`` when
            ``init_hidden=True`` or no state is passed (TypeError), the empty tensors of
            ``reset_mem()`` (shape error), and with full-size states it resets a local
            variable and returns the delayed-reset result.

    Returns:
        ``{"spk", "syn", "mem"}``, each ``[T, B, ...]`` float32.
    """
    _check_mechanism(reset_mechanism)
    if not reset_delay:
        raise Refused("RSynaptic(reset_delay=False): snnTorch's forward fails or ignores it")
    a, b, thr = np.clip(_f32(alpha), 0, 1), np.clip(_f32(beta), 0, 1), _f32(threshold)
    syn = np.zeros_like(xs[0], dtype=F32)
    mem = np.zeros_like(syn)
    spk = np.zeros_like(syn)
    out: dict[str, list[np.ndarray]] = {"spk": [], "syn": [], "mem": []}
    for x in xs.astype(F32):
        reset = _heaviside(mem - thr)
        syn = a * syn + x + feedback(spk)
        mem = _delayed_reset(b * mem + syn, reset, thr, reset_mechanism)
        spk = _heaviside(mem - thr)
        for name, value in (("spk", spk), ("syn", syn), ("mem", mem)):
            out[name].append(value)
    return _stack(**out)


def alpha_tau(alpha, beta, log: Callable[[np.ndarray], np.ndarray] = correctly_rounded_log) -> np.ndarray:
    """``Alpha``'s membrane factor: ``log(a) / (log(b) - log(a)) + 1`` in float32 (alpha.py)."""
    la, lb = log(np.clip(_f32(alpha), 0, 1)), log(np.clip(_f32(beta), 0, 1))
    return la / (lb - la) + F32(1)


def alpha_neuron(
    xs: np.ndarray,
    *,
    alpha,
    beta,
    threshold=1.0,
    reset_mechanism: str = "zero",
    log: Callable[[np.ndarray], np.ndarray] = correctly_rounded_log,
) -> dict[str, np.ndarray]:
    """``snn.Alpha``: ``exc = a*exc + x``, ``inh = b*inh - x``, ``mem = tau*(exc + inh)``.

    The membrane is not carried from step to step: only its reset decision is. The reset
    (always one step late; Alpha has no ``reset_delay``) is "zero": wipe ``exc``, ``inh``
    and ``mem``; "subtract": ``exc -= thr``, wipe ``inh``, ``mem += inh_prev``.

    Raises:
        Refused: ``alpha <= beta`` anywhere, or ``beta == 1`` (snnTorch's constructor raises).

    Returns:
        ``{"spk", "exc", "inh", "mem"}``, each ``[T, B, ...]`` float32.
    """
    _check_mechanism(reset_mechanism)
    a, beta32, thr = np.clip(_f32(alpha), 0, 1), _f32(beta), _f32(threshold)
    if (a <= beta32).any():
        raise Refused("Alpha(alpha <= beta): snnTorch requires alpha > beta")
    if (beta32 == 1).any():
        raise Refused("Alpha(beta == 1): snnTorch refuses it (division by zero in tau)")
    b = np.clip(beta32, 0, 1)
    tau = alpha_tau(a, b, log)
    exc = np.zeros_like(xs[0], dtype=F32)
    inh = np.zeros_like(exc)
    mem = np.zeros_like(exc)
    out: dict[str, list[np.ndarray]] = {"spk": [], "exc": [], "inh": [], "mem": []}
    for x in xs.astype(F32):
        reset = _heaviside(mem - thr)
        new_exc, new_inh = a * exc + x, b * inh - x
        new_mem = tau * (new_exc + new_inh)
        if reset_mechanism == "subtract":
            new_exc, new_inh, new_mem = (
                new_exc - thr * reset,
                new_inh - (b * inh - x) * reset,
                new_mem - (-inh) * reset,
            )
        elif reset_mechanism == "zero":
            new_exc, new_inh, new_mem = (
                new_exc - new_exc * reset,
                new_inh - new_inh * reset,
                new_mem - new_mem * reset,
            )
        exc, inh, mem = new_exc, new_inh, new_mem
        for name, value in (("spk", _heaviside(mem - thr)), ("exc", exc), ("inh", inh), ("mem", mem)):
            out[name].append(value)
    return _stack(**out)


def lapicque_rc(
    *,
    beta=None,
    R=None,
    C=None,
    time_step=1,
    log: Callable[[np.ndarray], np.ndarray] = correctly_rounded_log,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(R, C, time_step)`` that ``snn.Lapicque``'s forward uses (lapicque.py, ``_lapicque_cases``).

    ``beta`` only: ``R = 1``, ``C = dt / (R * log(1 / beta))``; ``beta`` and ``R``: the same
    ``C``; ``beta`` and ``C``: ``R = dt / (C * log(1 / beta))``; ``R`` and ``C``: as given
    (``beta = exp(-dt / (R*C))`` is computed but the forward never reads it).

    Raises:
        Refused: neither ``beta`` nor both ``R`` and ``C``, or a per-neuron value
            (snnTorch tests ``not self.beta`` / ``R and C``, which fails on several values).
    """
    for name, value in (("beta", beta), ("R", R), ("C", C)):
        if value is not None and np.size(value) != 1:
            raise Refused(f"Lapicque with a per-neuron {name}: snnTorch's constructor fails on it")
    dt = _f32(time_step)
    if beta is None:
        if R is None or C is None:
            raise Refused("Lapicque needs beta, or both R and C")
        return _f32(R), _f32(C), dt
    ln = log(F32(1) / _f32(beta))
    if C is None:
        r = _f32(1 if R is None else R)
        return r, dt / (r * ln), dt
    c = _f32(C)
    return dt / (c * ln), c, dt


def lapicque(
    xs: np.ndarray,
    *,
    R,
    C,
    time_step=1,
    threshold=1.0,
    reset_mechanism: str = "subtract",
) -> dict[str, np.ndarray]:
    """``snn.Lapicque``: ``mem = ((x*R) * (1/(R*C))) * dt + (1 - dt/(R*C)) * mem``.

    The forward never reads ``beta``: the decay is ``1 - dt/(RC)`` (``1 + log(beta)`` for
    a ``beta``-only neuron) and the input gain ``R * dt / (RC)``; so a Lapicque is not a
    Leaky of the same ``beta``. Resets as Synaptic's, always one step late.

    Returns:
        ``{"spk", "mem"}``, each ``[T, B, ...]`` float32.
    """
    _check_mechanism(reset_mechanism)
    r, c, dt, thr = _f32(R), _f32(C), _f32(time_step), _f32(threshold)
    gain, decay = F32(1) / (r * c), F32(1) - dt / (r * c)
    mem = np.zeros_like(xs[0], dtype=F32)
    out: dict[str, list[np.ndarray]] = {"spk": [], "mem": []}
    for x in xs.astype(F32):
        reset = _heaviside(mem - thr)
        mem = _delayed_reset(x * r * gain * dt + decay * mem, reset, thr, reset_mechanism)
        out["spk"].append(_heaviside(mem - thr))
        out["mem"].append(mem)
    return _stack(**out)


def nir_cuba_lif(
    xs: np.ndarray,
    *,
    tau_syn,
    tau_mem,
    r,
    v_leak,
    v_threshold,
    dt: float,
    v_reset=0.0,
    w_in=1.0,
) -> dict[str, np.ndarray]:
    """NIR's ``CubaLIF``, forward Euler at ``dt``, float64 (nir/ir/neuron.py's equations).

    ``tau_syn dI/dt = -I + w_in S``, ``tau_mem dv/dt = (v_leak - v) + r I``; the current is
    integrated first and the membrane from the new current; ``z = v > v_threshold``, then
    ``v = v_reset`` where ``z``, in the same step.

    Returns:
        ``{"spk", "i", "v"}``, each ``[T, B, ...]`` float64, and ``"margin"``: the smallest
        ``|v - v_threshold|`` seen (how far every spike decision was from flipping).
    """
    p = {k: np.asarray(v, np.float64) for k, v in dict(ts=tau_syn, tm=tau_mem, r=r, vl=v_leak).items()}
    thr, reset, win = (np.asarray(v, np.float64) for v in (v_threshold, v_reset, w_in))
    i = np.zeros(xs.shape[1:])
    v = np.zeros_like(i)
    margin = np.inf
    out: dict[str, list[np.ndarray]] = {"spk": [], "i": [], "v": []}
    for x in xs.astype(np.float64):
        i = i + dt / p["ts"] * (-i + win * x)
        v = v + dt / p["tm"] * (p["vl"] - v + p["r"] * i)
        margin = min(margin, float(np.abs(v - thr).min()))
        z = (v > thr).astype(np.float64)
        v = np.where(z > 0, reset, v)
        for name, value in (("spk", z), ("i", i), ("v", v)):
            out[name].append(value)
    result = _stack(**out)
    result["margin"] = np.float64(margin)
    return result
