"""Modern continuous Hopfield network: update, energy, softmax1, separation bound, regimes."""
import numpy as np
import pytest
from _helpers import leaf
from hypothesis import given
from hypothesis import strategies as st

import minimem as mm
from minimem.memory import (
    hopfield_energy,
    hopfield_retrieve,
    hopfield_retrieve_reference,
    retrieval_error_bound,
    separation,
    softmax1,
)
from minimem.memory.hopfield.lab import (beta_regimes, center_normalize, energy_grid,
                                         error_vs_bound, make_image_patterns, mask_half,
                                         retrieval_trajectory)

T64 = {"dtype": np.float64}


# -- exercises -------------------------------------------------------------------------------
@pytest.mark.exercise("10.4", points=2)
def test_exercise_continuous_update():
    rng = np.random.default_rng(0)
    R, Y, beta = rng.standard_normal((3, 5)), rng.standard_normal((7, 5)), 0.8
    out = hopfield_retrieve(mm.tensor(R, **T64), mm.tensor(Y, **T64), beta, steps=2).numpy()
    expected = R.copy()
    for _ in range(2):
        z = beta * expected @ Y.T
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        expected = p @ Y
    np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.exercise("10.5", points=2)
def test_exercise_softmax1():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((4, 6))
    y = softmax1(mm.tensor(z, **T64)).numpy()
    np.testing.assert_allclose(y, np.exp(z) / (1 + np.exp(z).sum(axis=1, keepdims=True)),
                               atol=1e-14)
    assert np.all(y.sum(axis=1) < 1)
    big = softmax1(mm.tensor([[1000.0, 999.0], [-1000.0, -1000.0]], **T64)).numpy()
    assert np.all(np.isfinite(big))
    np.testing.assert_allclose(big[0], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1))])
    np.testing.assert_allclose(big[1], 0, atol=1e-300)


# -- two formulations, forward and backward -------------------------------------------------
@pytest.mark.parametrize("softmax", ["softmax", "softmax1"])
def test_batched_update_matches_column_vector_form(softmax):
    rng = np.random.default_rng(2)
    R, Y = rng.standard_normal((2, 3, 4)), rng.standard_normal((6, 4))
    out = hopfield_retrieve(mm.tensor(R, **T64), mm.tensor(Y, **T64), 1.1, 3, softmax).numpy()
    np.testing.assert_allclose(out, hopfield_retrieve_reference(R, Y, 1.1, 3, softmax),
                               atol=1e-12)
    vec = hopfield_retrieve(mm.tensor(R[0, 0], **T64), mm.tensor(Y, **T64), 1.1, 3, softmax)
    assert vec.shape == (4,)
    np.testing.assert_allclose(vec.numpy(), out[0, 0], atol=1e-12)


def test_batched_update_gradient_matches_per_query_loop():
    rng = np.random.default_rng(3)
    q1, y1 = leaf(rng, 3, 4), leaf(rng, 5, 4)
    q2, y2 = mm.tensor(q1.data, requires_grad=True), mm.tensor(y1.data, requires_grad=True)
    w = mm.tensor(rng.standard_normal((3, 4)))
    (hopfield_retrieve(q1, y1, 0.9, steps=2) * w).sum().backward()
    rows = []
    for i in range(3):  # one query at a time: xi <- X softmax(beta X^T xi), X = y^T
        xi = q2[i]
        for _ in range(2):
            xi = mm.einsum("nd,n->d", y2, mm.softmax(0.9 * mm.einsum("nd,d->n", y2, xi)))
        rows.append(xi)
    (mm.stack(rows) * w).sum().backward()
    np.testing.assert_allclose(q1.grad.numpy(), q2.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(y1.grad.numpy(), y2.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("fn", [
    lambda q, y: hopfield_retrieve(q, y, beta=0.6, steps=3),
    lambda q, y: hopfield_retrieve(q, y, beta=2.0, softmax="softmax1"),
    lambda q, y: hopfield_energy(q, y, beta=0.7),
])
def test_gradcheck(fn):
    rng = np.random.default_rng(4)
    assert mm.gradcheck(fn, (leaf(rng, 2, 3), leaf(rng, 4, 3)))


def test_cases_are_registered():  # they run in tests/apps/test_gradcheck_cases.py
    from minimem.autograd.registry import cases

    names = {c.name for c in cases("hopfield")}
    assert {"softmax1", "hopfield_energy", "Hopfield (1 step, 2 heads)", "Hopfield (3 steps)",
            "HopfieldLayer (2 steps)", "HopfieldPooling"} <= names


# -- energy ------------------------------------------------------------------------------------
@given(st.integers(0, 10**6), st.floats(0.05, 20.0))
def test_energy_is_nonnegative_and_never_increases(seed, beta):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((6, 3))
    xi = 2 * rng.standard_normal((4, 3))
    E = [hopfield_energy(xi, Y, beta).numpy()]
    for _ in range(4):
        xi = hopfield_retrieve_reference(xi, Y, beta)
        E.append(hopfield_energy(xi, Y, beta).numpy())
    E = np.array(E)
    M2 = (Y * Y).sum(axis=1).max()
    assert np.all(E >= -1e-12) and np.all(E <= 2 * M2 + 1e-9 + E[0])  # E_0: arbitrary start
    assert np.all(np.diff(E, axis=0) <= 1e-10)
    assert np.all(E[1:] <= 2 * M2 + 1e-9)  # after an update xi lies in the hull: E <= 2 M^2


def test_energy_value():
    rng = np.random.default_rng(5)
    Y, xi, beta = rng.standard_normal((4, 3)), rng.standard_normal(3), 0.5
    lse = np.log(np.exp(beta * Y @ xi).sum()) / beta
    M2 = (Y * Y).sum(axis=1).max()
    expected = -lse + 0.5 * xi @ xi + np.log(4) / beta + 0.5 * M2
    assert hopfield_energy(xi, Y, beta).item() == pytest.approx(expected, rel=1e-12)


# -- retrieval experiments ------------------------------------------------------------------
def test_half_masked_image_retrieved_in_one_step():
    X, _ = make_image_patterns(6, 16, binary=True, jitter=0.25, seed=0)
    out = hopfield_retrieve(mask_half(X, 16), X, beta=2.0).numpy()  # top-half gaps >= 8
    np.testing.assert_allclose(out, X, atol=1e-3)
    blurred = hopfield_retrieve(mask_half(X, 16), X, beta=0.005).numpy()
    assert np.abs(blurred - X).max() > 0.5  # a small beta averages instead


def test_three_regimes_on_image_patterns():
    X, _ = make_image_patterns(8, 16, binary=False, jitter=0.0, noise=0.1, seed=0)
    Xc = center_normalize(X)
    n_eff = beta_regimes(Xc, [0.3, 25.0, 1000.0])
    assert n_eff[0] > 0.9 * len(X)           # global average over all 32 patterns
    assert 6 <= n_eff[1] <= 10               # metastable: averages one class of 8
    assert n_eff[2] < 1.2                    # a single pattern


@given(st.integers(0, 10**6), st.floats(0.5, 30.0), st.floats(0.0, 0.1))
def test_retrieval_error_within_separation_bound(seed, beta, dist):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((5, 8))
    i = int(rng.integers(5))
    direction = rng.standard_normal(8)
    xi = Y[i] + dist * direction / np.linalg.norm(direction)
    err = np.linalg.norm(hopfield_retrieve_reference(xi, Y, beta) - Y[i])
    assert err <= retrieval_error_bound(xi, Y, i, beta) * (1 + 1e-9) + 1e-12


def test_separation_and_error_curve():
    Y = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -0.2]])
    np.testing.assert_allclose(separation(Y), [1.0, 1.0, 1.04 + 0.2])
    err, bound = error_vs_bound(Y, [1.0, 5.0, 20.0], i=0)
    assert np.all(err <= bound) and err[-1] < err[0]


def test_trajectory_and_energy_grid():
    Y = np.array([[1.0, 0.0], [0.0, 1.0], [-0.7, -0.7]])
    tr = retrieval_trajectory([0.2, 0.1], Y, beta=8.0, steps=4)
    assert tr.shape == (5, 2)
    np.testing.assert_allclose(tr[-1], Y[0], atol=1e-2)
    xs, ys, E = energy_grid(Y, beta=8.0, lim=1.5, n=31)
    assert E.shape == (31, 31) and E.min() >= 0
    j, k = np.unravel_index(E.argmin(), E.shape)  # the lowest grid point is near a pattern
    assert min(np.hypot(xs[k] - y[0], ys[j] - y[1]) for y in Y) < 0.2


def test_errors_are_clear():
    with pytest.raises(ValueError, match=r"hopfield_retrieve: queries must be \(\.\.\., d\) with d=3"):
        hopfield_retrieve(np.ones((2, 4)), np.ones((5, 3)), beta=1.0)
    with pytest.raises(ValueError, match=r"hopfield_retrieve: beta must be a positive number"):
        hopfield_retrieve(np.ones((2, 3)), np.ones((5, 3)), beta=0)
    with pytest.raises(ValueError, match=r"hopfield_retrieve: softmax must be one of"):
        hopfield_retrieve(np.ones((2, 3)), np.ones((5, 3)), beta=1.0, softmax="sparsemax")
    with pytest.raises(ValueError, match=r"hopfield_retrieve: steps must be an int >= 1"):
        hopfield_retrieve(np.ones((2, 3)), np.ones((5, 3)), beta=1.0, steps=0)
    with pytest.raises(ValueError, match=r"separation: stored must be \(N, d\) with N >= 2"):
        separation(np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"softmax1: axis must be an int"):
        softmax1(np.ones((2, 3)), axis=2)
