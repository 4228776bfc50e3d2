"""Argus bidirectional flows as ``ra`` writes them in CSV (``binetflow``), comma or tab separated.

The header line names the columns and they are mapped by name, since files differ in which
columns they carry. Mapping: ``StartTime`` -> ts_start, ``StartTime + Dur`` -> ts_end,
``SrcAddr``/``Sport`` -> src, ``DstAddr``/``Dport`` -> dst, ``Proto`` -> proto, ``State`` ->
tcp_flags, ``Label`` -> label (as written, e.g. ``flow=Background``; empty -> null). ``Dir``,
``sTos``/``dTos`` and the payload fields ``srcUdata``/``dstUdata`` (huge) are not kept.

Time: ``StartTime`` is *local* time (``YYYY/MM/DD HH:MM:SS.ffffff``) in the zone the ``ra`` that
wrote the file ran in; it is read in ``ReadOptions.timezone`` (default UTC). Stratosphere's captures
were written in Prague: pass ``timezone="Europe/Prague"`` (``--tz Europe/Prague``) for them; their
1970 rows then start at the epoch (``01:00:00`` local is 00:00 UTC). Several of those files begin
with such 1970 rows (an unset capture clock); they are kept and flagged ``EPOCH_CLOCK``.

Counters: Argus counts bytes as captured, link-layer header included (there is no IP-layer choice
in these files). Per direction:

* ``SrcPkts`` and ``SrcBytes`` present (or ``DstPkts``/``DstBytes``): fwd = Src, rev = Tot - Src
  (or Dst), exact.
* only ``SrcBytes`` (older files): the packet split is unknown. Where one side carried every byte
  the split is still exact (all packets went that way); otherwise the whole flow goes into
  fwd_packets/fwd_bytes and rev is left unset, so validation stores 0 and flags
  ``MISSING_COUNTERS``. Splitting the bytes while guessing the packets would invent numbers (and
  ``rev_bytes`` without ``rev_packets`` is an absurd record), so the totals are kept exact instead:
  over a file, fwd + rev packets == sum of TotPkts and fwd + rev bytes == sum of TotBytes.
* only ``TotPkts``/``TotBytes``: fwd = Tot, rev unset (``MISSING_COUNTERS``), for the same reason.

TCP flags: ``ra -Z b`` writes the flags seen per direction as ``src_dst`` letters (``FSPA_FSRPA``:
F FIN, S SYN, R RST, P PSH, A ACK, U URG, E ECE, C CWR); their union becomes tcp_flags. Plain
``ra`` writes a connection state instead (``CON``, ``FIN``, ``RST``, ``REQ``, ``INT``, ...): those
words are not flag sets (``RST`` would read as RST+SYN), so tcp_flags is null (unknown) there.

Rejected: non-IP records (``llc``, ``arp``, ``man`` management records; their addresses are MACs
or ``0``), besides every common rule of :mod:`netflowgen.read.validate`. Ports may be empty or hex
(``0x0303``: Argus writes ICMP type/code that way); they are kept only for protocols with ports.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from netflowgen.read.base import FlowFormat, FormatError, ReadOptions, check_unique_names
from netflowgen.read.fields import (
    Parsed,
    first_reason,
    materialize,
    parse_datetime,
    parse_epoch,
    parse_float,
    parse_int,
    parse_proto,
    parse_tcp_flag_letters,
    unset,
)
from netflowgen.read.source import Source
from netflowgen.read.text import check_batch, read_delimited
from netflowgen.read.validate import Checked

__all__ = ["FORMAT"]

_DELIMITERS = ("\t", ",")
#: Columns every Argus CSV header names (the rest vary by file and are mapped by name).
_REQUIRED = ("StartTime", "Proto", "SrcAddr", "DstAddr")
#: ``ra -Z b`` flags: source letters, ``_``, destination letters.
_FLAG_STATE = r"^[FSRPAUEC]*_[FSRPAUEC]*$"
_TIME_FORMAT = "%Y/%m/%d %H:%M:%S%.f"
_COUNTERS = ("TotPkts", "TotBytes", "SrcPkts", "SrcBytes", "DstPkts", "DstBytes")
#: The columns this reader uses (the others are not read).
_USED = frozenset({"StartTime", "Dur", "Proto", "SrcAddr", "Sport", "DstAddr", "Dport", "State", "Label", *_COUNTERS})


def _header_names(line: str) -> tuple[str, list[str]] | None:
    """The delimiter and column names of an Argus header line, or None if it is not one."""
    for delimiter in _DELIMITERS:
        names = [n.strip() for n in line.split(delimiter)]
        if set(_REQUIRED) <= set(names):
            return delimiter, names
    return None


def _sniff(head: bytes, name: str) -> bool:
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").lstrip("\ufeff")
    return _header_names(first) is not None


def _header(source: Source) -> tuple[str, list[str]]:
    with source.open() as f:
        first = f.readline(1 << 20).decode("utf-8", "replace").lstrip("\ufeff")
    found = _header_names(first)
    if found is None:
        raise FormatError(
            f"{source.name}: not an Argus CSV file: the first line {first[:120]!r} does not name "
            f"the columns {', '.join(_REQUIRED)} separated by commas or tabs"
        )
    delimiter, names = found
    # A trailing delimiter gives an unnamed column; duplicates cannot be mapped by name.
    names = [n or f"_unnamed{i}" for i, n in enumerate(names)]
    check_unique_names(source.name, names, "Argus header")
    return delimiter, names


def _start(raw: pl.Expr, tz: str) -> Parsed:
    """StartTime: local date-time text (``ra`` default) or epoch seconds (``ra -u``)."""
    local = parse_datetime(raw, "StartTime", _TIME_FORMAT, tz)
    epoch = parse_epoch(raw, "StartTime")
    value = pl.coalesce(local.value, epoch.value)
    # The reason is local's where neither parses, that is where the value is null.
    return Parsed(value, pl.when(epoch.reason.is_not_null()).then(local.reason), local.reason_of)



def _difference(total: Parsed, part: Parsed, total_name: str, part_name: str) -> Parsed:
    """``total - part``, with a reason where the part exceeds the total."""
    reason = pl.when(part.value > total.value).then(
        pl.format(f"{part_name} exceeds {total_name}: {{}} > {{}}", part.value, total.value)
    )
    return Parsed(total.value - part.value, reason)


def _counters(parsed: dict[str, Parsed]) -> tuple[dict[str, pl.Expr], list[pl.Expr]]:
    """fwd/rev packets and bytes from the counter columns this file has (see module docstring),
    and the reasons of the combinations that fail."""
    none = pl.lit(None, pl.String)
    unknown = Parsed(pl.lit(None, pl.Int64), none)
    zero = pl.lit(0, pl.Int64)
    has = set(parsed)

    def rev(kind: str) -> Parsed:
        if f"Dst{kind}" in parsed:
            return parsed[f"Dst{kind}"]
        return _difference(parsed[f"Tot{kind}"], parsed[f"Src{kind}"], f"Tot{kind}", f"Src{kind}")

    has_tot = {"TotPkts", "TotBytes"} <= has
    if {"SrcPkts", "SrcBytes"} <= has and ({"DstPkts", "DstBytes"} <= has or has_tot):
        rev_packets, rev_bytes = rev("Pkts"), rev("Bytes")
        out = {"fwd_packets": parsed["SrcPkts"].value, "fwd_bytes": parsed["SrcBytes"].value,
               "rev_packets": rev_packets.value, "rev_bytes": rev_bytes.value}
        return out, [rev_packets.reason, rev_bytes.reason]
    if "SrcBytes" in has and has_tot:
        tot_p, tot_b, src_b = parsed["TotPkts"].value, parsed["TotBytes"].value, parsed["SrcBytes"].value
        all_fwd = src_b == tot_b
        all_rev = (src_b == 0) & (tot_b > 0)
        out = {
            "fwd_packets": pl.when(all_rev).then(zero).otherwise(tot_p),
            "fwd_bytes": pl.when(all_rev).then(zero).otherwise(tot_b),
            "rev_packets": pl.when(all_rev).then(tot_p).when(all_fwd).then(zero),
            "rev_bytes": pl.when(all_rev).then(tot_b).when(all_fwd).then(zero),
        }
        return out, [_difference(parsed["TotBytes"], parsed["SrcBytes"], "TotBytes", "SrcBytes").reason]
    if has_tot:
        out = {"fwd_packets": parsed["TotPkts"].value, "fwd_bytes": parsed["TotBytes"].value,
               "rev_packets": unknown.value, "rev_bytes": unknown.value}
        return out, []
    return {name: unknown.value for name in ("fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes")}, []


def _candidates(fields: pl.DataFrame, tz: str) -> pl.DataFrame:
    """Argus fields (String columns) -> candidate canonical rows."""
    cols = set(fields.columns)

    def col(name: str) -> pl.Expr:
        return pl.col(name) if name in cols else pl.lit(None, pl.String)

    state = unset(col("State"))
    parsers = {
        "Proto": parse_proto(col("Proto"), "Proto"),
        "StartTime": _start(col("StartTime"), tz),
        "Dur": parse_float(col("Dur"), "Dur"),
        "Sport": parse_int(col("Sport"), "Sport"),
        "Dport": parse_int(col("Dport"), "Dport"),
        **{name: parse_int(col(name), name) for name in _COUNTERS if name in cols},
        "State": Parsed(pl.when(state.str.contains(_FLAG_STATE)).then(state), pl.lit(None, pl.String)),
    }
    fields, parsed = materialize(fields, parsers)
    counters, counter_reasons = _counters({n: p for n, p in parsed.items() if n in _COUNTERS})
    start = parsed["StartTime"].value
    duration_us = (parsed["Dur"].value * 1_000_000).round(0).cast(pl.Int64, strict=False)
    flags = parse_tcp_flag_letters(parsed["State"].value)
    return fields.select(
        start.alias("ts_start"),
        (start + pl.duration(microseconds=duration_us)).alias("ts_end"),
        col("SrcAddr").alias("src_ip"),
        col("DstAddr").alias("dst_ip"),
        parsed["Sport"].value.alias("src_port"),
        parsed["Dport"].value.alias("dst_port"),
        parsed["Proto"].value.alias("proto"),
        *[value.alias(name) for name, value in counters.items()],
        flags.value.alias("tcp_flags"),
        unset(col("Label"), ("",)).alias("label"),
        pl.lit(None, pl.String).alias("label_detail"),
        pl.col("source_row"),
        # The protocol first: a non-IP record is rejected as such, not for its MAC address.
        first_reason(*[p.reason for p in parsed.values()], *counter_reasons).alias("reject"),
    )


def _read(source: Source, options: ReadOptions) -> Iterator[Checked]:
    delimiter, names = _header(source)
    with source.open() as stream:
        for batch in read_delimited(
            stream, source.name, delimiter=delimiter, columns=names, skip_lines=1,
            comment_prefix=None, block_bytes=options.block_bytes, include=[n for n in names if n in _USED],
        ):
            yield check_batch(_candidates(batch.fields, options.timezone), batch, source.name)


FORMAT = FlowFormat(
    name="argus",
    description="Argus ra CSV (binetflow), comma or tab separated; local StartTime read in --timezone",
    sniff=_sniff,
    read=_read,
    extensions=(".binetflow", ".argus.csv"),
)
