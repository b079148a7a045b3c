r"""Product-key memory (Lample et al. 2019, "Large Memory Layers with Product Keys").

A memory of :math:`N = n^2` slots, each with a value :math:`V_i \in \mathbb{R}^{d_{out}}`,
read by a sparse attention over the :math:`k` best slots. For a token :math:`x` and a head
:math:`h`, the query is

.. math:: q = \mathrm{BN}(W_q x) = [q_1; q_2], \qquad q_1, q_2 \in \mathbb{R}^{d_k/2}

(the batch norm is optional). Each head has two sets of :math:`n` sub-keys
:math:`C_1, C_2 \in \mathbb{R}^{n \times d_k/2}`; slot :math:`i = a n + b` has the product key
:math:`[C_1[a]; C_2[b]]`, so its score splits into two sub-scores,

.. math:: s_i = \langle q, [C_1[a]; C_2[b]] \rangle = s^{(1)}_a + s^{(2)}_b,
          \qquad s^{(1)} = C_1 q_1, \; s^{(2)} = C_2 q_2 .

**Search.** :math:`\mathcal{A} = \mathrm{topk}(s^{(1)})`, :math:`\mathcal{B} =
\mathrm{topk}(s^{(2)})`; the :math:`k` best slots are the top-k of the :math:`k \times k`
candidate sums :math:`\{s^{(1)}_a + s^{(2)}_b : a \in \mathcal{A}, b \in \mathcal{B}\}`. This
is exact: if :math:`a \notin \mathcal{A}`, the :math:`k` rows :math:`a' \in \mathcal{A}` beat
:math:`a`, so :math:`k` slots :math:`(a', b)` beat :math:`(a, b)` (pigeonhole). Cost per query
and head: :math:`O(n\, d_k + k^2)` instead of :math:`O(N d_k)`.

**Read.** With :math:`\mathcal{I}_h` the chosen slots of head :math:`h`,

.. math:: w_h = \mathrm{softmax}\big((s_i)_{i \in \mathcal{I}_h}\big), \qquad
          o = \sum_h \sum_{j} w_{h j}\, V[i_{h j}] .

**Backward.** The selection is piecewise constant, so gradients flow through the :math:`k`
chosen scores only: :math:`\bar q_1 = \sum_j \bar s_j C_1[a_j]`,
:math:`\bar C_1[a_j] \mathrel{+}= \bar s_j q_1` (and the same for the second half), and for the
read :math:`\bar w_{j} = \langle V[i_j], \bar o \rangle`,
:math:`\bar V[i_j] \mathrel{+}= w_j \bar o`, a scatter-add into the rows that were read.

Two formulations (tested to agree, forward and backward, in float64):

* reference: :func:`product_key_topk_reference`, :func:`memory_read_reference`, written with
  engine ops (dense sub-score matrices, the :math:`k \times k` block as a tensor, a gather
  ``V[slots]``), differentiated by the engine;
* fast: :func:`product_key_topk` (the Numba two-level search of
  :mod:`minimem.kernels.product_topk` plus a sparse backward) and :func:`memory_read` (a
  gather with a scatter-add backward, :class:`WeightedRead`).

The layer :class:`~minimem.memory.product_keys.layers.ProductKeyMemory` maps (..., d_in) to
(..., d_out) and can replace the MLP of a ``TransformerBlock``; experiments (slot usage, the
training comparison, cost) are in :mod:`minimem.memory.product_keys.lab`.
"""
from __future__ import annotations


import numpy as np

from ...autograd import ops
from ...autograd.function import Function
from ...autograd.sparse import RowSparseGrad
from ...autograd.tensor import Tensor
from ...backend import get_xp
from ...checks import check_int
from ...kernels.product_topk import picked_scores_backward, product_topk
from ...kernels.topk import topk_inner_product
from ...kernels.weighted_read import (gather_weighted_rows, gather_weighted_rows_grad_w,
                                      scatter_weighted_rows)


# ------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------
def _check_flag(fn, name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be True or False, got {value!r}")


def _tensor(fn, name, x):
    if isinstance(x, Tensor):
        return x
    if hasattr(x, "shape") and getattr(x, "dtype", np.dtype(object)).kind == "f":
        return Tensor(x)
    raise TypeError(f"{fn}: {name} must be a floating Tensor or array, got "
                    f"{type(x).__name__}")


def _check_search(fn, q1, q2, C1, C2, k):
    """Tensors of shape q (M, H, d/2) and C (H, n, d/2); a bare (M, d/2), (n, d/2) is H = 1."""
    q1, q2, C1, C2 = (_tensor(fn, nm, v) for nm, v in
                      (("q1", q1), ("q2", q2), ("C1", C1), ("C2", C2)))
    if C1.ndim not in (2, 3) or C1.shape != C2.shape:
        raise ValueError(f"{fn}: C1, C2 must share a shape (n, d/2) or (H, n, d/2), got "
                         f"{C1.shape} and {C2.shape}")
    want = q1.ndim == C1.ndim and q1.shape == q2.shape and q1.shape[-1] == C1.shape[-1] and (
        C1.ndim == 2 or q1.shape[1] == C1.shape[0])
    if not want:
        exp = "(M, d/2)" if C1.ndim == 2 else f"(M, {C1.shape[0]}, d/2)"
        raise ValueError(f"{fn}: q1, q2 must both have shape {exp} with d/2 = {C1.shape[-1]}, "
                         f"got {q1.shape} and {q2.shape}")
    n = C1.shape[-2]
    check_int(fn, "k", k, low=1, high=n * n)  # at most n^2 slots exist
    return q1, q2, C1, C2


def _check_read(fn, V, slots, scores):
    V = _tensor(fn, "V", V)
    if V.ndim != 2:
        raise ValueError(f"{fn}: V must be a value table (N, d_out), got shape {V.shape}")
    idx = slots.data if isinstance(slots, Tensor) else get_xp(V.data).asarray(slots)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{fn}: slots must be integers, got dtype {idx.dtype}")
    scores = _tensor(fn, "scores", scores)
    if idx.ndim != 3 or scores.shape != idx.shape:
        raise ValueError(f"{fn}: slots and scores must both be (M, H, k), got {idx.shape} and "
                         f"{scores.shape}")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= V.shape[0]):
        raise ValueError(f"{fn}: slots must lie in [0, {V.shape[0]}), got values from "
                         f"{int(idx.min())} to {int(idx.max())}")
    return V, idx, scores


# ------------------------------------------------------------------------------------------
# Reference formulation: engine ops, dense intermediates, the engine's backward
# ------------------------------------------------------------------------------------------
def product_key_topk_reference(q1, q2, C1, C2, k):
    """Exact top-k product-key scores: ``(scores (M, H, k) Tensor, slots (M, H, k) int64)``.

    ``q1, q2`` (M, H, d/2) query halves, ``C1, C2`` (H, n, d/2) sub-keys (or (M, d/2) and
    (n, d/2) for one head: then the outputs are (M, k)). Slot of sub-keys (a, b): ``a * n + b``.
    Scores are decreasing along the last axis and differentiable.
    """
    q1, q2, C1, C2 = _check_search("product_key_topk_reference", q1, q2, C1, C2, k)
    if C1.ndim == 2:  # one head: add the head axis and drop it at the end
        s, i = product_key_topk_reference(q1.reshape(q1.shape[0], 1, -1),
                                          q2.reshape(q2.shape[0], 1, -1),
                                          C1.reshape(1, *C1.shape), C2.reshape(1, *C2.shape), k)
        return s.reshape(s.shape[0], k), i.reshape(i.shape[0], k)
    M, H, n = q1.shape[0], q1.shape[1], C1.shape[1]
    k1 = min(k, n)
    # Exercise 30.1 (3 pt): sub-key scoring and the candidate top-k: s1 = C1 q1, s2 = C2 q2 per
    #   head (einsum), the top-k1 of each (k1 = min(k, n), ops.topk), the k1 x k1 candidate sums
    #   and their top-k; set `scores` (M, H, k) Tensor and `slots` (M, H, k) int array a*n + b.
    # Needs: 0.2, 0.5
    ### BEGIN SOLUTION
    s1 = ops.einsum("mhd,hnd->mhn", q1, C1)
    s2 = ops.einsum("mhd,hnd->mhn", q2, C2)
    v1, a = ops.topk(s1, k1, axis=-1)
    v2, b = ops.topk(s2, k1, axis=-1)
    cand = (v1.reshape(M, H, k1, 1) + v2.reshape(M, H, 1, k1)).reshape(M, H, k1 * k1)
    scores, pos = ops.topk(cand, k, axis=-1)
    pos = pos.data
    slots = (get_xp(pos).take_along_axis(a.data, pos // k1, axis=-1) * n
             + get_xp(pos).take_along_axis(b.data, pos % k1, axis=-1))
    ### END SOLUTION
    return scores, slots


def memory_read_reference(V, slots, scores):
    """``o_m = sum_h sum_j softmax(scores[m, h])_j V[slots[m, h, j]]``, shape (M, d_out).

    ``V`` (N, d_out) values, ``slots`` (M, H, k) integers, ``scores`` (M, H, k) Tensor.
    """
    V, idx, scores = _check_read("memory_read_reference", V, slots, scores)
    # Exercise 30.2 (2 pt): the softmax-weighted read: w = softmax over the k scores of each
    #   head, then out (M, d_out) = the sum over heads and chosen slots of w * V[slot].
    # Needs: 0.1, 0.2, 0.4, 0.5
    ### BEGIN SOLUTION
    w = ops.softmax(scores, axis=-1)
    rows = V[idx]                                   # (M, H, k, d_out)
    out = (w.reshape(*w.shape, 1) * rows).sum(axis=(1, 2))
    ### END SOLUTION
    return out


# ------------------------------------------------------------------------------------------
# Fast formulation: the Numba search, sparse backwards
# ------------------------------------------------------------------------------------------
class PickedScores(Function):
    r"""The chosen scores :math:`s_j = \langle q_1, C_1[a_j]\rangle + \langle q_2, C_2[b_j]\rangle`.

    The forward receives them already computed by the search kernel (``values``); the backward
    touches only the chosen sub-keys: cost O(M H k d), independent of n.
    """

    @staticmethod
    def forward(ctx, q1, q2, C1, C2, a, b, values):
        ctx.save_for_backward(q1, q2, C1, C2, a, b)
        return values

    @staticmethod
    def backward(ctx, g):
        q1, q2, C1, C2, a, b = ctx.saved_tensors
        gq1, gC1 = picked_scores_backward(q1, C1, a, g)
        gq2, gC2 = picked_scores_backward(q2, C2, b, g)
        return gq1, gq2, gC1, gC2, None, None, None


def _sub_scores(q, C):
    """(H*M, n) sub-scores of every head: one batched BLAS matmul (H, M, d) @ (H, d, n)."""
    xp = get_xp(q)
    s = xp.matmul(q.transpose(1, 0, 2), C.transpose(0, 2, 1))
    return s.reshape(-1, C.shape[1])


def product_key_topk(q1, q2, C1, C2, k):
    """Same contract as :func:`product_key_topk_reference`, computed by the Numba kernel.

    The sub-scores are two batched matmuls; the two-level top-k is
    :func:`minimem.kernels.product_topk` (no sort of n or N entries, at most k x k candidates);
    the backward (:class:`PickedScores`) touches only the k chosen sub-key pairs.
    """
    q1, q2, C1, C2 = _check_search("product_key_topk", q1, q2, C1, C2, k)
    if C1.ndim == 2:
        s, i = product_key_topk(q1.reshape(q1.shape[0], 1, -1), q2.reshape(q2.shape[0], 1, -1),
                                C1.reshape(1, *C1.shape), C2.reshape(1, *C2.shape), k)
        return s.reshape(s.shape[0], k), i.reshape(i.shape[0], k)
    (M, H, _), n = q1.shape, C1.shape[1]
    values, slots = product_topk(_sub_scores(q1.data, C1.data), _sub_scores(q2.data, C2.data), k)
    values = values.reshape(H, M, k).transpose(1, 0, 2)
    slots = slots.reshape(H, M, k).transpose(1, 0, 2)
    values = values.astype(q1.dtype, copy=False)
    scores = PickedScores.apply(q1, q2, C1, C2, slots // n, slots % n, values)
    return scores, slots


def product_keys_flat(C1, C2):
    """The explicit keys of all N = n^2 slots, ``K[h, a n + b] = [C1[h, a]; C2[h, b]]``:
    an array (H, N, d) (or (N, d) for 2-D sub-keys). O(N d) memory: for tests and baselines."""
    xp = get_xp(C1)
    if C1.ndim == 2:
        return product_keys_flat(C1[None], C2[None])[0]
    n = C1.shape[1]
    left = xp.repeat(C1, n, axis=1)             # row a n + b holds C1[a]
    right = xp.tile(C2, (1, n, 1))              # ... and C2[b]
    return xp.concatenate([left, right], axis=2)


def flat_key_topk(q1, q2, C1, C2, k):
    """The brute-force baseline: the same result as :func:`product_key_topk` from an exact
    scan of all N product keys (:func:`minimem.kernels.topk.topk_inner_product`, O(N d) per query).

    The keys of one head are built at a time (an (N, d) array); the backward is the same
    sparse :class:`PickedScores`.
    """
    q1, q2, C1, C2 = _check_search("flat_key_topk", q1, q2, C1, C2, k)
    if C1.ndim == 2:
        s, i = flat_key_topk(q1.reshape(q1.shape[0], 1, -1), q2.reshape(q2.shape[0], 1, -1),
                             C1.reshape(1, *C1.shape), C2.reshape(1, *C2.shape), k)
        return s.reshape(s.shape[0], k), i.reshape(i.shape[0], k)
    xp = get_xp(q1.data)
    H, n = q1.shape[1], C1.shape[1]
    values, slots = [], []
    for h in range(H):
        keys = product_keys_flat(C1.data[h], C2.data[h])
        q = xp.concatenate([q1.data[:, h], q2.data[:, h]], axis=1)
        v, i = topk_inner_product(q, keys, k)
        values.append(v)
        slots.append(i)
    values = xp.stack(values, axis=1).astype(q1.dtype, copy=False)
    slots = xp.stack(slots, axis=1)
    return PickedScores.apply(q1, q2, C1, C2, slots // n, slots % n, values), slots


class WeightedRead(Function):
    r""":math:`o_m = \sum_j w_{mj} V[i_{mj}]` for ``V`` (N, d), ``idx`` and ``w`` (M, J).

    The backward's *work* is O(M J d), proportional to the rows read, never to the table
    size N. ``sparse_grad=False``: ``V``'s gradient is a dense, zero-initialised array
    (``numpy.zeros`` maps it lazily) filled by a scatter-add over the :math:`M J` rows read;
    ``sparse_grad=True``: it is a :class:`~minimem.autograd.sparse.RowSparseGrad` that keeps the
    factors :math:`(i_{mj}, w_{mj}, \bar o_m)` as they are (O(M J + M d) numbers, no work), and
    the optimizer updates only the rows read. Kernels:
    :func:`minimem.kernels.weighted_read.gather_weighted_rows`, ``gather_weighted_rows_grad_w``
    and ``scatter_weighted_rows`` (together ``gather_weighted_rows_backward``; NumPy twins
    ``*_reference``; Exercise 30.3).
    """

    @staticmethod
    def forward(ctx, V, idx, w, sparse_grad=False):
        ctx.save_for_backward(V, idx, w)
        ctx.sparse_grad = sparse_grad
        return gather_weighted_rows(V, idx, w)

    @staticmethod
    def backward(ctx, g):
        V, idx, w = ctx.saved_tensors
        need_V, _, need_w = ctx.needs_input_grad   # a frozen table or fixed weights: skip it
        grad_w = gather_weighted_rows_grad_w(V, idx, g).astype(w.dtype, copy=False) \
            if need_w else None
        if not need_V:
            grad_V = None
        elif ctx.sparse_grad:
            grad_V = RowSparseGrad.grouped(idx, w, g, V.shape)
        else:
            grad_V = scatter_weighted_rows(get_xp(V).zeros(V.shape, dtype=V.dtype), idx, w, g)
        return grad_V, None, grad_w


def weighted_read(V, idx, w, sparse_grad=False):
    """``o[m] = sum_j w[m, j] V[idx[m, j]]``: ``V`` (N, d) Tensor, ``idx`` (M, J) ints, ``w``
    (M, J) Tensor; differentiable in ``V`` (scatter-add backward, a row-sparse ``V.grad`` when
    ``sparse_grad``) and ``w``."""
    V = _tensor("weighted_read", "V", V)
    w = _tensor("weighted_read", "w", w)
    _check_flag("weighted_read", "sparse_grad", sparse_grad)
    i = idx.data if isinstance(idx, Tensor) else get_xp(V.data).asarray(idx)
    if V.ndim != 2:
        raise ValueError(f"weighted_read: V must be (N, d), got shape {V.shape}")
    if i.dtype.kind not in "iu":
        raise TypeError(f"weighted_read: idx must be (M, J) integers, got dtype {i.dtype}")
    if i.ndim != 2 or w.shape != i.shape:
        raise ValueError(f"weighted_read: idx must be (M, J) integers and w (M, J), got idx "
                         f"{i.dtype} {i.shape} and w {w.shape}")
    if i.size and (int(i.min()) < 0 or int(i.max()) >= V.shape[0]):
        raise ValueError(f"weighted_read: idx must lie in [0, {V.shape[0]}), got values from "
                         f"{int(i.min())} to {int(i.max())}")
    return WeightedRead.apply(V, i, w, sparse_grad=sparse_grad)


def memory_read(V, slots, scores, sparse_grad=False):
    """Same contract as :func:`memory_read_reference`: softmax per head, then
    :func:`weighted_read` over the H * k slots of each row (scatter-add backward into ``V``;
    a row-sparse ``V.grad`` when ``sparse_grad``)."""
    V, idx, scores = _check_read("memory_read", V, slots, scores)
    _check_flag("memory_read", "sparse_grad", sparse_grad)
    M, H, k = idx.shape
    w = ops.softmax(scores, axis=-1)
    return WeightedRead.apply(V, idx.reshape(M, H * k), w.reshape(M, H * k),
                              sparse_grad=sparse_grad)
