r"""Block-sparse attention kernels: forward with the saved row log-sum-exp, and backward.

Queries, keys and values of one (batch, head) pair are cut into blocks of ``b`` rows. A boolean
block layout :math:`L` (``(ceil(T/b), ceil(S/b))``) says which query block ``I`` meets which key
block ``J``; with ``causal`` the token rule :math:`j \le i + S - T` applies on top. Only kept
blocks are computed. For query row i the forward keeps the online-softmax state

.. math:: m_i = \max_j s_{ij},\quad \ell_i = \sum_j e^{s_{ij} - m_i},\quad
          o_i = \frac{1}{\ell_i}\sum_j e^{s_{ij} - m_i} v_j,\qquad s_{ij} = \tau\, q_i \cdot k_j,

updated block by block, and saves :math:`\mathrm{lse}_i = m_i + \log \ell_i`. The backward
recomputes :math:`P_{ij} = e^{s_{ij} - \mathrm{lse}_i}` from it (nothing of size T x T is stored):

.. math:: \delta_i = \textstyle\sum_e \bar o_{ie} o_{ie},\quad
          \bar s_{ij} = P_{ij}(\bar o_i \cdot v_j - \delta_i),\quad
          \bar q_i = \tau \textstyle\sum_j \bar s_{ij} k_j,\quad
          \bar k_j = \tau \textstyle\sum_i \bar s_{ij} q_i,\quad
          \bar v_j = \textstyle\sum_i P_{ij} \bar o_i.

A row with no allowed key (an empty layout row) gets :math:`o_i = 0`,
:math:`\mathrm{lse}_i = -\infty` and zero gradients, the convention of
``minimem.nn.scaled_dot_product_attention``.

The kernels run in parallel over (batch*head, block) with ``numba.prange``: the forward and the
``dq`` pass over query blocks, the ``dk, dv`` pass over key blocks (with the transposed layout),
so no two iterations write the same rows. ``*_reference`` are the dense-masked NumPy twins.
"""
from __future__ import annotations

import numba
import numpy as np

from ..backend import get_xp
from ..checks import (
    check_array,
    check_bool,
    check_float_array,
    check_int,
    check_real,
    check_same_dtype,
    check_shape,
)
from ._jit import jit


def layout_to_csr(layout):
    """(row_ptr, cols): the kept key blocks of query block I are cols[row_ptr[I]:row_ptr[I+1]]."""
    layout = np.asarray(layout, dtype=bool)
    counts = layout.sum(axis=1)
    row_ptr = np.zeros(layout.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=row_ptr[1:])
    cols = np.nonzero(layout)[1].astype(np.int64)
    return row_ptr, cols


def layout_to_mask_reference(layout, block_size, T, S, causal, xp=np):
    """The token mask (T, S) of a block layout: True where query i may attend to key j."""
    layout = xp.asarray(layout, dtype=bool)
    rows = xp.arange(T) // block_size
    cols = xp.arange(S) // block_size
    mask = layout[rows[:, None], cols[None, :]]
    if causal:
        mask = mask & xp.tri(T, S, S - T, dtype=bool)
    return mask


# ---------------------------------------------------------------------------------------------
# Small dense products on 2-D views (row/column offsets instead of slices, so that Numba keeps
# the contiguous layout and vectorizes the innermost loop). The sum over k runs in order, four
# terms per pass: fewer loads and stores of `out`, the same rounding as a plain loop.
# ---------------------------------------------------------------------------------------------
@jit
def _gemm_nn(a, ar, ac, b, br, bc, out, orow, ocol, M, K, N):
    """out[orow+m, ocol+n] += sum_k a[ar+m, ac+k] * b[br+k, bc+n].

    Four rows of ``out`` at a time, four terms of k per pass: each row of ``b`` loaded once
    serves four outputs (the n loop is what vectorizes); the sum over k still runs in order.
    """
    M4, K4 = M - M % 4, K - K % 4
    for m in range(0, M4, 4):
        o0, r0 = orow + m, ar + m
        for k in range(0, K4, 4):
            kk = ac + k
            a00, a01, a02, a03 = a[r0, kk], a[r0, kk + 1], a[r0, kk + 2], a[r0, kk + 3]
            a10, a11, a12, a13 = a[r0 + 1, kk], a[r0 + 1, kk + 1], a[r0 + 1, kk + 2], \
                a[r0 + 1, kk + 3]
            a20, a21, a22, a23 = a[r0 + 2, kk], a[r0 + 2, kk + 1], a[r0 + 2, kk + 2], \
                a[r0 + 2, kk + 3]
            a30, a31, a32, a33 = a[r0 + 3, kk], a[r0 + 3, kk + 1], a[r0 + 3, kk + 2], \
                a[r0 + 3, kk + 3]
            for n in range(N):
                c = bc + n
                b0, b1, b2, b3 = b[br + k, c], b[br + k + 1, c], b[br + k + 2, c], \
                    b[br + k + 3, c]
                out[o0, ocol + n] = out[o0, ocol + n] + a00 * b0 + a01 * b1 + a02 * b2 + a03 * b3
                out[o0 + 1, ocol + n] = (out[o0 + 1, ocol + n] + a10 * b0 + a11 * b1 + a12 * b2
                                         + a13 * b3)
                out[o0 + 2, ocol + n] = (out[o0 + 2, ocol + n] + a20 * b0 + a21 * b1 + a22 * b2
                                         + a23 * b3)
                out[o0 + 3, ocol + n] = (out[o0 + 3, ocol + n] + a30 * b0 + a31 * b1 + a32 * b2
                                         + a33 * b3)
        for k in range(K4, K):
            for i in range(4):
                a0 = a[r0 + i, ac + k]
                for n in range(N):
                    out[o0 + i, ocol + n] += a0 * b[br + k, bc + n]
    for m in range(M4, M):  # the last rows, one at a time
        for k in range(K):
            a0 = a[ar + m, ac + k]
            for n in range(N):
                out[orow + m, ocol + n] += a0 * b[br + k, bc + n]


@jit
def _gemm_tn(a, ar, ac, b, br, bc, out, orow, ocol, M, K, N):
    """out[orow+m, ocol+n] += sum_k a[ar+k, ac+m] * b[br+k, bc+n]  (a read transposed)."""
    _gemm_nn(a.T, ac, ar, b, br, bc, out, orow, ocol, M, K, N)


# ---------------------------------------------------------------------------------------------
# One block pair: scores, then the allowed-entry rule (shared by forward and backward)
# ---------------------------------------------------------------------------------------------
@jit
def _block_scores(q, kt, i0, ni, nj, scale, s):
    """s[:ni, :nj] = scale * q[i0:i0+ni] @ kt[:, :nj] (q: one head, kt: one key block, D x b)."""
    for r in range(ni):
        for c in range(nj):
            s[r, c] = 0.0
    _gemm_nn(q, i0, 0, kt, 0, 0, s, 0, 0, ni, q.shape[1], nj)
    for r in range(ni):
        for c in range(nj):
            s[r, c] *= scale


@jit
def _n_allowed(i, j0, nj, causal, offset):
    """Keys j0 .. j0+n-1 of the block are allowed for query i (a prefix of the block)."""
    if not causal:
        return nj
    last = i + offset - j0 + 1  # keys j <= i + offset
    if last < 0:
        return 0
    return min(nj, last)


@jit
def _online_softmax_block(s, v, i0, ni, j0, nj, causal, offset, m, ell, acc):
    """Fold one block of scores s[:ni, :nj] (keys j0 .. j0+nj-1) into the running state.

    Per query row r, over its allowed keys c only (``_n_allowed``):
    m_new = max(m_r, max_c s_rc), alpha = e^(m_r - m_new), p_rc = e^(s_rc - m_new),
    ell_r <- alpha ell_r + sum_c p_rc, acc_r <- alpha acc_r + sum_c p_rc v_c.
    Rows with no allowed key are left unchanged. ``s`` is overwritten by p (0 where masked).
    """
    Dv = v.shape[1]
    # Exercise 40.4 (3 pt): one block of the sparse forward: update m, ell and acc (the online
    #   softmax) of every query row r < ni with its allowed scores s[r, :n_ok] and values v[j0 + c].
    ### BEGIN SOLUTION
    for r in range(ni):
        n_ok = _n_allowed(i0 + r, j0, nj, causal, offset)
        if n_ok > 0:
            m_blk = s[r, 0]  # stay in the input dtype (a float64 literal would widen the loop)
            for c in range(1, n_ok):
                m_blk = max(m_blk, s[r, c])
            m_new = max(m[r], m_blk)
            alpha = np.exp(m[r] - m_new)  # 0 on the first visit (m = -inf)
            ell[r] *= alpha
            for e in range(Dv):
                acc[r, e] *= alpha
            for c in range(n_ok):
                s[r, c] = np.exp(s[r, c] - m_new)
                ell[r] += s[r, c]
            m[r] = m_new
        for c in range(n_ok, nj):
            s[r, c] = 0.0
    _gemm_nn(s, 0, 0, v, j0, 0, acc, 0, 0, ni, nj, Dv)  # acc += P V
    ### END SOLUTION


@jit(parallel=True)
def _forward_kernel(q, kt, v, row_ptr, cols, bs, causal, offset, scale, o, lse):
    BH, T = q.shape[0], q.shape[1]
    S = v.shape[1]
    Dv = v.shape[2]
    nqb = (T + bs - 1) // bs
    for task in numba.prange(BH * nqb):
        bh = task // nqb
        ib = task % nqb
        i0 = ib * bs
        ni = min(bs, T - i0)
        s = np.empty((bs, bs), dtype=q.dtype)
        acc = np.zeros((bs, Dv), dtype=q.dtype)
        m = np.full(bs, -np.inf, dtype=q.dtype)
        ell = np.zeros(bs, dtype=q.dtype)
        for p in range(row_ptr[ib], row_ptr[ib + 1]):
            j0 = cols[p] * bs
            nj = min(bs, S - j0)
            if _n_allowed(i0 + ni - 1, j0, nj, causal, offset) == 0:
                continue  # the whole block lies above the causal diagonal
            _block_scores(q[bh], kt[bh, cols[p]], i0, ni, nj, scale, s)
            _online_softmax_block(s, v[bh], i0, ni, j0, nj, causal, offset, m, ell, acc)
        for r in range(ni):
            if ell[r] > 0.0:
                inv = 1.0 / ell[r]
                for e in range(Dv):
                    o[bh, i0 + r, e] = acc[r, e] * inv
                lse[bh, i0 + r] = m[r] + np.log(ell[r])
            else:  # no allowed key: output 0, lse -inf
                for e in range(Dv):
                    o[bh, i0 + r, e] = 0.0
                lse[bh, i0 + r] = -np.inf


@jit
def _block_probs_and_dscores(q, kt, vt, do, lse, delta, i0, ni, j0, nj, causal, offset,
                             scale, s, ds):
    """s <- P and ds <- scale * dS for one block pair (2-D views of one head); masked: 0."""
    _block_scores(q, kt, i0, ni, nj, scale, s)
    for r in range(ni):
        for c in range(nj):
            ds[r, c] = 0.0
    # dP = dO V^T on the block (vt: this key block of V, transposed)
    _gemm_nn(do, i0, 0, vt, 0, 0, ds, 0, 0, ni, do.shape[1], nj)
    for r in range(ni):
        L = lse[i0 + r]
        n_ok = 0 if L == -np.inf else _n_allowed(i0 + r, j0, nj, causal, offset)
        for c in range(n_ok):
            s[r, c] = np.exp(s[r, c] - L)
            ds[r, c] = s[r, c] * (ds[r, c] - delta[i0 + r]) * scale
        for c in range(n_ok, nj):
            s[r, c] = 0.0
            ds[r, c] = 0.0


@jit(parallel=True)
def _backward_dq_kernel(q, kt, vt, k, do, lse, delta, row_ptr, cols, bs, causal, offset, scale,
                        dq):
    BH, T, D = q.shape
    S = k.shape[1]
    nqb = (T + bs - 1) // bs
    for task in numba.prange(BH * nqb):
        bh = task // nqb
        ib = task % nqb
        i0 = ib * bs
        ni = min(bs, T - i0)
        s = np.empty((bs, bs), dtype=q.dtype)
        ds = np.empty((bs, bs), dtype=q.dtype)
        for p in range(row_ptr[ib], row_ptr[ib + 1]):
            j0 = cols[p] * bs
            nj = min(bs, S - j0)
            if _n_allowed(i0 + ni - 1, j0, nj, causal, offset) == 0:
                continue
            _block_probs_and_dscores(q[bh], kt[bh, cols[p]], vt[bh, cols[p]], do[bh], lse[bh],
                                     delta[bh], i0, ni, j0, nj, causal, offset, scale, s, ds)
            _gemm_nn(ds, 0, 0, k[bh], j0, 0, dq[bh], i0, 0, ni, nj, D)  # dQ += dS K


@jit(parallel=True)
def _backward_dkv_kernel(q, kt, vt, do, lse, delta, col_ptr, rows, bs, causal, offset, scale,
                         dk, dv):
    BH, T, D = q.shape
    S = dk.shape[1]
    Dv = do.shape[2]
    nkb = (S + bs - 1) // bs
    for task in numba.prange(BH * nkb):
        bh = task // nkb
        jb = task % nkb
        j0 = jb * bs
        nj = min(bs, S - j0)
        s = np.empty((bs, bs), dtype=q.dtype)
        ds = np.empty((bs, bs), dtype=q.dtype)
        for p in range(col_ptr[jb], col_ptr[jb + 1]):
            i0 = rows[p] * bs
            ni = min(bs, T - i0)
            if _n_allowed(i0 + ni - 1, j0, nj, causal, offset) == 0:
                continue
            _block_probs_and_dscores(q[bh], kt[bh, jb], vt[bh, jb], do[bh], lse[bh], delta[bh],
                                     i0, ni, j0, nj, causal, offset, scale, s, ds)
            _gemm_tn(s, 0, 0, do[bh], i0, 0, dv[bh], j0, 0, nj, ni, Dv)  # dV += P^T dO
            _gemm_tn(ds, 0, 0, q[bh], i0, 0, dk[bh], j0, 0, nj, ni, D)  # dK += dS^T Q


# ---------------------------------------------------------------------------------------------
# Array-level entry points
# ---------------------------------------------------------------------------------------------
def _flat(x):
    """(B, H, N, D) -> contiguous (B*H, N, D)."""
    return np.ascontiguousarray(x.reshape((-1,) + x.shape[-2:]))


def _blocks_transposed(x, bs):
    """(B*H, N, D) -> contiguous (B*H, ceil(N/b), D, b): each key block transposed, zero-padded.

    One contiguous D x b tile per block keeps the kernel's reads local (rows of a (D, N) array
    lie N apart, which for N a power of two makes the cache thrash).
    """
    BH, N, D = x.shape
    nb = -(-N // bs)
    padded = np.zeros((BH, nb * bs, D), dtype=x.dtype)
    padded[:, :N] = x
    return np.ascontiguousarray(padded.reshape(BH, nb, bs, D).transpose(0, 1, 3, 2))


def _check_block_sparse(fn, q, k, v, layout, block_size, causal, scale):
    """q (..., T, D), k (..., S, D), v (..., S, Dv) of one float dtype, a boolean layout of
    (ceil(T/b), ceil(S/b)) blocks: checked before the kernels index blocks of k and v (a
    layout larger than the keys would read past their end)."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        check_float_array(fn, name, a, ndim=range(3, 33))
    check_same_dtype(fn, ("q", "k", "v"), q, k, v)
    lead, T, D = q.shape[:-2], q.shape[-2], q.shape[-1]
    S = k.shape[-2]
    check_shape(fn, "k", k, lead + (None, D))
    check_shape(fn, "v", v, lead + (S, None))
    if T < 1 or S < 1 or D < 1:
        raise ValueError(f"{fn}: need T, S, D >= 1, got q {q.shape} and k {k.shape}")
    block_size = check_int(fn, "block_size", block_size, low=1)
    check_array(fn, "layout", layout)
    if np.dtype(layout.dtype) != np.bool_:
        raise TypeError(f"{fn}: layout must be a boolean array, got dtype {layout.dtype}")
    check_shape(fn, "layout", layout, (-(-T // block_size), -(-S // block_size)),
                names="ceil(T/b), ceil(S/b)")
    check_bool(fn, "causal", causal)
    if scale is not None:
        check_real(fn, "scale", scale)


def block_sparse_attention_forward(q, k, v, layout, block_size, causal=True, scale=None):
    """(o, lse) of block-sparse attention; q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv).

    ``lse`` (B, H, T) is the row log-sum-exp of the allowed scores (-inf on empty rows).
    CuPy arrays use the dense-masked twin.
    """
    _check_block_sparse("block_sparse_attention_forward", q, k, v, layout, block_size, causal,
                        scale)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if get_xp(q) is not np:
        return block_sparse_attention_forward_reference(q, k, v, layout, block_size, causal, scale)
    lead, T, S = q.shape[:-2], q.shape[-2], k.shape[-2]
    qf, kf, vf = _flat(q), _flat(k), _flat(v)
    row_ptr, cols = layout_to_csr(layout)
    o = np.empty(vf.shape[:1] + (T, vf.shape[2]), dtype=q.dtype)
    lse = np.empty((qf.shape[0], T), dtype=q.dtype)
    try:
        _forward_kernel(qf, _blocks_transposed(kf, int(block_size)), vf, row_ptr, cols,
                        int(block_size), bool(causal), int(S - T), q.dtype.type(scale), o, lse)
    except SystemError as e:  # Numba wraps an exception raised in a parallel kernel (an
        if isinstance(e.__cause__, NotImplementedError):  # unfinished exercise): show it
            raise e.__cause__ from None
        raise
    return o.reshape(lead + o.shape[1:]), lse.reshape(lead + (T,))


def block_sparse_attention_backward(q, k, v, o, lse, do, layout, block_size, causal=True,
                                    scale=None):
    """(dq, dk, dv) of block-sparse attention from the saved output ``o`` and ``lse``."""
    fn = "block_sparse_attention_backward"
    _check_block_sparse(fn, q, k, v, layout, block_size, causal, scale)
    for name, a, shape in (("o", o, q.shape[:-1] + v.shape[-1:]), ("do", do, None),
                           ("lse", lse, q.shape[:-1])):
        check_float_array(fn, name, a)
        check_shape(fn, name, a, shape if shape is not None else o.shape)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if get_xp(q) is not np:
        return block_sparse_attention_backward_reference(q, k, v, do, layout, block_size,
                                                         causal, scale)
    shapes = (q.shape, k.shape, v.shape)
    T, S = q.shape[-2], k.shape[-2]
    qf, kf, vf, of, dof = _flat(q), _flat(k), _flat(v), _flat(o), _flat(do)
    lsef = np.ascontiguousarray(lse.reshape(-1, T))
    delta = np.ascontiguousarray((dof * of).sum(axis=-1))  # delta_i = do_i . o_i
    kt, vt = _blocks_transposed(kf, int(block_size)), _blocks_transposed(vf, int(block_size))
    layout = np.asarray(layout, dtype=bool)
    row_ptr, cols = layout_to_csr(layout)
    col_ptr, rows = layout_to_csr(layout.T)
    bs, off, sc = int(block_size), int(S - T), q.dtype.type(scale)
    dq, dk, dv = np.zeros_like(qf), np.zeros_like(kf), np.zeros_like(vf)
    _backward_dq_kernel(qf, kt, vt, kf, dof, lsef, delta, row_ptr, cols, bs, bool(causal), off,
                        sc, dq)
    _backward_dkv_kernel(qf, kt, vt, dof, lsef, delta, col_ptr, rows, bs, bool(causal), off, sc,
                         dk, dv)
    return dq.reshape(shapes[0]), dk.reshape(shapes[1]), dv.reshape(shapes[2])


# ---------------------------------------------------------------------------------------------
# Dense-masked twins (NumPy or CuPy): the whole T x S score matrix, then the mask
# ---------------------------------------------------------------------------------------------
def _dense_probs(q, k, layout, block_size, causal, scale):
    xp = get_xp(q)
    mask = layout_to_mask_reference(layout, block_size, q.shape[-2], k.shape[-2], causal, xp)
    s = (q @ xp.swapaxes(k, -1, -2)) * scale
    s = xp.where(mask, s, -xp.inf)
    m = s.max(axis=-1, keepdims=True)
    empty = m == -xp.inf
    m = xp.where(empty, 0.0, m)
    p = xp.exp(s - m)
    ell = p.sum(axis=-1, keepdims=True)
    p = p / xp.where(empty, 1.0, ell)
    lse = xp.where(empty, -xp.inf, m + xp.log(xp.where(empty, 1.0, ell)))[..., 0]
    return p.astype(q.dtype), lse.astype(q.dtype)


def block_sparse_attention_forward_reference(q, k, v, layout, block_size, causal=True,
                                             scale=None):
    """Dense-masked twin of :func:`block_sparse_attention_forward`: (o, lse)."""
    _check_block_sparse("block_sparse_attention_forward_reference", q, k, v, layout,
                        block_size, causal, scale)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    p, lse = _dense_probs(q, k, layout, block_size, causal, scale)
    return p @ v, lse


def block_sparse_attention_backward_reference(q, k, v, do, layout, block_size, causal=True,
                                              scale=None):
    """Dense-masked twin of :func:`block_sparse_attention_backward`: (dq, dk, dv)."""
    _check_block_sparse("block_sparse_attention_backward_reference", q, k, v, layout,
                        block_size, causal, scale)
    xp = get_xp(q)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    p, _ = _dense_probs(q, k, layout, block_size, causal, scale)
    dv = xp.swapaxes(p, -1, -2) @ do
    dp = do @ xp.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) * scale
    return ds @ k, xp.swapaxes(ds, -1, -2) @ q, dv
