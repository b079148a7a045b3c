"""Delta rule and gated delta rule: recurrent == chunk == reference, gradients, properties."""
import numpy as np
import pytest
from _helpers import tensor64

import minimem as mm
from minimem.autograd.registry import cases
from minimem.memory import (delta_rule, delta_rule_reference, gated_delta_rule,
                            transition_matrix, unit_lower_inverse)


def _inputs(rng, B=2, H=2, T=37, Dk=5, Dv=3):
    q, k = rng.standard_normal((B, H, T, Dk)), rng.standard_normal((B, H, T, Dk))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.standard_normal((B, H, T, Dv))
    beta, g = rng.uniform(0.05, 1.0, (B, H, T)), -rng.uniform(0.0, 0.5, (B, H, T))
    return q, k, v, beta, g, rng.standard_normal((B, H, Dk, Dv))


def _run(gated, args, grad=False, **mode_args):
    """(o, S_T, input tensors) of the (gated) delta rule; ``mode_args``: mode and its tuning."""
    q, k, v, beta, g, S0 = (tensor64(a, grad) for a in args)
    extra = (beta, g) if gated else (beta,)
    fn = gated_delta_rule if gated else delta_rule
    o, S = fn(q, k, v, *extra, initial_state=S0, output_final_state=True, **mode_args)
    return o, S, (q, k, v, beta, g, S0)


def _outputs_and_gradients(gated, args, do, dS, **mode_args):
    """o, S_T and the gradient of <o, do> + <S_T, dS> w.r.t. every input that has one."""
    o, S, ins = _run(gated, args, grad=True, **mode_args)
    ((o * tensor64(do)).sum() + (S * tensor64(dS)).sum()).backward()
    return [o.numpy(), S.numpy()] + [x.grad.numpy() for x in ins if x.grad is not None]


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("C", [1, 16, 64])
def test_recurrent_equals_chunk_forward_and_backward(rng, gated, C):
    args = _inputs(rng)   # T = 37: not a multiple of 16 or 64
    do, dS = rng.standard_normal(args[2].shape), rng.standard_normal(args[5].shape)
    recurrent = _outputs_and_gradients(gated, args, do, dS, mode="recurrent")
    chunk = _outputs_and_gradients(gated, args, do, dS, mode="chunk", chunk_size=C)
    assert len(recurrent) == len(chunk) == 2 + (6 if gated else 5)   # o, S_T, each input
    for a, b in zip(recurrent, chunk, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("gated", [False, True])
def test_checkpoint_interval_changes_nothing_but_memory(rng, gated):
    """The backward replays the states from every ``checkpoint``-th one: 1, 3, T and more
    than T tokens give the same numbers (bit for bit with the Numba kernel; to rounding in a
    homework copy, whose backward is the reference path), and those of the chunk mode."""
    args = _inputs(rng, T=11)
    do, dS = rng.standard_normal(args[2].shape), rng.standard_normal(args[5].shape)
    runs = [_outputs_and_gradients(gated, args, do, dS, mode="recurrent", checkpoint=c)
            for c in (1, 3, 11, 50)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)  # replay recomputes them
    chunk = _outputs_and_gradients(gated, args, do, dS, mode="chunk", chunk_size=4)
    for a, b in zip(runs[0], chunk, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("gated", [False, True])
def test_kernel_function_matches_engine_reference_with_gradients(rng, gated):
    args = _inputs(rng, T=9)
    o, S, ins = _run(gated, args, grad=True, mode="recurrent", checkpoint=4)
    (o.sum() + (S * S).sum()).backward()
    q, k, v, beta, g, S0 = (tensor64(a, True) for a in args)
    o_r, S_r = delta_rule_reference(q, k, v, beta, g if gated else None, initial_state=S0)
    (o_r.sum() + (S_r * S_r).sum()).backward()
    np.testing.assert_allclose(o.numpy(), o_r.numpy(), atol=1e-12)
    np.testing.assert_allclose(S.numpy(), S_r.numpy(), atol=1e-12)
    compared = 0
    for a, b in zip(ins, (q, k, v, beta, g, S0), strict=True):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-10)
            compared += 1
    assert compared == (6 if gated else 5)


EVERY_8 = [{"mode": "recurrent", "checkpoint": 8}, {"mode": "chunk", "chunk_size": 8}]


@pytest.mark.parametrize("mode_args", EVERY_8)
def test_gated_with_zero_decay_equals_ungated(rng, mode_args):
    q, k, v, beta, g, S0 = (tensor64(a) for a in _inputs(rng))
    o1, S1 = delta_rule(q, k, v, beta, initial_state=S0, output_final_state=True, **mode_args)
    o2, S2 = gated_delta_rule(q, k, v, beta, tensor64(np.zeros(g.shape)), initial_state=S0,
                              output_final_state=True, **mode_args)
    np.testing.assert_allclose(o1.numpy(), o2.numpy(), atol=1e-12)
    np.testing.assert_allclose(S1.numpy(), S2.numpy(), atol=1e-12)


@pytest.mark.parametrize("mode_args", EVERY_8)
def test_state_continuation_equals_one_pass(rng, mode_args):
    q, k, v, beta, g, S0 = _inputs(rng, T=30)
    full, S_full = gated_delta_rule(*map(tensor64, (q, k, v, beta, g)),
                                    initial_state=tensor64(S0), output_final_state=True,
                                    **mode_args)
    cut = 13
    part = lambda a, sl: tensor64(a[:, :, sl])  # noqa: E731
    o1, S1 = gated_delta_rule(*(part(a, slice(0, cut)) for a in (q, k, v, beta, g)),
                              initial_state=tensor64(S0), output_final_state=True, **mode_args)
    o2, S2 = gated_delta_rule(*(part(a, slice(cut, None)) for a in (q, k, v, beta, g)),
                              initial_state=S1, output_final_state=True, **mode_args)
    np.testing.assert_allclose(np.concatenate([o1.numpy(), o2.numpy()], axis=2), full.numpy(),
                               atol=1e-10)
    np.testing.assert_allclose(S2.numpy(), S_full.numpy(), atol=1e-10)


@pytest.mark.parametrize("mode,tuning", [("recurrent", "checkpoint"), ("chunk", "chunk_size")])
def test_gradcheck_every_input_including_initial_state(rng, mode, tuning):
    q, k, v, beta, g, S0 = (tensor64(a, True) for a in _inputs(rng, B=1, H=1, T=5, Dk=3, Dv=2))
    mm.gradcheck(lambda *xs: gated_delta_rule(*xs[:5], initial_state=xs[5],
                                              output_final_state=True, mode=mode,
                                              **{tuning: 2}),
                 (q, k, v, beta, g, S0))
    mm.gradcheck(lambda *xs: delta_rule(*xs[:4], initial_state=xs[4], output_final_state=True,
                                        mode=mode, **{tuning: 3}), (q, k, v, beta, S0))


@pytest.mark.parametrize("gated", [False, True])
def test_chunk_forward_is_the_same_with_and_without_a_tape(rng, gated):
    # the chunk scan keeps S_n and U'_n only when a backward can follow: both paths must agree
    args = _inputs(rng, T=21)
    o_free, S_free, _ = _run(gated, args, grad=False, mode="chunk", chunk_size=8)
    o_taped, S_taped, _ = _run(gated, args, grad=True, mode="chunk", chunk_size=8)
    o_rec, S_rec, _ = _run(gated, args, mode="recurrent")
    for a, b in ((o_free, o_taped), (S_free, S_taped), (o_free, o_rec), (S_free, S_rec)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-11)


def test_every_mechanism_has_a_gradcheck_case_in_each_mode():
    names = {c.name for c in cases("delta")}
    want = {f"{fn} ({mode})" for fn in ("linear_attention", "delta_rule", "gated_delta_rule")
            for mode in ("recurrent", "chunk")} | {"unit_lower_inverse"}
    assert want <= names, want - names


def test_unit_lower_inverse_is_the_inverse(rng):
    A = np.tril(rng.standard_normal((3, 6, 6)), -1)
    X = unit_lower_inverse(tensor64(A)).numpy()
    np.testing.assert_allclose(X @ (np.eye(6) + A), np.broadcast_to(np.eye(6), (3, 6, 6)),
                               atol=1e-10)


@pytest.mark.parametrize("mode_args", EVERY_8)
def test_beta_one_with_orthonormal_keys_retrieves_exactly(rng, mode_args):
    D = 16
    keys = np.linalg.qr(rng.standard_normal((D, D)))[0].T          # rows orthonormal
    vals = rng.standard_normal((D, 4))
    # write every pair twice with *different* values first: the delta rule overwrites
    k = tensor64(np.concatenate([keys, keys])[None, None])
    v = tensor64(np.concatenate([rng.standard_normal((D, 4)), vals])[None, None])
    _, S = delta_rule(k, k, v, tensor64(np.ones((1, 1, 2 * D))), scale=1.0,
                      output_final_state=True, **mode_args)
    np.testing.assert_allclose(keys @ S.numpy()[0, 0], vals, atol=1e-10)


@pytest.mark.parametrize("beta", [0.3, 1.0, 1.7])
def test_beta_in_0_2_is_stable_and_outside_is_not(rng, beta):
    D, T = 8, 400
    k = rng.standard_normal((1, 1, T, D))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    k, v = tensor64(k), tensor64(rng.standard_normal((1, 1, T, 2)))
    _, S = delta_rule(k, k, v, tensor64(np.full((1, 1, T), beta)), output_final_state=True)
    assert np.abs(S.numpy()).max() < 10
    _, S_bad = delta_rule(k, k, v, tensor64(np.full((1, 1, T), 2.5)), output_final_state=True)
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
    o64, _ = delta_rule(*map(tensor64, (q, k, v, beta)))
    np.testing.assert_allclose(o.numpy(), o64.numpy(), rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise_clear_errors(rng):
    q, k, v, beta, g, S0 = (tensor64(a) for a in _inputs(rng, T=4))
    with pytest.raises(ValueError, match=r"delta_rule: beta must have shape \(B, H, T\)"):
        delta_rule(q, k, v, beta[:, :, :2])
    with pytest.raises(ValueError, match="gated_delta_rule: g is a log-decay"):
        gated_delta_rule(q, k, v, beta, tensor64(-g.numpy()))
    with pytest.raises(ValueError, match="delta_rule: mode must be one of"):
        delta_rule(q, k, v, beta, mode="parallel")
    with pytest.raises(ValueError, match="delta_rule: k must have the shape of q"):
        delta_rule(q, k[:, :, :, :2], v, beta)
    with pytest.raises(ValueError, match="delta_rule: initial_state must have shape"):
        delta_rule(q, k, v, beta, initial_state=S0[:, :, :2])
    with pytest.raises(TypeError, match="delta_rule: q must be a Tensor"):
        delta_rule([1.0], k, v, beta)
    with pytest.raises(TypeError, match="gated_delta_rule: g is required"):
        gated_delta_rule(q, k, v, beta, None)


@pytest.mark.parametrize("bad, error, got", [(0, ValueError, "0"), (-2, ValueError, "-2"),
                                             (2.5, TypeError, "float 2.5"),
                                             (True, TypeError, "bool True"),
                                             ("8", TypeError, "str '8'")])
def test_bad_checkpoint_and_chunk_size_raise(rng, bad, error, got):
    """A token count is an int >= 1: a wrong value is a ValueError, a wrong kind a TypeError."""
    q, k, v, beta, g, _ = (tensor64(a) for a in _inputs(rng, T=4))
    with pytest.raises(error, match=f"gated_delta_rule: checkpoint must be an int >= 1, "
                                    f"got {got}$"):
        gated_delta_rule(q, k, v, beta, g, mode="recurrent", checkpoint=bad)
    with pytest.raises(error, match=f"delta_rule: chunk_size must be an int >= 1, got {got}$"):
        delta_rule(q, k, v, beta, mode="chunk", chunk_size=bad)


def test_each_tuning_argument_belongs_to_its_mode(rng):
    q, k, v, beta, _, _ = (tensor64(a) for a in _inputs(rng, T=4))
    with pytest.raises(ValueError, match="delta_rule: checkpoint= is the state-saving interval "
                                         "of mode='recurrent'; got checkpoint=8 with "
                                         "mode='chunk'"):
        delta_rule(q, k, v, beta, mode="chunk", checkpoint=8)
    with pytest.raises(ValueError, match="delta_rule: chunk_size= is the chunk length of "
                                         "mode='chunk'; got chunk_size=8 with "
                                         "mode='recurrent'"):
        delta_rule(q, k, v, beta, chunk_size=8)            # mode="recurrent" is the default
