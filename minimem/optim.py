r"""Optimizers and learning-rate schedules (PyTorch's names and semantics).

* SGD with momentum: :math:`b \leftarrow \mu b + g`, :math:`\theta \leftarrow \theta - \eta b`.
* Adam: :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`, :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
  :math:`\hat m = m / (1-\beta_1^t)`, :math:`\hat v = v / (1-\beta_2^t)`,
  :math:`\theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)`;
  ``weight_decay`` adds :math:`\lambda\theta` to g (L2).
* AdamW: the same step, with decoupled decay :math:`\theta \leftarrow \theta (1 - \eta\lambda)` first.
* SparseAdam: the Adam step on the rows present in a row-sparse gradient only (lazy: the
  moments of the other rows are not decayed that step); on a dense gradient, plain Adam.

Row-sparse gradients (:class:`~minimem.autograd.sparse.RowSparseGrad`, from
``sparse_grad=True`` memory reads and ``Embedding(sparse=True)``): ``SGD`` without momentum or
weight decay and ``SparseAdam`` update only the rows present, in place, at a cost proportional
to those rows; every other combination applies the dense rule to the dense gradient (exact, at
the cost of the whole table).
"""
from __future__ import annotations

import math

from .autograd.sparse import RowSparseGrad
from .backend import get_xp
from .kernels.sparse_rows import adam_rows
from .kernels.weighted_read import scatter_weighted_rows


class Optimizer:
    def __init__(self, params, lr):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: lr must be > 0, got {lr}")
        for i, p in enumerate(params):
            if not getattr(p, "requires_grad", False):
                raise TypeError(
                    f"{type(self).__name__}: params[{i}] is not a tensor that requires grad"
                )
        self.params, self.lr, self.state = params, lr, {}

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        for p in self.params:
            if p.grad is not None:
                g = p.grad if isinstance(p.grad, RowSparseGrad) else p.grad.data
                self._update(p, g, self.state.setdefault(id(p), {}))

    def _update(self, p, g, state):
        raise TypeError(f"{type(self).__name__} (an Optimizer) must define _update()")


class SGD(Optimizer):
    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov

    def _update(self, p, g, state):
        if isinstance(g, RowSparseGrad):
            if not (self.weight_decay or self.momentum):
                # theta[r] -= lr * u for every pair (r, u): only the rows present move
                g = g.astype(p.dtype)
                scatter_weighted_rows(_table_rows(p), g.idx, g.w, -self.lr * g.src)
                return
            g = g.to_dense()   # momentum and weight decay change every row
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if self.momentum:
            buf = state.get("momentum")
            buf = g.copy() if buf is None else self.momentum * buf + g
            state["momentum"] = buf
            g = g + self.momentum * buf if self.nesterov else buf
        p.data = p.data - self.lr * g


class Adam(Optimizer):
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"{type(self).__name__}: betas must lie in [0, 1), got {betas}")
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

    def _update(self, p, g, state):
        xp = get_xp(p.data)
        if isinstance(g, RowSparseGrad):
            g = g.to_dense()   # Adam decays the moments of every row, every step
        beta1, beta2 = self.betas
        if self.weight_decay and self.decoupled:
            p.data = p.data * (1 - self.lr * self.weight_decay)
        elif self.weight_decay:
            g = g + self.weight_decay * p.data
        if not state:
            state.update(step=0, m=xp.zeros_like(p.data), v=xp.zeros_like(p.data))
        state["step"] += 1
        t, m, v = state["step"], state["m"], state["v"]
        # Exercise 1.2 (2 pt): the Adam update of the moments m, v (in place) and of p.data,
        # with bias correction (see the module docstring).
        ### BEGIN SOLUTION
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        # m_hat / (sqrt(v_hat) + eps) with the bias corrections folded into two scalars,
        # so the big arrays see as few passes as possible.
        denom = xp.sqrt(v)
        denom *= 1 / math.sqrt(1 - beta2 ** t)
        denom += self.eps
        p.data = p.data - (self.lr / (1 - beta1 ** t)) * (m / denom)
        ### END SOLUTION


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01, as in PyTorch)."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


class SparseAdam(Adam):
    """Lazy Adam for row-sparse gradients (PyTorch's ``SparseAdam``; Lample et al. update
    product-key memory values this way): each step updates m, v and the parameter only in the
    rows present in the gradient (repeats summed first), with the bias correction of the global
    step count t; rows absent from a step keep their moments. On a dense gradient every row is
    present and the step is plain Adam. The row updates are in place on ``p.data``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr, betas, eps, weight_decay=0.0)

    def _update(self, p, g, state):
        if not isinstance(g, RowSparseGrad):
            return super()._update(p, g, state)
        if not state:
            xp = get_xp(p.data)
            state.update(step=0, m=xp.zeros_like(p.data), v=xp.zeros_like(p.data))
        state["step"] += 1
        g = g.coalesce().astype(p.dtype)
        m, v = state["m"], state["v"]
        adam_rows(_table_rows(p), m.reshape(m.shape[0], -1), v.reshape(v.shape[0], -1),
                  g.indices, g.src, state["step"], self.lr, self.betas, self.eps)


def _table_rows(p):
    """``p.data`` as a 2-D (rows, rest) view that in-place row updates write through."""
    if not p.data.flags.c_contiguous:
        p.data = get_xp(p.data).ascontiguousarray(p.data)
    return p.data.reshape(p.data.shape[0], -1)


def clip_grad_norm_(params, max_norm):
    """Scale all gradients so their global L2 norm is at most ``max_norm``; returns the norm.

    Row-sparse gradients are coalesced (repeated rows summed, as the norm needs) and stay
    row-sparse."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    squares = 0.0
    for p in params:
        if isinstance(p.grad, RowSparseGrad):
            p.grad = p.grad.coalesce()
            squares += p.grad.sum_of_squares()
        else:
            squares += float((p.grad.data.astype("float64") ** 2).sum())
    total = math.sqrt(squares)
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            if isinstance(p.grad, RowSparseGrad):
                p.grad = p.grad * scale
            else:
                p.grad.data = p.grad.data * scale
    return total


def warmup_cosine(step, total_steps, warmup_steps=0, min_ratio=0.0):
    """The learning-rate multiplier: linear warm-up to 1, then cosine decay to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosine:
    """Schedule an optimizer's ``lr``: call ``.step()`` once per training step."""

    def __init__(self, optimizer, total_steps, warmup_steps=0, min_ratio=0.0):
        self.optimizer, self.base_lr = optimizer, optimizer.lr
        self.total_steps, self.warmup_steps, self.min_ratio = total_steps, warmup_steps, min_ratio
        self.t = 0
        optimizer.lr = self.base_lr * warmup_cosine(0, total_steps, warmup_steps, min_ratio)

    def step(self):
        self.t += 1
        self.optimizer.lr = self.base_lr * warmup_cosine(
            self.t, self.total_steps, self.warmup_steps, self.min_ratio)
        return self.optimizer.lr
