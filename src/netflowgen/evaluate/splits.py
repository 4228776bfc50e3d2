"""Splits that cannot leak: which node-steps may be labelled and fitted on, which are tested.

A split is decided before any model sees data, from times, nodes and attack types alone:

* **By time.** Every dataset has a cut at ``fit_fraction`` of its span (aligned down to a step):
  steps before it are the *fitting part*, steps from it on the *test part*. Pre-training, the
  tokenizer (fitted with the pre-training run), label budgets and alert thresholds only ever see
  the fitting part; the test part is scored once, at the end.
* **By node** (unseen victims). ``test_nodes`` are never labelled, not even as negatives; only
  their test-part steps are evaluated. The other nodes' test-part steps are left out of the
  evaluation, so every evaluated attack hits a node whose labels no method saw.
* **By attack type** (unseen types). Steps holding a ``test_only`` class are never labelled in
  the fitting part (neither positive nor negative); in the test part only those classes count as
  attacks, and steps holding another attack class are left out of the evaluation.
* **By dataset.** A task may fit on one dataset and test on another: the fitting part is then
  the whole of the first, the test part the whole of the second.

Pre-training for a suite uses the unlabelled flows of every dataset before its earliest test cut,
so no test period reaches pre-training either (see ``suite.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl

__all__ = ["Split", "check_no_leak"]


@dataclass(frozen=True)
class Split:
    """The fitting and test parts of a labelled node series (see the module docstring)."""

    cuts: dict[str, datetime]
    """Per dataset: the first step of its test part."""
    test_nodes: frozenset[str] = frozenset()
    """Nodes never labelled; empty: every node is evaluated."""
    test_only: tuple[str, ...] = ()
    """Attack classes held out of fitting (lower case)."""
    fit_datasets: frozenset[str] | None = None
    """With a dataset split: the datasets that are wholly fitting part."""
    notes: list[str] = field(default_factory=list)

    def _in_test_time(self) -> pl.Expr:
        expr = pl.lit(False)
        for dataset, cut in self.cuts.items():
            if self.fit_datasets is not None and dataset in self.fit_datasets:
                continue
            expr = expr | ((pl.col("dataset") == dataset) & (pl.col("step") >= cut))
        return expr

    def _has_test_only(self) -> pl.Expr:
        if not self.test_only:
            return pl.lit(False)
        return pl.col("classes").list.eval(pl.element().str.to_lowercase().is_in(list(self.test_only))).list.any().fill_null(False)

    def fit_rows(self, series: pl.DataFrame) -> np.ndarray:
        """Rows that may be labelled (and so calibrate thresholds)."""
        expr = ~self._in_test_time() & ~self._has_test_only()
        if self.test_nodes:
            expr = expr & ~pl.col("node").is_in(list(self.test_nodes))
        return series.select(expr.fill_null(False)).to_series().to_numpy()

    def test_rows(self, series: pl.DataFrame, attack: tuple[str, ...]) -> np.ndarray:
        """Rows that are evaluated."""
        expr = self._in_test_time()
        if self.test_nodes:
            expr = expr & pl.col("node").is_in(list(self.test_nodes))
        if self.test_only:
            others = [a.lower() for a in attack if a.lower() not in self.test_only]
            if others:
                other_hit = pl.col("classes").list.eval(pl.element().str.to_lowercase().is_in(others)).list.any().fill_null(False)
                expr = expr & ~(other_hit & ~self._has_test_only())
        return series.select(expr.fill_null(False)).to_series().to_numpy()

    def describe(self) -> dict[str, object]:
        return {
            "cuts": {k: v.isoformat() for k, v in self.cuts.items()},
            "test_nodes": sorted(self.test_nodes),
            "test_only": list(self.test_only),
            "fit_datasets": sorted(self.fit_datasets) if self.fit_datasets is not None else None,
            "notes": self.notes,
        }


def check_no_leak(series: pl.DataFrame, split: Split, fitted: np.ndarray, tested: np.ndarray) -> None:
    """Raise if any fitted row (labelled, trained or calibrated on) is in the test part by time,
    belongs to a test node, or holds a held-out attack class, or if a row is both."""
    if (fitted & tested).any():
        raise AssertionError("a row is both fitted and tested")
    rows = series.filter(pl.Series(fitted))
    if rows.select(split._in_test_time().any()).item():
        raise AssertionError("a fitted row lies in a test period")
    if split.test_nodes and rows["node"].is_in(list(split.test_nodes)).any():
        raise AssertionError("a test node was labelled")
    if split.test_only and rows.select(split._has_test_only().any()).item():
        raise AssertionError("a held-out attack type was labelled")
