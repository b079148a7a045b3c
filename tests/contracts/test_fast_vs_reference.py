"""A fast path and its reference agree on every input either accepts (DESIGN.md, "Input
contracts"): random valid inputs drawn by hypothesis, with mixed float32/float64 dtypes and
non-contiguous views, compared in values, dtypes and shapes. Where one path rejects an input
(an integer q, a NaN scale), so does the other (test_bad_inputs.py holds both to it)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minimem as mm
from minimem import nn
from minimem.kernels import async_sweeps as K_async
from minimem.kernels import block_sparse_attention as K_bs
from minimem.kernels import dense_attention as K_dense
from minimem.kernels import gelu_tanh as K_gelu
from minimem.kernels import product_topk as K_ptopk
from minimem.kernels import row_norm as K_row
from minimem.kernels import scatter as K_scatter
from minimem.kernels import softmax_xent as K_xent
from minimem.kernels import topk as K_topk
from minimem.kernels import weighted_read as K_read
from minimem.memory import hopfield as H
from minimem.memory import sparse as SP

FEW = settings(max_examples=8, deadline=None, derandomize=True)
DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**16)


def _array(rng, shape, dtype, contiguous):
    """A random array of ``shape``; a strided view (every other row of a bigger one) when not
    ``contiguous``."""
    if contiguous or len(shape) < 1:
        return rng.standard_normal(shape).astype(dtype)
    big = rng.standard_normal((2 * shape[0],) + tuple(shape[1:])).astype(dtype)
    view = big[::2]
    assert not view.flags.c_contiguous or view.size <= 1
    return view


def _close(a, b, dtype):
    tol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-10
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@FEW
@given(seed=SEEDS, dtype=DTYPES, contiguous=st.booleans(), M=st.integers(1, 6),
       N=st.integers(1, 9), d=st.integers(1, 5))
def test_topk_inner_product(seed, dtype, contiguous, M, N, d):
    rng = np.random.default_rng(seed)
    q, keys = _array(rng, (M, d), dtype, contiguous), _array(rng, (N, d), dtype, contiguous)
    k = int(rng.integers(1, N + 1))
    fast, ref = K_topk.topk_inner_product(q, keys, k, chunk=3), \
        K_topk.topk_inner_product_reference(q, keys, k)
    _close(fast[0], ref[0], dtype)
    np.testing.assert_array_equal(fast[1], ref[1])


@FEW
@given(seed=SEEDS, d1=DTYPES, d2=DTYPES, contiguous=st.booleans())
def test_gather_and_scatter_weighted_rows(seed, d1, d2, contiguous):
    rng = np.random.default_rng(seed)
    V = _array(rng, (7, 3), d1, contiguous)
    idx = rng.integers(0, 7, size=(4, 3))
    w = _array(rng, (4, 3), d2, contiguous)
    dt = np.float32 if np.float32 in (d1, d2) else np.float64  # the tolerance of the coarser
    _close(K_read.gather_weighted_rows(V, idx, w), K_read.gather_weighted_rows_reference(V, idx, w),
           dt)
    g = _array(rng, (4, 3), d1, contiguous)
    a = K_read.gather_weighted_rows_backward(V, idx, w, g)
    b = K_read.gather_weighted_rows_backward_reference(V, idx, w, g)
    for x, y in zip(a, b):
        _close(x, y, dt)


@FEW
@given(seed=SEEDS, dtype=DTYPES, contiguous=st.booleans())
def test_scatter_add_rows(seed, dtype, contiguous):
    rng = np.random.default_rng(seed)
    idx = rng.integers(-5, 5, size=6)
    src = _array(rng, (6, 2), dtype, contiguous)
    a = K_scatter.scatter_add_rows(np.zeros((5, 2), dtype), idx, src)
    b = K_scatter.scatter_add_rows_reference(np.zeros((5, 2), dtype), idx, src)
    _close(a, b, dtype)


@FEW
@given(seed=SEEDS, dtype=DTYPES, contiguous=st.booleans(), C=st.integers(1, 5))
def test_softmax_cross_entropy(seed, dtype, contiguous, C):
    rng = np.random.default_rng(seed)
    logits = 10 * _array(rng, (6, C), dtype, contiguous)
    t = rng.integers(0, C, size=6)
    t[rng.random(6) < 0.3] = -100
    a = K_xent.softmax_cross_entropy(logits, t)
    b = K_xent.softmax_cross_entropy_reference(logits, t)
    _close(a[0], b[0], dtype)
    _close(a[1], b[1], dtype)
    assert a[2] == b[2]


@FEW
@given(seed=SEEDS, dtype=DTYPES, contiguous=st.booleans(), center=st.booleans())
def test_row_norm_and_gelu(seed, dtype, contiguous, center):
    rng = np.random.default_rng(seed)
    x = _array(rng, (5, 4), dtype, contiguous)
    gamma, beta = rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)
    for a, b in zip(K_row.row_norm_forward(x, gamma, beta, 1e-5, center),
                    K_row.row_norm_forward_reference(x, gamma, beta, 1e-5, center)):
        _close(a, b, dtype)
    _close(K_gelu.gelu_tanh_forward(x), K_gelu.gelu_tanh_forward_reference(x), dtype)


@FEW
@given(seed=SEEDS, dtype=DTYPES, contiguous=st.booleans(), n=st.integers(1, 5))
def test_product_topk(seed, dtype, contiguous, n):
    rng = np.random.default_rng(seed)
    s1, s2 = _array(rng, (3, n), dtype, contiguous), _array(rng, (3, n), dtype, contiguous)
    k = int(rng.integers(1, n * n + 1))
    a, b = K_ptopk.product_topk(s1, s2, k), K_ptopk.product_topk_reference(s1, s2, k)
    _close(a[0], b[0], dtype)
    np.testing.assert_array_equal(a[1], b[1])


@FEW
@given(seed=SEEDS, dtype=DTYPES, N=st.integers(1, 8))
def test_async_sweeps_dtype_and_values(seed, dtype, N):
    """The kernel computes in float64; so does the reference, whatever float came in."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((N, N))
    W = ((W + W.T) / 2).astype(dtype)
    b = rng.standard_normal(N).astype(dtype)
    s = np.where(rng.random(N) < 0.5, -1.0, 1.0).astype(dtype)
    orders = np.stack([rng.permutation(N) for _ in range(3)])
    a = K_async.async_sweeps(W, b, s, orders)
    r = K_async.async_sweeps_reference(W, b, s, orders)
    _close(a[0], r[0], np.float64)
    _close(a[1], r[1], np.float64)
    assert a[2] == r[2]


@FEW
@given(seed=SEEDS, dtype=DTYPES, causal=st.booleans(), T=st.integers(1, 9))
def test_dense_and_block_sparse_attention(seed, dtype, causal, T):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((1, 2, T, 3)).astype(dtype) for _ in range(3))
    for a, b in zip(K_dense.dense_attention_forward(q, k, v, causal=causal),
                    K_dense.dense_attention_forward_reference(q, k, v, causal=causal)):
        _close(a, b, dtype)
    n = -(-T // 4)
    layout = rng.random((n, n)) < 0.7
    for a, b in zip(K_bs.block_sparse_attention_forward(q, k, v, layout, 4, causal),
                    K_bs.block_sparse_attention_forward_reference(q, k, v, layout, 4, causal)):
        _close(a, b, dtype)


@FEW
@given(seed=SEEDS, dq=DTYPES, dk=DTYPES, causal=st.booleans())
def test_sparse_attention_mixed_dtypes(seed, dq, dk, causal):
    """Mixed q/k/v dtypes promote in both paths (the fast one used to keep q's dtype)."""
    rng = np.random.default_rng(seed)
    q = mm.tensor(rng.standard_normal((1, 2, 8, 4)).astype(dq), requires_grad=True)
    k = mm.tensor(rng.standard_normal((1, 2, 8, 4)).astype(dk), requires_grad=True)
    v = mm.tensor(rng.standard_normal((1, 2, 8, 4)).astype(dq), requires_grad=True)
    layout = rng.random((2, 2)) < 0.8
    fast = SP.sparse_attention(q, k, v, layout, 4, causal=causal)
    ref = SP.sparse_attention_dense(q, k, v, layout, 4, causal=causal)
    tol = np.float32 if np.float32 in (dq, dk) else np.float64
    _close(fast.numpy(), ref.numpy(), tol)
    g = rng.standard_normal(fast.shape)
    grads = []
    for out in (fast, ref):
        for t in (q, k, v):
            t.grad = None
        (out * mm.tensor(g.astype(out.dtype))).sum().backward()
        grads.append([t.grad.numpy() for t in (q, k, v)])
    for a, b in zip(*grads):
        _close(a, b, tol)


@FEW
@given(seed=SEEDS, dtype=DTYPES, steps=st.integers(1, 3),
       softmax=st.sampled_from(["softmax", "softmax1"]))
def test_hopfield_retrieve(seed, dtype, steps, softmax):
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((3, 4)).astype(dtype)
    stored = rng.standard_normal((5, 4)).astype(dtype)
    fast = H.hopfield_retrieve(queries, stored, 2.0, steps, softmax).numpy()
    ref = H.hopfield_retrieve_reference(queries, stored, 2.0, steps, softmax)
    np.testing.assert_allclose(fast, ref, rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-5 if dtype == np.float32 else 1e-10)


@FEW
@given(seed=SEEDS, dx=DTYPES, dw=DTYPES)
def test_layer_norm_fused_vs_reference_mixed_dtypes(seed, dx, dw):
    rng = np.random.default_rng(seed)
    x = mm.tensor(rng.standard_normal((3, 4)).astype(dx))
    w, b = (mm.tensor(rng.standard_normal(4).astype(dw)) for _ in range(2))
    a, r = nn.layer_norm(x, w, b), nn.layer_norm_reference(x, w, b)
    assert a.dtype == r.dtype
    _close(a.numpy(), r.numpy(), np.float32 if np.float32 in (dx, dw) else np.float64)


@pytest.mark.parametrize("largest", [True, False])
def test_topk_nan_ranks_largest_and_matches_a_sort(largest):
    """PyTorch's rule: NaN ranks above +inf; first among the largest, last among the smallest."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 7))
    x[0, [1, 5]] = np.nan
    x[1, 2] = np.inf
    x[2, :] = np.nan
    v, i = mm.topk(mm.tensor(x), 3, largest=largest)
    assert np.isnan(v.numpy()[2]).all()  # an all-NaN row: NaN is all there is
    for row, idx in zip(x[[0, 1, 3]], i.numpy()[[0, 1, 3]]):
        key = np.where(np.isnan(row), np.inf, row)  # NaN as the largest value
        rank = (np.where(np.isnan(row), 1, 0), key)  # NaN beats +inf
        order = np.lexsort((np.arange(7), -rank[1], -rank[0])) if largest else \
            np.lexsort((np.arange(7), rank[1], rank[0]))
        np.testing.assert_array_equal(idx, order[:3])
