"""Array backend: NumPy by default, CuPy when asked for and available.

Every operation in minimem is written against ``xp``, the array module of its inputs, so the
same code runs on the CPU (NumPy) and on an NVIDIA GPU (CuPy). This module also owns the
default floating dtype and the global random generator (``manual_seed``).
"""
from __future__ import annotations

import numpy as np

_DEFAULT_DTYPE = np.dtype(np.float32)
_RNG = np.random.default_rng(0)

try:  # CuPy is an optional extra (`pip install minimem[gpu]`).
    import cupy as _cupy  # type: ignore
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # pragma: no cover - no driver
        return False


def available_devices() -> list[str]:
    """The devices a Tensor can live on here: always ``"cpu"``, plus ``"cuda"`` with a GPU."""
    return ["cpu", "cuda"] if cupy_available() else ["cpu"]


def get_xp(array):
    """The array module (numpy or cupy) that owns ``array``."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy
    return np


def xp_for_device(device: str):
    """The array module for a device name, ``"cpu"`` or ``"cuda"``."""
    if device == "cpu":
        return np
    if device == "cuda":
        if not cupy_available():
            raise RuntimeError(
                "backend: device 'cuda' was requested but CuPy or a CUDA GPU is not available; "
                "install the extra with `pip install -e .[gpu]` on a machine with an NVIDIA GPU"
            )
        return _cupy
    raise ValueError(f"backend: device must be 'cpu' or 'cuda', got {device!r}")


def device_of(array) -> str:
    return "cuda" if get_xp(array) is not np else "cpu"


def to_device(array, device: str):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    xp = xp_for_device(device)
    if get_xp(array) is xp:
        return array
    if xp is np:
        return _cupy.asnumpy(array)
    return xp.asarray(array)


def to_numpy(array) -> np.ndarray:
    return array if get_xp(array) is np else _cupy.asnumpy(array)


def set_default_dtype(dtype) -> None:
    """Set the floating dtype that new tensors get (float32 by default, as in PyTorch)."""
    global _DEFAULT_DTYPE
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dt}")
    _DEFAULT_DTYPE = dt


def get_default_dtype() -> np.dtype:
    return _DEFAULT_DTYPE


def manual_seed(seed: int) -> None:
    """Seed the global generator used when no explicit ``seed``/``rng`` is given."""
    global _RNG
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _RNG = np.random.default_rng(int(seed))


def get_rng(seed=None) -> np.random.Generator:
    """A generator: a fresh one from ``seed``, the generator itself, or the global one."""
    if seed is None:
        return _RNG
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
