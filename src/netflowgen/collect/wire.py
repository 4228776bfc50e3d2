"""The NetFlow v5, v9 and IPFIX wire format: headers, the IANA elements the canonical table
uses, templates with their bulk layouts, and the bulk decoding of pending data records.

Shared by the decoder (``netflow.py``), which feeds it, and the exporter (``export.py``), which
writes the same headers and elements. Records are decoded in bulk: one numpy structured dtype per
template (big-endian fields at their offsets), one ``np.frombuffer`` over all the template's
records, vectorized column arithmetic. Only IPFIX templates with variable-length fields are walked
record by record by the decoder (their fixed fields are packed into the bulk layout).
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import polars as pl

from netflowgen.read.validate import normalize_ips

__all__ = ["ELEMENTS", "REVERSE_PEN", "V5_TEMPLATE", "PendingSet", "Template", "build_template", "decode_records"]

#: The private enterprise number of RFC 5103's reverse elements: (29305, id) is the reverse of id.
REVERSE_PEN = 29305
_COUNTER = (1, 2, 3, 4, 5, 6, 7, 8)

#: IANA information elements the canonical table uses: id (or (enterprise, id)) -> (name, allowed
#: lengths).
ELEMENTS: dict[int | tuple[int, int], tuple[str, tuple[int, ...]]] = {
    1: ("octetDeltaCount", (1, 2, 3, 4, 5, 6, 7, 8)),
    2: ("packetDeltaCount", (1, 2, 3, 4, 5, 6, 7, 8)),
    4: ("protocolIdentifier", (1,)),
    6: ("tcpControlBits", (1, 2)),
    7: ("sourceTransportPort", (2,)),
    8: ("sourceIPv4Address", (4,)),
    11: ("destinationTransportPort", (2,)),
    12: ("destinationIPv4Address", (4,)),
    21: ("flowEndSysUpTime", (4,)),
    22: ("flowStartSysUpTime", (4,)),
    23: ("postOctetDeltaCount", (1, 2, 3, 4, 5, 6, 7, 8)),
    24: ("postPacketDeltaCount", (1, 2, 3, 4, 5, 6, 7, 8)),
    27: ("sourceIPv6Address", (16,)),
    28: ("destinationIPv6Address", (16,)),
    85: ("octetTotalCount", (1, 2, 3, 4, 5, 6, 7, 8)),
    86: ("packetTotalCount", (1, 2, 3, 4, 5, 6, 7, 8)),
    150: ("flowStartSeconds", (4,)),
    151: ("flowEndSeconds", (4,)),
    152: ("flowStartMilliseconds", (8,)),
    153: ("flowEndMilliseconds", (8,)),
    154: ("flowStartMicroseconds", (8,)),
    155: ("flowEndMicroseconds", (8,)),
    156: ("flowStartNanoseconds", (8,)),
    157: ("flowEndNanoseconds", (8,)),
    160: ("systemInitTimeMilliseconds", (8,)),
    # Biflows (RFC 5103): the reverse direction's counters, and which end started the flow.
    (REVERSE_PEN, 1): ("reverseOctetDeltaCount", _COUNTER),
    (REVERSE_PEN, 2): ("reversePacketDeltaCount", _COUNTER),
    (REVERSE_PEN, 23): ("reversePostOctetDeltaCount", _COUNTER),
    (REVERSE_PEN, 24): ("reversePostPacketDeltaCount", _COUNTER),
    (REVERSE_PEN, 85): ("reverseOctetTotalCount", _COUNTER),
    (REVERSE_PEN, 86): ("reversePacketTotalCount", _COUNTER),
    239: ("biflowDirection", (1,)),
    # Packet sampling, in options records (or, rarely, in the flow records themselves): v9
    # samplingInterval and FLOW_SAMPLER_RANDOM_INTERVAL, IPFIX samplingPacketInterval/Space (n
    # packets taken, then m skipped); the sampler a flow record names (v9 FLOW_SAMPLER_ID, IPFIX
    # selectorId) picks the options record that applies.
    34: ("samplingInterval", _COUNTER),
    48: ("samplerId", _COUNTER),
    50: ("samplerRandomInterval", _COUNTER),
    302: ("selectorId", _COUNTER),
    305: ("samplingPacketInterval", _COUNTER),
    306: ("samplingPacketSpace", _COUNTER),
}

#: RFC 5103 biflowDirection: the record's source is the flow's responder (its ends are swapped).
REVERSE_INITIATOR = 2
#: Elements a flow can do without: one of a length it cannot have is skipped as unknown, where a
#: wrong address, port, counter or time makes every record of the template garbage.
_ADVISORY = {239, 34, 48, 50, 302, 305, 306}

_BYTES_IDS = (1, 85, 23)
_PACKETS_IDS = (2, 86, 24)
_REV_BYTES_IDS = tuple((REVERSE_PEN, i) for i in _BYTES_IDS)
_REV_PACKETS_IDS = tuple((REVERSE_PEN, i) for i in _PACKETS_IDS)
#: The sampler a record names, and the sampling an options (or flow) record states.
SAMPLER_IDS = (48, 302)
SAMPLING_IDS = (34, 50, 305)
VARIABLE = 0xFFFF
_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
#: Absolute times are clipped here before scaling (beyond 2100: validation rejects them as absurd).
MAX_MS = 4_102_444_800_000 + 1

V5_HEADER = struct.Struct("!HHIIIIBBH")  # version, count, uptime, secs, nsecs, sequence, engine type, id, sampling
V9_HEADER = struct.Struct("!HHIIII")  # version, count, uptime, secs, sequence, source id
IPFIX_HEADER = struct.Struct("!HHIII")  # version, length, export time, sequence, domain
SET_HEADER = struct.Struct("!HH")
U16 = struct.Struct("!H")
U16x2 = struct.Struct("!HH")
U16x3 = struct.Struct("!HHH")
U32 = struct.Struct("!I")

V5_RECORD = 48
V5_MAX_COUNT = 30


# --- templates ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Template:
    """One template as an exporter defined it, and the bulk layout its records decode with.

    ``fields`` are (element, length) pairs: the element is the IANA id, or ``(enterprise, id)``
    for enterprise-specific ones. ``dtype`` holds only the mapped fields, at their offsets in a
    record of ``length`` bytes (``None`` when the template has variable-length fields: records are
    then packed field by field into ``dtype``).
    """

    version: int
    template_id: int
    fields: tuple[tuple[int | tuple[int, int], int], ...]
    options: bool = False
    scope_count: int = 0
    length: int | None = None
    dtype: np.dtype = field(default_factory=lambda: np.dtype([]))
    columns: dict[int | tuple[int, int], str] = field(default_factory=dict)
    """mapped element id -> field name in ``dtype`` (its first occurrence)."""
    unknown_fields: int = 0
    problem: str | None = None
    """Why its records cannot become flows (given to validation as their reason), if so."""
    min_length: int = 0

    @property
    def variable(self) -> bool:
        return self.length is None

    def defines(self, fields: tuple[tuple[int | tuple[int, int], int], ...], options: bool, scope_count: int) -> bool:
        """Whether a template record with these fields is this template again (a refresh)."""
        return self.fields == fields and self.options == options and self.scope_count == scope_count

    @property
    def sampling(self) -> bool:
        """Its records state a sampling (``SAMPLING_IDS``)."""
        return any(e in self.columns for e in SAMPLING_IDS)

    @property
    def sampler(self) -> bool:
        """Its records name a sampler (``SAMPLER_IDS``)."""
        return any(e in self.columns for e in SAMPLER_IDS)


def build_template(version: int, template_id: int, fields: list[tuple[int | tuple[int, int], int]],
                    options: bool = False, scope_count: int = 0) -> Template:
    names: list[str] = []
    formats: list[object] = []
    columns: dict[int, str] = {}
    unknown = 0
    problems: list[str] = []
    offset: int | None = 0
    fixed_offsets: list[int] = []  # where each mapped field lies in a fixed-length record
    packed = 0  # ... and in the packed layout of templates with variable-length fields
    packed_offsets: list[int] = []
    min_length = 0
    for i, (element, length) in enumerate(fields):
        min_length += 1 if length == VARIABLE else length
        known = element in ELEMENTS
        if not known:
            unknown += 1
        elif element not in columns:
            name, allowed = ELEMENTS[element]
            if length not in allowed and element in _ADVISORY:
                unknown += 1
            elif length not in allowed:
                # A mapped element of a length it cannot have: the records are garbage for it.
                label = element if isinstance(element, int) else "/".join(map(str, element))
                problems.append(f"{name} ({label}) has length {length}, expected {'/'.join(map(str, allowed))}")
            else:
                columns[element] = f"f{i}"
                names.append(f"f{i}")
                # Addresses and odd-sized counters as raw bytes; the rest as big-endian integers.
                formats.append(f">u{length}" if length in (1, 2, 4, 8) and element not in (8, 12) else ("u1", (length,)))
                fixed_offsets.append(offset or 0)
                packed_offsets.append(packed)
                packed += length
        if length == VARIABLE:
            offset = None
        elif offset is not None:
            offset += length
    if offset is None:
        # Packed records hold at least one byte, so that a template without mapped fields still
        # has records to count.
        dtype = np.dtype({"names": names, "formats": formats, "offsets": packed_offsets, "itemsize": max(packed, 1)})
    else:
        dtype = np.dtype({"names": names, "formats": formats, "offsets": fixed_offsets, "itemsize": offset})
    tpl = Template(version, template_id, tuple(fields), options, scope_count, offset, dtype, columns, unknown,
                   min_length=min_length)
    if not options:
        if 8 not in columns and 27 not in columns:
            problems.append("no source address (IANA 8 or 27)")
        if 12 not in columns and 28 not in columns:
            problems.append("no destination address (IANA 12 or 28)")
        if problems:
            tpl.problem = f"template {template_id}: " + "; ".join(problems)
    return tpl


def _v5_template() -> Template:
    # The fixed v5 record as the IANA elements it carries (nexthop 15, interfaces 10/14, tos 5,
    # AS 16/17, masks 9/13), so that v5 takes the same bulk path as the templates.
    fields: list[tuple[int | tuple[int, int], int]] = [
        (8, 4), (12, 4), (15, 4), (10, 2), (14, 2), (2, 4), (1, 4), (22, 4), (21, 4), (7, 2), (11, 2),
        (210, 1), (6, 1), (4, 1), (5, 1), (16, 2), (17, 2), (9, 1), (13, 1), (210, 2),
    ]
    return build_template(5, 0, fields)


V5_TEMPLATE = _v5_template()


class SamplerTable(NamedTuple):
    """A domain's samplers as the decoder last heard of them: ids (sorted) and their sampling.
    Made anew when an options record changes them, and shared, not copied, by the sets that
    come until then."""

    ids: np.ndarray
    rates: np.ndarray

    @classmethod
    def of(cls, samplers: dict[int, float]) -> SamplerTable:
        ids = np.fromiter(samplers, np.uint64, len(samplers))
        rates = np.fromiter(samplers.values(), np.float64, len(samplers))
        order = np.argsort(ids)
        return cls(ids[order], rates[order])

    def lookup(self, ids: np.ndarray, default: np.ndarray) -> np.ndarray:
        """The sampling of each sampler id; ``default`` where the id is unknown."""
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return np.where(self.ids[at] == ids, self.rates[at], default)


class PendingSet(NamedTuple):
    data: bytes
    count: int
    export_us: int
    uptime_ms: int  # -1: IPFIX (no uptime in the header)
    init_ms: int  # IPFIX systemInitTimeMilliseconds known at the time; -1 unknown
    first_row: int
    sampling: float = 1.0
    """packets on the wire per packet counted, as the exporter stated it when the set came (1: none)."""
    samplers: SamplerTable | None = None
    """The domain's samplers when the set came, for records that name theirs (``SAMPLER_IDS``)."""


def sampling_of(arr: np.ndarray, tpl: Template) -> np.ndarray | None:
    """The sampling (packets on the wire per packet counted) each record states, or None if its
    template states none: samplingInterval or samplerRandomInterval (1 in N), or
    samplingPacketInterval N with samplingPacketSpace M (N taken, M skipped: (N + M) / N).
    0 means no sampling."""
    c = tpl.columns
    values: np.ndarray | None = None
    if 305 in c:
        taken = _uint(arr, c[305]).astype(np.float64)
        skipped = _uint(arr, c[306]).astype(np.float64) if 306 in c else np.zeros(len(arr))
        values = np.where(taken > 0, (taken + skipped) / np.maximum(taken, 1), 1.0)
    for element in (34, 50):
        if values is None and element in c:
            values = _uint(arr, c[element]).astype(np.float64)
    return None if values is None else np.maximum(values, 1.0)


def sampler_of(arr: np.ndarray, tpl: Template) -> np.ndarray | None:
    """The sampler id each record names, or None."""
    for element in SAMPLER_IDS:
        if element in tpl.columns:
            return _uint(arr, tpl.columns[element])
    return None



# --- bulk decoding -----------------------------------------------------------------------------


def _uint(arr: np.ndarray, name: str) -> np.ndarray:
    """A mapped integer field as uint64 (odd-sized fields arrive as raw bytes)."""
    values = arr[name]
    if values.ndim == 1:
        return values.astype(np.uint64)
    out = np.zeros(len(values), np.uint64)
    for i in range(values.shape[1]):
        out = (out << np.uint64(8)) | values[:, i].astype(np.uint64)
    return out


def _first(arr: np.ndarray, tpl: Template, ids: tuple[int, ...]) -> np.ndarray | None:
    for element in ids:
        if element in tpl.columns:
            return _uint(arr, tpl.columns[element])
    return None


def _ntp_us(values: np.ndarray) -> np.ndarray:
    """NTP timestamps (seconds since 1900 << 32 | fraction) -> Unix microseconds."""
    seconds = (values >> np.uint64(32)).astype(np.int64) - _NTP_EPOCH_OFFSET
    fraction = ((values & np.uint64(0xFFFFFFFF)) * np.uint64(1_000_000)) >> np.uint64(32)
    return seconds * 1_000_000 + fraction.astype(np.int64)


def _times(arr: np.ndarray, tpl: Template, ctx: dict[str, np.ndarray], start: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(microseconds, known mask, reason where the time cannot be computed) of the flow starts or ends."""
    c = tpl.columns
    ms_id, us_id, ns_id, s_id, rel_id = (152, 154, 156, 150, 22) if start else (153, 155, 157, 151, 21)
    n = len(arr)
    if ms_id in c:
        return np.minimum(_uint(arr, c[ms_id]), MAX_MS).astype(np.int64) * 1000, np.ones(n, bool), None
    if us_id in c:
        return _ntp_us(_uint(arr, c[us_id])), np.ones(n, bool), None
    if ns_id in c:
        return _ntp_us(_uint(arr, c[ns_id])), np.ones(n, bool), None
    if s_id in c:
        return _uint(arr, c[s_id]).astype(np.int64) * 1_000_000, np.ones(n, bool), None
    if rel_id in c:
        rel = _uint(arr, c[rel_id]).astype(np.int64)
        if tpl.version == 10:
            init = _uint(arr, c[160]).astype(np.int64) if 160 in c else ctx["init_ms"]
            known = init >= 0
            # sysUpTime milliseconds wrap after 49.7 days: the number of wraps that puts the time
            # nearest the export time (never negative: an init time after the export is no wrap).
            wraps = np.maximum(np.round((ctx["export_us"] // 1000 - init - rel) / 2**32), 0).astype(np.int64)
            us = np.minimum(init + rel + wraps * 2**32, MAX_MS) * 1000
            reason = None if known.all() else np.where(
                known, None, "flowStartSysUpTime/flowEndSysUpTime without systemInitTimeMilliseconds (no options record received yet)")
            return us, known, reason
        # v5/v9: relative to the header's uptime at its export time; the difference is signed 32-bit.
        ago = (ctx["uptime_ms"] - rel) & 0xFFFFFFFF
        ago = np.where(ago >= 1 << 31, ago - (1 << 32), ago)
        return ctx["export_us"] - ago * 1000, np.ones(n, bool), None
    return np.zeros(n, np.int64), np.zeros(n, bool), None


_HALVES: pl.Series | None = None
_HEX16: pl.Series | None = None


def _ipv4_text(octets: np.ndarray) -> pl.Series:
    """(n, 4) uint8 -> dotted text, vectorized: the two halves (``a.b``, ``c.d``) are looked up in
    a table of the 65,536 possible ones and joined (3x faster than formatting four octets)."""
    global _HALVES
    if _HALVES is None:
        _HALVES = pl.Series([f"{i >> 8}.{i & 255}" for i in range(65536)])
    high = (octets[:, 0].astype(np.uint32) << 8) | octets[:, 1]
    low = (octets[:, 2].astype(np.uint32) << 8) | octets[:, 3]
    frame = pl.DataFrame({"h": _HALVES.gather(high), "l": _HALVES.gather(low)})
    return frame.select(pl.concat_str(["h", "l"], separator=".")).to_series()


def _ipv6_text(raw: np.ndarray) -> pl.Series:
    """(n, 16) uint8 -> IPv6 text in canonical (compressed) form: each group through a lookup
    table of the 65,536, then :func:`normalize_ips` once per distinct address."""
    global _HEX16
    if _HEX16 is None:
        _HEX16 = pl.Series([format(i, "x") for i in range(65536)])
    groups = raw.astype(np.uint32).reshape(-1, 8, 2)
    groups = (groups[:, :, 0] << 8) | groups[:, :, 1]
    frame = pl.DataFrame({f"g{i}": _HEX16.gather(groups[:, i]) for i in range(8)})
    return normalize_ips(frame.select(pl.concat_str([pl.col(f"g{i}") for i in range(8)], separator=":")).to_series())


def _addresses(arr: np.ndarray, tpl: Template, v4: int, v6: int) -> pl.Series:
    c = tpl.columns
    n = len(arr)
    text4 = _ipv4_text(arr[c[v4]]) if v4 in c else None
    text6 = _ipv6_text(arr[c[v6]]) if v6 in c else None
    if text4 is not None and text6 is not None:
        # Templates with both families fill the unused one with zeros.
        use6 = pl.Series((arr[c[v4]] == 0).all(axis=1) & (arr[c[v6]] != 0).any(axis=1))
        return pl.select(pl.when(use6).then(text6).otherwise(text4)).to_series()
    if text4 is not None:
        return text4
    if text6 is not None:
        return text6
    return pl.Series([None] * n, dtype=pl.String)


def _sampling(arr: np.ndarray, tpl: Template, sets: list[PendingSet], counts: np.ndarray) -> np.ndarray:
    """Packets on the wire per packet counted, for every record: what the record states, else what
    the options record of the sampler it names stated, else its domain's (or a v5 header's)."""
    own = None if tpl.options else sampling_of(arr, tpl)
    if own is not None:
        return own
    factor = np.repeat(np.fromiter((s.sampling for s in sets), np.float64, len(sets)), counts)
    ids = sampler_of(arr, tpl)
    if ids is not None and any(s.samplers is not None for s in sets):
        # One lookup per run of sets that share a sampler table (a table lasts until the next
        # options record), not one per set.
        start = 0
        for _, run in itertools.groupby(zip(sets, counts.tolist()), key=lambda sc: id(sc[0].samplers)):
            run = list(run)
            n = sum(c for _, c in run)
            samplers = run[0][0].samplers
            if samplers is not None:
                factor[start:start + n] = samplers.lookup(ids[start:start + n], factor[start:start + n])
            start += n
    return factor


def _scaled(values: np.ndarray | None, factor: np.ndarray, sampled: np.ndarray) -> np.ndarray | None:
    """Counters times their sampling, rounded; beyond 2**63 they become -1 (validation rejects it)."""
    if values is None or not sampled.any():
        return values
    out = values.copy()
    wide = np.rint(values[sampled].astype(np.float64) * factor[sampled])
    scaled = np.minimum(wide, 2.0**62).astype(np.uint64)
    scaled[wide >= 2.0**63] = np.uint64(2**64 - 1)
    out[sampled] = scaled
    return out


def decode_records(tpl: Template, sets: list[PendingSet]) -> tuple[pl.DataFrame, dict[float, int]]:
    """All pending records of one template -> candidate canonical rows (see ``validate.check``;
    their addresses are canonical text already), and how many records were scaled up by each
    sampling (1 in N)."""
    arr = np.frombuffer(b"".join(s.data for s in sets), tpl.dtype)
    counts = np.fromiter((s.count for s in sets), np.int64, len(sets))
    n = int(counts.sum())

    def per_record(values: list[int]) -> np.ndarray:
        return np.repeat(np.asarray(values, np.int64), counts)

    ctx = {
        "export_us": per_record([s.export_us for s in sets]),
        "uptime_ms": per_record([s.uptime_ms for s in sets]),
        "init_ms": per_record([s.init_ms for s in sets]),
    }
    # Record numbers: each set's first row, plus the record's index within its set.
    starts = np.cumsum(counts) - counts
    source_row = per_record([s.first_row for s in sets]) + np.arange(n, dtype=np.int64) - np.repeat(starts, counts)

    start_us, start_known, start_reason = _times(arr, tpl, ctx, True)
    end_us, end_known, end_reason = _times(arr, tpl, ctx, False)
    # Without any start time the export time stands in (the flow ended before it was exported).
    start_us = np.where(start_known, start_us, np.where(end_known, end_us, ctx["export_us"]))

    # Sampled export counts one packet in N: packets and bytes are scaled back up, as nfcapd does.
    factor = _sampling(arr, tpl, sets, counts)
    sampled = factor != 1.0
    rates, per_rate = np.unique(factor[sampled], return_counts=True)

    def counter(ids: tuple[int | tuple[int, int], ...], scale: bool = False) -> pl.Series:
        values = _first(arr, tpl, ids)
        if scale:
            values = _scaled(values, factor, sampled)
        if values is None:
            return pl.Series([None] * n, dtype=pl.Int64)
        # Counters beyond 2**63 are absurd; as Int64 they turn negative and validation rejects them.
        return pl.Series(values.view(np.int64))

    reason = pl.Series([tpl.problem] * n, dtype=pl.String) if tpl.problem else pl.Series([None] * n, dtype=pl.String)
    for r in (start_reason, end_reason):
        if r is not None:
            reason = pl.select(pl.coalesce(reason, pl.Series(r.tolist(), dtype=pl.String))).to_series()
    biflow = any(e in tpl.columns for e in _REV_PACKETS_IDS + _REV_BYTES_IDS)
    zeros = np.zeros(n, np.int64)
    frame = pl.DataFrame({
        "_start": start_us,
        "_end": end_us,
        "_end_known": end_known,
        "src_ip": _addresses(arr, tpl, 8, 27),
        "dst_ip": _addresses(arr, tpl, 12, 28),
        "src_port": counter((7,)),
        "dst_port": counter((11,)),
        "proto": counter((4,)),
        "fwd_packets": counter(_PACKETS_IDS, True),
        "fwd_bytes": counter(_BYTES_IDS, True),
        # NetFlow is one direction; an IPFIX biflow (RFC 5103) carries the other's counters.
        "rev_packets": counter(_REV_PACKETS_IDS, True) if biflow else zeros,
        "rev_bytes": counter(_REV_BYTES_IDS, True) if biflow else zeros,
        "tcp_flags": counter((6,)),
        "source_row": source_row,
        "reject": reason,
    })
    as_time = [pl.from_epoch(pl.col(name), time_unit="us").dt.replace_time_zone("UTC") for name in ("_start", "_end")]
    ends = [("src_ip", "dst_ip"), ("src_port", "dst_port"), ("fwd_packets", "rev_packets"), ("fwd_bytes", "rev_bytes")]
    if 239 in tpl.columns:
        # A record whose source is the responder: its ends are swapped, so that src is always the
        # end that started the flow, as in every other format.
        swap = pl.Series(_uint(arr, tpl.columns[239]) == REVERSE_INITIATOR)
        sides = [pl.when(swap).then(pl.col(b)).otherwise(pl.col(a)).alias(a) for a, b in ends]
        sides += [pl.when(swap).then(pl.col(a)).otherwise(pl.col(b)).alias(b) for a, b in ends]
        frame = frame.with_columns(sides)
    return frame.select(
        as_time[0].alias("ts_start"),
        pl.when(pl.col("_end_known")).then(as_time[1]).alias("ts_end"),
        "src_ip", "dst_ip", "src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes",
        "tcp_flags", "source_row", "reject",
    ), dict(zip(rates.tolist(), per_rate.tolist()))
