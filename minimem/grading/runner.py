"""Run the instructor's exercise tests in subprocesses and collect one outcome per test.

Two pytest subprocesses, both with ``minimem.grading.plugin`` loaded from a scratch copy:

1. **collect** (with the instructor's package first on ``PYTHONPATH``): which tests carry
   ``@pytest.mark.exercise``, with their ids and points. This list does not depend on the
   student's code, so a student copy that cannot even import still gets a complete report.
2. **run** (with the student's copy first on ``PYTHONPATH``, the working directory a scratch
   folder so the instructor's package cannot shadow it): the selected tests. The plugin streams
   an event per test start, phase and finish to a file. When the process dies or hangs inside a
   test (a crash, ``os._exit``, a loop that never returns to the interpreter), that test is
   recorded as crashed or timed out and a fresh process runs the tests still left.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .plugin import hard_limit

PLUGIN_NAME = "_minimem_grade_plugin"
IDLE_LIMIT = 60.0  # seconds without any event (start-up, collection) before a run is killed


@dataclass
class TestOutcome:
    nodeid: str
    status: str  # passed | failed | timed out | crashed | skipped | not run
    line: str = ""  # the first failure line (exception message)
    output: str = ""
    duration: float = 0.0


def prepare_workdir(workdir: Path) -> None:
    """Put the plugin into ``workdir`` under a module name the student copy cannot shadow."""
    shutil.copyfile(Path(__file__).with_name("plugin.py"), workdir / f"{PLUGIN_NAME}.py")


def _env(first: Path, workdir: Path) -> dict:
    extra = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(first), str(workdir), extra)
                                                      if p))
    env.setdefault("MPLBACKEND", "Agg")
    return env


def pytest_command(root: Path, files: list[str], workdir: Path, *extra: str) -> list[str]:
    """``python -m pytest FILES`` with the instructor's ini file, without its addopts."""
    ini = [["-c", str(root / name)] for name in ("pytest.ini", "pyproject.toml", "tox.ini",
                                                  "setup.cfg") if (root / name).is_file()]
    return [sys.executable, "-m", "pytest", *[str(root / f) for f in files],
            *(ini[0] if ini else []), "--rootdir", str(root), "-o", "addopts=",
            "-p", "no:cacheprovider", "-p", PLUGIN_NAME, "-q",
            "--basetemp", str(workdir / "pytest-tmp"), *extra]


def candidate_test_files(root: Path) -> list[str]:
    """Test files under ``root/tests`` that mention exercises (a cheap superset)."""
    tests = root / "tests"
    out = []
    for p in sorted(tests.rglob("*.py")):
        if not (p.name.startswith("test_") or p.name.endswith("_test.py")):
            continue
        if "__pycache__" in p.parts:
            continue
        try:
            if "exercise" in p.read_text(encoding="utf-8"):
                out.append(p.relative_to(root).as_posix())
        except (OSError, UnicodeDecodeError):
            continue
    return out


def collect(root: Path, workdir: Path, timeout: float = 300.0) -> tuple[list[dict], str]:
    """The exercise tests of the instructor copy at ``root``: (list of dicts, pytest output)."""
    files = candidate_test_files(root)
    if not files:
        return [], ""
    out = workdir / "collected.json"
    cmd = pytest_command(root, files, workdir, "--collect-only", "--mm-collect", str(out))
    try:
        res = subprocess.run(cmd, cwd=workdir, env=_env(root, workdir), capture_output=True,
                             text=True, timeout=timeout, check=False)
        log = res.stdout + res.stderr
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"grade: collecting the exercise tests of {root} took over "
                           f"{timeout:g} s") from None
    if not out.is_file():
        raise RuntimeError(f"grade: could not collect the exercise tests of {root}:\n{log[-4000:]}")
    return json.loads(out.read_text(encoding="utf-8")), log


def _read_events(path: Path, pos: int) -> tuple[list[dict], int]:
    if not path.is_file():
        return [], pos
    with open(path, encoding="utf-8") as f:
        f.seek(pos)
        chunk = f.read()
    # only whole lines; a partly written last line is read next time
    cut = chunk.rfind("\n") + 1
    events = [json.loads(line) for line in chunk[:cut].splitlines() if line.strip()]
    return events, pos + len(chunk[:cut].encode("utf-8"))


def _fold(reports: list[dict]) -> TestOutcome | None:
    """One outcome from a test's phase reports (setup, call, teardown)."""
    if not reports:
        return None
    nodeid = reports[0]["nodeid"]
    duration = sum(r.get("duration") or 0.0 for r in reports)
    for r in reports:
        if r["outcome"] == "skipped" and r["when"] == "setup":
            return TestOutcome(nodeid, "skipped", r["line"], r["longrepr"], duration)
    for r in reports:
        if r["outcome"] == "failed":
            status = "timed out" if r.get("timed_out") else "failed"
            where = "" if r["when"] == "call" else f"(in {r['when']}) "
            return TestOutcome(nodeid, status, where + r["line"], r["longrepr"], duration)
        if r["outcome"] == "skipped":  # a skip or xfail raised while the test ran
            why = "xfail" if r.get("xfail") else "skipped inside the test"
            return TestOutcome(nodeid, "failed", f"{why} (counts as failed): {r['line']}",
                               r["longrepr"], duration)
    if any(r["when"] == "call" and r["outcome"] == "passed" for r in reports):
        return TestOutcome(nodeid, "passed", "", "", duration)
    return TestOutcome(nodeid, "failed", "the test did not run its call phase", "", duration)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return ""


def run_tests(student: Path, root: Path, tests: list[dict], workdir: Path,
              timeout: float) -> dict[str, TestOutcome]:
    """Run ``tests`` (from :func:`collect`) against the package at ``student``."""
    results: dict[str, TestOutcome] = {}
    remaining = [t["nodeid"] for t in tests]
    file_of = {t["nodeid"]: t["file"] for t in tests}
    attempt = 0
    while remaining:
        attempt += 1
        select = workdir / f"select{attempt}.txt"
        select.write_text("\n".join(remaining) + "\n", encoding="utf-8")
        events_path, log_path = workdir / f"events{attempt}.jsonl", workdir / f"log{attempt}.txt"
        files = sorted({file_of[n] for n in remaining})
        cmd = pytest_command(root, files, workdir, "--continue-on-collection-errors",
                             "--mm-select", str(select), "--mm-events", str(events_path),
                             "--mm-timeout", str(timeout), "--mm-expect-root", str(student))
        reports: dict[str, list[dict]] = {}
        collect_errors: dict[str, str] = {}
        finished: set[str] = set()
        current, since, killed = None, time.monotonic(), False
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, cwd=workdir, env=_env(student, workdir), stdout=log,
                                    stderr=subprocess.STDOUT)
            pos = 0
            while True:
                done = proc.poll() is not None
                events, pos = _read_events(events_path, pos)
                for ev in events:
                    kind, node = ev.get("ev"), ev.get("nodeid")
                    since = time.monotonic()
                    if kind == "start":
                        current = node
                    elif kind == "finish":
                        finished.add(node)
                        current = None
                    elif kind == "report":
                        reports.setdefault(node, []).append(ev)
                    elif kind == "collect_error":
                        collect_errors[node] = ev.get("longrepr", "")
                if done:
                    break
                limit = hard_limit(timeout) + 10 if current else timeout + IDLE_LIMIT
                if time.monotonic() - since > limit:
                    proc.kill()
                    proc.wait()
                    killed = True
                    continue  # read the last events, then leave
                time.sleep(0.05)
        for node in list(remaining):
            if node in finished:
                results[node] = _fold(reports.get(node, [])) or TestOutcome(
                    node, "failed", "no report for this test", _tail(log_path))
        if current is not None and current not in finished:
            faults = _tail(Path(f"{events_path}.faults"))
            log_text = (faults + "\n" + _tail(log_path)).strip()
            hung = killed or "Timeout (" in faults
            status = "timed out" if hung else "crashed"
            line = (f"the test ran past the time limit of {timeout:g} s" if hung else
                    f"the test process died (exit status {proc.returncode})")
            results[current] = TestOutcome(current, status, line, log_text)
        left = [n for n in remaining if n not in results]
        if left and current is None:
            # the run ended (or stalled) outside any test without starting these: their module
            # failed to import, they were not collected, or start-up hung
            for node in left:
                err = collect_errors.get(file_of[node], "")
                if err:
                    line = f"the test module failed to import: {_last_line(err)}"
                elif killed:
                    line = f"the test run stalled for over {timeout + IDLE_LIMIT:g} s"
                else:
                    line = "the test was not collected in this run"
                results[node] = TestOutcome(node, "not run", line, err or _tail(log_path))
            left = []
        remaining = left  # after a crash or hang inside a test: a fresh process runs the rest
    return results


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""
