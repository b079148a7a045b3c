"""minimem.viz: the computation graph (structure and drawing), the sweep table, the V-curve plot."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import FancyArrowPatch

import minimem as mm
from minimem import viz
from minimem.autograd.experiments import eps_sweep


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def scalar(v):
    return mm.tensor(v, requires_grad=True, dtype=np.float64)


def arrows(ax):
    return [p for p in ax.patches if isinstance(p, FancyArrowPatch)]


def test_graph_of_x_times_y_plus_x():
    x, y = scalar(2.0), scalar(3.0)
    v = x * y
    f = v + x
    g = viz.compute_graph(f, names={x: "x", y: "y", f: "f"})
    assert len(g.nodes) == 4 and len(g.edges) == 4
    by_label = {n.label: n for n in g.nodes}
    assert set(by_label) == {"x", "y", "v1", "f"}  # the unnamed product is numbered
    assert [by_label[k].depth for k in ("x", "y", "v1", "f")] == [0, 0, 1, 2]
    assert by_label["v1"].op == "Mul" and by_label["f"].op == "Add"
    assert by_label["x"].op == "leaf"
    assert by_label["v1"].tensor is v and by_label["f"].tensor is f
    # forward order: every node after its inputs
    seen = set()
    for n in g.nodes:
        assert all(k in seen for k in n.inputs)
        seen.add(n.key)
    # x feeds both operations
    assert sorted(g.node(d).label for s, d in g.edges if s == by_label["x"].key) == ["f", "v1"]


def test_draw_graph_draws_one_box_per_node_and_one_arrow_per_use():
    x, y = scalar(2.0), scalar(3.0)
    f = x * y + x
    ax = viz.draw_graph(f)
    assert len(ax.texts) == 4
    assert len(arrows(ax)) == 4
    assert "4 nodes, 4 edges" in ax.get_title()
    assert any("Mul" in t.get_text() and "6" in t.get_text() for t in ax.texts)


def test_x_times_x_has_two_edges_from_one_node():
    x = scalar(3.0)
    sq = x * x
    g = viz.compute_graph(sq)
    assert len(g.nodes) == 2 and g.edges == [(g.nodes[0].key, g.nodes[1].key)] * 2
    ax = viz.draw_graph(sq)
    drawn = arrows(ax)
    assert len(drawn) == 2
    # the two uses are drawn as two distinct arcs (opposite curvature)
    styles = {str(a.get_connectionstyle().rad) for a in drawn}
    assert len(styles) == 2


def test_constants_and_show_grads():
    x = scalar(1.5)
    c = mm.tensor(2.0, dtype=np.float64)  # a constant tensor (no grad)
    f = mm.exp(x) * c
    f.backward()
    g = viz.compute_graph(f)
    assert sorted(n.op for n in g.nodes) == ["Exp", "Mul", "const", "leaf"]
    ax = viz.draw_graph(f, names={x: "x"}, show_grads=True)
    texts = [t.get_text() for t in ax.texts]
    x_text = next(t for t in texts if t.startswith("x\n"))
    assert f"grad {2 * np.exp(1.5):.3g}" in x_text
    assert len(arrows(ax)) == 3


def test_a_leaf_alone_and_errors():
    x = scalar(1.0)
    g = viz.compute_graph(x)
    assert len(g.nodes) == 1 and g.edges == [] and g.nodes[0].depth == 0
    ax = viz.draw_graph(x)
    assert len(ax.texts) == 1 and not arrows(ax)
    with pytest.raises(TypeError, match="compute_graph: expected a Tensor"):
        viz.compute_graph(np.ones(3))


def test_deep_chain_needs_no_recursion():
    x = scalar(1.0)
    y = x
    for _ in range(3000):
        y = -y
    g = viz.compute_graph(y)
    assert len(g.nodes) == 3001 and len(g.edges) == 3000
    assert max(n.depth for n in g.nodes) == 3000


def test_sweep_table_lists_values_and_adjoints():
    x, y = scalar(2.0), scalar(0.5)
    v1 = x * y
    v2 = v1 + x
    v3 = mm.exp(y)
    f = v2 * v3
    for t in (v1, v2, v3, f):
        t.retain_grad()
    f.backward()
    table = viz.sweep_table(f, names={x: "x", y: "y", v1: "v1", v2: "v2", v3: "v3", f: "f"})
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    assert set(rows) == {"x", "y", "v1", "v2", "v3", "f"}
    e = np.exp(0.5)
    # adjoints by hand: f_bar = 1, v2_bar = v3, v3_bar = v2, v1_bar = v2_bar,
    # x_bar = v1_bar * y + v2_bar, y_bar = v1_bar * x + v3_bar * v3
    assert rows["f"][-1] == "1"
    assert float(rows["v2"][-1]) == pytest.approx(e, rel=1e-3)
    assert float(rows["v3"][-1]) == pytest.approx(3.0, rel=1e-3)
    assert float(rows["x"][-1]) == pytest.approx(e * 0.5 + e, rel=1e-3)
    assert float(rows["y"][-1]) == pytest.approx(e * 2 + 3 * e, rel=1e-3)
    assert rows["v2"][1:4] == ["Add", "v1,", "x"]
    # without retain_grad an intermediate shows no adjoint
    z = mm.exp(x) * 2.0
    z.backward()
    assert viz.sweep_table(z).splitlines()[3].split()[-1] == "-"


def test_plot_eps_sweep_marks_each_curve():
    x = mm.Tensor(np.random.default_rng(0).standard_normal((2, 3)), requires_grad=True)
    sweeps = [eps_sweep(mm.tanh, (x,), np.logspace(-10, -1, 7), dtype=dt, name="tanh")
              for dt in (np.float64, np.float32)]
    ax = viz.plot_eps_sweep(sweeps)
    labels = [line.get_label() for line in ax.get_lines()]
    assert sum("best h" in lab for lab in labels) == 2
    assert any("truncation" in lab for lab in labels)
    assert sum("round-off" in lab for lab in labels) == 2  # one per dtype
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    with pytest.raises(ValueError, match="plot_eps_sweep: expected at least one sweep"):
        viz.plot_eps_sweep([])
