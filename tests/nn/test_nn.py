"""nn layers: Module bookkeeping, state, modes, norms, attention, the LM, gradchecks."""
import numpy as np
import pytest
from _helpers import leaf

import minimem as mm
from minimem.autograd.registry import cases
from minimem.nn import (MLP, BatchNorm1d, Dropout, Embedding, LayerNorm, LayerNormFunction,
                        Linear, Module, ModuleList, MultiHeadAttention, Parameter, RMSNorm,
                        TransformerBlock, TransformerLM, functional_call,
                        scaled_dot_product_attention)


# ---------------------------------------------------------------------------- Module ---------
class Net(Module):
    def __init__(self, shared=None):
        super().__init__()
        self.w = Parameter(np.ones((2, 3), dtype=np.float32))
        self.fc = Linear(3, 4, seed=0)
        self.blocks = ModuleList([Linear(4, 4, seed=1), Linear(4, 2, bias=False, seed=2)])
        self.other = shared if shared is not None else Parameter(np.zeros(5, np.float32))
        self.note = "not a parameter"


def test_module_registers_parameters_and_children():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["w", "other", "fc.weight", "fc.bias", "blocks.0.weight", "blocks.0.bias",
                     "blocks.1.weight"]
    assert [n for n, _ in net.named_children()] == ["fc", "blocks"]
    assert net.num_parameters() == 6 + 5 + 12 + 4 + 16 + 4 + 8
    assert all(isinstance(p, Parameter) and p.requires_grad for p in net.parameters())
    net.other = np.zeros(5)     # re-assigning a plain array un-registers the parameter
    assert "other" not in dict(net.named_parameters())
    net.fc = None
    assert "fc.weight" not in dict(net.named_parameters())


def test_shared_parameter_counted_once():
    p = Parameter(np.zeros(5, np.float32))
    a, b = Net(shared=p), Net(shared=p)
    both = ModuleList([a, b])
    ids = [id(q) for q in both.parameters()]
    assert len(ids) == len(set(ids))
    assert sum(q is p for q in both.parameters()) == 1
    # the embedding reused as output head: one parameter, gradients from both uses add up
    emb = Embedding(6, 3, seed=0)
    ids_ = np.array([[1, 2]])
    h = emb(ids_)
    logits = h @ emb.weight.T
    logits.sum().backward()
    w = emb.weight.data
    expected = np.tile(w[[1, 2]].sum(0), (6, 1))             # from the head
    expected[[1, 2]] += w.sum(0)                            # from the lookup
    np.testing.assert_allclose(emb.weight.grad.numpy(), expected, rtol=1e-5)


def test_module_needs_super_init():
    class Bad(Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(RuntimeError, match="super\\(\\).__init__"):
        Bad()


def test_state_dict_roundtrip_and_npz(tmp_path):
    src = TransformerLM(11, 8, 2, 2, 6, seed=0)
    bn = BatchNorm1d(3)
    bn(mm.randn(4, 3, seed=0))
    sd = src.state_dict()
    assert list(sd) == [n for n, _ in src.named_parameters()]
    sd["tok.weight"][:] = 0     # a copy: editing it leaves the model alone
    assert np.abs(src.tok.weight.numpy()).sum() > 0

    dst = TransformerLM(11, 8, 2, 2, 6, seed=1)
    tokens = np.array([[1, 2, 3, 4]])
    assert not np.allclose(src(tokens).numpy(), dst(tokens).numpy())
    src.save(tmp_path / "m.npz")
    dst.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(src(tokens).numpy(), dst(tokens).numpy())

    bn2 = BatchNorm1d(3)
    bn2.load_state_dict(bn.state_dict())
    np.testing.assert_array_equal(bn2.running_mean, bn.running_mean)
    np.testing.assert_array_equal(bn2.running_var, bn.running_var)
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var"}

    with pytest.raises(KeyError, match="missing keys \\['head.weight'\\]"):
        dst.load_state_dict({k: v for k, v in src.state_dict().items() if k != "head.weight"})
    bad = src.state_dict()
    bad["ln_f.weight"] = np.ones(9)
    with pytest.raises(ValueError, match="'ln_f.weight' has shape \\(9,\\), expected \\(8,\\)"):
        dst.load_state_dict(bad)


def test_train_eval_propagate():
    net = TransformerLM(5, 4, 2, 2, 3, dropout=0.1, seed=0)
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad_and_functional_call():
    lin = Linear(3, 2, seed=0).double()
    x = mm.tensor(np.ones((1, 3)))
    lin(x).sum().backward()
    assert lin.weight.grad is not None
    lin.zero_grad()
    assert lin.weight.grad is None
    w, b = mm.tensor(np.eye(2, 3)), mm.tensor(np.array([10.0, 20.0]))
    np.testing.assert_allclose(functional_call(lin, [w, b], x).numpy(), [[11.0, 21.0]])
    assert lin.weight is lin._parameters["weight"]    # restored afterwards
    with pytest.raises(ValueError, match="expected 2 parameter tensors, got 1"):
        functional_call(lin, [w], x)


# ---------------------------------------------------------------------------- layers ---------
def test_linear_and_embedding_match_numpy(rng):
    lin = Linear(4, 3, seed=0)
    bound = 1 / np.sqrt(4)
    assert np.abs(lin.weight.numpy()).max() <= bound and lin.weight.dtype == np.float32
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    want = x @ lin.weight.numpy().T + lin.bias.numpy()
    np.testing.assert_allclose(lin(mm.tensor(x)).numpy(), want, rtol=1e-5, atol=1e-6)
    emb = Embedding(7, 3, seed=0)
    ids = np.array([[0, 6], [3, 3]])
    np.testing.assert_array_equal(emb(ids).numpy(), emb.weight.numpy()[ids])
    with pytest.raises(ValueError, match="Linear: expected input with last dim 4"):
        lin(mm.ones(2, 3))
    with pytest.raises(ValueError, match=r"Embedding: ids must lie in \[0, 7\)"):
        emb(np.array([7]))
    with pytest.raises(TypeError, match="Embedding: ids must be integers"):
        emb(np.array([1.0]))


def test_dropout_seeded_scaling_and_modes():
    x = mm.ones(200, 100)
    a, b = Dropout(0.3, seed=5), Dropout(0.3, seed=5)
    ya, yb = a(x).numpy(), b(x).numpy()
    np.testing.assert_array_equal(ya, yb)                        # same seed, same mask
    assert not np.array_equal(ya, a(x).numpy())                  # the generator advances
    assert set(np.unique(ya)) == {0.0, np.float32(1 / 0.7)}      # kept values scaled by 1/(1-p)
    assert abs((ya == 0).mean() - 0.3) < 0.01
    assert abs(ya.mean() - 1.0) < 0.02                           # expectation preserved
    a.eval()
    assert a(x) is x
    assert Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\)"):
        Dropout(1.0)


def test_dropout_backward_uses_the_mask():
    d = Dropout(0.5, seed=0)
    x = mm.tensor(np.ones((4, 6)), requires_grad=True, dtype=np.float64)
    y = d(x)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), y.numpy())   # d y / d x = mask / (1 - p)


def _layernorm_np(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _layernorm_composed(x, g, b, eps):
    """LayerNorm from elementary engine ops (the engine differentiates it)."""
    mu = x.mean(axis=-1, keepdims=True)
    c = x - mu
    var = (c * c).mean(axis=-1, keepdims=True)
    return c / (var + eps).sqrt() * g + b


def test_layernorm_forward_matches_numpy(rng):
    ln = LayerNorm(6)
    ln.weight.data = rng.standard_normal(6).astype(np.float32)
    ln.bias.data = rng.standard_normal(6).astype(np.float32)
    x = (3 + 5 * rng.standard_normal((2, 4, 6))).astype(np.float32)
    want = _layernorm_np(x.astype(np.float64), ln.weight.numpy(), ln.bias.numpy(), 1e-5)
    np.testing.assert_allclose(ln(mm.tensor(x)).numpy(), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="LayerNorm: expected input with last dim 6"):
        ln(mm.ones(2, 5))


def test_layernorm_function_matches_composed_ops(rng):
    """The fused Function (hand-written backward) against the engine's composition, float64."""
    x, g, b = leaf(rng, 3, 4, 7), leaf(rng, 7), leaf(rng, 7)
    x2, g2, b2 = (mm.tensor(v.numpy(), requires_grad=True) for v in (x, g, b))
    up = rng.standard_normal((3, 4, 7))
    y1 = LayerNormFunction.apply(x, g, b, 1e-5)
    y2 = _layernorm_composed(x2, g2, b2, 1e-5)
    np.testing.assert_allclose(y1.numpy(), y2.numpy(), rtol=1e-12, atol=1e-12)
    (y1 * mm.tensor(up)).sum().backward()
    (y2 * mm.tensor(up)).sum().backward()
    for u, v in ((x, x2), (g, g2), (b, b2)):
        np.testing.assert_allclose(u.grad.numpy(), v.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_rmsnorm_matches_numpy(rng):
    rms = RMSNorm(5).double()
    rms.weight.data = rng.standard_normal(5)
    x = rng.standard_normal((3, 5)) * 4
    want = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * rms.weight.data
    np.testing.assert_allclose(rms(mm.tensor(x)).numpy(), want, rtol=1e-12)
    y = rms(mm.tensor(x)).numpy() / rms.weight.data
    np.testing.assert_allclose((y ** 2).mean(-1), 1.0, rtol=1e-5)


def test_batchnorm_train_and_eval(rng):
    bn = BatchNorm1d(3, momentum=0.1).double()
    x = rng.standard_normal((2, 5, 3)) * [1.0, 2.0, 3.0] + [0.0, 1.0, -4.0]
    flat = x.reshape(-1, 3)
    y = bn(mm.tensor(x)).numpy().reshape(-1, 3)
    np.testing.assert_allclose(y, (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5),
                               rtol=1e-10)
    np.testing.assert_allclose(bn.running_mean, 0.1 * flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-12)
    bn(mm.tensor(x))                                            # a second update
    np.testing.assert_allclose(bn.running_mean, (0.1 * 0.9 + 0.1) * flat.mean(0), rtol=1e-12)
    bn.eval()
    z = rng.standard_normal((4, 3))
    want = (z - bn.running_mean) / np.sqrt(bn.running_var + 1e-5)
    np.testing.assert_allclose(bn(mm.tensor(z)).numpy(), want, rtol=1e-12)
    before = bn.running_mean.copy()
    bn(mm.tensor(z))
    np.testing.assert_array_equal(bn.running_mean, before)     # eval does not update
    bn.train()
    with pytest.raises(ValueError, match="BatchNorm1d: training needs >= 2 rows"):
        bn(mm.ones(1, 3))


def test_mlp():
    mlp = MLP(4, 8, activation="relu", seed=0).double()
    x = np.random.default_rng(0).standard_normal((3, 4))
    h = np.maximum(x @ mlp.fc1.weight.data.T + mlp.fc1.bias.data, 0)
    want = h @ mlp.fc2.weight.data.T + mlp.fc2.bias.data
    np.testing.assert_allclose(mlp(mm.tensor(x)).numpy(), want, rtol=1e-12)
    with pytest.raises(ValueError, match="MLP: activation must be one of"):
        MLP(4, activation="swish")


# ------------------------------------------------------------------------- attention ---------
def _mha_numpy(mha, x, mask=None):
    """Per-head loop in plain NumPy with the layer's weights (causal)."""
    B, T, d = x.shape
    H, D = mha.n_heads, mha.d_head

    def lin(layer, z):
        return z @ layer.weight.data.T + layer.bias.data

    q, k, v = lin(mha.W_q, x), lin(mha.W_k, x), lin(mha.W_v, x)
    out = np.zeros((B, T, d))
    weights = np.zeros((B, H, T, T))
    for b in range(B):
        for h in range(H):
            sl = slice(h * D, (h + 1) * D)
            for i in range(T):
                allowed = [j for j in range(i + 1) if mask is None or mask[b, h, i, j]]
                s = np.array([q[b, i, sl] @ k[b, j, sl] / np.sqrt(D) for j in allowed])
                if not allowed:
                    continue
                p = np.exp(s - s.max())
                p /= p.sum()
                weights[b, h, i, allowed] = p
                out[b, i, sl] = p @ v[b, allowed, sl]
    return lin(mha.W_o, out), weights


def test_mha_matches_per_head_numpy(rng):
    mha = MultiHeadAttention(8, 2, seed=0).double()
    x = rng.standard_normal((2, 5, 8))
    y, w = mha(mm.tensor(x), return_weights=True)
    want_y, want_w = _mha_numpy(mha, x)
    np.testing.assert_allclose(y.numpy(), want_y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.numpy(), want_w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mha.last_weights.numpy(), want_w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.numpy().sum(-1), 1.0, rtol=1e-12)
    mask = rng.random((2, 2, 5, 5)) < 0.7
    mask[..., np.arange(5), np.arange(5)] = True       # every row keeps its own position
    y, w = mha(mm.tensor(x), mask=mask, return_weights=True)
    want_y, want_w = _mha_numpy(mha, x, mask)
    np.testing.assert_allclose(y.numpy(), want_y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.numpy(), want_w, rtol=1e-10, atol=1e-12)


def test_causal_attention_ignores_the_future(rng):
    mha = MultiHeadAttention(8, 4, seed=1).double()
    x = rng.standard_normal((1, 7, 8))
    y = mha(mm.tensor(x)).numpy()
    for t in range(6):
        x2 = x.copy()
        x2[:, t + 1:] = rng.standard_normal(x2[:, t + 1:].shape)
        y2 = mha(mm.tensor(x2)).numpy()
        np.testing.assert_allclose(y2[:, :t + 1], y[:, :t + 1], rtol=1e-12)
        assert not np.allclose(y2[:, t + 1:], y[:, t + 1:])
    # the gradient of output t with respect to later inputs is exactly zero
    xt = mm.tensor(x, requires_grad=True)
    mha(xt)[:, 2].sum().backward()
    assert np.all(xt.grad.numpy()[:, 3:] == 0) and np.any(xt.grad.numpy()[:, :3] != 0)


def test_non_causal_and_cross_attention(rng):
    mha = MultiHeadAttention(4, 2, causal=False, seed=0).double()
    x, ctx = rng.standard_normal((1, 3, 4)), rng.standard_normal((1, 6, 4))
    _, w = mha(mm.tensor(x), context=mm.tensor(ctx), return_weights=True)
    assert w.shape == (1, 2, 3, 6) and np.all(w.numpy() > 0)
    with pytest.raises(ValueError, match="MultiHeadAttention: context must be"):
        mha(mm.tensor(x), context=mm.tensor(ctx[:, :, :3]))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: d_model \(6\) must be divisible"):
        MultiHeadAttention(6, 4)


def test_sdpa_masks(rng):
    q, k, v = leaf(rng, 2, 3, 4), leaf(rng, 2, 5, 4), leaf(rng, 2, 5, 2)
    mask = np.ones((3, 5), bool)
    mask[1] = False                                      # a fully masked row
    mask[2, :2] = False
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    assert np.all(out.numpy()[:, 1] == 0) and np.all(w.numpy()[:, 1] == 0)
    assert not np.isnan(out.numpy()).any()
    np.testing.assert_allclose(w.numpy()[:, [0, 2]].sum(-1), 1.0, rtol=1e-12)
    assert np.all(w.numpy()[:, 2, :2] == 0)
    out.sum().backward()
    assert not np.isnan(q.grad.numpy()).any()
    with pytest.raises(TypeError, match="mask must be boolean"):
        scaled_dot_product_attention(q, k, v, mask=np.ones((3, 5)))
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, mask=np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="expected q"):
        scaled_dot_product_attention(q, k, leaf(rng, 2, 4, 2))


def test_transformer_block_is_pre_norm(rng):
    blk = TransformerBlock(4, 2, d_ff=6, seed=0).double()
    x = mm.tensor(rng.standard_normal((1, 3, 4)))
    h = x + blk.mixer(blk.ln1(x))
    want = h + blk.ffn(blk.ln2(h))
    np.testing.assert_allclose(blk(x).numpy(), want.numpy(), rtol=1e-12)

    def factory(d_model, n_heads, layer):
        return Linear(d_model, d_model, seed=layer)

    lm = TransformerLM(7, 4, 2, 2, 5, mixer=factory, seed=0)
    assert isinstance(lm.blocks[1].mixer, Linear)
    with pytest.raises(TypeError, match="the factory must return a Module"):
        TransformerBlock(4, 2, mixer=lambda **kw: None)


def test_transformer_lm_shapes_and_errors():
    lm = TransformerLM(vocab=13, d_model=8, n_layers=2, n_heads=2, max_len=6, seed=0)
    tokens = np.array([[1, 2, 3], [4, 5, 12]])
    out = lm(tokens)
    assert out.shape == (2, 3, 13) and out.dtype == np.float32
    assert lm(mm.tensor(tokens)).shape == (2, 3, 13)
    # causal: the logits at position 0 do not depend on later tokens
    other = tokens.copy()
    other[:, 1:] = 0
    np.testing.assert_allclose(lm(other).numpy()[:, 0], out.numpy()[:, 0], rtol=1e-6)
    assert abs(lm.tok.weight.numpy().std() - 0.02) < 0.01          # GPT-2's default init
    big = TransformerLM(13, 8, 1, 2, 6, seed=0, emb_std=1.0)
    assert abs(big.pos.weight.numpy().std() - 1.0) < 0.3
    with pytest.raises(ValueError, match="exceeds max_len=6"):
        lm(np.zeros((1, 7), dtype=np.int64))
    with pytest.raises(ValueError, match=r"tokens must be \(B, T\) integers"):
        lm(np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"TransformerLM: tokens must lie in \[0, 13\)"):
        lm(np.array([[13]]))


# ------------------------------------------------------------------------- gradchecks ---------
# Every registered case runs in tests/apps/test_gradcheck_cases.py.
def test_every_layer_is_registered():
    names = {c.name for c in cases("nn")}
    assert {"Linear", "LayerNorm", "RMSNorm", "MLP (gelu)",
            "MultiHeadAttention (causal)", "TransformerBlock"} <= names


def test_gradcheck_embedding_and_lm_floaleaf(rng):
    emb = Embedding(5, 3, seed=0).double()
    ids = np.array([[0, 2, 2, 4]])
    assert mm.gradcheck(lambda w: functional_call(emb, [w], ids),
                        (leaf(rng, 5, 3),))
    lm = TransformerLM(6, 4, 1, 2, 3, d_ff=4, seed=0).double()
    params = [mm.tensor(p.data + 0.1 * rng.standard_normal(p.shape), requires_grad=True)
              for p in lm.parameters()]
    assert mm.gradcheck(lambda *ps: functional_call(lm, ps, np.array([[1, 5, 0]])),
                        params, fast=True)
