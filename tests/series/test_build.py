"""Node series: features per (node, step) on hand-made flows, and against the raw IoT-23 log."""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from netflowgen.read import read_flows
from netflowgen.schema import FLOW_SCHEMA
from netflowgen.series import FEATURES, NodeMode, SeriesSpec, build_series, feature_names, parse_step

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def flows(*rows: dict) -> pl.LazyFrame:
    base = {"ts_end": None, "src_port": 40000, "dst_port": 80, "proto": 6, "fwd_packets": 1, "fwd_bytes": 60,
            "rev_packets": 0, "rev_bytes": 0, "tcp_flags": 2, "label": None, "label_detail": None, "quality": 0,
            "source_file": "t", "source_row": 1}
    full = [{**base, **r} for r in rows]
    for r in full:
        r["ts_end"] = r["ts_end"] or r["ts_start"]
    return pl.DataFrame(full, schema=FLOW_SCHEMA).lazy()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_directions_counts_and_zero_steps() -> None:
    lf = flows(
        # minute 0: an outside host SYNs the local node twice; the node answers nothing
        {"ts_start": at(0.1), "src_ip": "203.0.113.5", "dst_ip": "192.168.1.10", "src_port": 5555, "dst_port": 22},
        {"ts_start": at(0.5), "src_ip": "203.0.113.6", "dst_ip": "192.168.1.10", "src_port": 5556, "dst_port": 22},
        # minute 3: the node makes a DNS query (UDP, 2 packets each way)
        {"ts_start": at(3.2), "src_ip": "192.168.1.10", "dst_ip": "8.8.8.8", "src_port": 5353, "dst_port": 53, "proto": 17,
         "tcp_flags": None, "fwd_packets": 2, "fwd_bytes": 150, "rev_packets": 2, "rev_bytes": 300},
    )
    s = build_series(lf, SeriesSpec())
    assert s["node"].unique().to_list() == ["192.168.1.10"]
    assert s["step"].to_list() == [at(0), at(1), at(2), at(3)]
    row = s.row(0, named=True)
    assert (row["flows_in"], row["flows_out"], row["peers_in"], row["syn_no_ack_in"], row["svc_remote"]) == (2, 0, 2, 2, 2)
    assert (row["packets_in"], row["bytes_in"], row["packets_out"], row["local_ports"], row["remote_ports"]) == (2, 120, 0, 1, 2)
    assert all(s.row(i, named=True)[f] == 0 for i in (1, 2) for f in feature_names())
    dns = s.row(3, named=True)
    assert (dns["flows_out"], dns["udp_flows"], dns["svc_dns"], dns["packets_out"], dns["bytes_in"], dns["peers_out"]) == (1, 1, 1, 2, 300, 1)
    assert s["group"].unique().to_list() == ["192.168.1.0/24"]


def test_flow_between_two_nodes_counts_for_both() -> None:
    lf = flows({"ts_start": at(0), "src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "fwd_packets": 3, "fwd_bytes": 180,
                "rev_packets": 1, "rev_bytes": 40})
    s = build_series(lf, SeriesSpec()).sort("node")
    a, b = s.row(0, named=True), s.row(1, named=True)
    assert (a["node"], a["flows_out"], a["packets_out"], a["packets_in"]) == ("10.0.0.1", 1, 3, 1)
    assert (b["node"], b["flows_in"], b["packets_in"], b["packets_out"]) == ("10.0.0.2", 1, 3, 1)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(NodeMode.LOCAL, ["192.168.1.10"]), (NodeMode.SRC, ["203.0.113.5"]),
     (NodeMode.DST, ["192.168.1.10"]), (NodeMode.ALL, ["192.168.1.10", "203.0.113.5"])],
)
def test_node_modes(mode: NodeMode, expected: list[str]) -> None:
    lf = flows({"ts_start": at(0), "src_ip": "203.0.113.5", "dst_ip": "192.168.1.10"})
    assert sorted(build_series(lf, SeriesSpec(nodes=mode))["node"].unique().to_list()) == expected


def test_user_prefixes_ipv6_and_group_map(tmp_path: Path) -> None:
    lf = flows(
        {"ts_start": at(0), "src_ip": "147.32.80.9", "dst_ip": "8.8.8.8"},
        {"ts_start": at(0), "src_ip": "2001:db8:0:1::5", "dst_ip": "2606:4700::1"},
        {"ts_start": at(0), "src_ip": "fe80::1", "dst_ip": "ff02::1"},
    )
    groups = tmp_path / "groups.csv"
    groups.write_text("node,group\n147.32.80.9,customer-a\n")
    cfg = SeriesSpec(local_prefixes=("147.32.0.0/16", "2001:db8::/32", "fe80::/10"), group_map=groups)
    s = build_series(lf, cfg).sort("node")
    assert s["node"].to_list() == ["147.32.80.9", "2001:db8:0:1::5", "fe80::1"]
    assert s["group"].to_list() == ["customer-a", "2001:db8:0:1::/64", "fe80::/64"]


def test_step_alignment_and_long_gaps() -> None:
    lf = flows(
        {"ts_start": at(0.99), "src_ip": "10.0.0.1", "dst_ip": "1.1.1.1"},
        {"ts_start": at(4.0), "src_ip": "10.0.0.1", "dst_ip": "1.1.1.1"},
        {"ts_start": at(60 * 48), "src_ip": "10.0.0.1", "dst_ip": "1.1.1.1"},  # two days later
    )
    s = build_series(lf, SeriesSpec(step=parse_step("2m")))
    # 12:00 and 12:04 are active with 12:02 filled; the silence of two days is not filled.
    assert s["step"].to_list() == [at(0), at(2), at(4), at(60 * 48)]
    assert s["flows_out"].to_list() == [1, 0, 1, 1]


def test_labels_classes_and_attack_flag() -> None:
    lf = flows(
        {"ts_start": at(0), "src_ip": "10.0.0.1", "dst_ip": "1.1.1.1", "label": "Malicious", "label_detail": "DDoS"},
        {"ts_start": at(0.2), "src_ip": "10.0.0.1", "dst_ip": "1.1.1.1", "label": "Malicious", "label_detail": "C&C"},
        {"ts_start": at(0.4), "src_ip": "10.0.0.1", "dst_ip": "1.1.1.1"},
        {"ts_start": at(0.6), "src_ip": "10.0.0.1", "dst_ip": "1.1.1.1", "label": "Benign"},
        {"ts_start": at(1), "src_ip": "10.0.0.1", "dst_ip": "1.1.1.1", "label": "Benign"},
    )
    s = build_series(lf, SeriesSpec(attack=("ddos",)))
    first, second = s.row(0, named=True), s.row(1, named=True)
    assert first["classes"] == ["Benign", "C&C", "DDoS"]
    assert (first["labeled_flows"], first["attack_flows"], first["attack"]) == (3, 1, True)
    assert math.isclose(first["attack_fraction"], 1 / 4)
    assert (second["attack"], second["attack_flows"], second["classes"]) == (False, 0, ["Benign"])


def test_empty_input_gives_an_empty_table_with_the_schema() -> None:
    s = build_series(pl.DataFrame(schema=FLOW_SCHEMA).lazy(), SeriesSpec())
    assert s.height == 0
    assert s.columns[:3] == ["node", "group", "step"] and len(s.columns) == 3 + len(FEATURES) + 5


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="not a step width"):
        parse_step("fast")
    with pytest.raises(ValueError, match="not an IP prefix"):
        build_series(flows({"ts_start": at(0), "src_ip": "10.0.0.1", "dst_ip": "1.1.1.1"}),
                     SeriesSpec(local_prefixes=("10.0.0.0/99",)))


@pytest.mark.parametrize("text", ["500ms", "1.5s", "0.5", "0s", "-2s"])
def test_step_widths_that_are_not_whole_seconds_are_refused(text: str) -> None:
    """Token shards keep step starts in whole seconds: a sub-second step would cut every row off."""
    with pytest.raises(ValueError, match=f"whole number of seconds \\(got {re.escape(text)}\\)"):
        parse_step(text)


def test_whole_second_step_widths() -> None:
    assert [parse_step(t) for t in ("2s", "5m", "1h", "30", "1.5m", "1d")] == [
        timedelta(seconds=2), timedelta(minutes=5), timedelta(hours=1), timedelta(seconds=30),
        timedelta(seconds=90), timedelta(days=1),
    ]


@pytest.mark.shared_data
def test_iot23_matches_the_raw_log(shared_data: Path) -> None:
    """Per-minute outgoing flows of the infected Pi, and the DDoS minutes, counted from the raw
    log with plain Python, equal the series."""
    log = shared_data / "iot23-34-1" / "conn.log.labeled"
    host = "192.168.1.195"
    out_per_minute: Counter[int] = Counter()
    ddos_minutes: set[int] = set()
    with open(log) as f:
        for line in f:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            minute = math.floor(float(fields[0]) / 60) * 60
            if fields[2] == host:
                out_per_minute[minute] += 1
                if fields[-1].split()[-1] == "DDoS":
                    ddos_minutes.add(minute)

    s = build_series(read_flows(log).lazy(), SeriesSpec(attack=("DDoS",)))
    mine = s.filter(pl.col("node") == host)
    got = {int(step.timestamp()): n for step, n in mine.select("step", "flows_out").iter_rows() if n}
    assert got == dict(out_per_minute)
    assert sum(got.values()) > 20_000
    got_ddos = {int(step.timestamp()) for (step,) in mine.filter(pl.col("attack")).select("step").iter_rows()}
    assert got_ddos == ddos_minutes
    assert len(ddos_minutes) >= 3


def test_node_partitions_give_the_same_series() -> None:
    from netflowgen.series.build import iter_series_parts

    rows = [{"ts_start": at(m / 7), "src_ip": f"10.0.{m % 5}.{m % 11}", "dst_ip": f"192.168.{m % 3}.{m % 13}",
             "fwd_packets": 1 + m % 4, "fwd_bytes": 60 * (1 + m % 4)} for m in range(400)]
    whole = build_series(flows(*rows), SeriesSpec())
    parts = list(iter_series_parts(flows(*rows), SeriesSpec(), partitions=3))
    assert len(parts) == 3 and all(p.height for p in parts)
    assert not set(parts[0]["node"]) & set(parts[1]["node"]), "a node lives in one part"
    assert pl.concat(parts).sort("node", "step").equals(whole)


def test_series_cli_writes_parts_and_summary(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from netflowgen.cli import app
    from netflowgen.series.write import read_series
    from tests.dataset.test_ingest import HEADER, zeek_row

    log = tmp_path / "conn.log"
    log.write_text(HEADER + "\n".join(zeek_row(1700000000.0 + 30 * i, src=f"10.0.0.{i % 3}", dst="8.8.8.8",
                                               label="Malicious" if i == 4 else "Benign") for i in range(10)) + "\n")
    result = CliRunner().invoke(app, ["series", str(log), "--out", str(tmp_path / "s"), "--attack", "malicious",
                                      "--partitions", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    table, manifest = read_series(tmp_path / "s")
    assert summary["parts"] == 2 and summary["flows"] == 10
    assert summary["rows"] == table.height and summary["nodes"] == 3 == table["node"].n_unique()
    assert summary["attack_steps"] == 1 and table.filter(pl.col("attack"))["node"].to_list() == ["10.0.0.1"]
    assert manifest["config"]["step_seconds"] == 60 and "flows_in" in manifest["features"]
