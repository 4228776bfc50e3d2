"""Victims across activity levels, episode times inside coverage, and the suite's plan mode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from netflowgen.cli import app
from netflowgen.evaluate.victims import draw_victims, episode_times

T0 = datetime(2024, 5, 6, tzinfo=UTC)
STEP = timedelta(minutes=1)
runner = CliRunner()


def node_series(rates: dict[str, float], minutes: int = 600, seed: int = 0) -> pl.DataFrame:
    """Per node, Poisson flows per minute around its rate (a few silent minutes)."""
    rng = np.random.default_rng(seed)
    frames = []
    for node, rate in rates.items():
        flows = rng.poisson(rate, minutes)
        frames.append(pl.DataFrame({"node": node, "step": [T0 + k * STEP for k in range(minutes)],
                                    "flows_in": flows, "flows_out": np.zeros(minutes, np.int64)}))
    return pl.concat(frames).with_columns(pl.col("step").cast(pl.Datetime("us", "UTC")))


def test_victims_come_from_every_activity_level_and_never_from_both_parts() -> None:
    rates = {f"q{i}": 0.5 for i in range(10)} | {f"m{i}": 5.0 for i in range(10)} | {f"b{i}": 50.0 for i in range(10)}
    series = node_series(rates)
    cut = T0 + 300 * STEP
    victims = draw_victims(series, cut, fit=6, test=6, min_active=20, rng=np.random.default_rng(1), what="t",
                           step=STEP, spacing=timedelta(minutes=30), episodes={"fit": 2, "test": 3})
    for part in ("fit", "test"):
        mine = [v for v in victims if v.part == part]
        assert len(mine) == 6
        assert sorted(v.level for v in mine) == ["busy", "busy", "median", "median", "quiet", "quiet"]
        assert {v.node[0] for v in mine} == {"q", "m", "b"}  # the levels are the nodes' real rates
    assert len({v.node for v in victims}) == 12
    with pytest.raises(ValueError, match="31 test victims asked for, but only 30 nodes"):
        draw_victims(series, cut, fit=0, test=31, min_active=20, rng=np.random.default_rng(1), what="t", step=STEP,
                     spacing=timedelta(minutes=30), episodes={"fit": 2, "test": 3})


def test_episode_times_are_spaced_inside_the_part_and_where_the_background_was_observed() -> None:
    series = node_series({"a": 5.0}, minutes=600)
    # Observed: minutes 0-99 and 300-599 only (in microseconds).
    covered = np.array([int((T0 + k * STEP).timestamp() * 1e6) for k in [*range(100), *range(300, 600)]])
    lo, hi = T0 + 50 * STEP, T0 + 590 * STEP
    times = episode_times(series, "a", lo, hi, k=8, length=timedelta(minutes=5), spacing=timedelta(minutes=30),
                          step=STEP, rng=np.random.default_rng(2), what="t", covered=covered)
    assert len(times) == 8 and times == sorted(times)
    assert all(b - a >= timedelta(minutes=30) for a, b in zip(times, times[1:]))
    for t in times:
        minute = int((t - T0) / STEP)
        assert lo <= t and t + timedelta(minutes=5) <= hi + STEP
        assert minute in range(50, 98) or minute in range(300, 598), minute  # the onset and two steps after observed
    with pytest.raises(ValueError, match="room for only"):
        episode_times(series, "a", lo, hi, k=30, length=timedelta(minutes=5), spacing=timedelta(minutes=30), step=STEP,
                      rng=np.random.default_rng(2), what="t", covered=covered)


def test_plan_counts_victims_episodes_and_types_per_part_without_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.simulate.test_inject import attack_table

    monkeypatch.delenv("NETFLOWGEN_SHARED_DATA", raising=False)  # CI sets it; this suite names its own data

    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "data" / "sim"), "--nodes", "12", "--days", "1",
                                 "--attacks", "0", "--scans", "0", "--json"])
    assert result.exit_code == 0, result.output
    attack_table(minutes=2, per_minute=300).write_parquet(tmp_path / "data" / "syn.parquet")
    attack_table(minutes=1, per_minute=200).with_columns(pl.lit(17, pl.UInt8).alias("proto")).write_parquet(
        tmp_path / "data" / "udp.parquet")
    suite = """
name = "plan"
data = "data"
{settings}
[datasets.sim]
inputs = ["sim"]
[[tasks]]
name = "many"
kind = "inject"
backgrounds = ["sim"]
train_attacks = ["syn.parquet"]
test_attacks = ["udp.parquet"]
victims = 6
injections_per_victim = 3
fit_injections_per_victim = 2
intensities = ["4x", "1x"]
min_active_steps = 10
fit_fraction = 0.5
"""
    (tmp_path / "suite.toml").write_text(suite.format(settings=""))
    result = runner.invoke(app, ["benchmark", str(tmp_path / "suite.toml"), "--out", str(tmp_path / "out"), "--plan", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["tasks"]["many"]
    assert plan["test"]["victims"] == 3 and plan["fit"]["victims"] == 3
    assert plan["test"]["episodes"] == 9 and plan["fit"]["episodes"] == 6
    assert plan["test"]["attack_types"] == ["udp"] and plan["fit"]["attack_types"] == ["syn"]
    assert plan["test"]["positive_steps"] >= 9
    assert not (tmp_path / "out" / "pretrain").exists(), "planning trains nothing"

    # The same tasks run: per intensity, per method, with intervals over the three test victims.
    (tmp_path / "suite.toml").write_text(suite.format(settings='methods = ["volume", "ewma"]\nseeds = [0]\n'
                                                      'budgets = ["1ep"]\nbootstrap = 50\npretrain = { size = "tiny", '
                                                      'steps = 2, batch_size = 4, context = 16 }'))
    result = runner.invoke(app, ["benchmark", str(tmp_path / "suite.toml"), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    task = json.loads((tmp_path / "out" / "results.json").read_text())["tasks"]["many"]
    assert task["test_victims"] == 3 and task["test_episodes"] == 9
    run = next(r for r in task["runs"] if r["method"] == "ewma")
    assert set(run["by_intensity"]) == {"4x", "1x"}
    assert task["comparisons"]["budgets"]["1ep"]["reference"] in ("volume", "ewma")
    levels = task["intensity_comparisons"]
    assert set(levels) == {"4x", "1x"}
    for level in levels.values():
        ewma = level["budgets"]["1ep"]["pr_auc"]["ewma"]
        assert ewma["low"] <= ewma["value"] <= ewma["high"] and level["victims"] == 3
        assert 0 < level["best_single_feature"]["pr_auc"] <= 1 and level["positive_steps"] > 0
    # Each intensity holds its own attack steps only: together they are the test part's.
    assert sum(lv["positive_steps"] for lv in levels.values()) == task["test_positive"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "By attack intensity" in report and "| 4x |" in report


def test_a_missing_capture_or_too_few_victims_is_a_clear_error_naming_task_and_file(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.simulate.test_inject import attack_table

    monkeypatch.delenv("NETFLOWGEN_SHARED_DATA", raising=False)  # CI sets it; this suite names its own data

    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "data" / "sim"), "--nodes", "6", "--days", "0.5",
                                 "--attacks", "0", "--scans", "0", "--json"])
    assert result.exit_code == 0, result.output
    attack_table(minutes=1, per_minute=100).write_parquet(tmp_path / "data" / "syn.parquet")
    suite = """
name = "bad"
data = "data"
[datasets.sim]
inputs = ["sim"]
[[tasks]]
name = "flood"
kind = "inject"
backgrounds = ["sim"]
train_attacks = ["syn.parquet"]
test_attacks = ["{test}"]
victims = {victims}
min_active_steps = 10
"""
    (tmp_path / "missing.toml").write_text(suite.format(test="nowhere.pcap", victims=2))
    result = runner.invoke(app, ["benchmark", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o1"), "--plan"])
    message = " ".join(result.output.split())
    assert result.exit_code == 1 and "task 'flood'" in message and "nowhere.pcap" in message
    (tmp_path / "many.toml").write_text(suite.format(test="syn.parquet", victims=40))
    result = runner.invoke(app, ["benchmark", str(tmp_path / "many.toml"), "--out", str(tmp_path / "o2"), "--plan"])
    message = " ".join(result.output.split())
    assert result.exit_code == 1 and "task flood: background sim" in message and "asked for, but only" in message
