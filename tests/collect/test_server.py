"""The collector in-process on 127.0.0.1: atomic file rotation into a readable flow dataset, restart,
and the Prometheus endpoint's counters."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from netflowgen.artifacts import read_manifest
from netflowgen.cli import app
from netflowgen.collect import server as server_module
from netflowgen.collect.server import Collector, CollectorConfig, parse_address
from netflowgen.dataset.manifest import scan_flows
from netflowgen.series import SeriesSpec, build_series
from tests.collect import packets as P
from tests.collect.packets import T0


def v9_packets(n_packets: int, per_packet: int) -> list[bytes]:
    """v9 datagrams of `per_packet` flows each (template in the first), flows numbered in order."""
    out = []
    for k in range(n_packets):
        records = [P.record(P.V4_MS, P.v4_values(f"10.0.{k}.{i + 1}", "192.0.2.9", 1000 + i, 443, 6, 2, 100 + i,
                                                 T0 * 1000 + k, T0 * 1000 + k + 1)) for i in range(per_packet)]
        sets = ([P.template_set(9, [(256, P.V4_MS)])] if k == 0 else []) + [P.data_set(256, records)]
        out.append(P.v9(sets, uptime_ms=1000, seq=k))
    return out


def send(address: tuple[str, int], datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, address)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def collectors() -> Iterator[list[Collector]]:
    """Collectors a test starts; stopped at the end whatever happens."""
    started: list[Collector] = []
    yield started
    for c in started:
        try:
            c.stop()
        except (RuntimeError, OSError):  # a test's broken writer: stop says what was not written
            pass


def start(collectors: list[Collector], out: Path, **options: object) -> Collector:
    config = CollectorConfig(out=out, listen=("127.0.0.1", 0), take_every=0.02, **options)  # type: ignore[arg-type]
    c = Collector(config)
    c.start()
    collectors.append(c)
    return c


def test_rotation_is_atomic_and_the_dataset_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collectors: list[Collector]) -> None:
    out = tmp_path / "flows"
    writes: list[tuple[str, bool, int]] = []
    real_write = pq.write_table

    def spy(table, where, **kwargs):  # type: ignore[no-untyped-def]
        path = Path(where)
        final = path.parent / path.name[1:].removesuffix(".tmp")
        # While a file is written, the dataset shows only complete files.
        visible = scan_flows(out).select(pl.len()).collect().item()
        writes.append((path.name, final.exists(), visible))
        real_write(table, where, **kwargs)

    monkeypatch.setattr(server_module.pq, "write_table", spy)
    c = start(collectors, out, rotate=timedelta(hours=1), max_buffer_flows=5)
    assert read_manifest(out, "netflowgen.flows")["collector"]["running"] is True
    assert scan_flows(out).collect().height == 0  # readable from the start
    for k, datagram in enumerate(v9_packets(3, 4)):
        send(c.address, [datagram])
        wait_for(lambda: c.summary()["flows"] == 4 * (k + 1), f"packet {k}")  # noqa: B023
    summary = c.stop()
    # 8 flows waiting (more than 5) were written early; the last 4 when stopping.
    assert (summary["rows_written"], summary["flows"], summary["files"]) == (12, 12, 2)
    assert writes == [(".part-00000.parquet.tmp", False, 0), (".part-00001.parquet.tmp", False, 8)]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["date=2024-03-01/part-00000.parquet", "date=2024-03-01/part-00001.parquet", "netflowgen.json", "rejects.csv"]
    assert [pq.read_metadata(out / f).num_rows for f in files[:2]] == [8, 4]
    flows = scan_flows(out).collect().sort("source_row")
    assert flows["source_row"].to_list() == list(range(1, 13))
    assert flows["source_file"].unique().to_list() == ["udp://127.0.0.1"]
    assert flows["fwd_bytes"].sum() == 3 * sum(100 + i for i in range(4))
    manifest = read_manifest(out, "netflowgen.flows")
    assert (manifest["summary"]["rows_written"], manifest["summary"]["files"], manifest["collector"]["running"]) == (12, 2, False)
    # What `netflowgen series` does with it.
    series = build_series(scan_flows(out), SeriesSpec(step=timedelta(minutes=1)))
    assert series["flows_out"].sum() == 12


def test_decoding_goes_on_while_a_file_is_written_and_waits_at_twice_the_buffer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collectors: list[Collector]) -> None:
    # Files are written on their own thread: the flows that arrive meanwhile are decoded and
    # passed on (live detection is not held up by a rotation), and decoding waits for the
    # writer, without dropping anything, only once twice max_buffer_flows are held.
    out = tmp_path / "flows"
    real_write = pq.write_table
    release = threading.Event()
    writing = threading.Event()

    def slow(table, where, **kwargs):  # type: ignore[no-untyped-def]
        writing.set()
        assert release.wait(20), "the test did not release the writer"
        real_write(table, where, **kwargs)

    monkeypatch.setattr(server_module.pq, "write_table", slow)
    passed_on: list[int] = []
    c = Collector(CollectorConfig(out=out, listen=("127.0.0.1", 0), take_every=0.02, rotate=timedelta(hours=1), max_buffer_flows=4),
                  on_flows=lambda flows: passed_on.append(flows.height))
    c.start()
    collectors.append(c)
    packets = v9_packets(3, 4)
    send(c.address, packets[:1])
    assert writing.wait(10), "4 flows held (max_buffer_flows) did not start a file"
    send(c.address, packets[1:2])
    wait_for(lambda: sum(passed_on) == 8, "the flows sent while the file is written")
    assert (c.summary()["buffered_flows"], c.summary()["rows_written"]) == (8, 0)
    send(c.address, packets[2:])  # 8 held, twice the buffer: decoding waits for the writer
    time.sleep(0.5)
    assert sum(passed_on) == 8 and c.summary()["flows"] == 8
    release.set()
    wait_for(lambda: sum(passed_on) == 12, "decoding after the write")
    summary = c.stop()
    assert (summary["rows_written"], summary["buffered_flows"], summary["dropped_unwritten"]) == (12, 0, 0)
    assert [pq.read_metadata(f).num_rows for f in sorted(out.rglob("part-*.parquet"))][0] == 4
    assert scan_flows(out).collect()["source_row"].sort().to_list() == list(range(1, 13))


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"),
                                     # PyArrow's own, with no errno (a CI run met it on a real full disk)
                                     OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")])
def test_failed_write_leaves_no_partial_file_and_keeps_the_flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 collectors: list[Collector], failure: OSError) -> None:
    # Disk full used to stop the collector with a traceback, losing what it held (issue 16, defect
    # 5): now it keeps receiving, counts the failure and writes the same flows once it can.
    out = tmp_path / "flows"
    real_write = pq.write_table

    def broken(table, where, **kwargs):  # type: ignore[no-untyped-def]
        Path(where).write_bytes(b"PAR1 half a file")
        raise failure

    monkeypatch.setattr(server_module.pq, "write_table", broken)
    c = start(collectors, out, max_buffer_flows=1)
    send(c.address, v9_packets(1, 3))
    wait_for(lambda: c.summary()["write_errors"].get("ENOSPC", 0) >= 1, "the write failure")
    assert c.healthy()
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [".collect.lock", "netflowgen.json", "rejects.csv"]
    assert c.summary()["buffered_flows"] == 3
    monkeypatch.setattr(server_module.pq, "write_table", real_write)  # space again
    wait_for(lambda: c.summary()["rows_written"] == 3, "the retried write", timeout=15)
    summary = c.stop()
    assert (summary["rows_written"], summary["buffered_flows"], summary["dropped_unwritten"]) == (3, 0, 0)
    assert scan_flows(out).collect()["source_row"].sort().to_list() == [1, 2, 3]


def test_stop_with_the_disk_still_full_says_what_was_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 collectors: list[Collector]) -> None:
    def broken(table, where, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(server_module.pq, "write_table", broken)
    c = start(collectors, tmp_path / "flows")
    send(c.address, v9_packets(2, 3))
    wait_for(lambda: c.summary()["flows"] == 6, "the flows")
    with pytest.raises(OSError, match="6 flows and 0 rejects could not be written .*No space left on device"):
        c.stop()


def test_restart_continues_the_dataset(tmp_path: Path, collectors: list[Collector]) -> None:
    out = tmp_path / "flows"
    first = start(collectors, out)
    send(first.address, v9_packets(1, 2))
    wait_for(lambda: first.summary()["flows"] == 2, "the first flows")
    with pytest.raises(ValueError, match="another collector"):
        Collector(CollectorConfig(out=out, listen=("127.0.0.1", 0))).start()
    first.stop()
    stale = out / "date=2024-03-01" / ".part-00007.parquet.tmp"
    stale.write_bytes(b"left by a killed collector")
    second = start(collectors, out)
    assert not stale.exists()
    send(second.address, v9_packets(1, 3))
    wait_for(lambda: second.summary()["flows"] == 3, "the second flows")
    summary = second.stop()
    assert sorted(p.name for p in (out / "date=2024-03-01").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert summary["rows_written"] == 5 == scan_flows(out).collect().height
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not written by `netflowgen collect`"):
        Collector(CollectorConfig(out=other, listen=("127.0.0.1", 0))).start()



def test_a_collector_killed_before_its_first_manifest_can_be_restarted(tmp_path: Path, collectors: list[Collector]) -> None:
    """Found by benchmarks/chaos.py: killed between opening its folder and writing the first
    manifest, a collector left only its lock and an empty rejects file, and a restart refused
    the folder as not its own. Those start files alone are a collector's folder; anything else
    beside them is still refused."""
    out = tmp_path / "flows"
    out.mkdir()
    (out / ".collect.lock").touch()
    (out / "rejects.csv").write_text("source_file,source_row,reason,raw\n")
    c = start(collectors, out)
    send(c.address, v9_packets(1, 2))
    wait_for(lambda: c.summary()["flows"] == 2, "the flows")
    assert c.stop()["rows_written"] == 2 == scan_flows(out).collect().height
    other = tmp_path / "other"
    other.mkdir()
    (other / "rejects.csv").write_text("source_file,source_row,reason,raw\n")
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not written by `netflowgen collect`"):
        Collector(CollectorConfig(out=other, listen=("127.0.0.1", 0))).start()

def _scrape(url: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        for line in response.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
    return samples


def test_prometheus_endpoint_returns_the_counters(tmp_path: Path, collectors: list[Collector]) -> None:
    c = start(collectors, tmp_path / "flows", metrics=("127.0.0.1", 0))
    record = P.v5_record("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, 0, 0)
    send(c.address, [P.v5([record] * 2, uptime_ms=1, seq=0), P.v5([record], uptime_ms=1, seq=5), b"\x00\x07garbage"])
    wait_for(lambda: c.summary()["packets"] == 3 and c.summary()["flows"] == 3, "three datagrams")
    host, port = c.metrics_address  # type: ignore[misc]
    m = _scrape(f"http://{host}:{port}/metrics")
    e = '{exporter="127.0.0.1"}'
    assert m[f"netflowgen_collect_packets_total{e}"] == 3
    assert m[f"netflowgen_collect_records_total{e}"] == 3
    assert m[f"netflowgen_collect_flows_total{e}"] == 3
    assert m[f"netflowgen_collect_flow_bytes_total{e}"] == 180
    assert m['netflowgen_collect_decode_errors_total{exporter="127.0.0.1",level="packet",reason="unknown version"}'] == 1
    assert m[f"netflowgen_collect_sequence_gaps_total{e}"] == 1
    assert m['netflowgen_collect_lost_total{exporter="127.0.0.1",unit="records"}'] == 3  # 2 expected after seq 0, 5 came
    assert m['netflowgen_collect_lost_total{exporter="127.0.0.1",unit="packets"}'] == 0
    assert m["netflowgen_collect_kernel_drops_total"] == 0
    assert m["netflowgen_collect_socket_buffer_bytes"] == c.rcvbuf_granted > 0
    with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=5) as response:
        health = json.loads(response.read())
    assert (health["status"], health["threads"]) == ("ok", {"netflowgen-receive": True, "netflowgen-decode": True, "netflowgen-write": True})
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://{host}:{port}/nothing", timeout=5)
    assert missing.value.code == 404


def test_sampled_export_is_scaled_in_the_dataset_and_shown(tmp_path: Path, collectors: list[Collector]) -> None:
    c = start(collectors, tmp_path / "flows", metrics=("127.0.0.1", 0))
    record = P.v5_record("10.0.0.1", "10.0.0.2", 1, 2, 17, 2, 120, 0, 0)
    sampled = bytearray(P.v5([record], uptime_ms=1, seq=0))
    sampled[22:24] = ((1 << 14) | 50).to_bytes(2, "big")  # the v5 header's sampling: 1 in 50
    send(c.address, [bytes(sampled), P.v5([record], uptime_ms=1, seq=1, engine=(1, 0))])
    wait_for(lambda: c.summary()["flows"] == 2, "two flows")
    host, port = c.metrics_address  # type: ignore[misc]
    m = _scrape(f"http://{host}:{port}/metrics")
    assert m['netflowgen_collect_sampled_records_total{exporter="127.0.0.1",sampling="50"}'] == 1
    summary = c.stop()
    assert summary["exporters"]["127.0.0.1"]["sampled"] == {"50": 1}
    flows = scan_flows(tmp_path / "flows").sort("fwd_packets").collect()
    assert flows.select("fwd_packets", "fwd_bytes").rows() == [(2, 120), (100, 6000)]


@pytest.mark.parametrize(("compression", "codec"), [(None, "ZSTD"), ("lz4", "LZ4"), ("none", "UNCOMPRESSED")])
def test_files_are_written_with_the_compression_asked(tmp_path: Path, collectors: list[Collector], compression: str | None,
                                                      codec: str) -> None:
    c = start(collectors, tmp_path / "flows", **({"compression": compression} if compression else {}))
    send(c.address, v9_packets(3, 4))
    wait_for(lambda: c.summary()["flows"] == 12, "twelve flows")
    c.stop()
    (part,) = (tmp_path / "flows").rglob("*.parquet")
    meta = pq.ParquetFile(part).metadata
    assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {codec}
    assert scan_flows(tmp_path / "flows").collect().height == 12


def test_an_unknown_compression_is_refused() -> None:
    with pytest.raises(ValueError, match="compression must be one of zstd, lz4, snappy, none, not 'gzip'"):
        CollectorConfig(out=Path("x"), compression="gzip")


def test_parse_address_errors() -> None:
    assert parse_address("[::1]:0") == ("::1", 0)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address("localhost:http")
    with pytest.raises(ValueError, match="out of range"):
        parse_address("127.0.0.1:70000")


def test_cli_refuses_bad_addresses_before_writing_anything(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "flows"
    bad = runner.invoke(app, ["collect", "--out", str(out), "--listen", "127.0.0.1:port"])
    assert bad.exit_code == 1
    assert "not an address: '127.0.0.1:port'" in bad.output
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        busy = runner.invoke(app, ["collect", "--out", str(out), "--listen", f"127.0.0.1:{port}"])
    assert busy.exit_code == 1
    assert f"cannot listen on udp://127.0.0.1:{port}: Address already in use" in busy.output
    assert not out.exists()


def test_while_writes_fail_memory_is_bounded_and_what_is_dropped_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                            collectors: list[Collector]) -> None:
    def broken(table, where, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(server_module.pq, "write_table", broken)
    c = start(collectors, tmp_path / "flows", max_buffer_flows=2, max_unwritten_flows=5)
    for datagram in v9_packets(3, 3):
        send(c.address, [datagram])
    wait_for(lambda: c.summary()["dropped_unwritten"] == 4 and c.summary()["write_errors"], "the flows and a failed write")
    assert c.summary()["buffered_flows"] == 5
    assert c.healthy()
    assert "netflowgen_collect_dropped_unwritten_total 4" in c.metrics_text()
    assert 'netflowgen_collect_write_errors_total{errno="ENOSPC"}' in c.metrics_text()


def test_a_rejects_write_cut_by_a_full_disk_leaves_no_partial_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   collectors: list[Collector]) -> None:
    out = tmp_path / "flows"
    real_write = server_module.os.write
    calls = []

    def half_then_full(fd: int, data: memoryview) -> int:  # the disk fills up in the middle of a write
        calls.append(len(data))
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    c = start(collectors, out, max_buffer_flows=1)
    monkeypatch.setattr(server_module.os, "write", half_then_full)
    fields = [(8, 4), (2, 4), (1, 4)]  # no destination address: every record is a reject
    send(c.address, [P.v9([P.template_set(9, [(256, fields)]), P.data_set(256, [P.record(fields, {8: "10.0.0.1"})] * 3)],
                          uptime_ms=1000)])
    wait_for(lambda: c.summary()["write_errors"].get("ENOSPC", 0) >= 1, "the failed write")
    assert calls and (out / "rejects.csv").read_text().count("\n") == 1  # the header only, as before
    monkeypatch.setattr(server_module.os, "write", real_write)
    wait_for(lambda: c.summary()["rows_rejected"] == 3, "the retried write", timeout=15)
    c.stop()
    lines = (out / "rejects.csv").read_text().splitlines()
    assert len(lines) == 4 and all(line.count(",") == lines[0].count(",") for line in lines[1:])


def flows_ending_at(ms: list[int], seq: int = 0) -> list[bytes]:
    """v9 datagrams (200 flows each, template in each) of one-packet flows to 192.0.2.9 ending
    ``ms`` milliseconds after T0, each lasting 10 ms."""
    records = [P.record(P.V4_MS, P.v4_values(f"10.0.0.{i % 200 + 1}", "192.0.2.9", 1000 + i % 60000, 443, 6, 1, 60,
                                             T0 * 1000 + m - 10, T0 * 1000 + m)) for i, m in enumerate(ms)]
    return [P.v9([P.template_set(9, [(256, P.V4_MS)]), P.data_set(256, records[k:k + 200])], uptime_ms=1000, seq=seq + n)
            for n, k in enumerate(range(0, len(records), 200))]


def test_the_manifest_states_what_each_collector_run_observed(tmp_path: Path, collectors: list[Collector]) -> None:
    """A run observes the span of the flow ends it wrote, its quiet spells included: here one flow,
    ten quiet minutes, then 2,000 in 20 s. The records rule, made for files, takes that lone first
    flow for a straggler and leaves the quiet minutes uncovered; the collector's stated coverage
    keeps them, as zero rows of the series. The hour between two runs stays uncovered."""
    from netflowgen.dataset.coverage import coverage_of_flows, dataset_coverage

    out = tmp_path / "flows"
    first = start(collectors, out)
    send(first.address, flows_ending_at([1_000] + [600_000 + 10 * i for i in range(2000)]))
    wait_for(lambda: first.summary()["flows"] == 2001, "the first run's flows")
    first.stop()
    second = start(collectors, out)
    send(second.address, flows_ending_at([3_600_000 + 1000 * i for i in range(5)]))
    wait_for(lambda: second.summary()["flows"] == 5, "the second run's flows")
    second.stop()
    stated = dataset_coverage(out)
    assert stated.rule.startswith("collector")
    ms = 1_000
    assert stated.intervals == ((T0 * 10**6 + 1_000 * ms, T0 * 10**6 + 619_990 * ms),
                                (T0 * 10**6 + 3_600_000 * ms, T0 * 10**6 + 3_604_000 * ms)), stated
    assert coverage_of_flows(scan_flows(out)).intervals[0][0] > T0 * 10**6 + 500_000 * ms, "the records rule drops the quiet start"
    series = build_series(scan_flows(out), SeriesSpec(step=timedelta(minutes=1), nodes="dst"), stated)
    minutes = [(t - T0) // 60 for t in series.filter(pl.col("node") == "192.0.2.9")["step"].dt.epoch("s").to_list()]
    # Quiet minutes 1-8 as zero rows; 11-58 absent (the second run's first flow starts at 59:59.99).
    assert minutes == list(range(0, 11)) + [59, 60], minutes


def test_flows_dropped_unwritten_leave_the_coverage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   collectors: list[Collector]) -> None:
    """While the disk is full the oldest flows go once memory is full: the time they span is
    missing data, not quiet traffic, and leaves the coverage the collector states."""
    def broken(table, where, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(server_module.pq, "write_table", broken)
    c = start(collectors, tmp_path / "flows", max_buffer_flows=200, max_unwritten_flows=200)
    send(c.address, flows_ending_at([1_000 + 10 * i for i in range(200)]))  # 1.0 s to 2.99 s
    wait_for(lambda: c.summary()["flows"] == 200, "the first flows")
    send(c.address, flows_ending_at([60_000 + 10 * i for i in range(200)], seq=1))  # a minute later
    wait_for(lambda: c.summary()["dropped_unwritten"] == 200, "the oldest flows dropped")
    ms = 1_000
    # The first 200 flows (0.99 s to 2.99 s) are gone; the minute after them stays.
    assert c.coverage().intervals == ((T0 * 10**6 + 2_990 * ms + 1, T0 * 10**6 + 61_990 * ms),), c.coverage()


def test_a_filtered_collector_still_covers_the_time_it_listened(tmp_path: Path, collectors: list[Collector]) -> None:
    """--filter selects flows, not the time observed: none of these flows match, none is
    written, and the dataset still covers the span of their ends (no traffic to port 80 then)."""
    from netflowgen.dataset.coverage import dataset_coverage

    out = tmp_path / "flows"
    c = start(collectors, out, filter="dst port 80")
    send(c.address, flows_ending_at([1_000, 60_000, 120_000]))
    wait_for(lambda: c.summary()["records"] == 3, "the flows")
    summary = c.stop()
    assert summary["rows_written"] == 0
    assert dataset_coverage(out).intervals == ((T0 * 10**6 + 1_000_000, T0 * 10**6 + 120_000_000),)
