"""Gradient-check cases of the sparse-attention chapter (key ``sparse``), in float64.

Block-sparse attention with T not a multiple of b and a layout row with no block; the
blockwise online-softmax merge; kNN attention over a fixed memory. Registered when
:func:`minimem.chapters.load_cases` imports this module.
"""
from __future__ import annotations

import numpy as np

from ...autograd.gradcheck import leaf
from ...autograd.registry import register
from .blockwise import blockwise_attention, finish_partial, merge_partials, partial_attention
from .knn_memory import KNNMemory, knn_attention
from .sparse_attention import sparse_attention

_LAYOUT = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], dtype=bool)
_LAYOUT_EMPTY_ROW = np.array([[0, 0, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)

register("sparse_attention (causal, T=7, b=3)",
         lambda r: (leaf(r, 1, 2, 7, 3), leaf(r, 1, 2, 7, 3), leaf(r, 1, 2, 7, 2)),
         chapter="sparse")(lambda q, k, v: sparse_attention(q, k, v, _LAYOUT, 3))
register("sparse_attention (empty row, non-causal)",
         lambda r: (leaf(r, 1, 1, 8, 3), leaf(r, 1, 1, 8, 3), leaf(r, 1, 1, 8, 2)),
         chapter="sparse")(
    lambda q, k, v: sparse_attention(q, k, v, _LAYOUT_EMPTY_ROW, 3, causal=False))

register("blockwise_attention (causal, T=5, b=2)",
         lambda r: (leaf(r, 1, 2, 5, 3), leaf(r, 1, 2, 5, 3), leaf(r, 1, 2, 5, 2)),
         chapter="sparse")(lambda q, k, v: blockwise_attention(q, k, v, block_size=2))
register("merge_partials (two key sets)",
         lambda r: (leaf(r, 3, 2), leaf(r, 4, 2), leaf(r, 4, 2), leaf(r, 2, 2), leaf(r, 2, 2)),
         chapter="sparse")(
    lambda q, k1, v1, k2, v2: finish_partial(merge_partials(partial_attention(q, k1, v1),
                                                            partial_attention(q, k2, v2))))


def _case_memory(rng):
    mem = KNNMemory(6, 3, 2, dtype=np.float64)
    mem.add(rng.standard_normal((1, 2, 6, 3)), rng.standard_normal((1, 2, 6, 2)))
    return mem


_CASE_MEMORY = _case_memory(np.random.default_rng(7))

register("knn_attention (gated)",
         lambda r: (leaf(r, 1, 2, 3, 3), leaf(r, 1, 2, 3, 3), leaf(r, 1, 2, 3, 2), leaf(r, 2)),
         chapter="sparse")(lambda q, k, v, g: knn_attention(q, (k, v), _CASE_MEMORY, 2, g))
register("knn_attention (joint softmax)",
         lambda r: (leaf(r, 1, 2, 3, 3), leaf(r, 1, 2, 3, 3), leaf(r, 1, 2, 3, 2)),
         chapter="sparse")(lambda q, k, v: knn_attention(q, (k, v), _CASE_MEMORY, 3))
