"""The contract census: try every bad input of the contract table and count the outcomes.

    python tests/contracts/census.py            # with the JIT
    NUMBA_DISABLE_JIT=1 python tests/contracts/census.py

Each bad input ends in one of four classes:

* clear  -- a ValueError/TypeError whose message names the entry point;
* opaque -- any other exception (a raw NumPy/Numba error, a message that does not say who);
* silent -- no error at all: the call returned (a wrong answer, or garbage accepted);
* crash  -- the interpreter died (a segfault in a kernel).

To count crashes the cases run in a child process that prints one line per case; when the
child dies, the case it had started is a crash and a new child resumes after it.
"""
from __future__ import annotations

import collections
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
CLASSES = ("clear", "opaque", "silent", "crash")


def cases():
    """(id, entry, argument, mutation) for every bad input of the table, in table order."""
    from contract_table import ENTRIES

    out = []
    for entry in ENTRIES:
        for arg, mutations in entry.bad.items():
            for m in mutations:
                out.append((f"{entry.group}/{entry.name}/{arg}: {m.label}", entry, arg, m))
    return out


def bad_call(entry, arg, mutation):
    kwargs = entry.valid()
    kwargs[arg] = mutation.apply(kwargs[arg])
    return entry.call(**kwargs)


def classify(entry, arg, mutation):
    """(class, exception type name or '', message)."""
    try:
        bad_call(entry, arg, mutation)
    except (ValueError, TypeError) as e:
        named = str(e).startswith(entry.name.split(".")[0])
        return ("clear" if named else "opaque"), type(e).__name__, str(e)
    except Exception as e:
        return "opaque", type(e).__name__, str(e)
    return "silent", "", ""


def _child(start):
    for i, (cid, entry, arg, m) in enumerate(cases()[start:], start):
        print(json.dumps({"begin": i}), flush=True)
        cls, exc, msg = classify(entry, arg, m)
        print(json.dumps({"i": i, "id": cid, "class": cls, "exc": exc, "expected":
                          m.exc.__name__, "msg": msg[:200]}), flush=True)


def run_census(env=None):
    """Every case's row (a dict), crashes included, running children until all are done."""
    n = len(cases())
    rows, start = [], 0
    while start < n:
        proc = subprocess.run([sys.executable, str(HERE / "census.py"), "--child", str(start)],
                              capture_output=True, text=True, env=env, cwd=HERE)
        begun = start
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            if "begin" in rec:
                begun = rec["begin"]
            else:
                rows.append(rec)
        done = rows[-1]["i"] + 1 if rows else 0
        if proc.returncode == 0 and done >= n:
            break
        if done > begun or proc.returncode == 0:
            raise RuntimeError(f"census child stopped without a crash:\n{proc.stderr[-2000:]}")
        rows.append({"i": begun, "id": cases()[begun][0], "class": "crash", "exc": "",
                     "expected": "", "msg": f"exit status {proc.returncode}"})
        start = begun + 1
    return rows


def summary(rows):
    from contract_table import ENTRIES

    counts = collections.Counter(r["class"] for r in rows)
    points = {(e.group, e.name) for e in ENTRIES}
    lines = [f"entry points covered: {len(points)} (table rows {len(ENTRIES)})",
             f"bad inputs tried: {len(rows)}",
             "outcomes: " + ", ".join(f"{c} {counts.get(c, 0)}" for c in CLASSES)]
    by_group = collections.defaultdict(collections.Counter)
    for r in rows:
        by_group[r["id"].split("/")[0]][r["class"]] += 1
    for g, c in sorted(by_group.items()):
        lines.append(f"  {g:10s} " + ", ".join(f"{k} {c.get(k, 0)}" for k in CLASSES))
    for r in rows:
        if r["class"] != "clear":
            lines.append(f"  {r['class']:6s} {r['id']} -> {r['exc']} {r['msg'][:100]}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]))
    else:
        print(f"NUMBA_DISABLE_JIT={os.environ.get('NUMBA_DISABLE_JIT', '0')}")
        print(summary(run_census()))
