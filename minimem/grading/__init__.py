"""Exercises and grading: list the exercises, release a student copy, grade it.

**Exercises** live in library code between the nbgrader markers ``### BEGIN SOLUTION`` and
``### END SOLUTION``, right below a header comment ``# Exercise <id> (<n> pt): <task>``
(see :mod:`minimem.grading.markers`). Tests for an exercise carry
``@pytest.mark.exercise("<id>", points=<n>)``; tests students must not see go to
``tests/hidden/``.

**Release** (``minimem exercises release OUT``, :func:`release`) copies the repository
(``git ls-files --cached --others --exclude-standard``) without ``tests/hidden/``, each
solution region replaced by a ``NotImplementedError("Exercise <id>: <task>")`` raise, and checks
that the copy compiles and imports. The copy's ``README.md`` points to ``STUDENT.md``, which the
release writes (what to do, in what order, how to check one exercise). ``--homework`` also
replaces every withheld block (code that gives an answer away, ``### BEGIN WITHHELD <ids>``) by
its replacement lines, e.g. the reference path; ``--outputs-from DIR`` copies the outputs of
executed notebooks (the book's ``jupyter_execute`` folder) into the copy's notebooks, so a
student reads every page, numbers and figures included, before doing any exercise.

**Checking** one exercise: ``minimem exercises check 0.5`` says what it needs that is not done
(``# Needs:`` lines) and runs just its visible tests, selected by the exercise marker's id.

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
    "ReleaseSummary", "check_exercises", "collect_exercise_tests", "exercises_cli",
    "format_exercises", "format_report", "grade", "grade_cli", "grade_many", "gradescope_json",
    "list_exercises", "needs_closure", "parse_source", "release", "strip_solutions",
    "visible_test_files", "withheld_blocks", "write_json",
]


def list_exercises(root=None, states: bool = False) -> list[Region]:
    """Every exercise region (or released stub) in the ``minimem`` package, sorted by id;
    with ``states``, also the exercises a student has answered (``Region.state``)."""
    from .markers import scan_files, scan_states, sort_key
    from .repo import package_root, repo_files

    root = Path(root or package_root())
    files = [f for f in repo_files(root) if f.startswith("minimem/")]
    regions = scan_states(root, files) if states else scan_files(root, files)
    return sorted(regions, key=lambda r: (sort_key(r.id), r.path, r.begin))


def withheld_blocks(root=None):
    """The blocks that give an exercise's answer away (``### BEGIN WITHHELD <ids>``)."""
    from .markers import scan_withheld
    from .repo import package_root, repo_files

    root = Path(root or package_root())
    return scan_withheld(root, [f for f in repo_files(root) if f.startswith("minimem/")])


def format_exercises(regions: list[Region], withheld=()) -> str:
    """The table of ``minimem exercises list``: id, points, what it needs, whether its answer
    is visible elsewhere in a plain release (a withheld block: ``release --homework`` takes it
    out), where, the task; in a student copy also whether it is still to do."""
    elsewhere: dict[str, list[str]] = {}
    for b in withheld:
        for ex_id in b.ids:
            elsewhere.setdefault(ex_id, []).append(b.location)
    from .markers import sort_key

    student = any(r.state != "solution" for r in regions)
    shown_state = {"todo": "TO DO", "answered": "done?", "solution": ""}
    # a student copy has no withheld markers left: there the column would say nothing
    third = f"{'state':<8} " if student else f"{'answer elsewhere':<16}  "
    head = f"{'id':<7} {'pt':>4}  {'needs':<14} {third}{'where':<42} task"
    lines = [head, "-" * len(head)]
    for r in regions:
        shown = "yes" if r.id in elsewhere else "no"
        third = f"{shown_state[r.state]:<8} " if student else f"{shown:<16}  "
        lines.append(f"{r.id:<7} {r.points:>4g}  {', '.join(r.needs) or '-':<14} {third}"
                     f"{r.location:<42} {r.task}")
    total = sum({r.id: r.points for r in regions}.values())
    lines.append(f"{len({r.id for r in regions})} exercises, {total:g} points")
    if elsewhere:
        lines.append("answer elsewhere: a plain release shows code that gives the answer away ("
                     + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(
                         elsewhere.items(), key=lambda kv: sort_key(kv[0]))) + ")")
    if student:
        lines.append("check one exercise: .venv/bin/minimem exercises check <id>   "
                     "(done? = the stub is gone; the check says whether it is right)")
    return "\n".join(lines)


def visible_test_files(ids, root=None) -> list[str]:
    """The visible test files (relative paths) holding tests of the exercises ``ids``."""
    import re

    from .repo import is_hidden_test, package_root
    from .runner import candidate_test_files

    root = Path(root or package_root())
    alternatives = "|".join(map(re.escape, ids))
    pattern = re.compile(r"""exercise\(\s*["'](""" + alternatives + r""")["']""")
    out = []
    for rel in candidate_test_files(root):
        if is_hidden_test(rel):
            continue
        if pattern.search((root / rel).read_text(encoding="utf-8")):
            out.append(rel)
    return out


def check_exercises(ids, root=None, run=True) -> int:
    """``minimem exercises check IDS``: say what each exercise needs that is not done, then
    run just its visible tests (selected by the exercise marker's id, through the plugin)."""
    import subprocess

    from .markers import sort_key
    from .repo import package_root

    root = Path(root or package_root())
    ids = check_ids(ids)
    regions = {r.id: r for r in list_exercises(root, states=True)}
    unknown = [x for x in ids if x not in regions]
    if unknown:
        raise ValueError(f"exercises check: unknown exercise id(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(regions, key=sort_key))}")
    for ex_id in ids:
        r = regions[ex_id]
        todo = [n for n in needs_closure([ex_id], regions) if n != ex_id
                and regions[n].state == "todo"]
        state = {"todo": "still a stub", "answered": "answered",
                 "solution": "the reference solution"}[r.state]
        print(f"exercise {ex_id} ({r.points:g} pt, {r.location}): {state}"
              + (f"; needs {', '.join(todo)} (not done yet: do those first)" if todo else ""))
    files = visible_test_files(ids, root)
    if not files:
        print(f"exercises check: no visible tests for {', '.join(ids)}", file=sys.stderr)
        return 2
    cmd = ["-m", "pytest", *files, "-p", "minimem.grading.plugin", "--mm-exercise",
           ",".join(ids), "-p", "no:cacheprovider", "-q"]
    print("running: python " + " ".join(cmd), flush=True)
    if not run:
        return 0
    return subprocess.run([sys.executable, *cmd], cwd=root, check=False).returncode


def reachable(start, edges: dict) -> set:
    """``start`` and everything reachable from it through ``edges`` (key -> its successors);
    keys absent from ``edges`` are dropped."""
    seen, todo = set(), list(start)
    while todo:
        node = todo.pop()
        if node in seen or node not in edges:
            continue
        seen.add(node)
        todo.extend(edges[node])
    return seen


def needs_closure(ids, regions: dict) -> list[str]:
    """``ids`` and every exercise they need, directly or not, in id order."""
    from .markers import sort_key

    return sorted(reachable(ids, {x: r.needs for x, r in regions.items()}), key=sort_key)


def exercises_cli(args) -> int:
    """``minimem exercises list``, ``release OUT [--homework]`` and ``check IDS``."""
    try:
        if args.action == "list":
            print(format_exercises(list_exercises(states=True), withheld_blocks()))
            return 0
        if args.action == "release":
            s = release(args.out, homework=getattr(args, "homework", False),
                        outputs_from=getattr(args, "outputs_from", None))
            ids = sorted({r.id for r in s.regions}, key=lambda x: tuple(map(int, x.split("."))))
            print(f"wrote the student copy to {s.out}: {s.files} files, {len(s.regions)} "
                  f"solution regions stubbed (exercises {', '.join(ids) or 'none'}), "
                  f"{len(s.hidden_removed)} hidden test files left out"
                  + (f", {len(s.withheld)} blocks withheld (homework)" if s.homework else "")
                  + (f", outputs of {s.notebooks_with_outputs} executed notebooks"
                     if s.notebooks_with_outputs else "")
                  + "; the student starts with STUDENT.md")
            return 0
        if args.action == "check":
            return check_exercises(args.ids)
    except (ExerciseMarkerError, FileExistsError, FileNotFoundError, RuntimeError,
            ValueError) as e:
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
