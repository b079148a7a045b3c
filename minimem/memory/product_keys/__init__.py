r"""Chapter 30: product-key memory (the chapter's mechanisms and layers).

* :mod:`.product_keys`: the exact product-key search (two sub-key top-k lists, then the
  :math:`k \times k` candidate block), the flat-scan baseline and the sparse memory read
  :math:`m = \sum_j w_j V[i_j]` with row-sparse value gradients.
* :mod:`.layers`: ``ProductKeyMemory`` and ``pkm_ffn`` (a memory in place of a feed-forward).

Experiments (slot usage, many facts, search cost) are in :mod:`.lab`, figures in :mod:`.plots`,
gradient-check cases in :mod:`.cases`.
"""
from .layers import ProductKeyMemory, pkm_ffn
from .product_keys import (PickedScores, WeightedRead, flat_key_topk, memory_read,
    memory_read_reference, product_key_topk, product_key_topk_reference, product_keys_flat,
    weighted_read)

__all__ = [
    "flat_key_topk",
    "memory_read",
    "memory_read_reference",
    "PickedScores",
    "pkm_ffn",
    "product_key_topk",
    "product_key_topk_reference",
    "product_keys_flat",
    "ProductKeyMemory",
    "weighted_read",
    "WeightedRead",
]
