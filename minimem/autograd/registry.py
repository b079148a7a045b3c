"""The gradcheck registry: differentiable ops and mechanisms, each with a sample-input generator.

The engine only keeps the cases and runs one (:func:`run_case`); it imports no chapter. Each
chapter registers its cases in its ``cases.py`` with :func:`register`; the apps fill the
registry through :func:`minimem.chapters.load_cases` (``minimem gradcheck`` prints the table).
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
