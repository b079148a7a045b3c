"""GELU (tanh approximation): the fused kernel against its twin and the tanh formula written here."""
import math

import numpy as np
import pytest

from minimem.kernels.gelu_tanh import (
    gelu_tanh_backward,
    gelu_tanh_backward_reference,
    gelu_tanh_forward,
    gelu_tanh_forward_reference,
)

C = math.sqrt(2 / math.pi)


def _tanh_form(x):
    return 0.5 * x * (1 + np.tanh(C * (x + 0.044715 * x ** 3)))


def _tanh_form_grad(x):
    t = np.tanh(C * (x + 0.044715 * x ** 3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + 3 * 0.044715 * x * x)


def _values(rng, n=2000):
    x = 4 * rng.standard_normal(n)
    x[:8] = [0.0, -1e-8, 1e-8, 30.0, -30.0, 1e3, -1e3, -5.0]
    return x


def test_matches_the_tanh_formula_and_the_twin(path):
    x = _values(np.random.default_rng(0)).reshape(40, 50)
    g = np.random.default_rng(1).standard_normal(x.shape)
    y = gelu_tanh_forward(x)
    np.testing.assert_allclose(y, _tanh_form(x), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(y, gelu_tanh_forward_reference(x), rtol=1e-14, atol=1e-300)
    dx = gelu_tanh_backward(x, g)
    np.testing.assert_allclose(dx, g * _tanh_form_grad(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, gelu_tanh_backward_reference(x, g), rtol=1e-13, atol=1e-300)
    assert y.shape == dx.shape == x.shape


def test_float32_is_accurate_and_stays_float32(path):
    x = _values(np.random.default_rng(2), 1 << 12)
    x32 = x.astype(np.float32)
    y = gelu_tanh_forward(x32)
    dx = gelu_tanh_backward(x32, np.ones_like(x32))
    assert y.dtype == dx.dtype == np.float32
    exact = _tanh_form(x32.astype(np.float64))
    np.testing.assert_allclose(y, exact, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(dx, _tanh_form_grad(x32.astype(np.float64)), rtol=1e-5,
                               atol=1e-6)
    assert np.isnan(gelu_tanh_forward(np.array([np.nan], np.float32))).all()


def test_non_contiguous_input_and_errors():
    x = np.random.default_rng(3).standard_normal((6, 8))[:, ::2]
    np.testing.assert_allclose(gelu_tanh_forward(x), _tanh_form(x), rtol=1e-13)
    with pytest.raises(TypeError, match="gelu_tanh_forward: argument 'x' must be a float32 or "
                                        "float64 array, got int"):
        gelu_tanh_forward(np.arange(3))
    with pytest.raises(ValueError, match=r"gelu_tanh_backward: g must have x's shape \(6, 4\) "
                                         r"and dtype float64, got \(6, 3\)"):
        gelu_tanh_backward(x, x[:, :3])
