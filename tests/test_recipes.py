"""The recipes run end to end (tiny settings), read as templates, and the README's Python code runs as written."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from batching import assert_batching_independent

from t1c import ir

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--pretrain-epochs",
    "1",
    "--max-epochs",
    "1",
    "--num-steps",
    "4",
    "--hidden",
    "16",
    "--limit-train-batches",
    "2",
    "--limit-val-batches",
    "1",
    "--no-progress",
]


RECIPES = ("digits_snn", "qat_4bit", "resnet_block", "hybrid_conv")


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The demo and recipes set torch's thread count (1 is fastest for them); restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def recipes_on_path(monkeypatch):
    """A recipe imports its neighbours (``_common``, ``digits_snn``) as scripts run from recipes/ do."""
    monkeypatch.syspath_prepend(str(REPO / "recipes"))


def load_recipe(name: str) -> ModuleType:
    """Import ``recipes/<name>.py`` by path (recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_digits_recipe_tiny(tmp_path, capsys):
    torch.manual_seed(0)
    recipe = load_recipe("digits_snn")
    assert recipe.main([*TINY, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "float acc" in out and "8-bit acc" in out
    assert "topology identical" in out
    source = ir.read(tmp_path / "source.t1c")
    assert [n.TYPE for n in source.nodes.values()].count("LIF") == 2
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"  # Lightning's own layout
    assert sorted(p.name for p in folder.glob("*.t1c")) == ["epoch=0-step=2.t1c", "last.t1c"]
    for path in folder.glob("*.t1c"):
        assert ir.topology_diff(source, ir.read(path)) == []
        assert path.with_suffix(".ckpt").is_file()


def test_digits_recipe_export_only(tmp_path, capsys):
    recipe = load_recipe("digits_snn")
    assert (
        recipe.main(["--max-epochs", "0", "--pretrain-epochs", "0", "--hidden", "8", "--out", str(tmp_path)])
        == 0
    )
    assert (tmp_path / "source.t1c").is_file()
    assert not (tmp_path / "lightning_logs").exists()
    assert "t1c fit --config configs/digits.yaml" in capsys.readouterr().out


def test_resnet_recipe_keeps_skip_topology(tmp_path, capsys):
    torch.manual_seed(0)
    recipe = load_recipe("resnet_block")
    assert recipe.main([*TINY, "--out", str(tmp_path)]) == 0
    assert "topology identical" in capsys.readouterr().out
    source = ir.read(tmp_path / "source.t1c")
    skips = [n for n, node in source.nodes.items() if isinstance(node, ir.Skip)]
    assert len(skips) == 1 and source.nodes[skips[0]].skip_type == "residual"
    assert len(source.predecessors(skips[0])) == 2
    last = ir.read(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.t1c")
    assert ir.topology_diff(source, last) == []


def test_hybrid_conv_recipe_tiny(tmp_path, capsys):
    torch.manual_seed(0)
    recipe = load_recipe("hybrid_conv")
    assert recipe.main([*TINY, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "float acc" in out and "8-bit acc" in out and "BatchNorm folded into the conv" in out
    assert "topology identical" in out
    source = ir.read(tmp_path / "source.t1c")
    types = [n.TYPE for n in source.nodes.values()]
    assert {"Conv2d", "BatchNorm2d", "ReLU", "LIF"} <= set(types)
    last = ir.read(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.t1c")
    assert ir.topology_diff(source, last) == []
    (bn,) = [name for name, node in source.nodes.items() if isinstance(node, ir.BatchNorm2d)]
    assert not np.array_equal(last.nodes[bn].running_mean, source.nodes[bn].running_mean)  # fine-tuned


def test_hybrid_conv_config_fits_the_recipe_source(in_tmp):
    """``t1c fit --config configs/hybrid_conv.yaml`` on the source the recipe writes (tiny run)."""
    import yaml

    from t1c.cli import main

    config = REPO / "configs" / "hybrid_conv.yaml"
    graph = yaml.safe_load(config.read_text())["model"]["graph"]
    recipe = load_recipe("hybrid_conv")
    flags = ["--max-epochs", "0", "--pretrain-epochs", "0", "--hidden", "8", "--out", str(Path(graph).parent)]
    assert recipe.main(flags) == 0
    fast = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    fast += ["--trainer.enable_progress_bar=false", "--model.num_steps=3"]
    assert main(["fit", "--config", str(config), *fast]) == 0
    (last,) = (in_tmp / "demo_runs" / "cli" / "hybrid_conv").rglob("last.t1c")
    assert ir.topology_diff(ir.read(graph), ir.read(last)) == []


def test_resnet_model_exports_exactly():
    from t1c.bridge import ir_to_torch, to_ir

    recipe = load_recipe("resnet_block")
    torch.manual_seed(0)
    model = recipe.ResidualSNN(hidden=12)
    executor = ir_to_torch(to_ir(model, torch.zeros(1, 64)))
    xs = (torch.rand(12, 3, 64) < 0.4).float()
    ys, _ = executor.run_sequence(xs)
    load_recipe("digits_snn").reset(model)
    expected = torch.stack([model(x) for x in xs])
    assert_batching_independent(executor, xs)  # exact spikes: provably batching-independent
    assert torch.equal(ys, expected)


def test_qat_recipe_reports_4bit(tmp_path, capsys):
    torch.manual_seed(0)
    recipe = load_recipe("qat_4bit")
    assert recipe.main([*TINY, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4-bit acc" in out and "after QAT" in out
    source = ir.read(tmp_path / "source.t1c")
    affine = [n for n in source.nodes.values() if isinstance(n, ir.SpikingAffine)]
    assert len(affine) == 2 and {n.weight_bits for n in affine} == {4}
    last = ir.read(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.t1c")
    assert ir.topology_diff(source, last) == []
    for node in last.nodes.values():
        if isinstance(node, ir.SpikingAffine):
            assert node.weight_bits == 4


def test_recipe_pretraining_learns(tmp_path):
    from t1c.lightning import DigitsDataModule
    from t1c.lightning.encoding import encode

    recipe = load_recipe("digits_snn")

    torch.manual_seed(0)
    data = DigitsDataModule(batch_size=64)
    data.setup("fit")
    model = recipe.build_model(hidden=32)

    def accuracy() -> float:
        x, y = data.val_set.tensors
        with torch.no_grad():
            recipe.reset(model)
            steps = encode(x, 10, "rate", generator=torch.Generator().manual_seed(0))
            counts = sum(model(step) for step in steps)
        return float((counts.argmax(1) == y).float().mean())

    before = accuracy()
    recipe.pretrain(model, data, epochs=2, num_steps=5)
    assert accuracy() > max(before, 0.5)


#: Every recipe and the data module it writes out (the event recipes read tonic's datasets).
DATA_MODULES = {name: "DigitsDataModule(" for name in RECIPES} | {
    "nmnist_conv": "EventDataModule(",
    "shd_recurrent": "EventDataModule(",
}


@pytest.mark.parametrize("name", sorted(DATA_MODULES))
def test_recipes_are_templates(name):
    """The Lightning objects a user copies are written out in the recipe, which stays short."""
    text = (REPO / "recipes" / f"{name}.py").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 120
    for visible in (
        "T1CModule(",
        "pl.Trainer(",
        "ModelCheckpoint(",
        "T1CExport(",
        DATA_MODULES[name],
        "trainer.fit(",
    ):
        assert visible in text, f"recipes/{name}.py hides {visible}"
    assert "t1c.demo" not in text and "from t1c import demo" not in text
    common = (REPO / "recipes" / "_common.py").read_text(encoding="utf-8")
    assert "Trainer(" not in common and "T1CModule" not in common.split('"""')[2]


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.py")), ids=lambda p: p.name)
def test_recipes_import_only_public_t1c_names(path):
    """A recipe (``_common.py`` included) is copied out of the repository: it needs only t1c's public API."""
    imported: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported += [f"{node.module}.{alias.name}" for alias in node.names]
    t1c_names = [name for name in imported if name.split(".")[0] == "t1c"]
    assert t1c_names, f"{path.name} imports nothing from t1c"
    for name in t1c_names:
        assert not any(part.startswith("_") for part in name.split(".")), (
            f"{path.name} imports private {name}"
        )
        assert not name.startswith(("t1c.demo", "t1c.cli")), f"{path.name} imports {name}"


def test_common_batch_limit_keeps_whole_numbers_as_counts():
    common = load_recipe("_common")
    assert common.batch_limit("2") == 2 and isinstance(common.batch_limit("2"), int)
    assert common.batch_limit("0.25") == 0.25


def test_readme_has_python_quick_start():
    blocks = readme_python_blocks()
    assert len(blocks) >= 3
    joined = "\n".join(blocks)
    for name in ("ir.write", "ir.read", "topology_diff", "to_ir", "ir_to_torch", "T1CExport", "T1CModule"):
        assert name in joined


def test_readme_python_blocks_run(in_tmp):
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(readme_python_blocks()):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        except Exception as err:
            pytest.fail(f"README python block {i} (starting {block.splitlines()[0]!r}) failed: {err!r}")
    assert (in_tmp / "tiny.t1c").is_file() and (in_tmp / "digits_snn.t1c").is_file()
    assert list((in_tmp / "runs").rglob("*.t1c")), "the Lightning quick start wrote no .t1c"
