"""T1CExport under DDP: 2 CPU processes (gloo), launched as a script the way Lightning needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t1c import ir
from t1c.lightning.manifest import read_manifest
from t1c.lightning.naming import flatten_metrics

SCRIPT = Path(__file__).with_name("ddp_script.py")


@pytest.mark.slow
def test_ddp_one_file_per_checkpoint_same_state_on_every_rank(tmp_path, fixtures_dir):
    root = str(Path(__file__).resolve().parents[2])  # this checkout's t1c, not an installed one
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), str(fixtures_dir / "mlp_snn.t1c")],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "exports are synchronous under distributed training" in run.stderr  # no thread syncs ranks
    folder = tmp_path / "ck"
    ckpts = sorted(p.stem for p in folder.glob("*.ckpt"))
    t1c = sorted(p.stem for p in folder.glob("*.t1c"))
    assert t1c == ckpts and "last" in t1c  # one file per checkpoint, nothing per rank
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0 == rank1  # names, steps and reduced metrics identical on both ranks
    manifest = read_manifest(folder / "t1c_exports.json")["exports"]
    assert set(manifest) == {f"{s}.t1c" for s in t1c}
    best = next(s for s in t1c if s != "last")
    measured = flatten_metrics(ir.read(folder / f"{best}.t1c").metadata["t1c_export"]["metrics"])
    assert 0.0 <= measured["t1c/quant_acc"] <= 1.0 and measured["t1c/export_agreement"] == 1.0
    assert manifest[f"{best}.t1c"]["metrics"]["t1c/float_acc"] == measured["t1c/float_acc"]
