r"""Blockwise attention with the online softmax, and the exact merge of partial results.

Split the keys into pieces :math:`\mathcal{J}_1, \mathcal{J}_2, \dots` (key blocks, or the
local window, a memory, retrieved neighbours). For one query row the partial result of a piece
is the triple

.. math:: m = \max_{j \in \mathcal{J}} s_j, \qquad
          \ell = \sum_{j \in \mathcal{J}} e^{s_j - m}, \qquad
          O = \sum_{j \in \mathcal{J}} e^{s_j - m}\, v_j

(unnormalized output; an empty piece is :math:`(-\infty, 0, 0)`). Two pieces merge exactly:

.. math:: m = \max(m_a, m_b),\quad \ell = e^{m_a - m}\ell_a + e^{m_b - m}\ell_b,\quad
          O = e^{m_a - m} O_a + e^{m_b - m} O_b,

and attention over the union is :math:`o = O / \ell` (0 when :math:`\ell = 0`). Folding key
blocks one at a time into a running :math:`(m, \ell, O)` is the *online softmax*: memory
:math:`O(T b)` instead of :math:`O(T^2)`, the same result as dense attention.

:math:`m` only keeps the exponentials in range; :math:`O/\ell` does not depend on it, so it is
treated as a constant (no gradient flows through it) and ``l`` and ``O`` carry the gradient.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...autograd import Tensor, ops
from ...backend import get_xp
from ...checks import check_bool, check_float_tensor, check_int, check_real


class Partial(NamedTuple):
    """A partial attention result over some keys: running max ``m``, sum ``l``, output ``O``.

    ``m`` (..., T, 1) is a plain array (a constant); ``l`` (..., T, 1) and ``O`` (..., T, Dv)
    are Tensors.
    """

    m: object
    l: Tensor  # the paper's symbols
    O: Tensor


def _safe_exp_diff(a, b, xp):
    """e^(a - b) with e^(-inf - (-inf)) := 0 (an empty piece contributes nothing)."""
    with np.errstate(invalid="ignore"):
        d = a - b
    return xp.exp(xp.where(xp.isneginf(a), -xp.inf, d))


def merge_partials(a, b):
    """The exact merge of two :class:`Partial` results (see the module docstring)."""
    for name, p in (("a", a), ("b", b)):
        if not isinstance(p, Partial):
            raise TypeError(f"merge_partials: {name} must be a Partial(m, l, O), got "
                            f"{type(p).__name__}")
    if a.O.shape[-1] != b.O.shape[-1] or np.shape(a.m) != np.shape(b.m):
        raise ValueError(f"merge_partials: the partials must have matching shapes, got m "
                         f"{np.shape(a.m)} / {np.shape(b.m)}, O {a.O.shape} / {b.O.shape}")
    xp = get_xp(a.O.data)
    # Exercise 40.3 (2 pt): merge two partial softmax results (m, l, O) exactly: new running
    #   max m, then alpha = e^(m_a - m), beta = e^(m_b - m) (0 for an empty piece, m = -inf),
    #   l = alpha l_a + beta l_b, O = alpha O_a + beta O_b. m is an array, l and O are Tensors.
    # Needs: 0.1, 0.5
    ### BEGIN SOLUTION
    m = xp.maximum(a.m, b.m)
    alpha = Tensor(_safe_exp_diff(a.m, m, xp).astype(a.O.dtype))
    beta = Tensor(_safe_exp_diff(b.m, m, xp).astype(a.O.dtype))
    l_new = alpha * a.l + beta * b.l
    O_new = alpha * a.O + beta * b.O
    ### END SOLUTION
    return Partial(m, l_new, O_new)


def partial_attention(q, k, v, mask=None, scale=None):
    """The :class:`Partial` of attention of q (..., T, D) over keys k (..., S, D), values v.

    ``mask``: boolean broadcastable to (..., T, S), True = attend.
    """
    fn = "partial_attention"
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float_tensor(fn, name, t, ndim=range(2, 33))
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{fn}: expected q (..., T, D), k (..., S, D), v (..., S, Dv); got "
                         f"q {q.shape}, k {k.shape}, v {v.shape}")
    if scale is not None:
        check_real(fn, "scale", scale)
    if mask is not None and getattr(mask, "dtype", None) != bool:
        raise TypeError(f"{fn}: mask must be a boolean array, got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    xp = get_xp(q.data)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = (q @ ops.swapaxes(k, -1, -2)) * scale
    if mask is not None:
        mask = xp.broadcast_to(xp.asarray(mask), s.shape)
        s = ops.where(mask, s, Tensor(xp.asarray(-xp.inf, dtype=s.dtype)))
    m = s.data.max(axis=-1, keepdims=True)  # a constant: no gradient through the stabilizer
    p = ops.exp(s - Tensor(xp.where(xp.isneginf(m), 0.0, m).astype(s.dtype)))
    return Partial(m, ops.sum(p, axis=-1, keepdims=True), p @ v)


def finish_partial(part):
    """o = O / l, and 0 on rows that saw no key (l = 0)."""
    empty = part.l.data == 0
    denom = part.l + Tensor(empty.astype(part.O.dtype))
    return (part.O / denom) * Tensor((~empty).astype(part.O.dtype))


def empty_partial(shape_q, d_v, dtype, xp=np):
    """The neutral element (-inf, 0, 0) for queries of shape (..., T, D)."""
    lead = tuple(shape_q[:-1])
    return Partial(xp.full(lead + (1,), -xp.inf, dtype=dtype),
                   Tensor(xp.zeros(lead + (1,), dtype=dtype)),
                   Tensor(xp.zeros(lead + (d_v,), dtype=dtype)))


def blockwise_attention(q, k, v, causal=True, block_size=64, scale=None):
    """Attention of q (B, H, T, D) over k, v (B, H, S, D*) one key block at a time.

    The running :class:`Partial` is merged with each block's partial (the online softmax);
    equal to ``scaled_dot_product_attention(q, k, v, causal=causal)``.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.ndim < 2:
            raise TypeError(f"blockwise_attention: {name} must be a Tensor with >= 2 dims, got "
                            f"{type(t).__name__}")
        check_float_tensor("blockwise_attention", name, t)
    check_bool("blockwise_attention", "causal", causal)
    if scale is not None:
        check_real("blockwise_attention", "scale", scale)
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"blockwise_attention: expected q (..., T, D), k (..., S, D), v (..., S,"
                         f" Dv); got q {q.shape}, k {k.shape}, v {v.shape}")
    block_size = check_int("blockwise_attention", "block_size", block_size, low=1)
    xp = get_xp(q.data)
    T, S = q.shape[-2], k.shape[-2]
    state = empty_partial(q.shape, v.shape[-1], q.dtype, xp)
    for j0 in range(0, S, block_size):
        j1 = min(j0 + block_size, S)
        mask = None
        if causal:  # key j may be seen by query i when j <= i + S - T
            mask = xp.arange(j0, j1)[None, :] <= xp.arange(T)[:, None] + (S - T)
            if not mask.any():
                continue
        part = partial_attention(q, k[..., j0:j1, :], v[..., j0:j1, :], mask, scale)
        state = merge_partials(state, part)
    return finish_partial(state)


def online_softmax_trace(scores, values, block_size):
    """The running (m, l, o) of one query row after each key block (for plots).

    ``scores`` (S,), ``values`` (S,) or (S, Dv) arrays. Returns a dict of arrays with one entry
    per block: ``m``, ``l``, ``o`` (the normalized output so far, O / l) and ``end`` (keys seen).
    """
    scores = np.asarray(scores, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if scores.ndim != 1 or values.shape[0] != scores.shape[0]:
        raise ValueError(f"online_softmax_trace: expected scores (S,) and values (S, ...), got "
                         f"{scores.shape} and {values.shape}")
    vals = values.reshape(len(scores), -1)
    m, ell, O = -np.inf, 0.0, np.zeros(vals.shape[1])
    trace = {"m": [], "l": [], "o": [], "end": []}
    for j0 in range(0, len(scores), block_size):
        s, vb = scores[j0:j0 + block_size], vals[j0:j0 + block_size]
        m_new = max(m, s.max())
        alpha = np.exp(m - m_new)
        p = np.exp(s - m_new)
        m, ell, O = m_new, alpha * ell + p.sum(), alpha * O + p @ vb
        for key, val in (("m", m), ("l", ell), ("o", O / ell), ("end", j0 + len(s))):
            trace[key].append(val)
    out = {key: np.array(val) for key, val in trace.items()}
    if values.ndim == 1:
        out["o"] = out["o"][:, 0]
    return out
