"""Argus ra CSV (binetflow): authored fixtures, then every real Stratosphere capture."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from netflowgen.read import FormatError, ReadOptions, detect_format, get_format, iter_checked, read_flows
from netflowgen.read.source import open_sources
from netflowgen.schema import FLOW_SCHEMA, Quality


def read(path: Path, **options: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    flows, rejects = [], []
    for _source, fmt, checked in iter_checked(path, ReadOptions(**options)):  # type: ignore[arg-type]
        assert fmt.name == "argus"
        flows.append(checked.flows)
        rejects.append(checked.rejects)
    return pl.concat(flows), pl.concat(rejects).sort("source_row")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_sniffs_comma_and_tab_headers(fixtures: Path) -> None:
    for name in ("comma.binetflow", "tab.binetflow", "totals_only.binetflow"):
        assert detect_format(open_sources(fixtures / "argus" / name)[0]).name == "argus"
    argus = get_format("argus")
    assert not argus.sniff(b"#separator \\x09\n#fields\tts\tuid\n", "conn.log")
    assert not argus.sniff(b"ts,te,td,sa,da,sp,dp,pr\n", "flows.csv")


def test_comma_file_rows(fixtures: Path) -> None:
    flows, rejects = read(fixtures / "argus" / "comma.binetflow")
    assert flows.schema == pl.Schema(FLOW_SCHEMA)
    assert flows["source_row"].to_list() == [2, 3, 7, 8, 9, 10, 16]
    udp, tcp, icmp6, icmp, udp_hex, tcp_rst, tcp_syn = flows.iter_rows(named=True)

    assert (udp["fwd_packets"], udp["fwd_bytes"], udp["rev_packets"], udp["rev_bytes"]) == (1, 63, 1, 79)
    assert udp["ts_start"] == utc(2019, 4, 4, 16, 23, 0, 325010)
    assert udp["ts_end"] == utc(2019, 4, 4, 16, 23, 0, 352957)
    assert udp["label"] is None and udp["tcp_flags"] is None and udp["quality"] == 0

    assert tcp["tcp_flags"] == 1 | 2 | 8 | 16  # FSPA_FSA
    assert (tcp["fwd_packets"], tcp["fwd_bytes"], tcp["rev_packets"], tcp["rev_bytes"]) == (6, 500, 4, 700)
    assert tcp["ts_end"] == utc(2019, 4, 4, 16, 23, 2, 500000)
    assert tcp["label"] == "flow=Background"

    # The 1970 clock is kept and flagged; an IPv6 address is normalised; ICMP has no ports.
    assert icmp6["quality"] == Quality.EPOCH_CLOCK
    assert (icmp6["src_ip"], icmp6["dst_ip"], icmp6["proto"]) == ("::", "ff02::1:ff95:f857", 58)
    assert icmp6["src_port"] is None and icmp6["dst_port"] is None
    assert icmp["proto"] == 1 and icmp["src_port"] is None

    assert (udp_hex["src_port"], udp_hex["dst_port"]) == (0x0303, 0x35)
    assert tcp_rst["tcp_flags"] is None  # "RST" is a state word, not the flags R+S
    assert (tcp_syn["src_port"], tcp_syn["dst_port"], tcp_syn["tcp_flags"]) == (None, None, 2)

    assert rejects["source_row"].to_list() == [4, 5, 6, 11, 12, 13, 14, 15, 17]
    assert rejects["reason"].to_list() == [
        "not an IP flow: protocol llc",
        "not an IP flow: protocol arp",
        "not an IP flow: protocol man",
        "expected 16 fields, found 6",
        "TotPkts: cannot parse 12x",
        "StartTime: cannot parse 2019/13/45 99:00:00.000000",
        "SrcPkts exceeds TotPkts: 5 > 2",
        "expected 16 fields, found 17",
        "expected 16 fields, found 4",
    ]
    assert rejects.filter(pl.col("source_row") == 5)["raw"][0].startswith("1970/01/01 01:00:06.519466,1999.104004,arp,")
    assert rejects["source_file"].unique().to_list() == [str(fixtures / "argus" / "comma.binetflow")]


def test_start_time_is_local_time_in_the_given_zone(fixtures: Path) -> None:
    flows, _ = read(fixtures / "argus" / "comma.binetflow", timezone="Europe/Prague")
    assert flows["ts_start"][1] == utc(2019, 4, 4, 14, 23, 1)  # CEST is UTC+2
    assert flows["ts_start"][2] == utc(1970, 1, 1, 0, 0, 12, 186881)  # CET is UTC+1


def test_read_flows_takes_the_time_zone(fixtures: Path) -> None:
    path = fixtures / "argus" / "comma.binetflow"
    prague = read_flows(path, timezone="Europe/Prague")
    assert prague["ts_start"].to_list() == read(path, timezone="Europe/Prague")[0]["ts_start"].to_list()
    assert prague["ts_start"][1] == utc(2019, 4, 4, 14, 23, 1)
    assert read_flows(path)["ts_start"][1] == utc(2019, 4, 4, 16, 23, 1)  # UTC unless told


def test_tab_file_with_source_bytes_but_no_source_packets(fixtures: Path) -> None:
    flows, rejects = read(fixtures / "argus" / "tab.binetflow")
    counters = flows.select("source_row", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "quality").rows()
    assert counters == [
        (2, 1, 76, 0, 0, 0),  # every byte from the source: the split is exact
        (3, 2, 240, 0, 0, Quality.MISSING_COUNTERS),  # both sides: whole flow in fwd, rev unknown
        (4, 0, 0, 3, 180, 0),  # every byte from the destination
        (6, 1, 344, 0, 0, Quality.EPOCH_CLOCK),
    ]
    assert flows["tcp_flags"].to_list() == [None, None, 4 | 16, None]  # "_RA": RST, ACK
    assert flows["label"].to_list() == [
        "flow=Background-UDP-Attempt", "flow=Background-UDP-Established", None, "flow=Background-UDP-Attempt",
    ]
    assert rejects.select("source_row", "reason").rows() == [
        (5, "SrcBytes exceeds TotBytes: 300 > 240"),
        (7, "not an IP flow: protocol arp"),
    ]


def test_totals_only_file(fixtures: Path) -> None:
    flows, rejects = read(fixtures / "argus" / "totals_only.binetflow")
    assert flows.select("fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "quality").rows() == [
        (448, 49634, 0, 0, Quality.MISSING_COUNTERS),
        (2, 180, 0, 0, Quality.MISSING_COUNTERS),
    ]
    assert flows["tcp_flags"].to_list() == [8 | 16, None]  # PA_PA
    assert flows["src_port"].to_list() == [60686, 0x35]
    assert rejects["reason"].to_list() == ["not an IP flow: protocol arp"]


def test_a_file_that_is_not_argus_raises_format_error(tmp_path: Path) -> None:
    path = tmp_path / "flows.csv"
    path.write_text("ts,te,sa,da\n2024-01-01,2024-01-01,10.0.0.1,10.0.0.2\n")
    with pytest.raises(FormatError, match=r"flows\.csv: not an Argus CSV file"):
        read_flows(path, format="argus")


# --- the real captures --------------------------------------------------------------------------

# file -> (flows, rejects by reason); every reject is a non-IP record (ARP, LLC, management).
ARGUS_FILES = {
    "2013-10-21_capture-1.binetflow": (2380, {"not an IP flow: protocol arp": 18}),
    "2015-03-24_capture1-only-dns.binetflow": (2914, {}),
    "2016-09-09_win1.binetflow": (4786, {"not an IP flow: protocol arp": 13, "not an IP flow: protocol llc": 2}),
    "CTU-Malware-Capture-Botnet-207-1": (22748, {"not an IP flow: protocol arp": 852, "not an IP flow: protocol llc": 2}),
    "CTU-Normal-7-2013-13-07.binetflow": (9797, {}),
    "test-sality.binetflow": (993, {"not an IP flow: protocol arp": 11, "not an IP flow: protocol llc": 1}),
    "test11-portscan.binetflow": (20, {}),
    "test2-malicious.binetflow": (6751, {}),
    "test4-malicious.binetflow": (392, {"not an IP flow: protocol arp": 2}),
    "test5-mixed.binetflow": (296, {"not an IP flow: protocol arp": 2, "not an IP flow: protocol llc": 1,
                                     "not an IP flow: protocol man": 1}),
    "test5.binetflow.14f393c": (6721, {"not an IP flow: protocol arp": 2, "not an IP flow: protocol llc": 1,
                                       "not an IP flow: protocol man": 1}),
}


def independent_rows(path: Path) -> dict[int, dict[str, str]]:
    """Data rows by line number, read with the csv module (delimiter from the header line)."""
    with open(path, newline="", encoding="utf-8") as f:
        delimiter = "\t" if "\t" in f.readline() else ","
        f.seek(0)
        reader = csv.DictReader(f, delimiter=delimiter)
        return {reader.line_num: row for row in reader}


@pytest.mark.shared_data
def test_every_argus_capture_is_listed(shared_data: Path) -> None:
    folder = shared_data / "stratosphere-argus"
    found = {p.name for p in folder.iterdir() if "binetflow" in p.name} | {"CTU-Malware-Capture-Botnet-207-1"}
    assert found == set(ARGUS_FILES)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(ARGUS_FILES))
def test_real_capture_rows_and_totals(shared_data: Path, name: str) -> None:
    path = shared_data / "stratosphere-argus" / name
    expected_flows, expected_rejects = ARGUS_FILES[name]
    flows, rejects = read(path, timezone="Europe/Prague")
    rows = independent_rows(path)

    assert flows.height + rejects.height == len(rows)
    assert flows.height == expected_flows
    assert dict(Counter(rejects["reason"])) == expected_rejects
    assert set(flows["source_row"]) | set(rejects["source_row"]) == set(rows)

    kept = [rows[n] for n in flows["source_row"]]
    assert flows.select(pl.col("fwd_packets").sum() + pl.col("rev_packets").sum()).item() == sum(
        int(r["TotPkts"]) for r in kept
    )
    assert flows.select(pl.col("fwd_bytes").sum() + pl.col("rev_bytes").sum()).item() == sum(
        int(r["TotBytes"]) for r in kept
    )
    if "SrcPkts" in next(iter(rows.values())):
        assert flows["fwd_packets"].sum() == sum(int(r["SrcPkts"]) for r in kept)
        assert flows["fwd_bytes"].sum() == sum(int(r["SrcBytes"]) for r in kept)
    labels = Counter(r["Label"] or None for r in kept) if "Label" in next(iter(rows.values())) else {None: len(kept)}
    assert dict(Counter(flows["label"])) == dict(labels)


@pytest.mark.shared_data
def test_real_capture_1970_rows_and_prague_time(shared_data: Path) -> None:
    flows, _ = read(shared_data / "stratosphere-argus" / "test5.binetflow.14f393c", timezone="Europe/Prague")
    epoch_rows = flows.filter((pl.col("quality") & Quality.EPOCH_CLOCK) > 0)
    assert epoch_rows.height == 6721  # every IP row of this capture has the unset 1970 clock
    # "1970/01/01 01:00:08.140073" in Prague is 8 s after the epoch.
    assert flows["ts_start"].min() == utc(1970, 1, 1, 0, 0, 8, 140073)
