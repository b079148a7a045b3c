"""Dense softmax attention: the fused kernel against its plain twin and a row-by-row formulation.

Small sizes (also fine under NUMBA_DISABLE_JIT=1). The block sizes and the per-head switch are
forced small here so that every branch of the blocked causal products runs.
"""
import numpy as np
import pytest

from minimem.kernels import dense_attention as da
from minimem.kernels.dense_attention import (
    dense_attention_backward,
    dense_attention_backward_reference,
    dense_attention_forward,
    dense_attention_forward_reference,
)

SHAPES = [  # (T, S): square, more keys than queries, more queries than keys (rows with none)
    (7, 7), (5, 9), (9, 4), (1, 1), (16, 16),
]


@pytest.fixture(params=["all", "slices", "pairs"])
def grouping(request, monkeypatch):
    """Causal blocks of 3 query rows, and a setter of the group size for weights (2, 3, T, S):
    all heads at once, slices of the first axis (one batch index), or single pairs."""
    monkeypatch.setattr(da, "CAUSAL_BLOCK", 3)

    def set_for(T, S):
        budget = {"all": 6 * T * S, "slices": 3 * T * S, "pairs": 0}[request.param]
        monkeypatch.setattr(da, "GROUP_WEIGHTS", budget)
        n = {"all": 1, "slices": 2, "pairs": 6}[request.param]
        assert len(da._groups((2, 3), T, S)) == n

    return set_for


def _naive(q, k, v, allowed, scale):
    """Softmax over the allowed keys of each row, in float64 loops; zero rows where none."""
    o = np.zeros(q.shape[:-1] + (v.shape[-1],))
    p = np.zeros(q.shape[:-1] + (k.shape[-2],))
    for idx in np.ndindex(*q.shape[:-2]):
        for i in range(q.shape[-2]):
            js = np.flatnonzero(allowed[idx + (i,)])
            if js.size:
                s = scale * (k[idx][js] @ q[idx + (i,)])
                w = np.exp(s - s.max())
                p[idx + (i,)][js] = w / w.sum()
                o[idx + (i,)] = p[idx + (i,)] @ v[idx]
    return o, p


def _inputs(rng, T, S, lead=(2, 3), D=4, Dv=3, dtype=np.float64):
    q = rng.standard_normal(lead + (T, D)).astype(dtype)
    k = rng.standard_normal(lead + (S, D)).astype(dtype)
    v = rng.standard_normal(lead + (S, Dv)).astype(dtype)
    return q, k, v


@pytest.mark.parametrize("T,S", SHAPES)
@pytest.mark.parametrize("kind", ["none", "causal", "mask", "causal+mask"])
def test_forward_and_backward_match_the_twin_and_the_naive_rows(T, S, kind, grouping, path):
    rng = np.random.default_rng(10 * T + S)
    q, k, v = _inputs(rng, T, S)
    grouping(T, S)
    causal = "causal" in kind
    mask = None
    allowed = np.ones((T, S), bool)
    if "mask" in kind:
        mask = rng.random((3, T, S)) < 0.6     # broadcasts over the batch axis
        mask[:, 0] = False                     # a fully masked row
        allowed = allowed & mask
    if causal:
        allowed = allowed & np.tri(T, S, S - T, dtype=bool)
    allowed = np.broadcast_to(allowed, q.shape[:-1] + (S,))
    o, p = dense_attention_forward(q, k, v, mask, causal)
    o_ref, p_ref = dense_attention_forward_reference(q, k, v, mask, causal)
    o_naive, p_naive = _naive(q, k, v, allowed, 4 ** -0.5)
    for got in (o_ref, o_naive):
        np.testing.assert_allclose(o, got, rtol=1e-12, atol=1e-13)
    for got in (p_ref, p_naive):
        np.testing.assert_allclose(p, got, rtol=1e-12, atol=1e-13)
    assert (p[~allowed] == 0).all()
    do = rng.standard_normal(o.shape)
    dp = rng.standard_normal(p.shape)
    for extra in (None, dp):
        grads = dense_attention_backward(q, k, v, p, do, extra, causal)
        want = dense_attention_backward_reference(q, k, v, p_ref, do, extra, causal)
        for g, w, a in zip(grads, want, (q, k, v)):
            assert g.shape == a.shape and g.dtype == a.dtype
            np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12)


def test_backward_matches_central_differences():
    """An independent check of the twin's backward (float64, a causal mask with an empty row)."""
    rng = np.random.default_rng(3)
    q, k, v = _inputs(rng, 4, 3, lead=(2,), D=3, Dv=2)
    mask = rng.random((4, 3)) < 0.7
    do, dp = rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 3))

    def loss(q, k, v):
        o, p = dense_attention_forward(q, k, v, mask, True, 0.7)
        return (o * do).sum() + (p * dp).sum()

    _, p = dense_attention_forward(q, k, v, mask, True, 0.7)
    grads = dense_attention_backward(q, k, v, p, do, dp, True, 0.7)
    for i, (a, g) in enumerate(zip((q, k, v), grads)):
        num = np.zeros_like(a)
        for idx in np.ndindex(*a.shape):
            args = [q, k, v]
            plus, minus = a.copy(), a.copy()
            plus[idx] += 1e-6
            minus[idx] -= 1e-6
            args[i] = plus
            f_plus = loss(*args)
            args[i] = minus
            num[idx] = (f_plus - loss(*args)) / 2e-6
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_float32_agrees_with_float64_and_stays_float32(path):
    rng = np.random.default_rng(5)
    q, k, v = _inputs(rng, 70, 70, lead=(2,), D=8, Dv=8)
    args32 = [a.astype(np.float32) for a in (q, k, v)]
    o32, p32 = dense_attention_forward(*args32, causal=True)
    o64, p64 = dense_attention_forward(q, k, v, causal=True)
    assert o32.dtype == p32.dtype == np.float32
    np.testing.assert_allclose(o32, o64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(p32, p64, rtol=1e-4, atol=1e-6)
    do = rng.standard_normal(o64.shape)
    g32 = dense_attention_backward(*args32, p32, do.astype(np.float32), causal=True)
    g64 = dense_attention_backward(q, k, v, p64, do, causal=True)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_large_logits_do_not_overflow_and_nan_propagates():
    rng = np.random.default_rng(6)
    q, k, v = _inputs(rng, 5, 5, lead=(1,), dtype=np.float32)
    o, p = dense_attention_forward(q * 1e3, k * 1e3, v, causal=True)
    assert np.isfinite(o).all() and np.allclose(p.sum(-1), 1, rtol=1e-6)
    _, p_ref = dense_attention_forward_reference(q * 1e3, k * 1e3, v, causal=True)
    np.testing.assert_allclose(p, p_ref, atol=1e-6)
    q[0, 2, 0] = np.nan
    o, p = dense_attention_forward(q, k, v, causal=True)
    assert np.isnan(o[0, 2]).all() and np.isfinite(np.delete(o[0], 2, axis=0)).all()


def test_empty_query_axis_gives_empty_results():
    rng = np.random.default_rng(7)
    q, k, v = _inputs(rng, 0, 4, lead=(2,))
    o, p = dense_attention_forward(q, k, v, causal=True)
    assert o.shape == (2, 0, 3) and p.shape == (2, 0, 4)
    dq, dk, dv = dense_attention_backward(q, k, v, p, np.zeros(o.shape), causal=True)
    assert dq.shape == q.shape and not dk.any() and not dv.any()


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda q, k, v: dense_attention_forward(q.astype(int), k, v), TypeError,
     r"dense_attention_forward: argument 'q' must be float32 or float64, got dtype int"),
    (lambda q, k, v: dense_attention_forward(q, k.astype(np.float32), v), TypeError,
     r"q, k and v must share one dtype"),
    (lambda q, k, v: dense_attention_forward(q, k[..., :2], v), ValueError,
     r"expected q \(\.\.\., T, D\), k \(\.\.\., S, D\)"),
    (lambda q, k, v: dense_attention_forward(q[0], k, v), ValueError, r"same leading dims"),
    (lambda q, k, v: dense_attention_forward(q, k[..., :0, :], v[..., :0, :]), ValueError,
     r"S >= 1 keys"),
    (lambda q, k, v: dense_attention_forward(q, k, v, mask=np.ones((5, 6))), TypeError,
     r"mask must be a boolean array, got float64"),
    (lambda q, k, v: dense_attention_forward(q, k, v, mask=np.ones((4, 6), bool)), ValueError,
     r"mask of shape \(4, 6\) does not broadcast to the attention weights \(2, 5, 6\)"),
    (lambda q, k, v: dense_attention_forward(q, k, v, scale=-1.0), ValueError,
     r"scale must be a positive finite number, got -1.0"),
    (lambda q, k, v: dense_attention_forward(q, k, v, scale=np.nan), ValueError, r"scale"),
    (lambda q, k, v: dense_attention_forward(q, k, v, causal=1), TypeError,
     r"causal must be True or False"),
    (lambda q, k, v: dense_attention_backward(q, k, v, np.zeros((2, 5, 5)), np.zeros((2, 5, 3))),
     ValueError, r"dense_attention_backward: p must have shape \(2, 5, 6\)"),
    (lambda q, k, v: dense_attention_backward(q, k, v, np.zeros((2, 5, 6)),
                                              np.zeros((2, 5, 3), np.float32)),
     ValueError, r"do must have shape \(2, 5, 3\) and dtype float64"),
])
def test_errors_name_function_argument_and_expectation(call, exc, pattern):
    rng = np.random.default_rng(8)
    q, k, v = _inputs(rng, 5, 6, lead=(2,))
    with pytest.raises(exc, match=pattern):
        call(q, k, v)


@pytest.mark.gpu
def test_cupy_arrays_take_the_plain_twin():
    import cupy as cp

    rng = np.random.default_rng(9)
    q, k, v = _inputs(rng, 6, 6)
    o, p = dense_attention_forward(cp.asarray(q), cp.asarray(k), cp.asarray(v), causal=True)
    o_cpu, p_cpu = dense_attention_forward(q, k, v, causal=True)
    np.testing.assert_allclose(cp.asnumpy(o), o_cpu, rtol=1e-12)
    do = rng.standard_normal(o_cpu.shape)
    grads = dense_attention_backward(cp.asarray(q), cp.asarray(k), cp.asarray(v), p,
                                     cp.asarray(do), causal=True)
    np.testing.assert_allclose(cp.asnumpy(p), p_cpu, rtol=1e-12)
    for g, w in zip(grads, dense_attention_backward(q, k, v, p_cpu, do, causal=True)):
        np.testing.assert_allclose(cp.asnumpy(g), w, rtol=1e-10, atol=1e-12)
