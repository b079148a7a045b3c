"""``minimem tour``: one short step per chapter, each printing a line and writing plots.

A chapter's step is the module of this package named by its key (``minimem.chapters``):
``delta.py`` for chapter 20. Each defines ``TITLE`` and ``run(out_dir) -> str`` (a one-line
result). They run in the order of the chapter table.
"""
from __future__ import annotations

import pathlib
import time

from ..chapters import CHAPTERS, app_module


def steps():
    """(key, module) for every chapter that has a tour step, in the table's order."""
    return [(ch.key, mod) for ch in CHAPTERS if (mod := app_module("tour", ch)) is not None]


def run_tour(out="tour_out", only=None) -> int:
    import matplotlib

    chosen = [(key, mod) for key, mod in steps() if not only or key in only]
    unknown = sorted(set(only or ()) - {key for key, _ in chosen})
    if unknown:
        print(f"tour: unknown step(s) {unknown}; available: {[key for key, _ in steps()]}")
        return 2
    matplotlib.use("Agg")
    out_dir = pathlib.Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, status = [], 0
    print(f"minimem tour: plots go to {out_dir.resolve()}\n")
    for key, mod in chosen:
        t0 = time.perf_counter()
        try:
            result = mod.run(out_dir)
        except Exception as e:  # a failing step is reported, the tour goes on
            result, status = f"FAILED: {type(e).__name__}: {e}", 1
        rows.append((mod.TITLE, result, time.perf_counter() - t0))
        print(f"  {mod.TITLE:38s} {result}  ({rows[-1][2]:.1f}s)", flush=True)
    print(f"\n{len(rows)} steps, {sum(r[2] for r in rows):.1f}s; plots in {out_dir}")
    return status
