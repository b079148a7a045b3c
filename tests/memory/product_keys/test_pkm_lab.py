"""The chapter's many-facts experiment: snapshots of the slot usage from the training run
itself, the comparison over seeds (mean, spread, seed-by-seed gaps) and its figures."""
import matplotlib
import numpy as np
import pytest

from minimem.memory.product_keys import lab, plots
from minimem.memory.product_keys.layers import pkm_ffn
from minimem.nn.attention import TransformerLM
from minimem.optim import Adam
from minimem.train import fit

matplotlib.use("Agg")

# a tiny version of the page's run: 64 facts, N = 64 slots
TINY = {"n_a": 8, "n_b": 8, "n_values": 8, "d_model": 16, "n_sub_keys": 8, "topk": 4,
        "heads": 2, "d_key": 8, "batch_size": 32, "lr": 1e-2}


def test_snapshots_are_the_usage_of_the_same_run_at_each_checkpoint():
    runs = lab.compare_pkm_mlp(steps=10, checkpoints=(10, 0, 4), query_norms=("batch",),
                               seed=1, **TINY)
    mlp, pkm = runs["mlp"], runs["pkm (batch norm)"]
    assert mlp.snapshots == [] and mlp.seed == pkm.seed == 1
    assert [s for s, _ in pkm.snapshots] == [0, 4, 10]
    n_tokens = lab.many_facts(8, 8, 8, seed=1).inputs.size
    for _, usage in pkm.snapshots:
        # every read's softmax weights sum to 1 per head: the mass is heads x tokens
        assert usage.mass.shape == (64,) and np.isclose(usage.mass.sum(), 2 * n_tokens)
    # the last snapshot is the trained model's usage, the first the untrained one's
    np.testing.assert_array_equal(pkm.snapshots[-1][1].mass, pkm.usage.mass)
    assert not np.allclose(pkm.snapshots[0][1].mass, pkm.snapshots[1][1].mass)
    # evaluations happen at the checkpoints and every eval_every steps
    assert pkm.history["eval_step"] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert pkm.history["step"] == list(range(1, 11)) and len(pkm.history["loss"]) == 10
    assert pkm.history["eval_acc"][-1] == pkm.accuracy


def test_training_in_pieces_equals_one_fit_call():
    # Independent formulation: the same model trained by one fit() on the (inputs, targets)
    # pair, which shuffles with default_rng(seed) each epoch. Snapshots and evaluations
    # between the pieces must not change the batches, the optimizer state or the weights.
    seed, steps = 2, 12
    runs = lab.compare_pkm_mlp(steps=steps, checkpoints=(0, 3, 5, 9), eval_every=4,
                               query_norms=("batch",), seed=seed, **TINY)
    task = lab.many_facts(8, 8, 8, seed=seed)
    ffn = pkm_ffn(8, topk=4, heads=2, d_key=8, query_norm="batch", seed=seed)
    model = TransformerLM(task.vocab, 16, n_layers=1, n_heads=2, max_len=2, ffn=ffn,
                          seed=seed)
    hist = fit(model, (task.inputs, task.targets), steps, Adam(model.parameters(), lr=1e-2),
               batch_size=32, eval_every=steps, progress=False, seed=seed)
    np.testing.assert_allclose(runs["pkm (batch norm)"].history["loss"], hist["loss"],
                               rtol=1e-6)
    once = lab.memory_usage(model, task.inputs)
    np.testing.assert_allclose(runs["pkm (batch norm)"].usage.mass, once.mass, rtol=1e-5)


def test_spread_known_values_and_errors():
    s = lab.Spread((0.5, 0.7, 0.9))
    assert s.mean == pytest.approx(0.7) and (s.min, s.max) == (0.5, 0.9)
    assert s.std == pytest.approx(np.sqrt(0.08 / 3))  # ddof = 0: over these seeds
    assert s.text(".2f") == "0.70 ± 0.16 [0.50, 0.90]"
    assert lab.Spread((0.25,)).text(".0%") == "25% ± 0% [25%, 25%]"
    for bad in ((), (1.0, float("nan"))):
        with pytest.raises(ValueError, match="Spread: values must be"):
            lab.Spread(bad)


def test_comparison_over_seeds_repeats_the_single_runs():
    kw = {"steps": 6, "checkpoints": (0, 6), "query_norms": ("batch", None), **TINY}
    runs = lab.compare_pkm_mlp_over_seeds((3, 0), **kw)
    assert list(runs) == ["mlp", "pkm (batch norm)", "pkm (no norm)"]
    assert all([r.seed for r in rs] == [3, 0] for rs in runs.values())
    single = lab.compare_pkm_mlp(seed=0, **kw)
    for name, rs in runs.items():
        assert rs[1].accuracy == single[name].accuracy
        assert rs[1].history["loss"] == single[name].history["loss"]
    # other seeds: other facts, other initializations
    assert runs["mlp"][0].history["loss"][0] != runs["mlp"][1].history["loss"][0]
    acc = {name: np.array([r.accuracy for r in rs]) for name, rs in runs.items()}
    np.testing.assert_allclose(lab.seed_gaps(runs, "pkm (batch norm)", "mlp"),
                               acc["pkm (batch norm)"] - acc["mlp"])
    s = lab.spread(runs["pkm (no norm)"], "kl")
    assert s.values == tuple(r.usage.kl for r in runs["pkm (no norm)"])
    snaps = lab.snapshot_spread(runs["pkm (batch norm)"])
    assert [step for step, _, _ in snaps] == [0, 6]
    assert snaps[1][1].values == tuple(r.usage.usage for r in runs["pkm (batch norm)"])
    assert snaps[1][2].values == tuple(r.usage.kl for r in runs["pkm (batch norm)"])
    with pytest.raises(ValueError, match="spread: metric 'usage' needs memory runs"):
        lab.spread(runs["mlp"], "usage")
    with pytest.raises(ValueError, match="snapshot_spread"):
        lab.snapshot_spread(runs["mlp"])
    with pytest.raises(ValueError, match="different seeds"):
        lab.seed_gaps({"a": runs["mlp"], "b": runs["mlp"][::-1]}, "a", "b")


@pytest.mark.parametrize("kwargs, match", [
    ({"checkpoints": (11,)}, r"compare_pkm_mlp: checkpoints must be an int in \[0, 10\]"),
    ({"checkpoints": (-1,)}, r"compare_pkm_mlp: checkpoints must be"),
    ({"query_norms": ("layer",)}, r"compare_pkm_mlp: query_norms must be one of"),
    ({"batch_size": 65}, r"compare_pkm_mlp: batch_size must be an int in \[1, 64\]"),
    ({"eval_every": 0}, r"compare_pkm_mlp: eval_every must be an int >= 1"),
])
def test_compare_rejects_bad_arguments(kwargs, match):
    kw = {**TINY, "steps": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        lab.compare_pkm_mlp(**kw)


@pytest.mark.parametrize("seeds", [(), (1, 1)])
def test_over_seeds_rejects_empty_or_repeated_seeds(seeds):
    with pytest.raises(ValueError, match="compare_pkm_mlp_over_seeds: seeds must be distinct"):
        lab.compare_pkm_mlp_over_seeds(seeds, steps=2, **TINY)


@pytest.fixture(scope="module")
def seed_runs():
    return lab.compare_pkm_mlp_over_seeds((0, 1, 2), steps=8, checkpoints=(0, 4, 8),
                                          query_norms=("batch", None), **TINY)


def _band_limits(ax, xs):
    """For each filled band of ``ax``: the (low, high) edges at each of ``xs``."""
    out = []
    for coll in ax.collections:
        v = coll.get_paths()[0].vertices
        out.append(np.array([[v[v[:, 0] == x, 1].min(), v[v[:, 0] == x, 1].max()]
                             for x in xs]))
    return out


def test_training_figure_draws_the_mean_and_the_range_of_the_seeds(seed_runs):
    _, ax = plots.plot_facts_training(seed_runs)
    curves = {name: np.array([r.history["eval_acc"] for r in rs])
              for name, rs in seed_runs.items()}
    lines = [line for line in ax.get_lines() if line.get_label()[0] != "_"]
    assert len(lines) == 3 and "3 seeds" in ax.get_title()
    for line, acc in zip(lines, curves.values()):
        np.testing.assert_allclose(line.get_ydata(), acc.mean(0))
        np.testing.assert_array_equal(line.get_xdata(), seed_runs["mlp"][0].history["eval_step"])
    assert len(ax.collections) == 3
    steps = seed_runs["mlp"][0].history["eval_step"]
    for edges, acc in zip(_band_limits(ax, steps), curves.values()):
        np.testing.assert_allclose(edges, np.stack([acc.min(0), acc.max(0)], axis=1))
    # one seed: no band
    _, ax = plots.plot_facts_training({n: rs[0] for n, rs in seed_runs.items()})
    assert len(ax.collections) == 0 and "one seed" in ax.get_title()


def test_lorenz_figure_over_seeds(seed_runs):
    usages = {n: [r.usage for r in rs] for n, rs in seed_runs.items() if n != "mlp"}
    _, ax = plots.plot_lorenz(usages)
    lines = ax.get_lines()[1:]          # after the diagonal
    for line, per_seed in zip(lines, usages.values()):
        mean_y = np.mean([u.lorenz()[1] for u in per_seed], axis=0)
        np.testing.assert_allclose(line.get_ydata(), mean_y)
        use = np.array([u.usage for u in per_seed])
        assert f"usage {use.mean():.0%} ± {use.std():.0%}" in line.get_label()
    assert len(ax.collections) == 2


def test_slot_hit_figure_draws_one_seed_of_each_memory(seed_runs):
    fig, axes = plots.plot_slot_hits(seed_runs, seed=2)
    assert axes.shape == (2, 3)           # the two memories (not the MLP), three checkpoints
    assert "step 4" in axes[0, 1].get_title() and "seed 2" in fig._suptitle.get_text()
    run = seed_runs["pkm (no norm)"][2]
    image = axes[1, 2].get_images()[0].get_array()
    top = max(u.mass.max() for rs in seed_runs.values() if rs[2].snapshots
              for _, u in rs[2].snapshots)
    np.testing.assert_allclose(image, np.maximum(run.usage.mass.reshape(8, 8), top * 1e-4))
    with pytest.raises(ValueError, match="plot_slot_hits: no run of 'mlp' has seed 7"):
        plots.plot_slot_hits(seed_runs, seed=7)
    with pytest.raises(ValueError, match="no run holds snapshots"):
        plots.plot_slot_hits({"mlp": seed_runs["mlp"]})
