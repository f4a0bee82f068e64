"""Input encodings: how a static sample becomes a ``[T, B, ...]`` sequence for the SNN.

All encodings live here so that training, validation, the export callback and the
demo encode the same way, and so that a seeded :class:`torch.Generator` makes an
encoding exactly reproducible (the export callback compares the live network with the
exported file on identical spike trains).

* ``"rate"``: each step draws Bernoulli spikes with probability ``clamp(x, 0, 1)``, as
  ``snntorch.spikegen.rate`` does (intensities outside [0, 1] are clipped).
* ``"direct"``: ``x`` is repeated at every step (a constant input current), as
  ``x.repeat(T, ...)`` in snnTorch tutorials.

Example:
    >>> import torch
    >>> xs = encode(torch.tensor([[0.0, 1.0]]), num_steps=3, encoding="rate")
    >>> xs.shape, xs[:, 0, 1].tolist()
    (torch.Size([3, 1, 2]), [1.0, 1.0, 1.0])
    >>> encode(torch.tensor([[0.5]]), 2, "direct").flatten().tolist()
    [0.5, 0.5]
"""

from __future__ import annotations

import torch
from torch import Tensor

ENCODINGS = ("rate", "direct")

__all__ = ["ENCODINGS", "check_encoding", "encode"]


def check_encoding(encoding: str) -> str:
    """``encoding`` itself when it is one of :data:`ENCODINGS`; a ``ValueError`` naming the choices otherwise."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {list(ENCODINGS)}, got {encoding!r}")
    return encoding


def encode(
    x: Tensor, num_steps: int, encoding: str = "rate", generator: torch.Generator | None = None
) -> Tensor:
    """Encode a batch ``x`` of shape ``[B, ...]`` as a sequence ``[num_steps, B, ...]``.

    Args:
        x: the static batch (pixel intensities in [0, 1] for ``"rate"``).
        num_steps: number of time steps T (>= 1).
        encoding: ``"rate"`` (Bernoulli spikes) or ``"direct"`` (repeated input).
        generator: a seeded generator for reproducible rate spikes; it must live on
            ``x``'s device. ``None`` uses torch's global random state.

    Returns:
        a float tensor ``[num_steps, *x.shape]`` on ``x``'s device.
    """
    check_encoding(encoding)
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    x = x if x.is_floating_point() else x.float()
    if encoding == "direct":
        return x.unsqueeze(0).expand(num_steps, *x.shape).clone()
    p = x.clamp(0.0, 1.0).unsqueeze(0).expand(num_steps, *x.shape)
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(
            f"the generator lives on {generator.device} but the input on {x.device}; create it there"
        )
    return torch.bernoulli(p, generator=generator)
