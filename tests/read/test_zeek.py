"""The Zeek conn.log reader (TSV, IoT-23 variant, JSON lines) on authored fixtures and real captures."""

from __future__ import annotations

import gzip
import re
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from netflowgen.read import FormatError, ReadOptions, Source, detect_format, iter_checked, read_flows
from netflowgen.read.validate import REJECT_SCHEMA
from netflowgen.schema import FLOW_SCHEMA, Quality

UTC = timezone.utc
ZEEK = Path(__file__).resolve().parent / "fixtures" / "zeek"


def read(path: Path, **options) -> tuple[pl.DataFrame, pl.DataFrame]:
    """All flows and all rejects (sorted by row) of one input."""
    flows, rejects = [], []
    for _source, _fmt, checked in iter_checked(path, ReadOptions(**options)):
        assert dict(checked.flows.schema) == FLOW_SCHEMA
        assert dict(checked.rejects.schema) == REJECT_SCHEMA
        flows.append(checked.flows)
        rejects.append(checked.rejects)
    if not flows:
        return pl.DataFrame(schema=FLOW_SCHEMA), pl.DataFrame(schema=REJECT_SCHEMA)
    return pl.concat(flows), pl.concat(rejects).sort("source_row")


def flow(source_row: int, source_file: Path, **values) -> dict:
    """A canonical flow row: nulls and zero quality unless given."""
    row = {name: None for name in FLOW_SCHEMA}
    row.update(quality=0, source_file=str(source_file), source_row=source_row)
    row.update(values)
    return row


def ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "format_name"),
    [
        ("conn.log", "zeek"),
        ("conn_unset.log", "zeek"),
        ("conn_payload_bytes.log", "zeek"),
        ("iot23_conn.log.labeled", "zeek"),
        ("ctu_relative_clock.log", "zeek"),
        ("conn_broken.log", "zeek"),
        ("conn_json.log", "zeek-json"),
        ("conn_json_iso.log", "zeek-json"),
        ("conn_json_broken.log", "zeek-json"),
    ],
)
def test_formats_are_detected(name, format_name):
    assert detect_format(Source(ZEEK / name, name)).name == format_name


CONN_LOG_FLOWS = [
    dict(ts_start=ts(2021, 6, 1, 10, 0, 0, 123456), ts_end=ts(2021, 6, 1, 10, 0, 2, 623457),
         src_ip="192.168.1.10", dst_ip="93.184.216.34", src_port=51000, dst_port=443, proto=6,
         fwd_packets=12, fwd_bytes=1141, rev_packets=10, rev_bytes=4841, tcp_flags=0x13),
    dict(ts_start=ts(2021, 6, 1, 10, 0, 1, 1), ts_end=ts(2021, 6, 1, 10, 0, 1, 20001),
         src_ip="192.168.1.10", dst_ip="8.8.8.8", src_port=53000, dst_port=53, proto=17,
         fwd_packets=1, fwd_bytes=68, rev_packets=1, rev_bytes=84),
    dict(ts_start=ts(2021, 6, 1, 10, 0, 2, 500000), ts_end=ts(2021, 6, 1, 10, 0, 2, 500000),
         src_ip="192.168.1.10", dst_ip="192.168.1.1", proto=1,
         fwd_packets=1, fwd_bytes=84, rev_packets=0, rev_bytes=0, quality=Quality.NO_END),
    dict(ts_start=ts(2021, 6, 1, 10, 0, 3, 999999), ts_end=ts(2021, 6, 1, 10, 0, 4, 122),
         src_ip="fd2d:ab8c:225::10", dst_ip="fd2d:ab8c:225::1", src_port=40000, dst_port=80, proto=6,
         fwd_packets=1, fwd_bytes=80, rev_packets=0, rev_bytes=0, tcp_flags=0x02),
    dict(ts_start=ts(2021, 6, 1, 10, 0, 4), ts_end=ts(2021, 6, 1, 10, 0, 5),
         src_ip="10.0.0.5", dst_ip="10.0.0.6", src_port=1234, dst_port=5678, proto=6,
         fwd_packets=1, fwd_bytes=60, rev_packets=1, rev_bytes=40, tcp_flags=0x06),
]


def test_conn_log_every_column():
    path = ZEEK / "conn.log"
    flows, rejects = read(path)
    assert rejects.height == 0  # the #close trailer is not a row
    expected = [flow(9 + i, path, **values) for i, values in enumerate(CONN_LOG_FLOWS)]
    assert flows.rows(named=True) == expected


def test_unset_counters_and_durations():
    path = ZEEK / "conn_unset.log"
    flows, rejects = read(path)
    assert rejects.height == 0
    missing, no_end = Quality.MISSING_COUNTERS, Quality.NO_END
    assert flows.select("source_row", "ts_start", "ts_end", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes",
                        "tcp_flags", "quality").rows() == [
        (9, ts(2021, 6, 1, 10, 1, 40), ts(2021, 6, 1, 10, 1, 40), 1, 0, 0, 0, 0x02, missing | no_end),
        (10, ts(2021, 6, 1, 10, 1, 41, 250000), ts(2021, 6, 1, 10, 1, 44, 750000), 0, 0, 0, 0, 0x13, missing),
        (11, ts(2021, 6, 1, 10, 1, 42), ts(2021, 6, 1, 10, 1, 42), 1, 60, 0, 0, 0x02, missing | no_end),
    ]


def test_log_without_ip_bytes_uses_payload_bytes():
    path = ZEEK / "conn_payload_bytes.log"
    flows, rejects = read(path)
    assert rejects.height == 0
    assert flows.rows(named=True) == [flow(
        9, path, ts_start=ts(2011, 3, 13, 7, 6, 40, 1), ts_end=ts(2011, 3, 13, 7, 6, 40, 500001),
        src_ip="172.16.0.1", dst_ip="172.16.0.2", src_port=1025, dst_port=80, proto=6,
        fwd_packets=5, fwd_bytes=100, rev_packets=4, rev_bytes=2000, tcp_flags=0x13,
    )]


def test_iot23_space_separated_tail():
    path = ZEEK / "iot23_conn.log.labeled"
    flows, rejects = read(path)
    assert rejects.height == 0
    assert flows.rows(named=True)[0] == flow(
        9, path, ts_start=ts(2018, 12, 21, 14, 50, 16, 962094), ts_end=ts(2018, 12, 21, 14, 50, 20, 101305),
        src_ip="192.168.1.195", dst_ip="185.244.25.235", src_port=41040, dst_port=80, proto=6,
        fwd_packets=3, fwd_bytes=180, rev_packets=0, rev_bytes=0, tcp_flags=0x02,
        label="Malicious", label_detail="C&C",
    )
    assert flows.select("source_row", "label", "label_detail", "proto", "src_port", "quality").rows() == [
        (9, "Malicious", "C&C", 6, 41040, 0),
        (10, "Benign", None, 6, 41040, Quality.NO_END),
        (11, "Malicious", "DDoS", 17, 123, 0),
        (12, "Malicious", "PartOfAHorizontalPortScan", 6, 37215, Quality.NO_END),
        (13, None, None, 1, None, 0),  # (empty) labels are no labels
    ]


def test_iot23_tail_with_wrong_field_count_is_a_reject():
    path = ZEEK / "iot23_broken.log.labeled"
    flows, rejects = read(path)
    assert flows["source_row"].to_list() == [9, 11]
    assert rejects.rows() == [(
        str(path), 10,
        "expected 3 space-separated fields at the end of the row (tunnel_parents label detailed-label), found 2",
        "-   Benign",
    )]


def test_stratosphere_labels_and_relative_clock():
    path = ZEEK / "ctu_relative_clock.log"
    flows, rejects = read(path)
    assert rejects.height == 0
    assert flows.rows(named=True) == [
        flow(9, path, ts_start=ts(1970, 1, 1, 0, 0, 19, 981745), ts_end=ts(1970, 1, 1, 0, 0, 20, 118466),
             src_ip="fd2d:ab8c:225:0:81d3:fd3e:7f62:aec8", dst_ip="fd2d:ab8c:225::1", src_port=56464, dst_port=53,
             proto=17, fwd_packets=1, fwd_bytes=82, rev_packets=1, rev_bytes=98,
             label="Background", quality=Quality.EPOCH_CLOCK),
        flow(10, path, ts_start=ts(1970, 1, 1, 0, 50, 23, 360285), ts_end=ts(1970, 1, 1, 0, 50, 35, 360285),
             src_ip="192.168.1.122", dst_ip="104.16.1.1", src_port=49178, dst_port=1177, proto=6,
             fwd_packets=6, fwd_bytes=525, rev_packets=4, rev_bytes=220, tcp_flags=0x13,
             label="Malicious", label_detail="From-Botnet-V230-TCP-Established", quality=Quality.EPOCH_CLOCK),
    ]


def test_broken_rows_become_rejects_with_the_real_fault():
    path = ZEEK / "conn_broken.log"
    flows, rejects = read(path)
    assert flows["source_row"].to_list() == [9, 19]
    assert rejects.select("source_row", "reason").rows() == [
        (10, "expected 21 fields, found 19"),
        (11, "expected 21 fields, found 22"),
        (12, "ts: cannot parse 16225416xx.000000"),
        (13, "id.orig_p: cannot parse http"),
        (14, "dst_port out of range: 70000"),
        (15, "invalid UTF-8 at byte 75 of the line"),
        (16, "proto: unknown protocol unknown_transport"),
        (17, "orig_pkts: cannot parse x"),
        (20, "expected 21 fields, found 3"),  # the cut-off last line
    ]
    assert rejects["source_file"].to_list() == [str(path)] * 9
    raw = dict(zip(rejects["source_row"], rejects["raw"]))
    assert raw[13] == ("1622541609.000000\tCB5\t10.0.0.1\thttp\t10.0.0.2\t80\ttcp\t-\t0.5\t10\t20\tSF\tT\tT\t0"
                       "\tShADadFf\t3\t130\t2\t120\t(empty)")
    assert raw[20] == "1622541615.000000\tCB11\t10.0.0"
    assert raw[15].startswith("1622541611.000000\tCB7\t") and "\ufffd" in raw[15]
    # Every data line is accounted for once; line 18 is blank.
    data_lines = [i + 1 for i, line in enumerate(path.read_bytes().split(b"\n")) if line and not line.startswith(b"#")]
    assert sorted(flows["source_row"].to_list() + rejects["source_row"].to_list()) == data_lines


def test_json_lines_numeric_ts():
    path = ZEEK / "conn_json.log"
    flows, rejects = read(path)
    assert rejects.height == 0
    tsv = [CONN_LOG_FLOWS[0], CONN_LOG_FLOWS[2], {**CONN_LOG_FLOWS[4], "src_ip": "2001:db8::5", "dst_ip": "2001:db8::6"}]
    assert flows.rows(named=True) == [flow(i + 1, path, **values) for i, values in enumerate(tsv)]


def test_json_lines_iso8601_ts():
    path = ZEEK / "conn_json_iso.log"
    flows, rejects = read(path)
    assert rejects.height == 0
    assert flows.rows(named=True) == [
        flow(1, path, **CONN_LOG_FLOWS[0]),
        flow(2, path, **{**CONN_LOG_FLOWS[1], "ts_start": ts(2021, 6, 1, 10, 0, 1), "ts_end": ts(2021, 6, 1, 10, 0, 1, 20000)}),
    ]


def test_broken_json_lines():
    path = ZEEK / "conn_json_broken.log"
    flows, rejects = read(path)
    assert flows["source_row"].to_list() == [1]
    assert rejects.select("source_row", "reason").rows() == [
        (2, "not a JSON object: Expecting ',' delimiter: line 1 column 42 (char 41)"),
        (3, "not a JSON object"),
        (4, "ts: cannot parse yesterday"),
        (6, "src_port out of range: 99999"),
        (7, "not a JSON object: Unterminated string starting at: line 1 column 70 (char 69)"),
    ]
    lines = path.read_text().split("\n")
    # The raw text of every reject is its line as the file holds it.
    assert rejects["raw"].to_list() == [lines[1], lines[2], lines[3], lines[5], lines[6]]


@pytest.mark.parametrize("name", ["conn.log", "conn_broken.log", "iot23_conn.log.labeled", "conn_json_broken.log"])
@pytest.mark.parametrize("block_bytes", [1, 50, 333])
def test_small_blocks_read_the_same(name, block_bytes):
    path = ZEEK / name
    flows, rejects = read(path)
    small_flows, small_rejects = read(path, block_bytes=block_bytes)
    assert small_flows.equals(flows)
    assert small_rejects.equals(rejects)


def test_gzip_and_crlf_copies_read_the_same(tmp_path):
    path = ZEEK / "conn.log"
    flows, _ = read(path)
    gz = tmp_path / "conn.log.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    crlf = tmp_path / "crlf_conn.log"
    crlf.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    for copy in (gz, crlf):
        copy_flows, copy_rejects = read(copy)
        assert copy_rejects.height == 0
        assert copy_flows["source_file"].unique().to_list() == [str(copy)]
        assert copy_flows.drop("source_file").equals(flows.drop("source_file"))


def test_header_only_log_has_no_rows(tmp_path):
    header = b"".join(line + b"\n" for line in (ZEEK / "conn.log").read_bytes().split(b"\n")[:8])
    path = tmp_path / "header_only.log"
    path.write_bytes(header + b"#close\t2021-06-01-11-00-00\n")
    flows, rejects = read(path)
    assert flows.height == rejects.height == 0


def test_not_a_zeek_log_is_a_format_error(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty.log: file is empty"):
        read(empty)
    csv = tmp_path / "flows.csv"
    csv.write_bytes(b"ts,src,dst\n1,2,3\n")
    with pytest.raises(FormatError, match=r"flows\.csv: Zeek log without a #fields line"):
        read(csv, format="zeek")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"#separator \\x09", b"#separator \\xZZ", "unusable Zeek #separator '\\\\xZZ'"),
        (b"#separator \\x09", b"#separator \\x", "unusable Zeek #separator '\\\\x'"),
        (b"#separator \\x09", b"#separator ab", "unusable Zeek #separator 'ab'"),
        (b"#separator \\x09", b"#separator \\x0a", "unusable Zeek #separator '\\\\x0a'"),
        (b"#separator \\x09", b"#separator \\x1F600", "unusable Zeek #separator '\\\\x1F600'"),
        (b"#fields\tts\tuid", b"#fields\tts\tts", "Zeek #fields names repeated or reserved: ts"),
        (b"#fields\tts\tuid", b"#fields\tts\tsource_row", "Zeek #fields names repeated or reserved: source_row"),
        (b"\ttunnel_parents\n", b"\ttunnel_parents   label   label\n", "Zeek #fields names repeated or reserved: label"),
        # Found by benchmarks/fuzz.py: an empty name crashed the reader.
        (b"#fields\tts\tuid", b"#fields\t\tuid", "Zeek #fields has an empty name at position 1 of"),
    ],
)
def test_unusable_header_is_a_format_error(tmp_path, old, new, message):
    data = (ZEEK / "conn.log").read_bytes()
    assert old in data
    path = tmp_path / "odd_header.log"
    path.write_bytes(data.replace(old, new, 1))
    with pytest.raises(FormatError, match=re.escape(f"{path}: {message}")):
        read(path, format="zeek")


def test_absurd_times_and_durations(tmp_path):
    row = (ZEEK / "conn.log").read_text().split("\n")[8].split("\t")
    header = "".join(line + "\n" for line in (ZEEK / "conn.log").read_text().split("\n")[:8])

    def line(ts: str, duration: str) -> str:
        return "\t".join([ts, *row[1:8], duration, *row[9:]]) + "\n"

    path = tmp_path / "absurd.log"
    path.write_text(header + line("1622541600.5", "1e300") + line("1622541600.5", "9200000000000")
                    + line("99999999999999999", "1") + line("4102444800", "1") + line("1622541600.5", "-5")
                    + line("-1.5", "1"))
    flows, rejects = read(path)
    assert rejects.select("source_row", "reason").rows() == [
        (9, "duration: out of range 1e300"),
        (10, "ts_end after 2100 (absurd clock or duration)"),
        (11, "ts: cannot parse 99999999999999999"),
        (12, "ts_start after 2100 (absurd clock)"),
        (14, "ts_start before 1970 (absurd clock)"),
    ]
    assert flows.select("source_row", "ts_start", "ts_end", "quality").rows() == [
        (13, ts(2021, 6, 1, 10, 0, 0, 500000), ts(2021, 6, 1, 10, 0, 0, 500000), Quality.END_BEFORE_START),
    ]


def test_json_lines_python_cannot_decode_are_rejects(tmp_path):
    path = tmp_path / "extreme.json"
    good = (ZEEK / "conn_json.log").read_text().split("\n")[0]
    path.write_text(good + "\n" + '{"ts":1' + "0" * 5000 + "}\n" + "[" * 100_000 + "]" * 100_000 + "\n" + good + "\n")
    flows, rejects = read(path, format="zeek-json")
    assert flows["source_row"].to_list() == [1, 4]
    assert rejects["source_row"].to_list() == [2, 3]
    assert rejects["reason"][0].startswith("not a JSON object: Exceeds the limit (4300 digits)")
    assert rejects["reason"][1].startswith("not a JSON object: maximum recursion depth exceeded")


def test_read_flows_concatenates_the_batches():
    flows = read_flows([ZEEK / "conn.log", ZEEK / "iot23_conn.log.labeled"])
    assert flows.height == 10
    assert dict(flows.schema) == FLOW_SCHEMA


# --- real captures ------------------------------------------------------------------------------


def _zeek_rows(path: Path) -> list[dict[str, str]]:
    """The data rows of a Zeek log by plain Python splitting: an independent count."""
    names: list[str] = []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#fields"):
                names = line.split("\t")[1:]
                if len(names[-1].split()) > 1:  # IoT-23: the last names joined by spaces
                    names = names[:-1] + names[-1].split()
            if not line or line.startswith("#"):
                continue
            values = line.split("\t")
            if len(values[-1].split()) > 1:
                values = values[:-1] + values[-1].split()
            assert len(values) == len(names)
            rows.append(dict(zip(names, values)))
    return rows


def _micros(text: str) -> int:
    return int(Decimal(text) * 1_000_000)


def _check_real_log(path: Path, expected_flows: int) -> tuple[pl.DataFrame, list[dict[str, str]]]:
    rows = _zeek_rows(path)
    flows, rejects = read(path)
    assert len(rows) == expected_flows
    assert flows.height + rejects.height == len(rows)
    assert flows.height == expected_flows and rejects.height == 0
    assert flows["fwd_packets"].sum() + flows["rev_packets"].sum() == sum(
        int(r["orig_pkts"]) + int(r["resp_pkts"]) for r in rows
    )
    assert flows["fwd_bytes"].sum() + flows["rev_bytes"].sum() == sum(
        int(r["orig_ip_bytes"]) + int(r["resp_ip_bytes"]) for r in rows
    )
    # ts_start and ts_end = ts + duration, to the microsecond.
    # (Python sums: the microseconds of 23,145 timestamps overflow Int64.)
    assert sum(flows["ts_start"].dt.epoch("us").to_list()) == sum(_micros(r["ts"]) for r in rows)
    duration = (flows["ts_end"] - flows["ts_start"]).dt.total_microseconds()
    assert sum(duration.to_list()) == sum(_micros(r["duration"]) for r in rows if r["duration"] != "-")
    assert flows.filter(pl.col("quality") & Quality.NO_END > 0).height == sum(r["duration"] == "-" for r in rows)
    return flows, rows


@pytest.mark.shared_data
def test_iot23_capture_34_1(shared_data):
    path = shared_data / "iot23-34-1" / "conn.log.labeled"
    flows, rows = _check_real_log(path, 23_145)
    details = Counter(r["detailed-label"] for r in rows)
    assert details == {"DDoS": 14_394, "C&C": 6_706, "PartOfAHorizontalPortScan": 122, "-": 1_923}
    got = Counter(flows["label_detail"].to_list())
    assert got == {"DDoS": 14_394, "C&C": 6_706, "PartOfAHorizontalPortScan": 122, None: 1_923}
    assert Counter(flows["label"].to_list()) == Counter(r["label"] for r in rows)
    assert flows["source_row"].to_list()[:2] == [9, 10]
    assert flows["source_row"].max() == 8 + 23_145


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("day", "expected_flows"),
    [("008-zeek-mixed", 5_663), ("010-zeek-mixed", 5_347), ("011-zeek-mixed", 9_048), ("012-zeek-mixed", 4_740)],
)
def test_stratosphere_ctu50_days(shared_data, day, expected_flows):
    path = shared_data / "stratosphere-ctu50" / day / "conn.log.labeled"
    flows, rows = _check_real_log(path, expected_flows)
    assert Counter(flows["label"].to_list()) == Counter(r["label"] for r in rows)
    assert Counter(flows["label_detail"].to_list()) == Counter(
        None if r["detailedlabel"] in ("-", "(empty)") else r["detailedlabel"] for r in rows
    )
    assert flows.filter(pl.col("quality") & Quality.EPOCH_CLOCK > 0).height == 0


@pytest.mark.shared_data
def test_stratosphere_001_relative_clock(shared_data):
    path = shared_data / "stratosphere-ctu50" / "001-zeek-scenario-malicious" / "labeled-conn.log"
    flows, rows = _check_real_log(path, 992)
    assert Counter(flows["label"].to_list()) == {"Malicious": 244, "Background": 739, "Benign": 9}
    assert sum(float(r["ts"]) < 946_684_800 for r in rows) == 992
    assert flows.filter(pl.col("quality") & Quality.EPOCH_CLOCK > 0).height == 992
    assert flows["ts_start"].dt.epoch("us").min() == min(_micros(r["ts"]) for r in rows) == 15_230_937


def test_a_byte_order_mark_before_a_header_line_is_a_reject_not_a_lost_line(tmp_path: Path) -> None:
    # Found by benchmarks/fuzz.py (10^5 inputs): a mark in front of "#types" ended the header
    # there, and the line, first of the data, lost its mark to Arrow and was skipped as a comment.
    lines = (ZEEK / "iot23_conn.log.labeled").read_bytes().split(b"\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(b"#types"))
    lines[at] = "\ufeff".encode() + lines[at]
    path = tmp_path / "conn.log.labeled"
    path.write_bytes(b"\n".join(lines))
    flows, rejects = [], []
    for _source, _fmt, checked in iter_checked(path, ReadOptions()):
        flows.append(checked.flows)
        rejects.append(checked.rejects)
    rejects_df = pl.concat(rejects)
    marked = rejects_df.filter(pl.col("source_row") == at + 1)
    assert marked["reason"].to_list() == ["byte order mark (U+FEFF) at the start of a line other than the file's first"]
    assert marked["raw"][0].startswith("\ufeff#types")  # the line as the file holds it
    data_lines = [i + 1 for i, line in enumerate(lines) if line and not line.startswith(b"#")]  # the marked one too
    assert at + 1 in data_lines
    assert sorted(pl.concat(flows)["source_row"].to_list() + rejects_df["source_row"].to_list()) == data_lines

