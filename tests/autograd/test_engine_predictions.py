"""Exercise 0.6: the best step of the one-sided difference, predicted and then measured
(minimem.autograd.experiments.forward_difference_best_step)."""
import numpy as np
import pytest

from minimem.autograd.experiments import forward_difference_best_step

CASES = [  # (f, f', f'', x)
    (np.exp, np.exp, np.exp, 0.0),
    (np.exp, np.exp, np.exp, 2.0),
    (np.sin, np.cos, lambda x: -np.sin(x), 1.0),
    (lambda x: x ** 3, lambda x: 3 * x ** 2, lambda x: 6 * x, 0.5),
]


def typical_error(f, df, x, h, dtype):
    """The RMS error of the one-sided difference at step h over 64 points near x: one point's
    error at one h is noisy (round-off can cancel by luck), the V curve is not."""
    xs = (x + np.linspace(0.0, 1e-2, 64)).astype(dtype)
    step = (xs + dtype(h)) - xs  # the step actually taken
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (f(xs + dtype(h)) - f(xs)) / step
    err = np.abs(d.astype(np.float64) - df(xs.astype(np.float64)))
    return float(np.sqrt(np.mean(err ** 2))) if np.all(step > 0) else np.inf


@pytest.mark.exercise("0.6", points=2)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_predicted_step_is_near_the_measured_minimum(case, dtype):
    f, df, d2f, x = CASES[case]
    eps = float(np.finfo(dtype).eps)
    h = forward_difference_best_step(eps, abs(f(x)), abs(d2f(x)))
    assert isinstance(h, float) and h > 0
    best = min(typical_error(f, df, x, g, dtype) for g in np.logspace(-12, -0.5, 80))
    # the error at the predicted step is close to the best one measured on a fine grid
    assert typical_error(f, df, x, h, dtype) <= 3 * best
    # and a step 30 times off either way is clearly worse: the prediction sits at the V's bottom
    assert min(typical_error(f, df, x, 30 * h, dtype),
               typical_error(f, df, x, h / 30, dtype)) > 2 * best


@pytest.mark.exercise("0.6", points=2)
def test_predicted_step_scales_as_the_derivation_says():
    h = forward_difference_best_step(1e-16, 1.0, 1.0)
    # sqrt(eps |f| / |f''|) scaling: the one-sided difference is not the central one
    assert forward_difference_best_step(4e-16, 1.0, 1.0) == pytest.approx(2 * h, rel=1e-12)
    assert forward_difference_best_step(1e-16, 9.0, 1.0) == pytest.approx(3 * h, rel=1e-12)
    assert forward_difference_best_step(1e-16, 1.0, 4.0) == pytest.approx(h / 2, rel=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True, "1"])
def test_forward_difference_best_step_rejects_bad_arguments(bad):
    with pytest.raises(ValueError, match=r"forward_difference_best_step: eps must be a finite "
                                         r"number > 0"):
        forward_difference_best_step(bad, 1.0, 1.0)
