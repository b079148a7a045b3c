"""Synthetic memory tasks: structure of every example, determinism per seed, errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minimem.tasks import (IGNORE, TASKS, copy_task, format_example, induction_heads, mqar,
                           passkey, reverse_task)


def _check_mqar(x, y, V, n):
    """Every query's target is the value paired with that key in the context (naive loop)."""
    assert x.dtype == y.dtype == np.int64
    for b in range(len(x)):
        keys, values = x[b, 0:2 * n:2], x[b, 1:2 * n:2]
        assert len(set(keys.tolist())) == n, "keys unique within an example"
        assert len(set(values.tolist())) == n
        assert ((1 <= keys) & (keys < V // 2)).all()
        assert ((V // 2 <= values) & (values < V)).all()
        pairs = dict(zip(keys.tolist(), values.tolist()))
        (qpos,) = np.nonzero(y[b] != IGNORE)
        assert len(qpos) == n
        assert (qpos >= 2 * n).all() and ((qpos - 2 * n) % 2 == 0).all()
        assert sorted(x[b, qpos].tolist()) == sorted(keys.tolist()), "each key queried once"
        for t in qpos:
            assert y[b, t] == pairs[x[b, t]]


@given(n=st.integers(1, 6), extra=st.integers(0, 20), V=st.integers(16, 80),
       seed=st.integers(0, 10**6), fill=st.booleans())
def test_mqar_structure(n, extra, V, seed, fill):
    T = 4 * n + extra
    x, y = mqar(V, T, n, 7, seed=seed, random_fill=fill)
    assert x.shape == y.shape == (7, T)
    _check_mqar(x, y, V, n)
    assert ((0 <= x) & (x < V)).all()
    if not fill:  # filler is token 0 everywhere but the context and the queries
        assert ((x == 0) == ((y == IGNORE) & (np.arange(T) >= 2 * n))).all()


def test_mqar_acceptance_setting_and_determinism():
    x, y = mqar(64, 64, 4, 200, seed=3)
    _check_mqar(x, y, 64, 4)
    x2, y2 = mqar(64, 64, 4, 200, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = mqar(64, 64, 4, 200, seed=4)
    assert not np.array_equal(x, x3)


def test_mqar_gaps_favour_short_distances():
    """Power law a (g+1)^(a-1): the first query slot is the likeliest, counts fall with g."""
    n, T = 1, 42   # 20 slots, one query: its slot follows P(g) exactly
    _, y = mqar(64, T, n, 20000, seed=0)
    slot = (np.argmax(y != IGNORE, axis=1) - 2 * n) // 2
    counts = np.bincount(slot, minlength=20)
    p = 0.01 * np.arange(1, 21) ** (0.01 - 1)
    p /= p.sum()
    np.testing.assert_allclose(counts / counts.sum(), p, atol=0.01)
    assert counts[0] > counts[5] > counts[19]


def test_mqar_errors():
    with pytest.raises(ValueError, match=r"4\*n_kv <= seq_len"):
        mqar(64, 15, 4, 10)
    with pytest.raises(ValueError, match="vocab too small"):
        mqar(8, 64, 4, 10)       # keys from [1, 4): only 3
    with pytest.raises(TypeError, match="mqar: n_kv must be an int"):
        mqar(64, 64, 2.5, 10)
    with pytest.raises(ValueError, match="mqar: n_examples must be an int >= 1"):
        mqar(64, 64, 4, 0)
    with pytest.raises(TypeError, match="seed"):
        mqar(64, 64, 4, 10, seed=-1)
    with pytest.raises(ValueError, match="power_a"):
        mqar(64, 64, 4, 10, power_a=0)


@pytest.mark.parametrize("fn, answer", [(copy_task, lambda x: x),
                                        (reverse_task, lambda x: x[::-1])])
@pytest.mark.parametrize("T, L", [(12, None), (13, 4), (2, 1)])
def test_copy_and_reverse(fn, answer, T, L):
    x, y = fn(9, T, 5, seed=1, n_tokens=L)
    L = T // 2 if L is None else L
    for b in range(5):
        src = x[b, :L]
        assert ((1 <= src) & (src < 9)).all()
        assert x[b, L] == 0
        want = answer(src)
        np.testing.assert_array_equal(y[b, L:2 * L], want)
        np.testing.assert_array_equal(x[b, L + 1:2 * L], want[:-1])  # teacher forcing
        assert (y[b, :L] == IGNORE).all() and (y[b, 2 * L:] == IGNORE).all()


def test_passkey():
    x, y = passkey(20, 32, 50, seed=0)
    for b in range(50):
        (mark,) = np.nonzero(x[b] == 0)
        assert len(mark) == 1 and mark[0] <= (32 - 2) // 4
        key = x[b, mark[0] + 1]
        assert 10 <= key < 20
        assert x[b, -1] == 1 and y[b, -1] == key
        assert (y[b, :-1] == IGNORE).all()
        others = np.delete(x[b], [mark[0], mark[0] + 1, 31])
        assert ((2 <= others) & (others < 10)).all()
    x, y = passkey(20, 32, 3, seed=0, key_pos=29)
    assert (x[:, 29] == 0).all() and (y[:, -1] == x[:, 30]).all()


def test_induction_heads():
    x, y = induction_heads(30, 21, 40, seed=2)
    L = 10
    for b in range(40):
        seg = x[b, :L]
        assert len(set(seg.tolist())) == L
        np.testing.assert_array_equal(x[b, L:2 * L], seg)
        assert x[b, 20] == 0 and y[b, 20] == IGNORE
        # the target at each input in the second copy is the token after its first occurrence
        for t in range(L, 2 * L - 1):
            first = int(np.nonzero(x[b, :L] == x[b, t])[0][0])
            assert y[b, t] == x[b, first + 1]
        assert (y[b, :L] == IGNORE).all() and y[b, 2 * L - 1] == IGNORE


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_is_seeded(name):
    fn = TASKS[name]
    args = (64, 32, 4) if name == "mqar" else (64, 32)
    a = fn(*args, 6, seed=11)
    b = fn(*args, 6, seed=11)
    c = fn(*args, 6, seed=12)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == a[1].dtype == np.int64 and a[0].shape == (6, 32)


def test_task_errors():
    with pytest.raises(ValueError, match=r"2\*n_tokens <= seq_len"):
        copy_task(10, 7, 3, n_tokens=4)
    with pytest.raises(ValueError, match=r"2\*n_tokens <= seq_len"):
        reverse_task(10, 7, 3, n_tokens=4)
    with pytest.raises(ValueError, match="vocab too small"):
        induction_heads(5, 20, 3)     # 10 distinct tokens from [1, 5)
    with pytest.raises(ValueError, match="vocab too small.*>= 6"):
        passkey(5, 20, 3)
    with pytest.raises(ValueError, match=r"key_pos <= seq_len - 3"):
        passkey(10, 20, 3, key_pos=18)


def test_format_example():
    x, y = copy_task(10, 6, 2, seed=0)
    lines = format_example(x, y, index=1).splitlines()
    assert [ln.split("|")[0].strip() for ln in lines] == ["pos", "input", "target"]
    assert lines[1].split("|")[1].split() == [str(v) for v in x[1]]
    assert lines[2].split("|")[1].split() == ["."] * 3 + [str(v) for v in y[1, 3:]]
    with pytest.raises(ValueError, match="index"):
        format_example(x, y, index=2)
