"""OnlineSeries against build_series on the same flows: same rows and feature values, plus the
documented trailing zero rows, evictions and late flows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from netflowgen.collect.online import OnlineConfig, OnlineSeries
from netflowgen.schema import FLOW_SCHEMA
from netflowgen.series import SeriesSpec, build_series, feature_names
from netflowgen.series.build import LABEL_COLUMNS

T = datetime(2024, 3, 1, tzinfo=UTC)
A, B, C, V6 = "10.0.0.1", "10.0.0.2", "192.168.1.5", "fd00::5"
E1, E2 = "203.0.113.1", "198.51.100.2"


def at(minutes: int, seconds: int = 0) -> datetime:
    return T + timedelta(minutes=minutes, seconds=seconds)


def flow(start: datetime, src: str, dst: str, proto: int = 6, sport: int | None = 40000, dport: int | None = 443,
         packets: int = 3, octets: int = 300, flags: int | None = 0x12) -> dict:
    return {"ts_start": start, "ts_end": start + timedelta(seconds=1), "src_ip": src, "dst_ip": dst, "src_port": sport,
            "dst_port": dport, "proto": proto, "fwd_packets": packets, "fwd_bytes": octets, "rev_packets": 0,
            "rev_bytes": 0, "tcp_flags": flags if proto == 6 else None, "label": None, "label_detail": None,
            "quality": 0, "source_file": "udp://192.0.2.1", "source_row": 0}


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=FLOW_SCHEMA)


# step 0: A talks out and is talked to; B asks DNS.
STEP0 = [flow(at(0, 5), A, E1, flags=0x02), flow(at(0, 20), E1, A, dport=22, flags=0x02),
         flow(at(0, 30), B, E2, proto=17, sport=5353, dport=53, packets=1, octets=70)]
# step 1: A -> C (both nodes), A asks NTP.
STEP1 = [flow(at(1, 10), A, C, dport=445, packets=9, octets=1200), flow(at(1, 40), A, E1, proto=17, sport=123, dport=123, packets=1, octets=76)]
STEP3 = [flow(at(3, 30), V6, "2001:db8::1", proto=17, sport=1000, dport=2000, packets=2, octets=200)]
STEP4 = [flow(at(4, 15), E2, A, dport=80, packets=20, octets=20000, flags=0x1B)]
LATE_IN_GRACE = flow(at(4, 50), A, E1, proto=1, sport=None, dport=None, packets=1, octets=84)
STEP5 = [flow(at(5, 5), B, E2), flow(at(5, 6), B, E2, sport=40001)]
LATE_BEYOND_GRACE = flow(at(0, 45), B, E1, dport=25)

# "drop" keeps a late flow out, so that the rows equal offline's; folding is tested on its own.
CONFIG = OnlineConfig(series=SeriesSpec(step=timedelta(minutes=1)), grace=timedelta(seconds=30), idle_steps=2, history=3,
                      late="drop")
FOLD = OnlineConfig(series=CONFIG.series, grace=CONFIG.grace, idle_steps=CONFIG.idle_steps, history=CONFIG.history)


def run_online() -> tuple[OnlineSeries, list[pl.DataFrame], dict[str, pl.DataFrame]]:
    online = OnlineSeries(CONFIG)
    outputs: list[pl.DataFrame] = []
    seen: dict[str, pl.DataFrame] = {}
    online.add(frame(STEP1[::-1] + STEP0))  # any order within the open steps
    outputs.append(online.advance(at(2, 10)))  # steps < 1:00 complete (grace 30 s)
    online.add(frame([LATE_BEYOND_GRACE]))  # step 0 was given out: late
    online.add(frame(STEP4 + STEP3))
    outputs.append(online.advance(at(4, 40)))  # steps 1, 2, 3
    outputs.append(online.advance(at(5, 20)))  # step 4 is still within its grace period: nothing
    online.add(frame([LATE_IN_GRACE, *STEP5]))
    outputs.append(online.advance(at(5, 31)))  # step 4, with the flow that came within the grace
    seen["history_A"] = online.history(A)
    outputs.append(online.advance(at(10, 30)))  # steps 5..9
    return online, outputs, seen


def test_online_equals_offline_plus_trailing_zero_rows() -> None:
    online, outputs, _ = run_online()
    rows = pl.concat(outputs)
    offline_flows = frame(STEP0 + STEP1 + STEP3 + STEP4 + [LATE_IN_GRACE] + STEP5)
    offline = build_series(offline_flows.lazy(), CONFIG.offline()).drop(LABEL_COLUMNS)
    assert rows.schema == offline.schema
    # Offline: A is active 0..4 (2 and 3 are zero rows), B at 0 and at 5 (4 silent steps end a
    # period), C at 1, V6 at 3.
    assert offline.select("node", pl.col("step").dt.minute()).rows() == [
        (A, 0), (A, 1), (A, 2), (A, 3), (A, 4), (B, 0), (B, 5), (C, 1), (V6, 3)]
    on_offline_steps = rows.join(offline.select("node", "step"), on=["node", "step"], how="semi").sort("node", "step")
    assert on_offline_steps.equals(offline)
    # Online also gives out `idle_steps` zero rows after each node's last traffic, then evicts it.
    extra = rows.join(offline.select("node", "step"), on=["node", "step"], how="anti")
    assert sorted(extra.select("node", pl.col("step").dt.minute()).rows()) == [
        (A, 5), (A, 6), (B, 1), (B, 2), (B, 6), (B, 7), (C, 2), (C, 3), (V6, 4), (V6, 5)]
    assert extra.select(pl.sum_horizontal(feature_names())).to_series().to_list() == [0] * 10
    assert (online.evicted_nodes, online.active_nodes, online.late_flows, online.flows_added) == (5, 0, 1, 11)
    assert online.rows_emitted == rows.height == 19


def test_rows_come_out_per_complete_step() -> None:
    _, outputs, _ = run_online()
    steps = [sorted({s.minute for s in out["step"]}) for out in outputs]
    assert steps == [[0], [1, 2, 3], [], [4], [5, 6, 7]]
    # Features of the step that got the flow within its grace period: A received 20 packets and sent 1 (ICMP).
    a4 = outputs[3].filter(pl.col("node") == A).row(0, named=True)
    assert (a4["flows_in"], a4["flows_out"], a4["packets_in"], a4["packets_out"], a4["icmp_flows"], a4["svc_web"]) == (1, 1, 20, 1, 1, 1)
    assert a4["group"] == "10.0.0.0/24"


def test_history_keeps_the_last_rows_of_active_nodes() -> None:
    online, _, seen = run_online()
    assert seen["history_A"].select(pl.col("step").dt.minute()).to_series().to_list() == [2, 3, 4]
    assert online.history(A).height == 0  # evicted since
    assert online.history().height == 0


def test_late_flow_beyond_grace_is_counted_not_placed() -> None:
    online = OnlineSeries(CONFIG)
    online.add(frame(STEP0))
    first = online.advance(at(1, 30))
    online.add(frame([flow(at(0, 59), A, E1, dport=8080)]))
    assert online.late_flows == 1
    assert online.open_rows == 0
    later = online.advance(at(2, 30))
    assert first.filter(pl.col("node") == A)["flows_out"].to_list() == [1]
    assert later.filter(pl.col("node") == A).select(pl.sum_horizontal(feature_names())).item() == 0


def test_late_flows_fold_into_the_first_open_step_by_default() -> None:
    # An exporter emits a long flow at its end: a flood that began in step 0 arrives in step 2.
    assert OnlineConfig().late == "fold"
    online = OnlineSeries(FOLD)
    online.add(frame(STEP0))
    first = online.advance(at(1, 30))  # step 0 given out
    flood = [flow(at(0, 40), E1, A, dport=80, packets=5000, octets=300_000)] * 3
    online.add(frame([*flood, flow(at(1, 20), A, E1, dport=8080)]))
    assert (online.late_flows, online.folded_flows, online.flows_added) == (3, 3, 7)
    later = online.advance(at(2, 30))  # step 1 given out, with the folded flood in it
    a0 = first.filter(pl.col("node") == A).row(0, named=True)
    a1 = later.filter(pl.col("node") == A).row(0, named=True)
    assert (a0["flows_in"], a0["packets_in"]) == (1, 3)
    assert (a1["flows_in"], a1["packets_in"], a1["flows_out"]) == (3, 15000, 1)
    # What folding gives equals offline on the flows moved to the step they were counted in.
    moved = frame(STEP0 + [{**f, "ts_start": at(1)} for f in flood] + [flow(at(1, 20), A, E1, dport=8080)])
    offline = build_series(moved.lazy(), FOLD.offline()).drop(LABEL_COLUMNS)
    got = pl.concat([first, later]).join(offline.select("node", "step"), on=["node", "step"], how="semi")
    assert got.sort("node", "step").equals(offline.sort("node", "step"))


def test_dropped_late_flows_are_counted_not_folded() -> None:
    online = OnlineSeries(CONFIG)
    online.add(frame(STEP0))
    online.advance(at(1, 30))
    online.add(frame([flow(at(0, 40), E1, A)]))
    assert (online.late_flows, online.folded_flows, online.open_rows) == (1, 0, 0)


def test_bad_configuration_and_watermark() -> None:
    with pytest.raises(ValueError, match="late must be one of fold, drop"):
        OnlineConfig(late="keep")
    with pytest.raises(ValueError, match="idle_steps"):
        OnlineConfig(idle_steps=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        OnlineSeries().advance(datetime(2024, 1, 1))


def test_late_flows_per_source_are_bounded_the_busiest_keep_their_own_count() -> None:
    online = OnlineSeries(CONFIG)
    online.add(frame(STEP0))
    online.advance(at(1, 30))
    busy = [{**flow(at(0, 59), A, E1), "source_file": "udp://192.0.2.1"}] * 5
    many = [{**flow(at(0, 59), A, E1), "source_file": f"udp://10.9.{k >> 8}.{k & 255}"} for k in range(400)]
    online.add(frame(busy + many))
    assert online.late_flows == 405
    assert len(online.late_by_source) <= 256
    assert online.late_by_source["udp://192.0.2.1"] == 5
    assert sum(online.late_by_source.values()) == 405  # folded into udp://other, not lost
