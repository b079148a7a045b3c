"""The layers of the sparse-attention chapter: Modules that put its mechanisms in a transformer.

* :class:`SparseAttention`: multi-head self-attention through a block-sparse pattern
  (:func:`.sparse_attention.sparse_attention`), a ``mixer`` for ``TransformerLM``.
* :class:`KNNAttention`: local causal attention plus a kNN memory of past keys and values
  (:func:`.knn_memory.knn_attention`, Memorizing Transformers).
"""
from __future__ import annotations


import numpy as np

from ...autograd import Tensor
from ...backend import get_rng
from ...checks import check_heads, check_int
from ...nn.attention import MultiHeadAttention, merge_heads, split_heads
from ...nn.layers import Linear
from ...nn.module import Module, Parameter
from .knn_memory import KNNMemory, knn_attention
from .patterns import KINDS, block_layout
from .sparse_attention import sparse_attention


class SparseAttention(MultiHeadAttention):
    """Multi-head self-attention whose heads attend through a block-sparse pattern.

    ``SparseAttention(d_model, n_heads, pattern="fixed", block_size=16, causal=True, **params)``
    with ``params`` of :func:`block_layout` in blocks (e.g. ``l=2, c=1`` for ``fixed``). It is a
    ``mixer`` for ``TransformerLM``: ``mixer=lambda **kw: SparseAttention(**kw, pattern=...)``
    (the extra ``layer`` keyword is accepted). Its layout for length T is
    ``block_layout(pattern, ceil(T / block_size), **params)``.
    """

    def __init__(self, d_model, n_heads, pattern="fixed", block_size=16, causal=True, bias=True,
                 seed=None, layer=0, **params):
        check_heads("SparseAttention", d_model, n_heads)
        if not isinstance(pattern, str) or pattern not in KINDS:
            raise ValueError(f"SparseAttention: pattern must be one of {KINDS}, got {pattern!r}")
        super().__init__(d_model, n_heads, causal=causal, bias=bias, seed=seed)
        check_int("SparseAttention", "block_size", block_size, low=1)
        block_layout(pattern, 1, **params)  # validates pattern and params now, not at forward
        self.pattern, self.block_size, self.params = pattern, int(block_size), params
        self.layer = layer

    def layout(self, T):
        """The block layout used for a sequence of length T."""
        return block_layout(self.pattern, -(-T // self.block_size), **self.params)

    def forward(self, x, mask=None):
        if mask is not None:
            raise ValueError("SparseAttention: a mask is not supported; the pattern is the mask")
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"SparseAttention: expected x of shape (B, T, {self.d_model}), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        q, k, v = (split_heads(W(x), self.n_heads) for W in (self.W_q, self.W_k, self.W_v))
        o = sparse_attention(q, k, v, self.layout(x.shape[1]), self.block_size,
                             causal=self.causal)
        return self.W_o(merge_heads(o))

    def extra_repr(self):
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, pattern={self.pattern!r}, "
                f"block_size={self.block_size}, causal={self.causal}, {self.params}")


class KNNAttention(Module):
    """Multi-head causal attention with a kNN memory of past segments (a Memorizing layer).

    Each call attends locally within ``x`` and over the ``topk`` pairs retrieved from
    ``memory``, gated per head by ``sigmoid(gate)``; then (if ``memorize``) appends this
    segment's keys and values to the memory. Call ``memory.clear()`` between documents.
    Usable as a ``mixer`` factory target (accepts ``layer``).
    """

    def __init__(self, d_model, n_heads, capacity=1024, topk=8, gated=True, seed=None, layer=0):
        super().__init__()
        check_heads("KNNAttention", d_model, n_heads)
        rng = get_rng(seed)
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.W_q, self.W_k, self.W_v, self.W_o = (Linear(d_model, d_model, seed=rng)
                                                  for _ in range(4))
        self.gate = Parameter(np.zeros(n_heads)) if gated else None
        self.memory = KNNMemory(capacity, self.d_head, self.d_head)
        self.topk, self.layer, self.memorize = topk, layer, True
        self.last_retrieved = None

    def forward(self, x):
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"KNNAttention: expected x of shape (B, T, {self.d_model}), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        q, k, v = (split_heads(W(x), self.n_heads) for W in (self.W_q, self.W_k, self.W_v))
        self.memory.dtype = np.dtype(x.dtype)
        o, self.last_retrieved = knn_attention(q, (k, v), self.memory, self.topk, self.gate,
                                               return_retrieved=True)
        if self.memorize:
            self.memory.add(k.data, v.data)
        return self.W_o(merge_heads(o))
