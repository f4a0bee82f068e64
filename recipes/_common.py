"""What the recipes share that is not their point: command-line flags and the printed reports.

Everything a recipe is about (the snnTorch model, its export, ``T1CModule``, the
``Trainer``, ``ModelCheckpoint``, ``T1CExport``, the data module) is written out in the
recipe itself, so that it can be copied as a template.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from t1c import demo, ir
from t1c.inspect import format_verify
from t1c.report import ExportRow, accuracy_table, manifest_rows


def parse_args(
    argv: Sequence[str] | None,
    description: str,
    *,
    out: str,
    max_epochs: int = demo.FINETUNE_EPOCHS,
    pretrain_epochs: int = demo.PRETRAIN_EPOCHS,
    hidden: int = demo.HIDDEN,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The flags of every recipe (``--out``, ``--max-epochs``, ``--num-steps``, ...; ``--help``).

    Also sets torch's CPU threads (``--threads``) and ``args.progress``: Lightning's progress
    bar only on a terminal and without ``--no-progress``. ``add_arguments(parser)`` adds a
    recipe's own flags (or changes defaults) before parsing.
    """
    parser = argparse.ArgumentParser(description=description)
    demo.add_training_args(
        parser, out=Path(out), max_epochs=max_epochs, pretrain_epochs=pretrain_epochs, hidden=hidden
    )
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
