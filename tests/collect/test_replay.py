"""`netflowgen replay`: a small authored flow dataset sent as NetFlow v5, v9 and IPFIX into the real
nfcapd (read back through nfdump) and into our own collector gives back its flows field by field;
the encoder's sequence numbers, templates, clock and sizes checked through our decoder; pacing,
loops and bad input (unreadable input, a refusing target, a remote target)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from netflowgen.collect.export import Exporter, ExportFormat, prepare
from netflowgen.collect.netflow import Decoder
from netflowgen.collect.replay import ReplayConfig, ReplayError, parse_speed, replay
from netflowgen.collect.server import Collector, CollectorConfig
from netflowgen.dataset.ingest import IngestConfig, ingest
from netflowgen.dataset.manifest import scan_flows
from netflowgen.read import read_flows
from tests.collect.test_softflowd import free_udp_port, udp_socket, unread_bytes

COMPARED = ["ts_start", "ts_end", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "tcp_flags"]
T0 = datetime(2024, 3, 1, 11, 59, 30, tzinfo=UTC)
HUGE_BYTES = 5_000_000_000  # above 2**32: v9/IPFIX carry it in 64 bits, v5 cannot

needs_nfdump = pytest.mark.skipif(shutil.which("nfcapd") is None or shutil.which("nfdump") is None,
                                  reason="nfdump (nfcapd) is needed (apt-get install nfdump)")


def authored_flows() -> pl.DataFrame:
    """36 flows over 75 s, across a minute boundary, times to the millisecond: IPv4 and IPv6 TCP
    (with flags), UDP and ICMP, every fourth one bidirectional, and one flow of 5 GB."""
    rows = []
    for i in range(36):
        kind = i % 6
        v6 = kind >= 4
        proto = (6, 17, 1, 6, 6, 17)[kind]
        start = T0 + timedelta(milliseconds=2083 * i + 7)
        packets = 1 + 3 * i
        rows.append({
            "ts_start": start, "ts_end": start + timedelta(milliseconds=(0, 1, 250, 4999, 61, 12)[kind] + 17 * i),
            "src_ip": f"2001:db8:{i:x}::{i + 1:x}" if v6 else f"192.168.{i % 3}.{10 + i}",
            "dst_ip": "2001:db8:ffff::53" if v6 else ("10.0.0.1" if i % 2 else "203.0.113.250"),
            "src_port": None if proto == 1 else 40000 + i, "dst_port": None if proto == 1 else (443, 53, 0, 22, 80, 123)[kind],
            "proto": proto, "fwd_packets": packets, "fwd_bytes": packets * (40 + i),
            "rev_packets": 2 * i if i % 4 == 1 else 0, "rev_bytes": 2 * i * 1000 if i % 4 == 1 else 0,
            "tcp_flags": (0x02, None, None, 0x1B, 0x12, None)[kind],
            "label": None, "label_detail": None,
        })
    rows[7]["fwd_packets"], rows[7]["fwd_bytes"] = 100_000, HUGE_BYTES
    return pl.DataFrame(rows, schema_overrides={"src_port": pl.UInt16, "dst_port": pl.UInt16, "proto": pl.UInt8,
                                                "tcp_flags": pl.UInt8, "label": pl.String, "label_detail": pl.String})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The authored flows as a flow dataset, written by `ingest` (date=*/part-*.parquet + netflowgen.json)."""
    work = tmp_path_factory.mktemp("replay")
    authored_flows().write_parquet(work / "authored.parquet")
    ingest(IngestConfig(inputs=(work / "authored.parquet",), out=work / "flows"))
    return work / "flows"


def unidirectional(flows: pl.DataFrame, v5: bool = False) -> list[tuple]:
    """What the export must carry, written independently of the encoder: every row's forward
    counters, and the reverse counters of bidirectional rows as a record with swapped endpoints."""
    out = []
    for r in flows.iter_rows(named=True):
        if v5 and (":" in r["src_ip"] or r["fwd_bytes"] > 2**32 - 1):
            continue
        out.append((r["ts_start"], r["ts_end"], r["src_ip"], r["dst_ip"], r["src_port"], r["dst_port"], r["proto"],
                    r["fwd_packets"], r["fwd_bytes"], r["tcp_flags"]))
        if r["rev_packets"] and not (v5 and ":" in r["src_ip"]):
            out.append((r["ts_start"], r["ts_end"], r["dst_ip"], r["src_ip"], r["dst_port"], r["src_port"], r["proto"],
                        r["rev_packets"], r["rev_bytes"], r["tcp_flags"]))
    return sorted(out, key=repr)


def rows(flows: pl.DataFrame) -> list[tuple]:
    return sorted(flows.select(COMPARED).rows(), key=repr)


def run_replay(dataset: Path, port: int, fmt: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """The command as the README writes it: a relative dataset path, from the dataset's folder."""
    return subprocess.run([sys.executable, "-m", "netflowgen.cli", "replay", dataset.name, "--to", f"127.0.0.1:{port}",
                           "--format", fmt, *extra], cwd=dataset.parent, capture_output=True, text=True, timeout=60)


def nfcapd_replay(dataset: Path, folder: Path, fmt: str) -> tuple[pl.DataFrame, dict, str]:
    """Replay into a fresh nfcapd; (the flows nfdump reads from its file, replay's summary, nfcapd's log)."""
    folder.mkdir()
    port = free_udp_port()
    proc = subprocess.Popen([shutil.which("nfcapd") or "nfcapd", "-w", str(folder), "-b", "127.0.0.1", "-p", str(port),
                             "-t", "3600"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while udp_socket(port) is None:
            assert proc.poll() is None and time.monotonic() < deadline, "nfcapd did not start"
            time.sleep(0.02)
        done = run_replay(dataset, port, fmt, "--speed", "max", "--json")
        assert done.returncode == 0, done.stderr
        # nfcapd stops reading at SIGTERM: first let it read what the kernel holds.
        while unread_bytes(port):
            assert time.monotonic() < deadline + 30, "nfcapd does not read its socket"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (nfcapd_file,) = [p for p in folder.iterdir() if re.fullmatch(r"nfcapd\.\d{12}", p.name)]
    return read_flows(nfcapd_file), json.loads(done.stdout), log


# --- the real nfcapd -----------------------------------------------------------------------------


@pytest.mark.integration
@needs_nfdump
@pytest.mark.parametrize("fmt", ["v5", "v9", "ipfix"])
def test_nfcapd_gets_the_datasets_flows(fmt: str, dataset: Path, tmp_path: Path) -> None:
    flows = scan_flows(dataset).collect()
    expected = unidirectional(flows, v5=fmt == "v5")
    received, summary, log = nfcapd_replay(dataset, tmp_path / "nfcapd", fmt)
    # 36 rows, 9 of them bidirectional: 45 records; v5 leaves out the 12 IPv6 rows (3 of them
    # bidirectional: 15 records) and the 5 GB flow, and says so.
    assert summary["flows_read"] == 36 and summary["reverse_records"] == 9
    assert len(expected) == summary["flows_sent"] == received.height == (29 if fmt == "v5" else 45)
    if fmt == "v5":
        assert summary["skipped"] == {"IPv6 (NetFlow v5 carries IPv4 only)": 15,
                                      "packets or bytes above 2**32 - 1 (NetFlow v5 counters are 32-bit)": 1}
    else:
        assert summary["skipped"] == {}
        assert received.filter(pl.col("src_ip").str.contains(":")).height == 15
        assert HUGE_BYTES in received["fwd_bytes"].to_list()
    # Field by field: addresses, ports, protocol, packets, bytes, times to the ms, TCP flags.
    assert rows(received) == expected
    assert received["rev_packets"].sum() == received["rev_bytes"].sum() == 0
    # nfcapd saw every sequence number it expected.
    assert re.search(rf"Flows: {received.height}, .*Sequence Errors: 0, Bad Packets: 0", log), log


# --- our own collector ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_collector_gets_the_datasets_flows(fmt: ExportFormat, dataset: Path, tmp_path: Path) -> None:
    collector = Collector(CollectorConfig(tmp_path / "collected", listen=("127.0.0.1", 0)))
    collector.start()
    try:
        summary = replay(ReplayConfig(dataset, collector.address, fmt, speed=None, domain=7))
    finally:
        collected = collector.stop()
    flows = scan_flows(dataset).collect()
    got = scan_flows(tmp_path / "collected").collect()
    assert rows(got) == unidirectional(flows, v5=fmt is ExportFormat.V5)
    assert summary.flows_sent == collected["flows"] == got.height
    (stats,) = collected["exporters"].values()
    assert (stats["sequence_gaps"], stats["sequence_resets"], stats["lost_records"], stats["lost_packets"]) == (0, 0, 0, 0)
    assert collected["errors"] == collected["rejected"] == 0
    assert stats["packets"] == summary.datagrams_sent
    assert stats["template_records"] == (0 if fmt is ExportFormat.V5 else 2 * summary.template_datagrams)


# --- the encoder, through our decoder -------------------------------------------------------------


def decode(datagrams: list[bytes]) -> tuple[pl.DataFrame, object]:
    decoder = Decoder()
    for d in datagrams:
        decoder.feed(d, "127.0.0.1")
    checked = decoder.take()
    assert checked.rejects.height == 0
    return checked.flows, decoder.stats["127.0.0.1"]


def many_flows(n: int) -> pl.DataFrame:
    """``n`` flows, one every 10 ms, IPv4 and IPv6 mixed, with microseconds in their times."""
    frame = authored_flows().drop("label", "label_detail")
    return pl.concat([frame.with_columns(pl.col("ts_start", "ts_end") + timedelta(seconds=80 * k, microseconds=321))
                      for k in range(-(-n // frame.height))]).head(n)


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_sequence_numbers_templates_and_sizes(fmt: ExportFormat) -> None:
    flows = many_flows(2000)
    exporter = Exporter(fmt, domain=0x0102, template_every=20, max_datagram=1400)
    datagrams = list(exporter.encode(prepare(flows, fmt)))
    got, st = decode([d.payload for d in datagrams])
    # Times are sent to the millisecond: microseconds are truncated.
    expected = unidirectional(flows.with_columns(pl.col("ts_start", "ts_end").dt.truncate("1ms")), v5=fmt is ExportFormat.V5)
    assert rows(got) == expected
    assert max(len(d.payload) for d in datagrams) <= 1400
    assert (st.sequence_gaps, st.sequence_resets, st.lost_records, st.lost_packets) == (0, 0, 0, 0)
    assert sum(d.records for d in datagrams) == len(expected) == exporter.records
    if fmt is ExportFormat.V5:
        assert max(d.records for d in datagrams) <= 30
        assert st.template_records == 0
        return
    # Templates in the first datagram and at least every 20 (here also every 60 s of export time).
    with_templates = [i for i, d in enumerate(datagrams) if d.templates]
    assert with_templates[0] == 0 and all(b - a <= 20 for a, b in zip(with_templates, with_templates[1:]))
    assert len(datagrams) - 1 - with_templates[-1] < 20
    assert st.template_records == 2 * len(with_templates) and st.template_redefinitions == 0
    # The domain and the sequence numbers as the headers carry them.
    headers = [struct.unpack_from("!HHIII" if fmt is ExportFormat.IPFIX else "!HHIIII", d.payload) for d in datagrams]
    if fmt is ExportFormat.V9:
        assert [h[4] for h in headers] == list(range(len(datagrams)))  # packets before this one
        assert {h[5] for h in headers} == {0x0102}
    else:
        assert [h[3] for h in headers] == [sum(d.records for d in datagrams[:i]) for i in range(len(datagrams))]
        assert {h[4] for h in headers} == {0x0102}
        assert all(h[1] == len(d.payload) for h, d in zip(headers, datagrams))


def test_v5_engine_sequence_and_uptime() -> None:
    flows = many_flows(300)
    exporter = Exporter(ExportFormat.V5, domain=0x0304)
    datagrams = list(exporter.encode(prepare(flows, ExportFormat.V5)))
    headers = [struct.unpack_from("!HHIIIIBBH", d.payload) for d in datagrams]
    assert [h[5] for h in headers] == [sum(d.records for d in datagrams[:i]) for i in range(len(datagrams))]
    assert {(h[6], h[7]) for h in headers} == {(3, 4)}
    # The exporter booted an hour before the first flow's start (whole second): every header's
    # uptime is its export time less that boot time, and the export time is a whole second at or
    # after the latest flow end the datagram carries.
    boot_ms = int(flows["ts_start"].min().timestamp()) * 1000 - 3_600_000
    assert exporter.boot_ms == boot_ms
    assert {h[3] * 1000 - h[2] for h in headers} == {boot_ms}
    assert all(h[3] * 1000 >= d.clock_ms > h[3] * 1000 - 1000 for h, d in zip(headers, datagrams))


def test_a_loop_moves_each_pass_later_and_sequences_continue(dataset: Path) -> None:
    sink = Collector(CollectorConfig(Path(str(dataset) + "-loop"), listen=("127.0.0.1", 0)))
    sink.start()
    try:
        summary = replay(ReplayConfig(dataset, sink.address, ExportFormat.IPFIX, speed=None, passes=3))
    finally:
        collected = sink.stop()
    got = scan_flows(Path(str(dataset) + "-loop")).collect()
    first = scan_flows(dataset).collect()
    assert summary.passes == 3 and not summary.stopped and summary.flows_sent == 3 * 45 == got.height
    (stats,) = collected["exporters"].values()
    assert (stats["sequence_gaps"], stats["sequence_resets"]) == (0, 0)
    # The flows span 74.5 s: each pass comes 2 minutes after the one before.
    for k in range(3):
        shifted = first.with_columns(pl.col("ts_start", "ts_end") + timedelta(minutes=2 * k))
        window = got.filter(pl.col("ts_start").is_between(shifted["ts_start"].min(), shifted["ts_end"].max()))
        assert rows(window) == unidirectional(shifted)


# --- pacing --------------------------------------------------------------------------------------


def test_speed_follows_the_flows_clock(dataset: Path) -> None:
    sink = Collector(CollectorConfig(Path(str(dataset) + "-paced"), listen=("127.0.0.1", 0)))
    sink.start()
    try:
        started = time.perf_counter()
        summary = replay(ReplayConfig(dataset, sink.address, ExportFormat.V9, speed=100.0, max_datagram=300))
        elapsed = time.perf_counter() - started
    finally:
        sink.stop()
    # Each datagram is due when its latest flow end comes, 100 times faster than real time.
    clocks = [d.clock_ms for d in Exporter(ExportFormat.V9, max_datagram=300).encode(prepare(scan_flows(dataset).collect(), ExportFormat.V9))]
    span = (clocks[-1] - clocks[0]) / 1000
    assert summary.datagrams_sent == len(clocks) > 5 and span > 60
    assert span / 100 <= elapsed < span / 100 + 5, (elapsed, span)


def test_the_rate_is_bounded(dataset: Path) -> None:
    sink = Collector(CollectorConfig(Path(str(dataset) + "-rate"), listen=("127.0.0.1", 0)))
    sink.start()
    try:
        summary = replay(ReplayConfig(dataset, sink.address, ExportFormat.IPFIX, speed=None, max_rate=100.0, max_datagram=400))
    finally:
        sink.stop()
    # 45 records at 100 flows/s: all but the last datagram's records wait for the bound.
    assert summary.datagrams_sent > 5
    assert summary.seconds >= (45 - 10) / 100 - 0.02


def test_stop_ends_a_loop(dataset: Path) -> None:
    sink = Collector(CollectorConfig(Path(str(dataset) + "-stop"), listen=("127.0.0.1", 0)))
    sink.start()
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    try:
        summary = replay(ReplayConfig(dataset, sink.address, ExportFormat.V9, speed=10.0, passes=None), stop=stop)
    finally:
        timer.cancel()
        sink.stop()
    assert summary.stopped and summary.passes == 0 and 0 < summary.flows_sent < 45


@pytest.mark.parametrize(("text", "value"), [("1x", 1.0), ("10x", 10.0), ("0.5x", 0.5), ("MAX", None)])
def test_parse_speed(text: str, value: float | None) -> None:
    assert parse_speed(text) == value


@pytest.mark.parametrize("text", ["0x", "-1x", "fast", "nanx"])
def test_parse_speed_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="speed"):
        parse_speed(text)


# --- bad input -----------------------------------------------------------------------------------


def test_a_refusing_target_is_an_error_not_a_hang(dataset: Path) -> None:
    port = free_udp_port()  # nothing listens there: the kernel answers ICMP port unreachable
    started = time.monotonic()
    with pytest.raises(ReplayError, match=rf"udp://127.0.0.1:{port} refused the export"):
        replay(ReplayConfig(dataset, ("127.0.0.1", port), ExportFormat.IPFIX, speed=1.0))
    assert time.monotonic() - started < 5
    done = run_replay(dataset, port, "v9")
    assert done.returncode == 1
    assert f"error: udp://127.0.0.1:{port} refused the export (ICMP port unreachable)" in " ".join(done.stderr.split())


def test_unreadable_input_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "garbage.bin").write_bytes(b"\x00\x01not flows at all\n" * 10)
    (tmp_path / "empty").mkdir()
    cases = {"missing": "missing: no such file or directory", "garbage.bin": "garbage.bin: cannot recognise the flow format"}
    for name, message in cases.items():
        done = subprocess.run([sys.executable, "-m", "netflowgen.cli", "replay", name, "--to", "127.0.0.1:9"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert message in " ".join(done.stderr.split()), done.stderr
    done = subprocess.run([sys.executable, "-m", "netflowgen.cli", "replay", "empty", "--to", "127.0.0.1:9"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no flows to replay" in done.stderr


def test_a_remote_target_needs_allow_remote(dataset: Path) -> None:
    with pytest.raises(ValueError, match="not a loopback address.*--allow-remote"):
        replay(ReplayConfig(dataset, ("192.0.2.1", 2055), ExportFormat.IPFIX))
    done = subprocess.run([sys.executable, "-m", "netflowgen.cli", "replay", dataset.name, "--to", "192.0.2.1:2055", "--format", "v7"],
                          cwd=dataset.parent, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "unknown export format 'v7'" in done.stderr


def test_addresses_are_parsed_exactly_or_refused() -> None:
    flows = authored_flows().head(4).with_columns(
        src_ip=pl.Series(["10.0.0.255", "fe80::1:2", "2001:db8::1", "1.2.3.4"]),
        dst_ip=pl.Series(["10.0.0.1", "::1", "2001:db8::2", "0.0.0.0"]), rev_packets=pl.lit(0, pl.UInt64), rev_bytes=pl.lit(0, pl.UInt64))
    got, _ = decode([d.payload for d in Exporter(ExportFormat.IPFIX).encode(prepare(flows, ExportFormat.IPFIX))])
    assert sorted(got.select("src_ip", "dst_ip").rows()) == sorted(flows.select("src_ip", "dst_ip").rows())
    for bad in ("1.2.3.4.5", "300.1.1.1", "01.2.3.4", "00:11:22:33:44:55x"):
        with pytest.raises(ValueError, match=f"src_ip: '{bad}' is not an IP address"):
            prepare(flows.with_columns(src_ip=pl.lit(bad)), ExportFormat.V9)


def test_an_ipv6_loopback_target(dataset: Path, tmp_path: Path) -> None:
    try:
        collector = Collector(CollectorConfig(tmp_path / "collected", listen=("::1", 0)))
        collector.start()
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    try:
        summary = replay(ReplayConfig(dataset, collector.address, ExportFormat.V9, speed=None))
    finally:
        collected = collector.stop()
    assert summary.target == f"[::1]:{collector.address[1]}"
    assert collected["flows"] == summary.flows_sent == 45
