"""convert.neurons: snn.Leaky -> LIF with snnTorch semantics, refused snnTorch neurons, statefulness."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from t1c import ir
from t1c.bridge import ExportError, LIFModule, T1CExporter, ir_to_torch, to_ir
from t1c.bridge.convert.neurons import refused_neuron


def test_leaky_maps_to_lif_with_snntorch_fields():
    model = nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=0.75, threshold=0.5, init_hidden=True))
    lif = to_ir(model, torch.rand(2, 3)).nodes["1"]
    assert isinstance(lif, ir.LIF) and lif.shape == (4,)
    np.testing.assert_allclose(lif.tau, 4.0)
    np.testing.assert_array_equal(lif.r, lif.tau)
    np.testing.assert_array_equal(lif.v_leak, 0.0)
    np.testing.assert_array_equal(lif.v_threshold, 0.5)
    np.testing.assert_array_equal(lif.beta, np.float32(0.75))
    assert (lif.reset_mechanism, lif.reset_delay, lif.strict_threshold) == ("subtract", True, True)


@pytest.mark.parametrize("mechanism", ["zero", "none"])
def test_leaky_reset_mechanism_and_delay_are_carried(mechanism):
    model = nn.Sequential(snn.Leaky(beta=0.5, reset_mechanism=mechanism, reset_delay=False, init_hidden=True))
    lif = to_ir(model, torch.rand(2, 3)).nodes["0"]
    assert (lif.reset_mechanism, lif.reset_delay) == (mechanism, False)


def test_leaky_beta_one_is_infinite_tau():
    lif = to_ir(nn.Sequential(snn.Leaky(beta=1.0, init_hidden=True)), torch.rand(2, 3)).nodes["0"]
    assert np.isposinf(lif.tau).all() and np.isposinf(lif.r).all()
    np.testing.assert_array_equal(lif.beta, 1.0)


def test_leaky_parameters_expand_to_conv_neuron_shape():
    beta = torch.rand(4, 1, 1)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), snn.Leaky(beta=beta, threshold=torch.rand(4, 1, 1), init_hidden=True)
    )
    lif = to_ir(model, torch.rand(1, 1, 6, 5)).nodes["1"]
    assert lif.shape == (4, 4, 3) and lif.beta.shape == (4, 4, 3)
    np.testing.assert_array_equal(lif.beta[:, 2, 1], beta.flatten().numpy())


def test_leaky_parameters_that_do_not_broadcast_are_refused():
    # A beta with a batch dimension runs in torch but is not a per-neuron parameter.
    model = nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=torch.rand(2, 4), init_hidden=True))
    with pytest.raises(ExportError, match=r"`1` \(Leaky\): beta of shape \[2, 4\]"):
        T1CExporter().export(model, torch.rand(2, 3))


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"inhibition": True}, "inhibition"),
        ({"graded_spikes_factor": 2.0}, "graded_spikes_factor"),
        ({"learn_graded_spikes_factor": True}, "learn_graded_spikes_factor"),
        ({"state_quant": lambda mem: mem}, "state_quant"),
    ],
)
def test_leaky_features_without_ir_equivalent_are_refused(kwargs, what):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # snnTorch warns that inhibition is unstable
        model = nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=0.5, init_hidden=True, **kwargs))
    with pytest.raises(ExportError, match=rf"`1` \(Leaky\).*{what}.*custom_map"):
        to_ir(model, torch.rand(2, 3))


def test_refused_leaky_exports_with_custom_map():
    model = nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=0.5, graded_spikes_factor=2.0, init_hidden=True))

    def plain_lif(module, ctx):
        shape = ctx.output_shape
        return ir.LIF(
            tau=np.full(shape, 2.0), r=np.full(shape, 2.0), v_leak=np.zeros(shape), v_threshold=np.ones(shape)
        )

    graph = to_ir(model, torch.rand(2, 3), custom_map={snn.Leaky: plain_lif})
    assert graph.nodes["1"].beta is None


def test_rleakys_recurrent_linear_is_a_back_edge_never_a_chained_layer():
    # The seed exported [Affine, Affine('1.recurrent')]: the neuron gone, its feedback chained.
    model = nn.Sequential(nn.Linear(8, 4), snn.RLeaky(beta=0.9, linear_features=4, init_hidden=True))
    graph = to_ir(model, torch.rand(1, 8))
    assert [type(n).__name__ for n in graph.nodes.values()] == [
        "Input",
        "Affine",
        "Affine",
        "CubaLIF",
        "Output",
    ]
    assert graph.edges == [
        ("input", "0"),
        ("0", "1"),
        ("1.recurrent", "1"),
        ("1", "1.recurrent"),
        ("1", "output"),
    ]
    assert graph.allow_cycles and graph.cyclic

    def as_lif(module, ctx):
        n = ctx.output_shape[0]
        return ir.LIF(tau=np.full(n, 10.0), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n))

    graph = to_ir(model, torch.rand(1, 8), custom_map={snn.RLeaky: as_lif})
    assert list(graph.nodes) == ["input", "0", "1", "output"]  # no '1.recurrent' layer


@pytest.mark.parametrize(
    ("make", "name", "why"),
    [
        (
            lambda: snn.Synaptic(alpha=0.9, beta=0.8, inhibition=True, init_hidden=True),
            "Synaptic",
            "inhibition",
        ),
        (
            lambda: snn.Alpha(alpha=0.9, beta=0.8, state_quant=lambda m: m, init_hidden=True),
            "Alpha",
            "state_quant",
        ),
        (lambda: snn.Lapicque(R=3.0, C=5.0, init_hidden=True), "Lapicque", "not a power of two"),
        (
            lambda: snn.RSynaptic(
                alpha=0.9, beta=0.8, linear_features=4, init_hidden=True, state_quant=lambda m: m
            ),
            "RSynaptic",
            "state_quant",
        ),
        (lambda: snn.DeltaLeaky(beta=0.9, init_hidden=True), "DeltaLeaky", "change of the membrane"),
    ],
)
def test_snntorch_neurons_without_an_exact_form_are_refused_by_name(make, name, why):
    model = nn.Sequential(nn.Linear(8, 4), make())
    with pytest.raises(
        ExportError, match=rf"^cannot export `1` \({name}\): .*{why}.*custom_map=\{{{name}: fn\}}"
    ):
        to_ir(model, torch.rand(2, 8))


def test_a_refused_neuron_exports_with_a_one_argument_custom_converter():
    model = nn.Sequential(nn.Linear(8, 4), snn.Synaptic(alpha=0.9, beta=0.8, init_hidden=True))

    def as_lif(module):
        return ir.LIF(tau=np.full(4, 10.0), r=np.full(4, 10.0), v_leak=np.zeros(4), v_threshold=np.ones(4))

    graph = to_ir(model, torch.rand(2, 8), custom_map={snn.Synaptic: as_lif})
    assert [graph.nodes[n].TYPE for n in graph.topological_order()] == ["Input", "Affine", "LIF", "Output"]


def test_leaky_whose_spike_function_is_not_a_step_is_refused():
    model = nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=0.5, spike_grad=torch.sigmoid, init_hidden=True))
    with pytest.raises(ExportError, match=r"`1` \(Leaky\): a spike_grad whose forward is not the step x > 0"):
        to_ir(model, torch.rand(2, 3))
    surrogate = snn.surrogate.fast_sigmoid(slope=10)
    to_ir(
        nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=0.5, spike_grad=surrogate, init_hidden=True)),
        torch.rand(2, 3),
    )


def test_refused_neuron_names_snntorch_modules_only():
    assert "LSTM gates" in refused_neuron(snn.SLSTM(2, 2))
    assert refused_neuron(nn.Linear(2, 2)) is None


def test_statefulness_and_the_snntorch_table():
    from t1c.bridge.convert.neurons import convert_leaky, is_stateful, snntorch_converters

    lif = LIFModule(tau=[2.0], r=[2.0], v_leak=[0.0], v_threshold=[1.0])
    assert is_stateful(lif) and is_stateful(snn.Leaky(beta=0.5)) and not is_stateful(nn.Linear(2, 2))
    assert snntorch_converters() == {snn.Leaky: convert_leaky}


@pytest.mark.parametrize("threshold", [-1.0, -0.3, 0.0])
@pytest.mark.parametrize("mechanism", ["subtract", "zero", "none"])
@pytest.mark.parametrize("delay", [True, False])
def test_leaky_with_a_threshold_of_zero_or_below_exports_exactly(threshold, mechanism, delay):
    # docs/lif_extensions.md: such thresholds are legitimate (NIR files carry them) and exact.
    torch.manual_seed(0)
    options = dict(beta=0.8, threshold=threshold, reset_mechanism=mechanism, reset_delay=delay)
    fc = nn.Linear(5, 4)
    xs = torch.randn(12, 3, 5)
    net = ir_to_torch(to_ir(nn.Sequential(fc, snn.Leaky(**options, init_hidden=True)), xs[0]))
    leaky = snn.Leaky(**options)
    mem, spikes, mems = leaky.init_leaky(), [], []
    state, stepped = None, []
    with torch.no_grad():
        for x in xs:
            s, mem = leaky(fc(x), mem)
            spikes.append(s)
            mems.append(mem)
            y, state = net(x, state, return_state=True)
            stepped.append(y)
        ys, last = net.run_sequence(xs)
    assert torch.equal(torch.stack(stepped), torch.stack(spikes))
    assert torch.equal(ys, torch.stack(spikes))
    assert torch.equal(last["1"], mems[-1])
    assert 0 < int(ys.sum()) and (threshold < 0 or int(ys.sum()) < ys.numel())
