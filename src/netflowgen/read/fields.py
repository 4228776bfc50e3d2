"""Vectorized field parsers shared by the readers.

Each parser takes an expression over a String column (the field as the source wrote it) and
returns a :class:`Parsed`: the value, and a reason expression that is non-null exactly where the
field held something that did not parse. Unset markers (empty, ``-``) become null values with no
reason; deciding whether a null is acceptable is :mod:`netflowgen.read.validate`'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

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
    reason_of: Callable[[pl.Expr], pl.Expr] | None = None
    """The reason given the value as an evaluated column (:func:`materialize` uses it): Polars
    would otherwise parse the field again to find where the value is null."""


def _parsed(value: pl.Expr, reason_of: Callable[[pl.Expr], pl.Expr]) -> Parsed:
    return Parsed(value, reason_of(value), reason_of)


def unset(raw: pl.Expr, markers: tuple[str, ...] = ("", "-")) -> pl.Expr:
    """Strip the field and turn unset markers into null."""
    s = raw.str.strip_chars()
    return pl.when(s.is_in(list(markers))).then(None).otherwise(s)


def _cannot_parse(raw: pl.Expr, what: str, markers: tuple[str, ...] = ("", "-")) -> Callable[[pl.Expr], pl.Expr]:
    """``what: cannot parse <field>`` where the value is null and the field is set.

    Only the rows whose value is null are stripped and formatted (the text is null elsewhere).
    """

    def reason(value: pl.Expr) -> pl.Expr:
        failed = unset(pl.when(value.is_null()).then(raw), markers)
        return pl.format(f"{what}: cannot parse {{}}", failed.str.slice(0, 60))

    return reason


def _only(rows: pl.Expr, parse: Callable[[pl.Expr], pl.Expr], dtype: pl.DataType) -> pl.Expr:
    """``parse`` evaluated on the non-null values of ``rows`` alone; null elsewhere.

    The parsers read the common form of a field with one cast and leave the other forms (hex,
    ``12.0``, blanks around the value) to this: nothing to do when every row is common.
    """

    def apply(s: pl.Series) -> pl.Series:
        todo = s.is_not_null()
        out = pl.Series(s.name, [None], dtype).extend_constant(None, s.len() - 1) if s.len() else pl.Series(s.name, [], dtype)
        if not todo.any():
            return out
        parsed = pl.DataFrame({"v": s.filter(todo)}).select(parse(pl.col("v"))).to_series()
        return out.scatter(todo.arg_true(), parsed)

    return rows.map_batches(apply, return_dtype=dtype, is_elementwise=True)


def _by_distinct(raw: pl.Expr, parse: Callable[[pl.Expr], pl.Expr], dtype: pl.DataType) -> pl.Expr:
    """``parse`` evaluated once per distinct value of ``raw`` (null stays null), for fields with
    few distinct values (protocols, flag letters, Zeek history)."""

    def apply(s: pl.Series) -> pl.Series:
        distinct = s.unique().drop_nulls()
        parsed = pl.DataFrame({"v": distinct}).select(parse(pl.col("v"))).to_series()
        return s.replace_strict(distinct, parsed, default=None, return_dtype=dtype)

    return raw.map_batches(apply, return_dtype=dtype, is_elementwise=True)


@cache
def _castable(markers: tuple[str, ...], dtype: pl.DataType) -> tuple[str, ...]:
    """The unset markers that a plain cast to ``dtype`` would read as a number."""
    return tuple(m for m in markers if pl.Series([m]).cast(dtype, strict=False)[0] is not None)


def _cast(raw: pl.Expr, dtype: pl.DataType, markers: tuple[str, ...]) -> pl.Expr:
    """The field cast to ``dtype`` as written (an integer cast takes a sign and ASCII digits, no
    blanks), null where that fails or the field is an unset marker."""
    value = raw.cast(dtype, strict=False)
    castable = _castable(markers, dtype)
    return pl.when(raw.is_in(list(castable))).then(None).otherwise(value) if castable else value


def _int_forms(markers: tuple[str, ...]) -> Callable[[pl.Expr], pl.Expr]:
    def parse(raw: pl.Expr) -> pl.Expr:
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
        return pl.coalesce(as_int, hex_, integral)

    return parse


def parse_int(raw: pl.Expr, what: str, markers: tuple[str, ...] = ("", "-")) -> Parsed:
    """Integer field; also accepts integral floats such as ``12.0`` and hex such as ``0x1f``."""
    fast = _cast(raw, pl.Int64(), markers)
    value = pl.coalesce(fast, _only(pl.when(fast.is_null()).then(raw), _int_forms(markers), pl.Int64()))
    return _parsed(value, _cannot_parse(raw, what, markers))


def _finite(value: pl.Expr) -> pl.Expr:
    return pl.when(value.is_finite()).then(value).otherwise(None)


def parse_float(raw: pl.Expr, what: str, markers: tuple[str, ...] = ("", "-")) -> Parsed:
    fast = _finite(_cast(raw, pl.Float64(), markers))

    def slow(rest: pl.Expr) -> pl.Expr:
        return _finite(unset(rest, markers).cast(pl.Float64, strict=False))

    value = pl.coalesce(fast, _only(pl.when(fast.is_null()).then(raw), slow, pl.Float64()))
    return _parsed(value, _cannot_parse(raw, what, markers))


#: An epoch in seconds as :func:`parse_epoch` reads it. ``\d`` is any Unicode digit, as the
#: Rust regex engine has it; the integer cast then fails on the non-ASCII ones.
_EPOCH_SECONDS = r"^-?\d+(?:\.\d*)?$"


def _epoch_micros(raw: pl.Series) -> pl.Series:
    """Epoch seconds text -> microseconds, exact; null where it is not an epoch or beyond 10**12
    seconds (year 33658: the microseconds would overflow Int64 and wrap around).

    Step by step on a frame, so that each step runs once.
    """
    df = pl.DataFrame({"s": raw}).select(unset(pl.col("s")).alias("s"))
    df = df.select(
        pl.col("s").str.starts_with("-").alias("negative"),
        pl.when(pl.col("s").str.contains(_EPOCH_SECONDS)).then(pl.col("s")).str.splitn(".", 2).alias("parts"),
    ).unnest("parts")
    whole = pl.col("field_0").cast(pl.Int64, strict=False)
    frac_us = pl.col("field_1").str.slice(0, 6).str.pad_end(6, "0").cast(pl.Int64, strict=False).fill_null(0)
    sign = pl.when(pl.col("negative")).then(-1).otherwise(1)
    df = df.select(whole.alias("whole"), (sign * frac_us).alias("frac_us"))
    micros = pl.when(pl.col("whole").abs() < 10**12).then(pl.col("whole") * 1_000_000 + pl.col("frac_us"))
    return df.select(micros).to_series().alias(raw.name)


def parse_epoch(raw: pl.Expr, what: str, unit_seconds: float = 1.0) -> Parsed:
    """Epoch timestamp (seconds by default, fractional allowed) -> Datetime(us, UTC).

    The integer and fraction are parsed separately so that microseconds survive exactly
    (a float64 of 1.5e9 seconds keeps only about 0.2 us).
    """
    if unit_seconds == 1.0:
        micros = raw.map_batches(_epoch_micros, return_dtype=pl.Int64, is_elementwise=True)
    else:
        fast = _cast(raw, pl.Float64(), ("", "-"))
        slow = _only(pl.when(fast.is_null()).then(raw), lambda rest: unset(rest).cast(pl.Float64, strict=False), pl.Float64())
        micros = (pl.coalesce(fast, slow) * unit_seconds * 1_000_000).round(0).cast(pl.Int64, strict=False)
    value = micros.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return _parsed(value, _cannot_parse(raw, what))


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
    return _parsed(value, _cannot_parse(raw, what))


def parse_port(raw: pl.Expr, what: str) -> Parsed:
    return parse_int(raw, what)


def _proto_number(raw: pl.Expr) -> pl.Expr:
    s = unset(raw).str.to_lowercase()
    return pl.coalesce(s.cast(pl.Int64, strict=False), s.replace_strict(PROTOCOL_NUMBERS, default=None, return_dtype=pl.Int64))


def parse_proto(raw: pl.Expr, what: str = "proto") -> Parsed:
    """Protocol as a name (``tcp``, ``ipv6-icmp``) or number -> IANA number.

    Non-IP records (``arp``, ``llc``, ...) get their own reason: they are not IP flows.
    """
    fast = raw.cast(pl.Int64, strict=False)
    value = pl.coalesce(fast, _by_distinct(pl.when(fast.is_null()).then(raw), _proto_number, pl.Int64()))

    def reason_of(value: pl.Expr) -> pl.Expr:
        # Only the rows without a value are looked at: a non-IP name never has one.
        s = unset(pl.when(value.is_null()).then(raw)).str.to_lowercase()
        return (
            pl.when(value.is_not_null())
            .then(None)
            .when(s.is_null())
            .then(pl.lit(f"{what}: missing"))
            .otherwise(
                pl.coalesce(
                    pl.format("not an IP flow: protocol {}", pl.when(s.is_in(list(NON_IP_PROTOCOLS))).then(s)),
                    pl.format(f"{what}: unknown protocol {{}}", s.str.slice(0, 40)),
                )
            )
        )

    return _parsed(value, reason_of)


def _letters(raw: pl.Expr, bits: dict[str, int]) -> pl.Expr:
    total = pl.lit(0, pl.Int64)
    for letter, bit in bits.items():
        total = total | pl.when(raw.str.contains(letter, literal=True)).then(bit).otherwise(0)
    return total


def _flag_letters(raw: pl.Expr) -> pl.Expr:
    s = unset(raw).str.to_uppercase()
    return pl.when(s.is_null()).then(None).otherwise(_letters(s, TCP_FLAG_BITS))


def _history_letters(raw: pl.Expr) -> pl.Expr:
    s = unset(raw)
    return pl.when(s.is_null()).then(None).otherwise(_letters(s, ZEEK_HISTORY_BITS))


def parse_tcp_flag_letters(raw: pl.Expr) -> Parsed:
    """Flags written as letters (nfdump ``...A.R..``, Argus states ``FSPA_FSPA``) -> OR of bits.

    Letters other than flag letters are ignored; an unset field gives null.
    """
    return Parsed(_by_distinct(raw, _flag_letters, pl.Int64()), pl.lit(None, pl.String))


def parse_zeek_history(raw: pl.Expr) -> Parsed:
    """Zeek conn.log ``history`` -> the TCP flags it implies (SYN, SYN-ACK, ACK, FIN, RST)."""
    return Parsed(_by_distinct(raw, _history_letters, pl.Int64()), pl.lit(None, pl.String))


def first_reason(*reasons: pl.Expr) -> pl.Expr:
    """The first non-null reason, or null when every field parsed."""
    return pl.coalesce(*reasons, pl.lit(None, pl.String))


def materialize(fields: pl.DataFrame, parsed: dict[str, Parsed]) -> tuple[pl.DataFrame, dict[str, Parsed]]:
    """Evaluate each parser once into hidden columns.

    The parsers refer to their field many times and Polars evaluates a repeated sub-expression
    each time it appears, so combining parsed values directly would multiply the work. The values
    come first; the reasons that derive from a value then read its column.
    """
    fields = fields.with_columns(
        *[p.value.alias(f"__nfg_{name}") for name, p in parsed.items()],
        *[p.reason.alias(f"__nfg_{name}_reason") for name, p in parsed.items() if p.reason_of is None],
    )
    fields = fields.with_columns(
        p.reason_of(pl.col(f"__nfg_{name}")).alias(f"__nfg_{name}_reason")
        for name, p in parsed.items()
        if p.reason_of is not None
    )
    return fields, {name: Parsed(pl.col(f"__nfg_{name}"), pl.col(f"__nfg_{name}_reason")) for name in parsed}
