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
package at ``PATH``, in subprocesses, each test under a time limit. Scoring is per test,
proportional: an exercise worth ``P`` points whose ``n`` counted tests include ``k`` passes earns
``P k / n`` (tests skipped before they run, e.g. GPU tests without a GPU, do not count; a skip
or xfail raised while the test runs counts as a failure). A copy that fails to import, hangs or
crashes still gets a complete report with every exercise. ``--json`` writes Gradescope's
``results.json`` (one entry per test; hidden tests ``"visibility": "after_published"``).

The grader runs student code in ordinary subprocesses: it is a grader, not a sandbox.
"""
from __future__ import annotations

import json
import sys

from .grade import (
    ExerciseScore,
    GradeReport,
    collect_exercise_tests,
    format_report,
    grade,
    gradescope_json,
)
from .markers import BEGIN, END, ExerciseMarkerError, Region, parse_source, strip_solutions
from .release import ReleaseSummary, release

__all__ = [
    "BEGIN", "END", "ExerciseMarkerError", "ExerciseScore", "GradeReport", "Region",
    "ReleaseSummary", "collect_exercise_tests", "exercises_cli", "format_exercises",
    "format_report", "grade", "grade_cli", "gradescope_json", "list_exercises", "parse_source",
    "release", "strip_solutions",
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


def grade_cli(args) -> int:
    """``minimem grade [PATH] [--json results.json] [--timeout S] [--exercises IDS]``."""
    only = getattr(args, "exercises", None)
    if isinstance(only, str):
        only = [x.strip() for x in only.split(",") if x.strip()]
    try:
        report = grade(args.path, timeout=args.timeout, exercises=only)
    except (ExerciseMarkerError, FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"minimem {e}" if str(e).startswith("grade") else f"minimem grade: {e}",
              file=sys.stderr)
        return 2
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(gradescope_json(report), f, indent=1)
        print(f"wrote {args.json}")
    return 0
