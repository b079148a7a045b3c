"""The grader on the synthetic course of ``_course.py`` (minimem.grading): release, scoring,
and every honest failure mode (stubs, a package that fails to import, hangs, a time-out the
code swallows, a worker that dies, a skip raised in the student's code, a test module that fails
to import, partial credit, bad markers). Hostile submissions: test_grading_attacks.py."""
import json
import shutil
import time

import pytest
from _course import (
    HIDDEN_SECRET,
    SOLUTION_SECRET,
    all_text,
    scores,
    solution_of,
    src,
    statuses,
    stubs,
    variant,
)

from minimem.grading import BEGIN, ExerciseMarkerError, gradescope_json, release


def test_release_course(course, tmp_path):
    out = tmp_path / "student"
    s = release(out, root=course)
    assert sorted(r.id for r in s.regions) == ["1.1", "1.2", "2.1"]
    assert s.hidden_removed == ["tests/hidden/test_ops_hidden.py"]
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got == [".minimem-release.json", "README.md", "STUDENT.md", "minimem/__init__.py",
                   "minimem/ops.py", "notebooks/intro.ipynb", "pyproject.toml",
                   "tests/conftest.py", "tests/test_ops.py"]
    ops = (out / "minimem/ops.py").read_text()
    assert BEGIN not in ops and "        raise NotImplementedError(\"Exercise 2.1: the sum of " \
                                "xs, as a loop.\")\n" in ops
    compile(ops, "ops.py", "exec")
    with pytest.raises(FileExistsError, match="already exists"):
        release(out, root=course)


def test_release_refuses_a_region_that_breaks_the_file(course, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(course, bad)
    (bad / "minimem/extra.py").write_text(src(
        "x = [\n    # Exercise 9.1 (1 pt): t\n    <B>\n    1,\n    <E>\n]\n"))
    with pytest.raises(ExerciseMarkerError, match=r"minimem/extra\.py:\d+: the file does not "
                                                  r"compile once its solutions are stubbed"):
        release(tmp_path / "out", root=bad)
    assert not (tmp_path / "out").exists()
    # a stub that runs at import time makes the copy unusable: the release says so
    (bad / "minimem/extra.py").unlink()
    (bad / "minimem/__init__.py").write_text("from .ops import double\nTWO = double(1)\n")
    with pytest.raises(RuntimeError, match=r"(?s)does not import.*Exercise 1\.1: return 2 \* x"):
        release(tmp_path / "out2", root=bad)


def test_grade_course_round_trip(course, grade_course, tmp_path):
    full = grade_course(course)
    assert scores(full) == {"1.1": 1, "1.2": 2, "2.1": 3}
    assert full.score == full.max_score == 6
    e21 = next(e for e in full.exercises if e.id == "2.1")
    assert [t.hidden for t in e21.tests] == [False, False, False, True]
    assert [t.outcome.status for t in e21.tests].count("skipped") == 1  # the static skip only
    assert e21.task == "the sum of xs, as a loop." and e21.first_failure == ""
    assert [w for w in full.warnings if "test_bad_marker: bad exercise marker 'x'" in w]

    release(tmp_path / "student", root=course)
    zero = grade_course(tmp_path / "student")
    assert [e.id for e in zero.exercises] == ["1.1", "1.2", "2.1"]
    assert zero.score == 0 and zero.max_score == 6
    for e in zero.exercises:
        assert all(t.outcome.status == "failed" for t in e.counted)
        assert f"NotImplementedError: Exercise {e.id}:" in e.first_failure

    js = gradescope_json(zero)
    assert js["score"] == 0 and len(js["tests"]) == 7
    hidden = [t for t in js["tests"] if t["visibility"] == "after_published"]
    assert {t["name"] for t in hidden} == {"Exercise 1.2: test_square_negative",
                                           "Exercise 2.1: test_total_empty"}
    assert sum(t["max_score"] for t in js["tests"]) == pytest.approx(6)
    assert all(t["status"] == "failed" and "NotImplementedError" in t["output"]
               for t in js["tests"])
    # the hidden tests' source and expected values appear in their own entries only
    assert any("48611" in t["output"] for t in hidden)
    for t in js["tests"]:
        if t["visibility"] == "visible":
            assert "48611" not in t["output"] and "test_total_empty" not in t["output"]
            assert HIDDEN_SECRET not in t["output"] and SOLUTION_SECRET not in t["output"]
    assert "48611" not in js["output"]
    one = grade_course(course, exercises=["1.2"])
    assert scores(one) == {"1.2": 2}
    with pytest.raises(ValueError, match=r"--exercises: unknown exercise id\(s\) 7\.7"):
        grade_course(course, exercises=["7.7"])


def test_grade_import_crash_and_missing_package(course, grade_course, tmp_path):
    broken = variant(course, tmp_path / "broken", init="raise RuntimeError('boom at import')\n")
    r = grade_course(broken)
    assert scores(r) == {"1.1": 0, "1.2": 0, "2.1": 0} and r.max_score == 6
    assert all(t.outcome.status == "not run" and "boom at import" in t.outcome.line
               for e in r.exercises for t in e.counted)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = grade_course(empty)
    assert scores(r) == {"1.1": 0, "1.2": 0, "2.1": 0}
    assert "no minimem package" in r.exercises[0].first_failure


def test_grade_hangs_crashes_and_skips(course, grade_course, tmp_path):
    def edit(text):
        text = solution_of(text, "1.1", "while True:\n    pass\n")
        text = solution_of(text, "1.2", (  # swallows every exception: killed all the same
            "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
            "    except BaseException:\n        pass\n"))
        return text
    t0 = time.monotonic()
    r = grade_course(variant(course, tmp_path / "hang", edit), timeout=1.0)
    assert time.monotonic() - t0 < 30  # 4 tests over their limit cost about 4 s, not hours
    assert scores(r) == {"1.1": 0, "1.2": 0, "2.1": 3}
    assert statuses(r, "1.1") == ["timed out", "timed out"]
    assert statuses(r, "1.2") == ["timed out", "timed out"]
    assert "time limit" in next(e for e in r.exercises if e.id == "1.1").first_failure

    def edit2(text):
        text = solution_of(text, "1.1", "import os\nos._exit(3)\n")
        text = solution_of(text, "1.2", "import pytest\npytest.skip('gaming')\n")
        return text
    r = grade_course(variant(course, tmp_path / "crash", edit2))
    assert scores(r) == {"1.1": 0, "1.2": 0, "2.1": 3}
    assert statuses(r, "1.1") == ["crashed", "crashed"]
    assert statuses(r, "1.2") == ["failed", "failed"]  # a skip is the student's exception
    assert "Skipped: gaming" in next(e for e in r.exercises if e.id == "1.2").first_failure


def test_grade_partial_credit_and_broken_test_module(course, grade_course, tmp_path):
    # Acc missing: both test modules fail to import; double passes one test of two
    no_acc = variant(course, tmp_path / "noacc", lambda t: solution_of(
        t.split("class Acc")[0], "1.1", "y = 2 * x if x > 0 else 0\n"),
        init="from .ops import double, square\n\n\ndef gpu_available():\n    return True\n")
    r = grade_course(no_acc)
    assert scores(r) == {"1.1": 0, "1.2": 0, "2.1": 0}
    assert all(t.outcome.status == "not run" and "failed to import" in t.outcome.line
               for e in r.exercises for t in e.counted)
    # the visible module's error does not show the hidden module's source, and vice versa
    visible = [t for e in r.exercises for t in e.counted if not t.hidden]
    assert all(HIDDEN_SECRET not in t.outcome.output for t in visible)
    partial = variant(course, tmp_path / "partial", lambda t: solution_of(
        t, "1.1", "y = 2 * x if x > 0 else 0\n"))
    r = grade_course(partial)
    assert scores(r) == {"1.1": 0.5, "1.2": 2, "2.1": 3}
    assert "test_double_negative" in r.exercises[0].first_failure


def test_grade_reports_the_students_output_per_test(course, grade_course, tmp_path):
    sub = stubs(course, tmp_path / "talk", extra_init="""
        from . import ops
        def double(x):
            print("double was called with", x)
            raise ValueError("not yet")
        ops.double = double
        """)
    r = grade_course(sub, exercises=["1.1"])
    outs = [t.outcome.output for t in r.exercises[0].tests]
    assert "double was called with 3" in outs[0] and "double was called with 3" not in outs[1]
    assert "double was called with -2" in outs[1]
    assert json.dumps(gradescope_json(r))  # plain JSON
    assert "not yet" in all_text(r)
