"""NIR files through the commands: t1c convert / inspect, and T1CModule fine-tuning a .nir model."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from t1c import ir

nir = pytest.importorskip("nir")

from nir_reference import DT, assert_same_nir, every_imported_type, lif  # noqa: E402

from t1c.nir import from_nir  # noqa: E402


def _mlp_nir(path: Path) -> Path:
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([64])),
        nir.Affine(weight=np.random.default_rng(0).normal(0, 0.3, (32, 64)), bias=np.zeros(32)),
        lif(32, tau_steps=5.0, r=5.0, thr=1.0),
        nir.Affine(weight=np.random.default_rng(1).normal(0, 0.3, (10, 32)), bias=np.zeros(10)),
        lif(10, tau_steps=5.0, r=5.0, thr=1.0),
        nir.Output(output_type=np.array([10])),
    )
    nir.write(path, g)
    return path


def test_cli_convert_both_ways_and_inspect(in_tmp, fixtures_dir, capsys):
    from t1c.cli import EXIT_ERROR, EXIT_OK, main

    _mlp_nir(in_tmp / "model.nir")
    assert main(["convert", "model.nir", "model.t1c", "--dt", "1e-3"]) == EXIT_OK
    graph = ir.read("model.t1c")
    assert ir.topology_diff(from_nir("model.nir", dt=DT), graph) == []
    assert main(["convert", "model.t1c", "back.nir", "--dt", "1e-3"]) == EXIT_OK
    assert ir.topology_diff(graph, from_nir("back.nir", dt=DT)) == []
    assert main(["inspect", "model.nir", "--dt", "1e-3"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "converted at dt=0.001" in out and "LIF" in out and "affine_1" in out
    assert main(["inspect", "model.nir"]) == EXIT_ERROR
    assert main(["convert", str(fixtures_dir / "conv_snn.t1c"), "conv.nir", "--dt", "1e-3"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "pass --dt" in err and "node 'pool1': MaxPool2d" in err
    assert not Path("conv.nir").exists()


def test_t1cmodule_reads_nir_and_fit_exports_t1c(in_tmp):
    from t1c.cli import EXIT_OK, main
    from t1c.lightning import T1CModule

    _mlp_nir(in_tmp / "model.nir")
    with pytest.raises(ValueError, match="needs nir_dt"):
        T1CModule("model.nir")
    module = T1CModule("model.nir", nir_dt=DT, num_steps=4)
    assert module.source_path == "model.nir" and module.num_classes == 10
    rng = np.random.default_rng(0)
    np.savez("data.npz", x=rng.random((40, 64), dtype=np.float32), y=np.arange(40) % 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(
            [
                "fit",
                "--model.graph=model.nir",
                "--model.nir_dt=1e-3",
                "--model.num_steps=4",
                "--data=t1c.lightning.TensorDataModule",
                "--data.path=data.npz",
                "--data.batch_size=20",
                "--trainer.max_epochs=1",
                "--trainer.logger=false",
                "--trainer.enable_progress_bar=false",
                "--trainer.default_root_dir=run",
                "--trainer.callbacks+=t1c.lightning.T1CExport",
                "--trainer.callbacks.verify=raise",
                "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                "--trainer.callbacks.save_last=true",
            ]
        )
    assert rc == EXIT_OK
    exports = sorted(Path("run").rglob("*.t1c"))
    assert exports
    source = from_nir("model.nir", dt=DT)
    for path in exports:
        assert ir.topology_diff(source, ir.read(path)) == []
    Path("model.nir").unlink()  # the imported graph travels in the checkpoint
    (ckpt,) = Path("run").rglob("last.ckpt")
    restored = T1CModule.load_from_checkpoint(ckpt)
    assert ir.topology_diff(source, restored.export_graph()) == []


def test_cli_round_trip_nir_t1c_nir_keeps_names_types_and_fields(in_tmp):
    """Every NIR type from_nir imports as itself (Linear, Delay, IF, CubaLIF included) comes back."""
    from t1c.cli import EXIT_OK, main

    nir.write("model.nir", every_imported_type())
    assert main(["convert", "model.nir", "model.t1c", "--dt", "1e-3"]) == EXIT_OK
    assert isinstance(ir.read("model.t1c").nodes["cuba"], ir.CubaLIF)
    assert main(["convert", "model.t1c", "back.nir", "--dt", "1e-3"]) == EXIT_OK
    assert_same_nir(nir.read("back.nir"), nir.read("model.nir"))
