"""Fuzzing at scale: every reader and the NetFlow decoder against generated and mutated inputs.

Targets, and what an input is for each:

* one per format ``netflowgen.read`` reads (zeek, zeek-json, argus, nfdump-csv, nprobe,
  cicflowmeter, csv through a column mapping, parquet, pcap, nfcapd): a seed mutated one to four
  times, read in-process with ``iter_checked`` (the format named for three inputs in four, detected
  for the rest). Seeds are slices of a few KB of the real captures in the shared data folder
  (NETFLOWGEN_SHARED_DATA, default ``../shared/data``: whole lines after the header, whole packets
  of captures), the authored fixtures of ``tests/read/fixtures``, and what the real tools make of
  those (``nfdump -o csv`` of the real nfcapd file; ``nfpcapd`` over the capture slices and the
  tests' tiny capture; Parquet tables of real slices and fixtures). Mutations: bits flipped, bytes
  inserted, deleted or repeated, the file cut short, 16/32-bit fields set to edge values, lines
  duplicated, swapped or deleted, delimiters and odd bytes (NUL, 0xff, BOM) inserted, a field
  replaced with junk, a huge number or nothing, dropped or added (JSON: values and keys); Parquet
  also at the table level (nulls, extreme values, wrong types and zones, missing or renamed
  columns, repeated or no rows). Every 50th input is a seed as it is;
* one per compressed wrapper (gz, bz2, xz, zst, zip): a text or Parquet seed, mutated or not,
  compressed (sometimes as two streams, or two zip members), and for half the inputs the compressed
  bytes damaged as well;
* ``netflow``, the NetFlow v5/v9/IPFIX decoder: datagrams in batches of 32 from up to three
  exporters: valid packets made with the tests' packet builders (random templates, options
  templates, sampling options, biflow reverse elements, data sets that follow them, v5 records), the same mutated (bytes flipped, inserted,
  deleted, cut, length/count/id fields set to edge values), and random bytes with and without a
  version number in front, fed to a decoder with default or tiny limits.

An input passes when the reader refuses it with its own error naming the file (``FormatError``,
``DamagedInput``, ``ChangedInput``) or returns rows that keep the contract, checked against the
file written (decompressed by the standard library, not the package): rows read = flows +
rejects (in text, every line holding data past the header, comments and nfdump's trailer is a flow
or a reject exactly once, and no row points at a line that is not there; nfcapd and pcap records
are numbered 1..N without a gap; every Parquet row comes out); every reject names its file, its
row and a reason; every flow obeys the canonical rules; rows from compressed data that does not
decompress are a failure. For the decoder, after every ``take``: per exporter, packets = decoded +
errors by reason, sets = decoded + skipped by reason, records = flows + rejects by reason (with
tiny limits, over all exporters: the decoder keeps that sum when it folds an address into
"other"); the packets counted = the datagrams fed; the frames hold exactly the flows and rejects
counted, with their positions, and flows obey the canonical rules. Any other exception (a Rust
panic included), a broken contract, a worker that dies, or an input running over ``--timeout`` (a
hang: an alarm in the worker, and the worker killed if native code holds on) is a failure. The
first inputs of each kind of failure (its error and where in the package, or the rule broken) are
saved under ``--crashes`` with seed, index, what was done to them and the traceback; the report
counts every kind, and the script exits with status 1.

An input is made from (``--seed``, target, index) alone, so a run is reproducible; the nfcapd
files nfpcapd makes at start hold the time they were made, so for those the saved input is the one
to replay. Inputs run in ``--workers`` processes (2: one per core here), reading in-process;
throughput is inputs (or datagrams) per second of wall time per target. A read costs 10 to 40 ms
(Polars plans each batch), so 10^5 inputs take about half an hour per reader on 2 cores. pcap and
nfcapd inputs run the real nfpcapd/nfdump (about 30 and 35 ms each, and a hang costs --timeout):
they get ``--external-inputs``.

    .venv/bin/python benchmarks/fuzz.py --json > fuzz.json      # full run: 3 to 6 hours on 2 cores
    .venv/bin/python benchmarks/fuzz.py --inputs 2000 --datagrams 20000 --external-inputs 100 --seconds 7
    .venv/bin/python benchmarks/fuzz.py --formats zeek,gz,netflow --seconds 60 --json
    .venv/bin/python benchmarks/fuzz.py --formats pcap --external-inputs 50000 --first 50000   # a run's second half
"""

from __future__ import annotations

import os

# Two worker processes share two cores: a Polars thread pool in each would only add contention over
# inputs of a few KB. Set before Polars is imported; spawned workers inherit it.
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import argparse
import bz2
import gzip
import io
import ipaddress
import json
import logging
import lzma
import math
import multiprocessing as mp
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import lru_cache
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the packet and capture builders the tests use

from harness import BenchmarkError, machine
from netflowgen.collect.netflow import Decoder
from netflowgen.read import (
    ChangedInput,
    DamagedInput,
    FormatError,
    ReadOptions,
    detect_format,
    format_names,
    iter_checked,
    read_flow_table,
)
from netflowgen.read.mapped_csv import CsvMapping, load_mapping, shipped_mappings
from netflowgen.read.source import Source, compression_of, open_sources
from netflowgen.read.validate import REJECT_SCHEMA, Checked
from netflowgen.schema import FLOW_SCHEMA, MAX_VALID_TS
from tests.collect import packets as P
from tests.read import tiny_capture

FIXTURES = REPO / "tests" / "read" / "fixtures"
WRAPPERS = {"gz": "gzip", "bz2": "bz2", "xz": "xz", "zst": "zstd", "zip": "zip"}
DECODER = "netflow"
#: Formats read through external programs (nfpcapd, nfdump): slower per input.
EXTERNAL = frozenset({"pcap", "nfcapd"})
BINARY = frozenset({"parquet", *EXTERNAL})
#: Text formats whose reader skips ``#`` lines as comments (the others read them as rows).
COMMENTED = frozenset({"zeek", "nprobe", "cicflowmeter"})
#: Text formats without a header line of column names.
HEADERLESS = frozenset({"zeek", "zeek-json"})
#: nfdump csv lines that are not records: its trailer and messages (repeated headers aside).
NFDUMP_NOT_RECORDS = frozenset({"Summary", "No matching flows", "No matched flows"})
NFDUMP_SUMMARY_HEADER = "flows,bytes,packets,avg_bps,avg_pps,avg_bpp"

SLICE_BYTES = 4096
FILES_PER_FORMAT = 6
SLICES_PER_FILE = 3
PLAIN_EVERY = 50
DATAGRAMS_PER_BATCH = 32
#: Failing inputs saved (and printed) per kind of failure, and per target in all.
SAVED_PER_SIGNATURE = 3
SAVED_PER_TARGET = 50

INVARIANTS = {
    "text": "rows = flows + rejects, each data line once",
    "external": "records numbered 1..N, each once",
    "parquet": "flows + rejects = Parquet rows",
    "decoder": "packets, sets, records add up by reason",
}

# --- seeds -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    format: str
    name: str
    """File name it is written under (readers take hints from it)."""
    data: bytes
    origin: str
    mapping: str | None = None
    """Column mapping (a shipped name or a TOML path), for format ``csv``."""


@dataclass
class Corpus:
    seeds: dict[str, list[Seed]]
    notes: dict[str, str] = field(default_factory=dict)
    """Seeds it lacks, and why (no shared data, no nfdump)."""

    def wrapped(self) -> list[Seed]:
        """Seeds that compressed wrappers hold: every format read in-process."""
        return [s for fmt, seeds in sorted(self.seeds.items()) if fmt not in EXTERNAL for s in seeds]


def shared_data_dir() -> Path:
    return Path(os.environ.get("NETFLOWGEN_SHARED_DATA", REPO.parent / "shared" / "data"))


def _header_lines(fmt: str, lines: list[bytes], mapping: str | None) -> int:
    """Lines before the first row: Zeek's ``#`` directives, a mapping's skipped lines and header,
    the header line of the other CSV formats."""
    if fmt == "zeek":
        n = 0
        while n < len(lines) and lines[n].startswith(b"#"):
            n += 1
        return n
    if fmt == "zeek-json":
        return 0
    if fmt == "csv":
        m = _mapping(mapping or "")
        return m.skip_lines + int(m.header)
    return 1


@lru_cache(maxsize=None)
def _mapping(mapping: str) -> CsvMapping:
    return load_mapping(mapping)


def _text_slices(fmt: str, name: str, data: bytes, origin: str, rng: random.Random, mapping: str | None = None) -> list[Seed]:
    """The header with a few KB of whole rows: from the start, and from random rows further on."""
    lines = data.splitlines(keepends=True)
    h = _header_lines(fmt, lines, mapping)
    head, body, trailer = lines[:h], lines[h:], []
    if fmt == "nfdump-csv" and b"Summary\n" in body:  # keep nfdump's trailer after the rows
        cut = body.index(b"Summary\n")
        body, trailer = body[:cut], body[cut:]
    out = []
    for k in range(SLICES_PER_FILE if body else 1):
        start = 0 if k == 0 else rng.randrange(len(body))
        size = sum(map(len, head + trailer))
        rows: list[bytes] = []
        for line in body[start:]:
            if rows and size + len(line) > SLICE_BYTES:
                break
            rows.append(line)
            size += len(line)
        where = f"lines {h + start + 1}-{h + start + len(rows)}" if rows else "header"
        out.append(Seed(fmt, name, b"".join(head + rows + trailer), f"{origin} ({where})", mapping))
    return out


def capture_head(data: bytes, size: int) -> bytes:
    """The first whole packets (pcap) or blocks (pcapng) of a capture, about ``size`` bytes."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":  # pcapng: blocks, each with its length at offset 4
        order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        pos = 0
        while pos + 12 <= len(data) and pos < size:
            n = struct.unpack_from(order + "I", data, pos + 4)[0]
            if n < 12:
                break
            pos += n
        return data[: min(pos, len(data))]
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos = 24
    while pos + 16 <= len(data) and pos < size:
        pos += 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
    return data[: min(pos, len(data))]


def _read_source(source: Source) -> bytes:
    with source.open() as f:
        return f.read()


def _recognised(path: Path) -> list[tuple[Source, str | None]]:
    try:
        sources = open_sources(path)
    except (ValueError, OSError):
        return []
    out: list[tuple[Source, str | None]] = []
    for source in sources:
        try:
            out.append((source, detect_format(source).name))
        except (ValueError, OSError):  # FormatError is a ValueError: README, licence, or a mapped CSV
            out.append((source, None))
    return out


def _mapping_for(seed_text: bytes, work: Path) -> str | None:
    """The shipped mapping that reads a CSV no reader recognises, if one does."""
    path = work / "probe.csv"
    path.write_bytes(seed_text)
    for name in shipped_mappings():
        try:
            rows = sum(c.flows.height for _s, _f, c in iter_checked(path, ReadOptions(format="csv", mapping=Path(name))))
        except ValueError:
            continue
        if rows:
            return name
    return None


def _spread(items: list[Any], n: int) -> list[Any]:
    """``n`` items spread evenly over a sorted list (the first, the last and between)."""
    if len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def _file_seeds(sources: list[tuple[Source, str | None]], origin: str, rng: random.Random, work: Path,
                whole: bool = False) -> list[Seed]:
    """Seeds of recognised files (a CSV no reader recognises, through its mapping): binary files
    whole, text files ``whole`` or as slices."""
    out = []
    for source, fmt in sources:
        data = _read_source(source)
        name = Path(source.inner_name).name
        where = f"{origin}:{source.member}" if source.member else origin
        mapping = None
        if fmt is None:
            sibling = source.path.with_suffix(".toml")
            mapping = str(sibling) if sibling.is_file() else _mapping_for(data[: SLICE_BYTES * 4], work)
            if mapping is None:
                continue
            fmt = "csv"
        if fmt in BINARY or whole:
            out.append(Seed(fmt, name, data, where, mapping))
        else:
            out += _text_slices(fmt, name, data, where, rng, mapping)
    return out


def _shared_seeds(root: Path, rng: random.Random, work: Path) -> dict[str, list[Seed]]:
    found: dict[str | None, list[tuple[Source, str | None]]] = defaultdict(list)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix.lower() in (".md", ".txt") or path.name.startswith(("LICENSE", ".")):
            continue
        for source, fmt in _recognised(path):
            found[fmt].append((source, fmt))
    seeds: dict[str, list[Seed]] = defaultdict(list)
    for fmt, sources in found.items():
        for source, _ in _spread(sources, FILES_PER_FORMAT):
            origin = f"shared:{source.path.relative_to(root)}"
            if fmt == "pcap":
                data = source.path.read_bytes()
                seeds["pcap"] += [Seed("pcap", source.path.name, capture_head(data, n), f"{origin} (head {n} B)")
                                  for n in (2048, 8192)]
                continue
            for seed in _file_seeds([(source, fmt)], origin, rng, work):
                seeds[seed.format].append(seed)
    return seeds


def _fixture_seeds(rng: random.Random, work: Path) -> dict[str, list[Seed]]:
    seeds: dict[str, list[Seed]] = defaultdict(list)
    for path in sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.suffix != ".toml"):
        for seed in _file_seeds(_recognised(path), f"fixture:{path.relative_to(FIXTURES)}", rng, work, whole=True):
            seeds[seed.format].append(seed)
    return seeds


def _tool_seeds(captures: list[Seed], nfcapd_files: list[Seed], rng: random.Random, work: Path) -> dict[str, list[Seed]]:
    """What nfpcapd makes of the capture seeds (nfcapd), and nfdump's csv of the real nfcapd files."""
    seeds: dict[str, list[Seed]] = defaultdict(list)
    for i, capture in enumerate(captures):
        (work / "capture").write_bytes(capture.data)
        out = work / f"nfpcapd-{i}"
        out.mkdir()
        subprocess.run(["nfpcapd", "-r", str(work / "capture"), "-w", str(out)], capture_output=True, check=False)
        seeds["nfcapd"] += [Seed("nfcapd", f.name, f.read_bytes(), f"nfpcapd of {capture.origin}") for f in sorted(out.iterdir())]
    for nf in nfcapd_files:
        (work / "flows.nfcapd").write_bytes(nf.data)
        done = subprocess.run(["nfdump", "-r", str(work / "flows.nfcapd"), "-o", "csv"], capture_output=True, check=False)
        if done.returncode == 0:
            seeds["nfdump-csv"] += _text_slices("nfdump-csv", "flows.csv", done.stdout, f"nfdump -o csv of {nf.origin}", rng)
    return seeds


def _parquet_seeds(seeds: dict[str, list[Seed]], work: Path) -> list[Seed]:
    """Canonical flow tables of real slices (with and without provenance columns), and the nProbe
    and CICFlowMeter fixtures as Parquet tables of their own columns."""
    out = []
    for fmt in ("zeek", "argus"):
        for seed in seeds.get(fmt, [])[:: max(1, len(seeds.get(fmt, [])) // 3)][:3]:
            path = work / seed.name
            path.write_bytes(seed.data)
            table = read_flow_table(path, ReadOptions(format=fmt))
            for kept, what in ((table, "with provenance"), (table.drop("quality", "source_file", "source_row"), "bare")):
                buf = io.BytesIO()
                kept.write_parquet(buf)
                out.append(Seed("parquet", "flows.parquet", buf.getvalue(), f"canonical table ({what}) of {seed.origin}"))
    for fmt in ("nprobe", "cicflowmeter"):
        for seed in seeds.get(fmt, []):
            if not seed.origin.startswith("fixture:"):
                continue
            first = seed.data.split(b"\n", 1)[0]
            delimiter = max(",|;\t", key=lambda c: first.count(c.encode()))
            try:
                frame = pl.read_csv(io.BytesIO(seed.data), separator=delimiter, infer_schema_length=None,
                                    truncate_ragged_lines=True)
            except pl.exceptions.PolarsError:  # a fixture made to be broken
                continue
            buf = io.BytesIO()
            frame.write_parquet(buf)
            out.append(Seed("parquet", Path(seed.name).stem + ".parquet", buf.getvalue(), f"{seed.origin} as Parquet"))
    return out


def build_corpus(seed: int, wanted: set[str]) -> Corpus:
    """Seeds of every format; nfpcapd and nfdump run only where a ``wanted`` target uses what they make."""
    rng = random.Random(f"{seed}/corpus")
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="netflowgen-fuzz-corpus-") as tmp:
        work = Path(tmp)
        root = shared_data_dir()
        if (root / "README.md").is_file():
            shared = _shared_seeds(root, rng, work)
        else:
            shared = {}
            notes["shared data"] = f"not found at {root} (set NETFLOWGEN_SHARED_DATA): fixtures only"
        seeds: dict[str, list[Seed]] = defaultdict(list)
        for part in (_fixture_seeds(rng, work), shared):
            for fmt, found in part.items():
                seeds[fmt] += found
        seeds["pcap"] += [Seed("pcap", f"tiny.{kind}", tiny_capture.write_pcap(work / f"tiny.{kind}", kind).read_bytes(),
                               f"tests.read.tiny_capture ({kind})") for kind in ("pcap", "pcapng")]
        if wanted & {"nfcapd", "nfdump-csv", *WRAPPERS}:
            if shutil.which("nfpcapd") and shutil.which("nfdump"):
                made = _tool_seeds(seeds["pcap"] if "nfcapd" in wanted else [], list(seeds.get("nfcapd", [])), rng, work)
                for fmt, found in made.items():
                    seeds[fmt] += found
            else:
                notes["nfdump"] = "nfdump/nfpcapd not installed: no nfcapd made from captures, no nfdump csv of real files"
        seeds["parquet"] += _parquet_seeds(seeds, work)
    return Corpus({fmt: found for fmt, found in seeds.items() if found}, notes)


# --- mutations ---------------------------------------------------------------------------------

JUNK: tuple[bytes, ...] = (
    b"-", b"(empty)", b"0", b"-1", b"-0", b"1e308", b"-1e308", b"NaN", b"nan", b"inf", b"-inf", b"0x", b"0x-1",
    b"0xFFFFFFFFFFFFFFFFFF", b"999.999.999.999", b"1.2.3", b"::", b"::ffff:1.2.3.4", b"fe80::1%eth0", b"00:11:22:33:44:55",
    b"2100-01-01 00:00:00", b"0000-00-00 00:00:00", b"1969-12-31 23:59:59.999999", b"2024-02-30 25:61:61",
    b"2024/13/01 00:00:00.000000", b"4102444800", b"-4102444800", b"253402300800.5", b"tcp", b"TCP ", b"ICMP6",
    b"ipv6-icmp", b"arp", b"llc", b"...A.R..", b"FSRPAUEC", b"ZZZZZZZZ", b"  <->", b"who", b"null", b"true", b'"',
    b'"1"', b"\\", b"\\x09", b"\x00", b"\xc3\x28", b"\xff\xfe", "\u00fc\u65e5\u672c".encode(), "\u202e".encode(),
)
HUGE: tuple[bytes, ...] = (
    b"9223372036854775807", b"9223372036854775808", b"-9223372036854775809", b"18446744073709551616",
    b"340282366920938463463374607431768211456", b"1" * 400, b"9" * 5000, b"1e400", b"179769313486231570" + b"0" * 300,
)
DELIMITERS = (b"\t", b",", b" ", b"   ", b";", b"|", b"\n", b"\r\n", b"\r", b"#")
SPECIAL = (b"\x00", b"\xff", b"\xff\xfe", b"\x80", b"\xc3", b"\x00\x00\x00\x00", b"\xef\xbb\xbf")


def mutate_bytes(data: bytes, rng: random.Random, ops: list[str]) -> bytes:
    """One byte-level mutation, for any file (compressed bytes included); ``ops`` gets what it did."""
    kind = rng.choice(("flip", "flip", "byte", "insert", "delete", "repeat", "truncate", "edge"))
    b = bytearray(data)
    pos = rng.randrange(len(b) + 1)
    if kind in ("flip", "byte", "edge") and not b:
        kind = "insert"
    if kind == "flip":
        pos %= len(b)
        bit = 1 << rng.randrange(8)
        b[pos] ^= bit
        ops.append(f"flip bit {bit} at byte {pos}")
    elif kind == "byte":
        pos %= len(b)
        b[pos] = rng.randrange(256)
        ops.append(f"set byte {pos} to {b[pos]}")
    elif kind == "insert":
        what = rng.choice((rng.randbytes(rng.randint(1, 8)), rng.choice(SPECIAL)))
        b[pos:pos] = what
        ops.append(f"insert {what!r} at {pos}")
    elif kind == "delete":
        n = rng.randint(1, 64)
        del b[pos : pos + n]
        ops.append(f"delete {n} bytes at {pos}")
    elif kind == "repeat":
        n = rng.randint(1, 256)
        b[pos:pos] = b[pos : pos + n]
        ops.append(f"repeat {n} bytes at {pos}")
    elif kind == "truncate":
        del b[pos:]
        ops.append(f"cut at {pos}")
    else:  # lengths, counts, ids, times: a 16- or 32-bit field set to an edge value, either byte order
        width, values = rng.choice(((2, (0, 1, 0x7FFF, 0x8000, 0xFFFF)), (4, (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF))))
        value, order = rng.choice(values), rng.choice("<>")
        pos = min(pos, max(len(b) - width, 0))
        b[pos : pos + width] = value.to_bytes(width, "little" if order == "<" else "big")
        ops.append(f"set {8 * width}-bit {value:#x} ({order}) at {pos}")
    return bytes(b)


def _edit_json(body: bytes, rng: random.Random, ops: list[str]) -> bytes:
    try:
        obj = json.loads(body)
    except ValueError:
        return mutate_bytes(body, rng, ops)
    if not isinstance(obj, dict) or not obj:
        return mutate_bytes(body, rng, ops)
    key = rng.choice(sorted(obj))
    kind = rng.choice(("junk", "huge", "null", "nested", "drop", "rename", "float"))
    if kind == "junk":
        obj[key] = rng.choice(JUNK).decode("utf-8", "replace")
    elif kind == "huge":  # spliced in as text: json.dumps refuses integers of over 4300 digits
        obj[key] = "\0huge\0"
        number = rng.choice(("9" * 20, "-" + "9" * 40, "1" + "0" * 5000, "1e400", "-0.0e-999"))
        ops.append(f"json huge {key!r}")
        return json.dumps(obj).replace('"\\u0000huge\\u0000"', number).encode()
    elif kind == "null":
        obj[key] = None
    elif kind == "nested":
        obj[key] = rng.choice(([obj[key]], {"v": obj[key]}, [], {}, True))
    elif kind == "drop":
        del obj[key]
    elif kind == "rename":
        obj[key + "_"] = obj.pop(key)
    else:
        obj[key] = rng.choice((math.inf, -math.inf, math.nan, 1e308, -0.0))
    ops.append(f"json {kind} {key!r}")
    return json.dumps(obj).encode()


def _edit_field(line: bytes, rng: random.Random, ops: list[str]) -> bytes:
    body = line.rstrip(b"\r\n")
    end = line[len(body) :]
    if body.lstrip().startswith(b"{"):
        return _edit_json(body, rng, ops) + end
    sep = max((b"\t", b",", b";", b"|", b" "), key=body.count)
    fields = body.split(sep)
    i = rng.randrange(len(fields))
    kind = rng.choice(("junk", "junk", "huge", "empty", "drop", "add", "copy"))
    if kind == "junk":
        fields[i] = rng.choice(JUNK)
    elif kind == "huge":
        fields[i] = rng.choice(HUGE)
    elif kind == "empty":
        fields[i] = b""
    elif kind == "drop":
        del fields[i]
    elif kind == "add":
        fields.insert(i, rng.choice(JUNK))
    else:
        fields[i] = fields[rng.randrange(len(fields))]
    ops.append(f"field {i}: {kind}")
    return sep.join(fields) + end


def mutate_text(data: bytes, rng: random.Random, ops: list[str]) -> bytes:
    kind = rng.choice(("bytes", "bytes", "field", "field", "field", "duplicate", "swap", "drop_line", "insert"))
    lines = data.splitlines(keepends=True)
    if kind == "bytes" or not lines:
        return mutate_bytes(data, rng, ops)
    i = rng.randrange(len(lines))
    if kind == "field":
        lines[i] = _edit_field(lines[i], rng, ops)
        ops[-1] = f"line {i + 1} {ops[-1]}"
    elif kind == "duplicate":
        lines.insert(i, lines[i])
        ops.append(f"duplicate line {i + 1}")
    elif kind == "swap":
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        ops.append(f"swap lines {i + 1} and {j + 1}")
    elif kind == "drop_line":
        del lines[i]
        ops.append(f"delete line {i + 1}")
    else:
        what = rng.choice((rng.choice(DELIMITERS), rng.choice(SPECIAL)))
        pos = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:pos] + what + lines[i][pos:]
        ops.append(f"insert {what!r} in line {i + 1} at {pos}")
    return b"".join(lines)


def _extreme(dtype: pl.DataType, rng: random.Random) -> Any:
    if dtype.is_integer():
        return rng.choice((2**63 - 1, -(2**63), -1, 0, 2**32, 65536))
    if dtype.is_float():
        return rng.choice((math.inf, -math.inf, math.nan, 1e308))
    if isinstance(dtype, pl.Datetime):
        return datetime(rng.choice((1, 1900, 1969, 2099, 2100, 9999)), 12, 31)
    return rng.choice(JUNK + HUGE).decode("utf-8", "replace")


def _edit_table(df: pl.DataFrame, rng: random.Random, ops: list[str]) -> pl.DataFrame:
    if not df.columns:
        return df
    col = rng.choice(df.columns)
    dtype = df.schema[col]
    kind = rng.choice(("null", "extreme", "extreme", "as_text", "retype", "drop", "rename", "repeat_rows", "no_rows", "zone"))
    if kind in ("null", "extreme") and df.height:
        k = rng.randrange(df.height)
        value = None if kind == "null" else _extreme(dtype, rng)
        new = pl.lit(value).cast(dtype, strict=False) if value is not None else pl.lit(None, dtype)
        df = df.with_columns(pl.when(pl.int_range(pl.len()) == k).then(new).otherwise(pl.col(col)).alias(col))
        ops.append(f"table: {col} row {k + 1} = {value!r}")
    elif kind == "as_text":
        df = df.with_columns(pl.col(col).cast(pl.String))
        ops.append(f"table: {col} as text")
    elif kind == "retype":
        target = rng.choice((pl.Float64, pl.Int8, pl.UInt64, pl.Boolean, pl.Int64))
        df = df.with_columns(pl.col(col).cast(target, strict=False))
        ops.append(f"table: {col} cast to {target}")
    elif kind == "drop" and df.width > 1:
        df = df.drop(col)
        ops.append(f"table: drop {col}")
    elif kind == "rename":
        new_name = rng.choice((col.upper(), col + "_", " " + col))
        if new_name not in df.columns:
            df = df.rename({col: new_name})
            ops.append(f"table: rename {col} to {new_name!r}")
    elif kind == "repeat_rows":
        df = pl.concat([df, df.head(rng.randint(1, 5))])
        ops.append("table: repeat rows")
    elif kind == "no_rows":
        df = df.head(0)
        ops.append("table: no rows")
    elif isinstance(dtype, pl.Datetime):
        zone = rng.choice((None, "Asia/Tokyo", "America/St_Johns"))
        naive = zone is None or dtype.time_zone is None
        value = pl.col(col).dt.replace_time_zone(zone) if naive else pl.col(col).dt.convert_time_zone(zone)
        df = df.with_columns(value.alias(col))
        ops.append(f"table: {col} zone {zone}")
    return df


def edit_parquet(data: bytes, rng: random.Random, ops: list[str]) -> bytes:
    """A Parquet seed with one to three table-level edits, rewritten (row groups of 1 to all rows)."""
    df = pl.read_parquet(io.BytesIO(data))
    for _ in range(rng.randint(1, 3)):
        try:
            df = _edit_table(df, rng, ops)
        except pl.exceptions.PolarsError:  # an edit Polars refuses for the column's type (text to Boolean)
            ops.append("(an edit Polars refused)")
    buf = io.BytesIO()
    df.write_parquet(buf, row_group_size=rng.choice((None, 1, 3)))
    return buf.getvalue()


def mutate(fmt: str, data: bytes, rng: random.Random, ops: list[str]) -> bytes:
    return mutate_bytes(data, rng, ops) if fmt in BINARY else mutate_text(data, rng, ops)


def compress(kind: str, member: str, data: bytes, rng: random.Random, ops: list[str]) -> bytes:
    """``data`` compressed; sometimes followed by a second stream (or zip member), as tools may write."""
    second = rng.random() < 0.1
    if kind == "zip":
        buf = io.BytesIO()
        method = rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED))
        with zipfile.ZipFile(buf, "w", method) as z:
            z.writestr(zipfile.ZipInfo(member, (2024, 3, 1, 12, 0, 0)), data)  # fixed times: reproducible bytes
            if second:
                z.writestr(zipfile.ZipInfo("b-" + member, (2024, 3, 1, 12, 0, 0)), data[: len(data) // 2])
        ops.append(f"zip ({'deflated' if method == zipfile.ZIP_DEFLATED else 'stored'}{', 2 members' if second else ''})")
        return buf.getvalue()
    pieces = [data[: len(data) // 2], data[len(data) // 2 :]] if second else [data]
    out = b""
    for piece in pieces:
        if kind == "gzip":
            out += gzip.compress(piece, compresslevel=rng.choice((1, 6, 9)), mtime=0)
        elif kind == "bz2":
            out += bz2.compress(piece, rng.choice((1, 9)))
        elif kind == "xz":
            out += lzma.compress(piece, preset=rng.choice((0, 6)))
        else:
            out += zstandard.ZstdCompressor(level=rng.choice((1, 3, 19)), write_content_size=rng.random() < 0.5).compress(piece)
    ops.append(f"{kind}{' as 2 streams' if second else ''}")
    return out


# --- reader inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderInput:
    name: str
    data: bytes
    format: str | None
    """The format named to the reader; None: detected."""
    mapping: str | None
    origin: str
    ops: tuple[str, ...]

    def options(self) -> ReadOptions:
        return ReadOptions(format=self.format, mapping=Path(self.mapping) if self.mapping else None)


def make_input(corpus: Corpus, seed: int, target: str, index: int) -> ReaderInput:
    """Input ``index`` of a reader or wrapper target: made from (seed, target, index) alone."""
    rng = random.Random(f"{seed}/{target}/{index}")
    pool = corpus.wrapped() if target in WRAPPERS else corpus.seeds[target]
    plain = index % PLAIN_EVERY == 0
    base = pool[(index // PLAIN_EVERY) % len(pool)] if plain else rng.choice(pool)
    ops: list[str] = []
    data, name = base.data, base.name
    rounds = 0 if plain else rng.randint(0 if target in WRAPPERS else 1, 4)
    if base.format == "parquet" and rounds and rng.random() < 0.6:
        # Table edits on the seed (a table it still is), then perhaps bytes.
        data = edit_parquet(data, rng, ops)
        rounds -= 1
    for _ in range(rounds):
        data = mutate(base.format, data, rng, ops)
    if target in WRAPPERS:
        kind = WRAPPERS[target]
        data = compress(kind, name, data, rng, ops)
        name = f"{Path(name).stem}.zip" if kind == "zip" else f"{name}.{target}"
        if not plain and rng.random() < 0.5:
            for _ in range(rng.randint(1, 3)):
                data = mutate_bytes(data, rng, ops)
            ops.append("(the compressed bytes damaged)")
    forced = base.format if plain or rng.random() < 0.75 else None
    return ReaderInput(name, data, forced, base.mapping, base.origin, tuple(ops))


# --- the reader contract -----------------------------------------------------------------------


class Outcome(NamedTuple):
    kind: str
    """``rows`` or ``refused`` (passed), ``crash``, ``hang`` or ``violation``."""
    units: int
    """Inputs (1) or datagrams this outcome covers."""
    rows: int
    """Rows (flows + rejects) read; records for the decoder."""
    detail: str = ""


class _Hang(BaseException):
    """Raised by the alarm: an input ran over --timeout. Not an Exception, so that no ``except
    Exception`` in the code under test swallows it."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Hang()


def is_crash(e: BaseException) -> bool:
    """Whether the code under test crashed: any exception, and a Rust panic in Polars (pyo3's
    PanicException is a BaseException); not the alarm, nor an interrupt."""
    return not isinstance(e, (_Hang, KeyboardInterrupt, SystemExit))


def reference_contents(path: Path) -> dict[str, bytes] | str:
    """The bytes a reader should see in a file by source name, decompressed by the standard library
    (not the package's wrappers); or why they cannot be decompressed."""
    data = path.read_bytes()
    kind = compression_of(data[:8])
    try:
        if kind is None:
            return {str(path): data}
        if kind == "zip":
            with zipfile.ZipFile(path) as z:
                return {f"{path}:{i.filename}": z.read(i) for i in z.infolist() if not i.is_dir()
                        and not Path(i.filename).name.startswith(".") and not i.filename.startswith("__MACOSX/")}
        if kind == "zstd":
            out, rest = [], data
            while rest:  # frame after frame, as zstd files may hold several
                obj = zstandard.ZstdDecompressor().decompressobj()
                out.append(obj.decompress(rest))
                if not obj.eof:
                    raise EOFError("the zstd data ends inside a frame")
                rest = obj.unused_data
            return {str(path): b"".join(out)}
        opener = {"gzip": gzip.GzipFile, "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}[kind]
        with opener(path) as f:
            return {str(path): f.read()}
    except Exception as e:  # whatever the standard library raises: the data is damaged
        return f"{type(e).__name__}: {e}"


def _lines(content: bytes) -> list[bytes]:
    lines = content.split(b"\n")
    if content.endswith(b"\n") or not content:
        lines.pop()
    return lines


def data_lines(fmt: str, lines: list[bytes], mapping: str | None) -> list[int]:
    """Line numbers that must come out as a flow or a reject: lines with a letter or digit, past the
    header, that are not a comment (where ``#`` starts one), a repeated header, or nfdump's trailer."""
    skip = 0 if fmt in HEADERLESS else _header_lines(fmt, lines, mapping)
    header = lines[skip - 1].decode("utf-8", "replace").strip() if 0 < skip <= len(lines) else None
    out = []
    previous = ""
    for i, raw in enumerate(lines, 1):
        text = raw.decode("utf-8", "replace").strip()
        after_summary, previous = previous == NFDUMP_SUMMARY_HEADER, text
        if i <= skip or not any(c.isalnum() for c in text) or text == header:
            continue
        if fmt in COMMENTED and text.startswith("#"):
            continue
        if fmt == "nfdump-csv":
            names = {f.strip() for f in text.split(",")}
            if text in NFDUMP_NOT_RECORDS or text == NFDUMP_SUMMARY_HEADER or after_summary or {"ts", "sa", "da"} <= names:
                continue
        out.append(i)
    return out


def _row_problems(name: str, fmt: str, content: bytes, flows: pl.DataFrame, rejects: pl.DataFrame,
                  mapping: str | None) -> list[str]:
    """Rows read = flows + rejects, against the file."""
    rows = flows["source_row"].to_list() + rejects["source_row"].to_list()
    if fmt == "parquet":
        try:
            expected = pq.ParquetFile(pa.BufferReader(content)).metadata.num_rows
        except Exception as e:  # pyarrow, which the reader uses too, cannot open what was read
            return [f"rows from a Parquet file pyarrow cannot open: {name}: {len(rows)} rows ({e})"]
        bad = [r for r in rejects["source_row"].to_list() if not 1 <= r <= expected]
        problems = [f"rows lost or added: {name}: {len(rows)} read of {expected} Parquet rows"] if len(rows) != expected else []
        return problems + ([f"rejects beyond the rows: {name}: rows {bad[:5]} of {expected}"] if bad else [])
    if fmt in EXTERNAL:
        if sorted(rows) != list(range(1, len(rows) + 1)):
            return [f"records not numbered 1..N once each: {name}: {sorted(rows)[:20]}"]
        return []
    lines = _lines(content)
    counted = Counter(rows)
    problems = []
    twice = sorted(r for r, k in counted.items() if k > 1)
    if twice:
        problems.append(f"a line counted twice: {name}: lines {twice[:10]}")
    outside = sorted(r for r in counted if not 1 <= r <= len(lines))
    if outside:
        problems.append(f"rows beyond the file: {name}: at lines {outside[:10]} of {len(lines)}")
    empty = sorted(r for r in counted if 1 <= r <= len(lines) and not lines[r - 1].rstrip(b"\r"))
    if empty:
        problems.append(f"rows at empty lines: {name}: lines {empty[:10]}")
    lost = [i for i in data_lines(fmt, lines, mapping) if i not in counted]
    if lost:
        problems.append(f"rows lost: {name}: {len(lost)} data lines are neither a flow nor a reject, "
                        f"lines {lost[:10]}; line {lost[0]}: {lines[lost[0] - 1][:200]!r}")
    return problems


def flow_problems(where: str, flows: pl.DataFrame, rejects: pl.DataFrame) -> list[str]:
    """Rejects name their file, row and reason; flows have a position and obey the canonical rules."""
    problems = []
    if rejects["source_file"].null_count() or rejects["source_row"].null_count():
        problems.append(f"rejects without their position: {where}: {rejects.filter(pl.col('source_row').is_null() | pl.col('source_file').is_null()).head(3)}")
    no_reason = rejects.filter(pl.col("reason").fill_null("").str.strip_chars() == "")
    if no_reason.height:
        problems.append(f"rejects without a reason: {where}: {no_reason.height} rejects: {no_reason.head(3)}")
    if flows["source_file"].null_count() or flows["source_row"].null_count():
        problems.append(f"flows without their position: {where}")
    bad = flows.filter(
        pl.col("ts_start").is_null() | pl.col("ts_end").is_null() | (pl.col("ts_end") < pl.col("ts_start"))
        | (pl.col("ts_start") >= MAX_VALID_TS) | (pl.col("ts_end") >= MAX_VALID_TS)
        | pl.col("src_ip").is_null() | pl.col("dst_ip").is_null() | pl.col("proto").is_null() | pl.col("quality").is_null()
    )
    if bad.height:
        problems.append(f"flows breaking the canonical rules: {where}: {bad.height} flows: {bad.head(3)}")
    return problems


def _schema_problems(where: str, batches: list[Checked]) -> list[str]:
    problems = []
    for c in batches:
        if dict(c.flows.schema) != FLOW_SCHEMA:
            problems.append(f"flows not in the flow schema: {where}: {dict(c.flows.schema)}")
        if dict(c.rejects.schema) != REJECT_SCHEMA:
            problems.append(f"rejects not in the reject schema: {where}: {dict(c.rejects.schema)}")
    return problems


def contract_problems(path: Path, read: dict[str, tuple[str, list[Checked]]], mapping: str | None) -> list[str]:
    """Everything the batches read from ``path`` (by source name) break of the reader contract."""
    contents = reference_contents(path)
    if isinstance(contents, str):
        rows = sum(c.flows.height + c.rejects.height for _, batches in read.values() for c in batches)
        return [f"rows from damaged compressed data: {path.name}: {rows} rows and no DamagedInput ({contents})"]
    problems = [f"a member not read: {name.rsplit('/', 1)[-1]}" for name in contents if name not in read]
    for name, (fmt, batches) in read.items():
        shown = name.rsplit("/", 1)[-1]  # the file (or archive:member) without the worker's folder
        problems += _schema_problems(shown, batches)
        if problems:
            continue
        flows = pl.concat([c.flows for c in batches], how="vertical")
        rejects = pl.concat([c.rejects for c in batches], how="vertical")
        problems += flow_problems(shown, flows, rejects)
        others = rejects.filter(pl.col("source_file") != name)["source_file"].unique().to_list()
        if others:
            problems.append(f"rejects naming other files: {shown}: {others[:3]}")
        if name not in contents:
            problems.append(f"a source the file does not hold: {shown}")
        else:
            problems += _row_problems(shown, fmt, contents[name], flows, rejects, mapping)
    return problems


def _drop_a_row(read: dict[str, tuple[str, list[Checked]]]) -> None:
    """--self-test: lose the last row read, as a broken reader would."""
    for fmt, batches in read.values():
        for i in reversed(range(len(batches))):
            flows, rejects = batches[i]
            if flows.height or rejects.height:
                batches[i] = Checked(flows.head(-1), rejects) if flows.height else Checked(flows, rejects.head(-1))
                return


def read_and_check(inp: ReaderInput, workdir: Path, self_test: bool) -> Outcome:
    folder = workdir / "input"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    path = folder / inp.name
    path.write_bytes(inp.data)
    read: dict[str, tuple[str, list[Checked]]] = {}
    try:
        for source, fmt, checked in iter_checked(path, inp.options()):
            read.setdefault(source.name, (fmt.name, []))[1].append(checked)
    except (FormatError, DamagedInput, ChangedInput) as e:
        if inp.name not in str(e):
            return Outcome("violation", 1, 0, f"an error that does not name the file: {type(e).__name__}: {e}")
        return Outcome("refused", 1, 0)
    except BaseException as e:
        if not is_crash(e):
            raise
        return Outcome("crash", 1, 0, traceback.format_exc())
    if self_test:
        _drop_a_row(read)
    rows = sum(c.flows.height + c.rejects.height for _, batches in read.values() for c in batches)
    problems = contract_problems(path, read, inp.mapping)
    return Outcome("violation", 1, rows, "\n".join(problems[:10])) if problems else Outcome("rows", 1, rows)


# --- the decoder -------------------------------------------------------------------------------

#: (IANA element, length) that templates are drawn from: mapped elements in the lengths exporters
#: use and some they should not, plus elements the decoder does not map.
FIELD_POOL: tuple[tuple[int, int], ...] = (
    (8, 4), (12, 4), (27, 16), (28, 16), (7, 2), (11, 2), (4, 1), (6, 1), (6, 2), (5, 1), (2, 4), (1, 4), (2, 8), (1, 8),
    (22, 4), (21, 4), (150, 4), (151, 4), (152, 8), (153, 8), (154, 8), (155, 8), (10, 2), (14, 2), (23, 8), (24, 8),
    (56, 6), (80, 6), (58, 2), (89, 1), (136, 1), (61, 1), (999, 3), (0, 4), (8, 16), (4, 2), (7, 4), (152, 4),
    # Sampling and biflows: sampler ids, a sampling stated in the flow record, biflowDirection.
    (48, 1), (302, 4), (34, 4), (305, 4), (306, 4), (239, 1), (239, 2),
)
#: Options that state a sampling: (scope, options) per version; for a sampler id or a whole domain.
SAMPLING_OPTIONS = (
    ([(1, 4)], [(34, 4), (35, 1)]), ([(1, 4)], [(48, 1), (49, 1), (50, 4)]), ([(302, 4)], [(305, 4), (306, 4)]),
)
EXPORTERS = ("192.0.2.1", "192.0.2.2", "198.51.100.7", "2001:db8::1", "192.0.2.3")
TINY_LIMITS = {"max_templates": 3, "max_templates_per_domain": 2, "max_domains": 3, "max_fields": 40, "max_exporters": 2}


@dataclass
class _Exporter:
    address: str
    version: int
    domain: int
    seq: int = 0
    templates: dict[int, list[tuple[int, int]]] = field(default_factory=dict)


def _value(rng: random.Random, element: int, length: int) -> int | bytes:
    if rng.random() < 0.3:
        return rng.randbytes(length)
    if element in (8, 12, 27, 28):
        return int(ipaddress.ip_address(rng.choice(("10.0.0.1", "192.0.2.50", "fd00::1", "2001:db8::2")))) % (1 << 8 * length)
    if element in (152, 153):
        value = P.T0 * 1000 + rng.randrange(-10**6, 10**6)
    elif element in (150, 151):
        value = P.T0 + rng.randrange(-1000, 1000)
    else:
        value = rng.choice((0, 1, 6, 17, 443, 1500, rng.randrange(1 << 32)))
    return value % (1 << 8 * length)


def _valid_datagram(exp: _Exporter, rng: random.Random) -> bytes:
    """A well-formed export packet: v5 records, or v9/IPFIX templates and data sets that follow them."""
    exp.seq += 1
    if exp.version == 5:
        n = rng.randint(1, 30)
        records = [P.v5_record("10.0.0.1", rng.choice(("192.0.2.50", "0.0.0.0", "255.255.255.255")), rng.randrange(65536),
                               rng.randrange(65536), rng.choice((1, 6, 17, 47, 255)), rng.randrange(1 << 32), rng.randrange(1 << 32),
                               rng.randrange(1 << 32), rng.randrange(1 << 32), rng.randrange(256)) for _ in range(n)]
        return P.v5(records, uptime_ms=rng.randrange(1 << 32), secs=rng.choice((P.T0, 0, 0xFFFFFFFF)), seq=exp.seq * 30)
    sets = []
    if not exp.templates or rng.random() < 0.3:
        tid = rng.randint(256, 262)
        exp.templates[tid] = [rng.choice(FIELD_POOL) for _ in range(rng.randint(1, 14))]
        # An enterprise field: unknown (PEN 9), or an RFC 5103 reverse element (PEN 29305).
        enterprise = {0: rng.choice((9, 29305))} if exp.version == 10 and rng.random() < 0.2 else None
        sets.append(P.template_set(exp.version, [(tid, exp.templates[tid])], enterprise))
    if rng.random() < 0.2:
        scope, options = [(149, 4)] if exp.version == 10 else [(1, 4)], [(160, 8), (130, 4)]
        sets.append(P.options_template_set(exp.version, 300, scope, options))
        sets.append(P.data_set(300, [P.record([*scope, *options], {160: (P.T0 - 60) * 1000})]))
    if rng.random() < 0.15:
        scope, options = rng.choice(SAMPLING_OPTIONS)
        sets.append(P.options_template_set(exp.version, 301, scope, options))
        sets.append(P.data_set(301, [P.record([*scope, *options], {e: rng.choice((0, 1, 4, 100, 1 << 20, rng.randrange(1 << 32))) % (1 << 8 * n)
                                                                   for e, n in [*scope, *options]}) for _ in range(rng.randint(1, 3))]))
    for tid in rng.sample(sorted(exp.templates), rng.randint(1, len(exp.templates))):
        fields = exp.templates[tid]
        lengths: dict[int, set[int]] = defaultdict(set)
        for e, n in fields:
            lengths[e].add(n)
        # One value per element (P.record's way): an element in two lengths gets one that fits both.
        records = [P.record(fields, {e: _value(rng, e, min(ns)) if len(ns) == 1 else rng.randrange(1 << 8 * min(ns))
                                     for e, ns in lengths.items()}) for _ in range(rng.randint(1, 20))]
        sets.append(P.data_set(tid, records))
    if exp.version == 9:
        return P.v9(sets, uptime_ms=rng.randrange(1 << 32), seq=exp.seq, source_id=exp.domain)
    return P.ipfix(sets, seq=exp.seq * 20, domain=exp.domain)


def mutate_datagram(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(("flip", "insert", "delete", "cut", "u16", "u32"))
        pos = rng.randrange(max(len(b), 1))
        if kind == "flip" and b:
            b[pos] ^= rng.randint(1, 255)
        elif kind == "insert":
            b[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif kind == "delete":
            del b[pos : pos + rng.randint(1, 8)]
        elif kind == "cut":
            del b[pos:]
        elif kind == "u16" and pos + 2 <= len(b):  # length, count and id fields are 16-bit
            struct.pack_into("!H", b, pos, rng.choice((0, 1, 3, 4, 255, 256, 0x7FFF, 0xFFFF)))
        elif kind == "u32" and pos + 4 <= len(b):
            struct.pack_into("!I", b, pos, rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF)))
    return bytes(b)


@dataclass(frozen=True)
class DecoderBatch:
    tiny: bool
    """A decoder with tiny limits (evictions all the time) instead of the default ones."""
    datagrams: tuple[tuple[bytes, str], ...]
    """(datagram, exporter address), in the order fed."""
    takes: frozenset[int]
    """Positions after which ``take`` runs and the sums are checked (and after the last)."""


def batch_size(datagrams: int, index: int) -> int:
    return min(DATAGRAMS_PER_BATCH, datagrams - index * DATAGRAMS_PER_BATCH)


def decoder_batch(seed: int, datagrams: int, index: int) -> DecoderBatch:
    rng = random.Random(f"{seed}/{DECODER}/{index}")
    exporters = [_Exporter(address, rng.choice((5, 9, 10)), rng.choice((0, 1, 0xFFFFFFFF)))
                 for address in rng.sample(EXPORTERS, rng.randint(1, 3))]
    out = []
    for _ in range(batch_size(datagrams, index)):
        exp = rng.choice(exporters)
        roll = rng.random()
        if roll < 0.35:
            data = _valid_datagram(exp, rng)
        elif roll < 0.7:
            data = mutate_datagram(_valid_datagram(exp, rng), rng)
        elif roll < 0.85:
            data = rng.randbytes(rng.randint(0, 300))
        else:
            data = struct.pack("!H", rng.choice((5, 9, 10))) + rng.randbytes(rng.randint(0, 300))
        out.append((data, exp.address))
    takes = frozenset(rng.sample(range(len(out)), min(len(out), rng.randint(0, 3))))
    return DecoderBatch(rng.random() < 0.25, tuple(out), takes)


def _accounting(decoder: Decoder, checked: Checked, fed: int, before: tuple[int, int], tiny: bool) -> list[str]:
    stats = list(decoder.stats.values())
    problems = _schema_problems("take", [checked])
    if problems:
        return problems
    flows, rejects = sum(s.flows for s in stats), sum(sum(s.rejected.values()) for s in stats)
    if (checked.flows.height, checked.rejects.height) != (flows - before[0], rejects - before[1]):
        problems.append(f"frames != counters: take returned {checked.flows.height} flows and {checked.rejects.height} rejects; the counters "
                        f"say {flows - before[0]} and {rejects - before[1]}")
    if sum(s.packets for s in stats) != fed:
        problems.append(f"datagrams fed != packets counted: {fed} != {sum(s.packets for s in stats)}")
    for s in stats:
        sums = {
            "packets = decoded + errors": (s.packets, s.packets_decoded + sum(s.packet_errors.values())),
            "sets = decoded + skipped": (s.sets, s.sets_decoded + sum(s.set_errors.values())),
            "decoded = by version": (s.packets_decoded, sum(s.versions.values())),
        }
        if not tiny:
            sums["records = flows + rejects"] = (s.records, s.flows + sum(s.rejected.values()))
        problems += [f"{what}: {s.exporter}: {a} != {b}" for what, (a, b) in sums.items() if a != b]
    # An address folded into "other" and back before a take: its records went into "other", its
    # flows go to its new entry. The decoder promises this sum over all entries (its docstring).
    if tiny and sum(s.records for s in stats) != flows + rejects:
        problems.append(f"records = flows + rejects (all exporters): {sum(s.records for s in stats)} != {flows + rejects}")
    problems += flow_problems("take", checked.flows, checked.rejects)
    if not tiny:  # an exporter evicted and back numbers its records afresh: only without evictions
        rows = pl.concat([checked.flows.select("source_file", "source_row"), checked.rejects.select("source_file", "source_row")])
        if not rows.is_unique().all():
            problems.append("a record number given twice: in one take")
    return problems


def feed_and_check(batch: DecoderBatch) -> Outcome:
    decoder = Decoder(**TINY_LIMITS) if batch.tiny else Decoder()  # type: ignore[arg-type]
    problems: list[str] = []
    before, records = (0, 0), 0
    for i, (datagram, exporter) in enumerate(batch.datagrams):
        decoder.feed(datagram, exporter)
        if batch.tiny and not (decoder.template_count == len(decoder.templates) <= TINY_LIMITS["max_templates"]
                               and decoder.field_count <= TINY_LIMITS["max_fields"]
                               and decoder.domains <= TINY_LIMITS["max_domains"] and len(decoder.stats) <= 3):
            problems.append(f"state over the limits: after datagram {i}: {decoder.template_count} templates, "
                            f"{decoder.field_count} fields, {decoder.domains} domains, {len(decoder.stats)} exporters")
        if i in batch.takes or i == len(batch.datagrams) - 1:
            checked = decoder.take()
            records += checked.flows.height + checked.rejects.height
            problems += [f"{p} (after datagram {i})" for p in _accounting(decoder, checked, i + 1, before, batch.tiny)]
            stats = decoder.stats.values()
            before = (sum(s.flows for s in stats), sum(sum(s.rejected.values()) for s in stats))
    n = len(batch.datagrams)
    return Outcome("violation", n, records, "\n".join(problems[:10])) if problems else Outcome("rows", n, records)


# --- workers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    seed: int
    datagrams: int
    timeout: float
    self_test: bool


def units_of(target: str, index: int, settings: Settings) -> int:
    return batch_size(settings.datagrams, index) if target == DECODER else 1


def run_one(corpus: Corpus, settings: Settings, target: str, index: int, workdir: Path) -> Outcome:
    """Make input ``index`` of ``target``, run it under the alarm, and judge the outcome."""
    if target == DECODER:
        batch = decoder_batch(settings.seed, settings.datagrams, index)
    else:
        inp = make_input(corpus, settings.seed, target, index)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    try:
        if target == DECODER:
            try:
                return feed_and_check(batch)
            except BaseException as e:
                if not is_crash(e):
                    raise
                return Outcome("crash", len(batch.datagrams), 0, traceback.format_exc())
        return read_and_check(inp, workdir, settings.self_test)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _worker(conn: Connection, corpus: Corpus, settings: Settings, workdir: Path) -> None:
    # Readers log a warning for every file with rejects, Polars may warn about odd data: at this
    # rate that is noise over the progress bar, and every outcome is judged here anyway.
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    # A Rust panic in Polars is a crash, saved with its Python traceback; the Rust backtrace of
    # each (RUST_BACKTRACE=1) would flood the progress display.
    os.environ["RUST_BACKTRACE"] = "0"
    signal.signal(signal.SIGALRM, _alarm)
    try:
        conn.send(("ready",))
        while (task := conn.recv()) is not None:
            target, start, end = task
            for index in range(start, end):
                try:
                    outcome = run_one(corpus, settings, target, index, workdir)
                except _Hang:  # the input ran over --timeout: the alarm fired in the code under test
                    outcome = Outcome("hang", units_of(target, index, settings), 0,
                                      f"over {settings.timeout:g} s\n{traceback.format_exc()}")
                except Exception:  # making or judging the input failed: a fault of this script
                    conn.send(("broken", traceback.format_exc()))
                    return
                conn.send(("done", index, outcome))
    except (EOFError, KeyboardInterrupt):  # the parent is gone or stopping
        pass


@dataclass
class TargetResult:
    target: str
    kind: str
    """reader, wrapper (a compressed wrapper) or decoder."""
    unit: str
    """What ``asked`` and ``inputs`` count: inputs, or datagrams for the decoder."""
    invariant: str
    asked: int
    inputs: int = 0
    """Inputs (datagrams) tried."""
    rows: int = 0
    """Rows (flows + rejects) read; records decoded for the decoder."""
    refused: int = 0
    """Inputs refused with the package's own error naming the file."""
    crashes: int = 0
    hangs: int = 0
    violations: int = 0
    seconds: float = 0.0
    inputs_per_s: float = 0.0
    seeds: int = 0
    time_bounded: bool = False
    failure_kinds: dict[str, int] = field(default_factory=dict)
    """Failures by signature (:func:`signature`)."""
    saved: list[str] = field(default_factory=list)


COUNTERS = {"crash": "crashes", "hang": "hangs", "violation": "violations"}


def signature(outcome: Outcome) -> str:
    """What tells failures apart: for a crash or hang, the error and the innermost frame of the
    package; for a violation, its first broken rule."""
    if outcome.kind == "violation":  # each broken rule is written "rule: where: details"
        return "violation: " + outcome.detail.split(": ", 1)[0]
    frames = re.findall(r'File ".*?/src/(netflowgen/[^"]+)", line (\d+), in (\w+)', outcome.detail)
    where = "{}:{} ({})".format(*frames[-1]) if frames else "outside the package"
    # The error is the first unindented line after the last frame (a traceback's last line may be
    # the end of a message of several lines).
    lines = outcome.detail.splitlines()
    last = max((i for i, line in enumerate(lines) if line.startswith("  File ")), default=-1)
    error = next((line for line in lines[last + 1 :] if line and not line.startswith(" ")), "")
    return f"{outcome.kind}: {error.split(':', 1)[0][:80]} at {where}"


def save_failure(crashes: Path, corpus: Corpus, settings: Settings, target: str, index: int, outcome: Outcome) -> Path:
    """Save a failing input (made again from its seed and index) with what is known of it."""
    folder = crashes / f"{target}-seed{settings.seed}-{index}"
    folder.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"target": target, "seed": settings.seed, "index": index, "outcome": outcome.kind,
                            "detail": outcome.detail}
    if target == DECODER:
        batch = decoder_batch(settings.seed, settings.datagrams, index)
        for i, (datagram, _) in enumerate(batch.datagrams):
            (folder / f"{i:03d}.bin").write_bytes(datagram)
        info |= {"decoder": TINY_LIMITS if batch.tiny else "default limits", "exporters": [e for _, e in batch.datagrams],
                 "take_after": sorted(batch.takes | {len(batch.datagrams) - 1}),
                 "reproduce": "Decoder.feed(NNN.bin, exporters[NNN]) in order; take() after the datagrams in take_after"}
    else:
        inp = make_input(corpus, settings.seed, target, index)
        (folder / inp.name).write_bytes(inp.data)
        options = f"format={inp.format!r}" + (f", mapping=Path({inp.mapping!r})" if inp.mapping else "")
        info |= {"file": inp.name, "format": inp.format, "mapping": inp.mapping, "seed_origin": inp.origin,
                 "mutations": list(inp.ops),
                 "reproduce": "from pathlib import Path; from netflowgen.read import ReadOptions, iter_checked; "
                              f"[c for c in iter_checked({str(folder / inp.name)!r}, ReadOptions({options}))]"}
    (folder / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return folder


class _Worker:
    def __init__(self, ctx: Any, corpus: Corpus, settings: Settings) -> None:
        shm = Path("/dev/shm")  # inputs are written and read once each: memory, where there is some
        self.workdir = Path(tempfile.mkdtemp(prefix="netflowgen-fuzz-", dir=shm if os.access(shm, os.W_OK) else None))
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, corpus, settings, self.workdir), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.task: list[Any] | None = None
        """[target, next index, end] while busy."""
        self.since = time.monotonic()
        """When it started, was given a task, or last reported."""

    def give(self, chunk: list[Any]) -> None:
        self.task = list(chunk)
        self.since = time.monotonic()
        self.conn.send(tuple(chunk))

    def stop(self) -> None:
        """Ask an idle worker to exit, kill a busy or silent one."""
        if self.process.is_alive() and self.ready and self.task is None:
            try:
                self.conn.send(None)
                self.process.join(timeout=5)
            except OSError:  # it exited meanwhile (an interrupt reaches every process)
                pass
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Fuzzer:
    """Runs targets on worker processes, with a watchdog for inputs that hang or kill a worker."""

    def __init__(self, corpus: Corpus, settings: Settings, workers: int, crashes: Path, progress: Progress) -> None:
        self.corpus, self.settings, self.crashes, self.progress = corpus, settings, crashes, progress
        self.ctx = mp.get_context("spawn")  # no fork of a process that holds Polars' and Rich's threads
        self.workers = [_Worker(self.ctx, corpus, settings) for _ in range(workers)]

    def close(self) -> None:
        for w in self.workers:
            w.stop()

    def run(self, result: TargetResult, count: int, seconds: float | None, first: int = 0) -> None:
        """Inputs first..first+count-1 of ``result.target``, in chunks over the workers; stop
        giving out chunks after ``seconds``."""
        size = max(1, min(64, count // (len(self.workers) * 16)))
        end = first + count
        chunks = deque([result.target, s, min(s + size, end)] for s in range(first, end, size))
        task = self.progress.add_task(result.target, total=result.asked)
        started = time.monotonic()
        while chunks or any(w.task for w in self.workers):
            if seconds is not None and chunks and time.monotonic() - started > seconds:
                result.time_bounded = True
                chunks.clear()
            for w in self.workers:
                if w.ready and w.task is None and chunks:
                    w.give(chunks.popleft())
            for conn in wait([w.conn for w in self.workers], timeout=0.5):
                w = next(w for w in self.workers if w.conn is conn)
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    continue  # it died: the watchdog takes it
                self._receive(w, message, result, task)
            chunks.extendleft(self._watch(result, task))
        result.seconds = round(time.monotonic() - started, 2)
        result.inputs_per_s = round(result.inputs / result.seconds, 1) if result.seconds else 0.0

    def _receive(self, w: _Worker, message: tuple[Any, ...], result: TargetResult, task: Any) -> None:
        w.since = time.monotonic()
        if message[0] == "ready":
            w.ready = True
        elif message[0] == "broken":
            raise BenchmarkError(f"a worker could not make or judge an input (a fault of this script):\n{message[1]}")
        else:
            _, index, outcome = message
            if w.task is None or index != w.task[1]:
                raise BenchmarkError(f"a worker answered for input {index}, expected {w.task}")
            self._record(result, index, outcome, task)
            w.task[1] += 1
            if w.task[1] == w.task[2]:
                w.task = None

    def _watch(self, result: TargetResult, task: Any) -> list[list[Any]]:
        """Replace a worker that died, or that holds one input far beyond --timeout (native code
        does not see the alarm): its input is a crash or a hang, and the rest of its chunk is
        returned, to be given out again."""
        limit = self.settings.timeout + 30
        again = []
        for i, w in enumerate(self.workers):
            alive = w.process.is_alive()
            if not w.ready:
                if not alive:
                    raise BenchmarkError(f"a worker exited while starting (exit code {w.process.exitcode})")
                if time.monotonic() - w.since > 300:
                    raise BenchmarkError("a worker did not start within 300 s")
                continue
            if alive and not (w.task and time.monotonic() - w.since > limit):
                continue
            w.stop()  # killed at once while it holds a task
            lost, w.task = w.task, None
            if lost:
                target, index, end = lost
                units = units_of(target, index, self.settings)
                if alive:
                    outcome = Outcome("hang", units, 0, f"no answer after {limit:g} s: the worker was killed")
                else:
                    outcome = Outcome("crash", units, 0, f"the worker died (exit code {w.process.exitcode})")
                self._record(result, index, outcome, task)
                if index + 1 < end:
                    again.append([target, index + 1, end])
            self.workers[i] = _Worker(self.ctx, self.corpus, self.settings)
        return again

    def _record(self, result: TargetResult, index: int, outcome: Outcome, task: Any) -> None:
        result.inputs += outcome.units
        result.rows += outcome.rows
        result.refused += int(outcome.kind == "refused")
        if outcome.kind in COUNTERS:
            counter = COUNTERS[outcome.kind]
            setattr(result, counter, getattr(result, counter) + 1)
            sig = signature(outcome)
            result.failure_kinds[sig] = result.failure_kinds.get(sig, 0) + 1
            # The first few of each kind are saved and shown: a bug hit a thousand times would
            # otherwise fill the disk and the screen, and hide a rarer one.
            if result.failure_kinds[sig] <= SAVED_PER_SIGNATURE and len(result.saved) < SAVED_PER_TARGET:
                saved = save_failure(self.crashes, self.corpus, self.settings, result.target, index, outcome)
                result.saved.append(str(saved))
                self.progress.console.print(f"[red]{sig}[/]\n  {result.target} input {index}, saved in {saved}")
        failures = result.crashes + result.hangs + result.violations
        self.progress.update(task, advance=outcome.units,
                             description=result.target + (f" [red]({failures} failed)[/]" if failures else ""))


# --- report ------------------------------------------------------------------------------------


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="progress.data.speed")


def print_report(report: dict[str, Any], console: Console) -> None:
    first = report["settings"].get("first", 0)
    t = Table(title=f"fuzzing, seed {report['settings']['seed']}" + (f", inputs from index {first:,}" if first else ""),
              title_justify="left")
    for name in ("target", "seeds", "inputs", "rows read", "refused", "crashes", "hangs", "violations", "s", "inputs/s",
                 "invariant checked"):
        t.add_column(name, justify="left" if name in ("target", "invariant checked") else "right")
    for r in report["targets"]:
        bad = "red" if r["crashes"] + r["hangs"] + r["violations"] else ""
        t.add_row(
            r["target"] + (" (datagrams)" if r["kind"] == "decoder" else ""), str(r["seeds"]) if r["seeds"] else "",
            f"{r['inputs']:,}" + (" (time-bounded)" if r["time_bounded"] else ""), f"{r['rows']:,}", f"{r['refused']:,}",
            *[f"[{bad}]{r[k]}[/]" if bad else str(r[k]) for k in ("crashes", "hangs", "violations")],
            f"{r['seconds']:.0f}", f"{r['inputs_per_s']:,.0f}", r["invariant"],
        )
    console.print(t)
    for r in report["targets"]:
        for sig, n in sorted(r["failure_kinds"].items(), key=lambda kv: -kv[1]):
            console.print(f"[red]{r['target']}[/]: {n:,} x {sig}")
    for name, why in {**report["skipped"], **report["notes"]}.items():
        console.print(f"[yellow]{name}:[/] {why}")
    inputs = sum(r["inputs"] for r in report["targets"] if r["kind"] != "decoder")
    datagrams = sum(r["inputs"] for r in report["targets"] if r["kind"] == "decoder")
    verdict = "[green]OK[/]" if not report["failures"] else f"[red]FAILED[/]: inputs saved under {report['crashes_dir']}"
    console.print(f"{inputs:,} inputs and {datagrams:,} datagrams in {report['seconds']:.0f} s: "
                  f"{sum(r['crashes'] for r in report['targets'])} crashes, {sum(r['hangs'] for r in report['targets'])} hangs, "
                  f"{sum(r['violations'] for r in report['targets'])} violations. {verdict}")


def _nfdump_version() -> str | None:
    if not shutil.which("nfdump"):
        return None
    return subprocess.run(["nfdump", "-V"], capture_output=True, text=True, check=False).stdout.strip().split(":")[-1].strip() or None


def main(argv: list[str] | None = None) -> int:
    readers = format_names()
    targets = [*readers, *WRAPPERS, DECODER]
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", type=int, default=100_000, help="inputs per reader and per compressed wrapper (default 100,000)")
    p.add_argument("--external-inputs", type=int, default=10_000,
                   help="inputs for pcap and nfcapd, which run nfpcapd/nfdump for each (default 10,000)")
    p.add_argument("--datagrams", type=int, default=1_000_000, help="datagrams into the NetFlow decoder (default 1,000,000)")
    p.add_argument("--formats", default=",".join(targets), help=f"comma-separated targets, from: {', '.join(targets)} (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of every input (default 0)")
    p.add_argument("--first", type=int, default=0,
                   help="index of the first input (the decoder: of the first batch of 32 datagrams): a long run can be "
                        "split into parts, --first 0 --inputs 50000 then --first 50000 --inputs 50000, which together try "
                        "exactly the inputs of one run of 100,000 (default 0)")
    p.add_argument("--seconds", type=float, help="time per target: no new inputs after it (the inputs tried are reported)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds one input may take before it is a hang (default 10)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default 2)")
    p.add_argument("--crashes", type=Path, help="where failing inputs are saved (default: a new temporary folder)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    # Drops a row after every read: the check must report it (tests/test_fuzz_benchmark.py).
    p.add_argument("--self-test", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    chosen = [s.strip() for s in args.formats.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(targets))
    if unknown:
        p.error(f"unknown --formats {', '.join(unknown)}; choose from {', '.join(targets)}")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if args.first < 0:
        p.error("--first must be 0 or more")

    started = time.monotonic()
    # The decoder's batches are numbered from the start of the whole run: the last one is as short
    # as it would be in one run of all of them.
    settings = Settings(args.seed, args.first * DATAGRAMS_PER_BATCH + args.datagrams, args.timeout, args.self_test)
    logging.disable(logging.WARNING)  # the seeds are read once to make Parquet ones: their rejects are no news
    corpus = build_corpus(args.seed, set(chosen))
    skipped: dict[str, str] = {}
    tools = bool(shutil.which("nfdump") and shutil.which("nfpcapd"))
    for target in chosen:
        if target in EXTERNAL and not tools:
            skipped[target] = "nfdump/nfpcapd are not installed (apt-get install nfdump)"
        elif target in readers and not corpus.seeds.get(target):
            skipped[target] = "no seed: no fixture or shared file in this format"
        elif target in WRAPPERS and not corpus.wrapped():
            skipped[target] = "no seed to compress"
    crashes = args.crashes or Path(tempfile.mkdtemp(prefix="netflowgen-fuzz-crashes-"))
    results: list[TargetResult] = []
    progress = Progress(SpinnerColumn(), TextColumn("{task.description:<30}"), BarColumn(), MofNCompleteColumn(),
                        RateColumn(), TimeElapsedColumn(), console=Console(stderr=True))
    fuzzer = None
    try:
        with progress:
            fuzzer = Fuzzer(corpus, settings, args.workers, crashes, progress)
            for target in (t for t in chosen if t not in skipped):
                if target == DECODER:
                    result = TargetResult(target, "decoder", "datagrams", INVARIANTS["decoder"], args.datagrams)
                    count = math.ceil(args.datagrams / DATAGRAMS_PER_BATCH)
                else:
                    inner = "parquet" if target == "parquet" else "external" if target in EXTERNAL else "text"
                    count = args.external_inputs if target in EXTERNAL else args.inputs
                    pool = corpus.wrapped() if target in WRAPPERS else corpus.seeds[target]
                    result = TargetResult(target, "wrapper" if target in WRAPPERS else "reader", "inputs",
                                          INVARIANTS[inner] + (" (decompressed)" if target in WRAPPERS else ""), count,
                                          seeds=len(pool))
                fuzzer.run(result, count, args.seconds, args.first)
                results.append(result)
    except BenchmarkError as e:
        Console(stderr=True).print(f"[red]fuzzing stopped:[/] {e}")
        return 2
    finally:
        if fuzzer is not None:
            fuzzer.close()
    failures = sum(r.crashes + r.hangs + r.violations for r in results)
    if args.crashes is None and not failures:
        shutil.rmtree(crashes, ignore_errors=True)
    report = {
        "machine": {**machine(), "polars": pl.__version__, "nfdump": _nfdump_version()},
        "settings": {"seed": args.seed, "first": args.first, "inputs": args.inputs, "external_inputs": args.external_inputs,
                     "datagrams": args.datagrams, "seconds": args.seconds, "timeout": args.timeout, "workers": args.workers},
        "targets": [asdict(r) for r in results],
        "skipped": skipped,
        "notes": corpus.notes,
        "failures": failures,
        "crashes_dir": str(crashes) if failures else None,
        "seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        console = Console()
        print_report(report, console if console.is_terminal else Console(width=200))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
