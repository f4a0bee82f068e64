"""`make demo` (t1c.demo): its pieces, a reduced run, and the full run's accuracy bar."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import snntorch as snn
import torch

from t1c import demo, ir
from t1c.report import manifest_rows


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The demo and recipes set torch's thread count (1 is fastest for them); restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_build_digits_snn_is_a_named_snntorch_chain():
    model = demo.build_digits_snn(hidden=16)
    assert [type(m) for m in model] == [torch.nn.Linear, snn.Leaky, torch.nn.Linear, snn.Leaky]
    assert list(dict(model.named_children())) == ["fc1", "lif1", "fc2", "lif2"]
    assert demo.spike_counts(model, torch.ones(3, 5, 64)).shape == (5, 10)


def test_reset_neurons_touches_only_its_model():
    a, b = demo.build_digits_snn(hidden=8), demo.build_digits_snn(hidden=8)
    a(torch.ones(2, 64) * 5)
    b(torch.ones(2, 64) * 5)
    demo.reset_neurons(a)
    assert torch.count_nonzero(a.lif1.mem) == 0
    assert torch.count_nonzero(b.lif1.mem) > 0


def test_spike_counts_start_from_zero_state():
    model = demo.build_digits_snn(hidden=8)
    xs = (torch.rand(6, 4, 64) < 0.5).float()
    first = demo.spike_counts(model, xs)
    assert torch.equal(first, demo.spike_counts(model, xs))


def test_prepare_source_builds_once(tmp_path):
    messages: list[str] = []
    path = tmp_path / "src.t1c"
    demo.prepare_source(path, hidden=8, epochs=0, log=messages.append)
    graph = ir.read(path)
    assert [n.TYPE for n in graph.nodes.values()] == ["Input", "Affine", "LIF", "Affine", "LIF", "Output"]
    assert graph.nodes["fc1"].weight.shape == (8, 64)
    stamp = path.stat().st_mtime_ns
    demo.prepare_source(path, hidden=8, epochs=0, log=messages.append)
    assert path.stat().st_mtime_ns == stamp
    assert "exists" in messages[-1]


def test_pretrain_learns_digits():
    torch.manual_seed(0)
    dm = demo.digits_data(seed=0)
    model = demo.build_digits_snn(hidden=32)
    before = demo.accuracy(model, dm.val_dataloader(), num_steps=5)
    demo.pretrain(model, dm.train_dataloader(), epochs=2, num_steps=5, lr=5e-3)
    after = demo.accuracy(model, dm.val_dataloader(), num_steps=5)
    assert after > max(before, 0.5)


def test_demo_main_reduced(tmp_path, capsys):
    torch.manual_seed(0)
    rc = demo.main(
        [
            "--out",
            str(tmp_path),
            "--max-epochs",
            "1",
            "--pretrain-epochs",
            "1",
            "--hidden",
            "16",
            "--num-steps",
            "4",
            "--limit-train-batches",
            "2",
            "--limit-val-batches",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert (tmp_path / "digits_snn.t1c").is_file()
    manifest = tmp_path / "fit" / "checkpoints" / "t1c_exports.json"
    assert str(manifest) in out and "8-bit acc" in out
    rows = manifest_rows(manifest)
    assert rows and all(isinstance(r.metrics["t1c/quant_acc"], float) for r in rows)
    assert ir.topology_diff(ir.read(tmp_path / "digits_snn.t1c"), ir.read(rows[-1].t1c)) == []


@pytest.mark.slow
def test_full_demo_reaches_the_accuracy_bar(tmp_path, capsys):
    """The real `make demo` settings: float >= 0.95 and 8-bit within 1 point, in < 2 min."""
    demo.main(["--out", str(tmp_path), "--prepare-only"])
    start = time.perf_counter()
    assert demo.main(["--out", str(tmp_path), "--no-progress"]) == 0
    seconds = time.perf_counter() - start
    last = manifest_rows(tmp_path / "fit" / "checkpoints" / "t1c_exports.json")[-1].metrics
    capsys.readouterr()
    assert last["t1c/float_acc"] >= 0.95
    assert last["t1c/float_acc"] - last["t1c/quant_acc"] <= 0.01
    assert seconds < 120


def test_batch_limit_keeps_whole_numbers_as_counts():
    assert demo.batch_limit("1") == 1 and isinstance(demo.batch_limit("1"), int)
    assert demo.batch_limit("0.25") == 0.25


def test_rerun_shows_only_its_own_exports(tmp_path, capsys):
    tiny = [
        "--out",
        str(tmp_path),
        "--pretrain-epochs",
        "0",
        "--hidden",
        "8",
        "--num-steps",
        "2",
        "--limit-train-batches",
        "1",
        "--limit-val-batches",
        "1",
        "--no-progress",
    ]
    assert demo.main([*tiny, "--max-epochs", "2"]) == 0
    (tmp_path / "fit" / "checkpoints" / "notes.txt").write_text("kept")
    assert demo.main([*tiny, "--max-epochs", "1"]) == 0
    capsys.readouterr()
    folder = tmp_path / "fit" / "checkpoints"
    rows = manifest_rows(folder / "t1c_exports.json")
    assert {r.epoch for r in rows} == {0}
    assert sorted(p.name for p in folder.glob("*.t1c")) == ["epoch=0-step=1.t1c", "last.t1c"]
    assert (folder / "notes.txt").read_text() == "kept"


def test_demo_prints_plain_lines_when_stdout_is_not_a_terminal(tmp_path, capsys):
    """`make demo > log`: no progress bar flood, one line per epoch instead."""
    tiny = ["--out", str(tmp_path), "--pretrain-epochs", "0", "--hidden", "8", "--num-steps", "2"]
    limits = ["--limit-train-batches", "2", "--limit-val-batches", "1", "--max-epochs", "2"]
    assert demo.main([*tiny, *limits]) == 0  # no --no-progress: capsys's stdout is not a TTY
    out = capsys.readouterr().out
    assert "\r" not in out and "it/s" not in out
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 0", "epoch 1"]
    assert "val_acc" in epochs[0] and "t1c/" not in epochs[0]
    assert len(out) < 4000


def test_demo_shows_the_progress_bar_on_a_terminal(monkeypatch, tmp_path):
    seen = {}

    def fake_finetune(source, out_dir, **kwargs):
        seen.update(kwargs)
        return tmp_path / "t1c_exports.json"  # none written: no exports, an empty table

    monkeypatch.setattr(demo, "finetune", fake_finetune)
    args = demo.build_parser().parse_args(["--out", str(tmp_path)])
    monkeypatch.setattr(demo.sys.stdout, "isatty", lambda: True, raising=False)
    demo.finetune_from_args(tmp_path / "src.t1c", args)
    assert seen["progress"] is True
    monkeypatch.setattr(demo.sys.stdout, "isatty", lambda: False, raising=False)
    demo.finetune_from_args(tmp_path / "src.t1c", args)
    assert seen["progress"] is False


def test_pyproject_license_is_an_spdx_expression():
    """pip and setuptools read the metadata without the deprecated-license warning."""
    import warnings

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), pyproject)
    assert dist.metadata.license_expression == "Apache-2.0"
    assert not [w for w in caught if "license" in str(w.message).lower()]
    assert 'requires = ["setuptools>=77"]' in pyproject.read_text()


def test_demo_leaves_out_lightnings_tip_and_pytree_warning(tmp_path):
    """Only while the demo trains: Lightning's "💡 Tip" line and torch's LeafSpec warning are gone."""
    import logging
    import warnings

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    lightning_log = logging.getLogger("lightning.pytorch")
    lightning_log.addHandler(handler)
    source = demo.prepare_source(tmp_path / "src.t1c", hidden=8, epochs=0, log=lambda _: None)
    limits = {"limit_train_batches": 2, "limit_val_batches": 1}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            demo.finetune(
                source, tmp_path / "fit", max_epochs=1, num_steps=2, progress=False, trainer_kwargs=limits
            )
    finally:
        lightning_log.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert any("GPU available" in m for m in messages)  # Lightning's other lines are kept
    assert not any(m.startswith(demo.LIGHTNING_TIP) for m in messages)
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    for name in demo.LIGHTNING_INFO_LOGGERS:  # scoped: the filters are gone after the run
        assert not logging.getLogger(name).filters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from torch.utils._pytree import LeafSpec

        LeafSpec()
    assert [w for w in caught if "LeafSpec" in str(w.message)]  # nothing silenced outside the demo


def test_rebuild_writes_the_cached_source_again(tmp_path, capsys):
    tiny = ["--out", str(tmp_path), "--pretrain-epochs", "0", "--hidden", "8", "--prepare-only"]
    assert demo.main(tiny) == 0
    source = tmp_path / demo.SOURCE_NAME
    stamp = source.stat().st_mtime_ns
    assert demo.main(tiny) == 0
    assert source.stat().st_mtime_ns == stamp
    assert "make demo ARGS=--rebuild" in capsys.readouterr().out
    assert demo.main([*tiny, "--rebuild"]) == 0
    assert source.stat().st_mtime_ns != stamp


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_passes_args_to_the_demo():
    repo = Path(__file__).resolve().parents[1]
    # a make of its own: under `make test`, MAKEFLAGS/MAKELEVEL would make it print directories
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    res = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo", "ARGS=--rebuild --max-epochs 2"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    demo_lines = [line for line in res.stdout.splitlines() if "-m t1c.demo" in line]
    assert demo_lines and demo_lines[-1].endswith("-m t1c.demo --rebuild --max-epochs 2"), res.stdout


def test_install_commands_name_what_pip_can_find():
    """t1c is not on the package index: the README, docstrings and messages give commands from a clone."""
    import tomllib

    repo = Path(__file__).resolve().parents[1]
    texts = {
        name: (repo / name).read_text()
        for name in ("README.md", "t1c/cli.py", "t1c/lightning/__init__.py", "t1c/lightning/events.py")
    }
    for name, text in texts.items():
        assert "install 't1c[" not in text and 'install "t1c[' not in text, name
    readme = texts["README.md"]
    extras = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("test", "events", "nir"):
        assert f"pip install -e '.[{extra}]'" in readme and extra in extras
    assert "python -m t1c.demo " in readme and "python -m pytest" in readme  # the route beside make
    assert "make demo ARGS=--rebuild" in readme
