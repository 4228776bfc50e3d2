"""nfdump ``-o csv`` reader: the trailer, nfdump's own protocol names, broken files, real data.

``fixtures/nfdump_csv/flows.csv`` is what ``nfdump -o csv`` (1.7.1, TZ=UTC) printed for the nfcapd
file nfpcapd made of ``tiny_capture.packets()``; the other fixtures are edits of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from netflowgen.read import FormatError, ReadOptions, detect_format, get_format, iter_checked, read_flows
from netflowgen.read.nfdump_csv import NFDUMP_PROTOCOLS
from netflowgen.read.source import open_sources

FIXTURES = Path(__file__).parent / "fixtures" / "nfdump_csv"
TUNNEL_REASON = "nfdump tunnel line (outer addresses of the next record's tunnel, no packets): not a flow"


def read_all(path: Path, **options: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    flows, rejects = [], []
    for _source, fmt, checked in iter_checked(path, ReadOptions(format="nfdump-csv", **options)):  # type: ignore[arg-type]
        assert fmt.name == "nfdump-csv"
        flows.append(checked.flows)
        rejects.append(checked.rejects)
    empty = read_flows([])
    return (
        pl.concat([empty, *flows]),
        pl.concat(rejects) if rejects else pl.DataFrame(schema={"source_file": pl.String, "source_row": pl.UInt64, "reason": pl.String, "raw": pl.String}),
    )


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_detected_by_header() -> None:
    (source,) = open_sources(FIXTURES / "flows.csv")
    assert detect_format(source).name == "nfdump-csv"
    (old,) = open_sources(FIXTURES / "v16.csv")
    assert detect_format(old).name == "nfdump-csv"


def test_flows_rows_and_summary_trailer() -> None:
    flows, rejects = read_all(FIXTURES / "flows.csv")
    # 9 data lines: 8 records and the tunnel line nfdump prints before the GRE-carried record.
    assert flows.height == 8
    assert rejects.select("source_row", "reason").rows() == [(6, TUNNEL_REASON)]
    assert flows["source_row"].to_list() == [2, 3, 4, 5, 7, 8, 9, 10]
    # The trailer's own figures: flows 8, bytes 794, packets 12.
    assert flows["fwd_packets"].sum() == 12 and flows["fwd_bytes"].sum() == 794
    assert flows["rev_packets"].sum() == 0 and flows["rev_bytes"].sum() == 0
    tcp = flows.filter(pl.col("src_ip") == "192.168.1.10", pl.col("proto") == 6).row(0, named=True)
    assert tcp["ts_start"] == utc("2023-11-14 22:13:20") and tcp["ts_end"] == utc("2023-11-14 22:13:20")
    assert (tcp["src_port"], tcp["dst_port"], tcp["fwd_packets"], tcp["fwd_bytes"]) == (40000, 80, 3, 220)
    assert tcp["tcp_flags"] == 0x1B  # ...AP.SF
    icmp = flows.filter(pl.col("proto") == 1).row(0, named=True)
    assert (icmp["src_port"], icmp["dst_port"], icmp["tcp_flags"]) == (None, None, None)
    v6 = flows.filter(pl.col("src_ip").str.contains(":")).row(0, named=True)
    assert (v6["src_ip"], v6["dst_ip"], v6["fwd_bytes"]) == ("fd00:1234:5678:9abc::1", "fd00:1234:5678:9abc::2", 128)
    assert flows["quality"].sum() == 0


def test_timezone_option_applies_to_local_times() -> None:
    flows, _ = read_all(FIXTURES / "flows.csv", timezone="Europe/Prague")
    # November: Prague is UTC+1.
    assert flows["ts_start"].min() == utc("2023-11-14 21:13:20")


def test_milliseconds_when_nfdump_prints_them() -> None:
    flows, rejects = read_all(FIXTURES / "millis.csv")
    assert rejects.height == 0
    assert flows.select("ts_start", "ts_end").rows() == [
        (utc("2023-11-14 22:13:20.100"), utc("2023-11-14 22:13:20.400")),
        (utc("2023-11-14 22:13:22.500"), utc("2023-11-14 22:13:22.750")),
    ]


def test_nfdump_16_header() -> None:
    flows, rejects = read_all(FIXTURES / "v16.csv")
    assert rejects.height == 0
    assert flows.select("src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes").rows() == [
        (80, 40000, 6, 2, 80), (40000, 80, 6, 3, 220), (5353, 53, 17, 1, 58),
    ]


def test_truncated_last_line_is_a_reject() -> None:
    flows, rejects = read_all(FIXTURES / "truncated.csv")
    assert flows["source_row"].to_list() == [2, 3, 4]
    assert rejects.select("source_row", "reason").rows() == [(5, "expected 48 fields, found 5")]


def test_wrong_field_counts_are_rejects_and_trailer_is_not() -> None:
    flows, rejects = read_all(FIXTURES / "wrong_columns.csv")
    assert flows["source_row"].to_list() == [2, 5]
    assert rejects.select("source_row", "reason").rows() == [
        (3, "expected 48 fields, found 49"), (4, "expected 48 fields, found 47"),
    ]
    assert rejects["raw"].str.starts_with("2023-11-14 22:13:21,").all()


def test_bad_values_name_the_field() -> None:
    flows, rejects = read_all(FIXTURES / "bad_values.csv")
    assert flows["source_row"].to_list() == [8]
    assert rejects.select("source_row", "reason").rows() == [
        (2, "ts: cannot parse 2023-11-14 25:13:21"),
        (3, "ipkt: cannot parse 1x"),
        (4, "fwd_bytes is negative: -68"),
        (5, "pr: unknown protocol foo"),
        (6, "src_port out of range: 70000"),
        (7, "src_ip is not an IP address: not-an-ip"),
    ]
    assert rejects["raw"].null_count() == 0


@pytest.mark.parametrize("name", ["header_only.csv", "no_match.csv"])
def test_files_without_records(name: str) -> None:
    flows, rejects = read_all(FIXTURES / name)
    assert (flows.height, rejects.height) == (0, 0)


def test_empty_file_and_other_text_raise() -> None:
    (empty,) = open_sources(FIXTURES / "empty.csv")
    with pytest.raises(FormatError, match="empty"):
        detect_format(empty)
    with pytest.raises(FormatError, match="not nfdump csv output"):
        list(get_format("nfdump-csv").read(empty, ReadOptions()))


def test_other_csv_is_not_nfdump(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("StartTime,Dur,Proto,SrcAddr\n2019/01/01 00:00:00,1,tcp,10.0.0.1\n")
    (source,) = open_sources(other)
    assert not get_format("nfdump-csv").sniff(source.head(), source.inner_name)
    with pytest.raises(FormatError, match="lacks the columns ts, sa, da, pr, ipkt, ibyt"):
        list(get_format("nfdump-csv").read(source, ReadOptions()))


def test_appended_outputs_repeat_header_and_trailer(tmp_path: Path) -> None:
    text = (FIXTURES / "flows.csv").read_text()
    appended = tmp_path / "appended.csv"
    appended.write_text(text + text)
    flows, rejects = read_all(appended, block_bytes=300)  # tiny blocks: the trailer spans batches
    assert flows.height == 16
    assert rejects.select("source_row", "reason").rows() == [(6, TUNNEL_REASON), (19, TUNNEL_REASON)]


def test_gzip_reads_like_plain(tmp_path: Path) -> None:
    import gzip

    packed = tmp_path / "flows.csv.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "flows.csv").read_bytes()))
    plain, _ = read_all(FIXTURES / "flows.csv")
    flows = read_flows(packed)
    assert flows.drop("source_file").equals(plain.drop("source_file"))


def test_nfdump_protocol_names_win_over_link_layer_names() -> None:
    assert NFDUMP_PROTOCOLS["stp"] == 118 and NFDUMP_PROTOCOLS["mpls"] == 137
    assert len(set(NFDUMP_PROTOCOLS.values())) == len(NFDUMP_PROTOCOLS)


@pytest.mark.shared_data
@pytest.mark.integration
@pytest.mark.skipif(shutil.which("nfdump") is None, reason="nfdump is not installed (apt-get install nfdump)")
def test_real_capture_as_nfdump_csv(shared_data: Path, tmp_path: Path) -> None:
    """test1-malicious.nfdump printed by nfdump -o csv: every record read, totals as nfdump -I says."""
    text = subprocess.run(
        ["nfdump", "-r", str(shared_data / "stratosphere-argus" / "test1-malicious.nfdump"), "-o", "csv"],
        check=True, capture_output=True, env={**os.environ, "TZ": "UTC"},
    ).stdout
    out = tmp_path / "test1.csv"
    out.write_bytes(text)
    data_rows = len(text.splitlines()) - 1 - 3  # header, Summary trailer
    flows, rejects = read_all(out)
    assert data_rows == 4593
    assert (flows.height, rejects.height) == (4593, 0)
    assert (flows["fwd_packets"].sum(), flows["fwd_bytes"].sum()) == (4652, 241025)
    assert flows["ts_start"].min() == utc("2018-01-12 15:37:30")
