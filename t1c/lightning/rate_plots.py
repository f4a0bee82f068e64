"""The picture of each export's spike rates: drawn, logged to the loggers that take images, saved as PNG.

:func:`rates_figure` draws the per-layer spike rates of the float and the quantized graph
side by side (grouped bars per LIF layer), marking the layers that
:func:`~t1c.lightning.rates.quantization_harm` names silent or saturated after quantization,
the very decision behind the callback's warning. :class:`RatePlots` is what
``T1CExport(rate_figure=...)`` does with it at every export: log it to each logger of the
Trainer that takes images (Lightning's ``TensorBoardLogger``, ``WandbLogger`` and
``MLFlowLogger``) and, with ``rate_figure="png"``, keep a PNG beside every `.t1c` file of
the run (``epoch=3-step=92.t1c`` -> ``epoch=3-step=92.rates.png``), deleted with it.

matplotlib is optional (the ``plot`` extra) and imported only when a picture is drawn.
Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, never
pyplot: nothing opens a window or changes global state.

Example:
    >>> fig = rates_figure({"lif1": (0.20, 0.18), "lif2": (0.10, 0.0)})
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['silent']
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from .files import remove_file, write_replacing
from .naming import EXPORT_SUFFIX
from .rates import layer_rates, quantization_harm

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

#: The values of ``T1CExport(rate_figure=...)``.
RATE_FIGURE_MODES = ("auto", True, False, "png")
#: The tag (TensorBoard), key (W&B) and artifact folder (MLflow) of the pictures.
FIGURE_TAG = "t1c/spike_rates"
#: What replaces ``.t1c`` in the name of an export's PNG.
PNG_SUFFIX = ".rates.png"
#: What to install when matplotlib is missing.
INSTALL_HINT = "pip install -e '.[plot]' in a clone of t1c, or pip install 'matplotlib>=3.7'"
#: The loggers that take images, as Lightning exposes them.
IMAGE_LOGGERS = (TensorBoardLogger, WandbLogger, MLFlowLogger)
DPI = 100
MAX_WIDTH = 12.0  # inches: beyond about 20 layers the bars get thinner, the picture no wider
COLORS = {"float": "#1f77b4", "quant": "#ff7f0e", "harm": "#d62728"}


def check_mode(mode: Any) -> None:
    """Raise a ``ValueError`` repeating the call unless ``mode`` is one of :data:`RATE_FIGURE_MODES`."""
    if not (mode is True or mode is False or (isinstance(mode, str) and mode in ("auto", "png"))):
        raise ValueError(f"T1CExport(rate_figure={mode!r}): must be one of {RATE_FIGURE_MODES}")


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def takes_images(logger: Logger) -> bool:
    """Whether ``logger`` is one of the Lightning loggers that take images (:data:`IMAGE_LOGGERS`)."""
    return isinstance(logger, IMAGE_LOGGERS)


def png_path(export: str) -> str:
    """The PNG beside an export: ``epoch=3-step=92.t1c`` -> ``epoch=3-step=92.rates.png``."""
    stem = export[: -len(EXPORT_SUFFIX)] if export.endswith(EXPORT_SUFFIX) else export
    return stem + PNG_SUFFIX


def layer_order(name: str) -> list[Any]:
    """Sort key of layer names, numbers compared as numbers (``lif2`` before ``lif10``)."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name))]


def rates_figure(
    rates: Mapping[str, tuple[float, float]], title: str = "", quant_label: str = "quantized"
) -> Figure:
    """Grouped bars of each layer's spike rate in float and quantized, harmed layers marked.

    A layer that fires in float and is silent after quantization, or saturates, gets its
    name in red, a hatched red quantized bar with a red cross at its top (a silent bar has no
    height) and the word ``silent`` or ``saturated`` above it (the decision of :func:`~t1c.lightning.rates.quantization_harm`).

    Args:
        rates: layer -> ``(float rate, quantized rate)``, spikes per neuron and step.
        title: the figure's title (e.g. the export's epoch and step).
        quant_label: the legend's name of the quantized bars (e.g. with the weight bits).

    Returns:
        A ``matplotlib.figure.Figure`` (not managed by pyplot).

    Raises:
        ValueError: ``rates`` is empty.
        ImportError: matplotlib is not installed (the message names the ``plot`` extra).
    """
    if not rates:
        raise ValueError("no layer rates to draw")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"the spike-rate figure needs matplotlib: {INSTALL_HINT}") from None
    names = sorted(rates, key=layer_order)
    harmed = dict(quantization_harm({name: rates[name] for name in names}))
    width = min(MAX_WIDTH, 2.5 + 0.6 * len(names))
    fig = Figure(figsize=(width, 3.0), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    positions = range(len(names))
    floats = [rates[name][0] for name in names]
    quants = [rates[name][1] for name in names]
    ax.bar([i - 0.2 for i in positions], floats, 0.4, label="float", color=COLORS["float"])
    quant_bars = ax.bar([i + 0.2 for i in positions], quants, 0.4, label=quant_label, color=COLORS["quant"])
    top = max(max(floats), max(quants), 0.01)
    ax.set_ylim(0, top * 1.25)
    ax.set_xticks(list(positions), names, rotation=30 if len(names) > 6 else 0, parse_math=False)
    labels = ax.get_xticklabels()
    for i, name in enumerate(names):
        what = harmed.get(name)
        if what is None:
            continue
        quant_bars[i].set(hatch="//", edgecolor=COLORS["harm"], facecolor="none")
        labels[i].set_color(COLORS["harm"])
        ax.plot([i + 0.2], [quants[i]], marker="x", color=COLORS["harm"], clip_on=False)
        level = quants[i] + 0.04 * top
        ax.text(
            i + 0.2, level, what, ha="center", va="bottom", color=COLORS["harm"], fontsize=8, parse_math=False
        )
    ax.set_ylabel("spikes per neuron and step", fontsize=8)
    ax.tick_params(labelsize=8)
    fig.legend(fontsize=8, loc="outside lower center", ncols=2, frameon=False)
    if title:
        ax.set_title(title, fontsize=9, parse_math=False)
    return fig


def figure_pixels(fig: Figure) -> np.ndarray:
    """The figure rendered by the Agg canvas: RGB pixels ``[H, W, 3]``, uint8."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (no date or software stamp: a picture of the same rates is the same file)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def log_figure(logger: Logger, fig: Figure, pixels: np.ndarray, step: int, name: str) -> None:
    """Give ``fig`` to one logger that takes images, at ``step``.

    TensorBoard gets the rendered pixels (``SummaryWriter.add_image``, as ``add_figure`` does
    without pyplot), W&B the pixels (``WandbLogger.log_image``), MLflow the figure as the
    artifact ``t1c/spike_rates/<name>.png`` (``MlflowClient.log_figure``).
    """
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(FIGURE_TAG, pixels, step, dataformats="HWC")
    elif isinstance(logger, WandbLogger):
        logger.log_image(key=FIGURE_TAG, images=[pixels], step=step)
    elif isinstance(logger, MLFlowLogger):
        logger.experiment.log_figure(logger.run_id, fig, f"{FIGURE_TAG}/{name}.png")


class RatePlots:
    """What ``T1CExport(rate_figure=...)`` does with each export's spike rates.

    Args:
        mode: ``"auto"``: log the figure to every logger that takes images when matplotlib
            is installed, else nothing; ``True``: the same, warning once at fit start when
            matplotlib is missing (or no logger takes images); ``"png"``: the figure to those
            loggers and a PNG beside every `.t1c` file of the run, warning once when matplotlib
            is missing; ``False``: nothing.
        weight_bits: the quantized simulation's weight bits (named in the legend).

    Raises:
        ValueError: ``mode`` is not one of :data:`RATE_FIGURE_MODES`.
    """

    def __init__(self, mode: bool | str, weight_bits: int) -> None:
        check_mode(mode)
        self.mode, self.weight_bits = mode, weight_bits
        self.enabled = False  # decided at every fit start
        self.drawn: dict[str, tuple[int, Any]] = {}  # .t1c path -> (step, content hash) its PNG shows

    def start_fit(self, trainer: Trainer) -> None:
        """Decide whether pictures are drawn in this fit; warn once when one asked for cannot be."""
        self.enabled = self.mode is not False and matplotlib_available()
        asked = self.mode is True or self.mode == "png"
        if asked and not self.enabled:
            rank_zero_warn(
                f"T1CExport(rate_figure={self.mode!r}): matplotlib is missing, no figures: {INSTALL_HINT}"
            )
        elif self.mode is True and not any(takes_images(logger) for logger in trainer.loggers):
            names = ", ".join(kind.__name__ for kind in IMAGE_LOGGERS)
            rank_zero_warn(
                f"T1CExport(rate_figure=True): no logger of this Trainer takes images ({names} do); "
                "pass rate_figure='png' to keep the figures beside the exports"
            )

    def figure(self, rates: Mapping[str, tuple[float, float]], epoch: int, step: int) -> Figure:
        """The figure of one export measured at ``epoch`` and ``step``."""
        title = f"spike rates per layer at epoch {epoch}, step {step}"
        return rates_figure(rates, title, f"quantized ({self.weight_bits}-bit weights)")

    def log(self, trainer: Trainer, metrics: Mapping[str, float], epoch: int, step: int) -> None:
        """Log the figure of one export's measured ``metrics`` to every logger that takes images (rank zero)."""
        if not self.enabled or not trainer.is_global_zero:
            return
        loggers = [logger for logger in trainer.loggers if takes_images(logger)]
        rates = layer_rates(metrics)
        if not loggers or not rates:
            return
        fig = self.figure(rates, epoch, step)
        pixels = figure_pixels(fig)
        for logger in loggers:
            log_figure(logger, fig, pixels, step, f"epoch={epoch}-step={step}")

    def write_pngs(
        self,
        trainer: Trainer,
        entries: Mapping[str, Mapping[str, Any]],
        owned: set[str],
        deleted: set[str],
    ) -> None:
        """With ``mode="png"``: a PNG beside every `.t1c` of the run, none beside a deleted one (rank zero).

        Args:
            trainer: the Trainer (only global rank zero writes).
            entries: the run's exports by `.t1c` path (the ledger's entries).
            owned: the `.t1c` paths this run wrote or names after its checkpoints: the only
                ones given a picture.
            deleted: the `.t1c` paths this run deleted (their pictures go too, drawn in this
                process or before a resume).
        """
        if self.mode != "png" or not self.enabled or not trainer.is_global_zero:
            return
        rendered: dict[tuple[int, Any], bytes] = {}  # a step's picture is drawn once for all its copies
        for path, entry in entries.items():
            if path not in owned or not os.path.lexists(path):
                continue
            key = (entry["global_step"], entry.get("content_hash"))
            if self.drawn.get(path) == key:
                continue
            rates = layer_rates(entry.get("metrics", {}))
            if not rates:
                self.forget(path)
                continue
            if key not in rendered:
                rendered[key] = png_bytes(self.figure(rates, entry["epoch"], entry["global_step"]))
            write_replacing(rendered[key], png_path(path))
            self.drawn[path] = key
        for path in {*self.drawn, *deleted}:
            if path not in entries and not os.path.lexists(path):
                self.forget(path)

    def forget(self, path: str) -> None:
        """Remove the PNG beside ``path``, an export of this run that is gone or has no rates."""
        self.drawn.pop(path, None)
        remove_file(png_path(path))
