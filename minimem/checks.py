"""The shared vocabulary of argument checks (DESIGN.md, "Input contracts").

Every public entry point checks its arguments at the boundary with these functions, so that a
bad input gets a ``TypeError`` (wrong kind of thing: type, dtype) or a ``ValueError`` (right kind,
wrong value: shape, range, index) whose message names the function, the argument, what was
expected and what came::

    gated_linear_attention: g must have shape (B, H, T) = (1, 2, 8), got (1, 2, 7)

Each check takes ``fn`` (the public name the user called) and ``name`` (the argument) first and
returns the checked value (an int as ``int``, a real as ``float``) so a caller can write
``n = check_int(fn, "n", n)``. The array checks accept anything with ``.shape`` and ``.dtype``
(NumPy/CuPy arrays and Tensors); :func:`check_float_tensor` also insists on a Tensor, the class
the autograd engine registers with :func:`register_tensor_type` (this module sits below the
engine: it imports only NumPy and :mod:`minimem.backend`).

float16 is rejected by the floating checks unless a caller opts in: the kernels compute in
float32/float64 only, and a silent upcast would change what the user asked for.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .backend import get_xp, to_numpy

__all__ = [
    "IndexBoundsError",
    "check_array",
    "check_bool",
    "check_choice",
    "check_dtype",
    "check_finite",
    "check_float_array",
    "check_float_tensor",
    "check_heads",
    "check_index_array",
    "check_index_bounds",
    "check_int",
    "check_ndim",
    "check_nonempty",
    "check_real",
    "check_same_dtype",
    "check_same_shape",
    "check_shape",
    "check_tensor",
    "check_type",
    "describe",
    "is_tensor",
    "register_tensor_type",
]

_TENSOR_TYPES: tuple = ()


class IndexBoundsError(IndexError, ValueError):
    """An index out of range: an ``IndexError`` as Python's own, and a ``ValueError`` as
    DESIGN.md's contracts say (a wrong value of the right type)."""
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def register_tensor_type(cls) -> None:
    """Let :func:`check_float_tensor` recognise ``cls`` (called once by the autograd engine)."""
    global _TENSOR_TYPES
    if cls not in _TENSOR_TYPES:
        _TENSOR_TYPES = _TENSOR_TYPES + (cls,)


def is_tensor(x) -> bool:
    return isinstance(x, _TENSOR_TYPES)


def describe(v) -> str:
    """What came, in a few words: ``int 3``, ``ndarray float32 (2, 3)``, ``NoneType``."""
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        return f"{type(v).__name__} {v.dtype} {tuple(v.shape)}"
    if isinstance(v, (bool, numbers.Number, str)):
        return f"{type(v).__name__} {v!r}"
    return type(v).__name__


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _range_text(low, high, low_open=False, high_open=False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


# ---------------------------------------------------------------- scalars and options


def check_int(fn, name, v, low=None, high=None) -> int:
    """An int (not a bool, not a float) in ``[low, high]`` (either bound may be None)."""
    what = ("an int " + _range_text(low, high)).rstrip()
    if not _is_int(v):
        raise TypeError(f"{fn}: {name} must be {what}, got {describe(v)}")
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{fn}: {name} must be {what}, got {v}")
    return int(v)


def check_real(fn, name, v, low=None, high=None, low_open=False, high_open=False,
               finite=True) -> float:
    """A real number (int or float, not bool/complex/NaN) in the given interval.

    ``low_open``/``high_open`` exclude the bound (``eps > 0``: ``low=0, low_open=True``);
    ``finite=False`` admits ±inf (never NaN: every comparison with NaN is False, so a NaN
    hyper-parameter would pass any range check silently).
    """
    what = ("a real number " + _range_text(low, high, low_open, high_open)).rstrip()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{fn}: {name} must be {what}, got {describe(v)}")
    x = float(v)
    bad = math.isnan(x) or (finite and math.isinf(x))
    if low is not None:
        bad = bad or (x <= low if low_open else x < low)
    if high is not None:
        bad = bad or (x >= high if high_open else x > high)
    if bad:
        rng = _range_text(low, high, low_open, high_open)
        bounded = low is not None and high is not None  # a bounded range says finite
        extra = "" if bounded else "finite" if finite else "not NaN"
        want = " and ".join(w for w in (rng, extra) if w)
        raise ValueError(f"{fn}: {name} must be {want}, got {v!r}")
    return x


def check_heads(fn, d_model, n_heads):
    """``d_model`` and ``n_heads`` ints >= 1 with ``n_heads`` dividing ``d_model``."""
    check_int(fn, "d_model", d_model, low=1)
    check_int(fn, "n_heads", n_heads, low=1)
    if d_model % n_heads:
        raise ValueError(f"{fn}: d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    return int(d_model), int(n_heads)


def check_bool(fn, name, v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False, got {describe(v)}")
    return bool(v)


def check_choice(fn, name, v, choices):
    """``v`` is one of ``choices`` (compared with ==; strings are not fuzzy-matched)."""
    choices = tuple(choices)
    try:
        ok = any(type(v) is type(c) and v == c for c in choices)
    except Exception:  # an array compared with a string, say
        ok = False
    if not ok:
        raise ValueError(f"{fn}: {name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {v!r}")
    return v


def check_type(fn, name, v, types, what=None):
    """``isinstance(v, types)``; ``what`` says it in words (default: the type names)."""
    if not isinstance(v, types):
        if what is None:
            names = types if isinstance(types, tuple) else (types,)
            what = "a " + " or ".join(t.__name__ for t in names)
        raise TypeError(f"{fn}: {name} must be {what}, got {describe(v)}")
    return v


# ---------------------------------------------------------------- arrays and tensors


def check_array(fn, name, x):
    """Anything with a shape and a dtype (a NumPy/CuPy array or a Tensor)."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise TypeError(f"{fn}: {name} must be an array, got {describe(x)}")
    return x


def check_dtype(fn, name, x, kinds="f", float16=False):
    """``x.dtype.kind`` is one of ``kinds`` ('f' floating, 'i'/'u' integer, 'b' bool);
    float16 is refused unless ``float16=True``."""
    dt = np.dtype(x.dtype)
    ok = dt.kind in kinds and (float16 or dt != np.float16)
    if not ok:
        words = {"f": "floating", "i": "integer", "u": "unsigned integer", "b": "bool"}
        what = " or ".join(words.get(k, k) for k in kinds)
        if "f" in kinds and not float16:
            what += " (float32 or float64; float16 is not supported)"
        raise TypeError(f"{fn}: {name} must be {what}, got dtype {dt}")
    return x


def check_ndim(fn, name, x, ndim):
    """``x.ndim`` equals ``ndim`` (an int) or lies in it (a tuple of allowed values)."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if len(x.shape) not in allowed:
        want = " or ".join(map(str, allowed))
        raise ValueError(f"{fn}: {name} must have {want} dims, got shape {tuple(x.shape)}")
    return x


def check_float_array(fn, name, x, ndim=None, float16=False):
    """A floating array or Tensor (float32/float64), optionally of ``ndim`` dims."""
    check_array(fn, name, x)
    check_dtype(fn, name, x, "f", float16=float16)
    if ndim is not None:
        check_ndim(fn, name, x, ndim)
    return x


def check_tensor(fn, name, x):
    """A Tensor (not a NumPy array, not a list)."""
    if not is_tensor(x):
        raise TypeError(f"{fn}: argument '{name}' must be a Tensor, got {type(x).__name__}")
    return x


def check_float_tensor(fn, name, x, ndim=None, float16=True):
    """A floating Tensor. float16 Tensors pass by default here (the engine computes in any
    floating dtype); kernels that cannot take them pass ``float16=False``."""
    check_tensor(fn, name, x)
    if np.dtype(x.dtype).kind != "f" or (not float16 and x.dtype == np.float16):
        raise TypeError(f"{fn}: argument '{name}' must be floating"
                        f"{'' if float16 else ' (float32 or float64)'}, got dtype {x.dtype}")
    if ndim is not None:
        check_ndim(fn, name, x, ndim)
    return x


def check_shape(fn, name, x, expected, names=None):
    """``x.shape == expected``; an entry None matches any size. ``names`` (e.g. "B, H, T")
    puts the symbols in the message: "must have shape (B, H, T) = (1, 2, 8), got (1, 2, 7)"."""
    shape = tuple(x.shape)
    expected = tuple(expected)
    ok = len(shape) == len(expected) and all(e is None or s == e
                                             for s, e in zip(shape, expected))
    if not ok:
        shown = "(" + ", ".join("*" if e is None else str(e) for e in expected) + \
            ("," if len(expected) == 1 else "") + ")"
        if names:
            shown = f"({names}) = {shown}"
        raise ValueError(f"{fn}: {name} must have shape {shown}, got {shape}")
    return x


def check_same_shape(fn, names, *xs):
    """All of ``xs`` have one shape; ``names`` is a sequence naming them in order."""
    shapes = [tuple(x.shape) for x in xs]
    if any(s != shapes[0] for s in shapes[1:]):
        pairs = ", ".join(f"{n} {s}" for n, s in zip(names, shapes))
        raise ValueError(f"{fn}: {' and '.join(names)} must have the same shape, got {pairs}")
    return xs


def check_same_dtype(fn, names, *xs):
    dts = [np.dtype(x.dtype) for x in xs]
    if any(d != dts[0] for d in dts[1:]):
        pairs = ", ".join(f"{n} {d}" for n, d in zip(names, dts))
        raise TypeError(f"{fn}: {' and '.join(names)} must have the same dtype, got {pairs}")
    return xs


def check_index_array(fn, name, idx, n, allow_negative=False):
    """An integer array whose entries index an axis of length ``n``: ``0 <= i < n`` (or
    ``-n <= i < n`` with ``allow_negative``). Kernels call this before any Numba code reads
    memory at those indices (an out-of-range index there is a segfault, not an IndexError)."""
    check_array(fn, name, idx)
    check_dtype(fn, name, idx, "iu")
    return check_index_bounds(fn, name, idx, n, allow_negative)


def check_index_bounds(fn, name, idx, n, allow_negative=False):
    """Entries of the integer array (or int) ``idx`` lie in ``[0, n)`` (``[-n, n)``)."""
    a = to_numpy(idx.data if is_tensor(idx) else np.asarray(idx) if not hasattr(idx, "shape")
                 else idx)
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        low = -n if allow_negative else 0
        if lo < low or hi >= n:
            bad = lo if lo < low else hi
            raise IndexBoundsError(f"{fn}: {name} must lie in [{low}, {n}), got {bad}")
    return idx


def check_finite(fn, name, x):
    """No NaN or inf among the entries of ``x`` (an array, a Tensor or a number)."""
    a = x.data if is_tensor(x) else x
    xp = get_xp(a) if hasattr(a, "shape") else np
    if not bool(xp.all(xp.isfinite(a))):
        raise ValueError(f"{fn}: {name} must be finite, got NaN or inf")
    return x


def check_nonempty(fn, name, x, axes=None):
    """The given axes of ``x`` (all by default) have length >= 1."""
    shape = tuple(x.shape)
    axes = range(len(shape)) if axes is None else axes
    for a in axes:
        if shape[a] == 0:
            raise ValueError(f"{fn}: {name} must not be empty (axis {a} has length 0), "
                             f"got shape {shape}")
    return x
