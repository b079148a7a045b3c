r"""Basic layers: Linear, Embedding, LayerNorm, RMSNorm, BatchNorm1d, MLP, Dropout.

* Linear: :math:`y = x W^\top + b`, ``W`` of shape (out, in), initialised
  :math:`\mathcal{U}(-1/\sqrt{in}, 1/\sqrt{in})` as in PyTorch.
* LayerNorm: :math:`y = \gamma \odot \hat{x} + \beta`, :math:`\hat{x} = (x - \mu)/\sigma`,
  :math:`\sigma = \sqrt{\mathrm{var}(x) + \epsilon}` over the last axis; hand-written backward
  :math:`\bar{x} = \frac{1}{\sigma}\left(\bar{\hat{x}} - \overline{\bar{\hat{x}}}
  - \hat{x}\,\overline{\bar{\hat{x}} \odot \hat{x}}\right)` (bars over a mean are means over
  the features), with :math:`\bar{\hat{x}} = \gamma \odot \bar{y}`.
* RMSNorm: :math:`y = \gamma \odot x / \sqrt{\mathrm{mean}(x^2) + \epsilon}`.
* GELU (tanh approximation): :math:`\tfrac12 x (1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3)))`.
* Dropout: zero each element with probability p and scale the rest by 1/(1-p); the mask comes
  from the layer's own seeded generator (``.rng``), so runs are reproducible and replayable.

Each of linear, layer_norm, rms_norm and gelu exists twice: ``*_reference``, the composition of
engine ops that the equations above describe line by line (what the book shows), and the fused
formulation that the layers run — one ``Function`` whose forward and backward are single passes
(the kernels :mod:`minimem.kernels.row_norm` and :mod:`minimem.kernels.gelu_tanh`, whose
docstrings derive the backward; one GEMM of all rows for ``linear``). The tests hold the two to
the same values and gradients. ``LayerNormFunction`` is the hand-derived NumPy LayerNorm of
exercise 1.1.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import autograd as ag
from ..autograd.function import Function
from ..autograd.sparse import RowSparseGrad
from ..backend import get_default_dtype, get_rng, get_xp, to_device
from ..checks import (
    check_bool,
    check_float_tensor,
    check_int,
    check_real,
    check_shape,
    is_tensor,
)
from ..kernels.gelu_tanh import gelu_tanh_backward, gelu_tanh_forward
from ..kernels.row_norm import row_norm_backward, row_norm_forward
from .module import Module, Parameter


def _uniform(rng, shape, bound, dtype):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _check_int(cls, name, value, low=1):
    check_int(cls, name, value, low=low)


def _check_last_dim(cls, x, d):
    if not is_tensor(x):
        raise TypeError(f"{cls}: input must be a Tensor, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{cls}: input must be floating, got dtype {x.dtype}")
    if x.ndim < 1 or x.shape[-1] != d:
        raise ValueError(f"{cls}: expected input with last dim {d}, got shape {x.shape}")


_check_float_tensor = check_float_tensor


def _check_vector(fn, name, t, d):
    if t is not None:
        check_float_tensor(fn, name, t)
        check_shape(fn, name, t, (d,))


def _fusable(*tensors):
    """One float32/float64 dtype for all (the fused kernels do not promote dtypes)."""
    dts = {t.dtype for t in tensors if t is not None}
    return len(dts) == 1 and dts <= {np.dtype(np.float32), np.dtype(np.float64)}


def linear_reference(x, weight, bias=None):
    """y = x W^T + b composed of engine ops (reshape to rows, matmul, add)."""
    if x.ndim > 2:  # one (N, in) @ (in, out) GEMM, not one small GEMM per leading index
        lead = x.shape[:-1]
        y = (x.reshape(-1, weight.shape[1]) @ weight.T).reshape(*lead, weight.shape[0])
    else:
        y = x @ weight.T
    return y + bias if bias is not None else y


class LinearFunction(Function):
    r"""y = x W^T + b as one node: x viewed as rows X (N, in), Y = X W^T + b, and backward
    :math:`\bar X = \bar Y W`, :math:`\bar W = \bar Y^\top X`,
    :math:`\bar b = \sum_{\text{rows}} \bar Y` (each gradient made once, contiguous)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        x2 = x.reshape(-1, x.shape[-1])
        y = x2 @ weight.T
        if bias is not None:
            y += bias
        ctx.save_for_backward(x2, weight)
        ctx.x_shape, ctx.has_bias = x.shape, bias is not None
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, g):
        x2, weight = ctx.saved_tensors
        g2 = g.reshape(-1, weight.shape[0])
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = (g2 @ weight).reshape(ctx.x_shape) if need_x else None
        grad_w = g2.T @ x2 if need_w else None
        grad_b = g2.sum(axis=0) if ctx.has_bias and need_b else None
        return grad_x, grad_w, grad_b


def linear(x, weight, bias=None):
    """y = x W^T + b over the last axis (``torch.nn.functional.linear``): one fused node."""
    _check_float_tensor("linear", "x", x)
    _check_float_tensor("linear", "weight", weight)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be (out, in), got shape {weight.shape}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: expected x with last dim {weight.shape[1]} (weight "
                         f"{weight.shape}), got shape {x.shape}")
    _check_vector("linear", "bias", bias, weight.shape[0])
    return LinearFunction.apply(x, weight, bias)


class Linear(Module):
    """y = x W^T + b."""

    def __init__(self, in_features, out_features, bias=True, seed=None, dtype=None):
        super().__init__()
        _check_int("Linear", "in_features", in_features)
        _check_int("Linear", "out_features", out_features)
        check_bool("Linear", "bias", bias)
        rng, dt = get_rng(seed), dtype or get_default_dtype()
        bound = 1 / math.sqrt(in_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_uniform(rng, (out_features, in_features), bound, dt))
        self.bias = Parameter(_uniform(rng, (out_features,), bound, dt)) if bias else None

    def forward(self, x):
        _check_last_dim("Linear", x, self.in_features)
        return linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class SparseRowGather(Function):
    """``y = W[ids]`` whose backward leaves ``W``'s gradient row-sparse: the pairs
    (``ids[i]``, ``g[i]``), one per id looked up (repeats add)."""

    @staticmethod
    def forward(ctx, weight, ids):
        ctx.ids, ctx.shape = ids, weight.shape
        return weight[ids]

    @staticmethod
    def backward(ctx, g):
        rows = ctx.ids.reshape(-1)
        return RowSparseGrad(rows, g.reshape(rows.shape[0], *ctx.shape[1:]), ctx.shape), None


class Embedding(Module):
    """A table of ``num_embeddings`` vectors; ``forward(ids)`` gathers rows (scatter-add
    backward). ``sparse=True`` (as in PyTorch): ``weight.grad`` is a row-sparse gradient of the
    rows looked up, for ``optim.SGD`` / ``optim.SparseAdam`` to update only those rows."""

    def __init__(self, num_embeddings, embedding_dim, seed=None, dtype=None, std=1.0,
                 sparse=False):
        super().__init__()
        _check_int("Embedding", "num_embeddings", num_embeddings)
        _check_int("Embedding", "embedding_dim", embedding_dim)
        if not isinstance(sparse, bool):
            raise TypeError(f"Embedding: sparse must be True or False, got {sparse!r}")
        rng = get_rng(seed)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.sparse = sparse
        w = std * rng.standard_normal((num_embeddings, embedding_dim))
        self.weight = Parameter(w.astype(dtype or get_default_dtype()))

    def forward(self, ids):
        idx = ids.data if isinstance(ids, ag.Tensor) else get_xp(self.weight.data).asarray(ids)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: ids must be integers, got dtype {idx.dtype}")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.num_embeddings):
            raise ValueError(
                f"Embedding: ids must lie in [0, {self.num_embeddings}), got values from "
                f"{int(idx.min())} to {int(idx.max())}"
            )
        return SparseRowGather.apply(self.weight, idx) if self.sparse else self.weight[idx]

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}" + (", sparse=True" if self.sparse
                                                                 else "")


class LayerNormFunction(Function):
    """Fused layer norm over the last axis with the hand-derived backward."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps):
        xp = get_xp(x)
        mu = x.mean(axis=-1, keepdims=True)
        sigma = xp.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
        x_hat = (x - mu) / sigma
        ctx.save_for_backward(x_hat, sigma, gamma)
        return x_hat * gamma + beta

    @staticmethod
    def backward(ctx, g):
        x_hat, sigma, gamma = ctx.saved_tensors
        lead = tuple(range(g.ndim - 1))
        grad_gamma = (g * x_hat).sum(axis=lead)
        grad_beta = g.sum(axis=lead)
        # Exercise 1.1 (3 pt): the LayerNorm input gradient grad_x from g, x_hat, sigma, gamma
        # (see the module docstring: project out the mean and the x_hat direction).
        ### BEGIN SOLUTION
        d_xhat = g * gamma
        grad_x = (d_xhat - d_xhat.mean(axis=-1, keepdims=True)
                  - x_hat * (d_xhat * x_hat).mean(axis=-1, keepdims=True)) / sigma
        ### END SOLUTION
        return grad_x, grad_gamma, grad_beta, None


def layer_norm_reference(x, weight, bias, eps=1e-5):
    """LayerNorm over the last axis composed of engine ops: (x - mean) / sqrt(var + eps)."""
    mu = x.mean(axis=-1, keepdims=True)
    sigma = (x.var(axis=-1, keepdims=True) + eps).sqrt()
    return (x - mu) / sigma * weight + bias


def rms_norm_reference(x, weight, eps=1e-6):
    """RMSNorm over the last axis composed of engine ops: x / sqrt(mean(x^2) + eps)."""
    rms = ((x * x).mean(axis=-1, keepdims=True) + eps).sqrt()
    return x / rms * weight


class RowNormFunction(Function):
    """LayerNorm (``center=True``) or RMSNorm (``center=False``) of each row as one node:
    the fused forward and backward of :mod:`minimem.kernels.row_norm` (equations there)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps, center):
        y, mean, rstd = row_norm_forward(x, gamma, beta, eps, center)
        ctx.save_for_backward(x, gamma, mean, rstd)
        ctx.center = center
        return y

    @staticmethod
    def backward(ctx, g):
        x, gamma, mean, rstd = ctx.saved_tensors
        grad_x, grad_gamma, grad_beta = row_norm_backward(x, gamma, mean, rstd, g, ctx.center)
        return grad_x, grad_gamma, grad_beta if ctx.needs_input_grad[2] else None, None, None


def _check_norm(fn, x, weight, bias, eps):
    _check_float_tensor(fn, "x", x)
    if x.ndim < 1:
        raise ValueError(f"{fn}: x must have at least one axis, got a scalar")
    _check_vector(fn, "weight", weight, x.shape[-1])
    _check_vector(fn, "bias", bias, x.shape[-1])
    check_real(fn, "eps", eps, low=0, low_open=True)


def layer_norm(x, weight, bias, eps=1e-5):
    """LayerNorm over the last axis with gain ``weight`` and shift ``bias``: one fused node
    (the composed reference, :func:`layer_norm_reference`, where dtypes differ)."""
    _check_norm("layer_norm", x, weight, bias, eps)
    if not _fusable(x, weight, bias):
        return layer_norm_reference(x, weight, bias, eps)
    return RowNormFunction.apply(x, weight, bias, eps, True)


def rms_norm(x, weight, eps=1e-6):
    """RMSNorm over the last axis with gain ``weight``: one fused node (the composed
    reference, :func:`rms_norm_reference`, where dtypes differ)."""
    _check_norm("rms_norm", x, weight, None, eps)
    if not _fusable(x, weight):
        return rms_norm_reference(x, weight, eps)
    return RowNormFunction.apply(x, weight, None, eps, False)


class LayerNorm(Module):
    """Normalize the last axis to zero mean and unit variance, then scale and shift."""

    def __init__(self, d, eps=1e-5, dtype=None):
        super().__init__()
        _check_int("LayerNorm", "d", d)
        check_real("LayerNorm", "eps", eps, low=0, low_open=True)
        dt = dtype or get_default_dtype()
        self.d, self.eps = d, eps
        self.weight = Parameter(np.ones(d, dtype=dt))
        self.bias = Parameter(np.zeros(d, dtype=dt))

    def forward(self, x):
        _check_last_dim("LayerNorm", x, self.d)
        return layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.d}, eps={self.eps}"


class RMSNorm(Module):
    """y = gamma * x / sqrt(mean(x^2) + eps) (no centering)."""

    def __init__(self, d, eps=1e-6, dtype=None):
        super().__init__()
        _check_int("RMSNorm", "d", d)
        check_real("RMSNorm", "eps", eps, low=0, low_open=True)
        self.d, self.eps = d, eps
        self.weight = Parameter(np.ones(d, dtype=dtype or get_default_dtype()))

    def forward(self, x):
        _check_last_dim("RMSNorm", x, self.d)
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.d}, eps={self.eps}"


class BatchNorm1d(Module):
    """Batch normalization over every axis but the last (features), with running statistics.

    Training: normalize with the batch mean and (biased) variance and update the running
    estimates with ``momentum``; evaluation: use the running estimates.
    """

    def __init__(self, d, eps=1e-5, momentum=0.1, affine=True, dtype=None):
        super().__init__()
        _check_int("BatchNorm1d", "d", d)
        check_real("BatchNorm1d", "eps", eps, low=0, low_open=True)
        check_real("BatchNorm1d", "momentum", momentum, low=0, high=1)
        check_bool("BatchNorm1d", "affine", affine)
        dt = dtype or get_default_dtype()
        self.d, self.eps, self.momentum = d, eps, momentum
        self.weight = Parameter(np.ones(d, dtype=dt)) if affine else None
        self.bias = Parameter(np.zeros(d, dtype=dt)) if affine else None
        self.register_buffer("running_mean", np.zeros(d, dtype=dt))
        self.register_buffer("running_var", np.ones(d, dtype=dt))

    def forward(self, x):
        _check_last_dim("BatchNorm1d", x, self.d)
        axes = tuple(range(x.ndim - 1))
        if get_xp(self.running_mean) is not get_xp(x.data):  # follow the input's device
            self.register_buffer("running_mean", to_device(self.running_mean, x.device))
            self.register_buffer("running_var", to_device(self.running_var, x.device))
        if self.training:
            n = int(np.prod(x.shape[:-1]))
            if n < 2:
                raise ValueError(f"BatchNorm1d: training needs >= 2 rows per feature, got {n}")
            mu = x.mean(axis=axes)
            var = x.var(axis=axes)
            m = self.momentum
            self.register_buffer("running_mean", (1 - m) * self.running_mean + m * mu.data)
            self.register_buffer("running_var",
                                 (1 - m) * self.running_var + m * var.data * n / (n - 1))
            y = (x - mu) / (var + self.eps).sqrt()
        else:
            y = (x - self.running_mean) / get_xp(x.data).sqrt(self.running_var + self.eps)
        return y * self.weight + self.bias if self.weight is not None else y


def gelu_reference(x):
    """GELU, tanh approximation, composed of engine ops:
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1 + ag.ops.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))


class GeluFunction(Function):
    """GELU (tanh approximation) as one node: the fused forward and backward of
    :mod:`minimem.kernels.gelu_tanh` (equations there; the backward recomputes from x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return gelu_tanh_forward(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (gelu_tanh_backward(x, g),)


def gelu(x):
    """GELU, tanh approximation (``torch.nn.functional.gelu(x, approximate="tanh")``), as one
    fused node; :func:`gelu_reference` is the same function composed of engine ops."""
    _check_float_tensor("gelu", "x", x)
    if not _fusable(x):
        return gelu_reference(x)
    return GeluFunction.apply(x)


_ACTIVATIONS = {"relu": ag.ops.relu, "silu": ag.ops.silu, "gelu": gelu, "tanh": ag.ops.tanh}


class MLP(Module):
    """The transformer feed-forward block: Linear(d, hidden) -> activation -> Linear(hidden, d)."""

    def __init__(self, d_model, hidden=None, activation="gelu", d_out=None, seed=None,
                 dropout=0.0):
        super().__init__()
        if not isinstance(activation, str) or activation not in _ACTIVATIONS:
            raise ValueError(f"MLP: activation must be one of {list(_ACTIVATIONS)}, got {activation!r}")
        check_int("MLP", "d_model", d_model, low=1)
        for name, v in (("hidden", hidden), ("d_out", d_out)):
            if v is not None:
                check_int("MLP", name, v, low=1)
        rng = get_rng(seed)
        hidden = hidden or 4 * d_model
        self.activation = activation
        self.fc1 = Linear(d_model, hidden, seed=rng)
        self.fc2 = Linear(hidden, d_out or d_model, seed=rng)
        self.drop = Dropout(dropout, seed=rng)

    def forward(self, x):
        return self.drop(self.fc2(_ACTIVATIONS[self.activation](self.fc1(x))))

    def extra_repr(self):
        return f"activation={self.activation}"


class Dropout(Module):
    """Inverted dropout with its own generator ``self.rng`` (seeded, replayable)."""

    def __init__(self, p=0.1, seed=None):
        super().__init__()
        check_real("Dropout", "p", p)  # a real number, not NaN
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p
        # An int seed seeds the layer's own generator; otherwise draw one from the given or
        # global generator, so layers built from one seeded rng get distinct masks.
        self.rng = (np.random.default_rng(seed) if isinstance(seed, numbers.Integral)
                    else np.random.default_rng(get_rng(seed).integers(2**63)))

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = self.rng.random(x.shape) >= self.p
        mask = get_xp(x.data).asarray(keep / (1 - self.p), dtype=x.dtype)
        return x * mask

    def extra_repr(self):
        return f"p={self.p}"
