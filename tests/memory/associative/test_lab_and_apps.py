"""Chapter 55's experiments (small), its tour step and its benchmark."""
import matplotlib
import numpy as np
import pytest

from minimem.bench import benchmarks
from minimem.memory.associative import lab, plots
from minimem.tour import steps

matplotlib.use("Agg")


def test_write_capacity_favours_the_delta_write_when_keys_are_rewritten():
    out = lab.write_capacity((8, 32), seeds=(0, 1), rewrite=True, batch=4)
    assert set(out) == {"armt", "sum"} and out["armt"].shape == (2, 2)
    assert ((0 <= out["sum"]) & (out["sum"] <= 1)).all()
    # a sum returns the mean of the old and new value: at 32 pairs it loses the new one
    assert out["armt"][1].mean() > out["sum"][1].mean() + 0.1
    with pytest.raises(ValueError, match="write_capacity: n_pairs must be an int >= 1, got 0"):
        lab.write_capacity((0,))


@pytest.mark.parametrize("kind", lab.KINDS)
def test_every_kind_builds_with_the_same_memory_size(kind):
    model = lab.make_model(kind, 20, d_model=8, n_mem=3, max_len=4)
    memory = model.init_memory(2)
    leaves = memory if isinstance(memory, tuple) else (memory,)
    first = leaves[0] if not isinstance(leaves[0], tuple) else leaves[0][0]
    assert first.shape == (2, 3, 8)


def test_make_model_scales_the_token_embeddings_only():
    small = lab.make_model("armt", 20, d_model=8, n_mem=2, max_len=4, emb_std=0.02)
    big = lab.make_model("armt", 20, d_model=8, n_mem=2, max_len=4)       # emb_std = 1
    np.testing.assert_allclose(big.tok.weight.numpy(), 50 * small.tok.weight.numpy(),
                               rtol=1e-6)
    np.testing.assert_array_equal(big.pos.weight.numpy(), small.pos.weight.numpy())
    with pytest.raises(ValueError, match="make_model: kind must be one of"):
        lab.make_model("lstm", 10)
    with pytest.raises(ValueError, match="make_model: emb_std must be > 0"):
        lab.make_model("rmt", 10, emb_std=0.0)


def test_train_learns_one_pair_and_mrbp_follows_bptt():
    task = lab.retrieval_task(1, n_keys=4, n_values=4)
    model = lab.make_model("armt", 10, d_model=16, n_mem=2, max_len=2)
    losses = lab.train(model, task, 120, lr=1e-2, batch=16, warmup=10)
    assert np.mean(losses[-10:]) < 0.1 * losses[0]
    from minimem.memory.segment import lab as seg_lab
    assert seg_lab.evaluate_segments(model, task(64, 10**6)) > 0.95
    # the same gradients through time: the same losses, step by step
    a, b = (lab.make_model("rmt", 10, d_model=8, n_mem=2, max_len=2).double()
            for _ in range(2))
    la = lab.train(a, task, 3, batch=4, method="bptt")
    lb = lab.train(b, task, 3, batch=4, method="mrbp")
    np.testing.assert_allclose(la, lb, rtol=1e-12)
    with pytest.raises(ValueError, match="train: method must be one of"):
        lab.train(a, task, 1, method="sgd")


def test_pairs_recalled_rows_follow_the_curriculum_then_every_evaluation():
    rows = lab.pairs_recalled(("rmt", "armt"), stages=(1, 2), eval_pairs=(1, 3), seeds=(0,),
                              steps=2, d_model=8, batch=4, eval_batch=8)
    assert [(r["kind"], r["n_pairs"]) for r in rows] == [
        ("rmt", 1), ("rmt", 3), ("armt", 1), ("armt", 3)]
    assert all(r["recalled"] == pytest.approx(r["n_pairs"] * r["accuracy"]) for r in rows)
    assert rows[0]["model"] is rows[1]["model"]           # one model, evaluated twice
    summary = lab.summarize(rows, "recalled")
    assert summary["armt", 3] == (pytest.approx(rows[3]["recalled"]), 0.0, 1)
    fig = plots.plot_pairs_recalled(summary, ("rmt", "armt"), (1, 3), chance=1 / 8)
    assert fig.axes
    # the losses of the whole curriculum, stage after stage, shared by a model's rows
    assert len(rows[0]["losses"]) == 2 * 2 and rows[0]["losses"] is rows[1]["losses"]
    assert rows[2]["losses"] != rows[0]["losses"]
    fig = plots.plot_curriculum_losses(rows, ("rmt", "armt"), (1, 2), window=2,
                                       chance=np.log(8))
    lines = [ln for ln in fig.axes[0].lines if ln.get_label() != "uniform guess"]
    assert len(lines) == 2 + 2           # one line per kind and seed, 2 stage markers
    np.testing.assert_allclose(lines[0].get_ydata(),
                               np.convolve(rows[0]["losses"], [0.5, 0.5], mode="valid"))


def test_seed_accuracy_bars_show_every_seed_and_the_mean():
    accs = {"a": [1.0, 0.5], "b": [0.2, 0.4]}
    fig = plots.plot_seed_accuracies(accs, (0, 1), chance=0.125)
    heights = [[p.get_height() for p in c] for c in fig.axes[0].containers
               if hasattr(c, "patches")]
    assert heights == [pytest.approx([1.0, 0.5, 0.75]), pytest.approx([0.2, 0.4, 0.3])]
    with pytest.raises(ValueError, match="plot_seed_accuracies: every entry of bars"):
        plots.plot_seed_accuracies({"a": [1.0]}, (0, 1))


def test_length_generalization_evaluates_one_model_on_every_length():
    gen = lab.length_generalization(("rmt",), train_segments=(2,), eval_segments=(2, 5),
                                    seeds=(0, 1), steps=2, d_model=8, batch=4, eval_batch=8)
    assert [(r["seed"], r["n_segments"]) for r in gen] == [(0, 2), (0, 5), (1, 2), (1, 5)]
    assert all(0 <= r["accuracy"] <= 1 for r in gen) and gen[0]["model"] is gen[1]["model"]
    assert len(gen[0]["model"].blocks) == 2          # the chapter's default: two layers
    one = lab.length_generalization(("rmt",), train_segments=(2,), eval_segments=(2,),
                                    seeds=(0,), steps=1, d_model=8, n_layers=1, batch=4,
                                    eval_batch=8)
    assert len(one[0]["model"].blocks) == 1 and one[0]["stage"] == 0
    staged = lab.length_generalization(("rmt",), eval_segments=(2,), seeds=(0,), steps=1,
                                       d_model=8, batch=4, eval_batch=8,
                                       length_stages=((2,), (3, 4)))
    assert [r["stage"] for r in staged] == [0, 1] and staged[0]["model"] is staged[1]["model"]
    # a one-stage curriculum is the plain training: the same batches, the same weights
    kw = dict(eval_segments=(2,), seeds=(0,), steps=2, d_model=8, batch=4, eval_batch=8)
    a = lab.length_generalization(("rmt",), length_stages=((2, 3),), **kw)[0]["model"]
    b = lab.length_generalization(("rmt",), train_segments=(2, 3), **kw)[0]["model"]
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    summary = lab.summarize(gen, by="n_segments")
    assert summary["rmt", 5][2] == 2
    fig = plots.plot_length_generalization(summary, ("rmt",), (2, 5), trained=(2,),
                                           chance=1 / 4)
    assert fig.axes


def test_segment_cost_reports_seconds_and_bytes():
    cost = lab.segment_cost(("rmt", "armt"), n_segments=2, d_model=8, n_mem=2, seg_len=4,
                            repeat=1)
    assert cost["armt"][1] > cost["rmt"][1] > 0 and cost["rmt"][0] > 0


def test_tour_step_runs(tmp_path):
    line = dict(steps())["armt"].run(tmp_path)
    assert (tmp_path / "armt_diagrams.png").exists()
    write_gap = float(line.split("per pair| = ")[1].split(";")[0])
    grad_gap = float(line.split("g_BPTT| = ")[1].split(";")[0])
    assert write_gap < 1e-12 and grad_gap <= 1e-10


def test_bench_plugin_is_registered():
    mod = benchmarks()["armt"]
    assert mod.__name__ == "minimem.bench.armt" and mod.DESCRIPTION
    fns = mod._steps({"d_model": 8, "n_mem": 2, "seg_len": 4, "batch": 1}, 1)
    assert set(fns) == set(mod.KINDS)
    fns["armt"]()
    rows = mod.with_ratios([mod.Row("w", "rmt", 2.0), mod.Row("w", "armt", 1.0)], "rmt")
    assert rows[1].ratio == 2.0


def test_matrix_trace_figure():
    A = [np.random.default_rng(t).standard_normal((6, 4)) for t in range(3)]
    fig = plots.plot_matrix_trace(A, [np.abs(a[:, 0]) for a in A])
    assert len(fig.axes) == 6


@pytest.mark.exercise("55.4", points=2)
@pytest.mark.parametrize("beta", [0.25, 0.6, 1.0])
def test_first_value_share_predicts_the_measured_read_out(beta):
    for n in (1, 2, 3, 4):
        predicted = lab.first_value_share(beta, n)
        assert isinstance(predicted, float)
        assert predicted == pytest.approx(lab.measured_first_share(beta, n), abs=1e-6)


def test_report_prints_both_tables(capsys):
    rows, gen = lab.report(kinds=("rmt",), steps=1, seeds=(0,), stages=(2,), eval_pairs=(2,),
                           facts_steps=1, train_segments=(2,), eval_segments=(2, 3))
    text = capsys.readouterr().out
    assert "pairs recalled of n written" in text and "facts in noise" in text
    assert len(rows) == 1 and [r["n_segments"] for r in gen] == [2, 3]


def test_accuracy_without_reads_ignores_the_matrix_and_restores_the_model():
    from minimem.memory.segment import lab as seg_lab
    segs = lab.retrieval_task(3, n_keys=4, n_values=4)(256, 5)
    model = lab.make_model("armt", 10, d_model=8, n_mem=2, max_len=6, seed=1)
    before = [p.numpy().copy() for p in model.parameters()]
    off, on = lab.accuracy_without_reads(model, segs), seg_lab.evaluate_segments(model, segs)
    for a, p in zip(before, model.parameters()):
        np.testing.assert_array_equal(a, p.numpy())              # W_V restored, all else kept
    rng = np.random.default_rng(0)
    for assoc in model.assoc:                                    # other keys and queries
        for w in (assoc.W_K.weight, assoc.W_Q.weight):
            w.data[...] = 3 * rng.standard_normal(w.shape)
    assert seg_lab.evaluate_segments(model, segs) != on          # the reads matter ...
    assert lab.accuracy_without_reads(model, segs) == off        # ... unless switched off
    with pytest.raises(TypeError, match="accuracy_without_reads: model must be an ARMT"):
        lab.accuracy_without_reads(lab.make_model("rmt", 10, d_model=8, max_len=6), segs)


def test_facts_heuristics_score_known_answers():
    # entities 2-5, places 6-9, filler 10: e2 at 6, e3 at 7, then e2 moves to 8
    blank = np.full((1, 4), -100)
    segments = [(np.array([[2, 6, 10, 10]]), blank), (np.array([[3, 7, 2, 8]]), blank),
                (np.array([[1, 2, 1, 3]]), np.array([[-100, 8, -100, 7]]))]
    got = lab.facts_heuristics(segments)
    assert got == {"last place read": 0.5, "a mentioned place": pytest.approx(1 / 3),
                   "first place of the entity": 0.5}
    # on the generator's batches the last place read is often, not always, the answer
    segs = lab.facts_task(4)(64, 3)
    assert 0.5 < lab.facts_heuristics(segs)["last place read"] < 1.0
    with pytest.raises(ValueError, match="facts_heuristics: sequence 0 asks about entity 4"):
        lab.facts_heuristics(segments[:2] + [(np.array([[1, 4, 1, 3]]), segments[2][1])])


def test_write_sizes_measure_each_segment_of_the_matrix():
    from minimem.memory.associative import ARMT
    from minimem.tasks import facts_vocab
    model = ARMT(facts_vocab(), 8, 2, 2, 2, 8, seed=0)
    segs = lab.facts_task(4)(3, 0)
    changes, norms = lab.write_sizes(model, segs, layer=1)
    assert changes.shape == norms.shape == (4, 3)
    np.testing.assert_allclose(changes[0], norms[0], rtol=1e-6)     # A_0 = 0
    state = model.init_memory(3)
    for x, _ in segs[:2]:
        _, state = model.step(x, state)
    A2 = state[1][1][0].numpy()
    As, zs = lab.matrix_states(model, segs, layer=1)
    assert As.shape == (4, 3) + A2.shape[1:] and zs.shape == As.shape[:3]
    np.testing.assert_array_equal(As[1], A2)
    np.testing.assert_array_equal(zs[1], state[1][1][1].numpy())
    np.testing.assert_allclose(norms[1], np.linalg.norm(A2.reshape(3, -1), axis=1),
                               rtol=1e-6)
    assert (changes > 0).all()
    model.assoc[1].W_V.weight.data[...] = 0.0        # v = v_bar = 0: nothing is written
    assert np.abs(lab.write_sizes(model, segs, layer=1)[0]).max() == 0.0
    with pytest.raises(TypeError, match="matrix_states: model must be an ARMT"):
        lab.matrix_states(lab.make_model("rmt", facts_vocab(), 8), segs)
    with pytest.raises(TypeError, match="write_sizes: model must be an ARMT"):
        lab.write_sizes(lab.make_model("rmt", facts_vocab(), 8), segs)
    with pytest.raises(ValueError, match="write_sizes: layer must be an int in"):
        lab.write_sizes(model, segs, layer=2)


def test_holds_a_fact_marks_segments_with_an_entity():
    blank = np.full((2, 4), -100)
    segs = [(np.array([[2, 6, 10, 10], [10, 10, 10, 10]]), blank),
            (np.array([[10, 11, 10, 10], [10, 10, 5, 9]]), blank)]
    assert lab.holds_a_fact(segs).tolist() == [[True, False], [False, True]]
