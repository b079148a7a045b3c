"""The chapter's experiment helpers: the pattern table's counts and the seed loops."""
import numpy as np

from minimem.memory.sparse import lab


def test_pattern_table_counts_pairs_keys_and_two_hop_reach():
    T = 64
    rows = {r["name"]: r for r in lab.pattern_table({
        "local": ("local", {"w": 8}),
        "strided": ("strided", {"l": 8}),
        "longformer": ("longformer", {"w": 4, "global_tokens": (0, 32)}),
    }, T)}
    i = np.arange(T)
    local = rows["local"]
    assert local["causal"] and local["pairs"] == int(np.minimum(i + 1, 8).sum())
    assert local["max_keys"] == 8
    assert np.isclose(local["density"], local["pairs"] / (T * (T + 1) / 2))
    # two local hops reach 2 * (8 - 1) back: exactly the pairs with i - j <= 14
    assert np.isclose(local["two_hop"], np.minimum(i + 1, 15).sum() / (T * (T + 1) / 2))
    strided = rows["strided"]
    assert strided["pairs"] == int((np.minimum(i + 1, 8) + i // 8).sum())
    assert strided["two_hop"] == 1.0
    longformer = rows["longformer"]
    assert not longformer["causal"]                    # symmetric: judged against all pairs
    assert longformer["max_keys"] == T                 # a global token's row is dense
    assert longformer["two_hop"] == 1.0                # every pair meets at a global token


def test_seed_loops_return_each_seed_run():
    knn = lab.passkey_knn_over_seeds(seeds=(0, 1), n_segments=2, segment=4, vocab=8, steps=3)
    for k, s in enumerate((0, 1)):
        one = lab.passkey_knn_experiment(n_segments=2, segment=4, vocab=8, steps=3, seed=s)
        assert knn["window only"][k] == one["acc_window"]
        assert knn["window + kNN memory"][k] == one["acc_memory"]
    assert knn["chance"] == 2 / 8 and knn["seeds"] == (0, 1)

    long = lab.long_range_over_seeds(seeds=(3,), steps=2, out_of_reach_steps=1, seq_len=16)
    dense_fixed = lab.long_range_experiment({"dense": ("dense", {}),
                                             "fixed": ("fixed", {"l": 2, "c": 1})},
                                            steps=2, seq_len=16, seed=3)
    local = lab.long_range_experiment({"local": ("local", {"w": 2})}, steps=1, seq_len=16,
                                      seed=3)
    assert long["dense"] == [dense_fixed["dense"]["accuracy"]]
    assert long["fixed"] == [dense_fixed["fixed"]["accuracy"]]
    assert long["local"] == [local["local"]["accuracy"]]
