"""benchmarks/live_vs_fastnetmon.py, the cheap parts: the threshold rule, the FastNetMon config
writer (and that FastNetMon itself accepts it, where installed), the scoring, and the clean stop
with an install hint when FastNetMon is missing."""

from __future__ import annotations

import importlib.util
import math
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "live_vs_fastnetmon.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("live_vs_fastnetmon", SCRIPT)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = mod  # type: ignore[union-attr]  # its dataclasses look their module up
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    yield mod
    sys.modules.pop(spec.name, None)  # type: ignore[union-attr]


T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)


def flows(rows: list[tuple[float, str, str, int, int, int, int, int]]) -> pl.DataFrame:
    """(seconds after T0 of the end, src, dst, src port, fwd packets, fwd bytes, rev packets, rev bytes)."""
    return pl.DataFrame({
        "ts_end": [T0 + timedelta(seconds=r[0]) for r in rows], "src_ip": [r[1] for r in rows], "dst_ip": [r[2] for r in rows],
        "src_port": [r[3] for r in rows], "dst_port": [443] * len(rows), "proto": [6] * len(rows),
        "fwd_packets": [r[4] for r in rows], "fwd_bytes": [r[5] for r in rows], "rev_packets": [r[6] for r in rows],
        "rev_bytes": [r[7] for r in rows]})


def test_thresholds_are_the_highest_smoothed_benign_level_per_host_plus_the_margin(bench) -> None:  # type: ignore[no-untyped-def]
    host, other = "10.0.0.1", "10.0.0.2"
    f = flows([
        (0.5, "198.51.100.1", host, 1000, 100, 1_000_000, 0, 0),  # window 0: in 100 packets, 1 MB
        (1.5, "198.51.100.2", host, 1001, 50, 500_000, 0, 0),     # window 1: in 50
        (1.7, "198.51.100.3", host, 1002, 30, 300_000, 0, 0),     # window 1: in 30 more (80), 2 flows
        (3.2, host, "198.51.100.9", 2000, 10, 1_000, 400, 4_000_000),  # window 3: out 10, in 400 (reverse), 4 MB
        (0.1, "198.51.100.1", other, 1000, 7, 700, 0, 0),
    ])
    def smoothed_peak(per_window: tuple[float, ...]) -> float:  # FastNetMon's moving average, 1 s
        avg, peak = 0.0, 0.0
        for x in per_window:
            avg = x + math.exp(-1.0) * (avg - x)
            peak = max(peak, avg)
        return peak

    # Incoming per 1 s window: packets 100, 80, 0, 400; bytes 1 MB, 0.8 MB, 0, 4 MB.
    th = {t.host: t for t in bench.tune_thresholds(f, [host, other], period_s=1.0, margin=0.25, average_s=1.0)}
    assert th[host].peak_packets == pytest.approx(smoothed_peak((100, 80, 0, 400)))
    assert th[host].pps == math.ceil(th[host].peak_packets * 1.25)
    assert th[host].peak_bytes == pytest.approx(smoothed_peak((1e6, 0.8e6, 0, 4e6)))
    assert th[host].mbps == math.ceil(th[host].peak_bytes * 8 / 1e6 * 1.25)
    assert th[other].pps == math.ceil(smoothed_peak((7,)) * 1.25) and th[other].mbps == 1  # whole Mbit/s, at least 1
    # A longer period counts more of the stream clock in one of FastNetMon's seconds.
    wide = bench.tune_thresholds(f, [host], period_s=4.0, margin=0.0, average_s=1e-9)[0]
    assert wide.peak_packets == 100 + 50 + 30 + 400 and wide.peak_flows == 4
    with pytest.raises(ValueError, match="positive"):
        bench.tune_thresholds(f, [host], period_s=0, margin=0.5)


def test_the_config_gives_every_host_its_own_group_and_stays_on_loopback(bench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    th = [bench.Thresholds("198.18.134.11", 1200, 3, 40, 0, 0, 0), bench.Thresholds("198.18.134.12", 800, 1, 90, 0, 0, 0)]
    conf = bench.write_fastnetmon_config(tmp_path / "fnm", 29055, th, ["198.18.0.0/15"])
    keys = dict(line.split(" = ", 1) for line in conf.read_text().splitlines() if " = " in line and not line.startswith("#"))
    assert keys["netflow_host"] == "127.0.0.1" and keys["netflow_port"] == "29055" and keys["netflow"] == "on"
    assert keys["enable_api"] == "off" and keys["exabgp"] == "off" and keys["gobgp"] == "off"
    assert keys["host1_threshold_pps"] == "800" and keys["host1_threshold_flows"] == "90" and keys["host0_threshold_mbps"] == "3"
    assert (keys["threshold_pps"], keys["threshold_mbps"], keys["threshold_flows"]) == ("1200", "3", "90")
    groups = [line for line in conf.read_text().splitlines() if line.startswith("hostgroup = ")]
    assert groups == ["hostgroup = host0:198.18.134.11/32", "hostgroup = host1:198.18.134.12/32"]
    assert (tmp_path / "fnm" / "networks").read_text().split() == ["198.18.134.11/32", "198.18.134.12/32", "198.18.0.0/15"]
    for key in ("networks_list_path", "white_list_path", "notify_script_path", "pid_path", "cli_stats_file_path"):
        assert keys[key].startswith(str(tmp_path / "fnm")), key
    # The notify script logs a ban with its time, and reads the details FastNetMon writes to it.
    subprocess.run([keys["notify_script_path"], "198.18.134.11", "incoming", "5000", "ban"], input=b"details\n", check=True)
    ((when, host),) = bench.read_bans(tmp_path / "fnm" / "bans.log")
    assert host == "198.18.134.11" and abs(when - datetime.now(UTC).timestamp()) < 60
    with pytest.raises(ValueError, match="not an IP"):
        bench.write_fastnetmon_config(tmp_path / "bad", 1, [bench.Thresholds("x; rm", 1, 1, 1, 0, 0, 0)], [])


@pytest.mark.skipif(shutil.which("fastnetmon", path="/usr/sbin:/usr/bin") is None, reason="fastnetmon is not installed")
def test_fastnetmon_accepts_the_config(bench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conf = bench.write_fastnetmon_config(tmp_path, 29056, [bench.Thresholds("198.18.134.11", 10, 1, 5, 0, 0, 0)], ["198.18.0.0/15"])
    done = subprocess.run([shutil.which("fastnetmon", path="/usr/sbin:/usr/bin"), "--configuration_file", str(conf),  # type: ignore[list-item]
                           "--configuration_check", "--log_to_console", "--disable_pid_logic"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_detector_is_trained_on_the_unidirectional_records_the_collector_decodes(bench) -> None:  # type: ignore[no-untyped-def]
    rows = flows([(1, "10.0.0.1", "10.0.0.2", 5000, 3, 300, 2, 1200),  # bidirectional: two records
                  (2, "10.0.0.3", "10.0.0.2", 5001, 1, 60, 0, 0),      # one-way
                  (3, "10.0.0.4", "10.0.0.2", 5002, 0, 0, 4, 400)])    # only the reverse counted
    rows = rows.with_columns(ts_start=pl.col("ts_end"), label=pl.lit("Normal"))
    out = bench.as_exported(rows)
    assert out.columns == rows.columns
    got = out.select("src_ip", "dst_ip", "src_port", "dst_port", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes").rows()
    assert got == [("10.0.0.1", "10.0.0.2", 5000, 443, 3, 300, 0, 0), ("10.0.0.2", "10.0.0.1", 443, 5000, 2, 1200, 0, 0),
                   ("10.0.0.3", "10.0.0.2", 5001, 443, 1, 60, 0, 0), ("10.0.0.2", "10.0.0.4", 443, 5002, 4, 400, 0, 0)]
    assert out["label"].to_list() == ["Normal"] * 4
    # what the exporter sends, so the FastNetMon tuning reads the same records from either form
    assert bench._records(out).sort("src_ip", "dst_ip").equals(bench._records(rows).sort("src_ip", "dst_ip"))
    assert bench.as_exported(out).equals(out)  # already unidirectional: unchanged


def test_the_background_goes_through_netflow_as_the_live_detector_receives_it(bench) -> None:  # type: ignore[no-untyped-def]
    rows = flows([(1, "10.0.0.1", "10.0.0.2", 5000, 3, 300, 2, 1200), (2, "10.0.0.3", "10.0.0.2", 5001, 1, 60, 0, 0)])
    rows = rows.with_columns(ts_start=pl.col("ts_end") - timedelta(milliseconds=1500), tcp_flags=pl.lit(None, pl.UInt8),
                             label=pl.lit("Normal")).with_columns(pl.col(c).cast(pl.UInt64) for c in
                                                                   ("fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes"))
    out = bench.as_collected(rows)
    got = out.select("src_ip", "dst_ip", "src_port", "dst_port", "fwd_packets", "fwd_bytes", "rev_packets").rows()
    assert sorted(got) == [("10.0.0.1", "10.0.0.2", 5000, 443, 3, 300, 0), ("10.0.0.2", "10.0.0.1", 443, 5000, 2, 1200, 0),
                           ("10.0.0.3", "10.0.0.2", 5001, 443, 1, 60, 0)]
    assert out["tcp_flags"].to_list() == [0, 0, 0]  # unknown flags travel as 0, as the collector writes them
    assert out["label"].null_count() == 3  # NetFlow carries no label
    assert (out["ts_end"] - out["ts_start"]).dt.total_milliseconds().to_list() == [1500] * 3


def test_scoring_counts_detections_delays_and_false_alerts_on_the_stream_clock(bench) -> None:  # type: ignore[no-untyped-def]
    truth = pl.DataFrame({"victim": ["a", "b"], "intensity": ["16x", "0.25x"], "attack_type": ["syn", "snmp"],
                          "start": [T0 + timedelta(seconds=100), T0 + timedelta(seconds=400)],
                          "end": [T0 + timedelta(seconds=110), T0 + timedelta(seconds=401)]})
    t = T0.timestamp()
    alerts = [{"host": "a", "t": t + 125, "step": t + 100}, {"host": "a", "t": t + 135, "step": t + 110},
              {"host": "b", "t": t + 50, "step": t + 40}, {"host": "b", "t": t + 60, "step": t + 50},
              {"host": "c", "t": t + 300, "step": t + 290}]
    r = bench.score(alerts, truth, t, t + 600, host_hours=0.5, step_s=10, window_s=60, merge_steps=True)
    assert [(e["detected"], e["delay_s"]) for e in r["episodes"]] == [(True, 25.0), (False, None)]
    assert r["false_alerts"] == 2 and r["false_per_host_hour"] == 4.0  # b's two steps are one run, c one
    unmerged = bench.score(alerts, truth, t, t + 600, host_hours=0.5, step_s=10, window_s=60, merge_steps=False)
    assert unmerged["false_alerts"] == 3
    fnm = {"episodes": [{**r["episodes"][0], "delay_s": 20.0}, r["episodes"][1]], "false_alerts": 5}
    g = bench.goal_check(r, fnm)
    assert not g["no_later"] and g["no_more_false_alerts"] and not g["more_faint"] and not g["met"]


def test_without_fastnetmon_it_says_how_to_install_it_and_stops(bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert bench.main(["--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "apt-get install fastnetmon" in err and "Traceback" not in err
    # As a program too: status 2, the hint, no traceback.
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(tmp_path / "bin"), "PYTHONPATH": str(SCRIPT.parents[1] / "src")})
    assert done.returncode == 2 and "apt-get install fastnetmon" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(bench.Missing, match="not an executable"):
        bench.find_fastnetmon(str(tmp_path / "nope"))
