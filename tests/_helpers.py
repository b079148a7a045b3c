"""Helpers for tests (importable as ``from _helpers import ...``)."""
import numpy as np

import minimem as mm


def leaf(rng, *shape, device="cpu", scale=1.0):
    """A float64 leaf tensor requiring grad, standard normal times ``scale``."""
    return mm.tensor(scale * rng.standard_normal(shape), requires_grad=True, dtype=np.float64,
                     device=device)


def seeded_leaf(*shape, seed=0, dtype=np.float64):
    """A leaf tensor requiring grad, standard normal from a fresh generator seeded ``seed``."""
    return mm.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True,
                     dtype=dtype)


def tensor64(x, grad=False):
    """``x`` (an array, list or Tensor) as a float64 tensor of its own."""
    return mm.tensor(x, requires_grad=grad, dtype=np.float64)


def to_np(x):
    """A NumPy array from a Tensor, a CuPy array or anything array-like."""
    if isinstance(x, mm.Tensor):
        return x.numpy()
    return np.asarray(x)


def naive_delta_recurrence(q, k, v, beta, g, S0, scale, delta=True):
    """The (gated) delta rule, or linear attention with ``delta=False``, in plain NumPy loops.

    One head and one token at a time, independent of the library: ``q, k (..., T, D_k)``,
    ``v (..., T, D_v)``, ``beta, g (..., T)`` (``g=None``: no decay; ``beta`` is unused when
    ``delta=False``), ``S0 (..., D_k, D_v)``. Returns ``(o, S_T)``.
    """
    o, S_T = np.zeros(v.shape), np.zeros(S0.shape)
    for head in np.ndindex(*q.shape[:-2]):
        S = S0[head].copy()
        for t in range(q.shape[-2]):
            at = head + (t,)
            if g is not None:
                S = np.exp(g[at]) * S
            u = beta[at] * (v[at] - S.T @ k[at]) if delta else v[at]   # the value written
            S = S + np.outer(k[at], u)
            o[at] = S.T @ (scale * q[at])
        S_T[head] = S
    return o, S_T
