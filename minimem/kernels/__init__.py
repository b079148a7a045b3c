"""Numba CPU kernels: pure array functions (arrays in, arrays out), no autograd inside.

Conventions (see DESIGN.md): every kernel is compiled with ``cache=True``; each has a plain
NumPy twin (``*_reference``) that the tests compare it with and that runs on CuPy arrays; with
``NUMBA_DISABLE_JIT=1`` the kernels run as ordinary Python and stay correct (slowly).
"""
from ._jit import jit  # noqa: F401
from .scatter import scatter_add_rows, scatter_add_rows_reference  # noqa: F401
from .softmax_xent import softmax_cross_entropy, softmax_cross_entropy_reference  # noqa: F401
from .hopfield import (async_sweeps, async_sweeps_reference, dense_async_sweeps,  # noqa: F401
                       dense_async_sweeps_reference)
from .triangular import unit_lower_inverse, unit_lower_inverse_reference  # noqa: F401
