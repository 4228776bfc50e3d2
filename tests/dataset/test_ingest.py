"""Ingest: the dataset layout, counts, rejects, atomicity and determinism."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from netflowgen import IngestConfig, ingest
from netflowgen.artifacts import MANIFEST_NAME
from netflowgen.dataset.layout import REJECTS_NAME
from netflowgen.dataset.manifest import scan_flows
from netflowgen.read import ReadOptions, RejectedRow

HEADER = """#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\tconn
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\tlabel\tdetailedlabel
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\tstring\tstring
"""


def zeek_row(ts: float, src: str = "10.0.0.1", dst: str = "10.0.0.2", pkts: int = 3, label: str = "Benign") -> str:
    return "\t".join(
        [f"{ts:.6f}", "C1", src, "40000", dst, "80", "tcp", "-", "1.5", "10", "20", "SF", "T", "F", "0",
         "ShAdDaFf", str(pkts), str(pkts * 60), "2", "120", "(empty)", label, "-"]
    )


@pytest.fixture
def two_day_log(tmp_path: Path) -> Path:
    """Five good rows over two UTC days and two bad ones (lines 10 and 12)."""
    rows = [
        zeek_row(1700000000.0),                        # 2023-11-14
        zeek_row(1700000100.25, label="Malicious"),
        "1700000200.0\tC1\t10.0.0.1",                  # wrong field count
        zeek_row(1700086400.5),                        # 2023-11-15
        zeek_row(1700086401.0, src="00:11:22:33:44:55"),  # not an IP address
        zeek_row(1700086402.0, dst="fd00::1"),
        zeek_row(1700086403.0, pkts=7),
    ]
    path = tmp_path / "conn.log"
    path.write_text(HEADER + "\n".join(rows) + "\n")
    return path


def read_dataset(out: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(out.glob("date=*/*.parquet")))


def test_dataset_layout_counts_and_rejects(two_day_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    summary = ingest(IngestConfig((two_day_log,), out))
    assert (summary.rows_read, summary.rows_written, summary.rows_rejected) == (7, 5, 2)
    assert summary.partitions == ["date=2023-11-14", "date=2023-11-15"]
    flows = read_dataset(out)
    assert flows.height == 5
    assert flows["source_row"].to_list() == [8, 9, 11, 13, 14]
    assert flows.filter(pl.col("dst_ip") == "fd00::1").height == 1
    assert summary.packets == 3 + 2 + 3 + 2 + 3 + 2 + 3 + 2 + 7 + 2
    assert summary.label_counts == {"Benign": 4, "Malicious": 1}

    rejects = pl.read_csv(out / REJECTS_NAME)
    assert rejects["source_row"].to_list() == [10, 12]
    assert rejects["reason"][0] == "expected 23 fields, found 3"
    assert rejects["reason"][1].startswith("src_ip is not an IP address: 00:11:22:33:44:55")
    assert rejects["raw"][0] == "1700000200.0\tC1\t10.0.0.1"
    assert all(rejects["source_file"] == str(two_day_log))
    assert summary.rejects_by_reason == {"wrong number of fields": 1, "src_ip is not an IP address": 1}

    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["kind"] == "netflowgen.flows"
    assert manifest["summary"]["rows_written"] == 5
    assert list(manifest["columns"])[:2] == ["ts_start", "ts_end"]
    assert not list(tmp_path.glob(".ds.*")), "no temporary folder may remain"


def test_rerun_gives_identical_bytes(two_day_log: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ingest(IngestConfig((two_day_log,), a))
    ingest(IngestConfig((two_day_log,), b))
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.name == MANIFEST_NAME:  # names its own output folder
            continue
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_existing_output_needs_overwrite(two_day_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    ingest(IngestConfig((two_day_log,), out))
    with pytest.raises(FileExistsError, match="--overwrite"):
        ingest(IngestConfig((two_day_log,), out))
    marker = out / "date=2023-11-14" / "old-marker"
    marker.write_text("x")
    ingest(IngestConfig((two_day_log,), out, overwrite=True))
    assert not marker.exists()
    assert read_dataset(out).height == 5


def test_strict_fails_on_first_reject_and_leaves_nothing(two_day_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with pytest.raises(RejectedRow, match=r"conn\.log, row 10: expected 23 fields, found 3"):
        ingest(IngestConfig((two_day_log,), out, strict=True))
    assert not out.exists()
    assert not list(tmp_path.glob(".ds.*"))


def test_interrupt_leaves_no_partial_dataset_and_keeps_the_old_one(two_day_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    ingest(IngestConfig((two_day_log,), out))
    before = sorted(p.name for p in out.rglob("*"))

    def interrupt(rows_read: int, rows_written: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest(IngestConfig((two_day_log,), out, overwrite=True), progress=interrupt)
    assert sorted(p.name for p in out.rglob("*")) == before
    assert not list(tmp_path.glob(".ds.*"))


def test_compressed_input_reads_like_plain(two_day_log: Path, tmp_path: Path) -> None:
    gz = tmp_path / "conn.log.gz"
    gz.write_bytes(gzip.compress(two_day_log.read_bytes()))
    plain = ingest(IngestConfig((two_day_log,), tmp_path / "plain"))
    packed = ingest(IngestConfig((gz,), tmp_path / "packed"))
    assert (packed.rows_written, packed.rows_rejected) == (plain.rows_written, plain.rows_rejected)
    assert read_dataset(tmp_path / "packed").drop("source_file").equals(read_dataset(tmp_path / "plain").drop("source_file"))


def test_directory_skips_non_flow_files_and_names_them(two_day_log: Path, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# notes about the capture\n")
    summary = ingest(IngestConfig((tmp_path,), tmp_path.parent / f"{tmp_path.name}-out"))
    assert summary.rows_written == 5
    assert list(summary.skipped_files) == [str(tmp_path / "README.md")]


def test_unknown_file_named_directly_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\nworld\n")
    with pytest.raises(ValueError, match="notes.txt: cannot recognise the flow format"):
        ingest(IngestConfig((bad,), tmp_path / "ds"))
    assert not (tmp_path / "ds").exists()


def test_empty_file_named_directly_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.log: file is empty"):
        ingest(IngestConfig((empty,), tmp_path / "ds"))


def test_header_only_input_gives_an_empty_dataset(tmp_path: Path) -> None:
    log = tmp_path / "conn.log"
    log.write_text(HEADER + "#close\t2023-11-14-00-00-00\n")
    summary = ingest(IngestConfig((log,), tmp_path / "ds", ReadOptions()))
    assert (summary.rows_read, summary.rows_written, summary.rows_rejected) == (0, 0, 0)
    assert summary.partitions == []
    assert (tmp_path / "ds" / REJECTS_NAME).read_text().strip() == "source_file,source_row,reason,raw"


def test_sigterm_mid_run_leaves_nothing(tmp_path: Path) -> None:
    """A real `kill` of a running `netflowgen ingest`: no output folder, no temporary folder."""
    big = tmp_path / "big.log"
    with open(big, "w") as f:
        f.write(HEADER)
        for i in range(200_000):
            f.write(zeek_row(1700000000.0 + i) + "\n")
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "netflowgen.cli", "ingest", str(big), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while time.time() < deadline and not list(tmp_path.glob(".ds.tmp-*/date=*")):
        time.sleep(0.02)
    assert list(tmp_path.glob(".ds.tmp-*")), "ingest did not start writing in time"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr.decode()
    assert b"interrupted" in stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".ds.*"))


def test_mapping_applies_to_the_csv_files_no_reader_knows(two_day_log: Path, tmp_path: Path) -> None:
    """A mixed directory: the Zeek log is detected, the Westermo-style CSV uses the mapping,
    the README is skipped."""
    import shutil

    from tests.conftest import FIXTURES

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(two_day_log, mixed / "conn.log")
    shutil.copy(FIXTURES / "csv" / "westermo_sample.csv", mixed / "router.csv")
    (mixed / "README.md").write_text("# capture notes\n")
    summary = ingest(IngestConfig((mixed,), tmp_path / "ds", ReadOptions(mapping=Path("westermo"))))
    formats = {Path(i.source).name: i.format for i in summary.inputs}
    assert formats == {"conn.log": "zeek", "router.csv": "csv"}
    assert list(summary.skipped_files) == [str(mixed / "README.md")]
    westermo_rows = sum(1 for _ in open(FIXTURES / "csv" / "westermo_sample.csv")) - 1
    assert summary.rows_read == 7 + westermo_rows


ARGUS_LOCAL_TIMES = """StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,SrcPkts,Label
2019/01/15 10:00:00.250000,1.000000,tcp,10.0.0.1,40000,   ->,10.0.0.2,80,FSPA_FSA,0,0,4,400,200,2,flow=Background
2019/07/15 10:00:00.500000,2.000000,udp,10.0.0.1,40001,  <->,10.0.0.2,53,CON,0,0,2,150,60,1,flow=Background
"""


def test_raw_input_read_on_the_fly_honours_the_time_zone_like_ingest(tmp_path: Path) -> None:
    """Argus times are local: read directly by scan_flows (what series, score and the suite do
    with a raw file) they get the zone the options give, exactly as an ingested dataset does."""
    path = tmp_path / "local.binetflow"
    path.write_text(ARGUS_LOCAL_TIMES)
    prague = ReadOptions(timezone="Europe/Prague")
    raw = scan_flows(path, prague).collect()["ts_start"].to_list()
    ingest(IngestConfig((path,), tmp_path / "ds", prague))
    assert raw == scan_flows(tmp_path / "ds").collect()["ts_start"].to_list()
    assert raw == [datetime(2019, 1, 15, 9, 0, 0, 250000, tzinfo=UTC),  # CET is UTC+1
                   datetime(2019, 7, 15, 8, 0, 0, 500000, tzinfo=UTC)]  # CEST is UTC+2
    as_utc = scan_flows(path, ReadOptions()).collect()["ts_start"].to_list()
    assert [u - r for u, r in zip(as_utc, raw, strict=True)] == [timedelta(hours=1), timedelta(hours=2)]


@pytest.mark.shared_data
def test_raw_stratosphere_capture_series_starts_at_prague_time_in_utc(shared_data: Path) -> None:
    """The capture's first flow starts at 2013/12/17 22:09:19 Prague time (CET, UTC+1): its first
    one-minute step is 21:09 UTC, read raw as after an ingest with the same zone."""
    from netflowgen.series import SeriesSpec, build_series

    path = shared_data / "stratosphere-argus" / "CTU-Normal-7-2013-13-07.binetflow"
    series = build_series(scan_flows(path, ReadOptions(timezone="Europe/Prague")), SeriesSpec(step=timedelta(seconds=60)))
    assert series["step"].min() == datetime(2013, 12, 17, 21, 9, tzinfo=UTC)
