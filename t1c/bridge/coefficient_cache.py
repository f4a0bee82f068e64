"""Values a neuron module derives from its parameters once, reused while the parameters are unchanged.

A neuron's per-step coefficients (``clamp(beta, 0, 1)``, ``1 - 1/tau``, ...) depend only on
its parameters, so :func:`cached_coefficients` computes them once and hands back the same
tensors at every later step, as long as each source tensor is the same object at the same
version: an in-place update (an optimizer step, ``.copy_()``) bumps the version, and
``.to()`` or a new ``nn.Parameter`` replaces the object, and either recomputes them. While
autograd records a source that requires a gradient they are computed afresh at every call,
so the gradient reaches the parameter.

Example:
    >>> import torch
    >>> from torch import nn
    >>> owner = nn.Module()
    >>> owner._coef_cache = None
    >>> beta = torch.tensor([1.5])
    >>> first = cached_coefficients(owner, (beta,), lambda: beta.clamp(0, 1))
    >>> first is cached_coefficients(owner, (beta,), lambda: beta.clamp(0, 1))
    True
    >>> _ = beta.mul_(0.5)  # in place: a new version
    >>> cached_coefficients(owner, (beta,), lambda: beta.clamp(0, 1))
    tensor([0.7500])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

Coefficients = TypeVar("Coefficients")


def cached_coefficients(
    module: nn.Module, sources: Sequence[torch.Tensor | None], compute: Callable[[], Coefficients]
) -> Coefficients:
    """``compute()``, cached in ``module._coef_cache`` while ``sources`` are unchanged.

    Args:
        module: the owner; its ``_coef_cache`` attribute (None at first) holds the cache.
        sources: the tensors the coefficients are computed from (None entries allowed).
        compute: computes the coefficients from ``sources``.

    Returns:
        What ``compute()`` returns: a fresh value when autograd records a source that
        requires a gradient; otherwise the cached value (computed without a graph) as long as
        every source is the same object at the same version, in the same inference mode.
    """
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in sources):
        return compute()
    # Holding the sources themselves makes the identity test safe (their memory cannot be
    # reused); tensors made in inference mode cannot enter autograd later, hence the flag.
    key = (tuple(None if t is None else t._version for t in sources), torch.is_inference_mode_enabled())
    cache = module._coef_cache
    if cache is None or cache[1] != key or any(a is not b for a, b in zip(cache[0], sources, strict=True)):
        with torch.no_grad():
            cache = module._coef_cache = (tuple(sources), key, compute())
    return cache[2]


__all__ = ["cached_coefficients"]
