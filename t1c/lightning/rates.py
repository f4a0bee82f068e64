"""Per-layer spike rates of the exported graph in float and quantized simulation.

A :class:`SpikeCounter` attached to an executor counts, for each of its neuron nodes (``LIF``,
``CubaLIF``, ``AlphaLIF``), the spikes and the neuron-steps of every run: through
``forward_sequence`` (what ``run_sequence`` calls) and a forward hook (stepped, recurrent graphs). It keeps the sums on the device (no
synchronisation per batch) and detaches itself after the measurement. :func:`rate_figures`
turns two counters into logged figures (``t1c/rate/<layer>/float``, ``.../quant``; summed over
ranks by torchmetrics) and :func:`quantization_harm` names the layers that fire in float but
fall silent, or saturate, after quantization.

Example:
    >>> rates = {"lif1": (0.2, 0.0), "lif2": (0.1, 0.09)}
    >>> [layer for layer, _ in quantization_harm(rates)]
    ['lif1']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .scoring import Totals

RATE_PREFIX = "t1c/rate/"
#: A layer is silenced when its quantized rate is below this share of its float rate.
SILENT_SHARE = 0.01
#: A layer saturates when its quantized rate is above this and its float rate is not.
SATURATED_RATE = 0.99

#: Per layer: ``(spikes, neuron-steps)`` counted (spikes as a device tensor).
Counts = dict[str, tuple[torch.Tensor, int]]


def neuron_nodes(executor: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(node name, module)`` of each neuron node (``LIF``, ``CubaLIF``, ``AlphaLIF``) of a
    :class:`~t1c.bridge.GraphExecutor`."""
    from t1c.bridge import AlphaLIFModule, CubaLIFModule, LIFModule

    for name in getattr(executor, "node_names", []):
        module = executor.module_for(name)
        if isinstance(module, (LIFModule, CubaLIFModule, AlphaLIFModule)):
            yield name, module


class SpikeCounter:
    """Spikes and neuron-steps per neuron node, counted while attached to executors."""

    def __init__(self) -> None:
        self.counts: Counts = {}
        self.attached: list[tuple[nn.Module, Any]] = []  # (neuron module, its hook handle)

    def add(self, name: str, spikes: torch.Tensor) -> None:
        """Count one output of node ``name`` (spikes ``[..., neurons]``, any leading shape)."""
        # spikes are 0 or 1: every partial sum of fewer than 2**24 is an exact float32 integer,
        # and a float32 sum is about 20 times faster than a float64 one
        exact = spikes.numel() < 2**24 and spikes.dtype == torch.float32
        total = spikes.detach().sum(dtype=None if exact else torch.float64)
        self.merge({name: (total.to(torch.float64), spikes.numel())})

    def merge(self, counts: Counts) -> None:
        """Add counts taken elsewhere (by another counter, e.g. during validation)."""
        for name, (spikes, elements) in counts.items():
            if name in self.counts:
                previous, before = self.counts[name]
                self.counts[name] = (previous + spikes, before + elements)
            else:
                self.counts[name] = (spikes, elements)

    def take(self) -> Counts:
        """The counts so far, and start again from zero."""
        counts, self.counts = self.counts, {}
        return counts

    def attach(self, executor: nn.Module) -> SpikeCounter:
        """Count the neuron outputs of ``executor`` until :meth:`detach` (on its instances only)."""
        for name, module in neuron_nodes(executor):
            module.forward_sequence = self.counting(name, module)  # shadows the method until detach()
            self.attached.append((module, module.register_forward_hook(self.hook(name))))
        return self

    def counting(self, name: str, module: nn.Module) -> Any:
        """``module.forward_sequence`` (what ``run_sequence`` calls), counting its spikes as ``name``'s."""
        sequence = type(module).forward_sequence

        def counted(xs: torch.Tensor, v: Any = None, **kw: Any) -> tuple[torch.Tensor, Any]:
            spikes, v = sequence(module, xs, v, **kw)
            self.add(name, spikes)
            return spikes, v

        return counted

    def hook(self, name: str) -> Any:
        """A forward hook counting one step's spikes as ``name``'s (stepped, recurrent graphs)."""

        def count_step(_module: nn.Module, _args: Any, out: Any) -> None:
            self.add(name, out[0])

        return count_step

    def detach(self) -> None:
        """Stop counting: every executor's own methods again."""
        for module, handle in self.attached:
            vars(module).pop("forward_sequence", None)
            handle.remove()
        self.attached = []


def synced_rates(counts: Counts, device: torch.device | str) -> dict[str, float]:
    """Each layer's spikes per neuron-step, its counts summed over ranks (one torchmetrics sync)."""
    names = sorted(counts)
    if not names:
        return {}
    totals = Totals(2 * len(names)).to(device)
    spikes = torch.stack([counts[n][0].to(device, torch.float64) for n in names])
    elements = torch.tensor([float(counts[n][1]) for n in names], dtype=torch.float64, device=device)
    totals.update(torch.cat([spikes, elements]))
    summed = totals.compute().tolist()
    return {n: summed[i] / max(summed[len(names) + i], 1.0) for i, n in enumerate(names)}


def rate_figures(float_rates: Mapping[str, float], quant_rates: Mapping[str, float]) -> dict[str, float]:
    """``t1c/rate/<layer>/float`` and ``t1c/rate/<layer>/quant`` for logging.

    Example:
        >>> rate_figures({"lif1": 0.25}, {"lif1": 0.5})
        {'t1c/rate/lif1/float': 0.25, 't1c/rate/lif1/quant': 0.5}
    """
    figures = {}
    for name in sorted(set(float_rates) | set(quant_rates)):
        if name in float_rates:
            figures[f"{RATE_PREFIX}{name}/float"] = float_rates[name]
        if name in quant_rates:
            figures[f"{RATE_PREFIX}{name}/quant"] = quant_rates[name]
    return figures


def quantization_harm(rates: Mapping[str, tuple[float, float]]) -> list[tuple[str, str]]:
    """The layers that fire in float but are silent (under :data:`SILENT_SHARE` of their float
    rate) or saturated (above :data:`SATURATED_RATE`) after quantization, with what happened.

    Args:
        rates: layer -> ``(float rate, quantized rate)``.
    """
    harmed = []
    for name, (float_rate, quant_rate) in rates.items():
        if float_rate > 0 and quant_rate < SILENT_SHARE * float_rate:
            harmed.append((name, "silent"))
        elif quant_rate > SATURATED_RATE >= float_rate:
            harmed.append((name, "saturated"))
    return harmed


def harm_message(
    harmed: list[tuple[str, str]], rates: Mapping[str, tuple[float, float]], bits: int, when: str
) -> str:
    """One warning naming each harmed layer with both rates."""
    layers = "; ".join(
        f"'{name}' is {what} after quantization: spike rate {rates[name][0]:.4f} in float, "
        f"{rates[name][1]:.4f} quantized"
        for name, what in harmed
    )
    return (
        f"T1CExport: at {when}, quantization to {bits}-bit weights changes what layers fire: {layers}. "
        "Raise weight_bits, train with QAT, or rescale the layer's weights and threshold"
    )


def layer_rates(figures: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """Layer -> ``(float rate, quantized rate)`` from logged figures (layers with both).

    Example:
        >>> layer_rates({"t1c/rate/lif1/float": 0.25, "t1c/rate/lif1/quant": 0.5, "t1c/quant_acc": 0.9})
        {'lif1': (0.25, 0.5)}
    """
    rates = {}
    for key, value in figures.items():
        if key.startswith(RATE_PREFIX) and key.endswith("/float"):
            name = key[len(RATE_PREFIX) : -len("/float")]
            quant = figures.get(f"{RATE_PREFIX}{name}/quant")
            if quant is not None:
                rates[name] = (float(value), float(quant))
    return rates
