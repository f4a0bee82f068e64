"""The recurrent SHD recipe and config, on synthetic files in SHD's own HDF5 layout (no downloads).

``recipes/shd_recurrent.py`` exports an snnTorch RLeaky model to a recurrent graph and trains it from its file with
``T1CModule``; ``T1CExport`` writes recurrent `.t1c` files (the cycle kept) measured in float
and 8-bit; ``configs/shd_recurrent.yaml`` trains the recipe's source with ``t1c fit``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from test_events import no_downloads, write_shd  # noqa: F401  (no_downloads: an autouse fixture)

from t1c import ir
from t1c.bridge import ir_to_torch, to_ir

pytest.importorskip("tonic")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def recipes_on_path(monkeypatch):
    """The recipe imports its neighbours (``_common``, ``nmnist_conv``) as scripts run from recipes/ do."""
    monkeypatch.syspath_prepend(str(REPO / "recipes"))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the recipe sets it (--threads)


def load_recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "recipe_shd_recurrent", REPO / "recipes" / "shd_recurrent.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_graph_is_its_snntorch_model():
    """The recipe's RLeaky model, exported: the same spikes step for step, the feedback on a back edge."""
    recipe = load_recipe()
    torch.manual_seed(3)
    model = recipe.recurrent_snn(hidden=12, beta=0.9)
    graph = to_ir(model, torch.zeros(1, 700))
    assert graph.cyclic and graph.nodes["input"].shape == (700,) and graph.output_shapes["out"] == (20,)
    assert ("rlif", "rlif.recurrent") in graph.edges and isinstance(graph.nodes["rlif"], ir.CubaLIF)
    xs = (torch.rand(100, 3, 700, generator=torch.Generator().manual_seed(0)) < 0.05).float()
    with torch.no_grad():
        expected = torch.stack([model(x) for x in xs])
    ys, _ = ir_to_torch(graph).run_sequence(xs)
    assert expected.sum() > 0
    assert torch.equal(ys, expected)


def test_recipe_trains_and_exports_recurrent_files(tmp_path, capsys):
    root = write_shd(tmp_path / "data")
    flags = ["--data", str(root), "--offline", "--workers", "0", "--batch-size", "4", "--num-steps", "12"]
    flags += ["--hidden", "16", "--max-epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"]
    assert load_recipe().main(flags) == 0
    out = capsys.readouterr().out
    assert "float acc" in out and "8-bit acc" in out and "topology identical" in out
    source = ir.read(tmp_path / "run" / "source.t1c")
    assert source.cyclic and ("rlif", "rlif.recurrent") in source.edges
    folder = tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints"
    assert sorted(p.name for p in folder.glob("*.t1c")) == ["epoch=0-step=3.t1c", "last.t1c"]
    last = ir.read(folder / "last.t1c")
    assert last.cyclic and ir.topology_diff(source, last) == []
    assert not np.array_equal(
        last.nodes["rlif.recurrent"].weight, source.nodes["rlif.recurrent"].weight
    )  # trained through BPTT


def test_recipe_export_only_points_at_the_config(tmp_path, capsys):
    flags = ["--max-epochs", "0", "--hidden", "8", "--offline", "--out", str(tmp_path)]
    assert load_recipe().main(flags) == 0
    assert "t1c fit --config configs/shd_recurrent.yaml" in capsys.readouterr().out
    assert ir.read(tmp_path / "source.t1c").nodes["rlif"].tau_mem.shape == (8,)


def test_recipe_has_no_pretraining_flag(tmp_path, capsys):
    """The recipe trains its source as exported: a --pretrain-epochs it would ignore is refused."""
    with pytest.raises(SystemExit) as stopped:
        load_recipe().main(
            ["--pretrain-epochs", "3", "--max-epochs", "0", "--offline", "--out", str(tmp_path)]
        )
    assert stopped.value.code == 2
    assert "unrecognized arguments: --pretrain-epochs 3" in capsys.readouterr().err
    assert not (tmp_path / "source.t1c").exists()


def test_fit_shd_recurrent_config_on_files_in_shds_layout(in_tmp):
    from t1c.cli import main

    # the recipe writes shd_runs/recurrent/source.t1c, where the config looks
    assert load_recipe().main(["--max-epochs", "0", "--hidden", "8", "--offline"]) == 0
    write_shd(in_tmp / "data")
    args = ["fit", "--config", str(REPO / "configs" / "shd_recurrent.yaml")]
    args += [
        "--data.init_args.download=false",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=4",
    ]
    args += ["--data.init_args.n_time_bins=12", "--model.num_steps=12", "--model.grad_checkpoint_steps=5"]
    args += ["--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]
    assert main(args) == 0
    (last,) = (in_tmp / "shd_runs" / "recurrent" / "cli").rglob("last.t1c")
    source = ir.read(in_tmp / "shd_runs" / "recurrent" / "source.t1c")
    assert ir.read(last).cyclic and ir.topology_diff(source, ir.read(last)) == []


def test_recipe_names_its_published_baseline():
    """The recipe names the baseline users compare against (its template check: test_recipes.py)."""
    text = (REPO / "recipes" / "shd_recurrent.py").read_text(encoding="utf-8")
    assert "83%" in text and "Cramer et al. 2020" in text  # the published baseline users compare against
