"""Test oracles written from other projects' sources (snnTorch's neurons, NIR's equations).

Import them as ``from references.snntorch_neurons import ...`` from any test (``tests/`` is
on the path, as for ``batching``).
"""
