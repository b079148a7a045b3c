r"""Chapter 40: sparse attention, blockwise attention and kNN memory (mechanisms and layers).

* :mod:`.patterns`: attention masks (local, strided, fixed, Longformer, BigBird) and block
  layouts.
* :mod:`.sparse_attention`: block-sparse attention (Numba kernels,
  :mod:`minimem.kernels.block_sparse_attention`) against its dense masked reference.
* :mod:`.blockwise`: the online-softmax merge of partial attention results.
* :mod:`.knn_memory`: an external kNN memory of past keys and values (Memorizing Transformers).
* :mod:`.layers`: ``SparseAttention`` and ``KNNAttention``, the Modules of a transformer.

Experiments are in :mod:`.lab`, figures in :mod:`.plots`, gradient-check cases in :mod:`.cases`.
"""
from .blockwise import (Partial, blockwise_attention, empty_partial, finish_partial,
    merge_partials, online_softmax_trace, partial_attention)
from .knn_memory import KNNMemory, Retrieved, knn_attention
from .layers import KNNAttention, SparseAttention
from .patterns import (attended_pairs, block_layout, density, expand_layout, factorized_masks,
    fixed_mask, mask_to_layout, reachability, sparse_mask, strided_mask, strided_pair_count)
from .sparse_attention import layout_mask, sparse_attention, sparse_attention_dense

__all__ = [
    "attended_pairs",
    "block_layout",
    "blockwise_attention",
    "density",
    "empty_partial",
    "expand_layout",
    "factorized_masks",
    "finish_partial",
    "fixed_mask",
    "knn_attention",
    "KNNAttention",
    "KNNMemory",
    "layout_mask",
    "mask_to_layout",
    "merge_partials",
    "online_softmax_trace",
    "Partial",
    "partial_attention",
    "reachability",
    "Retrieved",
    "sparse_attention",
    "sparse_attention_dense",
    "sparse_mask",
    "SparseAttention",
    "strided_mask",
    "strided_pair_count",
]
