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


def check_gradients(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Assert that the engine's gradients of ``fn(*inputs)`` match central differences.

    Written here rather than calling ``mm.gradcheck``, so that a graded test's verdict never
    depends on the library's own checker: the outputs are projected on fixed random
    directions ``w``, ``backward(w)`` gives the analytical gradient, and every input element is
    perturbed by ``+-eps`` in plain NumPy. ``inputs`` are tensors; each becomes a fresh float64
    leaf. Passes when ``|analytical - numerical| <= atol + rtol |numerical|``.
    """
    base = [np.array(to_np(x), dtype=np.float64) for x in inputs]

    def outputs(arrays):
        leaves = [mm.tensor(a, requires_grad=True, dtype=np.float64) for a in arrays]
        out = fn(*leaves)
        return leaves, list(out) if isinstance(out, (tuple, list)) else [out]

    leaves, outs = outputs(base)
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(o.shape) for o in outs]
    for o, w in zip(outs, weights):
        o.backward(w, retain_graph=True)

    def projected(arrays):
        return sum(float((np.asarray(to_np(o), dtype=np.float64) * w).sum())
                   for o, w in zip(outputs(arrays)[1], weights))

    for i, (leaf, x) in enumerate(zip(leaves, base)):
        analytical = np.zeros(x.shape) if leaf.grad is None else to_np(leaf.grad)
        numerical = np.zeros(x.shape)
        for idx in np.ndindex(*x.shape):
            plus, minus = [a.copy() for a in base], [a.copy() for a in base]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            numerical[idx] = (projected(plus) - projected(minus)) / (2 * eps)
        np.testing.assert_allclose(analytical, numerical, atol=atol, rtol=rtol,
                                   err_msg=f"gradient of input {i}")


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
