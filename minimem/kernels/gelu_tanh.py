r"""GELU, tanh approximation, forward and backward in one pass over the elements.

.. math:: \mathrm{gelu}(x) = \tfrac12 x \big(1 + \tanh u\big) = x\, \sigma(2u),\qquad
          u = c\,(x + a x^3),\quad c = \sqrt{2/\pi},\ a = 0.044715,

using :math:`1 + \tanh u = 2\sigma(2u)` (no cancellation where :math:`\tanh u \to -1`), and

.. math:: \frac{d\,\mathrm{gelu}}{dx} = \sigma(2u) + 2x\,\sigma(2u)\big(1 - \sigma(2u)\big)\,
          c\,(1 + 3 a x^2).

:math:`\sigma(z) = 1/(1 + e^{-z})` is evaluated as :math:`1/(1+e)` for :math:`z \ge 0` and
:math:`e/(1+e)` otherwise, with :math:`e = e^{-|z|}` (:mod:`.polynomial_exp`: vectorized in
float32). The backward recomputes :math:`\sigma` from :math:`x` instead of saving it.
``*_reference`` are the NumPy/CuPy twins.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..backend import get_xp
from ._jit import jit, pick_kernel
from .polynomial_exp import exp_nonpositive

_C = math.sqrt(2.0 / math.pi)
_A = 0.044715


# ``k`` = (1, 2c, a, 3a) in the array's dtype: integer literals would promote float32 to float64
@jit(numpy_division=True)
def _sigmoid_2u(x, k):
    one, two_c, a = k[0], k[1], k[2]
    z = two_c * (x + a * x * x * x)
    e = exp_nonpositive(-abs(z))
    return (one if z >= 0 else e) / (one + e)


@jit(numpy_division=True)
def _gelu_serial(x, y, k):
    for i in range(x.shape[0]):
        y[i] = x[i] * _sigmoid_2u(x[i], k)


@jit(parallel=True, numpy_division=True)
def _gelu_parallel(x, y, k):
    for i in prange(x.shape[0]):
        y[i] = x[i] * _sigmoid_2u(x[i], k)


@jit(numpy_division=True)
def _gelu_backward_one(x, g, k):
    one, two_c, three_a = k[0], k[1], k[3]
    s = _sigmoid_2u(x, k)
    return g * (s + x * s * (one - s) * two_c * (one + three_a * x * x))


@jit(numpy_division=True)
def _gelu_backward_serial(x, g, dx, k):
    for i in range(x.shape[0]):
        dx[i] = _gelu_backward_one(x[i], g[i], k)


@jit(parallel=True, numpy_division=True)
def _gelu_backward_parallel(x, g, dx, k):
    for i in prange(x.shape[0]):
        dx[i] = _gelu_backward_one(x[i], g[i], k)


def _check(fn, name, a):
    if not hasattr(a, "dtype") or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}: argument '{name}' must be a float32 or float64 array, got "
                        f"{getattr(a, 'dtype', type(a).__name__)}")


def _constants(x):
    return tuple(x.dtype.type(v) for v in (1.0, 2 * _C, _A, 3 * _A))


def gelu_tanh_forward(x):
    """gelu(x), tanh approximation (``torch.nn.functional.gelu(x, approximate="tanh")``)."""
    _check("gelu_tanh_forward", "x", x)
    if get_xp(x) is not np:
        return gelu_tanh_forward_reference(x)
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    pick_kernel(_gelu_serial, _gelu_parallel, flat.size)(flat, y, _constants(x))
    return y.reshape(x.shape)


def gelu_tanh_backward(x, g):
    """dL/dx of :func:`gelu_tanh_forward` given ``g = dL/dy`` (the same shape and dtype)."""
    _check("gelu_tanh_backward", "x", x)
    _check("gelu_tanh_backward", "g", g)
    if g.shape != x.shape or g.dtype != x.dtype:
        raise ValueError(f"gelu_tanh_backward: g must have x's shape {x.shape} and dtype "
                         f"{x.dtype}, got {g.shape} {g.dtype}")
    if get_xp(x) is not np:
        return gelu_tanh_backward_reference(x, g)
    flat = np.ascontiguousarray(x).reshape(-1)
    dx = np.empty_like(flat)
    pick_kernel(_gelu_backward_serial, _gelu_backward_parallel, flat.size)(
        flat, np.ascontiguousarray(g).reshape(-1), dx, _constants(x))
    return dx.reshape(x.shape)


def _sigmoid_2u_reference(xp, x):
    z = 2 * _C * (x + _A * x * x * x)
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1, e) / (1 + e)


def gelu_tanh_forward_reference(x):
    """The twin of :func:`gelu_tanh_forward` in plain array code (NumPy or CuPy)."""
    _check("gelu_tanh_forward_reference", "x", x)
    return (x * _sigmoid_2u_reference(get_xp(x), x)).astype(x.dtype)


def gelu_tanh_backward_reference(x, g):
    """The twin of :func:`gelu_tanh_backward` in plain array code (NumPy or CuPy)."""
    _check("gelu_tanh_backward_reference", "x", x)
    _check("gelu_tanh_backward_reference", "g", g)
    s = _sigmoid_2u_reference(get_xp(x), x)
    return (g * (s + 2 * x * s * (1 - s) * _C * (1 + 3 * _A * x * x))).astype(x.dtype)
