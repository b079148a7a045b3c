"""Experiments, shrunk: the memory sweep, the segment tasks, T-maze learning with/without truncation."""
import numpy as np
import pytest

from minimem.memory import Memformer
from minimem.memory.segment.lab import (
    copy_segments,
    memory_sweep,
    recall_segments,
    tmaze_segments,
    train_through_time,
)


def test_memory_sweep_flat_for_mrbp_and_gradients_equal():
    model = Memformer(8, 8, 1, 2, 2, 4, seed=0).double()
    rng = np.random.default_rng(0)
    segs = lambda T: [(rng.integers(0, 8, (2, 4)), rng.integers(0, 8, (2, 4)))
                      for _ in range(T)]
    rows = memory_sweep(model, segs, (2, 6))
    assert [r["T"] for r in rows] == [2, 6]
    assert rows[1]["peak_bptt"] / rows[0]["peak_bptt"] > 2.5
    assert rows[1]["peak_mrbp"] == rows[0]["peak_mrbp"]
    for r in rows:
        assert r["max_grad_diff"] < 1e-13
        assert r["loss_mrbp"] == pytest.approx(r["loss_bptt"], rel=1e-14)
        assert r["stored_bytes"] == (r["T"] + 1) * 2 * 2 * 8 * 8


def test_tmaze_segments_layout():
    segs = tmaze_segments(3, 5, 16, seed=1)
    assert len(segs) == 3 and all(x.shape == (16, 5) and y.shape == (16, 5) for x, y in segs)
    cue = segs[0][0][:, 0]
    assert set(np.unique(cue)) <= {1, 2}
    assert (segs[-1][0][:, -1] == 3).all() and (segs[-1][1][:, -1] == cue).all()
    assert (segs[0][1] == -100).all() and (segs[-1][1][:, :-1] == -100).all()
    assert (segs[1][0] >= 4).all()  # no cue or query token in the middle


def test_recall_and_copy_segments_layout():
    segs = recall_segments(3, 4, seed=0, n_keys=5, n_values=6, n_gap=1)
    assert len(segs) == 3
    (store, _), (q, y) = segs[0], segs[-1]
    for b in range(4):
        pairs = dict(zip(store[b, 0::2], store[b, 1::2]))
        assert len(pairs) == 3 and all(1 <= k <= 5 for k in pairs)
        for k, v in zip(q[b, 0::2], y[b, 0::2]):
            assert pairs[k] == v and 6 <= v <= 11
    assert (y[:, 1::2] == -100).all()
    segs = copy_segments(4, 3, seed=0, vocab=6, n_gap=2)
    assert len(segs) == 4 and (segs[-1][1] == segs[0][0]).all() and (segs[-1][0] == 0).all()
    with pytest.raises(ValueError, match="recall_segments: n_pairs must be in"):
        recall_segments(9, 2, n_keys=8)
    with pytest.raises(ValueError, match="tmaze_segments: need n_segments >= 2"):
        tmaze_segments(1, 4, 2)


@pytest.mark.slow
def test_tmaze_full_mrbp_learns_truncated_stays_at_chance():
    task = lambda b, s: tmaze_segments(4, 6, b, seed=s)
    acc = {}
    for window in (None, 1):
        model = Memformer(8, 32, 1, 2, 4, 6, d_ff=64, seed=0)
        h = train_through_time(model, task, 40, window=window, lr=3e-3, batch=32, eval_every=20)
        acc[window] = h["accuracy"][-1]
    assert acc[None] >= 0.95
    assert acc[1] <= 0.7


def test_train_through_time_errors():
    model = Memformer(8, 8, 1, 2, 2, 4, seed=0)
    with pytest.raises(ValueError, match="train_through_time: method must be 'mrbp' or 'bptt'"):
        train_through_time(model, lambda b, s: tmaze_segments(2, 4, b, seed=s), 1, method="x")
