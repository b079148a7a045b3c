"""Graded exercises of the delta-rule chapter (20.1-20.4), checked against naive NumPy
formulations written in the tests (``naive_delta_recurrence`` of ``tests/_helpers.py``)."""
import numpy as np
import pytest
from _helpers import check_gradients, naive_delta_recurrence, tensor64

from minimem.kernels.delta_recurrent import step_backward_reference
from minimem.memory import delta_rule_reference, linear_attention_reference, ut_transform


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
