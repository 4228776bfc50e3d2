"""The Python API (netflowgen.api): the README's example, run as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import polars as pl
import pytest

import netflowgen

README = Path(__file__).parents[1] / "README.md"


def _readme_example() -> str:
    section = README.read_text().split("### Python\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_every_exported_name_resolves() -> None:
    for name in netflowgen.__all__:
        assert getattr(netflowgen, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        netflowgen.nosuch  # noqa: B018


def test_the_readme_example_runs_from_flows_to_alerts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from netflowgen.cli import app

    # A capture of the user's: simulated flows with two DDoS attacks, as one Parquet file.
    result = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "sim"), "--nodes", "6", "--days", "0.25",
                                      "--attacks", "2", "--scans", "0", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    pl.read_parquet(sorted((tmp_path / "sim").glob("date=*/*.parquet"))).write_parquet(tmp_path / "capture.parquet")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}  # type: ignore[type-arg]
    exec(compile(_readme_example(), str(README), "exec"), scope)  # the README's own code, as written
    series, surprise, alerts, det = scope["series"], scope["surprise"], scope["alerts"], scope["det"]
    assert surprise.height == series.height and surprise["score"].drop_nulls().len() > 0
    assert set(alerts.columns) >= {"node", "step", "score", "alert"} and alerts["alert"].all()
    # What the example claims: the detector scores flows as it scores their series.
    from_series = det.score(series)
    assert from_series.select("node", "step").equals(det.score(pl.read_parquet("capture.parquet")).select("node", "step"))
    assert (tmp_path / "det" / "netflowgen.json").is_file() and (tmp_path / "run" / "model.safetensors").is_file()
    assert os.listdir(tmp_path / "tokens")


def test_finetune_reads_the_step_from_the_run_and_refuses_another(tmp_path: Path) -> None:
    from datetime import timedelta

    from netflowgen.detect.labels import parse_budget

    assert netflowgen.FinetuneConfig(budget="3ep").budget == parse_budget("3ep")
    cfg = netflowgen.SeriesSpec(step=timedelta(minutes=5))
    with pytest.raises(ValueError, match="step"):
        netflowgen.tokenize_series(pl.DataFrame({"node": ["a", "a"], "step": [0, 60]}).with_columns(
            pl.from_epoch("step").dt.replace_time_zone("UTC")), tmp_path / "t", cfg)
