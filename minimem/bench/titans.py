"""Titans' neural memory: the chunked (parallel) form vs the token loop; Omega cost vs window.

Workload: one batch element, 2 heads, d = 16, a linear memory, T = 1024 (256 quick), float64,
forward and backward through the engine. The baseline is the token loop
``neural_memory_reference`` (chunk 1). ``neural_memory(chunk_size=1)`` computes the same rule
through the chunked engine (its overhead); for C > 1 it computes the mini-batch rule, so that
ratio is what the parallel form buys, not an equal-work speed-up. ``omega_memory`` rows
(chunk 16) show the cost of a longer window relative to window 1. Medians of interleaved
repeats.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from ..memory.titans.neural_memory import neural_memory, neural_memory_reference
from ..memory.titans.omega import omega_memory
from ._util import Row, interleaved_medians, with_ratios

DESCRIPTION = "Titans memory: chunked form vs token loop (T 1024); omega_memory vs window"

LOOP = "token loop (reference)"
WINDOW_1 = "omega window=1"


def _inputs(T, d=16, H=2, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((1, H, T, d)) / 4 for _ in range(3))
    gates = [np.full((1, H, T), x) for x in (0.1, 0.5, 0.01)]
    M0 = np.zeros((1, H, d, d))
    return [Tensor(x, requires_grad=True) for x in (q, k, v, *gates, M0)]


def _fwd_bwd(fn, leaves, **kw):
    def run():
        o, _ = fn(*leaves[:6], (leaves[6],), **kw)
        o.sum().backward()
    return run


def rows_for(T, repeat, chunks=(1, 16, 64), windows=(1, 4, 16)):
    """The rows of one length ``T`` (ratios filled)."""
    leaves = _inputs(T)
    fns = {LOOP: _fwd_bwd(neural_memory_reference, leaves)}
    for C in chunks:
        fns[f"chunked C={C}"] = _fwd_bwd(neural_memory, leaves, chunk_size=C)
    times = interleaved_medians(fns, repeat=repeat, warmup=1)
    rows = [Row(f"neural_memory fwd+bwd T={T}", name, t) for name, t in times.items()]
    omega = {f"omega window={w}": _fwd_bwd(omega_memory, leaves, window=w, chunk_size=16)
             for w in windows}
    times = interleaved_medians(omega, repeat=repeat, warmup=1)
    orows = [Row(f"omega_memory fwd+bwd T={T} (chunk 16)", name, t)
             for name, t in times.items()]
    return with_ratios(rows, LOOP) + with_ratios(orows, WINDOW_1)


def run(quick=False):
    return rows_for(256, 3) if quick else rows_for(1024, 5)
