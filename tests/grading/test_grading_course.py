"""The grader on a tiny synthetic course built in a temp folder (minimem.grading).

Fast, and every failure mode: stubs, a package that fails to import, soft and hard hangs, a
process that dies, a skip raised inside a test, a test module that fails to import, partial
credit, bad markers. The course needs no third-party pytest plugins, so its pytest subprocesses
run with PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 (faster start-up).
"""
import json
import shutil
import textwrap

import pytest

from minimem.grading import (
    BEGIN,
    END,
    ExerciseMarkerError,
    collect_exercise_tests,
    gradescope_json,
    parse_source,
    release,
)
from minimem.grading import grade as _grade


def src(text: str) -> str:
    """Dedented source with <B>/<E> standing for the solution markers."""
    return textwrap.dedent(text).replace("<B>", BEGIN).replace("<E>", END)


OPS = src('''
    """Tiny course package for the grader tests."""


    def double(x):
        # Exercise 1.1 (1 pt): return 2 * x.
        <B>
        y = 2 * x
        <E>
        return y


    def square(x):
        # Exercise 1.2 (2 pt): return x squared.
        <B>
        y = x * x
        <E>
        return y


    class Acc:
        def total(self, xs):
            # Exercise 2.1 (3 pt): the sum of xs,
            # as a loop.
            <B>
            s = 0
            for x in xs:
                s += x
            <E>
            return s
    ''')

VISIBLE_TESTS = src('''
    import pytest
    from minimem.ops import double, square, Acc


    @pytest.mark.exercise("1.1", points=1)
    def test_double_small():
        assert double(3) == 6


    @pytest.mark.exercise("1.1", points=1)
    def test_double_negative():
        assert double(-2) == -4


    @pytest.mark.exercise("1.2", points=2)
    def test_square():
        assert square(5) == 25


    @pytest.mark.exercise("2.1", points=3)
    def test_total():
        assert Acc().total([1, 2, 3]) == 6


    @pytest.mark.skip(reason="needs a GPU")
    @pytest.mark.exercise("2.1", points=3)
    def test_total_gpu_only():
        assert False


    def test_not_an_exercise():
        assert True


    @pytest.mark.exercise("x", points=1)
    def test_bad_marker():
        assert True
    ''')

HIDDEN_TESTS = src('''
    import pytest
    from minimem.ops import Acc, square


    @pytest.mark.exercise("2.1", points=3)
    def test_total_empty():
        assert Acc().total([]) == 0


    @pytest.mark.exercise("1.2", points=2)
    def test_square_negative():
        assert square(-3) == 9
    ''')

PYPROJECT = src('''
    [project]
    name = "minimem"
    version = "0"

    [tool.pytest.ini_options]
    addopts = "--strict-markers -x"
    markers = ["exercise(id, points): graded"]
    ''')

CONFTEST = "import minimem  # noqa: F401  (a broken package breaks collection)\n"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """An instructor copy: package with 3 exercises, visible and hidden tests."""
    root = tmp_path_factory.mktemp("course") / "instructor"
    files = {
        "pyproject.toml": PYPROJECT,
        "minimem/__init__.py": "from .ops import Acc, double, square\n",
        "minimem/ops.py": OPS,
        "tests/conftest.py": CONFTEST,
        "tests/test_ops.py": VISIBLE_TESTS,
        "tests/hidden/test_ops_hidden.py": HIDDEN_TESTS,
        "notebooks/intro.ipynb": json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                             "nbformat_minor": 5}),
        ".venv/lib/junk.py": "raise SystemExit\n",
        "minimem/__pycache__/ops.cpython-311.pyc": "junk",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def variant(course, tmp_path, name, ops_edit=None, init=None):
    """A student copy of the course package with ``ops_edit(text)`` applied to ops.py."""
    out = tmp_path / name
    shutil.copytree(course / "minimem", out / "minimem")
    if ops_edit is not None:
        p = out / "minimem" / "ops.py"
        p.write_text(ops_edit(p.read_text()))
    if init is not None:
        (out / "minimem" / "__init__.py").write_text(init)
    return out


def solution_of(text, ex_id, new_body):
    """Replace the solution of ``ex_id`` in ``text`` by ``new_body`` (same indentation)."""
    region = next(r for r in parse_source(text) if r.id == ex_id)
    lines = text.splitlines(keepends=True)
    body = textwrap.indent(textwrap.dedent(new_body), region.indent)
    return "".join(lines[: region.begin - 1]) + body + "".join(lines[region.end:])


_COLLECTED = {}


def grade_(path, root=None, **kw):
    """Grade with the collection of ``root`` cached (one collection per instructor copy)."""
    with pytest.MonkeyPatch.context() as mp:
        if root is not None:  # the synthetic course needs no third-party pytest plugins: faster
            mp.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        return _grade(path, root=root, collected=_collected(root), **kw)


def _collected(root):
    key = str(root)
    if key not in _COLLECTED:
        with pytest.MonkeyPatch.context() as mp:
            if root is not None:
                mp.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
            _COLLECTED[key] = collect_exercise_tests(root)
    return _COLLECTED[key]


def scores(report):
    return {e.id: round(e.earned, 6) for e in report.exercises}


def statuses(report, ex_id):
    e = next(e for e in report.exercises if e.id == ex_id)
    return sorted(t.outcome.status for t in e.tests)


def test_release_course(course, tmp_path):
    out = tmp_path / "student"
    s = release(out, root=course)
    assert sorted(r.id for r in s.regions) == ["1.1", "1.2", "2.1"]
    assert s.hidden_removed == ["tests/hidden/test_ops_hidden.py"]
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got == ["minimem/__init__.py", "minimem/ops.py", "notebooks/intro.ipynb",
                   "pyproject.toml", "tests/conftest.py", "tests/test_ops.py"]
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


def test_grade_course_round_trip(course, tmp_path):
    full = grade_(course, root=course, timeout=20)
    assert scores(full) == {"1.1": 1, "1.2": 2, "2.1": 3}
    assert full.score == full.max_score == 6
    e21 = next(e for e in full.exercises if e.id == "2.1")
    assert [t.hidden for t in e21.tests] == [False, False, True]
    assert e21.task == "the sum of xs, as a loop." and e21.first_failure == ""
    assert [w for w in full.warnings if "test_bad_marker: bad exercise marker 'x'" in w]

    release(tmp_path / "student", root=course)
    zero = grade_(tmp_path / "student", root=course, timeout=20)
    assert [e.id for e in zero.exercises] == ["1.1", "1.2", "2.1"]
    assert zero.score == 0 and zero.max_score == 6
    for e in zero.exercises:
        assert all(t.outcome.status == "failed" for t in e.counted)
        assert f"NotImplementedError: Exercise {e.id}:" in e.first_failure

    js = gradescope_json(zero)
    assert js["score"] == 0 and len(js["tests"]) == 6
    assert {t["visibility"] for t in js["tests"] if "empty" in t["name"]} == {"after_published"}
    assert sum(t["max_score"] for t in js["tests"]) == pytest.approx(6)
    assert all(t["status"] == "failed" and "NotImplementedError" in t["output"]
               for t in js["tests"])
    one = grade_(course, root=course, timeout=20, exercises=["1.2"])
    assert scores(one) == {"1.2": 2}
    with pytest.raises(ValueError, match=r"unknown exercise id\(s\) 7\.7"):
        grade_(course, root=course, exercises=["7.7"])


def test_grade_import_crash_and_missing_package(course, tmp_path):
    broken = variant(course, tmp_path, "broken", init="raise RuntimeError('boom at import')\n")
    r = grade_(broken, root=course, timeout=20)
    assert scores(r) == {"1.1": 0, "1.2": 0, "2.1": 0} and r.max_score == 6
    assert all(t.outcome.status == "not run" and "boom at import" in t.outcome.line
               for e in r.exercises for t in e.tests)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = grade_(empty, root=course, timeout=20)
    assert scores(r) == {"1.1": 0, "1.2": 0, "2.1": 0}
    assert "no minimem package" in r.exercises[0].first_failure


def test_grade_hangs_crashes_and_skips(course, tmp_path):
    def edit(text):
        text = solution_of(text, "1.1", "while True:\n    pass\n")  # soft timeout
        text = solution_of(text, "1.2", (  # swallows the soft timeout: the hard limit ends it
            "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
            "    except BaseException:\n        pass\n"))
        return text
    hang = variant(course, tmp_path, "hang", edit)
    r = grade_(hang, root=course, timeout=1.0)
    assert scores(r) == {"1.1": 0, "1.2": 0, "2.1": 3}
    assert statuses(r, "1.1") == ["timed out", "timed out"]
    assert statuses(r, "1.2") == ["timed out", "timed out"]
    assert "time limit" in next(e for e in r.exercises if e.id == "1.1").first_failure

    def edit2(text):
        text = solution_of(text, "1.1", "import os\nos._exit(3)\n")
        text = solution_of(text, "1.2", "import pytest\npytest.skip('gaming')\n")
        return text
    crash = variant(course, tmp_path, "crash", edit2)
    r = grade_(crash, root=course, timeout=20)
    assert scores(r) == {"1.1": 0, "1.2": 0, "2.1": 3}
    assert statuses(r, "1.1") == ["crashed", "crashed"]
    assert statuses(r, "1.2") == ["failed", "failed"]
    assert "skipped inside the test (counts as failed)" in \
        next(e for e in r.exercises if e.id == "1.2").first_failure


def test_grade_partial_credit_and_broken_test_module(course, tmp_path):
    # Acc missing: both test modules fail to import; double passes one test of two
    no_acc = variant(course, tmp_path, "noacc", lambda t: solution_of(
        t.split("class Acc")[0], "1.1", "y = 2 * x if x > 0 else 0\n"),
        init="from .ops import double, square\n")
    r = grade_(no_acc, root=course, timeout=20)
    assert scores(r) == {"1.1": 0, "1.2": 0, "2.1": 0}
    assert all(t.outcome.status == "not run" and "failed to import" in t.outcome.line
               for e in r.exercises for t in e.tests)
    partial = variant(course, tmp_path, "partial", lambda t: solution_of(
        t, "1.1", "y = 2 * x if x > 0 else 0\n"))
    r = grade_(partial, root=course, timeout=20)
    assert scores(r) == {"1.1": 0.5, "1.2": 2, "2.1": 3}
    assert "test_double_negative" in r.exercises[0].first_failure

