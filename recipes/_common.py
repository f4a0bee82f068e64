"""What the recipes share that is not their point: command-line flags and the printed reports.

Everything a recipe is about (the snnTorch model, its export, ``T1CModule``, the
``Trainer``, ``ModelCheckpoint``, ``T1CExport``, the data module) is written out in the
recipe itself, so that it can be copied as a template. This file uses only public ``t1c``
names: copy it with the recipe.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from t1c import ir
from t1c.inspect import format_verify
from t1c.report import ExportRow, accuracy_table, manifest_rows


def batch_limit(text: str) -> int | float:
    """A Trainer ``limit_*_batches`` value: ``"2"`` is two batches, ``"0.25"`` a quarter (``1.0``: all)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_args(
    argv: Sequence[str] | None,
    description: str,
    *,
    out: str,
    max_epochs: int = 5,
    pretrain_epochs: int | None = 10,
    hidden: int = 128,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The flags of every recipe (``--out``, ``--max-epochs``, ``--num-steps``, ...; ``--help``).

    Also sets torch's CPU threads (``--threads``) and ``args.progress``: Lightning's progress
    bar only on a terminal and without ``--no-progress``. ``add_arguments(parser)`` adds a
    recipe's own flags (or changes defaults) before parsing. ``pretrain_epochs=None``: the recipe
    does not pretrain, and has no ``--pretrain-epochs`` flag (argparse rejects it in one line).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=Path(out), help="output folder (default: %(default)s)")
    parser.add_argument(
        "--max-epochs", type=int, default=max_epochs, help="fine-tuning epochs (0: only build the .t1c)"
    )
    if pretrain_epochs is not None:
        parser.add_argument(
            "--pretrain-epochs", type=int, default=pretrain_epochs, help="plain PyTorch epochs"
        )
    parser.add_argument("--hidden", type=int, default=hidden, help="hidden neurons")
    parser.add_argument("--num-steps", type=int, default=25, help="time steps per sample")
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate")
    parser.add_argument("--limit-train-batches", type=batch_limit, help="Trainer limit (quick runs)")
    parser.add_argument("--limit-val-batches", type=batch_limit, help="Trainer limit (quick runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (small nets: 1 is fastest)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.progress = not args.no_progress and sys.stdout.isatty()
    return args


def print_exports(manifest: str | Path, weight_bits: int = 8) -> list[ExportRow]:
    """Print the `.t1c` files of a run and their float vs quantized accuracy; return the rows."""
    manifest = Path(manifest)
    rows = manifest_rows(manifest)
    print(f"\n.t1c files (one per checkpoint) and the manifest: {manifest.parent}/")
    for row in rows:
        print(f"  {row.t1c.name}")
    print()
    print(accuracy_table(rows, weight_bits=weight_bits))
    return rows


def report_topology(source: str | Path, export: str | Path) -> int:
    """Print ``t1c verify``'s report of ``export`` against ``source``; 0 if the topology is the same, else 1."""
    diffs = ir.topology_diff(ir.read(source), ir.read(export))
    print("\n" + format_verify(diffs, str(source), str(export)))
    return 1 if diffs else 0
