"""Delta rule and gated delta rule: recurrent == chunk == reference, gradients, properties."""
import numpy as np
import pytest

import minimem as mm
from minimem.autograd.registry import cases, run_case
from minimem.memory import (delta_rule, delta_rule_reference, gated_delta_rule,
                            transition_matrix, unit_lower_inverse)


def _t(x, grad=False):
    return mm.tensor(x, requires_grad=grad, dtype=np.float64)


def _inputs(rng, B=2, H=2, T=37, Dk=5, Dv=3):
    q, k = rng.standard_normal((B, H, T, Dk)), rng.standard_normal((B, H, T, Dk))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.standard_normal((B, H, T, Dv))
    beta, g = rng.uniform(0.05, 1.0, (B, H, T)), -rng.uniform(0.0, 0.5, (B, H, T))
    return q, k, v, beta, g, rng.standard_normal((B, H, Dk, Dv))


def _run(gated, mode, C, args, grad=False):
    q, k, v, beta, g, S0 = (_t(a, grad) for a in args)
    extra = (beta, g) if gated else (beta,)
    fn = gated_delta_rule if gated else delta_rule
    o, S = fn(q, k, v, *extra, initial_state=S0, output_final_state=True, mode=mode,
              chunk_size=C)
    return o, S, (q, k, v, beta, g, S0)


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("C", [1, 16, 64])
def test_recurrent_equals_chunk_forward_and_backward(rng, gated, C):
    args = _inputs(rng)   # T = 37: not a multiple of 16 or 64
    do, dS = rng.standard_normal(args[2].shape), rng.standard_normal(args[5].shape)
    results = []
    for mode in ("recurrent", "chunk"):
        o, S, ins = _run(gated, mode, C, args, grad=True)
        ((o * _t(do)).sum() + (S * _t(dS)).sum()).backward()
        results.append((o.numpy(), S.numpy(), [x.grad.numpy() for x in ins
                                               if x.grad is not None]))
    (o1, S1, g1), (o2, S2, g2) = results
    np.testing.assert_allclose(o1, o2, atol=1e-10)
    np.testing.assert_allclose(S1, S2, atol=1e-10)
    assert len(g1) == len(g2) == (6 if gated else 5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("gated", [False, True])
def test_kernel_function_matches_engine_reference_with_gradients(rng, gated):
    args = _inputs(rng, T=9)
    o, S, ins = _run(gated, "recurrent", 4, args, grad=True)
    (o.sum() + (S * S).sum()).backward()
    q, k, v, beta, g, S0 = (_t(a, True) for a in args)
    o_r, S_r = delta_rule_reference(q, k, v, beta, g if gated else None, initial_state=S0)
    (o_r.sum() + (S_r * S_r).sum()).backward()
    np.testing.assert_allclose(o.numpy(), o_r.numpy(), atol=1e-12)
    for a, b in zip(ins, (q, k, v, beta, g, S0)):
        if a.grad is not None:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-10)


def test_gated_with_zero_decay_equals_ungated(rng):
    q, k, v, beta, g, S0 = _inputs(rng)
    for mode in ("recurrent", "chunk"):
        o1, S1 = delta_rule(_t(q), _t(k), _t(v), _t(beta), initial_state=_t(S0),
                            output_final_state=True, mode=mode, chunk_size=8)
        o2, S2 = gated_delta_rule(_t(q), _t(k), _t(v), _t(beta), _t(np.zeros_like(g)),
                                  initial_state=_t(S0), output_final_state=True, mode=mode,
                                  chunk_size=8)
        np.testing.assert_allclose(o1.numpy(), o2.numpy(), atol=1e-12)
        np.testing.assert_allclose(S1.numpy(), S2.numpy(), atol=1e-12)


@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_state_continuation_equals_one_pass(rng, mode):
    q, k, v, beta, g, S0 = _inputs(rng, T=30)
    full, S_full = gated_delta_rule(_t(q), _t(k), _t(v), _t(beta), _t(g), initial_state=_t(S0),
                                    output_final_state=True, mode=mode, chunk_size=8)
    cut = 13
    part = lambda a, sl: _t(a[:, :, sl])  # noqa: E731
    o1, S1 = gated_delta_rule(*(part(a, slice(0, cut)) for a in (q, k, v, beta, g)),
                              initial_state=_t(S0), output_final_state=True, mode=mode,
                              chunk_size=8)
    o2, S2 = gated_delta_rule(*(part(a, slice(cut, None)) for a in (q, k, v, beta, g)),
                              initial_state=S1, output_final_state=True, mode=mode, chunk_size=8)
    np.testing.assert_allclose(np.concatenate([o1.numpy(), o2.numpy()], axis=2), full.numpy(),
                               atol=1e-10)
    np.testing.assert_allclose(S2.numpy(), S_full.numpy(), atol=1e-10)


@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_gradcheck_every_input_including_initial_state(rng, mode):
    q, k, v, beta, g, S0 = (_t(a, True) for a in _inputs(rng, B=1, H=1, T=5, Dk=3, Dv=2))
    mm.gradcheck(lambda *xs: gated_delta_rule(*xs[:5], initial_state=xs[5],
                                              output_final_state=True, mode=mode, chunk_size=2),
                 (q, k, v, beta, g, S0))
    mm.gradcheck(lambda *xs: delta_rule(*xs[:4], initial_state=xs[4], output_final_state=True,
                                        mode=mode, chunk_size=3), (q, k, v, beta, S0))


@pytest.mark.parametrize("gated", [False, True])
def test_chunk_forward_is_the_same_with_and_without_a_tape(rng, gated):
    # the chunk scan keeps S_n and U'_n only when a backward can follow: both paths must agree
    args = _inputs(rng, T=21)
    o_free, S_free, _ = _run(gated, "chunk", 8, args, grad=False)
    o_taped, S_taped, _ = _run(gated, "chunk", 8, args, grad=True)
    o_rec, S_rec, _ = _run(gated, "recurrent", 8, args)
    for a, b in ((o_free, o_taped), (S_free, S_taped), (o_free, o_rec), (S_free, S_rec)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-11)


def test_registered_gradcheck_cases_pass():
    names = [c.name for c in cases("delta")]
    for want in ("delta_rule (recurrent)", "gated_delta_rule (chunk)", "unit_lower_inverse",
                 "DeltaNet (chunk)", "GatedDeltaNet (recurrent)"):
        assert want in names
    for c in cases("delta"):
        if "rule" in c.name or c.name == "unit_lower_inverse":
            assert run_case(c)["passed"], c.name


def test_unit_lower_inverse_is_the_inverse(rng):
    A = np.tril(rng.standard_normal((3, 6, 6)), -1)
    X = unit_lower_inverse(_t(A)).numpy()
    np.testing.assert_allclose(X @ (np.eye(6) + A), np.broadcast_to(np.eye(6), (3, 6, 6)),
                               atol=1e-10)


def test_beta_one_with_orthonormal_keys_retrieves_exactly(rng):
    D = 16
    keys = np.linalg.qr(rng.standard_normal((D, D)))[0].T          # rows orthonormal
    vals = rng.standard_normal((D, 4))
    # write every pair twice with *different* values first: the delta rule overwrites
    k = np.concatenate([keys, keys])[None, None]
    v = np.concatenate([rng.standard_normal((D, 4)), vals])[None, None]
    for mode in ("recurrent", "chunk"):
        _, S = delta_rule(_t(k), _t(k), _t(v), _t(np.ones((1, 1, 2 * D))), scale=1.0,
                          output_final_state=True, mode=mode, chunk_size=8)
        np.testing.assert_allclose(keys @ S.numpy()[0, 0], vals, atol=1e-10)


@pytest.mark.parametrize("beta", [0.3, 1.0, 1.7])
def test_beta_in_0_2_is_stable_and_outside_is_not(rng, beta):
    D, T = 8, 400
    k = rng.standard_normal((1, 1, T, D))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.standard_normal((1, 1, T, 2))
    _, S = delta_rule(_t(k), _t(k), _t(v), _t(np.full((1, 1, T), beta)), output_final_state=True)
    assert np.abs(S.numpy()).max() < 10
    _, S_bad = delta_rule(_t(k), _t(k), _t(v), _t(np.full((1, 1, T), 2.5)),
                          output_final_state=True)
    assert np.abs(S_bad.numpy()).max() > 1e3


def test_transition_matrix_eigenvalues(rng):
    k = rng.standard_normal(6)
    k /= np.linalg.norm(k)
    ev = np.sort(np.linalg.eigvalsh(transition_matrix(k, 0.8)))
    np.testing.assert_allclose(ev, [0.2, 1, 1, 1, 1, 1], atol=1e-12)
    with pytest.raises(ValueError, match="transition_matrix: k must be a vector"):
        transition_matrix(np.ones((2, 2)), 1.0)


def test_default_dtype_float32_and_defaults(rng):
    q, k, v, beta, g, S0 = (a.astype(np.float32) for a in _inputs(rng, T=6))
    o, S = delta_rule(mm.tensor(q), mm.tensor(k), mm.tensor(v), mm.tensor(beta))
    assert o.dtype == np.float32 and S is None and o.shape == (2, 2, 6, 3)
    o64, _ = delta_rule(_t(q), _t(k), _t(v), _t(beta))
    np.testing.assert_allclose(o.numpy(), o64.numpy(), rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise_clear_errors(rng):
    q, k, v, beta, g, S0 = (_t(a) for a in _inputs(rng, T=4))
    with pytest.raises(ValueError, match=r"delta_rule: beta must have shape \(B, H, T\)"):
        delta_rule(q, k, v, beta[:, :, :2])
    with pytest.raises(ValueError, match="gated_delta_rule: g is a log-decay"):
        gated_delta_rule(q, k, v, beta, _t(-g.numpy()))
    with pytest.raises(ValueError, match="delta_rule: mode must be one of"):
        delta_rule(q, k, v, beta, mode="parallel")
    with pytest.raises(ValueError, match="delta_rule: k must have the shape of q"):
        delta_rule(q, k[:, :, :, :2], v, beta)
    with pytest.raises(ValueError, match="delta_rule: initial_state must have shape"):
        delta_rule(q, k, v, beta, initial_state=S0[:, :, :2])
    with pytest.raises(ValueError, match="gated_delta_rule: chunk_size must be an int"):
        gated_delta_rule(q, k, v, beta, g, chunk_size=0)
    with pytest.raises(TypeError, match="delta_rule: q must be a Tensor"):
        delta_rule([1.0], k, v, beta)
    with pytest.raises(TypeError, match="gated_delta_rule: g is required"):
        gated_delta_rule(q, k, v, beta, None)
