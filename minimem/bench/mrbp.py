"""``minimem bench mrbp``: peak tape memory and time per training step, BPTT vs MRBP.

A Memformer (d_model 128, 32 slots, 2 layers, 4 heads, segments of 64 tokens, batch 2) is
unrolled over T segments; one training step is one call of ``bptt`` or ``mrbp`` (loss on every
segment). Peak tape bytes come from ``minimem.track_memory``; MRBP's stored boundary memories
(T + 1 copies of the slots) are listed separately and included in its "total" ratio.
Targets: MRBP peak(T=64)/peak(T=4) <= 1.2 while BPTT's ratio >= 8; MRBP within 1.6x of BPTT's time.
"""
from __future__ import annotations

import numpy as np

from ._util import Row, timeit, with_ratios

DESCRIPTION = "memory replay back-propagation vs BPTT: peak tape bytes and time per step"


def _setup(d_model, n_slots, seg_len, n_layers, n_heads, vocab=64, seed=0, **_):
    from ..memory.segment.memformer import Memformer

    return Memformer(vocab, d_model, n_layers, n_heads, n_slots, seg_len, seed=seed)


def _segments(T, seg_len, batch, vocab=64, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, vocab, (batch, seg_len)), rng.integers(0, vocab, (batch, seg_len)))
            for _ in range(T)]


def _measure(method, model, segments, batch, repeat):
    from ..autograd.function import track_memory
    from ..memory.segment.lab import segment_cell, segment_loss

    cell = segment_cell(model)

    def step():
        model.zero_grad()
        return method(cell, model.init_memory(batch), segments, segment_loss)

    with track_memory() as tracker:
        step()
    seconds = timeit(step, repeat=repeat, warmup=0, max_seconds=30.0)
    return tracker.peak_bytes, seconds


def run(quick=False):
    from ..memory.segment.mrbp import bptt, mrbp

    if quick:
        cfg = {"d_model": 32, "n_slots": 8, "seg_len": 16, "batch": 2, "n_layers": 1, "n_heads": 2}
        Ts, repeat = (1, 4, 8), 3
    else:
        cfg = {"d_model": 128, "n_slots": 32, "seg_len": 64, "batch": 2, "n_layers": 2,
               "n_heads": 4}
        Ts, repeat = (4, 16, 64), 3
    model = _setup(**cfg)
    slot_bytes = cfg["batch"] * cfg["n_slots"] * cfg["d_model"] * 4
    rows, peaks = [], {}
    for T in Ts:
        segments = _segments(T, cfg["seg_len"], cfg["batch"])
        work = (f"memformer d{cfg['d_model']} K{cfg['n_slots']} L{cfg['seg_len']} "
                f"B{cfg['batch']} T={T}")
        for name, method in (("bptt", bptt), ("mrbp", mrbp)):
            peak, sec = _measure(method, model, segments, cfg["batch"], 2 if T >= 64 else repeat)
            stored = (T + 1) * slot_bytes if name == "mrbp" else 0
            peaks[name, T] = (peak, stored)
            note = f"peak tape {peak / 2**20:7.1f} MiB"
            if stored:
                note += f" + stored boundaries {stored / 2**20:.2f} MiB"
            rows.append(Row(work, name, sec, note=note,
                            extra={"T": T, "peak_bytes": peak, "stored_bytes": stored}))
    with_ratios(rows, "bptt")
    lo, hi = Ts[0], Ts[-1]
    bptt_ratio = peaks["bptt", hi][0] / peaks["bptt", lo][0]
    mrbp_ratio = peaks["mrbp", hi][0] / peaks["mrbp", lo][0]
    mrbp_total = sum(peaks["mrbp", hi]) / sum(peaks["mrbp", lo])
    slowest = min(r.ratio for r in rows if r.impl == "mrbp")
    rows.append(Row(f"peak(T={hi}) / peak(T={lo})", "summary", 0.0,
                    note=(f"BPTT {bptt_ratio:.1f}x (target >= 8), MRBP tape {mrbp_ratio:.2f}x, "
                          f"MRBP incl. boundaries {mrbp_total:.2f}x (target <= 1.2); MRBP time "
                          f"{1 / slowest:.2f}x BPTT at worst (target <= 1.6)"),
                    extra={"bptt_peak_ratio": bptt_ratio, "mrbp_peak_ratio": mrbp_ratio,
                           "mrbp_total_ratio": mrbp_total, "mrbp_time_ratio": 1 / slowest}))
    return rows
