"""Element-wise ANN activations (`t1c.ir.activations`): fields, defaults, checks, shape rules,
the ``features`` size hint, files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from t1c import ir
from t1c.ir.activations import features_note

from .factories import (
    FACTORIES,
    assert_fields_survive,
    assert_refused,
    assert_shape_refused,
    shape_through,
)


def _graph(*nodes: ir.Node, shape=(8,)) -> ir.Graph:
    return ir.Graph.from_chain(ir.Input(input_type={"input": np.array(shape)}), *nodes, ir.Output())


def _name(node: ir.Node) -> str:
    """The name ``_graph`` (``Graph.from_chain``) gives its first node."""
    return f"{type(node).__name__.lower()}_1"


def _stored(node: ir.Node, tmp_path: Path) -> set[str]:
    path = tmp_path / "g.t1c"
    ir.write(path, _graph(node))
    with h5py.File(path, "r") as f:
        return set(f[f"graph/nodes/{_name(node)}"])


@pytest.mark.parametrize(
    ("node", "absent"),
    [
        (ir.ReLU(features=8, negative_slope=0.0), "negative_slope"),
        (ir.Softmax(features=8, dim=-1), "dim"),
        (ir.GELU(features=8, approximate=True), "approximate"),
        (ir.ELU(features=8, alpha=1.0), "alpha"),
        (ir.Dropout(features=8, p=0.5), "p"),
    ],
)
def test_defaults_are_not_written(tmp_path, node, absent):
    stored = _stored(node, tmp_path)
    assert absent not in stored
    assert {"type", "features"} <= stored


@pytest.mark.parametrize(
    "kind", ["relu", "leaky_relu", "prelu", "sigmoid", "tanh", "softmax", "gelu_exact", "elu", "dropout"]
)
def test_non_default_fields_survive_a_file(kind, tmp_path):
    assert_fields_survive(FACTORIES[kind](), tmp_path)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ir.PReLU(features=8, weight=np.ones((2, 4))), "weight"),
        (lambda: ir.PReLU(features=8, weight=np.ones(0)), "weight"),
        (lambda: ir.Dropout(features=8, p=1.5), "p"),
        (lambda: ir.Dropout(features=8, p=-0.1), "p"),
        (lambda: ir.ReLU(features=8, negative_slope="0.1"), "negative_slope"),
        (lambda: ir.ELU(features=8, alpha=float("inf")), "alpha"),
        (lambda: ir.Sigmoid(features=0), "features"),
        (lambda: ir.Tanh(features=2.5), "features"),
        (lambda: ir.Softmax(features=8, dim=1.0), "dim"),
        (lambda: ir.GELU(features=8, approximate=2), "approximate"),
    ],
)
def test_constructors_refuse_impossible_values(build, field):
    assert_refused(build, field)


def test_dropout_accepts_the_ends_of_its_range():
    assert ir.Dropout(features=8, p=0).p == 0.0 and ir.Dropout(features=8, p=1).p == 1.0


def test_none_scalars_mean_the_default():
    assert ir.ReLU(features=4, negative_slope=None).negative_slope == 0.0
    assert ir.ELU(features=4, alpha=None).alpha == 1.0
    assert ir.Dropout(features=4, p=None).p == 0.5


def test_a_single_prelu_slope_may_be_a_scalar():
    node = ir.PReLU(features=6, weight=0.25)
    assert node.weight.shape == (1,) and node.weight.dtype == np.float32


@pytest.mark.parametrize(
    ("node", "shape", "field"),
    [
        (ir.PReLU(features=48, weight=np.ones(4)), (3, 4, 4), "weight"),
        (ir.Softmax(features=8, dim=2), (8,), "dim"),
        (ir.Softmax(features=8, dim=-2), (8,), "dim"),  # would be the batch axis: written as 0
    ],
)
def test_shape_inference_checks_connected_nodes(node, shape, field):
    assert_shape_refused(node, shape, field)


def test_prelu_slope_count_message_names_the_axis():
    with pytest.raises(
        ir.T1CFormatError, match=r"has 4 slopes but receives \[3, 4, 4\].*size of dim 0 \(3\)"
    ):
        _graph(ir.PReLU(features=48, weight=np.ones(4)), shape=(3, 4, 4))


@pytest.mark.parametrize(
    ("node", "shape"),
    [
        (ir.PReLU(features=48, weight=np.ones(3)), (3, 4, 4)),
        (ir.PReLU(features=6, weight=np.ones(1)), (6,)),
        (ir.Softmax(features=48, dim=0), (3, 4, 4)),
        (ir.Softmax(features=48, dim=3), (3, 4, 4)),
        (ir.Softmax(features=48, dim=-3), (3, 4, 4)),
        (ir.GELU(features=48), (3, 4, 4)),
        (ir.Dropout(features=48), (3, 4, 4)),
    ],
)
def test_shape_inference_accepts_what_torch_runs(node, shape):
    assert shape_through(node, shape) == shape


def test_softmax_over_the_batch_couples_samples():
    assert ir.Softmax(features=8, dim=0).couples_batch()
    assert not ir.Softmax(features=8, dim=1).couples_batch()
    assert not ir.Softmax(features=8).couples_batch()


def test_features_note_says_the_hint_and_the_real_size():
    node = ir.Tanh(features=47)
    assert features_note(node, (3, 4, 4)) == (
        "features = 47 but the node receives [3, 4, 4] (48 values); features is only a size hint, so it is "
        "kept as written and ignored"
    )
    assert features_note(node, (47,)) is None
    assert node.size_hint_note((47,)) is None and "47" in node.size_hint_note((48,))
