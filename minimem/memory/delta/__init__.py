r"""Chapter 20: linear attention and the delta-rule family (the chapter's mechanisms and layers).

* :mod:`.feature_maps`: kernels :math:`\phi(q)^\top \phi(k)` (elu+1, DPFP, Taylor / poly,
  Performer's positive random features).
* :mod:`.linear_attention`: :math:`S_t = S_{t-1} + k_t v_t^\top`, :math:`o_t = S_t^\top q_t`,
  with a feature map and normalizer; gated linear attention :math:`S_t = e^{g_t} S_{t-1} +
  k_t v_t^\top` (RetNet's fixed decay, Mamba2's data-dependent one).
* :mod:`.delta_rule`: :math:`S_t = (I - \beta_t k_t k_t^\top) S_{t-1} + \beta_t k_t v_t^\top`
  and its gated form (decay :math:`e^{g_t}`), :math:`\beta \in [0, 2]`; the public entry
  points with ``mode=``.
* :mod:`.delta_product`: :math:`n_h` delta steps per token (a product of Householder
  transitions).
* :mod:`.recurrent`: the token-by-token form as one autograd node over the Numba kernel
  (:mod:`minimem.kernels.delta_recurrent`, hand-derived backward).
* :mod:`.chunkwise`: the chunkwise-parallel (UT / WY) form.
* :mod:`.layers`: ``LinearAttention``, ``GatedLinearAttention``, ``Retention``, ``DeltaNet``,
  ``GatedDeltaNet``, ``DeltaProductNet``, ``ShortConvolution``.

Experiments are in :mod:`.lab`, figures in :mod:`.plots`, gradient-check cases in :mod:`.cases`.
"""
from .chunkwise import chunk_recurrence, unit_lower_inverse, ut_transform
from .delta_product import delta_product, delta_product_reference, householder_product
from .feature_maps import feature_dim, feature_map
from .delta_rule import delta_rule, delta_rule_reference, gated_delta_rule, transition_matrix
from .layers import (DeltaNet, DeltaProductNet, GatedDeltaNet, GatedLinearAttention,
                     LinearAttention, Retention, ShortConvolution, retention_decays)
from .linear_attention import (gated_linear_attention, gated_linear_attention_reference,
                               linear_attention, linear_attention_reference)
from .recurrent import RecurrentDeltaFunction

__all__ = [
    "chunk_recurrence",
    "delta_product",
    "delta_product_reference",
    "delta_rule",
    "delta_rule_reference",
    "DeltaNet",
    "DeltaProductNet",
    "feature_dim",
    "feature_map",
    "gated_delta_rule",
    "gated_linear_attention",
    "gated_linear_attention_reference",
    "GatedDeltaNet",
    "GatedLinearAttention",
    "householder_product",
    "linear_attention",
    "linear_attention_reference",
    "LinearAttention",
    "RecurrentDeltaFunction",
    "Retention",
    "retention_decays",
    "ShortConvolution",
    "transition_matrix",
    "unit_lower_inverse",
    "ut_transform",
]
