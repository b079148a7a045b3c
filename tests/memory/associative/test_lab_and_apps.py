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


def test_pairs_recalled_and_length_generalization_rows():
    rows = lab.pairs_recalled(("rmt", "armt"), (2,), seeds=(0,), steps=2, d_model=8,
                              batch=4, eval_batch=8, n_gap=(0, 1))
    assert [(r["kind"], r["n_pairs"]) for r in rows] == [("rmt", 2), ("armt", 2)]
    assert all(r["recalled"] == pytest.approx(2 * r["accuracy"]) for r in rows)
    gen = lab.length_generalization(rows, (0, 3), eval_batch=8)
    assert all(len(r["by_gap"]) == 2 and 0 <= min(r["by_gap"]) for r in gen)
    summary = lab.summarize(rows)
    assert summary["armt", 2][2] == 1
    fig = plots.plot_pairs_recalled(lab.summarize(rows, "recalled"), ("rmt", "armt"), (2,))
    fig2 = plots.plot_length_generalization(gen, 2, trained_gaps=(0, 1), chance=1 / 8)
    assert fig.axes and fig2.axes
    with pytest.raises(ValueError, match="make_model: kind must be one of"):
        lab.make_model("lstm", 10)


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
    gen = lab.report(steps=1, kinds=("rmt",), n_pairs=(2,), seeds=(0,), gaps=(0, 2))
    text = capsys.readouterr().out
    assert "pairs recalled" in text and "accuracy vs filler segments" in text
    assert len(gen) == 1 and len(gen[0]["by_gap"]) == 2
