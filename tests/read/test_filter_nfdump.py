"""Agreement with the real nfdump: each filter selects exactly the flows ``nfdump -r FILE 'EXPR'`` does.

The nfcapd files are real: the shared ``test1-malicious.nfdump``, files ``nfpcapd`` writes at test
time from two shared pcaps (IPv6, ICMP, ICMPv6, IGMP, hop-by-hop), and one from a small capture
authored here (so part of the suite runs without the shared data). Our side reads the same files
through our nfcapd reader and applies :func:`compile_filter`; the flows are compared as multisets
of (start ms, duration ms, addresses, ports, protocol, packets, bytes).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from netflowgen.read import read_flows
from netflowgen.read.filter import FilterUndecided, compile_filter
from netflowgen.schema import PORT_PROTOCOLS
from tests.read import tiny_capture as tc

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nfpcapd") is None or shutil.which("nfdump") is None,
                       reason="nfdump/nfpcapd are not installed (apt-get install nfdump)"),
]

#: Every construct of the subset; port clauses guarded where a file holds ICMP (see UNDECIDED).
FILTERS = [
    "any", "not any", "proto tcp", "proto udp", "proto icmp", "proto icmp6", "proto 0", "proto gre",
    "proto 17 or proto 6", "inet", "inet6", "ipv6 and proto udp", "ipv4 and not proto tcp",
    "ip 147.32.80.119", "src ip 147.32.80.119", "dst host 147.32.82.62", "host 192.168.100.119",
    "ip 0.0.0.0", "ip ::", "ip FE80::5BCC:698E:39D5:0CDF", "ip ::192.168.100.119", "ip fd00:1234:5678:9abc:0:0:0:1",
    "net 147.32.80.0/24", "net 147.32.80.1/24", "net 147.32.80.0 255.255.255.0", "net 147.32/16",
    "src net 192.168.100.0/25", "dst net 224.0.0.0/4", "net 10.0.0.0/8", "net fe80::/10", "dst net ff02::/16",
    "src net fe80::5bcc:698e:39d5:0/112", "net fe80::/65", "net fd00:1234::/32", "net ::/0", "net fe80::/0",
    "net ::/8", "net 0.0.0.0/1", "net 10.0.0.0/0", "src and dst net 192.168.100.0/24", "src or dst net 147.32.82.0/24",
    "ip in [147.32.80.119 192.168.100.0/24]", "dst ip in [ff02::fb, 224.0.0.251]", "src host in [10.0.0.53]",
    "proto tcp and port 902", "proto tcp and port 80", "proto tcp and dst port < 1024", "proto udp and src port >= 1024",
    "(proto tcp or proto udp) and port in [53 80 443 902 5353]", "not proto icmp and not proto icmp6 and port > 50000",
    "proto udp and dst port 1900", "src port 0", "src port = 0 and not proto 0", "proto udp and dst port in [ 53 ]",
    "proto tcp and port ge 52324 and port le 52330", "proto tcp and src port gt 60000", "proto tcp and src port == 0x50",
    "packets > 1", "in packets >= 3", "packets = 1 and bytes < 100", "bytes > 1k", "bytes > 0x400", "bytes > 1024",
    "bytes >= 1M or packets > 1k", "packets 2", "out packets > 0", "out bytes = 0",
    "duration > 1000", "duration = 0", "duration >= 1 and duration < 5000", "duration < 300",
    "flags S", "flags SA", "flags AS", "flags R", "flags P", "not flags S", "flags S and not flags AFRPU",
    "not flags AFRPU", "not flags X", "flags X", "flags XS", "not (flags SA)", "not (proto tcp and flags S)",
    "not (proto udp or flags R)", "flags U or flags F", "not not flags SA",
    "src ip 147.32.80.119 or dst ip 147.32.80.119 and proto udp",
    "proto udp and src ip 147.32.80.119 or dst ip 147.32.80.119",
    "not proto tcp and proto udp or inet6", "not (proto tcp and port 902)", "PROTO TCP AND NOT FLAGS A",
    "proto tcp and dst port 902 # a comment", "((proto udp)) and not (not inet)",
]

#: Filters whose outcome on an ICMP flow depends on its dst port (nfdump: type*256+code).
UNDECIDED = ["port 53", "dst port 0", "not port 80", "port > 10", "port in [80 443]"]


def _extra_packets() -> list[tc.Packet]:
    """More than the reader tests need: a SYN-only flow, ICMPv6, SSDP, IGMP, the IPv6 address ::."""
    e = tc._ether
    return [
        tc.Packet(3100, e(tc.ETH_IP4, tc.ip4("192.168.1.20", "147.32.80.119", 6, tc.tcp(61000, 902, tc.SYN)))),
        tc.Packet(3200, e(tc.ETH_IP4, tc.ip4("192.168.1.20", "239.255.255.250", 17, tc.udp(50000, 1900, b"m" * 90)))),
        tc.Packet(3300, e(tc.ETH_IP4, tc.ip4("192.168.1.20", "224.0.0.22", 2, b"\x22\0\0\0\0\0\0\0"))),
        tc.Packet(3400, e(tc.ETH_IP6, tc.ip6("::", "ff02::1:ff00:1", 58, bytes([135, 0, 0, 0]) + b"\0" * 20))),
        tc.Packet(3500, e(tc.ETH_IP6, tc.ip6("fe80::5bcc:698e:39d5:cdf", "ff02::fb", 17, tc.udp(5353, 5353, b"d" * 40)))),
    ] + [tc.Packet(3600 + 20 * i, e(tc.ETH_IP4, tc.ip4("10.0.0.99", tc.A, 6, tc.tcp(80, 40001, tc.ACK | tc.PSH, b"z" * 600))))
         for i in range(3)]


@pytest.fixture(scope="module")
def authored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("filter")
    return tc.nfpcapd(tc.write_pcap(work / "f.pcap", pkts=tc.packets() + _extra_packets()), work / "flows")


def _bidirectional(path: Path, out: Path) -> Path:
    """``nfdump -B -w``: the same flows as bidirectional records (in and out counters)."""
    subprocess.run(["nfdump", "-R" if path.is_dir() else "-r", str(path), "-B", "-w", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def authored_bidir(authored: Path) -> Path:
    return _bidirectional(authored, authored.parent.parent / "bidir.nfcapd")


@pytest.fixture(scope="module")
def shared_files(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    files = [shared_data / "stratosphere-argus" / "test1-malicious.nfdump"]
    for pcap in ("iot23-extra/CTU-Honeypot-Capture-4-1/2018-09-14-13-40-25-Philips-Hue-Bridge.pcap",
                 "strato-extra/slips/pcaps/test7-malicious.pcap"):
        out = tmp_path_factory.mktemp("nfpcapd")
        subprocess.run(["nfpcapd", "-r", str(shared_data / pcap), "-w", str(out)], check=True, capture_output=True)
        files.append(out)
    files.append(_bidirectional(files[1], tmp_path_factory.mktemp("bidir") / "hue-bidir.nfcapd"))
    return files


def _nfdump_flows(path: Path, expr: str) -> Counter[tuple]:  # type: ignore[type-arg]
    fmt = "fmt:%cnt|%tsr|%td|%sa|%da|%sp|%dp|%pr|%ipkt|%ibyt|%opkt|%obyt"
    proc = subprocess.run(["nfdump", "-R" if path.is_dir() else "-r", str(path), "-q", "-N", "-6", "-o", fmt, expr],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), f"nfdump rejected {expr!r}: {proc.stderr}"
    flows: Counter[tuple] = Counter()  # type: ignore[type-arg]
    for line in proc.stdout.splitlines():
        f = [x.strip() for x in line.split("|")]
        if len(f) != 12 or f[0] == "0":  # "No matching flows", or the tunnel line before a tunnelled record
            continue
        proto = int(f[7])
        ports = (int(f[5]), int(f[6])) if proto in PORT_PROTOCOLS else (None, None)
        flows[(round(float(f[1]) * 1000), round(float(f[2]) * 1000), f[3], f[4], *ports, proto, *map(int, f[8:12]))] += 1
    return flows


def _our_flows(flows: pl.DataFrame) -> Counter[tuple]:  # type: ignore[type-arg]
    ms = flows.select(
        (pl.col("ts_start").dt.epoch("us") // 1000).alias("ts"),
        ((pl.col("ts_end") - pl.col("ts_start")).dt.total_microseconds() // 1000).alias("td"),
        "src_ip", "dst_ip", "src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes",
    )
    return Counter(ms.rows())


def _check(path: Path, flows: pl.DataFrame, expr: str) -> int:
    """Assert agreement; the number of flows selected."""
    expected = _nfdump_flows(path, expr)
    got = _our_flows(compile_filter(expr).apply(flows))
    assert sum(got.values()) == sum(expected.values()), f"{expr!r} on {path.name}: nfdump selects {sum(expected.values())}, we {sum(got.values())}"
    assert got == expected, f"{expr!r} on {path.name}: different flows: only ours {got - expected}, only nfdump's {expected - got}"
    return sum(got.values())


def test_reader_sees_every_nfdump_flow(authored: Path) -> None:
    flows = read_flows(authored)
    assert _our_flows(flows) == _nfdump_flows(authored, "any")
    assert flows.height == 14


def test_authored_capture_agrees(authored: Path, authored_bidir: Path) -> None:
    informative = set()
    for path in (authored, authored_bidir):
        flows = read_flows(path)
        selected = {expr: _check(path, flows, expr) for expr in FILTERS}
        # The capture is built so that most filters neither keep every flow nor none.
        informative |= {e for e, n in selected.items() if 0 < n < flows.height}
    assert len(FILTERS) >= 80
    assert len(informative) >= 40, sorted(set(FILTERS) - informative)
    assert read_flows(authored_bidir)["rev_packets"].sum() > 0


def test_shared_files_agree(shared_files: list[Path]) -> None:
    tables = [(path, read_flows(path)) for path in shared_files]
    assert tables[0][1].height == 4593 and tables[-1][1]["rev_packets"].sum() > 0
    informative = set()
    for path, flows in tables:
        for expr in FILTERS:
            n = _check(path, flows, expr)
            if 0 < n < flows.height:
                informative.add(expr)
    # Every filter but `any`/`not any` tells flows apart in at least one real file.
    assert set(FILTERS) - informative <= {"any", "not any", "proto gre", "net ::/0", "net 10.0.0.0/0", "flags X", "flags XS",
                                          "bytes >= 1M or packets > 1k", "src host in [10.0.0.53]",
                                          "ip fd00:1234:5678:9abc:0:0:0:1", "net fd00:1234::/32", "net 10.0.0.0/8",
                                          "proto tcp and port 80", "proto tcp and src port == 0x50"}


@pytest.mark.parametrize("expr", UNDECIDED)
def test_port_on_icmp_flows_is_refused(authored: Path, expr: str) -> None:
    flows = read_flows(authored)
    assert flows.filter(pl.col("proto") == 1).height  # the ping
    with pytest.raises(FilterUndecided, match="ICMP"):
        compile_filter(expr).apply(flows)
    # Without ICMP flows the same filter is decided, and agrees with nfdump.
    guarded = f"({expr}) and not proto icmp and not proto icmp6"
    _check(authored, flows, guarded)


def test_undecided_filters_agree_where_there_is_no_icmp(shared_data: Path) -> None:
    path = shared_data / "stratosphere-argus" / "test1-malicious.nfdump"
    flows = read_flows(path)
    assert sum(_check(path, flows, expr) for expr in UNDECIDED) > 0
