"""The Numba recurrence kernels against their NumPy twins (runs under NUMBA_DISABLE_JIT=1 too)."""
import numpy as np
import pytest
from _helpers import naive_delta_recurrence

from minimem.kernels.delta_recurrent import (recurrent_backward, recurrent_backward_reference,
                                             recurrent_forward, recurrent_forward_reference)


def _inputs(rng, N=3, T=11, Dk=4, Dv=3):
    q, k = rng.standard_normal((N, T, Dk)), rng.standard_normal((N, T, Dk))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.standard_normal((N, T, Dv))
    beta, g = rng.uniform(0.1, 1.5, (N, T)), -rng.uniform(0.0, 0.7, (N, T))
    S0 = rng.standard_normal((N, Dk, Dv))
    return q, k, v, beta, g, S0


def _naive(q, k, v, beta, g, S0, scale, delta, gated):
    return naive_delta_recurrence(q, k, v, beta, g if gated else None, S0, scale, delta)


@pytest.mark.parametrize("delta,gated", [(True, False), (True, True), (False, False),
                                         (False, True)])
@pytest.mark.parametrize("checkpoint", [1, 4, 64])
def test_kernel_forward_matches_naive_and_twin(rng, delta, gated, checkpoint):
    args = _inputs(rng)
    o, S, ck = recurrent_forward(*args, 0.7, delta, gated, checkpoint)
    o_n, S_n = _naive(*args, 0.7, delta, gated)
    np.testing.assert_allclose(o, o_n, atol=1e-12)
    np.testing.assert_allclose(S, S_n, atol=1e-12)
    o_r, S_r, ck_r = recurrent_forward_reference(*args, 0.7, delta, gated, checkpoint)
    np.testing.assert_allclose(o, o_r, atol=1e-12)
    np.testing.assert_allclose(ck, ck_r, atol=1e-12)
    assert ck.shape[1] == -(-11 // checkpoint)


@pytest.mark.parametrize("delta,gated", [(True, False), (True, True), (False, False),
                                         (False, True)])
@pytest.mark.parametrize("checkpoint", [3, 64])
def test_kernel_backward_matches_twin_and_finite_differences(rng, delta, gated, checkpoint):
    q, k, v, beta, g, S0 = args = _inputs(rng, N=2, T=7)
    do, dS = rng.standard_normal(v.shape), rng.standard_normal(S0.shape)
    _, _, ck = recurrent_forward(*args, 0.6, delta, gated, checkpoint)
    grads = recurrent_backward(q, k, v, beta, g, ck, 0.6, do, dS, delta, gated, checkpoint)
    grads_r = recurrent_backward_reference(q, k, v, beta, g, ck, 0.6, do, dS, delta, gated,
                                           checkpoint)
    for a, b in zip(grads, grads_r):
        np.testing.assert_allclose(a, b, atol=1e-12)

    def loss(*xs):
        o, S = _naive(*xs, 0.6, delta, gated)
        return (o * do).sum() + (S * dS).sum()

    eps = 1e-6
    for i, x in enumerate(args):
        for idx in [(0,) * x.ndim, tuple(s - 1 for s in x.shape)]:
            xp_, xm = [a.copy() for a in args], [a.copy() for a in args]
            xp_[i][idx] += eps
            xm[i][idx] -= eps
            num = (loss(*xp_) - loss(*xm)) / (2 * eps)
            ana = grads[i][idx]
            if (i == 3 and not delta) or (i == 4 and not gated):
                assert ana == 0 and abs(num) < 1e-8
            else:
                assert abs(ana - num) < 1e-6 * max(1, abs(num)), (i, idx, ana, num)


def test_kernel_float32_and_empty_sequence(rng):
    args = [a.astype(np.float32) for a in _inputs(rng)]
    o, S, _ = recurrent_forward(*args, 0.5, True, True, 4)
    assert o.dtype == np.float32 and S.dtype == np.float32
    o64, S64, _ = recurrent_forward(*[a.astype(np.float64) for a in args], 0.5, True, True, 4)
    np.testing.assert_allclose(o, o64, rtol=1e-4, atol=1e-5)
    q, k, v, beta, g, S0 = (a[:, :0] if a.ndim > 1 and i < 5 else a for i, a in
                            enumerate(_inputs(rng)))
    o, S, ck = recurrent_forward(q, k, v, beta, g, S0, 1.0)
    assert o.shape == (3, 0, 3)
    np.testing.assert_array_equal(S, S0)
    grads = recurrent_backward(q, k, v, beta, g, ck, 1.0, o, np.ones_like(S0))
    np.testing.assert_array_equal(grads[-1], np.ones_like(S0))


def test_kernel_rejects_bad_shapes(rng):
    q, k, v, beta, g, S0 = _inputs(rng)
    with pytest.raises(ValueError, match="recurrent_forward: beta and g"):
        recurrent_forward(q, k, v, beta[:, :-1], g, S0, 1.0)
    with pytest.raises(ValueError, match="recurrent_forward: state"):
        recurrent_forward(q, k, v, beta, g, S0[:, :-1], 1.0)
    with pytest.raises(ValueError, match="recurrent_backward: expected q, k"):
        recurrent_backward(q, k[:, :-1], v, beta, g, S0, 1.0, v, S0)
    _, _, ckpts = recurrent_forward(q, k, v, beta, g, S0, 1.0, checkpoint=4)   # 3 segments
    with pytest.raises(ValueError, match=r"recurrent_backward: ckpts must be \(3, 11, 4, 3\) "
                                         r"for checkpoint=1"):
        recurrent_backward(q, k, v, beta, g, ckpts, 1.0, v, S0, checkpoint=1)
    with pytest.raises(ValueError, match="recurrent_backward: do must have the shape of v"):
        recurrent_backward(q, k, v, beta, g, ckpts, 1.0, v[:, :-1], S0, checkpoint=4)


@pytest.mark.parametrize("bad, error, got", [(0, ValueError, "0"), (-3, ValueError, "-3"),
                                             (2.0, TypeError, "float 2.0"),
                                             (True, TypeError, "bool True"),
                                             (None, TypeError, "NoneType")])
def test_kernel_rejects_bad_checkpoint(rng, bad, error, got):
    q, k, v, beta, g, S0 = _inputs(rng)
    with pytest.raises(error, match=f"recurrent_forward: checkpoint must be an int >= 1, "
                                    f"got {got}$"):
        recurrent_forward(q, k, v, beta, g, S0, 1.0, checkpoint=bad)


# ---------------------------------------------------------------------------------------------
# (I + A)^{-1} by forward substitution (the chunkwise form's sequential step)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1), (5, 5), (2, 3, 8, 8), (4, 16, 16)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unit_lower_inverse_kernel_matches_twin_and_solve(rng, shape, dtype):
    from minimem.kernels.unit_lower_inverse import unit_lower_inverse, unit_lower_inverse_reference
    A = (0.5 * rng.standard_normal(shape)).astype(dtype)
    X = unit_lower_inverse(A)
    assert X.shape == A.shape and X.dtype == dtype
    np.testing.assert_allclose(X, unit_lower_inverse_reference(A),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    # the upper triangle and the diagonal of A are never read
    L = np.tril(A.astype(np.float64), -1)
    eye = np.eye(shape[-1])
    np.testing.assert_allclose(X.astype(np.float64), np.linalg.solve(eye + L, np.broadcast_to(
        eye, L.shape)), atol=1e-4 if dtype == np.float32 else 1e-10)


def test_unit_lower_inverse_kernel_rejects_non_square(rng):
    from minimem.kernels.unit_lower_inverse import unit_lower_inverse
    with pytest.raises(ValueError, match=r"unit_lower_inverse: A must be \(\.\.\., C, C\)"):
        unit_lower_inverse(np.zeros((3, 4)))
