"""Hostile submissions (issue 16): each class of attack that once earned full marks with nothing
implemented, built here against the synthetic course of ``_course.py``, graded, scored 0 (or,
for the honest ones, full marks). Attacks that only isolation stops (reading or writing the
instructor's files, the grader's environment) need the grader to run as root, as on
Gradescope; without root they are skipped.
"""
import hashlib
import json
import os
import re
import sys
import time

import pytest
from _course import (
    HIDDEN_SECRET,
    PYPROJECT,
    SOLUTION_SECRET,
    all_text,
    scores,
    src,
    statuses,
    stubs,
    variant,
)

from minimem.cli import main
from minimem.grading import collect_exercise_tests, grade, grade_many, sandbox
from minimem.grading.runner import site_dirs

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="without root the worker runs as you: "
                                                 "there is no isolation to test")
ZERO = {"1.1": 0, "1.2": 0, "2.1": 0}
FULL = {"1.1": 1, "1.2": 2, "2.1": 3}

# Every stub reports what the attack achieved: NotImplementedError("ATTACK {...}")
REPORT = """
import json as _json
from . import ops as _ops

def _report(*args, **kwargs):
    raise NotImplementedError("ATTACK " + _json.dumps(FINDINGS, sort_keys=True))

_ops.double = _ops.square = _report
_ops.Acc.total = lambda self, xs: _report()
"""

# What a plugin, sitecustomize or fake pytest would do in the grader's process: every report
# "passed" (in the old grader, run in the same process as the tests, this gave full marks).
PASS_ALL = """
def _pass_all():
    try:
        import _pytest.reports as R
    except Exception:
        return
    orig = R.TestReport.from_item_and_call.__func__

    def fake(cls, item, call):
        rep = orig(cls, item, call)
        rep.outcome, rep.longrepr = "passed", None
        return rep
    R.TestReport.from_item_and_call = classmethod(fake)
"""


def findings(report) -> dict:
    found = re.findall(r"ATTACK (\{[^\n]*?\})", all_text(report))
    assert found, "the attack did not report"
    return json.loads(found[0])


def tree_digest(root) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def worker_processes() -> list[int]:
    return [p for uid in sandbox.UID_RANGE for p in sandbox.processes_of(uid)] if ROOT else []


def assert_all_failed(report):
    assert scores(report) == ZERO, all_text(report)[-3000:]
    assert all(t.outcome.status in ("failed", "not run", "crashed")
               for e in report.exercises for t in e.counted)


# --------------------------------------------------------------------- forging the verdict
FORGE = """
import glob, json, os, sys
NODES = ["tests/test_ops.py::test_double_small", "tests/test_ops.py::test_double_negative",
         "tests/test_ops.py::test_square", "tests/test_ops.py::test_total",
         "tests/test_ops.py::test_total_on_the_gpu",
         "tests/hidden/test_ops_hidden.py::test_total_empty",
         "tests/hidden/test_ops_hidden.py::test_square_negative"]
LINES = "".join(json.dumps(e) + "\\n" for n in NODES for e in (
    {"ev": "start", "nodeid": n},
    {"ev": "report", "nodeid": n, "when": "call", "outcome": "passed", "line": "",
     "longrepr": "", "duration": 0.0, "timed_out": False, "xfail": False},
    {"ev": "finish", "nodeid": n},
    {"ev": "outcome", "nodeid": n, "status": "passed", "line": "", "output": ""}))

OWN = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))  # our scratch

def forge(path):
    if not os.path.isabs(path) or os.path.realpath(path).startswith(OWN + os.sep):
        return False  # our own files: nothing to gain
    try:
        with open(path, "a") as f:
            f.write(LINES)
        return True
    except OSError:
        return False

FINDINGS = {"argv": [a for a in sys.argv if forge(a)], "proc": []}
if SCAN_PROC:
    for cmd in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            args = open(cmd, "rb").read().decode(errors="ignore").split("\\0")
        except OSError:
            continue
        for a in args:
            d = os.path.dirname(a)
            if a.startswith("/") and d.count("/") > 1 and not d.endswith("/bin"):
                for f in [a] + glob.glob(d + "/*.json*") + glob.glob(d + "/*/*.json*"):
                    if os.path.isfile(f) and forge(f):
                        FINDINGS["proc"].append(f)
# patch whatever looks like the grader or pytest in this process
try:
    import _pytest.reports
    _pytest.reports.TestReport.outcome = "passed"
except Exception:
    pass
for name, mod in list(sys.modules.items()):
    if "grade" in name or "plugin" in name:
        for attr in ("_emit", "emit", "_fold"):
            try:
                setattr(mod, attr, lambda *a, **k: None)
            except Exception:
                pass
"""

LIARS = """
import pytest
from . import ops as _ops

class Anything:
    __eq__ = lambda self, other: True
    __bool__ = lambda self: True
    __lt__ = __gt__ = __le__ = __ge__ = __eq__

class LyingFloat(float):
    __eq__ = lambda self, other: True

_ops.double = lambda x: Anything()
_ops.square = lambda x: LyingFloat(0.0)
def _skip(self, xs):
    pytest.skip("opting out")
_ops.Acc.total = _skip
"""


def test_forged_events_patched_reports_and_lying_objects_score_zero(course, grade_course,
                                                                    public_tmp):
    """The old attacks (events file from sys.argv, the plugin's emitter and pytest's reports
    patched at import) and objects that equal everything, are always true or skip the test."""
    sub = stubs(course, public_tmp / "forge", extra_init="SCAN_PROC = False\n" + FORGE + LIARS)
    r = grade_course(sub)
    assert_all_failed(r)
    assert statuses(r, "2.1") == ["failed", "failed", "failed"]  # skips count as failures
    assert "opting out" in all_text(r)


@needs_root
def test_forging_through_files_found_in_proc_scores_zero(course, grade_course, public_tmp):
    """Every file named on any process's command line (the checker's config, the grader's
    folders) and every JSON file below them: none is reachable from the worker."""
    sub = stubs(course, public_tmp / "scan", extra_init="SCAN_PROC = True\n" + FORGE + REPORT)
    r = grade_course(sub)
    assert_all_failed(r)
    assert findings(r) == {"argv": [], "proc": []}


CALLBACK_COURSE = {
    "pyproject.toml": PYPROJECT,
    "minimem/__init__.py": src("""
        def apply(f, x):
            # Exercise 1.1 (1 pt): call f on x.
            <B>
            y = f(x)
            <E>
            return y
        """),
    "tests/test_callback.py": src("""
        import pytest
        from minimem import apply


        @pytest.mark.exercise("1.1", points=1)
        def test_apply_calls_back():
            def check(v):
                assert v == 3, "the callback got the wrong value"
                return v + 1
            assert apply(check, 3) == 4
        """),
}


def test_an_assertion_the_students_code_swallows_still_fails(tmp_path, public_tmp):
    """The test hands a callback that asserts; the student's code calls it wrongly, catches
    the AssertionError and returns what the test expects."""
    root = tmp_path / "callbacks"
    for rel, text in CALLBACK_COURSE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    tests = collect_exercise_tests(root)
    assert scores(grade(root, root=root, collected=tests, timeout=20)) == {"1.1": 1}
    sub = public_tmp / "swallow" / "minimem"
    sub.mkdir(parents=True)
    (sub / "__init__.py").write_text(
        "def apply(f, x):\n    try:\n        f(999)\n    except Exception:\n        pass\n"
        "    return 4\n")
    r = grade(sub.parent, root=root, collected=tests, timeout=20)
    assert scores(r) == {"1.1": 0}
    assert "inside a callback" in r.exercises[0].first_failure


# --------------------------------------------------------------------- hijacking Python
HIJACKS = {
    "sitecustomize": {"sitecustomize.py": PASS_ALL + "_pass_all()\n",
                      "usercustomize.py": PASS_ALL + "_pass_all()\n"},
    "fake_pytest": {"pytest/__init__.py": """
        import importlib.util, os, sys
        HERE = os.path.dirname(os.path.abspath(__file__))
        for p in sys.path:
            cand = os.path.join(p or ".", "pytest", "__init__.py")
            if os.path.dirname(os.path.abspath(cand)) != HERE and os.path.isfile(cand):
                break
        spec = importlib.util.spec_from_file_location(
            "pytest", cand, submodule_search_locations=[os.path.dirname(cand)])
        real = importlib.util.module_from_spec(spec)
        sys.modules["pytest"] = real
        spec.loader.exec_module(real)
        globals().update(real.__dict__)
        """ + PASS_ALL + "_pass_all()\n",
        "pytest/__main__.py": "from pytest import main\nmain()\n"},
    "entry_point_plugin": {
        "evil-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n",
        "evil-1.0.dist-info/entry_points.txt": "[pytest11]\nevil = evil_plugin\n",
        "evil-1.0.dist-info/RECORD": "",
        "evil_plugin.py": PASS_ALL + "_pass_all()\n"},
}


@pytest.mark.parametrize("how", sorted(HIJACKS))
def test_files_next_to_the_package_never_run(course, grade_course, public_tmp, how):
    """sitecustomize.py, a fake pytest package, an entry-point plugin: the old grader put the
    submission first on PYTHONPATH of its own pytest process."""
    r = grade_course(stubs(course, public_tmp / how, files=HIJACKS[how]))
    assert_all_failed(r)


@needs_root
def test_package_path_pointing_at_the_instructors_package_scores_zero(course, grade_course,
                                                                       public_tmp):
    """``__path__`` set to the instructor's ``minimem/`` (the old import guard checked only
    ``__file__``), and the instructor's checkout put first on sys.path."""
    init = (f"import sys\n__path__[:] = [{str(course / 'minimem')!r}]\n"
            f"sys.path.insert(0, {str(course)!r})\n"
            "from .ops import Acc, double, square\n\ndef gpu_available():\n    return True\n")
    r = grade_course(variant(course, public_tmp / "path", init=init))
    assert_all_failed(r)


# --------------------------------------------------------------------- tampering at import
def tamper_code(course, marker):
    """At import: read the hidden tests and the solutions, rewrite the instructor's files,
    plant a .pth in every site folder, probe the grader's own files."""
    targets = sorted(str(p) for p in course.rglob("*.py")) + [str(course / "pyproject.toml")]
    grading = os.path.dirname(sandbox.__file__)
    return f"""
import glob, os
FINDINGS = {{"read": [], "wrote": [], "pth": [], "writable": []}}
for path in {targets!r}:
    try:
        text = open(path).read()
        FINDINGS["read"].append(path + ": " + text[:400])
    except OSError:
        pass
    try:
        with open(path, "w") as f:
            f.write("import pytest\\n@pytest.mark.exercise('1.1', points=1)\\ndef test_x():\\n"
                    "    pass\\n")
        FINDINGS["wrote"].append(path)
    except OSError:
        pass
for site in {site_dirs()!r}:
    path = os.path.join(site, "{marker}.pth")
    try:
        with open(path, "w") as f:
            f.write("# harmless\\n")
        FINDINGS["pth"].append(path)
    except OSError:
        pass
for path in glob.glob({grading!r} + "/*.py") + {[sys.executable]!r} + glob.glob(
        "/tmp/minimem-grade-*/**", recursive=True):
    if os.access(path, os.W_OK):
        FINDINGS["writable"].append(path)
""" + REPORT


@needs_root
def test_tampering_at_import_changes_nothing_and_reads_nothing(course, grade_course,
                                                               public_tmp):
    marker = f"zz_minimem_grading_test_{os.getpid()}"
    before = tree_digest(course)
    r = grade_course(stubs(course, public_tmp / "tamper",
                           extra_init=tamper_code(course, marker)))
    planted = [os.path.join(s, f"{marker}.pth") for s in site_dirs()]
    for p in planted:  # clean up before asserting, should the isolation have failed
        if os.path.exists(p):
            os.unlink(p)
    assert_all_failed(r)
    assert findings(r) == {"read": [], "wrote": [], "pth": [], "writable": []}
    assert tree_digest(course) == before
    text = all_text(r)
    assert HIDDEN_SECRET not in text and SOLUTION_SECRET not in text
    # the next, innocent submission is graded by untouched tests
    nxt = grade_course(stubs(course, public_tmp / "next"))
    assert scores(nxt) == ZERO and len([t for e in nxt.exercises for t in e.counted]) == 7


# --------------------------------------------------------------------- opting out of tests
def test_skipping_a_test_through_the_conftest_counts_it_as_failed(course, grade_course,
                                                                  public_tmp):
    """The course's conftest asks the package ``gpu_available()`` during collection (as the
    repository's asks ``cupy_available()``): saying no to dodge a failing test. Which tests
    count is decided by the instructor's collection; a skip at grading time is a failure."""
    def edit(text):
        return text.replace("for x in xs:", "for x in (xs if isinstance(xs, list) else []):")
    sub = variant(course, public_tmp / "optout", edit,
                  extra_init="def gpu_available():\n    return False\n")
    r = grade_course(sub)
    assert scores(r) == {"1.1": 1, "1.2": 2, "2.1": 2}  # not 3: the GPU test counts, failed
    gpu = next(t for e in r.exercises for t in e.tests if t.name == "test_total_on_the_gpu")
    assert gpu.outcome.status == "failed" and "skipped while running" in gpu.outcome.line
    static = next(t for e in r.exercises for t in e.tests if t.name == "test_total_gpu_only")
    assert static.outcome.status == "skipped"  # the instructor's own skip does not count


def test_a_hang_while_the_tests_are_collected_is_bounded(course, grade_course, public_tmp):
    """The conftest's call into the package never returns: no test can run, the report is
    complete, and it takes the start-up limit, not the whole budget of every test."""
    sub = stubs(course, public_tmp / "stall",
                extra_init="def gpu_available():\n    while True:\n        pass\n")
    t0 = time.monotonic()
    r = grade_course(sub, timeout=2.0, budget=6.0)
    assert time.monotonic() - t0 < 40
    assert_all_failed(r)
    assert len([t for e in r.exercises for t in e.counted]) == 7


# --------------------------------------------------------------------- the report afterwards
DETACH = """
import json, os, subprocess, sys, time
FINDINGS = globals().get("FINDINGS", {})
FINDINGS["pids"] = []
for _ in range(3):  # orphans in sessions of their own
    p = subprocess.Popen(["sleep", "60"], start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    FINDINGS["pids"].append(p.pid)
r, w = os.pipe()
pid = os.fork()
if pid == 0:  # a daemon: double fork, new session, then rewrite the results after the grader
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        os.close(w)
        for fd in (0, 1, 2):
            os.close(fd)
        time.sleep(1.0)
        forged = {"score": 6, "tests": [], "output": "forged"}
        for _ in range(20):
            try:
                with open(RESULTS, "w") as f:
                    json.dump(forged, f)
            except OSError:
                pass
            time.sleep(0.2)
    os._exit(0)
os.close(w)
os.waitpid(pid, 0)
FINDINGS["pids"].append(int(os.read(r, 32)))
"""


def test_results_cannot_be_changed_after_grading(course, course_tests, public_tmp, tmp_path,
                                                 monkeypatch, capsys):
    results = tmp_path / "results.json"
    sub = stubs(course, public_tmp / "detach",
                extra_init=f"RESULTS = {str(results)!r}\n" + DETACH + REPORT)
    grade_mod = sys.modules["minimem.grading.grade"]
    monkeypatch.setattr(grade_mod, "instructor_root", lambda: course)
    monkeypatch.setattr(grade_mod, "collect", lambda root, tmp, timeout: (course_tests, ""))
    assert main(["grade", str(sub), "--json", str(results), "--timeout", "20"]) == 0
    first = results.read_text()
    js = json.loads(first)
    assert js["score"] == 0 and len(js["tests"]) == 7
    reported = [m for t in js["tests"] for m in re.findall(r"ATTACK (\{[^\n]*?\})", t["output"])]
    pids = json.loads(reported[0])["pids"]
    assert len(pids) == 4
    time.sleep(2.0)  # the daemon would have rewritten the file by now
    assert results.read_text() == first
    for pid in pids:  # every process the submission started is gone
        assert not os.path.exists(f"/proc/{pid}") or not sandbox._alive(pid)
    assert worker_processes() == []
    assert not list(tmp_path.glob(".results.json.*"))  # no temporary file left behind
    capsys.readouterr()


# --------------------------------------------------------------------- honest but noisy
def test_output_at_import_is_graded_normally(course, grade_course, public_tmp):
    """A print() at import once scored an honest copy 0; 400 MB printed at import once left
    no report at all."""
    sub = variant(course, public_tmp / "noisy", extra_init="""
        import sys
        print("hello from the student's package")
        chunk = "x" * (1 << 20)
        for _ in range(200):
            sys.stdout.write(chunk)
        sys.stdout.flush()
        """)
    t0 = time.monotonic()
    r = grade_course(sub)
    assert scores(r) == FULL, all_text(r)[-2000:]
    assert time.monotonic() - t0 < 60


MALFORMED = """
import os, socket, stat, struct
from . import ops as _ops

def _sockets():
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                yield int(name)
        except OSError:
            pass

def _garbage(x):
    for fd in _sockets():
        if x > 0:
            os.write(fd, b"\\xff" * 64)                     # a frame of 4 GiB of JSON
        else:
            body = b'{"q": 12345, "ok": 1}'                  # well formed, out of order
            os.write(fd, struct.pack("!II", len(body), 0) + body)
    return 2 * x

_ops.double = _garbage
"""


def test_malformed_worker_output_fails_that_test_only(course, grade_course, public_tmp):
    r = grade_course(variant(course, public_tmp / "garbage", extra_init=MALFORMED))
    assert scores(r) == {"1.1": 0, "1.2": 2, "2.1": 3}
    e11 = next(e for e in r.exercises if e.id == "1.1")
    assert all("malformed" in t.outcome.line or "out of order" in t.outcome.line
               for t in e11.tests), [t.outcome.line for t in e11.tests]


def test_budget_bounds_the_whole_submission(course, grade_course, public_tmp):
    sub = stubs(course, public_tmp / "slow", extra_init="""
        import time
        from . import ops as _ops
        def _forever(*args):
            while True:
                try:
                    time.sleep(0.05)
                except BaseException:
                    pass
        _ops.double = _ops.square = _forever
        _ops.Acc.total = lambda self, xs: _forever()
        """)
    t0 = time.monotonic()
    r = grade_course(sub, timeout=1.0, budget=3.0)
    assert time.monotonic() - t0 < 30
    assert r.score == 0
    lines = [t.outcome.line for e in r.exercises for t in e.counted]
    assert any("time budget of 3 s" in ln for ln in lines)
    assert any("time limit" in ln for ln in lines)


def test_options_are_validated(capsys):
    for args, option in ((["--timeout", "inf"], "--timeout"), (["--timeout", "0"], "--timeout"),
                         (["--timeout", "nan"], "--timeout"), (["--budget", "-5"], "--budget"),
                         (["--budget", "soon"], "--budget"), (["--exercises", "1.x"],
                                                               "--exercises")):
        with pytest.raises(SystemExit) as info:
            main(["grade", ".", *args])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {option}: expected" in err and f"got '{args[1]}'" in err
    from minimem.grading import grade

    for kw, match in (({"timeout": float("inf")}, "--timeout: expected a finite"),
                      ({"budget": 0}, "--budget: expected a finite"),
                      ({"exercises": ["one"]}, "--exercises: expected exercise ids")):
        with pytest.raises(ValueError, match=match):
            grade(".", **kw)


# --------------------------------------------------------------------- many submissions
@needs_root
def test_a_hostile_submission_cannot_change_the_next_ones_score(course, course_tests,
                                                                public_tmp):
    marker = f"zz_minimem_grading_many_{os.getpid()}"
    folder = public_tmp / "all"
    folder.mkdir()
    folder.chmod(0o755)
    stubs(course, folder / "a_hostile",
          extra_init=tamper_code(course, marker).replace(REPORT, "") + DETACH.replace(
              "RESULTS", repr(str(folder / "c_honest" / "minimem" / "ops.py"))) + REPORT)
    stubs(course, folder / "b_stubs")
    variant(course, folder / "c_honest", extra_init="print('hello')\n")
    before = tree_digest(course)
    reports = grade_many(folder, root=course, collected=course_tests, timeout=20)
    for s in site_dirs():
        p = os.path.join(s, f"{marker}.pth")
        if os.path.exists(p):
            os.unlink(p)
    assert [r.student.name for r in reports] == ["a_hostile", "b_stubs", "c_honest"]
    assert [scores(r) for r in reports] == [ZERO, ZERO, FULL]
    assert findings(reports[0])["read"] == [] and findings(reports[0])["wrote"] == []
    assert tree_digest(course) == before
    time.sleep(1.5)  # the hostile daemon is gone: it cannot touch the others' files either
    assert worker_processes() == []
    assert "forged" not in (folder / "c_honest" / "minimem" / "ops.py").read_text()
