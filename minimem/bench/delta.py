"""``minimem bench delta``: the delta rule, recurrent (Numba) and chunked, vs NumPy and PyTorch.

Workloads: B=1, H=4, D=64, float32, T in (1024, 4096), forward and forward+backward.
Implementations timed in the same run:

* ``numba recurrent``: :func:`minimem.memory.delta.delta_rule` ``mode="recurrent"`` (kernel + its
  hand-derived backward; the state stored every 64 tokens, ``checkpoint=64``);
* ``chunk C=64``: ``mode="chunk"``, ``chunk_size=64``: engine matmuls before the loop over
  chunks (autograd differentiates those), then two nodes with hand-written backwards: the
  triangular inverse (``UnitLowerInverse``, a Numba forward substitution) and the loop over
  chunks (``ChunkScan``, a reverse scan) of :mod:`minimem.memory.delta.chunkwise`;
* ``numpy recurrent``: the kernels' NumPy twin (vectorized over heads, loop over time);
* ``torch recurrent``: PyTorch CPU eager running the same recurrence token by token
  (autograd for the backward);
* ``torch chunk``: PyTorch CPU eager running the same UT/WY chunk algorithm (the triangular
  inverse with ``torch.linalg.solve_triangular``), autograd backward.

Targets (ratio = baseline time / our time): Numba recurrent forward >= 5x the PyTorch
recurrence; our chunk forward >= 1x PyTorch's chunk; our chunk forward+backward >= 0.5x
(within 2x of) PyTorch autograd on the chunk algorithm.
"""
from __future__ import annotations

import numpy as np

from ._util import Row, timeit, torch_or_none

DESCRIPTION = "delta rule: Numba recurrent / chunk vs NumPy and PyTorch (B=1, H=4, D=64)"

TARGETS = {("fwd", "numba recurrent"): ("torch recurrent", 5.0),
           ("fwd", "chunk C=64"): ("torch chunk", 1.0),
           ("fwd+bwd", "chunk C=64"): ("torch chunk", 0.5)}


# ---------------------------------------------------------------------------------------------
# PyTorch baselines (same recurrence, same chunk algorithm)
# ---------------------------------------------------------------------------------------------
def torch_delta_recurrent(torch, q, k, v, beta, scale):
    B, H, T, Dk = q.shape
    S = q.new_zeros(B, H, Dk, v.shape[-1])
    outs = []
    for t in range(T):
        k_t = k[:, :, t]
        u = v[:, :, t] - torch.einsum("bhij,bhi->bhj", S, k_t)
        S = S + k_t.unsqueeze(-1) * (beta[:, :, t, None] * u).unsqueeze(-2)
        outs.append(torch.einsum("bhij,bhi->bhj", S, q[:, :, t] * scale))
    return torch.stack(outs, dim=2), S


def torch_delta_chunk(torch, q, k, v, beta, scale, C=64):
    B, H, T, Dk = q.shape
    Dv = v.shape[-1]
    N = -(-T // C)
    pad = N * C - T
    if pad:
        z = lambda x: torch.nn.functional.pad(x, (0, 0, 0, pad))  # noqa: E731
        q, k, v = z(q), z(k), z(v)
        beta = torch.nn.functional.pad(beta, (0, pad))
    Q = q.reshape(B, H, N, C, Dk) * scale
    K, V = k.reshape(B, H, N, C, Dk), v.reshape(B, H, N, C, Dv)
    b = beta.reshape(B, H, N, C)
    eye = torch.eye(C, dtype=q.dtype)
    A = torch.tril(K @ K.transpose(-1, -2) * b.unsqueeze(-1), -1)
    Tm = torch.linalg.solve_triangular(eye + A, eye.expand_as(A), upper=False,
                                       unitriangular=True) * b.unsqueeze(-2)
    W, U = Tm @ K, Tm @ V
    P = torch.tril(Q @ K.transpose(-1, -2))
    S = q.new_zeros(B, H, Dk, Dv)
    outs = []
    for n in range(N):
        Un = U[:, :, n] - W[:, :, n] @ S
        outs.append(Q[:, :, n] @ S + P[:, :, n] @ Un)
        S = S + K[:, :, n].transpose(-1, -2) @ Un
    return torch.stack(outs, dim=2).reshape(B, H, N * C, Dv)[:, :, :T], S


# ---------------------------------------------------------------------------------------------
def _data(T, seed=0):
    rng = np.random.default_rng(seed)
    B, H, D = 1, 4, 64
    q, k = rng.standard_normal((B, H, T, D)), rng.standard_normal((B, H, T, D))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.standard_normal((B, H, T, D))
    beta = rng.uniform(0.1, 0.9, (B, H, T))
    return [a.astype(np.float32) for a in (q, k, v, beta)]


def _ours(arrays, mode, backward):
    import minimem as mm
    from minimem.memory import delta_rule
    # 64 tokens either way: the chunk length of one mode, the checkpoint interval of the other
    tuning = {"chunk_size": 64} if mode == "chunk" else {"checkpoint": 64}

    def run():
        ins = [mm.tensor(a, requires_grad=backward) for a in arrays]
        o, _ = delta_rule(*ins, mode=mode, **tuning)
        if backward:
            o.sum().backward()
    return run


def _numpy_twin(arrays, backward):
    from minimem.kernels.delta_recurrent import (recurrent_backward_reference,
                                                 recurrent_forward_reference)
    q, k, v, beta = (a.reshape(4, a.shape[2], -1) if a.ndim == 4 else a.reshape(4, -1)
                     for a in arrays)
    g = np.zeros_like(beta)
    S0 = np.zeros((4, 64, 64), np.float32)

    def run():
        o, S, ck = recurrent_forward_reference(q, k, v, beta, g, S0, 0.125, True, False,
                                               checkpoint=64)
        if backward:
            recurrent_backward_reference(q, k, v, beta, g, ck, 0.125, np.ones_like(o),
                                         np.zeros_like(S), True, False, checkpoint=64)
    return run


def _torch(torch, arrays, chunk, backward):
    fn = torch_delta_chunk if chunk else torch_delta_recurrent

    def run():
        ins = [torch.tensor(a, requires_grad=backward) for a in arrays]
        if backward:
            o, _ = fn(torch, *ins, 0.125)
            o.sum().backward()
        else:
            with torch.no_grad():
                fn(torch, *ins, 0.125)
    return run


def run(quick=False):
    torch = torch_or_none()
    lengths = (128,) if quick else (1024, 4096)
    rows = []
    for T in lengths:
        arrays = _data(T)
        for kind, backward in (("fwd", False), ("fwd+bwd", True)):
            wl = f"delta rule {kind} T={T}"
            impls = [("numba recurrent", _ours(arrays, "recurrent", backward)),
                     ("chunk C=64", _ours(arrays, "chunk", backward))]
            if not (T > 1024 and backward):   # the NumPy twin at T=4096 fwd+bwd takes long
                impls.append(("numpy recurrent", _numpy_twin(arrays, backward)))
            if torch is not None:
                impls += [("torch recurrent", _torch(torch, arrays, False, backward)),
                          ("torch chunk", _torch(torch, arrays, True, backward))]
            for name, fn in impls:
                # fast rows (~10 ms) get more rounds: the best of 3 is noisy at that scale
                repeat = 1 if quick or name in ("numpy recurrent", "torch recurrent") else (
                    10 if T <= 1024 else 3)
                rows.append(Row(wl, name, timeit(fn, repeat=repeat, warmup=1,
                                                 max_seconds=20.0)))
    return _ratios(rows, torch is not None)


def _ratios(rows, have_torch):
    """Ratios against the baselines the targets name; the note says pass/miss."""
    by = {(r.workload, r.impl): r for r in rows}
    for r in rows:
        kind = r.workload.split()[2]
        if r.impl == "numba recurrent" and (r.workload, "numpy recurrent") in by:
            base = by[(r.workload, "numpy recurrent")]
            r.baseline, r.ratio = base.impl, base.seconds / r.seconds
        target = TARGETS.get((kind, r.impl))
        if target and (r.workload, target[0]) in by:
            base = by[(r.workload, target[0])]
            ratio = base.seconds / r.seconds
            r.extra[f"vs {base.impl}"] = ratio
            r.note = (f"{ratio:.2f}x vs {base.impl} (target >= {target[1]:g}x: "
                      f"{'met' if ratio >= target[1] else 'MISSED'})")
            if r.baseline is None:
                r.baseline, r.ratio = base.impl, ratio
    if not have_torch:
        for r in rows:
            if r.impl in ("numba recurrent", "chunk C=64"):
                r.note = (r.note + "; " if r.note else "") + "PyTorch not installed: no baseline"
    return rows
