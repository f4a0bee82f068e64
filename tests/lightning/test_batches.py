"""How batches hold time: the layout from the model's first layer and the labels, one step of one sample."""

from __future__ import annotations

import torch
from test_callback_plain import _conv, _mlp
from torch import nn

from t1c.lightning.batches import batch_size, first_loader, layout_of, one_step, time_first


def test_layout_rules():
    mlp, conv = _mlp(), _conv()
    flat = nn.Sequential(nn.Flatten(), nn.Linear(2 * 8 * 8, 3))
    assert layout_of(torch.zeros(8, 6), mlp, 8) == "static"
    assert layout_of(torch.zeros(8, 5, 6), mlp, 8) == "BT"
    assert layout_of(torch.zeros(5, 8, 6), mlp, 8) == "TB"
    assert layout_of(torch.zeros(8, 2, 8, 8), conv, 8) == "static"
    assert layout_of(torch.zeros(8, 5, 2, 8, 8), conv, 8) == "BT"
    assert layout_of(torch.zeros(8, 2, 8, 8), flat, 8) == "static"
    assert layout_of(torch.zeros(8, 5, 2, 8, 8), flat, 8) == "BT"
    x = torch.arange(8 * 5 * 6.0).reshape(8, 5, 6)
    assert torch.equal(one_step(x, "BT"), x[:1, 0]) and torch.equal(one_step(x, "TB"), x[0, :1])
    assert layout_of(torch.zeros(8, 5, 6), None, 8) == "static"  # no layer with weights: one step each


def test_time_first_and_batch_size():
    x = torch.arange(8 * 5 * 6.0).reshape(8, 5, 6)
    assert time_first(x, "BT", None).shape == (5, 8, 6) and batch_size(x, "BT") == 8
    assert time_first(x, "TB", None) is x and batch_size(x, "TB") == 5
    repeated = time_first(x[:, 0], "static", 3)
    assert repeated.shape == (3, 8, 6) and torch.equal(repeated[2], x[:, 0])
    assert time_first(x[:, 0], "static", None).shape == (1, 8, 6)


def test_first_loader():
    assert first_loader({"a": 1, "b": 2}) == 1
    assert first_loader([3, 4]) == 3 and first_loader([]) is None and first_loader(None) is None
