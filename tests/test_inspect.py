"""``t1c.inspect``: the reports of ``t1c inspect`` and ``t1c verify``, as pure formatting."""

from __future__ import annotations

import re

import numpy as np
from drawing_cases import recurrent_sum_graph
from test_cli import _chain

from t1c import ir
from t1c.inspect import (
    MAX_CELL,
    NEURON_FIELDS,
    format_graph,
    format_table,
    format_value,
    node_rows,
    param_count,
)
from t1c.ir.drawing import back_edges


def test_format_value_keeps_lines_short():
    assert format_value(np.full(1000, 10.0, dtype=np.float32)) == "10"
    assert format_value(np.arange(100, dtype=np.float32)) == "0..99"
    assert format_value(np.array([1, 2], dtype=np.int64)) == "[1, 2]"
    assert format_value(np.array([2, 2], dtype=np.int64)) == "2"
    assert format_value(True) == "True"
    assert format_value("residual") == "residual"


def test_param_count_sums_float_arrays():
    graph = _chain(hidden=4)
    assert param_count(graph.nodes["fc"]) == 4 * 3 + 4
    assert param_count(graph.nodes["lif"]) == 4 * 4
    assert param_count(graph.nodes["input"]) == 0
    assert param_count(graph.nodes["lif"], NEURON_FIELDS) == 4 * 4
    assert param_count(graph.nodes["fc"], NEURON_FIELDS) == 0


def test_weights_and_neuron_parameters_are_counted_apart():
    """A LIF's per-neuron arrays are neuron parameters, not weights (row and header)."""
    graph = _chain(hidden=4)
    graph.nodes["lif"].beta = np.full(4, 0.9)
    rows = {r.name: r for r in node_rows(graph)}
    assert (rows["fc"].weights, rows["fc"].neuron_params) == (4 * 3 + 4, 0)
    assert (rows["lif"].weights, rows["lif"].neuron_params) == (0, 5 * 4)
    text = format_graph(graph)
    assert "4 nodes, 3 edges, 16 weights, 20 neuron parameters;" in text
    header = next(line for line in text.splitlines() if line.startswith("name "))
    assert re.split(r"\s{2,}", header)[4:] == ["weights", "neuron params", "fields"]


def test_fields_are_shown_whole():
    """Every field of a LIF with snnTorch's fields is in its row (no cell cut at MAX_CELL)."""
    graph = _chain(hidden=4)
    lif = graph.nodes["lif"]
    lif.tau, lif.v_threshold = np.linspace(5.0, 6.5, 4), np.linspace(1.0, 1.2, 4)
    lif.beta, lif.reset_mechanism, lif.reset_delay = np.full(4, 0.9), "subtract", True
    lif.strict_threshold = True
    row = next(r for r in node_rows(graph) if r.name == "lif")
    assert row.fields.endswith("reset_mechanism=subtract reset_delay=True strict_threshold=True")
    line = next(x for x in format_graph(graph).splitlines() if x.startswith("lif "))
    assert line.endswith(row.fields) and len(row.fields) > MAX_CELL and "...(+" not in line


def test_a_long_field_value_is_still_cut():
    """A free-text field from a hostile file stays bounded: each value is cut, not the row."""
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([4])}),
        ir.HybridRegion(mode="snn", features=4, name="x" * 5000),
        ir.Output(),
        names=["input", "hrn", "output"],
    )
    line = next(x for x in format_graph(graph).splitlines() if x.startswith("hrn "))
    assert "mode=snn features=4 name=" + "x" * MAX_CELL + "...(+4920 chars)" in line
    assert len(line) < 3 * MAX_CELL


def test_format_table_aligns_columns():
    text = format_table(["a", "bb"], [("xxx", 1), ("y", 22)], right=[1])
    lines = text.splitlines()
    assert lines[0] == "a    bb"
    assert lines[2] == "xxx   1"
    assert lines[3] == "y    22"
    assert format_table(["a"], [("y" * 200,)], uncut=[0]).splitlines()[2] == "y" * 200
    assert format_table(["a"], [("y" * 200,)]).splitlines()[2].endswith("...(+120 chars)")


def test_node_rows_of_residual_fixture(fixtures_dir):
    rows = {r.name: r for r in node_rows(ir.read(fixtures_dir / "resnet_block.t1c"))}
    assert rows["skip"].type == "Skip"
    assert rows["skip"].input_shape == "[32] + [32]"
    assert rows["skip"].fields == "skip_type=residual"
    assert rows["head"].output_shape == "[10]"
    assert (rows["head"].weights, rows["head"].neuron_params) == (10 * 32 + 10, 0)
    assert rows["input"].input_shape == "-"


def test_format_graph_lists_metadata_nested():
    text = format_graph(_chain(metadata={"epoch": 3, "t1c": {"quant_acc": 0.5}}), path="x.t1c")
    assert "file: x.t1c" in text
    assert "  epoch: 3" in text
    assert "  t1c.quant_acc: 0.5" in text
    assert "  fc -> lif" in text


def test_a_recurrent_graph_names_its_back_edges():
    graph = recurrent_sum_graph()
    assert back_edges(graph) == {("lif", "rec")}
    lines = format_graph(graph).splitlines()
    assert "recurrent: 1 back edge(s) carry last step's values (marked below)" in lines
    assert "  lif -> rec  (back edge: last step's value)" in lines
    assert "  rec -> sum" in lines  # read in the same step
    assert back_edges(_chain()) == set() and not any(
        "back edge" in x for x in format_graph(_chain()).splitlines()
    )
