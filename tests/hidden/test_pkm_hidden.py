"""Hidden grading tests of the product-key memory exercises (30.1-30.3).

Each compares the student's code with a naive formulation written here.
"""
import numpy as np
import pytest

import minimem as mm
from minimem.kernels.weighted_read import gather_weighted_rows_backward_reference
from minimem.memory import memory_read_reference, product_key_topk_reference


def _naive_scores(q1, q2, C1, C2):
    M, H, _ = q1.shape
    n = C1.shape[1]
    full = np.zeros((M, H, n * n))
    for h in range(H):
        for a in range(n):
            for b in range(n):
                full[:, h, a * n + b] = q1[:, h] @ C1[h, a] + q2[:, h] @ C2[h, b]
    return full


@pytest.mark.exercise("30.1", points=3)
@pytest.mark.parametrize("H,n,k", [(1, 3, 1), (2, 3, 9), (2, 4, 7), (3, 6, 4)])
def test_hidden_product_topk_cases(H, n, k):
    rng = np.random.default_rng(10 * n + k)
    q1, q2 = rng.standard_normal((2, 5, H, 2))
    C1, C2 = rng.standard_normal((2, H, n, 2))
    leaves = [mm.tensor(a, requires_grad=True) for a in (q1, q2, C1, C2)]
    scores, slots = product_key_topk_reference(*leaves, k)
    full = _naive_scores(q1, q2, C1, C2)
    ref = np.argsort(-full, -1)[..., :k]
    assert scores.shape == (5, H, k) and np.asarray(slots).shape == (5, H, k)
    np.testing.assert_array_equal(np.sort(np.asarray(slots), -1), np.sort(ref, -1))
    np.testing.assert_allclose(scores.numpy(), np.take_along_axis(full, ref, -1), atol=1e-12)
    # d(sum of chosen scores)/d q1[m, h] = sum over the chosen slots of C1[h, a]
    scores.sum().backward()
    a = np.asarray(slots) // n
    expect = np.stack([C1[h][a[:, h]].sum(1) for h in range(H)], axis=1)
    np.testing.assert_allclose(leaves[0].grad.numpy(), expect, atol=1e-10)


@pytest.mark.exercise("30.2", points=2)
def test_hidden_memory_read_gradients():
    rng = np.random.default_rng(3)
    V = mm.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    s = mm.tensor(rng.standard_normal((3, 2, 4)), requires_grad=True)
    slots = rng.integers(0, 5, size=(3, 2, 4))
    G = rng.standard_normal((3, 3))
    (memory_read_reference(V, slots, s) * mm.tensor(G)).sum().backward()
    e = np.exp(s.numpy())
    w = e / e.sum(-1, keepdims=True)
    r = np.einsum("mhjd,md->mhj", V.numpy()[slots], G)          # <V[slot], G_m>
    np.testing.assert_allclose(s.grad.numpy(), w * (r - (w * r).sum(-1, keepdims=True)),
                               atol=1e-10)
    gV = np.zeros((5, 3))
    for m in range(3):
        for h in range(2):
            for j in range(4):
                gV[slots[m, h, j]] += w[m, h, j] * G[m]
    np.testing.assert_allclose(V.grad.numpy(), gV, atol=1e-10)


@pytest.mark.exercise("30.3", points=3)
def test_hidden_read_backward_repeats_and_dtype():
    rng = np.random.default_rng(5)
    V = rng.standard_normal((40, 6)).astype(np.float32)
    idx = rng.integers(0, 8, size=(10, 12))                        # many repeats, rows 8.. unread
    w = rng.standard_normal((10, 12)).astype(np.float32)
    g = rng.standard_normal((10, 6)).astype(np.float32)
    gV, gw = gather_weighted_rows_backward_reference(V, idx, w, g)
    assert gV.shape == V.shape and gw.shape == w.shape and gV.dtype == np.float32
    expect = np.zeros((40, 6))
    np.add.at(expect, idx.ravel(), (w[:, :, None] * g[:, None, :]).reshape(-1, 6))
    np.testing.assert_allclose(gV, expect, rtol=1e-5, atol=1e-5)
    assert (gV[8:] == 0).all()
    np.testing.assert_allclose(gw, (V[idx] * g[:, None, :]).sum(-1), rtol=1e-5, atol=1e-5)
