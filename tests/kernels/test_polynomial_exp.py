"""The vectorizable float32 exponential against float64 ``np.exp``.

With NUMBA_DISABLE_JIT=1 ``exp_nonpositive`` is ``np.exp`` itself and this file is skipped.
"""
import os

import numpy as np
import pytest

from minimem.kernels._jit import jit
from minimem.kernels.polynomial_exp import exp_nonpositive

pytestmark = pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1",
                                reason="without JIT, exp_nonpositive is np.exp")


@jit
def _exp_all(y, out):
    for i in range(y.shape[0]):
        out[i] = exp_nonpositive(y[i])


def _run(y):
    out = np.empty_like(y)
    _exp_all(y, out)
    return out


def test_float32_within_one_unit_in_the_last_place():
    rng = np.random.default_rng(0)
    y = np.concatenate([-np.abs(rng.standard_normal(100_000)) * s for s in (1e-6, 1, 10, 30)])
    y = np.concatenate([y, -np.linspace(0, 87.3, 20_001), [0.0, -0.0, -1e-30]]).astype(np.float32)
    y = y[y > -87.33]  # below ln(2^-126) the result is 0 (next test)
    got = _run(y).astype(np.float64)
    want = np.exp(y.astype(np.float64))
    ulp = np.spacing(want.astype(np.float32)).astype(np.float64)
    assert (np.abs(got - want) <= ulp).all()


def test_float32_edges_underflow_to_zero_and_nan_stays_nan():
    y = np.array([-87.3366, -88.0, -1e4, -np.inf, np.nan], dtype=np.float32)
    got = _run(y)
    np.testing.assert_array_equal(got[:4], 0.0)
    assert np.isnan(got[4])
    assert _run(np.array([-87.33], np.float32))[0] > 0


def test_float64_is_the_libm_exp():
    # float64 goes to Numba's exp (LLVM's libm); NumPy may pick a SIMD exp for the CPU it
    # runs on (AVX-512 on some machines), which can differ in the last place: one ulp apart.
    y = -np.abs(np.random.default_rng(1).standard_normal(1000)) * 50
    np.testing.assert_array_max_ulp(_run(y), np.exp(y), maxulp=1)
    assert _run(np.zeros(3)).tolist() == [1.0, 1.0, 1.0]
