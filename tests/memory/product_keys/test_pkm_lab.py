"""The chapter's slot-hit experiment: snapshots of the memory's usage during training."""
import numpy as np
import pytest

from minimem.memory.product_keys import lab, plots


def test_slot_hits_snapshots_are_the_usage_at_each_checkpoint():
    kw = dict(n_a=8, n_b=8, n_values=8, d_model=16, n_sub_keys=8, topk=4, heads=2, d_key=8,
              batch_size=32, seed=1)
    hits = lab.slot_hits_during_training(checkpoints=(5, 0), query_norms=("batch",), **kw)
    (name, snaps), = hits.items()
    assert name == "pkm (batch norm)" and [s for s, _ in snaps] == [0, 5]
    task = lab.many_facts(8, 8, 8, seed=1)
    for _, usage in snaps:
        assert usage.mass.shape == (64,) and 0 < usage.usage <= 1
        # every read's softmax weights sum to 1 per head: the mass is heads x reads of a token
        n_tokens = np.asarray(task.inputs).size
        assert np.isclose(usage.mass.sum(), 2 * n_tokens)
    # step 0 is the untrained model: the same as a fresh run's first snapshot
    again = lab.slot_hits_during_training(checkpoints=(0,), query_norms=("batch",), **kw)
    assert np.allclose(again[name][0][1].mass, snaps[0][1].mass)
    # training moved the reads
    assert not np.allclose(snaps[0][1].mass, snaps[1][1].mass)
    fig, axes = plots.plot_slot_hits(hits, n_sub_keys=8)
    assert axes.shape == (1, 2) and "step 5" in axes[0, 1].get_title()


def test_slot_hits_rejects_negative_checkpoints():
    with pytest.raises(ValueError, match="checkpoints"):
        lab.slot_hits_during_training(checkpoints=(-1,))
