"""Quantized synapse modules: :class:`QuantizedLinear` and :class:`QuantizedConv2d`, thin
modules over :mod:`~t1c.bridge.quantize.integers` (evaluation only).

Each keeps its integer weights and bias as buffers and is built from a trained float
layer (``from_linear``/``from_conv``) or from a node that may carry its exact integers
(``from_node``). A layer fed values on a coarse enough power-of-two grid (spikes, counts,
images of a few grey levels) accumulates in float32, bit for bit what the float64
accumulator gives, at a fraction of the cost.
"""

from __future__ import annotations

import abc
import copy
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from t1c import ir

from ..neuron_modules import CubaLIFModule
from .integers import (
    ACCUMULATOR_DTYPE,
    accumulator_range,
    check_bits,
    conv2d_by_chunks,
    output_dtype,
    quantize_bias,
    quantize_layer,
    quantize_weights,
    quantized_conv2d,
    quantized_linear,
    scaled_output,
)
from .qat import disable_qat

# Integers of magnitude up to 2**24 are exact in float32: a sum whose every partial sum stays
# below this bound gives the same integer in float32 as in float64, in any summation order
# (and so do multiples of 2**-s below 2**(24 - s): the same integers, counted in steps of 2**-s).
_FLOAT32_EXACT = 2**24
# Element-wise passes that need a float64 (or scratch) copy go through blocks of this many
# elements: a 512 KiB temporary stays in cache and in malloc's heap, where a whole-tensor
# copy of a [T * B, n] accumulator is fresh memory that the CPU must fault in page by page.
_BLOCK = 1 << 16


class _QuantizedBase(nn.Module, abc.ABC):
    """Integer weights and bias kept as buffers (they travel with ``state_dict`` and ``.to()``)."""

    WEIGHT_LAYOUT = ""  # the weights' axes, e.g. "[out, in]": their rank is checked

    def __init__(self, w_int: Tensor, b_int: Tensor | None, scale: float, weight_bits=8, accumulator_bits=32):
        super().__init__()
        self.weight_bits = check_bits(weight_bits, "weight_bits", 1, 32)
        self.accumulator_bits = check_bits(accumulator_bits, "accumulator_bits", 1, 64)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = float(scale)
        self.register_buffer("weight_int", torch.as_tensor(w_int, dtype=torch.int64))
        if self.weight_int.ndim != self.WEIGHT_LAYOUT.count(",") + 1:
            raise ValueError(
                f"{type(self).__name__} needs {self.WEIGHT_LAYOUT} weights, got {list(self.weight_int.shape)}"
            )
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

    def forward(self, x: Tensor) -> Tensor:
        """The float64 accumulator's result (:meth:`_float64`); inputs on a coarse enough
        power-of-two grid (spikes, counts) accumulate in float32 (:meth:`_float32_sums`).

        Every partial sum of multiples of ``2**-s`` below ``2**(24 - s)`` is exact in
        float32, so the result is the float64 accumulator's bit for bit, at a fraction of the
        cost; other inputs (graded, too large for that bound, or tracked by autograd) take the
        float64 accumulator.
        """
        w, b, reach = self._operands()
        tracked = x.requires_grad and torch.is_grad_enabled()  # the float32 path scales in place
        sum_bound = None if tracked or not self._float32_exact(x) else self._float32_sum_bound(x, reach)
        if sum_bound is None:
            return self._float64(x)
        scale, bits = self.scale, self.accumulator_bits
        if output_dtype(x) == torch.float32:  # scaled in place, no float64 copy of the whole accumulator
            return self._float32_sums(x, w, b, lambda acc: _scaled_in_place(acc, scale, bits, sum_bound))
        return self._float32_sums(
            x, w, b, lambda acc: scaled_output(acc.to(ACCUMULATOR_DTYPE), scale, bits, x)
        )

    def _float32_exact(self, x: Tensor) -> bool:
        """Whether :meth:`_float32_sums` adds exactly (no reduced-precision shortcuts) for ``x``."""
        return True

    @abc.abstractmethod
    def _float32_sums(self, x: Tensor, w: Tensor, b: Tensor, finish: Callable[[Tensor], Tensor]) -> Tensor:
        """``finish(sums)``: the layer's float32 sums of ``x`` with the float32 integers ``w``
        and ``b``, saturated and scaled by ``finish`` (in place or into a new tensor)."""

    @abc.abstractmethod
    def _float64(self, x: Tensor) -> Tensor:
        """The layer's result through the float64 accumulator (the pure function it wraps)."""

    def _float32_sum_bound(self, x: Tensor, reach: float) -> float | None:
        """A bound on every partial sum when ``x`` may accumulate in float32 (its values lie on
        a power-of-two grid coarse enough to be exact there), else None.

        Whatever the layer's width: the check is a few reductions over blocks of ``x``, where
        the float64 accumulator needs a float64 copy of all of ``x``, fresh memory (in a fit,
        a 128 -> 10 layer on joined validation batches: measurement 66 -> 45 ms per fit)."""
        if not x.numel():
            return None
        if x.dtype == torch.bool:
            largest = 1.0
        elif x.is_floating_point():
            largest = _largest_on_grid(x, reach)
            if largest is None:  # off the grid, inf, NaN or too large
                return None
        else:
            low, high = torch.aminmax(x).tolist()
            largest = max(-low, high)
        bound = max(1.0, largest) * reach  # 1: the bias alone
        return bound if bound < _FLOAT32_EXACT else None


def _scaled_in_place(acc: Tensor, scale: float, accumulator_bits: int, sum_bound: float) -> Tensor:
    """``acc`` (float32 holding exact integers, each partial sum within ``sum_bound``) becomes
    ``float32(float64(saturate(acc)) * scale)``, block by block: the values of :func:`scaled_output`
    without a float64 copy of the whole tensor (and no clamp where nothing can saturate)."""
    low, high = accumulator_range(accumulator_bits)
    saturates = sum_bound > high or -sum_bound < low
    flat = acc.view(-1)
    block = torch.empty(min(flat.numel(), _BLOCK), dtype=ACCUMULATOR_DTYPE, device=acc.device)
    for part in flat.split(_BLOCK):
        wide = block[: part.numel()].copy_(part)
        part.copy_((wide.clamp_(low, high) if saturates else wide).mul_(scale))
    return acc


def _largest_on_grid(x: Tensor, reach: float) -> float | None:
    """The largest magnitude in the float tensor ``x`` when every element is a multiple of
    ``2**-s``, the finest power-of-two step that keeps sums of up to ``max(1, largest) * reach``
    exact in float32; else None (off that grid, inf or NaN).

    Integers (spikes, counts) are checked first, with no scaling pass; the grid only when
    some element is not an integer.
    """
    low, high = torch.aminmax(x)
    largest = max(-float(low), float(high))
    bound = max(1.0, largest) * reach
    if not bound < _FLOAT32_EXACT:  # also inf and NaN
        return None
    if _on_grid(x, 1.0):
        return largest
    step = 2.0 ** (24 - math.frexp(bound)[1]) if bound else 1.0  # bound * step < 2**24
    return largest if step > 1.0 and _on_grid(x, step) else None


def _on_grid(x: Tensor, step: float) -> bool:
    """Whether ``x * step`` (``step`` a power of two: exact) holds integers only: inf and NaN
    have a NaN ``frac``, which fails ``== 0``.

    Block by block into one scratch block, with ``aminmax`` of each block's fractions (min/max
    reductions are vectorized on CPU, ``any`` of a float tensor is not: 4x faster), and one
    device sync.
    """
    scratch = torch.empty(min(x.numel(), _BLOCK), dtype=x.dtype, device=x.device)
    extremes = []
    for part in x.reshape(-1).split(_BLOCK):
        grid = scratch[: part.numel()]
        extremes += torch.aminmax(
            torch.frac(torch.mul(part, step, out=grid) if step != 1.0 else part, out=grid)
        )
    return all(f == 0 for f in torch.stack(extremes).tolist())


class QuantizedLinear(_QuantizedBase):
    """A linear layer simulated on integers (:func:`quantized_linear`); evaluation only.

    Build it from a trained layer with :meth:`from_linear` or from a node that carries
    ``weight_int``/``weight_scale``/``bias_int`` with :meth:`from_node`.
    """

    returns_new_tensor = True  # see t1c.bridge.executor.NEW_TENSOR_FORWARDS
    WEIGHT_LAYOUT = "[out, in]"
    spike_mode: str | None = None  # a SpikingAffine's spike_mode, kept for export

    def _with_spike_mode(self, spike_mode: str | None) -> QuantizedLinear:
        self.spike_mode = spike_mode
        return self

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, weight_bits: int = 8, accumulator_bits: int = 32
    ) -> QuantizedLinear:
        """Quantize a float ``nn.Linear`` (its current, possibly fake-quantized, weights)."""
        w_int, b_int, scale = quantize_layer(linear.weight, linear.bias, weight_bits, accumulator_bits)
        spike_mode = getattr(linear, "spike_mode", None)
        layer = cls(w_int, b_int, scale, weight_bits, accumulator_bits)._with_spike_mode(spike_mode)
        return layer.to(linear.weight.device)

    @classmethod
    def from_node(cls, node: ir.Affine | ir.SpikingAffine, weight_bits: int = 8, accumulator_bits: int = 32):
        """From an Affine/SpikingAffine node: its stored integers if present, else quantized now.

        A SpikingAffine uses its own ``weight_bits``/``accumulator_bits``; the arguments apply
        to a plain Affine.
        """
        weight_bits, accumulator_bits, spike_mode = node_bits(node, weight_bits, accumulator_bits)
        w_int, b_int, scale = _node_integers(node, weight_bits, accumulator_bits)
        return cls(w_int, b_int, scale, weight_bits, accumulator_bits)._with_spike_mode(spike_mode)

    def _float32_sums(self, x: Tensor, w: Tensor, b: Tensor, finish: Callable[[Tensor], Tensor]) -> Tensor:
        return finish(F.linear(x.to(torch.float32), w, b))

    def _float64(self, x: Tensor) -> Tensor:
        return quantized_linear(x, self.weight_int, self.bias_int, self.scale, self.accumulator_bits)


class QuantizedConv2d(_QuantizedBase):
    """A 2-D convolution simulated on integers (:func:`quantized_conv2d`); evaluation only."""

    returns_new_tensor = True  # see t1c.bridge.executor.NEW_TENSOR_FORWARDS
    WEIGHT_LAYOUT = "[out, in/groups, kH, kW]"

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

    def _float32_exact(self, x: Tensor) -> bool:
        """oneDNN's direct float32 convolution on CPU, when it computes in float32: other
        algorithms (Winograd in NNPACK, TF32 in cuDNN) round, whatever the inputs."""
        return x.device.type == "cpu" and x.ndim == 4 and _onednn_float32_exact()

    def _float32_sums(self, x: Tensor, w: Tensor, b: Tensor, finish: Callable[[Tensor], Tensor]) -> Tensor:
        def conv(part: Tensor) -> Tensor:
            return torch.mkldnn_convolution(part, w, b, self.padding, self.stride, self.dilation, self.groups)

        return conv2d_by_chunks(x.to(torch.float32), conv, finish, w)

    def _float64(self, x: Tensor) -> Tensor:
        return quantized_conv2d(
            x, self.weight_int, self.bias_int, self.scale, self.accumulator_bits,
            self.stride, self.padding, self.dilation, self.groups,
        )  # fmt: skip


def _onednn_float32_exact() -> bool:
    """Whether oneDNN is built in and set to compute float32 in float32 (``fp32_precision``
    "none" or "ieee" at every level, not "bf16" or "tf32")."""
    mkldnn = torch.backends.mkldnn
    levels = (torch.backends, mkldnn, getattr(mkldnn, "conv", None))
    precisions = {getattr(level, "fp32_precision", "none") for level in levels}
    return mkldnn.is_available() and precisions <= {"none", "ieee"}


def node_bits(node: ir.Node, weight_bits: int, accumulator_bits: int) -> tuple[int, int, str | None]:
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


def quantized_module(module: nn.Module, weight_bits: int, accumulator_bits: int) -> nn.Module | None:
    """The integer twin of a float synapse module, or None when the module is not a synapse.

    A layer that carries its own hints (``SpikingAffineModule``'s ``weight_bits`` and
    ``accumulator_bits``) keeps them; the arguments apply to the others.
    """
    if isinstance(module, nn.Linear):
        return QuantizedLinear.from_linear(module, *own_bits(module, weight_bits, accumulator_bits))
    if isinstance(module, nn.Conv2d):
        return QuantizedConv2d.from_conv(module, *own_bits(module, weight_bits, accumulator_bits))
    if isinstance(module, CubaLIFModule) and module.w_rec is not None:
        return quantized_self_connection(module, weight_bits)
    return None


def quantized_self_connection(
    module: CubaLIFModule, weight_bits: int, stored: ir.CubaLIF | None = None
) -> CubaLIFModule:
    """A copy of a ``CubaLIFModule`` whose one-to-one recurrence ``w_rec`` is a synaptic
    weight on the integer grid (symmetric, one scale, ``weight_bits``): ``w_int * scale``,
    so each spike product is an exact integer times the scale. The neuron parameters
    (decays, gain, threshold) stay float, as a LIF's do (docs/neurons.md, "Quantization").

    ``stored``: the module's node when it carries ``w_rec_int``/``w_rec_scale``; those
    integers are then used as they are (``weight_bits`` is not used)."""
    twin = disable_qat(copy.deepcopy(module))  # in QAT: its w_rec on the grid, a plain parameter
    if stored is not None and stored.w_rec_int is not None:
        w_int, scale = (
            torch.from_numpy(np.asarray(stored.w_rec_int, dtype=np.int64)),
            float(stored.w_rec_scale),
        )
    else:
        w_int, scale = quantize_weights(module.w_rec, weight_bits)
    twin.w_rec = nn.Parameter((w_int.to(torch.float64) * scale).to(module.w_rec.dtype), requires_grad=False)
    return twin


def own_bits(module: nn.Module, weight_bits: int, accumulator_bits: int) -> tuple[int, int]:
    return getattr(module, "weight_bits", weight_bits), getattr(module, "accumulator_bits", accumulator_bits)
