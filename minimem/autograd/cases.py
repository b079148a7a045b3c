"""Gradcheck cases for every engine op (sample inputs avoid kinks such as relu at 0)."""
from __future__ import annotations

import numpy as np

from . import ops
from .gradcheck import leaf as t
from .registry import register
from .tensor import Tensor


def distinct(rng, *shape):
    """Values with no ties (for max/min/topk)."""
    x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + 0.01 * rng.random(shape)
    return Tensor(x.astype(np.float64), requires_grad=True)


register("add (broadcast)", lambda r: (t(r, 3, 4), t(r, 4)))(ops.add)
register("sub (broadcast)", lambda r: (t(r, 2, 1, 3), t(r, 4, 3)))(ops.sub)
register("mul (broadcast)", lambda r: (t(r, 3, 1), t(r, 1, 4)))(ops.mul)
register("div", lambda r: (t(r, 3, 4), t(r, 3, 4, low=0.5)))(ops.div)
register("pow (tensor ** tensor)", lambda r: (t(r, 3, 4, low=0.5), t(r, 3, 4)))(ops.pow)
register("pow (tensor ** 3)", lambda r: (t(r, 3, 4),))(lambda x: x ** 3)
register("neg", lambda r: (t(r, 5),))(ops.neg)
for _name in ("exp", "tanh", "sigmoid", "softplus", "silu"):
    register(_name, lambda r: (t(r, 3, 4),))(getattr(ops, _name))
register("log", lambda r: (t(r, 3, 4, low=0.1),))(ops.log)
register("sqrt", lambda r: (t(r, 3, 4, low=0.1),))(ops.sqrt)
register("abs", lambda r: (t(r, 3, 4, margin=0.1),))(ops.abs)
register("relu", lambda r: (t(r, 3, 4, margin=0.1),))(ops.relu)
register("sum (axis=1)", lambda r: (t(r, 2, 3, 4),))(lambda x: ops.sum(x, axis=1))
register("mean (axis=(0,2), keepdims)", lambda r: (t(r, 2, 3, 4),))(
    lambda x: ops.mean(x, axis=(0, 2), keepdims=True))
register("max (axis=-1)", lambda r: (distinct(r, 3, 5),))(lambda x: ops.max(x, axis=-1))
register("min (all)", lambda r: (distinct(r, 3, 5),))(lambda x: ops.min(x))
register("var (axis=0)", lambda r: (t(r, 4, 3),))(lambda x: ops.var(x, axis=0))
register("reshape", lambda r: (t(r, 2, 6),))(lambda x: ops.reshape(x, (3, 4)))
register("transpose", lambda r: (t(r, 2, 3, 4),))(lambda x: ops.transpose(x, (2, 0, 1)))
register("swapaxes", lambda r: (t(r, 2, 3, 4),))(lambda x: ops.swapaxes(x, 0, 2))
register("broadcast_to", lambda r: (t(r, 3, 1),))(lambda x: ops.broadcast_to(x, (2, 3, 4)))
register("expand_dims/squeeze", lambda r: (t(r, 3, 1),))(
    lambda x: ops.squeeze(ops.expand_dims(x, 0)))
register("getitem (slice)", lambda r: (t(r, 4, 5),))(lambda x: x[1:3, ::2])
register("getitem (int array, repeats)", lambda r: (t(r, 4, 3),))(
    lambda x: x[np.array([0, 2, 2, 3, 0])])
register("getitem (2-D fancy)", lambda r: (t(r, 4, 3),))(
    lambda x: x[np.array([0, 1, 1]), np.array([2, 0, 0])])
register("concatenate", lambda r: (t(r, 2, 3), t(r, 4, 3)))(
    lambda a, b: ops.concatenate([a, b], axis=0))
register("stack", lambda r: (t(r, 2, 3), t(r, 2, 3)))(lambda a, b: ops.stack([a, b], axis=1))
register("where", lambda r: (t(r, 3, 4), t(r, 4)))(
    lambda a, b: ops.where(np.arange(12).reshape(3, 4) % 3 == 0, a, b))
register("matmul (batched, broadcast)", lambda r: (t(r, 2, 3, 4), t(r, 4, 5)))(ops.matmul)
register("matmul (vector)", lambda r: (t(r, 4), t(r, 4, 3)))(ops.matmul)
register("einsum (bhtd,bhsd->bhts)", lambda r: (t(r, 1, 2, 3, 4), t(r, 1, 2, 5, 4)))(
    lambda q, k: ops.einsum("bhtd,bhsd->bhts", q, k))
register("einsum (summed-out index)", lambda r: (t(r, 3, 4), t(r, 3)))(
    lambda a, b: ops.einsum("ij,i->", a, b))
register("take_along_axis", lambda r: (t(r, 3, 4),))(
    lambda x: ops.take_along_axis(x, np.array([[0, 0], [3, 1], [2, 2]]), axis=1))
register("index_add", lambda r: (t(r, 4, 3), t(r, 5, 3)))(
    lambda x, s: ops.index_add(x, 0, np.array([0, 2, 2, 3, 0]), s))
register("topk (values)", lambda r: (distinct(r, 3, 6),))(lambda x: ops.topk(x, 3)[0])
register("softmax", lambda r: (t(r, 3, 5),))(lambda x: ops.softmax(x, axis=-1))
register("log_softmax", lambda r: (t(r, 3, 5),))(lambda x: ops.log_softmax(x, axis=0))
register("logsumexp", lambda r: (t(r, 3, 5),))(lambda x: ops.logsumexp(x, axis=1))
register("l2_normalize", lambda r: (t(r, 3, 5),))(lambda x: ops.l2_normalize(x, axis=-1))
register("tril", lambda r: (t(r, 2, 4, 4),))(lambda x: ops.tril(x, -1))
register("triu", lambda r: (t(r, 4, 5),))(lambda x: ops.triu(x, 1))
register("cross_entropy (ignore_index)", lambda r: (t(r, 2, 3, 5),))(
    lambda x: ops.cross_entropy(x, np.array([[1, -100, 4], [0, 2, -100]])))
register("mse_loss", lambda r: (t(r, 3, 4), t(r, 3, 4)))(ops.mse_loss)
