r"""Reductions over axes: sum, mean, max, min, var.

The backward of a reduction broadcasts :math:`\bar{y}` back over the reduced axes; ``max`` and
``min`` send it to the arg-max elements, split evenly between ties. A NaN propagates: the
max (and min) of a slice holding NaN is NaN, and the gradient goes to the NaN entries
(PyTorch's rule). Complex tensors are refused (they have no order).
"""
from __future__ import annotations

from ...backend import get_xp
from ...checks import check_int
from ..function import Function
from ._util import check_real_tensor, check_tensor, expand_reduced, normalize_axis


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axes, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, axes, keepdims
        return a.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        if not ctx.keepdims:
            g = expand_reduced(g, ctx.shape, ctx.axes)
        return get_xp(g).broadcast_to(g, ctx.shape), None, None


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axes, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, axes, keepdims
        ctx.count = 1
        for ax in axes:
            ctx.count *= a.shape[ax]
        return a.mean(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        if not ctx.keepdims:
            g = expand_reduced(g, ctx.shape, ctx.axes)
        return get_xp(g).broadcast_to(g / ctx.count, ctx.shape), None, None


class Extreme(Function):
    """max (``which='max'``) or min; the gradient is split evenly between tied extremes."""

    @staticmethod
    def forward(ctx, a, axes, keepdims, which):
        y = a.max(axis=axes, keepdims=True) if which == "max" else a.min(axis=axes, keepdims=True)
        hit = a == y
        if a.dtype.kind == "f":  # a NaN propagates (PyTorch's rule) and takes the gradient
            xp = get_xp(a)
            hit |= xp.isnan(a) & xp.isnan(y)
        ctx.save_for_backward(hit, hit.sum(axis=axes, keepdims=True))
        ctx.axes, ctx.keepdims = axes, keepdims
        return y if keepdims else y.reshape([s for i, s in enumerate(a.shape) if i not in axes])

    @staticmethod
    def backward(ctx, g):
        hit, count = ctx.saved_tensors
        if not ctx.keepdims:
            g = expand_reduced(g, hit.shape, ctx.axes)
        return g * hit / count, None, None, None


class Var(Function):
    """var = mean((a - mean(a))^2) * n / (n - ddof); d/da = 2 (a - mean) / (n - ddof)."""

    @staticmethod
    def forward(ctx, a, axes, keepdims, ddof):
        n = 1
        for ax in axes:
            n *= a.shape[ax]
        if n - ddof <= 0:
            raise ValueError(f"var: ddof={ddof} leaves no degrees of freedom for {n} elements")
        centered = a - a.mean(axis=axes, keepdims=True)
        ctx.save_for_backward(centered)
        ctx.axes, ctx.keepdims, ctx.denom = axes, keepdims, n - ddof
        return (centered * centered).sum(axis=axes, keepdims=keepdims) / (n - ddof)

    @staticmethod
    def backward(ctx, g):
        (centered,) = ctx.saved_tensors
        if not ctx.keepdims:
            g = expand_reduced(g, centered.shape, ctx.axes)
        return g * 2 * centered / ctx.denom, None, None, None


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (int, tuple or None for all)."""
    check_tensor("sum", "x", x)
    return Sum.apply(x, normalize_axis("sum", axis, x.ndim), keepdims)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis``."""
    check_tensor("mean", "x", x)
    axes = normalize_axis("mean", axis, x.ndim)
    return Mean.apply(x, axes, keepdims)


def max(x, axis=None, keepdims=False):
    """Maximum over ``axis``; ties share the gradient equally."""
    check_real_tensor("max", "x", x)
    if x.size == 0:
        raise ValueError("max: cannot reduce an empty tensor")
    return Extreme.apply(x, normalize_axis("max", axis, x.ndim), keepdims, "max")


def min(x, axis=None, keepdims=False):
    """Minimum over ``axis``; ties share the gradient equally."""
    check_real_tensor("min", "x", x)
    if x.size == 0:
        raise ValueError("min: cannot reduce an empty tensor")
    return Extreme.apply(x, normalize_axis("min", axis, x.ndim), keepdims, "min")


def var(x, axis=None, keepdims=False, ddof=0):
    """Variance over ``axis`` (biased, ``ddof=0``, by default as in LayerNorm)."""
    check_tensor("var", "x", x, float_only=True)
    check_int("var", "ddof", ddof, low=0)
    return Var.apply(x, normalize_axis("var", axis, x.ndim), keepdims, ddof)
