"""The gradcheck registry: every differentiable op and mechanism with a sample-input generator.

``minimem gradcheck`` runs every registered case in float64 and prints a table. Chapters add
their mechanisms with :func:`register` next to the code, so nothing is forgotten.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .gradcheck import GradcheckReport, InputReport, gradcheck
from .tensor import Tensor


@dataclass
class GradcheckCase:
    name: str
    fn: object           # callable(*inputs) -> Tensor or tuple of Tensors
    make_inputs: object  # callable(rng) -> tuple of inputs (float64 Tensors requiring grad)
    chapter: str = "engine"
    fast: bool = False
    atol: float = 1e-5
    rtol: float = 1e-3


_REGISTRY: dict[str, GradcheckCase] = {}


def register(name, make_inputs, chapter="engine", fast=False, atol=1e-5, rtol=1e-3):
    """Decorator: ``@register("softmax", lambda rng: (t(rng, 3, 5),))`` over a function."""
    def wrap(fn):
        register_case(GradcheckCase(name, fn, make_inputs, chapter, fast, atol, rtol))
        return fn

    return wrap


def register_case(case: GradcheckCase) -> None:
    if case.name in _REGISTRY and _REGISTRY[case.name].fn is not case.fn:
        raise ValueError(f"register: a gradcheck case named {case.name!r} already exists")
    _REGISTRY[case.name] = case


def cases(chapter=None):
    """Registered cases (all, or those of one chapter), in registration order."""
    return [c for c in _REGISTRY.values() if chapter is None or c.chapter == chapter]


def chapters():
    return list(dict.fromkeys(c.chapter for c in _REGISTRY.values()))


def load_all() -> None:
    """Import every chapter so its cases are registered."""
    from .. import memory, nn  # noqa: F401


def _to_device(x, device):
    if device == "cpu" or not hasattr(x, "to"):
        return x
    return Tensor(x.to(device).data, requires_grad=x.requires_grad)


def run_case(case: GradcheckCase, seed=0, device="cpu"):
    """Gradient-check one case; ``device="cuda"`` runs it on CuPy arrays."""
    rng = np.random.default_rng(seed)
    inputs = tuple(_to_device(x, device) for x in case.make_inputs(rng))
    t0 = time.perf_counter()
    try:
        report = gradcheck(case.fn, inputs, atol=case.atol, rtol=case.rtol, fast=case.fast,
                           raise_exception=False)
    except Exception as e:  # a crashing case is a failed row, not a crashed table
        report = GradcheckReport()
        report.error = f"{type(e).__name__}: {e}"
        report.inputs.append(InputReport(-1, (), float("nan"), float("nan"), None, 0, 0, False))
    shapes = ", ".join("x".join(map(str, x.shape)) or "()" for x in inputs if hasattr(x, "shape"))
    return {"op": case.name, "chapter": case.chapter, "shapes": shapes,
            "mode": "fast" if case.fast else "full",
            "max_rel_error": report.max_rel_error, "max_abs_error": report.max_abs_error,
            "passed": report.passed, "seconds": time.perf_counter() - t0, "report": report}


def run_all(chapter=None, seed=0, device="cpu"):
    load_all()
    return [run_case(c, seed, device) for c in cases(chapter)]


def format_table(rows) -> str:
    head = f"{'op':28s} {'chapter':10s} {'shapes':26s} {'mode':5s} {'max rel err':>11s} {'max abs err':>11s}  result"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['op']:28s} {r['chapter']:10s} {r['shapes'][:26]:26s} {r['mode']:5s} "
            f"{r['max_rel_error']:11.2e} {r['max_abs_error']:11.2e}  "
            f"{'pass' if r['passed'] else 'FAIL'}"
        )
    n_pass = sum(r["passed"] for r in rows)
    lines.append(f"{n_pass}/{len(rows)} passed")
    return "\n".join(lines)
