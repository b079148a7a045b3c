"""Run the instructor's exercise tests against a submission: collect, then check in isolation.

1. **collect** (:func:`collect`): ``pytest --collect-only`` on the instructor's checkout with the
   instructor's own package and ``plugin.py``: which tests carry ``@pytest.mark.exercise``, their
   ids and points, and which are skipped before they run. No student code runs.
2. **check** (:func:`run_tests`): per submission, a fresh scratch folder gets a copy of the
   submitted ``minimem`` package (regular files only) and the worker's two files; the checker
   (``checker.py``, trusted) runs the selected tests, starting the worker (``worker.py``) as an
   unprivileged user where it can (``sandbox.py``). The checker writes one event per line to a
   file in a private folder (mode 0700) that the worker cannot reach. When the checker stops
   early (it should not) the tests still left are run by a fresh checker and worker, up to
   three starts in all; when a test overruns the checker's own limit by far, the whole run is
   killed and that test counts as timed out.
3. At the end every process of the worker is killed (all processes of its uid when isolated),
   before the report exists; the private and scratch folders are deleted.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import sandbox
from .repo import HIDDEN_TESTS

PLUGIN_NAME = "_minimem_grade_plugin"
HERE = Path(__file__).resolve().parent
WORKER_FILES = ("worker.py", "wire.py")
MAX_OUTPUT = 32 << 10          # bytes of a test's own output kept for its report
MEMORY = 4 << 30               # the worker's data segment (RLIMIT_DATA)
CHECKER_MEMORY = 8 << 30       # the checker's
MAX_FILE = 1 << 30             # the largest file the worker may write (RLIMIT_FSIZE)
STARTS = 3                     # checker starts per submission
GRACE = 30.0                   # seconds past a limit before the grader kills the checker


@dataclass
class TestOutcome:
    nodeid: str
    status: str  # passed | failed | timed out | crashed | skipped | not run
    line: str = ""  # the first failure line (exception message)
    output: str = ""
    duration: float = 0.0


# ----------------------------------------------------------------------------- collect
def prepare_workdir(workdir: Path) -> None:
    """Put the collection plugin into ``workdir`` under a module name of its own."""
    shutil.copyfile(HERE / "plugin.py", workdir / f"{PLUGIN_NAME}.py")


def ini_args(root: Path) -> list[str]:
    for name in ("pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
        if (root / name).is_file():
            return ["-c", str(root / name)]
    return []


def candidate_test_files(root: Path) -> list[str]:
    """Test files under ``root/tests`` that mention exercises (a cheap superset)."""
    out = []
    for p in sorted((root / "tests").rglob("*.py")):
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
    cmd = [sys.executable, "-m", "pytest", *[str(root / f) for f in files], *ini_args(root),
           "--rootdir", str(root), "-o", "addopts=", "-p", "no:cacheprovider",
           "-p", PLUGIN_NAME, *[a for p in pytest_plugins(root, files) for a in ("-p", p)], "-q",
           "--collect-only", "--mm-collect", str(out)]
    extra = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(root), str(workdir), extra)
                                                      if p), PYTHONDONTWRITEBYTECODE="1",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    env.setdefault("MPLBACKEND", "Agg")
    try:
        res = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                             timeout=timeout, check=False)
        log = res.stdout + res.stderr
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"grade: collecting the exercise tests of {root} took over "
                           f"{timeout:g} s") from None
    if not out.is_file():
        raise RuntimeError(f"grade: could not collect the exercise tests of {root}:\n{log[-4000:]}")
    return json.loads(out.read_text(encoding="utf-8")), log


def pytest_plugins(root: Path, files) -> list[str]:
    """The third-party pytest plugins the exercise tests use, loaded by name: no other
    plugin is auto-loaded from entry points when the grader runs pytest."""
    def mention(word):
        for f in files:
            try:
                if word in (root / f).read_text(encoding="utf-8"):
                    return True
            except (OSError, UnicodeDecodeError):
                continue
        return False

    wanted = [("_hypothesis_pytestplugin", "hypothesis")]
    return [p for p, word in wanted if importlib.util.find_spec(p) and mention(word)]


# ----------------------------------------------------------------------------- environment
def site_dirs() -> list[str]:
    """The site-packages folders of this Python (what the checker and the worker import)."""
    out = []
    for p in sys.path:
        if (p and os.path.basename(p) in ("site-packages", "dist-packages")
                and os.path.isdir(p) and p not in out):
            out.append(p)
    return out


def python_dirs() -> list[str]:
    """Folders the worker must be able to read: the interpreter and its libraries."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            os.path.dirname(sys.executable), *site_dirs()}
    dirs |= {os.path.realpath(d) for d in dirs}
    return sandbox.outermost(d for d in dirs if d and os.path.isdir(d))


PASSED_ENV = ("OPENBLAS_", "OMP_", "MKL_", "NUMBA_", "CUDA_", "CUPY_", "NVIDIA_", "LD_LIBRARY")


def _env(home: Path, tmp: Path, extra: dict) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": str(home),
           "TMPDIR": str(tmp), "LANG": "C.UTF-8", "MPLBACKEND": "Agg",
           "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)
                and k != "NUMBA_CACHE_DIR"})
    env.update(extra)
    return env


def _scratch_base(uid, gid) -> str:
    base = tempfile.gettempdir()
    if uid is not None and sandbox.traversable(base, uid, gid) is not None:
        base = "/tmp"
    return base


# ----------------------------------------------------------------------------- check
class Run:
    """One submission's checking: isolation set up once, up to STARTS checker runs."""

    def __init__(self, student: Path, root: Path, timeout: float, budget: float,
                 isolation: str, hide=()):
        self.student, self.root = student, root
        self.timeout, self.budget = timeout, budget
        self.mode = sandbox.choose_mode(isolation)
        self.uid = self.gid = self.uid_lock = None
        self.hide = [str(root), str(student), *map(str, hide)]
        self.warnings: list[str] = []
        self.deadline = time.time() + budget
        self.private = Path(tempfile.mkdtemp(prefix="minimem-grade-"))  # 0700, ours
        self.locked: list = []
        self.import_error = None
        self.stop_reason = None
        self.collect_errors: dict[str, tuple[str, str]] = {}

    # -- set-up and clean-up ---------------------------------------------------------
    def __enter__(self):
        try:
            if self.mode != "none":
                self.uid, self.uid_lock = sandbox.reserve_uid()
                self.gid = self.uid
                for d in python_dirs():
                    blocked = sandbox.traversable(d, self.uid, self.gid)
                    if blocked is not None and self.mode == "permissions":
                        raise RuntimeError(
                            f"grade: the worker (uid {self.uid}) cannot reach Python at {d}: "
                            f"{blocked} is closed to other users. Install Python where "
                            f"other users can read it, or grade where mount namespaces work")
                if self.mode == "permissions":
                    self.locked = sandbox.lock(self.hide, python_dirs(), self.gid)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self.uid is not None:
            if not sandbox.kill_uid(self.uid):
                self.warnings.append(f"processes of the worker (uid {self.uid}) survived")
            if self.mode == "permissions":
                sandbox.remove_files_of(self.uid)
        sandbox.unlock(self.locked)
        self.locked = []
        shutil.rmtree(self.private, ignore_errors=True)
        if self.uid_lock is not None:
            sandbox.release_uid(self.uid_lock)
            self.uid_lock = None

    def _view(self, scratch: Path) -> dict:
        if self.mode == "none":
            return {"mode": "none"}
        keep = python_dirs() + [str(scratch)]
        hide = list(self.hide)
        if self.mode == "namespace":  # folders on the way to Python the worker could not enter
            for d in keep:
                blocked = sandbox.traversable(d, self.uid, self.gid)
                if blocked is not None and blocked not in hide:
                    hide.append(blocked)
        return {"mode": self.mode, "uid": self.uid, "gid": self.gid,
                "hide": sandbox.outermost(hide), "keep": keep, "writable": [str(scratch)],
                "rlimits": {"CPU": math.ceil(self.budget * max(1, os.cpu_count() or 1)) + 60,
                            "DATA": MEMORY, "FSIZE": MAX_FILE, "CORE": 0, "NPROC": 512}}

    def _scratch(self) -> Path:
        scratch = Path(tempfile.mkdtemp(prefix="minimem-work-",
                                        dir=_scratch_base(self.uid, self.gid)))
        for d in ("sub", "boot", "home", "tmp", "work"):
            (scratch / d).mkdir()
        left_out = sandbox.copy_package(str(self.student / "minimem"),
                                        str(scratch / "sub" / "minimem"))
        if self.mode == "permissions" and self.uid is not None:
            sandbox.remove_files_of(self.uid)  # nothing of an earlier start is left to read
        if left_out:
            self.warnings.append(f"left out of the submission (symbolic or hard links): "
                                 f"{', '.join(left_out[:10])}")
        for name in WORKER_FILES:
            shutil.copyfile(HERE / name, scratch / "boot" / name)
        if self.uid is not None:
            sandbox.chown_tree(str(scratch), self.uid, self.gid)
        return scratch

    # -- one checker run --------------------------------------------------------------------
    def check(self, tests: list[dict]) -> dict[str, TestOutcome]:
        outcomes: dict[str, TestOutcome] = {}
        remaining = [t["nodeid"] for t in tests]
        file_of = {t["nodeid"]: t["file"] for t in tests}
        for start in range(1, STARTS + 1):
            if not remaining or time.time() > self.deadline - 1:
                break
            try:
                finished = self._start(start, remaining, file_of, outcomes)
            except ValueError as e:  # the submission cannot be copied (too large)
                self.import_error = (str(e), "")
                break
            remaining = [n for n in remaining if n not in outcomes]
            if finished or self.import_error is not None:
                break
        for node in remaining:
            outcomes[node] = self._missing(node, file_of[node])
        return outcomes

    def _missing(self, node, file) -> TestOutcome:
        if self.import_error is not None:
            why, output = self.import_error
            last = [ln for ln in why.strip().splitlines() if ln.strip()]
            return TestOutcome(node, "not run", "the package does not import: "
                               + (last[-1].strip() if last else "unknown error"),
                               (why + ("\n\noutput:\n" + output if output.strip() else "")))
        if self.stop_reason:
            return TestOutcome(node, "not run", self.stop_reason)
        if file in self.collect_errors:
            line, text = self.collect_errors[file]
            return TestOutcome(node, "not run", f"the test module failed to import: {line}", text)
        if time.time() > self.deadline - 1:
            return TestOutcome(node, "not run", f"the time budget of {self.budget:g} s was spent")
        return TestOutcome(node, "not run", "the test was not run (the grader's test process "
                                            "stopped; see the grader's warnings)")

    def _start(self, start, remaining, file_of, outcomes) -> bool:
        scratch = self._scratch()
        run = self.private / f"run{start}"
        run.mkdir()
        (run / "tmp").mkdir()
        events = run / "events.jsonl"
        events.touch()
        files = sorted({file_of[n] for n in remaining})
        plugins = pytest_plugins(self.root, files)
        cfg = {
            "python": sys.executable, "checker_path": site_dirs(),
            "worker_boot": str(scratch / "boot" / "worker.py"),
            "worker_path": [str(scratch / "sub"), *site_dirs()],
            "worker_cwd": str(scratch / "work"),
            "worker_env": _env(scratch / "home", scratch / "tmp",  # Numba caches in the copy
                               {"MPLCONFIGDIR": str(scratch / "home")}),
            "sandbox": self._view(scratch), "root": str(self.root),
            "files": [str(self.root / f) for f in files], "ini": ini_args(self.root),
            "nodeids": list(remaining), "hidden_prefix": HIDDEN_TESTS,
            "timeout": self.timeout, "budget": self.budget, "deadline": self.deadline,
            "import_timeout": min(max(60.0, self.timeout), self.budget),
            "events": str(events), "basetemp": str(run / "pytest-tmp"), "plugins": plugins,
            "max_output": MAX_OUTPUT,
        }
        config = run / "config.json"
        config.write_text(json.dumps(cfg), encoding="utf-8")
        env = _env(run, run / "tmp", {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        if "HYPOTHESIS_PROFILE" in os.environ:
            env["HYPOTHESIS_PROFILE"] = os.environ["HYPOTHESIS_PROFILE"]
        with open(run / "checker.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-I", "-S", str(HERE / "checker.py"),
                                     str(config)], cwd=run, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True,
                                    preexec_fn=_checker_limits)  # noqa: PLW1509 (setrlimit only)
            try:
                finished = self._watch(proc, events, outcomes)
            finally:
                _kill_group(proc)
                if self.uid is not None:
                    sandbox.kill_uid(self.uid)
                shutil.rmtree(scratch, ignore_errors=True)
        if not finished and self.import_error is None:
            tail = (run / "checker.log").read_text(encoding="utf-8", errors="replace")[-3000:]
            self.warnings.append(f"the grader's test process stopped early (start {start}, "
                                 f"exit status {proc.returncode}):\n{tail}")
        return finished

    def _watch(self, proc, events: Path, outcomes) -> bool:
        """Follow the events until the checker exits; kill it when it overruns a limit."""
        pos, current, since, done, tested = 0, None, time.monotonic(), False, False
        startup = min(max(60.0, self.timeout), self.budget) + GRACE
        while True:
            exited = proc.poll() is not None
            with open(events, "rb") as f:
                f.seek(pos)
                chunk = f.read()
            cut = chunk.rfind(b"\n") + 1
            pos += cut
            for raw in chunk[:cut].splitlines():
                ev = _parse(raw)
                if ev is None:
                    continue
                kind, node = ev.get("ev"), ev.get("nodeid")
                if kind == "started":
                    since = time.monotonic()
                elif kind == "sandbox_error":
                    _kill_group(proc)
                    raise RuntimeError(f"grade: could not start the worker isolated "
                                       f"({self.mode}): {ev.get('why', '')}")
                elif kind == "import_error":
                    self.import_error = (str(ev.get("why", "")), str(ev.get("output", "")))
                    done = True
                elif kind == "stopped":
                    self.stop_reason = str(ev.get("why", ""))
                elif kind == "collect_error" and isinstance(node, str):
                    self.collect_errors[node] = (str(ev.get("line", "")), str(ev.get("text", "")))
                elif kind == "start" and isinstance(node, str):
                    current, since, tested = node, time.monotonic(), True
                elif kind == "outcome" and isinstance(node, str):
                    outcomes[node] = TestOutcome(node, str(ev.get("status", "failed")),
                                                 str(ev.get("line", "")),
                                                 str(ev.get("output", "")),
                                                 float(ev.get("duration") or 0.0))
                    current, since = None, time.monotonic()
                elif kind == "done":
                    done = True
            if exited:
                return done
            now = time.monotonic()
            overdue = (not tested and now - since > startup) or (
                current is not None and now - since > self.timeout + GRACE) or (
                time.time() > self.deadline + GRACE)
            if overdue:
                if current is not None and current not in outcomes:
                    outcomes[current] = TestOutcome(
                        current, "timed out", f"the test ran past its time limit of "
                                              f"{self.timeout:g} s")
                _kill_group(proc)
                return False
            time.sleep(0.05)


def _checker_limits():
    """The checker's memory limit: what the worker sends it cannot exhaust the machine (a
    MemoryError fails the test at hand)."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_DATA, (CHECKER_MEMORY, CHECKER_MEMORY))
    except (ValueError, OSError):
        pass


def _parse(raw: bytes):
    try:
        ev = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return ev if isinstance(ev, dict) else None


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def run_tests(student: Path, root: Path, tests: list[dict], timeout: float, budget: float,
              isolation: str = "auto", hide=()) -> tuple[dict[str, TestOutcome], list[str], str]:
    """Check ``tests`` (from :func:`collect`) against the package at ``student``: the
    outcomes by node id, warnings for the instructor, and the isolation mode used."""
    with Run(student, root, timeout, budget, isolation, hide) as run:
        outcomes = run.check(tests)
    return outcomes, run.warnings, run.mode
