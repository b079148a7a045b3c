"""Gradient-check cases of the attention-as-a-reduction chapter (key ``ring``), in float64.

Aaren's prefix attention in both modes (T not a power of two), the simulated ring (causal,
3 devices), split-KV decoding with uneven parts, landmark attention (all blocks, top-k
retrieval, decoding), the blockwise transformer block, rotary embeddings and multi-head
attention with them, and the Aaren and landmark layers. Registered when
:func:`minimem.chapters.load_cases` imports this module. (``ring_attention`` itself needs
several MPI processes: its backward is checked against dense attention under ``mpiexec`` in
tests/memory/reduction/test_ring_mpi.py.)
"""
from __future__ import annotations

import numpy as np

from ...autograd.gradcheck import leaf
from ...autograd.registry import register
from ...nn.attention import MultiHeadAttention, TransformerBlock
from ...nn.cases import layer_case
from ...nn.module import Module
from ...nn.rope import rope
from .bpt import blockwise_block
from .landmark import landmark_attention, landmark_decode
from .layers import Aaren, LandmarkAttention
from .prefix import prefix_attention
from .ring import ring_attention_simulated
from .split_kv import split_kv_decode

CH = "ring"


def _prefix_inputs(r):
    return leaf(r, 1, 2, 3), leaf(r, 1, 2, 5, 3), leaf(r, 1, 2, 5, 2)


register("prefix_attention (scan, T=5)", _prefix_inputs, chapter=CH)(
    lambda q, k, v: prefix_attention(q, k, v, mode="scan"))
register("prefix_attention (recurrent)", _prefix_inputs, chapter=CH)(
    lambda q, k, v: prefix_attention(q, k, v, mode="recurrent"))
register("ring_attention_simulated P=3",
         lambda r: (leaf(r, 1, 2, 6, 3), leaf(r, 1, 2, 6, 3), leaf(r, 1, 2, 6, 2)),
         chapter=CH)(lambda q, k, v: ring_attention_simulated(q, k, v, 3, causal=True))
register("split_kv_decode (3 parts)",
         lambda r: (leaf(r, 1, 2, 3), leaf(r, 1, 2, 7, 3), leaf(r, 1, 2, 7, 2)),
         chapter=CH)(lambda q, k, v: split_kv_decode(q, k, v, 3))
register("rope (T=4, D=6)", lambda r: (leaf(r, 1, 2, 4, 6),), chapter=CH)(
    lambda x: rope(x, np.array([0, 3, 1, 7])))
layer_case("MultiHeadAttention (rope)",
           lambda r: MultiHeadAttention(8, 2, rope=True, seed=r), (1, 4, 8), chapter=CH)
register("landmark_attention (b=3)",
         lambda r: (leaf(r, 1, 2, 11, 3), leaf(r, 1, 2, 11, 3), leaf(r, 1, 2, 11, 2)),
         chapter=CH)(lambda q, k, v: landmark_attention(q, k, v, 3))
register("landmark_attention (top_k=1)",
         lambda r: (leaf(r, 1, 2, 9, 3), leaf(r, 1, 2, 9, 3), leaf(r, 1, 2, 9, 2)),
         chapter=CH)(lambda q, k, v: landmark_attention(q, k, v, 2, top_k=1))
register("landmark_decode (top_k=2)",
         lambda r: (leaf(r, 1, 2, 3), leaf(r, 1, 2, 11, 3), leaf(r, 1, 2, 11, 2)),
         chapter=CH)(lambda q, k, v: landmark_decode(q, k, v, 2, top_k=2))
layer_case("LandmarkAttention (b=2)", lambda r: LandmarkAttention(4, 2, block=2, seed=r),
           (1, 7, 4), chapter=CH)
layer_case("Aaren (scan)", lambda r: Aaren(4, 2, seed=r), (1, 5, 4), chapter=CH)


class _Blockwise(Module):
    """``blockwise_block`` of a TransformerBlock, as a layer (for layer_case)."""

    def __init__(self, rng):
        super().__init__()
        self.block = TransformerBlock(4, 2, d_ff=6, seed=rng)

    def forward(self, x):
        return blockwise_block(self.block, x, query_block=2, key_block=2)


layer_case("blockwise_block (b=2)", _Blockwise, (1, 4, 4), chapter=CH)
