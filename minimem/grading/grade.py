"""Grade a student copy: run the instructor's exercise tests against it and score them.

Scoring (per test, proportional): exercise ``e`` worth ``P_e`` points with ``n_e`` counted tests
of which ``k_e`` pass earns

.. math::  \\text{score}_e = P_e \\, k_e / n_e .

A test counts unless the instructor's collection (which runs no student code) finds it
skipped before it runs (a ``skip`` marker, or a ``skipif`` that holds, e.g. GPU tests without a
GPU); a test that fails, errors, times out, crashes the worker, or skips or xfails while it runs
counts as not passed. An exercise with no counted test earns 0. ``P_e`` comes from the
``# Exercise <id> (<P> pt)`` header in the instructor's code, else from the tests' markers.

The table shows, per exercise short of full marks, the first lines of its first failure (the
assertion's actual against expected value), what it needs that is not done ("needs 0.5": an
exercise named on its ``# Needs:`` line that is short of full marks too, or whose stub the
tests ran into) and the command that runs just its visible tests
(``minimem exercises check <id>``).
"""
from __future__ import annotations

import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .markers import ID_RE, scan_files, sort_key
from .repo import instructor_root, is_hidden_test, repo_files
from .runner import TestOutcome, collect, prepare_workdir, run_tests

DEFAULT_TIMEOUT = 60.0    # seconds per test
DEFAULT_BUDGET = 1200.0   # seconds per submission, all tests together
CHECK_COMMAND = ".venv/bin/minimem exercises check {ids}"  # one exercise's visible tests
STUB_RAISED = re.compile(r"NotImplementedError: Exercise (\d+(?:\.\d+)*):")


@dataclass
class ExerciseTest:
    nodeid: str
    exercise: str
    points: float
    file: str
    name: str
    hidden: bool
    skip: str | None = None  # why the instructor's collection skips it (not counted)
    outcome: TestOutcome | None = None


@dataclass
class ExerciseScore:
    id: str
    task: str
    location: str
    points: float
    tests: list[ExerciseTest] = field(default_factory=list)
    needs: tuple[str, ...] = ()  # from the exercise's ``# Needs:`` line

    @property
    def check_command(self) -> str:
        return CHECK_COMMAND.format(ids=self.id)

    @property
    def stubs_hit(self) -> list[str]:
        """Other exercises whose ``NotImplementedError`` stub this exercise's visible tests ran
        into (a hidden test's output is not looked at: the table shows what it finds)."""
        found = []
        for t in self.counted:
            if t.hidden:
                continue
            o = t.outcome
            for ex_id in STUB_RAISED.findall(f"{o.line}\n{o.output}" if o else ""):
                if ex_id != self.id and ex_id not in found:
                    found.append(ex_id)
        return sorted(found, key=sort_key)

    @property
    def counted(self) -> list[ExerciseTest]:
        return [t for t in self.tests if t.outcome is None or t.outcome.status != "skipped"]

    @property
    def passed(self) -> int:
        return sum(t.outcome is not None and t.outcome.status == "passed" for t in self.counted)

    @property
    def earned(self) -> float:
        n = len(self.counted)
        return self.points * self.passed / n if n else 0.0

    @property
    def first_failure(self) -> str:
        if not self.tests:
            return "no tests for this exercise (not graded)"
        if not self.counted:
            return "every test was skipped"
        for t in self.counted:
            o = t.outcome
            if o is None or o.status != "passed":
                name = t.nodeid.split("::", 1)[-1]
                if t.hidden:
                    name = f"[hidden] {name}"
                return f"{name}: {o.line if o else 'not run'}"
        return ""


@dataclass
class GradeReport:
    student: Path
    exercises: list[ExerciseScore]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    isolation: str = ""

    @property
    def score(self) -> float:
        return sum(e.earned for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.points for e in self.exercises if e.tests)

    def missing_needs(self, e: ExerciseScore) -> list[str]:
        """What exercise ``e`` needs that is not done: its declared needs (and theirs) graded
        here short of full marks, and any other exercise whose stub its tests ran into."""
        if e.earned >= e.points:
            return []
        by_id = {x.id: x for x in self.exercises}
        out, todo, seen = [], list(e.needs), set()
        while todo:
            ex_id = todo.pop(0)
            if ex_id in seen:
                continue
            seen.add(ex_id)
            dep = by_id.get(ex_id)
            if dep is not None:
                todo.extend(dep.needs)
                if dep.tests and dep.earned < dep.points:
                    out.append(ex_id)
        out += [x for x in e.stubs_hit if x not in out]
        return sorted(out, key=sort_key)


def student_root(path) -> Path:
    """The folder that holds the student's ``minimem`` package (PATH or PATH/..)."""
    p = Path(path).resolve()
    if p.name == "minimem" and (p / "__init__.py").is_file():
        return p.parent
    return p


def _known_exercises(root: Path, collected: list[dict], only) -> tuple[list[ExerciseScore],
                                                                      list[str]]:
    warnings = []
    regions = scan_files(root, [f for f in repo_files(root) if f.startswith("minimem/")])
    table: dict[str, ExerciseScore] = {}
    for r in regions:
        if r.id not in table:
            table[r.id] = ExerciseScore(r.id, r.task, r.location, r.points, needs=r.needs)
    for c in collected:
        ex_id, points = c["exercise"], c["points"]
        if (ex_id is None or not ID_RE.match(ex_id) or not isinstance(points, (int, float))
                or isinstance(points, bool) or points <= 0):
            warnings.append(f"{c['nodeid']}: bad exercise marker {ex_id!r}, points={points!r} "
                            f"(need @pytest.mark.exercise('<id>', points=<n> > 0), id like "
                            f"'1.2'); test ignored")
            continue
        e = table.get(ex_id)
        if e is None:
            e = table[ex_id] = ExerciseScore(ex_id, c.get("doc") or "", c["file"], float(points))
        elif float(points) != e.points:
            warnings.append(f"{c['nodeid']}: marks exercise {ex_id} as {points:g} pt but the "
                            f"exercise is worth {e.points:g} pt ({e.location}); using {e.points:g}")
        e.tests.append(ExerciseTest(c["nodeid"], ex_id, float(points), c["file"], c["name"],
                                    is_hidden_test(c["file"]), c.get("skip")))
    chosen = sorted(table.values(), key=lambda e: sort_key(e.id))
    if only:
        unknown = sorted(set(only) - set(table))
        if unknown:
            raise ValueError(f"grade: --exercises: unknown exercise id(s) {', '.join(unknown)}; "
                             f"expected ids among {', '.join(e.id for e in chosen) or 'none'}")
        chosen = [e for e in chosen if e.id in set(only)]
    for e in chosen:
        e.tests.sort(key=lambda t: t.hidden)  # visible tests first, then collection order
        if not e.tests:
            warnings.append(f"exercise {e.id} ({e.location}) has no tests; it is not graded")
    return chosen, warnings


def collect_exercise_tests(root: Path | None = None, timeout: float = 300.0) -> list[dict]:
    """The exercise tests of the instructor copy ``root`` (default: this repository).

    One dict per test: ``nodeid``, ``exercise``, ``points``, ``file``, ``name``, ``doc`` and
    ``skip`` (why the instructor's collection skips it, else None). Pass it to :func:`grade`
    as ``collected`` to grade several copies with one collection. Runs no student code.
    """
    root = Path(root).resolve() if root is not None else instructor_root()
    with tempfile.TemporaryDirectory(prefix="minimem-collect-") as tmp:
        prepare_workdir(Path(tmp))
        return collect(root, Path(tmp), timeout=timeout)[0]


def check_seconds(name: str, value, allow_none: bool = False):
    """``value`` as a finite number of seconds > 0 (the error names the option)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or value <= 0:
        raise ValueError(f"grade: --{name}: expected a finite number of seconds > 0, got {value!r}")
    return float(value)


def check_ids(exercises) -> list[str] | None:
    """``exercises`` as a list of ids like '0.1' (None: every exercise)."""
    if exercises is None:
        return None
    if isinstance(exercises, str):
        exercises = [x.strip() for x in exercises.split(",") if x.strip()]
    ids = [str(x) for x in exercises]
    bad = [x for x in ids if not ID_RE.match(x)]
    if bad or not ids:
        raise ValueError(f"grade: --exercises: expected exercise ids like 0.1 or 20.3, "
                         f"separated by commas, got {', '.join(map(repr, bad)) if bad else 'none'}")
    return ids


def grade(path=".", timeout: float = DEFAULT_TIMEOUT, exercises=None, root: Path | None = None,
          collected: list[dict] | None = None, collect_timeout: float = 300.0,
          budget: float | None = DEFAULT_BUDGET, isolation: str = "auto",
          hide=()) -> GradeReport:
    """Grade the copy at ``path`` with the exercise tests of ``root`` (the instructor copy).

    ``timeout``: seconds per test; ``budget``: seconds for the whole submission (tests not
    started by then are not run); ``exercises``: ids to grade (default: all); ``collected``:
    the output of :func:`collect_exercise_tests` for ``root`` (default: collected now);
    ``isolation``: ``auto`` (the strongest available: see :mod:`minimem.grading.sandbox`),
    ``namespace``, ``permissions`` or ``none``; ``hide``: more folders the worker must not
    read (e.g. the folder of all submissions). Never raises because of the student's code: a
    copy that fails to import, hangs, crashes or attacks the grader gets a complete report.
    """
    timeout = check_seconds("timeout", timeout)
    budget = check_seconds("budget", budget, allow_none=True) or DEFAULT_BUDGET
    only = check_ids(exercises)
    t0 = time.monotonic()
    root = Path(root).resolve() if root is not None else instructor_root()
    student = student_root(path)
    if collected is None:
        collected = collect_exercise_tests(root, timeout=collect_timeout)
    table, warnings = _known_exercises(root, collected, only)
    tests = [t for e in table for t in e.tests]
    for t in tests:
        if t.skip is not None:
            t.outcome = TestOutcome(t.nodeid, "skipped", t.skip)
    todo = [t for t in tests if t.outcome is None]
    mode = ""
    why = None
    if not (student / "minimem" / "__init__.py").is_file():
        why = f"no minimem package at {student} (expected {student / 'minimem'})"
    elif (student / "minimem").is_symlink():
        why = f"{student / 'minimem'} is a symbolic link; submit the package's folder itself"
    if why is not None:
        line = f"the package does not import: {why}"
        for t in todo:
            t.outcome = TestOutcome(t.nodeid, "not run", line)
    elif todo:
        outcomes, more, mode = run_tests(student, root, [{"nodeid": t.nodeid, "file": t.file}
                                                         for t in todo], timeout, budget,
                                         isolation, hide)
        warnings += more
        for t in todo:
            t.outcome = outcomes.get(t.nodeid) or TestOutcome(t.nodeid, "not run", "not run")
    return GradeReport(student, table, warnings, time.monotonic() - t0, mode)


def grade_many(folder, **kwargs) -> list[GradeReport]:
    """Grade every submission in ``folder`` (each subfolder holding a ``minimem`` package),
    one after the other, with one collection; no submission's worker can read the folder."""
    folder = Path(folder).resolve()
    subs = sorted(p for p in folder.iterdir() if (p / "minimem" / "__init__.py").is_file())
    if not subs:
        raise FileNotFoundError(f"grade: no submission (a folder holding minimem/) in {folder}")
    root = Path(kwargs.pop("root", None) or instructor_root()).resolve()
    if kwargs.get("collected") is None:
        kwargs["collected"] = collect_exercise_tests(root)
    hide = (folder, *kwargs.pop("hide", ()))
    return [grade(p, root=root, hide=hide, **kwargs) for p in subs]


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if x != int(x) else f"{int(x)}"


_TRACE_STARTS = ("raised in the student's code", "Traceback (most recent call last)")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def format_report(report: GradeReport, width: int = 110, detail_lines: int = 4) -> str:
    """The per-exercise score table; below each exercise short of full marks, what it needs
    that is not done, the first ``detail_lines`` lines of its first failure and the command
    that runs just its visible tests."""
    head = f"{'exercise':<9} {'points':>11} {'tests':>7}  first failure"
    lines = [f"grading {report.student}", head, "-" * len(head)]
    pad = " " * 31
    for e in report.exercises:
        pts = f"{_fmt(e.earned)} / {_fmt(e.points)}" if e.tests else f"- / {_fmt(e.points)}"
        failure = e.first_failure.splitlines() or [""]
        needs = report.missing_needs(e)
        first = (f"needs {', '.join(needs)} (not done yet); " if needs else "") + failure[0]
        lines.append(_cut(f"{e.id:<9} {pts:>11} {e.passed:>3}/{len(e.counted):<3}  {first}",
                          width))
        if e.tests and e.earned < e.points:
            detail = []
            for ln in failure[1: detail_lines]:
                if ln.strip().startswith(_TRACE_STARTS):
                    break  # the worker's traceback: the student's own run shows it better
                detail.append(_cut(pad + ln.strip(), width))
            lines += detail + [pad + "check: " + e.check_command]
    lines.append("-" * len(head))
    lines.append(f"{'total':<9} {_fmt(report.score) + ' / ' + _fmt(report.max_score):>11}"
                 f"   ({report.seconds:.1f} s)")
    return "\n".join(lines)


def gradescope_json(report: GradeReport) -> dict:
    """Gradescope's ``results.json``: one entry per test, hidden tests after publication."""
    tests = []
    for e in report.exercises:
        counted = e.counted
        share = e.points / len(counted) if counted else 0.0
        if e.tests and not counted:
            tests.append({"name": f"Exercise {e.id}: {e.task}", "number": e.id, "score": 0.0,
                          "max_score": e.points, "status": "failed",
                          "output": "every test of this exercise was skipped",
                          "visibility": "visible"})
        for k, t in enumerate(counted, 1):
            o = t.outcome
            ok = o is not None and o.status == "passed"
            text = "passed" if ok else (f"{o.status}: {o.line}\n\n{o.output}".strip() if o
                                        else "not run")
            needs = [] if ok else report.missing_needs(e)
            if needs:
                text = f"needs {', '.join(needs)} (not done yet)\n\n{text}"
            tests.append({
                "name": f"Exercise {e.id}: {t.name}",
                "number": f"{e.id}.{k}",
                "score": share if ok else 0.0,
                "max_score": share,
                "status": "passed" if ok else "failed",
                "output": text[-8000:],
                "visibility": "after_published" if t.hidden else "visible",
            })
    return {
        "score": round(report.score, 6),
        "execution_time": round(report.seconds, 3),
        "output": (f"{len(report.exercises)} exercises, {report.score:.2f} / "
                   f"{report.max_score:g} points"),
        "tests": tests,
    }
