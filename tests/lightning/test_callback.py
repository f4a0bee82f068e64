"""T1CExport with a real tiny Trainer: files, top-k, last, links, resume, verification, metrics."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import lightning.pytorch as pl
import pytest
import snntorch as snn
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from t1c import ir
from t1c.lightning import DigitsDataModule, T1CExport, T1CModule
from t1c.lightning.callback import T1CExportError
from t1c.lightning.manifest import read_manifest
from t1c.lightning.measure import PreparedMeasurement
from t1c.lightning.naming import flatten_metrics


# -- a plain LightningModule around an snnTorch model ------------------------------------
class SpikingNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(8, 12), snn.Leaky(beta=0.9)
        self.fc2, self.lif2 = nn.Linear(12, 3), snn.Leaky(beta=0.8)

    def forward(self, x):
        m1, m2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        s, m1 = self.lif1(self.fc1(x), m1)
        s, m2 = self.lif2(self.fc2(s), m2)
        return s


class Plain(pl.LightningModule):
    """Logs ``val/score`` = ``scores[epoch]`` so tests choose which checkpoints top-k keeps."""

    def __init__(self, scores=(0.1, 0.3, 0.2)):
        super().__init__()
        self.model = SpikingNet()
        self.scores = scores

    def training_step(self, batch, batch_idx):
        x, _ = batch
        loss = self.model(x).sum() + sum((p**2).sum() for p in self.parameters())
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/score", float(self.scores[self.current_epoch % len(self.scores)]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _loaders():
    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(
        torch.rand(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
    )
    return torch.utils.data.DataLoader(ds, batch_size=8), torch.utils.data.DataLoader(ds, batch_size=8)


def _trainer(root: Path, callbacks, max_epochs=2, **kw):
    kw.setdefault("logger", CSVLogger(root, name="logs", version=0))
    kw.setdefault("limit_val_batches", 1)
    return pl.Trainer(
        default_root_dir=root,
        max_epochs=max_epochs,
        limit_train_batches=2,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **kw,
    )


def _fit_plain(root, callbacks, max_epochs=2, ckpt_path=None, scores=(0.1, 0.3, 0.2), **kw):
    torch.manual_seed(0)
    trainer = _trainer(root, callbacks, max_epochs, **kw)
    trainer.fit(Plain(scores), *_loaders(), ckpt_path=ckpt_path)
    return trainer


def _t1c_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.suffix == ".t1c"}


def _ckpt_stems(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix()[: -len(".ckpt")] for p in folder.rglob("*.ckpt")}


# -- plain LightningModule ----------------------------------------------------------------
def test_no_argument_callback_on_a_plain_snntorch_module(tmp_path):
    trainer = _fit_plain(tmp_path, [ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=-1), T1CExport()])
    folder = tmp_path / "ck"
    assert _ckpt_stems(folder) == {"epoch=0-step=2", "epoch=1-step=4"}
    assert _t1c_names(folder) == {"epoch=0-step=2.t1c", "epoch=1-step=4.t1c", "last.t1c"}
    first, second = ir.read(folder / "epoch=0-step=2.t1c"), ir.read(folder / "epoch=1-step=4.t1c")
    assert ir.topology_diff(first, second) == []
    assert [n.TYPE for n in first.nodes.values()].count("LIF") == 2
    meta = second.metadata["t1c_export"]
    assert (meta["epoch"], meta["global_step"], meta["checkpoint"]) == (1, 4, "epoch=1-step=4.ckpt")
    assert meta["source_hash"] == first.content_hash()  # the first export is the reference
    assert flatten_metrics(meta["metrics"])["val/score"] == pytest.approx(0.3)
    # last.t1c holds the newest weights; the manifest lists every file
    assert ir.read(folder / "last.t1c").content_hash() == second.content_hash()
    manifest = read_manifest(folder / "t1c_exports.json")["exports"]
    assert set(manifest) == _t1c_names(folder)
    assert manifest["epoch=1-step=4.t1c"]["global_step"] == 4
    assert manifest["epoch=1-step=4.t1c"]["content_hash"] == second.content_hash()
    # the model the Trainer trained is still the user's module, in train mode
    assert trainer.lightning_module.model.training


def test_exported_weights_are_the_checkpointed_weights(tmp_path):
    _fit_plain(tmp_path, [ModelCheckpoint(dirpath=tmp_path, save_top_k=-1), T1CExport()])
    state = torch.load(tmp_path / "epoch=0-step=2.ckpt", weights_only=False)["state_dict"]
    graph = ir.read(tmp_path / "epoch=0-step=2.t1c")
    fc1 = next(n for n in graph.nodes.values() if n.TYPE in ("Affine", "SpikingAffine"))
    assert torch.equal(torch.from_numpy(fc1.weight), state["model.fc1.weight"])


def test_top_k_deletion_last_and_metric_names_with_slash(tmp_path):
    mc = ModelCheckpoint(
        dirpath=tmp_path,
        monitor="val/score",
        mode="max",
        save_top_k=1,
        save_last=True,
        filename="{epoch}-{val/score:.2f}",
    )
    _fit_plain(tmp_path, [mc, T1CExport()], max_epochs=3)
    # ModelCheckpoint made a sub-folder for '/'; the exports stay flat
    assert _ckpt_stems(tmp_path) == {"epoch=1-val/score=0.30", "last"}
    assert _t1c_names(tmp_path) == {"epoch=1-val_score=0.30.t1c", "last.t1c"}
    assert not list((tmp_path / "epoch=1-val").glob("*.t1c"))
    manifest = read_manifest(tmp_path / "t1c_exports.json")["exports"]
    assert set(manifest) == {"epoch=1-val_score=0.30.t1c", "last.t1c"}
    assert manifest["epoch=1-val_score=0.30.t1c"]["checkpoint"] == "epoch=1-val/score=0.30.ckpt"
    assert manifest["last.t1c"]["checkpoint"] == "last.ckpt"
    # last.ckpt holds the weights of the step it was last saved at; last.t1c follows it
    saved_step = torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"]
    assert manifest["last.t1c"]["global_step"] == saved_step
    assert ir.read(tmp_path / "last.t1c").metadata["t1c_export"]["global_step"] == saved_step


def test_save_last_link(tmp_path):
    mc = ModelCheckpoint(dirpath=tmp_path, monitor="val/score", mode="max", save_top_k=1, save_last="link")
    _fit_plain(tmp_path, [mc, T1CExport()], max_epochs=3)
    assert os.path.islink(tmp_path / "last.ckpt") and os.path.islink(tmp_path / "last.t1c")
    assert os.readlink(tmp_path / "last.t1c") == "epoch=1-step=4.t1c"
    assert _t1c_names(tmp_path) == {"epoch=1-step=4.t1c", "last.t1c"}
    entry = read_manifest(tmp_path / "t1c_exports.json")["exports"]["last.t1c"]
    assert entry["link"] and entry["same_as"] == "epoch=1-step=4.t1c"


class CountingExport(T1CExport):
    """Counts the graphs its exporter builds."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.exports = 0
        export_graph = self.exporter.export_graph

        def counting(pl_module):
            self.exports += 1
            return export_graph(pl_module)

        self.exporter.export_graph = counting


def test_resume_keeps_files_and_does_not_re_export(tmp_path):
    def callbacks():
        return [ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, save_last=True), CountingExport()]

    first = callbacks()
    _fit_plain(tmp_path, first, max_epochs=2)
    assert first[1].exports == 3  # the dry run at fit start, then one per saved step (last.ckpt reuses it)
    before = {n: (tmp_path / n).stat().st_mtime_ns for n in _t1c_names(tmp_path) if n != "last.t1c"}
    second = callbacks()
    _fit_plain(tmp_path, second, max_epochs=3, ckpt_path=tmp_path / "last.ckpt")
    assert second[1].exports == 2  # dry run + the new step: nothing of the first run is exported again
    after = _t1c_names(tmp_path)
    assert after == {"epoch=0-step=2.t1c", "epoch=1-step=4.t1c", "epoch=2-step=6.t1c", "last.t1c"}
    assert {n: (tmp_path / n).stat().st_mtime_ns for n in before} == before  # not rewritten
    manifest = read_manifest(tmp_path / "t1c_exports.json")["exports"]
    assert set(manifest) == after
    assert manifest["last.t1c"]["global_step"] == 6


def test_without_model_checkpoint_uses_its_own_schedule(tmp_path):
    cb = T1CExport(dirpath=tmp_path / "out", filename="net-{epoch}-{val/score:.1f}", every_n_epochs=2)
    _fit_plain(tmp_path, [cb], max_epochs=2, enable_checkpointing=False)
    assert _t1c_names(tmp_path / "out") == {"net-epoch=1-val_score=0.3.t1c", "last.t1c"}
    assert set(read_manifest(tmp_path / "out" / "t1c_exports.json")["exports"]) == _t1c_names(
        tmp_path / "out"
    )


def test_plain_module_topology_change_raises(tmp_path):
    class Growing(Plain):
        def on_train_epoch_start(self):
            if self.current_epoch == 1:
                self.model.fc2 = nn.Linear(12, 4)

    torch.manual_seed(0)
    trainer = _trainer(tmp_path, [ModelCheckpoint(dirpath=tmp_path, save_top_k=-1), T1CExport()])
    with pytest.raises(
        T1CExportError, match=r"(?s)epoch 1, step 4.*\n  - node '.*': weight shape \[3, 12\] became \[4, 12\]"
    ):
        trainer.fit(Growing(), *_loaders())
    assert _t1c_names(tmp_path) == {"epoch=0-step=2.t1c", "last.t1c"}


# -- T1CModule ----------------------------------------------------------------------------
def _digits():
    return DigitsDataModule(batch_size=64)


def _fit_t1c(root, fixtures_dir, callbacks, max_epochs=2, module_cls=T1CModule, **kw):
    torch.manual_seed(0)
    module = module_cls(fixtures_dir / "mlp_snn.t1c", num_steps=4)
    trainer = _trainer(root, callbacks, max_epochs, **kw)
    trainer.fit(module, _digits())
    return trainer, module


def test_t1c_module_exports_verified_measured_integer_files(tmp_path, fixtures_dir):
    trainer, module = _fit_t1c(tmp_path, fixtures_dir, [T1CExport(limit_batches=2)])
    folder = tmp_path / "logs" / "version_0" / "checkpoints"  # ModelCheckpoint's default place
    assert _t1c_names(folder) == {"epoch=1-step=4.t1c", "last.t1c"}
    graph = ir.read(folder / "epoch=1-step=4.t1c")
    assert ir.topology_diff(module.source_graph, graph) == []
    affine = [n for n in graph.nodes.values() if n.TYPE in ("Affine", "SpikingAffine")]
    assert affine and all(n.weight_int is not None and n.weight_scale is not None for n in affine)
    meta = graph.metadata["t1c_export"]
    assert meta["source_hash"] == module.source_graph.content_hash()
    measured = flatten_metrics(meta["metrics"])
    assert measured["t1c/export_agreement"] == 1.0  # the file computes what the live module computes
    assert measured["t1c/quant_gap"] == pytest.approx(measured["t1c/float_acc"] - measured["t1c/quant_acc"])
    # every logger got the figures
    rows = list(csv.DictReader(open(tmp_path / "logs" / "version_0" / "metrics.csv")))
    logged = [r for r in rows if r.get("t1c/quant_acc")]
    assert [int(r["step"]) for r in logged] == [2, 4]
    assert float(logged[-1]["t1c/float_acc"]) == pytest.approx(measured["t1c/float_acc"])
    manifest = read_manifest(folder / "t1c_exports.json")["exports"]
    assert manifest["epoch=1-step=4.t1c"]["metrics"]["t1c/quant_acc"] == measured["t1c/quant_acc"]
    assert module.executor.training  # evaluation used copies


def test_export_does_not_disturb_training(tmp_path, fixtures_dir):
    _, with_cb = _fit_t1c(tmp_path / "a", fixtures_dir, [T1CExport(limit_batches=1)])
    _, without = _fit_t1c(tmp_path / "b", fixtures_dir, [])
    for (name, a), (_, b) in zip(with_cb.state_dict().items(), without.state_dict().items()):
        assert torch.equal(a, b), name


def test_t1c_module_topology_change_raises_or_warns(tmp_path, fixtures_dir):
    class Dropped(T1CModule):
        def export_graph(self):
            graph = super().export_graph()
            out = graph.output_names[0]
            (src,) = graph.predecessors(out)
            nodes = {k: v for k, v in graph.nodes.items() if k != src}
            (before,) = graph.predecessors(src)
            edges = [(a, b) for a, b in graph.edges if src not in (a, b)] + [(before, out)]
            return ir.Graph(nodes, edges, graph.metadata)

    with pytest.raises(T1CExportError, match=r"(?s)verify='raise'.*is missing.*verify='warn'"):
        _fit_t1c(tmp_path / "r", fixtures_dir, [T1CExport(limit_batches=1)], max_epochs=1, module_cls=Dropped)
    with pytest.warns(UserWarning, match="does not have the topology"):
        _fit_t1c(
            tmp_path / "w", fixtures_dir, [T1CExport(verify="warn", limit_batches=1)], 1, module_cls=Dropped
        )
    assert (tmp_path / "w" / "logs" / "version_0" / "checkpoints" / "epoch=0-step=2.t1c").is_file()


def test_quant_gap_limit_raises(tmp_path, fixtures_dir):
    cb = T1CExport(weight_bits=1, max_quant_gap=0.0, on_quant_gap="raise", integer_weights=False)
    figures = {"t1c/float_acc": 0.5, "t1c/quant_acc": 0.25, "t1c/quant_gap": 0.25}
    cb.exporter.measurement.prepare = lambda trainer, module, graph, layout: PreparedMeasurement(
        lambda: figures, True
    )
    with pytest.raises(T1CExportError, match="max_quant_gap=0.0"):
        _fit_t1c(tmp_path, fixtures_dir, [cb], max_epochs=1)
