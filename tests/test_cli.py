"""The ``t1c`` command line: inspect, verify, export and fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_report import ACCURACY_HEADER

from t1c import ir
from t1c.cli import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK, EXIT_UNEXPECTED, build_parser, main

REPO = Path(__file__).resolve().parents[1]


def _chain(hidden: int = 4, metadata: dict | None = None) -> ir.Graph:
    return ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([3])}),
        ir.Affine(weight=np.ones((hidden, 3)), bias=np.zeros(hidden)),
        ir.LIF(
            tau=np.full(hidden, 10.0),
            r=np.full(hidden, 10.0),
            v_leak=np.zeros(hidden),
            v_threshold=np.ones(hidden),
        ),
        ir.Output(),
        names=["input", "fc", "lif", "output"],
        metadata=metadata,
    )


# -- inspect -------------------------------------------------------------------------------
def test_inspect_spiking_affine_fixture(fixtures_dir, capsys):
    assert main(["inspect", str(fixtures_dir / "spiking_affine.t1c")]) == EXIT_OK
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("sa2 "))
    assert line.split()[:4] == ["sa2", "SpikingAffine", "[24]", "[12]"]
    assert "spike_mode=graded weight_bits=4 accumulator_bits=12" in line
    assert "format version: 0.0.1" in out
    assert "7 nodes, 6 edges, 1,157 weights, 144 neuron parameters" in out
    assert "metadata:\n  (none)" in out


def test_inspect_conv_fixture_shows_shapes_and_fields(fixtures_dir, capsys):
    assert main(["inspect", str(fixtures_dir / "conv_snn.t1c")]) == EXIT_OK
    out = capsys.readouterr().out
    pool = next(x for x in out.splitlines() if x.startswith("pool1 "))
    assert "[6, 16, 16]" in pool and "[6, 8, 8]" in pool and "kernel_size=2" in pool
    names = [x.split()[0] for x in out.split("nodes (topological order):")[1].splitlines()[3:14]]
    assert names[0] == "input" and names[-1] == "output" and names.index("conv1") < names.index("conv2")


def test_inspect_shows_written_metadata(tmp_path, capsys):
    path = tmp_path / "m.t1c"
    ir.write(path, _chain(metadata={"checkpoint": "epoch=1-step=9.ckpt", "t1c": {"float_acc": 0.97}}))
    assert main(["inspect", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "checkpoint: epoch=1-step=9.ckpt" in out
    assert "t1c.float_acc: 0.97" in out


def test_inspect_bad_file_exits_2_with_format_error(tmp_path, capsys):
    bad = tmp_path / "bad.t1c"
    bad.write_bytes(b"not hdf5 at all")
    assert main(["inspect", str(bad)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"file '{bad}'" in err and "not an HDF5 file" in err


def test_inspect_missing_file_exits_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.t1c")]) == EXIT_ERROR
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["inspect", "verify", "export"])
def test_commands_on_a_directory_say_so(tmp_path, capsys, command):
    folder = tmp_path / "runs.t1c"
    folder.mkdir()
    args = {"inspect": [folder], "verify": [folder, folder], "export": [folder, "-o", tmp_path / "x.t1c"]}
    assert main([command, *map(str, args[command])]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"'{folder}' is a directory, not a file" in err and "does not exist" not in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("command", ["inspect", "verify", "export", "convert"])
def test_commands_never_block_on_a_fifo(tmp_path, command):
    """A FIFO nobody writes to: a read would wait forever; the command names it and exits 2."""
    fifo = tmp_path / ("pipe.ckpt" if command == "export" else "pipe.t1c")
    os.mkfifo(fifo)
    args = {
        "inspect": [fifo],
        "verify": [fifo, fifo],
        "export": [fifo, "-o", tmp_path / "x.t1c"],
        "convert": [fifo, tmp_path / "x.nir", "--dt", "1e-3"],
    }
    res = subprocess.run(
        [sys.executable, "-m", "t1c.cli", command, *map(str, args[command])],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert res.returncode == EXIT_ERROR, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert f"'{fifo}' is not a regular file (it is a FIFO (named pipe))" in res.stderr


@pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="no /dev/null character device")
def test_commands_on_a_device_say_so(tmp_path, capsys):
    assert main(["inspect", "/dev/null"]) == EXIT_ERROR
    assert "'/dev/null' is not a regular file (it is a character device)" in capsys.readouterr().err
    assert main(["export", "/dev/null", "-o", str(tmp_path / "x.t1c")]) == EXIT_ERROR
    assert "checkpoint '/dev/null' is not a regular file" in capsys.readouterr().err


def test_inspect_does_not_import_torch(fixtures_dir):
    code = (
        "import sys; from t1c.cli import main; "
        f"rc = main(['inspect', {str(fixtures_dir / 'mlp_snn.t1c')!r}]); "
        "print('RC', rc, 'TORCH', 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "RC 0 TORCH False"


def test_console_script_runs(fixtures_dir):
    script = Path(sys.executable).parent / "t1c"
    if not script.exists():
        pytest.fail(f"console script {script} missing; reinstall with pip install -e .")
    res = subprocess.run(
        [str(script), "verify", str(fixtures_dir / "mlp_snn.t1c"), str(fixtures_dir / "mlp_snn.t1c")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("topology identical")


def test_convert_names_its_flag_not_the_python_option(tmp_path, capsys):
    pytest.importorskip("nir")
    graph = _chain()
    graph.nodes["lif"].reset_mechanism = "subtract"  # snnTorch's reset: no exact NIR form
    ir.write(tmp_path / "net.t1c", graph)
    args = ["convert", str(tmp_path / "net.t1c"), str(tmp_path / "net.nir"), "--dt", "1e-3"]
    assert main(args) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "node 'lif': LIF has no exact NIR form" in err
    assert "Pass --approximate to export" in err and "approximate=True" not in err
    assert main([*args, "--approximate"]) == EXIT_OK
    err = capsys.readouterr().err
    assert err.startswith("t1c convert: warning: to_nir: node 'lif' exported approximately")
    assert len(err.strip().splitlines()) == 1


def test_inspect_nir_takes_the_time_step_the_file_records(tmp_path, capsys):
    nir = pytest.importorskip("nir")
    ir.write(tmp_path / "net.t1c", _chain())
    written = tmp_path / "net.nir"
    assert main(["convert", str(tmp_path / "net.t1c"), str(written), "--dt", "2e-3"]) == EXIT_OK
    assert main(["inspect", str(written)]) == EXIT_OK  # t1c wrote dt into the file: no --dt needed
    out = capsys.readouterr().out
    assert "converted at dt=0.002 (from the file's t1c_dt)" in out
    assert main(["inspect", str(written), "--dt", "1e-3"]) == EXIT_OK  # --dt wins
    assert "converted at dt=0.001 (from --dt)" in capsys.readouterr().out
    other = nir.read(written)
    other.metadata = {}  # as other NIR producers write it
    nir.write(tmp_path / "other.nir", other)
    assert main(["inspect", str(tmp_path / "other.nir")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "is a NIR file that does not say its time step" in err and "continuous-time" in err
    assert "pass --dt" in err


# -- verify --------------------------------------------------------------------------------
def test_verify_identical_topology_exit_0(tmp_path, capsys):
    a, b = tmp_path / "a.t1c", tmp_path / "b.t1c"
    ir.write(a, _chain())
    changed = _chain()
    changed.nodes["fc"].weight[:] = 5.0  # weights may differ: same topology
    ir.write(b, changed)
    assert main(["verify", str(a), str(b)]) == EXIT_OK
    assert capsys.readouterr().out.startswith("topology identical")


def test_verify_different_topology_exit_1_with_diff(tmp_path, capsys):
    a, b = tmp_path / "a.t1c", tmp_path / "b.t1c"
    ir.write(a, _chain(hidden=4))
    ir.write(b, _chain(hidden=5))
    assert main(["verify", str(a), str(b)]) == EXIT_DIFFERENT
    out = capsys.readouterr().out
    assert out.startswith("topology differs")
    assert "  node 'fc': weight shape [4, 3] became [5, 3]" in out


def test_verify_edge_order_difference(fixtures_dir, tmp_path, capsys):
    g = ir.read(fixtures_dir / "resnet_block.t1c")
    swapped = list(g.edges)
    i, j = swapped.index(("fc2", "skip")), swapped.index(("input", "skip"))
    swapped[i], swapped[j] = swapped[j], swapped[i]
    ir.write(tmp_path / "swapped.t1c", ir.Graph(g.nodes, swapped, g.metadata))
    rc = main(["verify", str(fixtures_dir / "resnet_block.t1c"), str(tmp_path / "swapped.t1c")])
    assert rc == EXIT_DIFFERENT
    assert "edge order differs" in capsys.readouterr().out


def test_verify_bad_file_exits_2(tmp_path, fixtures_dir, capsys):
    (tmp_path / "empty.t1c").write_bytes(b"")
    assert main(["verify", str(fixtures_dir / "mlp_snn.t1c"), str(tmp_path / "empty.t1c")]) == EXIT_ERROR
    assert "is empty" in capsys.readouterr().err


def test_verify_input_shape_difference_reads_once(tmp_path, capsys):
    a, b = tmp_path / "a.t1c", tmp_path / "b.t1c"
    ir.write(a, _chain())
    changed = _chain()
    changed.nodes["input"] = ir.Input(input_type={"input": np.array([1])})
    changed.nodes["fc"] = ir.Affine(weight=np.ones((4, 1)), bias=np.zeros(4))
    ir.write(b, changed)
    assert main(["verify", str(a), str(b)]) == EXIT_DIFFERENT
    out = capsys.readouterr().out
    assert "  node 'input': shape [3] became [1]" in out
    assert "shape shape" not in out


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("HDF5 library crashed")])
def test_verify_unexpected_error_exits_3_in_one_line(tmp_path, capsys, monkeypatch, error):
    a = tmp_path / "a.t1c"
    ir.write(a, _chain())

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(ir, "read", fail)
    assert main(["verify", str(a), str(a)]) == EXIT_UNEXPECTED
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert lines[0].startswith(f"t1c verify: unexpected error: {type(error).__name__}")
    assert "T1C_DEBUG=1" in lines[0]
    monkeypatch.setenv("T1C_DEBUG", "1")  # the traceback on request
    with pytest.raises(type(error)):
        main(["verify", str(a), str(a)])
    monkeypatch.delenv("T1C_DEBUG")
    with pytest.raises(type(error)):
        main(["--debug", "verify", str(a), str(a)])


def test_verify_unreadable_file_exits_2(tmp_path, capsys, monkeypatch):
    a = tmp_path / "a.t1c"
    ir.write(a, _chain())

    def denied(path, *args, **kwargs):
        raise PermissionError(f"file '{path}' cannot be opened for reading (permission denied)")

    monkeypatch.setattr(ir, "read", denied)
    assert main(["verify", str(a), str(a)]) == EXIT_ERROR
    assert "permission denied" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == EXIT_ERROR
    assert "inspect" in capsys.readouterr().out


def test_parser_lists_every_command():
    help_text = build_parser().format_help()
    for command in ("fit", "inspect", "verify", "export"):
        assert command in help_text


# -- fit (LightningCLI) and export -----------------------------------------------------------
FAST = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--model.num_steps=4",
]


def _source(kind: str, path: Path, fixtures_dir: Path) -> Path:
    """The source graph a config expects, built small (the recipes' own builders)."""
    import torch

    from t1c import demo

    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "digits":
        path.write_bytes((fixtures_dir / "mlp_snn.t1c").read_bytes())
    elif kind == "resnet_block":
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "recipe_resnet_block", REPO / "recipes" / "resnet_block.py"
        )
        recipe = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(REPO / "recipes"))  # as when the script runs: its neighbours import
        try:
            spec.loader.exec_module(recipe)
        finally:
            sys.path.remove(str(REPO / "recipes"))
        model = recipe.ResidualSNN(hidden=12)
        demo.export_model(model, path, torch.zeros(1, 64))
    else:
        demo.export_model(
            demo.build_digits_snn(hidden=12), path, torch.zeros(1, 64), spiking=True, weight_bits=4
        )
    return path


CONFIG_SOURCES = {
    "digits": "demo_runs/digits_snn.t1c",
    "resnet_block": "demo_runs/resnet_block/source.t1c",
    "qat_4bit": "demo_runs/qat_4bit/source.t1c",
}


@pytest.mark.parametrize("name", sorted(CONFIG_SOURCES))
def test_fit_with_each_config(name, in_tmp, fixtures_dir):
    import yaml

    config = REPO / "configs" / f"{name}.yaml"
    assert yaml.safe_load(config.read_text())["model"]["graph"] == CONFIG_SOURCES[name]
    source = ir.read(_source(name, in_tmp / CONFIG_SOURCES[name], fixtures_dir))
    assert main(["fit", "--config", str(config), *FAST]) == EXIT_OK
    manifests = list((in_tmp / "demo_runs" / "cli" / name).rglob("t1c_exports.json"))
    assert len(manifests) == 1
    exports = json.loads(manifests[0].read_text())["exports"]
    assert {"epoch=0-step=2.t1c", "last.t1c"} <= set(exports)
    for file_name, entry in exports.items():
        assert 0.0 <= entry["metrics"]["t1c/quant_acc"] <= 1.0
        assert ir.topology_diff(source, ir.read(manifests[0].parent / file_name)) == []


def test_fit_prints_where_its_files_went_and_the_table(in_tmp, fixtures_dir, capsys):
    _source("digits", in_tmp / CONFIG_SOURCES["digits"], fixtures_dir)
    assert main(["fit", "--config", str(REPO / "configs" / "digits.yaml"), *FAST]) == EXIT_OK
    out = capsys.readouterr().out
    folder = Path("demo_runs/cli/digits/lightning_logs/version_0")
    assert f"logs: {folder}" in out
    assert f"checkpoints: {folder / 'checkpoints'}" in out
    assert f".t1c files (one per checkpoint) and their manifest: {folder / 'checkpoints'}" in out
    for name in ("epoch=0-step=2.t1c", "last.t1c", "t1c_exports.json"):
        assert f"  {folder / 'checkpoints' / name}\n" in out
    header = next(line for line in out.splitlines() if line.startswith("checkpoint "))
    assert header.split() == ACCURACY_HEADER
    assert any(line.startswith("epoch=0-step=2.ckpt ") for line in out.splitlines())


def test_fit_root_dir_on_the_command_line_moves_the_logs(in_tmp, fixtures_dir, capsys):
    """The config names its logger's save_dir; --trainer.default_root_dir still decides."""
    _source("digits", in_tmp / CONFIG_SOURCES["digits"], fixtures_dir)
    config = str(REPO / "configs" / "digits.yaml")
    assert main(["fit", "--config", config, *FAST, "--trainer.default_root_dir=elsewhere"]) == EXIT_OK
    assert not (in_tmp / "demo_runs" / "cli").exists()
    (manifest,) = (in_tmp / "elsewhere").rglob("t1c_exports.json")
    assert manifest.parent == in_tmp / "elsewhere" / "lightning_logs" / "version_0" / "checkpoints"
    assert (manifest.parent.parent / "metrics.csv").is_file()  # the CSVLogger's folder followed
    assert "logs: elsewhere/lightning_logs/version_0" in capsys.readouterr().out
    args = [*FAST, "--trainer.default_root_dir", "root2", "--trainer.logger.init_args.save_dir=logs2"]
    assert main(["fit", "--config", config, *args]) == EXIT_OK
    assert list((in_tmp / "logs2").rglob("t1c_exports.json"))  # a save_dir given as well is kept


def test_fit_command_line_overrides_yaml(in_tmp, fixtures_dir):
    from t1c.cli import make_cli

    _source("digits", in_tmp / CONFIG_SOURCES["digits"], fixtures_dir)
    cli = make_cli(
        [
            "--config",
            str(REPO / "configs" / "digits.yaml"),
            "--model.lr=0.005",
            "--data.init_args.batch_size=32",
            "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
            "--trainer.callbacks.monitor=val_acc",
        ],
        run=False,
    )
    from t1c.lightning import DigitsDataModule, T1CExport

    assert cli.model.hparams.lr == 0.005
    assert isinstance(cli.datamodule, DigitsDataModule) and cli.datamodule.batch_size == 32
    export = [c for c in cli.trainer.callbacks if isinstance(c, T1CExport)]
    assert len(export) == 1 and export[0].weight_bits == 8


def test_fit_tensor_datamodule_from_command_line(in_tmp, fixtures_dir):
    import numpy as np_

    _source("digits", in_tmp / CONFIG_SOURCES["digits"], fixtures_dir)
    rng = np_.random.default_rng(0)
    np_.savez(in_tmp / "data.npz", x=rng.random((60, 64), dtype=np_.float32), y=np_.arange(60) % 10)
    rc = main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "digits.yaml"),
            *FAST,
            "--data=t1c.lightning.TensorDataModule",
            "--data.path=data.npz",
            "--data.batch_size=16",
        ]
    )
    assert rc == EXIT_OK
    assert list((in_tmp / "demo_runs" / "cli" / "digits").rglob("last.t1c"))


def _fit_error(args: list[str], capsys) -> str:
    """Run `t1c fit` expecting a user mistake: exit 2, one line on stderr, no traceback."""
    assert main(["fit", *FAST, "--trainer.logger=false", *args]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("t1c fit: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_fit_missing_graph_is_one_line(in_tmp, capsys):
    line = _fit_error(["--model.graph=missing.t1c", "--data=t1c.lightning.DigitsDataModule"], capsys)
    assert "'missing.t1c'" in line and "no such .t1c file" in line


def test_fit_missing_npz_is_one_line(in_tmp, fixtures_dir, capsys):
    graph = f"--model.graph={fixtures_dir / 'mlp_snn.t1c'}"
    line = _fit_error([graph, "--data=t1c.lightning.TensorDataModule", "--data.path=nope.npz"], capsys)
    assert "nope.npz" in line and "no such file" in line


def test_fit_data_shape_mismatch_names_file_and_shapes(in_tmp, fixtures_dir, capsys):
    np.savez(in_tmp / "small.npz", x=np.zeros((40, 10), np.float32), y=np.arange(40) % 10)
    graph = f"--model.graph={fixtures_dir / 'mlp_snn.t1c'}"
    line = _fit_error([graph, "--data=t1c.lightning.TensorDataModule", "--data.path=small.npz"], capsys)
    assert "data file 'small.npz'" in line
    assert "shape [10]" in line and "takes [64] at its Input 'input'" in line


def test_fit_label_outside_classes_names_label_file_and_count(in_tmp, fixtures_dir, capsys):
    y = np.arange(40) % 10
    y[7] = 12
    np.savez(
        in_tmp / "labels.npz",
        train_x=np.zeros((40, 64), np.float32),
        train_y=y,
        val_x=np.zeros((10, 64), np.float32),
        val_y=np.arange(10),
    )
    graph = f"--model.graph={fixtures_dir / 'mlp_snn.t1c'}"
    line = _fit_error([graph, "--data=t1c.lightning.TensorDataModule", "--data.path=labels.npz"], capsys)
    assert "data file 'labels.npz' (train_x/train_y)" in line
    assert "label 12" in line and "10 output classes" in line


def test_fit_debug_shows_the_traceback(in_tmp, monkeypatch):
    args = ["--model.graph=missing.t1c", "--data=t1c.lightning.DigitsDataModule"]
    with pytest.raises(FileNotFoundError, match="missing.t1c"):
        main(["fit", "--debug", *FAST, *args])
    monkeypatch.setenv("T1C_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="missing.t1c"):
        main(["fit", *FAST, *args])


@pytest.mark.parametrize("tty", [False, True])
def test_fit_progress_bar_only_on_a_terminal(in_tmp, fixtures_dir, monkeypatch, tty):
    from t1c import cli

    _source("digits", in_tmp / CONFIG_SOURCES["digits"], fixtures_dir)
    built, make_cli = {}, cli.make_cli

    def parse_only(args, **kwargs):  # build the LightningCLI `t1c fit` would run, without fitting
        built["cli"] = make_cli(args[1:], run=False, **kwargs)
        return built["cli"]

    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: tty, raising=False)
    monkeypatch.setattr(cli, "make_cli", parse_only)
    assert main(["fit", "--config", str(REPO / "configs" / "digits.yaml")]) == EXIT_OK
    assert (built["cli"].trainer.progress_bar_callback is not None) is tty


def test_fit_help_lists_model_data_and_callbacks(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--model.graph", "--model.num_steps", "--model.qat", "--data", "--trainer.callbacks"):
        assert option in out


def test_fit_bad_option_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.no_such_option=1"])
    assert exit_info.value.code == 2


#: What a source graph exported by an earlier run carries: facts about that run, not this one.
STALE = {"t1c_export": {"epoch": 5, "global_step": 115, "val_acc": 0.31, "weight_bits": 8}, "epoch": 5}


@pytest.fixture
def trained_checkpoint(in_tmp, fixtures_dir):
    """A real T1CModule checkpoint from `t1c fit`, plus the source graph it started from.

    The source carries an earlier run's export metadata (:data:`STALE`).
    """
    source_path = _source("digits", in_tmp / CONFIG_SOURCES["digits"], fixtures_dir)
    stale = ir.read(source_path)
    ir.write(source_path, ir.Graph(stale.nodes, stale.edges, STALE))
    assert main(["fit", "--config", str(REPO / "configs" / "digits.yaml"), *FAST]) == EXIT_OK
    ckpt = next((in_tmp / "demo_runs").rglob("epoch=0-step=2.ckpt"))
    return ckpt, ir.read(source_path), source_path


def test_export_checkpoint_without_source_file(trained_checkpoint, capsys):
    ckpt, source, source_path = trained_checkpoint
    source_path.unlink()  # the graph travels inside the checkpoint
    out = ckpt.parent / "exported.t1c"
    assert main(["export", str(ckpt), "-o", str(out)]) == EXIT_OK
    assert f"wrote {out}" in capsys.readouterr().out
    exported = ir.read(out)
    assert ir.topology_diff(source, exported) == []
    facts = exported.metadata["t1c_export"]
    assert facts["checkpoint"] == ckpt.name
    assert (facts["epoch"], facts["global_step"]) == (0, 2)
    assert facts["source_hash"] == source.content_hash()
    assert "weight_bits" not in facts and "val_acc" not in facts  # no integer weights, nothing measured
    beside = ir.read(ckpt.with_suffix(".t1c"))  # what T1CExport wrote at that checkpoint
    np.testing.assert_array_equal(exported.nodes["fc1"].weight, beside.nodes["fc1"].weight)
    assert not np.array_equal(exported.nodes["fc1"].weight, source.nodes["fc1"].weight)


def test_export_with_integer_weights(trained_checkpoint):
    ckpt, _, _ = trained_checkpoint
    out = ckpt.parent / "int8.t1c"
    assert main(["export", str(ckpt), "-o", str(out), "--integer-weights", "8"]) == EXIT_OK
    fc1 = ir.read(out).nodes["fc1"]
    assert fc1.weight_int is not None and int(np.abs(fc1.weight_int).max()) <= 127


def test_export_writes_only_the_facts_of_this_export(trained_checkpoint):
    ckpt, source, _ = trained_checkpoint
    assert source.metadata == STALE  # the graph the run started from describes an earlier run
    out = ckpt.parent / "int4.t1c"
    assert main(["export", str(ckpt), "-o", str(out), "--integer-weights", "4"]) == EXIT_OK
    metadata = ir.read(out).metadata
    assert set(metadata) == {"producer", "producer_version", "t1c_export"}
    assert metadata["t1c_export"] == {
        "exported_by": "t1c export",
        "checkpoint": ckpt.name,
        "epoch": 0,
        "global_step": 2,
        "source_hash": source.content_hash(),
        "weight_bits": 4,
        "accumulator_bits": 32,
        "integer_weights": True,
    }
    assert int(np.abs(ir.read(out).nodes["fc1"].weight_int).max()) <= 7


class _Payload:
    """Pickles as a call of ``exec``: loading it with a plain ``torch.load`` writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def test_export_never_runs_code_from_a_checkpoint(tmp_path, fixtures_dir, capsys, monkeypatch):
    import torch

    from t1c.lightning.module import CKPT_GRAPH_KEY

    marker = tmp_path / "code_ran.txt"
    ckpt = tmp_path / "crafted.ckpt"
    blob = (fixtures_dir / "mlp_snn.t1c").read_bytes()
    torch.save({CKPT_GRAPH_KEY: blob, "state_dict": {}, "hyper_parameters": _Payload(marker)}, ckpt)
    torch.load(ckpt, weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.read_text() == "code ran"
    marker.unlink()

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # overrides torch's default, not ours
    assert main(["export", str(ckpt), "-o", str(tmp_path / "out.t1c")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "out.t1c").exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert f"'{ckpt}' holds objects a weights-only load refuses" in lines[0]
    assert "exec" in lines[0] and "weights_only=True" in lines[0]


def test_export_help_and_readme_say_the_same_about_checkpoints(capsys):
    """One true statement on checkpoint safety, word for word in `t1c export --help` and the README."""
    from t1c.cli import CHECKPOINT_SAFETY

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    readme = " ".join((REPO / "README.md").read_text().replace("`", "").split())
    assert CHECKPOINT_SAFETY in help_text and CHECKPOINT_SAFETY in readme
    assert "weights_only=True" in CHECKPOINT_SAFETY and "no code in it runs" in CHECKPOINT_SAFETY
    assert "only checkpoints you trust" not in help_text


def test_export_loads_a_plain_trainer_checkpoint_weights_only(in_tmp, fixtures_dir, capsys):
    """A checkpoint of a Python-built run (a Path among the data module's hyperparameters) exports."""
    import pickle

    import lightning.pytorch as pl
    import torch

    from t1c.lightning import T1CModule, TensorDataModule

    np.savez(in_tmp / "data.npz", x=np.random.default_rng(0).random((40, 64)), y=np.arange(40) % 10)
    data = TensorDataModule(path=in_tmp / "data.npz", batch_size=8)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=in_tmp,
    )
    trainer.fit(T1CModule(fixtures_dir / "mlp_snn.t1c", num_steps=3), data)
    ckpt = next(in_tmp.rglob("*.ckpt"))
    with pytest.raises(pickle.UnpicklingError, match="PosixPath|WindowsPath"):
        torch.load(ckpt, weights_only=True)  # the Path needs the allow-list t1c export uses
    assert main(["export", str(ckpt), "-o", str(in_tmp / "plain.t1c")]) == EXIT_OK
    exported = ir.read(in_tmp / "plain.t1c")
    assert ir.topology_diff(ir.read(fixtures_dir / "mlp_snn.t1c"), exported) == []
    assert exported.metadata["t1c_export"]["global_step"] == 2


def test_export_errors_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.ckpt"), "-o", str(tmp_path / "x.t1c")]) == EXIT_ERROR
    assert "does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"junk")
    assert main(["export", str(junk), "-o", str(tmp_path / "x.t1c")]) == EXIT_ERROR
    assert "could not be loaded as a T1CModule checkpoint" in capsys.readouterr().err
    assert main(["export", str(junk), "-o", str(tmp_path / "no" / "x.t1c")]) == EXIT_ERROR
    assert "does not exist" in capsys.readouterr().err


def test_export_integer_weights_bits_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path / "a.ckpt"), "-o", str(tmp_path / "a.t1c"), "--integer-weights", "40"])
    assert exit_info.value.code == 2
    assert "must be in 1..32" in capsys.readouterr().err
