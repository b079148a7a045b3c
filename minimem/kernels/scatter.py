r"""Scatter-add of rows: ``out[idx[i], :] += src[i, :]``.

It is the backward of a row gather ``y = x[idx]`` (an embedding lookup, a memory read):
rows that were read several times receive the sum of their gradients, and rows never read
are not touched, so the cost is proportional to the rows read, not to the table size.
"""
import numpy as np

from ..backend import get_xp
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
    get_xp(out).add.at(out, idx, src)
    return out


def scatter_add_rows(out, idx, src):
    """In place ``out[idx[i]] += src[i]`` for 2-D ``out``/``src`` and 1-D integer ``idx``."""
    if out.ndim != 2 or src.ndim != 2 or idx.ndim != 1:
        raise ValueError(
            f"scatter_add_rows: expected out (N, D), idx (M,), src (M, D); got "
            f"{out.shape}, {idx.shape}, {src.shape}"
        )
    if src.shape != (idx.shape[0], out.shape[1]):
        raise ValueError(
            f"scatter_add_rows: src must have shape {(idx.shape[0], out.shape[1])}, got {src.shape}"
        )
    if get_xp(out) is not np:
        return scatter_add_rows_reference(out, idx, src)
    if idx.size and (idx.max() >= out.shape[0] or idx.min() < -out.shape[0]):
        raise IndexError(f"scatter_add_rows: index out of range for {out.shape[0]} rows")
    _scatter_add_rows_kernel(out, idx, np.ascontiguousarray(src, dtype=out.dtype))
    return out
