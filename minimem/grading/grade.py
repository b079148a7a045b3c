"""Grade a student copy: run the instructor's exercise tests against it and score them.

Scoring (per test, proportional): exercise ``e`` worth ``P_e`` points with ``n_e`` counted tests
of which ``k_e`` pass earns

.. math::  \\text{score}_e = P_e \\, k_e / n_e .

A test counts unless it is skipped before it runs (a marker or fixture skip, e.g. no GPU); a
test that fails, errors, times out, crashes the process, or skips/xfails while running counts
as not passed. An exercise with no counted test earns 0. ``P_e`` comes from the
``# Exercise <id> (<P> pt)`` header in the instructor's code, else from the tests' markers.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .markers import ID_RE, scan_files, sort_key
from .release import check_import
from .repo import instructor_root, is_hidden_test, repo_files
from .runner import TestOutcome, collect, prepare_workdir, run_tests


@dataclass
class ExerciseTest:
    nodeid: str
    exercise: str
    points: float
    file: str
    name: str
    hidden: bool
    outcome: TestOutcome | None = None


@dataclass
class ExerciseScore:
    id: str
    task: str
    location: str
    points: float
    tests: list[ExerciseTest] = field(default_factory=list)

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

    @property
    def score(self) -> float:
        return sum(e.earned for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.points for e in self.exercises if e.tests)


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
            table[r.id] = ExerciseScore(r.id, r.task, r.location, r.points)
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
                                    is_hidden_test(c["file"])))
    chosen = sorted(table.values(), key=lambda e: sort_key(e.id))
    if only:
        unknown = sorted(set(only) - set(table))
        if unknown:
            raise ValueError(f"grade: unknown exercise id(s) {', '.join(unknown)}; known: "
                             f"{', '.join(e.id for e in chosen) or 'none'}")
        chosen = [e for e in chosen if e.id in set(only)]
    for e in chosen:
        e.tests.sort(key=lambda t: t.hidden)  # visible tests first, then collection order
        if not e.tests:
            warnings.append(f"exercise {e.id} ({e.location}) has no tests; it is not graded")
    return chosen, warnings


def collect_exercise_tests(root: Path | None = None, timeout: float = 300.0) -> list[dict]:
    """The exercise tests of the instructor copy ``root`` (default: this repository).

    One dict per test: ``nodeid``, ``exercise``, ``points``, ``file``, ``name``, ``doc``. Pass
    it to :func:`grade` as ``collected`` to grade several copies with one collection.
    """
    root = Path(root).resolve() if root is not None else instructor_root()
    with tempfile.TemporaryDirectory(prefix="minimem-collect-") as tmp:
        prepare_workdir(Path(tmp))
        return collect(root, Path(tmp), timeout=timeout)[0]


def grade(path=".", timeout: float = 60.0, exercises=None, root: Path | None = None,
          collected: list[dict] | None = None, collect_timeout: float = 300.0) -> GradeReport:
    """Grade the copy at ``path`` with the exercise tests of ``root`` (the instructor copy).

    ``exercises``: optional iterable of ids to grade (default: all). ``collected``: the output
    of :func:`collect_exercise_tests` for ``root`` (default: collected now). Never raises
    because of the student's code: a copy that fails to import, hangs or crashes gets a
    complete report.
    """
    if timeout <= 0:
        raise ValueError(f"grade: timeout must be > 0 seconds, got {timeout!r}")
    t0 = time.monotonic()
    root = Path(root).resolve() if root is not None else instructor_root()
    student = student_root(path)
    only = None if exercises is None else [str(x) for x in exercises]
    with tempfile.TemporaryDirectory(prefix="minimem-grade-") as tmp:
        workdir = Path(tmp)
        prepare_workdir(workdir)
        if collected is None:
            collected, _ = collect(root, workdir, timeout=collect_timeout)
        table, warnings = _known_exercises(root, collected, only)
        tests = [t for e in table for t in e.tests]
        if not (student / "minimem" / "__init__.py").is_file():
            why = f"no minimem package at {student} (expected {student / 'minimem'})"
        else:
            why = check_import(student, timeout=max(timeout, 60.0)) if tests else None
        if why is not None:
            line = f"the package does not import: {why.strip().splitlines()[-1]}"
            for t in tests:
                t.outcome = TestOutcome(t.nodeid, "not run", line, why)
        elif tests:
            outcomes = run_tests(student, root, [{"nodeid": t.nodeid, "file": t.file}
                                                 for t in tests], workdir, timeout)
            for t in tests:
                t.outcome = outcomes.get(t.nodeid)
    return GradeReport(student, table, warnings, time.monotonic() - t0)


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if x != int(x) else f"{int(x)}"


def format_report(report: GradeReport, width: int = 110) -> str:
    """The per-exercise score table."""
    head = f"{'exercise':<9} {'points':>11} {'tests':>7}  first failure"
    lines = [f"grading {report.student}", head, "-" * len(head)]
    for e in report.exercises:
        pts = f"{_fmt(e.earned)} / {_fmt(e.points)}" if e.tests else f"- / {_fmt(e.points)}"
        row = f"{e.id:<9} {pts:>11} {e.passed:>3}/{len(e.counted):<3}  {e.first_failure}"
        lines.append(row if len(row) <= width else row[: width - 3] + "...")
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
