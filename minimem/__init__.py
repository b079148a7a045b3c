"""minimem: the memory mechanisms of transformers, on a tiny NumPy autograd engine.

Quick start::

    import minimem as mm
    x = mm.randn(3, 4, seed=0, requires_grad=True)
    (mm.softmax(x) * x).sum().backward()
    x.grad
"""
from .backend import (available_devices, cupy_available, get_default_dtype,  # noqa: F401
                      manual_seed, set_default_dtype)
from .autograd import (Function, GradcheckError, RowSparseGrad, Tensor,  # noqa: F401
                       arange, enable_grad, full, gradcheck, is_grad_enabled, no_grad, ones,
                       ones_like, rand, randn, tensor, track_memory, zeros, zeros_like)
from .autograd.ops import (abs, add, astype, broadcast_to, concatenate, cross_entropy,  # noqa
                           div, einsum, exp, expand_dims, index_add, l2_normalize, log,
                           log_softmax, logsumexp, matmul, max, mean, min, mse_loss, mul, neg,
                           pow, relu, reshape, sigmoid, silu, softmax, softplus, sqrt, squeeze,
                           stack, sub, sum, swapaxes, take_along_axis, tanh, topk, transpose,
                           tril, triu, var, where)
from .autograd import ops  # noqa: F401

__version__ = "0.1.0"

from . import nn, optim, tasks, train  # noqa: F401,E402
