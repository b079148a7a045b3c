"""Every differentiable operation of the engine, re-exported flat (``minimem.ops.exp``)."""
from .elementwise import (abs, add, astype, div, exp, log, mul, neg, pow, relu, sigmoid,  # noqa
                          silu, softplus, sqrt, sub, tanh)
from .indexing import index_add, take_along_axis, to_device, topk, where  # noqa
from .linalg import einsum, matmul  # noqa
from .nnfunc import (cross_entropy, l2_normalize, log_softmax, logsumexp, mse_loss,  # noqa
                     softmax, tril, triu)
from .reduce import max, mean, min, sum, var  # noqa
from .shape import (broadcast_to, concatenate, expand_dims, getitem, reshape, squeeze,  # noqa
                    stack, swapaxes, transpose)
