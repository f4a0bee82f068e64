"""t1c.nir.maps: the mapping table's refusal rows, and node_map entries winning over it."""

from __future__ import annotations

import numpy as np
import pytest

from t1c import ir

nir = pytest.importorskip("nir")

from nir_reference import DT, assert_refused, chain_nir, t1c_chain  # noqa: E402

from t1c.nir import NIRConversionError, default_import_map, default_nir_export_map, from_nir, to_nir  # noqa: E402


def test_node_map_overrides_win():
    g = chain_nir(nir.Delay(delay=np.full(4, 2e-3)))
    with pytest.raises(NIRConversionError, match="no delay line"):
        from_nir(g, dt=DT)
    graph = from_nir(g, dt=DT, node_map={nir.Delay: lambda name, node, ctx: ir.Skip(skip_type="passthrough")})
    assert graph.nodes["delay"].skip_type == "passthrough"
    pool = t1c_chain(ir.MaxPool2d(kernel_size=2), shape=(2, 4, 4))
    mine = {
        ir.MaxPool2d: lambda name, node, ctx: [
            (
                name,
                nir.AvgPool2d(
                    kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
                ),
            )
        ]
    }
    assert isinstance(to_nir(pool, dt=DT, node_map=mine).nodes["maxpool2d_1"], nir.AvgPool2d)


# -- refusal rows -----------------------------------------------------------------------------
NIR_REFUSALS = {
    "LI": (
        lambda: chain_nir(nir.LI(tau=np.ones(4), r=np.ones(4), v_leak=np.zeros(4))),
        "outputs its membrane",
    ),
    "I": (lambda: chain_nir(nir.I(r=np.ones(4))), "outputs its membrane"),
    "CubaLI": (
        lambda: chain_nir(
            nir.CubaLI(tau_syn=np.ones(4), tau_mem=np.ones(4), r=np.ones(4), v_leak=np.zeros(4))
        ),
        "outputs its membrane",
    ),
    "Conv1d": (
        lambda: chain_nir(
            nir.Conv1d(
                input_shape=8,
                weight=np.ones((2, 2, 3)),
                stride=1,
                padding=0,
                dilation=1,
                groups=1,
                bias=np.zeros(2),
            ),
            shape=(2, 8),
        ),
        "no 1-D convolution",
    ),
}


@pytest.mark.parametrize("case", sorted(NIR_REFUSALS))
def test_from_nir_refuses_with_node_and_reason(case):
    build, reason = NIR_REFUSALS[case]
    assert_refused(from_nir, build(), reason)


T1C_REFUSALS = {
    "maxpool": (lambda: t1c_chain(ir.MaxPool2d(kernel_size=2), shape=(2, 4, 4)), "no max pooling"),
    "upsample": (lambda: t1c_chain(ir.Upsample(scale_factor=2), shape=(2, 4, 4)), "no upsampling"),
    "alpha": (
        lambda: t1c_chain(
            ir.AlphaLIF(
                alpha=np.full(4, 0.9), beta=np.full(4, 0.8), tau=np.full(4, 1.9), v_threshold=np.ones(4)
            )
        ),
        "AlphaLIF: NIR has no alpha neuron.*wipes both synaptic currents",
    ),
}


@pytest.mark.parametrize("case", sorted(T1C_REFUSALS))
def test_to_nir_refuses_with_node_and_reason(case):
    build, reason = T1C_REFUSALS[case]
    assert_refused(to_nir, build(), reason)


def test_import_map_has_a_row_for_every_nir_node_class():
    """Every node class of nir 1.0 converts or is refused with a reason (NIRGraph is inlined)."""
    classes = {c for c in vars(nir).values() if isinstance(c, type) and issubclass(c, nir.NIRNode)}
    missing = classes - {nir.NIRNode, nir.NIRGraph} - set(default_import_map())
    assert not missing, sorted(c.__name__ for c in missing)


def test_export_map_rows_are_the_documented_spiking_primitives():
    """docs/nir.md's T1C-IR -> NIR table: these convert or are refused; hybrid types have no row."""
    documented = {ir.Input, ir.Output, ir.Affine, ir.SpikingAffine, ir.Conv2d, ir.SepConv2d, ir.Flatten}
    documented |= {ir.AvgPool2d, ir.MaxPool2d, ir.Upsample, ir.Skip, ir.LIF, ir.CubaLIF, ir.AlphaLIF}
    assert set(default_nir_export_map()) == documented
