"""The tokenizer contract: bins, monotonicity, decoding, time fields, ids, JSON round trip."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netflowgen.tokenize import UNKNOWN_ID, BinRule, Tokenizer, TokenizerConfig

counts = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=300)


def table(values: list[int], nodes: list[str] | None = None) -> pl.DataFrame:
    n = len(values)
    nodes = nodes or [f"10.0.0.{i % 5}" for i in range(n)]
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return pl.DataFrame({
        "node": nodes, "group": [x.rsplit(".", 1)[0] + ".0/24" for x in nodes],
        "step": [t0 + timedelta(minutes=i) for i in range(n)], "x": values,
    })


def fit(values: list[int], n_bins: int = 10, rule: BinRule = BinRule.LOG_QUANTILE) -> Tokenizer:
    return Tokenizer.fit(table(values), TokenizerConfig(("x",), n_bins, rule))


@settings(max_examples=60, deadline=None)
@given(train=counts, probe=counts, n_bins=st.integers(2, 12), rule=st.sampled_from(list(BinRule)))
def test_bins_are_monotonic_and_in_range(train: list[int], probe: list[int], n_bins: int, rule: BinRule) -> None:
    tok = fit(train, n_bins, rule)
    values = np.array(sorted(probe), dtype=np.float64)
    bins = tok.encode_feature("x", values)
    assert np.all(np.diff(bins.astype(int)) >= 0), "a larger value never gets a smaller bin"
    assert bins.max() < tok.bins["x"] <= n_bins
    assert np.all((bins == 0) == (values == 0)), "bin 0 holds exactly zero"


@settings(max_examples=60, deadline=None)
@given(train=counts)
def test_round_trip_lands_in_the_right_range(train: list[int]) -> None:
    """Every training value decodes to a range that contains it, and its representative lies in it."""
    tok = fit(train)
    values = np.array(train, dtype=np.float64)
    bins = tok.encode_feature("x", values)
    low, high = tok.decode_range("x", bins)
    assert np.all((low <= values * (1 + 1e-9)) & (values <= high * (1 + 1e-9)))
    reps = tok.decode("x", bins)
    assert np.all((low <= reps * (1 + 1e-9)) & (reps <= high * (1 + 1e-9)))
    assert np.all(tok.encode_feature("x", reps) == bins), "a bin's representative encodes to that bin"


def test_values_beyond_the_fitted_range_fall_into_the_edge_bins() -> None:
    tok = fit(list(range(10, 1000)))
    last = tok.bins["x"] - 1
    assert tok.encode_feature("x", np.array([1e12, 1.0, 0.0])).tolist() == [last, 1, 0]


def test_paper_example_shape() -> None:
    """Zero in bin 0, larger values in higher bins, as in the paper's figure."""
    tok = fit([0, 10, 15, 0, 0, 0, 100, 10**8] * 20 + list(range(1, 200)))
    bins = tok.encode_feature("x", np.array([0, 10, 15, 0, 0, 0, 100, 1e8]))
    assert bins[0] == 0 and bins[3] == bins[4] == bins[5] == 0
    assert 0 < bins[1] <= bins[2] < bins[6] < bins[7]


def test_time_fields() -> None:
    tok = fit([1, 2, 3])
    steps = pl.Series([datetime(2024, 12, 31, 23, 59, tzinfo=timezone.utc)])  # a Tuesday
    assert tok.encode_time(steps).tolist() == [[1, 30, 23, 59]]
    local = Tokenizer.fit(table([1, 2]), TokenizerConfig(("x",), timezone="Europe/Prague"))
    assert local.encode_time(steps).tolist() == [[2, 0, 0, 59]]  # already Wednesday 1 January in Prague


def test_unseen_nodes_and_groups_get_the_unknown_id() -> None:
    tok = fit([1, 2, 3, 4, 5])
    ids = tok.encode_ids(pl.Series(["10.0.0.0", "10.0.0.4", "192.0.2.1"]), tok.nodes)
    assert ids.tolist() == [1, 5, UNKNOWN_ID]
    assert tok.encode_ids(pl.Series(["172.16.0.0/24"]), tok.groups).tolist() == [UNKNOWN_ID]


@settings(max_examples=30, deadline=None)
@given(train=counts, n_bins=st.integers(2, 12))
def test_json_round_trip_is_stable(train: list[int], n_bins: int) -> None:
    import tempfile

    tok = fit(train, n_bins)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tokenizer.json"
        tok.save(path)
        again = Tokenizer.load(path)
        again.save(Path(d) / "again.json")
        assert (Path(d) / "again.json").read_text() == path.read_text()
    assert again.to_dict() == tok.to_dict()
    probe = np.array(train, dtype=np.float64)
    assert np.array_equal(again.encode_feature("x", probe), tok.encode_feature("x", probe))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        TokenizerConfig(("x",), n_bins=1)
    with pytest.raises(ValueError, match="lacks the features"):
        Tokenizer.fit(table([1]), TokenizerConfig(("y",)))
    with pytest.raises(ValueError, match="non-negative"):
        fit([1, 2]).encode_feature("x", np.array([-1.0]))


def test_fit_part_takes_the_start_of_every_node() -> None:
    from netflowgen.tokenize import fit_part

    series = table(list(range(10)), nodes=["a"] * 4 + ["b"] * 6)
    part, desc = fit_part(series, 0.5)
    assert desc == {"by": "node", "fraction": 0.5}
    # node a: steps 0-3, first 2; node b: steps 4-9, first 3
    assert part["x"].to_list() == [0, 1, 4, 5, 6]
    part, desc = fit_part(series, until=datetime(2024, 1, 1, 0, 3))
    assert part["x"].to_list() == [0, 1, 2] and desc["by"] == "time"


def test_the_tail_rule_is_configuration_and_its_defaults_keep_the_cuts() -> None:
    values = list(np.random.default_rng(3).lognormal(3, 2, 2000).astype(int) + 1)
    default = Tokenizer.fit(table(values), TokenizerConfig(("x",), 10, BinRule.LOG_QUANTILE_TAIL))
    logs = np.log1p(np.array(values, dtype=np.float64))
    # The documented default: 6 bulk bins up to the 90th percentile, 3 tail bins evenly to the top.
    bulk = np.quantile(logs, np.arange(1, 7) / 6 * 0.9)
    expected = np.unique(np.concatenate([bulk, np.linspace(bulk[-1], logs.max(), 4)[1:-1]]))
    assert np.allclose(default.cuts["x"], expected[expected > logs.min()])
    wide_tail = Tokenizer.fit(table(values), TokenizerConfig(("x",), 10, BinRule.LOG_QUANTILE_TAIL, tail_from=0.5, tail_share=0.5))
    assert wide_tail.cuts["x"] != default.cuts["x"]
    # Half the 9 non-zero bins, rounded down, in the tail: 4 tail bins, so 3 cuts above the
    # bulk's last cut, the median (the default puts 2 cuts above its 90th percentile).
    assert sum(c > np.quantile(logs, 0.5) + 1e-12 for c in wide_tail.cuts["x"]) == 3
    assert sum(c > np.quantile(logs, 0.9) + 1e-12 for c in default.cuts["x"]) == 2
    again = Tokenizer.from_dict(wide_tail.to_dict())
    assert (again.config.tail_from, again.config.tail_share) == (0.5, 0.5)
    with pytest.raises(ValueError, match="tail_from and tail_share"):
        TokenizerConfig(("x",), tail_from=1.0)
