"""T1CModule: training with a real tiny Trainer, losses, QAT, checkpoints without the source file."""

from __future__ import annotations

import shutil

import lightning.pytorch as pl
import numpy as np
import pytest
import snntorch.functional as SF
import torch

from t1c import ir
from t1c.bridge import ir_to_torch
from t1c.bridge import quantize as Q
from t1c.lightning.data import DigitsDataModule
from t1c.lightning.module import CKPT_GRAPH_KEY, T1CModule, graph_from_bytes, graph_to_bytes


@pytest.fixture
def mlp_path(fixtures_dir, tmp_path):
    """A private copy of the digits-shaped fixture (64 inputs, 10 outputs) that tests may delete."""
    path = tmp_path / "mlp_snn.t1c"
    shutil.copy(fixtures_dir / "mlp_snn.t1c", path)
    return path


@pytest.fixture(scope="module")
def digits():
    dm = DigitsDataModule(batch_size=32, seed=0)
    dm.setup("fit")
    return dm


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    args = dict(
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=2,
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(**(args | kwargs))


def _fixed_batch_loss(model: T1CModule, x, y) -> float:
    with torch.no_grad():
        return float(model.compute_loss(model(x, torch.Generator().manual_seed(0)), y))


# -- construction ------------------------------------------------------------------------
def test_builds_from_path_graph_or_bytes(mlp_path):
    graph = ir.read(mlp_path)
    for source in (mlp_path, str(mlp_path), graph, graph_to_bytes(graph)):
        model = T1CModule(source, num_steps=4)
        assert model.num_classes == 10 and model.input_shape == (64,)
        assert ir.topology_diff(graph, model.source_graph) == []
    assert T1CModule(mlp_path).source_path == str(mlp_path)
    assert T1CModule(graph).source_path is None


def test_example_input_array_and_forward_shape(mlp_path):
    model = T1CModule(mlp_path, num_steps=7)
    assert model.example_input_array.shape == (1, 64)
    ys = model(model.example_input_array)
    assert ys.shape == (7, 1, 10)
    assert set(ys.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"loss": "nll"}, ValueError, "loss="),
        ({"encoding": "latency"}, ValueError, "encoding"),
        ({"num_steps": 0}, ValueError, "num_steps"),
        ({"lr": -1.0}, ValueError, "lr="),
        ({"spike_grad": "nope"}, ValueError, "spike_grad='nope'"),
        ({"qat_weight_bits": 0}, ValueError, "qat_weight_bits"),
        ({"correct_rate": 0.1, "incorrect_rate": 0.5}, ValueError, "incorrect_rate"),
    ],
)
def test_bad_arguments_fail_early(mlp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        T1CModule(mlp_path, **kwargs)


def test_missing_file_points_to_load_from_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="load_from_checkpoint"):
        T1CModule(tmp_path / "gone.t1c")


def test_graph_with_non_spiking_output_warns_for_count_losses(fixtures_dir):
    with pytest.warns(UserWarning, match="ce_membrane"):
        model = T1CModule(fixtures_dir / "spiking_affine.t1c", num_steps=3)
    assert not model.output_is_spikes
    ys = torch.randn(3, 2, 5)
    assert torch.equal(model.logits(ys), ys.mean(0))


# -- encodings, logits, losses -----------------------------------------------------------
@pytest.mark.parametrize("encoding", ["rate", "direct"])
def test_encode_uses_num_steps_and_encoding(mlp_path, encoding):
    model = T1CModule(mlp_path, num_steps=6, encoding=encoding)
    x = torch.rand(3, 64)
    xs = model.encode(x, generator=torch.Generator().manual_seed(1))
    assert xs.shape == (6, 3, 64)
    if encoding == "direct":
        assert torch.equal(xs[4], x)
    else:
        assert set(xs.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(xs, model.encode(x, generator=torch.Generator().manual_seed(1)))


def test_losses_match_snntorch_functional(mlp_path):
    torch.manual_seed(0)
    ys = (torch.rand(9, 5, 10) < 0.3).float()
    y = torch.randint(0, 10, (5,))
    references = {
        "ce_count": SF.ce_count_loss(),
        "ce_rate": SF.ce_rate_loss(),
        "mse_count": SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2),
    }
    for name, reference in references.items():
        model = T1CModule(mlp_path, loss=name, num_steps=9)
        expected = reference(ys.clone(), y)
        assert torch.allclose(model.compute_loss(ys, y), expected.reshape(()), atol=1e-6), name
    mem = torch.randn(9, 5, 10)
    model = T1CModule(mlp_path, loss="ce_membrane", num_steps=9)
    expected = sum(torch.nn.functional.cross_entropy(mem[t], y) for t in range(9)) / 9
    assert torch.allclose(model.compute_loss(mem, y), expected, atol=1e-6)


@pytest.mark.parametrize("loss", ["ce_count", "ce_rate", "mse_count", "ce_membrane"])
def test_every_loss_gives_gradients(mlp_path, loss):
    model = T1CModule(
        mlp_path, loss=loss, num_steps=5, spike_grad="fast_sigmoid" if loss == "ce_rate" else "atan"
    )
    x, y = torch.rand(8, 64), torch.arange(8)
    model.compute_loss(model(x), y).backward()
    grads = [p.grad for p in model.executor.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_logits_are_spike_counts(mlp_path):
    model = T1CModule(mlp_path, num_steps=3)
    ys = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]], [[0.0, 1.0]]])
    assert torch.equal(model.logits(ys), torch.tensor([[2.0, 2.0]]))


# -- training with a real Trainer --------------------------------------------------------
def test_training_lowers_the_loss_and_logs_metrics(mlp_path, digits, tmp_path):
    pl.seed_everything(0)
    model = T1CModule(mlp_path, num_steps=8, lr=5e-3)
    x, y = digits.val_set.tensors[0][:128], digits.val_set.tensors[1][:128]
    before = _fixed_batch_loss(model, x, y)
    weights = model.executor.module_for("fc1").weight.detach().clone()
    trainer = _trainer(tmp_path, limit_train_batches=15, enable_checkpointing=False)
    trainer.validate(model, digits, verbose=False)  # inference mode first must not break training
    trainer.fit(model, digits)
    after = _fixed_batch_loss(model, x, y)
    assert after < before * 0.9
    assert not torch.equal(weights, model.executor.module_for("fc1").weight)
    assert {"train_loss_epoch", "train_acc", "val_loss", "val_acc"} <= set(trainer.callback_metrics)
    assert 0.0 <= float(trainer.callback_metrics["val_acc"]) <= 1.0


def test_validation_is_deterministic(mlp_path, digits, tmp_path):
    model = T1CModule(mlp_path, num_steps=5)
    trainer = _trainer(tmp_path, enable_checkpointing=False)
    first = trainer.validate(model, digits, verbose=False)
    torch.manual_seed(123)  # the global RNG does not matter: validation uses eval_seed
    assert trainer.validate(model, digits, verbose=False) == first


def test_export_graph_keeps_topology_and_trained_weights(mlp_path, digits, tmp_path):
    pl.seed_everything(0)
    model = T1CModule(mlp_path, num_steps=5, lr=1e-2)
    _trainer(tmp_path, limit_train_batches=2, enable_checkpointing=False).fit(model, digits)
    graph = model.export_graph()
    assert ir.topology_diff(model.source_graph, graph) == []
    trained = model.executor.module_for("fc2").weight.detach().numpy()
    assert np.array_equal(graph.nodes["fc2"].weight, trained)
    assert not np.array_equal(graph.nodes["fc2"].weight, model.source_graph.nodes["fc2"].weight)


def test_predict_with_is_deterministic_and_takes_any_executor(mlp_path, tmp_path):
    model = T1CModule(mlp_path, num_steps=10, encoding="rate")
    x = torch.rand(40, 64)
    first = model.predict_with(model.executor, x)
    assert first.dtype == torch.int64 and first.shape == (40,)
    torch.manual_seed(99)
    assert torch.equal(first, model.predict_with(model.executor, x))
    assert torch.equal(first, model.predict_with(model.executor, x, seed=0))
    ir.write(tmp_path / "export.t1c", model.export_graph())
    assert torch.equal(first, model.predict_with(ir_to_torch(tmp_path / "export.t1c"), x))
    quantized = model.predict_with(Q.quantize_executor(model.executor, weight_bits=16), x)
    assert quantized.shape == (40,)


# -- QAT ---------------------------------------------------------------------------------
def test_qat_trains_on_the_quantization_grid(mlp_path, digits, tmp_path):
    pl.seed_everything(0)
    model = T1CModule(mlp_path, num_steps=5, lr=1e-2, qat=True, qat_weight_bits=4)
    original = model.executor.module_for("fc1").parametrizations.weight.original.detach().clone()
    _trainer(tmp_path, limit_train_batches=3, enable_checkpointing=False).fit(model, digits)
    fc1 = model.executor.module_for("fc1")
    assert not torch.equal(original, fc1.parametrizations.weight.original)
    assert Q.qat_enabled(model.executor)
    graph = model.export_graph()
    assert Q.qat_enabled(model.executor)  # exporting works on a copy
    for name in ("fc1", "fc2"):
        w = torch.from_numpy(graph.nodes[name].weight)
        w_int, scale = Q.quantize_weights(w, 4)
        assert int(w_int.abs().max()) <= 7
        assert torch.allclose(w.double(), w_int.double() * scale, atol=1e-6), name
    assert ir.topology_diff(model.source_graph, graph) == []


# -- checkpoints -------------------------------------------------------------------------
def test_load_from_checkpoint_without_the_source_file(mlp_path, digits, tmp_path):
    pl.seed_everything(0)
    model = T1CModule(
        mlp_path, num_steps=6, lr=5e-3, encoding="rate", loss="mse_count", qat=True, qat_weight_bits=6
    )
    trainer = _trainer(tmp_path, limit_train_batches=3)
    trainer.fit(model, digits)
    ckpt = trainer.checkpoint_callback.best_model_path
    assert torch.load(ckpt, weights_only=False)[CKPT_GRAPH_KEY]
    mlp_path.unlink()
    restored = T1CModule.load_from_checkpoint(ckpt)
    assert restored.source_path == str(mlp_path) and restored.hparams.graph == str(mlp_path)
    assert (restored.num_steps, restored.loss_name, restored.hparams.qat_weight_bits) == (6, "mse_count", 6)
    assert ir.topology_diff(model.source_graph, restored.source_graph) == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    x = digits.val_set.tensors[0][:50]
    assert torch.equal(model.predict_with(model.executor, x), restored.predict_with(restored.executor, x))
    again = _trainer(tmp_path, limit_train_batches=2, max_epochs=2)
    again.fit(restored, digits, ckpt_path=ckpt)  # resumes without the file too
    assert again.current_epoch == 2


def test_on_load_checkpoint_refuses_a_different_topology(mlp_path, fixtures_dir):
    model = T1CModule(mlp_path, num_steps=3)
    other = graph_to_bytes(ir.read(fixtures_dir / "resnet_block.t1c"))
    with pytest.raises(ValueError, match="different topology"):
        model.on_load_checkpoint({CKPT_GRAPH_KEY: other})
    model.on_load_checkpoint({CKPT_GRAPH_KEY: graph_to_bytes(model.source_graph)})


def test_graph_bytes_round_trip(mlp_path):
    graph = ir.read(mlp_path)
    back = graph_from_bytes(graph_to_bytes(graph))
    assert ir.topology_diff(graph, back) == []
    assert np.array_equal(graph.nodes["fc1"].weight, back.nodes["fc1"].weight)


def test_lightning_cli_checkpoint_loads_without_the_source_file(mlp_path, tmp_path, monkeypatch):
    from lightning.pytorch.cli import LightningCLI

    monkeypatch.setattr("sys.argv", ["t1c"])
    args = [
        f"--model.graph={mlp_path}",
        "--model.num_steps=3",
        "--model.lr=0.01",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    cli = LightningCLI(T1CModule, DigitsDataModule, args=args, run=False, save_config_callback=None)
    assert cli.model.hparams_initial.graph == str(mlp_path)  # what loggers record
    cli.trainer.fit(cli.model, cli.datamodule)
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    assert "_instantiator" in torch.load(ckpt, weights_only=False)["hyper_parameters"]
    mlp_path.unlink()
    restored = T1CModule.load_from_checkpoint(ckpt)  # through LightningCLI's instantiator
    assert restored.source_path == str(mlp_path) and restored.num_steps == 3
    for key, value in cli.model.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key


# -- evaluation independent of batching (rate encoding) -----------------------------------
def _dyadic_graph(path, digits=None):
    """An snnTorch MLP (briefly trained on ``digits`` if given) whose weights and biases are
    multiples of 2**-6, decay 0.5.

    With spike inputs and up to ~12 steps every sum is exact in float32 whatever the
    summation order, so spikes can be compared exactly across batchings on any CPU.
    """
    import snntorch as snn
    from torch import nn

    from t1c import demo
    from t1c.bridge import to_ir

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 32),
        snn.Leaky(beta=0.5, init_hidden=True),
        nn.Linear(32, 10),
        snn.Leaky(beta=0.5, init_hidden=True),
    )
    if digits is not None:
        demo.pretrain(model, digits.train_dataloader(), epochs=1, num_steps=8, lr=5e-3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.round(p * (64 if digits is not None else 256)) / 64)
    ir.write(path, to_ir(model, torch.zeros(1, 64)))
    return path


def _frozen_sgd(params):
    return torch.optim.SGD(params, lr=0.0)  # weights stay on the dyadic grid


def test_evaluation_does_not_depend_on_the_validation_batch_size(digits, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from t1c.lightning import T1CExport

    source = _dyadic_graph(tmp_path / "dyadic.t1c", digits)
    x, y = (t[:96] for t in digits.val_set.tensors)
    train = DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)
    results, losses = {}, {}
    for size in (1, 16, len(y)):
        pl.seed_everything(0)
        model = T1CModule(source, num_steps=8, encoding="rate", optimizer=_frozen_sgd)
        preds = torch.cat([model.predict_with(model.executor, c) for c in x.split(size)])
        val = DataLoader(TensorDataset(x, y), batch_size=size)
        export = T1CExport(dirpath=tmp_path / f"bs{size}")
        trainer = _trainer(tmp_path, limit_train_batches=1, limit_val_batches=None, callbacks=[export])
        trainer.fit(model, train, val)
        written = ir.read(tmp_path / f"bs{size}" / "last.t1c").metadata["t1c_export"]["metrics"]["t1c"]
        results[size] = (preds, float(trainer.callback_metrics["val_acc"]), written)
        losses[size] = float(trainer.callback_metrics["val_loss"])
    preds, val_acc, written = results[1]
    assert 0.5 < val_acc < 1.0 and written["float_acc"] == pytest.approx(val_acc)
    for size, (p, acc, w) in results.items():
        assert torch.equal(p, preds), size
        assert acc == val_acc and w["float_acc"] == written["float_acc"], size
        assert w["quant_acc"] == written["quant_acc"] and w["export_agreement"] == 1.0, size
        assert losses[size] == pytest.approx(losses[1], rel=1e-5), size  # a mean of batch means


# -- sequences: batches that hold their time steps ----------------------------------------
def test_sequence_batches_take_their_steps_from_the_data(mlp_path):
    model = T1CModule(mlp_path, encoding="sequence")
    assert model.num_steps is None and model.hparams.num_steps is None
    assert model.example_input_array.shape == (1, 1, 64)
    x = (torch.rand(3, 9, 64) < 0.3).float()
    ys = model(x)
    assert ys.shape == (9, 3, 10)
    assert torch.equal(model.encode(x), x.transpose(0, 1))
    first = T1CModule(mlp_path, encoding="sequence", time_first=True, num_steps=9)
    assert first.example_input_array.shape == (9, 1, 64)
    assert torch.equal(first(x.transpose(0, 1)), ys)
    assert torch.equal(
        first.predict_with(first.executor, x.transpose(0, 1)), model.predict_with(model.executor, x)
    )
    assert T1CModule(mlp_path).num_steps == 25  # static inputs keep the default


def test_sequence_mismatches_name_the_shapes(mlp_path):
    model = T1CModule(mlp_path, encoding="sequence", num_steps=5)
    with pytest.raises(ValueError, match=r"holds 9 time steps .* num_steps=5"):
        model(torch.zeros(2, 9, 64))
    with pytest.raises(ValueError, match=r"has shape \[2, 30\] .* Input '.*' takes \[64\]"):
        model(torch.zeros(2, 5, 2, 30))
    assert model(torch.zeros(2, 5, 1, 64)).shape == (5, 2, 10)  # [1, 64] steps flattened into [64]


def test_sequence_training_validation_and_qat(mlp_path, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    pl.seed_everything(0)
    y = torch.arange(60) % 10
    x = (torch.rand(60, 6, 64) < 0.05).float()
    x[torch.arange(60), :, y * 6] = 1.0  # a class-specific input channel fires at every step
    data = DataLoader(TensorDataset(x, y), batch_size=20, shuffle=True)
    val = DataLoader(TensorDataset(x, y), batch_size=20)
    model = T1CModule(mlp_path, encoding="sequence", num_steps=6, lr=5e-3, qat=True, qat_weight_bits=6)
    before = _fixed_batch_loss(model, x, y)
    trainer = _trainer(tmp_path, max_epochs=4, limit_train_batches=None, enable_checkpointing=False)
    trainer.fit(model, data, val)
    assert _fixed_batch_loss(model, x, y) < 0.9 * before
    assert Q.qat_enabled(model.executor) and "val_acc" in trainer.callback_metrics
    preds = trainer.predict(model, val)
    expected = [model.predict_with(model.executor, c) for c in x.split(20)]  # the same batches
    assert torch.equal(torch.cat(preds), torch.cat(expected))


def test_gradient_checkpointing_in_chunks_gives_the_same_step(tmp_path):
    source = _dyadic_graph(tmp_path / "dyadic.t1c")  # exact sums: chunked spikes equal by proof
    torch.manual_seed(0)
    x, y = (torch.rand(6, 12, 64) < 0.2).float(), torch.arange(6)
    grads = {}
    for chunk in (None, 5, 12):
        model = T1CModule(source, encoding="sequence", grad_checkpoint_steps=chunk, learn_beta=True)
        ys = model(x)
        model.compute_loss(ys, y).backward()
        grads[chunk] = (ys.detach(), {n: p.grad.clone() for n, p in model.executor.named_parameters()})
    ys, reference = grads[None]
    assert ys.sum() > 0
    for chunk in (5, 12):
        assert torch.equal(grads[chunk][0], ys), chunk  # spikes: the same steps, state carried over
        for name, g in reference.items():
            assert torch.allclose(grads[chunk][1][name], g, rtol=1e-4, atol=1e-6), (chunk, name)
    with torch.no_grad():
        assert torch.equal(T1CModule(source, encoding="sequence", grad_checkpoint_steps=5)(x), ys)
    with pytest.raises(ValueError, match="grad_checkpoint_steps=0"):
        T1CModule(source, encoding="sequence", grad_checkpoint_steps=0)


def test_batchnorm_in_training_mode_runs_unchunked(mlp_path):
    from torch import nn

    model = T1CModule(mlp_path, encoding="sequence", grad_checkpoint_steps=2)
    assert not model._batch_statistics()
    model.executor.add_module("extra_bn", nn.BatchNorm1d(3))  # as a hybrid graph's BatchNorm node imports
    assert model._batch_statistics()  # chunks would change its statistics: one run over all steps
    model.eval()
    assert not model._batch_statistics()  # running statistics: chunking changes nothing
