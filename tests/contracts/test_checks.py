"""The shared vocabulary (minimem.checks): each check returns the value it accepts and
raises an error that names the function, the argument, what was expected and what came."""
import math

import numpy as np
import pytest

import minimem as mm
from minimem import checks as C


def test_check_int():
    assert C.check_int("f", "n", np.int32(3), low=1) == 3
    with pytest.raises(TypeError, match=r"^f: n must be an int >= 1, got float 2.5$"):
        C.check_int("f", "n", 2.5, low=1)
    with pytest.raises(TypeError, match=r"got bool True"):
        C.check_int("f", "n", True)
    with pytest.raises(ValueError, match=r"^f: k must be an int in \[1, 4\], got 5$"):
        C.check_int("f", "k", 5, low=1, high=4)


def test_check_real():
    assert C.check_real("f", "eps", 1, low=0, low_open=True) == 1.0
    with pytest.raises(ValueError, match=r"^f: eps must be > 0 and finite, got 0$"):
        C.check_real("f", "eps", 0, low=0, low_open=True)
    with pytest.raises(ValueError, match=r"^f: p must be in \[0, 1\), got nan$"):
        C.check_real("f", "p", math.nan, low=0, high=1, high_open=True)
    with pytest.raises(ValueError, match="must be finite, got inf"):
        C.check_real("f", "x", math.inf)
    assert C.check_real("f", "x", math.inf, finite=False) == math.inf
    with pytest.raises(TypeError, match="must be a real number, got complex"):
        C.check_real("f", "x", 1j)


def test_check_choice_bool_and_heads():
    assert C.check_choice("f", "mode", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"^f: mode must be one of 'a', 'b', got 'c'$"):
        C.check_choice("f", "mode", "c", ("a", "b"))
    with pytest.raises(TypeError, match="f: flag must be True or False"):
        C.check_bool("f", "flag", 1)
    with pytest.raises(ValueError, match=r"f: d_model \(6\) must be divisible by n_heads \(4\)"):
        C.check_heads("f", 6, 4)


def test_array_checks():
    x = np.zeros((1, 2, 7))
    with pytest.raises(ValueError, match=r"^g: g must have shape \(B, H, T\) = \(1, 2, 8\), "
                                         r"got \(1, 2, 7\)$"):
        C.check_shape("g", "g", x, (1, 2, 8), names="B, H, T")
    C.check_shape("g", "g", x, (1, None, 7))
    with pytest.raises(TypeError, match=r"float32 or float64; float16 is not supported\), got "
                                        r"dtype float16"):
        C.check_float_array("g", "x", x.astype(np.float16))
    with pytest.raises(TypeError, match=r"^g: argument 'x' must be a Tensor, got ndarray$"):
        C.check_float_tensor("g", "x", x)
    C.check_float_tensor("g", "x", mm.tensor(x))
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        C.check_same_shape("g", ("a", "b"), x, x[0])
    with pytest.raises(ValueError, match="must not be empty"):
        C.check_nonempty("g", "x", x[:, :0])
    with pytest.raises(ValueError, match="must be finite"):
        C.check_finite("g", "x", mm.tensor([1.0, np.nan]))


def test_index_checks_raise_an_error_that_is_both_index_and_value_error():
    with pytest.raises(C.IndexBoundsError, match=r"^h: idx must lie in \[0, 3\), got 3$"):
        C.check_index_array("h", "idx", np.array([0, 3]), 3)
    assert issubclass(C.IndexBoundsError, IndexError) and issubclass(C.IndexBoundsError,
                                                                      ValueError)
    C.check_index_bounds("h", "idx", np.array([-3, 2]), 3, allow_negative=True)
    with pytest.raises(TypeError, match="h: idx must be integer"):
        C.check_index_array("h", "idx", np.array([0.0]), 3)
