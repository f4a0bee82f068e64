"""Normalisation (`t1c.ir.normalization`): BatchNorm1d/2d and LayerNorm fields, checks, shape
rules, files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from t1c import ir

from .factories import (
    FACTORIES,
    assert_fields_survive,
    assert_refused,
    assert_shape_refused,
    shape_through,
)

BN = {"weight": np.ones(4), "bias": np.zeros(4), "running_mean": np.zeros(4), "running_var": np.ones(4)}


def _graph(*nodes: ir.Node, shape=(8,)) -> ir.Graph:
    return ir.Graph.from_chain(ir.Input(input_type={"input": np.array(shape)}), *nodes, ir.Output())


def _name(node: ir.Node) -> str:
    """The name ``_graph`` (``Graph.from_chain``) gives its first node."""
    return f"{type(node).__name__.lower()}_1"


def _node_datasets(node: ir.Node, tmp_path: Path, shape) -> dict:
    path = tmp_path / "g.t1c"
    ir.write(path, _graph(node, shape=shape))
    with h5py.File(path, "r") as f:
        group = f[f"graph/nodes/{_name(node)}"]
        return {k: (group[k].dtype, group[k][()]) for k in group if isinstance(group[k], h5py.Dataset)}


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ir.BatchNorm1d(num_features=5, **BN), "weight"),
        (lambda: ir.BatchNorm2d(num_features=4, **{**BN, "running_mean": np.zeros(3)}), "running_mean"),
        (lambda: ir.BatchNorm1d(num_features=4, **{**BN, "running_var": -np.ones(4)}), "running_var"),
        (lambda: ir.BatchNorm1d(num_features=4, **BN, eps=0.0), "eps"),
        (lambda: ir.BatchNorm1d(num_features=4, **BN, momentum=1.5), "momentum"),
        (lambda: ir.BatchNorm1d(num_features=4, **{**BN, "weight": [1, 2, np.nan, 3]}), "weight"),
        (lambda: ir.BatchNorm2d(num_features=0, **BN), "num_features"),
        (lambda: ir.LayerNorm(normalized_shape=[2, 4], weight=np.ones(8), bias=np.zeros((2, 4))), "weight"),
        (lambda: ir.LayerNorm(normalized_shape=[2, 4], weight=np.ones((2, 4)), bias=np.zeros(8)), "bias"),
        (lambda: ir.LayerNorm(normalized_shape=[8], weight=np.ones(8), bias=np.zeros(8), eps=-1.0), "eps"),
        (lambda: ir.LayerNorm(normalized_shape=[0], weight=np.ones(0), bias=np.zeros(0)), "normalized_shape"),
    ],
)
def test_constructors_refuse_impossible_values(build, field):
    assert_refused(build, field)


def test_statistics_of_the_wrong_length_say_num_features():
    with pytest.raises(ir.T1CFormatError, match=r"has shape \[3\] but num_features is 4"):
        ir.BatchNorm1d(num_features=4, **{**BN, "running_mean": np.zeros(3)})


def test_negative_variance_is_refused_with_its_value():
    with pytest.raises(ir.T1CFormatError, match=r"must be >= 0 \(a variance\), got -2"):
        ir.BatchNorm2d(num_features=4, **{**BN, "running_var": np.array([1.0, -2.0, 1.0, 1.0])})


@pytest.mark.parametrize("kind", ["batchnorm1d", "batchnorm2d", "layernorm"])
def test_fields_survive_a_file(kind, tmp_path):
    assert_fields_survive(FACTORIES[kind](), tmp_path)


def test_batchnorm_momentum_none_survives_a_file(tmp_path):
    bn = ir.BatchNorm1d(
        num_features=8,
        weight=np.ones(8),
        bias=np.zeros(8),
        running_mean=np.zeros(8),
        running_var=np.ones(8),
        momentum=None,
    )
    stored = _node_datasets(bn, tmp_path, (8,))
    assert "momentum" not in stored  # the toolchain reads the default 0.1: same inference
    assert stored["cumulative_average"][1] == True  # noqa: E712
    back = ir.read(tmp_path / "g.t1c").nodes["batchnorm1d_1"]
    assert back.momentum is None and back.cumulative_average is True


def test_default_eps_and_momentum_are_not_written(tmp_path):
    stored = _node_datasets(ir.BatchNorm1d(num_features=4, **BN), tmp_path, (4,))
    assert set(stored) == {"type", "num_features", "weight", "bias", "running_mean", "running_var"}
    layer = ir.LayerNorm(normalized_shape=[8], weight=np.ones(8), bias=np.zeros(8), eps=np.float32(1e-5))
    assert "eps" not in _node_datasets(layer, tmp_path, (8,))


@pytest.mark.parametrize(
    ("node", "shape", "field"),
    [
        (ir.BatchNorm1d(num_features=4, **BN), (4, 3, 3), "num_features"),
        (ir.BatchNorm1d(num_features=4, **BN), (5,), "num_features"),
        (ir.BatchNorm2d(num_features=4, **BN), (4,), "num_features"),
        (
            ir.LayerNorm(normalized_shape=[4, 4], weight=np.ones((4, 4)), bias=np.ones((4, 4))),
            (3, 4, 5),
            "normalized_shape",
        ),
    ],
)
def test_shape_inference_checks_connected_nodes(node, shape, field):
    assert_shape_refused(node, shape, field)


def test_batchnorm_shape_message_says_what_it_expects():
    with pytest.raises(
        ir.T1CFormatError, match=r"expects inputs of shape \[C, H, W\] with C = 4 but receives \[4\]"
    ):
        _graph(ir.BatchNorm2d(num_features=4, **BN), shape=(4,))


@pytest.mark.parametrize(
    ("node", "shape"),
    [
        (ir.BatchNorm1d(num_features=4, **BN), (4,)),
        (ir.BatchNorm1d(num_features=4, **BN), (4, 7)),
        (ir.BatchNorm2d(num_features=4, **BN), (4, 2, 3)),
        (ir.LayerNorm(normalized_shape=[4, 4], weight=np.ones((4, 4)), bias=np.ones((4, 4))), (3, 4, 4)),
        (ir.LayerNorm(normalized_shape=[4], weight=np.ones(4), bias=np.ones(4)), (4,)),
    ],
)
def test_shape_inference_accepts_what_torch_runs(node, shape):
    assert shape_through(node, shape) == shape
