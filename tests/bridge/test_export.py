"""to_ir / T1CExporter on plain torch and snnTorch models: converters, errors, state, shapes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

from t1c import ir
from t1c.bridge import ExportError
from t1c.bridge.convert import export_converters
from t1c.bridge.exporter import T1CExporter, to_ir
from t1c.bridge.importer import ir_to_torch
from t1c.bridge.registry import find_converter


def only_node(graph: ir.Graph) -> ir.Node:
    """The single non-I/O node of a one-layer export."""
    (name,) = [n for n in graph.nodes if n not in ("input", "output")]
    return graph.nodes[name]


# -- synapses ----------------------------------------------------------------------------------
def test_linear_exports_affine_with_exact_weights():
    torch.manual_seed(0)
    fc = nn.Linear(5, 3)
    node = only_node(to_ir(nn.Sequential(fc), torch.rand(2, 5)))
    assert isinstance(node, ir.Affine)
    np.testing.assert_array_equal(node.weight, fc.weight.detach().numpy())
    np.testing.assert_array_equal(node.bias, fc.bias.detach().numpy())


def test_linear_without_bias_exports_zero_bias():
    node = only_node(to_ir(nn.Sequential(nn.Linear(5, 3, bias=False)), torch.rand(2, 5)))
    np.testing.assert_array_equal(node.bias, np.zeros(3, dtype=np.float32))


def test_spiking_flag_gives_spiking_affine_with_hints():
    graph = to_ir(
        nn.Sequential(nn.Linear(5, 3)),
        torch.rand(2, 5),
        spiking=True,
        spike_mode="graded",
        weight_bits=4,
        accumulator_bits=12,
    )
    node = graph.nodes["0"]
    assert isinstance(node, ir.SpikingAffine)
    assert (node.spike_mode, node.weight_bits, node.accumulator_bits) == ("graded", 4, 12)


def test_conv2d_parameters_and_missing_bias():
    conv = nn.Conv2d(4, 6, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, bias=False)
    node = only_node(to_ir(nn.Sequential(conv), torch.rand(1, 4, 9, 11)))
    assert isinstance(node, ir.Conv2d)
    assert node.stride.tolist() == [2, 1] and node.padding.tolist() == [1, 2]
    assert node.dilation.tolist() == [1, 2] and node.groups == 2
    np.testing.assert_array_equal(node.weight, conv.weight.detach().numpy())
    np.testing.assert_array_equal(node.bias, np.zeros(6, dtype=np.float32))


@pytest.mark.parametrize(
    ("padding", "kernel", "dilation", "expected"),
    [
        ("same", 3, 1, [1, 1]),
        ("same", 5, 2, [4, 4]),
        ("valid", 3, 1, [0, 0]),
    ],
)
def test_conv2d_string_padding_becomes_numbers(padding, kernel, dilation, expected):
    conv = nn.Conv2d(2, 2, kernel, padding=padding, dilation=dilation)
    x = torch.rand(1, 2, 12, 12)
    graph = to_ir(nn.Sequential(conv), x)
    assert graph.nodes["0"].padding.tolist() == expected
    assert graph.output_shapes["0"] == tuple(conv(x).shape[1:])


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv2d_asymmetric_same_padding_is_refused():
    with pytest.raises(ExportError, match=r"`0` \(Conv2d\).*padding='same'"):
        to_ir(nn.Sequential(nn.Conv2d(2, 2, 4, padding="same")), torch.rand(1, 2, 8, 8))


def test_conv2d_padding_mode_other_than_zeros_is_refused():
    with pytest.raises(ExportError, match="padding_mode='reflect'"):
        to_ir(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")), torch.rand(1, 2, 8, 8))


# -- shape, pooling, resampling ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("flatten", "expected"),
    [
        (nn.Flatten(), (0, -1)),
        (nn.Flatten(2), (1, -1)),
        (nn.Flatten(1, 2), (0, 1)),
        (nn.Flatten(-2, -1), (1, -1)),
        (nn.Flatten(2, 3), (1, 2)),
    ],
)
def test_flatten_dims_exclude_batch(flatten, expected):
    x = torch.rand(2, 3, 4, 5)
    graph = to_ir(nn.Sequential(flatten), x)
    node = graph.nodes["0"]
    assert (node.start_dim, node.end_dim) == expected
    assert graph.output_shapes["output"] == tuple(flatten(x).shape[1:])


def test_flatten_over_the_batch_is_refused():
    with pytest.raises(ExportError, match="batch"):
        to_ir(nn.Sequential(nn.Flatten(0)), torch.rand(2, 3, 4))


def test_pools_and_upsample_keep_all_parameters():
    model = nn.Sequential(
        nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True),
        nn.AvgPool2d((2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=False, count_include_pad=False),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Upsample(size=(7, 9), mode="bilinear", align_corners=True),
    )
    x = torch.rand(1, 2, 11, 10)
    graph = to_ir(model, x)
    mp, ap, up, us = (graph.nodes[k] for k in "0123")
    assert mp.kernel_size.tolist() == [3, 3] and mp.stride.tolist() == [2, 2] and mp.ceil_mode
    assert ap.kernel_size.tolist() == [2, 3] and ap.stride.tolist() == [1, 2]
    assert ap.padding.tolist() == [1, 1] and not ap.count_include_pad
    assert up.scale_factor == 2 and up.mode == "nearest"
    assert us.size.tolist() == [7, 9] and us.mode == "bilinear" and us.align_corners
    assert graph.output_shapes["output"] == tuple(model(x).shape[1:])


def test_pool_default_stride_is_kernel():
    node = only_node(to_ir(nn.Sequential(nn.MaxPool2d(2)), torch.rand(1, 1, 4, 4)))
    assert node.stride.tolist() == [2, 2]


def test_avgpool_divisor_override_is_refused():
    with pytest.raises(ExportError, match=r"`0` \(AvgPool2d\): divisor_override"):
        to_ir(nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), torch.rand(1, 1, 4, 4))


def test_upsample_fractional_scale_is_refused():
    with pytest.raises(ExportError, match="scale_factor"):
        to_ir(nn.Sequential(nn.Upsample(scale_factor=1.5)), torch.rand(1, 1, 4, 4))


def test_identity_becomes_passthrough_skip():
    node = only_node(to_ir(nn.Sequential(nn.Identity()), torch.rand(2, 3)))
    assert isinstance(node, ir.Skip) and node.skip_type == "passthrough"


# -- snnTorch Leaky ----------------------------------------------------------------------------
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


# -- dropped and folded modules -----------------------------------------------------------------
def test_relu_on_a_value_that_may_be_negative_is_refused():
    # Dropping it (the seed's behaviour, with a warning) exported a different function.
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 2))
    with pytest.raises(ExportError, match=r"`1` \(ReLU\): T1C-IR has no ReLU.*may be negative.*custom_map"):
        to_ir(model, torch.rand(2, 3))


def test_relu_of_spikes_and_dropout_are_dropped_silently():
    model = nn.Sequential(
        nn.Linear(3, 4), snn.Leaky(beta=0.5, init_hidden=True), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 2)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = to_ir(model, torch.rand(2, 3))
    assert graph.edges == [("input", "0"), ("0", "1"), ("1", "4"), ("4", "output")]


def test_relu_can_be_dropped_on_purpose_with_a_one_argument_converter():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    graph = to_ir(model, torch.rand(2, 3), custom_map={nn.ReLU: lambda module: None})
    assert graph.edges == [("input", "0"), ("0", "2"), ("2", "output")]


def test_batchnorm1d_is_folded_into_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5))
    model.train()
    for _ in range(3):  # move the running statistics away from (0, 1)
        model(torch.randn(16, 6) * 3 + 1)
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 2)
        model[1].bias.uniform_(-1, 1)
    graph = to_ir(model, torch.rand(4, 6))
    assert list(graph.nodes) == ["input", "0", "output"]
    node = graph.nodes["0"]
    x = torch.randn(8, 6)
    model.eval()
    folded = x @ torch.from_numpy(node.weight).T + torch.from_numpy(node.bias)
    torch.testing.assert_close(folded, model(x).detach(), rtol=1e-5, atol=1e-5)


def test_batchnorm2d_is_folded_into_conv_without_bias():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, affine=False))
    for _ in range(3):
        model(torch.randn(8, 3, 6, 6) * 2 - 1)
    node = to_ir(model, torch.rand(1, 3, 6, 6)).nodes["0"]
    x = torch.randn(2, 3, 6, 6)
    model.eval()
    folded = F.conv2d(x, torch.from_numpy(node.weight), torch.from_numpy(node.bias), padding=1)
    torch.testing.assert_close(folded, model(x).detach(), rtol=1e-5, atol=1e-5)


def test_batchnorm_that_cannot_be_folded_is_refused():
    with pytest.raises(ExportError, match=r"`1` \(BatchNorm1d\).*follows a Flatten"):
        to_ir(nn.Sequential(nn.Flatten(), nn.BatchNorm1d(6)), torch.rand(2, 2, 3))
    with pytest.raises(ExportError, match=r"`0` \(BatchNorm1d\).*must follow a Linear or Conv2d"):
        to_ir(nn.Sequential(nn.BatchNorm1d(3)), torch.rand(2, 3))
    no_stats = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(ExportError, match="track_running_stats=False"):
        to_ir(no_stats, torch.rand(2, 3))


# -- unsupported modules and custom maps ---------------------------------------------------------
class Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.odd = Doubler()

    def forward(self, x):
        return self.odd(self.fc(x))


@pytest.mark.parametrize(("module", "type_name"), [(nn.LSTM(3, 3), "LSTM"), (nn.GRU(3, 3), "GRU")])
def test_recurrent_torch_modules_fail_naming_path_type_and_fix(module, type_name):
    model = nn.Sequential(nn.Linear(3, 3), module)
    with pytest.raises(ExportError, match=rf"`1` \({type_name}\).*custom_map=\{{{type_name}: fn\}}"):
        to_ir(model, torch.rand(2, 1, 3))


def test_unknown_custom_module_is_named_by_its_qualified_path():
    model = nn.Sequential(Block())
    with pytest.raises(ExportError, match=r"`0\.odd` \(Doubler\).*custom_map"):
        to_ir(model, torch.rand(2, 3))


def test_custom_map_adds_and_overrides_converters():
    def doubler(module, ctx):
        return ir.Affine(weight=2 * np.eye(ctx.input_shape[0]), bias=np.zeros(ctx.input_shape[0]))

    def linear_as_spiking(module, ctx):
        return ir.SpikingAffine(
            weight=module.weight.detach().numpy(), bias=None, weight_bits=3, accumulator_bits=7
        )

    graph = to_ir(
        nn.Sequential(Block()), torch.rand(2, 3), custom_map={Doubler: doubler, nn.Linear: linear_as_spiking}
    )
    assert list(graph.nodes) == ["input", "0.fc", "0.odd", "output"]
    assert isinstance(graph.nodes["0.fc"], ir.SpikingAffine) and graph.nodes["0.fc"].weight_bits == 3
    np.testing.assert_array_equal(graph.nodes["0.odd"].weight, 2 * np.eye(3, dtype=np.float32))


def test_converter_lookup_follows_the_mro():
    class MyLinear(nn.Linear):
        pass

    assert find_converter(MyLinear(2, 2), None, export_converters()) is export_converters()[nn.Linear]


def test_custom_converter_that_computes_the_wrong_shape_fails_with_the_module_path():
    def wrong(module, ctx):
        return ir.Affine(weight=np.zeros((7, 3)), bias=np.zeros(7))

    with pytest.raises(ExportError, match=r"`0`.*computes shape \[7\].*produced \[4\]"):
        to_ir(nn.Sequential(nn.Linear(3, 4)), torch.rand(2, 3), custom_map={nn.Linear: wrong})


def test_custom_converter_returning_a_non_node_is_refused():
    with pytest.raises(ExportError, match=r"`0` \(Linear\).*returned str"):
        to_ir(nn.Sequential(nn.Linear(3, 4)), torch.rand(2, 3), custom_map={nn.Linear: lambda m, c: "x"})


# -- names, shapes, arguments --------------------------------------------------------------------
def test_nested_names_are_qualified_and_unique():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4))
            self.output = nn.Linear(4, 2)  # clashes with the graph's Output node

        def forward(self, x):
            return self.output(self.block(x))

    graph = to_ir(Net(), torch.rand(2, 3))
    assert list(graph.nodes) == ["input", "block.0", "block.1", "output_1", "output"]
    assert graph.edges[-1] == ("output_1", "output")


def test_captured_shapes_exclude_batch():
    exporter = T1CExporter()
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    graph = exporter.export(model, torch.rand(5, 1, 6, 6))
    assert exporter._input_shapes == {"0": (1, 6, 6), "1": (2, 4, 4), "2": (32,)}
    assert exporter._output_shapes == {"0": (2, 4, 4), "1": (32,), "2": (3,)}
    assert graph.nodes["input"].shape == (1, 6, 6) and graph.nodes["output"].shape == (3,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spike_mode": "spiky"},
        {"weight_bits": 0},
        {"weight_bits": 33},
        {"accumulator_bits": 4},
        {"accumulator_bits": 65},
        {"spiking": "yes"},
    ],
)
def test_exporter_arguments_are_validated(kwargs):
    with pytest.raises(ValueError, match="T1CExporter"):
        T1CExporter(**kwargs)


def test_bad_sample_and_failing_forward_are_explained():
    model = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ExportError, match="sample must be a batched tensor"):
        to_ir(model, [1, 2, 3])
    with pytest.raises(ExportError, match="sample forward pass of Sequential failed"):
        to_ir(model, torch.rand(2, 5))
    with pytest.raises(ExportError, match="torch.nn.Module"):
        to_ir("model", torch.rand(2, 3))


# -- the model is left as it was ----------------------------------------------------------------
def test_export_leaves_modes_parameters_and_hidden_state_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(3, 4),
        nn.BatchNorm1d(4),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Dropout(0.2),
        nn.Linear(4, 2),
        snn.Leaky(beta=0.8, init_hidden=True),
    )
    model.train()
    model[5].eval()
    for _ in range(3):
        model(torch.rand(6, 3) * 4)  # leaves membranes of batch 6 and BatchNorm statistics
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    params = [p for p in model.parameters()]
    mems = [model[2].mem.clone(), model[5].mem.clone()]
    modes = [m.training for m in model.modules()]

    to_ir(model, torch.rand(2, 3))

    assert [m.training for m in model.modules()] == modes
    assert [p for p in model.parameters()] == params
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before_state[key], rtol=0, atol=0)
    torch.testing.assert_close(model[2].mem, mems[0], rtol=0, atol=0)
    torch.testing.assert_close(model[5].mem, mems[1], rtol=0, atol=0)


def test_export_restores_the_model_even_when_it_fails():
    model = nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=0.9, init_hidden=True), nn.LSTM(4, 4))
    model.train()
    with pytest.raises(ExportError):
        to_ir(model, torch.rand(2, 1, 3))
    assert all(m.training for m in model.modules())
    assert model[1].mem.shape == (0,)


def test_export_of_a_restored_checkpoint_is_identical(tmp_path):
    def make():
        return nn.Sequential(
            nn.Conv2d(1, 2, 3),
            nn.BatchNorm2d(2),
            snn.Leaky(beta=0.8, init_hidden=True),
            nn.Flatten(),
            nn.Linear(2 * 4 * 4, 3),
            snn.Leaky(beta=0.7, init_hidden=True),
        )

    torch.manual_seed(0)
    model = make()
    model(torch.rand(4, 1, 6, 6))  # BatchNorm statistics differ from a fresh instance
    torch.save(model.state_dict(), tmp_path / "model.ckpt")
    torch.manual_seed(1)
    fresh = make()
    fresh.load_state_dict(torch.load(tmp_path / "model.ckpt"))
    sample = torch.rand(2, 1, 6, 6)
    assert to_ir(fresh, sample).content_hash() == to_ir(model, sample).content_hash()


def test_exported_graph_writes_and_reads_back(tmp_path):
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        snn.Leaky(beta=0.8, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3),
        snn.Leaky(beta=1.0, init_hidden=True),
    )
    graph = to_ir(model, torch.rand(2, 1, 6, 6))
    ir.write(tmp_path / "net.t1c", graph)
    back = ir.read(tmp_path / "net.t1c")
    assert ir.topology_diff(graph, back) == []
    assert back.content_hash() == graph.content_hash()


class ExplicitState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.lif = snn.Leaky(beta=0.5)

    def forward(self, x, mem):
        spk, mem = self.lif(self.fc(x), mem)
        return spk, mem


def test_sample_may_be_the_forward_arguments_or_only_the_input():
    x = torch.rand(2, 3)
    from_tuple = to_ir(ExplicitState(), (x, torch.zeros(2, 4)))
    from_tensor = to_ir(ExplicitState(), x)  # the membrane argument gets None (zero state)
    assert from_tuple.edges == from_tensor.edges == [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    assert from_tuple.nodes["lif"].shape == (4,)


# -- refused snnTorch neurons -----------------------------------------------------------------
def test_rleaky_is_refused_and_its_recurrent_linear_never_becomes_a_layer():
    # The seed exported [Affine, Affine('1.recurrent')]: the neuron gone, its feedback chained.
    model = nn.Sequential(nn.Linear(8, 4), snn.RLeaky(beta=0.9, linear_features=4, init_hidden=True))
    with pytest.raises(
        ExportError, match=r"`1` \(RLeaky\): its recurrent connection.*custom_map=\{RLeaky: fn\}"
    ):
        to_ir(model, torch.rand(1, 8))

    def as_lif(module, ctx):
        n = ctx.output_shape[0]
        return ir.LIF(tau=np.full(n, 10.0), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n))

    graph = to_ir(model, torch.rand(1, 8), custom_map={snn.RLeaky: as_lif})
    assert list(graph.nodes) == ["input", "0", "1", "output"]  # no '1.recurrent' layer


@pytest.mark.parametrize(
    ("make", "name", "why"),
    [
        (lambda: snn.Synaptic(alpha=0.9, beta=0.8, init_hidden=True), "Synaptic", "synaptic current"),
        (lambda: snn.Alpha(alpha=0.9, beta=0.8, init_hidden=True), "Alpha", "synaptic currents"),
        (lambda: snn.Lapicque(beta=0.9, init_hidden=True), "Lapicque", "RC update"),
        (
            lambda: snn.RSynaptic(alpha=0.9, beta=0.8, linear_features=4, init_hidden=True),
            "RSynaptic",
            "recurrent",
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


def test_a_subclass_that_changes_behaviour_does_not_get_its_base_converter():
    class Doubled(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    with pytest.raises(
        ExportError, match=r"`0` \(Doubled\) \(it subclasses Linear but changes its behaviour\)"
    ):
        to_ir(nn.Sequential(Doubled(3, 4)), torch.rand(2, 3))
    graph = to_ir(nn.Sequential(Doubled(3, 4)), torch.rand(2, 3), custom_map={Doubled: lambda m: None})
    assert graph.edges == [("input", "output")]


# -- converter signatures ---------------------------------------------------------------------
def test_one_argument_converter_from_the_guide_works():
    # The seed called fn(module, ctx) always: "takes 1 positional argument but 2 were given".
    def fn(module):
        return ir.SpikingAffine(
            weight=module.weight.detach().numpy(), bias=None, weight_bits=4, accumulator_bits=12
        )

    graph = to_ir(nn.Sequential(nn.Linear(3, 4)), torch.rand(2, 3), custom_map={nn.Linear: fn})
    assert isinstance(graph.nodes["0"], ir.SpikingAffine) and graph.nodes["0"].weight_bits == 4


def test_converter_arity_comes_from_the_signature_not_from_catching_type_errors():
    calls = []

    def two(module, ctx=None):  # binds two arguments: called with the context
        calls.append(ctx)
        return None

    to_ir(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), torch.rand(2, 3), custom_map={nn.Linear: two})
    assert [c.path for c in calls] == ["0", "1"]

    def broken(module):
        raise TypeError("a bug inside the converter")

    with pytest.raises(TypeError, match="a bug inside the converter"):  # not retried with other arguments
        to_ir(nn.Sequential(nn.Linear(3, 4)), torch.rand(2, 3), custom_map={nn.Linear: broken})
    with pytest.raises(ExportError, match=r"converter .* for Linear has the signature \(a, b, c\)"):
        to_ir(nn.Sequential(nn.Linear(3, 4)), torch.rand(2, 3), custom_map={nn.Linear: lambda a, b, c: None})
    with pytest.raises(ExportError, match=r"custom_map\[Linear\] is int, not a function"):
        to_ir(nn.Sequential(nn.Linear(3, 4)), torch.rand(2, 3), custom_map={nn.Linear: 3})


# -- the trace argument -----------------------------------------------------------------------
class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.lif = snn.Leaky(beta=0.9, init_hidden=True)

    def forward(self, x):
        return self.lif(self.fc(x) * 2)


def test_trace_order_is_an_explicit_opt_in_on_every_entry_point():
    from t1c.snntorch import export_to_ir

    x = torch.rand(2, 3)
    for export in (
        lambda **kw: to_ir(Scaled(), x, **kw),
        lambda **kw: T1CExporter(**kw).export(Scaled(), x),
        lambda **kw: export_to_ir(Scaled(), x, **kw),
    ):
        with pytest.raises(ExportError, match=r"`x \* y`.*trace='order'"):
            export()
        with pytest.warns(UserWarning, match="trace='order': chaining its modules in call order"):
            graph = export(trace="order")
        assert graph.edges == [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    with pytest.raises(ValueError, match=r"trace must be one of \['exact', 'order'\]"):
        T1CExporter(trace="fx")


# -- neuron state handed in by forward --------------------------------------------------------
class HandedState(nn.Module):
    """snnTorch's init_hidden=False style, with the membrane handed in three ways."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.fc1, self.lif1 = nn.Linear(8, 12), snn.Leaky(beta=0.9)
        self.fc2, self.lif2 = nn.Linear(12, 3), snn.Leaky(beta=0.8)
        with torch.no_grad():
            self.fc1.weight.mul_(3)
            self.fc2.weight.mul_(3)

    def forward(self, x):
        if self.how == "init_leaky":  # restarts from zero at every call: keeps nothing
            m1, m2 = self.lif1.init_leaky(), self.lif2.init_leaky()
            s, m1 = self.lif1(self.fc1(x), m1)
            s, m2 = self.lif2(self.fc2(s), m2)
        elif self.how == "own":  # its own last membrane: carries its state
            s, _ = self.lif1(self.fc1(x), self.lif1.mem)
            s, _ = self.lif2(self.fc2(s), self.lif2.mem)
        else:  # something else
            s, _ = self.lif1(self.fc1(x), self.lif1.mem * 0.5)
            s, _ = self.lif2(self.fc2(s))
        return s


@pytest.mark.parametrize(("how", "beta"), [("init_leaky", 0.0), ("own", 0.9)])
def test_a_membrane_handed_in_by_forward_is_exported_as_what_it_does(how, beta):
    # init_leaky() inside forward restarts the neuron at every call: the seed exported a LIF
    # that keeps its state, so the file spiked differently from the second step on.
    torch.manual_seed(7)
    model = HandedState(how)
    xs = torch.rand(12, 4, 8)
    graph = to_ir(model, xs[0])
    np.testing.assert_array_equal(graph.nodes["lif1"].beta, np.full(12, beta, dtype=np.float32))
    for m in model.modules():
        if isinstance(m, snn.Leaky):
            m.mem = torch.zeros(0)
    executor, state, outs = ir_to_torch(graph), None, []
    with torch.no_grad():
        expected = torch.stack([model(x) for x in xs])
        for x in xs:
            y, state = executor(x, state, return_state=True)
            outs.append(y)
    assert 0 < float(expected.mean()) < 1
    assert torch.equal(torch.stack(outs), expected)


def test_a_membrane_replaced_by_forward_is_refused():
    with pytest.raises(
        ExportError, match=r"`lif1` \(Leaky\): forward hands it a membrane other than its own"
    ):
        to_ir(HandedState("other"), torch.rand(4, 8))
