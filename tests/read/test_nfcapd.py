"""nfcapd reader: files nfpcapd writes at test time from ``tiny_capture``, read through nfdump."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import polars as pl
import pytest

from tests.read import tiny_capture
from netflowgen.read import FormatError, ReadOptions, detect_format, get_format, iter_checked, read_flows
from netflowgen.read.nfcapd import ProgramNotFound
from netflowgen.read.source import open_sources

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nfpcapd") is None or shutil.which("nfdump") is None,
                       reason="nfdump/nfpcapd are not installed (apt-get install nfdump)"),
]

COLUMNS = ["ts_start", "ts_end", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "tcp_flags"]


@pytest.fixture(scope="module")
def nfcapd_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("nfcapd")
    return tiny_capture.nfpcapd(tiny_capture.write_pcap(work / "tiny.pcap"), work / "flows")


def read_all(path: Path, **options: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    flows, rejects = [], []
    for _source, fmt, checked in iter_checked(path, ReadOptions(**options)):  # type: ignore[arg-type]
        assert fmt.name == "nfcapd"
        flows.append(checked.flows)
        rejects.append(checked.rejects)
    return pl.concat([read_flows([]), *flows]), pl.concat(rejects)


def nfdump_info(path: Path) -> dict[str, int]:
    """Flows, Packets and Bytes as ``nfdump -I`` reports them."""
    out = subprocess.run(["nfdump", "-I", "-r", str(path)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in re.findall(r"^(Flows|Packets|Bytes): (\d+)$", out, re.M)}


def test_sniffed_by_magic(nfcapd_file: Path) -> None:
    assert nfcapd_file.read_bytes()[:2] == struct.pack("<H", 0xA50C)
    (source,) = open_sources(nfcapd_file)
    assert detect_format(source).name == "nfcapd"


def test_exact_flows(nfcapd_file: Path) -> None:
    flows, rejects = read_all(nfcapd_file)
    assert rejects.height == 0
    got = sorted(flows.select(COLUMNS).rows(), key=lambda f: (f[0], f[2]))
    assert got == tiny_capture.EXPECTED_FLOWS
    assert flows["rev_packets"].sum() == 0 and flows["rev_bytes"].sum() == 0
    assert flows["quality"].sum() == 0
    # Record numbers in nfdump's order; the tunnel line before the GRE-carried record is no record.
    assert sorted(flows["source_row"].to_list()) == list(range(1, 9))
    assert (flows["source_file"] == str(nfcapd_file)).all()


def test_counts_match_nfdump_info(nfcapd_file: Path) -> None:
    flows, rejects = read_all(nfcapd_file)
    info = nfdump_info(nfcapd_file)
    assert info == {"Flows": 8, "Packets": tiny_capture.FLOW_PACKETS, "Bytes": 794}
    assert flows.height + rejects.height == info["Flows"]
    assert (flows["fwd_packets"].sum(), flows["fwd_bytes"].sum()) == (info["Packets"], info["Bytes"])


def test_small_batches_keep_record_numbers(nfcapd_file: Path) -> None:
    whole, _ = read_all(nfcapd_file)
    pieces, _ = read_all(nfcapd_file, block_bytes=64)
    assert pieces.equals(whole)


def test_gzip_reads_like_plain(nfcapd_file: Path, tmp_path: Path) -> None:
    packed = tmp_path / "flows.nfcapd.gz"
    packed.write_bytes(gzip.compress(nfcapd_file.read_bytes()))
    plain, _ = read_all(nfcapd_file)
    flows, rejects = read_all(packed)
    assert rejects.height == 0
    assert (flows["source_file"] == str(packed)).all()
    assert flows.drop("source_file").equals(plain.drop("source_file"))


def test_missing_nfdump_names_the_package(nfcapd_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ProgramNotFound, match=r"apt-get install nfdump"):
        read_all(nfcapd_file)


def test_not_an_nfcapd_file(tmp_path: Path) -> None:
    other = tmp_path / "notes.nfcapd"
    other.write_bytes(b"hello\n")
    (source,) = open_sources(other)
    with pytest.raises(FormatError, match="not an nfcapd file"):
        list(get_format("nfcapd").read(source, ReadOptions()))


def test_unreadable_file_raises_with_nfdump_message(nfcapd_file: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.nfcapd"
    cut.write_bytes(nfcapd_file.read_bytes()[:100])
    with pytest.raises(FormatError, match=r"cut.nfcapd: nfdump cannot read the file: .*error"):
        read_all(cut)


def test_damaged_block_keeps_records_before_it(tmp_path: Path) -> None:
    """A file whose third data block is damaged: the records of the first two, then one reject."""
    capture = tiny_capture.write_pcap(tmp_path / "many.pcap", pkts=tiny_capture.many_flows(30_000))
    good = tiny_capture.nfpcapd(capture, tmp_path / "flows")
    data = bytearray(good.read_bytes())
    blocks = _data_blocks(data)
    assert len(blocks) >= 3
    offset, _records = blocks[2]
    struct.pack_into("<I", data, offset + 4, 50_000_000)  # block size far beyond the file
    damaged = tmp_path / "damaged.nfcapd"
    damaged.write_bytes(bytes(data))
    before = sum(n for _, n in blocks[:2])
    flows, rejects = read_all(damaged)
    assert flows.height == before
    assert rejects.select("source_row").to_series().to_list() == [before + 1]
    assert rejects["reason"][0].startswith("nfdump could not read the rest of the file: ")


def _data_blocks(data: bytearray) -> list[tuple[int, int]]:
    """(offset, records) of the data blocks: headers of uint32 records, uint32 size, uint16 type 3."""
    blocks, pos = [], 0
    while pos + 12 <= len(data):
        records, size, kind = struct.unpack_from("<IIH", data, pos)
        if kind == 3 and 0 < records and pos + 12 + size <= len(data) and size >= records * 8:
            blocks.append((pos, records))
            pos += 12 + size
        else:
            pos += 1
    return blocks


@pytest.mark.shared_data
def test_real_nfcapd_file(shared_data: Path) -> None:
    path = shared_data / "stratosphere-argus" / "test1-malicious.nfdump"
    flows, rejects = read_all(path)
    info = nfdump_info(path)
    assert info == {"Flows": 4593, "Packets": 4652, "Bytes": 241025}
    assert flows.height + rejects.height == 4593
    assert rejects.height == 0
    assert (flows["fwd_packets"].sum(), flows["fwd_bytes"].sum()) == (4652, 241025)
    first = flows.filter(pl.col("source_row") == 1).row(0, named=True)
    assert first["ts_start"].isoformat() == "2018-01-12T15:37:30.942000+00:00"
    assert (first["src_ip"], first["dst_ip"], first["src_port"], first["dst_port"]) == ("147.32.80.119", "147.32.82.62", 52324, 902)


def test_a_file_nfdump_loops_on_is_an_error_not_a_hang(nfcapd_file: Path, tmp_path: Path) -> None:
    """Found by benchmarks/fuzz.py: an appendix record of size 0 in a block that claims 2**32
    records makes nfdump 1.7.1 print "Error process appendix record type: 3" for ever, on its
    error output, with nothing on standard output. The reader stops it and names the file."""
    data = bytearray(nfcapd_file.read_bytes())
    appendix = struct.unpack_from("<Q", data, 24)[0]  # fileHeaderV2_t.offAppendix
    struct.pack_into("<I", data, appendix, 0xFFFFFFFF)  # the block's record count
    struct.pack_into("<HH", data, appendix + 12, 3, 0)  # its first record: type 3, size 0
    looping = tmp_path / "looping.nfcapd"
    looping.write_bytes(bytes(data))
    with pytest.raises(subprocess.TimeoutExpired):  # the file really makes nfdump loop
        subprocess.run(["nfdump", "-I", "-r", str(looping)], capture_output=True, timeout=2)
    with pytest.raises(FormatError, match=r"looping.nfcapd: nfdump repeats 'Error process appendix record type: 3' "
                                          r"without end \(over 1 MiB of error output\): the file is damaged"):
        read_all(looping)


def test_nfdump_looping_after_some_records_keeps_them_and_says_where(nfcapd_file: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The same loop while the records stream: the records read stay, one reject says why the
    rest is missing (a stand-in nfdump prints the real records, then loops on its error output)."""
    real = shutil.which("nfdump")
    fake = tmp_path / "bin" / "nfdump"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\ncase "$1" in -I) exec {real} "$@";; esac\n{real} "$@"\n'
                    'while :; do echo "Error process appendix record type: 7" >&2; done\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    flows, rejects = read_all(nfcapd_file)
    assert flows.height == nfdump_info(nfcapd_file)["Flows"] > 0
    assert rejects.height == 1 and rejects["source_row"][0] == flows.height + 1
    assert "nfdump repeats 'Error process appendix record type: 7' without end" in rejects["reason"][0]
