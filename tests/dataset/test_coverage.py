"""Coverage: what a dataset's inputs observed, and node series that fill zeros only inside it."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from netflowgen.cli import app
from netflowgen.dataset.coverage import MIN_WIDTH, STRAGGLER_SHARE, Coverage, coverage_of_flows, dataset_coverage
from netflowgen.dataset.ingest import IngestConfig, ingest
from netflowgen.dataset.manifest import scan_flows
from netflowgen.series.build import SeriesSpec, build_series
from tests.dataset.test_ingest import HEADER, zeek_row

runner = CliRunner()
T0 = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
US = 1_000_000


def ends(source: str, seconds: list[float]) -> pl.DataFrame:
    """Just what coverage reads: flows of one source file ending at T0 + seconds."""
    return pl.DataFrame({"source_file": [source] * len(seconds),
                         "ts_end": [T0 + timedelta(seconds=s) for s in seconds]},
                        schema={"source_file": pl.String, "ts_end": pl.Datetime("us", "UTC")})


def interval_seconds(c: Coverage) -> list[tuple[float, float]]:
    t0 = T0.timestamp()
    return [(round(a / US - t0, 3), round(b / US - t0, 3)) for a, b in c.intervals]


def test_union_holes_and_json_round_trip() -> None:
    c = Coverage.of([(5 * US, 9 * US), (0, 2 * US), (1 * US, 3 * US), (20 * US, 30 * US)])
    assert c.intervals == ((0, 3 * US), (5 * US, 9 * US), (20 * US, 30 * US))
    assert c.seconds == 17
    assert c.holes() == [(9 * US, 20 * US), (3 * US, 5 * US)]
    assert Coverage.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_a_step_is_covered_when_at_least_half_of_it_is_observed() -> None:
    c = Coverage.of([(65 * US, 150 * US), (170 * US, 175 * US), (176 * US, 181 * US)])
    steps = (c.covered_steps(timedelta(seconds=10)) // US).tolist()
    # 60-70 has 5 s, 150-160 none, 170-180 has 9 s from two intervals.
    assert steps == [60, *range(70, 150, 10), 170]
    assert (c.covered_steps(timedelta(seconds=10), min_fraction=1.0) // US).tolist() == list(range(70, 150, 10))
    assert c.contains(np.array([64, 65, 149, 150, 178]) * US).tolist() == [False, True, True, False, True]


def test_stragglers_do_not_stretch_a_file_and_a_silence_inside_it_is_real() -> None:
    dense = [3600 + i * 0.05 for i in range(2000)]  # 100 s of records, as the head of an AIP hour
    late = [i * 2.0 for i in range(20)]  # 1% of the records end an hour earlier (written late)
    c = coverage_of_flows(ends("aip.log", late + dense))
    pad = round(3699.95 / 2019, 3)  # a file listened one mean spacing around its records
    assert interval_seconds(c) == [(3600.0 - pad, 3699.95 + pad)]
    # A sparse but continuous capture: one flow every 4 minutes for 6 hours is one window.
    sparse = [i * 240.0 for i in range(90)]
    assert interval_seconds(coverage_of_flows(ends("home.log", sparse))) == [(-240.0, 90 * 240.0)]
    # A dense capture with a quiet hour in the middle: the quiet hour was observed too.
    quiet = [i * 1.0 for i in range(600)] + [4200 + i * 1.0 for i in range(600)]
    pad = round(4799 / 1199, 3)
    assert interval_seconds(coverage_of_flows(ends("lab.log", quiet))) == [(-pad, 4799.0 + pad)]


def test_at_most_the_straggler_share_is_trimmed_at_an_edge() -> None:
    # A leading run holding more than the share is kept: it is part of the window.
    lead = [i * 0.05 for i in range(int(2000 * (STRAGGLER_SHARE + 0.05)))]
    dense = [3600 + i * 0.05 for i in range(2000)]
    assert interval_seconds(coverage_of_flows(ends("f", lead + dense)))[0][0] < 0.0


def test_files_are_windows_of_their_own_and_a_single_flow_is_min_width() -> None:
    frame = pl.concat([ends("a", [0.0, 1.0, 2.0]), ends("b", [7200.0]), ends("c", [30.0, 40.0])])
    c = coverage_of_flows(frame)
    # Between a's last record and c's first nothing was observed: files are windows, not a span.
    assert interval_seconds(c) == [(-1.0, 3.0), (20.0, 50.0), (7200.0, 7200.0 + MIN_WIDTH.total_seconds())]
    assert coverage_of_flows(frame, exclude_sources=["b"]).intervals == c.intervals[:2]


def _hourly_logs(folder: Path, hours: range) -> None:
    """A busy host's Zeek logs, one file an hour, a flow every 5 s (ts + 1.5 s duration = end)."""
    folder.mkdir(parents=True, exist_ok=True)
    for h in hours:
        start = T0.timestamp() + h * 3600
        rows = [zeek_row(start + k * 5.0, src="192.168.7.7", dst="203.0.113.9") for k in range(720)]
        (folder / f"conn.{h:02d}.log").write_text(HEADER + "\n".join(rows) + "\n")


def test_a_deleted_hour_is_missing_data_not_zero_traffic(tmp_path: Path) -> None:
    _hourly_logs(tmp_path / "all", range(3))
    _hourly_logs(tmp_path / "holed", (0, 2))  # the middle rotation file is lost
    for name in ("all", "holed"):
        ingest(IngestConfig((tmp_path / name,), tmp_path / f"{name}-ds"))
    full, holed = dataset_coverage(tmp_path / "all-ds"), dataset_coverage(tmp_path / "holed-ds")
    assert len(full.intervals) == 1 and len(holed.intervals) == 2
    (a, b), = holed.holes()
    assert 3590 < (b - a) / US < 3610

    cfg = SeriesSpec(step=timedelta(seconds=60))
    with_hole = build_series(scan_flows(tmp_path / "holed-ds"), cfg, holed)
    hour_1 = (pl.col("step") >= T0 + timedelta(hours=1, minutes=1)) & (pl.col("step") < T0 + timedelta(hours=2))
    assert with_hole.filter(hour_1).height == 0, "no invented zero rows where nothing was observed"
    # The same flows read as if the collector had listened throughout: 59 invented zero steps.
    invented = build_series(scan_flows(tmp_path / "holed-ds"), cfg, coverage=None).filter(hour_1)
    assert invented.height == 59 and invented["flows_out"].sum() == 0
    # Reading the flow files directly derives the same coverage from the records.
    raw = build_series(scan_flows(tmp_path / "holed"), cfg)
    assert raw.select("node", "step").equals(with_hole.select("node", "step"))

    result = runner.invoke(app, ["inspect", str(tmp_path / "holed-ds"), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["coverage"]
    assert len(shown["intervals"]) == 2 and 3590 < shown["largest_holes"][0]["seconds"] < 3610

    result = runner.invoke(app, ["series", str(tmp_path / "holed-ds"), "--out", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "s" / "netflowgen.json").read_text())
    assert Coverage.from_dict(manifest["coverage"]) == holed
    assert json.loads(result.stdout)["rows"] == with_hole.height


def _independent_end_times(path: Path) -> np.ndarray:
    """A Zeek log's end times (ts + duration), read with nothing but gzip and csv."""
    rows = []
    with gzip.open(path, "rt") as f:
        for line in csv.reader(io.StringIO("".join(line for line in f if not line.startswith("#"))), delimiter="\t"):
            duration = float(line[8]) if line[8] != "-" else 0.0
            rows.append(float(line[0]) + duration)
    return np.sort(np.array(rows))


@pytest.mark.shared_data
def test_aip_honeynet_coverage_is_the_head_of_every_hourly_file(shared_data: Path, tmp_path: Path) -> None:
    day = shared_data / "aip-honeynet" / "2022-03-03"
    files = sorted(day.glob("conn.*.log.gz"))
    ingest(IngestConfig((day,), tmp_path / "ds"))
    c = dataset_coverage(tmp_path / "ds")
    assert len(c.intervals) == len(files), "each hourly file is a window of its own"
    iv = np.asarray(c.intervals) / US
    for path in files:
        e = _independent_end_times(path)
        mine = iv[(iv[:, 1] > e[0]) & (iv[:, 0] <= e[-1])]
        inside = [(e >= a) & (e <= b) for a, b in mine]
        held = max(x.mean() for x in inside)
        a, b = mine[int(np.argmax([x.mean() for x in inside]))]
        assert e[-1] - e[0] > 1800, f"{path.name}: its records' end times span most of an hour (stragglers)"
        assert b - a < 600, f"{path.name}: the window ({b - a:.0f} s) is stretched over stragglers"
        assert held >= 1 - 2 * STRAGGLER_SHARE, f"{path.name}: the window holds only {held:.0%} of the records"
        assert e[-1] <= b < e[-1] + 2, f"{path.name}: the window ends at the last record (and its spacing)"
    span = (c.span[1] - c.span[0]) / US  # type: ignore[index]
    assert c.seconds < 0.1 * span
