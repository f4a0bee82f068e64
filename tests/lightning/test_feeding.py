"""How a plain module's batch becomes the graph's input, how its output is read, the live classes."""

from __future__ import annotations

import pytest
import torch
from snntorch import spikegen

from t1c.lightning import T1CExport
from t1c.lightning.feeding import Feed, check_feed, classes, fed_pair


def test_classes_from_forward_outputs():
    out = torch.zeros(5, 8, 3)
    out[:, :, 2] = 1
    assert classes(out, 8)[0].tolist() == [2] * 8 and classes(out, 8)[1] == 5
    assert classes(out.transpose(0, 1), 8)[1] == 5
    with pytest.raises(ValueError, match=r"not \[B, C\]"):
        classes(torch.zeros(8), 8)
    assert classes((out, "membrane"), 8)[1] == 5  # a tuple: its first element
    predicted, steps = classes(out[0], 8)  # [B, C]: one step
    assert predicted.tolist() == [2] * 8 and steps is None


def test_named_encoders_are_snntorch_spikegen():
    x = 0.5 + 0.5 * torch.rand(4, 6, generator=torch.Generator().manual_seed(0))  # latency: spikes in 5 steps
    torch.manual_seed(3)
    expected = spikegen.rate(x, num_steps=7)
    torch.manual_seed(3)
    assert torch.equal(Feed("rate", 7).sequence(x, "static", None), expected)
    assert torch.equal(Feed("latency", 5).sequence(x, "static", None), spikegen.latency(x, num_steps=5))
    steps = torch.rand(3, 4, 6)  # [T, B, F]
    assert torch.equal(Feed("delta").sequence(steps, "TB", None), spikegen.delta(steps))
    assert torch.equal(Feed("direct", 2).sequence(x, "static", 9), torch.stack([x, x]))  # num_steps wins
    assert Feed().sequence(x, "static", 4).shape == (4, 4, 6)  # the forward's steps, as before
    assert Feed(lambda v: v[None] * 2).sequence(x, "static", None).shape == (1, 4, 6)


def test_readouts():
    ys = torch.arange(12.0).reshape(3, 2, 2)
    assert torch.equal(Feed().scores(ys), ys.sum(0))
    assert torch.equal(Feed(readout="mean").scores(ys), ys.mean(0))
    assert torch.equal(Feed(readout="last_step").scores(ys), ys[-1])
    assert torch.equal(Feed(readout=lambda v: v.amax(0)).scores(ys), ys[-1])


def test_feed_arguments_are_checked():
    check_feed(None, None, "spike_count")
    check_feed(lambda x: x[None], None, lambda ys: ys[-1])
    for args, message in [
        (("rate", None, "spike_count"), r"T1CExport\(encoder='rate'\): needs num_steps"),
        (("poisson", 4, "spike_count"), r"T1CExport\(encoder='poisson'\): must be None, one of"),
        (("rate", 0, "spike_count"), r"T1CExport\(num_steps=0\): must be None or an int >= 1"),
        ((None, None, "membrane"), r"T1CExport\(readout='membrane'\): must be one of"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_feed(*args)
    with pytest.raises(ValueError, match="needs num_steps"):
        T1CExport(encoder="latency")


def test_forward_and_encoder_draw_the_same_random_stream():
    class Coded(torch.nn.Module):
        device = torch.device("cpu")

        def forward(self, x):
            return spikegen.rate(x, num_steps=6).sum(0)  # [B, C]: encodes inside forward

    x = torch.rand(5, 3)
    live, xs, steps = fed_pair(Coded(), x, "static", Feed("rate", 6), seed=11)
    assert steps is None and torch.equal(xs.sum(0).argmax(-1), live)  # the same spikes on both sides
