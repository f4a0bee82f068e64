"""T1CModule fine-tunes, and T1CExport exports and measures, snnTorch's Synaptic, Lapicque,
Alpha and one-to-one RLeaky/RSynaptic models as it does Leaky ones (issue 23).

Each model is the snnTorch network a user brings (``init_hidden`` style, two layers of the
neuron under test), exported with :func:`~t1c.bridge.to_ir`, fine-tuned through the
imported executor with a Lightning ``Trainer`` and exported again at every checkpoint.
"""

from __future__ import annotations

from collections import OrderedDict

import lightning.pytorch as pl
import numpy as np
import pytest
import snntorch as snn
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from t1c import ir
from t1c.bridge import AlphaLIFModule, CubaLIFModule, ir_to_torch, quantize, to_ir
from t1c.lightning import T1CExport, T1CModule, TensorDataModule
from t1c.lightning.manifest import read_manifest
from t1c.lightning.rates import SpikeCounter, neuron_nodes

NEURONS = {
    "synaptic": lambda: snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True),
    "lapicque": lambda: snn.Lapicque(beta=0.9, init_hidden=True),
    "alpha": lambda: snn.Alpha(alpha=0.9, beta=0.8, init_hidden=True),
    "rleaky": lambda: snn.RLeaky(beta=0.9, all_to_all=False, V=0.5, init_hidden=True),
    "rsynaptic": lambda: snn.RSynaptic(alpha=0.8, beta=0.9, all_to_all=False, V=0.5, init_hidden=True),
}
#: The neuron type each snnTorch neuron exports to.
NODE_TYPES = {"alpha": "AlphaLIF"}
FEATURES, CLASSES = 8, 3


def snntorch_graph(kind: str) -> ir.Graph:
    """8 inputs -> 12 neurons -> 3 neurons, both of ``kind``, weights scaled so that they fire."""
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(FEATURES, 12), n1=NEURONS[kind](), fc2=nn.Linear(12, CLASSES), n2=NEURONS[kind]()
        )
    )
    with torch.no_grad():
        model.fc1.weight.mul_(3)
        model.fc2.weight.mul_(3)
    return to_ir(model, torch.zeros(1, FEATURES))


def data() -> TensorDataModule:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, FEATURES, generator=g)
    return TensorDataModule(x, x[:, :CLASSES].argmax(1), batch_size=16, seed=0)


def neuron_parameters(module: nn.Module) -> dict[str, torch.nn.Parameter]:
    return dict(module.named_parameters())


@pytest.mark.parametrize("kind", sorted(NEURONS))
def test_the_imported_neurons_run_in_the_module_with_its_surrogate_and_learning_flags(kind):
    graph = snntorch_graph(kind)
    assert [graph.nodes[n].TYPE for n in ("n1", "n2")] == [NODE_TYPES.get(kind, "CubaLIF")] * 2
    flags = {"learn_beta": True, "learn_threshold": True}
    model = T1CModule(graph, num_steps=6, encoding="direct", spike_grad="fast_sigmoid", **flags)
    assert model.output_is_spikes  # the output is counted as spikes
    for name in ("n1", "n2"):
        module = model.executor.module_for(name)
        assert isinstance(module, (CubaLIFModule, AlphaLIFModule))
        assert module.spike_grad is model.spike_grad
    learned = set(neuron_parameters(model.executor.module_for("n1")))
    node = graph.nodes["n1"]
    expected = {"v_threshold"}
    if isinstance(node, ir.CubaLIF):
        expected |= {"beta"} | ({"alpha"} if node.alpha is not None else set())
        expected |= {"w_rec"} if node.w_rec is not None else set()
    assert learned == expected
    # one training step's gradients reach every neuron parameter, through time
    x = torch.rand(16, FEATURES, generator=torch.Generator().manual_seed(1))
    model.compute_loss(model(x), x[:, :CLASSES].argmax(1)).backward()
    for name, p in neuron_parameters(model.executor.module_for("n1")).items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _fit(tmp_path, graph: ir.Graph, **options) -> T1CModule:
    torch.manual_seed(0)
    options = {"learn_beta": True, "learn_threshold": True, **options}
    model = T1CModule(graph, num_steps=6, encoding="direct", lr=2e-2, **options)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=2,
        logger=False,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True), T1CExport(weight_bits=8)],
    )
    trainer.fit(model, data())
    return model


def _assert_same_fields(got: ir.Node, want: ir.Node, name: str) -> None:
    for field, value in want.to_fields().items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(got, field), value, err_msg=f"{name}.{field}")
        else:
            assert getattr(got, field) == value, f"{name}.{field}"


@pytest.mark.parametrize("kind", sorted(NEURONS))
def test_fine_tuned_and_exported_with_its_trained_parameters_and_measured(kind, tmp_path):
    source = snntorch_graph(kind)
    model = _fit(tmp_path, source)
    folder = tmp_path / "ckpt"
    last = ir.read(folder / "last.t1c")
    assert ir.topology_diff(source, last) == []
    live = model.export_graph()
    for name, node in live.nodes.items():  # the file holds the module's trained state
        _assert_same_fields(last.nodes[name], node, name)
    for name in ("fc1", "n1"):  # and training changed it
        before = {f: v for f, v in source.nodes[name].to_fields().items() if isinstance(v, np.ndarray)}
        changed = [f for f, v in before.items() if not np.array_equal(v, getattr(live.nodes[name], f))]
        assert changed, f"{name} did not train"
    w_rec = last.nodes["n1"].__dict__.get("w_rec")
    if w_rec is not None:  # the callback's integers: the codes of the trained w_rec
        assert not np.array_equal(w_rec, source.nodes["n1"].w_rec)
        np.testing.assert_allclose(
            last.nodes["n1"].w_rec_int * last.nodes["n1"].w_rec_scale,
            w_rec,
            atol=last.nodes["n1"].w_rec_scale,
        )

    metrics = read_manifest(folder / "t1c_exports.json")["exports"]["last.t1c"]["metrics"]
    assert metrics["t1c/export_agreement"] == 1.0
    assert 0.0 <= metrics["t1c/float_acc"] <= 1.0 and 0.0 <= metrics["t1c/quant_acc"] <= 1.0
    assert 0.0 <= metrics["t1c/quant_agreement"] <= 1.0
    for name in ("n1", "n2"):  # each neuron layer's spike rate, float and quantized
        assert (
            0.0 <= metrics[f"t1c/rate/{name}/float"] <= 1.0
            and 0.0 <= metrics[f"t1c/rate/{name}/quant"] <= 1.0
        )
    assert metrics["t1c/rate/n1/float"] > 0

    # the exported float graph computes what the module computes, on the validation data
    dm = data()
    dm.setup("fit")
    x = torch.cat([batch[0] for batch in dm.val_dataloader()])
    xs = model.encode(x, seed=0)
    with torch.no_grad():
        assert torch.equal(ir_to_torch(last).run_sequence(xs)[0], model.executor.eval().run_sequence(xs)[0])


def test_the_spike_counter_counts_every_neuron_type():
    executor = ir_to_torch(snntorch_graph("rsynaptic"))
    assert [name for name, _ in neuron_nodes(executor)] == ["n1", "n2"]
    xs = torch.rand(5, 4, FEATURES, generator=torch.Generator().manual_seed(2))
    counter = SpikeCounter().attach(executor)
    with torch.no_grad():
        executor.run_sequence(xs)
    counter.detach()
    spikes, elements = counter.counts["n1"]
    state, total = None, 0.0
    with torch.no_grad():
        for x in xs:  # stepped: the module's own spikes, summed by hand
            _, state = executor(x, state, return_state=True)
            total += float(state["n1"][2].sum())
    assert float(spikes) == total and elements == 5 * 4 * 12


@pytest.mark.parametrize("kind", ["rsynaptic", "alpha"])
def test_gradient_checkpointed_chunks_carry_the_neuron_state(kind):
    """Sequences longer than ``grad_checkpoint_steps`` run in chunks, the synaptic state (and
    the last spikes of the recurrence) carried between them: the same outputs and gradients."""
    graph = snntorch_graph(kind)
    x = torch.rand(8, FEATURES, generator=torch.Generator().manual_seed(3))
    results = []
    for chunk in (None, 4):
        model = T1CModule(
            graph, num_steps=10, encoding="direct", grad_checkpoint_steps=chunk, learn_beta=True
        )
        ys = model(x)
        model.compute_loss(ys, x[:, :CLASSES].argmax(1)).backward()
        grads = {n: p.grad.clone() for n, p in model.executor.named_parameters()}
        results.append((ys.detach(), grads))
    (ys, grads), (chunked, chunked_grads) = results
    assert torch.equal(ys, chunked)
    assert grads.keys() == chunked_grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(chunked_grads[name], g, msg=name)


def test_qat_trains_the_recurrence_on_its_grid_and_the_file_carries_its_codes(tmp_path):
    model = _fit(tmp_path, snntorch_graph("rleaky"), qat=True, qat_weight_bits=4)
    assert quantize.qat_enabled(model.executor)
    trained = model.export_graph().nodes["n1"].w_rec
    codes, scale = quantize.quantize_weights(torch.from_numpy(trained), 4)
    np.testing.assert_allclose(codes.numpy() * scale, trained, rtol=1e-6)  # on the 4-bit grid
    last = ir.read(tmp_path / "ckpt" / "last.t1c")
    np.testing.assert_array_equal(last.nodes["n1"].w_rec, trained)
    node = last.nodes["n1"]  # T1CExport(weight_bits=8): the 8-bit codes of the 4-bit grid, within rounding
    np.testing.assert_allclose(node.w_rec_int * node.w_rec_scale, trained, atol=node.w_rec_scale / 2)
    metrics = read_manifest(tmp_path / "ckpt" / "t1c_exports.json")["exports"]["last.t1c"]["metrics"]
    assert metrics["t1c/export_agreement"] == 1.0


def test_a_plain_module_with_all_to_all_recurrence_exports_and_measures(tmp_path, monkeypatch):
    """A user's LightningModule (rate coding in forward) holding an all-to-all RLeaky and a
    Synaptic: T1CExport writes the recurrent graph and its float run agrees with forward."""
    import test_callback_feed as feed

    class Recurrent(feed.RateCoded):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(64, 64),
                snn.RLeaky(beta=0.9, linear_features=64, init_hidden=True),
                nn.Linear(64, 10),
                snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True),
            )

    monkeypatch.setattr(feed, "RateCoded", Recurrent)
    _, metrics, messages, _ = feed._fit(tmp_path, T1CExport(encoder="rate", num_steps=feed.STEPS))
    assert messages == []
    assert metrics["t1c/export_agreement"] == 1.0 and "t1c/quant_acc" in metrics
    graph = ir.read(tmp_path / "epoch=0-step=10.t1c")
    assert graph.cyclic and ("1", "1.recurrent") in graph.edges
