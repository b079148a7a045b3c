"""The wire between the grader's checker (trusted) and the worker that runs student code.

Standalone (the standard library and NumPy only): the checker loads this file by path, the
worker from its copy in the scratch folder, and neither imports ``minimem``.

A message is one frame on a Unix stream socket::

    u32 length of the JSON part | u32 number of buffers | JSON | (u64 length | bytes) * n

The JSON part is a request (``{"q": seq, "op": name, ...}``) or a reply to request ``seq``
(``{"q": seq, "ok": value}`` or ``{"q": seq, "err": {...}}``). Values are *plain data*: JSON,
with one-key objects (tags) for what JSON lacks, and arrays as raw bytes with their dtype and
shape. Nothing is ever unpickled: an array's dtype must be a plain numeric, boolean or string
type (no object, no structured dtype) and its size must match its buffer. What is not plain
travels as a reference that the other side gives meaning to (``Codec.encode_other`` /
``Codec.decode_tag``).

The receiving side bounds everything it reads (bytes per message, buffers, nesting depth), so
a peer that sends garbage or too much produces a :class:`WireError`, never a crash or a
multi-gigabyte allocation.
"""
from __future__ import annotations

import array as _array
import contextlib
import json
import math
import socket
import struct

import numpy as np

HEAD = struct.Struct("!II")
LEN = struct.Struct("!Q")
MAX_JSON = 64 << 20          # bytes of the JSON part of one message
MAX_BUFFERS = 200_000        # arrays in one message
MAX_DEPTH = 64               # nesting of containers
MAX_DIMS = 32
ARRAY_KINDS = "biufcUS"      # bool, ints, floats, complex, str, bytes: no objects, no records
SCALAR_TYPES = {t.__name__: t for t in (float, int, bool, complex, str, bytes)}
SCALAR_TYPES.update({np.dtype(c).type.__name__: np.dtype(c).type
                     for c in "?bhilqBHILQefdgFDG"})


class WireError(Exception):
    """A message that is malformed, oversized or not plain data."""


class Closed(Exception):
    """The peer closed the connection (or the socket broke)."""


# ------------------------------------------------------------------------------- framing
SMALL = 1 << 20  # frames below this size go out in one write


def send(sock: socket.socket, obj, buffers=(), fds=None) -> None:
    """Send one frame; ``fds`` (file descriptors) ride along with its first bytes."""
    data = json.dumps(obj, separators=(",", ":"), allow_nan=True).encode("utf-8")
    parts = [HEAD.pack(len(data), len(buffers)), data]
    for b in buffers:
        mv = memoryview(b).cast("B")
        parts += [LEN.pack(mv.nbytes), mv]
    size = sum(memoryview(p).nbytes for p in parts)
    try:
        if size <= SMALL:
            parts = [b"".join(parts)]
        if fds:
            sock.sendmsg([parts[0]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                       _array.array("i", fds))])
            parts = parts[1:] if size > SMALL else []
            if size <= SMALL:
                return
        for p in parts:
            if memoryview(p).nbytes:
                sock.sendall(p)
    except (BrokenPipeError, ConnectionError, OSError) as e:
        if isinstance(e, (socket.timeout, TimeoutError)):
            raise
        raise Closed(f"the connection broke while sending ({e})") from None


class Reader:
    """Frames from one socket, read in large chunks (one system call per small message)."""

    def __init__(self, sock: socket.socket, fds: bool = False):
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0
        self.fds: list | None = [] if fds else None  # file descriptors received so far

    def _fill(self):
        fds = self.fds
        try:
            if fds is not None:
                data, anc, _, _ = self.sock.recvmsg(1 << 16, socket.CMSG_SPACE(16 * 4))
                for level, kind, payload in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        arr = _array.array("i")
                        arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
                        fds.extend(arr)
            else:
                data = self.sock.recv(1 << 16)
        except (ConnectionError, OSError) as e:
            if isinstance(e, (socket.timeout, TimeoutError)):
                raise
            raise Closed(f"the connection broke ({e})") from None
        if not data:
            raise Closed("the other side closed the connection")
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data

    def take(self, n: int) -> bytearray:
        have = len(self.buf) - self.pos
        if have < n and n - have > SMALL and self.fds is None:  # large: read in place
            out = bytearray(n)
            out[:have] = self.buf[self.pos:]
            self.buf, self.pos = bytearray(), 0
            view, got = memoryview(out), have
            while got < n:
                try:
                    k = self.sock.recv_into(view[got:])
                except (ConnectionError, OSError) as e:
                    if isinstance(e, (socket.timeout, TimeoutError)):
                        raise
                    raise Closed(f"the connection broke ({e})") from None
                if k == 0:
                    raise Closed("the other side closed the connection")
                got += k
            return out
        while len(self.buf) - self.pos < n:
            self._fill()
        out = self.buf[self.pos: self.pos + n]
        self.pos += n
        return out

    def recv(self, max_bytes: int):
        """One frame: ``(obj, buffers, fds)``, the fds being those received with it (for a
        reader made with ``fds=True``). Raises :class:`WireError` or :class:`Closed`."""
        n, nbuf = HEAD.unpack(self.take(HEAD.size))
        if n > MAX_JSON or n > max_bytes:
            raise WireError(f"a message of {n} bytes is over the limit")
        if nbuf > MAX_BUFFERS:
            raise WireError(f"a message with {nbuf} arrays is over the limit of {MAX_BUFFERS}")
        data = self.take(n) if n else bytearray()
        total, buffers = n, []
        for _ in range(nbuf):
            (k,) = LEN.unpack(self.take(LEN.size))
            total += k
            if total > max_bytes:
                raise WireError(f"a message of over {max_bytes} bytes is over the limit")
            buffers.append(self.take(k) if k else bytearray())
        try:
            obj = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError, UnicodeDecodeError) as e:
            raise WireError(f"a message is not valid JSON ({type(e).__name__})") from None
        if not isinstance(obj, dict):
            raise WireError("a message is not a JSON object")
        fds = []
        if self.fds:
            fds, self.fds = self.fds, []
        return obj, buffers, fds


# ------------------------------------------------------------------------------- values
def plain_dtype(dt) -> bool:
    return dt.kind in ARRAY_KINDS and not dt.hasobject and dt.fields is None \
        and dt.subdtype is None


class Codec:
    """Plain values to JSON and buffers and back. Subclasses say what to do with the rest:
    ``encode_other(x)`` returns a tag dict for a value that is not plain, and
    ``decode_tag(tag, value)`` turns a tag this class does not know into a value."""

    # -- encoding (to the peer) -----------------------------------------------------
    def encode(self, x):
        buffers: list = []
        return self._enc(x, buffers, 0), buffers

    def _enc(self, x, bufs, depth):
        if depth > MAX_DEPTH:
            raise TypeError("a value is nested too deeply to send")
        t = type(x)
        if x is None or t is bool or t is str or t is int:
            return x
        if t is float:
            return x if math.isfinite(x) else {"f": repr(x)}
        if t is list:
            return [self._enc(v, bufs, depth + 1) for v in x]
        if t is tuple:
            return {"t": [self._enc(v, bufs, depth + 1) for v in x]}
        if t is dict:
            return {"d": [[self._enc(k, bufs, depth + 1), self._enc(v, bufs, depth + 1)]
                          for k, v in x.items()]}
        if isinstance(x, np.ndarray) and plain_dtype(x.dtype):
            a = x if x.flags.c_contiguous else np.array(x, order="C")  # keeps 0-d arrays 0-d
            bufs.append(a.reshape(-1).view(np.uint8) if a.size else b"")
            return {"a": len(bufs) - 1, "y": a.dtype.str, "s": list(a.shape)}
        if isinstance(x, np.generic) and plain_dtype(x.dtype):
            bufs.append(np.asarray(x).reshape(-1).view(np.uint8))
            return {"n": len(bufs) - 1, "y": x.dtype.str}
        if t is complex:
            return {"z": [repr(x.real), repr(x.imag)]}
        if t is bytes:
            bufs.append(x)
            return {"b": len(bufs) - 1}
        if isinstance(x, np.dtype) and plain_dtype(x):
            return {"dt": x.str}
        if t is slice:
            return {"sl": [self._enc(v, bufs, depth + 1) for v in (x.start, x.stop, x.step)]}
        if x is Ellipsis:
            return {"el": 0}
        if t is range:
            return {"rg": [x.start, x.stop, x.step]}
        if t is set or t is frozenset:
            return {"set" if t is set else "fs": [self._enc(v, bufs, depth + 1) for v in x]}
        if t is type and SCALAR_TYPES.get(x.__name__) is x:
            return {"ty": x.__name__}
        return self.encode_other(x, bufs, depth)

    def encode_other(self, x, bufs, depth):
        raise TypeError(f"cannot send a {type(x).__name__}")

    # -- decoding (from the peer) -------------------------------------------------------
    def decode(self, obj, buffers):
        return self._dec(obj, buffers, 0)

    def _dec(self, x, bufs, depth):
        if depth > MAX_DEPTH:
            raise WireError("a value is nested too deeply")
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, list):
            return [self._dec(v, bufs, depth + 1) for v in x]
        if not isinstance(x, dict) or len(x) == 0:
            raise WireError(f"not a value: {type(x).__name__}")
        tag = next(iter(x))
        v = x[tag]
        if tag == "t":
            return tuple(self._dec_list(v, bufs, depth))
        if tag == "d":
            if not isinstance(v, list):
                raise WireError("a dict is not a list of pairs")
            out = {}
            for pair in v:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise WireError("a dict entry is not a pair")
                key = self._dec(pair[0], bufs, depth + 1)
                try:
                    out[key] = self._dec(pair[1], bufs, depth + 1)
                except TypeError:
                    raise WireError("a dict key is not hashable") from None
            return out
        if tag == "a":
            return self._array(x, bufs)
        if tag == "n":
            dt = self._dtype(x.get("y"))
            buf = self._buffer(v, bufs)
            if len(buf) != dt.itemsize:
                raise WireError("a scalar does not fill its buffer")
            return np.frombuffer(bytes(buf), dtype=dt)[0]
        if tag == "f":
            if v not in ("nan", "inf", "-inf"):
                raise WireError(f"not a float: {v!r}")
            return float(v)
        if tag == "z":
            if not (isinstance(v, list) and len(v) == 2 and all(isinstance(p, str) for p in v)):
                raise WireError("a complex number is not two strings")
            try:
                return complex(float(v[0]), float(v[1]))
            except ValueError:
                raise WireError("not a complex number") from None
        if tag == "b":
            return bytes(self._buffer(v, bufs))
        if tag == "dt":
            return self._dtype(v)
        if tag == "sl":
            parts = self._dec_list(v, bufs, depth)
            if len(parts) != 3:
                raise WireError("a slice is not three values")
            return slice(*parts)
        if tag == "el":
            return Ellipsis
        if tag == "rg":
            if not (isinstance(v, list) and len(v) == 3
                    and all(type(p) is int for p in v)) or v[2] == 0:
                raise WireError("not a range")
            return range(*v)
        if tag in ("set", "fs"):
            items = self._dec_list(v, bufs, depth)
            try:
                return set(items) if tag == "set" else frozenset(items)
            except TypeError:
                raise WireError("a set element is not hashable") from None
        if tag == "ty":
            if not isinstance(v, str) or v not in SCALAR_TYPES:
                raise WireError(f"not a scalar type: {v!r}")
            return SCALAR_TYPES[v]
        return self.decode_tag(tag, x, bufs, depth)

    def decode_tag(self, tag, x, bufs, depth):
        raise WireError(f"unknown tag {tag!r}")

    def _dec_list(self, v, bufs, depth):
        if not isinstance(v, list):
            raise WireError("a sequence is not a list")
        return [self._dec(e, bufs, depth + 1) for e in v]

    @staticmethod
    def _buffer(i, bufs):
        if type(i) is not int or not 0 <= i < len(bufs):
            raise WireError("a buffer index is out of range")
        return bufs[i]

    @staticmethod
    def _dtype(s):
        if not isinstance(s, str) or len(s) > 16:
            raise WireError("a dtype is not a short string")
        try:
            dt = np.dtype(s)
        except (TypeError, ValueError):
            raise WireError(f"not a dtype: {s!r}") from None
        if not plain_dtype(dt):
            raise WireError(f"dtype {s!r} is not plain data")
        return dt

    def _array(self, x, bufs):
        dt = self._dtype(x.get("y"))
        shape = x.get("s")
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMS
                and all(type(n) is int and n >= 0 for n in shape)):
            raise WireError("an array shape is not a list of sizes")
        buf = self._buffer(x["a"], bufs)
        count = math.prod(shape)
        if count * dt.itemsize != len(buf):
            raise WireError("an array does not fill its buffer")
        if count == 0:
            return np.empty(shape, dtype=dt)
        return np.frombuffer(buf, dtype=dt).reshape(tuple(shape))


def error_info(e: BaseException, codec: Codec | None = None, tb: str = "") -> dict:
    """An exception as plain data: its type, the names of its classes, message, traceback."""
    info = {"t": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__][:32],
            "m": _safe_str(e)[:4000], "tb": tb[-8000:]}
    if codec is not None:
        with contextlib.suppress(Exception):  # arguments that are not plain are left out
            args, bufs = codec.encode(tuple(e.args))
            if not bufs and len(json.dumps(args)) < 4000:
                info["a"] = args
    name = getattr(e, "name", None)
    if isinstance(e, ImportError) and isinstance(name, str):
        info["name"] = name
    return info


def _safe_str(e) -> str:
    try:
        return str(e)
    except Exception:  # noqa: BLE001
        return f"<{type(e).__name__}: its message could not be printed>"
