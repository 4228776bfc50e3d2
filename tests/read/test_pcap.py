"""pcap/pcapng reader: ``tiny_capture`` through the real nfpcapd and nfdump, and the StopDDoS captures."""

from __future__ import annotations

import gzip
import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import polars as pl
import pytest

from netflowgen.read import FormatError, ReadOptions, detect_format, get_format, iter_checked, read_flows
from netflowgen.read.nfcapd import ProgramNotFound
from netflowgen.read.source import open_sources
from tests.read import tiny_capture

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nfpcapd") is None or shutil.which("nfdump") is None,
                       reason="nfdump/nfpcapd are not installed (apt-get install nfdump)"),
]

COLUMNS = ["ts_start", "ts_end", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "tcp_flags"]
KINDS = ["pcap", "pcap-ns", "pcapng"]


def read_all(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    flows, rejects = [], []
    for _source, fmt, checked in iter_checked(path):
        assert fmt.name == "pcap"
        flows.append(checked.flows)
        rejects.append(checked.rejects)
    return pl.concat([read_flows([]), *flows]), pl.concat(rejects)


@pytest.mark.parametrize("kind", KINDS)
def test_exact_flows(kind: str, tmp_path: Path) -> None:
    capture = tiny_capture.write_pcap(tmp_path / f"tiny.{kind}", kind)
    (source,) = open_sources(capture)
    assert detect_format(source).name == "pcap"
    flows, rejects = read_all(capture)
    assert rejects.height == 0
    assert sorted(flows.select(COLUMNS).rows(), key=lambda f: (f[0], f[2])) == tiny_capture.EXPECTED_FLOWS
    assert sorted(flows["source_row"].to_list()) == list(range(1, 9))
    assert (flows["source_file"] == str(capture)).all()
    # Every IP packet is in a flow; the one ARP frame is not.
    assert tiny_capture.count_capture_packets(capture) == tiny_capture.CAPTURE_PACKETS
    assert flows["fwd_packets"].sum() == tiny_capture.FLOW_PACKETS == tiny_capture.CAPTURE_PACKETS - 1


def test_gzip_reads_like_plain(tmp_path: Path) -> None:
    capture = tiny_capture.write_pcap(tmp_path / "tiny.pcap")
    packed = tmp_path / "tiny.pcap.gz"
    packed.write_bytes(gzip.compress(capture.read_bytes()))
    plain, _ = read_all(capture)
    flows, rejects = read_all(packed)
    assert rejects.height == 0
    assert (flows["source_file"] == str(packed)).all()
    assert flows.drop("source_file").equals(plain.drop("source_file"))


def test_temporary_files_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    capture = tiny_capture.write_pcap(tmp_path / "tiny.pcap")
    packed = tmp_path / "tiny.pcap.gz"
    packed.write_bytes(gzip.compress(capture.read_bytes()))
    assert read_flows(packed).height == 8
    assert list(scratch.iterdir()) == []


def test_capture_longer_than_a_file_slot(tmp_path: Path) -> None:
    """nfpcapd writes one nfcapd file per 5 minutes of capture time: all of them are read.

    Reading a file, nfpcapd 1.7.1 does not split a flow at its 60 s idle timeout; it closes it at
    a file rotation once it is older than the 300 s active timeout, and flushes the rest at the end.
    """
    pkt = tiny_capture.packets()[-2]  # one IPv6 UDP packet of 68 bytes, repeated minutes apart
    times = [0, 200_000, 400_000, 650_000]
    capture = tiny_capture.write_pcap(tmp_path / "long.pcap", pkts=[tiny_capture.Packet(ms, pkt.frame) for ms in times])
    out = tmp_path / "nfpcapd"
    out.mkdir()
    subprocess.run(["nfpcapd", "-r", str(capture), "-w", str(out)], check=True, capture_output=True)
    assert len(list(out.glob("nfcapd.*"))) == 3
    flows, rejects = read_all(capture)
    assert rejects.height == 0
    t0 = tiny_capture.T0 * 1000
    got = sorted((int(f[0].timestamp() * 1000) - t0, int(f[1].timestamp() * 1000) - t0, f[2], f[3])
                 for f in flows.select("ts_start", "ts_end", "fwd_packets", "source_row").rows())
    assert [g[:3] for g in got] == [(0, 400_000, 3), (650_000, 650_000, 1)]
    assert sorted(g[3] for g in got) == [1, 2]
    assert flows["fwd_bytes"].sum() == 4 * 68


def test_truncated_capture_keeps_earlier_packets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    capture = tiny_capture.write_pcap(tmp_path / "tiny.pcap")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(capture.read_bytes()[:-30])  # the last (GRE) packet is cut short
    with caplog.at_level(logging.WARNING):
        flows, rejects = read_all(cut)
    # The loss is recorded where ingest keeps its reasons: one reject after the last record.
    assert rejects.height == 1
    assert rejects["source_row"][0] == flows.height + 1
    assert re.match(r"nfpcapd stopped reading the capture after \d+ packets: .*truncated dump file", rejects["reason"][0])
    assert flows["fwd_packets"].sum() == tiny_capture.FLOW_PACKETS - 1
    assert "10.1.0.1" not in flows["src_ip"].to_list()
    assert re.search(r"cut\.pcap: nfpcapd: .*truncated dump file", caplog.text)


def test_capture_bad_at_its_first_packet_is_an_error(tmp_path: Path) -> None:
    """Not rc 0 with no flows and a warning: no packet could be read, so nothing is a flow file."""
    data = bytearray(tiny_capture.write_pcap(tmp_path / "tiny.pcap").read_bytes())
    data[24 + 8 : 24 + 16] = b"\xff\xff\xff\x7f" * 2  # first packet: a capture length of 2 GB
    bad = tmp_path / "bad1.pcap"
    bad.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"bad1\.pcap: nfpcapd could not read any packet of the capture: .*length"):
        read_all(bad)


def test_not_a_capture(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\xd4\xc3\xb2\xa1garbage")
    with pytest.raises(FormatError, match=r"bad\.pcap: nfpcapd cannot turn the capture into flows"):
        read_all(bad)
    text = tmp_path / "text.pcap"
    text.write_text("hello")
    (source,) = open_sources(text)
    with pytest.raises(FormatError, match="not a pcap or pcapng capture"):
        list(get_format("pcap").read(source, ReadOptions()))


def test_missing_nfpcapd_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capture = tiny_capture.write_pcap(tmp_path / "tiny.pcap")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ProgramNotFound, match=r"`nfpcapd` program .* package `nfdump` \(apt-get install nfdump\)"):
        read_all(capture)


#: capture file -> (packets in the capture, packets in nfpcapd's flows). Differences, checked
#: packet by packet: SYNACK has 4 ARP frames and one IPv4 datagram in 2 fragments (reassembled):
#: 8000 - 4 - 1. The DNS capture has 1,209 IPv4 fragments in 527 trains: nfpcapd 1.7.1 rebuilds
#: 279 datagrams from 837 of them and drops the other 372 (189 incomplete trains, 195 fragments;
#: 59 complete trains it fails to rebuild, most of them arriving out of order, 177 fragments):
#: 4412 - 1209 + 279. Its one GRE packet counts as its inner packet.
STOPDDOS = {
    "amp.TCP.reflection.SYNACK.pcap": (8000, 7995),
    "amp.TCP.syn.optionallyACK.optionallysamePort.pcapng": (896, 896),
    "amp.UDP.bacnet.IOT.37810.pcapng": (9617, 9617),
    "amp.UDP.isakmp.pcap": (3984, 3984),
    "amp.UDP.snmp.src161.pcapng": (4373, 4373),
    "amp.dns.RRSIG.fragmented.pcap": (4412, 3482),
    "pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng": (9878, 9878),
    "pkt.TCP.synflood.spoofed.pcap": (37841, 37841),
}


def nfpcapd_info(capture: Path, out: Path) -> dict[str, int]:
    """Flows, Packets and Bytes of the flow files nfpcapd writes, as ``nfdump -I`` reports them."""
    out.mkdir()
    subprocess.run(["nfpcapd", "-r", str(capture), "-w", str(out)], check=True, capture_output=True)
    text = subprocess.run(["nfdump", "-I", "-R", str(out)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in re.findall(r"^(Flows|Packets|Bytes): (\d+)$", text, re.M)}


@pytest.mark.shared_data
def test_stopddos_captures(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "stopddos"
    captures = sorted(p for p in folder.iterdir() if p.suffix in (".pcap", ".pcapng"))
    assert [p.name for p in captures] == sorted(STOPDDOS)
    for capture in captures:
        flows, rejects = read_all(capture)
        info = nfpcapd_info(capture, tmp_path / capture.name)
        assert flows.height + rejects.height == info["Flows"], capture.name
        assert rejects.height == 0, capture.name
        assert (flows["fwd_packets"].sum(), flows["fwd_bytes"].sum()) == (info["Packets"], info["Bytes"]), capture.name
        assert (tiny_capture.count_capture_packets(capture), info["Packets"]) == STOPDDOS[capture.name], capture.name
