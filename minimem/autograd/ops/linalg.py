r"""Matrix products: ``matmul`` (batched, broadcasting) and ``einsum``.

For :math:`Y = A B`: :math:`\bar{A} = \bar{Y} B^\top`, :math:`\bar{B} = A^\top \bar{Y}`; batch
dimensions that were broadcast are summed back by the engine.
"""
from __future__ import annotations

from ...backend import get_xp
from ..function import Function
from ._util import check_operand, check_tensor, data_of


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        xp = get_xp(g)
        # Promote 1-D operands to matrices so one formula covers every case.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if b.ndim == 1:  # first, so that a 0-d g (vector @ vector) becomes (1,) then (1, 1)
            g2 = xp.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        # Exercise 0.3 (2 pt): the gradients of Y = A @ B with respect to A and B.
        ### BEGIN SOLUTION
        grad_a = g2 @ xp.swapaxes(b2, -1, -2) if ctx.needs_input_grad[0] else None
        grad_b = xp.swapaxes(a2, -1, -2) @ g2 if ctx.needs_input_grad[1] else None
        ### END SOLUTION
        if grad_a is not None and a.ndim == 1:
            grad_a = grad_a.reshape(grad_a.shape[:-2] + (a.shape[0],))
        if grad_b is not None and b.ndim == 1:
            grad_b = grad_b.reshape(grad_b.shape[:-2] + (b.shape[0],))
        return grad_a, grad_b


def matmul(a, b):
    """Matrix product with NumPy's batching/broadcasting rules (``a @ b``)."""
    from ..tensor import Tensor

    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError("matmul: at least one argument must be a Tensor")
    check_operand("matmul", "a", a)
    check_operand("matmul", "b", b)
    for name, x in (("a", a), ("b", b)):
        if getattr(data_of(x), "ndim", 0) == 0:
            raise ValueError(f"matmul: argument '{name}' must have at least 1 dim, got a scalar")
    sa, sb = data_of(a).shape, data_of(b).shape
    ka = sa[-1]
    kb = sb[-2] if len(sb) > 1 else sb[0]
    if ka != kb:
        raise ValueError(
            f"matmul: inner dimensions differ: a has shape {sa} (last dim {ka}), "
            f"b has shape {sb} (dim -2 is {kb})"
        )
    try:
        import numpy as np

        np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {sa} and {sb} do not broadcast") from None
    return MatMul.apply(a, b)


# ---------------------------------------------------------------------------------------------
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _parse_einsum(op, subscripts, shapes):
    """Explicit, ellipsis-free subscripts: (['ij', 'jk'], 'ik')."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        lhs, out = subscripts.split("->")
    else:
        lhs = subscripts
        letters = lhs.replace(",", "").replace("...", "")
        out = ("..." if "..." in lhs else "") + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1)
        )
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise ValueError(f"{op}: subscripts name {len(ins)} operands, got {len(shapes)}")
    if "..." in subscripts:  # expand the ellipsis into unused letters
        used = set(subscripts)
        free = [c for c in _LETTERS if c not in used]
        n_ell = max(len(s) - (len(t) - 3) for s, t in zip(shapes, ins) if "..." in t)
        ell = "".join(free[:n_ell])
        ins = [t.replace("...", ell[n_ell - (len(s) - (len(t) - 3)):]) if "..." in t else t
               for s, t in zip(shapes, ins)]
        out = out.replace("...", ell)
    for i, (t, s) in enumerate(zip(ins, shapes)):
        if len(t) != len(s):
            raise ValueError(
                f"{op}: operand {i} has {len(s)} dims but subscripts '{t}' name {len(t)}"
            )
        if len(set(t)) != len(t):
            raise ValueError(f"{op}: repeated index within operand {i} ('{t}') is not supported")
    sizes = {}
    for i, (t, s) in enumerate(zip(ins, shapes)):
        for c, n in zip(t, s):
            if sizes.setdefault(c, n) != n and n != 1 and sizes[c] != 1:
                raise ValueError(
                    f"{op}: index '{c}' has size {sizes[c]} in one operand and {n} in operand {i}"
                )
            sizes[c] = max(sizes[c], n)
    return ins, out, sizes


class Einsum(Function):
    @staticmethod
    def forward(ctx, spec, *arrays):
        ins, out, sizes = spec
        ctx.spec = spec
        ctx.save_for_backward(*arrays)
        return get_xp(arrays[0]).einsum(",".join(ins) + "->" + out, *arrays, optimize=True)

    @staticmethod
    def backward(ctx, g):
        ins, out, sizes = ctx.spec
        arrays = ctx.saved_tensors
        xp = get_xp(g)
        grads = [None]
        for i, target in enumerate(ins):
            if not ctx.needs_input_grad[i + 1]:
                grads.append(None)
                continue
            others = [(t, a) for j, (t, a) in enumerate(zip(ins, arrays)) if j != i]
            available = set(out).union(*(set(t) for t, _ in others))
            # Indices that only this operand had were summed out: broadcast them back.
            kept = "".join(c for c in target if c in available)
            expr = ",".join([out] + [t for t, _ in others]) + "->" + kept
            gi = xp.einsum(expr, g, *(a for _, a in others), optimize=True)
            if kept != target:
                shape = [sizes[c] if c in kept else 1 for c in target]
                gi = xp.broadcast_to(gi.reshape(shape), [sizes[c] for c in target])
            shape_i = arrays[i].shape
            gi = xp.ascontiguousarray(gi) if gi.shape == shape_i else gi
            grads.append(gi)
        return tuple(grads)


def einsum(subscripts, *operands):
    """Einstein summation, differentiable in every operand (e.g. ``'bhtd,bhsd->bhts'``)."""
    for i, t in enumerate(operands):
        check_tensor("einsum", f"operands[{i}]", t)
    spec = _parse_einsum("einsum", subscripts, [t.shape for t in operands])
    return Einsum.apply(spec, *operands)
