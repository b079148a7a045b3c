"""MRBP == BPTT (float64, rtol 1e-12), truncation, replay, memory accounting, errors."""
import numpy as np
import pytest

import minimem as mm
from minimem.memory import Memformer, TransformerXL, bptt, mrbp, store_boundaries
from minimem.memory.segment.mrbp import random_generators, restore_rng, snapshot_rng
from minimem.memory.segment.lab import segment_cell, segment_loss

B, T_SEG, VOCAB = 2, 4, 7


def make_model(dropout=0.0, seed=0, n_layers=2):
    return Memformer(VOCAB, 8, n_layers, 2, 3, T_SEG, d_ff=12, dropout=dropout, seed=seed).double()


def make_segments(n, seed=0, last_only=False):
    rng = np.random.default_rng(seed)
    segs = []
    for t in range(n):
        x = rng.integers(0, VOCAB, (B, T_SEG))
        y = rng.integers(0, VOCAB, (B, T_SEG))
        if last_only and t < n - 1:
            y[:] = -100
        segs.append((x, y))
    return segs


def grads(model):
    return {n: (None if p.grad is None else p.grad.numpy().copy())
            for n, p in model.named_parameters()}


def run(method, model, segments, memory0=None, **kw):
    """Zero grads, reset every generator to a fixed state, run ``method``; (loss, grads, m0)."""
    model.zero_grad()
    for i, g in enumerate(random_generators(model)):
        g.bit_generator.state = np.random.default_rng(100 + i).bit_generator.state
    m0 = memory0() if memory0 else mm.tensor(model.init_memory(B).data, requires_grad=True)
    loss = method(segment_cell(model), m0, segments, segment_loss, modules=[model], **kw) \
        if method is mrbp else method(segment_cell(model), m0, segments, segment_loss, **kw)
    return loss, grads(model), m0


def assert_same_grads(ga, gb, rtol=1e-12):
    assert ga.keys() == gb.keys()
    for name in ga:
        a, b = ga[name], gb[name]
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=rtol, atol=1e-15 * max(1.0, np.abs(a).max()),
                                       err_msg=name)


@pytest.mark.parametrize("last_only", [False, True], ids=["every-segment", "last-segment"])
def test_mrbp_equals_bptt(last_only):
    model, segs = make_model(), make_segments(4, last_only=last_only)
    lb, gb, mb = run(bptt, model, segs)
    lm, gm, mr = run(mrbp, model, segs)
    assert lm == pytest.approx(lb, rel=1e-14)
    assert_same_grads(gb, gm)
    assert all(g is not None for n, g in gb.items() if n != "memory_init")
    np.testing.assert_allclose(mr.grad.numpy(), mb.grad.numpy(), rtol=1e-12, atol=1e-16)
    assert np.abs(mb.grad.numpy()).max() > 1e-6  # the initial memory does get a gradient


def test_mrbp_equals_bptt_with_dropout():
    model, segs = make_model(dropout=0.3), make_segments(4)
    lb, gb, mb = run(bptt, model, segs)
    end_bptt = snapshot_rng(random_generators(model))
    lm, gm, mr = run(mrbp, model, segs)
    end_mrbp = snapshot_rng(random_generators(model))
    assert lm == pytest.approx(lb, rel=1e-14)
    assert_same_grads(gb, gm)
    np.testing.assert_allclose(mr.grad.numpy(), mb.grad.numpy(), rtol=1e-12, atol=1e-16)
    assert end_bptt == end_mrbp  # the generators end where an ordinary forward leaves them
    # dropout really is on: another mask gives another loss
    for g in random_generators(model):
        g.bit_generator.state = np.random.default_rng(7).bit_generator.state
    assert bptt(segment_cell(model), model.init_memory(B), segs, segment_loss) != \
        pytest.approx(lb, rel=1e-6)


def test_mrbp_gradient_reaches_a_learned_initial_memory():
    model, segs = make_model(), make_segments(3)
    _, gb, _ = run(bptt, model, segs, memory0=lambda: model.init_memory(B))
    _, gm, _ = run(mrbp, model, segs, memory0=lambda: model.init_memory(B))
    assert np.abs(gb["memory_init"]).max() > 0
    assert_same_grads(gb, gm)


def test_replayed_memory_equals_stored_memory_exactly():
    model, segs = make_model(dropout=0.2), make_segments(4)
    gens = random_generators(model)
    m0 = model.init_memory(B)
    boundaries, rng_states, _ = store_boundaries(segment_cell(model), m0, segs, segment_loss, gens)
    assert len(boundaries) == 5 and len(rng_states) == 4
    for t in reversed(range(4)):  # replay in MRBP's order, each from its stored input
        restore_rng(gens, rng_states[t])
        leaf = mm.tensor(boundaries[t].data, requires_grad=True)
        _, out = model.step(segs[t][0], leaf)
        assert np.array_equal(out.data, boundaries[t + 1].data)
    _, stats = mrbp(segment_cell(model), m0, segs, segment_loss, modules=[model],
                    return_stats=True)
    assert stats.replay_max_abs_diff == 0.0 and stats.n_segments == 4
    assert stats.stored_bytes == 5 * B * 3 * 8 * 8


def test_replay_must_start_from_the_stored_state():
    """A replay of every segment from the initial memory gives other (wrong) gradients."""
    model, segs = make_model(), make_segments(3)
    _, gb, _ = run(bptt, model, segs)
    model.zero_grad()
    m0 = model.init_memory(B).data
    grad_mem = None
    for t in reversed(range(3)):
        leaf = mm.tensor(m0, requires_grad=True)  # wrong: not the stored M_t
        out, mem = model.step(segs[t][0], leaf)
        obj = mm.cross_entropy(out, segs[t][1])
        if grad_mem is not None:
            obj = obj + (mem * mm.tensor(grad_mem)).sum()
        obj.backward()
        grad_mem = leaf.grad.data
    wrong = grads(model)
    diff = max(np.abs(wrong[n] - gb[n]).max() for n in gb if gb[n] is not None)
    assert diff > 1e-4


@pytest.mark.parametrize("window", [1, 2, 3])
def test_truncation_equals_bptt_with_detaches(window):
    model, segs = make_model(), make_segments(5)
    # the reference, written out: detach the memory entering segments window, 2 window, ...
    model.zero_grad()
    m0 = mm.tensor(model.init_memory(B).data, requires_grad=True)
    mem, total = m0, None
    for t, (x, y) in enumerate(segs):
        if t > 0 and t % window == 0:
            mem = mem.detach()
        out, mem = model.step(x, mem)
        loss = mm.cross_entropy(out, y)
        total = loss if total is None else total + loss
    total.backward()
    ref, ref_m0 = grads(model), m0.grad.numpy()
    _, gm, mm0 = run(mrbp, model, segs, window=window)
    _, gb, bm0 = run(bptt, model, segs, window=window)
    assert_same_grads(ref, gm)
    assert_same_grads(ref, gb)
    np.testing.assert_allclose(mm0.grad.numpy(), ref_m0, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(bm0.grad.numpy(), ref_m0, rtol=1e-12, atol=1e-16)
    full = run(mrbp, model, segs)[1]
    cut = {n: 0.0 if g is None else g for n, g in gm.items()}
    assert max(np.abs(full[n] - cut[n]).max() for n in full if full[n] is not None) > 1e-6


def test_detach_really_cuts_the_gradient():
    model, segs = make_model(), make_segments(3, last_only=True)
    _, _, m_full = run(mrbp, model, segs)
    _, _, m_cut = run(mrbp, model, segs, window=1)
    assert np.abs(m_full.grad.numpy()).max() > 1e-6
    assert m_cut.grad is None  # the only loss is two detaches away from memory0


def test_finite_differences_on_the_initial_memory():
    model, segs = make_model(n_layers=1), make_segments(3)
    _, _, m0 = run(mrbp, model, segs)
    base = m0.data.copy()

    def total(mem):
        with mm.no_grad():
            memory, s = mm.tensor(mem), 0.0
            for x, y in segs:
                out, memory = model.step(x, memory)
                s += mm.cross_entropy(out, y).item()
        return s

    eps, num = 1e-6, np.zeros_like(base)
    for idx in np.ndindex(base.shape):
        plus, minus = base.copy(), base.copy()
        plus[idx] += eps
        minus[idx] -= eps
        num[idx] = (total(plus) - total(minus)) / (2 * eps)
    np.testing.assert_allclose(m0.grad.numpy(), num, rtol=1e-5, atol=1e-8)


def test_mrbp_on_a_tuple_memory_transformer_xl():
    model = TransformerXL(VOCAB, 8, 2, 2, T_SEG, 6, d_ff=12, dropout=0.1, seed=1).double()
    segs = make_segments(4)
    _, gb, _ = run(bptt, model, segs, memory0=lambda: model.init_memory(B))
    _, gm, _ = run(mrbp, model, segs, memory0=lambda: model.init_memory(B))
    assert_same_grads(gb, gm)


def test_peak_tape_memory_is_flat_for_mrbp_and_linear_for_bptt():
    model = make_model()
    peaks = {}
    for name, method in (("bptt", bptt), ("mrbp", mrbp)):
        for n in (2, 8):
            model.zero_grad()
            with mm.track_memory() as tracker:
                method(segment_cell(model), model.init_memory(B), make_segments(n), segment_loss)
            assert tracker.current_bytes == 0  # every tape was freed
            peaks[name, n] = tracker.peak_bytes
    assert peaks["bptt", 8] / peaks["bptt", 2] > 3.5
    assert peaks["mrbp", 8] / peaks["mrbp", 2] < 1.05
    assert peaks["mrbp", 8] < peaks["bptt", 2]


def test_track_memory_on_simple_graphs():
    x = mm.tensor(np.ones((10, 10)), requires_grad=True)
    with mm.track_memory() as m:
        y = x * x          # saves both operands: 2 * 800 bytes
        z = (y * 2.0).sum()
        assert m.current_bytes >= 1600
        held = m.current_bytes
        z.backward()
        assert m.current_bytes == 0 and m.peak_bytes == held
        with mm.no_grad():
            _ = x * x
        assert m.current_bytes == 0
        y = x * x
        assert m.current_bytes == 1600
        del y                   # an unused graph is freed when collected
        assert m.current_bytes == 0


def test_check_replay_catches_unrestored_randomness():
    model, segs = make_model(), make_segments(2)
    noise = np.random.default_rng(0)  # a generator mrbp does not know about

    def cell(seg, mem):
        out, new = model.step(seg[0], mem)
        return out, new + mm.tensor(noise.standard_normal(new.shape) * 1e-3)

    with pytest.raises(RuntimeError, match="did not reproduce its stored memory"):
        mrbp(cell, model.init_memory(B), segs, segment_loss)


def test_errors():
    model, segs = make_model(), make_segments(2)
    cell, m0 = segment_cell(model), model.init_memory(B)
    with pytest.raises(ValueError, match="mrbp: segments must be a non-empty list"):
        mrbp(cell, m0, [], segment_loss)
    with pytest.raises(ValueError, match="mrbp: window must be an int >= 1, got 0"):
        mrbp(cell, m0, segs, segment_loss, window=0)
    with pytest.raises(TypeError, match="bptt: cell must be callable"):
        bptt(None, m0, segs, segment_loss)
    with pytest.raises(TypeError, match="mrbp: memory0 must be a Tensor"):
        mrbp(cell, np.zeros(3), segs, segment_loss)
    with pytest.raises(TypeError, match="mrbp: loss_fn must return a scalar Tensor"):
        mrbp(cell, m0, segs, lambda out, seg: out)
