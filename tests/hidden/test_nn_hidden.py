"""Hidden grading tests of the nn exercises 1.1 (LayerNorm backward) and 1.2 (Adam step)."""
import numpy as np
import pytest

import minimem as mm
from minimem.autograd.function import Context
from minimem.nn.layers import LayerNormFunction
from minimem.optim import Adam


@pytest.mark.exercise("1.1", points=3)
def test_layernorm_backward_projections_and_scale():
    """grad_x is orthogonal to 1 and to x_hat (per row), and equals the naive Jacobian product."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 8)) * 10 - 3
    gamma, beta, g = rng.standard_normal(8), rng.standard_normal(8), rng.standard_normal((5, 8))
    eps = 1e-3
    tensors = (mm.Tensor(x, requires_grad=True), mm.Tensor(gamma, requires_grad=True),
               mm.Tensor(beta, requires_grad=True), None)
    ctx = Context(LayerNormFunction, tensors)
    LayerNormFunction.forward(ctx, x, gamma, beta, eps)
    grad_x = LayerNormFunction.backward(ctx, g)[0]
    mu = x.mean(-1, keepdims=True)
    sigma = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    x_hat = (x - mu) / sigma
    np.testing.assert_allclose(grad_x.sum(-1), 0, atol=1e-10)
    # the naive Jacobian of x_hat, row by row: d x_hat_i / d x_j
    d = x.shape[1]
    for r in range(len(x)):
        J = (np.eye(d) - 1 / d - np.outer(x_hat[r], x_hat[r]) / d) / sigma[r]
        np.testing.assert_allclose(grad_x[r], J.T @ (g[r] * gamma), rtol=1e-9, atol=1e-12)


@pytest.mark.exercise("1.2", points=2)
def test_adam_first_step_is_lr_times_sign_and_state_is_kept():
    """With bias correction the first step moves every weight by lr * sign(g) (eps -> 0);
    moments persist across steps: a zero gradient at step 2 still moves the weights."""
    rng = np.random.default_rng(3)
    theta = rng.standard_normal(6)
    g = rng.standard_normal(6)
    p = mm.Tensor(theta.copy(), requires_grad=True)
    opt = Adam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-12)
    p.grad = mm.Tensor(g)
    opt.step()
    np.testing.assert_allclose(p.numpy() - theta, -0.1 * np.sign(g), rtol=1e-9)
    before = p.numpy().copy()
    p.grad = mm.Tensor(np.zeros(6))
    opt.step()
    m2, v2 = 0.9 * 0.1 * g, 0.999 * 0.001 * g * g
    step2 = 0.1 * (m2 / (1 - 0.9 ** 2)) / (np.sqrt(v2 / (1 - 0.999 ** 2)) + 1e-12)
    np.testing.assert_allclose(before - p.numpy(), step2, rtol=1e-9)
