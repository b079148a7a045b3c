r"""Inverse of a unit lower-triangular matrix, :math:`X = (I + A)^{-1}`, by forward substitution.

``A`` is strictly lower triangular (only its strict lower triangle is read). Row :math:`i` of
:math:`X` follows from the rows above it: :math:`X_i = e_i - \sum_{l<i} A_{il} X_l`, and
:math:`X_l` is zero right of column :math:`l`, so each update touches columns :math:`\le l` only.
This is the one sequential step of the chunkwise delta rule (:mod:`minimem.memory.delta.chunkwise`).

Arrays are ``(..., C, C)``. The Numba kernel runs one matrix per thread; the NumPy twin
vectorizes over the leading axes, loops over rows, and runs unchanged on CuPy arrays.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..backend import get_xp
from ._jit import jit


@jit(parallel=True)
def _unit_lower_inverse_kernel(A, X):
    M, C, _ = A.shape
    for m in prange(M):
        for i in range(C):
            for j in range(C):
                X[m, i, j] = 0.0
            X[m, i, i] = 1.0
            for l in range(i):          # X_i -= A_il X_l   (X_l is zero right of column l)
                a = A[m, i, l]
                if a != 0.0:
                    for j in range(l + 1):
                        X[m, i, j] -= a * X[m, l, j]


def unit_lower_inverse_reference(A):
    """NumPy/CuPy twin: one vectorized step per row."""
    xp = get_xp(A)
    C = A.shape[-1]
    X = xp.zeros(A.shape, dtype=A.dtype)
    X[..., 0, 0] = 1
    for i in range(1, C):  # row i of X = e_i - sum_{j<i} A_ij X_j  (rows j < i are final)
        X[..., i, :i] = -(A[..., i:i + 1, :i] @ X[..., :i, :i])[..., 0, :]
        X[..., i, i] = 1
    return X


def unit_lower_inverse(A):
    """:math:`(I + A)^{-1}` for arrays ``A (..., C, C)``: the Numba kernel on NumPy arrays."""
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"unit_lower_inverse: A must be (..., C, C), got shape {A.shape}")
    if get_xp(A) is not np:
        return unit_lower_inverse_reference(A)
    A3 = np.ascontiguousarray(A).reshape((-1,) + A.shape[-2:])
    X = np.empty_like(A3)
    _unit_lower_inverse_kernel(A3, X)
    return X.reshape(A.shape)
