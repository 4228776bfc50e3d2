"""Fine-tuning FlowGPT into a detector: it learns a planted attack with few labels, respects the
split, reloads to identical scores; the zero-label surprise score needs no labels at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from netflowgen.series.spec import SeriesSpec
from netflowgen.detect.finetune import (
    EncodedSteps,
    FinetuneConfig,
    finetune,
    load_detector,
    surprise_scores,
)
from netflowgen.detect.labels import parse_budget
from netflowgen.tokenize import Tokenizer, TokenizerConfig
from netflowgen.tokenize.shards import write_tokens
from netflowgen.train.loop import TrainConfig
from netflowgen.train.pretrain import PretrainConfig, load_run, pretrain

T0 = datetime(2024, 5, 6, tzinfo=UTC)
STEPS = 480
SPLIT = T0 + timedelta(minutes=320)


def planted_series(seed: int = 0) -> pl.DataFrame:
    """6 nodes with a daily-looking periodic load; attack episodes multiply inbound flows."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(6):
        # Onsets off any grid: the time fields must not give them away.
        onsets = rng.choice(np.arange(20, STEPS - 60, 40), size=3, replace=False) + rng.integers(0, 30, size=3)
        attack = np.zeros(STEPS, dtype=bool)
        for o in onsets:
            attack[o : o + int(rng.integers(4, 9))] = True
        base = 5 + 4 * np.sin(np.arange(STEPS) * 2 * np.pi / 30 + n)
        flows_in = rng.poisson(base) + np.where(attack, rng.integers(150, 400, STEPS), 0)
        flows_out = rng.poisson(base)
        for t in range(STEPS):
            rows.append({"node": f"10.0.0.{n}", "group": "10.0.0.0/24", "step": T0 + timedelta(minutes=t),
                         "flows_in": int(flows_in[t]), "flows_out": int(flows_out[t]),
                         "classes": ["DDoS"] if attack[t] else ["benign"],
                         "attack": bool(attack[t]), "labeled_flows": 1})
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    tmp = tmp_path_factory.mktemp("det")
    series = planted_series()
    pre = series.filter(pl.col("step") < SPLIT)  # pre-training never sees the test part
    tok = Tokenizer.fit(pre, TokenizerConfig(("flows_in", "flows_out"), n_bins=10, rule="log-quantile-tail"),
                        SeriesSpec(features=("flows_in", "flows_out")))
    write_tokens(pre, tok, tmp / "tok", fit=None, source="synthetic")
    train = TrainConfig(steps=80, batch_size=16, lr=3e-3, warmup_steps=8, eval_every=80, checkpoint_every=80,
                        eval_batches=2, log_every=20, weight_decay=0.0)
    pretrain(PretrainConfig(tmp / "tok", "tiny", context=48), train, tmp / "run", show_progress=False)
    return tmp / "run", series


def _pr_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def test_few_labels_learn_the_planted_attack_on_later_time(run: tuple[Path, pl.DataFrame], tmp_path: Path) -> None:
    path, series = run
    # Full fine-tuning on hidden state and surprise: the planted attacks recur on the same nodes.
    cfg = FinetuneConfig(attack=("ddos",), budget=parse_budget("4ep"), steps=60, window=16, history=16, mode="full",
                         head_inputs="both", lr=3e-3, anchor=0.0)
    det = finetune(path, series, cfg, tmp_path / "det", allowed=pl.col("step") < SPLIT, show_progress=False)
    assert det.manifest["labels"]["train_positive_steps"] > 0
    scored = det.score(series)
    test = scored.filter(pl.col("step") >= SPLIT)
    assert test["label"].sum() > 0
    assert _pr_auc(test["score"].to_numpy(), test["label"].to_numpy()) > 0.9
    # The threshold was calibrated on labelled calibration windows, inside the fitting part.
    assert 0 < det.threshold < 1
    # The window head separates windows holding an attack from the others too.
    windows = det.score_windows(series).filter(pl.col("first_step") >= SPLIT)
    assert windows["label"].sum() > 0
    assert _pr_auc(windows["score"].to_numpy(), windows["label"].to_numpy()) > 0.8
    # Reloaded from its directory, the detector gives the very same scores.
    again = load_detector(tmp_path / "det").score(series)
    assert np.array_equal(again["score"].to_numpy(), scored["score"].to_numpy())


def test_probe_mode_leaves_the_backbone_unchanged(run: tuple[Path, pl.DataFrame]) -> None:
    path, series = run
    before, _, _ = load_run(path)
    cfg = FinetuneConfig(attack=("DDoS",), budget=parse_budget("200"), mode="probe", steps=10, window=16, history=8)
    det = finetune(path, series, cfg, allowed=pl.col("step") < SPLIT, show_progress=False)
    for (name, p0), p1 in zip(before.named_parameters(), det.model.backbone.parameters()):
        assert torch.equal(p0, p1), name
    assert det.manifest["labels"]["train_steps"] + det.manifest["labels"]["calibrate_steps"] >= 200


def test_fit_scores_are_the_fitted_series_scores_in_node_step_order(run: tuple[Path, pl.DataFrame]) -> None:
    path, series = run
    cfg = FinetuneConfig(attack=("DDoS",), budget=parse_budget("200"), steps=5, window=16, history=8)
    shuffled = series.sample(fraction=1.0, shuffle=True, seed=3)  # finetune sorts; its scores follow that order
    det = finetune(path, shuffled, cfg, allowed=pl.col("step") < SPLIT, show_progress=False)
    scored = det.score(series)
    assert scored.select("node", "step").equals(series.sort("node", "step").select("node", "step"))
    np.testing.assert_allclose(det.fit_scores, scored["score"].to_numpy(), rtol=1e-6)


def test_scores_are_causal(run: tuple[Path, pl.DataFrame]) -> None:
    path, series = run
    cfg = FinetuneConfig(attack=("DDoS",), budget=parse_budget("100"), steps=5, window=16, history=8)
    det = finetune(path, series, cfg, show_progress=False)
    cut = T0 + timedelta(minutes=200)
    changed = series.with_columns(pl.when(pl.col("step") > cut).then(pl.col("flows_in") * 50).otherwise(pl.col("flows_in")))
    a, b = det.score(series), det.score(changed)
    early = (a["step"] <= cut).to_numpy()
    # A window starting before the cut but scored after it reads only its own past.
    assert np.array_equal(a["score"].to_numpy()[early], b["score"].to_numpy()[early])
    assert not np.array_equal(a["score"].to_numpy()[~early], b["score"].to_numpy()[~early])


def test_wrong_step_and_oversized_window_are_refused(run: tuple[Path, pl.DataFrame]) -> None:
    path, series = run
    # Rows five times further apart: a 300 s series, which the run's 60 s contract refuses.
    coarse = series.with_columns(pl.from_epoch(pl.col("step").dt.epoch("s") * 5, "s").dt.replace_time_zone("UTC").alias("step"))
    with pytest.raises(ValueError, match="the series' step is 300 s but the model works on 60 s steps"):
        finetune(path, coarse, FinetuneConfig(), show_progress=False)
    with pytest.raises(ValueError, match="exceeds the model's context"):
        finetune(path, series, FinetuneConfig(window=40, history=40), show_progress=False)


def test_surprise_is_higher_on_attack_steps_without_any_label(run: tuple[Path, pl.DataFrame]) -> None:
    path, series = run
    model, tok, _ = load_run(path)
    steps = EncodedSteps.encode(series, tok, ("ddos",))
    s = surprise_scores(model, steps)
    first = steps.bounds[:, 0]
    assert np.isnan(s[first]).all() and np.isfinite(np.delete(s, first)).all()
    y = steps.labels
    onset = np.zeros(len(y), dtype=bool)
    onset[1:] = (y[1:] == 1) & (y[:-1] == 0)
    onset[first] = False
    benign = (y == 0) & np.isfinite(s)
    # An attack's first step is what a next-step model cannot expect; once under way, a flood is
    # predictable, so surprise is an onset detector, not a duration one.
    assert s[onset].mean() > s[benign].mean() + 1.0, (s[onset].mean(), s[benign].mean())


def test_cli_finetune_then_score_a_series(run: tuple[Path, pl.DataFrame], tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from netflowgen.cli import app
    from netflowgen.series import SeriesSpec
    from netflowgen.series.write import write_series

    path, series = run
    write_series(series.with_columns(pl.col("flows_in").alias("labeled_flows")), tmp_path / "series",
                 SeriesSpec(attack=("DDoS",), features=("flows_in", "flows_out")), ["synthetic"])
    runner = CliRunner()
    res = runner.invoke(app, ["finetune", str(path), "--series", str(tmp_path / "series"), "--out", str(tmp_path / "det"),
                              "--attack", "DDoS", "--budget", "2ep", "--steps", "20", "--window", "16",
                              "--fit-until", SPLIT.strftime("%Y-%m-%dT%H:%M:%S"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["train_positive_steps"] > 0 and 0 <= summary["threshold"] <= 1
    res = runner.invoke(app, ["score", str(tmp_path / "det"), str(tmp_path / "series"), "--out", str(tmp_path / "s.parquet"), "--json"])
    assert res.exit_code == 0, res.output
    scored = pl.read_parquet(tmp_path / "s.parquet")
    assert scored.height == series.height and json.loads(res.stdout)["alerts"] == int(scored["alert"].sum())
    # Zero-label: a pre-trained run scores the same series by surprise.
    res = runner.invoke(app, ["score", str(path), str(tmp_path / "series"), "--quantile", "0.99", "--out",
                              str(tmp_path / "z.csv"), "--json"])
    assert res.exit_code == 0, res.output
    z = pl.read_csv(tmp_path / "z.csv").filter(pl.col("score").is_not_nan())
    assert z.height == series.height - series["node"].n_unique()  # every step but each node's first
    onset = z.filter(pl.col("label") & ~pl.col("label").shift(1).over("node").fill_null(False))
    assert onset["score"].mean() > z.filter(~pl.col("label"))["score"].mean()
    res = runner.invoke(app, ["finetune", str(path), "--series", str(tmp_path / "series"), "--out", str(tmp_path / "det2"),
                              "--budget", "lots"])
    assert res.exit_code == 1 and "not a label budget" in res.output


def test_last_k_mode_trains_only_the_last_blocks(run: tuple[Path, pl.DataFrame]) -> None:
    path, series = run
    before, _, _ = load_run(path)
    cfg = FinetuneConfig(attack=("DDoS",), budget=parse_budget("100"), mode="last-k", last_k=1, steps=5, window=16,
                         history=8)
    det = finetune(path, series, cfg, show_progress=False)
    changed = {name for (name, p0), p1 in zip(before.named_parameters(), det.model.backbone.parameters())
               if not torch.equal(p0, p1)}
    last = len(before.blocks) - 1
    assert changed and all(n.startswith((f"blocks.{last}.", "ln_f.")) for n in changed), sorted(changed)
    assert any(n.startswith(f"blocks.{last}.") for n in changed)


def test_surprise_is_scaled_by_each_features_own_bin_count(tmp_path: Path) -> None:
    """The step head reads each feature's surprise in units of a uniform guess over that
    feature's bins: NLL / log(4) for a 4-bin feature, NLL / log(16) for a 16-bin one."""
    import math

    from netflowgen.detect.finetune import DetectorModel
    from netflowgen.model import FlowGPT, FlowGPTConfig
    from netflowgen.train.checkpoint import load_weights, save_weights

    torch.manual_seed(0)
    backbone = FlowGPT(FlowGPTConfig(bins=(4, 16), n_nodes=3, n_groups=2, context=8, n_layer=1, n_head=2, d_model=16))
    model = DetectorModel(backbone, head_inputs="surprise").eval()
    B, T = 3, 6
    traffic = torch.stack([torch.randint(0, 4, (B, T)), torch.randint(0, 16, (B, T))], dim=-1)
    time = torch.stack([torch.randint(0, n, (B, T)) for n in backbone.cfg.time_sizes], dim=-1)
    node, group = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1])
    first, last = torch.zeros(B, dtype=torch.long), torch.full((B,), T - 1)

    with torch.no_grad():
        inputs = model.step_features(traffic, time, node, group)  # what forward's step head reads
        step, _ = model(traffic, time, node, group, first, last)
        nll = backbone.feature_nll(backbone(traffic, time, node, group).logits[:, :-1], traffic[:, 1:])  # (B, T-1, 2)
    torch.testing.assert_close(step, model.step_head(inputs).squeeze(-1))
    surprise = inputs[..., :2]  # the head's inputs: per-feature surprise, then its recent maximum
    assert torch.all(surprise[:, 0] == 0)  # nothing to be surprised by at a window's first step
    torch.testing.assert_close(surprise[:, 1:, 0], nll[..., 0] / math.log(4))
    torch.testing.assert_close(surprise[:, 1:, 1], nll[..., 1] / math.log(16))

    # The scale is derived from the config, not stored: saved detector weights load as before.
    save_weights(model, tmp_path / "det.safetensors")
    again = DetectorModel(FlowGPT(backbone.cfg), head_inputs="surprise")
    load_weights(again, tmp_path / "det.safetensors")
    assert set(again.state_dict()) == set(model.state_dict())


def test_a_head_started_from_the_surprise_ranks_steps_as_the_zero_label_score(run: tuple[Path, pl.DataFrame]) -> None:
    from netflowgen.detect.finetune import DetectorModel, score_steps
    from netflowgen.train.steps import collate

    path, series = run
    model, tok, _ = load_run(path)
    steps = EncodedSteps.encode(series, tok, ("ddos",))
    det = DetectorModel(model, head_inputs="surprise")
    windows = np.array([[s, min(s + 16, e)] for s, e in steps.bounds for s in range(s, e, 16)])
    b = collate(steps, windows[:, 0], windows[:, 0], windows[:, 1], 16)
    feats = det.step_features(b.traffic, b.time, b.node, b.group)[b.mask]
    det.start_from_surprise(feats, positive_rate=0.05)
    logits = det.step_head(feats).squeeze(-1).detach().double()
    assert abs(float(logits.std()) - 2.0) < 1e-3 and abs(float((logits > 0).double().mean()) - 0.05) < 0.01
    # Step by step, the started head is an increasing function of the surprise in nats.
    nats = (feats[:, :2] * model.log_bins).sum(-1).double()
    order = torch.argsort(nats)
    assert torch.all(torch.diff(logits[order]) >= -1e-6)
    # And on the whole series it ranks rows exactly as the zero-label score read the same way.
    scored = score_steps(det, steps, 16, 0)
    zero = score_steps(model, steps, 16, 0, kind="surprise")
    inner = np.isfinite(zero)
    rank = lambda x: np.argsort(np.argsort(x, kind="stable"), kind="stable")  # noqa: E731
    # (float32 sigmoids saturate at the top: a few ties, so a rank correlation, not equality)
    assert np.corrcoef(rank(scored[inner]), rank(zero[inner]))[0, 1] > 0.99
    with pytest.raises(ValueError, match="no surprise"):
        DetectorModel(model, head_inputs="hidden").start_from_surprise(feats, 0.05)


def test_head_init_and_anchor_change_the_fit_and_are_recorded(run: tuple[Path, pl.DataFrame]) -> None:
    path, series = run
    base = dict(attack=("DDoS",), budget=parse_budget("1ep"), mode="probe", head_inputs="surprise", steps=10, window=16,
                history=8)
    zero = finetune(path, series, FinetuneConfig(**base, head_init="zero"), allowed=pl.col("step") < SPLIT,
                    show_progress=False)
    started = finetune(path, series, FinetuneConfig(**base, head_init="surprise"), allowed=pl.col("step") < SPLIT, show_progress=False)
    assert zero.manifest["head_init"] == "zero" and started.manifest["head_init"] == "surprise"
    assert not np.allclose(zero.fit_scores, started.fit_scores)
    # A strong anchor keeps the head nearer where it started than no anchor does. (With
    # head_init zero the start is the seeded random head, which can be rebuilt here.)
    from netflowgen.detect.finetune import DetectorModel

    torch.manual_seed(0)
    start = DetectorModel(load_run(path).model, head_inputs="surprise").step_head.weight.detach()
    moved = {}
    for anchor in (0.0, 100.0):
        det = finetune(path, series, FinetuneConfig(**{**base, "head_init": "zero"}, anchor=anchor, lr=0.05),
                       allowed=pl.col("step") < SPLIT, show_progress=False)
        moved[anchor] = float((det.model.step_head.weight.detach() - start).norm())
    assert moved[100.0] < 0.5 * moved[0.0], moved
    with pytest.raises(ValueError, match="head_init"):
        FinetuneConfig(head_init="ones")
    with pytest.raises(ValueError, match="anchor"):
        FinetuneConfig(anchor=-1)


def test_scoring_some_rows_gives_their_scores_of_scoring_everything(run: tuple[Path, pl.DataFrame]) -> None:
    path, series = run
    cfg = FinetuneConfig(attack=("DDoS",), budget=parse_budget("1ep"), steps=5, window=16, history=8)
    later = (series.sort("node", "step")["step"] >= SPLIT).to_numpy()
    full = finetune(path, series, cfg, allowed=pl.col("step") < SPLIT, show_progress=False)
    part = finetune(path, series, cfg, allowed=pl.col("step") < SPLIT, show_progress=False, score_rows=later)
    np.testing.assert_allclose(part.fit_scores[later], full.fit_scores[later], rtol=1e-6, atol=1e-9)
    scored = np.isfinite(part.fit_scores)
    assert scored[later].all() and 0 < scored.sum() < len(scored), "the earlier rows not labelled were left out"
    assert part.threshold == full.threshold, "calibrated on the same labelled rows"


def test_node_relative_surprise_puts_busy_and_quiet_nodes_on_one_scale() -> None:
    from netflowgen.detect.finetune import node_relative_surprise

    rng = np.random.default_rng(0)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    frames, raw = [], []
    for node, level in (("quiet", 5.0), ("busy", 40.0)):
        s = level + rng.normal(0, 1.0, 200)
        s[150] += 15.0  # the same jump on both nodes
        frames.append(pl.DataFrame({"node": [node] * 200, "step": [t0 + timedelta(seconds=10 * i) for i in range(200)]}))
        raw.append(s)
    series = pl.concat(frames).sort("node", "step")
    surprise = np.concatenate(raw[::-1])  # node order: busy, quiet
    z = node_relative_surprise(series, surprise, timedelta(seconds=10))
    busy, quiet = z[:200], z[200:]
    # Raw, every busy step outranks the quiet node's jump; relative, past the warm-up (a node's
    # first steps are compared with silence, as VolumeDetector does), each jump is its node's top.
    assert surprise[:200].min() > surprise[200 + 150]
    warm = 20
    assert busy[warm:].argmax() == 150 - warm and quiet[warm:].argmax() == 150 - warm
    assert abs(busy[150] - quiet[150]) < 0.3 * quiet[150] and quiet[150] > 5
    # Causal: changing a later step leaves earlier scores alone.
    later = surprise.copy()
    later[200 + 180] += 50
    again = node_relative_surprise(series, later, timedelta(seconds=10))
    np.testing.assert_array_equal(again[: 200 + 180], z[: 200 + 180])
    with pytest.raises(ValueError, match="199 surprise scores for 400 series rows"):
        node_relative_surprise(series, surprise[:199], timedelta(seconds=10))


def test_positive_surprise_weights_never_let_more_surprise_lower_the_score(run: tuple[Path, pl.DataFrame], tmp_path: Path) -> None:
    """surprise_weights="positive": after training (a high learning rate, no anchor), every
    effective weight on the surprise columns is positive, so raising any feature's surprise
    raises the step's logit; the detector reloads to the same scores and says how it was fitted."""
    from netflowgen.detect.finetune import DetectorModel

    path, series = run
    cfg = FinetuneConfig(attack=("DDoS",), budget=parse_budget("1ep"), mode="probe", head_inputs="surprise", steps=20,
                         window=16, history=8, lr=0.05, anchor=0.0, surprise_weights="positive")
    det = finetune(path, series, cfg, tmp_path / "det", allowed=pl.col("step") < SPLIT, show_progress=False)
    w = det.model.head_weight().detach()
    assert det.manifest["surprise_weights"] == "positive" and bool((w > 0).all()), w
    feats = torch.rand(64, w.shape[1]) * 3
    for j in range(w.shape[1]):
        more = feats.clone()
        more[:, j] += 1.0
        base = torch.nn.functional.linear(feats, w, det.model.step_head.bias)
        assert bool((torch.nn.functional.linear(more, w, det.model.step_head.bias) > base).all())
    again = load_detector(tmp_path / "det")
    assert again.manifest["surprise_weights"] == "positive"
    assert np.array_equal(again.score(series)["score"].to_numpy(), det.score(series)["score"].to_numpy())
    # A free head's weights take any sign; a head on the hidden state alone has no surprise columns.
    torch.manual_seed(0)
    assert bool((DetectorModel(load_run(path).model, head_inputs="surprise").head_weight() < 0).any())
    with pytest.raises(ValueError, match="reads the surprise"):
        DetectorModel(load_run(path).model, head_inputs="hidden", surprise_weights="positive")
    with pytest.raises(ValueError, match="surprise_weights"):
        FinetuneConfig(surprise_weights="negative")
    with pytest.raises(ValueError, match="reads the surprise"):
        FinetuneConfig(head_inputs="hidden", surprise_weights="positive")
