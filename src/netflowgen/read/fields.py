"""Vectorized field parsers shared by the readers.

Each parser takes an expression over a String column (the field as the source wrote it) and
returns a :class:`Parsed`: the value, and a reason expression that is non-null exactly where the
field held something that did not parse. Unset markers (empty, ``-``) become null values with no
reason; deciding whether a null is acceptable is :mod:`netflowgen.read.validate`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

__all__ = [
    "Parsed",
    "unset",
    "parse_int",
    "parse_float",
    "parse_epoch",
    "parse_datetime",
    "parse_port",
    "parse_proto",
    "parse_tcp_flag_letters",
    "parse_zeek_history",
    "first_reason",
    "materialize",
    "NON_IP_PROTOCOLS",
    "PROTOCOL_NUMBERS",
]

#: Names that sources write for IP protocols (lower case) -> IANA number. Argus classifies some
#: UDP flows as rtp/rtcp/udt: they are UDP on the wire.
PROTOCOL_NUMBERS: dict[str, int] = {
    "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipip": 4, "ipv4": 4, "ipencap": 4, "st": 5,
    "tcp": 6, "egp": 8, "igp": 9, "udp": 17, "rdp": 27, "dccp": 33, "ipv6": 41,
    "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51,
    "ipv6-icmp": 58, "icmpv6": 58, "icmp6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
    "eigrp": 88, "ospf": 89, "ospfigp": 89, "etherip": 97, "encap": 98, "pim": 103,
    "ipcomp": 108, "vrrp": 112, "l2tp": 115, "isis": 124, "sctp": 132, "udplite": 136,
    "udp-lite": 136, "mpls-in-ip": 137, "rtp": 17, "rtcp": 17, "udt": 17,
}

#: Link-layer or non-IP records some sources mix into their flows (Argus, Westermo).
NON_IP_PROTOCOLS: frozenset[str] = frozenset(
    {"arp", "rarp", "llc", "man", "stp", "lldp", "ipx", "ipx/spx", "cdp", "eapol", "loop",
     "aarp", "8021q", "vlan", "mpls", "pppoe", "wlan", "esp-nonip", "ethernet"}
)

#: TCP flag letters as nfdump, Argus states and most exporters write them.
TCP_FLAG_BITS: dict[str, int] = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32, "E": 64, "C": 128}

#: Zeek conn.log `history` letters -> the TCP flags they imply (either direction).
ZEEK_HISTORY_BITS: dict[str, int] = {
    "S": 2, "H": 18, "h": 18, "A": 16, "a": 16, "F": 1, "f": 1, "R": 4, "r": 4,
}


@dataclass(frozen=True)
class Parsed:
    """A parsed field: its value and why it failed to parse (null where it did not fail)."""

    value: pl.Expr
    reason: pl.Expr


def unset(raw: pl.Expr, markers: tuple[str, ...] = ("", "-")) -> pl.Expr:
    """Strip the field and turn unset markers into null."""
    s = raw.str.strip_chars()
    return pl.when(s.is_in(list(markers))).then(None).otherwise(s)


def _reason(value: pl.Expr, raw: pl.Expr, what: str) -> pl.Expr:
    return (
        pl.when(value.is_null() & raw.is_not_null())
        .then(pl.format(f"{what}: cannot parse {{}}", raw.str.slice(0, 60)))
        .otherwise(None)
    )


def parse_int(raw: pl.Expr, what: str, markers: tuple[str, ...] = ("", "-")) -> Parsed:
    """Integer field; also accepts integral floats such as ``12.0`` and hex such as ``0x1f``."""
    s = unset(raw, markers)
    as_int = s.cast(pl.Int64, strict=False)
    hex_ = (
        pl.when(s.str.starts_with("0x") | s.str.starts_with("0X"))
        .then(s.str.slice(2).str.to_integer(base=16, strict=False))
        .otherwise(None)
    )
    as_float = s.cast(pl.Float64, strict=False)
    integral = (
        pl.when(as_float.is_finite() & (as_float == as_float.floor()) & (as_float.abs() < 2**62))
        .then(as_float.cast(pl.Int64))
        .otherwise(None)
    )
    value = pl.coalesce(as_int, hex_, integral)
    return Parsed(value, _reason(value, s, what))


def parse_float(raw: pl.Expr, what: str, markers: tuple[str, ...] = ("", "-")) -> Parsed:
    s = unset(raw, markers)
    value = s.cast(pl.Float64, strict=False)
    value = pl.when(value.is_finite()).then(value).otherwise(None)
    return Parsed(value, _reason(value, s, what))


def parse_epoch(raw: pl.Expr, what: str, unit_seconds: float = 1.0) -> Parsed:
    """Epoch timestamp (seconds by default, fractional allowed) -> Datetime(us, UTC).

    The integer and fraction are parsed separately so that microseconds survive exactly
    (a float64 of 1.5e9 seconds keeps only about 0.2 us).
    """
    s = unset(raw)
    if unit_seconds == 1.0:
        whole = s.str.extract(r"^(-?\d+)(?:\.\d*)?$", 1).cast(pl.Int64, strict=False)
        # Beyond 10**12 s (year 33658) the microseconds would overflow Int64 and wrap around.
        whole = pl.when(whole.abs() < 10**12).then(whole)
        frac = s.str.extract(r"^-?\d+\.(\d*)$", 1)
        frac_us = (frac.str.slice(0, 6).str.pad_end(6, "0")).cast(pl.Int64, strict=False).fill_null(0)
        sign = pl.when(s.str.starts_with("-")).then(-1).otherwise(1)
        micros = whole * 1_000_000 + sign * frac_us
    else:
        seconds = s.cast(pl.Float64, strict=False) * unit_seconds
        micros = (seconds * 1_000_000).round(0).cast(pl.Int64, strict=False)
    value = micros.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return Parsed(value, _reason(value, s, what))


def parse_datetime(raw: pl.Expr, what: str, fmt: str, tz: str = "UTC") -> Parsed:
    """Date-time text in ``fmt`` (chrono format) in time zone ``tz`` -> Datetime(us, UTC)."""
    s = unset(raw)
    value = s.str.strptime(pl.Datetime("us"), fmt, strict=False)
    if tz == "UTC":
        value = value.dt.replace_time_zone("UTC")
    else:
        # Ambiguous local times (the hour repeated when clocks go back) take the earlier one;
        # non-existent ones (skipped hour) become null and so a reject with a reason.
        value = value.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
    return Parsed(value, _reason(value, s, what))


def parse_port(raw: pl.Expr, what: str) -> Parsed:
    return parse_int(raw, what)


def parse_proto(raw: pl.Expr, what: str = "proto") -> Parsed:
    """Protocol as a name (``tcp``, ``ipv6-icmp``) or number -> IANA number.

    Non-IP records (``arp``, ``llc``, ...) get their own reason: they are not IP flows.
    """
    s = unset(raw).str.to_lowercase()
    by_name = s.replace_strict(PROTOCOL_NUMBERS, default=None, return_dtype=pl.Int64)
    value = pl.coalesce(s.cast(pl.Int64, strict=False), by_name)
    reason = (
        pl.when(s.is_in(list(NON_IP_PROTOCOLS)))
        .then(pl.format("not an IP flow: protocol {}", s))
        .when(value.is_null() & s.is_not_null())
        .then(pl.format(f"{what}: unknown protocol {{}}", s.str.slice(0, 40)))
        .when(s.is_null())
        .then(pl.lit(f"{what}: missing"))
        .otherwise(None)
    )
    return Parsed(value, reason)


def _letters(raw: pl.Expr, bits: dict[str, int]) -> pl.Expr:
    total = pl.lit(0, pl.Int64)
    for letter, bit in bits.items():
        total = total | pl.when(raw.str.contains(letter, literal=True)).then(bit).otherwise(0)
    return total


def parse_tcp_flag_letters(raw: pl.Expr) -> Parsed:
    """Flags written as letters (nfdump ``...A.R..``, Argus states ``FSPA_FSPA``) -> OR of bits.

    Letters other than flag letters are ignored; an unset field gives null.
    """
    s = unset(raw).str.to_uppercase()
    value = pl.when(s.is_null()).then(None).otherwise(_letters(s, TCP_FLAG_BITS))
    return Parsed(value, pl.lit(None, pl.String))


def parse_zeek_history(raw: pl.Expr) -> Parsed:
    """Zeek conn.log ``history`` -> the TCP flags it implies (SYN, SYN-ACK, ACK, FIN, RST)."""
    s = unset(raw)
    value = pl.when(s.is_null()).then(None).otherwise(_letters(s, ZEEK_HISTORY_BITS))
    return Parsed(value, pl.lit(None, pl.String))


def first_reason(*reasons: pl.Expr) -> pl.Expr:
    """The first non-null reason, or null when every field parsed."""
    return pl.coalesce(*reasons, pl.lit(None, pl.String))


def materialize(fields: pl.DataFrame, parsed: dict[str, Parsed]) -> tuple[pl.DataFrame, dict[str, Parsed]]:
    """Evaluate each parser once into hidden columns.

    The parsers refer to their field many times and Polars evaluates a repeated sub-expression
    each time it appears, so combining parsed values directly would multiply the work.
    """
    fields = fields.with_columns(
        *[p.value.alias(f"__nfg_{name}") for name, p in parsed.items()],
        *[p.reason.alias(f"__nfg_{name}_reason") for name, p in parsed.items()],
    )
    return fields, {name: Parsed(pl.col(f"__nfg_{name}"), pl.col(f"__nfg_{name}_reason")) for name in parsed}
