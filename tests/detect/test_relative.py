"""Every stage after the tokenizer with relative tokens on: pre-training and fine-tuning run, the
surprise head weighs the relative tokens as it does the others, live scoring of the newest step
equals the offline score, generation recomputes a sampled step's relative tokens from its values,
and next-step evaluation scores the baselines on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from netflowgen.series.spec import SeriesSpec
from netflowgen.detect.finetune import DetectorModel, EncodedSteps, FinetuneConfig, finetune, load_detector
from netflowgen.train.steps import collate
from netflowgen.detect.labels import parse_budget
from netflowgen.detect.online import OnlineDetector
from netflowgen.evaluate.nextstep import _held_out_targets, evaluate_next_step
from netflowgen.train.generate import sample_paths
from netflowgen.tokenize import Tokenizer, TokenizerConfig
from netflowgen.tokenize.shards import open_tokens, write_tokens
from netflowgen.train.loop import TrainConfig
from netflowgen.train.pretrain import PretrainConfig, load_run, pretrain
from netflowgen.train.windows import TokenWindows
from tests.detect.test_finetune import SPLIT, planted_series

FEATURES = ("flows_in", "flows_out")
WINDOW = 6  # relative_window: small, so that a short live history tests the rule


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    tmp = tmp_path_factory.mktemp("relative")
    series = planted_series()
    pre = series.filter(pl.col("step") < SPLIT)
    tok = Tokenizer.fit(pre, TokenizerConfig(FEATURES, n_bins=10, relative=True, relative_window=WINDOW), SeriesSpec(features=FEATURES))
    write_tokens(pre, tok, tmp / "tok", fit=None, source="synthetic")
    train = TrainConfig(steps=30, batch_size=16, lr=3e-3, warmup_steps=3, eval_every=30, checkpoint_every=30,
                        eval_batches=2, log_every=10, weight_decay=0.0)
    pretrain(PretrainConfig(tmp / "tok", "tiny", context=32), train, tmp / "run", show_progress=False)
    return tmp, series


def test_the_model_predicts_the_relative_tokens_like_any_feature(run: tuple[Path, pl.DataFrame]) -> None:
    tmp, _ = run
    model, tok, _ = load_run(tmp / "run")
    assert tok.features == (*FEATURES, "flows_in~rel", "flows_out~rel")
    assert model.cfg.bins == tuple(tok.bins[f] for f in tok.features)
    assert model.cfg.n_features == 4


def test_the_surprise_head_starts_with_every_token_feature_weighted_by_its_log_bins(run: tuple[Path, pl.DataFrame]) -> None:
    tmp, _ = run
    model, _, _ = load_run(tmp / "run")
    head = DetectorModel(model, head_inputs="surprise")
    assert head.step_head.in_features == 2 * 4  # surprise and its recent maximum, per token feature
    head.start_from_surprise(torch.rand(200, head.step_head.in_features), positive_rate=0.05)
    w = head.step_head.weight[0].detach()
    log_bins = torch.tensor([np.log(b) for b in model.cfg.bins], dtype=torch.float32)
    assert torch.allclose(w[:4] / w[0], log_bins / log_bins[0]) and (w[2:4] > 0).all()
    assert (w[4:] == 0).all()


def test_finetune_scores_and_reloads_with_relative_tokens(run: tuple[Path, pl.DataFrame]) -> None:
    tmp, series = run
    cfg = FinetuneConfig(attack=("ddos",), budget=parse_budget("2ep"), steps=15, window=16, history=8)
    det = finetune(tmp / "run", series, cfg, tmp / "det", allowed=pl.col("step") < SPLIT, show_progress=False)
    scored = det.score(series)
    assert scored.height == series.height and scored["score"].is_finite().all()
    again = load_detector(tmp / "det")
    assert again.tokenizer.config.relative
    assert np.allclose(again.score(series)["score"].to_numpy(), scored["score"].to_numpy(), rtol=1e-6, atol=1e-7)


def test_live_scoring_of_the_newest_step_equals_the_offline_score(run: tuple[Path, pl.DataFrame]) -> None:
    tmp, series = run
    if not (tmp / "det").is_dir():
        test_finetune_scores_and_reloads_with_relative_tokens(run)
    det = load_detector(tmp / "det")
    scorer = OnlineDetector(det, keep_top=100)
    assert scorer.history_rows == scorer.length + WINDOW
    last = series["step"].max()
    # The live series holds only the rows the scorer asks for (collect/online keeps history_rows).
    history = series.sort("node", "step").group_by("node", maintain_order=True).tail(scorer.history_rows)
    scorer.score(history.filter(pl.col("step") == last), history)
    _, top = scorer.snapshot()
    live = {r["node"]: r["score"] for r in top["nodes"]}
    assert len(live) == series["node"].n_unique()

    offline = EncodedSteps.encode(series, det.tokenizer)
    ends = np.flatnonzero(np.r_[offline.keys["node"].to_numpy()[1:] != offline.keys["node"].to_numpy()[:-1], True])
    begin = ends - scorer.length + 1
    b = collate(offline, begin, ends, ends + 1, scorer.length)
    with torch.no_grad():
        logits, _ = det.model(b.traffic, b.time, b.node, b.group, b.first, b.last)
    probs = torch.sigmoid(logits.float())[:, -1].numpy()
    for node, p in zip(offline.keys["node"].gather(ends).to_list(), probs):
        assert live[node] == pytest.approx(float(p), rel=1e-5, abs=1e-6), node

    # The rule matters: a history of only the window's rows encodes the relative tokens of its
    # first rows from a shorter past, unlike offline.
    short = history.group_by("node", maintain_order=True).tail(scorer.length)
    short_tokens = EncodedSteps.encode(short, det.tokenizer).traffic
    assert not np.array_equal(short_tokens, offline.traffic[(begin[:, None] + np.arange(scorer.length)).ravel()])


def test_generation_recomputes_relative_tokens_from_the_sampled_values(run: tuple[Path, pl.DataFrame]) -> None:
    tmp, series = run
    model, tok, _ = load_run(tmp / "run")
    node = series.filter(pl.col("node") == "10.0.0.2").sort("step").head(100)
    seen: list[torch.Tensor] = []
    hook = model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    try:
        horizon = 4
        fc = sample_paths(model, tok, node, horizon, samples=5, seed=1)
    finally:
        hook.remove()
    assert fc.features == list(FEATURES) and fc.bins.shape == (5, horizon, 2)
    ctx = model.cfg.context
    # The first input is the history's last ctx rows, encoded with WINDOW rows more of past.
    assert np.array_equal(seen[0][0].numpy(), tok.encode(node)["traffic"][-ctx:].astype(np.int64))
    # The last input ends with horizon - 1 generated steps: their relative tokens are those the
    # tokenizer gives the decoded values after the real history.
    for s in range(5):
        generated = pl.DataFrame({"node": ["10.0.0.2"] * (horizon - 1), "group": node["group"][0],
                                  "step": [node["step"][-1] + (node["step"][1] - node["step"][0]) * (k + 1) for k in range(horizon - 1)],
                                  **{f: fc.values[s, : horizon - 1, j] for j, f in enumerate(FEATURES)}})
        whole = pl.concat([node.select("node", "group", "step", *FEATURES).cast({f: pl.Float64 for f in FEATURES}), generated])
        expected = tok.encode(whole)["traffic"][-(horizon - 1):]
        assert np.array_equal(seen[-1][s, -(horizon - 1):].numpy(), expected.astype(np.int64))


def test_next_step_evaluation_scores_every_token_feature_and_active_means_traffic(run: tuple[Path, pl.DataFrame]) -> None:
    tmp, _ = run
    model, tok, _ = load_run(tmp / "run")
    _, _, shards = open_tokens(tmp / "tok")
    windows = TokenWindows(shards, model.cfg.context, 0.2)
    report = evaluate_next_step(model, windows, tok)
    for method in ("flowgpt", "persistence", "node-frequency"):
        ce = report.subsets["all"][method].cross_entropy
        assert len(ce) == 4 and np.isfinite(ce).all(), method
    traffic = np.asarray(windows._global.traffic)
    target, prev = _held_out_targets(windows, 64)
    expected = int((traffic[target, :2].any(1) | traffic[prev, :2].any(1)).sum())
    assert report.subsets["active"]["flowgpt"].targets == expected
