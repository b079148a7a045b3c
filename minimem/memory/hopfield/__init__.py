r"""Chapter 10: Hopfield networks and associative memory (the chapter's mechanisms and layers).

* :mod:`.classical`: binary network, Hebbian storage
  :math:`W = \frac1N\sum_\mu x^\mu x^{\mu\top}` (zero diagonal), energy
  :math:`E = -\frac12 s^\top W s + b^\top s`, asynchronous (Numba kernel,
  :mod:`minimem.kernels.async_sweeps`) and synchronous sign updates.
* :mod:`.dense`: dense associative memory, :math:`E = -\sum_\mu F(x^\mu\cdot s)`
  with :math:`F(z) = z^n`, :math:`\max(z,0)^n` or :math:`e^z`.
* :mod:`.modern`: continuous states,
  :math:`E = -\operatorname{lse}(\beta, X^\top\xi) + \frac12\xi^\top\xi + \text{const}` and the
  update :math:`\xi^{new} = X\operatorname{softmax}(\beta X^\top\xi)`; ``softmax1``.
* :mod:`.layers`: ``Hopfield``, ``HopfieldLayer``, ``HopfieldPooling`` modules (one
  update step with projections is multi-head attention).

Experiments (image data, capacity, spurious states, beta regimes) are in :mod:`.lab`, figures
in :mod:`.plots`, gradient-check cases in :mod:`.cases`.
"""
from .classical import (ClassicalHopfield, RecallResult, async_recall, classical_energy,
    hebbian_weights, sweep_orders, sync_recall)
from .dense import DenseAssociativeMemory
from .layers import Hopfield, HopfieldLayer, HopfieldPooling
from .modern import (Softmax1, hopfield_energy, hopfield_retrieve, hopfield_retrieve_reference,
    retrieval_error_bound, separation, softmax1)

__all__ = [
    "async_recall",
    "classical_energy",
    "ClassicalHopfield",
    "DenseAssociativeMemory",
    "hebbian_weights",
    "Hopfield",
    "hopfield_energy",
    "hopfield_retrieve",
    "hopfield_retrieve_reference",
    "HopfieldLayer",
    "HopfieldPooling",
    "RecallResult",
    "retrieval_error_bound",
    "separation",
    "Softmax1",
    "softmax1",
    "sweep_orders",
    "sync_recall",
]
