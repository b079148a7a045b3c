r"""The V curve: gradient-check error against the finite-difference step h, float64 vs float32.

For each op, ``minimem.autograd.experiments.eps_sweep`` compares the central difference
:math:`(f(x+hu) - f(x-hu)) / 2h` (evaluated in float64 or float32) with the float64 analytical
directional derivative, for h from 1e-12 to 1. The error is

.. math:: \underbrace{\tfrac{h^2}{6} |\partial_u^3 f|}_{\text{truncation}}
          + \underbrace{\epsilon |f| / h}_{\text{round-off}},

so on a log-log plot it falls with slope +2 to the right of the optimum and rises with slope
-1 to its left, with the optimum near :math:`h^\ast \approx \epsilon^{1/3}`: about 1e-5 in
float64, 5e-3 in float32 (where the best error is only ~1e-5; hence checks run in float64).

Writes ``out/eps_sweep.png``, ``out/eps_sweep.csv`` (op, dtype, eps, rel_error) and
``out/eps_sweep_summary.md``. Usage: ``python gradcheck/eps_sweep.py [--out DIR] [--quick]``.
"""
import csv
import sys

import numpy as np
from _common import parse

import minimem as mm
from minimem.autograd.experiments import default_eps_values, eps_sweep, predicted_best_eps


def _leaf(rng, *shape):
    return mm.Tensor(rng.standard_normal(shape), requires_grad=True)


TARGETS = np.array([1, 4, -100])
OPS = {  # name -> (fn, make_inputs(rng))
    "tanh": (mm.tanh, lambda r: (_leaf(r, 3, 4),)),
    "exp": (mm.exp, lambda r: (_leaf(r, 3, 4),)),
    "softmax": (lambda x: mm.softmax(x, axis=-1), lambda r: (_leaf(r, 3, 5),)),
    "cross_entropy": (lambda z: mm.cross_entropy(z, TARGETS), lambda r: (_leaf(r, 3, 5),)),
    "tanh(A @ B)": (lambda a, b: mm.tanh(a @ b), lambda r: (_leaf(r, 3, 4), _leaf(r, 4, 2))),
}
DTYPES = (np.float64, np.float32)


def run_sweeps(eps_values, seed=0):
    sweeps = []
    for name, (fn, make_inputs) in OPS.items():
        inputs = make_inputs(np.random.default_rng(seed))
        for dtype in DTYPES:
            sweeps.append(eps_sweep(fn, inputs, eps_values, dtype=dtype, seed=seed, name=name))
    return sweeps


def summary(sweeps) -> str:
    lines = [("| op | dtype | best h | error at best h | predicted h* = (3 eps)^(1/3) | "
              "slope right of h* (truncation, ~+2) | slope left of h* (round-off, ~-1) |"),
             "|---|---|---:|---:|---:|---:|---:|"]
    for s in sweeps:
        h = s.best_eps
        hi = min(h * 1e3, s.eps.max())
        right = s.slope(h * 10, hi) if ((s.eps >= h * 10) & (s.eps <= hi)).sum() >= 3 \
            else float("nan")
        floor = 1e-12 if s.dtype == np.float64 else 1e-6  # below: float32 steps vanish (x+h == x)
        left = s.slope(max(floor, h * 1e-4), h / 10) if h / 10 >= floor * 10 else float("nan")
        lines.append(f"| {s.name} | {s.dtype} | {h:.1e} | {s.best_error:.1e} | "
                     f"{predicted_best_eps(s.dtype):.1e} | {right:+.2f} | {left:+.2f} |")
    return "\n".join(lines)


def plot(sweeps, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minimem.viz import plot_eps_sweep

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, dtype in zip(axes, DTYPES):
        chosen = [s for s in sweeps if s.dtype == dtype]
        plot_eps_sweep(chosen, ax=ax, title=f"{np.dtype(dtype).name}: central-difference error")
        ax.axvline(predicted_best_eps(dtype), color="0.5", lw=0.8)
        ax.text(predicted_best_eps(dtype), 3, r" $h^\ast=(3\epsilon)^{1/3}$", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse(argv, __doc__.splitlines()[0])
    eps_values = default_eps_values(13 if args.quick else 49)
    sweeps = run_sweeps(eps_values)
    with open(args.out / "eps_sweep.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op", "dtype", "eps", "rel_error"])
        for s in sweeps:
            w.writerows(s.rows())
    text = summary(sweeps)
    (args.out / "eps_sweep_summary.md").write_text(text + "\n")
    plot(sweeps, args.out / "eps_sweep.png")
    print(text)
    print(f"wrote {args.out / 'eps_sweep.png'}, eps_sweep.csv, eps_sweep_summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
