"""Numba CPU kernels: pure array functions (arrays in, arrays out), no autograd inside.

Each file is named by the formulation it computes (``delta_recurrent``, ``unit_lower_inverse``,
``topk``, ``product_topk``, ``block_sparse_attention``, ``weighted_read``, ``dense_attention``,
``row_norm``, ``gelu_tanh``, ``polynomial_exp``, ...), and callers
import from that file: ``from minimem.kernels.unit_lower_inverse import unit_lower_inverse``
(this package re-exports nothing, so a module and a function never share a name here).

Conventions (see DESIGN.md beside the repository): every kernel is compiled by
:func:`minimem.kernels._jit.jit` (``cache=True``); each public kernel has a plain NumPy twin
(``*_reference``) that the tests compare it with and that runs on CuPy arrays; with
``NUMBA_DISABLE_JIT=1`` the kernels run as ordinary Python and stay correct (slowly). Kernels
with a ``prange`` twin follow the one policy of :mod:`minimem.kernels._jit`.
"""
