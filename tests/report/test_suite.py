"""The suite report (report/suite.py) on an authored results dict: verdicts follow the paired
intervals, the summary fits 80 columns, and the written report says what the figures are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netflowgen.report.suite import comparison_table, summary_text, verdict_sentences, write_report


def diff(value: float, low: float, high: float) -> dict[str, Any]:
    verdict = "wins" if low > 0 else "loses" if high < 0 else "tie"
    return {"value": value, "low": low, "high": high, "verdict": verdict}


def results(synthetic: bool) -> dict[str, Any]:
    comparison = {
        "reference": "ewma-held",
        "pr_auc": {"flowgpt": {"value": 0.615, "low": 0.452, "high": 0.769},
                   "scratch": {"value": 0.073, "low": 0.026, "high": 0.836},
                   "lightgbm": {"value": 0.004, "low": 0.003, "high": 0.005},
                   "ewma-held": {"value": 0.123, "low": 0.091, "high": 0.172}},
        "vs_reference": {"flowgpt": diff(0.49, 0.33, 0.64), "scratch": diff(-0.05, -0.10, 0.70),
                         "lightgbm": diff(-0.12, -0.17, -0.09)},
    }
    task = {"description": "authored", "kind": "inject", "step_seconds": 10.0, "rows": 1000, "nodes": 40,
            "fit_rows": 400, "fit_positive": 20, "test_rows": 600, "test_positive": 31, "test_episodes": 12,
            "fit_episodes": 5, "test_victims": 6,
            "split": {"cuts": {"aip": "2022-03-20T00:00:00+00:00"}, "test_nodes": ["a", "b"], "test_only": ["udp"]},
            "best_single_feature": {"name": "flows_in:z", "pr_auc": 0.099, "causal": True}, "trivial": False,
            "comparisons": {"budgets": {"3ep": comparison}}, "summary": [], "runs": [], "errors": []}
    return {"suite": "authored", "description": "", "synthetic": synthetic, "methods": ["flowgpt", "scratch", "lightgbm", "ewma-held"],
            "budgets": ["3ep"], "seeds": [0], "tasks": {"t": task}, "pretrain": {}}


def test_verdicts_follow_the_interval_of_the_difference() -> None:
    said = " ".join(verdict_sentences(results(False)))
    assert "flowgpt beats the best baseline (ewma-held) by +0.490 [+0.330, +0.640]" in said
    assert "lightgbm is beaten by the best baseline" in said
    assert "scratch tie with ewma-held" in said and "scratch beats" not in said
    rows = {r["method"]: r for r in comparison_table(results(False))}
    assert rows["ewma-held"]["vs best baseline"] == "reference"
    assert rows["scratch"]["vs best baseline"].endswith("tie")


def test_the_summary_fits_80_columns_and_names_every_method() -> None:
    text = summary_text(results(False))
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "t: 31 test attack steps in 12 episodes at 6 victims" in text
    for method in ("flowgpt", "scratch", "lightgbm", "ewma-held"):
        assert any(line.strip().startswith(method) for line in text.splitlines()), method


def test_the_report_is_written_and_a_synthetic_one_says_so(tmp_path: Path) -> None:
    for synthetic in (True, False):
        out = tmp_path / str(synthetic)
        paths = write_report(results(synthetic), out)
        md, page = paths["markdown"].read_text(), paths["html"].read_text()
        assert "0.615 [0.452, 0.769]" in md and "0.615 [0.452, 0.769]" in page
        assert ("SYNTHETIC" in md) is synthetic and ("SYNTHETIC" in page) is synthetic
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
