"""Attention as a reduction: Aaren's scan vs its recurrence, split-KV vs dense decoding, the
blockwise transformer block vs the plain block.

Workloads (float32, one process, single-threaded BLAS): prefix attention of one query per
head over T keys (B = 1, H = 4, D = 32), forward + backward; one decoding step over a cache of
S keys (H = 8, D = 64) split into 16 parts; a transformer block (d = 64, 4 heads) forward
without a graph, with its peak traced memory in the note. Medians of interleaved rounds; the
ratio is baseline / ours (> 1: ours is faster).
"""
from __future__ import annotations

import tracemalloc

import numpy as np

from ..autograd import Tensor, no_grad, ops
from ..memory.reduction import blockwise_block, prefix_attention, split_kv_decode
from ..nn.attention import TransformerBlock, scaled_dot_product_attention
from ._util import Row, interleaved_medians, with_ratios

DESCRIPTION = "Aaren scan vs recurrence; split-KV vs dense decoding; BPT block vs plain block"

SCAN, RECURRENT = "prefix scan (log2 T rounds)", "recurrent (T merges)"
SPLIT, DENSE_DECODE = "split-KV decode (16 parts)", "dense decode"
BPT, PLAIN = "blockwise block (64 x 64)", "plain block"


def _arrays(rng, *shapes):
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def _prefix_rows(T, repeat):
    q, k, v = _arrays(np.random.default_rng(0), (1, 4, 32), (1, 4, T, 32), (1, 4, T, 32))

    def step(mode):
        leaves = [Tensor(a, requires_grad=True) for a in (q, k, v)]
        ops.sum(prefix_attention(*leaves, mode=mode)).backward()

    t = interleaved_medians({SCAN: lambda: step("scan"), RECURRENT: lambda: step("recurrent")},
                            repeat=repeat)
    return [Row(f"prefix fwd+bwd T={T}", n, t[n]) for n in (SCAN, RECURRENT)]


def _decode_rows(S, repeat):
    q, k, v = (Tensor(a) for a in _arrays(np.random.default_rng(1), (1, 8, 64), (1, 8, S, 64),
                                          (1, 8, S, 64)))
    q1 = ops.expand_dims(q, 2)
    with no_grad():
        t = interleaved_medians({SPLIT: lambda: split_kv_decode(q, k, v, 16),
                                 DENSE_DECODE: lambda: scaled_dot_product_attention(q1, k, v)},
                                repeat=repeat)
    return [Row(f"decode step S={S}", n, t[n]) for n in (SPLIT, DENSE_DECODE)]


def _peak(fn, x):
    tracemalloc.start()
    fn(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def _block_rows(T, repeat):
    block = TransformerBlock(64, 4, seed=0)
    x = Tensor(np.random.default_rng(2).standard_normal((1, T, 64)).astype(np.float32))
    fns = {BPT: lambda x: blockwise_block(block, x, 64, 64), PLAIN: block}
    with no_grad():
        t = interleaved_medians({n: (lambda f=f: f(x)) for n, f in fns.items()}, repeat=repeat)
        peaks = {n: _peak(f, x) for n, f in fns.items()}
    rows = []
    for n in (BPT, PLAIN):
        row = Row(f"block forward T={T}", n, t[n], note=f"peak {peaks[n] / 2**20:.1f} MiB")
        row.extra["peak_bytes"] = peaks[n]
        rows.append(row)
    return rows


def run(quick=False):
    repeat = 3 if quick else 9
    rows = []
    for T in ((128,) if quick else (256, 1024)):
        rows += _prefix_rows(T, repeat)
    for S in ((2048,) if quick else (8192, 65536)):
        rows += _decode_rows(S, repeat)
    for T in ((256,) if quick else (1024, 4096)):
        rows += _block_rows(T, repeat)
    with_ratios(rows, RECURRENT)
    with_ratios(rows, DENSE_DECODE)
    return with_ratios(rows, PLAIN)
