"""NetFlow v5, v9 and IPFIX export packets built with :mod:`struct`, for the collector tests.

Each builder writes exactly what its arguments say (lengths and counts can be overridden to make
broken packets); nothing here decodes.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

T0 = 1_709_294_400  # 2024-03-01 12:00:00 UTC
EXPORTER = "192.0.2.1"

Field = tuple[int, int]  # (IANA element id, length); enterprise fields as (id | 0x8000, length) + pen


def ts(seconds: float) -> datetime:
    """UTC time ``seconds`` after T0 (microsecond precision)."""
    return datetime.fromtimestamp(T0, UTC) + timedelta(microseconds=round(seconds * 1e6))


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


# --- v5 ----------------------------------------------------------------------------------------


def v5_record(src: str, dst: str, sport: int, dport: int, proto: int, packets: int, octets: int,
              first_ms: int, last_ms: int, flags: int = 0) -> bytes:
    """One 48-byte v5 record; ``first_ms``/``last_ms`` are sysUptime milliseconds."""
    return struct.pack(
        "!4s4s4sHHIIIIHHBBBBHHBBH", ip(src), ip(dst), b"\0" * 4, 1, 2, packets, octets, first_ms, last_ms,
        sport, dport, 0, flags, proto, 0, 0, 0, 24, 24, 0,
    )


def v5(records: Sequence[bytes], *, uptime_ms: int, secs: int = T0, nsecs: int = 0, seq: int = 0,
       engine: tuple[int, int] = (0, 0), count: int | None = None) -> bytes:
    header = struct.pack("!HHIIIIBBH", 5, len(records) if count is None else count, uptime_ms, secs, nsecs, seq,
                         engine[0], engine[1], 0)
    return header + b"".join(records)


# --- v9 and IPFIX sets -------------------------------------------------------------------------


def _pad(body: bytes) -> bytes:
    return body + b"\0" * (-len(body) % 4)


def template_set(version: int, templates: Sequence[tuple[int, Sequence[Field]]], enterprise: dict[int, int] | None = None) -> bytes:
    """A template set (v9 flowset 0, IPFIX set 2). ``enterprise`` maps a field index to its PEN
    (IPFIX; the element id then gets the enterprise bit)."""
    body = b""
    for tid, fields in templates:
        body += struct.pack("!HH", tid, len(fields))
        for i, (element, length) in enumerate(fields):
            if enterprise and i in enterprise:
                body += struct.pack("!HHI", element | 0x8000, length, enterprise[i])
            else:
                body += struct.pack("!HH", element, length)
    set_id = 0 if version == 9 else 2
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def withdrawal_set(tid: int) -> bytes:
    """IPFIX template withdrawal: the template id with no fields."""
    return struct.pack("!HHHH", 2, 8, tid, 0)


def options_template_set(version: int, tid: int, scope: Sequence[Field], options: Sequence[Field]) -> bytes:
    """An options template set (v9 flowset 1 with byte lengths, IPFIX set 3 with field counts)."""
    fields = b"".join(struct.pack("!HH", e, n) for e, n in [*scope, *options])
    if version == 9:
        body = struct.pack("!HHH", tid, 4 * len(scope), 4 * len(options)) + fields
        return struct.pack("!HH", 1, 4 + len(_pad(body))) + _pad(body)
    body = struct.pack("!HHH", tid, len(scope) + len(options), len(scope)) + fields
    return struct.pack("!HH", 3, 4 + len(body)) + body


def record(fields: Sequence[Field], values: dict[int, int | bytes | str]) -> bytes:
    """One data record: each field's value (addresses as text), zeros where none is given."""
    out = b""
    for element, length in fields:
        value = values.get(element, 0)
        if isinstance(value, str):
            value = ip(value)
        if isinstance(value, bytes):
            if len(value) != length:
                raise ValueError(f"element {element}: {len(value)} bytes for a {length}-byte field")
            out += value
        else:
            out += value.to_bytes(length, "big")
    return out


def data_set(tid: int, records: Sequence[bytes], pad: bool = True, length: int | None = None) -> bytes:
    body = b"".join(records)
    if pad:
        body = _pad(body)
    return struct.pack("!HH", tid, 4 + len(body) if length is None else length) + body


def v9(sets: Sequence[bytes], *, uptime_ms: int, secs: int = T0, seq: int = 0, source_id: int = 0,
       count: int | None = None) -> bytes:
    return struct.pack("!HHIIII", 9, len(sets) if count is None else count, uptime_ms, secs, seq, source_id) + b"".join(sets)


def ipfix(sets: Sequence[bytes], *, export: int = T0, seq: int = 0, domain: int = 0, length: int | None = None) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body) if length is None else length, export, seq, domain) + body


# --- templates the tests share -----------------------------------------------------------------

#: v9/IPFIX IPv4 template with sysUptime times (what a router sends).
V4_UPTIME: list[Field] = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (2, 4), (1, 4), (22, 4), (21, 4), (10, 2), (14, 2)]
#: IPv4 with absolute milliseconds and 8-byte counters.
V4_MS: list[Field] = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (2, 8), (1, 8), (152, 8), (153, 8), (5, 1)]
#: IPv6 with absolute milliseconds.
V6_MS: list[Field] = [(27, 16), (28, 16), (7, 2), (11, 2), (4, 1), (86, 8), (85, 8), (152, 8), (153, 8)]


def v4_values(src: str, dst: str, sport: int, dport: int, proto: int, packets: int, octets: int,
              start: int, end: int, flags: int = 0) -> dict[int, int | bytes | str]:
    """Values for V4_UPTIME (start/end: sysUptime ms) or V4_MS (start/end: epoch ms)."""
    return {8: src, 12: dst, 7: sport, 11: dport, 4: proto, 6: flags, 2: packets, 1: octets,
            22: start, 21: end, 152: start, 153: end}
