"""DeltaNet / GatedDeltaNet / LinearAttention layers and their use inside TransformerLM."""
import numpy as np
import pytest

import minimem as mm
from minimem.autograd.registry import cases, run_case
from minimem.memory import DeltaNet, GatedDeltaNet, LinearAttention, ShortConvolution
from minimem.nn import TransformerLM


@pytest.mark.parametrize("cls", [LinearAttention, DeltaNet, GatedDeltaNet])
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


def test_registered_layer_cases_pass():
    layer_cases = [c for c in cases("delta") if c.name.split(" ")[0] in
                   ("LinearAttention", "DeltaNet", "GatedDeltaNet", "ShortConvolution")]
    assert len(layer_cases) == 7
    for c in layer_cases:
        assert run_case(c)["passed"], c.name


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
    layer = DeltaNet(8, 2)
    with pytest.raises(ValueError, match=r"DeltaNet: expected x of shape \(B, T, 8\)"):
        layer(mm.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="DeltaNet: a recurrent mixer .* no attention mask"):
        layer(mm.zeros(2, 3, 8), mask=np.ones((3, 3), bool))
