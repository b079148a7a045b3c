r"""Chapter 10: Hopfield networks and associative memory (the chapter's public names).

The chapter is split by mechanism; each file states its equations:

* :mod:`.hopfield_classical`: binary network, Hebbian storage
  :math:`W = \frac1N\sum_\mu x^\mu x^{\mu\top}` (zero diagonal), energy
  :math:`E = -\frac12 s^\top W s + b^\top s`, asynchronous (Numba kernel,
  :mod:`minimem.kernels.hopfield`) and synchronous sign updates.
* :mod:`.hopfield_dense`: dense associative memory, :math:`E = -\sum_\mu F(x^\mu\cdot s)`
  with :math:`F(z) = z^n`, :math:`\max(z,0)^n` or :math:`e^z`.
* :mod:`.hopfield_modern`: continuous states,
  :math:`E = -\operatorname{lse}(\beta, X^\top\xi) + \frac12\xi^\top\xi + \text{const}` and the
  update :math:`\xi^{new} = X\operatorname{softmax}(\beta X^\top\xi)`; ``softmax1``.
* :mod:`.hopfield_layers`: ``Hopfield``, ``HopfieldLayer``, ``HopfieldPooling`` modules (one
  update step with projections is multi-head attention).
* :mod:`.hopfield_experiments`: generated image data, capacity, spurious states, beta regimes;
  :mod:`.hopfield_plots`: the notebook's figures.
"""
from . import hopfield_plots  # noqa: F401
from .hopfield_classical import (  # noqa: F401
                                 ClassicalHopfield,
                                 RecallResult,
                                 async_recall,
                                 classical_energy,
                                 hebbian_weights,
                                 sweep_orders,
                                 sync_recall,
)
from .hopfield_dense import DenseAssociativeMemory  # noqa: F401
from .hopfield_experiments import (  # noqa: F401
                                 beta_regimes,
                                 capacity_curve,
                                 center_normalize,
                                 dense_capacity,
                                 dense_capacity_theory,
                                 dense_recall_count,
                                 effective_patterns,
                                 energy_grid,
                                 error_vs_bound,
                                 find_sync_two_cycle,
                                 flip_bits,
                                 make_image_patterns,
                                 mask_half,
                                 mixture_state,
                                 one_step_error,
                                 one_step_error_theory,
                                 overlap,
                                 random_patterns,
                                 retrieval_trajectory,
                                 softmax_weights,
)
from .hopfield_layers import Hopfield, HopfieldLayer, HopfieldPooling  # noqa: F401
from .hopfield_modern import (  # noqa: F401
                                 Softmax1,
                                 hopfield_energy,
                                 hopfield_retrieve,
                                 hopfield_retrieve_reference,
                                 retrieval_error_bound,
                                 separation,
                                 softmax1,
)
