"""CICFlowMeter CSV: bidirectional flows as the CIC datasets publish them.

Variants read (headers are matched after stripping spaces, case-insensitively):

* **CIC-IDS2017** ``TrafficLabelling`` (GeneratedLabelledFlows) files: 85 columns, names with
  leading spaces (`` Source IP``, `` Flow Duration``, `` Total Fwd Packets``), `` Fwd Header
  Length`` written twice, `` CWE Flag Count``, ``Flow Bytes/s`` holding ``Infinity``/``NaN``,
  timestamps such as ``7/7/2017 3:30`` or ``03/07/2017 08:55:58``, rows of bare commas, and the
  label ``Web Attack \\x96 Brute Force`` in Windows-1252 (lines that are not UTF-8 are read as
  Windows-1252, so the en dash survives).
* **CSE-CIC-IDS2018** files with addresses (``Thuesday-20-02-2018``: ``Flow ID, Src IP, Src Port,
  Dst IP, Dst Port, Protocol, Timestamp``, ``Tot Fwd Pkts``, ``TotLen Fwd Pkts``, ``Fwd Header
  Len``, ``FIN Flag Cnt``), timestamps ``02/03/2018 08:47:38``, header lines repeated mid-file.
* **CIC-DDoS2019**: a first unnamed index column (``Unnamed: 0``), `` Fwd Header Length.1``,
  ``SimillarHTTP``, `` Inbound``, timestamps ``2018-12-01 10:51:39.813448``.
* **CICFlowMeter-V3/V4 output** (``Flow ID,Src IP,Src Port,...,Tot Fwd Pkts,...,Label``), with
  ``dd/MM/yyyy hh:mm:ss a`` timestamps (``14/02/2018 08:31:01 PM``), and the current tool's
  names (``Total Fwd Packet``, ``Total Length of Fwd Packet``, ``CWR Flag Count``).

Feature tables without addresses and times (CIC-IDS2017 ``MachineLearningCVE``, the
CSE-CIC-IDS2018 files other than Thuesday) are not flow tables: reading one raises
:class:`FormatError` saying so.

Mapping: ``Timestamp`` -> ts_start, plus ``Flow Duration`` (microseconds, may be negative: the
row is then repaired as END_BEFORE_START) -> ts_end; source/destination -> src/dst;
``Total Fwd Packets``/``Total Backward Packets`` -> fwd/rev_packets; ``Label`` -> label.

Bytes: ``Total Length of Fwd Packets`` is the TCP/UDP *payload* (and, for small frames, the
Ethernet padding that jnetpcap reports as payload); ``Fwd Header Length`` is the sum of the
transport headers CICFlowMeter counted (TCP or UDP header in the published source; 20 bytes per
UDP packet in CIC-DDoS2019). fwd_bytes = payload + header length, the nearest to IP-layer bytes
the format holds: it lacks the IP header (20 bytes per IPv4 packet). CICFlowMeter measures sizes
of TCP and UDP packets only (other IP packets come out as protocol 0, ports 0, sizes 0): a
direction with packets but a size of 0 has unknown bytes (null, flagged MISSING_COUNTERS). A
negative length (the CIC-IDS2017 header-length bug) or a total above 65,535 bytes per packet
rejects the row, naming the column.

TCP flags: OR of the ``* Flag Count`` columns (and ``Fwd/Bwd PSH/URG Flags``). CICFlowMeter-V3
wrote the eight flag counts in the iteration order of a Java HashMap (RST, PSH, ECE, SYN, ACK,
FIN, URG, CWR) under the header names FIN, SYN, RST, PSH, ACK, URG, CWE, ECE; its output is
recognised by the duplicated ``Fwd Header Length`` column (CIC-IDS2017, CIC-DDoS2019), and there
the columns are read by that order (a flow starting with a FIN/ACK otherwise shows as URG/ACK).
In CIC-IDS2017 the counts cover the first packet of each flow only.

Time: timestamps are local time of the capture site, read in ``ReadOptions.timezone`` (default
UTC; CIC-IDS2017 and CIC-DDoS2019 were captured in New Brunswick, ``America/Halifax``, ADT).
Dates are day first. CICFlowMeter-V3 wrote ``dd/MM/yyyy hh:mm:ss``, a 12-hour clock without
AM/PM, so in its output an hour of 1 to 7 is ambiguous: it is read as 13:00 to 19:59, because
the captures it made (CIC-IDS2017: 08:00 to 18:00) ran during working hours; 8 to 12 stay as
written, and an hour of 0 or above 12 shows a 24-hour clock and is kept. A warning says how
many timestamps were so read. This rule applies only to V3 output (the duplicated header
column) with day-first timestamps without AM/PM; other variants are read as written. The
CIC-IDS2017 ``d/m/yyyy h:mm`` timestamps have minute precision only.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO

import polars as pl

from netflowgen.read.base import FlowFormat, FormatError, ReadOptions
from netflowgen.read.fields import (
    Parsed,
    first_reason,
    materialize,
    parse_int,
    parse_proto,
    unset,
)
from netflowgen.read.source import Source
from netflowgen.read.text import Lines, check_batch, iter_line_blocks, read_delimited
from netflowgen.read.validate import Checked
from netflowgen.schema import MAX_BYTES_PER_PACKET

__all__ = ["FORMAT", "Layout", "find_layout", "candidates", "read_header", "warn_pm_inferred", "PM_INFERRED"]

log = logging.getLogger(__name__)

#: Role -> header names that hold it (stripped, lower case), across the variants.
_NAMES: dict[str, tuple[str, ...]] = {
    "src_ip": ("source ip", "src ip"),
    "dst_ip": ("destination ip", "dst ip"),
    "src_port": ("source port", "src port"),
    "dst_port": ("destination port", "dst port"),
    "proto": ("protocol",),
    "timestamp": ("timestamp",),
    "duration": ("flow duration",),
    "fwd_packets": ("total fwd packets", "tot fwd pkts", "total fwd packet"),
    "rev_packets": ("total backward packets", "tot bwd pkts", "total bwd packets"),
    "fwd_payload": ("total length of fwd packets", "totlen fwd pkts", "total length of fwd packet"),
    "rev_payload": ("total length of bwd packets", "totlen bwd pkts", "total length of bwd packet"),
    "fwd_header": ("fwd header length", "fwd header len"),
    "rev_header": ("bwd header length", "bwd header len"),
    "fin": ("fin flag count", "fin flag cnt"),
    "syn": ("syn flag count", "syn flag cnt"),
    "rst": ("rst flag count", "rst flag cnt"),
    "psh": ("psh flag count", "psh flag cnt"),
    "ack": ("ack flag count", "ack flag cnt"),
    "urg": ("urg flag count", "urg flag cnt"),
    "cwr": ("cwe flag count", "cwr flag count", "cwe flag cnt", "cwr flag cnt"),
    "ece": ("ece flag count", "ece flag cnt"),
    "fwd_psh": ("fwd psh flags",),
    "rev_psh": ("bwd psh flags",),
    "fwd_urg": ("fwd urg flags",),
    "rev_urg": ("bwd urg flags",),
    "label": ("label",),
}

#: What makes a feature table a flow table, with the names to show for it.
_ADDRESSING = {"src_ip": "Source IP", "dst_ip": "Destination IP", "timestamp": "Timestamp"}
_REQUIRED = (*_ADDRESSING, "src_port", "dst_port", "proto", "duration", "fwd_packets", "rev_packets",
             "fwd_payload", "rev_payload", "fwd_header", "rev_header")

#: Flag column role -> TCP flag bit, as the header names say (V4 and later).
_FLAG_BITS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ece": 64, "cwr": 128}
#: The same columns as CICFlowMeter-V3 filled them: Java 8 HashMap order RST PSH ECE SYN ACK FIN URG CWR.
_V3_FLAG_BITS = {"fin": 4, "syn": 8, "rst": 64, "psh": 2, "ack": 16, "urg": 1, "cwr": 32, "ece": 128}
_DIRECTION_FLAG_BITS = {"fwd_psh": 8, "rev_psh": 8, "fwd_urg": 32, "rev_urg": 32}

_AMPM_FORMATS = ("%d/%m/%Y %I:%M:%S %p", "%d/%m/%Y %I:%M %p")
_DAY_FIRST_FORMATS = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M")
_ISO_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f")
_FORMATS = (*_AMPM_FORMATS, *_DAY_FIRST_FORMATS, *_ISO_FORMATS)

#: Roles that hold integers.
_NUMBER_ROLES = ("duration", "src_port", "dst_port", "fwd_packets", "rev_packets", "fwd_payload", "rev_payload",
                 "fwd_header", "rev_header", *_FLAG_BITS, *_DIRECTION_FLAG_BITS)

#: Candidate column: True where a V3 12-hour timestamp without AM/PM was read as afternoon.
PM_INFERRED = "_pm_inferred"


def _key(name: str) -> str:
    return " ".join(name.replace("\ufeff", "").split()).lower()


@dataclass(frozen=True)
class Layout:
    """Where each field of a CICFlowMeter table is: role -> column of the fields frame."""

    columns: dict[str, str]
    names: dict[str, str]
    """Role -> the header name as the file writes it (stripped), for reject reasons."""
    v3_output: bool
    """Written by CICFlowMeter-V3 (duplicated ``Fwd Header Length``): permuted flag columns and a
    12-hour clock without AM/PM."""


def find_layout(header: Sequence[str], source_name: str, columns: Sequence[str] | None = None) -> Layout | None:
    """The layout of a CICFlowMeter header, or None if the header is not CICFlowMeter's.

    ``columns`` names the fields frame's column for each header position (default: the header
    names themselves). Raises :class:`FormatError` for a CICFlowMeter table that is not a flow
    table (no addresses or times) or lacks columns this reader needs.

    >>> find_layout(["ts", "src", "dst"], "zeek.csv") is None
    True
    >>> try:
    ...     find_layout([" Destination Port", " Flow Duration", " Total Fwd Packets"], "ml.csv")
    ... except FormatError as e:
    ...     print(str(e)[:89])
    ml.csv: a CICFlowMeter feature table without Source IP, Destination IP, Timestamp columns
    """
    keys = [_key(h) for h in header]
    if "flow duration" not in keys or not any(k in keys for k in _NAMES["fwd_packets"]):
        return None
    columns = list(header) if columns is None else list(columns)
    found: dict[str, str] = {}
    written: dict[str, str] = {}
    for role, names in _NAMES.items():
        at = next((keys.index(n) for n in names if n in keys), None)
        if at is not None:
            found[role] = columns[at]
            written[role] = header[at].replace("\ufeff", "").strip()
    absent = [role for role in _ADDRESSING if role not in found]
    if absent:
        raise FormatError(
            f"{source_name}: a CICFlowMeter feature table without "
            f"{', '.join(_ADDRESSING[r] for r in absent)} columns (like CIC-IDS2017 "
            "MachineLearningCVE or the CSE-CIC-IDS2018 files for ML): it is not a flow table, which "
            "needs addresses and timestamps; use the files that keep Source IP, Destination IP and "
            "Timestamp (CIC-IDS2017 TrafficLabelling, CSE-CIC-IDS2018 Thuesday-20-02-2018)"
        )
    missing = [role for role in _REQUIRED if role not in found]
    if missing:
        wanted = ", ".join(f"{_NAMES[r][0]!r}" for r in missing)
        raise FormatError(f"{source_name}: CICFlowMeter table without the columns {wanted}")
    v3 = keys.count("fwd header length") > 1 or "fwd header length.1" in keys
    return Layout(found, written, v3)


def candidates(
    fields: pl.DataFrame,
    layout: Layout,
    timezone: str,
    blank: Callable[[pl.DataFrame], pl.Series] | None = None,
) -> pl.DataFrame:
    """CICFlowMeter fields (String columns named as in ``layout``) -> candidate canonical rows,
    with a :data:`PM_INFERRED` column for the afternoon rule.

    Rows written the common way take a fast path; the others (a few, if any) are parsed field by
    field with the reason for what is wrong. Both give the same values. ``blank`` says which of
    some rows have every field blank, where ``fields`` lacks columns of the file (default: every
    column of ``fields`` blank).
    """
    fast, clean = _fast_candidates(fields, layout, timezone)
    if clean.all():
        return fast
    rest = fields.filter(~clean)
    # CIC-IDS2017 holds hundreds of thousands of rows of bare commas: set them aside at once.
    data = [c for c in fields.columns if c != "source_row"]
    if blank is None:
        blank = _all_blank(data)
    empty = blank(rest)
    schema = _candidate_schema(fields.schema["source_row"])
    blanks = rest.filter(empty).select(
        *[pl.lit(None).alias(c) for c in schema if c not in ("source_row", "reject", PM_INFERRED)],
        pl.col("source_row"),
        pl.lit("empty row: every field is blank").alias("reject"),
        pl.lit(False).alias(PM_INFERRED),
    ).cast(schema)  # type: ignore[arg-type]
    careful = _careful_candidates(rest.filter(~empty), layout, timezone)
    return pl.concat([fast.filter(clean), blanks, careful]).sort("source_row")


def _all_blank(columns: list[str]) -> Callable[[pl.DataFrame], pl.Series]:
    def blank(rows: pl.DataFrame) -> pl.Series:
        return rows.select(
            pl.all_horizontal([pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in columns])
        ).to_series()

    return blank


def _flag_bits(layout: Layout) -> dict[str, int]:
    """Flag count column role -> the TCP flag bit it holds, for the columns this table has."""
    bits = {**(_V3_FLAG_BITS if layout.v3_output else _FLAG_BITS), **_DIRECTION_FLAG_BITS}
    return {role: bit for role, bit in bits.items() if role in layout.columns}


def _tcp_flags(counts: dict[str, pl.Expr], layout: Layout) -> pl.Expr:
    """OR of the bits whose count is above 0; null for a table without flag columns."""
    if not counts:
        return pl.lit(None, pl.Int64)
    bits = _flag_bits(layout)
    flags = pl.lit(0, pl.Int64)
    for role, count in counts.items():
        flags = flags | pl.when(count > 0).then(bits[role]).otherwise(0)
    return flags


def _candidate_schema(source_row: pl.DataType) -> dict[str, pl.DataType]:
    dt = pl.Datetime("us", "UTC")
    ints = ("src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "tcp_flags")
    return {"ts_start": dt, "ts_end": dt, "src_ip": pl.String(), "dst_ip": pl.String(),
            **{c: pl.Int64() for c in ints}, "label": pl.String(), "label_detail": pl.String(),
            "source_row": source_row, "reject": pl.String(), PM_INFERRED: pl.Boolean()}


# --- fast path: the common rows -----------------------------------------------------------------


def _plain_int(text: pl.Expr) -> pl.Expr:
    """An integer as CICFlowMeter writes it (``12`` or ``12.0``); null for anything else."""
    return text.str.strip_suffix(".0").cast(pl.Int64, strict=False)


def _batch_formats(text: pl.Series, samples: int = 32) -> list[str]:
    """The timestamp formats of a batch, seen in a few rows spread over it (a row written
    otherwise takes the careful path)."""
    step = max(1, text.len() // samples)
    sample = text.gather_every(step).drop_nulls().unique()
    return [f for f in _FORMATS if sample.str.strptime(pl.Datetime("us"), f, strict=False).null_count() < sample.len()]


def _localize(local: pl.Expr, tz: str) -> pl.Expr:
    if tz == "UTC":
        return local.dt.replace_time_zone("UTC")
    # Repeated hour (clocks go back): the earlier one; skipped hour: null, so a reject.
    return local.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")


def _fast_candidates(fields: pl.DataFrame, layout: Layout, tz: str) -> tuple[pl.DataFrame, pl.Series]:
    """Candidates parsed the common way, and which rows that worked for (``clean``).

    Each field is parsed once, in stages, with cheap expressions; a row is clean when every field
    parsed and its sizes are sound, and then :func:`_careful_candidates` gives the same values.
    """
    cols = layout.columns
    numbers = [r for r in _NUMBER_ROLES if r in cols]
    # Fields as written, not stripped: a field with spaces or an unset marker fails here and
    # goes the careful way.
    formats = _batch_formats(fields[cols["timestamp"]])

    def parse_time(wanted: Sequence[str]) -> pl.Expr:
        tried = [pl.col(cols["timestamp"]).str.strptime(pl.Datetime("us"), f, strict=False)
                 for f in formats if f in wanted]
        return pl.coalesce(tried) if tried else pl.lit(None, pl.Datetime("us"))

    parsed = fields.select(
        pl.col("source_row"),
        pl.col(cols["src_ip"]).alias("src_ip"),
        pl.col(cols["dst_ip"]).alias("dst_ip"),
        (pl.col(cols["label"]).str.strip_chars() if "label" in cols else pl.lit(None, pl.String)).alias("label"),
        parse_time(_DAY_FIRST_FORMATS).alias("day_first"),
        parse_time((*_AMPM_FORMATS, *_ISO_FORMATS)).alias("other"),
        pl.col(cols["proto"]).cast(pl.Int64, strict=False).alias("proto"),
        *[_plain_int(pl.col(cols[r])).alias(r) for r in numbers],
    )
    pm = pl.lit(layout.v3_output) & pl.col("day_first").dt.hour().is_between(1, 7)
    day_first = pl.when(pm).then(pl.col("day_first") + pl.duration(hours=12)).otherwise(pl.col("day_first"))
    parsed = parsed.with_columns(
        _localize(pl.coalesce(pl.col("other"), day_first), tz).alias("ts_start"),
        pm.fill_null(False).alias(PM_INFERRED),
    )

    def size(direction: str) -> tuple[pl.Expr, pl.Expr]:
        payload, header, packets = (pl.col(f"{direction}_{x}") for x in ("payload", "header", "packets"))
        total = payload + header
        value = pl.when(packets == 0).then(0).when(total == 0).then(None).otherwise(total)
        sound = (payload >= 0) & (header >= 0) & (total <= packets * MAX_BYTES_PER_PACKET)
        return value, sound

    (fwd_bytes, fwd_sound), (rev_bytes, rev_sound) = size("fwd"), size("rev")
    flags = _tcp_flags({role: pl.col(role) for role in _flag_bits(layout)}, layout)
    clean = (
        pl.all_horizontal([pl.col(c).is_not_null() for c in ("ts_start", "proto", *numbers)]) & fwd_sound & rev_sound
    ).fill_null(False)
    out = parsed.select(
        pl.col("ts_start"),
        (pl.col("ts_start") + pl.duration(microseconds=pl.col("duration"))).alias("ts_end"),
        "src_ip", "dst_ip", "src_port", "dst_port", "proto", "fwd_packets",
        fwd_bytes.alias("fwd_bytes"),
        "rev_packets",
        rev_bytes.alias("rev_bytes"),
        flags.alias("tcp_flags"),
        pl.when(pl.col("label") != "").then(pl.col("label")).alias("label"),
        pl.lit(None, pl.String).alias("label_detail"),
        "source_row",
        pl.lit(None, pl.String).alias("reject"),
        PM_INFERRED,
        clean.alias("_clean"),
    )
    schema = _candidate_schema(fields.schema["source_row"])
    return out.drop("_clean").cast(schema), out["_clean"]  # type: ignore[arg-type]


# --- careful path: every field with its reason --------------------------------------------------


def _careful_candidates(fields: pl.DataFrame, layout: Layout, timezone: str) -> pl.DataFrame:
    """Candidates field by field, each with the reason it does not parse (slow: for the few rows
    the fast path leaves, blank rows excepted)."""

    def col(role: str) -> pl.Expr:
        return pl.col(layout.columns[role]) if role in layout.columns else pl.lit(None, pl.String)

    def number(role: str) -> Parsed:
        return parse_int(col(role), layout.names.get(role, role))

    start, pm_inferred = _timestamp(col("timestamp"), layout.v3_output, timezone)
    parsed = {role: number(role) for role in _NUMBER_ROLES if role in layout.columns}
    parsed["proto"] = parse_proto(col("proto"), layout.names["proto"])
    parsed["start"] = start
    # Each parser once: combining them below would otherwise evaluate them again and again.
    fields, parsed = materialize(fields.with_columns(pm_inferred.alias(PM_INFERRED)), parsed)
    start, duration, proto = parsed.pop("start"), parsed.pop("duration"), parsed.pop("proto")
    counts = {role: parsed[role] for role in (
        "fwd_packets", "rev_packets", "fwd_payload", "rev_payload", "fwd_header", "rev_header")}
    fwd_bytes, fwd_bad = _bytes(counts["fwd_payload"], counts["fwd_header"], counts["fwd_packets"],
                                (layout.names["fwd_payload"], layout.names["fwd_header"]))
    rev_bytes, rev_bad = _bytes(counts["rev_payload"], counts["rev_header"], counts["rev_packets"],
                                (layout.names["rev_payload"], layout.names["rev_header"]))
    ports = {role: parsed[role] for role in ("src_port", "dst_port")}
    flag_counts = {role: parsed[role] for role in _flag_bits(layout)}
    flags = _tcp_flags({role: p.value for role, p in flag_counts.items()}, layout)

    header_again = unset(col("timestamp")).str.to_lowercase() == "timestamp"
    label = col("label").str.strip_chars()
    return fields.select(
        start.value.alias("ts_start"),
        (start.value + pl.duration(microseconds=duration.value)).alias("ts_end"),
        col("src_ip").alias("src_ip"),
        col("dst_ip").alias("dst_ip"),
        *[p.value.alias(role) for role, p in ports.items()],
        proto.value.alias("proto"),
        counts["fwd_packets"].value.alias("fwd_packets"),
        fwd_bytes.alias("fwd_bytes"),
        counts["rev_packets"].value.alias("rev_packets"),
        rev_bytes.alias("rev_bytes"),
        flags.alias("tcp_flags"),
        pl.when(label != "").then(label).alias("label"),
        pl.lit(None, pl.String).alias("label_detail"),
        pl.col("source_row"),
        first_reason(
            pl.when(header_again).then(pl.lit("repeated header line")),
            start.reason, duration.reason, proto.reason,
            *[p.reason for p in ports.values()], *[p.reason for p in counts.values()],
            fwd_bad, rev_bad, *[p.reason for p in flag_counts.values()],
        ).alias("reject"),
        pl.col(PM_INFERRED),
    ).cast(_candidate_schema(fields.schema["source_row"]))  # type: ignore[arg-type]


def _timestamp(raw: pl.Expr, v3_output: bool, tz: str) -> tuple[Parsed, pl.Expr]:
    """CICFlowMeter timestamps (all variants) -> (Datetime(us, UTC), whether read as afternoon)."""
    s = unset(raw)

    def parse(formats: tuple[str, ...]) -> pl.Expr:
        return pl.coalesce([s.str.strptime(pl.Datetime("us"), f, strict=False) for f in formats])

    day_first = parse(_DAY_FIRST_FORMATS)
    hour = day_first.dt.hour()
    afternoon = pl.lit(v3_output) & hour.is_between(1, 7)
    day_first = pl.when(afternoon).then(day_first + pl.duration(hours=12)).otherwise(day_first)
    local = pl.coalesce(parse(_AMPM_FORMATS), day_first, parse(_ISO_FORMATS))
    value = _localize(local, tz)
    reason = (
        pl.when(local.is_null() & s.is_not_null())
        .then(pl.format("Timestamp: cannot parse {}", s.str.slice(0, 60)))
        .when(value.is_null() & local.is_not_null())
        .then(pl.format(f"Timestamp {{}} does not exist in time zone {tz} (clock change)", s))
        .otherwise(None)
    )
    inferred = (afternoon & local.is_not_null()).fill_null(False)
    return Parsed(value, reason), inferred


def _bytes(payload: Parsed, header: Parsed, packets: Parsed, names: tuple[str, str]) -> tuple[pl.Expr, pl.Expr]:
    """Bytes of one direction (payload + counted headers) and why they are unusable, if so."""
    total = payload.value + header.value
    value = (
        pl.when(packets.value == 0).then(pl.lit(0, pl.Int64))
        # CICFlowMeter sizes only TCP/UDP packets: a size of 0 with packets means "not measured".
        .when(total == 0).then(pl.lit(None, pl.Int64))
        .otherwise(total)
    )
    reason = (
        pl.when(payload.value < 0)
        .then(pl.format(f"{names[0]} is negative: {{}}", payload.value))
        .when(header.value < 0)
        .then(pl.format(f"{names[1]} is negative: {{}} (CICFlowMeter header-length bug)", header.value))
        .when(total > packets.value * MAX_BYTES_PER_PACKET)
        .then(pl.format(f"absurd counters: {names[0]} + {names[1]} = {{}} bytes for {{}} packets",
                        total, packets.value))
        .otherwise(None)
    )
    return value, reason


# --- CSV -----------------------------------------------------------------------------------------


def read_header(source: Source, limit: int = 1 << 20) -> str:
    """The first line of a text source (without BOM and line end). Raises FormatError if empty."""
    head = b""
    with source.open() as f:
        while b"\n" not in head and len(head) < limit:
            chunk = f.read(64 * 1024)
            if not chunk:
                break
            head += chunk
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    if not line.strip():
        raise FormatError(f"{source.name}: file is empty (no header line)")
    try:
        return line.decode("utf-8-sig")
    except UnicodeDecodeError:
        return line.decode("cp1252", errors="replace")


def _to_utf8(block: bytes) -> bytes:
    """Lines that are not UTF-8 but are Windows-1252 (CIC-IDS2017 labels), re-encoded as UTF-8.

    Lines that are neither stay as they are, for the engine to reject. Fast when all is UTF-8.
    """
    if block.isascii():  # ASCII is UTF-8, and far cheaper to check
        return block
    try:
        block.decode("utf-8")
        return block
    except UnicodeDecodeError:
        pass
    lines = block.split(b"\n")
    for i, line in enumerate(lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            try:
                lines[i] = line.decode("cp1252").encode("utf-8")
            except UnicodeDecodeError:
                pass
    return b"\n".join(lines)


class _Utf8Lines(io.RawIOBase):
    """A binary stream whose lines are passed through :func:`_to_utf8` (line count unchanged)."""

    def __init__(self, raw: BinaryIO, block_bytes: int) -> None:
        self._blocks = iter_line_blocks(raw, block_bytes)
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
        while not self._buf:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._buf = memoryview(_to_utf8(block))
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _blank_lines(lines: Lines, delimiter: str, rows: pl.DataFrame) -> pl.Series:
    """Which of ``rows`` have every field of their line blank (also the fields not read)."""
    return lines.blank(rows["source_row"], delimiter)


def _sniff(head: bytes, name: str) -> bool:
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    keys = {_key(h) for h in first.split(",")}
    return "flow duration" in keys and any(k in keys for k in _NAMES["fwd_packets"])


def _read(source: Source, options: ReadOptions) -> Iterator[Checked]:
    header = read_header(source).split(",")
    columns = [f"c{i}" for i in range(len(header))]  # header names repeat (Fwd Header Length)
    layout = find_layout(header, source.name, columns)
    if layout is None:
        raise FormatError(f"{source.name}: not a CICFlowMeter CSV (no 'Flow Duration' and 'Total Fwd Packets' columns)")
    used = set(layout.columns.values())
    afternoon = 0
    with source.open() as raw:
        stream = _Utf8Lines(raw, options.block_bytes)
        for batch in read_delimited(
            stream, source.name, delimiter=",", columns=columns, skip_lines=1, block_bytes=options.block_bytes,
            include=[c for c in columns if c in used],
        ):
            blank = partial(_blank_lines, batch.lines, ",")
            cand = candidates(batch.fields, layout, options.timezone, blank)
            afternoon += int(cand[PM_INFERRED].sum())
            yield check_batch(cand, batch, source.name)
    warn_pm_inferred(source.name, afternoon)


def warn_pm_inferred(source_name: str, count: int) -> None:
    """Say how many V3 timestamps were read as afternoon (see the module docstring)."""
    if count:
        log.warning(
            "%s: %d timestamps on CICFlowMeter-V3's 12-hour clock without AM/PM had an hour of 1 to 7 "
            "and were read as 13:00 to 19:59 (a working-hours capture, as CIC-IDS2017)",
            source_name, count,
        )


FORMAT = FlowFormat(
    name="cicflowmeter",
    description="CICFlowMeter CSV (CIC-IDS2017 TrafficLabelling, CSE-CIC-IDS2018, CIC-DDoS2019, CICFlowMeter V3/V4)",
    sniff=_sniff,
    read=_read,
    extensions=(".csv",),
)
