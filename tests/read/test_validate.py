"""The common validation rules of netflowgen.schema, one by one, with exact outcomes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from netflowgen.read.validate import REJECT_SCHEMA, check, normalize_ips
from netflowgen.schema import FLOW_SCHEMA, Quality

UTC = timezone.utc
T0 = datetime(2020, 1, 1, tzinfo=UTC)

CANDIDATE_SCHEMA = {
    "ts_start": pl.Datetime("us", "UTC"),
    "ts_end": pl.Datetime("us", "UTC"),
    "src_ip": pl.String,
    "dst_ip": pl.String,
    "src_port": pl.Int64,
    "dst_port": pl.Int64,
    "proto": pl.Int64,
    "fwd_packets": pl.Int64,
    "fwd_bytes": pl.Int64,
    "rev_packets": pl.Int64,
    "rev_bytes": pl.Int64,
    "tcp_flags": pl.Int64,
    "label": pl.String,
    "label_detail": pl.String,
    "source_row": pl.Int64,
    "reject": pl.String,
}


def candidate(**changes) -> dict:
    """A valid TCP candidate row, with ``changes`` applied."""
    row = dict(
        ts_start=T0, ts_end=T0 + timedelta(seconds=1), src_ip="10.0.0.1", dst_ip="10.0.0.2",
        src_port=1234, dst_port=80, proto=6, fwd_packets=2, fwd_bytes=100, rev_packets=1, rev_bytes=40,
        tcp_flags=0x1B, label="Benign", label_detail=None, source_row=7, reject=None,
    )
    row.update(changes)
    return row


def check_one(**changes):
    """(flow dict or None, reject reason or None) for one candidate row."""
    checked = check(pl.DataFrame([candidate(**changes)], schema=CANDIDATE_SCHEMA), "in.log")
    assert dict(checked.flows.schema) == FLOW_SCHEMA
    assert dict(checked.rejects.schema) == REJECT_SCHEMA
    assert checked.flows.height + checked.rejects.height == 1
    if checked.rejects.height:
        row = checked.rejects.row(0, named=True)
        assert (row["source_file"], row["source_row"], row["raw"]) == ("in.log", 7, None)
        return None, row["reason"]
    return checked.flows.row(0, named=True), None


def test_a_valid_row_is_kept_exactly():
    flow, reason = check_one()
    assert reason is None
    assert flow == {
        "ts_start": T0, "ts_end": T0 + timedelta(seconds=1), "src_ip": "10.0.0.1", "dst_ip": "10.0.0.2",
        "src_port": 1234, "dst_port": 80, "proto": 6, "fwd_packets": 2, "fwd_bytes": 100,
        "rev_packets": 1, "rev_bytes": 40, "tcp_flags": 0x1B, "label": "Benign", "label_detail": None,
        "quality": 0, "source_file": "in.log", "source_row": 7,
    }


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"reject": "id.orig_p: cannot parse http"}, "id.orig_p: cannot parse http"),
        ({"ts_start": None}, "ts_start: missing"),
        ({"ts_start": datetime(2100, 1, 1, tzinfo=UTC), "ts_end": None}, "ts_start after 2100 (absurd clock)"),
        ({"ts_end": datetime(2100, 1, 1, tzinfo=UTC)}, "ts_end after 2100 (absurd clock or duration)"),
        ({"src_ip": "00:11:22:33:44:55"}, "src_ip is not an IP address: 00:11:22:33:44:55"),
        ({"src_ip": "0"}, "src_ip is not an IP address: 0"),
        ({"src_ip": "256.1.1.1"}, "src_ip is not an IP address: 256.1.1.1"),
        ({"src_ip": "010.0.0.1"}, "src_ip is not an IP address: 010.0.0.1"),
        ({"src_ip": None}, "src_ip is not an IP address: <empty>"),
        ({"dst_ip": "ff:ff:ff:ff:ff:ff"}, "dst_ip is not an IP address: ff:ff:ff:ff:ff:ff"),
        ({"dst_ip": ""}, "dst_ip is not an IP address: <empty>"),
        ({"dst_ip": None}, "dst_ip is not an IP address: <empty>"),
        ({"proto": None}, "proto: missing"),
        ({"proto": 256}, "proto out of range: 256"),
        ({"proto": -1}, "proto out of range: -1"),
        ({"src_port": 65536}, "src_port out of range: 65536"),
        ({"dst_port": -1}, "dst_port out of range: -1"),
        ({"proto": 17, "dst_port": 70000}, "dst_port out of range: 70000"),
        ({"proto": 132, "src_port": 99999}, "src_port out of range: 99999"),
        ({"fwd_packets": -1}, "fwd_packets is negative: -1"),
        ({"fwd_bytes": -5}, "fwd_bytes is negative: -5"),
        ({"rev_packets": -2}, "rev_packets is negative: -2"),
        ({"rev_bytes": -40}, "rev_bytes is negative: -40"),
        ({"fwd_packets": 1, "fwd_bytes": 65536}, "absurd counters: fwd_bytes=65536 with fwd_packets=1"),
        ({"rev_packets": 0, "rev_bytes": 1}, "absurd counters: rev_bytes=1 with rev_packets=0"),
    ],
)
def test_reject_reasons(changes, reason):
    assert check_one(**changes) == (None, reason)


def test_the_reader_reason_comes_first():
    assert check_one(reject="mine", src_ip="junk", ts_start=None) == (None, "mine")


def test_largest_valid_values_are_kept():
    flow, reason = check_one(
        ts_start=datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), ts_end=None,
        src_port=65535, dst_port=0, proto=6, fwd_packets=1, fwd_bytes=65535,
    )
    assert reason is None
    assert (flow["src_port"], flow["dst_port"], flow["fwd_bytes"]) == (65535, 0, 65535)


def test_ports_out_of_range_do_not_matter_without_ports():
    flow, reason = check_one(proto=1, src_port=70000, dst_port=-3)
    assert reason is None
    assert (flow["src_port"], flow["dst_port"]) == (None, None)


@pytest.mark.parametrize(("proto", "has_ports"), [(6, True), (17, True), (33, True), (132, True), (136, True),
                                                  (1, False), (47, False), (58, False), (0, False)])
def test_ports_are_null_for_protocols_without_ports(proto, has_ports):
    flow, _ = check_one(proto=proto, src_port=8, dst_port=0)
    assert (flow["src_port"], flow["dst_port"]) == ((8, 0) if has_ports else (None, None))


@pytest.mark.parametrize(("proto", "flags"), [(6, 0x12), (17, None), (1, None), (132, None)])
def test_tcp_flags_only_for_tcp(proto, flags):
    flow, _ = check_one(proto=proto, tcp_flags=0x12)
    assert flow["tcp_flags"] == flags


def test_tcp_flags_unknown_stay_null():
    flow, _ = check_one(tcp_flags=None)
    assert flow["tcp_flags"] is None


def test_quality_end_before_start():
    flow, _ = check_one(ts_end=T0 - timedelta(microseconds=1))
    assert (flow["ts_end"], flow["quality"]) == (T0, Quality.END_BEFORE_START)


def test_quality_no_end():
    flow, _ = check_one(ts_end=None)
    assert (flow["ts_end"], flow["quality"]) == (T0, Quality.NO_END)


@pytest.mark.parametrize("counter", ["fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes"])
def test_quality_missing_counters(counter):
    changes = {counter: None}
    if counter == "fwd_packets":
        changes["fwd_bytes"] = 0  # bytes without packets would be absurd
    if counter == "rev_packets":
        changes["rev_bytes"] = 0
    flow, _ = check_one(**changes)
    assert flow[counter] == 0
    assert flow["quality"] == Quality.MISSING_COUNTERS


def test_unset_packets_with_bytes_are_kept_as_missing_counters():
    # Unknown is not zero: only a packet count the source gave can make bytes absurd.
    flow, reason = check_one(fwd_packets=None, fwd_bytes=60)
    assert reason is None
    assert (flow["fwd_packets"], flow["fwd_bytes"], flow["quality"]) == (0, 60, Quality.MISSING_COUNTERS)


def test_quality_epoch_clock():
    start = datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    flow, _ = check_one(ts_start=start, ts_end=start)
    assert flow["quality"] == Quality.EPOCH_CLOCK
    flow, _ = check_one(ts_start=datetime(2000, 1, 1, tzinfo=UTC), ts_end=None)
    assert flow["quality"] == Quality.NO_END
    start = datetime(1970, 1, 1, 0, 0, 19, 981745, tzinfo=UTC)
    flow, _ = check_one(ts_start=start, ts_end=start + timedelta(seconds=1))
    assert (flow["ts_start"], flow["quality"]) == (start, Quality.EPOCH_CLOCK)


def test_quality_flags_combine():
    start = datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC)
    flow, _ = check_one(ts_start=start, ts_end=None, rev_packets=None, rev_bytes=None)
    assert flow["quality"] == Quality.EPOCH_CLOCK | Quality.NO_END | Quality.MISSING_COUNTERS == 14
    flow, _ = check_one(ts_end=T0 - timedelta(seconds=1), fwd_bytes=None)
    assert flow["quality"] == Quality.END_BEFORE_START | Quality.MISSING_COUNTERS == 5


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("FD2D:AB8C:0225:0000::10", "fd2d:ab8c:225::10"),
        ("2001:db8:0:0:0:0:0:6", "2001:db8::6"),
        ("::1", "::1"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("0.0.0.0", "0.0.0.0"),
        ("255.255.255.255", "255.255.255.255"),
    ],
)
def test_addresses_are_normalised(raw, normal):
    flow, reason = check_one(src_ip=raw, dst_ip=raw)
    assert reason is None
    assert (flow["src_ip"], flow["dst_ip"]) == (normal, normal)


def test_normalize_ips_on_a_series():
    s = pl.Series("a", ["10.0.0.1", "FD2D::1", "00:11:22:33:44:55", "0", None, "1.2.3", "10.0.0.1"])
    assert normalize_ips(s).to_list() == ["10.0.0.1", "fd2d::1", None, None, None, None, "10.0.0.1"]
    assert normalize_ips(pl.Series("b", ["1.1.1.1"])).to_list() == ["1.1.1.1"]


def test_out_of_order_and_duplicate_rows_are_kept_in_order():
    rows = [
        candidate(ts_start=T0 + timedelta(seconds=9), ts_end=None, source_row=1),
        candidate(source_row=2),
        candidate(source_row=3),
    ]
    flows = check(pl.DataFrame(rows, schema=CANDIDATE_SCHEMA), "f").flows
    assert flows["source_row"].to_list() == [1, 2, 3]
    assert flows.row(1) == flows.row(2)[:-1] + (2,)


def test_optional_columns_default_to_null():
    minimal = pl.DataFrame(
        [candidate()], schema=CANDIDATE_SCHEMA
    ).drop("ts_end", "src_port", "dst_port", "tcp_flags", "label", "label_detail", "reject")
    checked = check(minimal, "f")
    assert checked.rejects.height == 0
    flow = checked.flows.row(0, named=True)
    assert (flow["ts_end"], flow["src_port"], flow["tcp_flags"], flow["label"]) == (T0, None, None, None)
    assert flow["quality"] == Quality.NO_END


def test_mixed_batch_splits_into_flows_and_rejects():
    rows = [candidate(source_row=i) for i in range(1, 6)]
    rows[1]["src_ip"] = "aa:bb:cc:dd:ee:ff"
    rows[3]["proto"] = None
    checked = check(pl.DataFrame(rows, schema=CANDIDATE_SCHEMA), "mixed.csv")
    assert checked.flows["source_row"].to_list() == [1, 3, 5]
    assert checked.rejects.rows() == [
        ("mixed.csv", 2, "src_ip is not an IP address: aa:bb:cc:dd:ee:ff", None),
        ("mixed.csv", 4, "proto: missing", None),
    ]
    assert checked.flows["source_file"].to_list() == ["mixed.csv"] * 3


def test_empty_candidates_give_empty_tables():
    checked = check(pl.DataFrame(schema=CANDIDATE_SCHEMA), "f")
    assert checked.flows.height == checked.rejects.height == 0
    assert dict(checked.flows.schema) == FLOW_SCHEMA
    assert dict(checked.rejects.schema) == REJECT_SCHEMA


def test_tcp_flags_above_eight_bits_are_masked_and_recorded():
    """The NS bit (0x100) an IPFIX tcpControlBits can carry: the eight flags are kept, and the
    row says that more were dropped, instead of losing them silently."""
    flow, reason = check_one(tcp_flags=0x1FF)
    assert reason is None
    assert flow["tcp_flags"] == 0xFF
    assert flow["quality"] == Quality.FLAGS_MASKED
    flow, _ = check_one(tcp_flags=0xFF)
    assert flow["quality"] == 0


@pytest.mark.parametrize("flags", [0x10000, -1])
def test_tcp_flags_beyond_sixteen_bits_are_rejected(flags):
    flow, reason = check_one(tcp_flags=flags)
    assert flow is None
    assert reason == f"tcp_flags out of range: {flags}"


def test_flags_of_other_protocols_are_neither_masked_nor_rejected():
    flow, reason = check_one(proto=17, tcp_flags=0x10000)
    assert reason is None
    assert (flow["tcp_flags"], flow["quality"]) == (None, 0)
