"""Fixtures of the grader tests: the synthetic course (``_course.py``), collected once."""
import shutil
import tempfile
from pathlib import Path

import pytest
from _course import write_course

from minimem.grading import collect_exercise_tests, grade, release


@pytest.fixture(scope="session")
def course():
    """The instructor copy, in a world-readable folder (as on Gradescope): only the grader's
    isolation keeps a submission from reading it."""
    root = Path(tempfile.mkdtemp(prefix="minimem-course-"))
    root.chmod(0o755)
    try:
        yield write_course(root / "instructor")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def course_tests(course):
    return collect_exercise_tests(course)


@pytest.fixture(scope="session")
def grade_course(course, course_tests):
    """``grade_course(path, **kw)``: grade a submission with the course's tests."""
    def run(path, **kw):
        kw.setdefault("timeout", 20)
        return grade(path, root=course, collected=course_tests, **kw)
    return run


@pytest.fixture
def public_tmp():
    """A temporary folder other users may enter (submissions live in one)."""
    d = Path(tempfile.mkdtemp(prefix="minimem-sub-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def repo_release(tmp_path_factory):
    """This repository's student copy, released once for the session."""
    out = tmp_path_factory.mktemp("release") / "student"
    return release(out)  # also checks that `import minimem` works in the copy
