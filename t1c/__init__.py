"""t1c: spiking neural networks between PyTorch/snnTorch and T1C-IR.

``t1c.ir`` (numpy + h5py only), ``t1c.bridge`` (torch), ``t1c.lightning`` (Lightning),
``t1c.snntorch`` (the snnTorch-style wrappers).
"""

__version__ = "0.1.0"
