r"""Scatter-add of rows: ``out[idx[i], :] += src[i, :]``.

It is the backward of a row gather ``y = x[idx]`` (an embedding lookup, a memory read):
rows that were read several times receive the sum of their gradients, and rows never read
are not touched, so the cost is proportional to the rows read, not to the table size.
"""
import numpy as np

from ..backend import get_xp
from ..checks import check_array, check_dtype, check_index_bounds
from ._jit import jit


@jit
def _scatter_add_rows_kernel(out, idx, src):
    n_rows = out.shape[0]
    for i in range(idx.shape[0]):
        r = idx[i]
        if r < 0:
            r += n_rows
        for j in range(src.shape[1]):
            out[r, j] += src[i, j]


def scatter_add_rows_reference(out, idx, src):
    """The NumPy twin: ``numpy.add.at`` accumulates repeated indices."""
    _check_scatter("scatter_add_rows_reference", out, idx, src)
    get_xp(out).add.at(out, idx, src)
    return out


def _check_scatter(fn, out, idx, src):
    for name, a in (("out", out), ("idx", idx), ("src", src)):
        check_array(fn, name, a)
    check_dtype(fn, "out", out, "f")
    check_dtype(fn, "src", src, "f")
    check_dtype(fn, "idx", idx, "iu")
    if out.ndim != 2 or src.ndim != 2 or idx.ndim != 1:
        raise ValueError(
            f"{fn}: expected out (N, D), idx (M,), src (M, D); got "
            f"{out.shape}, {idx.shape}, {src.shape}"
        )
    if src.shape != (idx.shape[0], out.shape[1]):
        raise ValueError(
            f"{fn}: src must have shape {(idx.shape[0], out.shape[1])}, got {src.shape}"
        )
    # before the kernel writes out[idx]: an index out of range there is a segfault
    check_index_bounds(fn, "idx", idx, out.shape[0], allow_negative=True)


def scatter_add_rows(out, idx, src):
    """In place ``out[idx[i]] += src[i]`` for 2-D ``out``/``src`` and 1-D integer ``idx``
    (entries in ``[-N, N)``, negative ones counting from the end as in NumPy)."""
    _check_scatter("scatter_add_rows", out, idx, src)
    if get_xp(out) is not np:
        return scatter_add_rows_reference(out, idx, src)
    _scatter_add_rows_kernel(out, idx, np.ascontiguousarray(src, dtype=out.dtype))
    return out
