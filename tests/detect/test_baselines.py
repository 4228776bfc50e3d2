"""The classical detectors on small synthetic series with known behaviour."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from netflowgen.detect import GBTConfig, GBTDetector, VolumeConfig, VolumeDetector
from netflowgen.detect.baselines import infer_step, lag_features
from netflowgen.evaluate.metrics import (
    detection_metrics,
    join_scores,
)

T0 = datetime(2024, 5, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)


def at(k: int) -> datetime:
    return T0 + k * MIN


def series(node: str, ks: list[int] | range, **cols: list[int] | np.ndarray) -> pl.DataFrame:
    ks = list(ks)
    data: dict = {"node": [node] * len(ks), "group": ["g"] * len(ks), "step": [at(k) for k in ks]}
    for name, values in cols.items():
        data[name] = values
    df = pl.DataFrame(data, schema_overrides={"step": pl.Datetime("us", "UTC")})
    casts = [pl.col(n).cast(pl.UInt64) for n in cols if n != "attack"]
    if "attack" in cols:
        casts.append(pl.col("attack").cast(pl.Boolean))
    return df.with_columns(casts)


def poisson_node(node: str, n: int, lam: float, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    flows = rng.poisson(lam, n)
    return series(node, range(n), flows_in=flows, packets_in=flows * 3 + rng.poisson(2, n), attack=np.zeros(n, bool))


# --- VolumeDetector -------------------------------------------------------------------------


def test_volume_is_causal() -> None:
    base = pl.concat([poisson_node("a", 200, 20, 1), poisson_node("b", 200, 50, 2)])
    before = VolumeDetector().score(base)
    changed = base.with_columns(
        pl.when((pl.col("node") == "a") & (pl.col("step") == at(150))).then(5000).otherwise(pl.col("flows_in"))
        .alias("flows_in"))
    after = VolumeDetector().score(changed)
    assert before.select("node", "step").equals(after.select("node", "step"))
    early = (pl.col("node") == "b") | (pl.col("step") < at(150))
    assert before.filter(early)["score"].to_list() == after.filter(early)["score"].to_list()
    # the change does show at and after the changed step (so the check above can fail)
    late = (pl.col("node") == "a") & (pl.col("step") >= at(150))
    diff = np.abs(before.filter(late)["score"].to_numpy() - after.filter(late)["score"].to_numpy())
    assert diff[0] > 5 and diff[1] > 0


def test_volume_flags_an_injected_spike() -> None:
    node = poisson_node("a", 300, 20, 3)
    spiked = node.with_columns(
        pl.when(pl.col("step") == at(200)).then(2000).otherwise(pl.col("flows_in")).alias("flows_in"),
        (pl.col("step") == at(200)).alias("attack"))
    scores = VolumeDetector().score(spiked)
    top = scores.sort("score", descending=True).row(0, named=True)
    assert top["step"] == at(200)
    assert top["score"] > 5
    rest = scores.filter(pl.col("step") != at(200))["score"]
    assert rest.max() < 3
    m = detection_metrics(join_scores(scores, spiked), 4.0, MIN)
    assert (m.delays, m.false_alerts) == ((0,), 0)


def test_volume_flags_a_node_that_appears_with_the_attack() -> None:
    # a victim seen only from the attack on (nodes=dst series): no history, compared with silence
    quiet = poisson_node("a", 50, 3, 6)
    victim = series("v", range(40, 43), flows_in=[3000, 2500, 2800], packets_in=[9000, 8000, 8500],
                    attack=[True] * 3)
    scores = VolumeDetector().score(pl.concat([quiet, victim]))
    assert scores.filter(pl.col("node") == "v")["score"][0] > 3
    assert scores.filter(pl.col("node") == "a")["score"].max() < 2


def test_volume_exact_score_warmup_and_gap_reset() -> None:
    # constant 9 flows for 5 steps, then 99: log1p jumps by log(10). The EWMA variance of a
    # constant is 0; with 5 previous steps and warmup 10 the variance used is half the prior's.
    cfg = VolumeConfig(features=("flows_in",), min_std=0.5, prior_std=2.0, warmup_steps=10)
    s = series("a", [0, 1, 2, 3, 4, 5, 20, 21], flows_in=[9, 9, 9, 9, 9, 99, 9, 9])
    scores = VolumeDetector(cfg).score(s)["score"].to_list()
    # first step: compared with silence under the prior spread
    assert scores[0] == pytest.approx(math.log(10) / math.sqrt(4 + 0.25))
    assert scores[1:5] == [0.0] * 4
    assert scores[5] == pytest.approx(math.log(10) / math.sqrt(0.5 * 4 + 0.25))
    # step 20 starts a new segment (steps 6..19 missing): no history again
    assert scores[6] == pytest.approx(scores[0]) and scores[7] == 0.0
    no_warmup = VolumeDetector(VolumeConfig(features=("flows_in",), warmup_steps=1)).score(s)["score"].to_list()
    assert no_warmup[5] == pytest.approx(math.log(10) / 0.5)


def test_volume_ewma_matches_the_recurrence() -> None:
    rng = np.random.default_rng(5)
    x = rng.poisson(30, 60)
    cfg = VolumeConfig(features=("flows_in",), halflife_steps=7.0, warmup_steps=4, prior_std=1.5, min_std=0.3)
    got = VolumeDetector(cfg).score(series("a", range(60), flows_in=x))["score"].to_numpy()
    a, v = cfg.alpha, np.log1p(x.astype(float))
    m, var, want = v[0], 0.0, [v[0] / math.sqrt(1.5**2 + 0.3**2)]
    for t in range(1, 60):
        w = min(1.0, t / 4)
        want.append((v[t] - m) / math.sqrt(w * var + (1 - w) * 1.5**2 + 0.3**2))
        d = v[t] - m
        m += a * d
        var = (1 - a) * (var + a * d * d)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_volume_fit_calibrates_on_its_scores() -> None:
    node = poisson_node("a", 120, 20, 4).with_columns(
        pl.when(pl.col("step").is_in([at(60), at(61)])).then(400).otherwise(pl.col("flows_in")).alias("flows_in"),
        pl.col("step").is_in([at(60), at(61)]).alias("attack"))
    det = VolumeDetector().fit(node.reverse())  # any row order
    scores = det.score(node).sort("step")["score"].to_numpy()
    attack = node.sort("step")["attack"].to_numpy()
    # The flood separates: fitted at max F1, the threshold alerts on both attack steps and on no
    # other step, and lies between the highest normal score and the lowest attack score.
    assert scores[~attack].max() < det.threshold <= scores[attack].min()
    assert det.threshold == VolumeDetector().fit(node).threshold


def test_volume_bad_input() -> None:
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['packets_in'\]"):
        VolumeDetector().score(series("a", [0, 1], flows_in=[1, 2]))
    with pytest.raises(ValueError, match="duplicate"):
        VolumeDetector().score(series("a", [0, 0], flows_in=[1, 2], packets_in=[1, 1]))
    with pytest.raises(ValueError, match="halflife"):
        VolumeConfig(halflife_steps=0)
    with pytest.raises(ValueError, match="warmup_steps must be at least 1"):
        VolumeConfig(warmup_steps=0)


# --- lags -----------------------------------------------------------------------------------


def test_lags_never_cross_gaps_or_nodes() -> None:
    a = series("a", [0, 1, 2, 10, 11, 12], flows_in=[1, 2, 3, 4, 5, 6])
    b = series("b", [3, 4], flows_in=[7, 8])
    table = lag_features(pl.concat([b, a]), ["flows_in"], 2, MIN, log1p=False)
    assert table.columns == ["node", "step", "flows_in", "flows_in_lag1", "flows_in_delta1", "flows_in_lag2",
                             "flows_in_delta2"]
    assert table["flows_in_lag1"].to_list() == [None, 1, 2, None, 4, 5, None, 7]
    assert table["flows_in_lag2"].to_list() == [None, None, 1, None, None, 4, None, None]
    assert table["flows_in_delta1"].to_list() == [None, 1, 1, None, 1, 1, None, 1]
    assert infer_step(a) == MIN


def test_relative_features_are_causal_and_measure_the_node_against_itself() -> None:
    flows = [10] * 30 + [100, 10, 10]
    a = series("a", range(33), flows_in=flows)
    table = lag_features(a, ["flows_in"], 0, MIN, relative=True)
    assert table.columns == ["node", "step", "flows_in", "flows_in_z", "flows_in_vs_median"]
    ratio = table["flows_in_vs_median"].to_numpy()
    assert ratio[0] == pytest.approx(math.log1p(10))  # no past: compared with silence
    assert ratio[1:30] == pytest.approx(0.0, abs=1e-6)  # a steady node is at its own median
    assert ratio[30] == pytest.approx(math.log1p(100) - math.log1p(10), rel=1e-5)
    z = table["flows_in_z"].to_numpy()
    assert z[30] > 3 and abs(z[29]) < 0.1
    # Changing the future changes nothing before it.
    b = series("a", range(33), flows_in=flows[:31] + [500, 0])
    again = lag_features(b, ["flows_in"], 0, MIN, relative=True)
    assert again.head(31).equals(table.head(31))
    # A quiet node's flood and a busy node's normal step: alike in value, apart relative to each node.
    quiet = series("q", range(31), flows_in=[2] * 30 + [200])
    busy = series("b", range(31), flows_in=[200] * 31)
    both = lag_features(pl.concat([quiet, busy]), ["flows_in"], 0, MIN, relative=True).filter(pl.col("step") == at(30))
    (b_row, q_row) = both.sort("node").iter_rows(named=True)
    assert b_row["flows_in"] == q_row["flows_in"]
    assert abs(b_row["flows_in_vs_median"]) < 1e-6 and q_row["flows_in_vs_median"] > 4


# --- GBTDetector ----------------------------------------------------------------------------


def jump_series(seed: int, nodes: int = 12, n: int = 150) -> pl.DataFrame:
    """Nodes with different baselines; an attack step is one whose flows_in is 4x the previous
    step's: only the lag (delta) reveals it, the value alone overlaps busier nodes' normal steps."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(nodes):
        lam = float(rng.choice([5, 20, 80, 300]))
        flows = rng.poisson(lam, n).astype(np.int64)
        attack = np.zeros(n, bool)
        onsets = rng.choice(np.arange(5, n), 8, replace=False)
        flows[onsets] = flows[onsets - 1] * 4 + 4
        attack[onsets] = True
        parts.append(series(f"n{seed}-{i}", range(n), flows_in=flows, packets_in=flows * 2, attack=attack))
    return pl.concat(parts)


SMALL = GBTConfig(features=("flows_in", "packets_in"), lags=2, num_boost_round=60, num_threads=2, seed=7)


def test_gbt_learns_a_lag_rule_and_is_reproducible(tmp_path: Path) -> None:
    train, valid, test = jump_series(1), jump_series(2), jump_series(3)
    det = GBTDetector(SMALL).fit(train, valid_series=valid)
    scores = det.score(test)
    m = detection_metrics(join_scores(scores, test), det.threshold, MIN)
    assert m.pr_auc > 0.95
    assert det.info["threshold_calibrated_on"] == "valid"
    assert det.info["scale_pos_weight"] == pytest.approx((12 * 150 - 96) / 96)
    again = GBTDetector(SMALL).fit(train, valid_series=valid).score(test)
    assert np.array_equal(scores["score"].to_numpy(), again["score"].to_numpy())

    path = det.save(tmp_path / "gbt")
    manifest = json.loads((path / "netflowgen.json").read_text())
    assert manifest["kind"] == "netflowgen.detector.gbt"
    assert (path / "model.txt").read_text().startswith("tree")
    loaded = GBTDetector.load(path)
    assert loaded.threshold == det.threshold and loaded.step == MIN and loaded.config == det.config
    assert np.array_equal(loaded.score(test)["score"].to_numpy(), scores["score"].to_numpy())


def test_gbt_without_lags_cannot_see_the_rule() -> None:
    # the same data with lags=0: the task needs the previous step, so the value alone does worse
    train, test = jump_series(1), jump_series(3)
    cfg = GBTConfig(features=("flows_in", "packets_in"), lags=0, num_boost_round=60, num_threads=2)
    scores = GBTDetector(cfg).fit(train).score(test)
    assert detection_metrics(join_scores(scores, test), 0.5, MIN).pr_auc < 0.8


def test_gbt_errors() -> None:
    det = GBTDetector(SMALL)
    with pytest.raises(RuntimeError, match="fit"):
        det.score(jump_series(1, nodes=1))
    no_pos = jump_series(1, nodes=2).with_columns(pl.lit(False).alias("attack"))
    with pytest.raises(ValueError, match="both classes"):
        det.fit(no_pos)
    fitted = GBTDetector(SMALL).fit(jump_series(1, nodes=3))
    five = jump_series(2, nodes=1).with_columns(pl.col("step").dt.offset_by("4m") + (pl.col("step") - pl.col("step").min()) * 4)
    with pytest.raises(ValueError, match="the series' step is 300 s but the GBT detector works on 60 s steps"):
        fitted.score(five)
    # Steps off the model's grid, even a series one step wide, are refused: its lags would be misread.
    off = jump_series(2, nodes=1).with_columns(pl.col("step").dt.offset_by("30s"))
    for part in (off, off.head(1)):
        with pytest.raises(ValueError, match="not on the 60 s grid of the GBT detector"):
            fitted.score(part)
    with pytest.raises(ValueError, match="not a netflowgen artifact"):
        GBTDetector.load(Path("/nonexistent-gbt"))


def test_volume_can_hold_its_state_over_a_hole_in_the_data() -> None:
    # A steady node observed in two windows an hour apart: its first step after the hole is normal.
    steady = series("a", [*range(30), *range(90, 120)], flows_in=[20] * 60, packets_in=[60] * 60)
    reset = VolumeDetector(VolumeConfig()).score(steady)["score"].to_numpy()
    held = VolumeDetector(VolumeConfig(hold_over=timedelta(hours=2))).score(steady)["score"].to_numpy()
    assert reset[30] > 1.0, "after the hole the node is compared with silence"
    assert abs(held[30]) < 0.1 and np.allclose(held[:30], reset[:30])
    # A hole longer than the hold starts again from nothing.
    short = VolumeDetector(VolumeConfig(hold_over=timedelta(minutes=30))).score(steady)["score"].to_numpy()
    assert short[30] == pytest.approx(reset[30])
