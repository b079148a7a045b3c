"""The chapter's experiments return what the notebook prints."""
from minimem.memory.reduction import lab


def test_merge_laws_hold_to_rounding():
    assert all(gap <= 1e-14 for gap in lab.merge_laws(seed=1).values())


def test_lab_gaps_are_at_rounding_level():
    for gaps in lab.prefix_gaps(T=9).values():
        assert max(gaps.values()) <= 1e-12
    for gaps in lab.ring_simulated_gaps(T=12, n_devices=(2, 3)).values():
        assert max(gaps.values()) <= 1e-12
    for gaps in lab.split_kv_gaps(S=30, n_splits=(1, 4)).values():
        assert max(gaps.values()) <= 1e-12
    assert lab.rope_relative_gap() <= 1e-12


def test_landmark_passkey_reports_one_accuracy_per_length_and_mode():
    out = lab.landmark_passkey_over_seeds(seeds=(0,), train_len=8, block=4, d_model=8,
                                          steps=2, n_eval=4, factors=(1, 2))
    assert out["lengths"] == [8, 16] and out["chance"] == 2 / 16
    for mode in ("full", "top_k"):
        assert out[mode].shape == (1, 2)
        assert ((out[mode] >= 0) & (out[mode] <= 1)).all()
