"""The real softflowd replays a small capture into `netflowgen collect` and, separately, into nfcapd
(read back through nfdump), for NetFlow v5, v9 and IPFIX: the same flows, the same byte totals,
and as many as softflowd says it exported."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from netflowgen.dataset.manifest import scan_flows
from netflowgen.read import read_flows
from tests.read.tiny_capture import (
    ACK,
    ETH_IP4,
    ETH_IP6,
    FIN,
    PSH,
    SYN,
    Packet,
    _ether,
    icmp_echo,
    ip4,
    ip6,
    tcp,
    udp,
    write_pcap,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(any(shutil.which(p) is None for p in ("softflowd", "nfcapd", "nfdump")),
                       reason="softflowd and nfdump (nfcapd) are needed (apt-get install softflowd nfdump)"),
]

COMPARED = ["ts_start", "ts_end", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "tcp_flags"]


def capture_packets() -> list[Packet]:
    """40 conversations over 160 s (three minutes of steps): TCP both ways, DNS, ping, IPv6 UDP."""
    out: list[Packet] = []
    for i in range(40):
        t = i * 4000
        host, sport = f"192.168.7.{10 + i % 5}", 40000 + i
        kind = i % 4
        if kind == 0:
            server = "198.51.100.20"
            out += [Packet(t, _ether(ETH_IP4, ip4(host, server, 6, tcp(sport, 443, SYN)))),
                    Packet(t + 20, _ether(ETH_IP4, ip4(server, host, 6, tcp(443, sport, SYN | ACK)))),
                    Packet(t + 40, _ether(ETH_IP4, ip4(host, server, 6, tcp(sport, 443, ACK | PSH, b"q" * (50 + i))))),
                    Packet(t + 90, _ether(ETH_IP4, ip4(server, host, 6, tcp(443, sport, ACK | PSH, b"a" * (500 + i))))),
                    Packet(t + 120, _ether(ETH_IP4, ip4(host, server, 6, tcp(sport, 443, FIN | ACK))))]
        elif kind == 1:
            out += [Packet(t, _ether(ETH_IP4, ip4(host, "10.0.0.53", 17, udp(sport, 53, b"d" * 30)))),
                    Packet(t + 5, _ether(ETH_IP4, ip4("10.0.0.53", host, 17, udp(53, sport, b"r" * (60 + i)))))]
        elif kind == 2:
            out.append(Packet(t, _ether(ETH_IP4, ip4(host, "10.0.0.1", 1, icmp_echo(b"p" * 56)))))
        else:
            out += [Packet(t + k * 100, _ether(ETH_IP6, ip6(f"fd00::{i}", "2001:db8::99", 17, udp(sport, 9000, b"6" * (20 + k)))))
                    for k in range(3)]
    return out


#: What softflowd said of its last run: its per-protocol (octets, packets) of the flows it exported.
LAST_RUN: dict[str, tuple[int, int]] = {}


def softflowd(capture: Path, port: int, version: int, *options: str) -> int:
    """Replay the capture to 127.0.0.1:port; the number of records softflowd says it exported."""
    done = subprocess.run([shutil.which("softflowd") or "softflowd", "-r", str(capture), "-n", f"127.0.0.1:{port}",
                           "-v", str(version), "-a", "-A", "milli", "-c", "none", "-d", *options],
                          capture_output=True, text=True, timeout=30, check=True)
    match = re.search(r"Flows exported: \d+ \((\d+) records\) in \d+ packets \(0 failures\)", done.stdout)
    assert match, done.stdout
    LAST_RUN.clear()
    LAST_RUN.update({name: (int(octets), int(packets)) for name, octets, packets in
                     re.findall(r"^\s+(\w+) \(\d+\):\s+(\d+)\s+(\d+)", done.stdout, re.MULTILINE)})
    return int(match.group(1))


def run_collect(capture: Path, out: Path, version: int, *options: str) -> tuple[dict, int]:
    command = [sys.executable, "-m", "netflowgen.cli", "collect", "--listen", "127.0.0.1:0", "--out", str(out), "--json"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        match = re.search(r"listening on udp://127\.0\.0\.1:(\d+)", line)
        assert match, line + proc.stderr.read()  # type: ignore[union-attr]
        exported = softflowd(capture, int(match.group(1)), version, *options)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    return json.loads(stdout), exported


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_socket(port: int) -> list[str] | None:
    """The /proc/net/udp row of the socket bound to 127.0.0.1:port (None: not bound)."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1] == f"0100007F:{port:04X}":
            return parts
    return None


def unread_bytes(port: int) -> int:
    """Bytes the kernel holds for the socket, not yet read by its program."""
    parts = udp_socket(port)
    return int(parts[4].split(":")[1], 16) if parts else 0


def run_nfcapd(capture: Path, folder: Path, version: int) -> tuple[pl.DataFrame, int]:
    folder.mkdir()
    port = free_udp_port()
    proc = subprocess.Popen([shutil.which("nfcapd") or "nfcapd", "-w", str(folder), "-b", "127.0.0.1", "-p", str(port),
                             "-B", str(8 << 20), "-t", "3600"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while udp_socket(port) is None:
            assert proc.poll() is None and time.monotonic() < deadline, "nfcapd did not start"
            time.sleep(0.02)
        exported = softflowd(capture, port, version)
        # nfcapd stops reading at SIGTERM: first let it read what the kernel holds.
        while unread_bytes(port):
            assert time.monotonic() < deadline + 30, "nfcapd does not read its socket"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (nfcapd_file,) = [p for p in folder.iterdir() if re.fullmatch(r"nfcapd\.\d{12}", p.name)]
    return read_flows(nfcapd_file), exported


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pcap(tmp_path_factory.mktemp("capture") / "conversations.pcap", pkts=capture_packets())


def _rows(flows: pl.DataFrame) -> list[tuple]:
    return sorted(flows.select(COMPARED).rows(), key=repr)


@pytest.mark.parametrize("version", [5, 9, 10])
def test_collect_and_nfcapd_agree_with_softflowd(version: int, capture: Path, tmp_path: Path) -> None:
    summary, exported = run_collect(capture, tmp_path / "collect", version)
    flows = scan_flows(tmp_path / "collect").collect()
    reference, exported_again = run_nfcapd(capture, tmp_path / "nfcapd", version)
    # 10 TCP and 10 DNS conversations (a record per direction), 5 ICMP flows (softflowd merges the
    # pings of each host pair), 10 IPv6 flows, which v5 cannot carry.
    assert exported == exported_again == (45 if version == 5 else 55)
    assert summary["flows"] == summary["rows_written"] == flows.height == reference.height == exported
    assert (summary["errors"], summary["rejected"], summary["lost_records"], summary["lost_packets"], summary["kernel_drops"]) == (0, 0, 0, 0, 0)
    assert summary["exporters"]["127.0.0.1"]["sequence_gaps"] == 0
    assert flows["fwd_bytes"].sum() == reference["fwd_bytes"].sum()
    assert flows["fwd_packets"].sum() == reference["fwd_packets"].sum()
    # Record for record: times, addresses, ports, counters and flags as nfdump reads them.
    assert _rows(flows) == _rows(reference)
    assert flows.filter(pl.col("src_ip").str.contains(":")).height == (0 if version == 5 else 10)
    # Stopped cleanly: complete files only.
    names = sorted(p.relative_to(tmp_path / "collect").as_posix() for p in (tmp_path / "collect").rglob("*") if p.is_file())
    assert names == ["date=2023-11-14/part-00000.parquet", "netflowgen.json", "rejects.csv"]


@pytest.mark.parametrize("version", [5, 9, 10])
def test_softflowd_sampling_is_scaled_back_up(version: int, capture: Path, tmp_path: Path) -> None:
    # softflowd -s 4 counts one packet in four and says so: in the v5 header, in a v9/IPFIX options
    # record (samplingInterval). Each flow's counters come out four times what softflowd counted,
    # an estimate of the 110 packets (10,000 bytes or so) of the capture. (nfcapd 1.7 scales v5 but
    # leaves the v9/IPFIX counters as counted.)
    summary, exported = run_collect(capture, tmp_path / "collect", version, "-s", "4")
    flows = scan_flows(tmp_path / "collect").collect()
    counted_octets = sum(octets for octets, _ in LAST_RUN.values())
    counted_packets = sum(packets for _, packets in LAST_RUN.values())
    assert counted_packets > 0
    assert summary["exporters"]["127.0.0.1"]["sampled"] == {"4": exported}
    assert flows.height == exported and summary["rejected"] == 0
    assert (flows["fwd_packets"].sum(), flows["fwd_bytes"].sum()) == (4 * counted_packets, 4 * counted_octets)
