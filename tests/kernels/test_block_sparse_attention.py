"""Block-sparse attention kernels vs their dense-masked NumPy twins (float64, small sizes).

Also run under NUMBA_DISABLE_JIT=1 (the kernels then run as plain Python).
"""
import numpy as np
import pytest

from minimem.kernels.block_sparse_attention import (
    block_sparse_attention_backward,
    block_sparse_attention_backward_reference,
    block_sparse_attention_forward,
    block_sparse_attention_forward_reference,
    layout_to_csr,
)

CASES = [  # (T, S, block, causal): ragged last block, a single block, cross-length causal
    (10, 10, 4, True), (13, 13, 4, False), (5, 5, 8, True), (9, 12, 4, True), (8, 8, 2, True),
]


def _naive(q, k, v, mask, scale):
    """Row by row softmax over the allowed keys; zeros on empty rows."""
    B, H, T, _ = q.shape
    o = np.zeros(q.shape[:3] + (v.shape[-1],))
    lse = np.full((B, H, T), -np.inf)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                js = np.flatnonzero(mask[i])
                if js.size:
                    s = scale * k[b, h, js] @ q[b, h, i]
                    w = np.exp(s - s.max())
                    o[b, h, i] = w @ v[b, h, js] / w.sum()
                    lse[b, h, i] = s.max() + np.log(w.sum())
    return o, lse


@pytest.mark.parametrize("T,S,b,causal", CASES)
def test_forward_and_backward_match_the_dense_twin(T, S, b, causal):
    rng = np.random.default_rng(T * 100 + S)
    q, k = rng.standard_normal((2, 2, T, 3)), rng.standard_normal((2, 2, S, 3))
    v = rng.standard_normal((2, 2, S, 4))
    layout = rng.random((-(-T // b), -(-S // b))) < 0.6
    layout[0] = False  # an empty layout row: those queries attend to nothing
    o, lse = block_sparse_attention_forward(q, k, v, layout, b, causal)
    o_ref, lse_ref = block_sparse_attention_forward_reference(q, k, v, layout, b, causal)
    np.testing.assert_allclose(o, o_ref, atol=1e-12)
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(lse_ref))
    finite = np.isfinite(lse_ref)
    np.testing.assert_allclose(lse[finite], lse_ref[finite], atol=1e-12)
    assert (o[:, :, :b] == 0).all()
    # an independent row-by-row formulation
    mask = layout[np.arange(T)[:, None] // b, np.arange(S)[None, :] // b]
    if causal:
        mask &= np.tri(T, S, S - T, dtype=bool)
    o_naive, lse_naive = _naive(q, k, v, mask, 3 ** -0.5)
    np.testing.assert_allclose(o, o_naive, atol=1e-12)
    np.testing.assert_allclose(lse[finite], lse_naive[finite], atol=1e-12)
    do = rng.standard_normal(o.shape)
    grads = block_sparse_attention_backward(q, k, v, o, lse, do, layout, b, causal)
    grads_ref = block_sparse_attention_backward_reference(q, k, v, do, layout, b, causal)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, atol=1e-12)
    assert (grads[0][:, :, :b] == 0).all()


def test_float32_kernel_agrees_with_float64():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 37, 8)) for _ in range(3))
    layout = np.tril(np.ones((5, 5), bool))
    o64, lse64 = block_sparse_attention_forward(q, k, v, layout, 8)
    o32, lse32 = block_sparse_attention_forward(*(x.astype(np.float32) for x in (q, k, v)),
                                                layout, 8)
    assert o32.dtype == np.float32 and lse32.dtype == np.float32
    np.testing.assert_allclose(o32, o64, atol=2e-5)
    do = rng.standard_normal(o64.shape)
    g64 = block_sparse_attention_backward(q, k, v, o64, lse64, do, layout, 8)
    g32 = block_sparse_attention_backward(*(x.astype(np.float32) for x in (q, k, v, o32)),
                                          lse32, do.astype(np.float32), layout, 8)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_layout_to_csr():
    layout = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1]], bool)
    row_ptr, cols = layout_to_csr(layout)
    np.testing.assert_array_equal(row_ptr, [0, 2, 2, 5])
    np.testing.assert_array_equal(cols, [0, 2, 0, 1, 2])


@pytest.mark.exercise("40.4", points=3)
def test_sparse_forward_equals_row_by_row_softmax():
    rng = np.random.default_rng(3)
    T, b = 10, 4
    q, k, v = (rng.standard_normal((1, 1, T, 3)) for _ in range(3))
    layout = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], bool)
    o, lse = block_sparse_attention_forward(q, k, v, layout, b, causal=True)
    mask = np.kron(layout, np.ones((b, b), bool))[:T, :T] & np.tri(T, dtype=bool)
    o_naive, lse_naive = _naive(q, k, v, mask, 3 ** -0.5)
    np.testing.assert_allclose(o, o_naive, atol=1e-12)
    np.testing.assert_allclose(lse, lse_naive, atol=1e-12)
