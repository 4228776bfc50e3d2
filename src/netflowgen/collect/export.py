"""Canonical flows -> NetFlow v5, v9 and IPFIX (v10) export datagrams, as a router would send them.

The encoder is the mirror of :mod:`netflowgen.collect.netflow`: the information element ids, the
v5 record layout (``V5_TEMPLATE``) and the header layouts are the decoder's, not defined twice.

:func:`prepare` turns a canonical flow table into unidirectional export records, sorted by the
time an exporter emits a flow (its end); an :class:`Exporter` (one observation domain of one
exporting device) cuts them into datagrams. What is encoded, and how:

* **Direction.** NetFlow records are unidirectional. A bidirectional row (``rev_packets`` or
  ``rev_bytes`` non-zero, e.g. from Zeek, Argus or CICFlowMeter) becomes two records: the forward
  counters from ``src`` to ``dst``, and the reverse counters as a second record with the
  endpoints (addresses and ports) swapped. Both carry the row's times and its ``tcp_flags`` (the
  table holds one OR of the flags of both directions). A direction with neither packets nor
  bytes is not sent (unless the row has none at all: then its forward record is).
* **Times** are sent to the millisecond (microseconds are truncated). v5 and v9 carry
  first/last switched as sysUpTime milliseconds (v9: ``flowStartSysUpTime``/``flowEndSysUpTime``,
  22/21): the exporter's boot time is set one hour before the first flow's start, and each
  datagram's header holds the uptime at its export time, a whole second (header times are
  seconds) at or after the latest flow end it carries. IPFIX carries absolute
  ``flowStartMilliseconds``/``flowEndMilliseconds`` (152/153) and the export time in seconds.
* **Fields.** Addresses, ports (0 where the table has none: ICMP type/code are not in the table),
  protocol, TCP flags (0 where unknown), packets and bytes: 32-bit counters in v5 (as the format
  has), 64-bit in v9 and IPFIX. v9 and IPFIX send an IPv4 template (id 256) and an IPv6 one (257).
* **What v5 cannot carry** is never dropped silently: IPv6 flows and counters above 2**32 - 1 are
  left out and counted in :attr:`Prepared.skipped` under their reason.
* **Templates** go in the first datagram and again every ``template_every`` datagrams or
  ``template_seconds`` of export time, whichever comes first, as exporters refresh them.
* **Sequence numbers** per observation domain, in each version's unit: v5 the flows sent before
  the datagram, v9 the datagrams sent before it (RFC 3954), IPFIX the data records sent before it
  (RFC 7011). The domain is v5's engine type/id (high/low byte), v9's source id, IPFIX's
  observation domain id.
* **Size.** A datagram never exceeds ``max_datagram`` bytes (default 1400: it fits a 1500-byte
  MTU over IPv4 or IPv6 with room to spare); v5 also holds at most 30 records.

>>> import polars as pl
>>> from datetime import datetime, UTC
>>> flows = pl.DataFrame({"ts_start": [datetime(2024, 3, 1, 12, tzinfo=UTC)], "ts_end": [datetime(2024, 3, 1, 12, 0, 1, tzinfo=UTC)],
...                       "src_ip": ["10.0.0.1"], "dst_ip": ["10.0.0.2"], "src_port": [1234], "dst_port": [53], "proto": [17],
...                       "fwd_packets": [1], "fwd_bytes": [80], "rev_packets": [1], "rev_bytes": [120], "tcp_flags": [None]})
>>> prepared = prepare(flows, ExportFormat.IPFIX)
>>> prepared.records, prepared.reverse_records
(2, 1)
>>> [d.records for d in Exporter(ExportFormat.IPFIX).encode(prepared)]
[2]
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import polars as pl

# The decoder's layouts: one definition of the headers, the v5 record and the element ids.
from netflowgen.collect.wire import ELEMENTS, IPFIX_HEADER, SET_HEADER, V5_HEADER, V5_MAX_COUNT, V5_TEMPLATE, V9_HEADER

__all__ = ["DEFAULT_MAX_DATAGRAM", "Datagram", "ExportFormat", "Exporter", "Prepared", "prepare"]

#: Largest datagram payload by default: a 1500-byte MTU less IPv6 and UDP headers, with room to spare.
DEFAULT_MAX_DATAGRAM = 1400
#: Template ids of the IPv4 and IPv6 flow templates (v9 and IPFIX).
TEMPLATE_IDS = {4: 256, 6: 257}
#: How long the exporter has been up when the first flow starts (v5/v9 sysUpTime).
BOOT_BEFORE_FIRST_MS = 3_600_000

_ID = {name: element for element, (name, _) in ELEMENTS.items()}
_U32_MAX = 0xFFFFFFFF


class ExportFormat(enum.Enum):
    """The export protocol to encode."""

    V5 = "v5"
    V9 = "v9"
    IPFIX = "ipfix"

    @property
    def version(self) -> int:
        """The version number in the datagram header."""
        return {"v5": 5, "v9": 9, "ipfix": 10}[self.value]


def _fields(fmt: ExportFormat, family: int) -> tuple[tuple[int, int], ...]:
    """(element id, length) of the record layout for one address family."""
    if fmt is ExportFormat.V5:
        return tuple((int(e), n) for e, n in V5_TEMPLATE.fields)  # type: ignore[arg-type]
    addr = (("sourceIPv4Address", 4), ("destinationIPv4Address", 4)) if family == 4 else \
        (("sourceIPv6Address", 16), ("destinationIPv6Address", 16))
    times = (("flowStartSysUpTime", 4), ("flowEndSysUpTime", 4)) if fmt is ExportFormat.V9 else \
        (("flowStartMilliseconds", 8), ("flowEndMilliseconds", 8))
    named = (*addr, ("sourceTransportPort", 2), ("destinationTransportPort", 2), ("protocolIdentifier", 1),
             ("tcpControlBits", 1), ("packetDeltaCount", 8), ("octetDeltaCount", 8), *times)
    return tuple((_ID[name], length) for name, length in named)


def _dtype(fields: tuple[tuple[int, int], ...]) -> tuple[np.dtype, dict[int, str]]:
    """A packed big-endian record dtype for the fields, and element id -> field name (first use)."""
    names, formats, columns = [], [], {}
    for i, (element, length) in enumerate(fields):
        names.append(f"f{i}")
        formats.append(f">u{length}" if length in (1, 2, 4, 8) and element not in (8, 12, 15, 27, 28) else ("u1", (length,)))
        columns.setdefault(element, f"f{i}")
    return np.dtype({"names": names, "formats": formats}), columns


# --- preparing records -------------------------------------------------------------------------


@dataclass
class Prepared:
    """Unidirectional export records, sorted by end time (then start), as columns.

    ``src``/``dst`` hold 16 bytes per record (IPv4 in the last 4); ``v6`` says which family.
    """

    start_ms: np.ndarray
    end_ms: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    v6: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    proto: np.ndarray
    tcp_flags: np.ndarray
    packets: np.ndarray
    octets: np.ndarray
    flows: int = 0
    """rows of the flow table prepared."""
    reverse_records: int = 0
    """records made of the reverse counters of bidirectional rows."""
    skipped: Counter[str] = field(default_factory=Counter)
    """records not sent, by reason (what the format cannot carry)."""

    @property
    def records(self) -> int:
        return len(self.end_ms)

    def shifted(self, ms: int) -> Prepared:
        """The same records ``ms`` milliseconds later (for another pass of a looped replay)."""
        return Prepared(self.start_ms + ms, self.end_ms + ms, self.src, self.dst, self.v6, self.src_port, self.dst_port,
                        self.proto, self.tcp_flags, self.packets, self.octets, self.flows, self.reverse_records,
                        Counter(self.skipped))


def _packed_addresses(column: pl.Series, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Address text -> ((n, 16) uint8 with IPv4 in the last 4 bytes, (n,) bool IPv6).

    Dotted IPv4 is parsed in bulk (checked by writing it back); everything else (IPv6, and any
    text the bulk path does not give back unchanged) through :mod:`ipaddress`, once per distinct
    address.
    """
    n = len(column)
    out = np.zeros((n, 16), np.uint8)
    v6 = np.zeros(n, bool)
    slow = column.str.contains(":", literal=True).fill_null(True).to_numpy().copy()
    dotted = np.flatnonzero(~slow)
    if len(dotted):
        text = column.gather(dotted)
        parts = text.str.split_exact(".", 3).struct.unnest()
        octets = parts.select(pl.all().cast(pl.UInt8, strict=False))
        written = octets.select(pl.concat_str(pl.all().cast(pl.String), separator=".")).to_series()
        good = (written == text).fill_null(False).to_numpy()
        out[dotted[good], 12:] = octets.filter(pl.Series(good)).to_numpy().astype(np.uint8)
        slow[dotted[~good]] = True
    rows = np.flatnonzero(slow)
    if len(rows):
        others = column.gather(rows)
        distinct = others.unique(maintain_order=True)
        table = np.zeros((len(distinct), 16), np.uint8)
        family = np.zeros(len(distinct), bool)
        for i, value in enumerate(distinct.to_list()):
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{where}: {value!r} is not an IP address (the flow table holds IP flows only)") from None
            packed = address.packed
            table[i, 16 - len(packed):] = np.frombuffer(packed, np.uint8)
            family[i] = address.version == 6
        index = others.replace_strict(distinct, pl.Series(np.arange(len(distinct), dtype=np.int64)), return_dtype=pl.Int64).to_numpy()
        out[rows], v6[rows] = table[index], family[index]
    return out, v6


def prepare(flows: pl.DataFrame, fmt: ExportFormat) -> Prepared:
    """Canonical flows -> unidirectional records for ``fmt``, sorted by (end, start)."""
    missing = [c for c in ("ts_start", "ts_end", "src_ip", "dst_ip", "proto", "fwd_packets", "fwd_bytes") if c not in flows.columns]
    if missing:
        raise ValueError(f"not a canonical flow table: no column {', '.join(missing)}")

    def col(name: str, dtype: pl.DataType) -> pl.Expr:
        return (pl.col(name) if name in flows.columns else pl.lit(None)).cast(dtype).fill_null(0).alias(name)

    table = flows.select(
        pl.col("ts_start").dt.epoch("us").floordiv(1000).alias("start_ms"),
        pl.col("ts_end").fill_null(pl.col("ts_start")).dt.epoch("us").floordiv(1000).alias("end_ms"),
        "src_ip", "dst_ip", col("src_port", pl.UInt16()), col("dst_port", pl.UInt16()), col("proto", pl.UInt8()),
        col("tcp_flags", pl.UInt8()), col("fwd_packets", pl.UInt64()), col("fwd_bytes", pl.UInt64()),
        col("rev_packets", pl.UInt64()), col("rev_bytes", pl.UInt64()),
    )
    has_rev = (pl.col("rev_packets") > 0) | (pl.col("rev_bytes") > 0)
    has_fwd = (pl.col("fwd_packets") > 0) | (pl.col("fwd_bytes") > 0)
    forward = table.filter(has_fwd | ~has_rev).select(
        "start_ms", "end_ms", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "tcp_flags",
        pl.col("fwd_packets").alias("packets"), pl.col("fwd_bytes").alias("octets"))
    reverse = table.filter(has_rev).select(
        "start_ms", "end_ms", pl.col("dst_ip").alias("src_ip"), pl.col("src_ip").alias("dst_ip"),
        pl.col("dst_port").alias("src_port"), pl.col("src_port").alias("dst_port"), "proto", "tcp_flags",
        pl.col("rev_packets").alias("packets"), pl.col("rev_bytes").alias("octets"))
    records = pl.concat([forward, reverse], how="vertical").sort("end_ms", "start_ms", maintain_order=True)

    src, src6 = _packed_addresses(records["src_ip"], "src_ip")
    dst, dst6 = _packed_addresses(records["dst_ip"], "dst_ip")
    keep = np.ones(records.height, bool)
    skipped: Counter[str] = Counter()

    def skip(mask: np.ndarray, reason: str) -> None:
        mask = mask & keep
        if mask.any():
            skipped[reason] += int(mask.sum())
            keep[mask] = False

    skip(src6 != dst6, "IPv4 and IPv6 endpoints in one flow")
    if fmt is ExportFormat.V5:
        skip(src6, "IPv6 (NetFlow v5 carries IPv4 only)")
        over = (records["packets"].to_numpy() > _U32_MAX) | (records["octets"].to_numpy() > _U32_MAX)
        skip(over, "packets or bytes above 2**32 - 1 (NetFlow v5 counters are 32-bit)")
    kept = records.filter(pl.Series(keep))
    n_reverse = reverse.height
    return Prepared(
        start_ms=kept["start_ms"].to_numpy(), end_ms=kept["end_ms"].to_numpy(),
        src=src[keep], dst=dst[keep], v6=src6[keep],
        src_port=kept["src_port"].to_numpy(), dst_port=kept["dst_port"].to_numpy(), proto=kept["proto"].to_numpy(),
        tcp_flags=kept["tcp_flags"].to_numpy(), packets=kept["packets"].to_numpy(), octets=kept["octets"].to_numpy(),
        flows=flows.height, reverse_records=n_reverse, skipped=skipped,
    )


# --- encoding ----------------------------------------------------------------------------------


class Datagram(NamedTuple):
    """One export datagram."""

    payload: bytes
    records: int
    """flow records in it."""
    clock_ms: int
    """the latest flow end it carries (ms since the epoch): when, on the flows' clock, it is due."""
    templates: bool
    """whether it carries the templates."""


@dataclass
class Exporter:
    """One observation domain of one exporting device: sequence numbers, clock and templates
    carry over from one :meth:`encode` call to the next."""

    fmt: ExportFormat
    domain: int = 0
    """v5 engine type (high byte) and id (low byte), v9 source id, IPFIX observation domain id."""
    template_every: int = 20
    """datagrams between template refreshes."""
    template_seconds: int = 60
    """seconds of export time between template refreshes at the latest."""
    max_datagram: int = DEFAULT_MAX_DATAGRAM
    boot_ms: int | None = None
    """the exporter's boot time (v5/v9 sysUpTime 0); by default an hour before the first flow starts."""
    datagrams: int = 0
    """datagrams encoded so far."""
    records: int = 0
    """flow records encoded so far."""
    # Datagrams since the last one with templates (that one included; None: none yet), its export
    # second, and the export second of the last datagram (header times never go back).
    _since_template: int | None = field(default=None, init=False, repr=False)
    _template_export_s: int = field(default=0, init=False, repr=False)
    _last_export_s: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        limit = 0xFFFF if self.fmt is ExportFormat.V5 else _U32_MAX
        if not 0 <= self.domain <= limit:
            raise ValueError(f"observation domain {self.domain} out of range 0..{limit} for {self.fmt.value}")
        if self.template_every < 1 or self.template_seconds < 1:
            raise ValueError("template_every and template_seconds must be at least 1")
        self._header = {ExportFormat.V5: V5_HEADER, ExportFormat.V9: V9_HEADER, ExportFormat.IPFIX: IPFIX_HEADER}[self.fmt]
        self._layouts = {family: _dtype(_fields(self.fmt, family)) for family in (4, 6)}
        self._templates = self._template_set()
        smallest = self._header.size + len(self._templates) + 4 + max(d.itemsize for d, _ in self._layouts.values())
        if not smallest <= self.max_datagram <= 65507:
            raise ValueError(f"max_datagram must lie in {smallest}..65507 bytes for {self.fmt.value}, not {self.max_datagram}")

    def _template_set(self) -> bytes:
        if self.fmt is ExportFormat.V5:
            return b""
        body = b""
        for family in (4, 6):
            fields = _fields(self.fmt, family)
            body += struct.pack("!HH", TEMPLATE_IDS[family], len(fields)) + b"".join(struct.pack("!HH", e, n) for e, n in fields)
        return SET_HEADER.pack(0 if self.fmt is ExportFormat.V9 else 2, 4 + len(body)) + body

    def _records(self, p: Prepared, family: int, rows: np.ndarray) -> bytes:
        """The records of ``rows`` (all of one family) as bytes, in one vectorised fill."""
        if not len(rows):
            return b""
        dtype, c = self._layouts[family]
        rec = np.zeros(len(rows), dtype)
        width = 4 if family == 4 else 16
        rec[c[_ID["sourceIPv4Address" if family == 4 else "sourceIPv6Address"]]] = p.src[rows, 16 - width:]
        rec[c[_ID["destinationIPv4Address" if family == 4 else "destinationIPv6Address"]]] = p.dst[rows, 16 - width:]
        rec[c[_ID["sourceTransportPort"]]] = p.src_port[rows]
        rec[c[_ID["destinationTransportPort"]]] = p.dst_port[rows]
        rec[c[_ID["protocolIdentifier"]]] = p.proto[rows]
        rec[c[_ID["tcpControlBits"]]] = p.tcp_flags[rows]
        rec[c[_ID["packetDeltaCount"]]] = p.packets[rows]
        rec[c[_ID["octetDeltaCount"]]] = p.octets[rows]
        if self.fmt is ExportFormat.IPFIX:
            rec[c[_ID["flowStartMilliseconds"]]] = p.start_ms[rows]
            rec[c[_ID["flowEndMilliseconds"]]] = p.end_ms[rows]
        else:
            boot = self.boot_ms or 0
            rec[c[_ID["flowStartSysUpTime"]]] = (p.start_ms[rows] - boot) & _U32_MAX
            rec[c[_ID["flowEndSysUpTime"]]] = (p.end_ms[rows] - boot) & _U32_MAX
        return rec.tobytes()

    def _templates_due(self, export_s: int) -> bool:
        if self.fmt is ExportFormat.V5:
            return False
        return (self._since_template is None or self._since_template >= self.template_every
                or export_s - self._template_export_s >= self.template_seconds)

    def encode(self, p: Prepared) -> Iterator[Datagram]:
        """The records as datagrams, in order (the exporter's state advances as they are taken)."""
        if not p.records:
            return
        if self.boot_ms is None:
            self.boot_ms = (int(p.start_ms.min()) // 1000) * 1000 - BOOT_BEFORE_FIRST_MS
        family = np.where(p.v6, 6, 4)
        rows = {f: np.flatnonzero(family == f) for f in (4, 6)}
        raw = {f: self._records(p, f, rows[f]) for f in (4, 6)}
        size = {f: self._layouts[f][0].itemsize for f in (4, 6)}
        # Whole seconds (header times are seconds) at or after each record's end.
        ceil_s = -(-p.end_ms // 1000)
        pad = self.fmt is ExportFormat.V9  # RFC 3954 pads flowsets to 32 bits; IPFIX sets need not be
        v5 = self.fmt is ExportFormat.V5
        header = self._header.size

        def set_bytes(k: int, f: int) -> int:
            body = k * size[f]
            return 0 if not k else (body if v5 else 4 + body + (-body % 4 if pad else 0))

        first = 0
        taken = {4: 0, 6: 0}  # records of each family in datagrams already made
        n = {4: 0, 6: 0}
        with_templates = self._templates_due(max(int(ceil_s[0]), self._last_export_s))
        for i in range(p.records + 1):
            if i < p.records:
                f = int(family[i])
                n[f] += 1
                total = header + (len(self._templates) if with_templates else 0) + set_bytes(n[4], 4) + set_bytes(n[6], 6)
                if total <= self.max_datagram and not (v5 and n[4] > V5_MAX_COUNT):
                    continue
                n[f] -= 1
            # Records first..i-1 make one datagram.
            sets = self._templates if with_templates else b""
            for g in (4, 6):
                if not n[g]:
                    continue
                body = raw[g][taken[g] * size[g]:(taken[g] + n[g]) * size[g]]
                if not v5:
                    body += b"\0" * (-len(body) % 4 if pad else 0)
                    body = SET_HEADER.pack(TEMPLATE_IDS[g], 4 + len(body)) + body
                sets += body
                taken[g] += n[g]
            count = i - first
            export_s = max(int(ceil_s[i - 1]), self._last_export_s, 0)  # sorted by end: the last ends latest
            yield Datagram(self._header_bytes(export_s, count, with_templates, len(sets)) + sets, count,
                           int(p.end_ms[first:i].max()), with_templates)
            self.datagrams += 1
            self.records += count
            self._last_export_s = export_s
            if with_templates:
                self._since_template, self._template_export_s = 1, export_s
            elif self._since_template is not None:
                self._since_template += 1
            if i < p.records:
                first, n = i, {4: 0, 6: 0}
                n[int(family[i])] = 1
                with_templates = self._templates_due(max(int(ceil_s[i]), self._last_export_s))

    def _header_bytes(self, export_s: int, records: int, with_templates: bool, body: int) -> bytes:
        """The header of the next datagram; sequence numbers count what was sent before it."""
        if self.fmt is ExportFormat.IPFIX:
            return IPFIX_HEADER.pack(10, IPFIX_HEADER.size + body, export_s & _U32_MAX, self.records & _U32_MAX, self.domain)
        uptime = (export_s * 1000 - (self.boot_ms or 0)) & _U32_MAX
        if self.fmt is ExportFormat.V5:
            return V5_HEADER.pack(5, records, uptime, export_s & _U32_MAX, 0, self.records & _U32_MAX,
                                   self.domain >> 8, self.domain & 0xFF, 0)
        # v9 counts every record of the packet, the two template records included.
        count = records + (len(TEMPLATE_IDS) if with_templates else 0)
        return V9_HEADER.pack(9, count, uptime, export_s & _U32_MAX, self.datagrams & _U32_MAX, self.domain)
