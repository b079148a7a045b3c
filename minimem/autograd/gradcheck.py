r"""Gradient checking against central differences, with PyTorch's semantics.

For each input :math:`x` and a perturbation :math:`h`, the numerical derivative is

.. math:: \frac{\partial f}{\partial x_i} \approx \frac{f(x + h e_i) - f(x - h e_i)}{2h},

whose truncation error is :math:`O(h^2)` and whose round-off error is :math:`O(\epsilon/h)`;
in float64 the sweet spot is :math:`h \approx 10^{-6}` to :math:`10^{-5}`.

*Full* mode builds the whole Jacobian both ways (fine for small inputs). *Fast* mode compares
one number per input, :math:`v^\top J u` for random unit :math:`u, v`: analytically a single
backward of :math:`v` dotted with :math:`u`, numerically one directional difference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import get_xp, to_numpy
from .function import enable_grad
from .sparse import dense_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Raised by ``gradcheck(..., raise_exception=True)`` when a gradient disagrees."""


@dataclass
class InputReport:
    index: int
    shape: tuple
    max_abs_error: float
    max_rel_error: float  # CS231n: |a - n| / max(|a|, |n|, atol)
    worst_element: tuple | None
    analytical: float
    numerical: float
    passed: bool


@dataclass
class GradcheckReport:
    """Truthy when every input passed; one :class:`InputReport` per differentiable input."""

    inputs: list = field(default_factory=list)
    fast: bool = False
    error: str = ""  # set when the function under test raised instead of returning

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.inputs)

    def __bool__(self):
        return self.passed

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self.inputs), default=0.0)

    @property
    def max_abs_error(self) -> float:
        return max((r.max_abs_error for r in self.inputs), default=0.0)

    def __str__(self):
        lines = [f"gradcheck ({'fast' if self.fast else 'full'}): "
                 f"{'passed' if self.passed else 'FAILED'}"]
        if self.error:
            return lines[0] + f"\n  raised {self.error}"
        for r in self.inputs:
            lines.append(
                f"  input {r.index} {r.shape}: max abs err {r.max_abs_error:.2e}, "
                f"max rel err {r.max_rel_error:.2e}" + ("" if r.passed else
                f"  <- element {r.worst_element}: analytical {r.analytical:.6g} vs "
                f"numerical {r.numerical:.6g}")
            )
        return "\n".join(lines)


def _outputs(fn, inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    outs = [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]
    if not outs:
        raise TypeError("gradcheck: fn must return a floating Tensor or a tuple of them")
    return outs


def _flat_output(fn, inputs):
    with enable_grad():
        return np.concatenate([to_numpy(o.data).ravel() for o in _outputs(fn, inputs)])


def _prepare(inputs):
    prepared, wrt = [], []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            t = Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad)
            prepared.append(t)
            if x.requires_grad:
                wrt.append(i)
        else:
            prepared.append(x)
    if not wrt:
        raise ValueError("gradcheck: no input has requires_grad=True; nothing to check")
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad and x.dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {x.dtype}; gradient checks run in float64 "
                "(convert with .double() or pass float64 data)"
            )
    return prepared, wrt


def _vjp(outs, inputs, wrt, v):
    """Analytical v^T J for every input in ``wrt``: one backward through the retained graph
    of ``outs`` (so a full Jacobian costs one forward and one backward per output element)."""
    for i in wrt:
        inputs[i].grad = None
    with enable_grad():
        total = None
        offset = 0
        for o in outs:
            n = o.size
            xp = get_xp(o.data)
            seed = xp.asarray(v[offset:offset + n].reshape(o.shape))
            offset += n
            term = (o * Tensor(seed)).sum()
            total = term if total is None else total + term
        total.backward(retain_graph=True)
    return [np.zeros(inputs[i].shape) if inputs[i].grad is None else to_numpy(dense_grad(inputs[i].grad))
            for i in wrt]


def _taped_outputs(fn, inputs):
    with enable_grad():
        return _outputs(fn, inputs)


def _compare(index, shape, a, n, atol, rtol):
    if a.size == 0:  # an empty output or input: nothing to disagree about
        return InputReport(index, tuple(shape), 0.0, 0.0, None, 0.0, 0.0, True)
    diff = np.abs(a - n)
    # CS231n relative error; magnitudes below atol count as atol, so that two values that are
    # both ~0 (e.g. 1e-12 vs 0) do not show a relative error of 1.
    rel = diff / np.maximum(np.maximum(np.abs(a), np.abs(n)), max(atol, 1e-300))
    rel = np.where(diff == 0, 0.0, rel)
    bad = diff > atol + rtol * np.abs(n)
    k = int(np.argmax(np.where(bad, diff, -1))) if bad.any() else int(np.argmax(diff))
    worst = tuple(int(w) for w in np.unravel_index(k, a.shape)) if a.size else None
    return InputReport(index, tuple(shape), float(diff.max(initial=0.0)),
                       float(rel.max(initial=0.0)), worst,
                       float(a.ravel()[k]) if a.size else 0.0,
                       float(n.ravel()[k]) if n.size else 0.0, not bad.any())


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast=False, raise_exception=True,
              seed=0):
    """Compare the engine's gradients of ``fn(*inputs)`` with central differences.

    ``inputs``: a tuple of Tensors (those with ``requires_grad=True`` are checked; they must be
    float64) and other arguments passed through. ``fn`` returns a Tensor or a tuple of Tensors.
    An element passes when ``|analytical - numerical| <= atol + rtol * |numerical|``.
    Returns a :class:`GradcheckReport` (truthy on success); with ``raise_exception=True`` a
    failure raises :class:`GradcheckError` naming the input and element that disagree.
    """
    if not callable(fn):
        raise TypeError(f"gradcheck: fn must be callable, got {type(fn).__name__}")
    if not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    inputs, wrt = _prepare(list(inputs))
    rng = np.random.default_rng(seed)
    report = GradcheckReport(fast=fast)
    y0 = _flat_output(fn, inputs)

    def perturbed(i, direction):
        x = inputs[i]
        base = x.data
        xp = get_xp(base)
        d = xp.asarray(direction.reshape(base.shape))
        x.data = base + eps * d
        plus = _flat_output(fn, inputs)
        x.data = base - eps * d
        minus = _flat_output(fn, inputs)
        x.data = base
        return (plus - minus) / (2 * eps)

    if fast:
        v = rng.standard_normal(y0.size)
        v /= np.linalg.norm(v) or 1.0
        grads = _vjp(_taped_outputs(fn, inputs), inputs, wrt, v)
        for i, g in zip(wrt, grads):
            u = rng.standard_normal(inputs[i].size)
            u /= np.linalg.norm(u) or 1.0
            a = np.array([g.ravel() @ u])
            n = np.array([perturbed(i, u) @ v])
            report.inputs.append(_compare(i, inputs[i].shape, a, n, atol, rtol))
    else:
        jac_a = {i: np.zeros((y0.size, inputs[i].size)) for i in wrt}
        outs = _taped_outputs(fn, inputs)
        for r in range(y0.size):
            onehot = np.zeros(y0.size)
            onehot[r] = 1.0
            for i, g in zip(wrt, _vjp(outs, inputs, wrt, onehot)):
                jac_a[i][r] = g.ravel()
        for i in wrt:
            jac_n = np.zeros_like(jac_a[i])
            for c in range(inputs[i].size):
                e = np.zeros(inputs[i].size)
                e[c] = 1.0
                jac_n[:, c] = perturbed(i, e)
            rep = _compare(i, inputs[i].shape, jac_a[i], jac_n, atol, rtol)
            if rep.worst_element is not None:  # report the input element, not (row, col)
                out_row, col = rep.worst_element
                rep.worst_element = (f"output {out_row}",
                                     tuple(int(w) for w in np.unravel_index(col, inputs[i].shape)))
            report.inputs.append(rep)
    if raise_exception and not report.passed:
        raise GradcheckError(str(report))
    return report


def leaf(rng, *shape, scale=1.0, low=None, margin=None, between=None):
    """A float64 leaf requiring grad: the inputs of gradient-check cases.

    Standard normal times ``scale``; ``low`` makes the values positive (``|x| + low``, for log,
    sqrt, a divisor); ``margin`` keeps them at least that far from 0 (for kinks such as relu's
    or abs's); ``between=(lo, hi)`` draws them uniformly in ``[lo, hi)`` instead (gates, decays).
    """
    if between is not None:
        x = rng.uniform(*between, size=shape)
    else:
        x = scale * rng.standard_normal(shape)
    if low is not None:
        x = np.abs(x) + low
    if margin is not None:
        x = np.sign(x) * (np.abs(x) + margin)
    return Tensor(x, requires_grad=True)
