r"""Token-mixing layers built on the recurrences: LinearAttention, GatedLinearAttention,
Retention, DeltaNet, GatedDeltaNet, DeltaProductNet.

For input :math:`x_t \in \mathbb{R}^{d}` and each head (size :math:`d_h`):

.. math::
    q_t, k_t, v_t = \phi(\mathrm{conv}(W_{q,k,v}\, x)_t), \qquad
    \hat q_t = q_t / \|q_t\|, \quad \hat k_t = k_t / \|k_t\|, \qquad
    \beta_t = \sigma(w_\beta^\top x_t),

with :math:`\mathrm{conv}` a short causal depthwise convolution (kernel 4) and
:math:`\phi = \mathrm{SiLU}` (both optional: ``conv_size=0``). Then the head's memory runs
linear attention, the delta rule, or the gated delta rule with a log-decay

.. math:: g_t = -e^{A_{\log}}\, \mathrm{softplus}(w_a^\top x_t + b_{dt}) \le 0,

(GatedLinearAttention: the same decay without the delta correction; Retention: a fixed
:math:`g = \log \gamma_h` per head), or DeltaProduct (:math:`n_h` keys, values and step
sizes per token). The output is :math:`W_o\,[\mathrm{RMSNorm}(o_t)]` (the gated layers
multiply by an output gate :math:`\mathrm{SiLU}(W_g x_t)` before :math:`W_o`). Keys on the
unit sphere make :math:`\beta \in (0, 1)` a stable step size; ``allow_neg_eigval=True``
uses :math:`\beta_t = 2\sigma(w_\beta^\top x_t) \in (0, 2)`, so that the transition's
eigenvalue :math:`1 - \beta_t` along the key reaches into :math:`(-1, 0)`. Each layer maps
``(B, T, d_model)`` to the same shape, so it drops into :class:`minimem.nn.TransformerLM` as
``mixer=``:

>>> TransformerLM(vocab, 64, 2, 4, 128,
...               mixer=lambda d_model, n_heads, layer: DeltaNet(d_model, n_heads))
"""
from __future__ import annotations

import math

import numpy as np

from ...autograd import ops
from ...autograd.tensor import Tensor
from ...backend import get_default_dtype, get_rng, get_xp
from ...nn.attention import merge_heads, split_heads
from ...nn.layers import Linear, RMSNorm
from ...nn.module import Module, Parameter
from ...checks import check_bool, check_float_tensor, check_int
from .delta_product import delta_product
from .delta_rule import delta_rule, gated_delta_rule
from .linear_attention import gated_linear_attention, linear_attention
from .recurrent import mode_settings


class ShortConvolution(Module):
    r"""Causal depthwise convolution over time: :math:`y_{t,c} = \sum_{j<K} w_{c,j}\,
    x_{t-K+1+j,c}` (zeros before the start), ``(B, T, d) -> (B, T, d)``."""

    def __init__(self, d, kernel_size=4, seed=None, dtype=None):
        super().__init__()
        d = check_int("ShortConvolution", "d", d, low=1)
        kernel_size = check_int("ShortConvolution", "kernel_size", kernel_size, low=1)
        rng = get_rng(seed)
        bound = 1 / math.sqrt(kernel_size)
        self.d, self.kernel_size = d, kernel_size
        w = rng.uniform(-bound, bound, (kernel_size, d))
        self.weight = Parameter(w.astype(dtype or get_default_dtype()))

    def forward(self, x):
        check_float_tensor("ShortConvolution", "x", x)
        if x.ndim != 3 or x.shape[-1] != self.d:
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
                 chunk_size=None, checkpoint=None, output_norm=True, seed=None, _n_kv=1):
        super().__init__()
        cls = type(self).__name__
        d_model = check_int(cls, "d_model", d_model, low=1)
        n_heads = check_int(cls, "n_heads", n_heads, low=1)
        if d_head is not None:
            d_head = check_int(cls, "d_head", d_head, low=1)
        if conv_size is not None:  # None or 0: no convolution
            conv_size = check_int(cls, "conv_size", conv_size, low=0)
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
        self._n_kv = _n_kv     # keys and values per token (DeltaProduct's n_h; else 1)
        self.W_q = Linear(d_model, inner, bias=False, seed=rng)
        self.W_k = Linear(d_model, _n_kv * inner, bias=False, seed=rng)
        self.W_v = Linear(d_model, _n_kv * inner, bias=False, seed=rng)
        self.W_o = Linear(inner, d_model, bias=False, seed=rng)
        self.conv_size = conv_size or 0
        if self.conv_size:
            self.conv_q = ShortConvolution(inner, conv_size, seed=rng)
            self.conv_k = ShortConvolution(_n_kv * inner, conv_size, seed=rng)
            self.conv_v = ShortConvolution(_n_kv * inner, conv_size, seed=rng)
        self.norm = RMSNorm(d_head) if output_norm else None
        self._extra_init(rng)
        self.last_state = None

    def _extra_init(self, rng):
        pass

    def _projected(self, x):
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        if self.conv_size:
            q, k, v = (ops.silu(c(z)) for c, z in ((self.conv_q, q), (self.conv_k, k),
                                                    (self.conv_v, v)))
        return q, k, v

    def _qkv(self, x):
        q, k, v = (split_heads(z, self.n_heads) for z in self._projected(x))
        return ops.l2_normalize(q, axis=-1), ops.l2_normalize(k, axis=-1), v

    def _per_head(self, lin, x):
        """(B, T, d_model) -> (B, H, T) through a Linear with H outputs."""
        return ops.transpose(lin(x), (0, 2, 1))

    def forward(self, x, mask=None):
        if mask is not None:
            raise ValueError(f"{type(self).__name__}: a recurrent mixer is causal by "
                             "construction and takes no attention mask")
        check_float_tensor(type(self).__name__, "x", x, float16=False)
        if x.ndim != 3 or x.shape[-1] != self.d_model:
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
    """Linear attention layer: :math:`S_t = S_{t-1} + k_t v_t^\\top` per head.

    ``feature_map`` (a kind of :func:`~.feature_maps.feature_map` or a callable) maps the
    normalized queries and keys; ``normalize=True`` divides by :math:`z_t^\\top \\phi(q_t)`.
    """

    def __init__(self, d_model, n_heads, *args, feature_map=None, normalize=False, **kwargs):
        super().__init__(d_model, n_heads, *args, **kwargs)
        self.feature_map, self.normalize = feature_map, check_bool("LinearAttention",
                                                                   "normalize", normalize)

    def _mix(self, x, q, k, v):
        o, S = linear_attention(q, k, v, output_final_state=True, feature_map=self.feature_map,
                                normalize=self.normalize, **self._mode_arguments())
        return o, S

    def extra_repr(self):
        return (super().extra_repr() + f", feature_map={self.feature_map!r}, "
                f"normalize={self.normalize}")


def _step_size(beta_logits, allow_neg_eigval):
    r""":math:`\beta = \sigma(\cdot) \in (0, 1)`, or :math:`2\sigma(\cdot) \in (0, 2)` with
    ``allow_neg_eigval``: the eigenvalue :math:`1 - \beta` of the transition along the key then
    ranges over :math:`(-1, 1)` instead of :math:`(0, 1)`."""
    beta = ops.sigmoid(beta_logits)
    return beta * 2.0 if allow_neg_eigval else beta


class DeltaNet(_RecurrentMixer):
    """DeltaNet layer: the delta rule per head with :math:`\\beta_t = \\sigma(w_\\beta^\\top x_t)`
    (times 2 with ``allow_neg_eigval=True``: :math:`\\beta_t \\in (0, 2)`)."""

    def __init__(self, d_model, n_heads, *args, allow_neg_eigval=False, **kwargs):
        super().__init__(d_model, n_heads, *args, **kwargs)
        self.allow_neg_eigval = check_bool(type(self).__name__, "allow_neg_eigval",
                                           allow_neg_eigval)

    def _extra_init(self, rng):
        self.W_beta = Linear(self.d_model, self._n_kv * self.n_heads, bias=True, seed=rng)

    def _beta(self, x):
        return _step_size(self._per_head(self.W_beta, x), self.allow_neg_eigval)

    def _mix(self, x, q, k, v):
        return delta_rule(q, k, v, self._beta(x), output_final_state=True,
                          **self._mode_arguments())

    def extra_repr(self):
        return super().extra_repr() + f", allow_neg_eigval={self.allow_neg_eigval}"


def _init_decay(module, rng):
    """Mamba2-style decay parameters: A in (1, 16), dt_bias = softplus^{-1}(dt) with
    dt in (1e-3, 0.1), so that the decays start slow."""
    dt = get_default_dtype()
    module.W_a = Linear(module.d_model, module.n_heads, bias=False, seed=rng)
    module.A_log = Parameter(np.log(rng.uniform(1, 16, module.n_heads)).astype(dt))
    dt0 = np.exp(rng.uniform(np.log(1e-3), np.log(0.1), module.n_heads))
    module.dt_bias = Parameter((dt0 + np.log(-np.expm1(-dt0))).astype(dt))


def _log_decay(module, x):
    """:math:`g_t = -e^{A_{\\log}} \\mathrm{softplus}(w_a^\\top x_t + b_{dt}) \\le 0`, (B, H, T)."""
    g = -ops.exp(module.A_log) * ops.softplus(module.W_a(x) + module.dt_bias)   # (B, T, H)
    return ops.transpose(g, (0, 2, 1))


class GatedDeltaNet(DeltaNet):
    """Gated DeltaNet layer: decay :math:`e^{g_t}`, then the delta rule; SiLU output gate."""

    def _extra_init(self, rng):
        super()._extra_init(rng)
        _init_decay(self, rng)
        self.W_g = Linear(self.d_model, self.n_heads * self.d_head, bias=False, seed=rng)

    def _mix(self, x, q, k, v):
        return gated_delta_rule(q, k, v, self._beta(x), _log_decay(self, x),
                                output_final_state=True, **self._mode_arguments())

    def _gate(self, x, o):
        return o * ops.silu(self.W_g(x))


class DeltaProductNet(DeltaNet):
    """DeltaProduct layer: ``n_householder`` (:math:`n_h`) keys, values and step sizes per token
    and head, :math:`n_h` delta steps per token (:func:`~.delta_product.delta_product`);
    ``allow_neg_eigval`` as in :class:`DeltaNet`. ``n_householder=1`` is DeltaNet."""

    def __init__(self, d_model, n_heads, *args, n_householder=2, allow_neg_eigval=False,
                 **kwargs):
        check_int("DeltaProductNet", "n_householder", n_householder, low=1)
        super().__init__(d_model, n_heads, *args, allow_neg_eigval=allow_neg_eigval,
                         _n_kv=int(n_householder), **kwargs)

    def _qkv(self, x):
        q, k, v = self._projected(x)
        B, T, _ = x.shape
        H, n_h = self.n_heads, self._n_kv

        def per_step(z):   # (B, T, n_h H d) -> (B, H, T, n_h, d)
            return ops.transpose(ops.reshape(z, (B, T, n_h, H, self.d_head)), (0, 3, 1, 2, 4))

        q = ops.l2_normalize(split_heads(q, H), axis=-1)
        return q, ops.l2_normalize(per_step(k), axis=-1), per_step(v)

    def _beta(self, x):
        B, T, _ = x.shape
        logits = ops.reshape(self.W_beta(x), (B, T, self._n_kv, self.n_heads))
        return _step_size(ops.transpose(logits, (0, 3, 1, 2)), self.allow_neg_eigval)

    def _mix(self, x, q, k, v):
        o, S = delta_product(q, k, v, self._beta(x), output_final_state=True,
                             **self._mode_arguments())
        return o, S

    def extra_repr(self):
        return super().extra_repr() + f", n_householder={self._n_kv}"


class GatedLinearAttention(_RecurrentMixer):
    r"""Gated linear attention with a data-dependent scalar decay per head (as Mamba2 / SSD and
    fla's ``simple_gla``): :math:`S_t = e^{g_t} S_{t-1} + k_t v_t^\top` with
    :math:`g_t = -e^{A_{\log}} \mathrm{softplus}(w_a^\top x_t + b_{dt})`; SiLU output gate."""

    def _extra_init(self, rng):
        _init_decay(self, rng)
        self.W_g = Linear(self.d_model, self.n_heads * self.d_head, bias=False, seed=rng)

    def _mix(self, x, q, k, v):
        return gated_linear_attention(q, k, v, _log_decay(self, x), output_final_state=True,
                                      **self._mode_arguments())

    def _gate(self, x, o):
        return o * ops.silu(self.W_g(x))


def retention_decays(n_heads):
    r"""RetNet's fixed per-head decays :math:`\gamma_h = 1 - 2^{-5-h}`, :math:`h = 0..H-1`."""
    n_heads = check_int("retention_decays", "n_heads", n_heads, low=1)
    return 1.0 - 2.0 ** (-5.0 - np.arange(n_heads))


class Retention(_RecurrentMixer):
    r"""RetNet-style retention: gated linear attention with a fixed decay per head,
    :math:`g_t = \log \gamma_h` (:func:`retention_decays`, not learned), so the weight of token
    :math:`j` seen from :math:`t` is :math:`\gamma_h^{t-j}\, s\, q_t^\top k_j`; SiLU output
    gate. (RetNet's xPos rotation of q and k is left out.)"""

    def _extra_init(self, rng):
        self.register_buffer("log_decay", np.log(retention_decays(self.n_heads)))
        self.W_g = Linear(self.d_model, self.n_heads * self.d_head, bias=False, seed=rng)

    def _mix(self, x, q, k, v):
        B, H, T, _ = q.shape
        g = np.broadcast_to(self.log_decay[None, :, None], (B, H, T)).astype(q.dtype)
        return gated_linear_attention(q, k, v, Tensor(get_xp(q.data).asarray(g)),
                                      output_final_state=True, **self._mode_arguments())

    def _gate(self, x, o):
        return o * ops.silu(self.W_g(x))
