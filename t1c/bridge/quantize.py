"""Quantized simulation: what the chip computes with ``weight_bits`` weights and a saturating accumulator.

The float executor treats ``SpikingAffine`` exactly like ``Affine`` (SEMANTICS.md); this
module is the separate, documented mode in which every synapse runs on integers:

* weights are rounded to ``weight_bits`` signed integers with one symmetric scale per
  tensor (:func:`quantize_weights`), the bias to the same scale inside the accumulator
  range (:func:`quantize_bias`);
* a layer accumulates ``x @ w_int.T + b_int`` and saturates the sum at
  ``accumulator_bits`` (:func:`saturate`), then multiplies by the scale so that the
  neurons downstream see float currents on the original scale
  (:func:`quantized_linear`, :func:`quantized_conv2d`).

The layer is pure functions, tested against a brute-force integer loop; thin modules
(:class:`QuantizedLinear`, :class:`QuantizedConv2d`) and executor-level helpers
(:func:`quantize_executor`, :func:`ir_to_quantized`, :func:`attach_integer_weights`)
sit on top, plus straight-through fake quantization for quantization-aware training
(:func:`fake_quantize`, :func:`enable_qat`, :func:`disable_qat`).

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

import copy
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .. import ir
from ..ir.linear import check_integer_weights

if TYPE_CHECKING:
    from .executor import GraphExecutor
    from .hybrid_modules import SubgraphModule

__all__ = [
    "QuantizedConv2d",
    "QuantizedLinear",
    "attach_integer_weights",
    "batchnorm_folds",
    "disable_qat",
    "enable_qat",
    "fake_quantize",
    "fold_batchnorm_into",
    "ir_to_quantized",
    "quantize_bias",
    "quantize_executor",
    "quantize_layer",
    "quantize_weights",
    "quantized_conv2d",
    "quantized_linear",
    "saturate",
]

# The accumulator is simulated in float64: every integer below 2**53 is exact, which covers
# binary spikes times weights of up to 32 bits over any realistic fan-in.
_ACC_DTYPE = torch.float64
# Integers of magnitude up to 2**24 are exact in float32: a sum whose every partial sum stays
# below this bound gives the same integer in float32 as in float64, in any summation order.
_FLOAT32_EXACT = 2**24
# Element-wise passes that need a float64 (or scratch) copy go through blocks of this many
# elements: a 512 KiB temporary stays in cache and in malloc's heap, where a whole-tensor
# copy of a [T * B, n] accumulator is fresh memory that the CPU must fault in page by page.
_BLOCK = 1 << 16
_INTEGER_NODES = (ir.Affine, ir.SpikingAffine, ir.Conv2d)


# -- pure functions ----------------------------------------------------------------------
def _check_bits(bits: int, name: str, low: int, high: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not low <= bits <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {bits!r}")
    return int(bits)


def weight_range(bits: int) -> int:
    """Largest integer magnitude of a ``bits``-bit symmetric weight (1 for the 1-bit sign code)."""
    bits = _check_bits(bits, "weight_bits", 1, 32)
    return 1 if bits == 1 else 2 ** (bits - 1) - 1


def accumulator_range(accumulator_bits: int) -> tuple[int, int]:
    """``(low, high)`` of a two's-complement accumulator of ``accumulator_bits`` bits."""
    bits = _check_bits(accumulator_bits, "accumulator_bits", 1, 64)
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
    bits = _check_bits(bits, "weight_bits", 1, 32)
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


def _output(acc: Tensor, scale: float, accumulator_bits: int, like: Tensor) -> Tensor:
    """``saturate(acc) * scale`` in ``like``'s float dtype; ``acc`` (the caller's own fresh
    accumulator) is overwritten: in place, large batches allocate no further float64 tensors."""
    low, high = accumulator_range(accumulator_bits)
    return acc.clamp_(low, high).mul_(scale).to(_output_dtype(like))


def _output_dtype(like: Tensor) -> torch.dtype:
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
    acc = F.linear(x.to(_ACC_DTYPE), w_int.to(_ACC_DTYPE), None if b_int is None else b_int.to(_ACC_DTYPE))
    return _output(acc, scale, accumulator_bits, x)


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

    Each output element accumulates its receptive field plus the bias, then saturates.
    """
    acc = F.conv2d(
        x.to(_ACC_DTYPE),
        w_int.to(_ACC_DTYPE),
        None if b_int is None else b_int.to(_ACC_DTYPE),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    return _output(acc, scale, accumulator_bits, x)


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
    _check_bits(bits, "weight_bits", 1, 32)
    return _RoundToGrid.apply(w, bits)


# -- modules -----------------------------------------------------------------------------
class _QuantizedBase(nn.Module):
    """Integer weights and bias kept as buffers (they travel with ``state_dict`` and ``.to()``)."""

    def __init__(
        self, w_int: Tensor, b_int: Tensor | None, scale: float, weight_bits: int, accumulator_bits: int
    ):
        super().__init__()
        self.weight_bits = _check_bits(weight_bits, "weight_bits", 1, 32)
        self.accumulator_bits = _check_bits(accumulator_bits, "accumulator_bits", 1, 64)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = float(scale)
        self.register_buffer("weight_int", torch.as_tensor(w_int, dtype=torch.int64))
        n = self.weight_int.shape[0]
        b = torch.zeros(n, dtype=torch.int64) if b_int is None else torch.as_tensor(b_int, dtype=torch.int64)
        self.register_buffer("bias_int", b)

    @property
    def weight(self) -> Tensor:
        """The dequantized weights ``weight_int * scale`` (float32), for inspection and export."""
        return (self.weight_int.to(torch.float64) * self.scale).to(torch.float32)

    @property
    def bias(self) -> Tensor:
        """The dequantized bias ``bias_int * scale`` (float32)."""
        return (self.bias_int.to(torch.float64) * self.scale).to(torch.float32)

    def extra_repr(self) -> str:
        return (
            f"weight={list(self.weight_int.shape)}, weight_bits={self.weight_bits}, "
            f"accumulator_bits={self.accumulator_bits}, scale={self.scale:.6g}"
        )

    def _operands(self) -> tuple[Tensor, Tensor, float]:
        """``(w, b, reach)``: the integers as float32, computed once per weights (not per batch).

        ``reach`` bounds every partial sum for inputs of magnitude at most 1: the largest
        sum of ``|w|`` over one output's fan-in plus the largest ``|b|``. The cache is
        keyed by the buffers' storage and version, so an in-place change recomputes it; it
        holds the buffers themselves (as ``LIFModule._coefficients`` holds its source),
        so that a replaced buffer's memory cannot be reused by another at the same address.
        """
        w, b = self.weight_int, self.bias_int
        key = (w.data_ptr(), w._version, b.data_ptr(), b._version, w.device, tuple(w.shape))
        cached = self.__dict__.get("_operand_cache")
        if cached is None or cached[0] != key:
            fan_in = w.abs().flatten(1).sum(1) if w.numel() else torch.zeros(1, dtype=w.dtype)
            reach = float(fan_in.max()) + (float(b.abs().max()) if b.numel() else 0.0)
            cached = (key, w.to(torch.float32), b.to(torch.float32), reach, (w, b))
            self.__dict__["_operand_cache"] = cached
        return cached[1], cached[2], cached[3]

    def _float32_sum_bound(self, x: Tensor, reach: float) -> float | None:
        """A bound on every partial sum when ``x`` may accumulate in float32 (it holds integers
        small enough to be exact there), else None.

        Whatever the layer's width: the check is a few reductions over blocks of ``x``, where
        the float64 accumulator needs a float64 copy of all of ``x``, fresh memory (in a fit,
        a 128 -> 10 layer on joined validation batches: measurement 66 -> 45 ms per fit)."""
        if not x.numel():
            return None
        if x.dtype == torch.bool:
            largest = 1.0
        elif x.is_floating_point():
            largest = _largest_integer(x)
            if largest is None:  # a fraction, inf or NaN
                return None
        else:
            low, high = torch.aminmax(x).tolist()
            largest = max(-low, high)
        bound = max(1.0, largest) * reach  # 1: the bias alone
        return bound if bound < _FLOAT32_EXACT else None


def _scaled_in_place(acc: Tensor, scale: float, accumulator_bits: int, sum_bound: float) -> Tensor:
    """``acc`` (float32 holding exact integers, each partial sum within ``sum_bound``) becomes
    ``float32(float64(saturate(acc)) * scale)``, block by block: the values of :func:`_output`
    without a float64 copy of the whole tensor (and no clamp where nothing can saturate)."""
    low, high = accumulator_range(accumulator_bits)
    saturates = sum_bound > high or -sum_bound < low
    flat = acc.view(-1)
    block = torch.empty(min(flat.numel(), _BLOCK), dtype=_ACC_DTYPE, device=acc.device)
    for part in flat.split(_BLOCK):
        wide = block[: part.numel()].copy_(part)
        part.copy_((wide.clamp_(low, high) if saturates else wide).mul_(scale))
    return acc


def _largest_integer(x: Tensor) -> float | None:
    """The largest magnitude in the float tensor ``x`` when every element is an integer, else
    None (a fraction, inf or NaN: their ``frac`` is nonzero or NaN, and NaN fails ``== 0``).

    Block by block into one scratch block, with ``aminmax`` of each block and of its
    fractions (min/max reductions are vectorized on CPU, ``any`` of a float tensor is not:
    4x faster), and one device sync.
    """
    scratch = torch.empty(min(x.numel(), _BLOCK), dtype=x.dtype, device=x.device)
    extremes = []
    for part in x.reshape(-1).split(_BLOCK):
        extremes += torch.aminmax(torch.frac(part, out=scratch[: part.numel()]))
        extremes += torch.aminmax(part)
    per_block = torch.stack(extremes).view(-1, 4).tolist()  # [frac min, frac max, min, max]
    if not all(f_low == 0 and f_high == 0 for f_low, f_high, _, _ in per_block):
        return None
    return max(max(-low, high) for _, _, low, high in per_block)


class QuantizedLinear(_QuantizedBase):
    """A linear layer simulated on integers (:func:`quantized_linear`); evaluation only.

    Build it from a trained layer with :meth:`from_linear` or from a node that carries
    ``weight_int``/``weight_scale``/``bias_int`` with :meth:`from_node`.
    """

    returns_new_tensor = True  # see t1c.bridge.executor.NEW_TENSOR_FORWARDS

    def __init__(
        self,
        w_int: Tensor,
        b_int: Tensor | None,
        scale: float,
        weight_bits: int = 8,
        accumulator_bits: int = 32,
        spike_mode: str | None = None,
    ):
        super().__init__(w_int, b_int, scale, weight_bits, accumulator_bits)
        if self.weight_int.ndim != 2:
            raise ValueError(f"QuantizedLinear needs [out, in] weights, got {list(self.weight_int.shape)}")
        self.spike_mode = spike_mode

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, weight_bits: int = 8, accumulator_bits: int = 32
    ) -> QuantizedLinear:
        """Quantize a float ``nn.Linear`` (its current, possibly fake-quantized, weights)."""
        w_int, b_int, scale = quantize_layer(linear.weight, linear.bias, weight_bits, accumulator_bits)
        spike_mode = getattr(linear, "spike_mode", None)
        return cls(w_int, b_int, scale, weight_bits, accumulator_bits, spike_mode).to(linear.weight.device)

    @classmethod
    def from_node(cls, node: ir.Affine | ir.SpikingAffine, weight_bits: int = 8, accumulator_bits: int = 32):
        """From an Affine/SpikingAffine node: its stored integers if present, else quantized now.

        A SpikingAffine uses its own ``weight_bits``/``accumulator_bits``; the arguments apply
        to a plain Affine.
        """
        weight_bits, accumulator_bits, spike_mode = _node_bits(node, weight_bits, accumulator_bits)
        w_int, b_int, scale = _node_integers(node, weight_bits, accumulator_bits)
        return cls(w_int, b_int, scale, weight_bits, accumulator_bits, spike_mode)

    def forward(self, x: Tensor) -> Tensor:
        """:func:`quantized_linear`; integer inputs (spikes, counts) accumulate in float32 when exact.

        Every partial sum of integers below ``2**24`` is exact in float32, so the result is
        the float64 accumulator's bit for bit, at a fraction of the cost; other inputs
        (graded, or too large for that bound) take the float64 accumulator.
        """
        w, b, reach = self._operands()
        sum_bound = self._float32_sum_bound(x, reach)
        if sum_bound is not None:
            acc = F.linear(x.to(torch.float32), w, b)
            if _output_dtype(x) == torch.float32:  # scaled in place, no float64 copy of the whole accumulator
                return _scaled_in_place(acc, self.scale, self.accumulator_bits, sum_bound)
            return _output(acc.to(_ACC_DTYPE), self.scale, self.accumulator_bits, x)
        return quantized_linear(x, self.weight_int, self.bias_int, self.scale, self.accumulator_bits)


class QuantizedConv2d(_QuantizedBase):
    """A 2-D convolution simulated on integers (:func:`quantized_conv2d`); evaluation only."""

    returns_new_tensor = True  # see t1c.bridge.executor.NEW_TENSOR_FORWARDS

    def __init__(
        self,
        w_int: Tensor,
        b_int: Tensor | None,
        scale: float,
        weight_bits: int = 8,
        accumulator_bits: int = 32,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        groups: int = 1,
    ):
        super().__init__(w_int, b_int, scale, weight_bits, accumulator_bits)
        if self.weight_int.ndim != 4:
            raise ValueError(
                f"QuantizedConv2d needs [out, in/groups, kH, kW] weights, got {list(self.weight_int.shape)}"
            )
        self.stride = tuple(int(s) for s in stride)
        self.padding = tuple(int(p) for p in padding)
        self.dilation = tuple(int(d) for d in dilation)
        self.groups = int(groups)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, weight_bits: int = 8, accumulator_bits: int = 32) -> QuantizedConv2d:
        """Quantize a float ``nn.Conv2d`` (zero padding only, as in T1C-IR)."""
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(
                f"QuantizedConv2d supports numeric zero padding only, got padding={conv.padding!r}, "
                f"padding_mode={conv.padding_mode!r}"
            )
        w_int, b_int, scale = quantize_layer(conv.weight, conv.bias, weight_bits, accumulator_bits)
        return cls(
            w_int,
            b_int,
            scale,
            weight_bits,
            accumulator_bits,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
        ).to(conv.weight.device)

    @classmethod
    def from_node(cls, node: ir.Conv2d, weight_bits: int = 8, accumulator_bits: int = 32) -> QuantizedConv2d:
        """From a Conv2d node: its stored integers if present, else quantized now."""
        w_int, b_int, scale = _node_integers(node, weight_bits, accumulator_bits)
        return cls(
            w_int, b_int, scale, weight_bits, accumulator_bits,
            tuple(node.stride), tuple(node.padding), tuple(node.dilation), node.groups,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, stride={self.stride}, padding={self.padding}, groups={self.groups}"

    def forward(self, x: Tensor) -> Tensor:
        return quantized_conv2d(
            x, self.weight_int, self.bias_int, self.scale, self.accumulator_bits,
            self.stride, self.padding, self.dilation, self.groups,
        )  # fmt: skip


# -- graphs and executors ----------------------------------------------------------------
def _node_bits(node: ir.Node, weight_bits: int, accumulator_bits: int) -> tuple[int, int, str | None]:
    if isinstance(node, ir.SpikingAffine):
        return node.weight_bits, node.accumulator_bits, node.spike_mode
    return weight_bits, accumulator_bits, None


def _node_integers(node: ir.Node, weight_bits: int, accumulator_bits: int) -> tuple[Tensor, Tensor, float]:
    """A node's ``(w_int, b_int, scale)``: the stored integers when present, else quantized."""
    if node.weight_int is not None:
        w_int = torch.from_numpy(np.asarray(node.weight_int, dtype=np.int64))
        scale = float(node.weight_scale)
        if node.bias_int is not None:
            b_int = torch.from_numpy(np.asarray(node.bias_int, dtype=np.int64))
        else:
            b_int = quantize_bias(torch.from_numpy(node.bias), scale, accumulator_bits)
        return w_int, b_int, scale
    return quantize_layer(
        torch.from_numpy(node.weight), torch.from_numpy(node.bias), weight_bits, accumulator_bits
    )


def _quantized_module(module: nn.Module, weight_bits: int, accumulator_bits: int) -> nn.Module | None:
    """The integer twin of a float synapse module, or None when the module is not a synapse.

    A layer that carries its own hints (``SpikingAffineModule``'s ``weight_bits`` and
    ``accumulator_bits``) keeps them; the arguments apply to the others.
    """
    if isinstance(module, nn.Linear):
        return QuantizedLinear.from_linear(module, *_own_bits(module, weight_bits, accumulator_bits))
    if isinstance(module, nn.Conv2d):
        return QuantizedConv2d.from_conv(module, *_own_bits(module, weight_bits, accumulator_bits))
    return None


def _own_bits(module: nn.Module, weight_bits: int, accumulator_bits: int) -> tuple[int, int]:
    return getattr(module, "weight_bits", weight_bits), getattr(module, "accumulator_bits", accumulator_bits)


def fold_batchnorm_into(layer: nn.Linear | nn.Conv2d, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> nn.Module:
    """A copy of ``layer`` that computes ``bn(layer(x))`` with ``bn``'s running statistics.

    Per output channel ``o``: ``g = bn.weight[o] / sqrt(running_var[o] + eps)``,
    ``w'[o] = g * w[o]`` and ``b'[o] = g * (b[o] - running_mean[o]) + bn.bias[o]`` (a missing
    affine part is weight 1, bias 0; a missing layer bias is 0). Computed in float64 and
    stored in the layer's dtype: the same function as the pair in evaluation mode, up to
    float rounding. The copy keeps the layer's class and hints (a ``SpikingAffineModule``
    keeps its ``weight_bits``/``accumulator_bits``); a fake-quantized (QAT) layer is folded
    from its weights on the grid, as a plain layer.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(
            f"cannot fold {type(bn).__name__} without running statistics (track_running_stats=False) "
            f"into {type(layer).__name__}: keep it float"
        )
    out = layer.weight.shape[0]
    if bn.num_features != out:
        raise ValueError(
            f"cannot fold {type(bn).__name__}({bn.num_features}) into {type(layer).__name__} "
            f"with {out} outputs: the channel counts differ"
        )
    f64 = torch.float64
    gamma = torch.ones(out, dtype=f64) if bn.weight is None else bn.weight.detach().to(f64).cpu()
    beta = torch.zeros(out, dtype=f64) if bn.bias is None else bn.bias.detach().to(f64).cpu()
    g = gamma / torch.sqrt(bn.running_var.detach().to(f64).cpu() + bn.eps)
    w = layer.weight.detach().to(f64).cpu()
    b = torch.zeros(out, dtype=f64) if layer.bias is None else layer.bias.detach().to(f64).cpu()
    folded = copy.deepcopy(layer)
    if parametrize.is_parametrized(folded, "weight"):  # QAT: fold the weights on their grid
        disable_qat(folded)
    dtype, device = layer.weight.dtype, layer.weight.device
    with torch.no_grad():
        folded.weight = nn.Parameter((w * g.reshape(-1, *[1] * (w.ndim - 1))).to(dtype).to(device))
        folded.bias = nn.Parameter(
            (g * (b - bn.running_mean.detach().to(f64).cpu()) + beta).to(dtype).to(device)
        )
    return folded


def batchnorm_folds(executor: GraphExecutor) -> dict[str, str]:
    """``{layer node: BatchNorm node}`` for every BatchNorm that folds exactly into the layer before it.

    A ``BatchNorm1d``/``BatchNorm2d`` node folds when its only input is an ``Affine``,
    ``SpikingAffine`` or ``Conv2d`` node that feeds nothing else, the BatchNorm has running
    statistics, and it normalizes the layer's output channels (a Conv2d's ``[C, H, W]``, or
    an Affine's 1-D ``[F]``; an Affine on ``[C, L]`` inputs produces ``[C, F]``, whose axis 1
    is not the layer's outputs, and does not fold).
    """
    folds: dict[str, str] = {}
    for bn_name in executor.node_names:
        bn = executor.module_for(bn_name)
        if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) or bn.running_mean is None:
            continue
        preds = [s for s, d in executor.edges if d == bn_name]
        if len(preds) != 1:
            continue
        layer_name = preds[0]
        layer = executor.module_for(layer_name)
        if not isinstance(layer, (nn.Linear, nn.Conv2d)) or layer.weight.shape[0] != bn.num_features:
            continue
        if [d for s, d in executor.edges if s == layer_name] != [bn_name]:
            continue
        shape = executor._value_shapes.get(layer_name)
        if isinstance(layer, nn.Linear) and (shape is None or len(shape) != 1):
            continue
        folds[layer_name] = bn_name
    return folds


def _apply_folds(executor: GraphExecutor) -> dict[str, str]:
    """Fold in place every pair of :func:`batchnorm_folds` (the BatchNorm becomes the identity)."""
    folds = batchnorm_folds(executor)
    for layer_name, bn_name in folds.items():
        bn = executor.module_for(bn_name)
        executor.set_module(layer_name, fold_batchnorm_into(executor.module_for(layer_name), bn))
        executor.set_module(bn_name, nn.Identity())
    return folds


def _inner_executors(executor: GraphExecutor) -> list[tuple[str, SubgraphModule]]:
    from .hybrid_modules import SubgraphModule

    return [
        (name, module)
        for name in executor.node_names
        if isinstance(module := executor.module_for(name), SubgraphModule)
    ]


def quantize_executor(
    executor: GraphExecutor,
    weight_bits: int = 8,
    accumulator_bits: int = 32,
    fold_batchnorm: bool = False,
) -> GraphExecutor:
    """A deep copy of ``executor`` whose synapses run in quantized simulation.

    ``SpikingAffine`` nodes use their own ``weight_bits``/``accumulator_bits`` hints;
    ``Affine`` and ``Conv2d`` nodes use the arguments, also inside nested graphs. Neurons,
    pooling, the wiring, ``SepConv2d`` and every ANN node (activations, norms, Dropout,
    markers) are unchanged (float). The original executor is untouched. With QAT enabled
    (:func:`enable_qat`) the current fake-quantized weights are quantized, which gives
    back the same integers.

    Args:
        executor: the float executor.
        weight_bits: weight width of Affine/Conv2d.
        accumulator_bits: accumulator width of Affine/Conv2d.
        fold_batchnorm: fold each BatchNorm into the layer before it where
            :func:`batchnorm_folds` allows (its running statistics, exactly), and quantize
            the folded weights, as a chip without BatchNorm would run them; the BatchNorm
            becomes the identity. False (default): BatchNorm stays float after the integer layer.

    Returns:
        a new executor in eval mode, meant for evaluation (integer buffers, no parameters to train).
    """
    _check_bits(weight_bits, "weight_bits", 1, 32)
    _check_bits(accumulator_bits, "accumulator_bits", 1, 64)
    twin = copy.deepcopy(executor)
    _quantize_in_place(twin, weight_bits, accumulator_bits, fold_batchnorm)
    return twin.eval()


def _quantize_in_place(executor: GraphExecutor, weight_bits: int, accumulator_bits: int, fold: bool) -> None:
    if fold:
        _apply_folds(executor)
    for name in executor.node_names:
        module = executor.module_for(name)
        if module is None:
            continue
        quantized = _quantized_module(module, weight_bits, accumulator_bits)
        if quantized is not None:
            executor.set_module(name, quantized)
    for _, sub in _inner_executors(executor):
        _quantize_in_place(sub.inner, weight_bits, accumulator_bits, fold)


def ir_to_quantized(
    graph: ir.Graph,
    weight_bits: int = 8,
    accumulator_bits: int = 32,
    fold_batchnorm: bool = False,
    *,
    executor: GraphExecutor | None = None,
) -> GraphExecutor:
    """An executor for ``graph`` in quantized simulation, built from the file's own integers.

    Nodes that carry ``weight_int``/``weight_scale``/``bias_int`` (see
    :func:`attach_integer_weights`) use exactly those; others are quantized like
    :func:`quantize_executor` does (nested graphs too). This is how a deployed file is
    checked: its integers, not a re-quantization of its floats, give the accuracy.

    With ``fold_batchnorm=True`` a layer that a BatchNorm folds into (:func:`batchnorm_folds`)
    is quantized from its folded float weights instead: its stored integers describe the
    unfolded weights (``weight ~= weight_int * weight_scale``) and are not used.

    ``executor``: a float executor that :func:`~t1c.bridge.ir_to_torch` built from ``graph``
    and that is no longer needed in float: it is quantized in place and returned, instead
    of building another one.
    """
    from .executor import ir_to_torch

    _check_bits(weight_bits, "weight_bits", 1, 32)
    _check_bits(accumulator_bits, "accumulator_bits", 1, 64)
    if executor is None:
        executor = ir_to_torch(graph)
    _quantize_graph_in_place(executor, graph, weight_bits, accumulator_bits, fold_batchnorm)
    return executor.eval()


def _quantize_graph_in_place(
    executor: GraphExecutor, graph: ir.Graph, weight_bits: int, accumulator_bits: int, fold: bool
) -> None:
    folded = _apply_folds(executor) if fold else {}
    for name, node in graph.nodes.items():
        if name in folded:
            module = executor.module_for(name)
            executor.set_module(
                name, _quantized_module(module, *_own_bits(module, weight_bits, accumulator_bits))
            )
        elif isinstance(node, (ir.Affine, ir.SpikingAffine)):
            executor.set_module(name, QuantizedLinear.from_node(node, weight_bits, accumulator_bits))
        elif isinstance(node, ir.Conv2d):
            executor.set_module(name, QuantizedConv2d.from_node(node, weight_bits, accumulator_bits))
    for name, sub in _inner_executors(executor):
        _quantize_graph_in_place(sub.inner, graph.nodes[name].graph, weight_bits, accumulator_bits, fold)


def attach_integer_weights(graph: ir.Graph, weight_bits: int = 8, accumulator_bits: int = 32) -> ir.Graph:
    """A copy of ``graph`` whose Affine/SpikingAffine/Conv2d nodes (nested ones too) carry their exact integers.

    Sets the optional fields ``weight_int``, ``weight_scale`` and ``bias_int`` to the values
    :func:`quantize_executor` simulates (SpikingAffine: its own bit widths; Affine/Conv2d:
    the arguments), so hardware receives exactly the integers whose accuracy was measured.
    The float ``weight``/``bias`` are kept, so readers that ignore the extension still work.
    """
    _check_bits(weight_bits, "weight_bits", 1, 32)
    _check_bits(accumulator_bits, "accumulator_bits", 1, 64)
    nodes = {}
    for name, node in graph.nodes.items():
        node = copy.deepcopy(node)
        if isinstance(node, _INTEGER_NODES):
            bits, acc_bits, _ = _node_bits(node, weight_bits, accumulator_bits)
            w_int, b_int, scale = quantize_layer(
                torch.from_numpy(node.weight), torch.from_numpy(node.bias), bits, acc_bits
            )
            node.weight_int, node.weight_scale, node.bias_int = w_int.numpy(), scale, b_int.numpy()
            check_integer_weights(node)
        elif isinstance(node, ir.Subgraph):
            node.graph = attach_integer_weights(node.graph, weight_bits, accumulator_bits)
        nodes[name] = node
    return ir.Graph(nodes, list(graph.edges), copy.deepcopy(graph.metadata), allow_cycles=graph.allow_cycles)


# -- quantization-aware training ---------------------------------------------------------
class FakeQuantize(nn.Module):
    """A ``torch.nn.utils.parametrize`` parametrization: ``weight -> fake_quantize(weight, bits)``."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = _check_bits(bits, "weight_bits", 1, 32)

    def forward(self, w: Tensor) -> Tensor:
        return fake_quantize(w, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def enable_qat(executor: nn.Module, weight_bits: int = 8) -> nn.Module:
    """Switch ``executor`` (in place) to quantization-aware training.

    Every ``nn.Linear``/``nn.Conv2d`` weight is re-parametrized with :class:`FakeQuantize`
    (``SpikingAffineModule`` with its own ``weight_bits``), so the forward pass sees
    weights on the quantization grid while the optimizer updates the float originals
    (straight-through gradients). Biases stay float during training; the quantized
    simulation rounds them to the weights' scale. Calling it twice is a no-op.

    Returns:
        ``executor`` itself.
    """
    _check_bits(weight_bits, "weight_bits", 1, 32)
    for module in executor.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)) or parametrize.is_parametrized(module, "weight"):
            continue
        bits = getattr(module, "weight_bits", weight_bits)
        parametrize.register_parametrization(module, "weight", FakeQuantize(bits))
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
        if not parametrize.is_parametrized(module, "weight"):
            continue
        if set(module.parametrizations) != {"weight"}:  # other tensors parametrized by the user
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            continue
        plist = module.parametrizations["weight"]
        original = plist.original
        with torch.no_grad():
            original.copy_(plist())
        module.__class__ = type(module).__bases__[0]  # torch injects ParametrizedX(X)
        del module.parametrizations
        module.weight = original
    return executor


def qat_enabled(executor: nn.Module) -> bool:
    """Whether any weight of ``executor`` is fake-quantized."""
    return any(parametrize.is_parametrized(m, "weight") for m in executor.modules())
