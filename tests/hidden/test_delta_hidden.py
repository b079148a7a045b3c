"""Hidden grading tests of the delta-rule chapter (not shipped to students)."""
import numpy as np
import pytest
from _helpers import tensor64

from minimem.kernels.delta_recurrent import step_backward_reference
from minimem.memory import delta_rule_reference, linear_attention_reference, ut_transform


@pytest.mark.exercise("20.1", points=2)
def test_linear_attention_is_masked_attention_without_softmax(rng):
    q, k, v = (rng.standard_normal((1, 3, 8, 4)) for _ in range(3))
    o, S = linear_attention_reference(tensor64(q), tensor64(k), tensor64(v), scale=1.0)
    A = np.tril(q @ np.swapaxes(k, -1, -2))
    np.testing.assert_allclose(o.numpy(), A @ v, atol=1e-10)
    np.testing.assert_allclose(S.numpy(), np.swapaxes(k, -1, -2) @ v, atol=1e-10)


@pytest.mark.exercise("20.2", points=2)
def test_delta_rule_overwrites_with_beta_one(rng):
    D = 5
    keys = np.linalg.qr(rng.standard_normal((D, D)))[0].T
    v_old, v_new = rng.standard_normal((D, 3)), rng.standard_normal((D, 3))
    k = np.concatenate([keys, keys])[None, None]
    v = np.concatenate([v_old, v_new])[None, None]
    k, v = tensor64(k), tensor64(v)
    _, S = delta_rule_reference(k, k, v, tensor64(np.ones((1, 1, 2 * D))), scale=1.0)
    np.testing.assert_allclose(keys @ S.numpy()[0, 0], v_new, atol=1e-10)
    _, S0 = delta_rule_reference(k, k, v, tensor64(np.zeros((1, 1, 2 * D))))
    np.testing.assert_allclose(S0.numpy(), 0, atol=0)


@pytest.mark.exercise("20.3", points=3)
def test_ut_transform_orthonormal_keys_beta_one(rng):
    C = 4
    k = np.linalg.qr(rng.standard_normal((C, C)))[0].T
    v = rng.standard_normal((C, 2))
    W, U = ut_transform(k, v, np.ones(C))
    np.testing.assert_allclose(W, k, atol=1e-12)   # A = 0: T = I
    np.testing.assert_allclose(U, v, atol=1e-12)


@pytest.mark.exercise("20.4", points=3)
def test_step_backward_linear_attention_closed_form(rng):
    N, D = 2, 3
    S_prev, dS = rng.standard_normal((N, D, D)), rng.standard_normal((N, D, D))
    q, k, v, do = (rng.standard_normal((N, D)) for _ in range(4))
    S_t = S_prev + k[:, :, None] * v[:, None, :]
    dq, dk, dv, dbeta, dg, dS_prev = step_backward_reference(
        S_prev, S_t, q, k, v, np.ones(N), np.zeros(N), dS, do, 1.0, delta=False, gated=False)
    dS_total = dS + q[:, :, None] * do[:, None, :]
    np.testing.assert_allclose(dS_prev, dS_total, atol=1e-12)
    np.testing.assert_allclose(dk, np.einsum("nij,nj->ni", dS_total, v), atol=1e-12)
    np.testing.assert_allclose(dv, np.einsum("nij,ni->nj", dS_total, k), atol=1e-12)
    np.testing.assert_allclose(dq, np.einsum("nij,nj->ni", S_t, do), atol=1e-12)
    np.testing.assert_array_equal(dbeta, 0)    # linear attention has no beta and no decay
    np.testing.assert_array_equal(dg, 0)


@pytest.mark.exercise("20.5", points=2)
def test_delta_product_two_equal_reflections_cancel(rng):
    """n_h = 2, the same unit key twice with beta = 2 and zero values: H H = I, the state comes
    back unchanged; with one beta = 1 step and n_h = 1 the value is replaced."""
    from minimem.memory import delta_product_reference
    k = rng.standard_normal(3)
    k /= np.linalg.norm(k)
    S0 = rng.standard_normal((1, 1, 3, 2))
    keys = np.broadcast_to(k, (1, 1, 1, 2, 3)).copy()
    _, S = delta_product_reference(tensor64(np.ones((1, 1, 1, 3))), tensor64(keys),
                                   tensor64(np.zeros((1, 1, 1, 2, 2))),
                                   tensor64(np.full((1, 1, 1, 2), 2.0)),
                                   initial_state=tensor64(S0))
    np.testing.assert_allclose(S.numpy(), S0, atol=1e-12)
    v = rng.standard_normal(2)
    _, S1 = delta_product_reference(tensor64(np.ones((1, 1, 1, 3))), tensor64(keys[:, :, :, :1]),
                                    tensor64(v[None, None, None, None]),
                                    tensor64(np.ones((1, 1, 1, 1))),
                                    initial_state=tensor64(S0))
    np.testing.assert_allclose(S1.numpy()[0, 0].T @ k, v, atol=1e-12)


@pytest.mark.exercise("20.6", points=2)
def test_normalizer_with_equal_keys_is_the_running_mean(rng):
    from minimem.memory import linear_attention_reference
    T = 6
    q = np.abs(rng.standard_normal((1, 1, T, 3))) + 0.1
    k = np.broadcast_to(np.abs(rng.standard_normal(3)) + 0.1, (1, 1, T, 3)).copy()
    v = rng.standard_normal((1, 1, T, 2))
    o, _ = linear_attention_reference(tensor64(q), tensor64(k), tensor64(v), normalize=True,
                                      eps=1e-12, scale=5.0)
    mean = np.cumsum(v, axis=2) / np.arange(1, T + 1)[:, None]
    np.testing.assert_allclose(o.numpy(), mean, atol=1e-9)


@pytest.mark.exercise("20.7", points=3)
def test_rotation_angle_special_cases():
    from minimem.memory.delta.lab import reflection_rotation_angle
    e1, e2 = np.eye(3)[0], np.eye(3)[1]
    assert abs(reflection_rotation_angle(e1, e2) - np.pi) < 1e-12       # orthogonal keys
    assert abs(reflection_rotation_angle(e1, e1)) < 1e-6                 # the same key: H H = I
    assert abs(reflection_rotation_angle(e1, -e1)) < 1e-6
    c = np.array([np.cos(0.3), np.sin(0.3), 0.0])
    assert abs(reflection_rotation_angle(e1, c) - 0.6) < 1e-12
