"""to_ir / T1CExporter on plain torch and snnTorch models: converters, errors, state, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from t1c import ir
from t1c.bridge import ExportError
from t1c.bridge.exporter import T1CExporter, to_ir


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


def test_identity_becomes_passthrough_skip():
    node = only_node(to_ir(nn.Sequential(nn.Identity()), torch.rand(2, 3)))
    assert isinstance(node, ir.Skip) and node.skip_type == "passthrough"


# -- snnTorch Leaky ----------------------------------------------------------------------------
# -- dropped and folded modules -----------------------------------------------------------------
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


# -- refused snnTorch neurons -----------------------------------------------------------------
# -- converter signatures ---------------------------------------------------------------------
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
