"""The segment tasks: associative retrieval across segments and facts in noise."""
import numpy as np
import pytest

from minimem.tasks import (
    IGNORE,
    associative_retrieval,
    facts_in_noise,
    facts_vocab,
    retrieval_vocab,
)


def pairs_of(segments, n_write):
    """The (key, value) pairs of each row, read back from the write segments."""
    x = np.concatenate([s[0] for s in segments[:n_write]], axis=1)
    return [dict(zip(row[0::2], row[1::2])) for row in x]


@pytest.mark.parametrize("n_pairs,p,gap", [(1, 4, 0), (6, 4, 2), (8, 2, 1)])
def test_retrieval_queries_ask_written_keys_for_their_values(n_pairs, p, gap):
    segs = associative_retrieval(n_pairs, 5, seed=3, pairs_per_segment=p, n_gap=gap,
                                 n_keys=10, n_values=7)
    n_write = -(-n_pairs // p)
    assert len(segs) == n_write + gap + 1
    for x, y in segs:
        assert x.shape == y.shape == (5, 2 * p) and x.dtype == y.dtype == np.int64
    for x, y in segs[:-1]:
        assert (y == IGNORE).all()
    assert (np.concatenate([s[0] for s in segs[n_write:-1]] or [np.ones((5, 0))]) == 1).all()
    x, y = segs[-1]
    nq = min(n_pairs, p)
    assert ((y != IGNORE).sum(axis=1) == nq).all()
    for b, pairs in enumerate(pairs_of(segs, n_write)):
        written = {k: v for k, v in pairs.items() if k != 1}      # filler pads a last segment
        assert len(written) == n_pairs
        assert all(2 <= k < 12 for k in written) and all(12 <= v < 19 for v in written.values())
        asked = x[b, 0:2 * nq:2]
        assert len(set(asked)) == nq
        np.testing.assert_array_equal(y[b, 0:2 * nq:2], [written[k] for k in asked])
    assert retrieval_vocab(10, 7) == 19
    again = associative_retrieval(n_pairs, 5, seed=3, pairs_per_segment=p, n_gap=gap,
                                  n_keys=10, n_values=7)
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(segs, again))


def test_retrieval_can_ask_every_written_key_in_a_longer_last_segment():
    n = 5
    segs = associative_retrieval(n, 4, seed=1, pairs_per_segment=1, n_keys=6, n_values=6,
                                 n_queries=n)
    assert [x.shape[1] for x, _ in segs] == [2] * n + [2 * n]
    x, y = segs[-1]
    for b, pairs in enumerate(pairs_of(segs, n)):
        asked = x[b, 0::2]
        assert sorted(asked) == sorted(pairs)                  # every key, once
        np.testing.assert_array_equal(y[b, 0::2], [pairs[k] for k in asked])
        assert (x[b, 1::2] == 0).all() and (y[b, 1::2] == IGNORE).all()
    # asking fewer keys than pairs_per_segment keeps the segment length 2p, as before
    short = associative_retrieval(n, 4, seed=1, pairs_per_segment=3, n_queries=2)
    assert short[-1][0].shape == (4, 6) and ((short[-1][1] != IGNORE).sum(1) == 2).all()


def test_facts_in_noise_answers_the_latest_place():
    E, P, N = 3, 4, 5
    segs = facts_in_noise(12, 4, 10, 64, seed=1, n_entities=E, n_places=P, n_noise=N,
                          n_questions=2)
    assert len(segs) == 4 and all(x.shape == (64, 10) for x, _ in segs)
    stream = np.concatenate([x for x, _ in segs[:-1]], axis=1)
    assert stream.max() < facts_vocab(E, P, N) == 2 + E + P + N
    x, y = segs[-1]
    overwritten = 0
    for b in range(64):
        latest, seen = {}, {}
        for pos in range(0, stream.shape[1], 2):
            e, place = stream[b, pos], stream[b, pos + 1]
            if 2 <= e < 2 + E:
                assert 2 + E <= place < 2 + E + P
                seen[e] = seen.get(e, 0) + 1
                latest[e] = place
        assert sum(seen.values()) == 12
        overwritten += any(c > 1 for c in seen.values())
        assert list(x[b, 0:4:2]) == [1, 1]
        for e, target in zip(x[b, 1:4:2], y[b, 1:4:2]):
            assert latest[e] == target
        assert (y[b, [0, 2]] == IGNORE).all() and (y[b, 4:] == IGNORE).all()
    assert overwritten > 32                      # most rows move an entity more than once


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="associative_retrieval: n_pairs must be <= n_keys=4"):
        associative_retrieval(5, 2, n_keys=4)
    with pytest.raises(ValueError, match="associative_retrieval: n_queries must be <= "
                       "n_pairs = 3"):
        associative_retrieval(3, 2, pairs_per_segment=2, n_queries=4)
    with pytest.raises(TypeError, match="associative_retrieval: n_gap must be an int"):
        associative_retrieval(3, 2, n_gap=1.0)
    with pytest.raises(ValueError, match=r"facts_in_noise: n_facts must be <= \(n_segments - 1\)"):
        facts_in_noise(9, 2, 8, 2)
    with pytest.raises(ValueError, match="facts_in_noise: n_questions must be <="):
        facts_in_noise(2, 3, 8, 2, n_questions=3)
    with pytest.raises(ValueError, match="facts_in_noise: n_segments must be an int >= 2"):
        facts_in_noise(1, 1, 8, 2)
