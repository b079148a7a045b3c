"""The sparse chapter's bench plugin (quick) and tour step run and report sane figures."""
import matplotlib

from minimem.bench import benchmarks
from minimem.tour import steps

matplotlib.use("Agg")


def test_tour_step_runs(tmp_path):
    mod = dict(steps())["sparse"]
    line = mod.run(tmp_path)
    assert "density" in line and (tmp_path / "sparse_masks.png").exists()
    err = float(line.split("|sparse - dense| = ")[1].split(";")[0])
    assert err < 1e-10


def test_bench_plugin_is_registered():
    mod = benchmarks()["sparse"]
    assert mod.__name__ == "minimem.bench.sparse" and mod.DESCRIPTION
    rows, rho = mod._one_length(256, None, repeat=1)
    assert 0 < rho < 0.5
    impls = {r.impl for r in rows}
    assert {mod.SPARSE, mod.DENSE} <= impls
    rows = mod._annotate(rows)
    assert all(r.ratio is not None for r in rows if r.impl == mod.SPARSE)
