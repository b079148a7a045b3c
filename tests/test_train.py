"""The training loop: fit lowers the loss, stops early, evaluate counts target positions only."""
import numpy as np
import pytest

import minimem as mm
from minimem.nn import Embedding, Linear, Module
from minimem.optim import SGD, Adam, WarmupCosine
from minimem.tasks import IGNORE, copy_task
from minimem.train import evaluate, fit


class FixedLogits(Module):
    """Logits that put a 1 on the class ``table[token]`` (a hand-made model)."""

    def __init__(self, table, vocab):
        super().__init__()
        self.table, self.vocab = np.asarray(table), vocab

    def forward(self, tokens):
        onehot = np.eye(self.vocab, dtype=np.float32)[self.table[np.asarray(tokens)]]
        return mm.tensor(onehot)


class Bigram(Module):
    """logits_t = W[token_t]: learns any map from the current token to the next."""

    def __init__(self, vocab, d=16, seed=0):
        super().__init__()
        self.emb = Embedding(vocab, d, seed=seed)
        self.out = Linear(d, vocab, seed=seed + 1)

    def forward(self, tokens):
        return self.out(self.emb(tokens))


def _successor_data(n, T=8, V=10, seed=0):
    """Target = (token + 1) mod V at every other position, -100 elsewhere."""
    x = np.random.default_rng(seed).integers(0, V, size=(n, T))
    y = (x + 1) % V
    y[:, ::2] = IGNORE
    return x, y


def test_evaluate_known_accuracy():
    V = 5
    model = FixedLogits([1, 2, 3, 4, 0], V)            # predicts token + 1 (mod 5)
    x = np.array([[0, 1, 2, 3], [4, 4, 0, 1]])
    y = np.array([[1, 0, IGNORE, 4], [IGNORE, 0, 1, IGNORE]])
    # position-by-position: right, wrong, -, right | -, right, right, -  -> 4 of 5
    assert evaluate(model, x, y) == pytest.approx(4 / 5)
    assert evaluate(model, x, y, batch_size=1) == pytest.approx(4 / 5)


def test_evaluate_restores_mode_and_records_no_graph():
    model = Bigram(10)
    seen = {}
    forward = model.forward

    def spy(tokens):
        out = forward(tokens)
        seen["training"], seen["grad"] = model.training, out.requires_grad
        return out

    object.__setattr__(model, "forward", spy)
    x, y = _successor_data(4)
    evaluate(model, x, y)
    assert seen == {"training": False, "grad": False}
    assert model.training
    model.eval()
    evaluate(model, x, y)
    assert not model.training


def test_fit_lowers_the_loss_and_learns():
    x, y = _successor_data(256)
    model = Bigram(10, seed=0)
    opt = Adam(model.parameters(), lr=0.05)
    hist = fit(model, (x, y), 120, opt, batch_size=32, eval_every=40, eval_data=(x, y),
               progress=False, seed=0)
    assert len(hist["step"]) == len(hist["loss"]) == len(hist["train_acc"]) == 120
    assert hist["eval_step"] == [40, 80, 120]
    assert np.mean(hist["loss"][-10:]) < 0.2 * np.mean(hist["loss"][:5])
    assert hist["eval_acc"][-1] == 1.0
    assert hist["time"] == sorted(hist["time"]) and hist["steps_per_s"] > 0
    assert not hist["stopped_early"]


def test_fit_is_deterministic_per_seed():
    x, y = _successor_data(64)
    runs = []
    for seed in (0, 0, 1):
        model = Bigram(10, seed=0)
        runs.append(fit(model, (x, y), 10, SGD(model.parameters(), lr=0.1), batch_size=8,
                        eval_every=5, progress=False, seed=seed)["loss"])
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_fit_stops_early_at_target_accuracy():
    x, y = _successor_data(128)
    model = Bigram(10, seed=0)
    hist = fit(model, (x, y), 500, Adam(model.parameters(), lr=0.05), batch_size=32,
               eval_every=10, eval_data=(x, y), target_accuracy=1.0, progress=False)
    assert hist["stopped_early"]
    assert hist["eval_acc"][-1] == 1.0 and max(hist["eval_acc"][:-1], default=0) < 1.0
    assert hist["step"][-1] == hist["eval_step"][-1] < 500


def test_fit_without_eval_data_uses_training_accuracy():
    x, y = _successor_data(128)
    model = Bigram(10, seed=0)
    hist = fit(model, (x, y), 300, Adam(model.parameters(), lr=0.05), eval_every=10,
               target_accuracy=1.0, progress=False)
    assert hist["stopped_early"]
    k = hist["eval_step"][-1]
    assert hist["eval_acc"][-1] == pytest.approx(np.mean(hist["train_acc"][k - 10:k]))


def test_fit_callable_iterable_scheduler_and_clipping():
    x, y = _successor_data(64)
    model = Bigram(10)
    opt = SGD(model.parameters(), lr=0.5)
    sched = WarmupCosine(opt, total_steps=6, warmup_steps=2)
    calls = []

    def batches(step):
        calls.append(step)
        return x[:8], y[:8]

    fit(model, batches, 6, opt, scheduler=sched, clip_norm=1e-3, progress=False)
    assert calls == [1, 2, 3, 4, 5, 6]
    assert sched.t == 6 and opt.lr == pytest.approx(0.0, abs=1e-12)
    # an iterable that runs out ends training
    hist = fit(model, [(x[:4], y[:4])] * 3, 10, opt, progress=False)
    assert hist["step"] == [1, 2, 3]
    # clipping bounds each update: lr * clip_norm
    before = [p.data.copy() for p in model.parameters()]
    opt2 = SGD(model.parameters(), lr=1.0)
    fit(model, (x, y), 1, opt2, batch_size=8, clip_norm=1e-3, progress=False)
    moved = np.sqrt(sum(((p.data - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert moved <= 1e-3 * (1 + 1e-4)


def test_fit_progress_bar_runs(capsys):
    x, y = copy_task(6, 8, 16, seed=0)
    model = Bigram(6)
    hist = fit(model, (x, y), 3, Adam(model.parameters()), batch_size=4, progress=True)
    assert len(hist["loss"]) == 3
    assert "step" in capsys.readouterr().err


def test_bad_inputs():
    x, y = _successor_data(16)
    model = Bigram(10)
    opt = SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="fit: steps must be an int >= 1"):
        fit(model, (x, y), 0, opt)
    with pytest.raises(ValueError, match="batch_size=32 exceeds the 16 examples"):
        fit(model, (x, y), 1, opt)
    with pytest.raises(ValueError, match=r"fit: task_or_batches inputs and targets must both "):
        fit(model, (x, y[:, :3]), 1, opt, batch_size=4)
    with pytest.raises(TypeError, match="integer arrays"):
        fit(model, (x.astype(float), y), 1, opt, batch_size=4)
    with pytest.raises(TypeError, match="fit: task_or_batches must be"):
        fit(model, 3, 1, opt)
    with pytest.raises(TypeError, match="fit: optimizer must have step"):
        fit(model, (x, y), 1, "adam", batch_size=4)
    with pytest.raises(ValueError, match="target_accuracy must be in"):
        fit(model, (x, y), 1, opt, batch_size=4, target_accuracy=2)
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        fit(model, (x, y), 1, opt, batch_size=4,
            loss_fn=lambda logits, t: mm.cross_entropy(logits, t, reduction="none"))
    with pytest.raises(ValueError, match="evaluate: targets has no position"):
        evaluate(model, x, np.full_like(y, IGNORE))
    with pytest.raises(ValueError, match="evaluate: .* must both be"):
        evaluate(model, x, y[0])


@pytest.mark.slow
def test_tour_step_writes_the_training_curve(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from minimem.tour import nn as tour_step

    line = tour_step.run(tmp_path)
    assert (tmp_path / "01_mqar_training.png").stat().st_size > 10_000
    acc = float(line.split("held-out accuracy ")[1].split()[0])
    assert acc >= 0.99, line
