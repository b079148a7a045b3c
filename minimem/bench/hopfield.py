"""Hopfield networks: asynchronous recall (Numba kernel vs the plain NumPy loop) and the
continuous retrieval throughput (minimem vs NumPy vs PyTorch).

* Asynchronous recall, N = 1000 units, P = 100 Hebbian patterns, from a probe with 20% of its
  bits flipped, the same permutations for both implementations and a fixed number of sweeps
  (no early stop). The kernel computes the fields once (O(N^2)) and then updates them only on
  flips; the NumPy loop recomputes each visited unit's field (``W[i] @ s``). Two workloads:
  a 10-sweep recall (target >= 50x) and a single sweep, the kernel's worst case (no target).
* Continuous retrieval ``softmax(beta R Y^T) Y`` with 10^4 stored patterns of dimension 256
  (float32), one update of a batch of queries: queries per second.
"""
from __future__ import annotations

import numpy as np

from ._util import Row, timeit, torch_or_none, with_ratios

DESCRIPTION = "async recall sweeps/s (Numba vs NumPy loop), continuous retrieval throughput"


def _async_workloads(n_sweeps):
    from ..kernels.async_sweeps import async_sweeps, async_sweeps_reference
    from ..memory.hopfield import hebbian_weights, sweep_orders
    from ..memory.hopfield.lab import flip_bits, random_patterns

    N, P = 1000, 100
    X = random_patterns(P, N, seed=0)
    W, b = hebbian_weights(X), np.zeros(N)
    probe = flip_bits(X[0], 0.2, seed=1)
    orders = sweep_orders(np.random.default_rng(2), N, n_sweeps)

    def kernel():
        return async_sweeps(W, b, probe, orders, stop_when_stable=False)

    def loop():
        return async_sweeps_reference(W, b, probe, orders, stop_when_stable=False)

    s1, _, _ = kernel()
    s2, _, _ = loop()
    if not np.array_equal(s1, s2):  # the two must compute the same thing
        raise RuntimeError("bench hopfield: kernel and NumPy loop disagree")
    return kernel, loop


def _retrieval(n_queries, torch):
    from .. import autograd as ag
    from ..memory import hopfield_retrieve

    rng = np.random.default_rng(0)
    N, d, beta = 10_000, 256, 1 / 16
    Y = (rng.standard_normal((N, d)) / np.sqrt(d)).astype(np.float32)
    R = (Y[rng.integers(0, N, n_queries)] + 0.05 * rng.standard_normal((n_queries, d))
         ).astype(np.float32)
    Yt, Rt = ag.tensor(Y), ag.tensor(R)

    def ours():
        with ag.no_grad():
            return hopfield_retrieve(Rt, Yt, beta)

    def plain():
        z = beta * (R @ Y.T)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)) @ Y

    impls = {"minimem (no_grad)": ours, "numpy": plain}
    if torch is not None:
        Yp, Rp = torch.from_numpy(Y), torch.from_numpy(R)

        def theirs():
            with torch.no_grad():
                return torch.softmax(beta * (Rp @ Yp.T), dim=-1) @ Yp

        impls["pytorch"] = theirs
    np.testing.assert_allclose(ours().numpy(), plain(), rtol=1e-3, atol=1e-5)
    return impls


def run(quick=False):
    torch = torch_or_none()
    rows = []
    # 1 sweep: the worst case for the kernel (initial fields + ~200 flips of O(N) each);
    # 10 sweeps: a whole recall (later sweeps on a converged state cost O(N) in the kernel)
    for n_sweeps in (1, 3 if quick else 10):
        kernel, loop = _async_workloads(n_sweeps)
        work = f"async recall N=1000 P=100, {n_sweeps} sweep{'s' * (n_sweeps > 1)}, per sweep"
        t_loop = timeit(loop, repeat=2 if quick else 3, warmup=0) / n_sweeps
        t_kernel = timeit(kernel, repeat=20 if quick else 50) / n_sweeps
        pair = [Row(work, "numpy loop", t_loop, note=f"{1 / t_loop:,.0f} sweeps/s"),
                Row(work, "numba kernel", t_kernel, note=f"{1 / t_kernel:,.0f} sweeps/s")]
        with_ratios(pair, "numpy loop")
        if n_sweeps == 1:
            pair[1].note += "; worst case: the O(N^2) initial fields dominate"
        else:
            pair[1].note += f"; target >= 50x: {'met' if pair[1].ratio >= 50 else 'NOT met'}"
        rows += pair

    n_queries = 256 if quick else 1024
    work = f"continuous retrieval 1e4x256, {n_queries} queries"
    retrieval_rows = []
    for impl, fn in _retrieval(n_queries, torch).items():
        t = timeit(fn, repeat=3 if quick else 5)
        retrieval_rows.append(Row(work, impl, t, note=f"{n_queries / t:,.0f} queries/s"))
    with_ratios(retrieval_rows, "pytorch" if torch is not None else "numpy")
    rows += retrieval_rows
    return rows
