r"""Optimizers and learning-rate schedules (PyTorch's names and semantics).

* SGD with momentum: :math:`b \leftarrow \mu b + g`, :math:`\theta \leftarrow \theta - \eta b`.
* Adam: :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`, :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
  :math:`\hat m = m / (1-\beta_1^t)`, :math:`\hat v = v / (1-\beta_2^t)`,
  :math:`\theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)`;
  ``weight_decay`` adds :math:`\lambda\theta` to g (L2).
* AdamW: the same step, with decoupled decay :math:`\theta \leftarrow \theta (1 - \eta\lambda)` first.
"""
from __future__ import annotations

import math

from .backend import get_xp


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
                self._update(p, p.grad.data, self.state.setdefault(id(p), {}))

    def _update(self, p, g, state):
        raise TypeError(f"{type(self).__name__} (an Optimizer) must define _update()")


class SGD(Optimizer):
    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov

    def _update(self, p, g, state):
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


def clip_grad_norm_(params, max_norm):
    """Scale all gradients so their global L2 norm is at most ``max_norm``; returns the norm."""
    grads = [p.grad.data for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = math.sqrt(sum(float((g.astype("float64") ** 2).sum()) for g in grads))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            if p.grad is not None:
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
