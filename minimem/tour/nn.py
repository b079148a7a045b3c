"""Tour step: a 2-layer transformer learns multi-query associative recall (training curve)."""
TITLE = "training: MQAR with a 2-layer transformer"


def run(out_dir) -> str:
    import matplotlib.pyplot as plt

    from ..train import mqar_experiment
    from ..viz_training import plot_history

    # A shorter sequence than the acceptance test (seq_len 24 instead of 64) keeps this step
    # lean: the same mechanism forms in ~250 steps of batch 32.
    T, n_kv = 24, 4
    _, hist, _ = mqar_experiment(seq_len=T, n_kv=n_kv, steps=400, batch_size=32,
                                 n_train=10000, seed=0)
    fig = plot_history(hist, title=f"MQAR (vocab 64, seq_len {T}, {n_kv} pairs), "
                                   f"2-layer transformer")
    fig.savefig(f"{out_dir}/01_mqar_training.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return (f"held-out accuracy {hist['eval_acc'][-1]:.3f} after {hist['step'][-1]} steps "
            f"({hist['steps_per_s']:.0f} steps/s; seq_len {T}, {n_kv} key-value pairs)")
