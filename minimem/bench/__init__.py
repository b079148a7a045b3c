"""``minimem bench``: each benchmark times our implementation and its baselines in one run.

A benchmark is a module of this package with ``NAME``, ``ORDER`` (its place in the list),
``DESCRIPTION`` and ``run(quick: bool) -> list[Row]``. Ratios are always between timings
taken in the same process, so they mean something on any machine.
"""
from __future__ import annotations

import importlib
import json
import pkgutil

from ._util import Row, format_rows  # noqa: F401


def benchmarks():
    """{name: module} for every benchmark, in their ORDER."""
    mods = []
    for m in pkgutil.iter_modules(__path__):
        if not m.name.startswith("_"):
            mod = importlib.import_module(f"{__name__}.{m.name}")
            if hasattr(mod, "run") and hasattr(mod, "NAME"):
                mods.append(mod)
    mods.sort(key=lambda m: getattr(m, "ORDER", 100))
    return {m.NAME: m for m in mods}


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
