"""Validation computes every feature at once and agrees with the per-feature computation; the
loop's log records say how much of their time went into getting batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from netflowgen.model import FlowGPT, FlowGPTConfig
from netflowgen.tokenize.shards import open_tokens
from netflowgen.train.loop import TrainConfig, train_loop
from netflowgen.train.pretrain import evaluate_windows, next_step_loss
from netflowgen.train.windows import TokenWindows
from tests.train.test_pretrain import periodic_tokens


def per_feature_validation(model: FlowGPT, windows: TokenWindows, batch_size: int) -> dict[str, object]:
    """Validation as it was written first: one cross-entropy and one argmax per feature."""
    n_f = model.cfg.n_features
    loss_sum, correct, count = np.zeros(n_f), np.zeros(n_f), 0
    with torch.no_grad():
        for b in windows.val_batches(batch_size):
            out = model(b.traffic, b.time, b.node, b.group)
            mask = b.targets[..., 0] >= 0
            for f, logits in enumerate(model.feature_logits(out.logits.float())):
                tgt, lg = b.targets[..., f][mask], logits[mask]
                loss_sum[f] += float(F.cross_entropy(lg, tgt, reduction="sum"))
                correct[f] += float((lg.argmax(-1) == tgt).sum())
            count += int(mask.sum())
    return {"val_feature_loss": (loss_sum / count).tolist(), "val_accuracy": float((correct / count).mean()), "val_targets": count}


def test_validation_equals_the_per_feature_computation(tmp_path: Path) -> None:
    tokens = periodic_tokens(tmp_path, nodes=3, steps=60)
    _, tok, shards = open_tokens(tokens)
    windows = TokenWindows(shards, context=8, val_fraction=0.3)
    cfg = FlowGPTConfig(bins=tuple(tok.bins[f] for f in tok.config.features), n_nodes=len(tok.nodes) + 1,
                        n_groups=len(tok.groups) + 1, context=8, n_layer=1, n_head=2, d_model=16)
    torch.manual_seed(0)
    model = FlowGPT(cfg)
    with torch.no_grad():
        model.head.weight.mul_(50)  # confident, mostly wrong predictions: losses and accuracies away from trivial values
    got = evaluate_windows(model, windows, batch_size=4, max_batches=None, device=torch.device("cpu"))
    want = per_feature_validation(model, windows, batch_size=4)
    assert got["val_targets"] == want["val_targets"] > 0
    np.testing.assert_allclose(got["val_feature_loss"], want["val_feature_loss"], rtol=1e-5)
    assert got["val_loss"] == np.mean(got["val_feature_loss"])
    assert got["val_accuracy"] == want["val_accuracy"]
    assert 0 < got["val_accuracy"] < 1


class FakeClock:
    """time.perf_counter for the loop, advanced only by the test: the accounting is checked
    exactly, whatever else the machine is doing."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def _tiny(tmp_path: Path) -> tuple[TokenWindows, FlowGPTConfig]:
    tokens = periodic_tokens(tmp_path, nodes=2, steps=40)
    _, tok, shards = open_tokens(tokens)
    windows = TokenWindows(shards, context=8, val_fraction=0.1)
    cfg = FlowGPTConfig(bins=tuple(tok.bins[f] for f in tok.config.features), n_nodes=3, n_groups=2, context=8,
                        n_layer=1, n_head=2, d_model=16)
    return windows, cfg


def test_log_records_carry_the_share_of_time_spent_getting_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import netflowgen.train.loop as loop

    windows, cfg = _tiny(tmp_path)
    clock = FakeClock()
    monkeypatch.setattr(loop, "time", clock)
    train = TrainConfig(steps=4, batch_size=2, warmup_steps=1, log_every=2, eval_every=100, checkpoint_every=100)

    def run(batch_s: float, step_s: float) -> list[dict[str, float]]:
        def sample(step: int, rank: int):  # type: ignore[no-untyped-def]
            clock.now += batch_s
            return windows.sample(2, 0, rank, step)

        def loss(model, batch):  # type: ignore[no-untyped-def]
            clock.now += step_s
            return next_step_loss(model, batch)

        torch.manual_seed(0)
        run_dir = tmp_path / f"run-{batch_s}-{step_s}"
        run_dir.mkdir()
        return train_loop(FlowGPT(cfg), sample, None, loss, train, run_dir, show_progress=False)

    slow = run(0.25, 0.05)
    assert [r["step"] for r in slow] == [2, 4]
    assert all(abs(r["data_share"] - 0.25 / 0.30) < 1e-9 for r in slow), slow
    assert all(abs(r["steps_per_s"] - 1 / 0.30) < 1e-6 for r in slow)
    assert all(abs(r["data_share"] - 0.01 / 0.11) < 1e-9 for r in run(0.01, 0.1))


def test_a_time_budget_stops_training_with_the_learning_rate_decayed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import netflowgen.train.loop as loop

    windows, cfg = _tiny(tmp_path)
    clock = FakeClock()
    monkeypatch.setattr(loop, "time", clock)
    # 0.05 s per step and a 1 s budget: 20 of the 10,000 steps allowed.
    train = TrainConfig(steps=10_000, batch_size=2, warmup_steps=2, log_every=1, eval_every=10_000, checkpoint_every=10_000,
                        lr=1e-2, min_lr_ratio=0.1, max_seconds=1.0)

    def sample(step: int, rank: int):  # type: ignore[no-untyped-def]
        clock.now += 0.05
        return windows.sample(2, 0, rank, step)

    torch.manual_seed(0)
    (tmp_path / "run").mkdir()
    records = train_loop(FlowGPT(cfg), sample, lambda m: {"val_loss": 0.0}, next_step_loss, train, tmp_path / "run",
                         show_progress=False)
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 20 and steps[-1]["stopped"] == "time budget"
    assert "stopped" not in steps[-2]
    assert records[-1] == {"step": 20, "val_loss": 0.0}, "validated where it stopped"
    assert any((tmp_path / "run").iterdir()), "and checkpointed there"
    lrs = [r["lr"] for r in steps]
    assert lrs[1] == 1e-2 and abs(lrs[-1] - 1e-3) < 1e-4, lrs  # warmed up in steps, decayed over the time
    assert all(a >= b - 1e-12 for a, b in zip(lrs[1:], lrs[2:])), ("the decay only goes down", lrs)
    # Without a budget the same loop runs every step.
    assert loop.TrainConfig(steps=3).max_seconds is None
    with pytest.raises(ValueError, match="max_seconds"):
        TrainConfig(max_seconds=0)
