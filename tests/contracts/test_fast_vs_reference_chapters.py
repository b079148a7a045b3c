"""Fast forms and their references in chapters delta, titans and reduction agree on random
valid inputs drawn by hypothesis, mixed float32/float64 dtypes included: the same values, the
same result dtype and the same gradients, or both reject the input with the same error type
(DESIGN.md, "Input contracts")."""
import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import minimem as mm
from minimem.memory import delta as DL
from minimem.memory import reduction as RD
from minimem.memory import titans as TI

FEW = settings(max_examples=6, deadline=None, derandomize=True,
               phases=[Phase.explicit, Phase.generate])  # no shrinking: it reruns the JIT
DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**16)


def _tensor(rng, shape, dtype, low=None, high=None):
    a = rng.standard_normal(shape) if low is None else rng.uniform(low, high, shape)
    return mm.tensor(a.astype(dtype), requires_grad=True)


def _outcome(call, leaves):
    """(output array, gradients of sum(out * W) per leaf) or the error type it raised."""
    for t in leaves:
        t.grad = None
    try:
        out = call()
    except (ValueError, TypeError) as e:
        return type(e)
    out = out[0] if isinstance(out, tuple) else out
    w = np.cos(np.arange(out.size)).reshape(out.shape).astype(out.dtype)
    (out * mm.tensor(w)).sum().backward()
    return out.numpy(), [None if t.grad is None else t.grad.numpy() for t in leaves]


def _agree(calls, leaves):
    """Every call gives the outcome of the first: values, dtypes, gradients, or the error."""
    first = _outcome(calls[0], leaves)
    coarse = any(t.dtype == np.float32 for t in leaves)
    tol = 2e-4 if coarse else 1e-10
    for call in calls[1:]:
        other = _outcome(call, leaves)
        if isinstance(first, type) or isinstance(other, type):
            assert first == other, (first, other)
            continue
        (a, ga), (b, gb) = first, other
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        for x, y, t in zip(ga, gb, leaves):
            # a leaf one path never reads has no gradient there: zero, as the other's
            x = np.zeros(t.shape, t.dtype) if x is None else x
            y = np.zeros(t.shape, t.dtype) if y is None else y
            assert x.dtype == y.dtype == t.dtype, (x.dtype, y.dtype, t.dtype)
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol)
    return first


@FEW
@given(seed=SEEDS, dq=DTYPES, dk=DTYPES, dg=DTYPES, T=st.integers(1, 7),
       C=st.integers(1, 4))
def test_gated_linear_attention_chunk_recurrent_reference(seed, dq, dk, dg, T, C):
    rng = np.random.default_rng(seed)
    q, k, v = (_tensor(rng, (1, 2, T, 3), d) for d in (dq, dk, dq))
    g = _tensor(rng, (1, 2, T), dg, -0.5, 0.0)
    leaves = [q, k, v, g]
    _agree([lambda: DL.gated_linear_attention_reference(q, k, v, g),
            lambda: DL.gated_linear_attention(q, k, v, g, mode="recurrent", checkpoint=2),
            lambda: DL.gated_linear_attention(q, k, v, g, mode="chunk", chunk_size=C)], leaves)


@FEW
@given(seed=SEEDS, dq=DTYPES, dk=DTYPES, n_h=st.integers(1, 3), T=st.integers(1, 5),
       gated=st.booleans())
def test_delta_product_chunk_recurrent_reference(seed, dq, dk, n_h, T, gated):
    rng = np.random.default_rng(seed)
    q = _tensor(rng, (1, 2, T, 3), dq)
    k = mm.tensor((lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True))(
        rng.standard_normal((1, 2, T, n_h, 3))).astype(dk), requires_grad=True)
    v = _tensor(rng, (1, 2, T, n_h, 2), dq)
    beta = _tensor(rng, (1, 2, T, n_h), dk, 0.1, 1.5)
    g = _tensor(rng, (1, 2, T), dq, -0.4, 0.0) if gated else None
    leaves = [q, k, v, beta] + ([g] if gated else [])
    _agree([lambda: DL.delta_product_reference(q, k, v, beta, g=g),
            lambda: DL.delta_product(q, k, v, beta, g=g, mode="recurrent"),
            lambda: DL.delta_product(q, k, v, beta, g=g, mode="chunk", chunk_size=2)], leaves)


@FEW
@given(seed=SEEDS, dq=DTYPES, dv=DTYPES, T=st.integers(1, 6),
       fmap=st.sampled_from([None, "elu1", "relu", ("dpfp", {"nu": 1}), "taylor2"]),
       normalize=st.booleans())
def test_linear_attention_feature_maps_and_normalizer(seed, dq, dv, T, fmap, normalize):
    rng = np.random.default_rng(seed)
    q, k = (_tensor(rng, (1, 2, T, 3), dq) for _ in range(2))
    v = _tensor(rng, (1, 2, T, 2), dv)
    kw = dict(feature_map=fmap, normalize=normalize)
    if normalize and fmap is None:  # identity features: z^T q can vanish; keep the guard big
        kw["eps"] = 10.0
    _agree([lambda: DL.linear_attention_reference(q, k, v, **kw),
            lambda: DL.linear_attention(q, k, v, mode="recurrent", **kw),
            lambda: DL.linear_attention(q, k, v, mode="chunk", chunk_size=2, **kw)],
           [q, k, v])


@FEW
@given(seed=SEEDS, dq=DTYPES, dgate=DTYPES, memory=st.sampled_from(["linear", "mlp"]),
       T=st.integers(1, 5), C=st.integers(1, 3))
def test_neural_memory_chunked_vs_reference(seed, dq, dgate, memory, T, C):
    rng = np.random.default_rng(seed)
    q, k, v = (_tensor(rng, (1, 2, T, 2), dq) for _ in range(3))
    theta, eta, alpha = (_tensor(rng, (1, 2, T), dgate, lo, hi)
                         for lo, hi in ((0.05, 0.3), (0.1, 0.9), (0.0, 0.3)))
    params = (_tensor(rng, (1, 2, 2, 2), dq, -0.5, 0.5),) if memory == "linear" else (
        _tensor(rng, (1, 2, 2, 3), dq, -0.5, 0.5), _tensor(rng, (1, 2, 3, 2), dq, -0.5, 0.5))
    leaves = [q, k, v, theta, eta, alpha, *params]
    _agree([lambda: TI.neural_memory_reference(q, k, v, theta, eta, alpha, params, memory,
                                               chunk_size=C),
            lambda: TI.neural_memory(q, k, v, theta, eta, alpha, params, memory,
                                     chunk_size=C)], leaves)


@FEW
@given(seed=SEEDS, dq=DTYPES, dk=DTYPES, T=st.integers(1, 8))
def test_prefix_attention_scan_vs_recurrent(seed, dq, dk, T):
    rng = np.random.default_rng(seed)
    q = _tensor(rng, (1, 2, 3), dq)
    k, v = _tensor(rng, (1, 2, T, 3), dk), _tensor(rng, (1, 2, T, 2), dq)
    _agree([lambda: RD.prefix_attention(q, k, v, mode="recurrent"),
            lambda: RD.prefix_attention(q, k, v, mode="scan")], [q, k, v])


def _dense_decode(q, k, v):
    """softmax(q K^T / sqrt(D)) V for one query per head, in NumPy (the test's own)."""
    s = np.einsum("bhd,bhsd->bhs", q.numpy(), k.numpy()) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    return np.einsum("bhs,bhsd->bhd", p / p.sum(-1, keepdims=True), v.numpy())


@FEW
@given(seed=SEEDS, dq=DTYPES, dk=DTYPES, S=st.integers(1, 9), data=st.data())
def test_split_kv_decode_vs_dense(seed, dq, dk, S, data):
    rng = np.random.default_rng(seed)
    q = _tensor(rng, (1, 2, 3), dq)
    k, v = _tensor(rng, (1, 2, S, 3), dk), _tensor(rng, (1, 2, S, 2), dk)
    n = data.draw(st.integers(1, S))
    one = _agree([lambda: RD.split_kv_decode(q, k, v, 1), lambda: RD.split_kv_decode(q, k, v, n)],
                 [q, k, v])
    if isinstance(one, type):  # both rejected (a mixed-dtype rule): nothing more to compare
        return
    tol = 2e-5 if np.float32 in (dq, dk) else 1e-10
    np.testing.assert_allclose(one[0], _dense_decode(q, k, v), rtol=tol, atol=tol)
