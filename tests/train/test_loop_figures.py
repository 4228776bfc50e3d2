"""Validation computes every feature at once and agrees with the per-feature computation; the
loop's log records say how much of their time went into getting batches."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
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


def test_log_records_carry_the_share_of_time_spent_getting_batches(tmp_path: Path) -> None:
    tokens = periodic_tokens(tmp_path, nodes=2, steps=40)
    _, tok, shards = open_tokens(tokens)
    windows = TokenWindows(shards, context=8, val_fraction=0.1)
    cfg = FlowGPTConfig(bins=tuple(tok.bins[f] for f in tok.config.features), n_nodes=3, n_groups=2, context=8,
                        n_layer=1, n_head=2, d_model=16)
    train = TrainConfig(steps=4, batch_size=2, warmup_steps=1, log_every=2, eval_every=100, checkpoint_every=100)

    def run(delay: float) -> list[dict[str, float]]:
        def sample(step: int, rank: int):  # type: ignore[no-untyped-def]
            time.sleep(delay)
            return windows.sample(2, 0, rank, step)

        torch.manual_seed(0)
        run_dir = tmp_path / f"run-{delay}"
        run_dir.mkdir()
        return train_loop(FlowGPT(cfg), sample, None, next_step_loss, train, run_dir, show_progress=False)

    slow = run(0.25)
    assert [r["step"] for r in slow] == [2, 4]
    assert all(0.5 < r["data_share"] <= 1.0 for r in slow), slow  # 0.25 s per batch against a step of milliseconds
    assert all(0.0 <= r["data_share"] < 0.5 for r in run(0.0))
