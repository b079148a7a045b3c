r"""Blockwise Parallel Transformer: a transformer block computed query block by query block.

The pre-norm block (chapter 01) is, per position :math:`t`,

.. math:: y_t = x_t + \mathrm{Attn}(\mathrm{LN}_1(x))_t, \qquad
          z_t = y_t + \mathrm{FFN}(\mathrm{LN}_2(y_t)).

The FFN and the norms act on each position alone, and the attention of query :math:`t` is a
merge :math:`\oplus` over key blocks (chapter 40's online softmax). So the block can be
computed for one query block :math:`Q_b` at a time: its attention over the key blocks
(never the whole :math:`T \times T` score matrix), then its FFN (never the whole
:math:`T \times 4d` hidden layer). Keys and values :math:`K, V` (:math:`O(T d)`) are the only
whole-sequence activations; the peak transient memory grows linearly in :math:`T` instead of
quadratically.
"""
from __future__ import annotations

import tracemalloc

from ...autograd import no_grad, ops
from ...checks import check_float_tensor, check_int, check_ndim, check_nonempty, check_type
from ...nn.attention import MultiHeadAttention, TransformerBlock, merge_heads, split_heads
from ..sparse import blockwise_attention


def _check_block(fn, block, x):
    check_type(fn, "block", block, TransformerBlock)
    check_type(fn, "block.mixer", block.mixer, MultiHeadAttention)
    if block.training and block.drop.p:
        raise ValueError(f"{fn}: dropout must be off (block.eval() or dropout=0), got "
                         f"p = {block.drop.p}")
    check_float_tensor(fn, "x", x)
    check_ndim(fn, "x", x, 3)
    check_nonempty(fn, "x", x, axes=(1,))  # T >= 1: the blocks need a token
    if x.shape[-1] != block.mixer.d_model:
        raise ValueError(f"{fn}: expected x of shape (B, T, {block.mixer.d_model}), got "
                         f"{x.shape}")


def blockwise_block(block, x, query_block=64, key_block=64):
    """``block(x)`` of a pre-norm ``TransformerBlock`` (multi-head attention mixer), computed
    ``query_block`` positions at a time, attention over ``key_block`` keys at a time."""
    fn = "blockwise_block"
    _check_block(fn, block, x)
    qb = check_int(fn, "query_block", query_block, low=1)
    kb = check_int(fn, "key_block", key_block, low=1)
    att, T = block.mixer, x.shape[1]
    h = block.ln1(x)
    k = split_heads(att.W_k(h), att.n_heads)
    v = split_heads(att.W_v(h), att.n_heads)
    out = []
    for t0 in range(0, T, qb):
        t1 = min(T, t0 + qb)
        q = split_heads(att.W_q(h[:, t0:t1]), att.n_heads)
        stop = t1 if att.causal else T  # later keys are all masked for a causal block
        o = blockwise_attention(q, k[:, :, :stop], v[:, :, :stop], causal=att.causal,
                                block_size=kb)
        y = x[:, t0:t1] + att.W_o(merge_heads(o))
        out.append(y + block.ffn(block.ln2(y)))
    return ops.concatenate(out, axis=1)


def peak_forward_bytes(fn, *args):
    """The peak bytes NumPy allocates while ``fn(*args)`` runs without a graph (tracemalloc),
    and its result."""
    with no_grad():
        tracemalloc.start()
        try:
            result = fn(*args)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return peak, result
