"""The autograd engine: Tensor, Function, backprop, ops, gradcheck and its registry."""
from . import ops  # noqa: F401
from .function import (Context, Function, backward, enable_grad, is_grad_enabled,  # noqa: F401
                       no_grad, sum_to_shape, track_memory)
from .gradcheck import GradcheckError, GradcheckReport, gradcheck, leaf  # noqa: F401
from .registry import register  # noqa: F401
from .sparse import RowSparseGrad, dense_grad  # noqa: F401
from .tensor import (Tensor, arange, full, ones, ones_like, rand, randn, tensor,  # noqa: F401
                     zeros, zeros_like)
