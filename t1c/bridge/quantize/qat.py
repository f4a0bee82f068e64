"""Quantization-aware training: straight-through fake quantization of weights.

:func:`fake_quantize` rounds weights onto their ``bits``-bit grid in the forward pass
(exactly the values :func:`~t1c.bridge.quantize.integers.quantize_weights` gives) and
passes gradients straight through; :func:`enable_qat` / :func:`disable_qat` switch a
model's Linear/Conv2d weights (and CubaLIF's one-to-one ``w_rec``) to and from it in place.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..neuron_modules import CubaLIFModule
from .integers import check_bits, quantize_weights


class _RoundToGrid(torch.autograd.Function):
    """Forward: the dequantized weights; backward: identity (straight-through estimator)."""

    @staticmethod
    def forward(ctx, w: Tensor, bits: int) -> Tensor:  # noqa: D102
        w_int, scale = quantize_weights(w, bits)
        return (w_int.to(torch.float64) * scale).to(w.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        return grad, None


def fake_quantize(w: Tensor, bits: int) -> Tensor:
    """Round ``w`` onto its ``bits``-bit grid in the forward pass, pass gradients straight through.

    The forward value is exactly ``w_int * scale`` of :func:`quantize_weights`, so a network
    trained with it is evaluated in float on the very weights the quantized simulation uses.

    Example:
        >>> w = torch.tensor([0.3, -1.0], requires_grad=True)
        >>> fake_quantize(w, 2)
        tensor([ 0., -1.], grad_fn=<_RoundToGridBackward>)
    """
    check_bits(bits, "weight_bits", 1, 32)
    return _RoundToGrid.apply(w, bits)


class FakeQuantize(nn.Module):
    """A ``torch.nn.utils.parametrize`` parametrization: ``weight -> fake_quantize(weight, bits)``."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = check_bits(bits, "weight_bits", 1, 32)

    def forward(self, w: Tensor) -> Tensor:
        return fake_quantize(w, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def synaptic_tensor(module: nn.Module) -> str | None:
    """The name of the synaptic weight tensor QAT rounds in ``module``: an ``nn.Linear``'s or
    ``nn.Conv2d``'s ``weight``, a ``CubaLIFModule``'s one-to-one recurrence ``w_rec``; else None."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        return "weight"
    if isinstance(module, CubaLIFModule) and module.w_rec is not None:
        return "w_rec"
    return None


def enable_qat(executor: nn.Module, weight_bits: int = 8) -> nn.Module:
    """Switch ``executor`` (in place) to quantization-aware training.

    Every ``nn.Linear``/``nn.Conv2d`` weight, and every ``CubaLIFModule``'s ``w_rec`` (a
    synaptic weight, quantized as one: docs/quantization.md), is re-parametrized with
    :class:`FakeQuantize` (``SpikingAffineModule`` with its own ``weight_bits``), so the
    forward pass sees weights on the quantization grid while the optimizer updates the
    float originals (straight-through gradients). Biases stay float during training; the
    quantized simulation rounds them to the weights' scale. Calling it twice is a no-op.

    Returns:
        ``executor`` itself.
    """
    check_bits(weight_bits, "weight_bits", 1, 32)
    for module in executor.modules():
        name = synaptic_tensor(module)
        if name is None or parametrize.is_parametrized(module, name):
            continue
        bits = getattr(module, "weight_bits", weight_bits)
        parametrize.register_parametrization(module, name, FakeQuantize(bits))
    return executor


def disable_qat(executor: nn.Module) -> nn.Module:
    """Undo :func:`enable_qat` in place, keeping the weights on their quantization grid.

    Each parametrized weight becomes a plain parameter holding its fake-quantized value
    (the same ``nn.Parameter`` object as the float original, so an optimizer that holds it
    stays valid), and the modules get their original classes back (exporters that dispatch
    on the module type see ``nn.Linear``, not torch's parametrized subclass).

    Safe on a ``copy.deepcopy`` of a QAT executor: torch's ``remove_parametrizations``
    deletes the weight property from the parametrized class, which a deep copy shares with
    its original, and would break the original; this function never edits that class.
    """
    for module in list(executor.modules()):
        name = synaptic_tensor(module)
        if name is None or not parametrize.is_parametrized(module, name):
            continue
        if set(module.parametrizations) != {name}:  # other tensors parametrized by the user
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)
            continue
        plist = module.parametrizations[name]
        original = plist.original
        with torch.no_grad():
            original.copy_(plist())
        module.__class__ = type(module).__bases__[0]  # torch injects ParametrizedX(X)
        del module.parametrizations
        setattr(module, name, original)
    return executor


def qat_enabled(executor: nn.Module) -> bool:
    """Whether any synaptic weight of ``executor`` is fake-quantized."""
    return any(
        (name := synaptic_tensor(m)) is not None and parametrize.is_parametrized(m, name)
        for m in executor.modules()
    )
