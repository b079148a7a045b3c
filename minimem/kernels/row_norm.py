r"""LayerNorm and RMSNorm of each row, forward and backward, one pass over a row at a time.

For a row :math:`x \in \mathbb{R}^d` with gain :math:`\gamma` and shift :math:`\beta`:

.. math:: \mu = \tfrac1d \textstyle\sum_j x_j \ (\text{LayerNorm; } \mu = 0 \text{ for RMSNorm}),
          \qquad r = \Big(\tfrac1d \textstyle\sum_j (x_j - \mu)^2 + \epsilon\Big)^{-1/2},

.. math:: \hat x_j = (x_j - \mu)\, r, \qquad y_j = \gamma_j \hat x_j + \beta_j.

Given :math:`\bar y`, with :math:`\bar{\hat x}_j = \gamma_j \bar y_j` and bars over a sum
meaning a mean over the row,

.. math:: \bar x_j = r \Big(\bar{\hat x}_j - \overline{\bar{\hat x}} -
          \hat x_j\, \overline{\bar{\hat x} \odot \hat x}\Big)
          \quad (\text{RMSNorm: without the term } \overline{\bar{\hat x}}),

.. math:: \bar\gamma = \textstyle\sum_{\text{rows}} \bar y \odot \hat x,\qquad
          \bar\beta = \textstyle\sum_{\text{rows}} \bar y.

The forward saves :math:`\mu` and :math:`r` per row (not :math:`\hat x`: the backward
recomputes it from :math:`x`, which the graph holds anyway). The sums over a row run in the
array's dtype with re-association allowed (the loops vectorize); :math:`\bar\gamma, \bar\beta`
are summed over rows in float64. The parallel backward gives each thread its own rows and its
own partial :math:`\bar\gamma, \bar\beta`. ``*_reference`` are the NumPy/CuPy twins.
"""
from __future__ import annotations

import numbers

import numba
import numpy as np
from numba import prange

from ..backend import get_xp
from ._jit import jit, pick_kernel


# ---------------------------------------------------------------------------------------------
@jit(reassoc=True)
def _norm_row(x, gamma, beta, y, mean, rstd, r, eps, center):
    row, out = x[r], y[r]
    d = row.shape[0]
    one_over_d = row.dtype.type(1) / row.dtype.type(d)   # arithmetic stays in x's dtype
    mu = row.dtype.type(0)
    if center:
        for j in range(d):
            mu += row[j]
        mu *= one_over_d
    ss = row.dtype.type(0)
    for j in range(d):
        c = row[j] - mu
        ss += c * c
    inv = row.dtype.type(1) / np.sqrt(ss * one_over_d + eps)
    for j in range(d):
        out[j] = (row[j] - mu) * inv * gamma[j] + beta[j]
    mean[r], rstd[r] = mu, inv


@jit(reassoc=True)
def _norm_backward_row(x, gamma, mean, rstd, g, dx, dgamma, dbeta, r, center):
    """dx[r] of one row; adds the row's terms of dgamma and dbeta (float64 accumulators)."""
    row, grow, out = x[r], g[r], dx[r]
    d = row.shape[0]
    one_over_d = row.dtype.type(1) / row.dtype.type(d)
    mu, inv = mean[r], rstd[r]
    a = row.dtype.type(0)
    b = row.dtype.type(0)
    for j in range(d):
        xhat = (row[j] - mu) * inv
        dxhat = grow[j] * gamma[j]
        a += dxhat
        b += dxhat * xhat
        dgamma[j] += grow[j] * xhat
        dbeta[j] += grow[j]
    a = a * one_over_d if center else row.dtype.type(0)
    b *= one_over_d
    for j in range(d):
        xhat = (row[j] - mu) * inv
        out[j] = inv * (grow[j] * gamma[j] - a - xhat * b)


@jit
def _norm_rows_serial(x, gamma, beta, y, mean, rstd, eps, center):
    for r in range(x.shape[0]):
        _norm_row(x, gamma, beta, y, mean, rstd, r, eps, center)


@jit(parallel=True)
def _norm_rows_parallel(x, gamma, beta, y, mean, rstd, eps, center):
    for r in prange(x.shape[0]):
        _norm_row(x, gamma, beta, y, mean, rstd, r, eps, center)


@jit
def _norm_backward_rows_serial(x, gamma, mean, rstd, g, dx, dgamma, dbeta, center):
    for r in range(x.shape[0]):
        _norm_backward_row(x, gamma, mean, rstd, g, dx, dgamma[0], dbeta[0], r, center)


@jit(parallel=True)
def _norm_backward_rows_parallel(x, gamma, mean, rstd, g, dx, dgamma, dbeta, center,
                                 n_threads):
    # one block of rows per thread, each with its own row of partial dgamma, dbeta
    n = x.shape[0]
    step = (n + n_threads - 1) // n_threads
    for t in prange(n_threads):
        for r in range(t * step, min(n, (t + 1) * step)):
            _norm_backward_row(x, gamma, mean, rstd, g, dx, dgamma[t], dbeta[t], r, center)


# ---------------------------------------------------------------------------------------------
def _check(fn, x, gamma, beta, eps):
    for name, a in (("x", x), ("gamma", gamma), ("beta", beta)):
        if a is None:
            continue
        if not hasattr(a, "dtype") or a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{fn}: argument '{name}' must be a float32 or float64 array, got "
                            f"{getattr(a, 'dtype', type(a).__name__)}")
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"{fn}: x must have a non-empty last axis, got shape {x.shape}")
    d = x.shape[-1]
    for name, a in (("gamma", gamma), ("beta", beta)):
        if a is not None and (a.shape != (d,) or a.dtype != x.dtype):
            raise ValueError(f"{fn}: {name} must have shape ({d},) and dtype {x.dtype}, got "
                             f"{a.shape} {a.dtype}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{fn}: eps must be a positive number, got {eps!r}")
    if not (0 < eps < float("inf")):  # NaN fails this too
        raise ValueError(f"{fn}: eps must be a positive number, got {eps!r}")


def _rows(a):
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


def row_norm_forward(x, gamma, beta=None, eps=1e-5, center=True):
    """``(y, mean, rstd)`` of LayerNorm (``center=True``) or RMSNorm (``center=False``, where
    ``beta`` may be None) over the last axis; ``mean`` and ``rstd`` have x's shape without its
    last axis."""
    fn = "row_norm_forward"
    _check(fn, x, gamma, beta, eps)
    if get_xp(x) is not np:
        return row_norm_forward_reference(x, gamma, beta, eps, center)
    x2 = _rows(x)
    beta = np.zeros_like(gamma) if beta is None else beta
    y = np.empty_like(x2)
    mean = np.empty(x2.shape[0], dtype=x.dtype)
    rstd = np.empty(x2.shape[0], dtype=x.dtype)
    pick_kernel(_norm_rows_serial, _norm_rows_parallel, x2.size)(
        x2, np.ascontiguousarray(gamma), np.ascontiguousarray(beta), y, mean, rstd,
        x.dtype.type(eps), bool(center))
    lead = x.shape[:-1]
    return y.reshape(x.shape), mean.reshape(lead), rstd.reshape(lead)


def row_norm_backward(x, gamma, mean, rstd, g, center=True):
    """``(dx, dgamma, dbeta)`` of :func:`row_norm_forward` given ``g = dL/dy``."""
    fn = "row_norm_backward"
    _check(fn, x, gamma, None, 1.0)
    lead = x.shape[:-1]
    for name, a, shape in (("mean", mean, lead), ("rstd", rstd, lead), ("g", g, x.shape)):
        if getattr(a, "shape", None) != shape or a.dtype != x.dtype:
            raise ValueError(f"{fn}: {name} must have shape {shape} and dtype {x.dtype}, got "
                             f"{getattr(a, 'shape', None)} {getattr(a, 'dtype', None)}")
    if get_xp(x) is not np:
        return row_norm_backward_reference(x, gamma, mean, rstd, g, center)
    x2, g2 = _rows(x), _rows(g)
    d = x2.shape[1]
    dx = np.empty_like(x2)
    kernel = pick_kernel(_norm_backward_rows_serial, _norm_backward_rows_parallel, x2.size,
                         per_thread=True)
    n_parts = 1 if kernel is _norm_backward_rows_serial else numba.get_num_threads()
    dgamma = np.zeros((n_parts, d))
    dbeta = np.zeros((n_parts, d))
    kernel(x2, np.ascontiguousarray(gamma), mean.reshape(-1), rstd.reshape(-1), g2, dx, dgamma,
           dbeta, bool(center))
    return (dx.reshape(x.shape), dgamma.sum(axis=0).astype(x.dtype),
            dbeta.sum(axis=0).astype(x.dtype))


# ---------------------------------------------------------------------------------------------
def row_norm_forward_reference(x, gamma, beta=None, eps=1e-5, center=True):
    """The twin of :func:`row_norm_forward` in plain array code (NumPy or CuPy)."""
    _check("row_norm_forward_reference", x, gamma, beta, eps)
    xp = get_xp(x)
    mean = x.mean(axis=-1) if center else xp.zeros(x.shape[:-1], dtype=x.dtype)
    c = x - mean[..., None]
    rstd = 1 / xp.sqrt((c * c).mean(axis=-1) + eps)
    y = c * rstd[..., None] * gamma
    return (y if beta is None else y + beta), mean, rstd.astype(x.dtype)


def row_norm_backward_reference(x, gamma, mean, rstd, g, center=True):
    """The twin of :func:`row_norm_backward` in plain array code (NumPy or CuPy)."""
    _check("row_norm_backward_reference", x, gamma, None, 1.0)
    xhat = (x - mean[..., None]) * rstd[..., None]
    dxhat = g * gamma
    a = dxhat.mean(axis=-1, keepdims=True) if center else 0
    b = (dxhat * xhat).mean(axis=-1, keepdims=True)
    lead = tuple(range(x.ndim - 1))
    return rstd[..., None] * (dxhat - a - xhat * b), (g * xhat).sum(axis=lead), g.sum(axis=lead)
