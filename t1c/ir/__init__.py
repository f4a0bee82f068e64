"""T1C-IR: the graph format Type 1 Compute's neuromorphic hardware compiles from.

Primitives (one module per family), the :class:`Graph`, and `.t1c` files::

    import numpy as np
    from t1c import ir

    g = ir.Graph.from_chain(
        ir.Input(input_type={"input": np.array([784])}),
        ir.Affine(weight=np.zeros((128, 784)), bias=np.zeros(128)),
        ir.LIF(tau=np.full(128, 10.0), r=np.full(128, 10.0),
               v_leak=np.zeros(128), v_threshold=np.ones(128)),
        ir.Output(),
        names=["input", "fc1", "lif1", "output"])
    ir.write("net.t1c", g)
    assert ir.topology_diff(g, ir.read("net.t1c")) == []

Hybrid ANN-SNN graphs use the toolchain's ANN types too (``ReLU``, ``BatchNorm1d``,
``HybridRegion``, a nested ``Graph`` as :class:`Subgraph`...; see ``docs/hybrid.md``), and
:func:`regions` lists a graph's ANN and SNN parts.

Importing this package needs only numpy and h5py.
"""

from .activations import ELU, GELU, Dropout, PReLU, ReLU, Sigmoid, Softmax, Tanh
from .conv import Conv2d, SepConv2d
from .errors import T1CFormatError
from .fileformat import FORMAT_VERSION
from .graph import Edge, Graph
from .hybrid import ANN_TYPES, MODES, SNN_TYPES, HybridRegion, Region, Subgraph, regions
from .io import Input, Output
from .linear import SPIKE_MODES, Affine, SpikingAffine
from .neurons import LIF, RESET_MECHANISMS, AlphaLIF, CubaLIF
from .node import REGISTRY, Node
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .pooling import AvgPool2d, MaxPool2d, Upsample
from .reading import read, read_version
from .reshape import Flatten
from .skip import SKIP_TYPES, Skip
from .topology import same_topology, topology_diff
from .writing import write

__all__ = [
    "ANN_TYPES",
    "ELU",
    "FORMAT_VERSION",
    "GELU",
    "MODES",
    "SNN_TYPES",
    "BatchNorm1d",
    "BatchNorm2d",
    "Dropout",
    "HybridRegion",
    "LayerNorm",
    "PReLU",
    "ReLU",
    "Region",
    "Sigmoid",
    "Softmax",
    "Subgraph",
    "Tanh",
    "regions",
    "REGISTRY",
    "RESET_MECHANISMS",
    "SKIP_TYPES",
    "SPIKE_MODES",
    "LIF",
    "Affine",
    "AlphaLIF",
    "AvgPool2d",
    "Conv2d",
    "CubaLIF",
    "Edge",
    "Flatten",
    "Graph",
    "Input",
    "MaxPool2d",
    "Node",
    "Output",
    "SepConv2d",
    "Skip",
    "SpikingAffine",
    "T1CFormatError",
    "Upsample",
    "read",
    "read_version",
    "same_topology",
    "topology_diff",
    "write",
]
