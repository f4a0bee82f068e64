"""How a plain LightningModule's batch becomes the exported graph's input, and its output a score.

A module whose ``forward`` encodes a static batch (``spikegen.rate(x, num_steps=25)``) feeds
its network a sequence the batch does not hold. :class:`Feed` says what the module does:
``T1CExport(encoder="rate", num_steps=25)`` (one of :data:`ENCODERS`, each snnTorch's own
``spikegen`` function, or any callable ``x -> [T, B, ...]``), and ``readout=`` how the
graph's outputs ``[T, B, C]`` become class scores ``[B, C]`` (:data:`READOUTS`, or a
callable). :func:`fed_pair` runs the module's own forward and encodes the batch from one
seeded random stream, so both see the same spikes; on the first batch of the first export
the measurement checks that the float graph then predicts what forward does
(:data:`SELF_CHECK_AGREEMENT`; :func:`mismatch_message` otherwise).

Example:
    >>> import torch
    >>> feed = Feed(encoder="direct", num_steps=3)
    >>> feed.sequence(torch.ones(2, 4), "static", None).shape
    torch.Size([3, 2, 4])
    >>> feed.scores(torch.ones(3, 2, 5)).tolist()[0]
    [3.0, 3.0, 3.0, 3.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch import LightningModule

from .batches import LAYOUT_WORDS, batch_size, time_first, to_device
from .module import eval_mode

#: Encoders by name: snnTorch's ``spikegen`` on a static batch ``[B, ...]`` (``"direct"``: the
#: batch itself at every step), and ``"delta"`` on the batch's own steps (or its repeats).
ENCODERS = ("rate", "latency", "direct", "delta")
#: Readouts by name: class scores ``[B, C]`` from the graph's outputs ``[T, B, C]``.
READOUTS = ("spike_count", "mean", "last_step")
#: The self-check passes when at least this share of a validation batch's predictions agree.
SELF_CHECK_AGREEMENT = 0.9
#: The seed both sides of the self-check (and each measured batch) draw their random numbers from.
FEED_SEED = 0x7C1

Encoder = str | Callable[[torch.Tensor], torch.Tensor] | None
Readout = str | Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Feed:
    """What a plain LightningModule feeds its network and how its output is read.

    Args:
        encoder: None (the batch's own steps, or the static batch repeated for the steps
            ``forward`` returns), a name in :data:`ENCODERS`, or a callable
            ``x [B, ...] -> [T, B, ...]``.
        num_steps: steps of a named encoder (``"delta"``, ``"direct"`` and None: of a static
            batch's repeats); a callable encoder sets its own.
        readout: ``"spike_count"`` (sum over time), ``"mean"`` (mean over time), ``"last_step"``
            (the last step's output), or a callable ``ys [T, B, C] -> [B, C]``.
    """

    encoder: Encoder = None
    num_steps: int | None = None
    readout: Readout = "spike_count"

    @property
    def given(self) -> bool:
        """Whether the user said how the module feeds its network (``encoder`` or ``num_steps``)."""
        return self.encoder is not None or self.num_steps is not None

    def sequence(self, x: torch.Tensor, layout: str, steps: int | None) -> torch.Tensor:
        """The graph's input ``[T, B, ...]`` for a batch input ``x`` held in ``layout``;
        ``steps``: how many the module's forward returned (None: one)."""
        steps = self.num_steps or steps
        if self.encoder is None or self.encoder == "direct":
            return time_first(x, layout, steps)
        if callable(self.encoder):
            return self.encoder(x)
        from snntorch import spikegen

        if self.encoder == "delta":
            return spikegen.delta(time_first(x, layout, steps))
        return getattr(spikegen, self.encoder)(x, num_steps=steps)

    def scores(self, ys: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, C]`` from the graph's outputs ``[T, B, C]``."""
        if callable(self.readout):
            return self.readout(ys)
        if self.readout == "last_step":
            return ys[-1]
        return ys.mean(0) if self.readout == "mean" else ys.sum(0)

    def words(self, layout: str, steps: int | None) -> str:
        """What the graph was fed, for messages."""
        if callable(self.encoder):
            fed = f"the batch encoded by {getattr(self.encoder, '__name__', type(self.encoder).__name__)}"
        elif self.encoder not in (None, "direct"):
            fed = f"the batch {self.encoder}-encoded over {self.num_steps or steps} steps"
        elif layout != "static":
            fed = f"the batch's own steps ({LAYOUT_WORDS[layout]})"
        else:
            fed = f"the batch's input repeated for {self.num_steps or steps or 1} step(s)"
        readout = getattr(self.readout, "__name__", "a callable") if callable(self.readout) else self.readout
        return f"{fed}, read out as {readout}"


def check_feed(encoder: Any, num_steps: Any, readout: Any) -> None:
    """Check ``T1CExport(encoder=, num_steps=, readout=)``.

    Raises:
        ValueError: an argument is not valid; the message repeats it and says what is.
    """
    why = None
    if encoder is not None and not callable(encoder) and encoder not in ENCODERS:
        why = f"encoder={encoder!r}): must be None, one of {ENCODERS} or a callable x -> [T, B, ...]"
    elif num_steps is not None and (
        isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1
    ):
        why = f"num_steps={num_steps!r}): must be None or an int >= 1"
    elif encoder in ("rate", "latency") and num_steps is None:
        why = f"encoder={encoder!r}): needs num_steps=<the steps the module's forward encodes>"
    elif not callable(readout) and readout not in READOUTS:
        why = f"readout={readout!r}): must be one of {READOUTS} or a callable ys [T, B, C] -> [B, C]"
    if why is not None:
        raise ValueError(f"T1CExport({why}")


def classes(out: Any, size: int) -> tuple[torch.Tensor, int | None]:
    """Predicted classes ``[B]`` from a forward's output for ``size`` samples, and its number
    of steps (None: one).

    ``[B, C]``: argmax. ``[T, B, C]`` or ``[B, T, C]`` (spikes or values per step): argmax of
    the sum over time. A tuple/list (``spk_rec, mem_rec``): its first element.

    Raises:
        ValueError: the output has none of these shapes.
    """
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim not in (2, 3):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"forward returned {shape}, not [B, C], [T, B, C] or [B, T, C]")
    if out.ndim == 2:
        return out.argmax(-1), None
    if out.shape[1] == size:
        return out.sum(0).argmax(-1), int(out.shape[0])
    return out.sum(1).argmax(-1), int(out.shape[1])


def fed_pair(
    pl_module: LightningModule, x: torch.Tensor, layout: str, feed: Feed, seed: int
) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """The module's own predicted classes for ``x`` and the graph's input sequence, both drawn
    from the random stream of ``seed`` (a stochastic encoder then draws what forward drew),
    with the steps the forward returned.

    The module itself runs, in eval mode under no_grad as Lightning validates it (a copy of
    snnTorch neurons with init_hidden is not reset by snntorch.utils.reset: class-level).
    Callers preserve the global RNG.
    """
    x = to_device(x, pl_module.device)
    torch.manual_seed(seed)
    with eval_mode(pl_module):
        out = pl_module(x)
    live, steps = classes(out, batch_size(x, layout))
    torch.manual_seed(seed)
    return live, feed.sequence(x, layout, steps), steps


def mismatch_message(module_name: str, agreement: float, fed: str) -> str:
    """The self-check's one message: the metrics would not reflect the module's forward, and the fix."""
    return (
        f"T1CExport: the exported graph, fed {fed}, predicts what {module_name}.forward predicts for "
        f"only {agreement:.0%} of a validation batch (self-check: at least {SELF_CHECK_AGREEMENT:.0%}). "
        "The t1c/* float and quantized metrics would not reflect the module's forward, so none are logged. "
        "If forward encodes its input, say how: T1CExport(encoder='rate', num_steps=25) (or 'latency', "
        "'delta', 'direct', or a callable x -> [T, B, ...]), and readout='spike_count', 'mean' or "
        "'last_step' for how its output is read (docs/export_callback.md)"
    )
