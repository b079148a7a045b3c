"""Graded: exercise 50.1 (the MRBP replay loop), against a BPTT written out here."""
import numpy as np
import pytest

import minimem as mm
from minimem.memory import mrbp


class TanhCell:
    """m' = tanh(m W + x U), y = m' V: a tiny recurrent cell with leaf parameters."""

    def __init__(self, d=3, d_in=2, seed=0):
        r = np.random.default_rng(seed)
        self.W = mm.tensor(r.standard_normal((d, d)) * 0.8, requires_grad=True)
        self.U = mm.tensor(r.standard_normal((d_in, d)), requires_grad=True)
        self.V = mm.tensor(r.standard_normal((d, 1)), requires_grad=True)

    def params(self):
        return [self.W, self.U, self.V]

    def __call__(self, segment, memory):
        x, _ = segment
        new = mm.tanh(memory @ self.W + mm.tensor(x) @ self.U)
        return new @ self.V, new


def loss_fn(out, segment):
    _, target = segment
    return None if target is None else ((out - mm.tensor(target)) ** 2).sum()


def make_segments(n, seed=1, last_only=False):
    r = np.random.default_rng(seed)
    return [(r.standard_normal((2, 2)),
             None if last_only and t < n - 1 else r.standard_normal((2, 1))) for t in range(n)]


def hand_bptt(cell, m0, segments, window=None):
    """Unroll everything, detach before every window-th segment, one backward."""
    mem, total = m0, None
    for t, seg in enumerate(segments):
        if window and t > 0 and t % window == 0:
            mem = mem.detach()
        out, mem = cell(seg, mem)
        loss = loss_fn(out, seg)
        if loss is not None:
            total = loss if total is None else total + loss
    total.backward()
    return total.item()


def grads_of(cell, m0):
    return [p.grad.numpy().copy() if p.grad is not None else None for p in cell.params()] + [
        None if m0.grad is None else m0.grad.numpy().copy()]


def both(n, window=None, last_only=False):
    segs = make_segments(n, last_only=last_only)
    results = []
    for method in ("bptt", "mrbp"):
        cell = TanhCell()
        m0 = mm.tensor(np.random.default_rng(5).standard_normal((2, 3)), requires_grad=True)
        if method == "bptt":
            loss = hand_bptt(cell, m0, segs, window)
        else:
            loss = mrbp(cell, m0, segs, loss_fn, window=window)
        results.append((loss, grads_of(cell, m0)))
    return results


def assert_equal_grads(a, b):
    for ga, gb in zip(a, b):
        assert (ga is None) == (gb is None)
        if ga is not None:
            np.testing.assert_allclose(gb, ga, rtol=1e-12, atol=1e-15)


@pytest.mark.exercise("50.1", points=3)
@pytest.mark.parametrize("last_only", [False, True])
def test_replay_loop_equals_bptt(last_only):
    (lb, gb), (lm, gm) = both(5, last_only=last_only)
    assert lm == pytest.approx(lb, rel=1e-13)
    assert_equal_grads(gb, gm)
    assert gm[-1] is not None and np.abs(gm[-1]).max() > 1e-8  # memory0 gets its gradient


@pytest.mark.exercise("50.1", points=3)
@pytest.mark.parametrize("window", [1, 2, 4])
def test_replay_loop_truncation(window):
    (_, gb), (_, gm) = both(5, window=window)
    assert_equal_grads(gb, gm)


@pytest.mark.exercise("50.1", points=3)
def test_replay_loop_keeps_one_tape():
    cell, segs = TanhCell(), make_segments(12)
    m0 = mm.tensor(np.zeros((2, 3)), requires_grad=True)
    with mm.track_memory() as tracker:
        mrbp(cell, m0, segs, loss_fn)
    one = TanhCell()
    with mm.track_memory() as single:
        out, new = one(segs[0], mm.tensor(np.zeros((2, 3)), requires_grad=True))
        (loss_fn(out, segs[0]) + (new * 1.0).sum()).backward()
    assert tracker.peak_bytes <= 1.5 * single.peak_bytes
    assert tracker.current_bytes == 0
    # and the gradients are BPTT's (the memory figures alone come from library code)
    ref, m_ref = TanhCell(), mm.tensor(np.zeros((2, 3)), requires_grad=True)
    hand_bptt(ref, m_ref, segs)
    assert_equal_grads(grads_of(ref, m_ref), grads_of(cell, m0))
