"""T1CExport on a user's own LightningModule: dry run at fit start, metrics, event batches.

Issue 8 §3 (mistakes fail before training), §4 (plain modules get the same metrics, no claim
without its measurement) and issue 11 (``[B, T, ...]`` event frames), with real tiny Trainers.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import snntorch as snn
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from snntorch import utils
from test_callback import _trainer
from torch import nn

from t1c import ir
from t1c.bridge import ExportError
from t1c.lightning import T1CExport
from t1c.lightning.callback import T1CExportError
from t1c.lightning.manifest import read_manifest
from t1c.lightning.naming import flatten_metrics

STEPS, BATCH = 4, 8


class Stepwise(pl.LightningModule):
    """A user's module: ``self.model`` takes one step; ``forward`` runs a sequence ``[B, T, ...]``
    (``time_first``: ``[T, B, ...]``; ``static``: the same input every step) and returns spikes
    ``[T, B, C]``."""

    def __init__(self, model, layout="BT"):
        super().__init__()
        self.model, self.layout = model, layout
        self.trained_steps = 0

    def forward(self, x):
        utils.reset(self.model)
        steps = [x] * STEPS if self.layout == "static" else x.unbind(1 if self.layout == "BT" else 0)
        return torch.stack([self.model(step) for step in steps])

    def training_step(self, batch, batch_idx):
        self.trained_steps += 1
        x, y = batch
        return nn.functional.cross_entropy(self(x).sum(0), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/acc", (self(x).sum(0).argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def _mlp():
    return nn.Sequential(
        nn.Linear(6, 10),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(10, 3),
        snn.Leaky(beta=0.8, init_hidden=True),
    )


def _conv():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
        snn.Leaky(beta=0.8, init_hidden=True),
    )


def _loaders(shape, time_first=False):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(16, *shape, generator=g) < 0.4).float()
    y = torch.randint(0, 3, (16,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y)
    collate = None
    if time_first:

        def collate(items):
            xs, ys = torch.utils.data.default_collate(items)
            return xs.transpose(0, 1), ys

    return [torch.utils.data.DataLoader(ds, batch_size=BATCH, collate_fn=collate) for _ in range(2)]


def _fit(tmp_path, module, loaders, callback, **kw):
    torch.manual_seed(0)
    trainer = _trainer(tmp_path, [ModelCheckpoint(dirpath=tmp_path), callback], max_epochs=1, **kw)
    trainer.fit(module, *loaders)
    return ir.read(tmp_path / "epoch=0-step=2.t1c")


# -- issue 8 §3: a model that cannot be exported stops before training -----------------------
def test_unexportable_neuron_stops_at_fit_start(tmp_path):
    model = nn.Sequential(nn.Linear(6, 3), snn.DeltaLeaky(beta=0.9, init_hidden=True))
    module = Stepwise(model, layout="static")
    with pytest.raises(ExportError, match=r"(?s)DeltaLeaky.*example_input_array.*T1CExport\(sample=\.\.\.\)"):
        _fit(tmp_path, module, _loaders((6,)), T1CExport())
    assert module.trained_steps == 0  # before the fix: a whole epoch, then the error at the checkpoint


def test_model_split_across_attributes_stops_at_fit_start(tmp_path):
    class Split(Stepwise):
        def __init__(self):
            super().__init__(_mlp(), layout="static")
            self.net2 = self.model
            del self.model
            self.head = nn.Linear(3, 3)

        def forward(self, x):
            return self.head(self.net2(x))

    module = Split()
    with pytest.raises(T1CExportError, match=r"children with parameters: net2, head.*module_attr"):
        _fit(tmp_path, module, _loaders((6,)), T1CExport())
    assert module.trained_steps == 0


def test_wrong_sample_says_how_to_give_one(tmp_path):
    module = Stepwise(_mlp(), layout="static")
    with pytest.raises(
        ExportError, match=r"(?s)\[1, 5\] taken from T1CExport\(sample=\.\.\.\).*one time step"
    ):
        _fit(tmp_path, module, _loaders((6,)), T1CExport(sample=torch.zeros(1, 5)))
    assert module.trained_steps == 0


# -- issue 8 §4: plain modules get the same figures; nothing claimed that was not done -------
@pytest.mark.parametrize("layout", ["static", "BT", "TB"])
def test_plain_module_gets_float_quant_agreement_and_integer_weights(tmp_path, layout):
    shape = (6,) if layout == "static" else (STEPS, 6)
    graph = _fit(tmp_path, Stepwise(_mlp(), layout), _loaders(shape, time_first=layout == "TB"), T1CExport())
    meta = graph.metadata["t1c_export"]
    metrics = flatten_metrics(meta["metrics"])
    assert metrics["t1c/export_agreement"] == 1.0  # the file computes what the module's forward computes
    assert metrics["t1c/num_samples"] == 16.0  # the whole validation set (limit_batches=None)
    assert 0 <= metrics["t1c/quant_acc"] <= 1 and "t1c/float_acc" in metrics
    assert (meta["weight_bits"], meta["accumulator_bits"], meta["integer_weights"]) == (8, 32, True)
    affine = [n for n in graph.nodes.values() if n.TYPE == "Affine"]
    assert affine and all(n.weight_int is not None for n in affine)
    assert list(graph.nodes["input"].shape) == [6]
    manifest = read_manifest(tmp_path / "t1c_exports.json")["exports"]
    assert manifest["epoch=0-step=2.t1c"]["metrics"]["t1c/num_samples"] == 16


def test_no_claim_without_measurement(tmp_path):
    class NoForward(Stepwise):
        def forward(self, x):
            raise RuntimeError("this forward is for training only")

        def training_step(self, batch, batch_idx):
            utils.reset(self.model)
            return self.model(batch[0]).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val/acc", 0.5)

    callback = T1CExport(integer_weights=False)
    with pytest.warns(UserWarning, match=r"not measured: NoForward.forward could not be compared"):
        graph = _fit(tmp_path, NoForward(_mlp(), "static"), _loaders((6,)), callback)
    meta = graph.metadata["t1c_export"]
    assert "weight_bits" not in meta and "accumulator_bits" not in meta and meta["integer_weights"] is False
    assert not any(k.startswith("t1c/") for k in flatten_metrics(meta["metrics"]))


# -- issue 11: event frames [B, T, C, H, W] -----------------------------------------------------
def test_event_frames_export_one_step_of_one_sample_and_measure(tmp_path):
    module = Stepwise(_conv(), layout="BT")
    graph = _fit(tmp_path, module, _loaders((STEPS, 2, 8, 8)), T1CExport())
    assert list(graph.nodes["input"].shape) == [2, 8, 8]  # before the fix: the whole batch's shape
    metrics = flatten_metrics(graph.metadata["t1c_export"]["metrics"])
    assert metrics["t1c/export_agreement"] == 1.0 and metrics["t1c/num_samples"] == 16.0


def test_example_input_array_of_the_sequence_gives_one_step(tmp_path):
    module = Stepwise(_conv(), layout="BT")
    module.example_input_array = torch.zeros(1, STEPS, 2, 8, 8)
    graph = _fit(tmp_path, module, _loaders((STEPS, 2, 8, 8)), T1CExport())
    assert list(graph.nodes["input"].shape) == [2, 8, 8]
