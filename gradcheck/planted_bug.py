r"""Planted bugs: deliberately wrong backwards, and how ``gradcheck`` reports them.

1. **softmax without** :math:`\langle \bar{y}, y \rangle`. The right backward is
   :math:`\bar{x} = y \odot (\bar{y} - \langle \bar{y}, y\rangle)`, i.e. the Jacobian
   :math:`J = \mathrm{diag}(y) - y y^\top`. The bug returns :math:`y \odot \bar{y}`, the diagonal
   only, so Jacobian entry :math:`(i, j)` of a row is off by exactly :math:`y_i y_j`: the report's
   worst element is the pair with the largest product of probabilities.
2. **mul with** :math:`\bar{b} = \bar{y}\, b`. Input 0 is right and passes; input 1 fails, at
   the element where :math:`|a_k - b_k|` is largest (analytical :math:`b_k`, numerical
   :math:`a_k`).

For each bug the full report (every Jacobian entry) and the fast report (one random
projection :math:`v^\top J u` per input) are written to ``out/planted_bug.txt``, with the
predicted error next to the measured one. Usage: ``python gradcheck/planted_bug.py [--out DIR]``.
"""
import sys

import numpy as np
from _common import parse

from minimem.autograd.experiments import PLANTED_BUGS, planted_bug

SEED = 0


def _softmax_prediction(report) -> str:
    (x,) = PLANTED_BUGS["softmax without <g,y>"][1](np.random.default_rng(SEED))
    x = x.numpy()
    r = report.inputs[0]
    out_label, (row, j) = r.worst_element
    out_flat = int(out_label.split()[1])
    i = np.unravel_index(out_flat, x.shape)[1]  # output (row, i) against input (row, j)
    assert np.unravel_index(out_flat, x.shape)[0] == row, "softmax rows do not mix"
    y = np.exp(x[row] - x[row].max())
    y /= y.sum()
    return (f"  worst entry: output (row {row}, class {i}) w.r.t. input (row {row}, class {j});\n"
            f"  predicted error y_i y_j = {y[i] * y[j]:.6g}, measured {r.max_abs_error:.6g}")


def _mul_prediction(report) -> str:
    a, b = (t.numpy() for t in PLANTED_BUGS["mul with grad_b = g*b"][1](
        np.random.default_rng(SEED)))
    r = report.inputs[1]
    k = r.worst_element[1][0]
    return (f"  input 0 passes: {report.inputs[0].passed}; input 1 fails at element {k}:\n"
            f"  analytical b_k = {b[k]:.6g}, numerical a_k = {a[k]:.6g}, "
            f"predicted error max|a - b| = {np.abs(a - b).max():.6g}, "
            f"measured {r.max_abs_error:.6g}")


PREDICTIONS = {"softmax without <g,y>": _softmax_prediction,
               "mul with grad_b = g*b": _mul_prediction}


def report_text() -> str:
    parts = [__doc__.strip(), ""]
    for name in PLANTED_BUGS:
        full = planted_bug(name, seed=SEED)
        fast = planted_bug(name, seed=SEED, fast=True)
        parts += [f"=== {name} ===", "full mode:", str(full), PREDICTIONS[name](full),
                  "fast mode:", str(fast),
                  f"detected: full={not full}, fast={not fast}", ""]
    return "\n".join(parts)


def main(argv=None) -> int:
    args = parse(argv, __doc__.splitlines()[0])
    text = report_text()
    (args.out / "planted_bug.txt").write_text(text + "\n")
    print(text)
    print(f"wrote {args.out / 'planted_bug.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
