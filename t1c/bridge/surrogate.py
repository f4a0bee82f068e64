"""Surrogate-gradient spike functions: an exact Heaviside forward, a smooth backward.

A spiking neuron fires with a step function, whose derivative is zero almost
everywhere, so training needs a *surrogate* derivative in the backward pass. The
forward value must stay exactly the step function, otherwise an imported graph would
not spike like the file says.

The default, :func:`atan`, is snnTorch's default (``snntorch.surrogate.atan``, the one
``snn.Leaky`` uses): the same forward and the same backward formula, operation for
operation, so gradients match snnTorch bit for bit. It is implemented here so that
``t1c.bridge`` can know its derivative in closed form (the fused time loop of
:meth:`t1c.bridge.LIFModule.forward_sequence` uses it) and runs without snnTorch.

Any snnTorch surrogate (``snntorch.surrogate.fast_sigmoid()``, ...) or any callable
``f(x) -> spikes`` that fires on ``x > 0`` works too: :func:`spike` corrects its forward
value to the exact step and keeps its gradient.

Example:
    >>> import torch
    >>> from t1c.bridge.surrogate import atan, spike
    >>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    >>> s = spike(x, atan(), strict=False)
    >>> s
    tensor([0., 1., 1.], grad_fn=<_ATanSpikeBackward>)
    >>> s.sum().backward()
    >>> x.grad  # snnTorch's atan'(x) = 1 / (1 + (pi * x)^2)
    tensor([0.2884, 1.0000, 0.2884])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


def heaviside(x: torch.Tensor, strict: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """The step ``x > 0`` (``strict``) or ``x >= 0`` as 1.0 / 0.0 in ``x``'s dtype, no gradient.

    One comparison kernel writing floats: the same values as ``(x > 0).to(x.dtype)``,
    without a boolean tensor and a cast (several times slower on CPU).

    Args:
        x: membrane minus threshold.
        strict: fire on ``x > 0`` instead of ``x >= 0``.
        out: where to write (shaped like ``x``); a new tensor when None.
    """
    if x.requires_grad:
        x = x.detach()
    if out is None:
        out = torch.empty_like(x)
    return torch.gt(x, 0, out=out) if strict else torch.ge(x, 0, out=out)


class _ATanSpike(torch.autograd.Function):
    """Heaviside forward (strict ``x > 0`` or not ``x >= 0``), arc-tan backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float, strict: bool) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return heaviside(x, strict)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: D102
        (x,) = ctx.saved_tensors
        return atan_derivative(x, ctx.alpha) * grad_output, None, None


def atan_derivative(x: torch.Tensor, alpha: float, inplace: bool = False) -> torch.Tensor:
    """The arc-tan surrogate derivative, written exactly as snnTorch's ``ATan.backward``.

    Args:
        x: membrane minus threshold.
        alpha: slope (snnTorch's default is 2).
        inplace: overwrite ``x`` with the result (the same values, no temporaries).
    """
    if not inplace:
        return alpha / 2 / (1 + (math.pi / 2 * alpha * x).pow_(2))
    # The same operations in the same order: ``k * x``, its square, ``+ 1``, and
    # ``(alpha / 2) / .``, which torch computes as ``reciprocal(.) * (alpha / 2)``.
    return x.mul_(math.pi / 2 * alpha).square_().add_(1).reciprocal_().mul_(alpha / 2)


class ATan:
    """snnTorch's default surrogate: ``d spike / dx = (alpha/2) / (1 + (pi/2 * alpha * x)^2)``.

    Args:
        alpha: slope of the arc-tan; snnTorch's default is 2.

    Calling it on ``x`` gives the strict step ``x > 0`` (as snnTorch's surrogates do);
    :func:`spike` also uses it for the non-strict step ``x >= 0``.
    """

    def __init__(self, alpha: float = 2.0) -> None:
        if not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ValueError(f"atan(alpha={alpha!r}): alpha must be a positive number")
        self.alpha = float(alpha)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _ATanSpike.apply(x, self.alpha, True)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative at ``x``, used by fused backward passes."""
        return atan_derivative(x, self.alpha)

    def __repr__(self) -> str:
        return f"atan(alpha={self.alpha})"


def atan(alpha: float = 2.0) -> ATan:
    """snnTorch's default surrogate (``snntorch.surrogate.atan``), see :class:`ATan`."""
    return ATan(alpha)


def spike(x: torch.Tensor, spike_grad: SpikeFn, strict: bool) -> torch.Tensor:
    """Exact step of ``x`` in ``x``'s dtype, with ``spike_grad``'s gradient.

    Args:
        x: membrane minus threshold.
        spike_grad: a surrogate: :class:`ATan`, an snnTorch surrogate or any callable.
        strict: fire on ``x > 0`` (snnTorch) instead of ``x >= 0`` (plain T1C-IR LIF).
    """
    if not (x.requires_grad and torch.is_grad_enabled()):
        return heaviside(x, strict)  # no gradient: skip autograd
    if type(spike_grad) is ATan:
        return _ATanSpike.apply(x, spike_grad.alpha, strict)
    out = spike_grad(x)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise ValueError(
            f"spike_grad {spike_grad!r} must map a tensor to spikes of the same shape, "
            f"got {type(out).__name__} {getattr(out, 'shape', '')}"
        )
    exact = heaviside(x, strict)
    if out.dtype != x.dtype:
        out = out.to(x.dtype)
    return out + (exact - out).detach()


def resolve(spike_grad: SpikeFn | None) -> SpikeFn:
    """``spike_grad`` itself, or the default :func:`atan` when None."""
    if spike_grad is None:
        return atan()
    if not callable(spike_grad):
        raise TypeError(
            f"spike_grad must be a surrogate such as t1c.bridge.surrogate.atan() or "
            f"snntorch.surrogate.fast_sigmoid(), got {spike_grad!r}"
        )
    return spike_grad
