"""Per-layer spike rates in float and quantized simulation, and the warning for a silenced layer."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import lightning.pytorch as pl
import pytest
import snntorch as snn
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from snntorch import utils
from test_callback import _trainer
from torch import nn

from t1c.bridge import ir_to_torch, to_ir
from t1c.lightning import T1CExport
from t1c.lightning.manifest import read_manifest
from t1c.lightning.rates import SpikeCounter, layer_rates, quantization_harm, rate_figures, synced_rates

STEPS = 5


def _net():
    """lif1 fires; fc2's small weights round to zero at 4 bits, leaving only the large weight
    from a neuron of lif1 that never fires: lif2 fires in float and is silent quantized."""
    net = nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(6, 10),
            lif1=snn.Leaky(beta=0.9, init_hidden=True),
            fc2=nn.Linear(10, 3),
            lif2=snn.Leaky(beta=0.9, init_hidden=True),
        )
    )
    with torch.no_grad():
        net.fc1.weight.fill_(0.5)
        net.fc1.weight[0] = -1.0  # neuron 0 of lif1 never fires on inputs >= 0
        net.fc1.bias.zero_()
        net.fc2.weight.fill_(0.5)
        net.fc2.weight[:, 0] = 100.0
        net.fc2.bias.zero_()
    return net


def _direct_rates(net, x):
    """Each Leaky's spikes per neuron-step, counted on snnTorch's own forward."""
    utils.reset(net)
    spikes = {"lif1": [], "lif2": []}
    with torch.no_grad():
        for _ in range(STEPS):
            h = net.fc1(x)
            s1 = net.lif1(h)
            s2 = net.lif2(net.fc2(s1))
            spikes["lif1"].append(s1)
            spikes["lif2"].append(s2)
    return {k: float(torch.stack(v).mean()) for k, v in spikes.items()}


def test_counter_matches_a_direct_count_and_detaches():
    net = _net()
    x = torch.rand(8, 6)
    executor = ir_to_torch(to_ir(net, x[:1])).eval()
    counter = SpikeCounter().attach(executor)
    with torch.no_grad():
        for part in x.split(3):  # batches of any size add up
            executor.run_sequence(part.expand(STEPS, *part.shape))
    counter.detach()
    rates = synced_rates(counter.counts, "cpu")
    assert rates == pytest.approx(_direct_rates(net, x))
    assert 0 < rates["lif1"] < 1 and rates["lif2"] > 0
    assert counter.counts["lif1"][1] == STEPS * 8 * 10  # neuron-steps
    assert all("forward_sequence" not in vars(m) and not m._forward_hooks for m in executor.modules())


def test_stepped_runs_are_counted_by_the_hook():
    net = _net()
    x = torch.rand(4, 6)
    executor = ir_to_torch(to_ir(net, x[:1]), keep_state=True).eval()
    counter = SpikeCounter().attach(executor)
    with torch.no_grad():
        for _ in range(STEPS):
            executor(x)
    assert synced_rates(counter.take(), "cpu") == pytest.approx(_direct_rates(net, x))
    assert counter.counts == {}


def test_harm_is_silence_or_saturation_after_quantization():
    rates = {
        "a": (0.2, 0.0),
        "b": (0.1, 0.0009),
        "c": (0.1, 0.05),
        "d": (0.5, 1.0),
        "e": (1.0, 1.0),
        "f": (0, 0),
    }
    assert quantization_harm(rates) == [("a", "silent"), ("b", "silent"), ("d", "saturated")]
    figures = rate_figures({"a": 0.2}, {"a": 0.0})
    assert figures == {"t1c/rate/a/float": 0.2, "t1c/rate/a/quant": 0.0}
    assert layer_rates({**figures, "t1c/quant_acc": 0.5}) == {"a": (0.2, 0.0)}


class _Fixed(pl.LightningModule):
    """A plain module whose weights do not train (lr 0): the rates are those of :func:`_net`."""

    def __init__(self):
        super().__init__()
        self.net = _net()

    def forward(self, x):
        utils.reset(self.net)
        return torch.stack([self.net(x) for _ in range(STEPS)])

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self(batch[0]).sum(0), batch[1])

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_a_layer_silenced_by_quantization_is_named_with_both_rates(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    loaders = [
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8) for _ in range(2)
    ]
    module = _Fixed()
    direct = _direct_rates(_net(), x)
    trainer = _trainer(tmp_path, [ModelCheckpoint(dirpath=tmp_path), T1CExport(weight_bits=4)], max_epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, *loaders)
    silenced = [str(w.message) for w in caught if "changes what layers fire" in str(w.message)]
    assert len(silenced) == 1, [str(w.message) for w in caught]
    assert (
        f"'lif2' is silent after quantization: spike rate {direct['lif2']:.4f} in float, 0.0000 quantized"
        in silenced[0]
    )
    assert "lif1" not in silenced[0]
    metrics = read_manifest(tmp_path / "t1c_exports.json")["exports"]["epoch=0-step=2.t1c"]["metrics"]
    assert (
        metrics["t1c/rate/lif2/float"] == pytest.approx(direct["lif2"])
        and metrics["t1c/rate/lif2/quant"] == 0.0
    )
    assert metrics["t1c/rate/lif1/float"] == pytest.approx(direct["lif1"])
    assert 0 < metrics["t1c/rate/lif1/quant"] < 1  # lif1 keeps firing at 4 bits
