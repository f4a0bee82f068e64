"""t1c.nir.common: dt is required and checked; t1c works without the optional nir package."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from t1c import ir

nir = pytest.importorskip("nir")

from nir_reference import DT, REPO  # noqa: E402

from t1c.nir import from_nir, to_nir  # noqa: E402


def test_dt_is_required_and_checked():
    graph = ir.read(REPO / "tests" / "fixtures" / "mlp_snn.t1c")
    with pytest.raises(TypeError, match="dt is required"):
        to_nir(graph)
    with pytest.raises(TypeError, match="dt is required"):
        from_nir(to_nir(graph, dt=DT))
    with pytest.raises(ValueError, match="positive"):
        to_nir(graph, dt=-1.0)


def test_nir_is_optional(tmp_path):
    """Without the nir package, t1c imports and runs; t1c.nir says how to install it."""
    code = (
        "import sys; sys.modules['nir'] = None\n"
        "import t1c, t1c.ir, t1c.bridge, t1c.nir, t1c.cli\n"
        "from t1c.lightning import T1CExport, T1CModule\n"
        "from t1c.bridge import ir_to_torch\n"
        "ir_to_torch(t1c.ir.read(sys.argv[1]))\n"
        "try:\n"
        "    t1c.nir.from_nir('model.nir', dt=1e-3)\n"
        "except ImportError as err:\n"
        "    print('ERR', err)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "tests" / "fixtures" / "mlp_snn.t1c")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert (
        "ERR t1c.nir needs the optional 'nir' package" in out
        and "pip install -e '.[nir]'" in out
        and "t1c[nir]" not in out
    )
