"""t1c.nir.exporter: to_nir of whole graphs, and back with from_nir bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from t1c import ir

nir = pytest.importorskip("nir")

from nir_reference import DT, STEPS, assert_same_nir, every_imported_type, run_t1c  # noqa: E402

from t1c.nir import NIRConversionError, from_nir, to_nir  # noqa: E402


@pytest.mark.parametrize("name", ["mlp_snn", "resnet_block", "spiking_affine"])
def test_round_trip_plain_lif_fixtures(name, fixtures_dir, tmp_path):
    source = ir.read(fixtures_dir / f"{name}.t1c")
    path = tmp_path / f"{name}.nir"
    nir.write(path, to_nir(fixtures_dir / f"{name}.t1c", dt=DT))
    back = from_nir(path, dt=DT)
    assert ir.topology_diff(source, back) == []
    for node_name, node in source.nodes.items():  # field for field, so outputs are bit-identical
        got = back.nodes[node_name].to_fields()
        for field, value in node.to_fields().items():
            np.testing.assert_array_equal(got[field], value, err_msg=f"{node_name}.{field}")
    xs = (np.random.default_rng(0).random((STEPS, 4, *source.nodes["input"].shape)) < 0.5).astype(np.float32)
    np.testing.assert_array_equal(run_t1c(back, xs), run_t1c(source, xs))
    fixture = np.load(fixtures_dir / f"{name}.npz")  # and still what the toolchain computed
    np.testing.assert_allclose(run_t1c(back, fixture["x"]), fixture["y"], rtol=0, atol=1e-5)


def test_conv_fixture_refused_for_its_maxpool(fixtures_dir):
    with pytest.raises(NIRConversionError, match="node 'pool1': MaxPool2d"):
        to_nir(fixtures_dir / "conv_snn.t1c", dt=DT)


def test_nir_round_trip_restores_read_fields_only_while_they_still_hold(tmp_path):
    """from_nir keeps what NIR said (Linear, Delay, IF's r and threshold, time constants) for to_nir;
    a field changed on the T1C side (fine-tuned) is written from T1C's value instead."""
    source = every_imported_type(n_taus=512)
    nir.write(tmp_path / "model.nir", source)
    written = nir.read(tmp_path / "model.nir")
    graph = from_nir(tmp_path / "model.nir", dt=DT)
    assert_same_nir(to_nir(graph, dt=DT), written)
    graph.nodes["lif"].tau = graph.nodes["lif"].tau * np.float32(1.5)
    graph.nodes["lin"].bias = np.full(6, 0.5, dtype=np.float32)
    graph.nodes["if1"].v_threshold = graph.nodes["if1"].v_threshold * np.float32(2)
    back = to_nir(graph, dt=DT)
    np.testing.assert_array_equal(back.nodes["lif"].tau, graph.nodes["lif"].tau.astype(np.float64) * DT)
    assert isinstance(back.nodes["lin"], nir.Affine) and back.nodes["lin"].bias.tolist() == [0.5] * 6
    np.testing.assert_array_equal(back.nodes["if1"].r, np.full((4, 8, 8), 1 / DT))
    assert "t1c_nir_fields" not in back.nodes["lif"].metadata
