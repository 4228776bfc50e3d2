"""CICFlowMeter CSV reader: each published variant, value by value, from authored fixtures."""

from __future__ import annotations

import gzip
import logging
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from netflowgen.read import FormatError, ReadOptions, cicflowmeter, detect_format, iter_checked
from netflowgen.read.source import open_sources
from netflowgen.read.text import read_delimited
from netflowgen.schema import FLOW_SCHEMA, Quality

UTC = timezone.utc


@pytest.fixture(scope="module")
def cic(fixtures: Path) -> Path:
    return fixtures / "cicflowmeter"


def read(path: Path, **options: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    """All flows and rejects of one file."""
    flows, rejects = [], []
    for _source, fmt, checked in iter_checked(path, ReadOptions(format="cicflowmeter", **options)):  # type: ignore[arg-type]
        assert fmt.name == "cicflowmeter"
        flows.append(checked.flows)
        rejects.append(checked.rejects)
    return pl.concat(flows), pl.concat(rejects)


def flow(row: int, start: datetime, duration_us: int, src: str, dst: str, sport: int | None, dport: int | None,
         proto: int, fwd: tuple[int, int], rev: tuple[int, int], flags: int | None, label: str | None,
         quality: int = 0) -> dict[str, object]:
    """One expected canonical row (ts_end = start + duration unless the quality says otherwise)."""
    end = start if quality & Quality.END_BEFORE_START else start + timedelta(microseconds=duration_us)
    return {
        "ts_start": start, "ts_end": end, "src_ip": src, "dst_ip": dst, "src_port": sport, "dst_port": dport,
        "proto": proto, "fwd_packets": fwd[0], "fwd_bytes": fwd[1], "rev_packets": rev[0], "rev_bytes": rev[1],
        "tcp_flags": flags, "label": label, "label_detail": None, "quality": quality, "source_row": row,
    }


def rows(flows: pl.DataFrame) -> list[dict[str, object]]:
    return flows.drop("source_file").rows(named=True)


def data_lines(path: Path) -> int:
    """Data rows counted independently of the reader: lines after the header."""
    return len(path.read_bytes().splitlines()) - 1


def t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


CICIDS2017 = [
    # Friday afternoon on V3's 12-hour clock: 3:30 is 15:30; bytes = payload + Fwd Header Length
    flow(2, t(2017, 7, 7, 15, 30), 3, "104.16.207.165", "192.168.10.5", 443, 54865, 6, (2, 52), (0, 0), 16, "BENIGN"),
    # V3 wrote FIN under "URG Flag Count": the teardown reads FIN|ACK, not URG|ACK
    flow(3, t(2017, 7, 7, 15, 30), 109, "104.16.28.216", "192.168.10.5", 80, 55054, 6, (1, 26), (1, 26), 17, "BENIGN"),
    flow(4, t(2017, 7, 7, 9, 5), 30000, "192.168.10.9", "192.168.10.3", 61233, 53, 17, (1, 48), (1, 128), None, "BENIGN"),
    flow(5, t(2017, 7, 7, 10, 15), 1_000_000, "fe80::1", "ff02::1:2", 546, 547, 17, (2, 216), (0, 0), None, "BENIGN"),
    # Flow Bytes/s = Infinity is not read; SYN sits under "PSH Flag Count"
    flow(6, t(2017, 7, 7, 11, 0), 0, "192.168.10.14", "192.168.10.3", 49671, 88, 6, (2, 64), (0, 0), 2, "BENIGN"),
    flow(7, t(2017, 7, 7, 11, 30), -1, "192.168.10.8", "192.168.10.3", 51000, 445, 6, (1, 20), (1, 20), 16, "BENIGN",
         quality=Quality.END_BEFORE_START),
    # protocol 0: no ports, sizes not measured -> MISSING_COUNTERS
    flow(8, t(2017, 7, 7, 11, 45), 2000, "192.168.10.1", "224.0.0.22", None, None, 0, (3, 0), (0, 0), None, "BENIGN",
         quality=Quality.MISSING_COUNTERS),
    flow(13, t(2017, 7, 6, 9, 20), 5_185_118, "172.16.0.1", "192.168.10.50", 36180, 80, 6, (3, 104), (1, 32), 2,
         "Web Attack \u2013 Brute Force"),
    flow(14, t(2017, 7, 7, 12, 59), 116, "192.168.10.16", "23.208.163.130", 41790, 443, 6, (2, 64), (0, 0), 16, "BENIGN"),
    flow(15, t(2017, 7, 7, 13, 5), 116, "192.168.10.16", "23.208.163.130", 41791, 443, 6, (2, 64), (0, 0), 0, "BENIGN"),
    flow(16, t(2017, 7, 3, 8, 55, 58), 48, "192.168.10.5", "192.168.10.3", 49188, 53, 17, (2, 78), (2, 206), None, "BENIGN"),
]
CICIDS2017_REJECTS = {
    9: "Fwd Header Length is negative: -1062731436 (CICFlowMeter header-length bug)",
    10: "Timestamp: cannot parse 7/13/2017 3:30",
    11: "expected 85 fields, found 40",
    12: "empty row: every field is blank",
    17: "Total Fwd Packets: cannot parse abc",
}


def test_cicids2017_trafficlabelling_every_value(cic: Path) -> None:
    path = cic / "cicids2017_trafficlabelling.csv"
    flows, rejects = read(path)
    assert flows.schema == pl.Schema(FLOW_SCHEMA)
    assert rows(flows) == CICIDS2017
    assert flows["source_file"].unique().to_list() == [str(path)]
    assert dict(zip(rejects["source_row"], rejects["reason"])) == CICIDS2017_REJECTS
    assert flows.height + rejects.height == data_lines(path) == 16


def test_reject_keeps_the_raw_line(cic: Path) -> None:
    path = cic / "cicids2017_trafficlabelling.csv"
    _, rejects = read(path)
    raw = dict(zip(rejects["source_row"], rejects["raw"]))
    lines = path.read_bytes().decode("ascii", "replace").split("\r\n")
    assert raw[9] == lines[8]
    assert raw[17] == lines[16]


def test_same_result_in_small_blocks_and_compressed(cic: Path, tmp_path: Path) -> None:
    path = cic / "cicids2017_trafficlabelling.csv"
    whole = read(path)
    small = read(path, block_bytes=700)  # a few lines per block; the Windows-1252 line inside one
    packed = tmp_path / "Friday-WorkingHours.pcap_ISCX.csv.gz"
    with open(path, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    gz_flows, gz_rejects = read(packed)
    for flows, rejects in (small, (gz_flows, gz_rejects)):
        assert rows(flows) == rows(whole[0])
        assert sorted(zip(rejects["source_row"], rejects["reason"])) == sorted(CICIDS2017_REJECTS.items())


def test_capture_time_zone(cic: Path) -> None:
    flows, _ = read(cic / "cicids2017_trafficlabelling.csv", timezone="America/Halifax")
    # 15:30 ADT (UTC-3) in July
    assert flows["ts_start"][0] == t(2017, 7, 7, 18, 30)
    v4, _ = read(cic / "cicflowmeter_v4.csv", timezone="America/Halifax")
    # 20:31:01 AST (UTC-4) in February
    assert v4["ts_start"][0] == t(2018, 2, 15, 0, 31, 1)


def test_local_time_that_does_not_exist_is_rejected(cic: Path, tmp_path: Path) -> None:
    text = (cic / "cicflowmeter_v4.csv").read_text().replace("15/02/2018 12:05:00 AM", "11/03/2018 02:30:00 AM")
    path = tmp_path / "gap.csv"
    path.write_text(text)
    flows, rejects = read(path, timezone="America/Halifax")
    assert flows["source_row"].to_list() == [2, 4]
    assert rejects.rows() == [(str(path), 3, "Timestamp 11/03/2018 02:30:00 AM does not exist in time zone "
                               "America/Halifax (clock change)", rejects["raw"][0])]


def test_afternoon_rule_is_announced(cic: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="netflowgen.read.cicflowmeter"):
        read(cic / "cicids2017_trafficlabelling.csv")
        read(cic / "cicflowmeter_v4.csv")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    # rows 2, 3, 9 and 17 carry hours 1 to 7 (9 and 17 are then rejected for other faults)
    assert "4 timestamps on CICFlowMeter-V3's 12-hour clock" in warnings[0]


def test_cseids2018_file_with_addresses(cic: Path) -> None:
    path = cic / "cseids2018_thuesday.csv"
    flows, rejects = read(path)
    assert rows(flows) == [
        # a 24-hour clock (not V3 output): 03:02 stays 03:02; flag columns as named
        flow(2, t(2018, 2, 20, 8, 34, 7), 1097, "18.219.211.138", "172.31.69.25", 54960, 80, 6, (3, 72), (1, 20), 18,
             "Benign"),
        flow(3, t(2018, 2, 20, 20, 15), 2_500_000, "18.219.211.138", "172.31.69.25", 54961, 80, 6, (5, 484), (4, 1592),
             25, "DDoS attacks-LOIC-HTTP"),
        flow(6, t(2018, 2, 20, 3, 2, 1), 600, "172.31.64.92", "8.8.8.8", 60513, 53, 17, (1, 43), (1, 59), None, "Benign"),
    ]
    assert dict(zip(rejects["source_row"], rejects["reason"])) == {
        4: "repeated header line", 5: "dst_port out of range: 70000"}
    assert flows.height + rejects.height == data_lines(path)


def test_cicddos2019(cic: Path) -> None:
    path = cic / "cicddos2019.csv"
    flows, rejects = read(path)
    assert rows(flows) == [
        flow(2, t(2018, 11, 3, 10, 1, 35, 983831), 1, "172.16.0.5", "192.168.50.4", 932, 44723, 17, (2, 498), (0, 0),
             None, "Portmap"),
        # "Fwd Header Length.1" marks V3 output: PSH column -> SYN
        flow(3, t(2018, 12, 1, 13, 29, 10, 500000), 250_000, "172.16.0.5", "192.168.50.1", 60000, 80, 6, (2, 40),
             (1, 20), 18, "Syn"),
    ]
    assert dict(zip(rejects["source_row"], rejects["reason"])) == {4: "Timestamp: cannot parse 2018-12-01 25:00:00"}
    assert flows.height + rejects.height == data_lines(path)


def test_cicflowmeter_v4_output(cic: Path) -> None:
    flows, rejects = read(cic / "cicflowmeter_v4.csv")
    assert rows(flows) == [
        # payload as "12.0"; flags as named: SYN|ECE|CWR
        flow(2, t(2018, 2, 14, 20, 31, 1), 1_500_000, "10.0.0.1", "10.0.0.2", 50000, 443, 6, (3, 108), (2, 1524), 194,
             "NeedManualLabel"),
        flow(3, t(2018, 2, 15, 0, 5), 10, "10.0.0.1", "10.0.0.2", 50001, 443, 6, (1, 20), (1, 20), 4, "NeedManualLabel"),
        flow(4, t(2018, 2, 15, 13, 0), 2000, "2001:db8::1", "2001:db8::2", 50002, 22, 6, (2, 164), (2, 264), 17,
             "NeedManualLabel"),
    ]
    assert rejects.height == 0


@pytest.mark.parametrize("name, absent", [
    ("cicids2017_machinelearningcve.csv", "Source IP, Destination IP, Timestamp"),
    ("cseids2018_processed.csv", "Source IP, Destination IP"),
])
def test_feature_table_without_addresses_is_not_a_flow_table(cic: Path, name: str, absent: str) -> None:
    with pytest.raises(FormatError, match=f"{name}: a CICFlowMeter feature table without {absent} columns"):
        read(cic / name)


def test_header_only_and_empty_files(cic: Path) -> None:
    # One empty batch: a file with no rows is still accounted for (listed in a manifest).
    (batch,) = list(iter_checked(cic / "header_only.csv", ReadOptions(format="cicflowmeter")))
    assert (batch[2].flows.height, batch[2].rejects.height) == (0, 0)
    with pytest.raises(FormatError, match="empty.csv: file is empty"):
        read(cic / "empty.csv")


@pytest.mark.parametrize("name", [
    "cicids2017_trafficlabelling.csv", "cicids2017_machinelearningcve.csv", "cseids2018_processed.csv",
    "cseids2018_thuesday.csv", "cicddos2019.csv", "cicflowmeter_v4.csv", "header_only.csv",
])
def test_detected_from_content(cic: Path, name: str) -> None:
    (source,) = open_sources(cic / name)
    assert detect_format(source).name == "cicflowmeter"


def test_other_csv_is_not_claimed(fixtures: Path) -> None:
    (source,) = open_sources(fixtures / "nprobe" / "nf_unsw_nb15_v3.csv")
    assert detect_format(source).name == "nprobe"


@pytest.mark.parametrize("name", [
    "cicids2017_trafficlabelling.csv", "cseids2018_thuesday.csv", "cicddos2019.csv", "cicflowmeter_v4.csv",
])
def test_fast_and_careful_paths_agree(cic: Path, name: str) -> None:
    (source,) = open_sources(cic / name)
    header = cicflowmeter.read_header(source).split(",")
    columns = [f"c{i}" for i in range(len(header))]
    layout = cicflowmeter.find_layout(header, source.name, columns)
    assert layout is not None
    with source.open() as raw:
        stream = cicflowmeter._Utf8Lines(raw, 1 << 20)
        (batch,) = read_delimited(stream, source.name, delimiter=",", columns=columns, skip_lines=1)
    fast, clean = cicflowmeter._fast_candidates(batch.fields, layout, "America/Halifax")
    careful = cicflowmeter._careful_candidates(batch.fields, layout, "America/Halifax")
    assert clean.sum() >= 2
    # where the fast path succeeds, the careful path finds no fault and the same values ...
    assert careful.filter(clean)["reject"].null_count() == clean.sum()
    assert fast.filter(clean).equals(careful.filter(clean))
    # ... and where it gives up, the careful path names the fault (blank rows are set aside before)
    blank = batch.fields.select(pl.all_horizontal(pl.exclude("source_row").str.strip_chars() == "")).to_series()
    assert careful.filter(~clean & ~blank)["reject"].null_count() == 0
