"""Exercises and grading: the region parser, the release, the grader (minimem.grading).

The grader on this repository: release -> grade -> 0 points; reference -> full points, with
whatever exercises and exercise tests exist. Every failure mode of the grader is tested on a
synthetic course in test_grading_course.py.
"""
import json
import os
import shutil
import textwrap

import pytest

from minimem.cli import main
from minimem.grading import (
    BEGIN,
    END,
    ExerciseMarkerError,
    collect_exercise_tests,
    format_report,
    list_exercises,
    parse_source,
    strip_solutions,
)
from minimem.grading import grade as _grade
from minimem.grading.markers import check_consistent, sort_key
from minimem.grading.repo import package_root, repo_files

REPO = package_root()


def src(text: str) -> str:
    """Dedented source with <B>/<E> standing for the solution markers."""
    return textwrap.dedent(text).replace("<B>", BEGIN).replace("<E>", END)


# ----------------------------------------------------------------------------- region parser

NESTED = src("""
    def outer(x):
        # Exercise 2.10 (3 pt): the first task,
        #   continued on a second line.
        <B>
        y = x + 1
        if y > 2:
            y = y * 2
        <E>
        return y

    class K:
        def method(self, x):
            def inner(z):
                # Exercise 2.2 (1.5 pts): inner "quoted" task ü
                <B>
                w = z * 3

                w = w - 1
                <E>
                return w
            return inner(x)
    """)


def test_parse_regions_nested_and_indented():
    regions = parse_source(NESTED, "pkg/mod.py")
    assert [(r.id, r.points, r.header_line, r.begin, r.end, len(r.indent)) for r in regions] == [
        ("2.10", 3.0, 3, 5, 9, 4), ("2.2", 1.5, 15, 16, 20, 12)]
    assert regions[0].task == "the first task, continued on a second line."
    assert regions[1].task == 'inner "quoted" task ü'
    assert regions[0].location == "pkg/mod.py:3"


def test_strip_solutions_keeps_indentation_and_compiles():
    text, regions = strip_solutions(NESTED, "pkg/mod.py")
    assert len(regions) == 2 and BEGIN not in text and END not in text
    lines = text.splitlines()
    assert lines[4] == ('    raise NotImplementedError("Exercise 2.10: the first task, continued '
                        'on a second line.")')
    assert lines[11] == " " * 12 + ('raise NotImplementedError("Exercise 2.2: inner '
                                    '\\"quoted\\" task ü")')
    assert lines[10] == " " * 12 + '# Exercise 2.2 (1.5 pts): inner "quoted" task ü'
    assert len(lines) == len(NESTED.splitlines()) - 4 - 4
    ns = {}
    exec(compile(text, "pkg/mod.py", "exec"), ns)  # noqa: S102 (our own test source)
    with pytest.raises(NotImplementedError, match=r"^Exercise 2\.10: the first task"):
        ns["outer"](1)
    with pytest.raises(NotImplementedError) as info:
        ns["K"]().method(1)
    assert str(info.value) == 'Exercise 2.2: inner "quoted" task ü'
    # the reference runs the solution
    ref = {}
    exec(compile(NESTED, "ref.py", "exec"), ref)  # noqa: S102
    assert ref["outer"](2) == 6 and ref["K"]().method(2) == 5
    # released stubs are still recognised, with their headers
    again = parse_source(text, "pkg/mod.py")
    assert [(r.id, r.points, r.released) for r in again] == [("2.10", 3.0, True),
                                                             ("2.2", 1.5, True)]
    assert strip_solutions(text, "x.py") == (text, [])


@pytest.mark.parametrize("body, match", [
    ("def f():\n    x = 1\n    <B>\n    y = 2\n    <E>\n    return y\n",
     r"m\.py:3: solution region without its header comment"),
    ("def f():\n    # Exercise 1.1 (1 pt): t\n    <B>\n    y = 2\n    return y\n",
     r"m\.py:3: unterminated region of exercise 1\.1"),
    (("def f():\n    # Exercise 1.1 (1 pt): t\n    <B>\n    # Exercise 1.2 (1 pt): u\n"
      "    <B>\n    y = 2\n    <E>\n    <E>\n"), r"m\.py:5: .*inside the region of exercise 1\.1"),
    ("def f():\n    y = 2\n    <E>\n", r"m\.py:3: .*without a"),
    ("def f():\n    # Exercise 1.1 (1 pt): t\n    <B>\n    y = 2\n  <E>\n",
     r"m\.py:5: .*not at the indentation"),
    (("def f():\n    if True:\n        # Exercise 1.1 (1 pt): t\n        <B>\n        y = 1\n"
      "    y = 2\n        <E>\n"), r"m\.py:6: line of exercise 1\.1 is indented less"),
])
def test_parse_errors_name_file_and_line(body, match):
    with pytest.raises(ExerciseMarkerError, match=match):
        parse_source(src(body), "m.py")


def test_points_must_agree_and_ids_sort_numerically():
    a = parse_source(src("def f():\n    # Exercise 3.1 (2 pt): a\n    <B>\n    pass\n    <E>\n"),
                     "a.py")
    b = parse_source(src("def g():\n    # Exercise 3.1 (1 pt): a\n    <B>\n    pass\n    <E>\n"),
                     "b.py")
    with pytest.raises(ExerciseMarkerError,
                       match=r"b\.py:2: exercise 3\.1 is worth 1 pt here but 2"):
        check_consistent(a + b)
    assert sorted(["10.2", "0.10", "1.3", "0.2", "20.1"], key=sort_key) == [
        "0.2", "0.10", "1.3", "10.2", "20.1"]


_COLLECTED = []


def collected():
    """This repository's exercise tests, collected once for the module."""
    if not _COLLECTED:
        _COLLECTED.append(collect_exercise_tests())
    return _COLLECTED[0]


# ------------------------------------------------------------------ this repository

def test_release_repository(repo_release):
    out = repo_release.out
    instructor = {r.id for r in list_exercises()}
    assert {r.id for r in repo_release.regions} == instructor
    assert not (out / "tests" / "hidden").exists()
    assert repo_release.hidden_removed == [f for f in repo_files(REPO)
                                           if f.startswith("tests/hidden/")]
    assert not (out / ".venv").exists() and not (out / ".git").exists()
    assert not list(out.rglob("__pycache__")) and not list(out.rglob("*.egg-info"))
    for p in out.rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        assert not any(ln.lstrip().startswith((BEGIN, END)) for ln in text.splitlines()), p
        assert all(r.released for r in parse_source(text, str(p))), p
        compile(text, str(p), "exec")
    released = {r.id for r in list_exercises(out)}
    assert released == instructor
    assert all(r.released for r in list_exercises(out))
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        assert (out / "notebooks" / nb.name).is_file()


def repository_subset(collected):
    """Exercise ids to grade in the round trip: the first tested exercise of every chapter
    (all of them with MINIMEM_GRADE_ALL=1), to keep the test fast as chapters add exercises."""
    tested = sorted({c["exercise"] for c in collected if c["exercise"]}, key=sort_key)
    if os.environ.get("MINIMEM_GRADE_ALL") == "1":
        return tested
    first = {}
    for ex_id in tested:
        first.setdefault(ex_id.split(".")[0], ex_id)
    return sorted(first.values(), key=sort_key)


def test_grade_repository_round_trip(repo_release):
    if not list_exercises():
        pytest.skip("this copy holds no solutions (it is a student copy)")
    subset = repository_subset(collected())
    if not subset:
        pytest.skip("no exercise tests in this repository yet")
    ref = _grade(REPO, timeout=60, exercises=subset, collected=collected())
    assert [e.id for e in ref.exercises] == subset
    failing = {e.id: e.first_failure for e in ref.exercises if e.earned != e.points}
    assert not failing, failing
    assert ref.score == ref.max_score == sum(e.points for e in ref.exercises) > 0
    student = _grade(repo_release.out, timeout=60, exercises=subset, collected=collected())
    assert [e.id for e in student.exercises] == subset
    assert {e.id: e.earned for e in student.exercises} == {e_id: 0 for e_id in subset}
    assert all(t.outcome.status in ("failed", "skipped") for e in student.exercises
               for t in e.tests), format_report(student)


def test_cli_grade_broken_copy_writes_complete_results_json(repo_release, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(repo_release.out / "minimem", broken / "minimem")
    (broken / "minimem" / "__init__.py").write_text("raise ImportError('student broke it')\n")
    res = tmp_path / "results.json"
    assert main(["grade", str(broken), "--json", str(res), "--timeout", "30"]) == 0
    table = capsys.readouterr().out
    js = json.loads(res.read_text())
    ids = [r.id for r in list_exercises()]
    for ex_id in ids:
        assert f"\n{ex_id} " in table
    assert js["score"] == 0
    for t in js["tests"]:
        assert set(t) >= {"name", "number", "score", "max_score", "status", "output",
                          "visibility"}
        assert t["score"] == 0 and t["status"] == "failed" and "student broke it" in t["output"]
        assert t["visibility"] in ("visible", "after_published")


def test_cli_exercises_list_and_release(tmp_path, capsys):
    assert main(["exercises", "list"]) == 0
    out = capsys.readouterr().out
    for r in list_exercises():
        assert f"{r.path}:{r.header_line}" in out
    target = tmp_path / "exists"
    target.mkdir()
    assert main(["exercises", "release", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err
