"""Numpy references of the T1C-IR neurons ``CubaLIF`` and ``AlphaLIF``, from docs/neurons.md.

Written from the equations in ``docs/neurons.md`` (float32, in the documented order) and
from nothing else, for the nodes as ``t1c.ir`` holds them: these are what an executor of
the nodes must compute. ``tests/references/test_t1c_neurons.py`` checks that the
snnTorch mapping of docs/neurons.md turns them into snnTorch's neurons bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from t1c import ir

F32 = np.float32


def _heaviside(x: np.ndarray) -> np.ndarray:
    return (x > 0).astype(F32)


def _exact_terms(node: ir.CubaLIF, inputs: list[np.ndarray], spk: np.ndarray) -> list[np.ndarray]:
    """The exact form's input terms, in the order they are added."""
    terms = list(inputs)
    if node.input_gain is not None:
        terms[0] = node.input_gain * terms[0]
    if node.w_rec is not None:
        terms.append(node.w_rec * spk)
    return terms


def _update(node: ir.CubaLIF, syn: np.ndarray, v: np.ndarray, inputs: list[np.ndarray], spk: np.ndarray):
    """``(syn, u)``: the new current and the membrane before the reset."""
    if node.beta is None:  # plain: NIR's CubaLIF at dt = 1 step
        x = sum(inputs[1:], inputs[0])
        if node.w_rec is not None:
            x = x + node.w_rec * spk
        a, b = F32(1) - F32(1) / node.tau_syn, F32(1) - F32(1) / node.tau_mem
        syn = a * syn + (F32(1) - a) * (node.w_in * x)
        return syn, b * v + (F32(1) - b) * (node.v_leak + node.r * syn)
    terms = _exact_terms(node, inputs, spk)
    if node.alpha is None:
        u = node.beta * v
        for term in terms:
            u = u + term
        return syn, u
    for i, term in enumerate(terms):
        syn = (node.alpha * syn if i == 0 else syn) + term
    return syn, node.beta * v + syn


def cuba_lif(
    node: ir.CubaLIF, inputs: list[np.ndarray], feedback: Callable[[np.ndarray], np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Run a ``CubaLIF`` node over its inputs (each ``[T, B, *shape]``, in edge order).

    ``feedback`` stands for a back-edge node (an ``Affine``/``Conv2d``) whose output is the
    node's last input: it is called on last step's spikes (zero at step 0).

    Returns:
        ``{"spk", "syn", "mem"}``, each ``[T, B, *shape]`` float32.
    """
    mechanism = node.reset_mechanism or "zero"
    thr = node.v_threshold
    syn = np.zeros(inputs[0].shape[1:], F32)
    v, spk = np.zeros_like(syn), np.zeros_like(syn)
    out: dict[str, list[np.ndarray]] = {"spk": [], "syn": [], "mem": []}
    for t in range(inputs[0].shape[0]):
        step = [x[t].astype(F32) for x in inputs] + ([feedback(spk)] if feedback else [])
        reset = _heaviside(v - thr)
        syn, u = _update(node, syn, v, step, spk)
        if mechanism == "subtract":
            u = u - reset * thr
        elif mechanism == "zero":
            u = u - reset * u
        spk = _heaviside(u - thr)
        if not node.reset_delay:
            do = spk - reset
            if mechanism == "subtract":
                u = u - do * thr
            elif mechanism == "zero":
                u = u - do * u
        v = u
        for name, value in (("spk", spk), ("syn", syn), ("mem", v)):
            out[name].append(value)
    return {k: np.stack(vs) for k, vs in out.items()}


def alpha_lif(node: ir.AlphaLIF, xs: np.ndarray) -> dict[str, np.ndarray]:
    """Run an ``AlphaLIF`` node over ``xs`` ``[T, B, *shape]`` (the sum of its inputs).

    Returns:
        ``{"spk", "exc", "inh", "mem"}``, each ``[T, B, *shape]`` float32.
    """
    mechanism = node.reset_mechanism or "zero"
    a, b, tau, thr = node.alpha, node.beta, node.tau, node.v_threshold
    exc = np.zeros(xs.shape[1:], F32)
    inh, v = np.zeros_like(exc), np.zeros_like(exc)
    out: dict[str, list[np.ndarray]] = {"spk": [], "exc": [], "inh": [], "mem": []}
    for x in xs.astype(F32):
        reset = _heaviside(v - thr)
        new_exc, new_inh = a * exc + x, b * inh - x
        new_v = tau * (new_exc + new_inh)
        if mechanism == "zero":
            new_exc, new_inh, new_v = (
                new_exc - new_exc * reset,
                new_inh - new_inh * reset,
                new_v - new_v * reset,
            )
        elif mechanism == "subtract":
            new_exc, new_inh, new_v = new_exc - thr * reset, new_inh - new_inh * reset, new_v - (-inh) * reset
        exc, inh, v = new_exc, new_inh, new_v
        for name, value in (("spk", _heaviside(v - thr)), ("exc", exc), ("inh", inh), ("mem", v)):
            out[name].append(value)
    return {k: np.stack(vs) for k, vs in out.items()}
