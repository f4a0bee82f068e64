"""capture: the units, the sample forward pass (shapes, arguments), the model left as it was,
and the membranes forward hands its neurons."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from t1c.bridge import ExportError, ir_to_torch, to_ir
from t1c.bridge.capture import call_args, capture, find_units


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


# -- the functions themselves -----------------------------------------------------------------
class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.head = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 2))
        self.unused = nn.Linear(2, 2)

    def forward(self, x, mem):
        return self.head(self.bn(self.fc(x)))


def test_find_units_looks_into_containers_and_marks_batchnorm():
    from t1c.bridge.convert import export_converters

    model = Pair()
    units, containers = find_units(model, None, export_converters())
    assert list(units) == ["fc", "bn", "head.0", "head.1", "unused"]
    assert units["bn"].batchnorm and units["bn"].converter is None
    assert units["fc"].converter is export_converters()[nn.Linear]
    assert containers == [model, model.head]


def test_capture_records_shapes_order_and_calls_without_the_batch():
    from t1c.bridge.convert import export_converters

    model = Pair()
    units, _ = find_units(model, None, export_converters())
    args = call_args(model, torch.rand(5, 3))
    assert len(args) == 2 and args[1] is None  # the required `mem` gets None (zero state)
    cap, output = capture(model, units, args)
    assert cap.order == ["fc", "bn", "head.0", "head.1"]  # `unused` never ran
    assert cap.input_shapes["fc"] == (3,) and cap.output_shapes["head.1"] == (2,)
    assert cap.calls == {"fc": 1, "bn": 1, "head.0": 1, "head.1": 1}
    assert output.shape == (5, 2) and not model.training
    with pytest.raises(ExportError, match="batched tensor"):
        call_args(model, torch.tensor(1.0))


# -- samples and dtypes the exporter does not assume ------------------------------------------
UNBATCHED = {
    "linear": (
        lambda: nn.Sequential(nn.Linear(784, 10), snn.Leaky(beta=0.9, init_hidden=True)),
        (784,),
        "`0` (Linear)",
    ),
    "conv": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3), snn.Leaky(beta=0.9, init_hidden=True), nn.Flatten(), nn.Linear(2704, 2)
        ),
        (1, 28, 28),
        "`0` (Conv2d)",
    ),
    "conv_one_channel_out": (  # torch's unbatched conv gives [1, 26, 26]: no shape error to tell
        lambda: nn.Sequential(nn.Conv2d(1, 1, 3), snn.Leaky(beta=0.9, init_hidden=True)),
        (1, 28, 28),
        "`0` (Conv2d)",
    ),
    "pool": (
        lambda: nn.Sequential(nn.MaxPool2d(2), snn.Leaky(beta=0.9, init_hidden=True)),
        (2, 8, 8),
        "`0` (MaxPool2d)",
    ),
}


@pytest.mark.parametrize("case", sorted(UNBATCHED))
def test_a_sample_without_its_batch_dimension_is_refused_naming_the_fix(case):
    build, shape, where = UNBATCHED[case]
    model = build()
    with pytest.raises(ExportError) as info:
        to_ir(model, torch.rand(*shape))
    message = str(info.value)
    assert "\n" not in message and where in message and f"received {list(shape)}" in message
    assert message.endswith("add a batch dimension: sample.unsqueeze(0)")
    graph = to_ir(model, torch.rand(*shape).unsqueeze(0))  # the fix works
    assert tuple(graph.nodes["input"].shape) == shape


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_a_model_of_another_dtype_than_float32_is_refused_naming_it(dtype):
    model = nn.Sequential(nn.Linear(8, 4), snn.Leaky(beta=0.9, init_hidden=True)).to(dtype)
    with pytest.raises(ExportError) as info:
        to_ir(model, torch.rand(2, 8, dtype=dtype))
    message = str(info.value)
    assert "\n" not in message and message.startswith("cannot export `0` (Linear): its weight is ")
    assert str(dtype) in message and "model.float()" in message
    graph = to_ir(model.float(), torch.rand(2, 8))  # the fix works
    assert graph.nodes["0"].weight.dtype == np.float32


def test_an_executor_of_another_dtype_is_refused_too():
    net = ir_to_torch(to_ir(nn.Sequential(nn.Linear(8, 4)), torch.rand(2, 8))).double()
    with pytest.raises(ExportError, match=r"its weight is torch\.float64.*model\.float\(\)"):
        to_ir(net, None)
    to_ir(net.float(), None)


def test_a_sample_of_another_dtype_is_refused_naming_the_fix():
    weighted = nn.Sequential(nn.Linear(8, 4), snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(ExportError, match=r"the sample is torch\.float64 .*: pass sample\.float\(\)$"):
        to_ir(weighted, torch.rand(2, 8, dtype=torch.float64))
    # Without weights the pass runs, in float64: refused all the same.
    neurons = nn.Sequential(snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(
        ExportError, match=r"`0` \(Leaky\): it computed on torch\.float64 values.*sample\.float\(\)"
    ):
        to_ir(neurons, torch.rand(2, 8, dtype=torch.float64))
    assert to_ir(neurons, torch.rand(2, 8)).nodes["0"].shape == (8,)


def test_scalar_parameters_of_another_dtype_export_exactly():
    # snnTorch keeps beta=np.float64(0.9) as a 0-d float64 buffer; torch computes with it in
    # float32 (the dtype of the membrane it meets), so the float32 export is exact.
    model = nn.Sequential(
        nn.Linear(8, 4), snn.Leaky(beta=np.float64(0.9), threshold=np.float64(0.3), init_hidden=True)
    )
    assert model[1].beta.dtype == torch.float64
    lif = to_ir(model, torch.rand(2, 8)).nodes["1"]
    np.testing.assert_array_equal(lif.beta, np.float32(0.9))
    np.testing.assert_array_equal(lif.v_threshold, np.float32(0.3))


def test_autocast_inside_a_float32_model_is_not_refused():
    # Autocast computes a float32 model's layers in bfloat16; its weights (what the graph holds) stay float32.
    model = nn.Sequential(nn.Linear(8, 4), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(4, 2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        graph = to_ir(model, torch.rand(2, 8))
    assert graph.nodes["2"].weight.dtype == np.float32
