r"""Dense associative memory (Krotov & Hopfield 2016; Demircigil et al. 2017).

P patterns :math:`x^\mu \in \{-1,+1\}^N`, state :math:`s \in \{-1,+1\}^N`, energy

.. math:: E(s) = -\sum_{\mu=1}^P F(x^\mu \cdot s),

with :math:`F(z) = z^n` (``F="poly"``), :math:`F(z) = \max(z, 0)^n` (``F="rectified"``) or
:math:`F(z) = e^z` (``F="exp"``). The asynchronous update gives unit i the value of lower
energy, the other units held fixed:

.. math:: s_i \leftarrow \operatorname{sgn}\Big(\sum_\mu F\big(x^\mu_i + a^\mu_i\big)
          - F\big(-x^\mu_i + a^\mu_i\big)\Big), \qquad a^\mu_i = \sum_{j\ne i} x^\mu_j s_j .

For :math:`n = 2`, :math:`F(a + x_i) - F(a - x_i) = 4 a x_i`, which is the classical update with
Hebbian weights. A larger :math:`n` sharpens the separation between the signal and the
crosstalk of the other patterns: the number of patterns stored without error grows like
:math:`N^{n-1}` (Krotov & Hopfield), and exponentially in N for :math:`F = \exp`.
(:math:`F = \exp` overflows float64 for overlaps above ~709: keep N below that.)
"""
from __future__ import annotations

import numpy as np

from ...backend import get_rng
from ...checks import check_int
from ...kernels.async_sweeps import (
    F_KINDS,
    dense_async_sweeps,
    dense_async_sweeps_reference,
    dense_F,
)
from .classical import RecallResult, _as_pm1, sweep_orders


class DenseAssociativeMemory:
    """Dense associative memory over ``patterns`` (P, N) of +-1 with interaction ``F``.

    ``recall(probe, max_sweeps=100, seed=None)`` (asynchronous, random order) returns a
    :class:`RecallResult` (``state, energies = ...``); ``energy(state)`` is -sum_mu F(x^mu . s).
    """

    def __init__(self, patterns, F="poly", n=3):
        if F not in F_KINDS:
            raise ValueError(f"DenseAssociativeMemory: F must be one of {sorted(F_KINDS)}, "
                             f"got {F!r}")
        if F != "exp":
            check_int("DenseAssociativeMemory", "n", n, low=1)
        self.patterns = _as_pm1("DenseAssociativeMemory", "patterns", patterns, ndim=(2,))
        self.F_name, self.n = F, int(n)
        self.F = dense_F(F, self.n)
        self.n_units = self.patterns.shape[1]

    @property
    def n_patterns(self):
        return self.patterns.shape[0]

    def energy(self, state):
        """E(s) = -sum_mu F(x^mu . s) for s (N,) or (B, N)."""
        s = _as_pm1("DenseAssociativeMemory.energy", "state", state, self.n_units, ndim=(1, 2))
        E = -self.F(s @ self.patterns.T).sum(axis=-1)
        return E if s.ndim == 2 else float(E)

    def recall(self, probe, max_sweeps=100, seed=None, kernel=True, chunk=8):
        """Asynchronous updates from ``probe`` until a fixed point or ``max_sweeps`` sweeps.

        ``kernel=False`` runs the plain loop (two energies from scratch per unit).
        """
        s = _as_pm1("DenseAssociativeMemory.recall", "probe", probe, self.n_units)
        check_int("DenseAssociativeMemory.recall", "max_sweeps", max_sweeps, low=1)
        rng = get_rng(seed)
        run = dense_async_sweeps if kernel else dense_async_sweeps_reference
        energies, converged, done = [self.energy(s)], False, 0
        while done < max_sweeps and not converged:
            k = min(chunk, max_sweeps - done)
            s, e, converged = run(self.patterns, s, sweep_orders(rng, self.n_units, k),
                                  self.F_name, self.n)
            energies.extend(e.tolist())
            done += len(e)
        return RecallResult(s, np.asarray(energies), done, converged)

    def recall_many(self, probes, max_sweeps=100, seed=None):
        """Final states (B, N) for probes (B, N); each probe's order seed is drawn from ``seed``."""
        S = _as_pm1("DenseAssociativeMemory.recall_many", "probes", probes, self.n_units,
                    ndim=(2,))
        seeds = get_rng(seed).integers(0, 2**63 - 1, size=len(S))
        return np.stack([self.recall(s, max_sweeps, int(k)).state
                         for s, k in zip(S, seeds)]) if len(S) else S.copy()

    def __repr__(self):
        f = "exp" if self.F_name == "exp" else f"{self.F_name}, n={self.n}"
        return f"DenseAssociativeMemory(N={self.n_units}, P={self.n_patterns}, F={f})"
