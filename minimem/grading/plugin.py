"""The pytest plugin of ``minimem grade`` (stdlib and pytest only; never imports minimem).

The grader copies this file into a scratch folder and loads it with ``-p`` under its own module
name, so the plugin always comes from the instructor's copy and loads even when the student's
package fails to import. It

- ``--mm-collect FILE``: writes the exercise tests (node id, exercise id, points, file) as JSON;
- ``--mm-select FILE``: keeps only the node ids listed in FILE (one per line);
- ``--mm-events FILE``: appends one JSON line per event (start, phase report, finish,
  collection error), flushed at once, so the grader knows how far a run got if it dies;
- ``--mm-timeout S``: per-test time limit. A soft limit (``SIGALRM`` raises
  :class:`GradingTimeout` inside the test's call) and a hard one
  (``faulthandler.dump_traceback_later(..., exit=True)`` after S + 1-5 s of grace, covering
  setup and teardown and code that never returns to the interpreter);
- ``--mm-expect-root DIR``: fails every test whose ``minimem`` was imported from elsewhere.
"""
from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys

import pytest


def hard_limit(timeout: float) -> float:
    """Seconds after which a test's process exits: the soft limit plus a grace of 1-5 s."""
    return timeout + max(1.0, min(5.0, timeout))


class GradingTimeout(Exception):
    """The test ran past the grader's time limit."""


def pytest_addoption(parser):
    g = parser.getgroup("minimem-grade")
    g.addoption("--mm-collect", default=None)
    g.addoption("--mm-select", default=None)
    g.addoption("--mm-events", default=None)
    g.addoption("--mm-timeout", type=float, default=None)
    g.addoption("--mm-expect-root", default=None)


class _State:
    events = None
    faults = None
    timeout = None
    timed_out = False
    root = None


def _emit(**event):
    if _State.events is not None:
        _State.events.write(json.dumps(event) + "\n")
        _State.events.flush()


def pytest_configure(config):
    path = config.getoption("--mm-events")
    if path:
        _State.events = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed at unconfigure)
        # pytest captures fd 2 while a test runs, so hard-timeout tracebacks go to their own file
        _State.faults = open(path + ".faults", "a", encoding="utf-8")  # noqa: SIM115
    _State.timeout = config.getoption("--mm-timeout")
    _State.root = config.getoption("--mm-expect-root")


def pytest_unconfigure(config):
    if _State.events is not None:
        _emit(ev="session_end")
        _State.events.close()
        _State.events = None
    if _State.faults is not None:
        _State.faults.close()
        _State.faults = None


def _marker_info(item):
    m = item.get_closest_marker("exercise")
    if m is None:
        return None
    ex_id = m.args[0] if m.args else m.kwargs.get("id")
    points = m.kwargs.get("points", m.args[1] if len(m.args) > 1 else None)
    doc = (getattr(getattr(item, "obj", None), "__doc__", None) or "").strip()
    return {"nodeid": item.nodeid, "exercise": None if ex_id is None else str(ex_id),
            "points": points, "file": item.nodeid.split("::")[0], "name": item.name,
            "doc": doc.splitlines()[0] if doc else ""}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    out = config.getoption("--mm-collect")
    if out:
        found = [info for info in map(_marker_info, items) if info is not None]
        with open(out, "w", encoding="utf-8") as f:
            json.dump(found, f)
    select = config.getoption("--mm-select")
    if select:
        with open(select, encoding="utf-8") as f:
            wanted = {line.rstrip("\n") for line in f if line.strip()}
        keep = [it for it in items if it.nodeid in wanted]
        dropped = [it for it in items if it.nodeid not in wanted]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_collectreport(report):
    if report.failed:
        _emit(ev="collect_error", nodeid=report.nodeid, longrepr=str(report.longrepr)[-6000:])


def pytest_runtest_logstart(nodeid, location):
    _emit(ev="start", nodeid=nodeid)


def pytest_runtest_logfinish(nodeid, location):
    _emit(ev="finish", nodeid=nodeid)


def _crash_line(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).strip().splitlines()[0] if crash.message else ""
    text = str(report.longrepr or "").strip().splitlines()
    return text[-1] if text else ""


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        _emit(ev="report", nodeid=report.nodeid, when=report.when, outcome=report.outcome,
              line=_crash_line(report) if report.outcome != "passed" else "",
              longrepr=str(report.longrepr or "")[-6000:], duration=report.duration,
              timed_out=_State.timed_out and report.when == "call",
              xfail=hasattr(report, "wasxfail"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _State.timed_out = False
    if _State.timeout:
        faulthandler.dump_traceback_later(hard_limit(_State.timeout), exit=True,
                                          file=_State.faults or sys.stderr)
    try:
        yield
    finally:
        if _State.timeout:
            faulthandler.cancel_dump_traceback_later()


def _module_root():
    mod = sys.modules.get("minimem")
    return None if mod is None else os.path.dirname(os.path.dirname(
        os.path.realpath(getattr(mod, "__file__", "") or "")))


def pytest_runtest_setup(item):
    if _State.root:
        got = _module_root()
        want = os.path.realpath(_State.root)
        if got is not None and got != want:
            pytest.fail(f"grader: minimem was imported from {got}, not from the graded copy "
                        f"{want}", pytrace=False)


def _on_alarm(signum, frame):
    _State.timed_out = True
    raise GradingTimeout(f"the test ran past the time limit of {_State.timeout:g} s")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    soft = bool(_State.timeout) and hasattr(signal, "setitimer")
    if soft:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, _State.timeout)
    try:
        yield
    finally:
        if soft:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
