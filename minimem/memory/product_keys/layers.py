r"""The product-key memory layer (equations: :mod:`minimem.memory.product_keys`).

:math:`q = \mathrm{BN}(W_q x)` split per head into :math:`[q_1; q_2]`, the exact top-k of the
:math:`n^2` product keys, :math:`o = \sum_h \sum_j \mathrm{softmax}(s_h)_j V[i_{hj}]`.
"""
from __future__ import annotations

import numpy as np

from ...autograd.tensor import Tensor
from ...backend import get_default_dtype, get_rng, get_xp
from ...checks import check_int
from ...nn.layers import MLP, BatchNorm1d, Linear
from ...nn.module import Module, Parameter
from .product_keys import (
    _check_flag,
    flat_key_topk,
    memory_read,
    memory_read_reference,
    product_key_topk,
    product_key_topk_reference,
)

_SEARCH = {"fast": (product_key_topk, memory_read),
           "reference": (product_key_topk_reference, memory_read_reference),
           "flat": (flat_key_topk, memory_read)}


def _normal_table(rng, rows, cols, divisor, dtype, block=1 << 16):
    """``rng.standard_normal((rows, cols)) / divisor`` as ``dtype``, ``block`` rows at a time: the
    same numbers as one draw, without a float64 temporary of the whole table (4 GB for 1024^2
    slots of width 512)."""
    out = np.empty((rows, cols), dtype=dtype)
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        out[start:stop] = rng.standard_normal((stop - start, cols)) / divisor
    return out


def _check_pos_int(name, value, low=1):
    check_int("ProductKeyMemory", name, value, low=low)


def _check_sparse_impl(sparse_grad, impl):
    if sparse_grad and impl == "reference":
        raise ValueError("ProductKeyMemory: sparse_grad=True needs impl 'fast' or 'flat' (the "
                         "reference read is a dense gather), got impl 'reference'")


class ProductKeyMemory(Module):
    r"""A product-key memory layer: (..., d_in) -> (..., d_out).

    ``n_sub_keys`` = n sub-keys per half and head (N = n^2 slots), ``topk`` = k slots read per
    head, ``heads`` query heads sharing one value table ``values`` (N, d_out), ``d_key`` the
    full query size (even), ``query_norm`` "batch" (BatchNorm1d on the queries) or None,
    ``impl`` "fast" (kernel search, sparse backward), "reference" (engine ops) or "flat" (the
    exact scan of all N keys: the baseline; same result, O(N) per query). ``sparse_grad``:
    the value table's gradient is a :class:`~minimem.autograd.sparse.RowSparseGrad` of the rows
    read (as ``sparse=True`` of PyTorch's embeddings; pair it with ``optim.SparseAdam`` or plain
    ``optim.SGD``, which update only those rows); needs impl "fast" or "flat".

    After each forward, ``last_slots`` and ``last_weights`` (arrays (..., heads, k)) hold the
    slots read and their softmax weights. Use as a TransformerBlock's MLP with
    ``ffn=lambda d_model, n_heads, layer: ProductKeyMemory(d_model, d_model, n)``.
    """

    def __init__(self, d_in, d_out, n_sub_keys, topk=32, heads=4, d_key=128,
                 query_norm="batch", impl="fast", sparse_grad=False, seed=None, dtype=None):
        super().__init__()
        for name, v in (("d_in", d_in), ("d_out", d_out), ("n_sub_keys", n_sub_keys),
                        ("topk", topk), ("heads", heads), ("d_key", d_key)):
            _check_pos_int(name, v)
        if d_key % 2:
            raise ValueError(f"ProductKeyMemory: d_key must be even (two halves), got {d_key}")
        if topk > n_sub_keys ** 2:
            raise ValueError(f"ProductKeyMemory: topk must be <= n_sub_keys^2 = "
                             f"{n_sub_keys ** 2}, got {topk}")
        if query_norm not in ("batch", None):
            raise ValueError(f"ProductKeyMemory: query_norm must be 'batch' or None, got "
                             f"{query_norm!r}")
        if impl not in _SEARCH:
            raise ValueError(f"ProductKeyMemory: impl must be one of {list(_SEARCH)}, got "
                             f"{impl!r}")
        _check_flag("ProductKeyMemory", "sparse_grad", sparse_grad)
        _check_sparse_impl(sparse_grad, impl)
        rng, dt = get_rng(seed), dtype or get_default_dtype()
        self.d_in, self.d_out, self.n_sub_keys = d_in, d_out, n_sub_keys
        self.topk, self.heads, self.d_key = topk, heads, d_key
        self.query_norm, self.impl, self.sparse_grad = query_norm, impl, sparse_grad
        self.query = Linear(d_in, heads * d_key, seed=rng, dtype=dt)
        self.norm = BatchNorm1d(heads * d_key, dtype=dt) if query_norm == "batch" else None
        dh = d_key // 2
        # sub-key scores are then ~ N(0, 1) for a normalised query; values as the paper's
        # EmbeddingBag init, std d_out^-1/2
        self.C1 = Parameter((rng.standard_normal((heads, n_sub_keys, dh)) / np.sqrt(dh)).astype(dt))
        self.C2 = Parameter((rng.standard_normal((heads, n_sub_keys, dh)) / np.sqrt(dh)).astype(dt))
        self.values = Parameter(_normal_table(rng, n_sub_keys ** 2, d_out, np.sqrt(d_out), dt))
        self.last_slots = None
        self.last_weights = None

    @property
    def n_slots(self) -> int:
        return self.n_sub_keys ** 2

    def queries(self, x):
        """The two query halves (M, heads, d_key/2) of the rows of ``x`` (M, d_in)."""
        q = self.query(x)
        if self.norm is not None:
            q = self.norm(q)
        q = q.reshape(x.shape[0], self.heads, self.d_key)
        dh = self.d_key // 2
        return q[:, :, :dh], q[:, :, dh:]

    def forward(self, x):
        if not isinstance(x, Tensor):
            raise TypeError(f"ProductKeyMemory: input must be a Tensor, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.d_in:
            raise ValueError(f"ProductKeyMemory: expected input (..., {self.d_in}), got shape "
                             f"{x.shape}")
        lead = x.shape[:-1]
        h = x.reshape(-1, self.d_in)
        q1, q2 = self.queries(h)
        _check_sparse_impl(self.sparse_grad, self.impl)
        search, read = _SEARCH[self.impl]
        scores, slots = search(q1, q2, self.C1, self.C2, self.topk)
        out = (read(self.values, slots, scores, sparse_grad=True) if self.sparse_grad
               else read(self.values, slots, scores))
        s = scores.data
        w = get_xp(s).exp(s - s.max(axis=-1, keepdims=True))
        self.last_slots = slots.reshape(*lead, self.heads, self.topk)
        self.last_weights = (w / w.sum(axis=-1, keepdims=True)).reshape(*lead, self.heads,
                                                                        self.topk)
        return out.reshape(*lead, self.d_out)

    def flops_per_token(self) -> int:
        """Multiply-adds per token: query projection, sub-key scoring, candidates, read."""
        H, k, n = self.heads, self.topk, self.n_sub_keys
        k1 = min(k, n)
        return (self.d_in * H * self.d_key + H * n * self.d_key + H * k1 * k1
                + H * k * self.d_out)

    def extra_repr(self):
        return (f"d_in={self.d_in}, d_out={self.d_out}, n_sub_keys={self.n_sub_keys} "
                f"(N={self.n_slots}), topk={self.topk}, heads={self.heads}, "
                f"d_key={self.d_key}, query_norm={self.query_norm!r}, impl={self.impl!r}"
                + (", sparse_grad=True" if self.sparse_grad else ""))


def pkm_ffn(n_sub_keys, topk=32, heads=4, d_key=128, query_norm="batch", layers=None,
            d_ff=None, sparse_grad=False, seed=None):
    """A ``ffn=`` factory for ``TransformerBlock``/``TransformerLM``: a ProductKeyMemory
    (d_model -> d_model) in the blocks listed in ``layers`` (all blocks when None) and the
    usual MLP (hidden ``d_ff`` or 4 d_model) elsewhere."""
    rng = get_rng(seed)

    def factory(d_model, n_heads, layer):
        if layers is None or layer in layers:
            return ProductKeyMemory(d_model, d_model, n_sub_keys, topk=topk, heads=heads,
                                    d_key=d_key, query_norm=query_norm,
                                    sparse_grad=sparse_grad, seed=rng)
        return MLP(d_model, d_ff or 4 * d_model, seed=rng)

    return factory
