"""``minimem tour``: one short step per chapter, each printing a line and writing plots.

Steps are the modules of this package named ``sNN_<key>.py``; each defines ``TITLE`` and
``run(out_dir) -> str`` (a one-line result). They run in the order of ``NN``.
"""
from __future__ import annotations

import importlib
import pathlib
import pkgutil
import time


def steps():
    """(key, module) for every tour step, in order."""
    found = []
    for m in pkgutil.iter_modules(__path__):
        if m.name.startswith("s") and m.name[1:3].isdigit():
            found.append((m.name, m.name.split("_", 1)[1]))
    return [(key, importlib.import_module(f"{__name__}.{name}")) for name, key in sorted(found)]


def run_tour(out="tour_out", only=None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    out_dir = pathlib.Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, status = [], 0
    print(f"minimem tour: plots go to {out_dir.resolve()}\n")
    for key, mod in steps():
        if only and key not in only:
            continue
        t0 = time.perf_counter()
        try:
            result = mod.run(out_dir)
        except Exception as e:  # a failing step is reported, the tour goes on
            result, status = f"FAILED: {type(e).__name__}: {e}", 1
        rows.append((mod.TITLE, result, time.perf_counter() - t0))
        print(f"  {mod.TITLE:38s} {result}  ({rows[-1][2]:.1f}s)", flush=True)
    print(f"\n{len(rows)} steps, {sum(r[2] for r in rows):.1f}s; plots in {out_dir}")
    return status
