"""T1CModule fine-tunes hybrid ANN-SNN graphs; T1CExport verifies and measures them (issue 9)."""

from __future__ import annotations

from collections import OrderedDict

import lightning.pytorch as pl
import numpy as np
import pytest
import snntorch as snn
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from t1c import ir
from t1c.bridge import to_ir
from t1c.lightning import T1CExport, T1CModule, TensorDataModule
from t1c.lightning.manifest import read_manifest


def _data(features: int, classes: int = 10, n: int = 160) -> TensorDataModule:
    """Inputs in [0, 1] whose class is the argmax of a fixed random linear map: learnable."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, features, generator=g)
    y = (x @ torch.randn(features, classes, generator=g)).argmax(1)
    return TensorDataModule(x, y, batch_size=32, seed=0)


class Record(Callback):
    """Training loss per epoch, and the executor's mode in every validation batch."""

    def __init__(self):
        self.losses: list[float] = []
        self.val_training: list[bool] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.losses.append(float(trainer.callback_metrics["train_loss_epoch"]))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val_training.append(pl_module.executor.training)


def _fit(tmp_path, graph, data, epochs=6, lr=2e-2):
    torch.manual_seed(0)
    model = T1CModule(graph, num_steps=4, encoding="direct", lr=lr)
    record = Record()
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=epochs,
        logger=False,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True),
            T1CExport(weight_bits=8),
            record,
        ],
    )
    trainer.fit(model, data)
    return model, record


def _batchnorms(executor) -> dict[str, nn.Module]:
    return {
        n: executor.module_for(n)
        for n in executor.node_names
        if isinstance(executor.module_for(n), (nn.BatchNorm1d, nn.BatchNorm2d))
    }


def test_hybrid_fixture_trains_and_exports_its_statistics(tmp_path, hybrid_fixtures_dir):
    source_path = hybrid_fixtures_dir / "mlp_bn1d_relu_lif.t1c"
    source = ir.read(source_path)
    model, record = _fit(tmp_path, source_path, _data(16))
    assert record.losses[-1] < record.losses[0] * 0.9, record.losses
    assert record.val_training and not any(record.val_training)  # validation runs in eval mode
    assert model.executor.training  # and training resumes in training mode

    bn = _batchnorms(model.executor)["bn1"]
    assert bn.momentum == pytest.approx(source.nodes["bn1"].momentum)
    assert not np.allclose(
        bn.running_mean.numpy(), source.nodes["bn1"].running_mean
    )  # batch statistics moved it
    manifest = read_manifest(tmp_path / "ckpt" / "t1c_exports.json")
    last = ir.read(tmp_path / "ckpt" / "last.t1c")
    assert ir.topology_diff(source, last) == []
    node = last.nodes["bn1"]
    for field in ("running_mean", "running_var", "weight", "bias"):
        assert np.array_equal(node.__dict__[field], getattr(bn, field).detach().numpy()), field
    assert node.momentum == pytest.approx(source.nodes["bn1"].momentum)
    metrics = manifest["exports"]["last.t1c"]["metrics"]
    assert 0.0 <= metrics["t1c/quant_acc"] <= 1.0 and 0.0 <= metrics["t1c/float_acc"] <= 1.0


def test_conv_fixture_trains_prelu_and_batchnorm2d(tmp_path, hybrid_fixtures_dir):
    source = ir.read(hybrid_fixtures_dir / "conv_bn2d_prelu_lif.t1c")
    x = torch.rand(96, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    y = x.mean((1, 2)).argmax(1) + 2 * (x.mean((1, 3)).argmax(1) % 2)  # 0..9
    model, record = _fit(tmp_path, source, TensorDataModule(x, y, batch_size=32, seed=0), epochs=4, lr=1e-2)
    assert record.losses[-1] < record.losses[0], record.losses
    prelu = model.executor.module_for("prelu1")
    assert not np.array_equal(prelu.weight.detach().numpy(), source.nodes["prelu1"].weight)
    last = ir.read(tmp_path / "ckpt" / "last.t1c")
    assert ir.topology_diff(source, last) == []
    bn = model.executor.module_for("bn1")
    assert np.array_equal(last.nodes["bn1"].running_var, bn.running_var.numpy())
    assert np.array_equal(last.nodes["prelu1"].weight, prelu.weight.detach().numpy())


def _every_ann_node_graph(momentum: float | None = 0.1) -> ir.Graph:
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(16, 12),
            bn=nn.BatchNorm1d(12, momentum=momentum),
            act=nn.PReLU(12),
            norm=nn.LayerNorm(12),
            drop=nn.Dropout(0.5),
            fc2=nn.Linear(12, 10),
            lif=snn.Leaky(beta=0.9, init_hidden=True),
        )
    )
    return to_ir(model.eval(), torch.zeros(1, 16), hybrid=True)


def test_every_ann_parameter_trains(tmp_path):
    graph = _every_ann_node_graph()
    model = T1CModule(graph, num_steps=4, encoding="direct")
    trainable = {id(p) for group in model.configure_optimizers().param_groups for p in group["params"]}
    for name in ("bn", "act", "norm"):
        for p in model.executor.module_for(name).parameters():
            assert id(p) in trainable, name
    trained, _ = _fit(tmp_path, graph, _data(16), epochs=1)
    for name, field in (("act", "weight"), ("norm", "weight"), ("norm", "bias"), ("bn", "weight")):
        value = getattr(trained.executor.module_for(name), field).detach().numpy()
        assert not np.array_equal(value, getattr(graph.nodes[name], field)), f"{name}.{field} did not train"


def test_dropout_drops_in_training_only():
    model = T1CModule(_every_ann_node_graph(), num_steps=3, encoding="direct")
    executor, x = model.executor, torch.rand(8, 16)
    drop = executor.module_for("drop")
    assert executor.training and drop.training
    h = torch.rand(64, 12)
    assert (drop(h) == 0).any()
    executor.eval()
    assert torch.equal(drop(h), h)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # eval: no dropout, running statistics


def _batch_mean(model: T1CModule, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.executor.module_for("fc1")(x).double().mean(0)


def test_batchnorm_updates_with_the_stored_momentum():
    model = T1CModule(_every_ann_node_graph(momentum=0.3), num_steps=3, encoding="direct")
    bn = model.executor.module_for("bn")
    assert bn.momentum == pytest.approx(0.3) and model.executor.training
    old = bn.running_mean.detach().double().clone()
    x = torch.rand(8, 16)
    model(x)  # direct encoding: 3 equal steps, folded into one batch of 24
    expected = 0.7 * old + 0.3 * _batch_mean(model, x)
    assert torch.allclose(bn.running_mean.double(), expected, atol=1e-6)


def test_momentum_none_is_a_cumulative_average(tmp_path):
    graph = _every_ann_node_graph(momentum=None)
    path = tmp_path / "cumulative.t1c"
    ir.write(path, graph)
    model = T1CModule(path, num_steps=2, encoding="direct")
    bn = model.executor.module_for("bn")
    assert bn.momentum is None
    a, b = torch.rand(8, 16), torch.rand(8, 16)
    model(a)
    model(b)
    expected = (_batch_mean(model, a) + _batch_mean(model, b)) / 2
    assert torch.allclose(bn.running_mean.double(), expected, atol=1e-6)
    exported = model.export_graph()
    assert exported.nodes["bn"].momentum is None
    assert np.array_equal(exported.nodes["bn"].running_mean, bn.running_mean.numpy())


def test_export_runs_in_eval_mode_and_leaves_training_alone(hybrid_fixtures_dir):
    model = T1CModule(hybrid_fixtures_dir / "mlp_bn1d_relu_lif.t1c", num_steps=3, encoding="direct")
    bn = model.executor.module_for("bn1")
    stats = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    graph = model.export_graph()
    assert model.executor.training and bn.training
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert int(bn.num_batches_tracked) == stats[2]
    assert np.array_equal(graph.nodes["bn1"].running_mean, stats[0].numpy())
    x = torch.rand(5, 16)
    pred = model.predict_with(model.executor, x)  # in eval mode, whatever the executor's mode
    assert torch.equal(bn.running_mean, stats[0]) and int(bn.num_batches_tracked) == stats[2]
    assert model.executor.training and bn.training
    assert torch.equal(pred, model.predict_with(model.executor.eval(), x))


def test_qat_on_a_hybrid_graph_keeps_batchnorm_float(hybrid_fixtures_dir):
    from t1c.bridge.quantize import attach_integer_weights, quantize_weights

    model = T1CModule(
        hybrid_fixtures_dir / "conv_bn2d_prelu_lif.t1c",
        num_steps=2,
        encoding="direct",
        qat=True,
        qat_weight_bits=4,
    )
    bn = model.executor.module_for("bn1")
    assert not hasattr(bn, "parametrizations")  # only Linear/Conv2d weights are fake-quantized
    loss = model.compute_loss(model(torch.rand(6, 2, 8, 8)), torch.arange(6))
    loss.backward()
    assert bn.weight.grad is not None and model.executor.module_for("prelu1").weight.grad is not None
    graph = model.export_graph()
    conv = graph.nodes["conv1"]
    w_int, scale = quantize_weights(torch.from_numpy(conv.weight), 4)
    assert np.allclose(conv.weight, w_int.numpy() * scale, atol=1e-6)  # on the 4-bit grid
    assert np.array_equal(attach_integer_weights(graph, 4).nodes["conv1"].weight_int, w_int.numpy())
    assert np.array_equal(graph.nodes["bn1"].running_mean, bn.running_mean.numpy())


def test_export_callback_refuses_a_changed_hybrid_topology(tmp_path, hybrid_fixtures_dir):
    from t1c.lightning.callback import T1CExportError

    class LosesBatchNorm(T1CModule):
        def export_graph(self):
            graph = super().export_graph()
            nodes = dict(graph.nodes, bn1=ir.ReLU(features=12))
            return ir.Graph(nodes, list(graph.edges), graph.metadata)

    model = LosesBatchNorm(hybrid_fixtures_dir / "mlp_bn1d_relu_lif.t1c", num_steps=2, encoding="direct")
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[T1CExport()],
    )
    with pytest.raises(T1CExportError, match="bn1"):
        trainer.fit(model, _data(16, n=64))
