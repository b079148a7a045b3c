r"""The exponential of a non-positive number, in a form that LLVM vectorizes (float32).

A loop that calls ``np.exp`` inside a Numba kernel calls libm once per element: no SIMD. For
float32 this module computes :math:`e^y` for :math:`y \le 0` by the classical range reduction

.. math:: y = n \ln 2 + f,\quad n = \lfloor y \log_2 e + \tfrac12 \rfloor,\quad
          |f| \le \tfrac12 \ln 2,\qquad e^y = 2^n\, e^f,

with :math:`\ln 2` split into a short head and a tail (Cody and Waite) so that :math:`f` is
exact, :math:`e^f` a degree-7 polynomial (the coefficients of Cephes' ``expf``), and
:math:`2^n` built directly in the exponent bits of a float32. Every step is plain arithmetic
on one element, so a loop over a row runs 8 lanes at a time (AVX2). The relative error is below
one unit in the last place (tested against float64 ``np.exp``); inputs below
:math:`\ln(2^{-126}) \approx -87.3` give exactly 0 (where ``np.exp`` gives a subnormal), ``-inf``
gives 0 and NaN gives NaN. Float64 (what gradient checks use) calls ``np.exp``.

``exp_nonpositive(y)`` is the one entry point, for other kernels to call element by element;
with ``NUMBA_DISABLE_JIT=1`` it is ``np.exp``.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)          # few mantissa bits: n * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)       # ln 2 - _LN2_HI
_LOWEST = np.float32(-87.33654)            # ln(2^-126): below it the result would be subnormal
_C = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                   4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits`` (a register move, no memory)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


def _exp32_body(y):
    n = np.floor(y * _LOG2E + np.float32(0.5))
    n = max(n, np.float32(-126.0))
    f = (y - n * _LN2_HI) - n * _LN2_LO
    p = _C[0]
    p = p * f + _C[1]
    p = p * f + _C[2]
    p = p * f + _C[3]
    p = p * f + _C[4]
    p = p * f + _C[5]
    p = p * f * f + f + np.float32(1.0)
    e = p * _float32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
    return np.float32(0.0) if y <= _LOWEST else e   # NaN fails the test and stays NaN


def exp_nonpositive(y):
    """e^y for y <= 0 (any y for float64); see the module docstring."""
    return np.exp(y)


@overload(exp_nonpositive, inline="always")
def _exp_nonpositive_jit(y):
    if isinstance(y, types.Float) and y.bitwidth == 32:
        return _exp32_body
    return lambda y: np.exp(y)
