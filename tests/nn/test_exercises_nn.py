"""Graded tests of the nn exercises (chapter 1, ``notebooks/01_training_memory_tasks.ipynb``).

* 1.1 the LayerNorm input gradient (``LayerNormFunction.backward`` in ``minimem/nn/layers.py``);
* 1.2 the Adam step (``Adam._update`` in ``minimem/optim.py``).

The backward is called directly on a hand-made node (``Context``), never through
``Tensor.backward`` (which needs the engine exercises); expected values come from a NumPy
LayerNorm and central differences, and from a NumPy Adam, all written here.
"""
import numpy as np
import pytest

import minimem as mm
from minimem.autograd.function import Context
from minimem.nn.layers import LayerNormFunction
from minimem.optim import Adam, AdamW


def layernorm_np(x, gamma, beta, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def numerical_grad(loss, a, h=1e-6):
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        plus, minus = a.copy(), a.copy()
        plus[idx] += h
        minus[idx] -= h
        grad[idx] = (loss(plus) - loss(minus)) / (2 * h)
    return grad


def layernorm_backward(x, gamma, beta, eps, g):
    tensors = (mm.Tensor(x, requires_grad=True), mm.Tensor(gamma, requires_grad=True),
               mm.Tensor(beta, requires_grad=True), None)
    ctx = Context(LayerNormFunction, tensors)
    LayerNormFunction.forward(ctx, x, gamma, beta, eps)
    return LayerNormFunction.backward(ctx, g)


@pytest.mark.exercise("1.1", points=3)
@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 5)])
def test_layernorm_backward_matches_finite_differences(shape):
    rng = np.random.default_rng(sum(shape))
    x = 2.0 + 3.0 * rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    g = rng.standard_normal(shape)
    eps = 1e-5
    grad_x = layernorm_backward(x, gamma, beta, eps, g)[0]
    want = numerical_grad(lambda z: (g * layernorm_np(z, gamma, beta, eps)).sum(), x)
    assert grad_x.shape == x.shape
    np.testing.assert_allclose(grad_x, want, rtol=1e-5, atol=1e-7)


@pytest.mark.exercise("1.1", points=3)
def test_layernorm_backward_with_unit_gamma_and_large_eps():
    """eps enters through sigma: with eps = 1 the gradient differs visibly from eps = 0."""
    rng = np.random.default_rng(7)
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    gamma, beta = np.ones(4), np.zeros(4)
    grad_x = layernorm_backward(x, gamma, beta, 1.0, g)[0]
    want = numerical_grad(lambda z: (g * layernorm_np(z, gamma, beta, 1.0)).sum(), x)
    np.testing.assert_allclose(grad_x, want, rtol=1e-5, atol=1e-7)


def adam_numpy(theta, grads, lr, b1, b2, eps):
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return theta


def run_optimizer(opt, p, grads):
    for g in grads:
        p.grad = mm.Tensor(g)
        opt.step()
    return p.numpy()


@pytest.mark.exercise("1.2", points=2)
def test_adam_steps_match_numpy():
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]
    p = mm.Tensor(theta.copy(), requires_grad=True)
    got = run_optimizer(Adam([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8), p, grads)
    np.testing.assert_allclose(got, adam_numpy(theta, grads, 0.01, 0.9, 0.99, 1e-8),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.exercise("1.2", points=2)
def test_adamw_steps_match_numpy():
    """AdamW: decoupled decay theta <- theta (1 - lr lambda), then the Adam step."""
    rng = np.random.default_rng(1)
    theta = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(3)]
    lr, wd, b1, b2, eps = 0.05, 0.1, 0.8, 0.9, 1e-6
    want, m, v = theta.copy(), np.zeros(5), np.zeros(5)
    for t, g in enumerate(grads, start=1):
        want = want * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        want = want - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    p = mm.Tensor(theta.copy(), requires_grad=True)
    got = run_optimizer(AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd), p, grads)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
