"""Splits: nothing of the test part (time, unseen nodes, held-out attack types) reaches fitting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from netflowgen.detect.labels import parse_budget, segment_bounds, select_labels
from netflowgen.evaluate.splits import Split, check_no_leak

T0 = datetime(2024, 3, 1, tzinfo=UTC)
CUT = T0 + timedelta(minutes=60)


def _series() -> pl.DataFrame:
    rows = []
    for n, node in enumerate(["10.0.0.1", "10.0.0.2", "10.0.0.3"]):
        for t in range(100):
            cls = ["benign"]
            if t % 25 == 5 + n:
                cls = ["syn-flood"]
            if t % 25 == 15 + n:
                cls = ["ntp-reflection"]
            rows.append({"dataset": "d", "node": node, "step": T0 + timedelta(minutes=t), "classes": cls})
    return pl.DataFrame(rows)


def test_split_by_time_node_and_type_keeps_fitting_clean() -> None:
    series = _series()
    split = Split({"d": CUT}, test_nodes=frozenset({"10.0.0.3"}), test_only=("ntp-reflection",))
    fit = split.fit_rows(series)
    test = split.test_rows(series, ("syn-flood", "ntp-reflection"))
    fitted = series.filter(pl.Series(fit))
    tested = series.filter(pl.Series(test))
    assert (fitted["step"] < CUT).all() and (tested["step"] >= CUT).all()
    assert "10.0.0.3" not in fitted["node"].to_list() and set(tested["node"]) == {"10.0.0.3"}
    assert not fitted["classes"].list.contains("ntp-reflection").any()
    # In the test part only the held-out type counts as an attack: syn-flood steps are left out.
    assert not tested["classes"].list.contains("syn-flood").any()
    assert tested["classes"].list.contains("ntp-reflection").sum() == 2  # minutes 67 and 92 of node 3
    check_no_leak(series, split, fit, test)


def test_label_draws_stay_inside_the_fitting_part() -> None:
    series = _series()
    split = Split({"d": CUT}, test_nodes=frozenset({"10.0.0.3"}), test_only=("ntp-reflection",))
    fit = split.fit_rows(series)
    test = split.test_rows(series, ("syn-flood", "ntp-reflection"))
    y = series["classes"].list.contains("syn-flood").cast(pl.UInt8).to_numpy()
    node = series["node"].rank("dense").to_numpy()
    step = series["step"].dt.epoch("s").to_numpy()
    for budget in ("2ep", "40", "0.5"):
        sel = select_labels(y, segment_bounds(node, step, 60), parse_budget(budget), 10, seed=4, allowed=fit, step_order=step)
        check_no_leak(series, split, sel.train | sel.calibrate, test)


@pytest.mark.parametrize("leak", ["time", "node", "type", "both"])
def test_check_no_leak_catches_every_kind_of_leak(leak: str) -> None:
    series = _series()
    split = Split({"d": CUT}, test_nodes=frozenset({"10.0.0.3"}), test_only=("ntp-reflection",))
    fit = split.fit_rows(series)
    test = split.test_rows(series, ("syn-flood", "ntp-reflection"))
    bad = fit.copy()
    i = {
        "time": int(np.flatnonzero((series["step"] >= CUT).to_numpy() & (series["node"] == "10.0.0.1").to_numpy())[0]),
        "node": int(np.flatnonzero((series["node"] == "10.0.0.3").to_numpy() & (series["step"] < CUT).to_numpy())[0]),
        "type": int(np.flatnonzero(series["classes"].list.contains("ntp-reflection").to_numpy() & (series["step"] < CUT).to_numpy())[0]),
        "both": int(np.flatnonzero(test)[0]),
    }[leak]
    bad[i] = True
    with pytest.raises(AssertionError):
        check_no_leak(series, split, bad, test)


def test_dataset_split_fits_on_one_dataset_and_tests_on_another() -> None:
    a = _series()
    b = _series().with_columns(pl.lit("e").alias("dataset"))
    both = pl.concat([a, b])
    split = Split({"d": CUT, "e": T0}, fit_datasets=frozenset({"d"}))
    fit, test = split.fit_rows(both), split.test_rows(both, ("syn-flood",))
    assert set(both.filter(pl.Series(fit))["dataset"]) == {"d"} and fit.sum() == a.height
    assert set(both.filter(pl.Series(test))["dataset"]) == {"e"} and test.sum() == b.height
