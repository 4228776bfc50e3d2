"""`netflowgen simulate`: JSON summary, SYNTHETIC marking, errors; its output feeds series and inspect."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from netflowgen.cli import app
from tests.simulate.conftest import read

runner = CliRunner()


def test_simulate_then_series_and_inspect(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    result = runner.invoke(app, ["simulate", "--nodes", "30", "--days", "0.25", "--out", str(out), "--seed", "3",
                                 "--start", "2026-01-06T08:00", "--attacks", "2", "--flows-per-node-hour", "20", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["synthetic"] is True
    flows = read(out)
    assert summary["rows_written"] == flows.height
    assert (summary["hours"], summary["nodes"], summary["partitions"]) == (6, 30, ["date=2026-01-06"])
    assert [a["scenario"] for a in summary["attacks"]] == ["syn-flood", "dns-reflection", "port-scan"]
    assert flows["ts_start"].min().isoformat() >= "2026-01-06T08:00:00+00:00"

    series = runner.invoke(app, ["series", str(out), "--out", str(tmp_path / "series"), "--attack", "DDoS", "--json"])
    assert series.exit_code == 0, series.output
    s = json.loads(series.stdout)
    assert s["flows"] == flows.height
    assert s["nodes"] == 30
    victims = {a["victim"] for a in summary["attacks"] if a["label"] == "DDoS"}
    assert s["attack_nodes"] == len(victims)

    info = runner.invoke(app, ["inspect", str(out), "--json"])
    assert info.exit_code == 0, info.output
    i = json.loads(info.stdout)
    assert (i["kind"], i["formats"], i["flows"], i["rejected"]) == ("dataset", {"synthetic": 1}, flows.height, 0)
    assert i["labels"] == summary["label_counts"]


def test_human_summary_says_synthetic(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "--nodes", "5", "--days", "0.125", "--out", str(tmp_path / "s"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC flows in" in result.stdout
    assert "SYNTHETIC data (generated, not captured)" in result.stdout
    assert pl.read_csv(tmp_path / "s" / "nodes.csv").height == 5


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    out = tmp_path / "s"
    for args, message in (
        (["--days", "0.3"], "--days 0.3: give a whole number of hours"),
        (["--start", "2026-13-01"], "--start '2026-13-01': not a date or ISO time"),
        (["--start", "2026-01-05T10:30"], "start must be on a whole hour"),
        (["--nodes", "0"], "nodes and hours must be at least 1"),
    ):
        result = runner.invoke(app, ["simulate", "--out", str(out), *args])
        assert result.exit_code == 1, args
        assert message in result.output, result.output
        assert not out.exists()
    out.mkdir()
    result = runner.invoke(app, ["simulate", "--nodes", "2", "--days", "0.125", "--out", str(out)])
    assert result.exit_code == 1 and "exists; choose another --out or pass --overwrite" in result.output
