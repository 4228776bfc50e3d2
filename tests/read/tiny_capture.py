"""A tiny packet capture written with :mod:`struct`, and the flows nfpcapd must make of it.

Used by the nfcapd and pcap reader tests: the capture goes through the real ``nfpcapd`` at test
time, so the nfcapd files under test are what the tool writes. Packet times are whole
milliseconds (nfcapd keeps milliseconds).
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC

ETH_IP4 = 0x0800
ETH_IP6 = 0x86DD
ETH_ARP = 0x0806


@dataclass(frozen=True)
class Packet:
    ms: int  # milliseconds after T0
    frame: bytes  # Ethernet frame


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _ether(ethertype: int, payload: bytes) -> bytes:
    return b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + struct.pack("!H", ethertype) + payload


def ip4(src: str, dst: str, proto: int, payload: bytes, ident: int = 1) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + payload


def ip6(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), proto, 64) + ipaddress.IPv6Address(src).packed + \
        ipaddress.IPv6Address(dst).packed + payload


def tcp(sport: int, dport: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp_echo(payload: bytes) -> bytes:
    return struct.pack("!BBHHH", 8, 0, 0, 1, 1) + payload


def gre(inner_ip4: bytes) -> bytes:
    return struct.pack("!HH", 0, ETH_IP4) + inner_ip4


FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
A, B = "192.168.1.10", "10.0.0.5"
DNS = "10.0.0.53"
V6A, V6B = "fd00:1234:5678:9abc::1", "fd00:1234:5678:9abc::2"


def packets() -> list[Packet]:
    """A TCP connection (both directions), a DNS exchange, a ping, IPv6 UDP, GRE, and ARP."""
    arp = struct.pack("!HHBBH", 1, ETH_IP4, 6, 4, 1) + b"\x02" * 6 + bytes([192, 168, 1, 10]) + b"\0" * 6 + bytes([10, 0, 0, 5])
    return [
        Packet(100, _ether(ETH_IP4, ip4(A, B, 6, tcp(40000, 80, SYN)))),
        Packet(150, _ether(ETH_IP4, ip4(B, A, 6, tcp(80, 40000, SYN | ACK)))),
        Packet(200, _ether(ETH_IP4, ip4(A, B, 6, tcp(40000, 80, ACK | PSH, b"x" * 100)))),
        Packet(300, _ether(ETH_ARP, arp)),
        Packet(400, _ether(ETH_IP4, ip4(A, B, 6, tcp(40000, 80, FIN | ACK)))),
        Packet(450, _ether(ETH_IP4, ip4(B, A, 6, tcp(80, 40000, RST)))),
        Packet(1000, _ether(ETH_IP4, ip4(A, DNS, 17, udp(5353, 53, b"q" * 30)))),
        Packet(1200, _ether(ETH_IP4, ip4(DNS, A, 17, udp(53, 5353, b"r" * 80)))),
        Packet(1500, _ether(ETH_IP4, ip4(A, DNS, 17, udp(5353, 53, b"q" * 40)))),
        Packet(2000, _ether(ETH_IP4, ip4(A, B, 1, icmp_echo(b"p" * 56)))),
        Packet(2500, _ether(ETH_IP6, ip6(V6A, V6B, 17, udp(1234, 4321, b"6" * 12)))),
        Packet(2750, _ether(ETH_IP6, ip6(V6A, V6B, 17, udp(1234, 4321, b"6" * 20)))),
        Packet(3000, _ether(ETH_IP4, ip4("172.16.0.1", "172.16.0.2", 47, gre(ip4("10.1.0.1", "10.1.0.2", 17, udp(7000, 7001, b"g" * 20)))))),
    ]


#: Packets in the capture, and IP packets nfpcapd turns into flows (all but the ARP frame).
CAPTURE_PACKETS = 13
FLOW_PACKETS = 12


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(T0, timezone.utc) + timedelta(milliseconds=ms)


#: (ts_start, ts_end, src_ip, dst_ip, src_port, dst_port, proto, fwd_packets, fwd_bytes, tcp_flags),
#: in nfpcapd's unidirectional records; IP-layer bytes. nfpcapd exports every DNS (port 53) packet
#: as a record of its own; the GRE packet counts as its inner packet.
EXPECTED_FLOWS = sorted(
    [
        (_ts(100), _ts(400), A, B, 40000, 80, 6, 3, 40 + 140 + 40, SYN | ACK | PSH | FIN),
        (_ts(150), _ts(450), B, A, 80, 40000, 6, 2, 80, SYN | ACK | RST),
        (_ts(1000), _ts(1000), A, DNS, 5353, 53, 17, 1, 58, None),
        (_ts(1200), _ts(1200), DNS, A, 53, 5353, 17, 1, 108, None),
        (_ts(1500), _ts(1500), A, DNS, 5353, 53, 17, 1, 68, None),
        (_ts(2000), _ts(2000), A, B, None, None, 1, 1, 84, None),
        (_ts(2500), _ts(2750), V6A, V6B, 1234, 4321, 17, 2, 60 + 68, None),
        (_ts(3000), _ts(3000), "10.1.0.1", "10.1.0.2", 7000, 7001, 17, 1, 48, None),
    ],
    key=lambda f: (f[0], f[2]),
)


def write_pcap(path: Path, kind: str = "pcap", pkts: list[Packet] | None = None) -> Path:
    """Write the capture as ``pcap`` (microseconds), ``pcap-ns`` (nanoseconds) or ``pcapng``."""
    pkts = packets() if pkts is None else pkts
    out = bytearray()
    if kind in ("pcap", "pcap-ns"):
        magic = 0xA1B2C3D4 if kind == "pcap" else 0xA1B23C4D
        out += struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
        for p in pkts:
            sec, ms = divmod(p.ms, 1000)
            frac = ms * 1000 if kind == "pcap" else ms * 1_000_000
            out += struct.pack("<IIII", T0 + sec, frac, len(p.frame), len(p.frame)) + p.frame
    elif kind == "pcapng":
        out += _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
        out += _block(1, struct.pack("<HHI", 1, 0, 65535))  # Ethernet, microsecond timestamps
        for p in pkts:
            us = (T0 * 1000 + p.ms) * 1000
            pad = b"\0" * (-len(p.frame) % 4)
            out += _block(6, struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(p.frame), len(p.frame)) + p.frame + pad)
    else:
        raise ValueError(kind)
    path.write_bytes(bytes(out))
    return path


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def many_flows(n: int) -> list[Packet]:
    """``n`` one-packet UDP flows (distinct source ports), for files of several nfcapd blocks."""
    return [
        Packet(i // 10, _ether(ETH_IP4, ip4(f"10.9.{i // 60000}.{1 + (i // 250) % 250}", B, 17, udp(1024 + i % 60000, 9, b""))))
        for i in range(n)
    ]


def nfpcapd(capture: Path, out_dir: Path) -> Path:
    """Run the real nfpcapd; the one nfcapd file it writes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([shutil.which("nfpcapd") or "nfpcapd", "-r", str(capture), "-w", str(out_dir)],
                   check=True, capture_output=True)
    (nfcapd_file,) = sorted(out_dir.glob("nfcapd.*"))
    return nfcapd_file


def count_capture_packets(path: Path) -> int:
    """Packets in a pcap or pcapng file, counted from its own records (no external tool)."""
    data = path.read_bytes()
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        count, pos, endian = 0, 0, "<"
        while pos + 12 <= len(data):
            if data[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":
                endian = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            kind, length = struct.unpack_from(endian + "II", data, pos)
            count += kind in (3, 6)  # simple and enhanced packet blocks
            pos += length
        return count
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    count, pos = 0, 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from(endian + "I", data, pos + 8)[0]
        pos += 16 + caplen
        count += 1
    return count
