r"""Chapter 20: linear attention and the delta-rule family (the chapter's mechanisms and layers).

* :mod:`.linear_attention`: :math:`S_t = S_{t-1} + k_t v_t^\top`, :math:`o_t = S_t^\top q_t`.
* :mod:`.delta_rule`: :math:`S_t = (I - \beta_t k_t k_t^\top) S_{t-1} + \beta_t k_t v_t^\top`
  and its gated form (decay :math:`e^{g_t}`); the public entry points with ``mode=``.
* :mod:`.recurrent`: the token-by-token form as one autograd node over the Numba kernel
  (:mod:`minimem.kernels.delta_recurrent`, hand-derived backward).
* :mod:`.chunkwise`: the chunkwise-parallel (UT / WY) form.
* :mod:`.titans`: Titans' neural memory (test-time gradient descent with momentum and decay).
* :mod:`.layers`: ``LinearAttention``, ``DeltaNet``, ``GatedDeltaNet``, ``ShortConvolution``.

Experiments are in :mod:`.lab`, figures in :mod:`.plots`, gradient-check cases in :mod:`.cases`.
"""
from .chunkwise import chunk_recurrence, unit_lower_inverse, ut_transform
from .delta_rule import delta_rule, delta_rule_reference, gated_delta_rule, transition_matrix
from .layers import DeltaNet, GatedDeltaNet, LinearAttention, ShortConvolution
from .linear_attention import linear_attention, linear_attention_reference
from .recurrent import RecurrentDeltaFunction
from .titans import NeuralMemory, memory_gradient, neural_memory, titans_as_gated_delta

__all__ = [
    "chunk_recurrence",
    "delta_rule",
    "delta_rule_reference",
    "DeltaNet",
    "gated_delta_rule",
    "GatedDeltaNet",
    "linear_attention",
    "linear_attention_reference",
    "LinearAttention",
    "memory_gradient",
    "neural_memory",
    "NeuralMemory",
    "RecurrentDeltaFunction",
    "ShortConvolution",
    "titans_as_gated_delta",
    "transition_matrix",
    "unit_lower_inverse",
    "ut_transform",
]
