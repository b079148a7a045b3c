"""``minimem bench``: each benchmark times our implementation and its baselines in one run.

A chapter's benchmark is the module of this package named by its key (``minimem.chapters``):
``delta.py`` for chapter 20, with ``DESCRIPTION`` and ``run(quick: bool) -> list[Row]``.
Ratios are always between timings taken in the same process, so they mean something on any
machine.
"""
from __future__ import annotations

import json

from ..chapters import CHAPTERS, app_module
from ._util import Row, format_rows

__all__ = ["Row", "benchmarks", "format_rows", "run_benchmarks"]


def benchmarks():
    """{key: module} for every chapter that has a benchmark, in the table's order."""
    return {ch.key: mod for ch in CHAPTERS if (mod := app_module("bench", ch)) is not None}


def run_benchmarks(names=None, quick=False, json_path=None) -> int:
    available = benchmarks()
    names = list(names or available)
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"bench: unknown benchmark(s) {unknown}; available: {list(available)}")
        return 2
    all_rows = {}
    for name in names:
        mod = available[name]
        print(f"\n== minimem bench {name}: {mod.DESCRIPTION}", flush=True)
        rows = mod.run(quick=quick)
        print(format_rows(rows), flush=True)
        all_rows[name] = [r.as_dict() for r in rows]
    if json_path:
        with open(json_path, "w") as f:
            json.dump(all_rows, f, indent=1)
    return 0
