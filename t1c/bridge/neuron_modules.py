"""The torch side of the current-based neurons: :class:`CubaLIFModule` and :class:`AlphaLIFModule`.

Each runs its T1C-IR node's equations (``docs/neurons.md``) operation for operation, so
the spikes of snnTorch's ``Synaptic``/``Lapicque`` (``CubaLIF``) and ``Alpha``
(``AlphaLIF``) are reproduced bit for bit, and gradients flow through the synaptic state
with a surrogate spike (snnTorch's ``atan()`` by default, as :class:`~t1c.bridge.LIFModule`).

State is explicit, a tuple of tensors the :class:`~t1c.bridge.GraphExecutor` carries:
``(syn, v, s)`` for a ``CubaLIF`` (the current, the membrane, the last spikes) and
``(exc, inh, v)`` for an ``AlphaLIF``; ``None`` is the zero state.

Example:
    >>> import numpy as np, torch
    >>> from t1c import ir
    >>> one = np.ones(1, np.float32)
    >>> node = ir.CubaLIF(tau_syn=2 * one, tau_mem=2 * one, r=2 * one, v_leak=0 * one,
    ...                   v_threshold=one, w_in=2 * one, alpha=one / 2, beta=one / 2)
    >>> s, state = CubaLIFModule.from_node(node)(torch.tensor([[1.5]]))
    >>> s, state[1]  # syn = 0.5*0 + 1.5, v = 0.5*0 + 1.5 > 1: spike, reset to zero
    (tensor([[1.]]), tensor([[0.]]))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from t1c import ir

from .coefficient_cache import cached_coefficients
from .modules import as_numpy, hold, time_constant
from .surrogate import SpikeFn, heaviside, resolve, spike

Inputs = torch.Tensor | Sequence[torch.Tensor]


def _as_inputs(x: Inputs, shape: tuple[int, ...], who: str, lead: int) -> tuple[torch.Tensor, ...]:
    """The node's inputs in edge order, each checked to have the neuron shape."""
    inputs = (x,) if isinstance(x, torch.Tensor) else tuple(x)
    if not inputs:
        raise ValueError(f"{who} got no input")
    for t in inputs:
        if tuple(t.shape[lead:]) != shape or t.dim() != lead + len(shape):
            want = ("[T, B, " if lead == 2 else "[B, ") + ", ".join(map(str, shape)) + "]"
            raise ValueError(f"{who} with neurons of shape {list(shape)} expects {want}, got {list(t.shape)}")
    return inputs


def _summed(inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The inputs added one at a time in edge order (the order fixes the float rounding)."""
    total = inputs[0]
    for other in inputs[1:]:
        total = total + other
    return total


class _NeuronModule(nn.Module):
    """What both modules share: parameters held as buffers (or ``nn.Parameter`` when
    learned) and the time loop; a subclass gives ``_coefficients()`` (what stays the same
    over the steps) and ``_step(inputs, state, coefficients) -> (spikes, state)``."""

    #: The executor passes this module its state and expects ``(output, state)`` back.
    stateful = True
    #: The executor passes each incoming edge's value separately, in edge-list order.
    multi_input = True

    neuron_shape: tuple[int, ...]

    def forward(self, x: Inputs, state: tuple[torch.Tensor, ...] | None = None):
        """One time step.

        Args:
            x: the input ``[B, *neuron_shape]``, or the inputs in edge order.
            state: from the previous step, or None for the zero state.

        Returns:
            ``(spikes, state)``.
        """
        inputs = _as_inputs(x, self.neuron_shape, type(self).__name__, 1)
        if state is None:
            state = tuple(torch.zeros_like(inputs[0]) for _ in range(3))
        return self._step(inputs, state, self._coefficients())

    def forward_sequence(self, xs: Inputs, state: tuple[torch.Tensor, ...] | None = None):
        """Run ``T`` steps on ``xs [T, B, *neuron_shape]`` (or the inputs in edge order):
        ``(spikes [T, B, ...], state after the last step)``, as :meth:`forward` ``T`` times."""
        inputs = _as_inputs(xs, self.neuron_shape, type(self).__name__, 2)
        if inputs[0].shape[0] == 0:
            raise ValueError(
                f"{type(self).__name__}.forward_sequence needs at least one time step, got T = 0"
            )
        if state is None:
            state = tuple(torch.zeros_like(inputs[0][0]) for _ in range(3))
        coefficients = self._coefficients()
        out = []
        # unbind, not x[t]: the backward of one unbind stacks the steps' gradients once, where
        # each x[t] would fill a zero [T, B, ...] gradient of its own (quadratic in T)
        for step_inputs in zip(*(x.unbind(0) for x in inputs)):
            s, state = self._step(step_inputs, state, coefficients)
            out.append(s)
        return torch.stack(out), state


class CubaLIFModule(_NeuronModule):
    """Current-based LIF neurons, exactly as a T1C-IR ``CubaLIF`` node defines them.

    The exact form (the node has ``beta``) adds its inputs one at a time in edge order,
    as snnTorch does; the plain form is NIR's ``CubaLIF`` at one step per time unit.
    ``w_rec`` (one-to-one recurrence) is an ``nn.Parameter``, a synaptic weight that trains.

    Args:
        node: the ``ir.CubaLIF`` node.
        spike_grad: surrogate gradient of the spike; default snnTorch's ``atan()``.
        learn_alpha, learn_beta, learn_threshold: make that parameter trainable
            (``alpha``/``beta`` only in the exact form).
    """

    def __init__(
        self,
        node: ir.CubaLIF,
        *,
        spike_grad: SpikeFn | None = None,
        learn_alpha: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(node, ir.CubaLIF):
            raise TypeError(f"CubaLIFModule needs an ir.CubaLIF node, got {type(node).__name__}")
        for flag, decay in ((learn_alpha, "alpha"), (learn_beta, "beta")):
            if flag and getattr(node, decay) is None:
                raise ValueError(f"CubaLIFModule(learn_{decay}=True): the node has no {decay} to learn")
        self.neuron_shape = node.shape
        self.reset_mechanism: str = node.reset_mechanism or "zero"
        self.reset_delay: bool = bool(node.reset_delay)
        self._given = {"reset_mechanism": node.reset_mechanism, "reset_delay": node.reset_delay}
        self.learn_alpha, self.learn_beta = bool(learn_alpha), bool(learn_beta)
        self.spike_grad: SpikeFn = resolve(spike_grad)
        for name in ("tau_syn", "tau_mem", "r", "v_leak", "w_in", "input_gain"):
            hold(self, name, getattr(node, name))
        hold(self, "v_threshold", node.v_threshold, learn_threshold)
        hold(self, "alpha", node.alpha, learn_alpha)
        hold(self, "beta", node.beta, learn_beta)
        hold(self, "w_rec", node.w_rec, learn=True)
        self._coef_cache: tuple | None = None

    @classmethod
    def from_node(cls, node: ir.CubaLIF, **kwargs) -> CubaLIFModule:
        """Build from an ``ir.CubaLIF`` node (keyword arguments as in the constructor)."""
        return cls(node, **kwargs)

    def to_node(self) -> ir.CubaLIF:
        """The ``ir.CubaLIF`` node with the current (possibly trained) parameters.

        A learned ``alpha`` rewrites ``tau_syn = w_in = 1/(1 - alpha)``, a learned ``beta``
        ``tau_mem = r = 1/(1 - beta)`` (docs/neurons.md's export mapping), so a plain
        reader still approximates the node.
        """
        fields = {n: as_numpy(getattr(self, n)) for n in ("tau_syn", "tau_mem", "r", "v_leak", "w_in")}
        alpha, beta = as_numpy(self.alpha), as_numpy(self.beta)
        if alpha is not None:
            alpha = np.clip(alpha, 0.0, 1.0)
            if self.learn_alpha:
                fields["tau_syn"] = fields["w_in"] = time_constant(alpha)
        if beta is not None:
            beta = np.clip(beta, 0.0, 1.0)
            if self.learn_beta:
                fields["tau_mem"] = fields["r"] = time_constant(beta)
        return ir.CubaLIF(
            **fields,
            v_threshold=as_numpy(self.v_threshold),
            alpha=alpha,
            beta=beta,
            input_gain=as_numpy(self.input_gain),
            w_rec=as_numpy(self.w_rec),
            **self._given,
        )

    def _coefficients(self):
        """``(alpha, beta)`` clamped to [0, 1] (exact form), or the plain ``(a, b)``; cached
        while the parameters they come from are unchanged (as :class:`~t1c.bridge.LIFModule`'s)."""
        if self.beta is None:
            sources = (self.tau_syn, self.tau_mem)
        else:
            sources = (self.alpha, self.beta)
        return cached_coefficients(self, sources, self._compute_coefficients)

    def _compute_coefficients(self):
        if self.beta is None:
            return 1 - 1 / self.tau_syn, 1 - 1 / self.tau_mem
        return (None if self.alpha is None else self.alpha.clamp(0, 1)), self.beta.clamp(0, 1)

    def _integrate(self, inputs, syn, v, s, coefficients):
        """``(syn, u)``: the new current and the membrane before any reset."""
        a, b = coefficients
        if self.beta is None:  # plain: NIR's CubaLIF at dt = 1 step
            x = _summed(inputs)
            if self.w_rec is not None:
                x = x + self.w_rec * s
            syn = a * syn + (1 - a) * (self.w_in * x)
            return syn, b * v + (1 - b) * (self.v_leak + self.r * syn)
        terms = list(inputs)
        if self.input_gain is not None:
            terms[0] = self.input_gain * terms[0]
        if self.w_rec is not None:
            terms.append(self.w_rec * s)
        if a is None:  # no current stage: every term goes to the membrane
            u = b * v
            for term in terms:
                u = u + term
            return syn, u
        syn = a * syn + terms[0]
        for term in terms[1:]:
            syn = syn + term
        return syn, b * v + syn

    def _step(self, inputs, state, coefficients):
        syn, v, s = state
        thr, mech = self.v_threshold, self.reset_mechanism
        reset = heaviside(v - thr, True)  # last step's membrane, not differentiated
        syn, u = self._integrate(inputs, syn, v, s, coefficients)
        if mech == "subtract":
            u = u - reset * thr
        elif mech == "zero":
            u = u - reset * u  # the whole new membrane; the current is kept
        s = spike(u - thr, self.spike_grad, True)
        if not self.reset_delay:
            do_reset = s - reset  # differentiated through s, as snnTorch
            if mech == "subtract":
                u = u - do_reset * thr
            elif mech == "zero":
                u = u - do_reset * u
        return s, (syn, u, s)

    def extra_repr(self) -> str:
        form = "plain" if self.beta is None else "exact"
        return (
            f"shape={list(self.neuron_shape)}, form={form}, reset={self.reset_mechanism}, "
            f"reset_delay={self.reset_delay}, current={self.alpha is not None or self.beta is None}, "
            f"w_rec={self.w_rec is not None}"
        )


class AlphaLIFModule(_NeuronModule):
    """snnTorch's ``Alpha`` neurons, exactly as a T1C-IR ``AlphaLIF`` node defines them.

    Args:
        node: the ``ir.AlphaLIF`` node (``tau`` is used as stored, never recomputed).
        spike_grad: surrogate gradient of the spike; default snnTorch's ``atan()``.
        learn_threshold: make ``v_threshold`` trainable.
    """

    def __init__(
        self, node: ir.AlphaLIF, *, spike_grad: SpikeFn | None = None, learn_threshold: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(node, ir.AlphaLIF):
            raise TypeError(f"AlphaLIFModule needs an ir.AlphaLIF node, got {type(node).__name__}")
        self.neuron_shape = node.shape
        self.reset_mechanism: str = node.reset_mechanism or "zero"
        self._given_mechanism = node.reset_mechanism
        self.spike_grad: SpikeFn = resolve(spike_grad)
        for name in ("alpha", "beta", "tau"):
            hold(self, name, getattr(node, name))
        hold(self, "v_threshold", node.v_threshold, learn_threshold)

    @classmethod
    def from_node(cls, node: ir.AlphaLIF, **kwargs) -> AlphaLIFModule:
        """Build from an ``ir.AlphaLIF`` node (keyword arguments as in the constructor)."""
        return cls(node, **kwargs)

    def to_node(self) -> ir.AlphaLIF:
        """The ``ir.AlphaLIF`` node with the current (possibly trained) threshold."""
        return ir.AlphaLIF(
            alpha=as_numpy(self.alpha),
            beta=as_numpy(self.beta),
            tau=as_numpy(self.tau),
            v_threshold=as_numpy(self.v_threshold),
            reset_mechanism=self._given_mechanism,
        )

    def _coefficients(self):
        return None

    def _step(self, inputs, state, coefficients):
        exc, inh, v = state
        x = _summed(inputs)
        thr, mech = self.v_threshold, self.reset_mechanism
        reset = heaviside(v - thr, True)  # last step's membrane; v itself is not carried
        new_exc, new_inh = self.alpha * exc + x, self.beta * inh - x
        new_v = self.tau * (new_exc + new_inh)
        if mech == "zero":
            new_exc, new_inh, new_v = (
                new_exc - new_exc * reset,
                new_inh - new_inh * reset,
                new_v - new_v * reset,
            )
        elif mech == "subtract":
            new_exc, new_inh, new_v = new_exc - thr * reset, new_inh - new_inh * reset, new_v - (-inh) * reset
        return spike(new_v - thr, self.spike_grad, True), (new_exc, new_inh, new_v)

    def extra_repr(self) -> str:
        return f"shape={list(self.neuron_shape)}, reset={self.reset_mechanism}"


__all__ = ["AlphaLIFModule", "CubaLIFModule"]
