"""Titans neural memory: the surprise rule, its chunked form, the gated delta rule link."""
import numpy as np
import pytest
from _helpers import tensor64

import minimem as mm
from minimem.autograd.registry import cases
from minimem.memory import (NeuralMemory, gated_delta_rule, memory_gradient, neural_memory,
                            neural_memory_reference, titans_as_gated_delta)


def _inputs(rng, B=2, H=2, T=9, D=4):
    q, k, v = (rng.standard_normal((B, H, T, D)) for _ in range(3))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    theta, alpha = rng.uniform(0.05, 0.45, (B, H, T)), rng.uniform(0.0, 0.3, (B, H, T))
    return q, k, v, theta, alpha, rng.standard_normal((B, H, D, D))


@pytest.mark.parametrize("mode_args", [{"mode": "recurrent", "checkpoint": 4},
                                       {"mode": "chunk", "chunk_size": 4}])
def test_linear_memory_without_momentum_is_the_gated_delta_rule(rng, mode_args):
    q, k, v, theta, alpha, M0 = _inputs(rng)
    o, (M,) = neural_memory(*map(tensor64, (q, k, v, theta, np.zeros_like(theta), alpha)),
                            (tensor64(M0),), memory="linear")
    # the mapping, written out here: a = 1 - alpha, beta = 2 theta / (1 - alpha), v' = a v
    a = 1 - alpha
    o2, S = gated_delta_rule(*map(tensor64, (q, k, v * a[..., None], 2 * theta / a, np.log(a))),
                             scale=1.0, initial_state=tensor64(M0), output_final_state=True,
                             **mode_args)
    np.testing.assert_allclose(o.numpy(), o2.numpy(), atol=1e-10)
    np.testing.assert_allclose(M.numpy(), S.numpy(), atol=1e-10)
    o3, S3 = titans_as_gated_delta(*map(tensor64, (q, k, v, theta, alpha, M0)), **mode_args)
    np.testing.assert_allclose(o3.numpy(), o.numpy(), atol=1e-10)
    np.testing.assert_allclose(S3.numpy(), M.numpy(), atol=1e-10)


def test_momentum_changes_the_memory_as_the_rule_says(rng):
    """Two steps by hand: Sigma_2 = eta_2 Sigma_1 - theta_2 grad_2, M_2 = (1-a_2) M_1 + Sigma_2."""
    q, k, v, theta, alpha, M0 = _inputs(rng, B=1, H=1, T=2, D=3)
    eta = np.array([[[0.0, 0.7]]])
    _, (M,) = neural_memory(*map(tensor64, (q, k, v, theta, eta, alpha)), (tensor64(M0),),
                            "linear")
    Mh, Sig = M0[0, 0], np.zeros((3, 3))
    for t in range(2):
        kt, vt = k[0, 0, t], v[0, 0, t]
        grad = 2 * np.outer(kt, Mh.T @ kt - vt)
        Sig = eta[0, 0, t] * Sig - theta[0, 0, t] * grad
        Mh = (1 - alpha[0, 0, t]) * Mh + Sig
    np.testing.assert_allclose(M.numpy()[0, 0], Mh, atol=1e-12)


def test_mlp_memory_gradient_matches_autograd(rng):
    W1, W2 = (tensor64(rng.standard_normal(shape)) for shape in ((1, 2, 3, 5), (1, 2, 5, 3)))
    k, v = rng.standard_normal((1, 2, 3)), rng.standard_normal((1, 2, 3))
    g1, g2 = memory_gradient("mlp", (W1, W2), tensor64(k), tensor64(v))
    A, Bm = tensor64(W1.numpy(), True), tensor64(W2.numpy(), True)
    h = mm.silu(mm.einsum("bhik,bhi->bhk", A, tensor64(k)))
    loss = ((mm.einsum("bhkj,bhk->bhj", Bm, h) - tensor64(v)) ** 2).sum()
    loss.backward()
    np.testing.assert_allclose(g1.numpy(), A.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(g2.numpy(), Bm.grad.numpy(), atol=1e-12)


def test_mlp_memory_learns_an_association_at_test_time(rng):
    """Writing the same pair repeatedly drives the MLP memory's read-out towards v."""
    D, T = 4, 30
    k = np.tile(rng.standard_normal(D) / 2, (1, 1, T, 1))
    v = np.tile(rng.standard_normal(D), (1, 1, T, 1))
    W1, W2 = rng.standard_normal((1, 1, D, 8)) * 0.3, rng.standard_normal((1, 1, 8, D)) * 0.3
    o, _ = neural_memory(tensor64(k), tensor64(k), tensor64(v), tensor64(np.full((1, 1, T), 0.05)),
                         tensor64(np.full((1, 1, T), 0.5)), tensor64(np.zeros((1, 1, T))),
                         (tensor64(W1), tensor64(W2)), memory="mlp")
    err = np.linalg.norm(o.numpy()[0, 0] - v[0, 0], axis=-1)
    assert err[-1] < 0.05 * err[0]


def test_neural_memory_cases_are_registered_and_the_layer_runs():
    names = {c.name for c in cases("titans")}
    assert {"neural_memory (linear, chunk 2)", "neural_memory (mlp, chunk 2)",
            "NeuralMemory (mlp, chunk 2)"} <= names
    layer = NeuralMemory(8, 2, memory="linear", seed=0)
    y = layer(mm.randn(2, 5, 8, seed=1))
    assert y.shape == (2, 5, 8)
    with pytest.raises(ValueError, match="NeuralMemory: memory must be one of"):
        NeuralMemory(8, 2, memory="tree")
    with pytest.raises(ValueError, match=r"neural_memory: theta must have shape \(B, H, T\) "
                                         r"= \(1, 1, 3\), got \(1, 1, 2\)"):
        neural_memory(mm.zeros(1, 1, 3, 2), mm.zeros(1, 1, 3, 2), mm.zeros(1, 1, 3, 2),
                      mm.zeros(1, 1, 2), mm.zeros(1, 1, 3), mm.zeros(1, 1, 3),
                      (mm.zeros(1, 1, 2, 2),))


def _chunk_inputs(rng, memory, B=2, H=2, T=9, D=3, Dh=4):
    q, k, v = (tensor64(0.7 * rng.standard_normal((B, H, T, D)), True) for _ in range(3))
    gates = [tensor64(rng.uniform(lo, hi, (B, H, T)), True)
             for lo, hi in ((0.05, 0.3), (0.0, 0.9), (0.0, 0.3))]
    shapes = [(1, H, D, D)] if memory == "linear" else [(1, H, D, Dh), (1, H, Dh, D)]
    params = tuple(tensor64(0.5 * rng.standard_normal(s), True) for s in shapes)
    return (q, k, v, *gates), params


def _loop_by_hand(q, k, v, theta, eta, alpha, M0, C):
    """The chunked definition in plain NumPy (linear memory): every gradient of a chunk is
    taken at the memory M_{t0-1} left by the previous chunk."""
    B, H, T, _ = q.shape
    out = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            M, Sig = M0[0, h].copy(), np.zeros_like(M0[0, h])
            for t in range(T):
                if t % C == 0:
                    base = M.copy()
                grad = 2 * np.outer(k[b, h, t], base.T @ k[b, h, t] - v[b, h, t])
                Sig = eta[b, h, t] * Sig - theta[b, h, t] * grad
                M = (1 - alpha[b, h, t]) * M + Sig
                out[b, h, t] = M.T @ q[b, h, t]
    return out


@pytest.mark.parametrize("C", [1, 2, 4, 9, 16])
def test_chunked_linear_memory_is_the_loop_definition_written_by_hand(rng, C):
    inputs, (M0,) = _chunk_inputs(rng, "linear")
    o, _ = neural_memory(*inputs, (M0,), "linear", chunk_size=C)
    want = _loop_by_hand(*(x.numpy() for x in inputs), M0.numpy(), C)
    np.testing.assert_allclose(o.numpy(), want, atol=1e-10)


@pytest.mark.parametrize("memory", ["linear", "mlp"])
@pytest.mark.parametrize("C", [1, 3, 4])
def test_chunked_form_equals_the_reference_loop_forward_and_backward(rng, memory, C):
    inputs, params = _chunk_inputs(rng, memory)
    leaves = (*inputs, *params)
    w = rng.standard_normal(inputs[2].shape)
    results = []
    for fn in (neural_memory, neural_memory_reference):
        for x in leaves:
            x.grad = None
        o, final = fn(*inputs, params, memory, chunk_size=C)
        (o * tensor64(w)).sum().backward()
        results.append((o.numpy(), [p.numpy() for p in final], [x.grad.numpy() for x in leaves]))
    (o1, p1, g1), (o2, p2, g2) = results
    np.testing.assert_allclose(o1, o2, atol=1e-10)
    for a, b in zip(p1 + g1, p2 + g2):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_chunk_size_one_is_the_token_rule_and_larger_chunks_differ(rng):
    inputs, params = _chunk_inputs(rng, "mlp")
    o1 = neural_memory(*inputs, params, "mlp")[0].numpy()
    o_ref = neural_memory_reference(*inputs, params, "mlp", chunk_size=1)[0].numpy()
    np.testing.assert_allclose(o1, o_ref, atol=1e-12)
    o4 = neural_memory(*inputs, params, "mlp", chunk_size=4)[0].numpy()
    # the first token of each chunk reads the same memory; later ones do not
    np.testing.assert_allclose(o4[:, :, 0], o1[:, :, 0], atol=1e-12)
    assert np.abs(o4[:, :, 2] - o1[:, :, 2]).max() > 1e-4


def test_neural_memory_rejects_bad_inputs():
    z = mm.zeros(1, 1, 3, 2, dtype=np.float64)
    g = mm.zeros(1, 1, 3, dtype=np.float64)
    M = (mm.zeros(1, 1, 2, 2, dtype=np.float64),)
    with pytest.raises(ValueError, match="neural_memory: chunk_size must be an int >= 1"):
        neural_memory(z, z, z, g, g, g, M, chunk_size=0)
    with pytest.raises(TypeError, match="neural_memory: chunk_size must be an int"):
        neural_memory(z, z, z, g, g, g, M, chunk_size=2.0)
    with pytest.raises(ValueError, match=r"neural_memory: params0 must map D_k = 2 to D_v = 2"):
        neural_memory(z, z, z, g, g, g, (mm.zeros(1, 1, 3, 2, dtype=np.float64),))
    with pytest.raises(ValueError, match="neural_memory: memory must be one of"):
        neural_memory(z, z, z, g, g, g, M, memory="tree")
    with pytest.raises(ValueError, match=r"neural_memory: params0\[0\] must have batch and head"):
        neural_memory(z, z, z, g, g, g, (mm.zeros(1, 2, 2, 2, dtype=np.float64),))
    with pytest.raises(TypeError, match="neural_memory: argument 'q' must be floating"):
        neural_memory(mm.zeros(1, 1, 3, 2, dtype=np.int64), z, z, g, g, g, M)
    with pytest.raises(ValueError, match=r"neural_memory: v must have shape \(B, H, T, D_v\)"):
        neural_memory(z, z, mm.zeros(1, 1, 4, 2, dtype=np.float64), g, g, g, M)
