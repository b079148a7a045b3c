"""The worker of ``minimem grade``: the only process that runs student code.

Standalone (the standard library and NumPy; then the student's ``minimem``). The grader copies
this file and ``wire.py`` into the submission's scratch folder and starts::

    python -I -S worker.py SOCKET_FD SYS_PATH_JSON

as an unprivileged user where it can (see ``sandbox.py``). The worker imports the student's
``minimem``, says whether that worked, and then answers requests from the checker on the
socket: import a module, get or set an attribute, call, apply an operator, ... on objects it
keeps in a table and names by handles. Results go back as plain data (``wire.py``) or as
handles. Objects of the checker's (the instructor's tests) come as handles the worker may only
*call*: the checker runs them and answers.

The first process (the *zygote*) serves only the collection of the tests; then the checker
asks it to ``fork`` a child that serves the tests on a socket of its own. Between two tests
the child is ``retarget``-ed: its output goes to a new pipe (each test's output is its own) and
its objects of the last test are dropped. After a test that timed out, crashed or sent
garbage, the child is killed and the next test gets a fresh fork. Everything here is
untrusted: the checker believes nothing it receives beyond its being well-formed data.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import operator
import os
import signal
import socket
import sys
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_MESSAGE = 1 << 30

OPERATORS = {name: getattr(operator, name) for name in (
    "add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "pow", "lshift", "rshift",
    "and_", "or_", "xor", "iadd", "isub", "imul", "imatmul", "itruediv", "ifloordiv", "imod",
    "ipow", "ilshift", "irshift", "iand", "ior", "ixor", "neg", "pos", "abs", "invert",
    "getitem", "setitem", "delitem")}
OPERATORS["divmod"] = divmod
OPERATORS["round"] = round


def _set_path(argv):
    """The submission first, then the standard library (``-S`` left only that), then the
    site folders of the grader's Python."""
    paths = [p for p in json.loads(argv[2]) if isinstance(p, str)]
    sys.path[:] = paths[:1] + [p for p in sys.path if p] + paths[1:]


if __name__ == "__main__":
    _set_path(sys.argv)


def _load_wire():
    spec = importlib.util.spec_from_file_location("_minimem_grade_wire",
                                                  os.path.join(HERE, "wire.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


wire = _load_wire()
import numpy as np


class GraderObject:
    """An object of the checker's: the worker may call it, nothing else."""

    __slots__ = ("__weakref__", "_mm_hid")

    def __init__(self, hid):
        object.__setattr__(self, "_mm_hid", hid)

    def __call__(self, *args, **kwargs):
        return SERVER.call_grader(self._mm_hid, args, kwargs)

    def __repr__(self):
        return f"<grader object {self._mm_hid}>"


def _method_stub(grader_fn, name):
    def method(self, *args, **kwargs):
        return grader_fn(self, *args, **kwargs)
    method.__name__ = name
    return method


class Server(wire.Codec):
    def __init__(self, sock, gen):
        self.sock, self.gen = sock, gen
        self.reader = wire.Reader(sock, fds=True)
        self.table: dict[tuple, object] = {}
        self.ids: dict[int, tuple] = {}
        self.grader_objects: dict[int, GraderObject] = {}
        self.counter = 0
        self.seq = 0
        self.rngs = None

    # -- values -------------------------------------------------------------------------
    def handle(self, obj) -> list:
        h = self.ids.get(id(obj))
        if h is None:
            self.counter += 1
            h = (self.gen, self.counter)
            self.table[h] = obj
            self.ids[id(obj)] = h
        return list(h)

    def encode_other(self, x, bufs, depth):
        if isinstance(x, GraderObject):
            return {"h": x._mm_hid}
        if isinstance(x, types.ModuleType):
            return {"m": x.__name__}
        tag = {"r": self.handle(x)}
        tcid = getattr(type(x), "_mm_tcid", None)
        if type(tcid) is int:
            tag["c"] = tcid
        return tag

    def decode_tag(self, tag, x, bufs, depth):
        v = x[tag]
        if tag == "r":
            try:
                return self.table[tuple(v)]
            except (KeyError, TypeError):
                raise LookupError("grading: a remote object of an earlier test was used "
                                  "(each test runs in a fresh process)") from None
        if tag == "h":
            g = self.grader_objects.get(v)
            if g is None:
                g = self.grader_objects[v] = GraderObject(v)
            return g
        if tag == "m":
            return importlib.import_module(v)
        if tag == "rng":  # a copy of the test's Generator (one per message and generator)
            if self.rngs is not None and v in self.rngs:
                return self.rngs[v]
            bitgen = getattr(np.random, x["bg"])()
            bitgen.state = self.decode(x["st"], bufs)
            g = np.random.Generator(bitgen)
            if self.rngs is not None:
                self.rngs[v] = g
            return g
        raise wire.WireError(f"unknown tag {tag!r}")

    # -- requests from the checker ---------------------------------------------------------
    def args(self, msg, bufs):
        v = self.decode(msg.get("v", [[], {"d": []}]), bufs)
        if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], list)
                and isinstance(v[1], dict)):
            raise ValueError("grading: a request without its arguments")
        return v[0], v[1]

    def do(self, op, msg, bufs):
        a, k = self.args(msg, bufs)
        if op == "import":
            return importlib.import_module(a[0])
        if op == "mattr":
            return getattr(importlib.import_module(a[0]), a[1])
        if op == "getattr":
            return getattr(a[0], a[1])
        if op == "setattr":
            setattr(a[0], a[1], a[2])
            return None
        if op == "delattr":
            delattr(a[0], a[1])
            return None
        if op == "call":
            return a[0](*a[1:], **k)
        if op == "op":
            return OPERATORS[a[0]](*a[1:])
        if op == "len":
            return len(a[0])
        if op == "iter":
            return iter(a[0])
        if op == "next":
            return next(a[0])
        if op == "repr":
            return repr(a[0])
        if op == "str":
            return str(a[0])
        if op == "format":
            return format(a[0], a[1])
        if op == "dir":
            return [str(n) for n in dir(a[0])]
        if op in ("float", "int", "index", "complex"):
            return {"float": float, "int": int, "index": operator.index,
                    "complex": complex}[op](a[0])
        if op == "isinstance":
            return isinstance(a[1], a[0])
        if op == "issubclass":
            return issubclass(a[1], a[0])
        if op == "array":
            x = a[0]
            if hasattr(x, "get") and hasattr(x, "__cuda_array_interface__"):
                x = x.get()
            return np.asarray(x) if a[1] is None else np.asarray(x, dtype=a[1])
        if op == "enter":
            return type(a[0]).__enter__(a[0])
        if op == "exit":
            type(a[0]).__exit__(a[0], None, None, None)
            return None
        if op == "mkclass":
            name, base, methods, attrs, tcid = a
            ns = {m: _method_stub(fn, m) for m, fn in methods.items()}
            ns.update(attrs)
            ns["_mm_tcid"] = tcid
            ns["__module__"] = "grading_tests"
            return type(base)(name, (base,), ns)
        if op == "super":
            cls, obj, name = a[0], a[1], a[2]
            return getattr(super(cls, obj), name)(*a[3:], **k)
        if op == "ping":
            return None
        raise ValueError(f"unknown request {op!r}")

    def reply(self, seq, value=None, error=None):
        if error is None:
            try:
                out, bufs = self.encode(value)
                msg = {"q": seq, "ok": out}
            except BaseException as e:  # noqa: BLE001 (an unsendable result is an error)
                msg, bufs = {"q": seq, "err": wire.error_info(e, self)}, []
        else:
            msg, bufs = {"q": seq, "err": error}, []
        wire.send(self.sock, msg, bufs)

    def dispatch(self, msg, bufs):
        seq = msg.get("q")
        for h in msg.get("rel", ()):
            obj = self.table.pop(tuple(h), None) if isinstance(h, list) else None
            if obj is not None:
                self.ids.pop(id(obj), None)
        saved, self.rngs = self.rngs, {}
        try:
            value = self.do(msg.get("op"), msg, bufs)
        except BaseException as e:  # noqa: BLE001 (everything goes back to the checker)
            _flush()
            self.reply(seq, error=wire.error_info(e, self, traceback.format_exc(limit=30)))
        else:
            _flush()
            self.reply(seq, value)
        finally:
            self.rngs = saved

    def call_grader(self, hid, args, kwargs):
        """Ask the checker to run one of its objects; serve its requests meanwhile."""
        self.seq += 1
        seq = -self.seq  # the worker's requests have negative numbers
        v, bufs = self.encode([list(args), dict(kwargs)])
        wire.send(self.sock, {"q": seq, "op": "call", "h": hid, "v": v}, bufs)
        while True:
            reply, rbufs, _ = self.reader.recv(MAX_MESSAGE)
            if "op" in reply:
                self.dispatch(reply, rbufs)
                continue
            if reply.get("q") != seq:
                raise RuntimeError("grading: an answer out of order")
            if "err" in reply:
                err = reply["err"] if isinstance(reply["err"], dict) else {}
                raise GraderError(f"{err.get('t', 'Error')}: {err.get('m', '')}")
            return self.decode(reply.get("ok"), rbufs)

    # -- the loop ---------------------------------------------------------------------------
    def serve(self):
        while True:
            try:
                msg, bufs, fds = self.reader.recv(MAX_MESSAGE)
            except wire.Closed:
                os._exit(0)
            if msg.get("op") == "fork":
                self.fork(msg, fds)
                continue
            if msg.get("op") == "retarget":
                self.retarget(msg, fds)
                continue
            for fd in fds:
                os.close(fd)
            self.dispatch(msg, bufs)

    def retarget(self, msg, fds):
        """Between two tests: output to a new pipe, and the next test's handles."""
        if len(fds) != 1 or type(msg.get("gen")) is not int:
            for fd in fds:
                os.close(fd)
            self.reply(msg.get("q"), error={"t": "ValueError", "mro": [], "m": "bad retarget"})
            return
        _flush()
        os.dup2(fds[0], 1)
        os.dup2(fds[0], 2)
        os.close(fds[0])
        self.gen, self.counter = msg["gen"], 0
        self.table = {h: o for h, o in self.table.items() if h[0] == 0}  # the zygote's stay
        self.ids = {id(o): h for h, o in self.table.items()}
        self.grader_objects = {}
        self.reply(msg.get("q"), None)

    def fork(self, msg, fds):
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self.reply(msg.get("q"), error={"t": "ValueError", "mro": [], "m": "fork needs 2 fds"})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            for fd in fds:
                os.close(fd)
            self.reply(msg.get("q"), pid)
            return
        # the child: one test, its own socket, output pipe and process group
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sock_fd, out_fd = fds
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        self.sock.close()
        self.sock = socket.socket(fileno=sock_fd)
        self.reader = wire.Reader(self.sock, fds=True)
        self.gen = int(msg.get("gen", 1))
        self.counter = 0
        self.serve()


def _flush():
    """The student's output reaches the test's report before the answer does."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # a closed or replaced stream
            stream.flush()


class GraderError(Exception):
    """An object of the grader raised (its message says what)."""


SERVER: Server | None = None


def main(argv):
    global SERVER
    fd = int(argv[1])
    for stream in (sys.stdout, sys.stderr):  # a test that hangs still shows what it printed
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    sys.argv = ["minimem-grade-worker"]
    sock = socket.socket(fileno=fd)
    SERVER = Server(sock, 0)
    ok, error = True, None
    try:
        importlib.import_module("minimem")
    except BaseException as e:  # noqa: BLE001 (whatever happens, the checker is told)
        ok = False
        error = "".join(traceback.format_exception(e, limit=30))[-8000:]
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the zygote's children reap themselves
    wire.send(sock, {"ready": ok, "error": error})
    SERVER.serve()


if __name__ == "__main__":
    main(sys.argv)
