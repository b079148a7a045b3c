r"""kNN memory (Memorizing Transformers, Wu et al. 2022): attend to retrieved past (key, value).

A layer keeps the keys and values of earlier segments in a FIFO store
:math:`\{(k_m, v_m)\}_{m=1}^{M}` (``capacity`` entries per batch element and head, the oldest
evicted first). A query :math:`q_t` retrieves its top-k neighbours by inner product,
:math:`\mathcal{R}_t = \operatorname{top\text{-}k}_m\, q_t \cdot k_m` (exact search), attends
over them and over the local (causal) keys, and mixes the two with a learned per-head gate
:math:`g_h = \sigma(b_h)`:

.. math:: o^{\text{mem}}_t = \sum_{m \in \mathcal{R}_t}
          \frac{e^{\tau q_t \cdot k_m}}{\sum_{m' \in \mathcal{R}_t} e^{\tau q_t \cdot k_{m'}}}\,v_m,
          \qquad o_t = g_h\, o^{\text{mem}}_t + (1 - g_h)\, o^{\text{local}}_t.

With ``gate=None`` the two pieces are instead merged exactly with the online-softmax merge
(``minimem.memory.sparse.blockwise.merge_partials``): one softmax over local and retrieved keys.
The memory is not differentiable: retrieved keys and values are constants, so no gradient
flows into what is stored (gradients reach the queries, the local path and the gate).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...autograd import Tensor, ops
from ...backend import get_default_dtype, get_xp
from ...checks import (check_bool, check_finite, check_float_array, check_float_tensor, check_int,
                      check_real)
from ...kernels.topk import batched_topk_inner_product
from .blockwise import Partial, empty_partial, finish_partial, merge_partials, partial_attention


class Retrieved(NamedTuple):
    """Top-k neighbours per query: keys (B, H, T, k, d_k), values (B, H, T, k, d_v), scores and
    memory indices (B, H, T, k), and ``positions`` (B, H, T, k): how many items had been added
    before each retrieved one (its age in the stream)."""

    keys: np.ndarray
    values: np.ndarray
    scores: np.ndarray
    indices: np.ndarray
    positions: np.ndarray


class KNNMemory:
    """A FIFO store of (key, value) pairs per batch element and head, searched exactly.

    ``add(keys, values)`` with (B, H, n, d_k) and (B, H, n, d_v) arrays or Tensors (stored
    detached); ``search(queries, topk)`` -> :class:`Retrieved`; ``clear()``.
    """

    def __init__(self, capacity, d_k, d_v, dtype=None):
        for name, val in (("capacity", capacity), ("d_k", d_k), ("d_v", d_v)):
            check_int("KNNMemory", name, val, low=1)
        self.capacity, self.d_k, self.d_v = int(capacity), int(d_k), int(d_v)
        self.dtype = np.dtype(dtype or get_default_dtype())
        self.clear()

    def clear(self):
        """Forget everything (the batch and head sizes are set again by the next add)."""
        self.keys = self.values = self.positions = None
        self.size, self.next_slot, self.n_added = 0, 0, 0

    def __len__(self):
        return self.size

    def add(self, keys, values):
        keys = keys.data if isinstance(keys, Tensor) else keys
        values = values.data if isinstance(values, Tensor) else values
        for name, a in (("keys", keys), ("values", values)):
            check_float_array("KNNMemory.add", name, a)
            check_finite("KNNMemory.add", name, a)  # a stored NaN would poison every search
        if keys.ndim != 4 or values.ndim != 4 or keys.shape[:3] != values.shape[:3] \
                or keys.shape[-1] != self.d_k or values.shape[-1] != self.d_v:
            raise ValueError(f"KNNMemory.add: expected keys (B, H, n, {self.d_k}) and values "
                             f"(B, H, n, {self.d_v}), got {keys.shape} and {values.shape}")
        xp = get_xp(keys)
        B, H, n = keys.shape[:3]
        if self.keys is None:
            self.keys = xp.zeros((B, H, self.capacity, self.d_k), dtype=self.dtype)
            self.values = xp.zeros((B, H, self.capacity, self.d_v), dtype=self.dtype)
            self.positions = np.zeros(self.capacity, dtype=np.int64)
        elif self.keys.shape[:2] != (B, H):
            raise ValueError(f"KNNMemory.add: the memory holds (B, H) = {self.keys.shape[:2]}, "
                             f"got keys for {(B, H)}; call clear() first")
        if n > self.capacity:  # only the newest `capacity` items would survive
            keys, values = keys[:, :, -self.capacity:], values[:, :, -self.capacity:]
            self.n_added += n - self.capacity
            n = self.capacity
        slots = (self.next_slot + np.arange(n)) % self.capacity  # FIFO: overwrite the oldest
        self.keys[:, :, slots] = keys
        self.values[:, :, slots] = values
        self.positions[slots] = self.n_added + np.arange(n)
        self.next_slot = int((self.next_slot + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)
        self.n_added += n

    def search(self, queries, topk):
        """The min(topk, size) stored pairs with the largest inner product with each query."""
        queries = queries.data if isinstance(queries, Tensor) else queries
        check_float_array("KNNMemory.search", "queries", queries)
        check_finite("KNNMemory.search", "queries", queries)
        if queries.ndim != 4 or queries.shape[-1] != self.d_k:
            raise ValueError(f"KNNMemory.search: queries must be (B, H, T, {self.d_k}), got "
                             f"{queries.shape}")
        check_int("KNNMemory.search", "topk", topk, low=1)
        B, H, T = queries.shape[:3]
        xp = get_xp(queries)
        k = min(int(topk), self.size)
        if k == 0:  # nothing stored yet: no neighbours
            z = np.zeros((B, H, T, 0), dtype=np.int64)
            return Retrieved(xp.zeros((B, H, T, 0, self.d_k), dtype=self.dtype),
                             xp.zeros((B, H, T, 0, self.d_v), dtype=self.dtype),
                             xp.zeros((B, H, T, 0), dtype=self.dtype), z, z)
        if self.keys.shape[:2] != (B, H):
            raise ValueError(f"KNNMemory.search: the memory holds (B, H) = "
                             f"{self.keys.shape[:2]}, got queries for {(B, H)}")
        scores, idx = batched_topk_inner_product(
            queries.astype(self.dtype).reshape(B * H, T, self.d_k),
            self.keys[:, :, :self.size].reshape(B * H, self.size, self.d_k), k)
        scores = scores.reshape(B, H, T, k)
        idx = idx.reshape(B, H, T, k)
        if xp is not np:
            idx = xp.asnumpy(idx)
        bi = xp.arange(B)[:, None, None, None]
        hi = xp.arange(H)[None, :, None, None]
        gi = xp.asarray(idx)
        return Retrieved(self.keys[bi, hi, gi], self.values[bi, hi, gi], scores, idx,
                         self.positions[idx])


def _retrieved_partial(q, retrieved, scale):
    """The :class:`Partial` of attention of q (B, H, T, D) over its retrieved pairs."""
    xp = get_xp(q.data)
    if retrieved.keys.shape[3] == 0:  # empty memory: the neutral element
        return empty_partial(q.shape, retrieved.values.shape[-1], q.dtype, xp)
    K = Tensor(retrieved.keys.astype(q.dtype))   # constants: no gradient into the memory
    V = Tensor(retrieved.values.astype(q.dtype))
    s = ops.einsum("bhtd,bhtkd->bhtk", q, K) * scale
    m = s.data.max(axis=-1, keepdims=True)
    p = ops.exp(s - Tensor(m))
    return Partial(m, ops.sum(p, axis=-1, keepdims=True), ops.einsum("bhtk,bhtkd->bhtd", p, V))


def knn_attention(q, local_kv, memory, topk, gate=None, causal=True, scale=None,
                  return_retrieved=False):
    """Local attention plus attention over the top-k pairs retrieved from ``memory``.

    ``q`` (B, H, T, D) Tensor; ``local_kv`` = (k, v) Tensors (B, H, S, D) and (B, H, S, Dv);
    ``memory`` a :class:`KNNMemory`; ``gate`` (H,) Tensor of logits (output
    ``g o_mem + (1 - g) o_local`` with ``g = sigmoid(gate)``) or None (one exact softmax over
    both, by :func:`merge_partials`). An empty memory contributes zeros (gated) or nothing.
    """
    if not isinstance(memory, KNNMemory):
        raise TypeError(f"knn_attention: memory must be a KNNMemory, got {type(memory).__name__}")
    if not (isinstance(local_kv, (tuple, list)) and len(local_kv) == 2):
        raise TypeError("knn_attention: local_kv must be a pair (k, v) of Tensors")
    k, v = local_kv
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.ndim != 4:
            raise ValueError(f"knn_attention: {name} must be a (B, H, T, D) Tensor, got "
                             f"{getattr(t, 'shape', type(t).__name__)}")
        check_float_tensor("knn_attention", name, t)
    check_bool("knn_attention", "causal", causal)
    if scale is not None:
        check_real("knn_attention", "scale", scale)
    H = q.shape[1]
    if gate is not None and (not isinstance(gate, Tensor) or gate.shape != (H,)):
        raise ValueError(f"knn_attention: gate must be a Tensor of shape ({H},) (one logit per "
                         f"head), got {getattr(gate, 'shape', type(gate).__name__)}")
    xp = get_xp(q.data)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    T, S = q.shape[2], k.shape[2]
    mask = xp.tri(T, S, S - T, dtype=bool) if causal else None
    local = partial_attention(q, k, v, mask, scale)
    retrieved = memory.search(q.data, topk)
    mem = _retrieved_partial(q, retrieved, scale)
    if gate is None:
        out = finish_partial(merge_partials(local, mem))
    else:
        g = ops.reshape(ops.sigmoid(gate), (1, H, 1, 1))
        out = g * finish_partial(mem) + (1.0 - g) * finish_partial(local)
    return (out, retrieved) if return_retrieved else out


