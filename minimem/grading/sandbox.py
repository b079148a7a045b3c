"""Isolation of the grader's worker process (Linux). Standalone: the standard library only.

Three modes (``isolation=`` of :func:`minimem.grading.grade`):

``namespace`` (the grader runs as root and may create mount namespaces)
    The worker runs as a dedicated unprivileged uid (one with no account and no process, picked
    per run) in a mount namespace of its own where the instructor's checkout, the submission's
    original folder and every directory it could not traverse anyway are covered by empty
    read-only tmpfs mounts, with only the Python installation and the scratch folder bound back;
    ``/tmp``, ``/var/tmp`` and ``/dev/shm`` are private tmpfs mounts; the network namespace is
    empty (no network) when the kernel allows it.
``permissions`` (root, no mount namespaces, e.g. a Docker container without CAP_SYS_ADMIN)
    The same uid; the instructor's checkout and the submission's folder lose their
    permissions for "other" while the worker runs (restored afterwards), except the path to the
    Python environment when it lives inside them.
``none`` (the grader is not root)
    The worker runs as you: it cannot forge a verdict (the verdict is never decided in it) but
    it can read and write whatever you can.

In every mode the worker gets resource limits (CPU seconds, data segment, file size, core
dumps; processes for the dedicated uid), its own session, and is killed with all its
descendants at the end (every process of the uid in the first two modes).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import stat
import time

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
MS_PRIVATE = 1 << 18
O_PATH = getattr(os, "O_PATH", 0o10000000)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36
UID_RANGE = range(64200, 64400)
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")
MODES = ("auto", "namespace", "permissions", "none")

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option, value) -> bool:
    try:
        return libc().prctl(option, ctypes.c_ulong(value), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# -------------------------------------------------------------------------- which mode
_NS_OK = None


def namespaces_available() -> bool:
    """Whether this (root) process may create a mount namespace (probed once, in a child)."""
    global _NS_OK
    if _NS_OK is None:
        if os.geteuid() != 0 or not os.path.isdir("/proc/self"):
            _NS_OK = False
        else:
            pid = os.fork()
            if pid == 0:
                ok = libc().unshare(CLONE_NEWNS) == 0 and libc().mount(
                    None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) == 0
                os._exit(0 if ok else 1)
            _NS_OK = os.waitpid(pid, 0)[1] == 0
    return _NS_OK


def choose_mode(requested: str = "auto") -> str:
    if requested not in MODES:
        raise ValueError(f"grade: isolation must be one of {', '.join(MODES)}, got {requested!r}")
    root = os.geteuid() == 0 and os.path.isdir("/proc/self")
    if requested == "auto":
        if not root:
            return "none"
        return "namespace" if namespaces_available() else "permissions"
    if requested != "none" and not root:
        raise ValueError(f"grade: isolation {requested!r} needs the grader to run as root "
                         f"(Linux); you are uid {os.geteuid()}")
    if requested == "namespace" and not namespaces_available():
        raise ValueError("grade: isolation 'namespace' is not available here (no permission "
                         "to create mount namespaces); use 'permissions'")
    return requested


# -------------------------------------------------------------------------- processes
def _alive(pid) -> bool:
    """Not a zombie (a dead process waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2:data.rindex(b")") + 3] != b"Z"
    except (OSError, ValueError):
        return False


def processes_of(uid: int) -> list[int]:
    """The live processes of ``uid``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{name}")
        except OSError:
            continue
        if st.st_uid == uid and _alive(name):
            out.append(int(name))
    return out


def reserve_uid() -> tuple[int, int]:
    """A uid with no account and no running process for one grading run, and the file
    descriptor of the lock that reserves it (close it with :func:`release_uid`): two graders
    on one machine never share a worker uid, so neither kills the other's workers."""
    import fcntl
    import pwd
    import random

    busy = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                busy.add(os.stat(f"/proc/{name}").st_uid)
            except OSError:
                pass
    folder = "/run" if os.access("/run", os.W_OK) else "/tmp"
    uids = list(UID_RANGE)
    random.shuffle(uids)
    for uid in uids:
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        if uid in busy:
            continue
        fd = os.open(os.path.join(folder, f"minimem-grade-uid-{uid}.lock"),
                     os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if processes_of(uid):
            os.close(fd)
            continue
        return uid, fd
    raise RuntimeError(f"grade: no free uid for the worker in {UID_RANGE.start}-"
                       f"{UID_RANGE.stop - 1}")


def release_uid(fd) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def kill_uid(uid: int, rounds: int = 50) -> bool:
    """SIGKILL every process of ``uid`` (from a helper that runs as that uid, so nothing else
    can be hit); True when none is left."""
    for _ in range(rounds):
        if not processes_of(uid):
            return True
        pid = os.fork()
        if pid == 0:
            with contextlib.suppress(BaseException):
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.02)
    return not processes_of(uid)


def _ppids() -> dict[int, int]:
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            out[int(name)] = int(data[data.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    parent = _ppids()
    kids: dict[int, list[int]] = {}
    for p, pp in parent.items():
        kids.setdefault(pp, []).append(p)
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def kill_descendants(pid: int, rounds: int = 50) -> bool:
    """SIGKILL every descendant of ``pid`` (a subreaper: orphans come back to it) and reap."""
    for _ in range(rounds):
        found = [p for p in descendants(pid) if _alive(p)]
        for p in found:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        if pid == os.getpid():
            while True:
                try:
                    got, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if got == 0:
                    break
        if not found:
            return True
        time.sleep(0.02)
    return not [p for p in descendants(pid) if _alive(p)]


def is_worker_process(pid: int, uid: int | None, ancestor: int) -> bool:
    """Whether ``pid`` may be signalled: a process of the worker's uid (isolated modes) or a
    descendant of the worker's first process ``ancestor`` (mode ``none``)."""
    try:
        st = os.stat(f"/proc/{pid}")
    except OSError:
        return False
    if uid is not None:
        return st.st_uid == uid
    return pid in descendants(ancestor)


# -------------------------------------------------------------------------- files
def under(path: str, folder: str) -> bool:
    path, folder = os.path.normpath(path), os.path.normpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def outermost(paths) -> list[str]:
    ps = sorted({os.path.normpath(p) for p in paths}, key=lambda p: (p.count("/"), p))
    out: list[str] = []
    for p in ps:
        if not any(under(p, q) for q in out):
            out.append(p)
    return out


def traversable(path: str, uid: int, gid: int) -> str | None:
    """The first folder on the way to ``path`` that ``uid`` cannot enter, or None."""
    parts = os.path.normpath(os.path.abspath(path)).split("/")
    for i in range(1, len(parts)):
        d = "/" + "/".join(p for p in parts[1:i] if p)
        try:
            st = os.stat(d)
        except OSError:
            return d
        bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid \
            else stat.S_IXOTH
        if not st.st_mode & bit:
            return d
    return None


def copy_package(src: str, dst: str, max_files: int = 20000, max_bytes: int = 512 << 20):
    """Copy the submitted package: regular files (not hard-linked: a hard link could be an
    instructor's file) and folders, never a symbolic link, with their modification times (so
    that the package's own Numba cache in ``__pycache__`` stays valid). Returns the names
    left out."""
    left_out, files, total = [], 0, 0
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel = os.path.relpath(dirpath, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        keep = []
        for d in dirnames:
            if os.path.islink(os.path.join(dirpath, d)):
                left_out.append(os.path.join(rel, d))
            else:
                keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            full = os.path.join(dirpath, f)
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                left_out.append(os.path.join(rel, f))
                continue
            files += 1
            total += st.st_size
            if files > max_files or total > max_bytes:
                raise ValueError(f"the submission is too large (over {max_files} files or "
                                 f"{max_bytes >> 20} MiB)")
            target = os.path.join(dst, rel, f)
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as fi, open(target, "wb") as fo:
                shutil.copyfileobj(fi, fo)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    return left_out


def chown_tree(path: str, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), uid, gid)


def remove_files_of(uid: int, folders=PRIVATE_TMP) -> None:
    """Remove what ``uid`` left at the top of the shared temporary folders."""
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for n in names:
            p = os.path.join(folder, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if st.st_uid != uid:
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except OSError:
                    pass


# ------------------------------------------------------------- mode "permissions"
def lock(hide, keep, gid: int) -> list[tuple[str, int]]:
    """Take the permissions of "other" (and of group ``gid``) off each folder in ``hide``,
    leaving only the way to the folders in ``keep`` (entered, not listed). Returns what to
    give back to :func:`unlock`."""
    saved: list[tuple[str, int]] = []
    keep = [os.path.normpath(k) for k in keep]

    def strip(path, leave_x):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return
        mask = 0o007 | (0o070 if st.st_gid == gid else 0)
        new = st.st_mode & ~mask
        if leave_x:
            new |= stat.S_IXOTH | (stat.S_IXGRP if st.st_gid == gid else 0)
        new = stat.S_IMODE(new)
        if new != stat.S_IMODE(st.st_mode):
            saved.append((path, stat.S_IMODE(st.st_mode)))
            os.chmod(path, new)

    def walk(folder):
        inner = [k for k in keep if under(k, folder)]
        if not inner:
            strip(folder, False)
            return
        if any(k == folder for k in inner):
            return
        strip(folder, True)
        for name in os.listdir(folder):
            p = os.path.join(folder, name)
            if os.path.islink(p):
                continue
            if any(under(k, p) for k in inner):
                if os.path.isdir(p):
                    walk(p)
            else:
                strip(p, False)

    try:
        for h in outermost(hide):
            if os.path.isdir(h):
                walk(h)
    except BaseException:
        unlock(saved)
        raise
    return saved


def unlock(saved) -> None:
    for path, mode in reversed(saved):
        try:
            os.chmod(path, mode)
        except OSError:
            pass


# ------------------------------------------------------------- the worker's start
def _mount(source, target, fstype, flags, data):
    enc = (lambda s: None if s is None else os.fsencode(s))
    _check(libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags),
                        enc(data)), f"mount {target}")


def apply_view(hide, keep, writable=(), private_tmp=PRIVATE_TMP) -> None:
    """In a fresh mount namespace: cover every folder of ``hide`` with an empty tmpfs and bind
    the folders of ``keep`` inside it back (read-only, except those in ``writable``); give the
    temporary folders fresh tmpfs mounts."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    keep = outermost(keep)
    covers = [(h, "mode=0755,size=256k", False) for h in hide]
    covers += [(t, "mode=1777,size=1g", True) for t in private_tmp if os.path.isdir(t)]
    covers.sort(key=lambda c: c[0].count("/"))
    for folder, opts, scratch_space in covers:
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        if any(k == folder for k in keep):
            continue
        inner = [k for k in keep if under(k, folder)]
        fds = []
        for k in inner:
            try:
                fds.append((k, os.open(k, O_PATH)))
            except OSError:
                continue
        _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, opts)
        for k, fd in fds:
            target = k
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(target, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                open(target, "a").close()
            _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC, None)
            os.close(fd)
            if not any(under(k, w) for w in writable):
                _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
                       | MS_NODEV, None)
        if not scratch_space:
            _mount(None, folder, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_BIND,
                   None)


def worker_preexec(spec: dict):
    """The function ``subprocess`` runs in the worker's process before it starts Python:
    namespaces and mounts (while still root), limits, then the unprivileged uid."""
    import resource

    libc()  # loaded before the fork

    def run():
        try:
            mode, uid = spec["mode"], spec.get("uid")
            if mode == "namespace":
                _check(libc().unshare(CLONE_NEWNS), "unshare(mount namespace)")
                if spec.get("no_network", True):
                    libc().unshare(CLONE_NEWNET)  # best effort: no network if allowed
                apply_view(spec["hide"], spec["keep"], spec.get("writable", ()))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # too-large files fail, not kill
            limits = dict(spec.get("rlimits", {}))
            if uid is None:
                limits.pop("NPROC", None)  # counts every process of your user
            for name, value in limits.items():
                res = getattr(resource, f"RLIMIT_{name}", None)
                if res is None:
                    continue
                try:
                    hard = resource.getrlimit(res)[1]
                    value = int(value)
                    if hard != resource.RLIM_INFINITY:
                        value = min(value, hard)
                    resource.setrlimit(res, (value, value))
                except (ValueError, OSError):
                    pass
            os.umask(0o077)
            if uid is not None:
                gid = spec["gid"]
                os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
                if os.getuid() != uid or os.geteuid() != uid:
                    os._exit(112)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except BaseException as e:  # noqa: BLE001 (never start the worker half-isolated)
            try:
                os.write(2, f"grader: could not isolate the worker: {e}\n".encode())
            finally:
                os._exit(111)

    return run
