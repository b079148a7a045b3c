"""Titans' architectures: what each token may see, the read / attend / write order of MAC,
persistent tokens, and the LM in train.fit."""
import numpy as np
import pytest

import minimem as mm
from minimem import train
from minimem.autograd import ops
from minimem.memory import (SlidingWindowAttention, TitansLM, TitansMAC, TitansMAG, TitansMAL,
                            mac_mask, window_mask)
from minimem.optim import Adam

D, T = 8, 10


def _x(seed=0):
    return mm.tensor(np.random.default_rng(seed).standard_normal((1, T, D)), dtype=np.float64)


def _changed(layer, j):
    """Which outputs move when input token j is perturbed."""
    x = _x()
    x2 = x.numpy().copy()
    x2[0, j] += 1.0
    with mm.no_grad():
        a, b = layer(x).numpy(), layer(mm.tensor(x2, dtype=np.float64)).numpy()
    return np.abs(a - b).max(-1)[0] > 1e-9


def _layers(theta_max=1.0):
    mm.set_default_dtype(np.float64)
    try:
        return {"mac": TitansMAC(D, 2, segment=4, n_persistent=2, theta_max=theta_max, seed=0),
                "mag": TitansMAG(D, 2, window=3, n_persistent=2, theta_max=theta_max, seed=0),
                "mal": TitansMAL(D, 2, window=3, n_persistent=2, theta_max=theta_max, seed=0)}
    finally:
        mm.set_default_dtype(np.float32)


@pytest.mark.parametrize("name", ["mac", "mag", "mal"])
def test_every_architecture_is_causal_and_its_memory_reaches_past_the_window(name):
    layer = _layers()[name]
    for j in (0, 3, 6):
        moved = _changed(layer, j)
        assert not moved[:j].any(), (name, j)      # no output sees a later token
        assert moved[j:].all(), (name, j)          # and the memory carries it to the end


@pytest.mark.parametrize("name", ["mac", "mag", "mal"])
def test_without_writes_only_the_attention_window_connects_tokens(name):
    """theta_max = 0: the memory never changes, so token 0 reaches only what attention sees:
    the rest of its MAC segment (tokens < 4), or the window of 3 (MAG: tokens < 3; MAL stacks
    the memory before attention, so also < 3)."""
    moved = _changed(_layers(theta_max=0.0)[name], 0)
    reach = 4 if name == "mac" else 3
    assert moved[:reach].all() and not moved[reach:].any()


def test_mac_reads_then_attends_then_writes_per_segment():
    """The MAC forward rebuilt from its parts in the documented order."""
    layer = _layers()["mac"]
    x = _x(1)
    params, outs = layer.memory.initial_params(), []
    for s0 in range(0, T, 4):
        seg = x[:, s0:s0 + 4]
        h = layer.memory.retrieve(seg, params)               # read the previous segments' memory
        P = ops.broadcast_to(layer.persistent.P, (1, 2, D))
        ctx = ops.concatenate([P, h, seg], axis=1)
        keep = mac_mask(seg.shape[1], 2)
        y = layer.attn(seg, context=ctx, mask=keep)          # attend
        read, params = layer.memory.write(y, params)         # write the attention output
        outs.append(y + read)
    want = ops.concatenate(outs, axis=1).numpy()
    np.testing.assert_allclose(layer(x).numpy(), want, atol=1e-12)
    # the segment's retrieved tokens are causal: query t sees h_j for j <= t only
    assert mac_mask(3, 1).tolist() == [[1, 1, 0, 0, 1, 0, 0], [1, 1, 1, 0, 1, 1, 0],
                                       [1, 1, 1, 1, 1, 1, 1]]


def test_sliding_window_mask_and_persistent_tokens():
    assert window_mask(4, 2, 1).astype(int).tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0],
                                                         [1, 0, 1, 1, 0], [1, 0, 0, 1, 1]]
    mm.set_default_dtype(np.float64)
    try:
        swa = SlidingWindowAttention(D, 2, window=2, n_persistent=3, seed=0)
    finally:
        mm.set_default_dtype(np.float32)
    assert swa.persistent.P.shape == (1, 3, D)
    x = _x(2)
    x.requires_grad = True
    swa(x).sum().backward()
    assert np.abs(swa.persistent.P.grad.numpy()).max() > 0   # the tokens are learned
    moved = _changed(swa, 2)
    assert moved.tolist() == [False, False, True, True] + [False] * (T - 4)


def test_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="TitansMAC: segment must be an int >= 1"):
        TitansMAC(D, 2, segment=0)
    with pytest.raises(ValueError, match=r"TitansMAG: d_model \(8\) must be divisible by"):
        TitansMAG(D, 3, window=2)
    with pytest.raises(ValueError, match="SlidingWindowAttention: n_persistent must be an int"):
        SlidingWindowAttention(D, 2, window=2, n_persistent=-1)
    with pytest.raises(ValueError, match="TitansLM: variant must be one of"):
        TitansLM(10, D, 1, 2, 16, variant="rnn")
    with pytest.raises(ValueError, match=r"TitansMAL: expected x of shape \(B, T, 8\)"):
        TitansMAL(D, 2, window=2)(mm.zeros(1, 3, 4))


@pytest.mark.parametrize("variant", ["mac", "mag", "mal", "window", "transformer"])
def test_titans_lm_trains_with_fit(variant):
    model = TitansLM(12, 8, 1, 2, max_len=8, variant=variant, window=4, n_persistent=2,
                     chunk_size=4, seed=0)
    hist = train.fit(model, lambda step: mm.tasks.passkey(12, 8, 4, seed=step), steps=2,
                     optimizer=Adam(model.parameters(), lr=1e-2), eval_every=2,
                     progress=False)
    assert len(hist["loss"]) == 2 and np.isfinite(hist["loss"]).all()


def test_bench_and_tour_follow_the_table():
    from minimem.bench import benchmarks
    from minimem.tour import steps
    bench = benchmarks()["titans"]
    assert bench.DESCRIPTION and "titans" in dict(steps())
    rows = bench.rows_for(16, repeat=1, chunks=(4,), windows=(1, 2))
    assert {r.impl for r in rows} == {bench.LOOP, "chunked C=4", "omega window=1",
                                      "omega window=2"}
    assert all(r.ratio > 0 for r in rows if r.impl not in (bench.LOOP, bench.WINDOW_1))


def test_long_range_experiment_runs_and_checks_its_distance():
    from minimem.memory.titans.lab import long_range_experiment
    r = long_range_experiment(variants=("window",), seeds=(0,), seq_len=12, window=4,
                              d_model=8, steps=2, batch_size=4, n_eval=8)
    assert r["distance"] == 8 and r["chance"] == 2 / 16 and len(r["accuracy"]["window"]) == 1
    with pytest.raises(ValueError, match="long_range_experiment: the key must lie beyond"):
        long_range_experiment(seq_len=8, window=6)
