"""Linear attention: the recurrence equals masked attention without softmax; modes agree."""
import numpy as np
import pytest
from _helpers import tensor64

import minimem as mm
from minimem.memory import linear_attention, linear_attention_reference


def _inputs(rng, B=2, H=3, T=21, Dk=4, Dv=5):
    return (rng.standard_normal((B, H, T, Dk)), rng.standard_normal((B, H, T, Dk)),
            rng.standard_normal((B, H, T, Dv)), rng.standard_normal((B, H, Dk, Dv)))


def _masked_attention(q, k, v, S0, scale):
    """O = tril(s Q K^T) V + s Q S0 (the parallel form, written in the test)."""
    T = q.shape[2]
    A = np.einsum("bhtd,bhsd->bhts", q, k) * scale * np.tril(np.ones((T, T)))
    return A @ v + scale * q @ S0, S0 + np.swapaxes(k, -1, -2) @ v


@pytest.mark.parametrize("mode_args", [{"mode": "recurrent"},
                                       {"mode": "recurrent", "checkpoint": 5},
                                       {"mode": "chunk", "chunk_size": 1},
                                       {"mode": "chunk", "chunk_size": 16},
                                       {"mode": "chunk"}])
def test_matches_parallel_masked_attention(rng, mode_args):
    q, k, v, S0 = _inputs(rng)
    o, S = linear_attention(*map(tensor64, (q, k, v)), initial_state=tensor64(S0),
                            output_final_state=True, **mode_args)
    o_ref, S_ref = _masked_attention(q, k, v, S0, 4 ** -0.5)
    np.testing.assert_allclose(o.numpy(), o_ref, atol=1e-10)
    np.testing.assert_allclose(S.numpy(), S_ref, atol=1e-10)


def test_recurrent_chunk_reference_gradients_agree(rng):
    """Every checkpoint interval (1, 3, T, more than T), the chunk mode and the engine-op
    reference give the same gradients."""
    args = _inputs(rng, T=19)
    do = rng.standard_normal(args[2].shape)
    runs = [{"mode": "recurrent", "checkpoint": c} for c in (1, 3, 19, 40)]
    runs += [{"mode": "chunk", "chunk_size": 8}, None]       # None: the reference
    grads = []
    for mode_args in runs:
        ins = [tensor64(a, True) for a in args]
        if mode_args is None:
            o, S = linear_attention_reference(*ins[:3], scale=0.3, initial_state=ins[3])
        else:
            o, S = linear_attention(*ins[:3], scale=0.3, initial_state=ins[3],
                                    output_final_state=True, **mode_args)
        ((o * tensor64(do)).sum() + (S ** 2).sum()).backward()
        grads.append([x.grad.numpy() for x in ins])
    for other in grads[1:]:
        for a, b in zip(grads[0], other, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("mode,tuning", [("recurrent", "checkpoint"), ("chunk", "chunk_size")])
def test_gradcheck_every_input(rng, mode, tuning):
    ins = [tensor64(a, True) for a in _inputs(rng, B=1, H=1, T=5, Dk=3, Dv=2)]
    mm.gradcheck(lambda q, k, v, s: linear_attention(q, k, v, initial_state=s,
                                                     output_final_state=True, mode=mode,
                                                     **{tuning: 2}), ins)


def test_crosstalk_grows_with_the_number_of_pairs(rng):
    """Reading key i returns v_i plus sum_j (k_i.k_j) v_j: the error grows with N."""
    D = 32
    errs = []
    for N in (4, 32, 128):
        k = rng.standard_normal((N, D))
        k /= np.linalg.norm(k, axis=-1, keepdims=True)
        v = rng.standard_normal((N, D))
        _, S = linear_attention(tensor64(k[None, None]), tensor64(k[None, None]),
                                tensor64(v[None, None]), output_final_state=True)
        errs.append(np.mean((k @ S.numpy()[0, 0] - v) ** 2))
    assert errs[0] < errs[1] < errs[2]
    assert 0.5 < errs[2] / (128 / D) < 2   # noise variance ~ N / D


def test_bad_inputs(rng):
    q, k, v, S0 = (tensor64(a) for a in _inputs(rng, T=3))
    with pytest.raises(ValueError, match=r"linear_attention: q must have shape \(B, H, T, D\)"):
        linear_attention(q[0], k, v)
    with pytest.raises(ValueError, match="linear_attention: v must be"):
        linear_attention(q, k, v[:, :, :2])
    with pytest.raises(TypeError, match="linear_attention: scale must be a real number"):
        linear_attention(q, k, v, scale="big")
    with pytest.raises(TypeError, match="linear_attention: k must be floating"):
        linear_attention(q, mm.tensor(np.ones(k.shape, dtype=np.int64)), v)
    with pytest.raises(TypeError, match=r"linear_attention: checkpoint must be an int >= 1, "
                                         r"got bool False"):
        linear_attention(q, k, v, checkpoint=False)
    with pytest.raises(ValueError, match="linear_attention: checkpoint= .* with mode='chunk'"):
        linear_attention(q, k, v, mode="chunk", checkpoint=4)
    with pytest.raises(ValueError, match="linear_attention: chunk_size= .* with "
                                         "mode='recurrent'"):
        linear_attention(q, k, v, mode="recurrent", chunk_size=4)
