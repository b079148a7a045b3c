"""ATLAS's Omega rule and Muon's Newton-Schulz step: reference loops, chunks, properties."""
import math

import numpy as np
import pytest
from _helpers import check_gradients, tensor64

import minimem as mm
from minimem.memory import (feature_dim, feature_map, neural_memory, newton_schulz,
                            omega_memory, omega_memory_reference)


def _inputs(rng, d_in=3, d_k=3, d_v=3, B=2, H=2, T=8, memory="linear"):
    q, k = (tensor64(0.7 * rng.standard_normal((B, H, T, d_in)), True) for _ in range(2))
    v = tensor64(0.7 * rng.standard_normal((B, H, T, d_v)), True)
    gates = [tensor64(rng.uniform(lo, hi, (B, H, T)), True)
             for lo, hi in ((0.05, 0.25), (0.0, 0.9), (0.0, 0.3), (0.5, 1.5))]
    shapes = [(1, H, d_k, d_v)] if memory == "linear" else [(1, H, d_k, 4), (1, H, 4, d_v)]
    params = tuple(tensor64(0.3 * rng.standard_normal(s), True) for s in shapes)
    return (q, k, v, *gates), params


def _ns_by_svd(G, steps=5):
    """Newton-Schulz through the SVD: the singular values of G / |G|_F pushed through the
    scalar quintic ``steps`` times, the singular vectors kept."""
    U, s, Vt = np.linalg.svd(G, full_matrices=False)
    x = s / np.sqrt((G ** 2).sum() + 1e-14)
    for _ in range(steps):
        x = 3.4445 * x - 4.7750 * x ** 3 + 2.0315 * x ** 5
    return U @ np.diag(x) @ Vt


@pytest.mark.exercise("25.1", points=2)
@pytest.mark.parametrize("shape", [(3, 5), (6, 2), (4, 4)])
def test_newton_schulz_maps_singular_values_through_the_quintic(rng, shape):
    G = rng.standard_normal(shape)
    np.testing.assert_allclose(newton_schulz(tensor64(G)).numpy(), _ns_by_svd(G), atol=1e-9)
    s = np.linalg.svd(newton_schulz(tensor64(G)).numpy(), compute_uv=False)
    assert 0.6 < s.min() and s.max() < 1.25            # near-orthogonal after 5 steps


@pytest.mark.exercise("25.1", points=2)
def test_newton_schulz_is_batched_and_differentiable(rng):
    G = rng.standard_normal((2, 3, 4))
    out = newton_schulz(tensor64(G), steps=3).numpy()
    for i in range(2):
        np.testing.assert_allclose(out[i], _ns_by_svd(G[i], steps=3), atol=1e-9)
    check_gradients(lambda x: newton_schulz(x, steps=2), [tensor64(G[0])])


def test_newton_schulz_rejects_bad_inputs():
    with pytest.raises(ValueError, match="newton_schulz: G must have at least 2 axes"):
        newton_schulz(mm.zeros(3, dtype=np.float64))
    with pytest.raises(ValueError, match="newton_schulz: steps must be an int >= 0"):
        newton_schulz(mm.zeros(2, 2, dtype=np.float64), steps=-1)
    with pytest.raises(TypeError, match="newton_schulz: argument 'G' must be floating"):
        newton_schulz(mm.tensor(np.ones((2, 2), dtype=np.int64)))


def test_window_one_momentum_is_the_neural_memory(rng):
    (q, k, v, th, et, al, _), params = _inputs(rng)
    o1, (M1,) = omega_memory(q, k, v, th, et, al, params)
    o2, (M2,) = neural_memory(q, k, v, th, et, al, params)
    np.testing.assert_allclose(o1.numpy(), o2.numpy(), atol=1e-10)
    np.testing.assert_allclose(M1.numpy(), M2.numpy(), atol=1e-10)


def _grads(out, leaves, w):
    for x in leaves:
        x.grad = None
    (out * tensor64(w)).sum().backward()
    return [x.grad.numpy() for x in leaves]


@pytest.mark.parametrize("optimizer", ["momentum", "muon"])
@pytest.mark.parametrize("memory", ["linear", "mlp"])
@pytest.mark.parametrize("window,C,poly", [(1, 1, False), (3, 1, True), (3, 4, False),
                                           (2, 3, True)])
def test_omega_memory_equals_its_reference_loop(rng, optimizer, memory, window, C, poly):
    fm = ("poly", {"degree": 2}) if poly else None
    d_k = feature_dim("poly", 3, degree=2) if poly else 3
    (q, k, v, th, et, al, ga), params = _inputs(rng, d_k=d_k, memory=memory)
    leaves = [q, k, v, th, et, al, ga, *params]
    kw = {"window": window, "gamma": ga, "feature_map": fm, "optimizer": optimizer,
          "memory": memory, "chunk_size": C}
    w = rng.standard_normal(v.shape)
    o1, p1 = omega_memory(q, k, v, th, et, al, params, **kw)
    g1 = _grads(o1, leaves, w)
    o2, p2 = omega_memory_reference(q, k, v, th, et, al, params, **kw)
    g2 = _grads(o2, leaves, w)
    np.testing.assert_allclose(o1.numpy(), o2.numpy(), atol=1e-10)
    for a, b in zip([p.numpy() for p in p1] + g1, [p.numpy() for p in p2] + g2):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.exercise("25.2", points=3)
def test_omega_reference_step_is_windowed_least_squares_by_hand(rng):
    """Linear memory, GD (eta = 0, alpha = 0): each step is the gradient of the weighted
    window loss, written out in NumPy."""
    T, d, w = 7, 3, 3
    q, k, v = (rng.standard_normal((1, 1, T, d)) for _ in range(3))
    theta, gamma = rng.uniform(0.05, 0.2, (1, 1, T)), rng.uniform(0.5, 1.5, (1, 1, T))
    M0 = rng.standard_normal((1, 1, d, d))
    zeros = np.zeros((1, 1, T))
    o, (M,) = omega_memory_reference(*map(tensor64, (q, k, v, theta, zeros, zeros)),
                                     (tensor64(M0),), window=w, gamma=tensor64(gamma))
    Mh, reads = M0[0, 0].copy(), []
    for t in range(T):
        grad = sum(gamma[0, 0, i] * 2 * np.outer(k[0, 0, i], Mh.T @ k[0, 0, i] - v[0, 0, i])
                   for i in range(max(0, t - w + 1), t + 1))
        Mh = Mh - theta[0, 0, t] * grad
        reads.append(Mh.T @ q[0, 0, t])
    np.testing.assert_allclose(M.numpy()[0, 0], Mh, atol=1e-12)
    np.testing.assert_allclose(o.numpy()[0, 0], np.array(reads), atol=1e-12)


@pytest.mark.exercise("25.2", points=3)
def test_omega_reference_with_poly_features_and_muon_matches_by_hand(rng):
    T, d, w = 5, 2, 2
    q, k, v = (rng.standard_normal((1, 1, T, d)) * 0.7 for _ in range(3))
    theta, eta = np.full((1, 1, T), 0.1), np.full((1, 1, T), 0.5)
    D = feature_dim("poly", d, degree=2)
    phi = feature_map(tensor64(k), "poly", degree=2).numpy()[0, 0]
    phq = feature_map(tensor64(q), "poly", degree=2).numpy()[0, 0]
    o, (M,) = omega_memory_reference(
        *map(tensor64, (q, k, v, theta, eta, np.zeros((1, 1, T)))),
        (tensor64(np.zeros((1, 1, D, d))),), window=w, feature_map=("poly", {"degree": 2}),
        optimizer="muon")
    Mh, Sig = np.zeros((D, d)), np.zeros((D, d))
    for t in range(T):
        grad = sum(2 * np.outer(phi[i], Mh.T @ phi[i] - v[0, 0, i])
                   for i in range(max(0, t - w + 1), t + 1))
        Sig = 0.5 * Sig + grad
        Mh = Mh - 0.1 * _ns_by_svd(Sig)
    np.testing.assert_allclose(M.numpy()[0, 0], Mh, atol=1e-9)
    np.testing.assert_allclose(o.numpy()[0, 0, -1], Mh.T @ phq[-1], atol=1e-9)


def test_omega_memory_rejects_bad_inputs(rng):
    (q, k, v, th, et, al, _), params = _inputs(rng, B=1, H=1, T=3)
    with pytest.raises(ValueError, match="omega_memory: window must be an int >= 1"):
        omega_memory(q, k, v, th, et, al, params, window=0)
    with pytest.raises(ValueError, match="omega_memory: optimizer must be one of"):
        omega_memory(q, k, v, th, et, al, params, optimizer="adam")
    with pytest.raises(ValueError, match=r"omega_memory: gamma must have shape \(B, H, T\)"):
        omega_memory(q, k, v, th, et, al, params, gamma=mm.ones(1, 1, 2, dtype=np.float64))
    with pytest.raises(ValueError, match="omega_memory: params0 must map D_k = 13"):
        omega_memory(q, k, v, th, et, al, params, feature_map="taylor2")
    with pytest.raises(TypeError, match="omega_memory: feature_map must be None, a kind"):
        omega_memory(q, k, v, th, et, al, params, feature_map=("poly", 2))
    with pytest.raises(ValueError, match="omega_memory: feature_map 'cosine': feature_map: "
                                         "kind must be one of"):
        omega_memory(q, k, v, th, et, al, params, feature_map="cosine")


def test_poly_features_hold_more_pairs_than_raw_keys():
    """Streaming 12 pairs through a linear memory on 4-dim keys: poly features recall them
    better than raw keys (which hold at most 4 independent pairs)."""
    from minimem.memory.titans.lab import capacity_experiment
    r = capacity_experiment(d_k=4, d_v=12, n_pairs=(3, 12), passes=3, seeds=(0, 1, 2),
                            configs=(("raw", None, 1), ("poly", 2, 2)))
    assert r["recall"]["poly"][1].mean() > r["recall"]["raw"][1].mean() + 0.2
    assert r["least_squares"]["poly 2"][1].mean() > 0.95
    assert r["predicted"] == {"raw keys": 4, "poly 2": math.comb(6, 2)}


@pytest.mark.exercise("25.3", points=2)
def test_predicted_capacity_matches_the_rank_of_poly_features(rng):
    from minimem.memory.titans.lab import predicted_capacity
    for d, p in ((3, 2), (2, 4)):
        phi = feature_map(tensor64(rng.standard_normal((80, d))), "poly", degree=p).numpy()
        assert predicted_capacity(d, p) == np.linalg.matrix_rank(phi)
    assert predicted_capacity(6) == 6
    with pytest.raises(ValueError, match="predicted_capacity: d_k must be an int >= 1"):
        predicted_capacity(0)
