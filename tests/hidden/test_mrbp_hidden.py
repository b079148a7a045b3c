"""Hidden grading tests of the MRBP chapter's exercises 50.1-50.3 (not shipped to students).

Each exercise is tested against a formulation written here, never against instructor code.
"""
import numpy as np
import pytest
from _helpers import check_gradients

import minimem as mm
from minimem.memory import biased_memory_normalization, mrbp, slot_write_mask
from minimem.nn import Module, Parameter


class NoisyCell(Module):
    """m' = tanh(m W + x U) * dropout-like mask from its own generator; y = m' v."""

    def __init__(self, d=3, seed=0):
        super().__init__()
        r = np.random.default_rng(seed)
        self.W = Parameter(r.standard_normal((d, d)) * 0.7)
        self.U = Parameter(r.standard_normal((2, d)))
        self.v = Parameter(r.standard_normal((d, 1)))
        self.rng = np.random.default_rng(42)

    def forward(self, segment, memory):
        x, _ = segment
        keep = (self.rng.random((x.shape[0], self.W.shape[0])) > 0.3) / 0.7
        new = mm.tanh(memory @ self.W + mm.tensor(x) @ self.U) * mm.tensor(keep)
        return new @ self.v, new


class PairCell(Module):
    """A memory that is a tuple (h, c) of two tensors."""

    def __init__(self, d=3, seed=1):
        super().__init__()
        r = np.random.default_rng(seed)
        self.A = Parameter(r.standard_normal((d, d)) * 0.5)
        self.B = Parameter(r.standard_normal((2, d)))

    def forward(self, segment, memory):
        x, _ = segment
        h, c = memory
        c2 = c * 0.9 + mm.tanh(h @ self.A + mm.tensor(x) @ self.B)
        h2 = mm.tanh(c2)
        return h2.sum(axis=-1, keepdims=True), (h2, c2)


def loss_fn(out, seg):
    return None if seg[1] is None else ((out - mm.tensor(seg[1])) ** 2).mean()


def segments(n, seed=3, last_only=False):
    r = np.random.default_rng(seed)
    return [(r.standard_normal((2, 2)), None if last_only and t < n - 1 else
             r.standard_normal((2, 1))) for t in range(n)]


def unrolled(cell, m0, segs, window=None):
    mem, total = m0, None
    for t, seg in enumerate(segs):
        if window and t > 0 and t % window == 0:
            mem = tuple(m.detach() for m in mem) if isinstance(mem, tuple) else mem.detach()
        out, mem = cell(seg, mem)
        loss = loss_fn(out, seg)
        if loss is not None:
            total = loss if total is None else total + loss
    total.backward()
    return total.item()


def grads(cell, leaves):
    return [None if p.grad is None else p.grad.numpy().copy()
            for p in list(cell.parameters()) + list(leaves)]


def check(ga, gb):
    for a, b in zip(ga, gb):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)


@pytest.mark.exercise("50.1", points=3)
@pytest.mark.parametrize("window", [None, 2])
def test_replay_restores_the_random_state(window):
    segs = segments(5)
    results = []
    for use_mrbp in (False, True):
        cell = NoisyCell()
        m0 = mm.tensor(np.full((2, 3), 0.1), requires_grad=True)
        loss = (mrbp(cell, m0, segs, loss_fn, window=window) if use_mrbp
                else unrolled(cell, m0, segs, window))
        results.append((loss, grads(cell, [m0]), cell.rng.bit_generator.state))
    (lb, gb, sb), (lm, gm, sm) = results
    assert lm == pytest.approx(lb, rel=1e-13)
    check(gb, gm)
    assert sb == sm


@pytest.mark.exercise("50.1", points=3)
def test_replay_with_a_tuple_memory_and_loss_on_the_last_segment():
    segs = segments(4, last_only=True)
    results = []
    for use_mrbp in (False, True):
        cell = PairCell()
        h0 = mm.tensor(np.zeros((2, 3)), requires_grad=True)
        c0 = mm.tensor(np.full((2, 3), 0.2), requires_grad=True)
        if use_mrbp:
            mrbp(cell, (h0, c0), segs, loss_fn)
        else:
            unrolled(cell, (h0, c0), segs)
        results.append(grads(cell, [h0, c0]))
    check(*results)
    assert results[0][-1] is not None


@pytest.mark.exercise("50.2", points=1)
@pytest.mark.parametrize("K,T", [(2, 7), (6, 1), (8, 8)])
def test_slot_mask_hidden(K, T):
    expected = np.concatenate([np.eye(K, dtype=bool), np.ones((K, T), dtype=bool)], axis=1)
    got = slot_write_mask(K, T)
    assert got.dtype == bool and np.array_equal(got, expected)


@pytest.mark.exercise("50.3", points=1)
def test_bmn_hidden_broadcast_and_gradient():
    r = np.random.default_rng(9)
    m = r.standard_normal((3, 2, 4, 5))
    b = r.standard_normal((4, 5))
    out = biased_memory_normalization(mm.tensor(m), mm.tensor(b), eps=1e-3).numpy()
    u = m + b
    np.testing.assert_allclose(out, u / np.sqrt(np.einsum("...i,...i->...", u, u)[..., None]
                                                + 1e-3), rtol=1e-12)
    check_gradients(lambda a, c: biased_memory_normalization(a, c, eps=1e-3),
                    (mm.tensor(m[0, 0], requires_grad=True), mm.tensor(b, requires_grad=True)))
