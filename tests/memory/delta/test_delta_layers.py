"""The chapter's layers (DeltaNet, GatedDeltaNet, LinearAttention, GatedLinearAttention,
Retention, DeltaProductNet) and their use inside TransformerLM."""
import numpy as np
import pytest

import minimem as mm
from minimem.autograd.registry import cases
from minimem.memory import (DeltaNet, DeltaProductNet, GatedDeltaNet, GatedLinearAttention,
                            LinearAttention, Retention, ShortConvolution)
from minimem.nn import TransformerLM


@pytest.mark.parametrize("cls", [LinearAttention, DeltaNet, GatedDeltaNet, GatedLinearAttention,
                                 Retention, DeltaProductNet])
def test_layer_modes_agree_and_are_causal(rng, cls):
    layer = cls(8, 2, seed=0).double()
    x = rng.standard_normal((2, 11, 8))
    y_chunk = layer(mm.tensor(x)).numpy()
    layer.mode = "recurrent"
    y_rec = layer(mm.tensor(x)).numpy()
    np.testing.assert_allclose(y_chunk, y_rec, atol=1e-10)
    x2 = x.copy()
    x2[:, 6:] = rng.standard_normal((2, 5, 8))       # change the future only
    np.testing.assert_allclose(layer(mm.tensor(x2)).numpy()[:, :6], y_rec[:, :6], atol=1e-12)
    assert layer.last_state.shape == (2, 2, 4, 4)


def test_short_convolution_is_a_causal_depthwise_filter(rng):
    conv = ShortConvolution(3, 4, seed=1).double()
    x = rng.standard_normal((2, 7, 3))
    w = conv.weight.numpy()
    xp = np.concatenate([np.zeros((2, 3, 3)), x], axis=1)
    want = sum(xp[:, j:j + 7] * w[j] for j in range(4))
    np.testing.assert_allclose(conv(mm.tensor(x)).numpy(), want, atol=1e-12)
    with pytest.raises(ValueError, match="ShortConvolution: kernel_size"):
        ShortConvolution(3, 0)


def test_every_layer_has_a_gradcheck_case_in_each_mode():
    names = {c.name for c in cases("delta")}
    want = {f"{cls} ({mode})" for cls in ("LinearAttention", "DeltaNet", "GatedDeltaNet")
            for mode in ("recurrent", "chunk")} | {"ShortConvolution"}
    assert want <= names, want - names


@pytest.mark.parametrize("cls", [LinearAttention, DeltaNet, GatedDeltaNet])
def test_layer_checkpoint_interval_changes_nothing(rng, cls):
    x = mm.tensor(rng.standard_normal((2, 9, 8)))
    outputs = [cls(8, 2, mode="recurrent", checkpoint=c, seed=0).double()(x).numpy()
               for c in (1, 4, 9, 20)]
    for y in outputs[1:]:
        np.testing.assert_array_equal(y, outputs[0])
    layer = cls(8, 2, mode="chunk", chunk_size=4, seed=0).double()
    np.testing.assert_allclose(layer(x).numpy(), outputs[0], atol=1e-10)
    assert "chunk_size=4" in repr(layer)


@pytest.mark.parametrize("cls", [DeltaNet, GatedDeltaNet])
def test_mixer_in_transformer_lm_trains(cls):
    model = TransformerLM(16, 16, 2, 2, 12, seed=0,
                          mixer=lambda d_model, n_heads, layer: cls(d_model, n_heads))
    assert isinstance(model.blocks[0].mixer, cls)
    x = np.random.default_rng(0).integers(0, 16, (4, 12))
    opt = mm.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):       # memorize one batch: the loss must fall
        loss = mm.cross_entropy(model(x[:, :-1]), x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_layer_bad_arguments():
    with pytest.raises(ValueError, match="DeltaNet: d_model .* divisible by n_heads"):
        DeltaNet(10, 3)
    with pytest.raises(ValueError, match="GatedDeltaNet: mode must be"):
        GatedDeltaNet(8, 2, mode="fast")
    with pytest.raises(ValueError, match="DeltaNet: checkpoint= .* with mode='chunk'"):
        DeltaNet(8, 2, checkpoint=16)                 # mode="chunk" is the layers' default
    with pytest.raises(ValueError, match="LinearAttention: chunk_size= .* with "
                                         "mode='recurrent'"):
        LinearAttention(8, 2, mode="recurrent", chunk_size=16)
    with pytest.raises(ValueError, match=r"GatedDeltaNet: checkpoint must be an int >= 1, "
                                         r"got 0"):
        GatedDeltaNet(8, 2, mode="recurrent", checkpoint=0)
    layer = DeltaNet(8, 2)
    with pytest.raises(ValueError, match=r"DeltaNet: expected x of shape \(B, T, 8\)"):
        layer(mm.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="DeltaNet: a recurrent mixer .* no attention mask"):
        layer(mm.zeros(2, 3, 8), mask=np.ones((3, 3), bool))


def test_retention_uses_retnets_fixed_decays_and_gla_a_data_dependent_one(rng):
    from minimem.memory import (GatedLinearAttention, Retention,
                                gated_linear_attention_reference, retention_decays)
    x = mm.tensor(rng.standard_normal((2, 6, 8)), dtype=np.float64)
    layer = Retention(8, 4, conv_size=0, seed=0).double()
    np.testing.assert_allclose(np.exp(layer.log_decay), retention_decays(4), rtol=1e-15)
    np.testing.assert_allclose(retention_decays(2), [1 - 2 ** -5, 1 - 2 ** -6])
    q, k, v = layer._qkv(x)
    o, _ = layer._mix(x, q, k, v)
    g = np.broadcast_to(np.log(retention_decays(4))[None, :, None], (2, 4, 6))
    o_ref, _ = gated_linear_attention_reference(q, k, v, mm.tensor(g.copy(), dtype=np.float64))
    np.testing.assert_allclose(o.numpy(), o_ref.numpy(), atol=1e-12)
    gla = GatedLinearAttention(8, 4, conv_size=0, seed=0).double()
    from minimem.memory.delta.layers import _log_decay
    g2 = _log_decay(gla, x).numpy()
    assert g2.shape == (2, 4, 6) and (g2 < 0).all() and g2.std() > 0
    assert gla(x).shape == (2, 6, 8)
