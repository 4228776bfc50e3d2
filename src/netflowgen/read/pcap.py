"""Packet captures (pcap and pcapng), turned into flows by the real ``nfpcapd``.

``nfpcapd -r CAPTURE -w DIR`` builds flow records the way an nfdump probe does and writes them as
nfcapd files into DIR (one file per 5-minute slot of capture time, ``nfcapd.YYYYMMDDhhmm``), then
the nfcapd reader streams them through ``nfdump -R DIR``. ``source_file`` is the capture,
``source_row`` the flow record number.

What nfpcapd does with packets (nfdump 1.7.1), so that packet totals of the flows can be
compared with the capture:

* every IP packet ends up in a record: what is still in its flow cache is flushed when the
  capture ends. Reading a file, it closes a flow only at a file rotation (every 5 minutes of
  capture time) once the flow is older than the active timeout (300 s); the 60 s idle timeout
  does not split flows, so one record can span minutes of silence;
* each DNS packet (port 53) is a record of its own;
* non-IP frames (ARP, ...) make no flow;
* IPv4 fragments are reassembled and counted as one packet; fragments of datagrams it cannot
  complete (missing fragments, some out-of-order trains) make no flow;
* a GRE-tunnelled packet is counted as its inner packet.

A capture cut short in its last packet (``truncated dump file``) keeps the flows of the packets
before it; nfpcapd's message is logged.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Iterator

from netflowgen.read.base import FlowFormat, FormatError, ReadOptions
from netflowgen.read.nfcapd import read_nfdump, require_program
from netflowgen.read.source import Source
from netflowgen.read.validate import Checked

__all__ = ["FORMAT", "PCAP_MAGICS"]

log = logging.getLogger(__name__)

#: pcap (microsecond and nanosecond, both byte orders) and pcapng section header.
PCAP_MAGICS = (
    b"\xa1\xb2\xc3\xd4",
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x4d\x3c\xb2\xa1",
    b"\x0a\x0d\x0d\x0a",
)


def _sniff(head: bytes, name: str) -> bool:
    return head[:4] in PCAP_MAGICS


def _capture_to_nfcapd(capture: str, flow_dir: str, name: str) -> None:
    """Run nfpcapd over the capture; its flow files land in ``flow_dir``."""
    command = [require_program("nfpcapd"), "-r", capture, "-w", flow_dir]
    log.debug("%s: running %s", name, " ".join(command))
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    if done.returncode != 0:
        raise FormatError(f"{name}: nfpcapd cannot turn the capture into flows (exit status {done.returncode}): {output}")
    for line in output.splitlines():
        if "error" in line.lower():
            log.warning("%s: nfpcapd: %s", name, line.strip())
        elif line.startswith("Ident:"):
            log.info("%s: nfpcapd: %s", name, line.strip())


def _read(source: Source, options: ReadOptions) -> Iterator[Checked]:
    if not _sniff(source.head(4), source.inner_name):
        raise FormatError(f"{source.name}: not a pcap or pcapng capture (unknown magic number)")
    with source.local_path() as path, tempfile.TemporaryDirectory(prefix="netflowgen-nfpcapd-") as flow_dir:
        _capture_to_nfcapd(str(path), flow_dir, source.name)
        yield from read_nfdump(["-R", flow_dir], source.name, options)


FORMAT = FlowFormat(
    name="pcap",
    description="pcap/pcapng packet captures, turned into flows with nfpcapd (package nfdump)",
    sniff=_sniff,
    read=_read,
    extensions=(".pcap", ".pcapng", ".cap"),
)
