"""Graded exercises of the delta-rule chapter (20.1-20.7), checked against naive NumPy
formulations written in the tests (``naive_delta_recurrence`` of ``tests/_helpers.py``)."""
import numpy as np
import pytest
from _helpers import check_gradients, naive_delta_recurrence, tensor64

from minimem.kernels.delta_recurrent import step_backward_reference
from minimem.memory import (delta_product_reference, delta_rule_reference,
                            linear_attention_reference, ut_transform)


def _data(rng, B=2, H=2, T=6, Dk=3, Dv=4):
    q, k, v = (rng.standard_normal((B, H, T, D)) for D in (Dk, Dk, Dv))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    return (q, k, v, rng.uniform(0.1, 1.0, (B, H, T)), -rng.uniform(0, 0.5, (B, H, T)),
            rng.standard_normal((B, H, Dk, Dv)))


@pytest.mark.exercise("20.1", points=2)
def test_linear_attention_step(rng):
    q, k, v, _, _, S0 = _data(rng)
    o, S = linear_attention_reference(*map(tensor64, (q, k, v)), scale=0.5,
                                      initial_state=tensor64(S0))
    o_n, S_n = naive_delta_recurrence(q, k, v, None, None, S0, 0.5, delta=False)
    np.testing.assert_allclose(o.numpy(), o_n, atol=1e-10)
    np.testing.assert_allclose(S.numpy(), S_n, atol=1e-10)


@pytest.mark.exercise("20.1", points=2)
def test_linear_attention_step_is_differentiable(rng):
    q, k, v, _, _, S0 = (tensor64(a, True) for a in _data(rng, B=1, H=1, T=3, Dk=2, Dv=2))
    check_gradients(lambda *xs: linear_attention_reference(*xs[:3], initial_state=xs[3]),
                    (q, k, v, S0))


@pytest.mark.exercise("20.2", points=2)
@pytest.mark.parametrize("gated", [False, True])
def test_delta_rule_step(rng, gated):
    q, k, v, beta, g, S0 = _data(rng)
    o, S = delta_rule_reference(*map(tensor64, (q, k, v, beta)), tensor64(g) if gated else None,
                                scale=0.7, initial_state=tensor64(S0))
    o_n, S_n = naive_delta_recurrence(q, k, v, beta, g if gated else None, S0, 0.7)
    np.testing.assert_allclose(o.numpy(), o_n, atol=1e-10)
    np.testing.assert_allclose(S.numpy(), S_n, atol=1e-10)


@pytest.mark.exercise("20.2", points=2)
def test_delta_rule_step_is_differentiable(rng):
    q, k, v, beta, g, S0 = (tensor64(a, True) for a in _data(rng, B=1, H=1, T=3, Dk=2, Dv=2))
    check_gradients(lambda *xs: delta_rule_reference(*xs[:5], initial_state=xs[5]),
                    (q, k, v, beta, g, S0))


@pytest.mark.exercise("20.3", points=3)
@pytest.mark.parametrize("gated", [False, True])
def test_ut_transform_gives_the_written_pseudo_values(rng, gated):
    """For any entry state S0, the values written u_t (S_t = a_t S_{t-1} + k_t u_t^T) are
    the rows of U - W S0."""
    C, Dk, Dv = 7, 4, 3
    k = rng.standard_normal((C, Dk))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v, beta = rng.standard_normal((C, Dv)), rng.uniform(0.1, 1.0, C)
    g = -rng.uniform(0, 0.5, C) if gated else None
    W, U = ut_transform(k, v, beta, g)
    assert W.shape == (C, Dk) and U.shape == (C, Dv)
    S0 = rng.standard_normal((Dk, Dv))
    S, written = S0.copy(), []
    for t in range(C):
        if gated:
            S = np.exp(g[t]) * S
        u = beta[t] * (v[t] - S.T @ k[t])
        S = S + np.outer(k[t], u)
        written.append(u)
    np.testing.assert_allclose(U - W @ S0, np.array(written), atol=1e-10)


@pytest.mark.exercise("20.4", points=3)
@pytest.mark.parametrize("delta,gated", [(True, True), (True, False), (False, False)])
def test_step_backward_matches_finite_differences(rng, delta, gated):
    N, Dk, Dv, scale = 2, 3, 2, 0.6
    S_prev = rng.standard_normal((N, Dk, Dv))
    q, k, v = (rng.standard_normal((N, D)) for D in (Dk, Dk, Dv))
    beta, g = rng.uniform(0.2, 1.0, N), -rng.uniform(0.0, 0.5, N)
    dS, do = rng.standard_normal((N, Dk, Dv)), rng.standard_normal((N, Dv))

    def step(S_prev, q, k, v, beta, g):
        a = np.exp(g)[:, None, None] if gated else 1.0
        St = a * S_prev
        u = beta[:, None] * (v - np.einsum("nij,ni->nj", St, k)) if delta else v
        S = St + k[:, :, None] * u[:, None, :]
        return S, np.einsum("nij,ni->nj", S, scale * q)

    args = [S_prev, q, k, v, beta, g]
    S_t, _ = step(*args)
    got = step_backward_reference(S_prev, S_t, q, k, v, beta, g, dS, do, scale, delta, gated)
    dq, dk, dv, dbeta, dg, dS_prev = got
    want_order = {0: dS_prev, 1: dq, 2: dk, 3: dv, 4: dbeta, 5: dg}
    eps = 1e-6
    for i, x in enumerate(args):
        num = np.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            plus, minus = [a.copy() for a in args], [a.copy() for a in args]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            fp = sum((a * b).sum() for a, b in zip(step(*plus), (dS, do)))
            fm = sum((a * b).sum() for a, b in zip(step(*minus), (dS, do)))
            num[idx] = (fp - fm) / (2 * eps)
        np.testing.assert_allclose(want_order[i], num, atol=1e-7, err_msg=f"input {i}")


def _product_data(rng, B=2, H=2, T=5, n_h=2, D=3, Dv=2):
    k = rng.standard_normal((B, H, T, n_h, D))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    return (rng.standard_normal((B, H, T, D)), k, rng.standard_normal((B, H, T, n_h, Dv)),
            rng.uniform(0, 2, (B, H, T, n_h)), rng.standard_normal((B, H, D, Dv)))


@pytest.mark.exercise("20.5", points=2)
def test_delta_product_steps(rng):
    """Against n_h rank-one updates per token written here with NumPy."""
    q, k, v, beta, S0 = _product_data(rng)
    o, S = delta_product_reference(*map(tensor64, (q, k, v, beta)), scale=0.5,
                                   initial_state=tensor64(S0))
    St, o_n = S0.copy(), np.zeros(q.shape[:3] + (2,))
    for t in range(q.shape[2]):
        for j in range(k.shape[3]):
            kj = k[:, :, t, j]
            err = v[:, :, t, j] - np.einsum("bhij,bhi->bhj", St, kj)
            St = St + beta[:, :, t, j, None, None] * kj[..., :, None] * err[..., None, :]
        o_n[:, :, t] = np.einsum("bhij,bhi->bhj", St, 0.5 * q[:, :, t])
    np.testing.assert_allclose(o.numpy(), o_n, atol=1e-10)
    np.testing.assert_allclose(S.numpy(), St, atol=1e-10)


@pytest.mark.exercise("20.5", points=2)
def test_delta_product_steps_are_differentiable(rng):
    ins = [tensor64(a, True) for a in _product_data(rng, B=1, H=1, T=2, D=2)]
    check_gradients(lambda *xs: delta_product_reference(*xs[:4], initial_state=xs[4]), ins)


@pytest.mark.exercise("20.6", points=2)
def test_normalizer(rng):
    """o_t = sum_j kappa_tj v_j / (sum_j kappa_tj + eps), kappa = phi(q).phi(k) >= 0."""
    q, k, v = (rng.standard_normal((2, 2, 7, 3)) for _ in range(3))
    fq, fk = np.where(q > 0, q + 1, np.exp(q)), np.where(k > 0, k + 1, np.exp(k))   # elu + 1
    kappa = np.einsum("bhtd,bhjd->bhtj", fq, fk) * np.tril(np.ones((7, 7)))
    want = kappa @ v / (kappa.sum(-1, keepdims=True) + 1e-3)
    o, S = linear_attention_reference(*map(tensor64, (q, k, v)), feature_map="elu1",
                                      normalize=True, eps=1e-3)
    np.testing.assert_allclose(o.numpy(), want, atol=1e-10)
    np.testing.assert_allclose(S.numpy()[..., -1], fk.sum(2), atol=1e-10)


@pytest.mark.exercise("20.6", points=2)
def test_normalizer_is_differentiable(rng):
    ins = [tensor64(np.abs(rng.standard_normal((1, 1, 3, 2))) + 0.1, True) for _ in range(3)]
    check_gradients(lambda *xs: linear_attention_reference(*xs, normalize=True), ins)


@pytest.mark.exercise("20.7", points=3)
def test_rotation_angle_matches_the_spectrum_of_two_reflections(rng):
    from minimem.memory.delta.lab import reflection_rotation_angle
    for _ in range(5):
        k1, k2 = rng.standard_normal((2, 4))
        k1, k2 = k1 / np.linalg.norm(k1), k2 / np.linalg.norm(k2)
        reflect = [np.eye(4) - 2 * np.outer(k, k) for k in (k1, k2)]
        angles = np.sort(np.abs(np.angle(np.linalg.eigvals(reflect[1] @ reflect[0]))))
        theta = reflection_rotation_angle(k1, k2)
        assert isinstance(theta, float)
        np.testing.assert_allclose(angles[-2:], [theta, theta], atol=1e-8)
        np.testing.assert_allclose(angles[:2], 0, atol=1e-8)
