"""A tiny synthetic course for the grader tests: an instructor copy with three exercises (1.2
needs 1.1; a withheld fast twin gives 2.1 away), visible and hidden tests, a GPU test that the package decides to skip, and helpers to build
submissions from it (``from _course import ...``)."""
import json
import shutil
import textwrap

from minimem.grading import BEGIN, END, parse_source
from minimem.grading.markers import WITHHELD_BEGIN, WITHHELD_END


def src(text: str) -> str:
    """Dedented source with <B>/<E> standing for the solution markers, <W>/<WE> for the
    withheld ones."""
    return (textwrap.dedent(text).replace("<B>", BEGIN).replace("<E>", END)
            .replace("<WE>", WITHHELD_END).replace("<W>", WITHHELD_BEGIN))


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
        # Needs: 1.1
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


    <W> 2.1
    def fast_total(xs):
        return sum(xs)  # WITHHELD-ANSWER
    #> def fast_total(xs):
    #>     return Acc().total(xs)
    <WE>
    ''')

INIT = src('''
    from .ops import Acc, double, fast_total, square


    def gpu_available():
        """Like minimem.cupy_available: the course's conftest asks it (it pretends to have one)."""
        return True
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


    @pytest.mark.gpu
    @pytest.mark.exercise("2.1", points=3)
    def test_total_on_the_gpu():
        assert Acc().total(range(5)) == 10


    def test_not_an_exercise():
        assert True


    @pytest.mark.exercise("x", points=1)
    def test_bad_marker():
        assert True
    ''')

HIDDEN_SECRET = "HIDDEN-TEST-SOURCE-7f3a"
HIDDEN_TESTS = src(f'''
    """{HIDDEN_SECRET}"""
    import pytest
    from minimem.ops import Acc, square


    @pytest.mark.exercise("2.1", points=3)
    def test_total_empty():
        assert Acc().total([]) == 0


    @pytest.mark.exercise("1.2", points=2)
    def test_square_negative():
        assert square(-3) == 9 + 0 * 48611  # an expected value students must not see
    ''')

PYPROJECT = src('''
    [project]
    name = "minimem"
    version = "0"

    [tool.pytest.ini_options]
    addopts = "--strict-markers -x"
    markers = ["exercise(id, points): graded", "gpu: needs a GPU"]
    ''')

CONFTEST = src('''
    import pytest

    import minimem  # a broken package breaks collection


    def pytest_collection_modifyitems(config, items):
        # as the repository's conftest does with cupy_available(): the package decides
        if minimem.gpu_available():
            return
        skip = pytest.mark.skip(reason="no GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    ''')

FILES = {
    "pyproject.toml": PYPROJECT,
    "minimem/__init__.py": INIT,
    "minimem/ops.py": OPS,
    "tests/conftest.py": CONFTEST,
    "tests/test_ops.py": VISIBLE_TESTS,
    "tests/hidden/test_ops_hidden.py": HIDDEN_TESTS,
    "notebooks/intro.ipynb": json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                         "nbformat_minor": 5}),
    ".venv/lib/junk.py": "raise SystemExit\n",
    "minimem/__pycache__/ops.cpython-311.pyc": "junk",
}
SOLUTION_SECRET = "s += x"  # a line of the instructor's solution


def write_course(root):
    """Write the instructor copy under ``root`` (world-readable, like /autograder/source)."""
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return root


def variant(course, out, ops_edit=None, init=None, extra_init=""):
    """A submission: the course package with ``ops_edit(text)`` applied to ops.py, another
    ``__init__.py``, or code appended to it."""
    shutil.copytree(course / "minimem", out / "minimem", ignore=shutil.ignore_patterns(
        "__pycache__"))
    if ops_edit is not None:
        p = out / "minimem" / "ops.py"
        p.write_text(ops_edit(p.read_text()))
    if init is not None:
        (out / "minimem" / "__init__.py").write_text(init)
    if extra_init:
        p = out / "minimem" / "__init__.py"
        p.write_text(p.read_text() + "\n" + textwrap.dedent(extra_init))
    return out


def stubs(course, out, extra_init="", files=None):
    """The released student copy (every solution a NotImplementedError stub), plus
    ``extra_init`` appended to its ``__init__.py`` and ``files`` next to the package."""
    from minimem.grading import strip_solutions

    sub = variant(course, out, lambda t: strip_solutions(t)[0], extra_init=extra_init)
    for rel, text in (files or {}).items():
        (sub / rel).parent.mkdir(parents=True, exist_ok=True)
        (sub / rel).write_text(textwrap.dedent(text))
    return sub


def solution_of(text, ex_id, new_body):
    """Replace the solution of ``ex_id`` in ``text`` by ``new_body`` (same indentation)."""
    region = next(r for r in parse_source(text) if r.id == ex_id)
    lines = text.splitlines(keepends=True)
    body = textwrap.indent(textwrap.dedent(new_body), region.indent)
    return "".join(lines[: region.begin - 1]) + body + "".join(lines[region.end:])


def scores(report):
    return {e.id: round(e.earned, 6) for e in report.exercises}


def statuses(report, ex_id):
    e = next(e for e in report.exercises if e.id == ex_id)
    return sorted(t.outcome.status for t in e.tests if t.outcome.status != "skipped")


def all_text(report) -> str:
    """Every line and output of a report (what a student could be shown)."""
    return "\n".join(f"{t.outcome.line}\n{t.outcome.output}" for e in report.exercises
                     for t in e.tests if t.outcome is not None)
