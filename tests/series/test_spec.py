"""The series contract (series/spec.py): JSON round trip, checks that name both values, one
segmentation rule, and the contract carried from the series into tokens, runs and detectors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from netflowgen.series import NodeMode, SeriesSpec, feature_names
from netflowgen.series.spec import floor_step, segment_bounds, segment_ids, step_expr
from netflowgen.tokenize import Tokenizer, TokenizerConfig
from netflowgen.tokenize.shards import open_tokens, segments_of, write_tokens

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


def test_a_spec_round_trips_through_json_with_every_field_set(tmp_path: Path) -> None:
    spec = SeriesSpec(step=timedelta(seconds=10), nodes=NodeMode.DST, local_prefixes=("2001:db8::/32", "10.0.0.0/8"),
                      group_map=tmp_path / "groups.csv", group_ipv4_prefix=16, group_ipv6_prefix=48, attack=("DDoS", "scan"),
                      max_gap=timedelta(hours=2), coverage_fraction=0.25, features=("flows_in", "bytes_out"))
    back = SeriesSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec
    assert back != SeriesSpec(step=timedelta(seconds=10))  # the comparison sees the fields


def test_a_manifest_written_before_features_were_recorded_reads_with_the_registry() -> None:
    old = {"step_seconds": 60.0, "max_gap_seconds": 86400.0, "nodes": "local", "local_prefixes": ["10.0.0.0/8"],
           "group_map": None, "group_ipv4_prefix": 24, "group_ipv6_prefix": 64, "attack": ["DDoS"], "coverage_fraction": 0.5}
    spec = SeriesSpec.from_dict(old)
    assert spec.features == tuple(feature_names())
    assert spec.step == timedelta(minutes=1) and spec.attack == ("DDoS",)
    with pytest.raises(ValueError, match="unknown series settings colour"):
        SeriesSpec.from_dict({**old, "colour": "red"})
    with pytest.raises(ValueError, match="without its step_seconds"):
        SeriesSpec.from_dict({k: v for k, v in old.items() if k != "step_seconds"})


def test_sub_second_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="whole number of seconds"):
        SeriesSpec(step=timedelta(milliseconds=1500))


def test_incompatible_specs_are_refused_naming_both_values() -> None:
    model = SeriesSpec(features=("flows_in", "flows_out"))
    with pytest.raises(ValueError, match=r"the series has 10 s steps but the run works on 60 s steps; build the series with --step 60s"):
        model.require_compatible(SeriesSpec(step=timedelta(seconds=10)), "the run", "the series")
    with pytest.raises(ValueError, match="the series lacks the features flows_out that the run reads"):
        model.require_compatible(SeriesSpec(features=("flows_in",)), "the run", "the series")
    # Other prefixes, nodes, labels: another network's series, which the model can read.
    model.require_compatible(SeriesSpec(local_prefixes=("192.0.2.0/24",), nodes=NodeMode.ALL, attack=("x",)), "the run", "the series")


def test_check_refuses_rows_off_the_grid() -> None:
    steps = [T0 + timedelta(seconds=s) for s in (30, 90)]
    series = pl.DataFrame({"node": ["a", "a"], "step": steps, "flows_in": [1, 2]})
    with pytest.raises(ValueError, match="not on the 60 s grid"):
        SeriesSpec(features=("flows_in",)).check(series)
    SeriesSpec(step=timedelta(seconds=30), features=("flows_in",)).check(series.head(1))  # one row: no step to read, on the grid
    with pytest.raises(ValueError, match="the series lacks the features flows_out"):
        SeriesSpec(step=timedelta(seconds=30), features=("flows_in", "flows_out")).check(series.head(1))


def test_step_flooring_agrees_between_python_and_polars() -> None:
    rng = np.random.default_rng(1)
    times = [T0 + timedelta(microseconds=int(x)) for x in rng.integers(0, 10**11, 200)]
    for step in (timedelta(seconds=10), timedelta(minutes=1), timedelta(minutes=5), timedelta(hours=1)):
        polars_side = pl.DataFrame({"ts_start": times}).select(step_expr(step))["step"].to_list()
        assert polars_side == [floor_step(t, step) for t in times]
        assert all(s <= t < s + step and (s - datetime(1970, 1, 1, tzinfo=timezone.utc)) % step == timedelta(0)
                   for s, t in zip(polars_side, times))


def test_one_segmentation_rule_in_every_representation() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        node = np.sort(rng.integers(0, 4, 60))
        step_s = np.zeros(60, dtype=np.int64)
        for n in np.unique(node):
            rows = np.flatnonzero(node == n)
            step_s[rows] = np.cumsum(rng.choice([60, 60, 60, 120, 600], len(rows)))
        bounds = segment_bounds(node, step_s, 60)
        # Shards store [start, length] of the same segments.
        assert np.array_equal(segments_of(node, step_s, 60), np.stack([bounds[:, 0], bounds[:, 1] - bounds[:, 0]], 1))
        frame = pl.DataFrame({"node": node.astype(str), "step": pl.from_epoch(pl.Series(step_s), "s").dt.replace_time_zone("UTC")})
        seg = frame.with_columns(segment_ids(timedelta(minutes=1)))["_seg"].to_numpy()
        starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
        assert np.array_equal(starts, bounds[:, 0])
        # Held over holes up to 10 minutes, a node's rows are one segment.
        held = frame.with_columns(segment_ids(timedelta(minutes=1), hold=timedelta(minutes=10)))["_seg"].to_numpy()
        assert len(np.unique(held)) == len(np.unique(node))


def _series(step: timedelta, n: int = 40) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({
        "node": np.repeat(["10.0.0.1", "10.0.0.2"], n),
        "group": "10.0.0.0/24",
        "step": [T0 + step * i for _ in range(2) for i in range(n)],
        "flows_in": rng.poisson(3, 2 * n), "flows_out": rng.poisson(2, 2 * n),
        "attack": False, "labeled_flows": 0,
    })


def test_the_tokenizer_carries_the_spec_into_token_shards(tmp_path: Path) -> None:
    spec = SeriesSpec(step=timedelta(seconds=10), local_prefixes=("2001:db8::/32",), features=("flows_in", "flows_out"))
    series = _series(spec.step)
    tok = Tokenizer.fit(series, TokenizerConfig(("flows_in", "flows_out")), spec)
    write_tokens(series, tok, tmp_path / "tok", fit=None, source="test")
    _, loaded, shards = open_tokens(tmp_path / "tok")
    assert loaded.spec == spec
    # Segments follow the spec's step: the 10 s rows are one segment per node.
    assert [int(len(s.segments)) for s in shards] == [2]
    with pytest.raises(ValueError, match="the series' step is 60 s but the tokenizer works on 10 s steps"):
        write_tokens(_series(timedelta(minutes=1)), tok, tmp_path / "tok60", fit=None, source="test")
    assert not (tmp_path / "tok60").exists()


def test_a_tokenizer_fitted_on_a_series_of_another_step_than_its_spec_is_refused() -> None:
    with pytest.raises(ValueError, match="the series' step is 60 s but its series spec works on 10 s steps"):
        Tokenizer.fit(_series(timedelta(minutes=1)), TokenizerConfig(("flows_in",)), SeriesSpec(step=timedelta(seconds=10)))


def test_an_older_tokenizer_without_its_spec_takes_the_recorded_step(tmp_path: Path) -> None:
    tok = Tokenizer.fit(_series(timedelta(minutes=1)), TokenizerConfig(("flows_in", "flows_out")))
    with pytest.raises(ValueError, match="does not hold its series contract"):
        tok.spec  # noqa: B018
    old = tok.to_dict()
    assert "series" not in old
    tok = Tokenizer.from_dict(old)
    tok.adopt_step(300)
    assert tok.spec.step == timedelta(minutes=5) and tok.spec.features == ("flows_in", "flows_out")
