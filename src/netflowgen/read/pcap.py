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

A capture nfpcapd stops reading early (cut short in a packet: ``truncated dump file``, or a
damaged packet header) keeps the flows of the packets before it and gets one reject after its
last record that gives nfpcapd's message and the packets it read, so the loss is in the rejects
and the manifest; a capture of which not one packet could be read is a :class:`FormatError`.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
from collections.abc import Iterator

import polars as pl

from netflowgen.read.base import FlowFormat, FormatError, ReadOptions
from netflowgen.read.nfcapd import read_nfdump, require_program
from netflowgen.read.source import Source
from netflowgen.read.validate import REJECT_SCHEMA, Checked
from netflowgen.schema import empty_flows

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


def _capture_to_nfcapd(capture: str, flow_dir: str, name: str) -> tuple[int | None, list[str]]:
    """Run nfpcapd over the capture; its flow files land in ``flow_dir``. Returns the packets it
    says it processed (None if it does not say) and its error lines."""
    # -B: nfpcapd 1.7 sets up a flow cache of 524,288 nodes before the first packet (80 ms and
    # 160 MB for any capture) and grows it when a capture has more flows at once; later nfdump
    # starts at 8,192. The same flows either way (all 14 captures of ../shared/data, up to 37,669
    # flows, compared field by field), in a tenth of the time for a small capture.
    command = [require_program("nfpcapd"), "-r", capture, "-w", flow_dir, "-B", "8192"]
    log.debug("%s: running %s", name, " ".join(command))
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    if done.returncode != 0:
        raise FormatError(f"{name}: nfpcapd cannot turn the capture into flows (exit status {done.returncode}): {output}")
    errors = []
    processed = None
    for line in output.splitlines():
        if "error" in line.lower():
            log.warning("%s: nfpcapd: %s", name, line.strip())
            errors.append(line.strip())
        elif line.startswith("Ident:"):
            log.info("%s: nfpcapd: %s", name, line.strip())
        found = re.match(r"\s*(?:Total:\s*)?Processed:\s*(\d+)", line)
        if found:
            processed = max(processed or 0, int(found.group(1)))
    return processed, errors


def _stopped(name: str, next_record: int, processed: int | None, errors: list[str]) -> pl.DataFrame:
    """One reject recording that nfpcapd stopped before the end of the capture."""
    read = "" if processed is None else f" after {processed:,} packets"
    return pl.DataFrame(
        {
            "source_file": [name],
            "source_row": [next_record],
            "reason": [f"nfpcapd stopped reading the capture{read}: {errors[0]}"],
            "raw": ["\n".join(errors)[:500]],
        },
        schema=REJECT_SCHEMA,
    )


def _read(source: Source, options: ReadOptions) -> Iterator[Checked]:
    if not _sniff(source.head(4), source.inner_name):
        raise FormatError(f"{source.name}: not a pcap or pcapng capture (unknown magic number)")
    with source.local_path() as path, tempfile.TemporaryDirectory(prefix="netflowgen-nfpcapd-") as flow_dir:
        processed, errors = _capture_to_nfcapd(str(path), flow_dir, source.name)
        if errors and not processed:
            raise FormatError(f"{source.name}: nfpcapd could not read any packet of the capture: {errors[0]}")
        records = 0
        for checked in read_nfdump(["-R", flow_dir], source.name, options):
            records += checked.flows.height + checked.rejects.height
            yield checked
        if errors:
            yield Checked(empty_flows(), _stopped(source.name, records + 1, processed, errors))


FORMAT = FlowFormat(
    name="pcap",
    description="pcap/pcapng packet captures, turned into flows with nfpcapd (package nfdump)",
    sniff=_sniff,
    read=_read,
    extensions=(".pcap", ".pcapng", ".cap"),
)
