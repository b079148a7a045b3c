"""Tour step: attention as a reduction; the ring schedule, ring and prefix attention = dense."""
TITLE = "ring: attention as a reduction (Aaren scan, ring attention, split-KV decoding)"


def run(out_dir) -> str:
    import matplotlib.pyplot as plt

    from ..memory.reduction import lab
    from ..memory.reduction.plots import plot_ring_schedule

    fig = plot_ring_schedule(4, causal=True)
    fig.savefig(f"{out_dir}/ring_schedule.png", dpi=80)
    plt.close(fig)
    ring = max(max(g.values()) for g in lab.ring_simulated_gaps(T=32, n_devices=(4,)).values())
    scan = max(lab.prefix_gaps(T=16)["scan"].values())
    split = max(max(g.values()) for g in lab.split_kv_gaps(S=200, n_splits=(7,)).values())
    return (f"|ring (4 simulated devices) - dense| = {ring:.1e}, |Aaren scan - dense| = "
            f"{scan:.1e}, |split-KV (7 parts) - dense| = {split:.1e} (forward and backward); "
            "schedule in ring_schedule.png; real processes: minimem ring")
