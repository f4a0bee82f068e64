"""The torch side of the T1C-IR primitives that have no plain ``torch.nn`` twin.

Each module here is built from its IR node (``from_node``) and turns back into one
(``to_node``), so an imported graph exports to the same file:

* :class:`LIFModule`: leaky integrate-and-fire neurons with explicit state,
  ``forward(i, v) -> (spikes, v)``, exact to the file's semantics (the plain T1C-IR LIF,
  or snnTorch ``Leaky``'s algorithm bit for bit when the node carries ``beta``).
* :class:`SkipModule`: residual sum, concatenation or passthrough of its inputs.
* :class:`SepConv2dModule`: depthwise then pointwise convolution.
* :class:`SpikingAffineModule`: an ``nn.Linear`` carrying the hardware hints.

The exact LIF algorithm is in ``docs/lif_extensions.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from t1c import ir

from .coefficient_cache import cached_coefficients
from .surrogate import ATan, SpikeFn, atan_derivative, heaviside, resolve, spike

ArrayLike = Any  # numpy array, torch tensor, float or nested list


def _tensor(value: ArrayLike, name: str) -> torch.Tensor:
    """A float32 tensor copy of ``value`` (numpy, torch or a number)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone().to(torch.float32)
    try:
        arr = np.array(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise TypeError(f"LIFModule: {name} must be numbers, got {value!r}") from err
    return torch.from_numpy(arr)


def as_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    """A float32 numpy copy of ``t`` (None stays None): a node's array from a module's tensor."""
    return None if t is None else t.detach().to("cpu", torch.float32).numpy().copy()


def hold(module: nn.Module, name: str, value: np.ndarray | None, learn: bool = False) -> None:
    """Set ``module.<name>`` to a float32 copy of ``value``: an ``nn.Parameter`` when learned,
    else a buffer (``None`` when ``value`` is None)."""
    if value is None:
        setattr(module, name, None)
        return
    t = torch.from_numpy(np.array(value, dtype=np.float32))
    if learn:
        setattr(module, name, nn.Parameter(t))
    else:
        module.register_buffer(name, t)


def time_constant(decay: np.ndarray) -> np.ndarray:
    """``1 / (1 - decay)`` in float64, cast to float32; ``decay >= 1`` gives +inf."""
    b = np.minimum(decay.astype(np.float64), 1.0)
    with np.errstate(divide="ignore"):
        tau = np.where(b >= 1.0, np.inf, 1.0 / (1.0 - b))
    return tau.astype(np.float32)


class LIFModule(nn.Module):
    """Leaky integrate-and-fire neurons, exactly as a T1C-IR ``LIF`` node defines them.

    Two update rules, chosen by whether ``beta`` is given:

    * plain (``beta=None``): ``v = b*v + (1-b)*(v_leak + r*i)`` with ``b = 1 - 1/tau``,
      computed in that form, so the reference fixtures are reproduced;
    * snnTorch (``beta`` given): ``v = clamp(beta, 0, 1)*v + i`` evaluated with
      snnTorch ``Leaky``'s exact algorithm and operation order, so spikes match
      ``snn.Leaky`` bit for bit.

    ``reset_mechanism`` ("zero" | "subtract" | "none"), ``reset_delay`` and
    ``strict_threshold`` default to the plain meaning (zero, False, False) when None.
    The full algorithm is in ``docs/lif_extensions.md``.

    Args:
        tau, r, v_leak, v_threshold: neuron-shaped parameters (arrays or tensors).
        beta: snnTorch's exact decay (neuron shape), or None for a plain LIF.
        reset_mechanism, reset_delay, strict_threshold: the optional LIF fields.
        spike_grad: surrogate gradient of the spike; default snnTorch's ``atan()``.
            Any snnTorch surrogate or callable ``f(x) -> spikes`` works.
        learn_beta: make the decay trainable (``beta`` when given, else ``tau``).
        learn_threshold: make ``v_threshold`` trainable.

    State is explicit: ``forward(i, v)`` takes the membrane ``v`` (None = zeros shaped
    like ``i``, on its device and dtype) and returns ``(spikes, v_new)``.

    Example:
        >>> import torch
        >>> lif = LIFModule(tau=[2.0], r=[2.0], v_leak=[0.0], v_threshold=[1.0])
        >>> s, v = lif(torch.tensor([[0.75]]))  # v = 0.5*0 + 0.5*(0 + 2*0.75)
        >>> s, v
        (tensor([[0.]]), tensor([[0.7500]]))
        >>> lif(torch.tensor([[0.75]]), v)  # 0.5*0.75 + 0.75 >= 1: spike, reset to 0
        (tensor([[1.]]), tensor([[0.]]))
    """

    #: The executor passes this module its state and expects ``(output, state)`` back.
    stateful = True

    def __init__(
        self,
        tau: ArrayLike,
        r: ArrayLike,
        v_leak: ArrayLike,
        v_threshold: ArrayLike,
        beta: ArrayLike | None = None,
        reset_mechanism: str | None = None,
        reset_delay: bool | None = None,
        strict_threshold: bool | None = None,
        *,
        spike_grad: SpikeFn | None = None,
        learn_beta: bool = False,
        learn_threshold: bool = False,
    ) -> None:
        super().__init__()
        # Build the IR node once: it validates shapes and values with its own messages.
        node = ir.LIF(
            tau=_tensor(tau, "tau").numpy(),
            r=_tensor(r, "r").numpy(),
            v_leak=_tensor(v_leak, "v_leak").numpy(),
            v_threshold=_tensor(v_threshold, "v_threshold").numpy(),
            beta=None if beta is None else _tensor(beta, "beta").numpy(),
            reset_mechanism=reset_mechanism,
            reset_delay=reset_delay,
            strict_threshold=strict_threshold,
        )
        self._given = {
            "reset_mechanism": node.reset_mechanism,
            "reset_delay": node.reset_delay,
            "strict_threshold": node.strict_threshold,
        }
        self.reset_mechanism: str = node.reset_mechanism or "zero"
        self.reset_delay: bool = bool(node.reset_delay)
        self.strict_threshold: bool = bool(node.strict_threshold)
        self.snntorch_mode: bool = node.beta is not None
        self.learn_beta = bool(learn_beta)
        self.learn_threshold = bool(learn_threshold)
        self.spike_grad: SpikeFn = resolve(spike_grad)
        self.neuron_shape: tuple[int, ...] = node.shape

        hold(self, "tau", node.tau, learn_beta and not self.snntorch_mode)
        hold(self, "r", node.r)
        hold(self, "v_leak", node.v_leak)
        hold(self, "v_threshold", node.v_threshold, learn_threshold)
        hold(self, "beta", node.beta, learn_beta)
        self._coef_cache: tuple | None = None

    # -- IR --------------------------------------------------------------------------
    @classmethod
    def from_node(
        cls,
        node: ir.LIF,
        *,
        spike_grad: SpikeFn | None = None,
        learn_beta: bool = False,
        learn_threshold: bool = False,
    ) -> LIFModule:
        """Build from an ``ir.LIF`` node (keyword arguments as in the constructor)."""
        if not isinstance(node, ir.LIF):
            raise TypeError(f"LIFModule.from_node needs an ir.LIF node, got {type(node).__name__}")
        return cls(
            node.tau,
            node.r,
            node.v_leak,
            node.v_threshold,
            node.beta,
            node.reset_mechanism,
            node.reset_delay,
            node.strict_threshold,
            spike_grad=spike_grad,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
        )

    def to_node(self) -> ir.LIF:
        """The ``ir.LIF`` node with the current (possibly trained) parameters.

        Optional fields are written as they were given. A trained ``beta`` also rewrites
        ``tau = r = 1/(1 - beta)`` (``+inf`` for ``beta >= 1``) and ``v_leak = 0``, so a
        plain reader approximates the node (``docs/lif_extensions.md``).
        """
        tau, r, v_leak = as_numpy(self.tau), as_numpy(self.r), as_numpy(self.v_leak)
        beta = None
        if self.snntorch_mode:
            beta = np.clip(as_numpy(self.beta), 0.0, 1.0)  # what forward uses; ir.LIF needs [0, 1]
            if self.learn_beta:
                tau = time_constant(beta)
                r, v_leak = tau.copy(), np.zeros_like(tau)
        return ir.LIF(
            tau=tau,
            r=r,
            v_leak=v_leak,
            v_threshold=as_numpy(self.v_threshold),
            beta=beta,
            **self._given,
        )

    # -- dynamics --------------------------------------------------------------------
    def _coefficients(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(decay, gain)``: ``clamp(beta, 0, 1)`` and None in snnTorch mode, else
        ``b = 1 - 1/tau`` and ``1 - b``. Cached while the parameters are unchanged."""
        src = self.beta if self.snntorch_mode else self.tau
        return cached_coefficients(self, (src,), lambda: self._compute_coefficients(src))

    def _compute_coefficients(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.snntorch_mode:
            return src.clamp(0, 1), None
        decay = 1 - 1 / src
        return decay, 1 - decay

    def _integrate(self, v: torch.Tensor, i: torch.Tensor, decay: torch.Tensor, gain) -> torch.Tensor:
        if gain is None:
            return decay * v + i
        return decay * v + gain * (self.v_leak + self.r * i)

    def forward(self, i: torch.Tensor, v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step.

        Args:
            i: input current ``[B, *neuron_shape]``.
            v: membrane from the previous step, or None for the zero state.

        Returns:
            ``(spikes, v_new)``, spikes in ``i``'s dtype.
        """
        if i.shape[1:] != self.neuron_shape:
            raise ValueError(
                f"LIFModule with neurons of shape {list(self.neuron_shape)} got input of "
                f"shape {list(i.shape)}; expected [batch, {', '.join(map(str, self.neuron_shape))}]"
            )
        if v is None:
            v = torch.zeros_like(i)
        decay, gain = self._coefficients()
        return self._step(i, v, decay, gain)

    def _step(self, i, v, decay, gain) -> tuple[torch.Tensor, torch.Tensor]:
        thr = self.v_threshold
        mech = self.reset_mechanism
        if self.reset_delay or self.snntorch_mode:
            # snnTorch Leaky: reset decided from the stored membrane, before integrating.
            reset = heaviside(v - thr, self.strict_threshold)
            if mech == "zero":
                v = (1 - reset) * v
            v = self._integrate(v, i, decay, gain)
            if mech == "subtract":
                v = v - reset * thr
            s = spike(v - thr, self.spike_grad, self.strict_threshold)
            if not self.reset_delay:
                do_reset = s - reset  # snnTorch: avoid resetting twice
                if mech == "subtract":
                    v = v - do_reset * thr
                elif mech == "zero":
                    v = v - do_reset * v
            return s, v
        # Plain LIF: integrate, fire, reset in the same step (the reset is not differentiated).
        v = self._integrate(v, i, decay, gain)
        s = spike(v - thr, self.spike_grad, self.strict_threshold)
        if mech == "zero":
            v = (1 - s.detach()) * v
        elif mech == "subtract":
            v = v - s.detach() * thr
        return s, v

    def forward_sequence(
        self, xs: torch.Tensor, v: torch.Tensor | None = None, *, overwrite_input: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``T`` steps on ``xs [T, B, *neuron_shape]``: ``(spikes [T, B, ...], v_T)``.

        Identical to calling :meth:`forward` ``T`` times (spikes and membranes bit for
        bit; gradients up to summation order). The fused path saves only the spikes and
        the tested membranes for the backward pass, and nothing when no gradient is
        needed (``docs/lif_extensions.md``).

        ``overwrite_input=True`` says the caller never reads ``xs`` again: under
        ``torch.no_grad()`` (or inference mode) the spikes are then written into its
        memory, step by step after each step's input is read, instead of a new
        ``[T, B, ...]`` tensor (:meth:`GraphExecutor.run_sequence` passes it for a value
        that only this neuron reads). The spikes are the same either way.
        """
        if xs.dim() < 2 or xs.shape[2:] != self.neuron_shape:
            raise ValueError(
                f"LIFModule.forward_sequence expects [T, B, {', '.join(map(str, self.neuron_shape))}], "
                f"got {list(xs.shape)}"
            )
        if xs.shape[0] == 0:
            raise ValueError("LIFModule.forward_sequence needs at least one time step, got T = 0")
        if v is None:
            v = torch.zeros_like(xs[0])
        decay, gain = self._coefficients()
        if self._fusable():
            c = xs if gain is None else gain * (self.v_leak + self.r * xs)
            inputs = (c, v, decay, self.v_threshold)
            if not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
                # nothing to differentiate (evaluation): the loop alone, no membranes kept, and
                # the spikes in c's memory when nothing else reads it: c computed here (plain
                # mode), or xs given up by the caller; never where autograd may have saved xs
                writable = c is not xs or (overwrite_input and not torch.is_grad_enabled())
                spikes, v, _, _ = _lif_loop(
                    *inputs,
                    self.reset_mechanism,
                    self.reset_delay,
                    self.strict_threshold,
                    record=False,
                    out=c if writable and c.is_contiguous() else None,
                )
                return spikes, v
            return _LIFSequence.apply(
                c,
                v,
                decay,
                self.v_threshold,
                self.reset_mechanism,
                self.reset_delay,
                self.strict_threshold,
                self.spike_grad.alpha,
            )
        out = []
        for x_t in xs.unbind(0):
            s, v = self._step(x_t, v, decay, gain)
            out.append(s)
        return torch.stack(out), v

    def _fusable(self) -> bool:
        """Whether :class:`_LIFSequence` computes this neuron: the ATan surrogate (its
        derivative is known) and a detached reset (snnTorch's ``reset_delay=False``
        differentiates through its reset, so it runs step by step)."""
        return type(self.spike_grad) is ATan and (self.reset_delay or not self.snntorch_mode)

    def extra_repr(self) -> str:
        mode = "snntorch" if self.snntorch_mode else "plain"
        surrogate = self.spike_grad if isinstance(self.spike_grad, ATan) else "custom"
        return (
            f"shape={list(self.neuron_shape)}, mode={mode}, reset={self.reset_mechanism}, "
            f"reset_delay={self.reset_delay}, strict={self.strict_threshold}, spike_grad={surrogate}"
        )


class _LIFSequence(torch.autograd.Function):
    """The LIF time loop as one autograd node: ``T`` steps forward without recording a
    graph, and a backward pass whose only loop is the gradient recurrence.

    Inputs: ``c`` [T, B, *shape], the integrated input of each step (``i`` in snnTorch
    mode, ``gain * (v_leak + r * i)`` in plain mode, computed by autograd outside);
    ``v0``; the decay ``a``; the threshold. The forward repeats :meth:`LIFModule._step`'s
    operations one for one (each correctly rounded), so values are bit-identical to
    stepping; gradients equal the step-by-step autograd ones up to summation order.

    Memory: the forward writes each tested membrane ``w_t`` into one ``[T, B, *shape]``
    tensor and saves it with the spikes (two tensors of ``c``'s size, ``c`` itself is not
    kept); the backward needs no loop to rebuild the membranes: the surrogate derivative,
    and the membrane each decay multiplied (for ``a``'s gradient), are whole-tensor
    operations on the saved ones.

    Recurrence (``q_t = dL/ds_t * atan'(w_t - thr)``, ``w_t`` the membrane tested):

    * delayed reset: ``g_t = dL/dw_t = q_t + a * k_t * g_{t+1}`` with ``k_t = 1 - s_t`` for
      "zero" (the next step zeroes ``w_t`` where it spiked), else 1;
    * immediate reset (plain): ``g_t = dL/dw_t = q_t + k_t * h_t``, ``h_t = a * g_{t+1}``,
      ``k_t = 1 - s_t`` for "zero".
    """

    @staticmethod
    def forward(ctx, c, v0, a, thr, mech, delay, strict, alpha):  # noqa: D102
        spikes, v, r0, tested = _lif_loop(c, v0, a, thr, mech, delay, strict, record=True)
        ctx.save_for_backward(spikes, tested, v0, a, thr, r0)
        ctx.config = (mech, delay, alpha)
        return spikes, v

    @staticmethod
    def backward(ctx, g_spikes, g_v):  # noqa: D102
        spikes, tested, v0, a, thr, r0 = ctx.saved_tensors
        mech, delay, alpha = ctx.config
        grads = atan_derivative(torch.sub(tested, thr), alpha, inplace=True)  # then q, then dL/dw_t
        if g_spikes is None:
            grads.zero_()
        else:
            grads.mul_(g_spikes)
        q = grads.clone() if ctx.needs_input_grad[3] else None  # thr's gradient needs q itself
        g_v = torch.zeros_like(v0) if g_v is None else g_v
        h_all = None
        if delay:  # the factor of g_{t+1}: a * (1 - s_t) for "zero", else a
            factor = torch.neg(spikes).add_(1).mul_(a) if mech == "zero" else None
            _delayed_recurrence(grads, g_v, a, factor)
            g_v0 = a * grads[0] if mech != "zero" else a * (1 - r0) * grads[0]
        else:
            keep = torch.neg(spikes).add_(1) if mech == "zero" else None
            h_all = _immediate_recurrence(grads, g_v, a, keep, q is not None and mech == "subtract")
            g_v0 = a * grads[0]
        g_a = g_thr = None
        if ctx.needs_input_grad[2]:  # d/da of a * u_t
            g_a = _reduce_to(_decayed(tested, spikes, v0, r0, thr, mech, delay).mul_(grads), a.shape)
        if q is not None:  # thr enters the spike and the subtractive reset
            g_thr = q.neg_()
            if mech == "subtract":
                resets = torch.cat([r0.unsqueeze(0), spikes[:-1]]) if delay else spikes
                g_thr = g_thr.sub_(resets.mul_(grads) if delay else resets * h_all)
            g_thr = _reduce_to(g_thr, thr.shape)
        return grads, g_v0, g_a, g_thr, None, None, None, None


def _lif_loop(c, v0, a, thr, mech, delay, strict, *, record, out=None):
    """The LIF recurrence of :class:`_LIFSequence`, with :meth:`LIFModule._step`'s operations.

    Returns ``(spikes, final membrane, r0, tested)``: the final membrane is a tensor of its
    own; ``tested`` holds each step's tested membrane ``w_t`` when ``record`` (for the
    backward pass), else None and one membrane buffer is updated in place. Spikes and
    resets are 0 or 1, so ``1 - s`` (written ``-s + 1``) and ``s * thr`` are exact and
    ``w - s * thr`` has one rounding, fused or not. ``out`` (``c`` itself, or None for a new
    tensor) receives the spikes: step ``t`` writes ``out[t]`` after its last read of ``c[t]``.
    """
    spikes = torch.empty_like(c) if out is None else out
    tested = torch.empty_like(c) if record else None
    r0 = heaviside(v0 - thr, strict)
    buf = torch.empty_like(v0)
    # Decided once, not per step: the branches, and the views (unbind) rather than one
    # indexing call per step and tensor.
    zero_first = delay and mech == "zero"  # u = (1 - r) * v, r the reset decided from v_{t-1}
    subtract_first = delay and mech == "subtract"
    zero_after = not delay and mech == "zero"
    subtract_after = not delay and mech == "subtract"
    cs, ss = c.unbind(0), spikes.unbind(0)
    ws = tested.unbind(0) if tested is not None else None
    membrane = torch.empty_like(v0) if ws is None else None  # w_t, updated in place
    v, r = v0, r0
    for t in range(len(cs)):
        if zero_first:
            v = torch.neg(r, out=buf).add_(1).mul_(v)
        w = torch.mul(a, v, out=membrane if ws is None else ws[t]).add_(cs[t])  # a * u + c_t
        if subtract_first:
            w.addcmul_(r, thr, value=-1)
        if strict:  # w - thr > 0 is w > thr for every float (gradual underflow), one kernel less
            s = torch.gt(w, thr, out=ss[t])
        else:  # not so for >= when w and thr are the same infinity
            s = heaviside(torch.sub(w, thr, out=buf), False, out=ss[t])
        if delay:
            r, v = s, w
        elif zero_after:  # w_t stays as tested; the reset membrane goes to buf
            v = torch.neg(s, out=buf).add_(1).mul_(w)
        elif subtract_after:
            v = torch.addcmul(w, s, thr, value=-1, out=buf)
        else:
            v = w
    if ws is not None and v is not buf:
        v = v.clone()  # never a view of ``tested``, which is saved
    return spikes, v, r0, tested


def _decayed(tested, spikes, v0, r0, thr, mech, delay):
    """``u_t``, the membrane the decay ``a`` multiplied at each step, as :func:`_lif_loop`
    computed it: ``v0`` (reset by ``r0`` when delayed "zero"), then ``w_{t-1}`` after its
    reset ("zero": ``(1 - s) * w``, "subtract" when immediate: ``w - s * thr``)."""
    u = torch.empty_like(tested)
    w_prev, s_prev = tested[:-1], spikes[:-1]
    u[0] = torch.neg(r0).add_(1).mul_(v0) if delay and mech == "zero" else v0
    if mech == "zero":
        torch.neg(s_prev, out=u[1:]).add_(1).mul_(w_prev)
    elif mech == "subtract" and not delay:
        torch.addcmul(w_prev, s_prev, thr, value=-1, out=u[1:])
    else:
        u[1:] = w_prev
    return u


def _delayed_recurrence(q, g_last, a, factor):
    """In place: ``q_t += f_t * q_{t+1}`` from the end, ``q_{T-1} += g_last``, with
    ``f_t = factor_t`` (or ``a`` when None); ``q`` becomes dL/dv_t."""
    qs = q.unbind(0)
    fs = factor.unbind(0) if factor is not None else None
    g = qs[-1].add_(g_last)
    for t in range(len(qs) - 2, -1, -1):
        g = qs[t].addcmul_(a if fs is None else fs[t], g)


def _immediate_recurrence(q, g_last, a, keep, want_h):
    """In place: ``q_t += keep_t * h_t`` with ``h_t = a * g_{t+1}``, ``h_{T-1} = g_last``,
    so ``q`` becomes dL/dw_t (before the reset). Returns the ``h_t`` (dL/dv_t, after the
    reset) when ``want_h``, else None."""
    hs = torch.empty_like(q) if want_h else None
    h = g_last
    buf = torch.empty_like(q[0])
    qs, ks = q.unbind(0), None if keep is None else keep.unbind(0)
    h_views = None if hs is None else hs.unbind(0)
    for t in range(len(qs) - 1, -1, -1):
        if h_views is not None:
            h_views[t].copy_(h)
        g = qs[t].add_(h) if ks is None else qs[t].addcmul_(ks[t], h)
        h = torch.mul(a, g, out=buf)
    return hs


def _reduce_to(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a [T, B, *shape] gradient down to a broadcast parameter's ``shape``."""
    g = g.sum(dim=(0, 1))
    while g.dim() > len(shape):
        g = g.sum(0)
    for d, n in enumerate(shape):
        if n == 1 and g.shape[d] != 1:
            g = g.sum(d, keepdim=True)
    return g


class SkipModule(nn.Module):
    """Joins branches: ``residual`` sums its inputs, ``concatenate`` concatenates them
    along dim 1 (channels/features, batch first) in edge-list order, ``passthrough``
    returns its single input.

    Args:
        skip_type: one of ``t1c.ir.SKIP_TYPES``.
    """

    #: The executor passes each incoming edge's value as a separate argument.
    multi_input = True

    def __init__(self, skip_type: str = "passthrough") -> None:
        super().__init__()
        if skip_type not in ir.SKIP_TYPES:
            raise ValueError(f"SkipModule(skip_type={skip_type!r}): must be one of {list(ir.SKIP_TYPES)}")
        self.skip_type = skip_type

    @classmethod
    def from_node(cls, node: ir.Skip) -> SkipModule:
        """Build from an ``ir.Skip`` node."""
        return cls(node.skip_type)

    def to_node(self) -> ir.Skip:
        """The ``ir.Skip`` node."""
        return ir.Skip(skip_type=self.skip_type)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if not inputs:
            raise ValueError("SkipModule got no input")
        if self.skip_type == "concatenate":
            return torch.cat(inputs, dim=1)
        if self.skip_type == "passthrough":
            if len(inputs) != 1:
                raise ValueError(f"a passthrough SkipModule takes one input, got {len(inputs)}")
            return inputs[0]
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out

    def extra_repr(self) -> str:
        return f"skip_type={self.skip_type!r}"


class SepConv2dModule(nn.Module):
    """Depthwise-separable convolution: ``pointwise(depthwise(x))``.

    Args:
        in_channels: C, the depthwise conv's channels (groups = C).
        out_channels: C', the pointwise 1x1 conv's outputs.
        kernel_size, stride, padding, dilation: of the depthwise conv.
        bias: give both convs a bias.

    Attributes:
        depthwise: ``nn.Conv2d(C, C, kernel_size, stride, padding, dilation, groups=C)``.
        pointwise: ``nn.Conv2d(C, C', 1)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=bias,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    @classmethod
    def from_node(cls, node: ir.SepConv2d) -> SepConv2dModule:
        """Build from an ``ir.SepConv2d`` node, copying its weights."""
        dw, pw = node.depthwise_weight, node.pointwise_weight
        module = cls(
            dw.shape[0],
            pw.shape[0],
            tuple(dw.shape[2:]),
            stride=tuple(node.stride.tolist()),
            padding=tuple(node.padding.tolist()),
            dilation=tuple(node.dilation.tolist()),
        )
        with torch.no_grad():
            module.depthwise.weight.copy_(torch.from_numpy(dw))
            module.depthwise.bias.copy_(torch.from_numpy(node.depthwise_bias))
            module.pointwise.weight.copy_(torch.from_numpy(pw))
            module.pointwise.bias.copy_(torch.from_numpy(node.pointwise_bias))
        return module

    def to_node(self) -> ir.SepConv2d:
        """The ``ir.SepConv2d`` node with the current weights (missing biases are zero)."""
        dw, pw = self.depthwise, self.pointwise
        return ir.SepConv2d(
            depthwise_weight=as_numpy(dw.weight),
            pointwise_weight=as_numpy(pw.weight),
            depthwise_bias=as_numpy(dw.bias),
            pointwise_bias=as_numpy(pw.bias),
            stride=dw.stride,
            padding=dw.padding,
            dilation=dw.dilation,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SpikingAffineModule(nn.Linear):
    """An ``nn.Linear`` (identical in float) with the hardware hints of ``SpikingAffine``.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        spike_mode: what the input spikes carry: one of ``t1c.ir.SPIKE_MODES``.
        weight_bits: signed integer width of the weights on chip (1..32).
        accumulator_bits: width of the saturating accumulator (weight_bits..64).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        spike_mode: str = "binary",
        weight_bits: int = 8,
        accumulator_bits: int = 16,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if spike_mode not in ir.SPIKE_MODES:
            raise ValueError(
                f"SpikingAffineModule(spike_mode={spike_mode!r}): must be one of {list(ir.SPIKE_MODES)}"
            )
        if not isinstance(weight_bits, int) or not 1 <= weight_bits <= 32:
            raise ValueError(f"SpikingAffineModule(weight_bits={weight_bits!r}): must be an int in 1..32")
        if not isinstance(accumulator_bits, int) or not weight_bits <= accumulator_bits <= 64:
            raise ValueError(
                f"SpikingAffineModule(accumulator_bits={accumulator_bits!r}): must be an int in "
                f"weight_bits..64 ({weight_bits}..64)"
            )
        self.spike_mode = spike_mode
        self.weight_bits = weight_bits
        self.accumulator_bits = accumulator_bits

    @classmethod
    def from_node(cls, node: ir.SpikingAffine) -> SpikingAffineModule:
        """Build from an ``ir.SpikingAffine`` node, copying weights and hints."""
        out_f, in_f = node.weight.shape
        module = cls(in_f, out_f, True, node.spike_mode, node.weight_bits, node.accumulator_bits)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(node.weight))
            module.bias.copy_(torch.from_numpy(node.bias))
        return module

    def to_node(self) -> ir.SpikingAffine:
        """The ``ir.SpikingAffine`` node with the current weights and hints."""
        return ir.SpikingAffine(
            weight=as_numpy(self.weight),
            bias=as_numpy(self.bias),
            spike_mode=self.spike_mode,
            weight_bits=self.weight_bits,
            accumulator_bits=self.accumulator_bits,
        )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, spike_mode={self.spike_mode!r}, "
            f"weight_bits={self.weight_bits}, accumulator_bits={self.accumulator_bits}"
        )


__all__ = ["LIFModule", "SepConv2dModule", "SkipModule", "SpikingAffineModule"]
