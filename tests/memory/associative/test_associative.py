"""ARMT's associative write and read: the invariants, the two formulations, the contracts."""
import numpy as np
import pytest
from _helpers import check_gradients

import minimem as mm
from minimem.memory import (
    associative_read,
    associative_write,
    associative_write_reference,
    normalizer_gain,
)

EPS = 1e-5


def t(x, grad=False):
    return mm.tensor(np.asarray(x, dtype=np.float64), requires_grad=grad)


def empty(B, d_phi, d_v):
    return t(np.zeros((B, d_phi, d_v))), t(np.zeros((B, d_phi)))


def random_write(seed, B=2, n=4, d_phi=7, d_v=3):
    r = np.random.default_rng(seed)
    return (r.standard_normal((B, d_phi, d_v)), r.uniform(0.0, 0.4, (B, d_phi)),
            r.uniform(0.0, 1.0, (B, n, d_phi)), r.standard_normal((B, n, d_v)),
            r.uniform(0.0, 1.0, (B, n)))


def numpy_write(A, z, k, v, beta, eps=EPS):
    """The equations of the module docstring, one pair at a time, in NumPy."""
    A_new, z_new = A.copy(), z.copy()
    for b in range(A.shape[0]):
        for i in range(k.shape[1]):
            ki = k[b, i]
            seen = z[b] @ ki
            v_bar = A[b].T @ ki / (seen + eps)
            A_new[b] += beta[b, i] * np.outer(ki, v[b, i] - v_bar)
            gamma = np.clip(1.0 - seen / (ki @ ki + eps), 0.0, 1.0)
            z_new[b] += gamma * ki
    return A_new, z_new


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_formulations_equal_the_numpy_equations(seed):
    args = random_write(seed)
    A_np, z_np = numpy_write(*args)
    for write in (associative_write, associative_write_reference):
        A, z = write(*(t(a) for a in args))
        np.testing.assert_allclose(A.numpy(), A_np, rtol=0, atol=1e-12)
        np.testing.assert_allclose(z.numpy(), z_np, rtol=0, atol=1e-12)


def test_matrix_form_equals_the_per_pair_loop_forward_and_backward():
    args = random_write(3, n=5)
    r = np.random.default_rng(4)
    wA, wz = r.standard_normal(args[0].shape), r.standard_normal(args[1].shape)
    grads = []
    for write in (associative_write, associative_write_reference):
        leaves = [t(a, grad=True) for a in args]
        A, z = write(*leaves)
        ((A * t(wA)).sum() + (z * t(wz)).sum()).backward()
        grads.append([x.grad.numpy() for x in leaves])
    for a, b in zip(*grads):
        assert np.abs(a - b).max() <= 1e-10


def test_write_gradients_check():
    args = [t(a, grad=True) for a in random_write(5, B=1, n=2, d_phi=4, d_v=2)]
    check_gradients(lambda *x: associative_write(*x)[0], args)
    check_gradients(lambda *x: associative_write(*x)[1], args)


def orthogonal_keys(n, d_phi, seed=0):
    """n non-negative orthogonal keys: disjoint supports, random positive entries."""
    r = np.random.default_rng(seed)
    k = np.zeros((n, d_phi))
    for i, block in enumerate(np.array_split(r.permutation(d_phi), n)):
        k[i, block] = r.uniform(0.5, 2.0, len(block))
    return k


def test_reading_a_stored_key_returns_its_value_when_keys_are_orthogonal():
    n, d_phi, d_v = 5, 15, 4
    k = orthogonal_keys(n, d_phi)[None]
    v = np.random.default_rng(1).standard_normal((1, n, d_v))
    A, z = empty(1, d_phi, d_v)
    for i in range(n):                       # one pair per segment
        A, z = associative_write(A, z, t(k[:, i:i + 1]), t(v[:, i:i + 1]), t(np.ones((1, 1))))
    out = associative_read(A, z, t(k)).numpy()
    np.testing.assert_allclose(out, v, atol=1e-4)
    # all n pairs in one segment give the same memory
    A1, z1 = associative_write(*empty(1, d_phi, d_v), t(k), t(v), t(np.ones((1, n))))
    np.testing.assert_allclose(A1.numpy(), A.numpy(), atol=1e-12)
    np.testing.assert_allclose(z1.numpy(), z.numpy(), atol=1e-12)


def test_a_pair_written_twice_is_not_counted_twice_in_z():
    k = orthogonal_keys(2, 8, seed=2)[None]
    v = np.random.default_rng(3).standard_normal((1, 2, 3))
    ones = t(np.ones((1, 2)))
    A, z = associative_write(*empty(1, 8, 3), t(k), t(v), ones)
    A2, z2 = associative_write(A, z, t(k), t(v), ones)           # the same pairs again
    # gamma = eps / (|k|^2 + eps): z grows by a share of 1e-5 of k, not by k (up to eps)
    np.testing.assert_allclose(z2.numpy(), z.numpy(), rtol=1e-4)
    np.testing.assert_allclose(A2.numpy(), A.numpy(), atol=1e-4)  # v - v_bar = 0 (up to eps)
    gamma = normalizer_gain(z, t(k)).numpy()
    np.testing.assert_allclose(gamma, 0.0, atol=1e-5)


def test_a_rewritten_key_returns_its_new_value():
    """beta = 1: the delta correction replaces the old value (a sum would return the mean)."""
    k = orthogonal_keys(3, 9, seed=4)[None]
    r = np.random.default_rng(5)
    v_old, v_new = r.standard_normal((1, 3, 2)), r.standard_normal((1, 3, 2))
    ones = t(np.ones((1, 3)))
    A, z = associative_write(*empty(1, 9, 2), t(k), t(v_old), ones)
    A, z = associative_write(A, z, t(k), t(v_new), ones)
    np.testing.assert_allclose(associative_read(A, z, t(k)).numpy(), v_new, atol=1e-4)


@pytest.mark.exercise("55.1", points=1)
def test_normalizer_gain_is_the_clipped_new_share():
    r = np.random.default_rng(6)
    z, k = r.uniform(0, 1, (2, 5)), r.uniform(0, 1, (2, 4, 5))
    k[0, 0] = 0.0                                    # a zero key: gamma = 1 (nothing seen)
    z[1] *= 10.0                                     # a big normalizer: gamma clipped at 0
    got = normalizer_gain(t(z), t(k)).numpy()
    ratio = np.einsum("bd,bnd->bn", z, k) / ((k * k).sum(-1) + EPS)
    np.testing.assert_allclose(got, np.clip(1 - ratio, 0, 1), atol=1e-12)
    assert got[0, 0] == 1.0 and (got[1] == 0.0).all()
    assert ((0 <= got) & (got <= 1)).all()


@pytest.mark.exercise("55.2", points=1)
def test_read_is_the_normalized_matrix_product():
    r = np.random.default_rng(7)
    A, z, q = r.standard_normal((2, 6, 3)), r.uniform(0, 1, (2, 6)), r.uniform(0, 1, (2, 5, 6))
    got = associative_read(t(A), t(z), t(q)).numpy()
    want = np.einsum("btp,bpv->btv", q, A) / (np.einsum("btp,bp->bt", q, z)[..., None] + EPS)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.all(associative_read(*empty(2, 6, 3), t(q)).numpy() == 0.0)
    check_gradients(associative_read, (t(A[:1], True), t(z[:1], True), t(q[:1], True)))


def test_bad_inputs_are_named():
    A, z, k, v, b = (t(a) for a in random_write(0))
    with pytest.raises(ValueError, match=r"associative_write: z must have shape \(B, d_phi\)"):
        associative_write(A, z[:, :3], k, v, b)
    with pytest.raises(ValueError, match=r"associative_write: beta must have shape \(B, n\)"):
        associative_write(A, z, k, v, b[:, :2])
    with pytest.raises(ValueError, match="associative_write_reference: v must have shape"):
        associative_write_reference(A, z, k, v[:, :, :2], b)
    with pytest.raises(TypeError, match="associative_write: argument 'k' must be floating"):
        associative_write(A, z, mm.tensor(np.ones((2, 4, 7), dtype=np.int64)), v, b)
    with pytest.raises(TypeError, match="associative_read: argument 'A' must be a Tensor"):
        associative_read(np.zeros((2, 7, 3)), z, k)
    with pytest.raises(ValueError, match="associative_read: eps must be > 0"):
        associative_read(A, z, k, eps=0.0)
    with pytest.raises(ValueError, match=r"normalizer_gain: k must have shape \(B, n, d_phi\)"):
        normalizer_gain(z, k[..., :3])
    with pytest.raises(TypeError, match="associative_write: v must have A's dtype"):
        associative_write(A, z, k, v.astype(np.float32), b)
