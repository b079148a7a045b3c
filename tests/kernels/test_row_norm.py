"""LayerNorm / RMSNorm rows: the fused kernel against its plain twin and formulas written here."""
import numpy as np
import pytest

from minimem.kernels.row_norm import (
    row_norm_backward,
    row_norm_backward_reference,
    row_norm_forward,
    row_norm_forward_reference,
)


def _naive_forward(x, gamma, beta, eps, center):
    mu = x.mean(-1, keepdims=True) if center else 0.0
    y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * gamma
    return y + beta if beta is not None else y


def _numerical_grads(x, gamma, beta, eps, center, g, h=1e-6):
    out = []
    for a in (x, gamma) + ((beta,) if beta is not None else ()):
        num = np.zeros_like(a)
        for idx in np.ndindex(*a.shape):
            keep = a[idx]
            a[idx] = keep + h
            plus = (g * _naive_forward(x, gamma, beta, eps, center)).sum()
            a[idx] = keep - h
            minus = (g * _naive_forward(x, gamma, beta, eps, center)).sum()
            a[idx] = keep
            num[idx] = (plus - minus) / (2 * h)
        out.append(num)
    return out


@pytest.mark.parametrize("center", [True, False], ids=["layer_norm", "rms_norm"])
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 7), (1, 1)])
def test_matches_the_twin_and_central_differences(center, shape, path):
    rng = np.random.default_rng(sum(shape))
    x = 2.0 + 3.0 * rng.standard_normal(shape)
    gamma = rng.standard_normal(shape[-1])
    beta = rng.standard_normal(shape[-1]) if center else None
    g = rng.standard_normal(shape)
    y, mean, rstd = row_norm_forward(x, gamma, beta, 1e-5, center)
    y_ref, mean_ref, rstd_ref = row_norm_forward_reference(x, gamma, beta, 1e-5, center)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, _naive_forward(x, gamma, beta, 1e-5, center), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rstd, rstd_ref, rtol=1e-12)
    assert mean.shape == rstd.shape == shape[:-1]
    grads = row_norm_backward(x, gamma, mean, rstd, g, center)
    want = row_norm_backward_reference(x, gamma, mean_ref, rstd_ref, g, center)
    for a, b in zip(grads, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    num = _numerical_grads(x.copy(), gamma.copy(), None if beta is None else beta.copy(), 1e-5,
                           center, g)
    for a, b in zip(grads, num):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_float32_stays_float32_and_agrees_with_float64(path):
    rng = np.random.default_rng(1)
    x = (5 + 4 * rng.standard_normal((300, 64)))
    gamma, beta, g = rng.standard_normal(64), rng.standard_normal(64), rng.standard_normal(x.shape)
    f32 = [a.astype(np.float32) for a in (x, gamma, beta, g)]
    y32, m32, r32 = row_norm_forward(*f32[:3])
    y64, m64, r64 = row_norm_forward(x, gamma, beta)
    assert y32.dtype == m32.dtype == r32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    g32 = row_norm_backward(f32[0], f32[1], m32, r32, f32[3])
    g64 = row_norm_backward(x, gamma, m64, r64, g)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda x, w: row_norm_forward(x.astype(int), w, w), TypeError,
     r"row_norm_forward: argument 'x' must be a float32 or float64 array, got int"),
    (lambda x, w: row_norm_forward(x, w[:3], w), ValueError,
     r"row_norm_forward: gamma must have shape \(4,\) and dtype float64, got \(3,\)"),
    (lambda x, w: row_norm_forward(x, w, w.astype(np.float32)), ValueError, r"beta must have"),
    (lambda x, w: row_norm_forward(x, w, w, eps=0.0), ValueError, r"eps must be a positive"),
    (lambda x, w: row_norm_forward(x[:, :0], w[:0], None), ValueError, r"non-empty last axis"),
    (lambda x, w: row_norm_backward(x, w, np.zeros(2), np.ones(3), x), ValueError,
     r"row_norm_backward: mean must have shape \(3,\)"),
    (lambda x, w: row_norm_backward(x, w, np.zeros(3), np.ones(3), x[:2]), ValueError,
     r"row_norm_backward: g must have shape \(3, 4\)"),
])
def test_errors_name_function_argument_and_expectation(call, exc, pattern):
    x, w = np.ones((3, 4)), np.ones(4)
    with pytest.raises(exc, match=pattern):
        call(x, w)
