"""t1c.nir.importer: from_nir reads graphs and files, and checks NIR's declared shapes against T1C-IR's."""

from __future__ import annotations

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from nir_reference import DT, assert_refused, bad_conv, chain_nir  # noqa: E402

from t1c.nir import NIRConversionError, from_nir, read_nir  # noqa: E402

# -- refusals ---------------------------------------------------------------------------------
SHAPE_REFUSALS = {
    "declared_output_shape": (
        lambda: nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type=np.array([4])),
                "fc": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
                "output": nir.Output(output_type=np.array([5])),
            },
            edges=[("input", "fc"), ("fc", "output")],
            type_check=False,
        ),
        "NIR declares output shape",
    ),
    "conv_input_shape": (
        lambda: chain_nir(bad_conv(weight=np.ones((2, 2, 3, 3)), input_shape=(5, 5)), shape=(2, 6, 6)),
        r"NIR declares output shape \[2, 5, 5\]",
    ),
    "conv_input_shape_same_output": (  # (5 + 2 - 3) // 2 + 1 == (6 + 2 - 3) // 2 + 1
        lambda: chain_nir(
            bad_conv(weight=np.ones((2, 2, 3, 3)), input_shape=(5, 5), stride=2, padding=1), shape=(2, 6, 6)
        ),
        r"input_shape \[5, 5\] but it receives \[6, 6\]",
    ),
}


@pytest.mark.parametrize("case", sorted(SHAPE_REFUSALS))
def test_from_nir_refuses_with_node_and_reason(case):
    build, reason = SHAPE_REFUSALS[case]
    assert_refused(from_nir, build(), reason)


def test_read_nir_takes_graphs_and_files_and_names_bad_ones(tmp_path):
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([4])),
        nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
        nir.Output(output_type=np.array([3])),
    )
    graph, file = read_nir(g)
    assert graph is g and file is None
    path = tmp_path / "model.nir"
    nir.write(path, g)
    graph, file = read_nir(path)
    assert file == str(path) and set(graph.nodes) == set(g.nodes)
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not an HDF5 file")
    with pytest.raises(NIRConversionError, match="is not a readable NIR graph") as info:
        read_nir(bad)
    assert info.value.file == str(bad)
    with pytest.raises(FileNotFoundError, match="no such .nir file"):
        read_nir(tmp_path / "missing.nir")
    with pytest.raises(TypeError, match=r"takes a nir.NIRGraph or a .nir path, got int"):
        from_nir(42, dt=DT)
