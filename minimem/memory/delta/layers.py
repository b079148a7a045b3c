r"""Token-mixing layers built on the recurrences: LinearAttention, DeltaNet, GatedDeltaNet.

For input :math:`x_t \in \mathbb{R}^{d}` and each head (size :math:`d_h`):

.. math::
    q_t, k_t, v_t = \phi(\mathrm{conv}(W_{q,k,v}\, x)_t), \qquad
    \hat q_t = q_t / \|q_t\|, \quad \hat k_t = k_t / \|k_t\|, \qquad
    \beta_t = \sigma(w_\beta^\top x_t),

with :math:`\mathrm{conv}` a short causal depthwise convolution (kernel 4) and
:math:`\phi = \mathrm{SiLU}` (both optional: ``conv_size=0``). Then the head's memory runs
linear attention, the delta rule, or the gated delta rule with a log-decay

.. math:: g_t = -e^{A_{\log}}\, \mathrm{softplus}(w_a^\top x_t + b_{dt}) \le 0,

and the output is :math:`W_o\,[\mathrm{RMSNorm}(o_t)]` (GatedDeltaNet multiplies by an
output gate :math:`\mathrm{SiLU}(W_g x_t)` before :math:`W_o`). Keys on the unit sphere make
:math:`\beta \in (0, 1)` a stable step size. Each layer maps ``(B, T, d_model)`` to the same
shape, so it drops into :class:`minimem.nn.TransformerLM` as ``mixer=``:

>>> TransformerLM(vocab, 64, 2, 4, 128,
...               mixer=lambda d_model, n_heads, layer: DeltaNet(d_model, n_heads))
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ...autograd import ops
from ...autograd.tensor import Tensor
from ...backend import get_default_dtype, get_rng, get_xp
from ...nn.attention import merge_heads, split_heads
from ...nn.layers import Linear, RMSNorm
from ...nn.module import Module, Parameter
from .delta_rule import delta_rule, gated_delta_rule
from .linear_attention import linear_attention
from .recurrent import mode_settings


class ShortConvolution(Module):
    r"""Causal depthwise convolution over time: :math:`y_{t,c} = \sum_{j<K} w_{c,j}\,
    x_{t-K+1+j,c}` (zeros before the start), ``(B, T, d) -> (B, T, d)``."""

    def __init__(self, d, kernel_size=4, seed=None, dtype=None):
        super().__init__()
        if not isinstance(kernel_size, numbers.Integral) or kernel_size < 1:
            raise ValueError(f"ShortConvolution: kernel_size must be an int >= 1, "
                             f"got {kernel_size!r}")
        rng = get_rng(seed)
        bound = 1 / math.sqrt(kernel_size)
        self.d, self.kernel_size = d, kernel_size
        w = rng.uniform(-bound, bound, (kernel_size, d))
        self.weight = Parameter(w.astype(dtype or get_default_dtype()))

    def forward(self, x):
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != self.d:
            raise ValueError(f"ShortConvolution: expected x of shape (B, T, {self.d}), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        B, T, d = x.shape
        K = self.kernel_size
        pad = Tensor(get_xp(x.data).zeros((B, K - 1, d), dtype=x.dtype)) if K > 1 else None
        xp_ = ops.concatenate([pad, x], axis=1) if pad is not None else x
        y = None
        for j in range(K):  # tap j looks K-1-j steps back
            term = xp_[:, j:j + T] * self.weight[j]
            y = term if y is None else y + term
        return y

    def extra_repr(self):
        return f"{self.d}, kernel_size={self.kernel_size}"


class _RecurrentMixer(Module):
    """Shared projections / convolutions / norms; subclasses choose the recurrence.

    ``mode="chunk"`` (default) runs chunks of ``chunk_size`` tokens; ``mode="recurrent"`` runs
    the Numba kernel, storing the state every ``checkpoint`` tokens for the backward (both
    default to 64; giving the other mode's argument is an error).
    """

    def __init__(self, d_model, n_heads, d_head=None, conv_size=4, mode="chunk",
                 chunk_size=None, checkpoint=None, output_norm=True, seed=None):
        super().__init__()
        cls = type(self).__name__
        for name, val in (("d_model", d_model), ("n_heads", n_heads)):
            if isinstance(val, bool) or not isinstance(val, numbers.Integral) or val < 1:
                raise ValueError(f"{cls}: {name} must be an int >= 1, got {val!r}")
        if d_head is None:
            if d_model % n_heads:
                raise ValueError(f"{cls}: d_model ({d_model}) must be divisible by n_heads "
                                 f"({n_heads}) when d_head is not given")
            d_head = d_model // n_heads
        # chunk_size belongs to mode="chunk", checkpoint to mode="recurrent"; the other is None
        self.chunk_size, self.checkpoint = mode_settings(cls, mode, chunk_size, checkpoint)
        self.mode = mode
        rng = get_rng(seed)
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_head
        inner = n_heads * d_head
        self.W_q = Linear(d_model, inner, bias=False, seed=rng)
        self.W_k = Linear(d_model, inner, bias=False, seed=rng)
        self.W_v = Linear(d_model, inner, bias=False, seed=rng)
        self.W_o = Linear(inner, d_model, bias=False, seed=rng)
        self.conv_size = conv_size or 0
        if self.conv_size:
            self.conv_q = ShortConvolution(inner, conv_size, seed=rng)
            self.conv_k = ShortConvolution(inner, conv_size, seed=rng)
            self.conv_v = ShortConvolution(inner, conv_size, seed=rng)
        self.norm = RMSNorm(d_head) if output_norm else None
        self._extra_init(rng)
        self.last_state = None

    def _extra_init(self, rng):
        pass

    def _qkv(self, x):
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        if self.conv_size:
            q, k, v = (ops.silu(c(z)) for c, z in ((self.conv_q, q), (self.conv_k, k),
                                                    (self.conv_v, v)))
        q, k, v = (split_heads(z, self.n_heads) for z in (q, k, v))
        return ops.l2_normalize(q, axis=-1), ops.l2_normalize(k, axis=-1), v

    def _per_head(self, lin, x):
        """(B, T, d_model) -> (B, H, T) through a Linear with H outputs."""
        return ops.transpose(lin(x), (0, 2, 1))

    def forward(self, x, mask=None):
        if mask is not None:
            raise ValueError(f"{type(self).__name__}: a recurrent mixer is causal by "
                             "construction and takes no attention mask")
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"{type(self).__name__}: expected x of shape (B, T, "
                             f"{self.d_model}), got {getattr(x, 'shape', type(x).__name__)}")
        q, k, v = self._qkv(x)
        o, S = self._mix(x, q, k, v)
        self.last_state = S.detach()
        if self.norm is not None:
            o = self.norm(o)
        return self.W_o(self._gate(x, merge_heads(o)))

    def _gate(self, x, o):
        return o

    def _mode_arguments(self):
        """``mode`` and its own tuning argument only (read now: ``self.mode`` may be changed)."""
        if self.mode == "chunk":
            return {"mode": "chunk", "chunk_size": self.chunk_size}
        return {"mode": self.mode, "checkpoint": self.checkpoint}

    def extra_repr(self):
        tuning = (f"chunk_size={self.chunk_size}" if self.mode == "chunk"
                  else f"checkpoint={self.checkpoint}")
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, d_head={self.d_head}, "
                f"conv_size={self.conv_size}, mode={self.mode!r}, {tuning}")


class LinearAttention(_RecurrentMixer):
    """Linear attention layer: :math:`S_t = S_{t-1} + k_t v_t^\\top` per head."""

    def _mix(self, x, q, k, v):
        return linear_attention(q, k, v, output_final_state=True, **self._mode_arguments())


class DeltaNet(_RecurrentMixer):
    """DeltaNet layer: the delta rule per head with :math:`\\beta_t = \\sigma(w_\\beta^\\top x_t)`."""

    def _extra_init(self, rng):
        self.W_beta = Linear(self.d_model, self.n_heads, bias=True, seed=rng)

    def _mix(self, x, q, k, v):
        beta = ops.sigmoid(self._per_head(self.W_beta, x))
        return delta_rule(q, k, v, beta, output_final_state=True, **self._mode_arguments())


class GatedDeltaNet(DeltaNet):
    """Gated DeltaNet layer: decay :math:`e^{g_t}`, then the delta rule; SiLU output gate."""

    def _extra_init(self, rng):
        super()._extra_init(rng)
        dt = get_default_dtype()
        self.W_a = Linear(self.d_model, self.n_heads, bias=False, seed=rng)
        # A in (1, 16) and dt_bias = softplus^{-1}(dt), dt in (1e-3, 0.1): slow decays at init.
        self.A_log = Parameter(np.log(rng.uniform(1, 16, self.n_heads)).astype(dt))
        dt0 = np.exp(rng.uniform(np.log(1e-3), np.log(0.1), self.n_heads))
        self.dt_bias = Parameter((dt0 + np.log(-np.expm1(-dt0))).astype(dt))
        self.W_g = Linear(self.d_model, self.n_heads * self.d_head, bias=False, seed=rng)

    def _mix(self, x, q, k, v):
        beta = ops.sigmoid(self._per_head(self.W_beta, x))
        g = -ops.exp(self.A_log) * ops.softplus(self.W_a(x) + self.dt_bias)   # (B, T, H)
        g = ops.transpose(g, (0, 2, 1))
        return gated_delta_rule(q, k, v, beta, g, output_final_state=True,
                                **self._mode_arguments())

    def _gate(self, x, o):
        return o * ops.silu(self.W_g(x))
