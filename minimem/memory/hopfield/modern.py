r"""The modern continuous Hopfield network (Ramsauer et al. 2020, "Hopfield networks is all
you need").

N stored patterns :math:`x_1, \dots, x_N \in \mathbb R^d` are the columns of
:math:`X \in \mathbb R^{d \times N}` (in code: the rows of ``stored``, shape (N, d)); the state
(query) is :math:`\xi \in \mathbb R^d`, :math:`M = \max_i \|x_i\|`. The energy is

.. math:: E(\xi) = -\operatorname{lse}(\beta, X^\top \xi) + \tfrac12 \xi^\top \xi
          + \beta^{-1} \log N + \tfrac12 M^2, \qquad
          \operatorname{lse}(\beta, z) = \beta^{-1} \log \sum_i e^{\beta z_i},

and :math:`0 \le E \le 2M^2` (the constants make it non-negative). The concave-convex procedure
gives the update, which never increases E and converges in one step for well-separated
patterns:

.. math:: \xi^{new} = X \operatorname{softmax}(\beta X^\top \xi).

For a batch of states (rows of R) against stored patterns (rows of Y) this is
:math:`R^{new} = \operatorname{softmax}(\beta R Y^\top) Y`, attention with keys = values = Y.

``softmax1`` adds an extra zero logit, i.e. an all-zero stored pattern that the state may
retrieve, so the weights can sum to less than one (``softmax="softmax1"``):
:math:`\operatorname{softmax1}(z)_i = e^{z_i} / (1 + \sum_j e^{z_j})`; its Jacobian has the same
form as the softmax's, :math:`\bar z = y \odot (\bar y - \langle \bar y, y \rangle)`.

Separation and retrieval error (Ramsauer et al., Theorem 5, in our notation): with
:math:`\Delta_i = x_i^\top x_i - \max_{j \ne i} x_i^\top x_j`, writing
:math:`p = \operatorname{softmax}(\beta X^\top \xi)`,
:math:`\|\xi^{new} - x_i\| = \|\sum_{j \ne i} p_j (x_j - x_i)\| \le 2M(1 - p_i)` and
:math:`1 - p_i \le (N-1)\, e^{-\beta (x_i^\top\xi - \max_{j\ne i} x_j^\top \xi)}`, hence

.. math:: \|\xi^{new} - x_i\| \le 2 M (N - 1)\,
          \exp\!\big(-\beta\,(\Delta_i - 2 M \|\xi - x_i\|)\big).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ... import autograd as ag
from ...autograd import ops
from ...autograd.function import Function
from ...backend import get_default_dtype, get_xp
from ...checks import check_int

SOFTMAXES = ("softmax", "softmax1")


class Softmax1(Function):
    """softmax1(z)_i = e^{z_i} / (1 + sum_j e^{z_j}) along ``axis`` (the extra logit is 0)."""

    @staticmethod
    def forward(ctx, z, axis):
        xp = get_xp(z)
        # Exercise 10.5 (2 pt): y = softmax1(z) along ``axis``, stable for large |z|:
        # subtract m = max(max_j z_j, 0) from every logit, including the extra zero one.
        # Needs: 0.5
        ### BEGIN SOLUTION
        m = xp.maximum(z.max(axis=axis, keepdims=True), 0)
        e = xp.exp(z - m)
        y = e / (xp.exp(-m) + e.sum(axis=axis, keepdims=True))
        ### END SOLUTION
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return y * (g - (g * y).sum(axis=ctx.axis, keepdims=True)), None


def _as_tensor(fn, name, x):
    if isinstance(x, ag.Tensor):
        if x.dtype.kind != "f":
            raise TypeError(f"{fn}: {name} must be floating, got dtype {x.dtype}")
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{fn}: {name} must be a Tensor or a numeric array, got {type(x).__name__}")
    return ag.tensor(arr, dtype=arr.dtype if arr.dtype.kind == "f" else get_default_dtype())


def softmax1(x, axis=-1):
    """The softmax with an extra zero logit (an all-zero stored pattern)."""
    x = _as_tensor("softmax1", "x", x)
    if not isinstance(axis, numbers.Integral) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"softmax1: axis must be an int in [-{x.ndim}, {x.ndim}), got {axis!r}")
    return Softmax1.apply(x, int(axis) % x.ndim)


def _check_retrieval_args(fn, queries, stored, beta):
    R = _as_tensor(fn, "queries", queries)
    Y = _as_tensor(fn, "stored", stored)
    if Y.ndim < 2 or Y.shape[-2] < 1:
        raise ValueError(f"{fn}: stored must be (..., N, d) patterns with N >= 1, got shape "
                         f"{Y.shape}")
    if R.ndim < 1 or R.shape[-1] != Y.shape[-1]:
        raise ValueError(f"{fn}: queries must be (..., d) with d={Y.shape[-1]} as stored "
                         f"(..., N, d), got queries {R.shape} and stored {Y.shape}")
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(f"{fn}: beta must be a positive number, got {beta!r}")
    if not 0 < beta < math.inf:  # NaN fails this too
        raise ValueError(f"{fn}: beta must be a positive number, got {beta!r}")
    return R, Y


def _check_steps(fn, steps, softmax):
    check_int(fn, "steps", steps, low=1)
    if not isinstance(softmax, str) or softmax not in SOFTMAXES:
        raise ValueError(f"{fn}: softmax must be one of {SOFTMAXES}, got {softmax!r}")


def hopfield_retrieve(queries, stored, beta, steps=1, softmax="softmax"):
    r"""``steps`` updates :math:`\xi \leftarrow \operatorname{softmax}(\beta \xi Y^\top) Y`.

    ``queries`` (..., Q, d) or (d,), ``stored`` (..., N, d) (batch dims broadcast); returns the
    retrieved states with the shape of ``queries``. Differentiable in queries and stored.
    """
    R, Y = _check_retrieval_args("hopfield_retrieve", queries, stored, beta)
    _check_steps("hopfield_retrieve", steps, softmax)
    sm = ops.softmax if softmax == "softmax" else softmax1
    vector = R.ndim == 1
    xi = ops.reshape(R, (1, R.shape[0])) if vector else R
    Yt = ops.swapaxes(Y, -1, -2)
    for _ in range(steps):
        # Exercise 10.4 (2 pt): one update of the states xi (rows) against the stored patterns
        # Y (rows; Yt is its transpose): xi <- sm(beta xi Y^T) Y.
        ### BEGIN SOLUTION
        xi = sm(beta * (xi @ Yt), axis=-1) @ Y
        ### END SOLUTION
    return ops.reshape(xi, xi.shape[:-2] + xi.shape[-1:]) if vector else xi


def hopfield_retrieve_reference(queries, stored, beta, steps=1, softmax="softmax"):
    """The column-vector form, one query at a time in NumPy: xi <- X softmax(beta X^T xi)."""
    fn = "hopfield_retrieve_reference"
    R, Y = _check_retrieval_args(fn, queries, stored, beta)  # the same contract as the fast path
    _check_steps(fn, steps, softmax)
    R = R.numpy().astype(np.float64)
    X = Y.numpy().astype(np.float64).T  # (d, N): patterns as columns
    if X.ndim != 2:
        raise ValueError(f"{fn}: stored must be (N, d) (no batch axes), got shape {Y.shape}")
    if R.shape[-1] != X.shape[0]:
        raise ValueError(f"hopfield_retrieve_reference: queries (..., {X.shape[0]}) expected, "
                         f"got {R.shape}")
    out = np.empty_like(R)
    for idx in np.ndindex(R.shape[:-1]):
        xi = R[idx]
        for _ in range(steps):
            z = beta * X.T @ xi
            m = max(z.max(), 0.0) if softmax == "softmax1" else z.max()
            e = np.exp(z - m)
            p = e / (e.sum() + (np.exp(-m) if softmax == "softmax1" else 0.0))
            xi = X @ p
        out[idx] = xi
    return out


def hopfield_energy(queries, stored, beta):
    r"""E(xi) = -lse(beta, X^T xi) + 1/2 xi^T xi + log(N)/beta + M^2/2, one value per query.

    ``queries`` (..., Q, d) or (d,), ``stored`` (..., N, d); returns (..., Q) (or a scalar).
    """
    R, Y = _check_retrieval_args("hopfield_energy", queries, stored, beta)
    vector = R.ndim == 1
    xi = ops.reshape(R, (1, R.shape[0])) if vector else R
    N = Y.shape[-2]
    lse = ops.logsumexp(beta * (xi @ ops.swapaxes(Y, -1, -2)), axis=-1) / beta
    M2 = ops.max((Y * Y).sum(axis=-1), axis=-1, keepdims=True)  # M^2, one per batch
    E = -lse + 0.5 * (xi * xi).sum(axis=-1) + float(np.log(N)) / beta + 0.5 * M2
    return ops.reshape(E, E.shape[:-1]) if vector else E


def separation(stored):
    """Delta_i = x_i^T x_i - max_{j != i} x_i^T x_j for stored patterns (N, d), N >= 2."""
    Y = np.asarray(stored.numpy() if hasattr(stored, "numpy") else stored, np.float64)
    if Y.ndim != 2 or Y.shape[0] < 2:
        raise ValueError(f"separation: stored must be (N, d) with N >= 2, got shape {Y.shape}")
    G = Y @ Y.T
    off = G.copy()
    np.fill_diagonal(off, -np.inf)
    return np.diag(G) - off.max(axis=1)


def retrieval_error_bound(query, stored, i, beta):
    """Upper bound on ||xi_new - x_i|| after one update from ``query`` (module docstring)."""
    Y = np.asarray(stored, np.float64)
    xi = np.asarray(query, np.float64)
    if xi.shape != Y.shape[1:]:
        raise ValueError(f"retrieval_error_bound: query must have shape {Y.shape[1:]}, "
                         f"got {xi.shape}")
    N, M = Y.shape[0], np.sqrt((Y * Y).sum(axis=1).max())
    gap = separation(Y)[i] - 2 * M * np.linalg.norm(xi - Y[i])
    return float(2 * M * (N - 1) * np.exp(-beta * gap))
