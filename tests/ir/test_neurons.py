"""t1c.ir.neurons: CubaLIF and AlphaLIF validation, shape rules and files; unknown types; seed files unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from t1c import ir

from .factories import FACTORIES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
N = 4
PLAIN = dict(
    tau_syn=np.full(N, 2.0),
    tau_mem=np.full(N, 10.0),
    r=np.full(N, 10.0),
    v_leak=np.zeros(N),
    v_threshold=np.ones(N),
    w_in=np.full(N, 2.0),
)
EXACT = dict(alpha=np.full(N, 0.5), beta=np.full(N, 0.9))


def cuba(**changes) -> ir.CubaLIF:
    return ir.CubaLIF(**{**PLAIN, **changes})


def alpha_lif(**changes) -> ir.AlphaLIF:
    fields = dict(alpha=np.full(N, 0.9), beta=np.full(N, 0.8), tau=np.full(N, 1.89), v_threshold=np.ones(N))
    return ir.AlphaLIF(**{**fields, **changes})


# -- validation: every refusal names its field ----------------------------------------------
REFUSALS = {
    "tau_mem_shape": (lambda: cuba(tau_mem=np.ones(N + 1)), "tau_mem", "but tau_syn has [4]"),
    "r_shape": (lambda: cuba(r=np.ones((N, 1))), "r", "has shape [4, 1]"),
    "v_leak_shape": (lambda: cuba(v_leak=np.zeros(2)), "v_leak", "has shape [2]"),
    "v_threshold_shape": (lambda: cuba(v_threshold=np.ones(1)), "v_threshold", "has shape [1]"),
    "w_in_shape": (lambda: cuba(w_in=np.ones(3)), "w_in", "has shape [3]"),
    "alpha_shape": (lambda: cuba(alpha=np.ones(2), beta=EXACT["beta"]), "alpha", "has shape [2]"),
    "beta_shape": (lambda: cuba(beta=np.ones(5)), "beta", "has shape [5]"),
    "input_gain_shape": (lambda: cuba(**EXACT, input_gain=np.ones(1)), "input_gain", "has shape [1]"),
    "w_rec_shape": (lambda: cuba(w_rec=np.ones((2, 2))), "w_rec", "has shape [2, 2]"),
    "tau_syn_zero": (lambda: cuba(tau_syn=np.zeros(N)), "tau_syn", "must be positive"),
    "tau_mem_negative": (lambda: cuba(tau_mem=np.full(N, -1.0)), "tau_mem", "must be positive"),
    "tau_syn_missing": (lambda: cuba(tau_syn=None), "tau_syn", "is required"),
    "w_in_missing": (lambda: cuba(w_in=None), "w_in", "is required"),
    "v_threshold_nan": (lambda: cuba(v_threshold=np.full(N, np.nan)), "v_threshold", "NaN"),
    "v_leak_inf": (lambda: cuba(v_leak=np.full(N, np.inf)), "v_leak", "inf"),
    "w_rec_nan": (lambda: cuba(w_rec=np.full(N, np.nan)), "w_rec", "NaN"),
    "alpha_above_one": (lambda: cuba(alpha=np.full(N, 1.5), beta=EXACT["beta"]), "alpha", "got 1.5"),
    "beta_negative": (lambda: cuba(beta=np.full(N, -0.1)), "beta", "must be in [0, 1]"),
    "tau_syn_inf_without_alpha": (lambda: cuba(tau_syn=np.full(N, np.inf)), "tau_syn", "alpha is not 1"),
    "w_in_inf_alpha_below_one": (
        lambda: cuba(**EXACT, w_in=np.full(N, np.inf)),
        "w_in",
        "+inf where alpha is not 1",
    ),
    "tau_mem_inf_beta_below_one": (
        lambda: cuba(**EXACT, tau_mem=np.full(N, np.inf)),
        "tau_mem",
        "+inf where beta is not 1",
    ),
    "r_inf_without_beta": (lambda: cuba(r=np.full(N, np.inf)), "r", "beta is not 1"),
    "alpha_without_beta": (lambda: cuba(alpha=EXACT["alpha"]), "alpha", "needs beta too"),
    "input_gain_without_beta": (lambda: cuba(input_gain=np.ones(N)), "input_gain", "needs beta too"),
    "reset_mechanism": (lambda: cuba(reset_mechanism="hard"), "reset_mechanism", "must be one of"),
    "reset_delay": (lambda: cuba(reset_delay=2), "reset_delay", "must be a boolean"),
    "tau_syn_strings": (lambda: cuba(tau_syn=np.array(["a"] * N)), "tau_syn", "must hold numbers"),
    "w_rec_int_without_w_rec": (
        lambda: cuba(w_rec_int=np.ones(N, np.int64), w_rec_scale=0.5),
        "w_rec_int",
        "needs w_rec",
    ),
    "w_rec_scale_without_int": (
        lambda: cuba(w_rec=np.ones(N), w_rec_scale=0.5),
        "w_rec_int",
        "needs w_rec_int",
    ),
    "w_rec_int_shape": (
        lambda: cuba(w_rec=np.ones(N), w_rec_int=np.ones(2, np.int64), w_rec_scale=0.5),
        "w_rec_int",
        "has shape [2] but w_rec has [4]",
    ),
    "w_rec_scale_missing": (
        lambda: cuba(w_rec=np.ones(N), w_rec_int=np.ones(N, np.int64)),
        "w_rec_scale",
        "must be a positive number",
    ),
    "w_rec_scale_zero": (
        lambda: cuba(w_rec=np.ones(N), w_rec_int=np.ones(N, np.int64), w_rec_scale=0.0),
        "w_rec_scale",
        "must be a positive number",
    ),
    "w_rec_int_floats": (
        lambda: cuba(w_rec=np.ones(N), w_rec_int=np.full(N, 0.5), w_rec_scale=1.0),
        "w_rec_int",
        "",
    ),
    "alpha_lif_alpha_missing": (lambda: alpha_lif(alpha=None), "alpha", "is required"),
    "alpha_lif_beta_above_one": (lambda: alpha_lif(beta=np.full(N, 1.25)), "beta", "got 1.25"),
    "alpha_lif_beta_shape": (lambda: alpha_lif(beta=np.full(2, 0.5)), "beta", "but tau has [4]"),
    "alpha_lif_threshold_shape": (lambda: alpha_lif(v_threshold=np.ones(5)), "v_threshold", "has shape [5]"),
    "alpha_lif_tau_nan": (lambda: alpha_lif(tau=np.full(N, np.nan)), "tau", "NaN"),
    "alpha_lif_tau_inf": (lambda: alpha_lif(tau=np.full(N, np.inf)), "tau", "inf"),
    "alpha_lif_reset": (lambda: alpha_lif(reset_mechanism="soft"), "reset_mechanism", "must be one of"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_field(case: str) -> None:
    make, field, words = REFUSALS[case]
    with pytest.raises(ir.T1CFormatError) as info:
        make()
    assert info.value.field == field
    assert f"field '{field}'" in str(info.value) and words in str(info.value)


def test_valid_forms_are_accepted_and_stored_as_float32() -> None:
    plain = cuba()
    assert plain.shape == (N,) and all(getattr(plain, k).dtype == np.float32 for k in PLAIN)
    ones = np.ones(N)
    exact = cuba(  # decays of 1 are stored as +inf time constants (and w_in = tau_syn * gain)
        tau_syn=np.full(N, np.inf),
        tau_mem=np.full(N, np.inf),
        r=np.full(N, np.inf),
        w_in=np.full(N, np.inf),
        alpha=ones,
        beta=ones,
        input_gain=ones * 0.5,
        w_rec=np.full(N, -0.25),
        reset_mechanism=b"subtract",
        reset_delay=np.bool_(True),
    )
    assert exact.reset_mechanism == "subtract" and exact.reset_delay is True
    assert exact.w_rec.dtype == np.float32 and exact.input_gain.dtype == np.float32
    no_current = cuba(beta=EXACT["beta"], input_gain=ones)  # RLeaky / Lapicque: no alpha
    assert no_current.alpha is None


def test_shape_rule_takes_inputs_of_the_neuron_shape() -> None:
    node = cuba()
    assert node.output_shape([(N,), (N,)]) == (N,)
    with pytest.raises(ir.T1CFormatError, match="field 'tau_syn'.*receives \\[5\\]"):
        node.output_shape([(N + 1,)])
    with pytest.raises(ir.T1CFormatError, match="different shapes"):
        node.output_shape([(N,), (N + 1,)])


def test_alpha_lif_shape_rule() -> None:
    node = alpha_lif(reset_mechanism="subtract")
    assert node.shape == (N,) and node.output_shape([(N,), (N,)]) == (N,)
    with pytest.raises(ir.T1CFormatError, match="field 'tau'.*receives \\[3\\]"):
        node.output_shape([(3,)])


def test_param_shapes_are_the_required_fields() -> None:
    node = FACTORIES["cuba_lif_snntorch"]()
    assert set(node.param_shapes()) == set(PLAIN)


# -- files ----------------------------------------------------------------------------------
def two_input_graph(node: ir.CubaLIF) -> ir.Graph:
    """Input -> a -> neuron <- b <- Input: the neuron's inputs in edge order (a, then b)."""
    rng = np.random.default_rng(0)
    nodes = {
        "input": ir.Input(input_type={"input": np.array([3])}),
        "b": ir.Affine(weight=rng.standard_normal((N, 3)), bias=np.zeros(N)),
        "a": ir.Affine(weight=rng.standard_normal((N, 3)), bias=np.ones(N)),
        "neuron": node,
        "output": ir.Output(),
    }
    edges = [("input", "b"), ("input", "a"), ("a", "neuron"), ("b", "neuron"), ("neuron", "output")]
    return ir.Graph(nodes, edges)


@pytest.mark.parametrize("kind", ["cuba_lif", "cuba_lif_snntorch"])
def test_round_trip_keeps_fields_and_input_order(kind: str, tmp_path: Path) -> None:
    shape = (N,)
    made = FACTORIES[kind]()
    node = ir.CubaLIF(
        **{k: np.resize(v, shape) if isinstance(v, np.ndarray) else v for k, v in made.to_fields().items()}
    )
    path = tmp_path / "cuba.t1c"
    ir.write(path, two_input_graph(node))
    back = ir.read(path)
    assert back.edges == two_input_graph(node).edges and list(back.nodes) == [
        "input",
        "b",
        "a",
        "neuron",
        "output",
    ]
    read_node = back.nodes["neuron"]
    assert type(read_node) is ir.CubaLIF and read_node.to_fields().keys() == node.to_fields().keys()
    for name, value in node.to_fields().items():
        np.testing.assert_array_equal(getattr(read_node, name), value, err_msg=name)
    with h5py.File(path, "r") as f:
        group = f["graph/nodes/neuron"]
        assert group["type"][()].decode() == "CubaLIF"
        assert set(group) == {"type", *node.to_fields()}


def test_plain_node_writes_only_the_nir_fields(tmp_path: Path) -> None:
    path = tmp_path / "plain.t1c"
    ir.write(path, two_input_graph(cuba()))
    with h5py.File(path, "r") as f:
        assert set(f["graph/nodes/neuron"]) == {"type", *PLAIN}


def test_recurrent_integers_round_trip_beside_the_float_w_rec(tmp_path: Path) -> None:
    w_rec = np.array([0.5, -0.25, 0.0, 0.125], np.float32)
    node = cuba(**EXACT, w_rec=w_rec, w_rec_int=np.array([4, -2, 0, 1]), w_rec_scale=0.125)
    path = tmp_path / "ints.t1c"
    ir.write(path, two_input_graph(node))
    back = ir.read(path).nodes["neuron"]
    np.testing.assert_array_equal(back.w_rec_int, [4, -2, 0, 1])
    assert np.issubdtype(back.w_rec_int.dtype, np.integer) and back.w_rec_scale == 0.125
    np.testing.assert_array_equal(back.w_rec, w_rec)  # the floats stay, for readers without the extension
    with h5py.File(path, "r") as f:
        assert {"w_rec_int", "w_rec_scale"} <= set(f["graph/nodes/neuron"])


# -- thresholds of zero or below: valid, kept exactly (docs/lif_extensions.md) -----------------
def _one_neuron_graph(node: ir.Node) -> ir.Graph:
    return ir.Graph.from_chain(ir.Input(input_type={"input": np.array([N])}), node, ir.Output())


@pytest.mark.parametrize("threshold", [0.0, -1.0])
@pytest.mark.parametrize("kind", ["LIF", "LIF_snntorch", "CubaLIF", "AlphaLIF"])
def test_a_threshold_of_zero_or_below_is_valid_and_read_back_as_written(
    kind, threshold, tmp_path: Path
) -> None:
    """NIR's LIF and Threshold carry such thresholds (t1c.nir imports them as LIFs), and
    snnTorch's Leaky runs them exactly; the shared checks refuse none of the neuron types."""
    thr = np.full(N, threshold)
    ones = np.ones(N)
    made = {
        "LIF": lambda: ir.LIF(tau=ones * 2, r=ones, v_leak=ones * 0, v_threshold=thr),
        "LIF_snntorch": lambda: ir.LIF(
            tau=ones * 2, r=ones * 2, v_leak=ones * 0, v_threshold=thr, beta=ones / 2, strict_threshold=True
        ),
        "CubaLIF": lambda: cuba(v_threshold=thr),
        "AlphaLIF": lambda: alpha_lif(v_threshold=thr),
    }
    path = tmp_path / "threshold.t1c"
    ir.write(path, _one_neuron_graph(made[kind]()))
    (node,) = [n for n in ir.read(path).nodes.values() if n.TYPE == kind.split("_")[0]]
    np.testing.assert_array_equal(node.v_threshold, np.float32(threshold))


# -- a reader that does not know the type -----------------------------------------------------
def test_a_reader_without_cubalif_refuses_it_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What this project's older readers do: the registry lacks the type, the read fails."""
    path = tmp_path / "new.t1c"
    ir.write(path, two_input_graph(cuba(**EXACT)))
    monkeypatch.delitem(ir.REGISTRY, "CubaLIF")
    with pytest.raises(ir.T1CFormatError) as info:
        ir.read(path)
    assert (info.value.node, info.value.field) == ("neuron", "type")
    assert "unknown node type 'CubaLIF'" in str(info.value) and str(path) in str(info.value)


def test_an_unknown_neuron_type_is_refused_by_name(tmp_path: Path) -> None:
    """A file from a newer writer (a type this reader lacks) fails the same way."""
    path = tmp_path / "newer.t1c"
    ir.write(path, two_input_graph(cuba()))
    with h5py.File(path, "r+") as f:
        del f["graph/nodes/neuron/type"]
        f["graph/nodes/neuron/type"] = "CubaLIF2"
    with pytest.raises(
        ir.T1CFormatError, match="node 'neuron', field 'type': has unknown node type 'CubaLIF2'"
    ):
        ir.read(path)


# -- files with only the seed's primitives keep their bytes -----------------------------------
#: sha256 of each fixture read and written back by the writer before CubaLIF existed (commit
#: 6bb26de, h5py 3.16 / HDF5 2.0.0), and of a graph with the factories' snnTorch LIF (every optional field).
#: Re-recorded when the root attribute t1c_content_checksum replaced t1c_content_sha256 (issue 24):
#: the datasets, their values and their offsets are unchanged; only that attribute (2 bytes longer
#: a name, at the end of the file) and the end-of-file address differ.
SEED_DIGESTS = {
    "conv_snn.t1c": "93469ead9b47f0ce9cbc349e47c48e625c5456a9628b081df8503bca84b9fcb5",
    "mlp_snn.t1c": "76a6a8cbf5681ccdced15bad440a28ab0c66a7de44e73d3663858c51642582b1",
    "resnet_block.t1c": "976311a80adaf65e36036f171c5f5d6a88cc00c06742d19ace61b06059bd0c9e",
    "spiking_affine.t1c": "dd08e0167287726ef8f0c9f57a07d7670e7c62be527a0ab52e3f7d67fef38a35",
    "hybrid/conv_bn2d_prelu_lif.t1c": "6400eaba85c2140befa94f3e124db69e00d158b03bd1f1e6dc63f7e5586cc98a",
    "hybrid/mlp_bn1d_relu_lif.t1c": "ae25d352e5080970cb1aa1cfe6a81a50676bec188b5ff283ce2ee15c8a3edef0",
}
LIF_SNNTORCH_DIGEST = "cdf02320adacbea274a32babf3b60a9c0310c3dafcebf9fb2003784ef3fafdc6"
#: sha256 of a graph with the factories' snnTorch CubaLIF (``w_rec`` without its integers), written
#: by the writer before ``w_rec_int``/``w_rec_scale`` existed (commit 5f6a19d, HDF5 2.0.0).
CUBA_LIF_SNNTORCH_DIGEST = "aff5024465cb2554003ca6712b8f099670bc9ecf0cb48072a50107003a56059e"
same_hdf5 = pytest.mark.skipif(
    h5py.version.hdf5_version != "2.0.0",
    reason="digests recorded with HDF5 2.0.0; other versions lay out bytes their own way",
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@same_hdf5
@pytest.mark.parametrize("name", sorted(SEED_DIGESTS))
def test_seed_files_rewrite_to_the_same_bytes(name: str, tmp_path: Path) -> None:
    out = tmp_path / "rewritten.t1c"
    ir.write(out, ir.read(FIXTURES / name))
    assert _digest(out) == SEED_DIGESTS[name]


@same_hdf5
def test_snntorch_lif_writes_the_same_bytes(tmp_path: Path) -> None:
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([4])}),
        FACTORIES["lif_snntorch"](),
        ir.Output(),
        names=["input", "lif", "output"],
    )
    ir.write(tmp_path / "lif.t1c", graph)
    assert _digest(tmp_path / "lif.t1c") == LIF_SNNTORCH_DIGEST


@same_hdf5
def test_a_cubalif_without_recurrent_integers_writes_the_same_bytes(tmp_path: Path) -> None:
    graph = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([3, 8, 8])}),
        FACTORIES["cuba_lif_snntorch"](),
        ir.Output(),
        names=["input", "neuron", "output"],
    )
    ir.write(tmp_path / "cuba.t1c", graph)
    assert _digest(tmp_path / "cuba.t1c") == CUBA_LIF_SNNTORCH_DIGEST
