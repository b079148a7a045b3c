"""The pieces of the grader's isolation on their own: the worker's view of the file system,
the permission lock (Docker without mount namespaces), the submission copy, and the wire
format's refusal of anything that is not plain data."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minimem.grading import grade, sandbox
from minimem.grading.repo import package_root
from minimem.grading.runner import python_dirs, site_dirs
from minimem.grading.wire import Codec, Reader, WireError, send

ROOT = os.geteuid() == 0
REPO = package_root()
ONE_TEST = {"nodeid": "tests/x.py::t", "exercise": "0.1", "points": 1, "file": "tests/x.py",
            "name": "t", "doc": "", "skip": None}


@pytest.mark.skipif(not (ROOT and sandbox.namespaces_available()),
                    reason="needs root and mount namespaces")
def test_the_workers_view_hides_the_checkout_and_keeps_python(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    uid, lock = sandbox.reserve_uid()
    sandbox.chown_tree(str(scratch), uid, uid)
    spec = {"mode": "namespace", "uid": uid, "gid": uid, "hide": [str(REPO)],
            "keep": python_dirs() + [str(scratch)], "writable": [str(scratch)],
            "rlimits": {"NPROC": 64, "CORE": 0}}
    hidden = [d for d in python_dirs() if sandbox.traversable(d, uid, uid)]
    spec["hide"] += [sandbox.traversable(d, uid, uid) for d in hidden]
    probe = f"""
import json, os, sys
def ok(f):
    try:
        f()
        return True
    except OSError:
        return False
site = {site_dirs()[0]!r}
print(json.dumps({{
    "uid": os.getuid(), "listing": sorted(os.listdir({str(REPO)!r})),
    "read_readme": ok(lambda: open({str(REPO / 'README.md')!r}).read()),
    "write_site": ok(lambda: open(os.path.join(site, "zz_probe.pth"), "w").close()),
    "write_scratch": ok(lambda: open({str(scratch / 'f')!r}, "w").close()),
    "tmp": sorted(os.listdir("/tmp")),
}}))
"""
    res = subprocess.run([sys.executable, "-I", "-S", "-c", probe], check=False,
                         capture_output=True, text=True, timeout=60, cwd="/",
                         preexec_fn=sandbox.worker_preexec(spec))
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout)
    assert seen["uid"] == uid
    kept = {os.path.relpath(d, REPO).split("/")[0] for d in python_dirs()
            if sandbox.under(d, str(REPO))}
    assert set(seen["listing"]) == kept  # the checkout is empty but for its Python env
    assert not seen["read_readme"] and not seen["write_site"] and seen["write_scratch"]
    if sandbox.under(str(scratch), "/tmp"):
        # a private /tmp: nothing but the ways to what is kept (the scratch folder, and Python
        # when the checkout itself lives under /tmp, as a fresh clone there does)
        ways = {os.path.relpath(d, "/tmp").split("/")[0] for d in spec["keep"]
                if sandbox.under(d, "/tmp")}
        assert set(seen["tmp"]) == ways
    assert sandbox.kill_uid(uid)
    sandbox.release_uid(lock)


def test_lock_leaves_only_the_way_to_python(tmp_path):
    root = tmp_path / "course"
    for d in ("minimem", "tests/hidden", ".venv/lib"):
        (root / d).mkdir(parents=True)
    (root / "README.md").write_text("x")
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    saved = sandbox.lock([str(root)], [str(root / ".venv")], gid=-1)
    mode = {p.name: p.stat().st_mode & 0o777 for p in [root, *root.iterdir()]}
    try:
        assert mode == {"course": 0o751, "minimem": 0o750, "tests": 0o750, ".venv": 0o755,
                        "README.md": 0o640}
    finally:
        sandbox.unlock(saved)
    assert {p.name: p.stat().st_mode & 0o777 for p in [root, *root.iterdir()]} == {
        "course": 0o755, "minimem": 0o755, "tests": 0o755, ".venv": 0o755, "README.md": 0o644}


@pytest.mark.skipif(not ROOT, reason="needs root")
def test_permissions_mode_refuses_a_python_the_worker_cannot_read(tmp_path):
    uid, lock = sandbox.reserve_uid()
    sandbox.release_uid(lock)
    if all(sandbox.traversable(d, uid, uid) is None for d in python_dirs()):
        pytest.skip("this Python is readable by other users")
    (tmp_path / "minimem").mkdir()
    (tmp_path / "minimem" / "__init__.py").write_text("")
    with pytest.raises(RuntimeError, match="cannot reach Python at .* is closed to other users"):
        grade(tmp_path, isolation="permissions", collected=[ONE_TEST])


def test_isolation_modes_are_checked():
    with pytest.raises(ValueError, match="isolation must be one of auto, namespace"):
        sandbox.choose_mode("chroot")
    if not ROOT:
        with pytest.raises(ValueError, match="needs the grader to run as root"):
            sandbox.choose_mode("namespace")
    assert sandbox.choose_mode("none") == "none"


def test_the_copy_leaves_out_links(tmp_path):
    src = tmp_path / "sub" / "minimem"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("x = 1\n")
    secret = tmp_path / "instructor_solution.py"
    secret.write_text("the solution\n")
    os.symlink(secret, src / "linked.py")
    os.link(secret, src / "hardlinked.py")
    os.symlink(tmp_path, src / "folder")
    left = sandbox.copy_package(str(src), str(tmp_path / "copy"))
    assert sorted(left) == ["./folder", "./hardlinked.py", "./linked.py"]
    assert sorted(os.listdir(tmp_path / "copy")) == ["__init__.py"]


def test_a_symlinked_package_is_not_graded(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "__init__.py").write_text("")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "minimem").symlink_to(tmp_path / "real")
    r = grade(sub, collected=[ONE_TEST])
    assert all("symbolic link" in t.outcome.line for e in r.exercises for t in e.tests)


# --------------------------------------------------------------------- the wire format
def roundtrip(x):
    c = Codec()
    v, bufs = c.encode(x)
    return c.decode(json.loads(json.dumps(v)), [bytearray(memoryview(b).cast("B")) for b in bufs])


def test_plain_values_survive_the_wire():
    x = {"a": [1, 2.5, float("nan"), None, True], ("t", 1): (np.arange(6.0).reshape(2, 3),),
         "z": 1 + 2j, "s": np.float32(1.5), "e": np.array(3), "b": b"\x00\xff",
         "sl": slice(1, None, 2), "dt": np.dtype("int16"), "ty": np.float64, "set": {1, 2},
         "empty": np.zeros((0, 3), dtype=bool)}
    y = roundtrip(x)
    assert y["a"][:2] == [1, 2.5] and np.isnan(y["a"][2]) and y["a"][3:] == [None, True]
    assert y[("t", 1)][0].shape == (2, 3) and y["e"].shape == () and y["e"] == 3
    assert type(y["s"]) is np.float32 and y["z"] == 1 + 2j and y["b"] == b"\x00\xff"
    assert y["sl"] == slice(1, None, 2) and y["dt"] == np.int16 and y["ty"] is np.float64
    assert y["set"] == {1, 2} and y["empty"].shape == (0, 3) and y["empty"].dtype == bool
    with pytest.raises(TypeError, match="cannot send"):
        Codec().encode(np.array([object()]))


@pytest.mark.parametrize("obj, bufs, match", [
    ({"a": 0, "y": "|O", "s": [1]}, [bytearray(8)], "not plain data"),
    ({"a": 0, "y": "f8,i4", "s": [1]}, [bytearray(12)], "not plain data"),
    ({"a": 0, "y": "<f8", "s": [3]}, [bytearray(8)], "does not fill"),
    ({"a": 5, "y": "<f8", "s": [1]}, [], "out of range"),
    ({"pickle": "gASV"}, [], "unknown tag"),
    ({"f": "1e5"}, [], "not a float"),
])
def test_the_wire_refuses_what_is_not_plain_data(obj, bufs, match):
    with pytest.raises(WireError, match=match):
        Codec().decode(obj, bufs)


def test_the_reader_refuses_oversized_and_broken_frames():
    import socket

    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"\xff" * 8)
        with pytest.raises(WireError, match="over the limit"):
            Reader(b).recv(1 << 20)
    a, b = socket.socketpair()
    with a, b:
        send(a, {"q": 1, "ok": [1, 2]}, [np.zeros(3)])
        assert Reader(b).recv(1 << 20)[0] == {"q": 1, "ok": [1, 2]}
        a.sendall(b"\x00\x00\x00\x02\x00\x00\x00\x00{]")
        with pytest.raises(WireError, match="not valid JSON"):
            Reader(b).recv(1 << 20)
