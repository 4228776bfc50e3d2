"""benchmarks/compare_runs.py: two suite runs on one split, compared paired."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from netflowgen.evaluate.suite import RESULTS_NAME, _save_test_scores

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "compare_runs.py"


def _module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _run(root: Path, scores: dict[tuple[str, str], list[np.ndarray]], test: pl.DataFrame, labels: np.ndarray) -> Path:
    (root / "tasks" / "t").mkdir(parents=True)
    (root / RESULTS_NAME).write_text(json.dumps({"seeds": [0, 1], "tasks": {"t": {}}, "pretrain": {}}))
    _save_test_scores(root / "tasks" / "t" / "test_scores.npz", scores, test, labels)
    return root


def test_a_better_pretraining_wins_and_a_copy_ties(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    nodes = [f"n{i}" for i in range(40) for _ in range(50)]
    test = pl.DataFrame({"node": nodes, "step": [t0 + timedelta(seconds=10 * (j % 50)) for j in range(len(nodes))]})
    labels = np.zeros(len(nodes), bool)
    labels[[i * 50 + 25 for i in range(0, 40, 2)]] = True  # one attack step at every other node
    good = [labels + rng.normal(0, 0.3, len(nodes)) for _ in range(2)]
    weak = [labels * 0.3 + rng.normal(0, 0.3, len(nodes)) for _ in range(2)]
    a = _run(tmp_path / "a", {("flowgpt", "1ep"): good}, test, labels)
    b = _run(tmp_path / "b", {("flowgpt", "1ep"): weak}, test, labels)
    mod = _module()
    row = mod.compare(a, b, None, 200)["tasks"]["t"]["rows"][0]
    assert row["a"]["value"] > row["b"]["value"]
    assert row["a_minus_b"]["verdict"] == "wins" and row["a_minus_b"]["low"] > 0
    same = mod.compare(a, a, ["flowgpt"], 200)["tasks"]["t"]["rows"][0]["a_minus_b"]
    assert same["value"] == 0 and same["verdict"] == "tie"


def test_runs_of_different_splits_are_refused(tmp_path: Path) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    test = pl.DataFrame({"node": ["x", "y"], "step": [t0, t0]})
    a = _run(tmp_path / "a", {("m", "1ep"): [np.array([0.1, 0.9])] * 2}, test, np.array([False, True]))
    b = _run(tmp_path / "b", {("m", "1ep"): [np.array([0.1, 0.9])] * 2}, test, np.array([True, False]))
    with pytest.raises(SystemExit, match="different test rows or labels"):
        _module().compare(a, b, None, 50)
