"""``minimem bench armt``: time and tape memory per segment of the chapter-55 memories vs RMT.

One BPTT training step (loss on every segment) over T segments of 32 tokens, batch 2, 1 layer,
d_model 64, 4 memory vectors per memory (RMT's and ARMT's tokens, Memformer's slots, LM2's
bank, FAM's and the cache's rows per layer; ARMT adds a 192 x 64 matrix per layer). Time: the
interleaved median of CPU time divided by T; memory: peak tape bytes (``track_memory``)
divided by T. Ratios: RMT's seconds / the model's (> 1: faster than RMT).
"""
from __future__ import annotations

import time

import numpy as np

from ._util import Row, interleaved_medians, with_ratios

DESCRIPTION = "ARMT, LM2, TransformerFAM, Cached Transformer, Memformer vs RMT: cost per segment"
KINDS = ("rmt", "armt", "memformer", "lm2", "fam", "cached")


def _steps(cfg, T, vocab=64):
    from ..memory.associative.lab import make_model
    from ..memory.segment.lab import segment_cell, segment_loss
    from ..memory.segment.mrbp import bptt

    rng = np.random.default_rng(0)
    segs = [(rng.integers(0, vocab, (cfg["batch"], cfg["seg_len"])),
             rng.integers(0, vocab, (cfg["batch"], cfg["seg_len"]))) for _ in range(T)]
    fns = {}
    for kind in KINDS:
        model = make_model(kind, vocab, cfg["d_model"], cfg["n_mem"], cfg["seg_len"], seed=0)

        def step(model=model):
            model.zero_grad()
            bptt(segment_cell(model), model.init_memory(cfg["batch"]), segs, segment_loss)
        fns[kind] = step
    return fns


def run(quick=False):
    from ..autograd.function import track_memory

    cfg = ({"d_model": 32, "n_mem": 4, "seg_len": 16, "batch": 2} if quick else
           {"d_model": 64, "n_mem": 4, "seg_len": 32, "batch": 2})
    Ts = (2,) if quick else (4, 16)
    rows = []
    for T in Ts:
        fns = _steps(cfg, T)
        peaks = {}
        for kind, fn in fns.items():
            with track_memory() as tracker:
                fn()
            peaks[kind] = tracker.peak_bytes
        medians = interleaved_medians(fns, repeat=3 if quick else 7, warmup=1,
                                      max_seconds=20.0 if quick else 60.0,
                                      clock=time.process_time)
        work = f"d{cfg['d_model']} m{cfg['n_mem']} L{cfg['seg_len']} B{cfg['batch']} T={T}"
        for kind in KINDS:
            rows.append(Row(f"per segment, {work}", kind, medians[kind] / T,
                            note=f"peak tape {peaks[kind] / T / 2**20:6.2f} MiB / segment "
                                 f"({peaks[kind] / peaks['rmt']:.2f}x RMT)",
                            extra={"T": T, "peak_bytes_per_segment": peaks[kind] / T}))
    return with_ratios(rows, "rmt")
