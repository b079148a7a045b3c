"""Hidden grading tests of the engine exercises 0.1-0.5 (not shipped to students).

Like the visible tests, each exercise is tested on its own, against formulas written here.
"""
import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minimem as mm
from minimem.autograd.function import Context, _topological_order, sum_to_shape
from minimem.autograd.ops.elementwise import Mul
from minimem.autograd.ops.linalg import MatMul
from minimem.autograd.ops.nnfunc import Softmax


def call_backward(fn, args, g):
    tensors = tuple(mm.Tensor(a, requires_grad=True) if isinstance(a, np.ndarray) else None
                    for a in args)
    ctx = Context(fn, tensors)
    out = fn.forward(ctx, *args)
    grads = fn.backward(ctx, g)
    return out, grads if isinstance(grads, tuple) else (grads,)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.exercise("0.1", points=1)
def test_mul_backward_same_array_twice():
    """x * x: both factors are x, each gradient is g * x, and they add up to 2 g x."""
    x, g = rand(4, seed=1), rand(4, seed=2)
    _, (ga, gb) = call_backward(Mul, (x, x), g)
    np.testing.assert_allclose(ga + gb, 2 * g * x, rtol=1e-14)


@pytest.mark.exercise("0.2", points=2)
@settings(max_examples=30, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_sum_to_shape_random_broadcasts(data, seed):
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3))
    grad_shape = data.draw(hnp.broadcastable_shapes(shape, min_dims=len(shape), max_dims=4,
                                                    max_side=3)
                           .map(lambda s: np.broadcast_shapes(s, shape)))
    grad = np.random.default_rng(seed).standard_normal(grad_shape)
    expected = np.zeros(shape)
    lead = grad.ndim - len(shape)
    for idx in np.ndindex(grad.shape):
        expected[tuple(0 if n == 1 else i for i, n in zip(idx[lead:], shape))] += grad[idx]
    out = np.asarray(sum_to_shape(grad, shape))
    assert out.shape == tuple(shape)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.exercise("0.3", points=2)
def test_matmul_backward_vector_dot_and_batched_vector():
    a, b = rand(5, seed=3), rand(5, seed=4)
    g = np.array(1.7)
    _, (ga, gb) = call_backward(MatMul, (a, b), g)
    np.testing.assert_allclose(ga, 1.7 * b, rtol=1e-14)
    np.testing.assert_allclose(gb, 1.7 * a, rtol=1e-14)
    a, b = rand(3, seed=5), rand(2, 3, 4, seed=6)
    g = rand(2, 4, seed=7)
    _, (ga, gb) = call_backward(MatMul, (a, b), g)
    np.testing.assert_allclose(np.asarray(ga).reshape(-1, 3).sum(axis=0),
                               np.einsum("bj,bkj->k", g, b), rtol=1e-12)
    np.testing.assert_allclose(gb, np.einsum("k,bj->bkj", a, g), rtol=1e-12)


@pytest.mark.exercise("0.4", points=2)
def test_softmax_backward_stable_and_float32():
    x = np.array([[1e4, 1e4, 0.0], [0.0, -1e4, 1e4]], dtype=np.float32)
    g = np.array([[1.0, -1.0, 2.0], [0.5, 0.0, -0.5]], dtype=np.float32)
    y, (gx, _) = call_backward(Softmax, (x, 1), g)
    assert gx.dtype == np.float32 and np.isfinite(gx).all()
    yd = y.astype(np.float64)
    expected = yd * (g - (g * yd).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(gx, expected, atol=1e-6)
    np.testing.assert_allclose(gx[0], [0.5, -0.5, 0.0], atol=1e-6)  # y = (1/2, 1/2, 0), <g, y> = 0


@pytest.mark.exercise("0.5", points=2)
def test_topological_order_of_a_random_dag():
    rng = np.random.default_rng(8)
    leaves = [mm.tensor(rng.standard_normal(2), requires_grad=True) for _ in range(3)]
    pool = list(leaves)
    for _ in range(60):  # each new node reads one or two random earlier tensors
        i, j = rng.integers(0, len(pool), size=2)
        pool.append(mm.tanh(pool[i]) if rng.random() < 0.3 else pool[i] + pool[j])
    root = pool[-1]
    for t in pool[len(leaves):-1]:
        root = root + t  # make every node reachable
    order = _topological_order(root._ctx)
    position = {id(n): k for k, n in enumerate(order)}
    assert len(position) == len(order) == len(pool) - len(leaves) + len(pool) - len(leaves) - 1
    for node in order:
        for t in node.inputs:
            if t is not None and t._ctx is not None:
                assert position[id(node)] < position[id(t._ctx)]


@pytest.mark.exercise("0.5", points=2)
def test_backward_through_a_diamond_uses_the_order():
    """End to end through Tensor.backward with ops outside the other exercises (add, exp,
    tanh, neg, sum): the gradient is right only if every node runs after all its consumers."""
    x0 = rand(3, seed=9)
    x = mm.tensor(x0, requires_grad=True)
    a = mm.exp(x)
    f = (mm.tanh(a) + a + (-a)).sum() + mm.tanh(x).sum()
    f.backward()
    expected = (1 - np.tanh(np.exp(x0)) ** 2) * np.exp(x0) + 1 - np.tanh(x0) ** 2
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)
