"""Detection metrics on hand-made frames whose answers are known."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from netflowgen.evaluate.metrics import (
    ThresholdRule,
    best_single_feature,
    calibrate_threshold,
    detection_metrics,
    episode_delays,
    episodes,
    join_scores,
    single_feature_scores,
    summarize_seeds,
)

T0 = datetime(2024, 5, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)


def at(k: int) -> datetime:
    return T0 + k * MIN


def frame(node: str, ks: list[int], labels: list[int], scores: list[float] | None = None) -> pl.DataFrame:
    data = {"node": [node] * len(ks), "step": [at(k) for k in ks], "label": [bool(v) for v in labels]}
    if scores is not None:
        data["score"] = [float(s) for s in scores]
    return pl.DataFrame(data, schema_overrides={"step": pl.Datetime("us", "UTC")})


# --- episodes -------------------------------------------------------------------------------


def test_episodes_runs_merging_and_missing_steps() -> None:
    a = frame("a", list(range(8)), [1, 1, 1, 0, 0, 1, 0, 1])
    # node b has rows 0..3 and 10..12: steps 4..9 are missing (two activity periods)
    b = frame("b", [0, 1, 2, 3, 10, 11, 12], [0, 0, 0, 1, 1, 0, 0])
    labels = pl.concat([b, a])  # out of order on purpose

    e0 = episodes(labels, MIN)
    assert e0.columns == ["node", "onset", "end", "steps", "positive_steps"]
    assert e0.rows() == [("a", at(0), at(2), 3, 3), ("a", at(5), at(5), 1, 1), ("a", at(7), at(7), 1, 1),
                         ("b", at(3), at(3), 1, 1), ("b", at(10), at(10), 1, 1)]
    # one negative step between a's runs 5 and 7, two between 2 and 5; b's positives are 6 missing steps apart
    e1 = episodes(labels, MIN, max_gap_steps=1)
    assert e1.rows() == [("a", at(0), at(2), 3, 3), ("a", at(5), at(7), 3, 2),
                         ("b", at(3), at(3), 1, 1), ("b", at(10), at(10), 1, 1)]
    e2 = episodes(labels, MIN, max_gap_steps=2)
    assert e2.rows() == [("a", at(0), at(7), 8, 5), ("b", at(3), at(3), 1, 1), ("b", at(10), at(10), 1, 1)]
    e6 = episodes(labels, MIN, max_gap_steps=6)
    assert e6.rows()[-1] == ("b", at(3), at(10), 8, 2)
    assert episodes(labels, MIN, max_gap_steps=5).height == 3


def test_episodes_with_another_label_column_and_none() -> None:
    f = frame("a", [0, 1], [0, 0]).rename({"label": "attack"})
    out = episodes(f, MIN, label="attack")
    assert out.height == 0
    assert out.schema["steps"] == pl.Int64


def test_episodes_bad_input_is_named() -> None:
    f = frame("a", [0, 1, 1], [1, 0, 1])
    with pytest.raises(ValueError, match="duplicate"):
        episodes(f, MIN)
    with pytest.raises(ValueError, match="not whole steps"):
        episodes(frame("a", [0, 1], [1, 1]), timedelta(seconds=45))
    with pytest.raises(ValueError, match="missing column"):
        episodes(frame("a", [0], [1]).drop("label"), MIN)
    with pytest.raises(TypeError, match="must be bool"):
        episodes(frame("a", [0], [1]).with_columns(pl.col("label").cast(pl.Int8)), MIN)
    with pytest.raises(ValueError, match="null"):
        episodes(frame("a", [0, 1], [1, 0]).with_columns(pl.lit(None, pl.Boolean).alias("label")), MIN)


# --- delays and alert counts ----------------------------------------------------------------


def delay_frame() -> pl.DataFrame:
    # node a: episode 1 at steps 2..4 alerted at its onset (delay 0); episode 2 at 8..11 alerted at
    #         step 10 (delay 2); an alert at step 7 (just before) does not count for it.
    # node b: episode at 3..5 never alerted inside; an alert at step 1 before it and one at 6 after it.
    a = frame("a", list(range(14)),
              [0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0],
              [0, 0, 9, 0, 0, 0, 0, 9, 0, 0, 9, 9, 0, 0])
    b = frame("b", list(range(8)),
              [0, 0, 0, 1, 1, 1, 0, 0],
              [0, 9, 0, 0, 0, 0, 9, 0])
    return pl.concat([a, b])


def test_detection_delay_onset_later_before_and_missed() -> None:
    d = episode_delays(delay_frame(), 5.0, MIN)
    assert d.select("node", "onset", "first_alert", "delay").rows() == [
        ("a", at(2), at(2), 0), ("a", at(8), at(10), 2), ("b", at(3), None, None)]
    m = detection_metrics(delay_frame(), 5.0, MIN)
    assert m.delays == (0, 2, None)
    assert (m.episodes, m.episodes_detected) == (3, 2)
    assert m.detected_fraction == pytest.approx(2 / 3)
    assert (m.mean_delay, m.median_delay) == (1.0, 1.0)
    # alerts: a at 2, 7, 10, 11 and b at 1, 6; true ones are a 2, 10, 11
    assert (m.alerts, m.true_alerts, m.false_alerts, m.positives, m.rows) == (6, 3, 3, 10, 22)
    assert m.precision == 0.5
    assert m.recall == pytest.approx(0.3)
    assert m.f1 == pytest.approx(2 * 3 / (2 * 3 + 3 + 7))
    assert m.node_days == pytest.approx(22 / 1440)
    assert m.false_alerts_per_node_day == pytest.approx(3 / (22 / 1440))


def test_delay_with_merged_episode_counts_alert_in_the_gap() -> None:
    f = frame("a", list(range(6)), [1, 0, 0, 1, 1, 0], [0, 0, 9, 0, 0, 0])
    assert detection_metrics(f, 5.0, MIN).delays == (None, None)
    assert detection_metrics(f, 5.0, MIN, max_gap_steps=2).delays == (2,)


def test_false_alerts_per_node_day_two_nodes_one_day() -> None:
    n = 1440  # one day of 60 s steps
    rng = np.random.default_rng(1)
    parts = []
    for node, alerts in (("a", [10, 500]), ("b", [700])):
        scores = np.zeros(n)
        scores[alerts] = 1.0
        labels = np.zeros(n, dtype=int)
        labels[900:905] = 1  # an attack, scored below the threshold
        scores[900:905] = rng.uniform(0, 0.4, 5)
        parts.append(frame(node, list(range(n)), labels.tolist(), scores.tolist()))
    m = detection_metrics(pl.concat(parts), 0.5, timedelta(seconds=60))
    assert m.node_days == 2.0
    assert m.false_alerts == 3
    assert m.false_alerts_per_node_day == 1.5
    assert m.delays == (None, None)
    assert m.precision == 0.0 and m.recall == 0.0 and m.f1 == 0.0


def test_metrics_without_alerts_or_positives() -> None:
    f = frame("a", [0, 1, 2], [0, 0, 0], [0.1, 0.2, 0.3])
    m = detection_metrics(f, 1.0, MIN)
    assert (m.pr_auc, m.roc_auc, m.precision, m.recall, m.f1) == (None, None, None, None, None)
    assert (m.episodes, m.detected_fraction, m.mean_delay, m.delays) == (0, None, None, ())
    d = m.to_dict()
    assert d["delays"] == [] and d["false_alerts_per_node_day"] == 0.0


def test_metrics_reject_bad_scores() -> None:
    f = frame("a", [0, 1], [0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="NaN or infinite"):
        detection_metrics(f, 0.5, MIN)
    with pytest.raises(ValueError, match="no rows"):
        detection_metrics(f.clear(), 0.5, MIN)


# --- AUCs -----------------------------------------------------------------------------------


def test_pr_auc_of_a_perfect_a_constant_and_a_random_scorer() -> None:
    n = 2000
    rng = np.random.default_rng(0)
    y = np.zeros(n, dtype=bool)
    y[rng.choice(n, 200, replace=False)] = True
    base = {"node": ["a"] * n, "step": [at(k) for k in range(n)], "label": y}
    perfect = detection_metrics(pl.DataFrame({**base, "score": y.astype(float)}), 0.5, MIN)
    assert (perfect.pr_auc, perfect.roc_auc, perfect.f1) == (1.0, 1.0, 1.0)
    constant = detection_metrics(pl.DataFrame({**base, "score": np.zeros(n)}), 0.5, MIN)
    assert constant.pr_auc == pytest.approx(0.1)  # average precision of ties everywhere = prevalence
    assert constant.roc_auc == 0.5
    random = detection_metrics(pl.DataFrame({**base, "score": rng.random(n)}), 0.5, MIN)
    assert abs(random.pr_auc - 0.1) < 0.03
    assert abs(random.roc_auc - 0.5) < 0.05


# --- threshold --------------------------------------------------------------------------------


def test_calibrate_f1_picks_the_best_and_breaks_ties_upwards() -> None:
    # alerting from 0.8: F1 2/3; 0.4: 1/2; 0.35: 4/5; 0.1: 2/3. The threshold is mid-way to 0.1.
    assert calibrate_threshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.225)
    # 0.9: tp 1 fp 0 -> 2/3; 0.8: 1/2; 0.7: 2/5; 0.6: tp 2 fp 2 -> 2/3: the fewer alerts win
    assert calibrate_threshold(np.array([0.6, 0.7, 0.8, 0.9]), np.array([True, False, False, True])) == pytest.approx(0.85)
    # ties in scores are one candidate; with every step alerting there is no gap below
    assert calibrate_threshold(pl.Series([0.5, 0.5, 0.2, 0.2]), pl.Series([True, False, True, False])) == 0.2


def test_calibrate_leaves_a_margin_below_the_weakest_validation_attack() -> None:
    # A few labelled episodes scoring from 0.98, benign steps at most 0.48 (issue 14's run): an
    # unseen attack scoring 0.8 alerts, and no benign step does.
    rng = np.random.default_rng(0)
    benign = rng.uniform(0.1, 0.48, 500)
    scores = np.r_[benign, 0.48, [0.981, 0.99, 0.995]]
    labels = np.r_[np.zeros(501, bool), np.ones(3, bool)]
    t = calibrate_threshold(scores, labels)
    assert t == pytest.approx((0.48 + 0.981) / 2)
    assert 0.8 >= t and (scores[~labels] < t).all() and (scores[labels] >= t).all()
    # the validation decisions are those of the best F1 whatever the threshold in the gap
    assert calibrate_threshold(scores, labels, rule="fpr", max_fpr=0.0) == pytest.approx(t)


def test_calibrate_adjacent_floats_keep_the_alerting_score() -> None:
    high = 0.5
    low = float(np.nextafter(high, 0))
    assert calibrate_threshold([low, high], [False, True]) == high


def test_calibrate_fpr_lowest_threshold_within_the_rate() -> None:
    neg = [i / 10 for i in range(10)]  # 0.0 .. 0.9
    scores = [*neg, 0.75, 0.95]
    labels = [False] * 10 + [True, True]
    # at 0.75 two negatives (0.8, 0.9) alert: 2/10 <= 0.2; at 0.7 three
    # the threshold is mid-way to the next lower score
    assert calibrate_threshold(scores, labels, rule="fpr", max_fpr=0.2) == pytest.approx(0.725)
    assert calibrate_threshold(scores, labels, rule=ThresholdRule.FPR, max_fpr=0.0) == pytest.approx(0.925)
    assert calibrate_threshold(scores, labels, rule="fpr", max_fpr=1.0) == 0.0
    # every candidate above the rate: just above the highest score, nothing alerts
    assert calibrate_threshold([0.3, 0.3], [False, False], rule="fpr", max_fpr=0.1) == np.nextafter(0.3, 1)


def test_calibrate_without_positives_or_negatives() -> None:
    t = calibrate_threshold([0.2, 0.9, 0.4], [False, False, False])
    assert t == np.nextafter(0.9, math.inf) and t > 0.9
    assert calibrate_threshold([0.2, 0.9, 0.4], [True, True, True]) == 0.2
    assert calibrate_threshold([0.2, 0.9, 0.4], [True, True, True], rule="fpr") == 0.2


def test_calibrate_bad_input() -> None:
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        calibrate_threshold([1, 2, 3], [True, False])
    with pytest.raises(ValueError, match="NaN"):
        calibrate_threshold([1.0, float("nan")], [True, False])
    with pytest.raises(ValueError, match="rule must be one of"):
        calibrate_threshold([1.0], [True], rule="youden")
    with pytest.raises(ValueError, match="no validation rows"):
        calibrate_threshold([], [])


# --- single feature and seeds -------------------------------------------------------------


def test_best_single_feature_raw_and_node_z() -> None:
    # node a: 10 quiet steps at 100 flows, then 2 attack steps at 200; node b: never attacked,
    # alternating 990/1010. Raw flows_in ranks b above a's attack; the per-node z-score does not.
    a = {"node": ["a"] * 12, "flows_in": [100] * 10 + [200] * 2, "syn": [0] * 12, "attack": [False] * 10 + [True] * 2}
    b = {"node": ["b"] * 12, "flows_in": [990, 1010] * 6, "syn": [0] * 12, "attack": [False] * 12}
    series = pl.concat([pl.DataFrame(a), pl.DataFrame(b)]).with_columns(pl.col("flows_in", "syn").cast(pl.UInt64))
    table = single_feature_scores(series, ["flows_in", "syn"])
    assert table["name"].to_list()[0] == "flows_in:node_z"
    raw = table.filter(pl.col("name") == "flows_in")["pr_auc"].item()
    assert raw == pytest.approx(2 / 14)  # the attack rows rank below all of b's 12 rows
    assert best_single_feature(series, ["flows_in", "syn"]) == ("flows_in:node_z", 1.0)
    assert best_single_feature(series, ["flows_in", "syn"], node_z=False) == ("flows_in", pytest.approx(2 / 14))
    # a constant feature is a constant scorer: PR-AUC = prevalence
    assert table.filter(pl.col("name") == "syn")["pr_auc"].item() == pytest.approx(2 / 24)


def test_best_single_feature_needs_positives() -> None:
    series = pl.DataFrame({"node": ["a", "a"], "flows_in": [1, 2], "attack": [False, False]})
    with pytest.raises(ValueError, match="no positive rows"):
        best_single_feature(series, ["flows_in"])


def test_summarize_seeds_mean_std_counts() -> None:
    runs = [{"f1": 0.5, "mean_delay": None, "delays": [0, None], "rule": "f1"},
            {"f1": 0.75, "mean_delay": 2, "delays": [1]},
            {"f1": 1.0, "mean_delay": 4, "pr_auc": float("nan")}]
    out = summarize_seeds(runs)
    assert out["f1"] == {"mean": 0.75, "std": 0.25, "n": 3}
    assert out["mean_delay"] == {"mean": 3.0, "std": pytest.approx(math.sqrt(2)), "n": 2}
    assert out["pr_auc"] == {"mean": None, "std": None, "n": 0}
    assert "delays" not in out and "rule" not in out
    assert summarize_seeds([{"f1": 0.5}])["f1"] == {"mean": 0.5, "std": None, "n": 1}


def test_join_scores_requires_every_row() -> None:
    series = frame("a", [0, 1, 2], [0, 1, 0]).rename({"label": "attack"})
    scores = frame("a", [0, 1, 2, 3], [0, 0, 0, 0], [0.1, 0.9, 0.2, 0.3]).drop("label")
    joined = join_scores(scores, series)
    assert joined.columns == ["node", "step", "label", "score"]
    assert joined["score"].to_list() == [0.1, 0.9, 0.2]
    with pytest.raises(ValueError, match="1 of 3 series row"):
        join_scores(scores.filter(pl.col("step") != at(1)), series)
