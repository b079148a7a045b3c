"""The chapter-50 lab beyond training: balanced and noise-token tasks, evaluation helpers, seed
summaries, and the pictures of the memory over time (traces, slot change, read-out probes,
reach of the first segment), on small configurations with known answers."""
import numpy as np
import pytest

from minimem.memory import Memformer, RecurrentMemoryTransformer, TransformerXL
from minimem.memory.segment import lab


# ---- tasks -------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [8, 9, 256])
def test_balanced_tmaze_has_half_of_each_cue_and_a_constant_answer_scores_one_half(batch):
    segs = lab.tmaze_segments(3, 4, batch, seed=5, balanced=True)
    cue = segs[0][0][:, 0]
    assert (segs[-1][1][:, -1] == cue).all()
    assert (cue == 1).sum() == (batch + 1) // 2 and (cue == 2).sum() == batch // 2
    if batch % 2 == 0:
        for answer in (1, 2):
            assert np.mean(answer == segs[-1][1][:, -1]) == 0.5
    other = lab.tmaze_segments(3, 4, batch, seed=6, balanced=True)[0][0][:, 0]
    assert not np.array_equal(cue, other)  # shuffled: the seed decides the order


def test_unbalanced_tmaze_draws_as_before():
    segs = lab.tmaze_segments(3, 4, 64, seed=1)
    rng = np.random.default_rng(1)
    assert (segs[0][0][:, 0] == rng.integers(1, 3, size=64)).all()


def test_copy_noise_tokens_of_their_own():
    segs = lab.copy_segments(3, 50, seed=0, vocab=6, n_gap=2, n_noise=4)
    data = segs[0][0]
    assert ((1 <= data) & (data <= 5)).all() and (segs[-1][1] == data).all()
    for x, y in segs[1:-1]:
        assert ((6 <= x) & (x <= 9)).all() and (y == lab.IGNORE).all()
    same = lab.copy_segments(3, 50, seed=0, vocab=6, n_gap=2)
    assert all(((1 <= x) & (x <= 5)).all() for x, _ in same[1:-1])
    with pytest.raises(ValueError, match="copy_segments: need n_tokens >= 1"):
        lab.copy_segments(3, 2, n_noise=-1)


# ---- evaluation, training over seeds -----------------------------------------------------
def test_predictions_position_accuracy_and_evaluate_agree():
    model = Memformer(8, 8, 1, 2, 2, 3, seed=0)
    segs = lab.copy_segments(3, 40, seed=2, vocab=8, n_gap=1)
    pred, target = lab.predict_targets(model, segs)
    assert pred.shape == target.shape == (120,) and (target == segs[-1][1].ravel()).all()
    acc = lab.evaluate_segments(model, segs)
    assert acc == pytest.approx(np.mean(pred == target))
    per_pos = lab.position_accuracy(model, segs)
    assert per_pos.shape == (3,) and per_pos.mean() == pytest.approx(acc)
    tm = lab.tmaze_segments(2, 3, 10, seed=0)
    assert np.isnan(lab.position_accuracy(model, tm)[:-1]).all()


def test_train_seeds_uses_each_seed_and_the_eval_task():
    seen = []

    def eval_task(batch, seed):
        seen.append((batch, seed))
        return lab.tmaze_segments(2, 4, batch, seed=seed, balanced=True)

    task = lambda b, s: lab.tmaze_segments(2, 4, b, seed=s)
    runs = lab.train_seeds(lambda s: Memformer(8, 8, 1, 2, 2, 4, seed=s), task, (3, 4), 2,
                           batch=4, eval_every=1, eval_batch=6, eval_task=eval_task)
    assert [r["seed"] for r in runs] == [3, 4] and seen == [(6, 10**6 + 3), (6, 10**6 + 4)]
    assert runs[0]["model"] is not runs[1]["model"]
    assert all(r["history"]["step"] == [0, 1, 2] for r in runs)
    accs = lab.final_accuracies(runs)
    assert accs.shape == (2,) and ((accs * 6) % 1 == 0).all()  # 6 queries, 3 of each cue
    assert lab.describe([0.5, 1.0, 0.75]) == "0.75 ± 0.20 [0.50, 1.00] (3 seeds)"
    with pytest.raises(ValueError, match="train_seeds: seeds must be a non-empty"):
        lab.train_seeds(lambda s: None, task, (), 1)


def test_truncation_at_every_segment_leaves_the_writer_without_gradient():
    from minimem.memory import mrbp

    model = Memformer(8, 8, 1, 2, 2, 4, seed=0)
    segs = lab.tmaze_segments(3, 4, 4, seed=0)
    grads = {}
    for window in (1, None):
        model.zero_grad()
        mrbp(lab.segment_cell(model), model.init_memory(4), segs, lab.segment_loss, window=window)
        grads[window] = {n: 0.0 if p.grad is None else float(np.abs(p.grad.numpy()).max())
                         for n, p in model.named_parameters()}
    writer = [n for n in grads[1] if n.startswith("writer")]
    assert writer and all(grads[1][n] == 0.0 for n in writer)
    assert max(grads[None][n] for n in writer) > 0
    assert max(v for n, v in grads[1].items() if n.startswith("layers")) > 0


# ---- the memory over time -----------------------------------------------------------------
def test_memory_trace_is_the_memories_between_the_steps():
    model = Memformer(8, 8, 1, 2, 3, 4, seed=1)
    segs = lab.tmaze_segments(3, 4, 5, seed=0)
    trace = lab.memory_trace(model, segs)
    assert trace.shape == (4, 5, 3, 8)
    assert np.array_equal(trace[0], model.init_memory(5).numpy())
    _, m1 = model.step(segs[0][0], model.init_memory(5))
    assert np.array_equal(trace[1], m1.numpy())
    assert np.allclose(np.linalg.norm(trace[1:], axis=-1), 1.0, atol=1e-5)  # BMN: unit slots
    rmt = RecurrentMemoryTransformer(8, 8, 1, 2, 2, 4, seed=0)
    assert lab.memory_trace(rmt, segs).shape == (4, 5, 2, 8)


def test_slot_change_measures_one_minus_cosine():
    e = np.eye(3)
    trace = np.stack([e[[0, 1]], e[[0, 2]], -e[[0, 2]] * 2.0])[:, None]  # (3, 1, 2, 3)
    change = lab.slot_change(trace)
    assert change.shape == (2, 2)
    assert np.allclose(change, [[0.0, 1.0], [2.0, 2.0]])
    with pytest.raises(ValueError, match="slot_change: trace must be"):
        lab.slot_change(np.zeros((1, 2, 2, 3)))


def test_probe_slots_reads_the_slot_that_holds_the_label():
    rng = np.random.default_rng(0)
    B, d = 200, 6
    labels = np.arange(B) % 2
    sign = np.where(labels[:, None] == 1, 1.0, -1.0)
    stored = sign * np.eye(1, d) + 0.3 * rng.standard_normal((B, d))
    noise = rng.standard_normal((B, d))
    M = np.stack([stored, noise], axis=1)                              # slot 0 holds the label
    same = np.broadcast_to(rng.standard_normal((1, 2, d)), (B, 2, d))  # one memory for all
    probe = lab.probe_slots(np.stack([same, M]), labels, seed=1)
    assert probe.shape == (2, 3)
    assert probe[1, 0] > 0.97 and probe[1, 2] > 0.9 and abs(probe[1, 1] - 0.5) < 0.15
    test_half = np.random.default_rng(1).permutation(B)[B // 2:]
    share = max(np.mean(labels[test_half] == c) for c in (0, 1))
    assert probe[0, 0] <= share + 1e-12 and probe[0, 0] in (np.mean(labels[test_half] == 0),
                                                          np.mean(labels[test_half] == 1))
    with pytest.raises(ValueError, match="probe_slots: need a trace"):
        lab.probe_slots(np.stack([M]), labels[:-1])


def test_probe_positions_finds_which_slot_holds_which_token():
    rng = np.random.default_rng(3)
    B, P, V = 300, 3, 5
    tokens = rng.integers(0, V, (B, P))
    onehot = np.eye(V)[tokens]                                   # (B, P, V)
    M = np.concatenate([onehot[:, [2, 0, 1]], rng.standard_normal((B, 1, V))], axis=1)
    contents = lab.probe_positions(np.stack([M, M]), tokens, boundary=1)
    assert contents.shape == (P, 5)
    assert contents[2, 0] == contents[0, 1] == contents[1, 2] == 1.0
    assert contents[:, 4].min() > 0.8 and contents[:, 3].max() < 0.5
    off = contents[:, :3][~np.eye(3, dtype=bool)[[1, 2, 0]]]
    assert off.max() < 0.5


def test_first_segment_reaches_n_layers_segments_of_transformer_xl_and_all_of_memformer():
    segs = lab.tmaze_segments(5, 4, 6, seed=0)
    for n_layers in (1, 2):
        xl = TransformerXL(8, 8, n_layers, 2, 4, 4, seed=0)
        reach = lab.first_segment_influence(xl, segs)
        assert reach.shape == (5,) and (reach[: n_layers + 1] > 0).all()
        assert (reach[n_layers + 1:] == 0).all()
    assert (lab.first_segment_influence(Memformer(8, 8, 1, 2, 2, 4, seed=0), segs) > 0).all()
    with pytest.raises(ValueError, match="first_segment_influence: need a batch"):
        lab.first_segment_influence(xl, lab.tmaze_segments(2, 4, 1, seed=0))


@pytest.mark.slow
def test_copy_across_a_noise_segment_with_two_slots_per_token():
    task = lambda b, s: lab.copy_segments(3, b, seed=s, vocab=8, n_gap=1)
    model = Memformer(8, 32, 1, 2, 6, 3, d_ff=64, seed=0)
    h = lab.train_through_time(model, task, 80, lr=5e-3, batch=64, eval_every=80)
    assert h["accuracy"][0] < 0.3 and h["accuracy"][-1] >= 0.95


def test_the_figures_draw_what_they_are_given():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minimem.memory.segment import plots

    runs = [{"history": {"step": [0, 5, 10], "accuracy": [0.1, 0.5, a]}} for a in (0.9, 1.0)]
    ax = plots.plot_seed_accuracy({"A": runs}, chance=0.25)
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("A")]
    assert len(lines) == 1 and np.allclose(lines[0].get_ydata(), [0.1, 0.5, 0.95])
    assert len(ax.get_lines()) == 4  # two seeds, the mean, chance
    change, probe = np.zeros((3, 2)), np.full((4, 3), 0.75)
    axes = plots.plot_memory_trace({"m": (change, probe), "n": (change, probe)}, chance=0.5)
    assert axes.shape == (2, 2)
    assert [t.get_text() for t in axes[0, 1].get_yticklabels()] == ["slot 0", "slot 1",
                                                                   "all slots"]
    ax = plots.plot_slot_contents(np.eye(2, 3), chance=0.1)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["slot 0", "slot 1", "all"]
    plt.close("all")
