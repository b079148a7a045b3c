r"""Gradient-check experiments: the error-vs-step V curve and planted bugs.

**The V curve.** The central difference of a smooth :math:`f` along a unit direction :math:`u`,

.. math:: D_h = \frac{f(x + h u) - f(x - h u)}{2h}
          = \partial_u f(x) + \frac{h^2}{6}\, \partial_u^3 f(\xi) + \frac{\delta_+ - \delta_-}{2h},

has two errors: *truncation* :math:`\tfrac{h^2}{6}|\partial_u^3 f|`, which shrinks with
:math:`h`, and *round-off* :math:`|\delta_\pm| \lesssim \epsilon |f|` (each evaluation of
:math:`f` is only exact to machine epsilon :math:`\epsilon`), which grows as
:math:`\epsilon |f| / h`. Their sum is smallest at

.. math:: h^\ast = \left(\frac{3 \epsilon |f|}{|\partial_u^3 f|}\right)^{1/3}
          \approx \epsilon^{1/3}:

about :math:`10^{-5}` in float64 (:math:`\epsilon = 2.2\cdot10^{-16}`) but :math:`5\cdot10^{-3}`
in float32 (:math:`\epsilon = 1.2\cdot10^{-7}`), where the best attainable error is only
about :math:`\epsilon^{2/3} \approx 10^{-5}`; hence gradient checks run in float64.
:func:`eps_sweep` measures the error of :math:`v^\top D_h` over a range of :math:`h`,
relative to the gradient's size: :math:`|v^\top D_h - (v^\top J) u| \,/\, \|v^\top J\|`, with the
reference :math:`v^\top J` from one float64 backward (dividing by :math:`\|v^\top J\|` rather
than by :math:`|(v^\top J) u|` keeps a direction with a near-zero derivative from blowing up).

**Planted bugs.** :data:`PLANTED_BUGS` holds deliberately wrong backwards (the softmax backward
without the :math:`\langle \bar{y}, y\rangle` term, a product whose second gradient uses the
wrong factor); :func:`planted_bug` shows how ``gradcheck`` reports them: which input, which
element, and by how much.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import get_xp, to_numpy
from .function import Function, enable_grad
from .gradcheck import GradcheckReport, gradcheck, leaf
from .sparse import dense_grad
from .tensor import Tensor


# ---------------------------------------------------------------------------------------------
# The V curve
# ---------------------------------------------------------------------------------------------
@dataclass
class EpsSweep:
    """Error of the central difference (relative to the gradient norm) at each step ``eps``."""

    name: str
    dtype: np.dtype
    eps: np.ndarray
    errors: np.ndarray

    @property
    def best_index(self) -> int:
        return int(np.argmin(self.errors))

    @property
    def best_eps(self) -> float:
        return float(self.eps[self.best_index])

    @property
    def best_error(self) -> float:
        return float(self.errors[self.best_index])

    def slope(self, lo: float, hi: float) -> float:
        """Least-squares slope of log(error) against log(eps) for eps in [lo, hi]."""
        sel = (self.eps >= lo) & (self.eps <= hi) & (self.errors > 0)
        if sel.sum() < 2:
            raise ValueError(f"EpsSweep.slope: fewer than 2 points with eps in [{lo}, {hi}]")
        return float(np.polyfit(np.log(self.eps[sel]), np.log(self.errors[sel]), 1)[0])

    def rows(self):
        """CSV-ready rows: (name, dtype, eps, error)."""
        return [(self.name, str(self.dtype), float(h), float(e))
                for h, e in zip(self.eps, self.errors)]


def default_eps_values(n: int = 25) -> np.ndarray:
    """Step sizes from 1e-12 to 1, evenly spaced on a log scale."""
    return np.logspace(-12, 0, n)


def predicted_best_eps(dtype) -> float:
    r""":math:`h^\ast = (3\epsilon)^{1/3}`, the optimum when :math:`|f| \approx |\partial^3 f|`."""
    return float((3 * np.finfo(np.dtype(dtype)).eps) ** (1 / 3))


def forward_difference_best_step(eps: float, f_abs: float, d2f_abs: float) -> float:
    """The step h that minimises the error bound of the one-sided difference
    ``(f(x + h) - f(x)) / h`` for machine epsilon ``eps``, ``|f(x)| = f_abs`` and
    ``|f''(x)| = d2f_abs`` (the V curve above, for the other difference)."""
    for name, value in (("eps", eps), ("f_abs", f_abs), ("d2f_abs", d2f_abs)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (
                np.isfinite(value) and value > 0):
            raise ValueError(f"forward_difference_best_step: {name} must be a finite number "
                             f"> 0, got {value!r}")
    # Exercise 0.6 (2 pt): derive, as the V curve above is derived for the central difference,
    #   the step h* that minimises truncation + round-off error of the one-sided difference
    #   (f(x + h) - f(x)) / h (each evaluation of f exact to eps |f|), and return it as a float
    #   named `h`. A prediction: the tests compare it with measured errors.
    ### BEGIN SOLUTION
    # E(h) = h |f''| / 2 + 2 eps |f| / h; dE/dh = 0 at h^2 = 4 eps |f| / |f''|
    h = float(2.0 * np.sqrt(eps * f_abs / d2f_abs))
    ### END SOLUTION
    return h


def _flat_outputs(fn, inputs) -> np.ndarray:
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    outs = [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]
    if not outs:
        raise TypeError("eps_sweep: fn must return a floating Tensor or a tuple of them")
    return np.concatenate([to_numpy(o.data).astype(np.float64).ravel() for o in outs])


def _cast_inputs(inputs, dtype, requires_grad):
    """Copies of the floating Tensor inputs in ``dtype`` (other arguments pass through)."""
    out = []
    for x in inputs:
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            out.append(Tensor(x.data.astype(dtype), requires_grad=requires_grad and x.requires_grad))
        else:
            out.append(x)
    return out


def eps_sweep(fn, inputs, eps_values=None, dtype=np.float64, n_directions=3, seed=0,
              name=None) -> EpsSweep:
    r"""Error of the central difference of ``fn`` against its float64 analytical gradient.

    For ``n_directions`` random unit directions (:math:`v` over the outputs, :math:`u` over the
    inputs that require grad) the reference :math:`(v^\top J)\,u` comes from one float64
    backward; the numerical :math:`v^\top D_h` perturbs and evaluates ``fn`` in ``dtype``.
    ``errors[k]`` is the largest error over the directions at ``eps_values[k]``, relative to
    :math:`\|v^\top J\|` (the largest directional derivative along a unit ``u``).
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"eps_sweep: dtype must be floating, got {dtype}")
    if not callable(fn):
        raise TypeError(f"eps_sweep: fn must be callable, got {type(fn).__name__}")
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("eps_sweep: no input has requires_grad=True")
    eps_values = default_eps_values() if eps_values is None else np.asarray(eps_values, float)
    if eps_values.ndim != 1 or not (eps_values > 0).all():
        raise ValueError("eps_sweep: eps_values must be a 1-D array of positive step sizes")

    rng = np.random.default_rng(seed)
    exact_in = _cast_inputs(inputs, np.float64, requires_grad=True)
    low_in = _cast_inputs(inputs, dtype, requires_grad=False)
    n_out = _flat_outputs(fn, exact_in).size
    errors = np.zeros((n_directions, eps_values.size))
    for k in range(n_directions):
        v = rng.standard_normal(n_out)
        v /= np.linalg.norm(v)
        u = {i: rng.standard_normal(inputs[i].shape) for i in wrt}
        norm = np.sqrt(sum(float((d * d).sum()) for d in u.values()))
        u = {i: d / norm for i, d in u.items()}
        exact, scale = _directional_derivative(fn, exact_in, wrt, u, v)
        for j, h in enumerate(eps_values):
            numeric = (_shifted(fn, low_in, u, v, +h, dtype)
                       - _shifted(fn, low_in, u, v, -h, dtype)) / (2 * h)
            errors[k, j] = abs(numeric - exact) / max(scale, 1e-300)
    return EpsSweep(name or getattr(fn, "__name__", "fn"), dtype, eps_values, errors.max(axis=0))


def _directional_derivative(fn, inputs, wrt, u, v):
    """(v^T J) u and the norm ||v^T J|| from one backward in float64."""
    for i in wrt:
        inputs[i].grad = None
    with enable_grad():
        out = fn(*inputs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        outs = [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]
        total, offset = None, 0
        for o in outs:
            seed = v[offset:offset + o.size].reshape(o.shape)
            offset += o.size
            term = (o * Tensor(get_xp(o.data).asarray(seed))).sum()
            total = term if total is None else total + term
        total.backward()
    grads = {i: to_numpy(dense_grad(inputs[i].grad)) for i in wrt if inputs[i].grad is not None}
    derivative = float(sum((g * u[i]).sum() for i, g in grads.items()))
    return derivative, float(np.sqrt(sum((g * g).sum() for g in grads.values())))


def _shifted(fn, inputs, u, v, h, dtype) -> float:
    """v^T f(x + h u) with x + h u rounded to ``dtype`` and f evaluated in ``dtype``."""
    moved = list(inputs)
    for i, d in u.items():
        x = inputs[i].data
        moved[i] = Tensor((x + get_xp(x).asarray(h * d).astype(dtype)).astype(dtype))
    return float(_flat_outputs(fn, moved) @ v)


# ---------------------------------------------------------------------------------------------
# Planted bugs: wrong backwards that gradcheck must catch
# ---------------------------------------------------------------------------------------------
class SoftmaxMissingInnerProduct(Function):
    r"""Softmax with a planted bug: the backward returns :math:`y \odot \bar{y}`, forgetting
    :math:`-\,y \langle \bar{y}, y\rangle` (it uses only the diagonal of the Jacobian)."""

    @staticmethod
    def forward(ctx, x, axis):
        xp = get_xp(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return y * g, None  # the bug: should be y * (g - (g * y).sum(axis, keepdims=True))


class MulWrongSecondGradient(Function):
    r"""A product :math:`y = a b` with a planted bug: :math:`\bar{b} = \bar{y}\, b` instead
    of :math:`\bar{y}\, a` (a copy-paste slip). Only input 1 is wrong."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        _, b = ctx.saved_tensors
        return g * b, g * b  # the bug: the second should be g * a


PLANTED_BUGS = {
    "softmax without <g,y>": (lambda x: SoftmaxMissingInnerProduct.apply(x, -1),
                              lambda rng: (leaf(rng, 2, 4),)),
    "mul with grad_b = g*b": (lambda a, b: MulWrongSecondGradient.apply(a, b),
                              lambda rng: (leaf(rng, 3), leaf(rng, 3))),
}


def planted_bug(name, seed=0, fast=False) -> GradcheckReport:
    """Gradcheck one of :data:`PLANTED_BUGS` and return the (failing) report."""
    if name not in PLANTED_BUGS:
        raise ValueError(f"planted_bug: name must be one of {sorted(PLANTED_BUGS)}, got {name!r}")
    fn, make_inputs = PLANTED_BUGS[name]
    return gradcheck(fn, make_inputs(np.random.default_rng(seed)), fast=fast,
                     raise_exception=False, seed=seed)
