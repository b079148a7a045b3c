r"""Dense softmax attention, forward and backward: BLAS products around one fused row pass.

For queries :math:`q_i`, keys :math:`k_j` and values :math:`v_j` of one (batch, head) pair,
with scale :math:`\tau` (default :math:`1/\sqrt{D}`) and the set :math:`\mathcal{A}_i` of keys
row i may attend to (all keys; the causal prefix :math:`j \le i + S - T`; and/or a boolean mask):

.. math:: s_{ij} = q_i \cdot k_j,\qquad
          P_{ij} = \frac{e^{\tau s_{ij} - m_i}}{\sum_{l \in \mathcal{A}_i} e^{\tau s_{il} - m_i}}
          \ (j \in \mathcal{A}_i),\quad P_{ij} = 0 \text{ otherwise},\qquad
          o_i = \sum_j P_{ij} v_j,

with :math:`m_i = \max_{l \in \mathcal{A}_i} \tau s_{il}`. A row with no allowed key gets
:math:`P_{i\cdot} = 0` and :math:`o_i = 0`. Given :math:`\bar o` (and optionally a gradient
:math:`\bar P^{\mathrm{ext}}` of the weights themselves), the backward is

.. math:: \bar P = \bar o\, V^\top + \bar P^{\mathrm{ext}},\qquad
          \delta_i = \sum_j P_{ij} \bar P_{ij},\qquad
          \bar s_{ij} = \tau\, P_{ij} (\bar P_{ij} - \delta_i),

.. math:: \bar Q = \bar S K,\qquad \bar K = \bar S^\top Q,\qquad \bar V = P^\top \bar o.

(:math:`\bar s_{ij} = 0` wherever :math:`P_{ij} = 0`, so the backward needs no mask.)

The fast formulation keeps the four products in BLAS (``np.matmul`` over the batch axes) and
fuses everything between them into one Numba pass per row: scale, mask, max, exp, sum and
normalize in the forward; :math:`\delta_i` and :math:`\bar s_{ij}` in the backward. With
``causal=True`` the rows are cut into blocks of queries and each block's products stop at the
last key it may see, which skips up to half of the multiply-adds of a long sequence (a key
block's :math:`\bar K, \bar V` rows likewise start at the first query that sees them). Short
sequences go through the products for all (batch, head) pairs at once (few calls); longer
ones in groups of pairs whose weights stay in cache between the passes.

Why this split: at head sizes D = 16 to 64 no loop that Numba compiles multiplies matrices as
fast as BLAS, so the products stay there; what NumPy cannot fuse is the softmax between them
(the composed formulation makes seven passes over :math:`T \times S` arrays and as many
temporaries, with a scalar ``exp``), and that is the kernel's part, with a vectorized ``exp``
(:mod:`.polynomial_exp`). ``*_reference`` are the plain NumPy/CuPy twins (full products, then
the softmax of the whole row): the tests compare the two, and CuPy arrays take the reference.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from numba import prange

from ..backend import get_xp
from ._jit import jit, pick_kernel
from .polynomial_exp import exp_nonpositive

# Measured on one core against the alternatives (``minimem bench engine``): the heads go through
# the products in groups of at most GROUP_WEIGHTS weights (1 MiB of float32: the group's block
# of weights stays in cache from the product that writes it to the passes that read it; all
# heads at once spill to memory, one head at a time pays a call per product per head), and
# causal products in blocks of CAUSAL_BLOCK query rows.
GROUP_WEIGHTS = 1 << 18
CAUSAL_BLOCK = 64


# ---------------------------------------------------------------------------------------------
# Argument checks (shared by the fast path and the reference)
# ---------------------------------------------------------------------------------------------
def _check_float(fn, name, a, ndim_min=2):
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{fn}: argument '{name}' must be an array, got {type(a).__name__}")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}: argument '{name}' must be float32 or float64, got dtype {a.dtype}")
    if a.ndim < ndim_min:
        raise ValueError(f"{fn}: argument '{name}' must have at least {ndim_min} dims "
                         f"(..., rows, features), got shape {a.shape}")


def check_attention_args(fn, q, k, v, mask, causal, scale):
    """Check q (..., T, D), k (..., S, D), v (..., S, Dv), a boolean mask broadcastable to
    (..., T, S), ``causal`` a bool and ``scale`` None or a positive finite number; returns the
    scale to use."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        _check_float(fn, name, a)
    if q.shape[-1] < 1 or k.shape[-2] < 1:
        raise ValueError(f"{fn}: q and k need D >= 1 features and k S >= 1 keys, got q {q.shape}, "
                         f"k {k.shape}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{fn}: q, k and v must share one dtype, got {q.dtype}, {k.dtype}, "
                        f"{v.dtype}")
    if (q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2] or q.shape[-1] != k.shape[-1]
            or k.shape[-2] != v.shape[-2]):
        raise ValueError(f"{fn}: expected q (..., T, D), k (..., S, D), v (..., S, Dv) with the "
                         f"same leading dims; got q {q.shape}, k {k.shape}, v {v.shape}")
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"{fn}: causal must be True or False, got {causal!r}")
    if mask is not None:
        if getattr(mask, "dtype", None) != np.bool_:
            raise TypeError(f"{fn}: mask must be a boolean array, got "
                            f"{getattr(mask, 'dtype', type(mask).__name__)}")
        want = q.shape[:-1] + (k.shape[-2],)
        try:
            ok = np.broadcast_shapes(mask.shape, want) == want
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{fn}: mask of shape {mask.shape} does not broadcast to the "
                             f"attention weights {want}")
    if scale is None:
        return q.shape[-1] ** -0.5
    if not isinstance(scale, numbers.Real) or isinstance(scale, bool):
        raise TypeError(f"{fn}: scale must be a positive finite number, got {scale!r}")
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"{fn}: scale must be a positive finite number, got {scale!r}")
    return float(scale)


# ---------------------------------------------------------------------------------------------
# The fused row passes. ``limit`` is the number of leading keys the row may see (the causal
# prefix; S without causal): entries from ``limit`` on are set to 0 and never read.
# ---------------------------------------------------------------------------------------------
@jit
def _divide_row(row, limit, total):
    """row[:limit] /= total, as one division and a multiply per entry."""
    inv = row.dtype.type(1) / total
    for j in range(limit):
        row[j] *= inv


@jit(reassoc=True)
def _softmax_row(p, n, i, limit, scale):
    """p[n, i, :limit] holds s_ij; overwrite the row with P_ij (one row, every key allowed)."""
    row = p[n, i]
    zero = row.dtype.type(0)   # accumulate in the array's dtype: the loops vectorize
    if limit > 0:
        m = row[0]
        for j in range(1, limit):
            m = max(m, row[j])
        total = zero
        for j in range(limit):
            e = exp_nonpositive(scale * (row[j] - m))
            row[j] = e
            total += e
        _divide_row(row, limit, total)
    for j in range(limit, row.shape[0]):
        row[j] = zero


@jit(reassoc=True)
def _masked_softmax_row(p, allowed, n, i, limit, scale):
    """As :func:`_softmax_row`, where only keys with ``allowed[n, i, j]`` count."""
    row, ok = p[n, i], allowed[n, i]
    zero = row.dtype.type(0)
    m = row.dtype.type(-np.inf)
    for j in range(limit):
        if ok[j]:
            m = max(m, row[j])
    if m == -np.inf:   # no allowed key (or every allowed score is -inf): a row of zeros
        limit = 0
    else:
        total = zero
        for j in range(limit):
            e = exp_nonpositive(scale * (row[j] - m)) if ok[j] else zero
            row[j] = e
            total += e
        _divide_row(row, limit, total)
    for j in range(limit, row.shape[0]):
        row[j] = zero


@jit(reassoc=True)
def _softmax_backward_row(p, ds, n, i, limit, scale):
    """ds[n, i, :limit] holds dP_ij; overwrite the row with ds_ij = scale P_ij (dP_ij - delta_i)."""
    prow, row = p[n, i], ds[n, i]
    delta = row.dtype.type(0)
    for j in range(limit):
        delta += prow[j] * row[j]
    for j in range(limit):
        row[j] = scale * prow[j] * (row[j] - delta)
    for j in range(limit, row.shape[0]):
        row[j] = 0


@jit
def _limit(i, offset, S):
    return min(S, max(0, i + offset))


@jit
def _softmax_rows_serial(p, offset, scale):
    N, T, S = p.shape
    for r in range(N * T):
        i = r % T
        _softmax_row(p, r // T, i, _limit(i, offset, S), scale)


@jit(parallel=True)
def _softmax_rows_parallel(p, offset, scale):
    N, T, S = p.shape
    for r in prange(N * T):
        i = r % T
        _softmax_row(p, r // T, i, _limit(i, offset, S), scale)


@jit
def _masked_softmax_rows_serial(p, allowed, offset, scale):
    N, T, S = p.shape
    for r in range(N * T):
        i = r % T
        _masked_softmax_row(p, allowed, r // T, i, _limit(i, offset, S), scale)


@jit(parallel=True)
def _masked_softmax_rows_parallel(p, allowed, offset, scale):
    N, T, S = p.shape
    for r in prange(N * T):
        i = r % T
        _masked_softmax_row(p, allowed, r // T, i, _limit(i, offset, S), scale)


@jit
def _softmax_backward_rows_serial(p, ds, offset, scale):
    N, T, S = p.shape
    for r in range(N * T):
        i = r % T
        _softmax_backward_row(p, ds, r // T, i, _limit(i, offset, S), scale)


@jit(parallel=True)
def _softmax_backward_rows_parallel(p, ds, offset, scale):
    N, T, S = p.shape
    for r in prange(N * T):
        i = r % T
        _softmax_backward_row(p, ds, r // T, i, _limit(i, offset, S), scale)


# ---------------------------------------------------------------------------------------------
# The products, block by block
# ---------------------------------------------------------------------------------------------
def _query_blocks(T, S, causal):
    """(r0, r1, c1): query rows r0:r1 see at most the keys 0:c1."""
    if not causal:
        return [(0, T, S)]
    b = CAUSAL_BLOCK
    return [(r0, min(T, r0 + b), min(S, max(0, min(T, r0 + b) + S - T))) for r0 in range(0, T, b)]


def _key_blocks(T, S, causal):
    """(c0, c1, r0): keys c0:c1 are seen by the query rows r0:T at most."""
    if not causal:
        return [(0, S, 0)]
    b = CAUSAL_BLOCK
    return [(c0, min(S, c0 + b), min(T, max(0, c0 - (S - T)))) for c0 in range(0, S, b)]


def _offset(T, S, causal):
    """Row i sees keys j < i + offset (capped at S)."""
    return S - T + 1 if causal else S


def _rows3(a, T, S):
    return a.reshape(-1, T, S)


def _groups(lead, T, S):
    """Index expressions that cut the batch (leading) axes into groups of at most
    GROUP_WEIGHTS weights: all at once, slices of the first axis, or single (batch, head)
    pairs."""
    total = T * S * math.prod(lead)
    if not lead or total <= GROUP_WEIGHTS:
        return [...]
    per_first = total // lead[0]          # the weights of one index of the first axis
    if per_first > GROUP_WEIGHTS:
        return list(np.ndindex(*lead))
    step = GROUP_WEIGHTS // per_first
    return [slice(i, i + step) for i in range(0, lead[0], step)]


def _forward_group(q, k, v, p, o, allowed, causal, scale):
    T, S = q.shape[-2], k.shape[-2]
    kt = np.swapaxes(k, -1, -2)
    blocks = _query_blocks(T, S, causal)
    for r0, r1, c1 in blocks:
        if c1:
            np.matmul(q[..., r0:r1, :], kt[..., :c1], out=p[..., r0:r1, :c1])
    p3, offset = _rows3(p, T, S), _offset(T, S, causal)
    if allowed is None:
        pick_kernel(_softmax_rows_serial, _softmax_rows_parallel, p.size)(p3, offset, scale)
    else:
        pick_kernel(_masked_softmax_rows_serial, _masked_softmax_rows_parallel, p.size)(
            p3, allowed.reshape(p3.shape), offset, scale)
    for r0, r1, c1 in blocks:
        if c1:
            np.matmul(p[..., r0:r1, :c1], v[..., :c1, :], out=o[..., r0:r1, :])
        else:
            o[..., r0:r1, :] = 0


def dense_attention_forward(q, k, v, mask=None, causal=False, scale=None):
    """Attention over the last two axes: returns ``(o (..., T, Dv), P (..., T, S))``.

    ``q (..., T, D)``, ``k (..., S, D)``, ``v (..., S, Dv)`` (one float dtype, the same leading
    dims); ``mask``: boolean, broadcastable to (..., T, S), True = may attend; ``causal``: also
    require ``j <= i + S - T``; ``scale`` defaults to 1/sqrt(D).
    """
    fn = "dense_attention_forward"
    scale = check_attention_args(fn, q, k, v, mask, causal, scale)
    if get_xp(q) is not np:
        return dense_attention_forward_reference(q, k, v, mask, causal, scale)
    T, S = q.shape[-2], k.shape[-2]
    p = np.empty(q.shape[:-1] + (S,), dtype=q.dtype)
    o = np.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    if p.size:
        allowed = None if mask is None else np.broadcast_to(mask, p.shape)
        for g in _groups(q.shape[:-2], T, S):
            _forward_group(q[g], k[g], v[g], p[g], o[g], None if allowed is None else allowed[g],
                           causal, q.dtype.type(scale))
    else:
        o[...] = 0
    return o, p


def _backward_group(q, k, v, p, do, dp, dq, dk, dv, causal, scale):
    T, S = q.shape[-2], k.shape[-2]
    ds = np.empty_like(p)
    vt = np.swapaxes(v, -1, -2)
    blocks = _query_blocks(T, S, causal)
    for r0, r1, c1 in blocks:
        if c1:
            np.matmul(do[..., r0:r1, :], vt[..., :c1], out=ds[..., r0:r1, :c1])
            if dp is not None:
                ds[..., r0:r1, :c1] += dp[..., r0:r1, :c1]
    pick_kernel(_softmax_backward_rows_serial, _softmax_backward_rows_parallel, ds.size)(
        _rows3(p, T, S), _rows3(ds, T, S), _offset(T, S, causal), scale)
    for r0, r1, c1 in blocks:
        if c1:
            np.matmul(ds[..., r0:r1, :c1], k[..., :c1, :], out=dq[..., r0:r1, :])
        else:
            dq[..., r0:r1, :] = 0
    dst, pt = np.swapaxes(ds, -1, -2), np.swapaxes(p, -1, -2)
    for c0, c1, r0 in _key_blocks(T, S, causal):
        if r0 < T:
            np.matmul(dst[..., c0:c1, r0:], q[..., r0:, :], out=dk[..., c0:c1, :])
            np.matmul(pt[..., c0:c1, r0:], do[..., r0:, :], out=dv[..., c0:c1, :])
        else:
            dk[..., c0:c1, :] = 0
            dv[..., c0:c1, :] = 0


def dense_attention_backward(q, k, v, p, do, dp=None, causal=False, scale=None):
    """Gradients ``(dq, dk, dv)`` of attention given the weights ``P`` of the forward.

    ``do (..., T, Dv)``: the gradient of the output; ``dp (..., T, S)`` (optional): a gradient
    of the weights themselves, added to :math:`\\bar o V^\\top`. ``causal`` and ``scale`` as in
    the forward (the mask is not needed: it is in the zeros of ``P``).
    """
    fn = "dense_attention_backward"
    scale = check_attention_args(fn, q, k, v, None, causal, scale)
    want = {"p": q.shape[:-1] + (k.shape[-2],), "do": q.shape[:-1] + (v.shape[-1],)}
    if dp is not None:
        want["dp"] = want["p"]
    for name, a in (("p", p), ("do", do), ("dp", dp)):
        if name in want:
            _check_float(fn, name, a)
            if a.shape != want[name] or a.dtype != q.dtype:
                raise ValueError(f"{fn}: {name} must have shape {want[name]} and dtype {q.dtype}, "
                                 f"got {a.shape} {a.dtype}")
    if get_xp(q) is not np:
        return dense_attention_backward_reference(q, k, v, p, do, dp, causal, scale)
    T, S = q.shape[-2], k.shape[-2]
    dq, dk, dv = (np.empty(a.shape, dtype=q.dtype) for a in (q, k, v))
    if p.size:
        for g in _groups(q.shape[:-2], T, S):
            _backward_group(q[g], k[g], v[g], p[g], do[g], None if dp is None else dp[g],
                            dq[g], dk[g], dv[g], causal, q.dtype.type(scale))
    else:
        for a in (dq, dk, dv):
            a[...] = 0
    return dq, dk, dv


# ---------------------------------------------------------------------------------------------
# The plain twins (NumPy or CuPy): full products, softmax of whole rows
# ---------------------------------------------------------------------------------------------
def _allowed_reference(xp, mask, causal, T, S):
    allowed = xp.tri(T, S, S - T, dtype=bool) if causal else None
    if mask is not None:
        m = xp.asarray(mask)
        allowed = m if allowed is None else (allowed & m)
    return allowed


def dense_attention_forward_reference(q, k, v, mask=None, causal=False, scale=None):
    """The twin of :func:`dense_attention_forward` in plain array code (NumPy or CuPy)."""
    scale = check_attention_args("dense_attention_forward_reference", q, k, v, mask, causal,
                                 scale)
    xp = get_xp(q)
    T, S = q.shape[-2], k.shape[-2]
    logits = (q @ xp.swapaxes(k, -1, -2)) * q.dtype.type(scale)
    allowed = _allowed_reference(xp, mask, causal, T, S)
    if allowed is not None:
        allowed = xp.broadcast_to(allowed, logits.shape)
        logits = xp.where(allowed, logits, -np.inf)
    m = logits.max(axis=-1, keepdims=True) if S else xp.zeros(logits.shape[:-1] + (1,), q.dtype)
    m = xp.where(xp.isfinite(m), m, 0)   # a row of -inf stays -inf, never nan
    e = xp.exp(logits - m)
    total = e.sum(axis=-1, keepdims=True)
    p = (e / xp.where(total > 0, total, 1)).astype(q.dtype)
    return p @ v, p


def dense_attention_backward_reference(q, k, v, p, do, dp=None, causal=False, scale=None):
    """The twin of :func:`dense_attention_backward` in plain array code (NumPy or CuPy)."""
    scale = check_attention_args("dense_attention_backward_reference", q, k, v, None, causal,
                                 scale)
    xp = get_xp(q)
    dP = do @ xp.swapaxes(v, -1, -2)
    if dp is not None:
        dP = dP + dp
    delta = (p * dP).sum(axis=-1, keepdims=True)
    ds = q.dtype.type(scale) * p * (dP - delta)
    return ds @ k, xp.swapaxes(ds, -1, -2) @ q, xp.swapaxes(p, -1, -2) @ do
