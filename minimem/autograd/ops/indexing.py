"""Selection and scatter: where, take_along_axis, index_add, topk, and device moves."""
from __future__ import annotations


import numpy as np

from ...backend import get_xp
from ...backend import to_device as _move_array
from ...checks import check_bool, check_index_bounds, check_int
from ..function import Function
from ..tensor import Tensor
from ._util import broadcast_shape, check_real_tensor, check_tensor, normalize_axis


def _along_axis_index(xp, indices, axis):
    """A full fancy index that addresses ``indices`` along ``axis`` (for a scatter-add)."""
    n = indices.ndim
    grids = [xp.arange(size).reshape([size if i == d else 1 for i in range(n)])
             for d, size in enumerate(indices.shape)]
    grids[axis] = indices
    return tuple(grids)


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        return get_xp(cond).where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        return None, g * cond, g * ~cond


class TakeAlongAxis(Function):
    @staticmethod
    def forward(ctx, x, indices, axis):
        ctx.shape, ctx.axis = x.shape, axis
        ctx.save_for_backward(indices)
        return get_xp(x).take_along_axis(x, indices, axis=axis)

    @staticmethod
    def backward(ctx, g):
        (indices,) = ctx.saved_tensors
        xp = get_xp(g)
        out = xp.zeros(ctx.shape, dtype=g.dtype)
        indices = xp.broadcast_to(indices, g.shape)  # indices may broadcast against x
        xp.add.at(out, _along_axis_index(xp, indices, ctx.axis), g)
        return out, None, None


class IndexAdd(Function):
    """out = x; out[..., index[i], ...] += src[..., i, ...] along ``axis`` (scatter-add)."""

    @staticmethod
    def forward(ctx, x, axis, index, src):
        xp = get_xp(x)
        out = x.copy()
        idx = [slice(None)] * x.ndim
        idx[axis] = index
        xp.add.at(out, tuple(idx), src)
        ctx.axis, ctx.index = axis, index
        return out

    @staticmethod
    def backward(ctx, g):
        xp = get_xp(g)
        return g, None, None, xp.take(g, ctx.index, axis=ctx.axis)


class ToDevice(Function):
    @staticmethod
    def forward(ctx, x, device):
        ctx.src = "cpu" if get_xp(x) is np else "cuda"
        return _move_array(x, device)

    @staticmethod
    def backward(ctx, g):
        return _move_array(g, ctx.src), None


def where(cond, a, b):
    """Elementwise ``a`` where ``cond`` else ``b``; ``cond`` is a boolean array or Tensor."""
    c = cond.data if isinstance(cond, Tensor) else cond
    xp = get_xp(a.data if isinstance(a, Tensor) else c)
    c = xp.asarray(c)
    if c.dtype != bool:
        raise TypeError(f"where: cond must be boolean, got dtype {c.dtype}")
    shape = broadcast_shape("where", c, a, b)
    if not isinstance(a, Tensor):
        a = Tensor(xp.asarray(a, dtype=b.dtype if isinstance(b, Tensor) else None))
    c = xp.broadcast_to(c, shape)
    return Where.apply(c, a, b)


def take_along_axis(x, indices, axis):
    """``numpy.take_along_axis``, differentiable in ``x`` (scatter-add backward)."""
    check_tensor("take_along_axis", "x", x)
    idx = indices.data if isinstance(indices, Tensor) else get_xp(x.data).asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"take_along_axis: indices must be integers, got dtype {idx.dtype}")
    if idx.ndim != x.ndim:
        raise ValueError(
            f"take_along_axis: indices must have x's {x.ndim} dims, got shape {idx.shape}"
        )
    (ax,) = normalize_axis("take_along_axis", axis, x.ndim)
    if any(i != ax and s not in (1, n) for i, (s, n) in enumerate(zip(idx.shape, x.shape))):
        raise ValueError(f"take_along_axis: indices {idx.shape} must match x {x.shape} (or be "
                         f"1) on every axis but {ax}")
    check_index_bounds("take_along_axis", "indices", idx, x.shape[ax])
    return TakeAlongAxis.apply(x, idx, ax)


def index_add(x, axis, index, src):
    """A copy of ``x`` with ``src`` added at ``index`` along ``axis`` (repeats accumulate)."""
    check_tensor("index_add", "x", x)
    check_tensor("index_add", "src", src)
    idx = index.data if isinstance(index, Tensor) else get_xp(x.data).asarray(index)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise TypeError(f"index_add: index must be a 1-D integer array, got {idx.dtype} {idx.shape}")
    (ax,) = normalize_axis("index_add", axis, x.ndim)
    check_index_bounds("index_add", "index", idx, x.shape[ax])
    want = x.shape[:ax] + (len(idx),) + x.shape[ax + 1:]
    if src.shape != want:
        raise ValueError(f"index_add: src must have shape {want}, got {src.shape}")
    return IndexAdd.apply(x, ax, idx, src)


def topk(x, k, axis=-1, largest=True):
    """The ``k`` largest (or smallest) entries along ``axis``, sorted; returns (values, indices).

    Values are differentiable (the gradient goes to the chosen entries); indices are a plain
    integer Tensor. NaN ranks largest (PyTorch's rule): first among the largest, last among the
    smallest; ties keep index order.
    """
    check_real_tensor("topk", "x", x)
    (ax,) = normalize_axis("topk", axis, x.ndim)
    n = x.shape[ax]
    k = check_int("topk", "k", k, low=1, high=n)
    check_bool("topk", "largest", largest)
    xp = get_xp(x.data)
    if largest and x.dtype.kind == "f" and bool(xp.isnan(x.data).any()):
        idx = _nan_first_order(xp, x.data, ax, k)
    else:  # NumPy's sorts already put NaN last, i.e. rank it largest
        key = -x.data if largest else x.data
        part = xp.argpartition(key, k - 1, axis=ax) if k < n else xp.argsort(key, axis=ax)
        part = xp.take(part, xp.arange(k), axis=ax)
        order = xp.argsort(xp.take_along_axis(key, part, axis=ax), axis=ax, kind="stable")
        idx = xp.take_along_axis(part, order, axis=ax)
    return take_along_axis(x, idx, ax), Tensor(idx)


def _nan_first_order(xp, a, ax, k):
    """The first k positions of a descending sort along ``ax`` in which NaN ranks largest
    (before +inf), ties in index order: a stable sort by (not NaN, -a)."""
    a = xp.moveaxis(a, ax, -1)
    nan = xp.isnan(a)
    key = xp.where(nan, 0, -a)
    order = xp.argsort(key, axis=-1, kind="stable")  # ties (and NaN's 0s) in index order
    order = xp.take_along_axis(order, xp.argsort(~xp.take_along_axis(nan, order, axis=-1),
                                                 axis=-1, kind="stable"), axis=-1)
    return xp.moveaxis(order[..., :k], -1, ax)


def to_device(x, device):
    check_tensor("to", "x", x)
    return ToDevice.apply(x, device)
