"""The student's copy (minimem.grading): dependencies between exercises (``# Needs:``), withheld
blocks and homework mode, STUDENT.md, the grade table's failure lines and check command, the
selection of one exercise's tests by its marker id, and the notebooks' first and last cells.

The course tests reuse the synthetic course of ``_course.py``; the repository tests reuse the
session's release of this repository (``repo_release`` in conftest.py)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from _course import scores, solution_of, src, variant

from minimem.grading import (
    ExerciseMarkerError,
    format_exercises,
    format_report,
    gradescope_json,
    list_exercises,
    parse_source,
    release,
    withheld_blocks,
)
from minimem.grading import notebook as nb_cells
from minimem.grading.markers import (
    parse_answered,
    parse_withheld,
    strip_withheld_markers,
    withhold,
)
from minimem.grading.repo import package_root

REPO = package_root()
PLUGIN = REPO / "minimem" / "grading" / "plugin.py"


# ----------------------------------------------------------------------------- markers
def test_needs_line_is_parsed_and_kept_out_of_the_task():
    text = src("""
        def f(x):
            # Exercise 50.1 (3 pt): the replay loop,
            #   newest segment first.
            # Needs: 0.5, 20.1
            <B>
            y = x
            <E>
            return y
        """)
    (r,) = parse_source(text, "m.py")
    assert r.needs == ("0.5", "20.1") and r.task == "the replay loop, newest segment first."
    from minimem.grading import strip_solutions

    stubbed, _ = strip_solutions(text, "m.py")
    (s,) = parse_source(stubbed, "m.py")
    assert s.released and s.needs == ("0.5", "20.1") and s.state == "todo"
    answered = stubbed.replace('raise NotImplementedError("Exercise 50.1: the replay loop, '
                               'newest segment first.")', "y = 2 * x")
    assert parse_source(answered, "m.py") == []
    (a,) = parse_answered(answered, "m.py")
    assert (a.id, a.state, a.needs) == ("50.1", "answered", ("0.5", "20.1"))
    # a header inside a string (an example in a docstring) is not an exercise
    assert parse_answered('"""\n# Exercise 1.1 (1 pt): t\nx = 1\n"""\n', "d.py") == []


@pytest.mark.parametrize("needs", ["# Needs: 0.5 20.1", "# Needs: x", "# Needs:",
                                   "# Needs: 3.1"])
def test_bad_needs_lines_name_file_and_line(needs):
    text = src(f"def f():\n    # Exercise 3.1 (1 pt): t\n    {needs}\n    <B>\n    pass\n"
               f"    <E>\n")
    with pytest.raises(ExerciseMarkerError, match=r"m\.py:3: exercise 3\.1: expected "
                                                  r"'# Needs: <ids>'"):
        parse_source(text, "m.py")


WITHHELD = src('''
    def fast(x):
        <W> 1.1, 1.2
        y = x + x  # the answer
        return y
        #> return slow(x)
        <WE>

    DOC = """
    <W> 2.1
    d/dx = the answer
    #> (withheld: it is exercise 2.1)
    <WE>
    """
    ''')


def test_withhold_replaces_blocks_and_a_plain_release_only_drops_markers():
    blocks = parse_withheld(WITHHELD, "w.py")
    assert [(b.ids, b.begin, b.end) for b in blocks] == [(("1.1", "1.2"), 3, 7),
                                                         (("2.1",), 10, 13)]
    hw, _ = withhold(WITHHELD, "w.py")
    assert "the answer" not in hw and "WITHHELD" not in hw
    assert "    return slow(x)\n" in hw and "(withheld: it is exercise 2.1)\n" in hw
    ns = {"slow": lambda x: -x}
    exec(compile(hw, "w.py", "exec"), ns)  # noqa: S102 (our own test source)
    assert ns["fast"](3) == -3
    plain = strip_withheld_markers(WITHHELD, "w.py")
    assert "WITHHELD" not in plain and "#>" not in plain and "y = x + x" in plain
    ns = {}
    exec(compile(plain, "w.py", "exec"), ns)  # noqa: S102
    assert ns["fast"](3) == 6


@pytest.mark.parametrize("body, match", [
    ("<W>\nx = 1\n<WE>\n", r"w\.py:1: expected .* with the exercise ids"),
    ("<W> 1.1\nx = 1\n", r"w\.py:1: unterminated withheld block"),
    ("x = 1\n<WE>\n", r"w\.py:2: .* without a"),
    ("<W> 1.1\n<W> 1.2\n<WE>\n<WE>\n", r"w\.py:2: a marker inside the withheld block"),
])
def test_bad_withheld_blocks_name_file_and_line(body, match):
    with pytest.raises(ExerciseMarkerError, match=match):
        parse_withheld(src(body), "w.py")


# ----------------------------------------------------------------------------- the course
def test_course_release_plain_and_homework(course, grade_course, tmp_path):
    plain = release(tmp_path / "plain", root=course)
    ops = (plain.out / "minimem/ops.py").read_text()
    assert "return sum(xs)  # WITHHELD-ANSWER" in ops and "WITHHELD\n" not in ops
    assert not plain.homework and plain.withheld == []
    guide = (plain.out / "STUDENT.md").read_text()
    assert "make student" in guide and "minimem exercises check" in guide
    assert "| 1.2 | 2 | 1.1 | `minimem/ops.py:" in guide  # the order, with what 1.2 needs
    readme = (plain.out / "README.md").read_text()
    assert "STUDENT.md" in readme and "hidden" not in readme.lower()

    hw = release(tmp_path / "hw", root=course, homework=True)
    assert [b.ids for b in hw.withheld] == [("2.1",)]
    ops = (hw.out / "minimem/ops.py").read_text()
    assert "WITHHELD-ANSWER" not in ops and "return Acc().total(xs)" in ops
    assert "homework copy" in (hw.out / "STUDENT.md").read_text()
    assert scores(grade_course(hw.out)) == {"1.1": 0, "1.2": 0, "2.1": 0}
    # withholding alone leaves a package the reference grades at full marks
    ref = release(tmp_path / "hw-ref", root=course, homework=True, solutions=False)
    report = grade_course(ref.out)
    assert report.score == report.max_score == 6
    assert json.loads(json.dumps(gradescope_json(report)))["score"] == 6


def test_grade_table_needs_failure_lines_and_check_command(course, grade_course, tmp_path):
    def edit(text):
        text = solution_of(text, "1.1", "y = 2 * x if x > 0 else 0\n")
        return solution_of(text, "1.2", "y = x * abs(x)\n")
    r = grade_course(variant(course, tmp_path / "sub", edit))
    assert scores(r) == {"1.1": 0.5, "1.2": 1, "2.1": 3}
    table = format_report(r)
    row = next(ln for ln in table.splitlines() if ln.startswith("1.2 "))
    assert "needs 1.1 (not done yet)" in row
    e11 = next(e for e in r.exercises if e.id == "1.1")
    # the assertion's actual against expected, not only "AssertionError"
    assert "assert 0 == -4" in e11.first_failure and "where 0 = double(-2)" in table
    assert "check: .venv/bin/minimem exercises check 1.1" in table
    assert "check: .venv/bin/minimem exercises check 2.1" not in table  # full marks
    js = gradescope_json(r)
    assert any(t["output"].startswith("needs 1.1 (not done yet)") for t in js["tests"]
               if t["name"].startswith("Exercise 1.2"))


def test_marker_selection_never_picks_another_exercises_tests(tmp_path):
    (tmp_path / "mmsel.py").write_text(PLUGIN.read_text())
    (tmp_path / "test_sel.py").write_text(src('''
        import pytest


        @pytest.mark.exercise("0.1", points=1)
        def test_mul():
            pass


        @pytest.mark.exercise("0.3", points=1)
        def test_matmul():
            pass


        @pytest.mark.exercise("0.10", points=1)
        def test_other():
            pass
        '''))
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    exercise: graded\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    res = subprocess.run([sys.executable, "-m", "pytest", "test_sel.py", "-p", "mmsel",
                          "--mm-exercise", "0.1", "-v", "-p", "no:cacheprovider"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "test_mul PASSED" in res.stdout and "1 passed, 2 deselected" in res.stdout
    assert "test_matmul" not in res.stdout  # `-k mul` would have run it


# ----------------------------------------------------------------------------- this repository
def test_list_shows_needs_and_answers_given_away_elsewhere():
    regions = list_exercises(states=True)
    blocks = withheld_blocks()
    given_away = {x for b in blocks for x in b.ids}
    assert {"10.2", "30.3"} <= given_away
    table = format_exercises(regions, blocks)
    for r in regions:
        row = next(ln for ln in table.splitlines() if ln.startswith(f"{r.id} ")
                   and r.location in ln)
        assert ("yes" if r.id in given_away else "no") in row.split()
        if r.needs:
            assert ", ".join(r.needs) in row
    ids = {r.id for r in regions}
    assert all(n in ids for r in regions for n in r.needs), "a # Needs: line names no exercise"


def test_repository_release_guide_and_notebook_cells(repo_release, capsys):
    out = repo_release.out
    assert (out / "STUDENT.md").is_file() and "STUDENT.md" in (out / "README.md").read_text()
    assert "Gradescope" not in (out / "README.md").read_text()
    assert "WITHHELD" not in (out / "minimem/kernels/async_sweeps.py").read_text()
    with pytest.raises(nb_cells.ExercisesNotDone) as info:
        nb_cells.start("00", root=out)
    text = "\n".join(info.value._render_traceback_())
    assert "Traceback" not in text and "Not done yet (5)" in text
    for ex_id in ("0.1", "0.2", "0.3", "0.4", "0.5"):
        assert f"\n  {ex_id}  minimem/" in text
    assert ".venv/bin/minimem exercises check 0.1,0.2,0.3,0.4,0.5" in text
    nb_cells.finish("01", root=out)
    assert ".venv/bin/minimem exercises check 0.2,0.5,1.1,1.2,1.3" in capsys.readouterr().out
    nb_cells.start("00")  # the instructor's copy: every exercise solved, the page runs on
    out = capsys.readouterr().out
    assert "solved in this copy" in " ".join(out.split())
    assert max(map(len, out.splitlines() + text.splitlines())) <= 88  # the page never scrolls
    with pytest.raises(ValueError, match=r"notebook\.start: no chapter '99'"):
        nb_cells.start("99")


def test_release_copies_executed_outputs_when_sources_match(course, tmp_path):
    executed = tmp_path / "executed"
    executed.mkdir()
    cell = {"cell_type": "code", "source": "1 + 1", "metadata": {}, "execution_count": None,
            "outputs": []}
    nb = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    inst = tmp_path / "inst"
    shutil.copytree(course, inst)
    (inst / "notebooks/intro.ipynb").write_text(json.dumps(nb))
    ran = json.loads(json.dumps(nb))
    ran["cells"][0].update(execution_count=1, outputs=[
        {"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {},
         "execution_count": 1}])
    (executed / "intro.ipynb").write_text(json.dumps(ran))
    s = release(tmp_path / "out", root=inst, outputs_from=executed)
    assert s.notebooks_with_outputs == 1
    got = json.loads((tmp_path / "out/notebooks/intro.ipynb").read_text())
    assert got["cells"][0]["outputs"][0]["data"]["text/plain"] == "2"
    ran["cells"][0]["source"] = "1 + 2"  # another source: outputs not copied
    (executed / "intro.ipynb").write_text(json.dumps(ran))
    assert release(tmp_path / "out2", root=inst, outputs_from=executed
                   ).notebooks_with_outputs == 0
    with pytest.raises(FileNotFoundError, match="--outputs-from"):
        release(tmp_path / "out3", root=inst, outputs_from=tmp_path / "nowhere")


def test_homework_release_of_the_repository_installs_and_runs_the_reference_path(tmp_path):
    # the import is checked below, where the reference path runs
    hw = release(tmp_path / "hw", homework=True, solutions=False, verify_import=False)
    assert {x for b in hw.withheld for x in b.ids} >= {"10.2", "20.4", "30.3"}
    assert "_async_kernel" not in (hw.out / "minimem/kernels/async_sweeps.py").read_text()
    # a homework page also runs its chapter's withheld exercises (the fast path is the stub's)
    assert "30.3" in [r.id for r in nb_cells.exercises_of("30", root=hw.out)]
    assert "30.3" not in [r.id for r in nb_cells.exercises_of("30")]
    # pip accepts the copy (its metadata builds: pyproject, README); `make student` installs it.
    # The build runs on this environment's setuptools (no index here): the venv's (make venv
    # upgrades it), which must read pyproject's `license = "MIT"` (PEP 639: setuptools >= 77).
    from importlib.metadata import version
    if int(version("setuptools").split(".")[0]) < 77:
        pytest.skip(f"setuptools {version('setuptools')} < 77 cannot build this pyproject; "
                    f"make venv installs a newer one")
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
                          "--no-build-isolation", "--no-index", str(hw.out)],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0 and "Would install minimem" in res.stdout, res.stderr[-2000:]
    code = ("import minimem, sys; from minimem.kernels.async_sweeps import async_sweeps; "
            "import numpy as np; W = np.array([[0., 1.], [1., 0.]]); "
            "s, e, c = async_sweeps(W, np.zeros(2), np.array([1., -1.]), np.array([[0, 1]])); "
            "sys.stdout.write(minimem.__file__ + ' ' + str(s.tolist()))")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=False,
                         env=dict(os.environ, PYTHONPATH=str(hw.out),
                                  NUMBA_CACHE_DIR=str(tmp_path / "numba")))
    assert run.returncode == 0, run.stderr[-2000:]
    where, state = run.stdout.split(" ", 1)
    assert where.startswith(str(hw.out)) and state == "[-1.0, -1.0]"


def test_check_command_selects_by_marker_and_names_missing_needs(repo_release, capsys):
    from minimem.cli import main
    from minimem.grading import check_exercises

    assert check_exercises("20.1", root=repo_release.out, run=False) == 0
    out = capsys.readouterr().out
    assert "exercise 20.1 (2 pt, minimem/memory/delta/linear_attention.py:" in out
    assert "still a stub; needs 0.1, 0.2, 0.5 (not done yet: do those first)" in out
    assert ("-p minimem.grading.plugin --mm-exercise 20.1" in out
            and "tests/memory/delta/" in out and "tests/hidden" not in out)
    assert main(["exercises", "check", "7.7"]) == 2
    assert "unknown exercise id(s) 7.7" in capsys.readouterr().err


def test_every_notebook_opens_with_start_and_ends_with_finish_and_runs_are_measured():
    from minimem.chapters import CHAPTERS

    known = {r.id for r in list_exercises()}
    for ch in CHAPTERS:
        cells = json.loads((REPO / "notebooks" / f"{ch.notebook}.ipynb").read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        assert f'notebook.start("{ch.id}")' in code[0], ch.notebook
        assert code[-1].startswith(f'notebook.finish("{ch.id}")'), ch.notebook
        # the measured row names exercises that exist (a renamed one would go unnoticed)
        assert ch.id in nb_cells.RUNS and set(nb_cells.RUNS[ch.id]) <= known, ch.id
