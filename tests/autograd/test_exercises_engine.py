"""Graded tests of the engine exercises 0.1-0.5 (chapter 0, ``notebooks/00_autograd.ipynb``).

Each exercise is tested on its own: a backward is called directly on a hand-made node
(``Context``), never through ``Tensor.backward`` (which needs exercises 0.2 and 0.5), and the
expected values come from naive loops and central differences written here.
"""
import numpy as np
import pytest

import minimem as mm
from minimem.autograd.function import Context, _topological_order, sum_to_shape
from minimem.autograd.ops.elementwise import Mul
from minimem.autograd.ops.linalg import MatMul
from minimem.autograd.ops.nnfunc import Softmax


# ---------------------------------------------------------------------------------------------
# Test-side helpers: a node by hand, central differences, naive un-broadcasting
# ---------------------------------------------------------------------------------------------
def call_backward(fn, args, g):
    """Run ``fn.forward`` then ``fn.backward`` on a fresh node; array args require grad."""
    tensors = tuple(mm.Tensor(a, requires_grad=True) if isinstance(a, np.ndarray) else None
                    for a in args)
    ctx = Context(fn, tensors)
    out = fn.forward(ctx, *args)
    grads = fn.backward(ctx, g)
    return out, grads if isinstance(grads, tuple) else (grads,)


def numerical_grad(loss, a, h=1e-6):
    """d loss / d a by central differences, one element at a time."""
    grad = np.zeros_like(a, dtype=np.float64)
    for idx in np.ndindex(a.shape):
        plus, minus = a.copy(), a.copy()
        plus[idx] += h
        minus[idx] -= h
        grad[idx] = (loss(plus) - loss(minus)) / (2 * h)
    return grad


def reduce_to(grad, shape):
    """Sum a gradient of a broadcast shape down to ``shape`` (written here, not the engine's)."""
    grad = np.asarray(grad)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------------------------------
# Exercise 0.1: Mul backward
# ---------------------------------------------------------------------------------------------
@pytest.mark.exercise("0.1", points=1)
def test_mul_backward_is_the_product_rule():
    a, b, g = rand(3, 4, seed=1), rand(3, 4, seed=2), rand(3, 4, seed=3)
    out, (grad_a, grad_b) = call_backward(Mul, (a, b), g)
    np.testing.assert_allclose(out, a * b)
    np.testing.assert_allclose(grad_a, g * b, rtol=1e-14)
    np.testing.assert_allclose(grad_b, g * a, rtol=1e-14)
    np.testing.assert_allclose(grad_a, numerical_grad(lambda a_: (g * a_ * b).sum(), a),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_b, numerical_grad(lambda b_: (g * a * b_).sum(), b),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.exercise("0.1", points=1)
def test_mul_backward_with_broadcasting_and_a_scalar():
    a, b, g = rand(3, 1, seed=4), rand(1, 4, seed=5), rand(3, 4, seed=6)
    _, (grad_a, grad_b) = call_backward(Mul, (a, b), g)
    np.testing.assert_allclose(reduce_to(grad_a, a.shape),
                               numerical_grad(lambda a_: (g * a_ * b).sum(), a), rtol=1e-6)
    np.testing.assert_allclose(reduce_to(grad_b, b.shape),
                               numerical_grad(lambda b_: (g * a * b_).sum(), b), rtol=1e-6)
    # a Python number as the second factor: only the first gradient matters
    _, grads = call_backward(Mul, (a, 2.5), rand(3, 1, seed=7))
    np.testing.assert_allclose(grads[0], 2.5 * rand(3, 1, seed=7), rtol=1e-14)


@pytest.mark.exercise("0.1", points=1)
def test_mul_backward_keeps_float32():
    a, b, g = (rand(2, 3, seed=s).astype(np.float32) for s in (8, 9, 10))
    _, (grad_a, grad_b) = call_backward(Mul, (a, b), g)
    assert grad_a.dtype == np.float32 and grad_b.dtype == np.float32
    np.testing.assert_allclose(grad_a, g * b, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Exercise 0.2: sum_to_shape (un-broadcasting)
# ---------------------------------------------------------------------------------------------
def naive_sum_to_shape(grad, shape):
    """Every element of grad goes to the element of `shape` it was broadcast from."""
    out = np.zeros(shape)
    lead = grad.ndim - len(shape)
    for idx in np.ndindex(grad.shape):
        target = tuple(0 if n == 1 else i for i, n in zip(idx[lead:], shape))
        out[target] += grad[idx]
    return out


SUM_CASES = [
    ((3, 4), (4,)),        # a leading axis added
    ((3, 4), (1, 4)),      # a stretched axis of length 1
    ((3, 4), (3, 1)),
    ((2, 3, 4), (3, 1)),   # both at once
    ((2, 3, 4), ()),       # to a scalar
    ((2, 3, 4), (1, 1, 1)),
    ((5,), (1,)),
    ((2, 1, 4), (1, 1, 4)),  # grad already has length 1 where shape has 1
    ((4, 1, 3), (1, 3)),
]


@pytest.mark.exercise("0.2", points=2)
@pytest.mark.parametrize("grad_shape,shape", SUM_CASES)
def test_sum_to_shape_against_a_naive_loop(grad_shape, shape):
    grad = rand(*grad_shape, seed=11)
    out = np.asarray(sum_to_shape(grad, shape))
    assert out.shape == shape
    np.testing.assert_allclose(out, naive_sum_to_shape(grad, shape), rtol=1e-12, atol=1e-12)
    # the total is conserved: every element of grad lands somewhere exactly once
    assert out.sum() == pytest.approx(grad.sum(), rel=1e-12, abs=1e-12)


@pytest.mark.exercise("0.2", points=2)
def test_sum_to_shape_identity_and_dtype():
    grad = rand(3, 4, seed=12).astype(np.float32)
    np.testing.assert_array_equal(sum_to_shape(grad, (3, 4)), grad)
    out = sum_to_shape(grad, (1, 4))
    assert out.dtype == np.float32 and out.shape == (1, 4)
    np.testing.assert_allclose(out, grad.sum(axis=0, keepdims=True), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Exercise 0.3: MatMul backward
# ---------------------------------------------------------------------------------------------
def matmul_loss(g, a=None, b=None):
    """The scalar <g, A @ B> as a function of the missing factor (for central differences)."""
    if a is None:
        return lambda a_: float((g * np.matmul(a_, b)).sum())
    return lambda b_: float((g * np.matmul(a, b_)).sum())


@pytest.mark.exercise("0.3", points=2)
def test_matmul_backward_2d_against_loops():
    a, b, g = rand(3, 4, seed=13), rand(4, 2, seed=14), rand(3, 2, seed=15)
    _, (grad_a, grad_b) = call_backward(MatMul, (a, b), g)
    naive_a = np.zeros((3, 4))
    naive_b = np.zeros((4, 2))
    for i in range(3):
        for k in range(4):
            for j in range(2):
                naive_a[i, k] += g[i, j] * b[k, j]  # dY_ij / dA_ik = B_kj
                naive_b[k, j] += a[i, k] * g[i, j]  # dY_ij / dB_kj = A_ik
    np.testing.assert_allclose(grad_a, naive_a, rtol=1e-12)
    np.testing.assert_allclose(grad_b, naive_b, rtol=1e-12)


@pytest.mark.exercise("0.3", points=2)
@pytest.mark.parametrize("sa,sb", [((2, 3, 4), (2, 4, 5)),   # batched
                                   ((2, 3, 4), (4, 5)),      # B broadcast over the batch
                                   ((1, 3, 4), (2, 4, 2)),   # A broadcast over the batch
                                   ((4,), (4, 3)),           # vector @ matrix
                                   ((3, 4), (4,))])          # matrix @ vector
def test_matmul_backward_against_central_differences(sa, sb):
    a, b = rand(*sa, seed=16), rand(*sb, seed=17)
    g = rand(*np.matmul(a, b).shape, seed=18)
    _, (grad_a, grad_b) = call_backward(MatMul, (a, b), g)
    np.testing.assert_allclose(reduce_to(grad_a, sa), numerical_grad(matmul_loss(g, b=b), a),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(reduce_to(grad_b, sb), numerical_grad(matmul_loss(g, a=a), b),
                               rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# Exercise 0.4: Softmax backward
# ---------------------------------------------------------------------------------------------
def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.exercise("0.4", points=2)
def test_softmax_backward_equals_the_jacobian_product():
    x, g = rand(3, 5, seed=19), rand(3, 5, seed=20)
    y, (grad_x, _) = call_backward(Softmax, (x, 1), g)
    for r in range(3):
        J = np.diag(y[r]) - np.outer(y[r], y[r])  # dy_i / dx_j = y_i (delta_ij - y_j)
        np.testing.assert_allclose(grad_x[r], J.T @ g[r], rtol=1e-12, atol=1e-14)


@pytest.mark.exercise("0.4", points=2)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_backward_along_any_axis(axis):
    x, g = rand(3, 4, 2, seed=21), rand(3, 4, 2, seed=22)
    _, (grad_x, _) = call_backward(Softmax, (x, axis % 3), g)
    numeric = numerical_grad(lambda x_: float((g * np_softmax(x_, axis)).sum()), x)
    np.testing.assert_allclose(grad_x, numeric, rtol=1e-6, atol=1e-9)
    # softmax is shift-invariant along the axis, so the gradient sums to zero there
    np.testing.assert_allclose(grad_x.sum(axis=axis), 0, atol=1e-12)


@pytest.mark.exercise("0.4", points=2)
def test_softmax_backward_of_a_constant_upstream_gradient_is_zero():
    x = rand(2, 6, seed=23)
    _, (grad_x, _) = call_backward(Softmax, (x, 1), np.full((2, 6), 3.0))
    np.testing.assert_allclose(grad_x, 0, atol=1e-14)  # sum(y) = 1 does not depend on x


# ---------------------------------------------------------------------------------------------
# Exercise 0.5: topological order without recursion
# ---------------------------------------------------------------------------------------------
def reachable_nodes(root_ctx):
    """Every node reachable from root_ctx (breadth-first, written here)."""
    seen, frontier = {id(root_ctx): root_ctx}, [root_ctx]
    while frontier:
        nxt = []
        for node in frontier:
            for t in node.inputs:
                if t is not None and t._ctx is not None and id(t._ctx) not in seen:
                    seen[id(t._ctx)] = t._ctx
                    nxt.append(t._ctx)
        frontier = nxt
    return seen


def assert_topological(order, root_ctx):
    ids = [id(n) for n in order]
    assert len(ids) == len(set(ids)), "a node appears twice"
    assert set(ids) == set(reachable_nodes(root_ctx)), "not exactly the reachable nodes"
    assert order[0] is root_ctx
    position = {i: k for k, i in enumerate(ids)}
    for node in order:
        for t in node.inputs:
            if t is not None and t._ctx is not None:
                assert position[id(node)] < position[id(t._ctx)], (
                    f"{node.fn.__name__} must come before its input {t._ctx.fn.__name__}")


@pytest.mark.exercise("0.5", points=2)
def test_topological_order_of_a_diamond_with_fan_out():
    x = mm.tensor(rand(3, seed=24), requires_grad=True)
    a = mm.exp(x)
    b, c = mm.tanh(a), mm.sigmoid(a)  # a feeds two nodes
    d = b + c + a                     # and a third one
    e = -(d + x)
    order = _topological_order(e._ctx)
    assert len(order) == 7  # exp, tanh, sigmoid, add, add, add, neg
    assert_topological(order, e._ctx)


@pytest.mark.exercise("0.5", points=2)
def test_topological_order_of_a_deep_chain_without_recursion():
    x = mm.tensor([1.0], requires_grad=True)
    y, nodes = x, []
    for _ in range(5000):  # far deeper than Python's recursion limit
        y = -y
        nodes.append(y._ctx)
    order = _topological_order(y._ctx)
    assert [id(n) for n in order] == [id(n) for n in reversed(nodes)]


@pytest.mark.exercise("0.5", points=2)
def test_topological_order_ignores_leaves_constants_and_other_graphs():
    x = mm.tensor(rand(2, seed=25), requires_grad=True)
    other = mm.exp(x)                       # another graph on the same leaf
    const = mm.tensor(rand(2, seed=26))     # a constant input (no grad)
    y = mm.tanh(x) + const
    order = _topological_order(y._ctx)
    assert all(isinstance(n, Context) for n in order)
    assert other._ctx not in order
    assert_topological(order, y._ctx)
    assert len(order) == 2
