"""Export fuzzing: random small models from every row of docs/support.md, plus refused kinds.

Each model either exports to a graph that computes what the model computes, stepped one
time step at a time with the same batch (spikes exactly equal, floats within 1e-5), or
the export raises :class:`ExportError`. A model built only from supported rows must
export; a model with a refused kind inserted must be refused. Zero silent mismatches.

BatchNorm statistics are dyadic (a power-of-two scale, zero mean and shift), so that
folding it into the layer before is exact in float32 and spikes downstream of it can be
compared exactly; the rounding of general folds is checked in test_export.py.

``hybrid=True`` is fuzzed the same way (:func:`test_hybrid_export_is_exact_or_refused`):
random models of layers, BatchNorm with random statistics, every ANN activation and norm
of FORMAT_HYBRID.md, dropout, region markers and neurons, plus refused kinds. There no
module is folded or dropped, and the model and the imported graph run the same torch
module classes on the same float32 values, so spikes compare exactly.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field

import numpy as np
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

from t1c.bridge import ExportError
from t1c.bridge.exporter import to_ir
from t1c.bridge.hybrid_modules import HybridRegionModule
from t1c.bridge.importer import ir_to_torch

MODELS = 100
EVERY_KIND = {
    *("Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "Upsample", "Flatten", "Dropout", "Identity"),
    *("Leaky", "BatchNorm1d", "BatchNorm2d", "ReLU", "Sequential"),
    *("res()", "cat()", "flatten()", "view()", "max_pool()", "avg_pool()", "dropout()", "relu()"),
    *("Synaptic", "Alpha", "Lapicque", "RLeaky", "Sigmoid"),
    *("scale()", "shift()", "slice()", "max_pool_indices()"),
}
STEPS = 20
BATCH = 3


class Planned(nn.Module):
    """A forward made of module calls and functional operations, read from ``plan``."""

    def __init__(self) -> None:
        super().__init__()
        self.mods = nn.ModuleDict()
        self.plan: list[tuple[str, str | int | None, str | None]] = []

    def forward(self, x):
        y = x
        for op, a, b in self.plan:
            if op == "mod":
                y = self.mods[a](y)
            elif op == "res":
                y = y + self.mods[a](y)
            elif op == "cat":
                y = torch.cat([self.mods[a](y), self.mods[b](y)], dim=1)
            elif op == "flatten":
                y = torch.flatten(y, 1)
            elif op == "view":
                y = y.view(y.size(0), -1)
            elif op == "max_pool":
                y = F.max_pool2d(y, 2)
            elif op == "max_pool_indices":
                y = F.max_pool2d(y, 2, return_indices=True)[0]
            elif op == "avg_pool":
                y = F.avg_pool2d(y, 2, stride=1)
            elif op == "dropout":
                y = F.dropout(y, 0.5, self.training)
            elif op == "relu":
                y = torch.relu(y)
            elif op == "scale":
                y = y * 2
            elif op == "shift":
                y = y - 1
            elif op == "slice":
                y = y[:, :a]
        return y


@dataclass
class Draft:
    """A model being drawn: its current value's shape, and what is known about it."""

    rng: random.Random
    graph: bool  # a Planned model (traced) rather than an nn.Sequential (a chain)
    shape: tuple[int, ...]
    nonnegative: bool = False  # spikes, or pools/reshapes/sums of spikes
    refused: list[str] = field(default_factory=list)  # refused kinds inserted
    layers: list[nn.Module] = field(default_factory=list)
    model: Planned = field(default_factory=Planned)
    last_neuron: bool = False
    kinds: set[str] = field(default_factory=set)  # every module type and operation drawn

    def add(self, module: nn.Module, shape: tuple[int, ...], nonnegative: bool, neuron: bool = False) -> None:
        if self.graph:
            name = f"m{len(self.model.mods)}"
            self.model.mods[name] = module
            self.model.plan.append(("mod", name, None))
        else:
            self.layers.append(module)
        self.kinds.update(type(m).__name__ for m in module.modules())
        self.shape, self.nonnegative, self.last_neuron = shape, nonnegative, neuron

    def op(self, op: str, shape: tuple[int, ...], nonnegative: bool, a=None, b=None) -> None:
        self.model.plan.append((op, a, b))
        self.kinds.add(f"{op}()")
        self.shape, self.nonnegative, self.last_neuron = shape, nonnegative, False

    def child(self, module: nn.Module) -> str:
        self.kinds.update(type(m).__name__ for m in module.modules())
        name = f"m{len(self.model.mods)}"
        self.model.mods[name] = module
        return name


def leaky(rng: random.Random, shape: tuple[int, ...]) -> snn.Leaky:
    """snn.Leaky with random options from its support-matrix rows."""
    per_neuron = (shape[0], 1, 1) if len(shape) == 3 else shape
    beta = rng.choice([0.5, 0.9, 1.0, torch.rand(per_neuron) * 0.9 + 0.05])
    threshold = rng.choice([1.0, 0.5, torch.rand(per_neuron) + 0.25])
    return snn.Leaky(
        beta=beta,
        threshold=threshold,
        reset_mechanism=rng.choice(["subtract", "zero", "none"]),
        reset_delay=rng.random() < 0.5,
        learn_beta=rng.random() < 0.3,
        learn_threshold=rng.random() < 0.3,
        init_hidden=True,
    )


def dyadic_batchnorm(rng: random.Random, channels: int, two_d: bool) -> nn.Module:
    bn = nn.BatchNorm2d(channels) if two_d else nn.BatchNorm1d(channels)
    bn.eps = 2.0**-10
    with torch.no_grad():
        bn.running_var.fill_(1 - 2.0**-10)  # var + eps == 1 exactly
        bn.running_mean.zero_()
        bn.weight.copy_(torch.tensor([rng.choice([-2.0, -0.5, 0.5, 1.0, 2.0, 4.0]) for _ in range(channels)]))
        bn.bias.zero_()
    return bn


def refused_module(d: Draft) -> None:
    """Insert a module that has no exact T1C-IR form here."""
    rng, shape = d.rng, d.shape
    kinds = ["synaptic", "alpha", "lapicque", "graded", "sigmoid"]
    if len(shape) == 1:
        kinds.append("rleaky")
    if not d.nonnegative:
        kinds.append("relu")
    kind = rng.choice(kinds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = {
            # the configurations of these neurons that have no exact CubaLIF/AlphaLIF form
            "synaptic": lambda: snn.Synaptic(alpha=0.8, beta=0.9, inhibition=True, init_hidden=True),
            "alpha": lambda: snn.Alpha(alpha=0.9, beta=0.8, inhibition=True, init_hidden=True),
            "lapicque": lambda: snn.Lapicque(R=3.0, C=5.0, init_hidden=True),
            "graded": lambda: snn.Leaky(beta=0.9, graded_spikes_factor=2.0, init_hidden=True),
            "sigmoid": nn.Sigmoid,
            "rleaky": lambda: snn.RLeaky(
                beta=0.9, linear_features=shape[0], state_quant=lambda m: m, init_hidden=True
            ),
            "relu": nn.ReLU,
        }[kind]()
    d.refused.append(type(module).__name__)
    d.add(module, shape, nonnegative=kind != "sigmoid")


def refused_op(d: Draft) -> None:
    """Insert an operation on the data flow that has no exact T1C-IR form here."""
    kinds = ["scale", "shift", "slice"] + ([] if d.nonnegative else ["relu"])
    if len(d.shape) == 3 and d.shape[1] >= 2:
        kinds.append("max_pool_indices")
    kind = d.rng.choice(kinds)
    if kind == "max_pool_indices":
        c, h, w = d.shape
        d.op(kind, (c, h // 2, w // 2), d.nonnegative)
    elif kind == "slice":
        keep = max(1, d.shape[0] - 1)
        d.op("slice", (keep, *d.shape[1:]), d.nonnegative, a=keep)
    else:
        d.op(kind, d.shape, kind == "relu")
    d.refused.append(kind)


def conv_step(d: Draft) -> None:  # noqa: PLR0912 - one branch per support-matrix row
    rng = d.rng
    c, h, w = d.shape
    choices = ["conv", "conv", "leaky", "leaky", "pool", "flatten", "dropout", "identity"]
    if h <= 8:
        choices.append("upsample")
    if d.nonnegative:
        choices.append("relu")
    if d.graph:
        choices += ["res", "cat", "fpool", "view"]
    kind = rng.choice(choices)
    if kind == "conv":
        k = rng.choice([1, 3])
        stride = rng.choice([1, 1, 2]) if h >= 4 else 1
        padding = rng.choice([0, 1, "same"]) if stride == 1 else rng.choice([0, 1])
        if k == 1 and padding == 1:
            padding = 0
        out = rng.choice([2, 3, 4])
        conv = nn.Conv2d(c, out, k, stride=stride, padding=padding, bias=rng.random() < 0.7)
        pad = (k - 1) // 2 if padding == "same" else padding
        size = (h + 2 * pad - k) // stride + 1
        if size < 1:
            return
        d.add(conv, (out, size, size), False)
        if rng.random() < 0.3:
            d.add(dyadic_batchnorm(rng, out, True), (out, size, size), False)
    elif kind == "leaky":
        d.add(leaky(rng, d.shape), d.shape, True, neuron=True)
    elif kind == "pool" and h >= 2:
        if rng.random() < 0.5:
            ceil = rng.random() < 0.5
            size = -(-h // 2) if ceil else h // 2
            d.add(nn.MaxPool2d(2, ceil_mode=ceil), (c, size, size), d.nonnegative)
        else:
            pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
            d.add(pool, (c, (h - 1) // 2 + 1, (w - 1) // 2 + 1), d.nonnegative)
    elif kind == "upsample":
        mode = rng.choice(["nearest", "bilinear"])
        align = rng.choice([True, False]) if mode == "bilinear" else None
        if rng.random() < 0.5:
            d.add(
                nn.Upsample(scale_factor=2, mode=mode, align_corners=align), (c, 2 * h, 2 * w), d.nonnegative
            )
        else:
            d.add(
                nn.Upsample(size=(h + 3, w + 3), mode=mode, align_corners=align),
                (c, h + 3, w + 3),
                d.nonnegative,
            )
    elif kind == "flatten":
        d.add(nn.Flatten(), (c * h * w,), d.nonnegative)
    elif kind == "dropout":
        d.add(nn.Dropout(0.5), d.shape, d.nonnegative)
    elif kind == "identity":
        d.add(nn.Identity(), d.shape, d.nonnegative)
    elif kind == "relu":
        d.add(nn.ReLU(), d.shape, True)
    elif kind == "res":
        spiking = rng.random() < 0.5
        branch = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), *([leaky(rng, d.shape)] if spiking else []))
        d.op("res", d.shape, d.nonnegative and spiking, a=d.child(branch))
    elif kind == "cat":
        spiking = rng.random() < 0.5
        a = nn.Sequential(nn.Conv2d(c, 2, 3, padding=1), *([leaky(rng, (2, h, w))] if spiking else []))
        b = nn.Sequential(nn.Conv2d(c, 3, 1), *([leaky(rng, (3, h, w))] if spiking else []))
        d.op("cat", (5, h, w), spiking, a=d.child(a), b=d.child(b))
    elif kind == "fpool" and h >= 2:
        if rng.random() < 0.5:
            d.op("max_pool", (c, h // 2, w // 2), d.nonnegative)
        else:
            d.op("avg_pool", (c, h - 1, w - 1), d.nonnegative)
    elif kind == "view":
        d.op(rng.choice(["view", "flatten"]), (c * h * w,), d.nonnegative)


def vector_step(d: Draft) -> None:
    rng = d.rng
    (n,) = d.shape
    choices = ["linear", "linear", "leaky", "leaky", "dropout", "identity"]
    if d.nonnegative:
        choices.append("relu")
    if d.graph:
        choices += ["res", "cat", "fdropout"] + (["frelu"] if d.nonnegative else [])
    kind = rng.choice(choices)
    if kind == "linear":
        out = rng.randint(3, 9)
        d.add(nn.Linear(n, out, bias=rng.random() < 0.7), (out,), False)
        if rng.random() < 0.3:
            d.add(dyadic_batchnorm(rng, out, False), (out,), False)
    elif kind == "leaky":
        d.add(leaky(rng, d.shape), d.shape, True, neuron=True)
    elif kind == "dropout":
        d.add(nn.Dropout(0.3), d.shape, d.nonnegative)
    elif kind == "identity":
        d.add(nn.Identity(), d.shape, d.nonnegative)
    elif kind == "relu":
        d.add(nn.ReLU(), d.shape, True)
    elif kind == "res":
        spiking = rng.random() < 0.5
        branch = nn.Sequential(nn.Linear(n, n), *([leaky(rng, d.shape)] if spiking else []))
        d.op("res", d.shape, d.nonnegative and spiking, a=d.child(branch))
    elif kind == "cat":
        a, b = nn.Linear(n, 3), nn.Sequential(nn.Linear(n, 4), leaky(rng, (4,)))
        d.op("cat", (7,), False, a=d.child(a), b=d.child(b))
    elif kind == "fdropout":
        d.op("dropout", d.shape, d.nonnegative)
    elif kind == "frelu":
        d.op("relu", d.shape, True)


def draw(seed: int) -> tuple[nn.Module, tuple[int, ...], list[str], bool, set[str]]:
    """A random model, its sample shape (no batch), the refused kinds in it, whether it
    outputs spikes, and every module type and operation in it."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    conv = rng.random() < 0.5
    shape = (rng.choice([1, 2]), rng.choice([6, 8]), rng.choice([6, 8])) if conv else (rng.randint(4, 9),)
    if conv:
        shape = (shape[0], shape[1], shape[1])
    d = Draft(rng, graph=rng.random() < 0.5, shape=shape)
    taint_at = {rng.randrange(6) for _ in range(rng.choice([0, 0, 1, 2]))}
    for i in range(rng.randint(3, 6)):
        if i in taint_at:
            refused_op(d) if d.graph and rng.random() < 0.5 else refused_module(d)
        elif len(d.shape) == 3:
            conv_step(d)
        else:
            vector_step(d)
    if not d.last_neuron and rng.random() < 0.7:  # most models end in spikes
        d.add(leaky(rng, d.shape), d.shape, True, neuron=True)
    model = d.model if d.graph else nn.Sequential(*d.layers)
    with torch.no_grad():  # strong enough weights that the neurons fire
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.mul_(2.5)
    return model.eval(), shape, d.refused, d.last_neuron, d.kinds


def reset_neurons(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_mem()
            m.mem = torch.zeros(0)


def run_model(model: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    reset_neurons(model)
    with torch.no_grad():
        return torch.stack([model(x) for x in xs])


def run_graph(graph, xs: torch.Tensor) -> torch.Tensor:
    executor = ir_to_torch(graph).eval()
    state, outs = None, []
    with torch.no_grad():  # stepped like the model: one step at a time, the same batch
        for x in xs:
            y, state = executor(x, state, return_state=True)
            outs.append(y)
    return torch.stack(outs)


def test_export_is_exact_or_refused(one_thread):
    outcomes = {"exported": 0, "refused": 0}
    spikes, drawn = [], set()
    for seed in range(MODELS):
        model, shape, refused, spiking, kinds = draw(seed)
        drawn |= kinds
        gen = torch.Generator().manual_seed(seed)
        xs = torch.where(torch.rand(STEPS, BATCH, *shape, generator=gen) < 0.5, 1.0, 0.0)
        xs = xs * torch.randn(STEPS, BATCH, *shape, generator=gen).abs() * 2 - 0.5 * (seed % 2)
        what = f"seed {seed}: {model!r} (refused kinds: {refused})"
        reset_neurons(model)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # never a warning and a file
                graph = to_ir(model, xs[0])
        except ExportError as err:
            assert refused, f"{what}: a model made of supported rows was refused: {err}"
            outcomes["refused"] += 1
            continue
        assert not refused, f"{what}: exported although it holds {refused}"
        expected, actual = run_model(model, xs), run_graph(graph, xs)
        assert actual.shape == expected.shape, what
        if spiking:
            assert torch.equal(actual, expected), f"{what}: {int((actual != expected).sum())} spikes differ"
            spikes.append(float(expected.mean()))
        torch.testing.assert_close(
            actual, expected, rtol=1e-5, atol=1e-5, msg=lambda m, what=what: f"{what}: {m}"
        )
        outcomes["exported"] += 1
    # every row and refused kind was drawn, both outcomes happen, and the spiking models do
    # spike: the comparisons are not vacuous
    assert not EVERY_KIND - drawn, f"never drawn: {sorted(EVERY_KIND - drawn)}"
    assert outcomes["exported"] >= MODELS // 3 and outcomes["refused"] >= MODELS // 6, outcomes
    assert len(spikes) >= 10 and sum(0.01 < s < 0.99 for s in spikes) >= len(spikes) // 2, spikes


# -- hybrid=True: the ANN modules of FORMAT_HYBRID.md as nodes ---------------------------------
HYBRID_MODELS = 40
HYBRID_KINDS = {
    *("Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh"),
    *("Softmax", "GELU", "ELU", "LayerNorm", "Dropout", "HybridRegionModule", "Leaky"),
    *("negative LeakyReLU", "no running stats", "SiLU", "ReLU6", "Hardtanh", "Mish"),
}


def random_batchnorm(rng: random.Random, channels: int, two_d: bool, **kwargs) -> nn.Module:
    """Affine BatchNorm with random statistics: the model and the imported graph run the
    same module class on the same float32 values, so spikes downstream compare exactly."""
    bn = (nn.BatchNorm2d if two_d else nn.BatchNorm1d)(
        channels, momentum=rng.choice([0.1, 0.3, None]), **kwargs
    )
    if bn.track_running_stats:
        with torch.no_grad():
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_()
            bn.bias.normal_()
    return bn


def hybrid_activation(d: Draft) -> None:
    """One shape-preserving hybrid module (or a refused one, recorded in ``d.refused``)."""
    rng, shape = d.rng, d.shape
    channels = shape[0]
    kind = rng.choice(
        [
            "relu",
            "leaky_relu",
            "prelu",
            "sigmoid",
            "tanh",
            "softmax",
            "gelu",
            "elu",
            "layernorm",
            "dropout",
            "region",
        ]
    )
    module = {
        "relu": lambda: nn.ReLU(),
        "leaky_relu": lambda: nn.LeakyReLU(rng.choice([0.0, 0.01, 0.2, 1.5])),
        "prelu": lambda: nn.PReLU(rng.choice([1, channels]), init=rng.uniform(-0.5, 0.5)),
        "sigmoid": lambda: nn.Sigmoid(),
        "tanh": lambda: nn.Tanh(),
        "softmax": lambda: nn.Softmax(dim=rng.choice([1, -1])),
        "gelu": lambda: nn.GELU(rng.choice(["none", "tanh"])),
        "elu": lambda: nn.ELU(alpha=rng.choice([1.0, 0.5, 2.0])),
        "layernorm": lambda: nn.LayerNorm(shape[-rng.randint(1, len(shape)) :], eps=rng.choice([1e-5, 1e-3])),
        "dropout": lambda: nn.Dropout(rng.choice([0.0, 0.3, 0.5])),
        "region": lambda: HybridRegionModule(
            rng.choice(["ann", "snn"]), int(np.prod(shape)), rng.choice([None, "r"])
        ),
    }[kind]()
    if isinstance(module, nn.LayerNorm):
        with torch.no_grad():  # affine: the same kernel in the model and the import
            module.weight.normal_()
            module.bias.normal_()
    d.add(module, shape, False)


def hybrid_refused(d: Draft) -> None:
    """A module ``hybrid=True`` must refuse: a negative LeakyReLU slope, a BatchNorm without
    running statistics, or a module with no node."""
    rng, shape = d.rng, d.shape
    kind = rng.choice(["negative LeakyReLU", "no running stats", "SiLU", "ReLU6", "Hardtanh", "Mish"])
    if kind == "negative LeakyReLU":
        module = nn.LeakyReLU(-rng.uniform(0.1, 1.0))
    elif kind == "no running stats":
        module = random_batchnorm(rng, shape[0], len(shape) == 3, track_running_stats=False)
    else:
        module = getattr(nn, kind)()
    d.refused.append(kind)
    d.kinds.add(kind)
    d.add(module, shape, False)


def draw_hybrid(seed: int) -> tuple[nn.Module, tuple[int, ...], list[str], bool, set[str]]:
    """A random hybrid model (``draw``'s return values): layers, BatchNorm, activations,
    norms, dropout, region markers and spiking neurons, as a chain or a traced forward."""
    rng = random.Random(10_000 + seed)
    torch.manual_seed(10_000 + seed)
    shape = (rng.choice([1, 2]), 6, 6) if rng.random() < 0.5 else (rng.randint(4, 9),)
    d = Draft(rng, graph=rng.random() < 0.5, shape=shape)
    taint_at = {rng.randrange(6) for _ in range(rng.choice([0, 0, 1]))}
    for i in range(rng.randint(3, 7)):
        if i in taint_at:
            hybrid_refused(d)
        elif rng.random() < 0.35:  # a layer, maybe with its BatchNorm
            if len(d.shape) == 3:
                out = rng.choice([2, 3, 4])
                d.add(nn.Conv2d(d.shape[0], out, 3, padding=1), (out, *d.shape[1:]), False)
            else:
                out = rng.randint(3, 9)
                d.add(nn.Linear(d.shape[0], out), (out,), False)
            if rng.random() < 0.5:
                d.add(random_batchnorm(rng, out, len(d.shape) == 3), d.shape, False)
        elif rng.random() < 0.2:
            d.add(leaky(rng, d.shape), d.shape, True, neuron=True)
        else:
            hybrid_activation(d)
    if not d.last_neuron and rng.random() < 0.6:
        d.add(leaky(rng, d.shape), d.shape, True, neuron=True)
    model = d.model if d.graph else nn.Sequential(*d.layers)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.mul_(2.5)
    return model.eval(), shape, d.refused, d.last_neuron, d.kinds


def test_hybrid_export_is_exact_or_refused(one_thread):
    """``hybrid=True`` on random hybrid models: exact (spikes equal, floats within 1e-5) or refused."""
    outcomes = {"exported": 0, "refused": 0}
    spikes, drawn = [], set()
    for seed in range(HYBRID_MODELS):
        model, shape, refused, spiking, kinds = draw_hybrid(seed)
        drawn |= kinds
        gen = torch.Generator().manual_seed(seed)
        xs = torch.randn(STEPS // 2, BATCH, *shape, generator=gen) * 2
        what = f"hybrid seed {seed}: {model!r} (refused kinds: {refused})"
        reset_neurons(model)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # never a warning and a file
                graph = to_ir(model, xs[0], hybrid=True)
        except ExportError as err:
            assert refused, f"{what}: a model made of hybrid modules was refused: {err}"
            outcomes["refused"] += 1
            continue
        assert not refused, f"{what}: exported although it holds {refused}"
        layers = [m for m in model.modules() if not isinstance(m, (nn.Sequential, nn.ModuleDict, Planned))]
        assert len(graph.nodes) == len(layers) + 2, f"{what}: a module was folded or dropped"
        expected, actual = run_model(model, xs), run_graph(graph, xs)
        assert actual.shape == expected.shape, what
        if spiking:
            assert torch.equal(actual, expected), f"{what}: {int((actual != expected).sum())} spikes differ"
            spikes.append(float(expected.mean()))
        torch.testing.assert_close(
            actual, expected, rtol=1e-5, atol=1e-5, msg=lambda m, what=what: f"{what}: {m}"
        )
        outcomes["exported"] += 1
    assert not HYBRID_KINDS - drawn, f"never drawn: {sorted(HYBRID_KINDS - drawn)}"
    assert outcomes["exported"] >= HYBRID_MODELS // 2 and outcomes["refused"] >= HYBRID_MODELS // 8, outcomes
    assert len(spikes) >= 8 and sum(0.01 < s < 0.99 for s in spikes) >= len(spikes) // 2, spikes
