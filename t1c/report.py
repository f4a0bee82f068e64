"""What a run's exports measured: the manifest as rows, and the float vs quantized accuracy table.

:class:`~t1c.lightning.T1CExport` keeps a manifest, ``t1c_exports.json``, beside the
checkpoints: each `.t1c` file name maps to its checkpoint, epoch, global step and the metrics
of that moment (the Trainer's, such as ``val_acc``, and the export's own ``t1c/*``).
:func:`manifest_rows` reads it into :class:`ExportRow` objects in training order, every metric
included; :func:`accuracy_table` prints the ``t1c/*`` accuracy columns the rows have.

Example:
    >>> rows = manifest_rows("runs/checkpoints/t1c_exports.json")  # doctest: +SKIP
    >>> print(accuracy_table(rows, weight_bits=8))  # doctest: +SKIP
    checkpoint             epoch  step  float acc  8-bit acc      gap  agreement
    ---------------------  -----  ----  ---------  ---------  -------  ---------
    epoch=0-step=23.ckpt       0    23      97.8%      97.2%  +0.6 pt     100.0%
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t1c.inspect import format_table
from t1c.lightning.manifest import read_manifest

LAST_CHECKPOINT = "last.ckpt"
# How the manifest writes a float that JSON cannot hold.
NON_FINITE = ("nan", "inf", "-inf")
MISSING = "-"

__all__ = ["ExportRow", "accuracy_table", "manifest_rows"]


@dataclass(frozen=True)
class ExportRow:
    """One `.t1c` export of a run, as its manifest entry describes it.

    Attributes:
        t1c: the `.t1c` file (the manifest's folder joined with the entry's name).
        checkpoint: its checkpoint's name relative to the manifest's folder, or None when
            the manifest names none (a checkpoint outside the folder).
        epoch: the epoch of the export, None when the entry has none.
        step: the global step of the export, None when the entry has none.
        metrics: every metric of the entry by name (``"val_acc"``, ``"t1c/quant_acc"``, ...);
            numbers as floats (``"nan"``, ``"inf"`` as written by the manifest included),
            anything else as the manifest has it.
    """

    t1c: Path
    checkpoint: str | None
    epoch: int | None
    step: int | None
    metrics: dict[str, Any]


def manifest_rows(manifest_path: str | Path) -> list[ExportRow]:
    """One row per `.t1c` of the manifest at ``manifest_path``, in training order.

    Rows are ordered by global step; at the same step the one of ``last.ckpt`` comes after
    the epoch's own checkpoint, and an entry without a step comes first.

    Raises:
        ValueError: the file is not a manifest, or one of its entries is not a mapping
            (the message names the file and the entry).
    """
    manifest_path = Path(manifest_path)
    rows = []
    for name, entry in read_manifest(manifest_path)["exports"].items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"{manifest_path}: entry {name!r} is {type(entry).__name__}, not a mapping")
        metrics = entry.get("metrics")
        if not isinstance(metrics, Mapping):
            metrics = {}
        rows.append(
            ExportRow(
                t1c=manifest_path.parent / name,
                checkpoint=entry.get("checkpoint") or None,
                epoch=entry.get("epoch"),
                step=entry.get("global_step"),
                metrics={str(key): _number(value) for key, value in metrics.items()},
            )
        )
    rows.sort(key=lambda r: (r.step if isinstance(r.step, int) else -1, r.checkpoint == LAST_CHECKPOINT))
    return rows


def accuracy_table(rows: Sequence[ExportRow], weight_bits: int = 8) -> str:
    """The per-checkpoint float vs quantized accuracy table the demo and the recipes print.

    After the checkpoint, epoch and step come the accuracy columns of
    :class:`~t1c.lightning.T1CExport`'s metrics (float acc, ``weight_bits``-bit acc, gap,
    agreement), each only when at least one row has its metric; a row without it shows
    ``-``. Other metrics are not shown.

    Args:
        rows: from :func:`manifest_rows`.
        weight_bits: the width of the quantized simulation, for the quantized column's header.
    """
    columns = [
        (key, header, fmt)
        for key, header, fmt in _accuracy_columns(weight_bits)
        if any(key in row.metrics for row in rows)
    ]
    return format_table(
        ["checkpoint", "epoch", "step", *(header for _, header, _ in columns)],
        [
            (
                _or_missing(row.checkpoint),
                _or_missing(row.epoch),
                _or_missing(row.step),
                *(_cell(row.metrics, key, fmt) for key, _, fmt in columns),
            )
            for row in rows
        ],
        right=range(1, 3 + len(columns)),
    )


def _accuracy_columns(weight_bits: int) -> list[tuple[str, str, Callable[[float], str]]]:
    """``(metric, header, format)`` of each accuracy column, in the table's order."""

    def percent(value: float) -> str:
        return f"{100 * value:.1f}%"

    def points(value: float) -> str:
        return f"{100 * value:+.1f} pt"

    return [
        ("t1c/float_acc", "float acc", percent),
        ("t1c/quant_acc", f"{weight_bits}-bit acc", percent),
        ("t1c/quant_gap", "gap", points),
        ("t1c/export_agreement", "agreement", percent),
    ]


def _cell(metrics: Mapping[str, Any], key: str, fmt: Callable[[float], str]) -> Any:
    """``metrics[key]`` formatted; ``-`` when missing; a value that is not a number as written."""
    if key not in metrics:
        return MISSING
    value = metrics[key]
    return fmt(value) if isinstance(value, float) else value


def _or_missing(value: Any) -> Any:
    return MISSING if value is None else value


def _number(value: Any) -> Any:
    """A manifest metric as a float when it is a number (or ``"nan"``, ``"inf"``, ``"-inf"``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if value in NON_FINITE:
        return float(value)
    return value
