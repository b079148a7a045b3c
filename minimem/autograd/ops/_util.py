"""Small helpers shared by the op files: argument checking with errors that name the op."""
from __future__ import annotations

import numbers

import numpy as np

from ... import checks
from ..tensor import Tensor


def data_of(x):
    return x.data if isinstance(x, Tensor) else x


def shape_of(x):
    return x.shape if isinstance(x, Tensor) or hasattr(x, "shape") else ()


def check_tensor(op: str, name: str, x, float_only=False) -> None:
    """A Tensor (a floating one with ``float_only``); the vocabulary is :mod:`minimem.checks`."""
    if isinstance(x, Tensor) and (not float_only or x.dtype.kind == "f"):
        return  # the common case, without a call: this runs for every operation
    if float_only:
        checks.check_float_tensor(op, name, x)
    else:
        checks.check_tensor(op, name, x)


def check_real_tensor(op: str, name: str, x) -> None:
    """A Tensor with an ordered dtype (float, int or bool; not complex): for ops that compare."""
    checks.check_tensor(op, name, x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{op}: argument '{name}' must be real (float, int or bool), "
                        f"got dtype {x.dtype}")


def check_operand(op: str, name: str, x) -> None:
    if isinstance(x, (Tensor, numbers.Number)) or hasattr(x, "shape"):
        return
    raise TypeError(
        f"{op}: argument '{name}' must be a Tensor, an array or a number, got {type(x).__name__}"
    )


def broadcast_shape(op: str, *xs):
    shapes = [shape_of(x) for x in xs]
    if len(shapes) == 2 and (shapes[0] == shapes[1] or not shapes[1]):
        return tuple(shapes[0])  # the common cases (same shape, a scalar), without NumPy's check
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(
            f"{op}: shapes {' and '.join(str(tuple(s)) for s in shapes)} do not broadcast"
        ) from None


def normalize_axis(op: str, axis, ndim: int):
    """Axis (int, tuple or None) as a sorted tuple of non-negative ints; errors name the op."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, numbers.Integral) or not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {axis} is out of range for a tensor with {ndim} dims")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))


def expand_reduced(g, shape, axes):
    """Re-insert the reduced axes of a gradient so it broadcasts against the input."""
    for a in axes:
        g = g.reshape(g.shape[:a] + (1,) + g.shape[a:])
    return g
