"""The drawing plan (t1c.ir.drawing): labels, edge kinds, boxes, and summaries of big graphs."""

from __future__ import annotations

import numpy as np
import pytest
from drawing_cases import deep_chain, hybrid_graph, recurrent_graph, residual_stack

from t1c import ir
from t1c.ir.drawing import (
    MAX_NAME,
    DrawEdge,
    DrawingPlan,
    DrawNode,
    back_edges,
    collapse_chains,
    collapse_repeats,
    cut_plan,
    display_text,
    drawing_plan,
    integer_bits,
    node_details,
)

from .factories import make_affine_int, make_batchnorm1d, make_conv2d_int, make_spiking_affine_int


def test_display_text_escapes_controls_and_cuts_long_names():
    assert display_text("a\nb\x1b\u202ec\u200b") == "a\\x0ab\\x1b\\u202ec\\u200b"
    assert display_text("ünï©ødé ✓") == "ünï©ødé ✓"
    long = display_text("x" * 1000)
    assert long == "x" * MAX_NAME + f"...(+{1000 - MAX_NAME})"


def test_details_count_weights_neurons_params_and_bits():
    assert node_details(make_affine_int(), (5,)) == ("Affine [5]", "40 weights, int8 weights")
    assert node_details(make_spiking_affine_int(), (4,)) == (
        "SpikingAffine [4]",
        "28 weights, w4/acc10 bits, int4 weights",
    )
    assert node_details(make_conv2d_int(), None)[0] == "Conv2d [?]"
    assert node_details(make_batchnorm1d(), (6,))[1].endswith(" params")
    lif = ir.LIF(
        tau=np.ones((2, 3, 3)),
        r=np.ones((2, 3, 3)),
        v_leak=np.zeros((2, 3, 3)),
        v_threshold=np.ones((2, 3, 3)),
    )
    assert node_details(lif, (2, 3, 3)) == ("LIF [2, 3, 3]", "18 neurons")
    assert node_details(ir.Skip(skip_type="residual"), (4,)) == ("Skip [4]",)


@pytest.mark.parametrize(
    ("values", "bits"), [([0], 2), ([1, -1], 2), ([7, -3], 4), ([-127, 5], 8), ([128], 9)]
)
def test_integer_bits_is_the_signed_width_of_the_symmetric_grid(values, bits):
    assert integer_bits(np.array(values)) == bits


def test_back_edges_are_those_the_step_order_runs_backwards():
    assert back_edges(recurrent_graph()) == {("lif", "fc")}
    assert back_edges(residual_stack(3)) == set()


def test_the_back_edge_is_the_one_the_executor_delays():
    """t1c's recurrent layer (docs/neurons.md): ``rec`` before the neuron, so ``neuron -> rec``
    carries last step's spikes; a depth-first search from the input would mark ``rec -> lif``,
    one step off in the figure."""
    f32 = np.float32
    nodes = {
        "input": ir.Input(input_type={"input": np.array([3])}),
        "fc": ir.Affine(weight=np.ones((4, 3), f32)),
        "rec": ir.Affine(weight=np.eye(4, dtype=f32)),
        "lif": ir.LIF(
            tau=np.full(4, 10, f32),
            r=np.full(4, 10, f32),
            v_leak=np.zeros(4, f32),
            v_threshold=np.ones(4, f32),
        ),
        "output": ir.Output(),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("rec", "lif"), ("lif", "rec"), ("lif", "output")]
    graph = ir.Graph(nodes, edges, allow_cycles=True)
    assert back_edges(graph) == {("lif", "rec")}
    broken = ir.Graph(nodes, edges, validate=False)  # a cycle it does not allow: drawn all the same
    assert back_edges(broken) == {("rec", "lif")}


def test_nested_graph_box_ends_its_edges_and_knows_its_input_and_output():
    plan = drawing_plan(hybrid_graph())
    box = next(b for b in plan.boxes if b.kind == "graph")
    names = {n.id: n.name for n in plan.nodes}
    assert (box.name, box.details) == ("sub", ("Graph [48]",))
    assert names[box.entry] == "input" and names[box.exit] == "output"
    assert {e.dst for e in plan.edges if e.src == box.id} == {n.id for n in plan.nodes if n.name == "fc"}


def _chain_plan(n: int) -> DrawingPlan:
    nodes = [
        DrawNode(f"n{i}", f"x{i}", "Input" if i == 0 else "Output" if i == n - 1 else "Skip", ())
        for i in range(n)
    ]
    return DrawingPlan(nodes, [], [DrawEdge(f"n{i}", f"n{i + 1}") for i in range(n - 1)], [])


def test_collapse_chains_keeps_inputs_outputs_and_short_chains():
    plan = collapse_chains(_chain_plan(6))
    assert [n.name for n in plan.nodes] == ["x0", "x1 ... x4", "x5"]
    assert plan.nodes[1].details == ("4 nodes", "Skip x4")
    assert [(e.src, e.dst) for e in plan.edges] == [("n0", "n1"), ("n1", "n5")]
    assert len(collapse_chains(_chain_plan(4)).nodes) == 4  # a chain of 2 stays


def test_cut_plan_keeps_the_first_nodes_and_counts_the_rest():
    plan = cut_plan(_chain_plan(10), 4)
    assert [n.name for n in plan.nodes] == ["x0", "x1", "x2", "7 more nodes"]
    assert [(e.src, e.dst) for e in plan.edges] == [("n0", "n1"), ("n1", "n2"), ("n2", "n_rest")]


def test_summary_steps_are_noted_in_order():
    plan = drawing_plan(deep_chain(10_000), max_nodes=300)
    assert [n.name for n in plan.nodes] == ["l0", "l1 ... l9998", "l9999"]
    assert plan.nodes[1].details == ("4,999 x [Affine, LIF]", "9,998 nodes")
    assert plan.notes == ["10,000 nodes: runs of repeated blocks collapsed"]
    small = drawing_plan(deep_chain(50), max_nodes=1000)
    assert len(small.nodes) == 50 and small.notes == []


def test_unrepeated_big_graph_is_cut_after_max_nodes():
    nodes = {"input": ir.Input(input_type={"input": np.array([4])})}
    edges, prev = [], "input"
    for i in range(2000):  # every node also fed by the input: no bottleneck, no chain
        nodes[f"s{i}"] = ir.Skip(skip_type="residual")
        edges += [(prev, f"s{i}")] + ([("input", f"s{i}")] if i else [])
        prev = f"s{i}"
    nodes["output"] = ir.Output()
    plan = drawing_plan(ir.Graph(nodes, [*edges, (prev, "output")]), max_nodes=50)
    assert len(plan.nodes) == 50 and plan.nodes[-1].name == "1,953 more nodes"
    assert plan.notes[-1].startswith("only the first 50 nodes are drawn")


def test_max_nodes_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        drawing_plan(recurrent_graph(), max_nodes=0)


def test_collapse_repeats_takes_a_unit_repeated_twice_and_keeps_the_rest():
    plan = collapse_repeats(drawing_plan(residual_stack(2)))
    assert [n.name for n in plan.nodes] == ["input", "fc0 ... skip1", "output"]
    assert plan.nodes[1].details == ("2 x [Affine, LIF, Skip]", "6 nodes")
    assert [(e.src, e.dst, e.kind) for e in plan.edges] == [("n0", "n1", "plain"), ("n1", "n7", "plain")]
    distinct = collapse_repeats(drawing_plan(hybrid_graph()))
    assert len(distinct.nodes) == len(drawing_plan(hybrid_graph()).nodes)  # nothing repeats, nested kept
