"""Quantized arithmetic as pure functions: what the chip computes with ``weight_bits``
weights and a saturating accumulator.

* weights are rounded to ``weight_bits`` signed integers with one symmetric scale per
  tensor (:func:`quantize_weights`), the bias to the same scale inside the accumulator
  range (:func:`quantize_bias`);
* a layer accumulates ``x @ w_int.T + b_int`` and saturates the sum at
  ``accumulator_bits`` (:func:`saturate`), then multiplies by the scale so that the
  neurons downstream see float currents on the original scale
  (:func:`quantized_linear`, :func:`quantized_conv2d`).

Tested against a brute-force integer loop (``tests/bridge/test_quantize.py``).

Example:
    >>> import torch
    >>> w_int, scale = quantize_weights(torch.tensor([[0.5, -1.0], [0.25, 0.0]]), bits=4)
    >>> w_int.tolist(), scale
    ([[4, -7], [2, 0]], 0.14285714285714285)
    >>> b_int = quantize_bias(torch.zeros(2), scale, accumulator_bits=8)
    >>> quantized_linear(torch.tensor([[1.0, 1.0]]), w_int, b_int, scale, accumulator_bits=8)
    tensor([[-0.4286,  0.2857]])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# The accumulator is simulated in float64: every integer below 2**53 is exact, which covers
# binary spikes times weights of up to 32 bits over any realistic fan-in.
ACCUMULATOR_DTYPE = torch.float64
# A float64 convolution on CPU runs over chunks of the batch whose im2col columns and sums hold
# about this many elements (2 MiB: they stay in cache and in malloc's heap, where torch's one
# buffer for the whole batch is fresh memory, zero-filled and faulted in page by page).
_CONV_CHUNK_ELEMENTS = 1 << 18
# Chunks start at multiples of this many samples: each sample's buffers then sit at the same
# offsets modulo 64 bytes as in one call for the whole batch (the BLAS kernels may round
# differently at another alignment).
_CONV_ALIGNMENT = 8


def check_bits(bits: int, name: str, low: int, high: int) -> int:
    """``bits`` as an int, checked to be an integer in ``low..high`` (``name`` for the message)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not low <= bits <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {bits!r}")
    return int(bits)


def weight_range(bits: int) -> int:
    """Largest integer magnitude of a ``bits``-bit symmetric weight (1 for the 1-bit sign code)."""
    bits = check_bits(bits, "weight_bits", 1, 32)
    return 1 if bits == 1 else 2 ** (bits - 1) - 1


def accumulator_range(accumulator_bits: int) -> tuple[int, int]:
    """``(low, high)`` of a two's-complement accumulator of ``accumulator_bits`` bits."""
    bits = check_bits(accumulator_bits, "accumulator_bits", 1, 64)
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def quantize_weights(w: Tensor, bits: int) -> tuple[Tensor, float]:
    """Symmetric per-tensor quantization of a weight tensor to ``bits``-bit signed integers.

    ``scale = max|w| / (2**(bits-1) - 1)`` and ``w_int = clamp(round(w / scale))`` with
    round-half-to-even (``torch.round``), so ``w ~= w_int * scale``. The grid is symmetric
    (``-(2**(bits-1) - 1)`` .. ``2**(bits-1) - 1``): the most negative code is unused, so
    zero stays exactly representable and the sign is preserved.

    ``bits == 1`` is the sign code: ``w_int = +1`` where ``w >= 0`` else ``-1``, with
    ``scale = mean|w|`` (the L1-optimal binary scale). An all-zero tensor gives zeros with
    scale 1, so the scale is always positive (the file format requires it).

    Args:
        w: float weights of any shape.
        bits: weight width, 1..32.

    Returns:
        ``(w_int, scale)``: an int64 tensor of ``w``'s shape and a positive Python float.
    """
    bits = check_bits(bits, "weight_bits", 1, 32)
    w = w.detach().to(torch.float64)
    max_abs = float(w.abs().max()) if w.numel() else 0.0
    if max_abs == 0.0 or not np.isfinite(max_abs):
        if not np.isfinite(max_abs):
            raise ValueError("cannot quantize weights that contain inf or NaN")
        return torch.zeros(w.shape, dtype=torch.int64, device=w.device), 1.0
    if bits == 1:
        scale = float(w.abs().mean())
        return torch.where(w >= 0, 1, -1).to(torch.int64), scale
    q = weight_range(bits)
    scale = max_abs / q
    w_int = torch.round(w / scale).clamp_(-q, q).to(torch.int64)
    return w_int, scale


def quantize_bias(b: Tensor | None, scale: float, accumulator_bits: int, n: int | None = None) -> Tensor:
    """The bias in accumulator units: ``clamp(round(b / scale))`` into the accumulator range.

    The bias is added to the accumulator before saturation, so it shares the weights' scale
    and may use the accumulator's full width. A missing bias is zeros of length ``n``.
    """
    low, high = accumulator_range(accumulator_bits)
    if b is None:
        if n is None:
            raise ValueError("quantize_bias needs n (the number of outputs) when the bias is None")
        return torch.zeros(n, dtype=torch.int64)
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    b = b.detach().to(torch.float64)
    return torch.round(b / scale).clamp_(low, high).to(torch.int64)


def quantize_layer(
    weight: Tensor, bias: Tensor | None, weight_bits: int, accumulator_bits: int
) -> tuple[Tensor, Tensor, float]:
    """A synapse's ``(w_int, b_int, scale)``: weights at ``weight_bits``, the bias at their scale."""
    w_int, scale = quantize_weights(weight, weight_bits)
    return w_int, quantize_bias(bias, scale, accumulator_bits, n=w_int.shape[0]), scale


def saturate(acc: Tensor, accumulator_bits: int) -> Tensor:
    """Clamp an accumulator to ``[-2**(bits-1), 2**(bits-1) - 1]`` (saturating, not wrapping)."""
    low, high = accumulator_range(accumulator_bits)
    return acc.clamp(low, high)


def scaled_output(acc: Tensor, scale: float, accumulator_bits: int, like: Tensor) -> Tensor:
    """``saturate(acc) * scale`` in ``like``'s float dtype; ``acc`` (the caller's own fresh
    accumulator) is overwritten: in place, large batches allocate no further float64 tensors."""
    low, high = accumulator_range(accumulator_bits)
    return acc.clamp_(low, high).mul_(scale).to(output_dtype(like))


def output_dtype(like: Tensor) -> torch.dtype:
    """The dtype of a quantized layer's output for input ``like``: its own if float, else the default."""
    return like.dtype if like.is_floating_point() else torch.get_default_dtype()


def quantized_linear(
    x: Tensor, w_int: Tensor, b_int: Tensor | None, scale: float, accumulator_bits: int
) -> Tensor:
    """``scale * saturate(x @ w_int.T + b_int, accumulator_bits)``.

    With integer inputs (binary 0/1 spikes, spike counts) the accumulator holds exact
    integers, as on chip. Graded or rate-coded float inputs are used as they are: the sum
    ``x @ w_int.T`` is then a real number in units of ``scale`` and is saturated at the
    same integer bounds; the result is what a chip with a fixed-point input of unlimited
    precision would compute.

    Args:
        x: ``[..., in]`` inputs.
        w_int: ``[out, in]`` integer weights from :func:`quantize_weights`.
        b_int: ``[out]`` integer bias from :func:`quantize_bias`, or None.
        scale: the weights' scale; the output is in float units again.
        accumulator_bits: accumulator width, 1..64.

    Returns:
        ``[..., out]`` float currents, in ``x``'s dtype.
    """
    acc = F.linear(
        x.to(ACCUMULATOR_DTYPE),
        w_int.to(ACCUMULATOR_DTYPE),
        None if b_int is None else b_int.to(ACCUMULATOR_DTYPE),
    )
    return scaled_output(acc, scale, accumulator_bits, x)


def quantized_conv2d(
    x: Tensor,
    w_int: Tensor,
    b_int: Tensor | None,
    scale: float,
    accumulator_bits: int,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> Tensor:
    """:func:`quantized_linear` for a 2-D convolution (``torch.nn.functional.conv2d`` arguments).

    Each output element accumulates its receptive field plus the bias, then saturates. On
    CPU a batch goes through ``F.conv2d`` in chunks of samples (:func:`conv2d_by_chunks`),
    each saturated and scaled into the output: the same float64 sums, bit for bit (each
    sample's sums are one GEMM of its own, whatever the batch), without the float64 im2col
    buffer that torch fills for the whole batch at once and then reads back from memory
    (4x faster on [4800, 1, 8, 8] digit images).
    """
    w = w_int.to(ACCUMULATOR_DTYPE)
    b = None if b_int is None else b_int.to(ACCUMULATOR_DTYPE)

    def accumulated(part: Tensor) -> Tensor:
        return F.conv2d(part.to(ACCUMULATOR_DTYPE), w, b, stride, padding, dilation, groups)

    if x.ndim != 4 or x.device.type != "cpu":
        return scaled_output(accumulated(x), scale, accumulator_bits, x)
    low, high = accumulator_range(accumulator_bits)
    dtype = output_dtype(x)
    return conv2d_by_chunks(x, accumulated, lambda acc: acc.clamp_(low, high).mul_(scale).to(dtype), w)


def conv2d_by_chunks(
    x: Tensor, conv: Callable[[Tensor], Tensor], finish: Callable[[Tensor], Tensor], w: Tensor
) -> Tensor:
    """``finish(conv(part))`` for consecutive chunks ``part`` of the batch ``x`` (a convolution
    with weights shaped as ``w``, and what is done with its sums), joined along the batch.

    A chunk's im2col columns and sums stay within :data:`_CONV_CHUNK_ELEMENTS` (in cache, and
    in malloc's heap: torch's and oneDNN's buffers for a whole batch are fresh memory, faulted
    in page by page), and chunks start at multiples of :data:`_CONV_ALIGNMENT` samples, so
    each sample's sums are those of one call for the whole batch, bit for bit.
    """
    first = finish(conv(x[:_CONV_ALIGNMENT]))
    if len(x) <= _CONV_ALIGNMENT:
        return first
    out = first.new_empty((len(x), *first.shape[1:]))
    out[:_CONV_ALIGNMENT] = first
    positions = first.shape[2] * first.shape[3]
    per_sample = (w.shape[1] * w.shape[2] * w.shape[3] + w.shape[0]) * positions
    chunk = max(1, _CONV_CHUNK_ELEMENTS // (per_sample * _CONV_ALIGNMENT)) * _CONV_ALIGNMENT
    for start in range(_CONV_ALIGNMENT, len(x), chunk):
        out[start : start + chunk] = finish(conv(x[start : start + chunk]))
    return out
