"""minimem.autograd.experiments: the V curve and the planted bugs; and the gradcheck/ scripts."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import seeded_leaf as leaf  # leaf(3, 4, seed=1)

import minimem as mm
from minimem.autograd import experiments as ex

ROOT = Path(__file__).resolve().parents[2]
EPS = np.logspace(-12, 0, 25)


@pytest.fixture(scope="module")
def tanh_sweeps():
    x = leaf(3, 4)
    return {dt: ex.eps_sweep(mm.tanh, (x,), EPS, dtype=dt, name="tanh")
            for dt in (np.float64, np.float32)}


def test_float64_v_curve_minimum_and_slopes(tanh_sweeps):
    s = tanh_sweeps[np.float64]
    assert 1e-8 < s.best_eps < 1e-3
    assert s.best_error < 1e-9
    # truncation to the right: error ~ h^2; round-off to the left: error ~ eps / h
    assert 1.6 < s.slope(1e-3, 1e-1) < 2.4
    assert -1.5 < s.slope(1e-12, 1e-8) < -0.5
    # both ends are far worse than the optimum: a V, not a plateau
    assert s.errors[0] > 1e3 * s.best_error and s.errors[-1] > 1e3 * s.best_error
    # within a factor 30 of the prediction h* = (3 eps)^(1/3)
    assert 1 / 30 < s.best_eps / ex.predicted_best_eps(np.float64) < 30


def test_float32_optimum_is_larger_and_worse(tanh_sweeps):
    s32, s64 = tanh_sweeps[np.float32], tanh_sweeps[np.float64]
    assert s32.best_eps > 100 * s64.best_eps
    assert s32.best_error > 100 * s64.best_error
    assert 1e-7 < s32.best_error < 1e-3  # ~eps^(2/3), no better
    assert s32.dtype == np.float32
    # below eps * |x| the float32 step vanishes (x + h == x): the difference is 0, error ~ 1
    assert s32.errors[0] > 0.05


def test_a_quadratic_has_no_truncation_error():
    """For f = A @ B (bilinear) the central difference is exact up to round-off at any h."""
    a, b = leaf(3, 4, seed=1), leaf(4, 2, seed=2)
    s = ex.eps_sweep(lambda a, b: a @ b, (a, b), EPS, dtype=np.float64)
    assert s.errors[-1] < 1e-14  # h = 1 and still exact
    assert s.best_eps >= 1e-2


def test_eps_sweep_with_non_tensor_arguments_and_rows():
    z = leaf(3, 5)
    targets = np.array([1, -100, 4])
    s = ex.eps_sweep(lambda z, t: mm.cross_entropy(z, t), (z, targets), EPS[::4],
                     n_directions=2, name="xent")
    rows = s.rows()
    assert len(rows) == len(EPS[::4]) and rows[0][:2] == ("xent", "float64")
    assert rows[0][2] == pytest.approx(1e-12)
    assert s.best_error < 1e-8


def test_eps_sweep_input_errors():
    with pytest.raises(ValueError, match="eps_sweep: no input has requires_grad"):
        ex.eps_sweep(mm.exp, (mm.tensor(np.ones(2)),))
    with pytest.raises(TypeError, match="eps_sweep: dtype must be floating"):
        ex.eps_sweep(mm.exp, (leaf(2),), dtype=np.int64)
    with pytest.raises(ValueError, match="eps_sweep: eps_values must be"):
        ex.eps_sweep(mm.exp, (leaf(2),), eps_values=[1e-3, -1.0])
    with pytest.raises(TypeError, match="eps_sweep: fn must be callable"):
        ex.eps_sweep("exp", (leaf(2),))
    s = ex.eps_sweep(mm.exp, leaf(2), EPS[:3])
    with pytest.raises(ValueError, match="EpsSweep.slope: fewer than 2 points"):
        s.slope(1.0, 2.0)


def test_planted_softmax_bug_is_detected_where_predicted():
    report = ex.planted_bug("softmax without <g,y>")
    assert not report
    (r,) = report.inputs
    label, (row, j) = r.worst_element
    out_row, i = np.unravel_index(int(label.split()[1]), (2, 4))
    assert out_row == row  # the Jacobian is block diagonal over rows
    # the missing term -y y^T makes entry (i, j) wrong by exactly y_i y_j
    (x,) = ex.PLANTED_BUGS["softmax without <g,y>"][1](np.random.default_rng(0))
    y = np.exp(x.numpy()[row]) / np.exp(x.numpy()[row]).sum()
    assert r.max_abs_error == pytest.approx(y[i] * y[j], rel=1e-6)
    assert r.max_abs_error == pytest.approx(np.max(y * y), rel=1e-6)  # the worst is a diagonal
    assert not ex.planted_bug("softmax without <g,y>", fast=True)
    # the forward is right: the same inputs pass with the engine's softmax
    assert mm.gradcheck(lambda x: mm.softmax(x, axis=-1), (x,))
    np.testing.assert_allclose(ex.PLANTED_BUGS["softmax without <g,y>"][0](x).numpy(),
                               mm.softmax(x).numpy(), rtol=1e-14)


def test_planted_mul_bug_names_the_second_input():
    report = ex.planted_bug("mul with grad_b = g*b", fast=False)
    assert [r.passed for r in report.inputs] == [True, False]
    a, b = (t.numpy() for t in ex.PLANTED_BUGS["mul with grad_b = g*b"][1](
        np.random.default_rng(0)))
    k = report.inputs[1].worst_element[1][0]
    assert k == int(np.argmax(np.abs(a - b)))
    assert report.inputs[1].analytical == pytest.approx(b[k])
    assert report.inputs[1].numerical == pytest.approx(a[k], rel=1e-6)
    fast = ex.planted_bug("mul with grad_b = g*b", fast=True)
    assert [r.passed for r in fast.inputs] == [True, False]
    with pytest.raises(ValueError, match="planted_bug: name must be one of"):
        ex.planted_bug("nope")


# ---------------------------------------------------------------------------------------------
# The gradcheck/ scripts (the quick ones; op_table.py runs every chapter and is left to
# `make gradcheck`)
# ---------------------------------------------------------------------------------------------
def _script(name):
    sys.path.insert(0, str(ROOT / "gradcheck"))
    try:
        spec = importlib.util.spec_from_file_location(f"gradcheck_{name}",
                                                      ROOT / "gradcheck" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "gradcheck"))


def test_planted_bug_script_writes_its_report(tmp_path, capsys):
    assert _script("planted_bug").main(["--out", str(tmp_path)]) == 0
    text = (tmp_path / "planted_bug.txt").read_text()
    assert text.count("detected: full=True, fast=True") == 2
    assert "predicted error y_i y_j" in text and "input 1 fails at element" in text


def test_eps_sweep_script_quick(tmp_path, capsys):
    assert _script("eps_sweep").main(["--out", str(tmp_path), "--quick"]) == 0
    assert (tmp_path / "eps_sweep.png").stat().st_size > 10_000
    lines = (tmp_path / "eps_sweep.csv").read_text().splitlines()
    assert lines[0] == "op,dtype,eps,rel_error"
    assert len(lines) == 1 + 13 * 2 * 5  # 13 steps x 2 dtypes x 5 ops
    assert "| tanh | float64 |" in (tmp_path / "eps_sweep_summary.md").read_text()


def test_op_table_script_for_one_chapter(tmp_path, capsys):
    assert _script("op_table").main(["--out", str(tmp_path), "--chapter", "engine"]) == 0
    rows = json.loads((tmp_path / "op_table.json").read_text())
    assert len(rows) >= 47 and all(r["passed"] is True for r in rows)
    assert "cases pass" in (tmp_path / "op_table.md").read_text()
