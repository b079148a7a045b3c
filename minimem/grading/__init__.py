"""Exercises and grading: list the exercises, release a student copy, grade it.

**Exercises** live in library code between the nbgrader markers ``### BEGIN SOLUTION`` and
``### END SOLUTION``, right below a header comment ``# Exercise <id> (<n> pt): <task>``
(see :mod:`minimem.grading.markers`). Tests for an exercise carry
``@pytest.mark.exercise("<id>", points=<n>)``; tests students must not see go to
``tests/hidden/``.

**Release** (``minimem exercises release OUT``, :func:`release`) copies the repository
(``git ls-files --cached --others --exclude-standard``) without ``tests/hidden/``, each
solution region replaced by a ``NotImplementedError("Exercise <id>: <task>")`` raise, and checks
that the copy compiles and imports.

**Grading** (``minimem grade PATH``, :func:`grade`) runs the exercise tests of the instructor's
copy (the repository holding this package, hidden tests included) against the ``minimem``
package at ``PATH``. Student code is untrusted: the tests, their expected values, pytest and
every verdict stay in a trusted process (``checker.py``), and the student's package runs only
in an isolated worker process (``worker.py``, ``sandbox.py``) that answers the tests' calls with
plain data (``wire.py``); see the threat model in the README. Scoring is per test,
proportional: an exercise worth ``P`` points whose ``n`` counted tests include ``k`` passes earns
``P k / n`` (tests the instructor's collection skips, e.g. GPU tests without a GPU, do not
count; any other skip, or an xfail, counts as a failure). A copy that fails to import, hangs,
crashes or attacks the grader still gets a complete report with every exercise. ``--json``
writes Gradescope's ``results.json`` (one entry per test; hidden tests
``"visibility": "after_published"``), atomically, once every worker process is dead.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from .grade import (
    ExerciseScore,
    GradeReport,
    check_ids,
    collect_exercise_tests,
    format_report,
    grade,
    grade_many,
    gradescope_json,
)
from .markers import BEGIN, END, ExerciseMarkerError, Region, parse_source, strip_solutions
from .release import ReleaseSummary, release

__all__ = [
    "BEGIN", "END", "ExerciseMarkerError", "ExerciseScore", "GradeReport", "Region",
    "ReleaseSummary", "collect_exercise_tests", "exercises_cli", "format_exercises",
    "format_report", "grade", "grade_cli", "grade_many", "gradescope_json", "list_exercises",
    "parse_source", "release", "strip_solutions", "write_json",
]


def list_exercises(root=None) -> list[Region]:
    """Every exercise region (or released stub) in the ``minimem`` package, sorted by id."""
    from pathlib import Path

    from .markers import scan_files, sort_key
    from .repo import package_root, repo_files

    root = Path(root or package_root())
    files = [f for f in repo_files(root) if f.startswith("minimem/")]
    return sorted(scan_files(root, files), key=lambda r: (sort_key(r.id), r.path, r.begin))


def format_exercises(regions: list[Region]) -> str:
    head = f"{'id':<7} {'pt':>4}  {'where':<42} task"
    lines = [head, "-" * len(head)]
    for r in regions:
        state = " [stub]" if r.released else ""
        lines.append(f"{r.id:<7} {r.points:>4g}  {r.location:<42} {r.task}{state}")
    total = sum({r.id: r.points for r in regions}.values())
    lines.append(f"{len({r.id for r in regions})} exercises, {total:g} points")
    return "\n".join(lines)


def exercises_cli(args) -> int:
    """``minimem exercises list`` and ``minimem exercises release OUT``."""
    try:
        if args.action == "list":
            print(format_exercises(list_exercises()))
            return 0
        if args.action == "release":
            s = release(args.out)
            ids = sorted({r.id for r in s.regions})
            print(f"wrote the student copy to {s.out}: {s.files} files, {len(s.regions)} "
                  f"solution regions stubbed (exercises {', '.join(ids) or 'none'}), "
                  f"{len(s.hidden_removed)} hidden test files left out")
            return 0
    except (ExerciseMarkerError, FileExistsError, FileNotFoundError, RuntimeError) as e:
        msg = str(e)
        print(f"minimem {msg}" if msg.startswith("exercises") else
              f"minimem exercises {args.action}: {msg}", file=sys.stderr)
        return 2
    print(f"minimem exercises: unknown action {args.action!r}", file=sys.stderr)
    return 2


def seconds_arg(text: str) -> float:
    """argparse type of ``--timeout`` and ``--budget``: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return value


def exercises_arg(text: str) -> list[str]:
    """argparse type of ``--exercises``: comma-separated exercise ids."""
    try:
        return check_ids(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected exercise ids separated by commas, like "
                                         f"0.1,20.3, got {text!r}") from None


def write_json(path, data) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then
    ``os.replace``, so a reader sees the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _print_report(report) -> None:
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(format_report(report))


def grade_cli(args) -> int:
    """``minimem grade [PATH] [--json FILE] [--timeout S] [--budget S] [--exercises IDS]
    [--isolation MODE] [--each]``."""
    options = {"timeout": args.timeout, "exercises": args.exercises,
               "budget": getattr(args, "budget", None),
               "isolation": getattr(args, "isolation", "auto")}
    each = getattr(args, "each", False)
    try:
        if each:
            reports = grade_many(args.path, **options)
        else:
            reports = [grade(args.path, **options)]
    except (ExerciseMarkerError, FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"minimem {e}" if str(e).startswith("grade") else f"minimem grade: {e}",
              file=sys.stderr)
        return 2
    for r in reports:
        _print_report(r)
    if any(r.isolation == "none" for r in reports):
        print("warning: isolation 'none' (the grader is not root): the student's code ran as "
              "you and could read and change your files; the verdicts were still decided "
              "outside it. Grade as root for isolation.", file=sys.stderr)
    if each:
        for r in reports:
            print(f"{r.student.name}: {r.score:.2f} / {r.max_score:g}")
    if args.json:
        if each:
            folder = Path(args.json)
            folder.mkdir(parents=True, exist_ok=True)
            for r in reports:
                write_json(folder / f"{r.student.name}.json", gradescope_json(r))
        else:
            write_json(args.json, gradescope_json(reports[0]))
        print(f"wrote {args.json}")
    return 0
