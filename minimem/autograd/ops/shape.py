"""Shape operations: reshape, transpose, broadcast, concatenate, stack, indexing.

Their backward moves the gradient back to where each element came from: the inverse
permutation, a reshape back, a sum over broadcast axes, or a scatter-add for indexing.
"""
from __future__ import annotations

import numbers

import numpy as np

from ...backend import get_xp
from ..function import Function
from ..tensor import Tensor
from ._util import check_tensor, normalize_axis
from ...kernels.scatter import scatter_add_rows


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(np.argsort(ctx.axes)), None


class BroadcastTo(Function):
    @staticmethod
    def forward(ctx, a, shape):
        return get_xp(a).broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return g, None  # the engine sums back to the input's shape


class Concatenate(Function):
    @staticmethod
    def forward(ctx, axis, *arrays):
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        return get_xp(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        xp = get_xp(g)
        bounds = np.cumsum(ctx.sizes)[:-1]
        return (None, *xp.split(g, [int(b) for b in bounds], axis=ctx.axis))


class Stack(Function):
    @staticmethod
    def forward(ctx, axis, *arrays):
        ctx.axis = axis
        return get_xp(arrays[0]).stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        xp = get_xp(g)
        n = g.shape[ctx.axis]
        return (None, *(xp.take(g, i, axis=ctx.axis) for i in range(n)))


class GetItem(Function):
    """y = a[index]; backward scatter-adds into zeros, so repeated indices accumulate."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.index, ctx.dtype = a.shape, index, a.dtype
        return a[index]

    @staticmethod
    def backward(ctx, g):
        xp = get_xp(g)
        out = xp.zeros(ctx.shape, dtype=g.dtype)
        index = ctx.index
        if _is_row_gather(index, xp):
            scatter_add_rows(out.reshape(ctx.shape[0], -1),
                             index.reshape(-1), g.reshape(index.size, -1))
        elif _is_basic(index):
            out[index] += g  # basic slicing: a view, each element hit at most once
        else:
            xp.add.at(out, index, g)
        return out, None


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (slice, numbers.Integral, type(None), type(Ellipsis)))
               for i in items)


def _is_row_gather(index, xp) -> bool:
    """An integer array indexing axis 0 (the embedding lookup): the fast scatter kernel."""
    return (xp is np and isinstance(index, np.ndarray) and index.dtype.kind in "iu")


def reshape(x, shape):
    """A view with a new shape (one entry may be -1)."""
    check_tensor("reshape", "x", x)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    known = int(np.prod([s for s in shape if s != -1])) if shape else 1
    ok = shape.count(-1) <= 1 and (
        known == x.size if -1 not in shape else (known > 0 and x.size % known == 0)
    )
    if not ok:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} into {shape}")
    return Reshape.apply(x, shape)


def transpose(x, axes=None):
    """Permute axes (reverse them when ``axes`` is None), as ``numpy.transpose``."""
    check_tensor("transpose", "x", x)
    if axes is None:
        axes = tuple(range(x.ndim))[::-1]
    if any(not -x.ndim <= int(a) < x.ndim for a in axes):
        raise ValueError(f"transpose: axes {tuple(axes)} out of range for {x.ndim} dims")
    axes = tuple(int(a) % max(x.ndim, 1) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of {x.ndim} dims")
    return Transpose.apply(x, axes)


def swapaxes(x, a, b):
    """Exchange two axes."""
    check_tensor("swapaxes", "x", x)
    (a,), (b,) = normalize_axis("swapaxes", a, x.ndim), normalize_axis("swapaxes", b, x.ndim)
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return Transpose.apply(x, tuple(axes))


def broadcast_to(x, shape):
    """Broadcast to ``shape``; the gradient is summed back."""
    check_tensor("broadcast_to", "x", x)
    shape = tuple(shape)
    try:
        if np.broadcast_shapes(x.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}") from None
    return BroadcastTo.apply(x, shape)


def expand_dims(x, axis):
    """Insert a new axis of length 1 at ``axis``."""
    check_tensor("expand_dims", "x", x)
    if not -x.ndim - 1 <= axis <= x.ndim:
        raise ValueError(f"expand_dims: axis {axis} out of range for {x.ndim} dims")
    axis = axis % (x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def squeeze(x, axis=None):
    """Remove axes of length 1 (all of them when ``axis`` is None)."""
    check_tensor("squeeze", "x", x)
    axes = normalize_axis("squeeze", axis, x.ndim)
    if axis is None:
        axes = tuple(a for a in axes if x.shape[a] == 1)
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"squeeze: axis {a} has length {x.shape[a]}, expected 1")
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))


def _check_sequence(op, tensors):
    if not isinstance(tensors, (list, tuple)) or not tensors:
        raise TypeError(f"{op}: expected a non-empty list of Tensors, got {type(tensors).__name__}")
    for i, t in enumerate(tensors):
        check_tensor(op, f"tensors[{i}]", t)


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis."""
    _check_sequence("concatenate", tensors)
    ref = tensors[0]
    (ax,) = normalize_axis("concatenate", axis, ref.ndim)
    for i, t in enumerate(tensors):
        if t.ndim != ref.ndim or any(
            s != r for j, (s, r) in enumerate(zip(t.shape, ref.shape)) if j != ax
        ):
            raise ValueError(
                f"concatenate: tensors[{i}] has shape {t.shape}, incompatible with "
                f"tensors[0] {ref.shape} along axis {axis}"
            )
    return Concatenate.apply(ax, *tensors)


def stack(tensors, axis=0):
    """Join same-shape tensors along a new axis."""
    _check_sequence("stack", tensors)
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(
                f"stack: tensors[{i}] has shape {t.shape}, expected {tensors[0].shape}"
            )
    if not -tensors[0].ndim - 1 <= axis <= tensors[0].ndim:
        raise ValueError(f"stack: axis {axis} out of range")
    return Stack.apply(axis % (tensors[0].ndim + 1), *tensors)


def _index_data(index):
    """Tensors inside an index become their arrays (indices carry no gradient)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(_index_data(i) for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def getitem(x, index):
    """``x[index]``: basic slicing and integer/boolean array indexing (scatter-add backward)."""
    check_tensor("getitem", "x", x)
    index = _index_data(index)
    try:
        return GetItem.apply(x, index)
    except IndexError as e:
        raise IndexError(f"getitem: index {index!r} is invalid for shape {x.shape}: {e}") from None
