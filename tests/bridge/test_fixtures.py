"""Every reference fixture is reproduced by the executor, stepping and run_sequence.

The fixtures (``tests/fixtures``, copied from the shared folder) were written by the reference toolchain: the
``.npz`` beside each ``.t1c`` holds inputs ``x [T, B, ...]`` and the outputs ``y`` its
executor produced step by step from a zero state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from t1c import ir
from t1c.bridge import load

# Parametrisation needs the names at collection time; the path is tests/conftest.py's.
FIXTURE_NAMES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "fixtures").glob("*.t1c"))


def _load(fixtures_dir: Path, name: str):
    data = np.load(fixtures_dir / f"{name}.npz")
    return load(fixtures_dir / f"{name}.t1c"), torch.from_numpy(data["x"]), torch.from_numpy(data["y"])


def _is_spiking_output(net) -> bool:
    """Whether the output node is fed by an LIF (its values are spikes, compared exactly)."""
    out = net.output_names[0]
    return any(net.node_types[s] == "LIF" for s, d in net.edges if d == out)


def test_fixtures_present() -> None:
    assert set(FIXTURE_NAMES) >= {"conv_snn", "mlp_snn", "resnet_block", "spiking_affine"}


def _assert_reproduces(net, ys: torch.Tensor, y: torch.Tensor, state: dict) -> None:
    """Spikes exactly, other outputs within 1e-5; a state entry per LIF node."""
    assert ys.shape == y.shape
    if _is_spiking_output(net):
        assert torch.equal(ys, y), f"{int((ys != y).sum())} spikes differ"
    else:
        torch.testing.assert_close(ys, y, rtol=0, atol=1e-5)
    assert set(state) == {n for n, t in net.node_types.items() if t == "LIF"}


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_stepping_reproduces_fixture(fixtures_dir: Path, name: str) -> None:
    net, x, y = _load(fixtures_dir, name)
    state = None
    outs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = net(x[t], state, return_state=True)
            outs.append(out)
    _assert_reproduces(net, torch.stack(outs), y, state)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_run_sequence_reproduces_fixture(fixtures_dir: Path, name: str) -> None:
    net, x, y = _load(fixtures_dir, name)
    with torch.no_grad():
        ys, state = net.run_sequence(x)
    _assert_reproduces(net, ys, y, state)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_internal_spikes_identical_between_stepping_and_sequence(fixtures_dir: Path, name: str) -> None:
    """Hidden LIF layers too: the final membranes agree exactly."""
    net, x, _ = _load(fixtures_dir, name)
    with torch.no_grad():
        _, seq_state = net.run_sequence(x)
        state = None
        for t in range(x.shape[0]):
            _, state = net(x[t], state, return_state=True)
    for key in state:
        assert torch.equal(state[key], seq_state[key]), key


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_structure_matches_file(fixtures_dir: Path, name: str) -> None:
    graph = ir.read(fixtures_dir / f"{name}.t1c")
    net = load(fixtures_dir / f"{name}.t1c")
    assert net.node_names == list(graph.nodes)
    assert net.edges == graph.edges
    assert net.node_types == {n: node.TYPE for n, node in graph.nodes.items()}
    for n in graph.input_names + graph.output_names:
        assert net.io_shapes[n] == graph.nodes[n].shape
    for n, node in graph.nodes.items():
        module = net.module_for(n)
        assert (module is None) == isinstance(node, (ir.Input, ir.Output))
        if hasattr(module, "to_node"):
            back = module.to_node()
            assert type(back) is type(node)
            for field, value in node.to_fields().items():
                np.testing.assert_array_equal(np.asarray(back.to_fields()[field]), np.asarray(value))


def test_training_through_imported_fixture_reduces_loss(fixtures_dir: Path) -> None:
    """Weights are nn.Parameters and gradients flow through the surrogate spikes."""
    torch.manual_seed(0)
    net, x, _ = _load(fixtures_dir, "mlp_snn")
    xs = torch.rand(10, 16, *x.shape[2:])
    target = torch.randint(0, 10, (16,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        ys, _ = net.run_sequence(xs)
        loss = torch.nn.functional.cross_entropy(ys.sum(0), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
