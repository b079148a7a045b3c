"""Optimizers against NumPy updates written here; gradient clipping; the warm-up cosine schedule."""
import math

import numpy as np
import pytest

import minimem as mm
from minimem.optim import SGD, Adam, AdamW, WarmupCosine, clip_grad_norm_, warmup_cosine


def _params_and_grads(seed=0):
    rng = np.random.default_rng(seed)
    params = [mm.tensor(rng.standard_normal((3, 2)), requires_grad=True),
              mm.tensor(rng.standard_normal(4), requires_grad=True)]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(4)]
    return params, grads


def _run(opt, params, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = mm.tensor(g)
        opt.step()
    return [p.numpy() for p in params]


@pytest.mark.parametrize("momentum, nesterov, wd", [(0.0, False, 0.0), (0.9, False, 0.0),
                                                    (0.9, True, 0.1)])
def test_sgd_matches_numpy(momentum, nesterov, wd):
    params, grads = _params_and_grads()
    theta = [p.numpy().copy() for p in params]
    buf = [None] * len(theta)
    lr = 0.1
    for gs in grads:
        for i, g in enumerate(gs):
            g = g + wd * theta[i]
            if momentum:
                buf[i] = g.copy() if buf[i] is None else momentum * buf[i] + g
                g = g + momentum * buf[i] if nesterov else buf[i]
            theta[i] = theta[i] - lr * g
    got = _run(SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd),
               params, grads)
    for a, b in zip(got, theta):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def _adam_numpy(theta, grads, lr, b1, b2, eps, wd, decoupled):
    theta = [t.copy() for t in theta]
    m = [np.zeros_like(t) for t in theta]
    v = [np.zeros_like(t) for t in theta]
    for step, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            if decoupled:
                theta[i] = theta[i] - lr * wd * theta[i]
            else:
                g = g + wd * theta[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g ** 2
            mh, vh = m[i] / (1 - b1 ** step), v[i] / (1 - b2 ** step)
            theta[i] = theta[i] - lr * mh / (np.sqrt(vh) + eps)
    return theta


@pytest.mark.parametrize("cls, wd", [(Adam, 0.0), (Adam, 0.05), (AdamW, 0.05), (AdamW, 0.0)])
def test_adam_and_adamw_match_numpy(cls, wd):
    params, grads = _params_and_grads(1)
    want = _adam_numpy([p.numpy() for p in params], grads, 0.01, 0.8, 0.95, 1e-6, wd,
                       decoupled=cls is AdamW)
    got = _run(cls(params, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd),
               params, grads)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_adamw_default_decay_and_skipped_grads():
    p = mm.tensor(np.ones(3), requires_grad=True)
    q = mm.tensor(np.ones(2), requires_grad=True)
    opt = AdamW([p, q], lr=0.1)
    assert opt.weight_decay == 0.01
    p.grad = mm.tensor(np.zeros(3))
    opt.step()                                   # q has no grad: untouched
    np.testing.assert_allclose(p.numpy(), 1 - 0.1 * 0.01)
    np.testing.assert_array_equal(q.numpy(), 1.0)
    opt.zero_grad()
    assert p.grad is None and q.grad is None


def test_optimizer_trains_a_quadratic():
    target = np.array([1.0, -2.0, 3.0])
    p = mm.tensor(np.zeros(3), requires_grad=True)
    opt = Adam([p], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        ((p - mm.tensor(target)) ** 2).sum().backward()
        opt.step()
    np.testing.assert_allclose(p.numpy(), target, atol=1e-3)


def test_optimizer_errors():
    p = mm.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="SGD: got an empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Adam: lr must be > 0"):
        Adam([p], lr=0)
    with pytest.raises(TypeError, match=r"AdamW: params\[1\] is not a tensor that requires grad"):
        AdamW([p, mm.tensor(np.ones(2))])
    with pytest.raises(ValueError, match=r"Adam: betas must lie in \[0, 1\)"):
        Adam([p], betas=(0.9, 1.0))


def test_clip_grad_norm():
    a = mm.tensor(np.zeros(2), requires_grad=True)
    b = mm.tensor(np.zeros(1), requires_grad=True)
    c = mm.tensor(np.zeros(1), requires_grad=True)     # no grad: ignored
    a.grad, b.grad = mm.tensor(np.array([3.0, 0.0])), mm.tensor(np.array([4.0]))
    total = clip_grad_norm_([a, b, c], max_norm=1.0)
    assert total == pytest.approx(5.0)
    np.testing.assert_allclose(a.grad.numpy(), [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), [0.8], rtol=1e-6)
    # below the threshold nothing changes
    assert clip_grad_norm_([a, b], max_norm=10.0) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), [0.8], rtol=1e-6)
    assert clip_grad_norm_([c], 1.0) == 0.0


def test_warmup_cosine_values():
    # linear warm-up: (step + 1) / warmup
    assert [warmup_cosine(s, 10, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # then cosine from 1 at step=warmup to min_ratio at step=total
    assert warmup_cosine(4, 10, 4) == pytest.approx(1.0)
    assert warmup_cosine(7, 10, 4) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 4) == pytest.approx(0.0, abs=1e-15)
    assert warmup_cosine(50, 10, 4, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(5, 10, 0, 0.2) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(
        math.pi * 0.5)))


def test_warmup_cosine_drives_the_optimizer():
    p = mm.tensor(np.ones(1), requires_grad=True)
    opt = SGD([p], lr=2.0)
    sched = WarmupCosine(opt, total_steps=6, warmup_steps=2)
    lrs = [opt.lr] + [sched.step() for _ in range(6)]
    want = [2.0 * warmup_cosine(t, 6, 2) for t in range(7)]
    np.testing.assert_allclose(lrs, want)
    assert lrs[:3] == [1.0, 2.0, 2.0] and lrs[-1] == pytest.approx(0.0, abs=1e-12)
