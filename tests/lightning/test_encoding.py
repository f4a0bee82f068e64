"""Input encodings: rate/direct/sequence, and per-sample seeds that make evaluation independent of batching."""

from __future__ import annotations

import pytest
import torch

from t1c.lightning.encoding import ENCODINGS, check_encoding, encode, is_count, sample_seeds


def test_encodings_are_listed_and_checked():
    assert ENCODINGS == ("rate", "direct", "sequence")
    assert check_encoding("sequence") == "sequence"
    with pytest.raises(ValueError, match="encoding must be one of"):
        check_encoding("latency")


def test_is_count():
    assert is_count(1) and is_count(0, minimum=0) and not is_count(0)
    assert not is_count(True) and not is_count(2.0) and not is_count("3")


# -- per-sample seeds ----------------------------------------------------------------------
def test_sample_seeds_depend_on_the_sample_not_its_batch():
    torch.manual_seed(0)
    x = torch.rand(20, 3, 4)
    seeds = sample_seeds(x, 7)
    assert len(seeds) == 20 and len(set(seeds)) == 20
    assert all(0 <= s < 2**63 for s in seeds)
    assert sample_seeds(x[5:6], 7) == [seeds[5]]
    perm = torch.randperm(20)
    assert sample_seeds(x[perm], 7) == [seeds[i] for i in perm.tolist()]
    assert sample_seeds(x.double(), 7) == seeds  # hashed as float32
    assert sample_seeds(x, 8) != seeds  # the global seed matters


def test_sample_seeds_see_every_value():
    x = torch.zeros(1, 64)
    base = sample_seeds(x, 0)[0]
    for i in range(64):
        y = x.clone()
        y[0, i] = 1.0
        assert sample_seeds(y, 0)[0] != base, i
    swapped = torch.arange(64.0).unsqueeze(0)
    assert sample_seeds(swapped, 0) != sample_seeds(swapped.flip(1), 0)  # positions matter


def test_sample_seeds_are_a_fixed_function():
    """The seeds decide reported accuracies: a change of the hash must be deliberate."""
    assert sample_seeds(torch.zeros(1, 4), 0) == sample_seeds(torch.zeros(1, 4), 0)
    assert sample_seeds(torch.tensor([[0.5, 0.25]]), 3) == [7953890127751034108]


# -- rate with per-sample seeds -------------------------------------------------------------
def test_per_sample_rate_spikes_do_not_depend_on_batching():
    torch.manual_seed(1)
    x = torch.rand(33, 10)
    whole = encode(x, 12, "rate", seeds=sample_seeds(x, 0))
    assert whole.shape == (12, 33, 10) and set(whole.unique().tolist()) <= {0.0, 1.0}
    for size in (1, 5, 16):
        parts = [encode(c, 12, "rate", seeds=sample_seeds(c, 0)) for c in x.split(size)]
        assert torch.equal(torch.cat(parts, 1), whole), size
    assert not torch.equal(encode(x, 12, "rate", seeds=sample_seeds(x, 1)), whole)


def test_per_sample_rate_spikes_fire_at_the_intensity():
    x = torch.tensor([[0.0, 0.25, 1.0, 2.0]]).repeat(50, 1)
    x[:, 1] += torch.arange(50) * 1e-6  # distinct samples, distinct seeds
    xs = encode(x, 400, "rate", seeds=sample_seeds(x, 0))
    rates = xs.mean((0, 1))
    assert rates[0] == 0 and rates[2] == 1 and rates[3] == 1
    assert abs(float(rates[1]) - 0.25) < 0.01


def test_rate_argument_errors():
    x = torch.rand(3, 2)
    with pytest.raises(ValueError, match="not both"):
        encode(x, 4, "rate", torch.Generator(), seeds=[1, 2, 3])
    with pytest.raises(ValueError, match="2 seeds for a batch of 3"):
        encode(x, 4, "rate", seeds=[1, 2])
    with pytest.raises(ValueError, match="num_steps"):
        encode(x, None, "rate")
    assert torch.equal(encode(x, 3, "direct", seeds=[1, 2, 3]), encode(x, 3, "direct"))


# -- sequences -------------------------------------------------------------------------------
def test_sequence_moves_time_first_and_checks_the_steps():
    x = torch.arange(2 * 5 * 3, dtype=torch.int16).reshape(2, 5, 3)
    xs = encode(x, None, "sequence")
    assert xs.shape == (5, 2, 3) and xs.dtype == torch.float32
    assert torch.equal(xs[4, 1], x[1, 4].float())
    assert torch.equal(encode(x, 5, "sequence"), xs)
    assert torch.equal(encode(xs, None, "sequence", time_first=True), xs)
    with pytest.raises(ValueError, match=r"holds 5 time steps .* but num_steps=7; set num_steps to 5"):
        encode(x, 7, "sequence")
    with pytest.raises(ValueError, match="holds 2 time steps"):
        encode(x, 5, "sequence", time_first=True)
    with pytest.raises(ValueError, match=r"needs batches \[B, T, \.\.\.\]"):
        encode(torch.zeros(4, 3), None, "sequence")
