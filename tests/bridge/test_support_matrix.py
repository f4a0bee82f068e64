"""docs/support.md is true: every row of its tables is checked against the exporter."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

from t1c import ir
from t1c.bridge import ExportError
from t1c.bridge.exporter import to_ir
from t1c.bridge.importer import ir_to_torch
from t1c.bridge.modules import LIFModule, SepConv2dModule, SkipModule, SpikingAffineModule

SUPPORT = Path(__file__).resolve().parents[2] / "docs" / "support.md"
NAMESPACE = {
    "nn": nn,
    "snn": snn,
    "torch": torch,
    "LIFModule": LIFModule,
    "SkipModule": SkipModule,
    "SepConv2dModule": SepConv2dModule,
    "SpikingAffineModule": SpikingAffineModule,
}
STATUSES = ("exact", "approximated", "refused")


def table(heading: str) -> list[dict[str, str]]:
    """The rows of the markdown table under ``## heading``, cells stripped of backticks."""
    lines = SUPPORT.read_text().splitlines()
    start = lines.index(f"## {heading}")
    end = next((i for i, ln in enumerate(lines[start + 1 :]) if ln.startswith("## ")), len(lines))
    rows = [ln for ln in lines[start + 1 : start + 1 + end] if ln.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    out = []
    for line in rows[2:]:
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        out.append(dict(zip(header, cells)))
    return out


MODULE_ROWS = table("Modules")
OP_ROWS = table("Operations inside `forward`")


def names(cell: str) -> list[str]:
    return [c.strip() for c in cell.split(",") if c.strip()]


def test_tables_are_well_formed():
    assert len(MODULE_ROWS) >= 20 and len(OP_ROWS) >= 4
    for row in MODULE_ROWS + OP_ROWS:
        assert row["status"] in STATUSES, row


def run_steps(model: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    for m in model.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.mem = torch.zeros(0)
    with torch.no_grad():
        outs = [model(x) for x in xs]
    return torch.stack([o[0] if isinstance(o, tuple) else o for o in outs])


def check_row(model: nn.Module, sample_shape: list[int], row: dict[str, str], tmp_path) -> None:
    torch.manual_seed(0)
    steps = 1 if any(getattr(m, "stateful", False) for m in model.modules()) else 4
    xs = torch.rand(steps, *sample_shape, generator=torch.Generator().manual_seed(0)) * 2
    if row["status"] == "refused":
        with pytest.raises(ExportError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            to_ir(model, xs[0])
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = to_ir(model, xs[0])
    if "warning" in row["notes"]:
        assert caught, f"{row['example']}: the notes promise a warning"
    body = [n for n in graph.topological_order() if n not in graph.input_names + graph.output_names]
    assert [graph.nodes[n].TYPE for n in body] == names(row["primitive"])
    ir.write(tmp_path / "row.t1c", graph)
    executor = ir_to_torch(ir.read(tmp_path / "row.t1c"))
    assert [type(executor.module_for(n)).__name__ for n in body] == names(row["module on import"])
    expected = run_steps(model.eval(), xs)
    state, outs = None, []
    with torch.no_grad():  # stepped like the model: same batch size, same float operations
        for x in xs:
            y, state = executor(x, state, return_state=True)
            outs.append(y)
    actual = torch.stack(outs)
    if row["status"] == "exact":
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    else:
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("row", MODULE_ROWS, ids=[r["torch / snnTorch"] for r in MODULE_ROWS])
def test_module_row(row, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = eval(row["example"], dict(NAMESPACE))  # noqa: S307 - the project's own docs
    if isinstance(model[-1], nn.BatchNorm1d | nn.BatchNorm2d) and len(model) > 1:
        model.train()
        model(torch.rand(8, *eval(row["sample"])[1:]) * 3)  # non-trivial running statistics
    check_row(model, eval(row["sample"]), row, tmp_path)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(x) + x


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 3), nn.Linear(8, 5)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


class Flat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return torch.flatten(self.conv(x), 1)


class Relu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(F.relu(x))


class Times(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x) * 2


class Pool(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        if self.kind == "max":
            return F.max_pool2d(y, 2)
        return F.avg_pool2d(y, 3, stride=2, padding=1, count_include_pad=False)


class Dropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(F.dropout(x, 0.5, self.training))


class SameValues(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x.contiguous().clone().detach())


class InitLeaky(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.lif = nn.Linear(8, 4), snn.Leaky(beta=0.9)
        with torch.no_grad():
            self.fc.weight.mul_(4)

    def forward(self, x):
        spk, _ = self.lif(self.fc(x), self.lif.init_leaky())
        return spk


class ReluOfSpikes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.lif, self.fc2 = nn.Linear(8, 6), snn.Leaky(beta=0.5, init_hidden=True), nn.Linear(6, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.lif(self.fc1(x))))


class Slice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 6)

    def forward(self, x):
        return self.fc(x)[:, :4]


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return self.fc(-x)


class TimeLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.lif = nn.Linear(8, 4), snn.Leaky(beta=0.9, init_hidden=True)

    def forward(self, x):
        return torch.stack([self.lif(self.fc(x)) for _ in range(3)])


class MembraneFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.lif = nn.Linear(8, 4), snn.Leaky(beta=0.9)

    def forward(self, x):
        spk, mem = self.lif(self.fc(x))
        return mem, spk


OP_MODELS = {
    "x + y": (Residual, [2, 8], ["Affine", "Skip"], ["Linear", "SkipModule"]),
    "torch.cat([a, b], dim=1)": (
        Concat,
        [2, 8],
        ["Affine", "Affine", "Skip"],
        ["Linear", "Linear", "SkipModule"],
    ),
    "torch.flatten(x, 1)": (Flat, [2, 2, 3, 3], ["Conv2d", "Flatten"], ["Conv2d", "Flatten"]),
    "F.max_pool2d(x, 2)": (
        lambda: Pool("max"),
        [2, 2, 6, 6],
        ["Conv2d", "MaxPool2d"],
        ["Conv2d", "MaxPool2d"],
    ),
    "F.avg_pool2d(x, 2)": (
        lambda: Pool("avg"),
        [2, 2, 6, 6],
        ["Conv2d", "AvgPool2d"],
        ["Conv2d", "AvgPool2d"],
    ),
    "F.dropout(x, 0.5, self.training)": (Dropout, [2, 8], ["Affine"], ["Linear"]),
    "x.contiguous()": (SameValues, [2, 8], ["Affine"], ["Linear"]),
    "lif(x, lif.init_leaky())": (InitLeaky, [2, 8], ["Affine", "LIF"], ["Linear", "LIFModule"]),
    "torch.relu(spikes)": (
        ReluOfSpikes,
        [2, 8],
        ["Affine", "LIF", "Affine"],
        ["Linear", "LIFModule", "Linear"],
    ),
    "F.relu(x)": (Relu, [2, 8], None, None),
    "x * 2": (Times, [2, 8], None, None),
    "x[:, :4]": (Slice, [2, 8], None, None),
    "if x.sum() > 0:": (Branchy, [2, 8], None, None),
    "time loop inside forward": (TimeLoop, [2, 8], None, None),
    "return mem, spk": (MembraneFirst, [2, 8], None, None),
}


def test_every_operation_row_has_a_check():
    assert sorted(r["operation"] for r in OP_ROWS) == sorted(OP_MODELS)


@pytest.mark.parametrize("row", OP_ROWS, ids=[r["operation"] for r in OP_ROWS])
def test_operation_row(row, tmp_path):
    cls, shape, types, modules = OP_MODELS[row["operation"]]
    if row["status"] == "refused":  # refused, naming the fix; never a warning and a wrong file
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ExportError, match="Fix: |custom_map"):
                to_ir(cls(), torch.rand(*shape) - 0.5)
        return
    if row["primitive"]:
        assert names(row["primitive"])[0] in types and names(row["module on import"])[0] in modules
    check_row(
        cls(), shape, {**row, "primitive": ", ".join(types), "module on import": ", ".join(modules)}, tmp_path
    )
