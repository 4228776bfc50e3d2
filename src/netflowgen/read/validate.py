"""Turn a reader's candidate rows into canonical flows and rejects, by the rules in
:mod:`netflowgen.schema`.

A reader hands over a *candidate* frame: the canonical column names with parsed but unchecked
values (timestamps as Datetime(us, UTC), addresses as text, numbers as Int64, nulls for unset
fields), ``source_row``, and a ``reject`` column holding the reader's own reason for rows it could
not parse. Every rule that is the same for all formats lives here, once.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

import polars as pl

from netflowgen.schema import (
    EPOCH_CLOCK_BEFORE,
    FLOW_SCHEMA,
    MAX_BYTES_PER_PACKET,
    MAX_VALID_TS,
    MIN_VALID_TS,
    PORT_PROTOCOLS,
    Quality,
)

__all__ = ["Checked", "REJECT_SCHEMA", "check", "empty_rejects", "normalize_ips", "reason_kind"]

#: The rejects file: where a row came from, why it was set aside, and its text.
REJECT_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "source_row": pl.UInt64(),
    "reason": pl.String(),
    "raw": pl.String(),
}

_COUNTERS = ("fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes")

_IPV4 = r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"


class Checked(NamedTuple):
    """One batch after validation: canonical flows and rejected rows."""

    flows: pl.DataFrame
    rejects: pl.DataFrame


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def _ipv6_or_none(text: str) -> str | None:
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


def normalize_ips(s: pl.Series) -> pl.Series:
    """Addresses in canonical text form; null where a value is not an IP address.

    IPv4 is checked by a vectorized pattern; anything else (IPv6, MAC addresses, junk) goes
    through :mod:`ipaddress` once per distinct value.

    >>> normalize_ips(pl.Series(["10.0.0.1", "FD2D:AB8C:0225:0::1", "00:11:22:33:44:55", "0"])).to_list()
    ['10.0.0.1', 'fd2d:ab8c:225::1', None, None]
    """
    s = s.str.strip_chars()
    is_v4 = s.str.contains(_IPV4).fill_null(False)
    other = s.filter(~is_v4 & s.is_not_null()).unique()
    if other.len() == 0:
        return pl.select(pl.when(is_v4).then(s).otherwise(None)).to_series().alias(s.name)
    mapped = {v: _ipv6_or_none(v) for v in other.to_list()}
    fixed = s.replace_strict(mapped, default=None, return_dtype=pl.String)
    return pl.select(pl.when(is_v4).then(s).otherwise(fixed)).to_series().alias(s.name)


def _shown(col: pl.Expr) -> pl.Expr:
    """A field as a reason shows it: ``<empty>`` for nothing."""
    text = col.cast(pl.String)
    return pl.when(text.is_null() | (text.str.strip_chars() == "")).then(pl.lit("<empty>")).otherwise(text)


def _fill_defaults(df: pl.DataFrame) -> pl.DataFrame:
    defaults = {
        "ts_end": pl.lit(None, pl.Datetime("us", "UTC")),
        "src_port": pl.lit(None, pl.Int64),
        "dst_port": pl.lit(None, pl.Int64),
        "tcp_flags": pl.lit(None, pl.Int64),
        "label": pl.lit(None, pl.String),
        "label_detail": pl.lit(None, pl.String),
        "reject": pl.lit(None, pl.String),
    }
    missing = [expr.alias(name) for name, expr in defaults.items() if name not in df.columns]
    return df.with_columns(missing) if missing else df


def check(candidates: pl.DataFrame, source_file: str, *, canonical_ips: bool = False) -> Checked:
    """Apply the canonical validation rules to a reader's candidate rows.

    ``canonical_ips``: the addresses are already canonical text or null (the NetFlow decoder
    writes them from their bytes), so they are not parsed again.
    """
    df = _fill_defaults(candidates)
    if canonical_ips:
        df = df.with_columns(pl.col("src_ip").alias("src_ip_n"), pl.col("dst_ip").alias("dst_ip_n"))
    else:
        df = df.with_columns(
            normalize_ips(df["src_ip"].cast(pl.String)).alias("src_ip_n"),
            normalize_ips(df["dst_ip"].cast(pl.String)).alias("dst_ip_n"),
        )
    has_ports = pl.col("proto").is_in(list(PORT_PROTOCOLS))
    bad_counter = [
        pl.when(pl.col(c) < 0).then(pl.format(f"{c} is negative: {{}}", pl.col(c))) for c in _COUNTERS
    ]
    # Only a packet count the source gave can make bytes absurd: an unset count is unknown, not zero.
    absurd = [
        pl.when(pl.col(p).is_not_null() & (pl.col(b).fill_null(0) > pl.col(p) * MAX_BYTES_PER_PACKET)).then(
            pl.format(f"absurd counters: {b}={{}} with {p}={{}}", pl.col(b), pl.col(p))
        )
        for p, b in (("fwd_packets", "fwd_bytes"), ("rev_packets", "rev_bytes"))
    ]
    bad_port = [
        pl.when(has_ports & ((pl.col(c) < 0) | (pl.col(c) > 65535))).then(
            pl.format(f"{c} out of range: {{}}", pl.col(c))
        )
        for c in ("src_port", "dst_port")
    ]
    reason = pl.coalesce(
        pl.col("reject"),
        pl.when(pl.col("ts_start").is_null()).then(pl.lit("ts_start: missing")),
        pl.when(pl.col("ts_start") >= MAX_VALID_TS).then(pl.lit("ts_start after 2100 (absurd clock)")),
        pl.when(pl.col("ts_start") < MIN_VALID_TS).then(pl.lit("ts_start before 1970 (absurd clock)")),
        pl.when(pl.col("ts_end") >= MAX_VALID_TS).then(pl.lit("ts_end after 2100 (absurd clock or duration)")),
        pl.when(pl.col("src_ip_n").is_null()).then(
            pl.format("src_ip is not an IP address: {}", _shown(pl.col("src_ip")))
        ),
        pl.when(pl.col("dst_ip_n").is_null()).then(
            pl.format("dst_ip is not an IP address: {}", _shown(pl.col("dst_ip")))
        ),
        pl.when(pl.col("proto").is_null()).then(pl.lit("proto: missing")),
        pl.when((pl.col("proto") < 0) | (pl.col("proto") > 255)).then(
            pl.format("proto out of range: {}", pl.col("proto"))
        ),
        *bad_port,
        # 16 bits is what any exporter sends (IPFIX tcpControlBits); more is not a flags field.
        pl.when((pl.col("proto") == 6) & ((pl.col("tcp_flags") < 0) | (pl.col("tcp_flags") > 0xFFFF))).then(
            pl.format("tcp_flags out of range: {}", pl.col("tcp_flags"))
        ),
        *bad_counter,
        *absurd,
    )
    df = df.with_columns(reason.alias("_reason"))
    bad = df.filter(pl.col("_reason").is_not_null())
    rejects = bad.select(
        pl.lit(source_file, pl.String).alias("source_file"),
        pl.col("source_row").cast(pl.UInt64),
        pl.col("_reason").alias("reason"),
        pl.lit(None, pl.String).alias("raw"),
    )
    good = df.filter(pl.col("_reason").is_null())
    return Checked(_canonical(good, source_file), rejects)


def _canonical(df: pl.DataFrame, source_file: str) -> pl.DataFrame:
    missing_counter = pl.any_horizontal([pl.col(c).is_null() for c in _COUNTERS])
    end_missing = pl.col("ts_end").is_null()
    end_before = pl.col("ts_end") < pl.col("ts_start")
    quality = (
        pl.when(end_before).then(int(Quality.END_BEFORE_START)).otherwise(0)
        | pl.when(end_missing).then(int(Quality.NO_END)).otherwise(0)
        | pl.when(missing_counter).then(int(Quality.MISSING_COUNTERS)).otherwise(0)
        | pl.when(pl.col("ts_start") < EPOCH_CLOCK_BEFORE).then(int(Quality.EPOCH_CLOCK)).otherwise(0)
        | pl.when((pl.col("proto") == 6) & (pl.col("tcp_flags") > 0xFF)).then(int(Quality.FLAGS_MASKED)).otherwise(0)
    )
    has_ports = pl.col("proto").is_in(list(PORT_PROTOCOLS))
    out = df.select(
        pl.col("ts_start"),
        pl.when(end_missing | end_before).then(pl.col("ts_start")).otherwise(pl.col("ts_end")).alias("ts_end"),
        pl.col("src_ip_n").alias("src_ip"),
        pl.col("dst_ip_n").alias("dst_ip"),
        pl.when(has_ports).then(pl.col("src_port")).alias("src_port"),
        pl.when(has_ports).then(pl.col("dst_port")).alias("dst_port"),
        pl.col("proto"),
        *[pl.col(c).fill_null(0) for c in _COUNTERS],
        pl.when(pl.col("proto") == 6).then(pl.col("tcp_flags") & 0xFF).alias("tcp_flags"),
        pl.col("label").cast(pl.String),
        pl.col("label_detail").cast(pl.String),
        quality.alias("quality"),
        pl.lit(source_file, pl.String).alias("source_file"),
        pl.col("source_row"),
    )
    return out.cast(FLOW_SCHEMA)  # type: ignore[arg-type]


def reason_kind(reason: str) -> str:
    """The reason without the row's own values, for counting.

    >>> reason_kind("src_ip is not an IP address: 00:11:22:33:44:55")
    'src_ip is not an IP address'
    >>> reason_kind("expected 23 fields, found 2")
    'wrong number of fields'
    >>> reason_kind("ts: cannot parse 17724420O0.25")
    'ts: cannot parse'
    """
    if reason.startswith("expected ") and " fields" in reason:
        return "wrong number of fields"
    if ": cannot parse" in reason:
        return reason[: reason.index(": cannot parse") + len(": cannot parse")]
    return reason.split(":", 1)[0]
