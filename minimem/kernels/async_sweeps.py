r"""Asynchronous sign updates of binary Hopfield networks (classical and dense).

Classical network, units :math:`s_i \in \{-1, +1\}`, symmetric weights :math:`W`, thresholds
:math:`b`. The local field and the energy are

.. math:: h_i = \sum_j W_{ij} s_j - b_i, \qquad E(s) = -\tfrac12 s^\top W s + b^\top s .

One *sweep* visits every unit once, in the order given by a row of ``orders``, and sets
:math:`s_i \leftarrow \operatorname{sgn}(h_i)`; a field with :math:`|h_i| \le \text{tol}` keeps
:math:`s_i` (a tie must not be decided by round-off). Flipping :math:`s_i` changes the energy
by :math:`\Delta E = -(s_i^{new} - s_i) h_i \le 0`, so the energy never increases.

Dense associative memory (Krotov & Hopfield 2016), patterns :math:`x^\mu` (rows of ``X``):

.. math:: E(s) = -\sum_\mu F(x^\mu \cdot s), \qquad
          s_i \leftarrow \operatorname{sgn}\Big(\sum_\mu F(a^\mu_i + x^\mu_i)
                                           - F(a^\mu_i - x^\mu_i)\Big),
          \quad a^\mu_i = \sum_{j \ne i} x^\mu_j s_j ,

i.e. each unit takes the value of lower energy, the others held fixed.

Two formulations of each: ``*_reference`` is the loop a student writes (it recomputes the field
of each visited unit from scratch, :math:`O(N)` per unit, or the two energies, :math:`O(PN)`);
the Numba kernels keep the fields :math:`h = W s - b` (or the overlaps :math:`m = X s`) up to
date and only touch them when a unit flips, so a sweep in which nothing flips costs
:math:`O(N)` (or :math:`O(NP)`).
"""
from __future__ import annotations

import numpy as np

from ..backend import get_xp
from ..checks import (
    check_array,
    check_bool,
    check_dtype,
    check_float_array,
    check_index_bounds,
    check_int,
    check_real,
)
from ._jit import jit

F_KINDS = {"poly": 0, "rectified": 1, "exp": 2}


# --------------------------------------------------------------------------------------------
# Classical network
# --------------------------------------------------------------------------------------------
### BEGIN WITHHELD 10.2
@jit
def _async_kernel(W, b, s, orders, tol, stop_when_stable, energies):
    N = s.shape[0]
    h = -b.copy()
    for j in range(N):  # h = W s - b as a sum of rows (W symmetric): vectorises, no reduction
        for i in range(N):
            h[i] += W[j, i] * s[j]
    done = 0
    converged = False
    for t in range(orders.shape[0]):
        flips = 0
        for k in range(N):
            i = orders[t, k]
            if h[i] > tol:
                new = 1.0
            elif h[i] < -tol:
                new = -1.0
            else:
                continue  # a tie keeps the unit as it is
            if new != s[i]:
                d = new - s[i]
                for j in range(N):  # h = W s - b after the flip (W symmetric: row i = column i)
                    h[j] += W[i, j] * d
                s[i] = new
                flips += 1
        e = 0.0
        for j in range(N):  # E = -1/2 s.(h + b) + b.s = 1/2 s.(b - h)
            e += s[j] * (b[j] - h[j])
        energies[t] = 0.5 * e
        done += 1
        if flips == 0:
            converged = True
            if stop_when_stable:
                break
    return done, converged
### END WITHHELD


def _check_orders(fn, orders, N, tol, stop_when_stable):
    check_array(fn, "orders", orders)
    check_dtype(fn, "orders", orders, "iu")
    if orders.ndim != 2 or orders.shape[1] != N:
        raise ValueError(f"{fn}: orders must be (n_sweeps, {N}) unit indices, got {orders.shape}")
    # before the kernel reads W[i] / X[:, i]: a unit out of range there is a segfault
    check_index_bounds(fn, "orders", orders, N)
    check_real(fn, "tol", tol, low=0)
    check_bool(fn, "stop_when_stable", stop_when_stable)


def _check_async_args(fn, W, b, s, orders, tol, stop_when_stable):
    for name, a in (("W", W), ("b", b), ("s", s)):
        check_float_array(fn, name, a)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"{fn}: W must be a square (N, N) matrix, got shape {W.shape}")
    N = W.shape[0]
    if b.shape != (N,) or s.shape != (N,):
        raise ValueError(f"{fn}: expected b and s of shape ({N},), got {b.shape} and {s.shape}")
    _check_orders(fn, orders, N, tol, stop_when_stable)


def async_sweeps_reference(W, b, s, orders, tol=1e-9, stop_when_stable=True):
    """The plain loop: ``(state, energies after each sweep, converged)``; ``s`` is not modified."""
    _check_async_args("async_sweeps_reference", W, b, s, orders, tol, stop_when_stable)
    s = s.astype(np.float64)  # float64 whatever came, as the kernel computes
    energies, converged = [], False
    for order in orders:
        flips = 0
        for i in order:
            # Exercise 10.2 (2 pt): the asynchronous update of unit i: the new value s_new of s[i]
            # from its local field h_i = W[i] . s - b[i] (keep s[i] when |h_i| <= tol).
            ### BEGIN SOLUTION
            h_i = W[i] @ s - b[i]
            s_new = s[i] if abs(h_i) <= tol else (1.0 if h_i > 0 else -1.0)
            ### END SOLUTION
            flips += int(s_new != s[i])
            s[i] = s_new
        energies.append(float(-0.5 * s @ W @ s + b @ s))
        if flips == 0:
            converged = True
            if stop_when_stable:
                break
    return s, np.asarray(energies, dtype=np.float64), converged


def async_sweeps(W, b, s, orders, tol=1e-9, stop_when_stable=True):
    """Up to ``len(orders)`` asynchronous sweeps (Numba): ``(state, energies, converged)``.

    ``W`` (N, N) symmetric, ``b`` (N,), ``s`` (N,) of +-1, ``orders`` (n_sweeps, N) integer
    permutations. ``energies[t]`` is the energy after sweep t; ``converged`` is True when a
    sweep changed nothing (a fixed point). CuPy arrays run the reference loop.
    """
    _check_async_args("async_sweeps", W, b, s, orders, tol, stop_when_stable)
    if get_xp(W) is not np:
        return async_sweeps_reference(W, b, s, orders, tol, stop_when_stable)
    ### BEGIN WITHHELD 10.2
    W = np.ascontiguousarray(W, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    s = np.array(s, dtype=np.float64)
    energies = np.empty(orders.shape[0], dtype=np.float64)
    done, converged = _async_kernel(W, b, s, np.ascontiguousarray(orders, dtype=np.int64),
                                    float(tol), bool(stop_when_stable), energies)
    return s, energies[:done].copy(), bool(converged)
    #> return async_sweeps_reference(W, b, s, orders, tol, stop_when_stable)
    ### END WITHHELD


# --------------------------------------------------------------------------------------------
# Dense associative memory
# --------------------------------------------------------------------------------------------
def dense_F(kind, n):
    """The interaction function F as a NumPy callable: z^n, max(z, 0)^n or exp(z)."""
    if kind == "poly":
        return lambda z: z ** n
    if kind == "rectified":
        return lambda z: np.maximum(z, 0.0) ** n
    if kind == "exp":
        return np.exp
    raise ValueError(f"dense_F: kind must be one of {sorted(F_KINDS)}, got {kind!r}")


@jit
def _F_scalar(z, kind, n):
    if kind == 0:
        return z ** n
    if kind == 1:
        return max(z, 0.0) ** n
    return np.exp(z)


@jit
def _dense_kernel(XT, s, m, orders, kind, n, tol, stop_when_stable, energies):
    N, P = XT.shape
    done = 0
    converged = False
    for t in range(orders.shape[0]):
        flips = 0
        for k in range(N):
            i = orders[t, k]
            # exp: factor out e^c, c = max_mu a_mu + 1, so the sums neither overflow nor vanish
            c = 0.0
            if kind == 2:
                c = -np.inf
                for mu in range(P):
                    c = max(c, m[mu] - XT[i, mu] * s[i] + 1.0)
            diff = 0.0
            scale = 0.0
            for mu in range(P):
                a = m[mu] - XT[i, mu] * s[i] - c
                f_plus = _F_scalar(a + XT[i, mu], kind, n)
                f_minus = _F_scalar(a - XT[i, mu], kind, n)
                diff += f_plus - f_minus  # E(s_i=-1) - E(s_i=+1)
                scale += abs(f_plus) + abs(f_minus)
            if diff > tol * scale:
                new = 1.0
            elif diff < -tol * scale:
                new = -1.0
            else:
                continue
            if new != s[i]:
                d = new - s[i]
                for mu in range(P):
                    m[mu] += XT[i, mu] * d
                s[i] = new
                flips += 1
        e = 0.0
        for mu in range(P):
            e -= _F_scalar(m[mu], kind, n)
        energies[t] = e
        done += 1
        if flips == 0:
            converged = True
            if stop_when_stable:
                break
    return done, converged


def _check_dense_args(fn, X, s, orders, kind, n, tol, stop_when_stable):
    check_float_array(fn, "X", X)
    check_float_array(fn, "s", s)
    if X.ndim != 2:
        raise ValueError(f"{fn}: X must be a (P, N) matrix of patterns, got shape {X.shape}")
    N = X.shape[1]
    if s.shape != (N,):
        raise ValueError(f"{fn}: s must have shape ({N},), got {s.shape}")
    _check_orders(fn, orders, N, tol, stop_when_stable)
    if not isinstance(kind, str) or kind not in F_KINDS:
        raise ValueError(f"{fn}: kind must be one of {sorted(F_KINDS)}, got {kind!r}")
    check_int(fn, "n", n, low=1)


def dense_async_sweeps_reference(X, s, orders, kind="poly", n=3, tol=1e-12,
                                 stop_when_stable=True):
    """The plain loop: each visited unit compares the two energies computed from scratch."""
    _check_dense_args("dense_async_sweeps_reference", X, s, orders, kind, n, tol,
                      stop_when_stable)
    F = dense_F(kind, n)
    X = X.astype(np.float64)
    s = s.astype(np.float64)  # float64 whatever came, as the kernel computes
    energies, converged = [], False
    for order in orders:
        flips = 0
        for i in order:
            s_plus, s_minus = s.copy(), s.copy()
            s_plus[i], s_minus[i] = 1.0, -1.0
            f_plus, f_minus = F(X @ s_plus), F(X @ s_minus)
            diff = f_plus.sum() - f_minus.sum()  # = E(s_i=-1) - E(s_i=+1)
            scale = np.abs(f_plus).sum() + np.abs(f_minus).sum()
            s_new = 1.0 if diff > tol * scale else (-1.0 if diff < -tol * scale else s[i])
            flips += int(s_new != s[i])
            s[i] = s_new
        energies.append(float(-F(X @ s).sum()))
        if flips == 0:
            converged = True
            if stop_when_stable:
                break
    return s, np.asarray(energies, dtype=np.float64), converged


def dense_async_sweeps(X, s, orders, kind="poly", n=3, tol=1e-12, stop_when_stable=True):
    """Up to ``len(orders)`` dense-memory sweeps (Numba): ``(state, energies, converged)``.

    ``X`` (P, N) patterns of +-1, ``s`` (N,) of +-1; ``kind`` is ``"poly"`` (F = z^n),
    ``"rectified"`` (F = max(z, 0)^n) or ``"exp"`` (F = e^z). A unit keeps its value when the
    energy difference is below ``tol`` times the sum of the magnitudes of the terms.
    """
    _check_dense_args("dense_async_sweeps", X, s, orders, kind, n, tol, stop_when_stable)
    if get_xp(X) is not np:
        return dense_async_sweeps_reference(X, s, orders, kind, n, tol, stop_when_stable)
    XT = np.ascontiguousarray(np.asarray(X, dtype=np.float64).T)  # (N, P): unit i's row
    s = np.array(s, dtype=np.float64)
    m = XT.T @ s  # overlaps m_mu = x^mu . s, kept up to date on flips
    energies = np.empty(orders.shape[0], dtype=np.float64)
    done, converged = _dense_kernel(XT, s, m, np.ascontiguousarray(orders, dtype=np.int64),
                                    F_KINDS[kind], int(n), float(tol), bool(stop_when_stable),
                                    energies)
    return s, energies[:done].copy(), bool(converged)
