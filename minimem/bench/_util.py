"""Timing helpers shared by the benchmarks."""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field


@dataclass
class Row:
    """One timed workload: ``seconds`` per call, and a ratio to a named baseline row."""

    workload: str
    impl: str
    seconds: float
    baseline: str | None = None   # impl name of the row to compare with (same workload)
    ratio: float | None = None    # baseline_seconds / seconds (> 1: we are faster)
    note: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self):
        return asdict(self)


def timeit(fn, repeat=5, number=1, warmup=1, max_seconds=10.0) -> float:
    """Best time per call over ``repeat`` rounds of ``number`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
        if time.perf_counter() - start > max_seconds:
            break
    return best


def interleaved_medians(fns, repeat=15, number=1, warmup=2, max_seconds=60.0,
                        clock=time.perf_counter) -> dict:
    """Median seconds per call of every callable in ``fns`` ({name: fn}), timed in rounds.

    Each round calls every function ``number`` times, in an order that rotates from round to
    round, so that a slow spell of a shared machine falls on all of them alike; the ratio of two
    medians from one call is what a benchmark should report. ``clock``: wall time by default;
    ``time.process_time`` counts only this process's CPU time (for single-threaded workloads on
    a machine that other jobs share). Stops after ``max_seconds`` of wall time (at least three
    rounds are kept).
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times = {n: [] for n in names}
    start = time.perf_counter()
    for r in range(repeat):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = clock()
            for _ in range(number):
                fns[n]()
            times[n].append((clock() - t0) / number)
        if r >= 2 and time.perf_counter() - start > max_seconds:
            break
    return {n: statistics.median(ts) for n, ts in times.items()}


def with_ratios(rows, baseline_impl):
    """Fill ``ratio = t_baseline / t`` for every row whose workload has a baseline row."""
    base = {r.workload: r.seconds for r in rows if r.impl == baseline_impl}
    for r in rows:
        if r.workload in base and r.impl != baseline_impl:
            r.baseline = baseline_impl
            r.ratio = base[r.workload] / r.seconds
    return rows


def torch_or_none():
    """PyTorch when the optional ``bench`` extra is installed, else None."""
    try:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        return torch
    except Exception:
        return None


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:8.1f} us"
    if s < 1:
        return f"{s * 1e3:8.2f} ms"
    return f"{s:8.2f} s "


def format_rows(rows) -> str:
    lines = [f"{'workload':42s} {'impl':28s} {'time':>11s}  {'ratio':>24s}  note"]
    for r in rows:
        ratio = f"{r.ratio:6.2f}x vs {r.baseline}" if r.ratio is not None else ""
        lines.append(f"{r.workload:42s} {r.impl:28s} {fmt_time(r.seconds)}  {ratio:>24s}  {r.note}")
    return "\n".join(lines)
