r"""The memory read of product-key memory and its backward (pure array functions).

:func:`gather_weighted_rows`: :math:`o_m = \sum_j w_{mj} V[i_{mj}]` for a value table
:math:`V` (N, d), indices and weights (M, J). Its backward
(:func:`gather_weighted_rows_backward`): :math:`\bar w_{mj} = \langle V[i_{mj}], \bar o_m
\rangle` and the scatter-add :math:`\bar V[i_{mj}] \mathrel{+}= w_{mj} \bar o_m`, whose work
is proportional to the rows read, not to the table size. Each has a NumPy twin
(``*_reference``, also the CuPy path).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..backend import get_xp
from ..checks import check_array, check_float_array, check_index_bounds
from ._jit import jit
from ._jit import pick_kernel as _pick
from .scatter import scatter_add_rows


@jit
def _gather_weighted_row(V, idx, w, out):
    # Four rows per pass over out: four independent loads in flight per column (the rows are
    # scattered over a table that may not fit in cache) and a quarter of the stores to out.
    J, d = idx.shape[0], V.shape[1]
    j = 0
    while j + 4 <= J:
        r0, r1, r2, r3 = V[idx[j]], V[idx[j + 1]], V[idx[j + 2]], V[idx[j + 3]]
        w0, w1, w2, w3 = w[j], w[j + 1], w[j + 2], w[j + 3]
        for c in range(d):
            out[c] += (w0 * r0[c] + w1 * r1[c]) + (w2 * r2[c] + w3 * r3[c])
        j += 4
    for t in range(j, J):        # the last J % 4 rows
        r0, w0 = V[idx[t]], w[t]
        for c in range(d):
            out[c] += w0 * r0[c]


@jit
def _gather_weighted_rows_serial(V, idx, w, out):
    for m in range(idx.shape[0]):
        _gather_weighted_row(V, idx[m], w[m], out[m])


@jit(parallel=True)
def _gather_weighted_rows_parallel(V, idx, w, out):
    for m in prange(idx.shape[0]):
        _gather_weighted_row(V, idx[m], w[m], out[m])


### BEGIN WITHHELD 30.3
@jit(reassoc=True)  # a dot product per row read: vectorized partial sums
def _read_grad_w_row(V, idx, g, grad_w):
    for j in range(idx.shape[0]):
        r = idx[j]
        s = 0.0
        for c in range(V.shape[1]):
            s += V[r, c] * g[c]
        grad_w[j] = s


@jit
def _read_grad_w_serial(V, idx, g, grad_w):
    for m in range(idx.shape[0]):
        _read_grad_w_row(V, idx[m], g[m], grad_w[m])


@jit(parallel=True)
def _read_grad_w_parallel(V, idx, g, grad_w):
    for m in prange(idx.shape[0]):
        _read_grad_w_row(V, idx[m], g[m], grad_w[m])
### END WITHHELD


@jit
def _read_scatter_part(grad_V, idx, w, g, part, n_parts):
    # whole rows, so each row of grad_V is written contiguously; a thread owns the rows
    # r % n_parts == part, so no two threads ever write the same row
    d = grad_V.shape[1]
    for m in range(idx.shape[0]):
        for j in range(idx.shape[1]):
            r = idx[m, j]
            if r % n_parts == part:
                row, wj = grad_V[r], w[m, j]
                for c in range(d):
                    row[c] += wj * g[m, c]


@jit
def _read_scatter_serial(grad_V, idx, w, g):
    _read_scatter_part(grad_V, idx, w, g, 0, 1)


@jit(parallel=True)
def _read_scatter_parallel(grad_V, idx, w, g, n_threads):
    # Several (m, j) may read the same row: the threads split the rows of the table by owner
    # (each scans all the indices, which is cheap next to the row updates).
    for part in prange(n_threads):
        _read_scatter_part(grad_V, idx, w, g, part, n_threads)


def _check_read_args(fn, V, idx, w, g=None):
    # w=None: a function without weights (only V, idx and g are checked)
    for name, a in (("V", V), ("idx", idx), ("w", w), ("g", g)):
        if a is not None:
            check_array(fn, name, a)
    if getattr(V, "ndim", None) != 2 or getattr(idx, "ndim", None) != 2 or \
            (w is not None and getattr(w, "shape", None) != idx.shape):
        raise ValueError(f"{fn}: expected V (N, d), idx (M, J) and w (M, J); got "
                         f"{getattr(V, 'shape', None)}, {getattr(idx, 'shape', None)}, "
                         f"{getattr(w, 'shape', None)}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{fn}: idx must be integers, got dtype {idx.dtype}")
    check_float_array(fn, "V", V)
    if w is not None:
        check_float_array(fn, "w", w)
    if g is not None:
        check_float_array(fn, "g", g)
    if g is not None and g.shape != (idx.shape[0], V.shape[1]):
        raise ValueError(f"{fn}: g must have shape {(idx.shape[0], V.shape[1])}, got {g.shape}")
    # before any kernel reads V[idx]: an index out of range there is a segfault
    check_index_bounds(fn, "idx", idx, V.shape[0])


def gather_weighted_rows_reference(V, idx, w):
    """NumPy twin of :func:`gather_weighted_rows`: gather (M, J, d), then a batched product."""
    _check_read_args("gather_weighted_rows_reference", V, idx, w)
    return (w[:, None, :] @ V[idx])[:, 0, :]


def gather_weighted_rows(V, idx, w):
    """``out[m] = sum_j w[m, j] V[idx[m, j]]`` for ``V`` (N, d), ``idx`` and ``w`` (M, J).

    Reads only the M J rows addressed; never forms the (M, J, d) gather.
    """
    _check_read_args("gather_weighted_rows", V, idx, w)
    if get_xp(V) is not np:
        return gather_weighted_rows_reference(V, idx, w)
    dt = np.result_type(V.dtype, w.dtype)
    out = np.zeros((idx.shape[0], V.shape[1]), dtype=dt)
    kernel = _pick(_gather_weighted_rows_serial, _gather_weighted_rows_parallel,
                   out.size * idx.shape[1])
    kernel(np.ascontiguousarray(V), np.ascontiguousarray(idx, np.int64),
           np.ascontiguousarray(w, dt), out)
    return out


def gather_weighted_rows_backward_reference(V, idx, w, g):
    r"""The backward of the read, in NumPy: ``(grad_V, grad_w)`` for upstream ``g`` (M, d).

    :math:`\bar w_{mj} = \langle V[i_{mj}], g_m \rangle` and
    :math:`\bar V[i_{mj}] \mathrel{+}= w_{mj} g_m`. ``grad_V`` is a dense array of V's shape
    (``zeros`` allocates it lazily), but the work is a scatter-add over the M J rows read.
    """
    _check_read_args("gather_weighted_rows_backward_reference", V, idx, w, g)
    xp = get_xp(V)
    # Exercise 30.3 (3 pt): the scatter-add backward of the read o_m = sum_j w_mj V[i_mj]:
    #   grad_w[m, j] = <V[i_mj], g_m>, and grad_V (xp.zeros of V's shape) gets w_mj g_m added
    #   to row i_mj (use scatter_add_rows from minimem.kernels: repeated rows must accumulate).
    ### BEGIN SOLUTION
    rows = V[idx]                                        # (M, J, d): only the rows read
    grad_w = (rows @ g[:, :, None])[:, :, 0]
    grad_V = xp.zeros(V.shape, dtype=V.dtype)
    src = (w[:, :, None] * g[:, None, :]).reshape(-1, V.shape[1])
    scatter_add_rows(grad_V, idx.reshape(-1), src)
    ### END SOLUTION
    return grad_V, grad_w.astype(w.dtype, copy=False)  # each gradient in its input's dtype


def scatter_weighted_rows_reference(out, idx, w, g):
    """NumPy/CuPy twin of :func:`scatter_weighted_rows`: the (M J, d) products, then an
    unbuffered add (``add.at``) so that repeated rows accumulate."""
    _check_read_args("scatter_weighted_rows_reference", out, idx, w, g)
    src = (w[:, :, None] * g[:, None, :]).astype(out.dtype, copy=False)
    get_xp(out).add.at(out, idx.reshape(-1), src.reshape(-1, out.shape[1]))
    return out


def scatter_weighted_rows(out, idx, w, g):
    """In place ``out[idx[m, j]] += w[m, j] * g[m]`` for ``out`` (N, d), ``idx``/``w`` (M, J),
    ``g`` (M, d); repeated rows accumulate. Work O(M J d), whatever N is."""
    _check_read_args("scatter_weighted_rows", out, idx, w, g)
    if get_xp(out) is not np:
        return scatter_weighted_rows_reference(out, idx, w, g)
    if not out.flags.c_contiguous:
        raise ValueError("scatter_weighted_rows: out must be C-contiguous (it is written in place)")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= out.shape[0]):
        raise IndexError(f"scatter_weighted_rows: idx must lie in [0, {out.shape[0]}), got "
                         f"values from {int(idx.min())} to {int(idx.max())}")
    kernel = _pick(_read_scatter_serial, _read_scatter_parallel, g.size * idx.shape[1],
                   per_thread=True)
    kernel(out, np.ascontiguousarray(idx, np.int64), np.ascontiguousarray(w, out.dtype),
           np.ascontiguousarray(g, out.dtype))
    return out


def gather_weighted_rows_grad_w(V, idx, g):
    """The weights' part of the read's backward: ``grad_w[m, j] = <V[idx[m, j]], g[m]>``."""
    _check_read_args("gather_weighted_rows_grad_w", V, idx, None, g)
    ### BEGIN WITHHELD 30.3
    if get_xp(V) is not np:
        return (V[idx] @ g[:, :, None])[:, :, 0]
    grad_w = np.empty(idx.shape, dtype=V.dtype)
    _pick(_read_grad_w_serial, _read_grad_w_parallel, g.size * idx.shape[1])(
        np.ascontiguousarray(V), np.ascontiguousarray(idx, np.int64),
        np.ascontiguousarray(g, V.dtype), grad_w)
    return grad_w
    #> ones = get_xp(V).ones(idx.shape, dtype=V.dtype)  # any w: grad_w does not depend on it
    #> return gather_weighted_rows_backward_reference(V, idx, ones, g)[1]
    ### END WITHHELD


def gather_weighted_rows_backward(V, idx, w, g):
    """Fused kernel version of :func:`gather_weighted_rows_backward_reference`.

    ``grad_V`` comes from ``numpy.zeros`` (pages are zeroed lazily by the OS, so untouched
    parts of a large table cost nothing to write); the scatter-add touches only the rows read.
    """
    _check_read_args("gather_weighted_rows_backward", V, idx, w, g)
    if get_xp(V) is not np:
        return gather_weighted_rows_backward_reference(V, idx, w, g)
    ### BEGIN WITHHELD 30.3
    grad_w = gather_weighted_rows_grad_w(V, idx, g)
    grad_V = scatter_weighted_rows(np.zeros(V.shape, dtype=V.dtype), idx, w, g)
    return grad_V, grad_w.astype(w.dtype, copy=False)
    #> return gather_weighted_rows_backward_reference(V, idx, w, g)
    ### END WITHHELD
