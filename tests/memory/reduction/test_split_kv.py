"""split_kv_decode = dense decoding (forward and backward) for every number of parts."""
import itertools

import numpy as np
import pytest

from minimem.autograd import Tensor
from minimem.memory import Partial, merge_partials, split_kv_decode
from minimem.memory.reduction.split_kv import split_bounds, tree_reduce


def _dense_decode(q, k, v, scale):
    s = scale * np.einsum("bhd,bhsd->bhs", q, k)
    w = np.exp(s - s.max(-1, keepdims=True))
    return np.einsum("bhs,bhse->bhe", w / w.sum(-1, keepdims=True), v)


@pytest.mark.parametrize("S, n", [(1, 1), (9, 1), (9, 2), (9, 4), (9, 9), (50, 7)])
def test_split_kv_decode_equals_dense(S, n):
    rng = np.random.default_rng(S + n)
    arrays = (3 * rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, S, 4)),
              rng.standard_normal((2, 3, S, 5)))
    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    o = split_kv_decode(*leaves, n)
    np.testing.assert_allclose(o.data, _dense_decode(*arrays, 0.5), atol=1e-12, rtol=0)
    do = rng.standard_normal(o.shape)
    o.backward(Tensor(do))
    # backward against central differences of the naive decode, for q
    eps, dq = 1e-6, np.zeros_like(arrays[0])
    for idx in np.ndindex(arrays[0].shape):
        qp, qm = arrays[0].copy(), arrays[0].copy()
        qp[idx] += eps
        qm[idx] -= eps
        dq[idx] = ((_dense_decode(qp, *arrays[1:], 0.5) - _dense_decode(qm, *arrays[1:], 0.5))
                   * do).sum() / (2 * eps)
    np.testing.assert_allclose(leaves[0].grad.data, dq, atol=1e-7)


def test_split_bounds_are_contiguous_and_balanced():
    for S, n in ((10, 3), (7, 7), (100, 6)):
        b = split_bounds(S, n)
        assert b[0][0] == 0 and b[-1][1] == S and all(x[1] == y[0] for x, y in itertools.pairwise(b))
        sizes = [e - s for s, e in b]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.exercise("45.2", points=2)
def test_tree_reduce_equals_a_left_fold():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5, 8):
        parts = []
        for _ in range(n):
            m = 5 * rng.standard_normal((3, 1))
            parts.append(Partial(m, Tensor(rng.uniform(0.5, 2, (3, 1))),
                                 Tensor(rng.standard_normal((3, 2)))))
        fold = parts[0]
        for p in parts[1:]:
            fold = merge_partials(fold, p)
        tree = tree_reduce(list(parts))
        np.testing.assert_allclose(tree.O.data / tree.l.data, fold.O.data / fold.l.data,
                                   atol=1e-12)


def test_split_kv_decode_rejects_bad_inputs():
    q, k = Tensor(np.zeros((1, 2, 4))), Tensor(np.zeros((1, 2, 6, 4)))
    with pytest.raises(ValueError, match="split_kv_decode: n_splits must be an int in"):
        split_kv_decode(q, k, k, 7)
    with pytest.raises(TypeError, match="split_kv_decode: n_splits must be an int"):
        split_kv_decode(q, k, k, 2.0)
    with pytest.raises(ValueError, match=r"split_kv_decode: k_cache must have shape"):
        split_kv_decode(Tensor(np.zeros((1, 2, 3))), k, k, 2)
    with pytest.raises(ValueError, match=r"split_kv_decode: v_cache must have shape"):
        split_kv_decode(q, k, Tensor(np.zeros((1, 2, 5, 4))), 2)
