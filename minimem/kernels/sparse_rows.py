r"""Kernels for row-sparse gradients: a gradient that is zero outside some rows of a table.

A row-sparse gradient of a table :math:`V` (N, d), as a memory read or an embedding lookup
produces it, is a set of weighted rank-one row updates that share source vectors:

.. math::  \bar V = \sum_{m=1}^{M} \sum_{j=1}^{J} w_{mj}\, e_{i_{mj}}\, u_m^\top

(``idx`` (M, J) rows, ``w`` (M, J) weights, ``src`` (M, d) vectors :math:`u_m`; for a read,
:math:`u_m = \bar o_m` and J = H k; for an embedding, J = 1 and w = 1). A row may appear
several times. Two operations need each row once:

* :func:`coalesce_rows`: the distinct rows :math:`\rho_1 < \dots < \rho_U` and their summed
  vectors :math:`\bar V[\rho] = \sum_{(m, j): i_{mj} = \rho} w_{mj} u_m` (a stable sort of the
  rows and a segment sum, O(MJ log MJ + MJ d); never O(N d));
* :func:`adam_rows`: the lazy Adam step on those rows only (the moments of rows without a
  gradient entry are left as they are, as in PyTorch's ``SparseAdam``):

.. math::  m_\rho \leftarrow \beta_1 m_\rho + (1-\beta_1) g_\rho, \quad
           v_\rho \leftarrow \beta_2 v_\rho + (1-\beta_2) g_\rho^2, \quad
           \theta_\rho \leftarrow \theta_\rho - \frac{\eta}{1-\beta_1^t}
           \frac{m_\rho}{\sqrt{v_\rho / (1-\beta_2^t)} + \epsilon}.

The scatter :math:`\bar V \mathrel{+}= \dots` itself is
:func:`minimem.kernels.weighted_read.scatter_weighted_rows`. Each kernel has a NumPy twin
(``*_reference``, also the CuPy path) that the tests compare with.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..backend import get_xp
from ..checks import (
    check_array,
    check_dtype,
    check_float_array,
    check_index_bounds,
    check_int,
    check_real,
)
from ._jit import jit
from ._jit import pick_kernel as _pick


@jit
def _segment_sum(src, w, order, bounds, J, out, u):
    # out[u] = sum of w[i] src[i // J] over the pairs i = order[bounds[u]:bounds[u + 1]]
    row = out[u]
    row[:] = 0
    for t in range(bounds[u], bounds[u + 1]):
        i = order[t]
        u_m, w_i = src[i // J], w[i]
        for c in range(row.shape[0]):
            row[c] += w_i * u_m[c]


@jit
def _segment_sums_serial(src, w, order, bounds, J, out):
    for u in range(out.shape[0]):
        _segment_sum(src, w, order, bounds, J, out, u)


@jit(parallel=True)
def _segment_sums_parallel(src, w, order, bounds, J, out):
    for u in prange(out.shape[0]):   # each distinct row is written by one thread
        _segment_sum(src, w, order, bounds, J, out, u)


def _check_pairs(fn, idx, w, src):
    for name, a in (("idx", idx), ("w", w), ("src", src)):
        check_array(fn, name, a)
    if getattr(idx, "ndim", None) != 2 or getattr(w, "shape", None) != idx.shape or \
            getattr(src, "ndim", None) != 2 or src.shape[0] != idx.shape[0]:
        raise ValueError(f"{fn}: expected idx (M, J), w (M, J) and src (M, d), got "
                         f"{getattr(idx, 'shape', None)}, {getattr(w, 'shape', None)} and "
                         f"{getattr(src, 'shape', None)}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{fn}: idx must be integers, got dtype {idx.dtype}")
    check_float_array(fn, "w", w)
    check_float_array(fn, "src", src)
    check_index_bounds(fn, "idx", idx, np.iinfo(np.int64).max)  # row ids are >= 0


def coalesce_rows_reference(idx, w, src):
    """NumPy/CuPy twin of :func:`coalesce_rows`: ``unique`` with the inverse map, then an
    unbuffered add (``add.at``) of every product :math:`w_{mj} u_m` into its row."""
    _check_pairs("coalesce_rows_reference", idx, w, src)
    xp = get_xp(src)
    rows, inverse = xp.unique(idx.reshape(-1), return_inverse=True)
    out = xp.zeros((rows.shape[0], src.shape[1]), dtype=src.dtype)
    products = (w[:, :, None] * src[:, None, :]).astype(src.dtype, copy=False)
    xp.add.at(out, inverse.reshape(-1), products.reshape(-1, src.shape[1]))
    return rows.astype(np.int64), out


def coalesce_rows(idx, w, src):
    """``(rows, sums)``: the distinct rows of ``idx`` (M, J), ascending, and for each the sum of
    :math:`w_{mj} u_m` over its pairs (``w`` (M, J), ``src`` (M, d) the :math:`u_m`); sums run
    in pair order."""
    _check_pairs("coalesce_rows", idx, w, src)
    if get_xp(src) is not np:
        return coalesce_rows_reference(idx, w, src)
    flat = np.asarray(idx, dtype=np.int64).reshape(-1)
    order = np.argsort(flat, kind="stable")
    sorted_rows = flat[order]
    new = np.empty(sorted_rows.shape[0], dtype=bool)
    new[:1] = True
    np.not_equal(sorted_rows[1:], sorted_rows[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    bounds = np.append(starts, sorted_rows.shape[0])
    out = np.empty((starts.shape[0], src.shape[1]), dtype=src.dtype)
    kernel = _pick(_segment_sums_serial, _segment_sums_parallel, flat.size * src.shape[1])
    kernel(np.ascontiguousarray(src), np.ascontiguousarray(w, src.dtype).reshape(-1), order,
           bounds, idx.shape[1], out)
    return sorted_rows[starts], out


@jit
def _adam_row(p, m, v, r, g, step, beta1, beta2, inv_sqrt_bc2, eps):
    for c in range(g.shape[0]):
        gc = g[c]
        m[r, c] = beta1 * m[r, c] + (1 - beta1) * gc
        v[r, c] = beta2 * v[r, c] + (1 - beta2) * (gc * gc)
        p[r, c] -= step * (m[r, c] / (np.sqrt(v[r, c]) * inv_sqrt_bc2 + eps))


@jit
def _adam_rows_serial(p, m, v, rows, g, step, beta1, beta2, inv_sqrt_bc2, eps):
    for i in range(rows.shape[0]):
        _adam_row(p, m, v, rows[i], g[i], step, beta1, beta2, inv_sqrt_bc2, eps)


@jit(parallel=True)
def _adam_rows_parallel(p, m, v, rows, g, step, beta1, beta2, inv_sqrt_bc2, eps):
    for i in prange(rows.shape[0]):   # rows are distinct (coalesced): no two threads collide
        _adam_row(p, m, v, rows[i], g[i], step, beta1, beta2, inv_sqrt_bc2, eps)


def _check_adam(fn, p, m, v, rows, g, t, lr, betas, eps):
    for name, a in (("p", p), ("m", m), ("v", v), ("g", g)):
        check_float_array(fn, name, a)
    if rows is not None:
        check_array(fn, "rows", rows)
        check_dtype(fn, "rows", rows, "iu")
    if not (p.ndim == 2 and m.shape == p.shape and v.shape == p.shape):
        raise ValueError(f"{fn}: p, m and v must be 2-D of one shape, got {p.shape}, {m.shape}, "
                         f"{v.shape}")
    if getattr(rows, "ndim", None) != 1 or getattr(g, "ndim", None) != 2 or \
            g.shape[0] != rows.shape[0]:
        raise ValueError(f"{fn}: expected rows (U,) and g (U, d), got "
                         f"{getattr(rows, 'shape', None)} and {getattr(g, 'shape', None)}")
    if g.shape[1] != p.shape[1]:
        raise ValueError(f"{fn}: g must have {p.shape[1]} columns, got shape {g.shape}")
    check_int(fn, "t (the step count)", t, low=1)
    check_real(fn, "lr", lr, low=0, low_open=True)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{fn}: betas must be a pair (beta1, beta2), got {betas!r}")
    for b in betas:
        check_real(fn, "betas", b, low=0, high=1, high_open=True)
    check_real(fn, "eps", eps, low=0, low_open=True)
    # before the kernel writes p[rows]: a row out of range there is a segfault
    check_index_bounds(fn, "rows", rows, p.shape[0])
    if rows.shape[0] > 1 and get_xp(rows).unique(rows).shape[0] != rows.shape[0]:
        # the parallel kernel gives each row to one thread: repeats would race
        raise ValueError(f"{fn}: rows must be distinct (coalesce the gradient first)")


def _adam_scalars(lr, betas, t):
    beta1, beta2 = betas
    return lr / (1 - beta1 ** t), 1 / np.sqrt(1 - beta2 ** t)


def adam_rows_reference(p, m, v, rows, g, t, lr, betas=(0.9, 0.999), eps=1e-8):
    """NumPy/CuPy twin of :func:`adam_rows`: gather the rows, update, scatter back."""
    _check_adam("adam_rows_reference", p, m, v, rows, g, t, lr, betas, eps)
    xp = get_xp(p)
    step, inv_sqrt_bc2 = _adam_scalars(lr, betas, t)
    beta1, beta2 = betas
    m_r = beta1 * m[rows] + (1 - beta1) * g
    v_r = beta2 * v[rows] + (1 - beta2) * (g * g)
    m[rows], v[rows] = m_r, v_r
    p[rows] -= (step * (m_r / (xp.sqrt(v_r) * inv_sqrt_bc2 + eps))).astype(p.dtype, copy=False)


def adam_rows(p, m, v, rows, g, t, lr, betas=(0.9, 0.999), eps=1e-8):
    """In place, the lazy Adam step (module docstring) on the distinct ``rows`` (U,) of the
    table ``p`` (N, d) with moments ``m``, ``v`` (N, d), gradient rows ``g`` (U, d), step ``t``."""
    _check_adam("adam_rows", p, m, v, rows, g, t, lr, betas, eps)
    if get_xp(p) is not np:
        return adam_rows_reference(p, m, v, rows, g, t, lr, betas, eps)
    step, inv_sqrt_bc2 = _adam_scalars(lr, betas, t)
    kernel = _pick(_adam_rows_serial, _adam_rows_parallel, g.size)
    kernel(p, m, v, np.asarray(rows, np.int64), np.ascontiguousarray(g, p.dtype), step,
           float(betas[0]), float(betas[1]), inv_sqrt_bc2, float(eps))
