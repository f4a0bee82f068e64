"""Input encodings: how a batch becomes a ``[T, B, ...]`` sequence for the SNN.

All encodings live here so that training, validation, the export callback and the
demo encode the same way, and so that evaluation is exactly reproducible (the export
callback compares the live network with the exported file on identical spike trains).

* ``"rate"``: each step draws Bernoulli spikes with probability ``clamp(x, 0, 1)``, as
  ``snntorch.spikegen.rate`` does (intensities outside [0, 1] are clipped).
* ``"direct"``: ``x`` is repeated at every step (a constant input current), as
  ``x.repeat(T, ...)`` in snnTorch tutorials.
* ``"sequence"``: the batch already holds its time steps (event frames, audio bins):
  ``[B, T, ...]`` as tonic's ``PadTensors`` collates it, or ``[T, B, ...]`` with
  ``time_first=True``; it is only moved to time-first order.

Reproducible rate spikes for evaluation. :func:`sample_seeds` gives every sample a seed
computed from its own values and a global seed (an exact integer hash of the float32
bits), and :func:`encode` with ``seeds=`` draws each sample's spikes from its own
generator. A sample's spike train then depends only on the sample and the global
seed: not on the batch it comes in, its position there, the batch size, the shuffling,
the number of devices or their kind (the draws happen on the CPU), and it works for any
dataset (no sample index needed).

Example:
    >>> import torch
    >>> xs = encode(torch.tensor([[0.0, 1.0]]), num_steps=3, encoding="rate")
    >>> xs.shape, xs[:, 0, 1].tolist()
    (torch.Size([3, 1, 2]), [1.0, 1.0, 1.0])
    >>> encode(torch.tensor([[0.5]]), 2, "direct").flatten().tolist()
    [0.5, 0.5]
    >>> encode(torch.zeros(4, 7, 3), None, "sequence").shape   # [B, T, ...] -> [T, B, ...]
    torch.Size([7, 4, 3])
    >>> x = torch.rand(5, 8)
    >>> alone = encode(x[2:3], 10, "rate", seeds=sample_seeds(x[2:3], 0))
    >>> torch.equal(alone[:, 0], encode(x, 10, "rate", seeds=sample_seeds(x, 0))[:, 2])
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

ENCODINGS = ("rate", "direct", "sequence")

__all__ = ["ENCODINGS", "check_encoding", "encode", "is_count", "sample_seeds"]

_PRIME = (1 << 31) - 1  # hash arithmetic modulo a prime < 2**31 stays exact in int64
_MASK64 = (1 << 64) - 1


def is_count(value: object, minimum: int = 1) -> bool:
    """Whether ``value`` is an ``int`` (not a bool) of at least ``minimum``."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def check_encoding(encoding: str) -> str:
    """``encoding`` itself when it is one of :data:`ENCODINGS`; a ``ValueError`` naming the choices otherwise."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {list(ENCODINGS)}, got {encoding!r}")
    return encoding


def encode(
    x: Tensor,
    num_steps: int | None,
    encoding: str = "rate",
    generator: torch.Generator | None = None,
    *,
    seeds: Sequence[int] | None = None,
    time_first: bool = False,
) -> Tensor:
    """Encode a batch as a time-first sequence ``[T, B, ...]``.

    Args:
        x: the batch: static samples ``[B, ...]`` (pixel intensities in [0, 1] for
            ``"rate"``), or for ``"sequence"`` samples with their steps, ``[B, T, ...]``
            (``[T, B, ...]`` when ``time_first``).
        num_steps: number of time steps T (>= 1). For ``"sequence"``, None takes T from
            the data, and a number must equal the data's T.
        encoding: ``"rate"``, ``"direct"`` or ``"sequence"`` (see the module docstring).
        generator: a seeded generator for reproducible rate spikes of the whole batch; it
            must live on ``x``'s device. ``None`` uses torch's global random state.
        seeds: one seed per sample (:func:`sample_seeds`): each sample's rate spikes come
            from its own generator, so they do not depend on the rest of the batch.
            Exclusive with ``generator``; ignored by the deterministic encodings.
        time_first: ``"sequence"`` only: ``x`` is ``[T, B, ...]`` rather than ``[B, T, ...]``.

    Returns:
        a float tensor ``[T, B, ...]`` on ``x``'s device.

    Raises:
        ValueError: a bad argument, or a sequence whose number of steps differs from ``num_steps``.
    """
    check_encoding(encoding)
    if encoding == "sequence":
        return _sequence(x, num_steps, time_first)
    if not is_count(num_steps):
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    x = x if x.is_floating_point() else x.float()
    if encoding == "direct":
        return x.unsqueeze(0).expand(num_steps, *x.shape).clone()
    if seeds is not None:
        if generator is not None:
            raise ValueError("encode() takes a generator or per-sample seeds, not both")
        return _rate_per_sample(x, num_steps, seeds)
    p = x.clamp(0.0, 1.0).unsqueeze(0).expand(num_steps, *x.shape)
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(
            f"the generator lives on {generator.device} but the input on {x.device}; create it there"
        )
    return torch.bernoulli(p, generator=generator)


def sample_seeds(x: Tensor, seed: int) -> list[int]:
    """One seed per sample of ``x [B, ...]``, from the sample's values and a global ``seed``.

    The key of a sample is an exact integer hash of its float32 bits (two universal hashes
    modulo 2**31 - 1 with fixed weights per position), computed on ``x``'s device; equal
    samples get equal seeds whatever their batch, and any change of a value changes it.

    Args:
        x: a batch ``[B, ...]``.
        seed: the global seed (e.g. ``T1CModule``'s ``eval_seed``).

    Returns:
        ``B`` seeds in ``[0, 2**63)``.
    """
    if x.ndim < 1:
        raise ValueError(f"sample_seeds needs a batch [B, ...], got a tensor of shape {list(x.shape)}")
    flat = x.detach().to(torch.float32).reshape(len(x), -1).contiguous()
    bits = (flat.view(torch.int32).to(torch.int64) & 0xFFFFFFFF) % _PRIME
    weights = _hash_weights(flat.shape[1]).to(flat.device)  # [2, n], values in [1, PRIME)
    keys = [((bits * w) % _PRIME).sum(1) % _PRIME for w in weights]
    mixed = [
        (int(seed) ^ ((int(a) << 31) | int(b))) & _MASK64 for a, b in zip(keys[0].tolist(), keys[1].tolist())
    ]
    return (_splitmix64(np.array(mixed, dtype=np.uint64)) >> np.uint64(1)).tolist()


# -- helpers -------------------------------------------------------------------------------
def _sequence(x: Tensor, num_steps: int | None, time_first: bool) -> Tensor:
    """``x`` as ``[T, B, ...]`` float, checked against ``num_steps``."""
    if x.ndim < 3:
        layout = "[T, B, ...]" if time_first else "[B, T, ...]"
        raise ValueError(
            f"encoding='sequence' needs batches {layout} with at least one feature dimension, "
            f"got shape {list(x.shape)}; for static samples use encoding='rate' or 'direct'"
        )
    dim = 0 if time_first else 1
    steps = int(x.shape[dim])
    if num_steps is not None and steps != num_steps:
        raise ValueError(
            f"encoding='sequence': the batch holds {steps} time steps (dim {dim} of shape {list(x.shape)}) "
            f"but num_steps={num_steps}; set num_steps to {steps} or to None (taken from the data), "
            f"or bin the events into {num_steps} steps"
        )
    xs = x if time_first else x.transpose(0, 1)
    return xs if xs.is_floating_point() else xs.float()


def _rate_per_sample(x: Tensor, num_steps: int, seeds: Sequence[int]) -> Tensor:
    """Rate spikes ``[T, B, ...]`` with sample ``i`` drawn from a CPU generator seeded with ``seeds[i]``.

    The draws happen on the CPU whatever ``x``'s device (then move there), so a sample's
    spikes are the same on every device, not only whatever the batching.
    """
    seeds = list(seeds)
    if len(seeds) != len(x):
        raise ValueError(f"encode() got {len(seeds)} seeds for a batch of {len(x)} samples")
    probs = x.detach().cpu().clamp(0.0, 1.0)
    out = torch.empty(num_steps, *x.shape, dtype=x.dtype)
    generator = torch.Generator()
    for i, seed in enumerate(seeds):
        p = probs[i].contiguous().unsqueeze(0).expand(num_steps, *x.shape[1:])
        out[:, i] = torch.bernoulli(p, generator=generator.manual_seed(int(seed)))
    return out.to(x.device)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, elementwise on a uint64 array (wrapping arithmetic): a fixed,
    well-mixed 64-bit function."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@lru_cache(maxsize=16)
def _hash_weights(n: int) -> Tensor:
    """Two rows of ``n`` fixed weights in ``[1, 2**31 - 1)``: splitmix64 of the position, in numpy."""
    z = _splitmix64(np.arange(2 * n, dtype=np.uint64) + np.uint64(0x5EED))
    w = (z % np.uint64(_PRIME - 1)).astype(np.int64) + 1
    return torch.from_numpy(w.reshape(2, n))
