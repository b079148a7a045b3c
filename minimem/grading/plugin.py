"""The collection plugin of ``minimem grade`` (stdlib and pytest only; never imports minimem).

The grader runs ``pytest --collect-only -p <this file> --mm-collect FILE`` on the instructor's
checkout, with the instructor's own package: collection runs no student code. FILE receives one
record per exercise test: node id, exercise id, points, file, name, first docstring line, and
``skip``: the reason when the test is skipped before it runs (a ``skip`` marker, or a ``skipif``
whose condition holds, e.g. GPU tests on a machine without a GPU, as the instructor's code
decides it). Only those tests are left out of a score; any other skip, at grading time, is a
failure.

``--mm-exercise IDS`` (comma-separated exercise ids) keeps only the tests whose exercise marker
names one of them, by the marker's id, never by a test's name (``-k mul`` would also pick the
MatMul tests): what ``minimem exercises check IDS`` runs, ``-p minimem.grading.plugin``.
"""
from __future__ import annotations

import json

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("minimem-grade")
    group.addoption("--mm-collect", default=None)
    group.addoption("--mm-exercise", default=None,
                    help="run only the tests of these exercises (ids separated by commas)")


def _exercise_id(item):
    m = item.get_closest_marker("exercise")
    if m is None:
        return None
    ex_id = m.args[0] if m.args else m.kwargs.get("id")
    return None if ex_id is None else str(ex_id)


def _static_skip(item):
    try:
        from _pytest.skipping import evaluate_skip_marks

        skipped = evaluate_skip_marks(item)
    except Exception:  # noqa: BLE001 (a condition that fails to evaluate: not skipped)
        return None
    return None if skipped is None else (skipped.reason or "skipped")


def _record(item):
    m = item.get_closest_marker("exercise")
    if m is None:
        return None
    ex_id = _exercise_id(item)
    points = m.kwargs.get("points", m.args[1] if len(m.args) > 1 else None)
    doc = (getattr(getattr(item, "obj", None), "__doc__", None) or "").strip()
    return {"nodeid": item.nodeid, "exercise": ex_id,
            "points": points, "file": item.nodeid.split("::")[0], "name": item.name,
            "doc": doc.splitlines()[0] if doc else "", "skip": _static_skip(item)}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    wanted = config.getoption("--mm-exercise")
    if wanted:
        ids = {x.strip() for x in wanted.split(",") if x.strip()}
        dropped = [it for it in items if _exercise_id(it) not in ids]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [it for it in items if _exercise_id(it) in ids]
    out = config.getoption("--mm-collect")
    if out:
        found = [r for r in map(_record, items) if r is not None]
        with open(out, "w", encoding="utf-8") as f:
            json.dump(found, f)
