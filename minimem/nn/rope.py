r"""Rotary position embeddings (RoPE, Su et al. 2021).

Each pair of coordinates :math:`(x_{2i}, x_{2i+1})` of a query or key at position
:math:`p` is rotated by the angle :math:`p\,\theta_i`, :math:`\theta_i = b^{-2i/D}`
(base :math:`b = 10000`):

.. math:: \begin{pmatrix} x'_{2i} \\ x'_{2i+1} \end{pmatrix} =
          \begin{pmatrix} \cos p\theta_i & -\sin p\theta_i \\
                          \sin p\theta_i & \cos p\theta_i \end{pmatrix}
          \begin{pmatrix} x_{2i} \\ x_{2i+1} \end{pmatrix},
          \qquad x' = x \odot \cos + (x R) \odot \sin,

with :math:`R` the constant matrix that maps :math:`(x_{2i}, x_{2i+1})` to
:math:`(-x_{2i+1}, x_{2i})`. Rotations compose and are orthogonal, so
:math:`\mathrm{rope}(q, p)^\top \mathrm{rope}(k, p') = q^\top \mathcal{R}_{p' - p}\, k`
depends on the positions only through :math:`p' - p` (the relative property).
"""
from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from ..backend import get_xp
from ..checks import check_float_tensor, check_real


def rope_angles(positions, dim, base=10000.0, dtype=np.float64, xp=np):
    """cos and sin of p theta_i, each (T, D) with every angle repeated for its pair."""
    theta = base ** (-np.arange(0, dim, 2) / dim)
    angle = np.repeat(np.outer(positions, theta), 2, axis=1)
    return xp.asarray(np.cos(angle), dtype=dtype), xp.asarray(np.sin(angle), dtype=dtype)


def rotate_pairs_matrix(dim, dtype=np.float64, xp=np):
    """R (D, D): (x R)_{2i} = -x_{2i+1}, (x R)_{2i+1} = x_{2i}."""
    R = np.zeros((dim, dim))
    i = np.arange(0, dim, 2)
    R[i + 1, i], R[i, i + 1] = -1.0, 1.0
    return xp.asarray(R, dtype=dtype)


def _positions(fn, positions, T):
    p = np.asarray(positions.data if isinstance(positions, Tensor) else positions)
    if p.dtype.kind not in "iu":
        raise TypeError(f"{fn}: positions must be an integer array of shape (T,) = ({T},), "
                        f"got {p.dtype} {p.shape}")
    if p.shape != (T,):
        raise ValueError(f"{fn}: positions must be an integer array of shape (T,) = ({T},), "
                         f"got {p.dtype} {p.shape}")
    return p


def rope(x, positions=None, base=10000.0):
    """Rotate x (..., T, D) (D even) by its positions (int array (T,), default 0..T-1)."""
    fn = "rope"
    check_float_tensor(fn, "x", x, float16=False)
    if x.ndim < 2 or x.shape[-1] % 2 or x.shape[-1] < 2:
        raise ValueError(f"{fn}: x must have shape (..., T, D) with D even, got {x.shape}")
    base = check_real(fn, "base", base, low=1, low_open=True)
    T, D = x.shape[-2], x.shape[-1]
    p = np.arange(T) if positions is None else _positions(fn, positions, T)
    xp = get_xp(x.data)
    cos, sin = rope_angles(p, D, base, x.dtype, xp)
    return x * Tensor(cos) + (x @ Tensor(rotate_pairs_matrix(D, x.dtype, xp))) * Tensor(sin)
