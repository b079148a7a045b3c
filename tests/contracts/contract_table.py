"""The contract table: for each public entry point, one valid call and, per argument, the bad
values a careless user passes, each with the error type DESIGN.md's contracts promise.

The bad inputs are generated, not listed by hand: an argument is declared by its kind
(``ARRAY``, ``TENSOR``, ``INT(low)``, ``INDEX(n)``, ...), and each kind brings its mutations
(a list instead of an array, an integer / float16 / complex dtype, an extra axis, a float
where an int belongs, NaN, a negative size, an index one past the end, ...). ``cases()``
applies every mutation of every argument to a fresh valid call.

Used by test_bad_inputs.py (pytest.raises per row) and census.py (the counts by outcome).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import minimem as mm
from minimem import nn, optim
from minimem.autograd import ops

# ------------------------------------------------------------------------- mutations by kind


@dataclass(frozen=True)
class Mutation:
    label: str
    apply: Callable
    exc: type


def _t(a, requires_grad=False):
    return mm.tensor(a, requires_grad=requires_grad)


def _retensor(t, dtype):
    return mm.Tensor(t.numpy().astype(dtype))


# arrays in, arrays out (kernels): float32/float64 only
ARRAY = (
    Mutation("a list", lambda a: a.tolist(), TypeError),
    Mutation("int64 dtype", lambda a: a.astype(np.int64), TypeError),
    Mutation("float16 dtype", lambda a: a.astype(np.float16), TypeError),
    Mutation("an extra axis", lambda a: a[None], ValueError),
)
# a floating Tensor (engine ops, layers)
TENSOR = (
    Mutation("a NumPy array", lambda t: t.numpy(), TypeError),
    Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError),
    Mutation("complex dtype", lambda t: _retensor(t, np.complex128), TypeError),
)
# a Tensor of any real dtype
ANY_TENSOR = (
    Mutation("a list", lambda t: t.tolist(), TypeError),
    Mutation("complex dtype", lambda t: _retensor(t, np.complex128), TypeError),
)
TENSOR_NDIM = TENSOR + (Mutation("an extra axis", lambda t: t[None], ValueError),)


def INT(low=1):
    return (Mutation("a float", lambda v: 2.5, TypeError),
            Mutation("a bool", lambda v: True, TypeError),
            Mutation("a str", lambda v: "3", TypeError),
            Mutation(f"below {low}", lambda v: low - 1, ValueError))


def INT_IN(low, high):
    return INT(low) + (Mutation(f"above {high}", lambda v: high + 1, ValueError),)


POS_REAL = (Mutation("NaN", lambda v: float("nan"), ValueError),
            Mutation("zero", lambda v: 0.0, ValueError),
            Mutation("negative", lambda v: -1.0, ValueError),
            Mutation("a str", lambda v: "1", TypeError))
NONNEG_REAL = (Mutation("NaN", lambda v: float("nan"), ValueError),
               Mutation("negative", lambda v: -1.0, ValueError),
               Mutation("a str", lambda v: "1", TypeError))
UNIT_REAL = NONNEG_REAL + (Mutation("above 1", lambda v: 1.5, ValueError),)
FINITE_REAL = (Mutation("NaN", lambda v: float("nan"), ValueError),
               Mutation("inf", lambda v: float("inf"), ValueError),
               Mutation("a str", lambda v: "1", TypeError))
BOOL = (Mutation("a str", lambda v: "yes", TypeError),)
CHOICE = (Mutation("a misspelt option", lambda v: "bogus", ValueError),)


def INDEX(n, negative_ok=False):
    """An integer index array into an axis of length n."""
    def past_end(a):
        a = np.array(a, copy=True)
        a.reshape(-1)[0] = n
        return a

    def before_start(a):
        a = np.array(a, copy=True)
        a.reshape(-1)[0] = -n - 1 if negative_ok else -1
        return a
    return (Mutation("an index one past the end", past_end, ValueError),
            Mutation("a negative index", before_start, ValueError),
            Mutation("float dtype", lambda a: np.asarray(a, dtype=np.float64), TypeError))


def INDEX_T(n):
    """An integer index Tensor (or array) into an axis of length n."""
    return tuple(Mutation(m.label, (lambda f: lambda t: mm.Tensor(f(np.asarray(t))))(m.apply),
                          m.exc) for m in INDEX(n))


# ------------------------------------------------------------------------- the entry table


@dataclass
class Entry:
    name: str                     # the name its errors start with
    call: Callable                # call(**kwargs)
    valid: Callable               # () -> a fresh dict of valid kwargs
    bad: dict = field(default_factory=dict)   # argument -> tuple of Mutations
    group: str = ""


ENTRIES: list[Entry] = []


def entry(group, name, call, valid, **bad):
    ENTRIES.append(Entry(name, call, valid, bad, group))


def rng():
    return np.random.default_rng(0)


def A(*shape, dtype=np.float64):
    return rng().standard_normal(shape).astype(dtype)


def T(*shape, dtype=np.float64, grad=True):
    return _t(A(*shape, dtype=dtype), requires_grad=grad)


# ---- autograd: tensors and ops
entry("autograd", "Tensor", lambda **kw: mm.Tensor(**kw),
      lambda: dict(data=np.ones(3), requires_grad=True),
      data=(Mutation("int64 data with requires_grad", lambda a: np.ones(3, np.int64), TypeError),
            Mutation("complex data with requires_grad", lambda a: np.ones(3, complex),
                     TypeError)))
for _f in ("zeros", "ones", "randn", "rand"):
    entry("autograd", _f, (lambda f: lambda **kw: getattr(mm, f)(*kw["shape"]))(_f),
          lambda: dict(shape=(2, 3)),
          shape=(Mutation("a negative size", lambda s: (2, -1), ValueError),
                 Mutation("a float size", lambda s: (2, 1.5), ValueError)))
for _f in ("exp", "log", "sqrt", "tanh", "neg", "abs"):
    entry("autograd", _f, getattr(ops, _f), lambda: dict(x=_t(np.abs(A(2, 3)) + 0.5, True)),
          x=(Mutation("a NumPy array", lambda t: t.numpy(), TypeError),))
for _f in ("relu", "sigmoid", "softplus", "silu"):
    entry("autograd", _f, getattr(ops, _f), lambda: dict(x=T(2, 3)),
          x=(Mutation("a NumPy array", lambda t: t.numpy(), TypeError),
             Mutation("complex dtype", lambda t: _retensor(t, np.complex128), TypeError)))
for _f in ("add", "sub", "mul", "div"):
    entry("autograd", _f, getattr(ops, _f), lambda: dict(a=T(2, 3), b=T(2, 3)),
          b=(Mutation("a str", lambda t: "a", TypeError),
             Mutation("a shape that does not broadcast", lambda t: T(4), ValueError)))
entry("autograd", "matmul", ops.matmul, lambda: dict(a=T(2, 3), b=T(3, 4)),
      b=(Mutation("a str", lambda t: "a", TypeError),
         Mutation("mismatched inner dims", lambda t: T(2, 4), ValueError)))
for _f in ("sum", "mean", "max", "min"):
    entry("autograd", _f, getattr(ops, _f), lambda: dict(x=T(2, 3), axis=1),
          x=(Mutation("a NumPy array", lambda t: t.numpy(), TypeError),),
          axis=(Mutation("an axis out of range", lambda a: 5, ValueError),
                Mutation("a repeated axis", lambda a: (1, 1), ValueError)))
for _f in ("max", "min"):
    entry("autograd", _f, getattr(ops, _f), lambda: dict(x=T(2, 3)),
          x=(Mutation("complex dtype", lambda t: _retensor(t, np.complex128), TypeError),
             Mutation("an empty tensor", lambda t: T(0, 3), ValueError)))
entry("autograd", "var", ops.var, lambda: dict(x=T(2, 3), axis=1, ddof=0),
      x=TENSOR, ddof=(Mutation("ddof >= n", lambda d: 3, ValueError),
                      Mutation("a float", lambda d: 0.5, TypeError),
                      Mutation("negative", lambda d: -1, ValueError)))
for _f in ("softmax", "log_softmax", "logsumexp"):
    entry("autograd", _f, getattr(ops, _f), lambda: dict(x=T(2, 3), axis=-1),
          x=TENSOR, axis=(Mutation("a tuple", lambda a: (0, 1), TypeError),
                          Mutation("out of range", lambda a: 2, ValueError)))
entry("autograd", "l2_normalize", ops.l2_normalize, lambda: dict(x=T(2, 3), axis=-1, eps=1e-12),
      x=TENSOR, eps=POS_REAL)
entry("autograd", "topk", ops.topk, lambda: dict(x=T(2, 5), k=2, largest=True),
      x=(Mutation("a NumPy array", lambda t: t.numpy(), TypeError),
         Mutation("complex dtype", lambda t: _retensor(t, np.complex128), TypeError)),
      k=(Mutation("k > n", lambda k: 6, ValueError), Mutation("zero", lambda k: 0, ValueError),
         Mutation("a float", lambda k: 2.0, TypeError)),
      largest=BOOL)
entry("autograd", "take_along_axis", ops.take_along_axis,
      lambda: dict(x=T(2, 5), indices=np.array([[0, 4], [1, 2]]), axis=1),
      x=(Mutation("a NumPy array", lambda t: t.numpy(), TypeError),),
      indices=INDEX(5) + (Mutation("wrong ndim", lambda a: a[0], ValueError),
                          Mutation("more rows than x", lambda a: np.zeros((3, 2), int),
                                   ValueError)))
entry("autograd", "index_add", ops.index_add,
      lambda: dict(x=T(5, 2), axis=0, index=np.array([0, 4, 4]), src=T(3, 2)),
      index=INDEX(5), src=(Mutation("a wrong shape", lambda t: T(2, 2), ValueError),))
entry("autograd", "where", ops.where,
      lambda: dict(cond=np.array([True, False]), a=T(2), b=T(2)),
      cond=(Mutation("a float mask", lambda c: c.astype(float), TypeError),),
      b=(Mutation("a shape that does not broadcast", lambda t: T(3), ValueError),))
entry("autograd", "cross_entropy", ops.cross_entropy,
      lambda: dict(logits=T(4, 3), targets=np.array([0, 2, 1, -100]), reduction="mean"),
      logits=TENSOR,
      targets=(Mutation("a class out of range", lambda t: np.array([0, 3, 1, 1]), ValueError),
               Mutation("a negative class", lambda t: np.array([0, -1, 1, 1]), ValueError),
               Mutation("float targets", lambda t: t.astype(float), TypeError),
               Mutation("a wrong shape", lambda t: t[:3], ValueError)),
      reduction=CHOICE)
entry("autograd", "mse_loss", ops.mse_loss,
      lambda: dict(pred=T(2, 3), target=T(2, 3), reduction="mean"),
      pred=TENSOR, target=(Mutation("a wrong shape", lambda t: T(2, 1), ValueError),),
      reduction=CHOICE)
entry("autograd", "reshape", ops.reshape, lambda: dict(x=T(2, 3), shape=(3, 2)),
      x=(Mutation("a NumPy array", lambda t: t.numpy(), TypeError),),
      shape=(Mutation("a size that does not match", lambda s: (4, 2), ValueError),))
entry("autograd", "concatenate", ops.concatenate, lambda: dict(tensors=[T(2, 3), T(1, 3)], axis=0),
      tensors=(Mutation("an empty list", lambda ts: [], TypeError),
               Mutation("mismatched shapes", lambda ts: [T(2, 3), T(1, 4)], ValueError),
               Mutation("a NumPy array among them", lambda ts: [ts[0], ts[1].numpy()],
                        TypeError)))
entry("autograd", "stack", ops.stack, lambda: dict(tensors=[T(2, 3), T(2, 3)], axis=0),
      tensors=(Mutation("an empty list", lambda ts: [], TypeError),
               Mutation("mismatched shapes", lambda ts: [T(2, 3), T(1, 3)], ValueError)))
entry("autograd", "tril", ops.tril, lambda: dict(x=T(3, 3)),
      x=(Mutation("one axis", lambda t: T(3), ValueError),
         Mutation("a NumPy array", lambda t: t.numpy(), TypeError)))
entry("autograd", "astype", ops.astype, lambda: dict(x=T(3), dtype=np.float32),
      dtype=(Mutation("not a dtype", lambda d: "bogus", TypeError),))

# ---- nn
entry("nn", "linear", nn.linear, lambda: dict(x=T(2, 4), weight=T(3, 4), bias=T(3)),
      x=TENSOR + (Mutation("a wrong last dim", lambda t: T(2, 5), ValueError),),
      weight=TENSOR, bias=TENSOR + (Mutation("a wrong length", lambda t: T(4), ValueError),))
entry("nn", "layer_norm", nn.layer_norm, lambda: dict(x=T(2, 4), weight=T(4), bias=T(4),
                                                     eps=1e-5),
      x=TENSOR, weight=(Mutation("a wrong length", lambda t: T(3), ValueError),), eps=POS_REAL)
entry("nn", "rms_norm", nn.rms_norm, lambda: dict(x=T(2, 4), weight=T(4), eps=1e-6),
      x=TENSOR, weight=(Mutation("a wrong length", lambda t: T(3), ValueError),), eps=POS_REAL)
entry("nn", "gelu", nn.gelu, lambda: dict(x=T(2, 4)), x=TENSOR)
entry("nn", "Linear", nn.Linear, lambda: dict(in_features=3, out_features=2, bias=True),
      in_features=INT(1), out_features=INT(1), bias=BOOL)
entry("nn", "Embedding", nn.Embedding, lambda: dict(num_embeddings=5, embedding_dim=2),
      num_embeddings=INT(1), embedding_dim=INT(1))
entry("nn", "Embedding", lambda ids: nn.Embedding(5, 2, seed=0)(ids),
      lambda: dict(ids=np.array([0, 4])), ids=INDEX(5))
for _cls in ("LayerNorm", "RMSNorm"):
    entry("nn", _cls, getattr(nn, _cls), lambda: dict(d=4, eps=1e-5), d=INT(1), eps=POS_REAL)
entry("nn", "BatchNorm1d", nn.BatchNorm1d, lambda: dict(d=4, eps=1e-5, momentum=0.1),
      d=INT(1), eps=POS_REAL, momentum=UNIT_REAL)
entry("nn", "LayerNorm", lambda x: nn.LayerNorm(4)(x), lambda: dict(x=T(2, 4, dtype=np.float32)),
      x=(Mutation("a NumPy array", lambda t: t.numpy(), TypeError),
         Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError),
         Mutation("a wrong last dim", lambda t: T(2, 5), ValueError)))
entry("nn", "Dropout", nn.Dropout, lambda: dict(p=0.1),
      p=(Mutation("NaN", lambda v: float("nan"), ValueError),
         Mutation("one", lambda v: 1.0, ValueError),
         Mutation("negative", lambda v: -0.1, ValueError)))
entry("nn", "MLP", nn.MLP, lambda: dict(d_model=4, activation="gelu"),
      d_model=INT(1), activation=CHOICE)
entry("nn", "functional_call",
      lambda module, params, x: nn.functional_call(module, params, x),
      lambda: dict(module=nn.Linear(3, 2, seed=0), params=[T(2, 3), T(2)], x=T(4, 3)),
      module=(Mutation("not a Module", lambda m: object(), TypeError),),
      params=(Mutation("a wrong-shape parameter", lambda p: [T(1, 3), T(2)], ValueError),
              Mutation("a dict with a wrong name", lambda p: {"weight": T(2, 3), "b": T(2)},
                       ValueError),
              Mutation("one tensor too few", lambda p: [T(2, 3)], ValueError),
              Mutation("a NumPy array", lambda p: [p[0].numpy(), p[1]], TypeError)))


# ---- optim
def _param():
    return T(3)


def _nonleaf():
    return T(3) * 2.0


entry("optim", "SGD", optim.SGD, lambda: dict(params=[_param()], lr=0.1, momentum=0.0),
      params=(Mutation("an empty list", lambda p: [], ValueError),
              Mutation("a tensor listed twice", lambda p: [p[0], p[0]], ValueError),
              Mutation("a non-leaf tensor", lambda p: [_nonleaf()], ValueError),
              Mutation("a tensor without grad", lambda p: [T(3, grad=False)], TypeError),
              Mutation("a single Tensor", lambda p: p[0], TypeError)),
      lr=POS_REAL, momentum=UNIT_REAL)
for _cls in ("Adam", "AdamW", "SparseAdam"):
    entry("optim", _cls, getattr(optim, _cls),
          lambda: dict(params=[_param()], lr=1e-3, betas=(0.9, 0.999), eps=1e-8),
          params=(Mutation("a tensor listed twice", lambda p: [p[0], p[0]], ValueError),
                  Mutation("a non-leaf tensor", lambda p: [_nonleaf()], ValueError)),
          lr=POS_REAL, eps=POS_REAL,
          betas=(Mutation("beta1 = 1", lambda b: (1.0, 0.999), ValueError),
                 Mutation("a NaN beta", lambda b: (float("nan"), 0.999), ValueError),
                 Mutation("one number", lambda b: 0.9, TypeError)))


def _step_with_grad(grad):
    p = _param()
    opt = optim.SGD([p], lr=0.1)
    p.grad = grad
    opt.step()


entry("optim", "SGD.step", _step_with_grad, lambda: dict(grad=mm.tensor(np.ones(3))),
      grad=(Mutation("a wrong-shape grad", lambda g: mm.tensor(np.ones(1)), ValueError),))
entry("optim", "clip_grad_norm_", optim.clip_grad_norm_,
      lambda: dict(params=[_param()], max_norm=1.0),
      max_norm=NONNEG_REAL, params=(Mutation("a list of arrays", lambda p: [np.ones(3)],
                                             TypeError),))
entry("optim", "warmup_cosine", optim.warmup_cosine,
      lambda: dict(step=3, total_steps=10, warmup_steps=2, min_ratio=0.1),
      step=INT(0), total_steps=INT(1), warmup_steps=INT(0), min_ratio=UNIT_REAL)
entry("optim", "WarmupCosine",
      lambda optimizer, **kw: optim.WarmupCosine(optimizer, **kw),
      lambda: dict(optimizer=optim.SGD([_param()], lr=0.1), total_steps=10, min_ratio=0.0),
      optimizer=(Mutation("not an optimizer", lambda o: 0.1, TypeError),),
      total_steps=INT(1), min_ratio=UNIT_REAL)

# ---- kernels
from minimem.kernels import async_sweeps as K_async
from minimem.kernels import dense_attention as K_dense
from minimem.kernels import gelu_tanh as K_gelu
from minimem.kernels import product_topk as K_ptopk
from minimem.kernels import row_norm as K_row
from minimem.kernels import scatter as K_scatter
from minimem.kernels import softmax_xent as K_xent
from minimem.kernels import sparse_rows as K_rows
from minimem.kernels import topk as K_topk
from minimem.kernels import weighted_read as K_read


def _orders(n_sweeps, N):
    return np.stack([rng().permutation(N) for _ in range(n_sweeps)])


def _sym(N):
    W = A(N, N)
    return (W + W.T) / 2


for _f in ("async_sweeps", "async_sweeps_reference"):
    entry("kernels", _f, getattr(K_async, _f),
          lambda: dict(W=_sym(4), b=A(4), s=np.sign(A(4)), orders=_orders(3, 4), tol=1e-9),
          W=ARRAY, b=ARRAY, orders=INDEX(4, negative_ok=False), tol=NONNEG_REAL)
for _f in ("dense_async_sweeps", "dense_async_sweeps_reference"):
    entry("kernels", _f, getattr(K_async, _f),
          lambda: dict(X=np.sign(A(3, 4)), s=np.sign(A(4)), orders=_orders(2, 4), kind="poly",
                       n=3),
          X=ARRAY, s=ARRAY, orders=INDEX(4), kind=CHOICE, n=INT(1))
for _f in ("softmax_cross_entropy", "softmax_cross_entropy_reference"):
    entry("kernels", _f, getattr(K_xent, _f),
          lambda: dict(logits=A(4, 3), targets=np.array([0, 2, 1, -100]), ignore_index=-100),
          logits=ARRAY, targets=(
              Mutation("a class past the end", lambda t: np.array([0, 3, 1, 1]), ValueError),
              Mutation("a negative class", lambda t: np.array([0, -1, 1, 1]), ValueError),
              Mutation("float targets", lambda t: t.astype(float), TypeError),
              Mutation("a wrong length", lambda t: t[:3], ValueError)),
          ignore_index=(Mutation("a float", lambda v: -100.0, TypeError),))
for _f in ("scatter_add_rows", "scatter_add_rows_reference"):
    entry("kernels", _f, getattr(K_scatter, _f),
          lambda: dict(out=np.zeros((4, 2)), idx=np.array([0, 3, 3]), src=A(3, 2)),
          out=ARRAY[1:], src=ARRAY, idx=INDEX(4, negative_ok=True))
for _f in ("gather_weighted_rows", "gather_weighted_rows_reference"):
    entry("kernels", _f, getattr(K_read, _f),
          lambda: dict(V=A(5, 3), idx=np.array([[0, 4], [2, 2]]), w=A(2, 2)),
          V=ARRAY, w=ARRAY, idx=INDEX(5))
for _f in ("gather_weighted_rows_backward", "gather_weighted_rows_backward_reference"):
    entry("kernels", _f, getattr(K_read, _f),
          lambda: dict(V=A(5, 3), idx=np.array([[0, 4], [2, 2]]), w=A(2, 2), g=A(2, 3)),
          V=ARRAY, w=ARRAY, g=ARRAY, idx=INDEX(5))
for _f in ("scatter_weighted_rows", "scatter_weighted_rows_reference"):
    entry("kernels", _f, getattr(K_read, _f),
          lambda: dict(out=np.zeros((5, 3)), idx=np.array([[0, 4], [2, 2]]), w=A(2, 2),
                       g=A(2, 3)),
          w=ARRAY, g=ARRAY, idx=INDEX(5))
for _f in ("coalesce_rows", "coalesce_rows_reference"):
    entry("kernels", _f, getattr(K_rows, _f),
          lambda: dict(idx=np.array([[0, 4], [2, 2]]), w=A(2, 2), src=A(2, 3)),
          w=ARRAY, src=ARRAY,
          idx=(Mutation("float dtype", lambda a: a.astype(float), TypeError),
               Mutation("a negative index", lambda a: np.array([[-1, 4], [2, 2]]), ValueError)))
for _f in ("adam_rows", "adam_rows_reference"):
    entry("kernels", _f, getattr(K_rows, _f),
          lambda: dict(p=A(5, 3), m=np.zeros((5, 3)), v=np.zeros((5, 3)), rows=np.array([0, 4]),
                       g=A(2, 3), t=1, lr=1e-3),
          p=ARRAY[1:], g=ARRAY, rows=INDEX(5), t=INT(1), lr=POS_REAL)
for _f in ("topk_inner_product", "topk_inner_product_reference"):
    entry("kernels", _f, getattr(K_topk, _f),
          lambda: dict(queries=A(3, 4), keys=A(6, 4), k=2),
          queries=ARRAY, keys=ARRAY, k=(Mutation("k > N", lambda k: 7, ValueError),
                                        Mutation("zero", lambda k: 0, ValueError),
                                        Mutation("a float", lambda k: 2.0, ValueError)))
for _f in ("topk_rows", "topk_rows_reference"):
    entry("kernels", _f, getattr(K_ptopk, _f), lambda: dict(x=A(3, 6), k=2),
          x=ARRAY, k=(Mutation("k > n", lambda k: 7, ValueError),))
for _f in ("product_topk", "product_topk_reference"):
    entry("kernels", _f, getattr(K_ptopk, _f), lambda: dict(s1=A(3, 4), s2=A(3, 4), k=2),
          s1=ARRAY, s2=ARRAY, k=(Mutation("k > n^2", lambda k: 17, ValueError),))
for _f in ("row_norm_forward", "row_norm_forward_reference"):
    entry("kernels", _f, getattr(K_row, _f),
          lambda: dict(x=A(2, 4), gamma=A(4), beta=A(4), eps=1e-5),
          x=ARRAY[:3], gamma=ARRAY, eps=POS_REAL)
for _f in ("gelu_tanh_forward", "gelu_tanh_forward_reference"):
    entry("kernels", _f, getattr(K_gelu, _f), lambda: dict(x=A(2, 4)), x=ARRAY[:3])
for _f in ("dense_attention_forward", "dense_attention_forward_reference"):
    entry("kernels", _f, getattr(K_dense, _f),
          lambda: dict(q=A(1, 2, 4, 3), k=A(1, 2, 5, 3), v=A(1, 2, 5, 3), scale=None),
          q=ARRAY[:3], k=ARRAY[:3], v=ARRAY[:3], scale=FINITE_REAL)

# ---- chapters: hopfield, product_keys, sparse, segment
from minimem.memory import hopfield as H, product_keys as PK, segment as SG, sparse as SP  # noqa

_PM = lambda: np.sign(A(3, 8)) + (np.sign(A(3, 8)) == 0)

entry("hopfield", "hebbian_weights", H.hebbian_weights, lambda: dict(patterns=_PM()),
      patterns=(Mutation("one axis", lambda a: a[0], ValueError),
                Mutation("values other than +-1", lambda a: a * 0.5, ValueError)))
for _f in ("async_recall", "sync_recall"):
    entry("hopfield", _f, getattr(H, _f),
          lambda: dict(W=H.hebbian_weights(_PM()), b=np.zeros(8), probe=_PM()[0],
                       max_sweeps=5),
          W=(Mutation("not square", lambda w: w[:4], ValueError),),
          b=(Mutation("a wrong length", lambda b: b[:4], ValueError),),
          probe=(Mutation("a wrong length", lambda s: s[:4], ValueError),),
          max_sweeps=INT(1))
entry("hopfield", "classical_energy", H.classical_energy,
      lambda: dict(W=H.hebbian_weights(_PM()), b=np.zeros(8), s=_PM()[0]),
      s=(Mutation("a wrong length", lambda s: s[:4], ValueError),))
entry("hopfield", "DenseAssociativeMemory", H.DenseAssociativeMemory,
      lambda: dict(patterns=_PM(), F="poly", n=3), F=CHOICE, n=INT(1),
      patterns=(Mutation("one axis", lambda a: a[0], ValueError),))
for _f in ("hopfield_retrieve", "hopfield_retrieve_reference"):
    entry("hopfield", _f, getattr(H, _f),
          lambda: dict(queries=T(2, 4), stored=T(5, 4), beta=1.0, steps=1, softmax="softmax"),
          queries=(Mutation("complex dtype", lambda t: t.numpy().astype(complex), TypeError),
                   Mutation("a wrong feature size", lambda t: T(2, 3), ValueError)),
          stored=(Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError),
                  Mutation("no patterns (N = 0)", lambda t: T(0, 4), ValueError)),
          beta=POS_REAL, steps=INT(1), softmax=CHOICE)
entry("hopfield", "hopfield_energy", H.hopfield_energy,
      lambda: dict(queries=T(2, 4), stored=T(5, 4), beta=1.0),
      queries=(Mutation("a wrong feature size", lambda t: T(2, 3), ValueError),),
      beta=POS_REAL)
entry("hopfield", "separation", H.separation, lambda: dict(stored=A(3, 4)),
      stored=(Mutation("one pattern", lambda a: a[:1], ValueError),))
entry("hopfield", "softmax1", H.softmax1, lambda: dict(x=T(2, 3), axis=-1),
      x=(Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError),),
      axis=(Mutation("out of range", lambda a: 2, ValueError),))
for _cls in ("Hopfield", "HopfieldPooling"):
    entry("hopfield", _cls, getattr(H, _cls),
          lambda: dict(d_model=4, n_heads=1, beta=None, update_steps=1),
          d_model=INT(1), n_heads=INT(1), update_steps=INT(1), beta=POS_REAL)
entry("hopfield", "HopfieldLayer", H.HopfieldLayer, lambda: dict(d_model=4, n_stored=3),
      d_model=INT(1), n_stored=INT(1))
entry("hopfield", "ClassicalHopfield", H.ClassicalHopfield, lambda: dict(n_units=4),
      n_units=INT(1))

_q = lambda: T(3, 2, 4)
_C = lambda: T(2, 5, 4)
for _f in ("product_key_topk", "product_key_topk_reference", "flat_key_topk"):
    entry("product_keys", _f, getattr(PK, _f),
          lambda: dict(q1=_q(), q2=_q(), C1=_C(), C2=_C(), k=3),
          q1=(Mutation("int64 array", lambda t: t.numpy().astype(np.int64), TypeError),
              Mutation("a wrong feature size", lambda t: T(3, 2, 3), ValueError)),
          C1=(Mutation("a wrong head count", lambda t: T(3, 5, 4), ValueError),),
          k=(Mutation("k > n^2", lambda k: 26, ValueError), Mutation("zero", lambda k: 0,
                                                                     ValueError)))
for _f in ("memory_read", "memory_read_reference"):
    entry("product_keys", _f, getattr(PK, _f),
          lambda: dict(V=T(25, 3), slots=np.array([[[0, 24]], [[3, 3]]]), scores=T(2, 1, 2)),
          V=(Mutation("int64 array", lambda t: t.numpy().astype(np.int64), TypeError),),
          slots=INDEX(25), scores=(Mutation("a wrong shape", lambda t: T(2, 1, 3),
                                            ValueError),))
entry("product_keys", "weighted_read", PK.weighted_read,
      lambda: dict(V=T(5, 3), idx=np.array([[0, 4], [2, 2]]), w=T(2, 2)),
      V=(Mutation("int64 array", lambda t: t.numpy().astype(np.int64), TypeError),),
      idx=INDEX(5),
      w=(Mutation("a wrong shape", lambda t: T(2, 3), ValueError),))
entry("product_keys", "ProductKeyMemory", PK.ProductKeyMemory,
      lambda: dict(d_in=4, d_out=3, n_sub_keys=4, topk=2, heads=1, d_key=4, impl="fast",
                   query_norm="batch"),
      d_in=INT(1), n_sub_keys=INT(1), topk=INT(1) + (Mutation("topk > n^2", lambda k: 17,
                                                              ValueError),),
      heads=INT(1), impl=CHOICE, query_norm=CHOICE)

_lay = lambda: np.ones((2, 2), bool)
for _f in ("sparse_attention", "sparse_attention_dense"):
    entry("sparse", _f, getattr(SP, _f),
          lambda: dict(q=T(1, 2, 8, 4), k=T(1, 2, 8, 4), v=T(1, 2, 8, 4), layout=_lay(),
                       block_size=4, scale=None, causal=True),
          q=TENSOR_NDIM, k=(Mutation("a wrong head count", lambda t: T(1, 3, 8, 4),
                                     ValueError),),
          layout=(Mutation("a wrong grid", lambda l: np.ones((3, 2), bool), ValueError),
                  Mutation("an int layout", lambda l: l.astype(int), TypeError)),
          block_size=INT(1), scale=FINITE_REAL, causal=BOOL)
entry("sparse", "blockwise_attention", SP.blockwise_attention,
      lambda: dict(q=T(1, 2, 8, 4), k=T(1, 2, 8, 4), v=T(1, 2, 8, 4), block_size=4),
      q=TENSOR, block_size=INT(1))
entry("sparse", "partial_attention", SP.partial_attention,
      lambda: dict(q=T(1, 2, 8, 4), k=T(1, 2, 8, 4), v=T(1, 2, 8, 4)), q=TENSOR)
for _f, _kw in (("sparse_mask", dict(kind="local", T=8)), ("block_layout",
                                                           dict(kind="local", n_blocks=4))):
    entry("sparse", _f, getattr(SP, _f), (lambda kw: lambda: dict(kw))(_kw),
          kind=CHOICE, **{list(_kw)[1]: INT(1)})
entry("sparse", "fixed_mask", SP.fixed_mask, lambda: dict(T=8, l=4, c=1), T=INT(1), l=INT(1))
entry("sparse", "strided_mask", SP.strided_mask, lambda: dict(T=8, l=2), T=INT(1), l=INT(1))
entry("sparse", "mask_to_layout", SP.mask_to_layout,
      lambda: dict(mask=np.ones((8, 8), bool), block_size=4),
      mask=(Mutation("a float mask", lambda m: m.astype(float), TypeError),),
      block_size=INT(1))
entry("sparse", "expand_layout", SP.expand_layout,
      lambda: dict(layout=_lay(), block_size=4, T=8), block_size=INT(1), T=INT(1))
entry("sparse", "reachability", SP.reachability,
      lambda: dict(mask=np.ones((4, 4), bool), hops=2), hops=INT(1))
entry("sparse", "KNNMemory", SP.KNNMemory, lambda: dict(capacity=8, d_k=4, d_v=3),
      capacity=INT(1), d_k=INT(1))


def _knn_search(queries, topk):
    m = SP.KNNMemory(8, 4, 3, dtype=np.float64)
    m.add(A(1, 2, 5, 4), A(1, 2, 5, 3))
    return m.search(queries, topk)


entry("sparse", "KNNMemory.search", _knn_search, lambda: dict(queries=A(1, 2, 3, 4), topk=2),
      queries=(Mutation("a NaN entry", lambda a: np.where(a > 1, np.nan, a), ValueError),
               Mutation("int64 dtype", lambda a: a.astype(np.int64), TypeError),
               Mutation("a wrong feature size", lambda a: a[..., :3], ValueError)),
      topk=INT(1))
entry("sparse", "SparseAttention", SP.SparseAttention,
      lambda: dict(d_model=8, n_heads=2, pattern="fixed", block_size=4),
      d_model=INT(1), n_heads=INT(1), pattern=CHOICE, block_size=INT(1))

entry("segment", "biased_memory_normalization", SG.biased_memory_normalization,
      lambda: dict(memory=T(2, 3, 4), bias=T(3, 4), eps=1e-12),
      memory=TENSOR, bias=(Mutation("a shape that does not broadcast", lambda t: T(2, 4),
                                    ValueError),), eps=NONNEG_REAL)
entry("segment", "slot_write_mask", SG.slot_write_mask, lambda: dict(n_slots=3, seg_len=4),
      n_slots=INT(1), seg_len=INT(0))
entry("segment", "xl_attention_mask", SG.xl_attention_mask,
      lambda: dict(n_tokens=8, seg_len=4, mem_len=4), n_tokens=INT(0), seg_len=INT(1),
      mem_len=INT(0))
entry("segment", "XLAttention", SG.XLAttention,
      lambda: dict(d_model=8, n_heads=2, max_distance=4), d_model=INT(1), n_heads=INT(1),
      max_distance=INT(1))
entry("segment", "MemoryWriter", SG.MemoryWriter, lambda: dict(d_model=8, n_heads=2, n_slots=2),
      d_model=INT(1), n_heads=INT(1), n_slots=INT(1))
entry("segment", "TransformerXL", SG.TransformerXL,
      lambda: dict(vocab=10, d_model=8, n_layers=1, n_heads=2, seg_len=4, mem_len=4),
      vocab=INT(1), n_layers=INT(1), seg_len=INT(1), mem_len=INT(0))
entry("segment", "RecurrentMemoryTransformer", SG.RecurrentMemoryTransformer,
      lambda: dict(vocab=10, d_model=8, n_layers=1, n_heads=2, n_mem=2, max_len=8),
      vocab=INT(1), n_mem=INT(0), max_len=INT(1))
entry("segment", "Memformer", SG.Memformer,
      lambda: dict(vocab=10, d_model=8, n_layers=1, n_heads=2, n_slots=2, max_len=8),
      vocab=INT(1), n_slots=INT(1), max_len=INT(1))

# ---- tasks
from minimem import tasks

entry("tasks", "mqar", tasks.mqar,
      lambda: dict(vocab_size=64, seq_len=32, n_kv=4, n_examples=2, seed=0),
      vocab_size=INT(1), seq_len=INT(1), n_kv=INT(1), n_examples=INT(1),
      seed=(Mutation("a negative seed", lambda s: -1, TypeError),
            Mutation("a float seed", lambda s: 0.5, TypeError)))
entry("tasks", "passkey", tasks.passkey,
      lambda: dict(vocab_size=32, seq_len=16, n_examples=2), vocab_size=INT(1),
      seq_len=INT(1), n_examples=INT(1))
entry("tasks", "induction_heads", tasks.induction_heads,
      lambda: dict(vocab_size=32, seq_len=16, n_examples=2), vocab_size=INT(1),
      seq_len=INT(1), n_examples=INT(1))
for _f in ("copy_task", "reverse_task"):
    entry("tasks", _f, getattr(tasks, _f), lambda: dict(vocab_size=16, seq_len=16, n_examples=2),
          vocab_size=INT(1), seq_len=INT(1), n_examples=INT(1))


# ---- the command line (exit status and a message, never a traceback or a silent 0)
def _cli(argv):
    """Run ``minimem ARGV``: a non-zero exit with a message is this table's 'clear' error."""
    import contextlib
    import io

    from minimem.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
            rc = main(argv)
    except SystemExit as e:  # argparse: unknown verb, option or choice
        rc = e.code
        out = io.StringIO()
    if rc:
        msg = (err.getvalue() + out.getvalue()).strip().splitlines()
        raise ValueError("minimem: " + (msg[-1] if msg else f"exit status {rc}"))


entry("cli", "minimem", lambda argv: _cli(argv), lambda: dict(argv=["tour", "--help"]),
      argv=(Mutation("an unknown verb", lambda a: ["bogus"], ValueError),
            Mutation("gradcheck --chapter bogus", lambda a: ["gradcheck", "--chapter", "bogus"],
                     ValueError),
            Mutation("tour --only bogus", lambda a: ["tour", "--only", "bogus"], ValueError),
            Mutation("bench bogus", lambda a: ["bench", "bogus"], ValueError),
            Mutation("gradcheck --bogus", lambda a: ["gradcheck", "--bogus"], ValueError),
            Mutation("gradcheck --device tpu", lambda a: ["gradcheck", "--device", "tpu"],
                     ValueError),
            Mutation("exercises check with no ids", lambda a: ["exercises", "check"],
                     ValueError)))

from minimem.kernels import block_sparse_attention as K_bs

for _f in ("block_sparse_attention_forward", "block_sparse_attention_forward_reference"):
    entry("kernels", _f, getattr(K_bs, _f),
          lambda: dict(q=A(1, 2, 8, 4), k=A(1, 2, 8, 4), v=A(1, 2, 8, 4), layout=_lay(),
                       block_size=4, causal=True, scale=None),
          q=ARRAY[:3],
          k=ARRAY[:3] + (Mutation("more keys than the layout", lambda a: A(1, 2, 16, 4),
                                  ValueError),),
          layout=(Mutation("a wrong grid", lambda l: np.ones((2, 3), bool), ValueError),
                  Mutation("an int layout", lambda l: l.astype(int), TypeError)),
          block_size=INT(1), causal=BOOL, scale=FINITE_REAL)

# ---- chapters: delta, titans, reduction, associative; nn.rope; the state-tracking and
# segment tasks
from minimem.memory import associative as AS, delta as DL, reduction as RD, titans as TI  # noqa

_B, _H, _T, _D = 1, 2, 5, 3
_qkv = lambda: dict(q=T(_B, _H, _T, _D), k=T(_B, _H, _T, _D), v=T(_B, _H, _T, 2))
_beta = lambda: _t(np.full((_B, _H, _T), 0.5), True)
_g = lambda: _t(-np.abs(A(_B, _H, _T)) * 0.1, True)
# the delta chapter's functions take Tensors or arrays (a NumPy q is a valid input there)
ARRAY_OR_TENSOR = TENSOR_NDIM[1:] + (
    Mutation("a list", lambda t: t.tolist(), TypeError),
    Mutation("float16 dtype", lambda t: _retensor(t, np.float16), TypeError))
QKV = dict(q=ARRAY_OR_TENSOR,
           k=(Mutation("a shape that disagrees with q", lambda t: T(_B, _H, _T + 1, _D),
                       ValueError),
              Mutation("a wrong feature size", lambda t: T(_B, _H, _T, _D + 1), ValueError),
              Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError)),
           v=(Mutation("a wrong length", lambda t: T(_B, _H, _T + 1, 2), ValueError),
              Mutation("bool dtype", lambda t: _retensor(t, np.bool_), TypeError),
              Mutation("a list", lambda t: t.tolist(), TypeError)))
BETA = (Mutation("a wrong shape", lambda t: _t(np.full((_B, _H, _T + 1), 0.5)), ValueError),
        Mutation("a NaN entry", lambda t: _t(np.full((_B, _H, _T), np.nan)), ValueError),
        Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError))
G = (Mutation("a wrong shape", lambda t: _t(np.zeros((_B, _H, _T - 1))), ValueError),
     Mutation("a positive log-decay", lambda t: _t(np.ones((_B, _H, _T))), ValueError),
     Mutation("a NaN entry", lambda t: _t(np.full((_B, _H, _T), np.nan)), ValueError),
     Mutation("complex dtype", lambda t: _retensor(t, np.complex128), TypeError))
S0 = (Mutation("a wrong shape", lambda s: T(_B, _H, _D, 3), ValueError),
      Mutation("int64 dtype", lambda s: mm.Tensor(np.zeros((_B, _H, _D, 2), np.int64)),
               TypeError))
MODE = (Mutation("a misspelt mode", lambda m: "chunked", ValueError),)
# chunk_size / checkpoint: a count of tokens, an int >= 1 like every other count (a wrong
# kind a TypeError, a wrong value a ValueError; tests/memory/delta/test_delta_rule.py)
CHUNK = INT(1)
SCALE = (Mutation("NaN", lambda v: float("nan"), ValueError),
         Mutation("a str", lambda v: "1", TypeError),
         Mutation("complex", lambda v: 1j, TypeError))

for _f, _extra in (("linear_attention", {}), ("linear_attention_reference", {}),
                   ("gated_linear_attention", {"g": G}), ("gated_linear_attention_reference",
                                                          {"g": G}),
                   ("delta_rule", {"beta": BETA}), ("delta_rule_reference", {"beta": BETA}),
                   ("gated_delta_rule", {"beta": BETA, "g": G})):
    _fast = not _f.endswith("reference")

    def _valid(f=_f, fast=_fast):
        kw = _qkv()
        if "delta" in f:
            kw["beta"] = _beta()
        if "gated" in f:
            kw["g"] = _g()
        kw.update(scale=None, initial_state=T(_B, _H, _D, 2))
        if fast:
            kw.update(mode="chunk", chunk_size=2)
        return kw
    _bad = dict(QKV, scale=SCALE, initial_state=S0, **_extra)
    if _fast:
        _bad.update(mode=MODE, chunk_size=CHUNK)
    entry("delta", _f, getattr(DL, _f), _valid, **_bad)
for _f in ("linear_attention", "linear_attention_reference"):
    entry("delta", _f, getattr(DL, _f),
          lambda: dict(**_qkv(), feature_map="elu1", normalize=True, eps=1e-6),
          feature_map=(Mutation("a misspelt kind", lambda f: "elu2", ValueError),
                       Mutation("an int", lambda f: 3, TypeError)),
          normalize=BOOL, eps=NONNEG_REAL)
entry("delta", "linear_attention", DL.linear_attention,
      lambda: dict(**_qkv(), mode="recurrent", checkpoint=2),
      checkpoint=CHUNK)
entry("delta", "linear_attention", DL.linear_attention,
      lambda: dict(**_qkv(), mode="recurrent", chunk_size=None),
      chunk_size=(Mutation("a chunk_size with mode='recurrent'", lambda c: 2, ValueError),))
_n_h = 2
_dp = lambda: dict(q=T(_B, _H, _T, _D), k=T(_B, _H, _T, _n_h, _D), v=T(_B, _H, _T, _n_h, 2),
                   beta=_t(np.full((_B, _H, _T, _n_h), 0.5), True))
for _f in ("delta_product", "delta_product_reference"):
    entry("delta", _f, getattr(DL, _f), _dp,
          q=ARRAY_OR_TENSOR, k=(Mutation("a wrong n_h axis missing", lambda t: T(_B, _H, _T, _D),
                                     ValueError),
                            Mutation("int64 dtype", lambda t: _retensor(t, np.int64),
                                     TypeError)),
          v=(Mutation("a wrong n_h", lambda t: T(_B, _H, _T, 3, 2), ValueError),
             Mutation("float16 dtype", lambda t: _retensor(t, np.float16), TypeError)),
          beta=(Mutation("a wrong shape", lambda t: _t(np.full((_B, _H, _T), 0.5)),
                         ValueError),
                Mutation("a NaN entry", lambda t: _t(np.full((_B, _H, _T, _n_h), np.nan)),
                         ValueError)))
entry("delta", "delta_product", DL.delta_product,
      lambda: dict(**_dp(), g=_g(), mode="chunk", chunk_size=2),
      g=G, mode=MODE, chunk_size=CHUNK)
entry("delta", "feature_map", DL.feature_map, lambda: dict(x=T(1, 2, 3, 4), kind="dpfp"),
      x=ARRAY_OR_TENSOR[0:2] + ARRAY_OR_TENSOR[4:],  # any number of axes is valid
      kind=CHOICE + (Mutation("an int", lambda k: 3, TypeError),))
entry("delta", "feature_map", lambda x, nu: DL.feature_map(x, "dpfp", nu=nu),
      lambda: dict(x=T(1, 2, 3, 4), nu=2), nu=INT(1))
entry("delta", "feature_dim", DL.feature_dim, lambda: dict(kind="dpfp", d=4),
      kind=CHOICE, d=INT(1))
entry("delta", "transition_matrix", DL.transition_matrix, lambda: dict(k=A(3), beta=0.5),
      k=(Mutation("a matrix", lambda a: A(3, 3), ValueError),
         Mutation("int64 dtype", lambda a: a.astype(np.int64), TypeError)),
      beta=(Mutation("NaN", lambda b: float("nan"), ValueError),
            Mutation("a str", lambda b: "1", TypeError)))
entry("delta", "householder_product", DL.householder_product,
      lambda: dict(k=A(2, 3), beta=np.array([0.5, 1.0])),
      k=(Mutation("one axis", lambda a: A(3), ValueError),
         Mutation("int64 dtype", lambda a: a.astype(np.int64), TypeError)),
      beta=(Mutation("a wrong length", lambda b: b[:1], ValueError),
            Mutation("a NaN entry", lambda b: np.array([np.nan, 1.0]), ValueError)))
entry("delta", "ut_transform", DL.ut_transform,
      lambda: dict(k=A(4, 3), v=A(4, 2), beta=np.full(4, 0.5)),
      k=ARRAY, v=(Mutation("a wrong length", lambda a: A(3, 2), ValueError),),
      beta=(Mutation("a wrong length", lambda a: np.full(3, 0.5), ValueError),
            Mutation("a NaN entry", lambda a: np.full(4, np.nan), ValueError)))
entry("delta", "unit_lower_inverse", DL.unit_lower_inverse, lambda: dict(A=T(4, 4)),
      A=TENSOR + (Mutation("not square", lambda t: T(4, 3), ValueError),
                  Mutation("one axis", lambda t: T(4), ValueError)))
entry("delta", "chunk_recurrence", DL.chunk_recurrence,
      lambda: dict(**_qkv(), beta=_beta(), g=None, S0=None, scale=0.5, chunk_size=2),
      chunk_size=INT(1), scale=SCALE, beta=BETA)
entry("delta", "retention_decays", DL.retention_decays, lambda: dict(n_heads=4), n_heads=INT(1))
for _cls in ("DeltaNet", "GatedDeltaNet", "LinearAttention", "DeltaProductNet",
             "GatedLinearAttention", "Retention"):
    entry("delta", _cls, getattr(DL, _cls),
          lambda: dict(d_model=8, n_heads=2, conv_size=4, mode="chunk", chunk_size=2),
          d_model=INT(1), n_heads=INT(1) + (Mutation("not dividing d_model", lambda h: 3,
                                                     ValueError),),
          conv_size=INT(0), mode=MODE, chunk_size=CHUNK)
    entry("delta", f"{_cls}.forward", (lambda c: lambda x: getattr(DL, c)(8, 2, seed=0)(x))(_cls),
          lambda: dict(x=T(1, 5, 8)),
          x=TENSOR_NDIM + (Mutation("a wrong d_model", lambda t: T(1, 5, 6), ValueError),))
entry("delta", "DeltaProductNet", DL.DeltaProductNet,
      lambda: dict(d_model=8, n_heads=2, n_householder=2), n_householder=INT(1))
entry("delta", "ShortConvolution", DL.ShortConvolution, lambda: dict(d=4, kernel_size=3),
      d=INT(1), kernel_size=INT(1))
entry("delta", "ShortConvolution.forward", lambda x: DL.ShortConvolution(4, 3, seed=0)(x),
      lambda: dict(x=T(1, 5, 4)),
      x=TENSOR_NDIM + (Mutation("a wrong channel count", lambda t: T(1, 5, 3), ValueError),))

# titans
_gates = lambda: dict(theta=_t(np.full((_B, _H, _T), 0.1), True),
                      eta=_t(np.full((_B, _H, _T), 0.5), True),
                      alpha=_t(np.full((_B, _H, _T), 0.1), True))
GATE = (Mutation("a wrong shape", lambda t: _t(np.full((_B, _H, _T + 1), 0.1)), ValueError),
        Mutation("a NaN entry", lambda t: _t(np.full((_B, _H, _T), np.nan)), ValueError),
        Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError))
_lin = lambda: (T(_B, _H, _D, _D),)
PARAMS0 = (Mutation("a wrong shape", lambda p: (T(_B, _H, _D, _D + 1),), ValueError),
           Mutation("too many matrices", lambda p: (p[0], p[0]), ValueError),
           Mutation("a NumPy array", lambda p: (p[0].numpy(),), TypeError),
           Mutation("a bare Tensor", lambda p: p[0], TypeError))
_tqkv = lambda: dict(q=T(_B, _H, _T, _D), k=T(_B, _H, _T, _D), v=T(_B, _H, _T, _D))
TQKV = dict(q=TENSOR_NDIM, k=(Mutation("a shape that disagrees with q",
                                       lambda t: T(_B, _H, _T + 1, _D), ValueError),
                              Mutation("float16 dtype", lambda t: _retensor(t, np.float16),
                                       TypeError)),
            v=(Mutation("a wrong length", lambda t: T(_B, _H, _T + 1, _D), ValueError),
               Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError)))
for _f in ("neural_memory", "neural_memory_reference", "omega_memory",
           "omega_memory_reference"):
    entry("titans", _f, getattr(TI, _f),
          lambda: dict(**_tqkv(), **_gates(), params0=_lin(), memory="linear", chunk_size=2),
          theta=GATE, eta=GATE, alpha=GATE, params0=PARAMS0, memory=CHOICE,
          chunk_size=INT(1), **TQKV)
for _f in ("omega_memory", "omega_memory_reference"):
    entry("titans", _f, getattr(TI, _f),
          lambda: dict(**_tqkv(), **_gates(), params0=_lin(), window=2, gamma=None,
                       optimizer="muon"),
          window=INT(1), optimizer=CHOICE,
          gamma=(Mutation("a wrong shape", lambda g: _t(np.ones((_B, _H, _T + 1, 2))),
                          ValueError),
                 Mutation("a float", lambda g: 0.5, TypeError)))
entry("titans", "newton_schulz", TI.newton_schulz, lambda: dict(G=T(3, 4), steps=5, eps=1e-7),
      G=TENSOR + (Mutation("one axis", lambda t: T(4), ValueError),), steps=INT(0),
      eps=POS_REAL)
entry("titans", "memory_gradient", TI.memory_gradient,
      lambda: dict(memory="linear", params=_lin(), k_t=T(_B, _H, _D), v_t=T(_B, _H, _D)),
      memory=CHOICE, params=PARAMS0[:1],
      k_t=(Mutation("a wrong feature size", lambda t: T(_B, _H, _D + 1), ValueError),),
      v_t=(Mutation("a wrong feature size", lambda t: T(_B, _H, _D + 1), ValueError),))
entry("titans", "read_memory", TI.read_memory,
      lambda: dict(memory="linear", params=_lin(), x=T(_B, _H, _D)),
      memory=CHOICE, x=(Mutation("a wrong feature size", lambda t: T(_B, _H, _D + 1),
                                 ValueError),
                        Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError)))
entry("titans", "titans_as_gated_delta", TI.titans_as_gated_delta,
      lambda: dict(**_tqkv(), theta=_gates()["theta"], alpha=_gates()["alpha"]),
      theta=GATE, alpha=GATE, **TQKV)
entry("titans", "window_mask", TI.window_mask, lambda: dict(T=6, window=2, n_prefix=1),
      T=INT(0), window=INT(1), n_prefix=INT(0))
entry("titans", "mac_mask", TI.mac_mask, lambda: dict(c=4, n_persistent=1), c=INT(1),
      n_persistent=INT(0))
entry("titans", "NeuralMemory", TI.NeuralMemory,
      lambda: dict(d_model=4, n_heads=1, memory="mlp", hidden=2, theta_max=1.0, chunk_size=2),
      d_model=INT(1), n_heads=INT(1), memory=CHOICE, hidden=INT(1), theta_max=NONNEG_REAL,
      chunk_size=INT(1))
entry("titans", "SlidingWindowAttention", TI.SlidingWindowAttention,
      lambda: dict(d_model=4, n_heads=2, window=2, n_persistent=1),
      d_model=INT(1), n_heads=INT(1) + (Mutation("not dividing d_model", lambda h: 3,
                                                 ValueError),),
      window=INT(1), n_persistent=INT(0))
for _cls, _w in (("TitansMAC", "segment"), ("TitansMAG", "window"), ("TitansMAL", "window")):
    entry("titans", _cls, getattr(TI, _cls),
          (lambda w: lambda: {"d_model": 4, "n_heads": 2, w: 2, "n_persistent": 1,
                              "memory": "linear", "chunk_size": 1, "theta_max": 1.0})(_w),
          d_model=INT(1), n_heads=INT(1), n_persistent=INT(0), memory=CHOICE,
          chunk_size=INT(1), theta_max=NONNEG_REAL, **{_w: INT(1)})
for _cls, _w in (("NeuralMemory", {}), ("SlidingWindowAttention", {"window": 2}),
                 ("TitansMAC", {"segment": 2}), ("TitansMAG", {"window": 2}),
                 ("TitansMAL", {"window": 2})):
    entry("titans", f"{_cls}.forward",
          (lambda c, w: lambda x: getattr(TI, c)(4, 2, seed=0, **w)(x))(_cls, _w),
          lambda: dict(x=T(1, 5, 4)),
          x=TENSOR_NDIM + (Mutation("a wrong d_model", lambda t: T(1, 5, 6), ValueError),))
entry("titans", "TitansLM", TI.TitansLM,
      lambda: dict(vocab=10, d_model=4, n_layers=1, n_heads=2, max_len=8, variant="mac",
                   window=2, n_persistent=1),
      vocab=INT(1), n_layers=INT(1), max_len=INT(1), variant=CHOICE, window=INT(1))
entry("titans", "TitansLM.forward",
      lambda tokens: TI.TitansLM(10, 4, 1, 2, 8, window=2, n_persistent=1, seed=0)(tokens),
      lambda: dict(tokens=np.array([[1, 2, 3, 9]])),
      tokens=INDEX(10) + (Mutation("longer than max_len", lambda a: np.zeros((1, 9), int),
                                   ValueError),
                          Mutation("one axis", lambda a: a[0], ValueError)))

# reduction
_pq = lambda: dict(q=T(1, 2, 3), k=T(1, 2, 5, 3), v=T(1, 2, 5, 2))
DECODE = dict(q=(Mutation("a NumPy array", lambda t: t.numpy(), TypeError),
                 Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError),
                 Mutation("float16 dtype", lambda t: _retensor(t, np.float16), TypeError),
                 Mutation("a wrong feature size", lambda t: T(1, 2, 4), ValueError)))
entry("reduction", "prefix_attention", RD.prefix_attention,
      lambda: dict(**_pq(), scale=None, mode="scan"),
      k=(Mutation("a wrong head count", lambda t: T(1, 3, 5, 3), ValueError),
         Mutation("complex dtype", lambda t: _retensor(t, np.complex128), TypeError)),
      v=(Mutation("a wrong length", lambda t: T(1, 2, 4, 2), ValueError),),
      scale=SCALE + (Mutation("zero", lambda s: 0.0, ValueError),), mode=MODE, **DECODE)
entry("reduction", "split_kv_decode", RD.split_kv_decode,
      lambda: dict(q=T(1, 2, 3), k_cache=T(1, 2, 7, 3), v_cache=T(1, 2, 7, 2), n_splits=3,
                   scale=None),
      n_splits=INT(1) + (Mutation("n_splits > T", lambda n: 8, ValueError),),
      k_cache=(Mutation("a wrong head count", lambda t: T(1, 3, 7, 3), ValueError),
               Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError),
               Mutation("an empty cache (T = 0)", lambda t: T(1, 2, 0, 3), ValueError)),
      v_cache=(Mutation("a wrong length", lambda t: T(1, 2, 6, 2), ValueError),),
      scale=SCALE, **DECODE)
_rq = lambda: dict(q=T(1, 2, 6, 3), k=T(1, 2, 6, 3), v=T(1, 2, 6, 2))
RQKV = dict(q=TENSOR_NDIM, k=(Mutation("a wrong length", lambda t: T(1, 2, 5, 3), ValueError),),
            v=(Mutation("float16 dtype", lambda t: _retensor(t, np.float16), TypeError),))
entry("reduction", "ring_attention_simulated", RD.ring_attention_simulated,
      lambda: dict(**_rq(), n_devices=3, causal=True, scale=None),
      n_devices=INT(1) + (Mutation("not dividing T", lambda n: 4, ValueError),),
      causal=BOOL, scale=SCALE, **RQKV)
entry("reduction", "ring_attention", RD.ring_attention,
      lambda: dict(**_rq(), causal=True, scale=None), causal=BOOL, scale=SCALE, **RQKV)
entry("reduction", "ring_schedule", RD.ring_schedule, lambda: dict(n_devices=3, causal=True),
      n_devices=INT(1), causal=BOOL)
entry("reduction", "causal_block_counts", RD.causal_block_counts, lambda: dict(n_devices=3),
      n_devices=INT(1))
entry("reduction", "landmark_attention", RD.landmark_attention,
      lambda: dict(q=T(1, 2, 9, 3), k=T(1, 2, 9, 3), v=T(1, 2, 9, 2), block=2, top_k=1,
                   scale=None),
      q=TENSOR_NDIM, k=(Mutation("a wrong length", lambda t: T(1, 2, 8, 3), ValueError),),
      block=INT(1), top_k=INT(1), scale=SCALE)
entry("reduction", "landmark_decode", RD.landmark_decode,
      lambda: dict(q=T(1, 2, 3), k_cache=T(1, 2, 11, 3), v_cache=T(1, 2, 11, 2), block=2,
                   top_k=2),
      k_cache=(Mutation("a wrong head count", lambda t: T(1, 3, 11, 3), ValueError),),
      v_cache=(Mutation("a wrong length", lambda t: T(1, 2, 10, 2), ValueError),),
      block=INT(1), top_k=INT(1), **DECODE)
entry("reduction", "blockwise_block", RD.blockwise_block,
      lambda: dict(block=nn.TransformerBlock(4, 2, d_ff=6, seed=0), x=T(1, 4, 4),
                   query_block=2, key_block=2),
      block=(Mutation("not a TransformerBlock", lambda b: object(), TypeError),),
      x=TENSOR_NDIM + (Mutation("a wrong d_model", lambda t: T(1, 4, 6), ValueError),),
      query_block=INT(1), key_block=INT(1))
entry("reduction", "Aaren", RD.Aaren, lambda: dict(d_model=4, n_heads=2, mode="scan"),
      d_model=INT(1), n_heads=INT(1) + (Mutation("not dividing d_model", lambda h: 3,
                                                 ValueError),), mode=MODE)
entry("reduction", "LandmarkAttention", RD.LandmarkAttention,
      lambda: dict(d_model=4, n_heads=2, block=2, top_k=1), d_model=INT(1), n_heads=INT(1),
      block=INT(1), top_k=INT(1))
for _cls, _kw in (("Aaren", {}), ("LandmarkAttention", {"block": 2})):
    entry("reduction", f"{_cls}.forward",
          (lambda c, kw: lambda x: getattr(RD, c)(4, 2, seed=0, **kw)(x))(_cls, _kw),
          lambda: dict(x=T(1, 5, 4)),
          x=TENSOR_NDIM + (Mutation("a wrong d_model", lambda t: T(1, 5, 6), ValueError),))
entry("reduction", "LandmarkLM", RD.LandmarkLM,
      lambda: dict(vocab=10, d_model=4, n_layers=1, n_heads=2, block=2, top_k=1),
      vocab=INT(1), n_layers=INT(1), block=INT(1), top_k=INT(1))
entry("reduction", "LandmarkLM.forward",
      lambda tokens: RD.LandmarkLM(10, 4, 1, 2, 2, seed=0)(tokens),
      lambda: dict(tokens=np.array([[1, 2, 3, 9]])),
      tokens=INDEX(10) + (Mutation("one axis", lambda a: a[0], ValueError),))

# associative
_Bs, _N, _P, _V = 2, 3, 6, 4
_wr = lambda: dict(A=T(_Bs, _P, _V), z=_t(np.full((_Bs, _P), 0.2), True),
                   k=_t(np.full((_Bs, _N, _P), 0.5), True), v=T(_Bs, _N, _V),
                   beta=_t(np.full((_Bs, _N), 0.5), True), eps=1e-5)
for _f in ("associative_write", "associative_write_reference"):
    entry("associative", _f, getattr(AS, _f), _wr,
          A=TENSOR_NDIM, z=(Mutation("a wrong length", lambda t: T(_Bs, _P + 1), ValueError),
                            Mutation("int64 dtype", lambda t: _retensor(t, np.int64),
                                     TypeError)),
          k=(Mutation("a wrong feature size", lambda t: T(_Bs, _N, _P + 1), ValueError),
             Mutation("float16 dtype", lambda t: _retensor(t, np.float16), TypeError)),
          v=(Mutation("a wrong count", lambda t: T(_Bs, _N + 1, _V), ValueError),),
          beta=(Mutation("a wrong shape", lambda t: T(_Bs, _N + 1), ValueError),
                Mutation("a NumPy array", lambda t: t.numpy(), TypeError)),
          eps=POS_REAL)
entry("associative", "associative_read", AS.associative_read,
      lambda: dict(A=T(_Bs, _P, _V), z=_t(np.full((_Bs, _P), 0.2)),
                   q=_t(np.full((_Bs, 5, _P), 0.5)), eps=1e-5),
      A=TENSOR_NDIM, z=(Mutation("a wrong length", lambda t: T(_Bs, _P + 1), ValueError),),
      q=(Mutation("a wrong feature size", lambda t: T(_Bs, 5, _P + 1), ValueError),
         Mutation("int64 dtype", lambda t: _retensor(t, np.int64), TypeError)),
      eps=POS_REAL)
entry("associative", "normalizer_gain", AS.normalizer_gain,
      lambda: dict(z=_t(np.full((_Bs, _P), 0.2)), k=_t(np.full((_Bs, _N, _P), 0.5)), eps=1e-5),
      z=TENSOR, k=(Mutation("a wrong feature size", lambda t: T(_Bs, _N, _P + 1), ValueError),),
      eps=POS_REAL)
entry("associative", "fam_mask", AS.fam_mask, lambda: dict(n_fam=2, seg_len=3),
      n_fam=INT(0), seg_len=INT(0))
entry("associative", "AssociativeMemory", AS.AssociativeMemory,
      lambda: dict(d_model=4, d_key=2, nu=3, eps=1e-5, normalize=True), d_model=INT(1),
      d_key=INT(1), nu=INT(1), eps=POS_REAL, normalize=BOOL)
entry("associative", "GatedRecurrentCache", AS.GatedRecurrentCache,
      lambda: dict(d_model=4, n_cache=2), d_model=INT(1), n_cache=INT(1))
entry("associative", "GatedRecurrentCache.forward",
      lambda cache, x: AS.GatedRecurrentCache(4, 2, seed=0)(cache, x),
      lambda: dict(cache=T(2, 2, 4), x=T(2, 3, 4)),
      cache=TENSOR_NDIM + (Mutation("a wrong cache size", lambda t: T(2, 3, 4), ValueError),),
      x=(Mutation("a wrong batch", lambda t: T(3, 3, 4), ValueError),
         Mutation("a wrong d_model", lambda t: T(2, 3, 5), ValueError)))
entry("associative", "LM2MemoryUpdate", AS.LM2MemoryUpdate, lambda: dict(d_model=4, n_heads=2),
      d_model=INT(1), n_heads=INT(1) + (Mutation("not dividing d_model", lambda h: 3,
                                                 ValueError),))
entry("associative", "LM2Layer", AS.LM2Layer, lambda: dict(d_model=4, n_heads=2, d_ff=6),
      d_model=INT(1), n_heads=INT(1), d_ff=INT(1))
entry("associative", "CachedLayer", AS.CachedLayer,
      lambda: dict(d_model=4, n_heads=2, n_cache=2, d_ff=6), d_model=INT(1), n_heads=INT(1),
      n_cache=INT(1), d_ff=INT(1))
_seg = lambda: [(np.array([[1, 2, 3]]), np.array([[2, 3, 4]]))] * 2
for _cls, _kw, _mem in (("ARMT", dict(n_mem=2, d_key=2, normalize=True), "n_mem"),
                        ("LM2", dict(n_slots=2), "n_slots"),
                        ("CachedTransformer", dict(n_cache=2), "n_cache"),
                        ("TransformerFAM", dict(n_fam=2), "n_fam")):
    entry("associative", _cls, getattr(AS, _cls),
          (lambda kw: lambda: dict(vocab=5, d_model=4, n_layers=1, n_heads=2, max_len=3,
                                   d_ff=6, **kw))(_kw),
          vocab=INT(1), d_model=INT(1), n_layers=INT(1), max_len=INT(1), d_ff=INT(1),
          n_heads=INT(1) + (Mutation("not dividing d_model", lambda h: 3, ValueError),),
          **{_mem: INT(1)}, **({"normalize": BOOL} if _cls == "ARMT" else {}))
    entry("associative", f"{_cls}.forward",
          (lambda c, kw: lambda segments: getattr(AS, c)(5, 4, 1, 2, max_len=3, d_ff=6,
                                                         seed=0, **kw)(segments))(_cls, _kw),
          lambda: dict(segments=[np.array([[1, 2, 3]]), np.array([[4, 0, 1]])]),
          segments=(Mutation("a token past the vocabulary", lambda s: [np.array([[1, 2, 5]])],
                             ValueError),
                    Mutation("a negative token", lambda s: [np.array([[1, -1, 3]])],
                             ValueError),
                    Mutation("float tokens (B, T)", lambda s: [np.ones((1, 3))], ValueError),
                    Mutation("a segment longer than max_len", lambda s: [np.ones((1, 4), int)],
                             ValueError),
                    Mutation("an empty list", lambda s: [], ValueError),
                    Mutation("segments of different batch", lambda s: [s[0], np.ones((2, 3),
                                                                                     int)],
                             ValueError)))

# nn.rope
entry("nn", "rope", nn.rope, lambda: dict(x=T(1, 2, 4, 6), positions=np.array([0, 3, 1, 7]),
                                          base=10000.0),
      x=TENSOR + (Mutation("an odd D", lambda t: T(1, 2, 4, 5), ValueError),
                  Mutation("one axis", lambda t: T(6), ValueError),
                  Mutation("float16 dtype", lambda t: _retensor(t, np.float16), TypeError)),
      positions=(Mutation("a wrong length", lambda p: p[:3], ValueError),
                 Mutation("float dtype", lambda p: p.astype(float), TypeError)),
      base=(Mutation("NaN", lambda b: float("nan"), ValueError),
            Mutation("one", lambda b: 1.0, ValueError), Mutation("a str", lambda b: "1",
                                                                 TypeError)))
entry("nn", "MultiHeadAttention", nn.MultiHeadAttention,
      lambda: dict(d_model=8, n_heads=2, rope=True), rope=BOOL)

# tasks: state tracking and segments
TARGETS = (Mutation("a misspelt option", lambda v: "every", ValueError),)
entry("tasks", "modular_counting", tasks.modular_counting,
      lambda: dict(n_examples=2, seq_len=5, modulus=3, seed=0, targets="all"),
      n_examples=INT(1), seq_len=INT(1), modulus=INT(2), targets=TARGETS,
      seed=(Mutation("a float seed", lambda s: 0.5, TypeError),))
entry("tasks", "parity", tasks.parity, lambda: dict(n_examples=2, seq_len=5, targets="last"),
      n_examples=INT(1), seq_len=INT(1), targets=TARGETS)
entry("tasks", "permutation_word", tasks.permutation_word,
      lambda: dict(n_examples=2, seq_len=5, n=3, targets="all"),
      n_examples=INT(1), seq_len=INT(1), n=INT(2), targets=TARGETS)
entry("tasks", "permutations", tasks.permutations, lambda: dict(n=3), n=INT(1))
entry("tasks", "associative_retrieval", tasks.associative_retrieval,
      lambda: dict(n_pairs=4, batch=2, pairs_per_segment=2, n_gap=1, n_keys=8, n_values=8,
                   n_queries=2),
      n_pairs=INT(1), batch=INT(1), pairs_per_segment=INT(1), n_gap=INT(0),
      n_keys=INT(1) + (Mutation("fewer keys than pairs", lambda k: 3, ValueError),),
      n_values=INT(2), n_queries=INT(1) + (Mutation("more queries than pairs", lambda q: 5,
                                                    ValueError),))
entry("tasks", "retrieval_vocab", tasks.retrieval_vocab, lambda: dict(n_keys=8, n_values=8),
      n_keys=INT(1), n_values=INT(2))
entry("tasks", "facts_vocab", tasks.facts_vocab,
      lambda: dict(n_entities=4, n_places=4, n_noise=8), n_entities=INT(1), n_places=INT(2),
      n_noise=INT(1))
entry("tasks", "facts_in_noise", tasks.facts_in_noise,
      lambda: dict(n_facts=3, n_segments=3, seg_len=8, batch=2, n_entities=4, n_places=4,
                   n_noise=8, n_questions=2),
      n_facts=INT(1) + (Mutation("more facts than places for them", lambda f: 100,
                                 ValueError),),
      n_segments=INT(2), seg_len=INT(2), batch=INT(1), n_entities=INT(1), n_places=INT(2),
      n_noise=INT(1), n_questions=INT(1) + (Mutation("more questions than entities",
                                                     lambda q: 5, ValueError),))


# ---- training figures (chapter 01): MQAR circuit scores and several runs' curves
from minimem import viz_training  # noqa: E402


def _mqar_lm():
    return nn.TransformerLM(vocab=16, d_model=8, n_layers=2, n_heads=2, max_len=12, seed=0)


def _mqar_data():
    return tasks.mqar(16, 12, 2, 3, seed=0)


def _history():
    return {"step": [1, 2], "loss": [1.0, 0.5], "eval_step": [2], "eval_acc": [0.5]}


entry("nn", "induction_scores", viz_training.induction_scores,
      lambda: dict(model=_mqar_lm(), inputs=_mqar_data()[0], targets=_mqar_data()[1],
                   n_kv=2),
      model=(Mutation("not a TransformerLM", lambda m: object(), TypeError),),
      inputs=(Mutation("float tokens", lambda x: x.astype(np.float64), TypeError),
              Mutation("a shape unlike targets", lambda x: x[:, :-1], ValueError)),
      targets=(Mutation("no query", lambda y: np.full_like(y, -100), ValueError),),
      n_kv=INT_IN(1, 6))
entry("nn", "plot_histories", viz_training.plot_histories,
      lambda: dict(histories=[_history(), _history()], labels=["a", "b"]),
      histories=(Mutation("empty", lambda h: [], ValueError),
                 Mutation("not fit's output", lambda h: [{"step": [1]}], ValueError)),
      labels=(Mutation("one label too few", lambda l: ["a"], ValueError),))
