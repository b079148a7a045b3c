"""ARMT, LM2, TransformerFAM and the Cached Transformer on the segment loop: what each token
may see, the gate bounds, BPTT == MRBP, the contracts."""
import numpy as np
import pytest

import minimem as mm
from minimem.autograd.function import no_grad
from minimem.memory import (
    ARMT,
    LM2,
    CachedTransformer,
    GatedRecurrentCache,
    TransformerFAM,
    bptt,
    fam_mask,
    mrbp,
)
from minimem.memory.segment.lab import segment_cell, segment_loss
from minimem.tasks import associative_retrieval, retrieval_vocab

V = retrieval_vocab(6, 6)
MODELS = {
    "armt": lambda: ARMT(V, 8, 2, 2, 2, 4, d_key=4, d_ff=16, seed=0),
    "lm2": lambda: LM2(V, 8, 1, 2, 2, 4, d_ff=16, seed=0),
    "cached": lambda: CachedTransformer(V, 8, 1, 2, 2, 4, d_ff=16, seed=0),
    "fam": lambda: TransformerFAM(V, 8, 1, 2, 2, 4, d_ff=16, seed=0),
}


def segments(seed=0, batch=3):
    return associative_retrieval(3, batch, seed=seed, pairs_per_segment=2, n_gap=1, n_keys=6,
                                 n_values=6)


def grads(model):
    return [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()]


def largest_gap(ga, gb):
    assert [a is None for a in ga] == [b is None for b in gb]
    return max(float(np.abs(a - b).max()) for a, b in zip(ga, gb) if a is not None)


def gradients_both_ways(model, segs, window=None):
    cell = segment_cell(model)
    out = []
    for method in (bptt, mrbp):
        model.zero_grad()
        loss = method(cell, model.init_memory(segs[0][0].shape[0]), segs, segment_loss,
                      window=window)
        out.append((loss, grads(model)))
    return out


@pytest.mark.parametrize("window", [None, 2])
def test_armt_mrbp_gives_bptt_gradients_in_float64(window):
    model = ARMT(V, 8, 2, 2, 2, 4, d_key=4, d_ff=16, seed=1).double()
    (lb, gb), (lm, gm) = gradients_both_ways(model, segments(1), window)
    assert lm == pytest.approx(lb, rel=1e-13)
    assert largest_gap(gb, gm) <= 1e-10
    named = dict(zip([n for n, _ in model.named_parameters()], gb))
    # the associative memory is trained: the gradient crosses the segments through A and z
    assert np.abs(named["assoc.0.W_K.weight"]).max() > 1e-8
    assert np.abs(named["assoc.1.W_beta.weight"]).max() > 1e-8


@pytest.mark.parametrize("key", ["lm2", "cached", "fam"])
def test_the_other_models_train_with_mrbp_as_with_bptt(key):
    model = MODELS[key]().double()
    (lb, gb), (lm, gm) = gradients_both_ways(model, segments(2))
    assert lm == pytest.approx(lb, rel=1e-13)
    assert largest_gap(gb, gm) <= 1e-10
    assert all(np.abs(g).max() > 0 for g in gb)


def last_logits(model, segs):
    with no_grad():
        logits, _ = model([x for x, _ in segs])
    return [y.numpy() for y in logits]


@pytest.mark.parametrize("key", list(MODELS))
def test_a_token_sees_no_later_token_of_its_segment_but_earlier_segments(key):
    model = MODELS[key]().double()
    segs = segments(3)
    x_last = segs[-1][0].copy()
    x_last[:, 2:] = (x_last[:, 2:] + 1) % V                    # change the future of pos 1
    changed = segs[:-1] + [(x_last, segs[-1][1])]
    a, b = last_logits(model, segs), last_logits(model, changed)
    np.testing.assert_array_equal(a[-1][:, :2], b[-1][:, :2])
    assert np.abs(a[-1][:, 2:] - b[-1][:, 2:]).max() > 0
    x0 = segs[0][0].copy()
    x0[:, 0] = (x0[:, 0] + 1) % V                              # change the first segment
    c = last_logits(model, [(x0, segs[0][1])] + segs[1:])
    assert np.abs(c[-1] - a[-1]).max() > 1e-9                  # the memory carried it


def test_armt_reads_nothing_in_the_first_segment():
    model = ARMT(V, 8, 1, 2, 2, 4, d_key=4, seed=0).double()
    _, ((A, z),) = model.init_memory(2)
    assert A.shape == (2, 4 * 2 * 3, 8) and z.shape == (2, 24)
    seq = mm.tensor(np.random.default_rng(0).standard_normal((2, 5, 8)))
    assert np.all(model.assoc[0].read(seq, A, z).numpy() == 0.0)
    _, (_, ((A1, z1),)) = model.step(segments()[0][0][:2], model.init_memory(2))
    assert np.abs(A1.numpy()).max() > 0 and (z1.numpy() >= 0).all()


def test_lm2_gates_bound_the_bank():
    model = LM2(V, 8, 1, 2, 3, 4, seed=0).double()
    r = np.random.default_rng(1)
    bank = mm.tensor(3.0 * r.standard_normal((2, 3, 8)))
    enc = mm.tensor(r.standard_normal((2, 4, 8)))
    u, g_in, g_f = (t.numpy() for t in model.update.gates(bank, enc))
    assert ((0 < g_in) & (g_in < 1) & (0 < g_f) & (g_f < 1)).all()
    new = model.update(bank, enc).numpy()
    np.testing.assert_allclose(new, g_in * np.tanh(u) + g_f * bank.numpy(), rtol=1e-12)
    assert (np.abs(new) < 1 + np.abs(bank.numpy())).all()


def test_cached_transformer_cache_is_a_convex_mix_and_the_ratio_is_a_share():
    grc = GatedRecurrentCache(8, 3, seed=0).double()
    r = np.random.default_rng(2)
    cache = mm.tensor(r.standard_normal((2, 3, 8)))
    x = mm.tensor(r.standard_normal((2, 5, 8)))
    x_bar = grc.pool(x).numpy()
    new = grc(cache, x).numpy()
    lo, hi = np.minimum(cache.numpy(), x_bar), np.maximum(cache.numpy(), x_bar)
    assert ((lo - 1e-12 <= new) & (new <= hi + 1e-12)).all()
    g = grc.gate(grc.pool(x), cache).numpy()
    np.testing.assert_allclose(new, (1 - g) * cache.numpy() + g * x_bar, rtol=1e-12)
    model = MODELS["cached"]()
    assert 0 < float(model.layers[0].ratio().numpy()[0]) < 1


@pytest.mark.exercise("55.3", points=2)
def test_gated_recurrent_cache_update_matches_the_equations():
    grc = GatedRecurrentCache(4, 2, seed=3).double()
    r = np.random.default_rng(4)
    C, x = r.standard_normal((1, 2, 4)), r.standard_normal((1, 6, 4))
    P = grc.P.numpy()
    s = P @ x[0].T / 2.0
    w = np.exp(s - s.max(-1, keepdims=True))
    x_bar = (w / w.sum(-1, keepdims=True)) @ x[0]
    W, b = grc.W_g.weight.numpy(), grc.W_g.bias.numpy()
    g = 1 / (1 + np.exp(-(np.concatenate([x_bar, C[0]], -1) @ W.T + b)))
    want = (1 - g) * C[0] + g * x_bar
    np.testing.assert_allclose(grc(mm.tensor(C), mm.tensor(x)).numpy()[0], want, rtol=1e-10)


def test_fam_mask_lets_fam_see_all_and_tokens_the_past():
    m = fam_mask(2, 3)
    want = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0],
                     [1, 1, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(m, want)
    model = MODELS["fam"]().double()
    x = segments()[0][0][:2]
    _, fam_a = model.step(x, model.init_memory(2))
    x2 = x.copy()
    x2[:, -1] = (x2[:, -1] + 1) % V
    _, fam_b = model.step(x2, model.init_memory(2))
    assert np.abs(fam_a[0].numpy() - fam_b[0].numpy()).max() > 0     # FAM saw the last token


def test_bad_memories_and_arguments_are_named():
    x = segments()[0][0][:2]
    with pytest.raises(ValueError, match=r"ARMT.step: memory must be \(tokens"):
        MODELS["armt"]().step(x, mm.zeros(2, 2, 8))
    with pytest.raises(ValueError, match=r"LM2.step: memory must be a Tensor of shape \(2, 2, 8\)"):
        MODELS["lm2"]().step(x, mm.zeros(2, 3, 8))
    with pytest.raises(ValueError, match="CachedTransformer.step: memory must be a tuple of 1"):
        MODELS["cached"]().step(x, mm.zeros(2, 2, 8))
    with pytest.raises(ValueError, match="TransformerFAM.step: memory must be a tuple of 1 FAMs"):
        MODELS["fam"]().step(x, (mm.zeros(2, 3, 8),))
    with pytest.raises(ValueError, match="ARMT: n_mem must be an int >= 1, got 0"):
        ARMT(V, 8, 1, 2, 0, 4)
    with pytest.raises(TypeError, match="AssociativeMemory: d_key must be an int"):
        ARMT(V, 8, 1, 2, 2, 4, d_key=2.5)
    grc = GatedRecurrentCache(8, 2)
    with pytest.raises(ValueError, match=r"GatedRecurrentCache: x must be a Tensor \(B, T, 8\)"):
        grc(mm.zeros(1, 2, 8), mm.zeros(1, 3, 4))
    with pytest.raises(ValueError, match=r"GatedRecurrentCache: cache must be a Tensor of shape"):
        grc(mm.zeros(1, 3, 8), mm.zeros(1, 3, 8))
    with pytest.raises(ValueError, match="segment length 5 exceeds max_len=4"):
        MODELS["lm2"]().step(np.zeros((1, 5), dtype=np.int64), MODELS["lm2"]().init_memory(1))
