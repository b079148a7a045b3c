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

The forms of the chapter's second half (:func:`extension_rows`, same B, H, D, T = 1024, medians
of interleaved rounds, ratio = reference time / ours): gated linear attention, normalized
linear attention with the elu+1 map and DeltaProduct (n_h = 2), each ``recurrent`` and
``chunk`` against its engine-op ``reference`` loop and, when installed, the same recurrence in
PyTorch eager (``torch recurrent``).

Targets (ratio = baseline time / our time): Numba recurrent forward >= 5x the PyTorch
recurrence; our chunk forward >= 1x PyTorch's chunk; our chunk forward+backward >= 0.5x
(within 2x of) PyTorch autograd on the chunk algorithm.
"""
from __future__ import annotations

import numpy as np

from ._util import Row, interleaved_medians, timeit, torch_or_none, with_ratios

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


def _extension_data(T, n_h=2, seed=0):
    rng = np.random.default_rng(seed)
    B, H, D = 1, 4, 64
    q = rng.standard_normal((B, H, T, D))
    k = rng.standard_normal((B, H, T, n_h, D))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    return {"q": q.astype(np.float32), "k": k.astype(np.float32),
            "v": rng.standard_normal((B, H, T, n_h, D)).astype(np.float32),
            "beta": rng.uniform(0.1, 1.9, (B, H, T, n_h)).astype(np.float32),
            "g": -rng.uniform(0.0, 0.1, (B, H, T)).astype(np.float32)}


def _extension_ours(name, data, mode, backward):
    """One of the new forms as a callable; ``mode`` ``"reference"`` is the engine-op loop."""
    import minimem as mm
    from minimem import memory

    d = data
    tuning = {} if mode == "reference" else {"mode": mode}

    def call(ins):
        q, k, v, beta, g = ins
        if name == "gated linear attention":
            f = (memory.gated_linear_attention_reference if mode == "reference"
                 else memory.gated_linear_attention)
            return f(q, k[:, :, :, 0], v[:, :, :, 0], g, **tuning)[0]
        if name == "normalized linear attention (elu1)":
            f = (memory.linear_attention_reference if mode == "reference"
                 else memory.linear_attention)
            return f(q, k[:, :, :, 0], v[:, :, :, 0], feature_map="elu1", normalize=True,
                     **tuning)[0]
        f = memory.delta_product_reference if mode == "reference" else memory.delta_product
        return f(q, k, v, beta, **tuning)[0]

    def run():
        ins = [mm.tensor(d[n], requires_grad=backward) for n in ("q", "k", "v", "beta", "g")]
        o = call(ins)
        if backward:
            o.sum().backward()
    return run


def _extension_torch(torch, name, data, backward):
    """The same recurrence token by token in PyTorch eager (autograd backward)."""
    def run():
        q, k, v, beta, g = (torch.tensor(data[n], requires_grad=backward)
                            for n in ("q", "k", "v", "beta", "g"))
        B, H, T, n_h, D = k.shape
        S = q.new_zeros(B, H, D, D)
        z = q.new_zeros(B, H, D)
        outs = []
        for t in range(T):
            if name == "delta product (n_h=2)":
                for j in range(n_h):
                    kj = k[:, :, t, j]
                    u = beta[:, :, t, j, None] * (v[:, :, t, j]
                                                 - torch.einsum("bhij,bhi->bhj", S, kj))
                    S = S + kj.unsqueeze(-1) * u.unsqueeze(-2)
                outs.append(torch.einsum("bhij,bhi->bhj", S, q[:, :, t] * D ** -0.5))
                continue
            kt, vt, qt = k[:, :, t, 0], v[:, :, t, 0], q[:, :, t]
            if name == "gated linear attention":
                decay = torch.exp(g[:, :, t])[..., None, None]
                S = decay * S + kt.unsqueeze(-1) * vt.unsqueeze(-2)
                outs.append(torch.einsum("bhij,bhi->bhj", S, qt * D ** -0.5))
            else:
                fk, fq = torch.nn.functional.elu(kt) + 1, torch.nn.functional.elu(qt) + 1
                S = S + fk.unsqueeze(-1) * vt.unsqueeze(-2)
                z = z + fk
                outs.append(torch.einsum("bhij,bhi->bhj", S, fq)
                            / ((z * fq).sum(-1, keepdim=True) + 1e-6))
        o = torch.stack(outs, dim=2)
        if backward:
            o.sum().backward()
    if not backward:
        def run_no_grad():
            with torch.no_grad():
                run()
        return run_no_grad
    return run


EXTENSIONS = ("gated linear attention", "normalized linear attention (elu1)",
              "delta product (n_h=2)")


def extension_rows(T=1024, quick=False, torch=None):
    """Rows for the new forms: ``recurrent``, ``chunk``, ``reference`` (and ``torch
    recurrent``) per workload, timed in interleaved rounds; ratio = reference / ours."""
    data = _extension_data(T)
    rows = []
    for name in EXTENSIONS:
        for kind, backward in (("fwd", False), ("fwd+bwd", True)):
            wl = f"{name} {kind} T={T}"
            fns = {f"{m}": _extension_ours(name, data, m, backward)
                   for m in ("recurrent", "chunk", "reference")}
            if torch is not None:
                fns["torch recurrent"] = _extension_torch(torch, name, data, backward)
            med = interleaved_medians(fns, repeat=1 if quick else 3, warmup=1,
                                      max_seconds=5.0 if quick else 30.0)
            for impl, sec in med.items():
                rows.append(Row(wl, impl, sec))
    rows = with_ratios(rows, "reference")
    if torch is not None:
        by = {(r.workload, r.impl): r for r in rows}
        for r in rows:
            base = by.get((r.workload, "torch recurrent"))
            if base is not None and r.impl in ("recurrent", "chunk"):
                r.extra["vs torch recurrent"] = base.seconds / r.seconds
                r.note = f"{base.seconds / r.seconds:.2f}x vs torch recurrent"
    return rows


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
    rows = _ratios(rows, torch is not None)
    return rows + extension_rows(128 if quick else 1024, quick=quick, torch=torch)


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
