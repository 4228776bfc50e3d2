"""Text written by ``nfdump -o csv`` (nfdump 1.6 and 1.7).

The first line names the columns (1.7: ``ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,
obyt,...,ra,eng,exid,tr``; older 1.6 releases stop at ``ra,eng``); columns are found by name.
Mapping: ``ts``/``te`` -> ts_start/ts_end (``te`` missing: ``ts + td``), ``sa``/``da``/``sp``/``dp``
-> addresses and ports, ``pr`` (``TCP``, ``UDP``, ``ICMP6``, ``GRE``, ... or a number) -> proto,
``flg`` (``...A.R..``) -> tcp_flags, ``ipkt``/``ibyt`` -> fwd, ``opkt``/``obyt`` -> rev (0 for
NetFlow records, as nfdump writes them).

Times are the local time of the nfdump process, ``YYYY-MM-DD HH:MM:SS`` (whole seconds; some
builds add ``.mmm``), read in ``ReadOptions.timezone`` (UTC by default).

Lines that are not flow records, recognised by what they are:

* the ``Summary`` trailer: a line ``Summary``, its header ``flows,bytes,packets,avg_bps,...`` and
  the line of values that follows that header;
* ``No matching flows``, which nfdump writes when there is no record;
* the column header repeated (outputs of several nfdump runs appended to one file).

The line nfdump writes before a tunnelled record (GRE, IP in IP) is a row of its own in the csv
but no flow: no packets, no bytes, a tunnel protocol. It is rejected with that reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from netflowgen.read.base import FlowFormat, FormatError, ReadOptions
from netflowgen.read.fields import (
    Parsed,
    first_reason,
    materialize,
    parse_datetime,
    parse_float,
    parse_int,
    parse_proto,
    parse_tcp_flag_letters,
    unset,
)
from netflowgen.read.source import Source
from netflowgen.read.text import TextBatch, check_batch, read_delimited, unique_names
from netflowgen.read.validate import Checked
from netflowgen.schema import PORT_PROTOCOLS

__all__ = ["FORMAT", "NFDUMP_PROTOCOLS"]

_DELIMITER = ","
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S%.f"
_HEADER_START = ("ts", "te", "td", "sa", "da", "sp", "dp", "pr")
_REQUIRED = ("ts", "sa", "da", "pr", "ipkt", "ibyt")
#: The columns this reader uses (the others are not read).
_USED = frozenset({*_HEADER_START, "flg", "ipkt", "ibyt", "opkt", "obyt"})
_SUMMARY = "Summary"
_SUMMARY_HEADER = "flows,bytes,packets,avg_bps,avg_pps,avg_bpp"
_MESSAGES = ("No matching flows", "No matched flows")

#: Protocol names as nfdump 1.7 prints them (its own short names, read off ``nfdump -o csv`` for
#: every protocol number). They come first: nfdump's ``STP`` (118) and ``MPLS`` (137, MPLS in IP)
#: are IP protocols here, not the link-layer records other tools call so.
NFDUMP_PROTOCOLS: dict[str, int] = {
    "icmp": 1, "igmp": 2, "ggp": 3, "ipip": 4, "st": 5, "tcp": 6, "cbt": 7, "egp": 8, "igp": 9,
    "bbn": 10, "nvpii": 11, "pup": 12, "argus": 13, "encom": 14, "xnet": 15, "chaos": 16, "udp": 17,
    "mux": 18, "dcn": 19, "hmp": 20, "prm": 21, "xns": 22, "trnk1": 23, "trnk2": 24, "leaf1": 25,
    "leaf2": 26, "rdp": 27, "irtp": 28, "iso-4": 29, "netbk": 30, "mfesp": 31, "meinp": 32,
    "dccp": 33, "3pc": 34, "idpr": 35, "xtp": 36, "ddp": 37, "tp++": 39, "il": 40, "ipv6": 41,
    "sdrp": 42, "rte6": 43, "frag6": 44, "idrp": 45, "rsvp": 46, "gre": 47, "mhrp": 48, "bna": 49,
    "esp": 50, "ah": 51, "inlsp": 52, "swipe": 53, "narp": 54, "mobil": 55, "tlsp": 56, "skip": 57,
    "icmp6": 58, "nohe6": 59, "opts6": 60, "host": 61, "cftp": 62, "net": 63, "satnt": 64,
    "klan": 65, "rvd": 66, "ippc": 67, "fs": 68, "satm": 69, "visa": 70, "ipcv": 71, "cpnx": 72,
    "cphb": 73, "wsn": 74, "pvp": 75, "bsatm": 76, "sunnd": 77, "wbmon": 78, "wbexp": 79,
    "isoip": 80, "vmtp": 81, "svmtp": 82, "vines": 83, "ttp": 84, "nsigp": 85, "dgp": 86, "tcf": 87,
    "eigrp": 88, "ospf": 89, "s-rpc": 90, "larp": 91, "mtp": 92, "ax.25": 93, "os": 94, "micp": 95,
    "sccsp": 96, "ethip": 97, "encap": 98, "gmtp": 100, "ifmp": 101, "pnni": 102, "pim": 103,
    "aris": 104, "scps": 105, "qnx": 106, "a/n": 107, "ipcmp": 108, "snp": 109, "cpqpp": 110,
    "ipxip": 111, "vrrp": 112, "pgm": 113, "0hop": 114, "l2tp": 115, "ddx": 116, "iatp": 117,
    "stp": 118, "srp": 119, "uti": 120, "smp": 121, "sm": 122, "ptp": 123, "isis4": 124,
    "fire": 125, "crtp": 126, "crudp": 127, "iplt": 129, "sps": 130, "pipe": 131, "sctp": 132,
    "fc": 133, "mhead": 135, "udp-l": 136, "mpls": 137,
}

#: Protocols nfdump writes a tunnel line for (IP in IP, IPv6 in IP, GRE).
_TUNNEL_PROTOCOLS = (4, 41, 47)


@dataclass
class _Trailer:
    """Where the values line of a ``Summary`` block is expected (it may fall in the next batch)."""

    values_line: int | None = None


def _first_line(head: bytes) -> str:
    return head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")


def _sniff(head: bytes, name: str) -> bool:
    return tuple(_first_line(head).split(_DELIMITER)[: len(_HEADER_START)]) == _HEADER_START


def _columns(source: Source) -> list[str]:
    names = [n.strip() for n in _first_line(source.head(1 << 16)).split(_DELIMITER)]
    missing = [n for n in _REQUIRED if n not in names]
    if missing or ("te" not in names and "td" not in names):
        raise FormatError(
            f"{source.name}: not nfdump csv output: the first line lacks the columns "
            f"{', '.join(missing) or 'te/td'} (expected a header like {','.join(_HEADER_START)},...)"
        )
    return names


def _candidates(fields: pl.DataFrame, tz: str) -> pl.DataFrame:
    """nfdump csv fields (String columns) -> candidate canonical rows."""
    cols = set(fields.columns)

    def col(name: str) -> pl.Expr:
        return pl.col(name) if name in cols else pl.lit(None, pl.String)

    by_nfdump_name = unset(col("pr")).str.to_lowercase().replace_strict(NFDUMP_PROTOCOLS, default=None, return_dtype=pl.Int64)
    parsers = {
        "start": parse_datetime(col("ts"), "ts", _TIME_FORMAT, tz),
        "end": parse_datetime(col("te"), "te", _TIME_FORMAT, tz),
        "duration": parse_float(col("td"), "td"),
        "nfdump_proto": Parsed(by_nfdump_name, pl.lit(None, pl.String)),
        "proto": parse_proto(col("pr"), "pr"),
        "src_port": parse_int(col("sp"), "sp"),
        "dst_port": parse_int(col("dp"), "dp"),
        "fwd_packets": parse_int(col("ipkt"), "ipkt"),
        "fwd_bytes": parse_int(col("ibyt"), "ibyt"),
        # A csv without out counters is unidirectional: literal 0, not unset.
        **({"rev_packets": parse_int(col("opkt"), "opkt")} if "opkt" in cols else {}),
        **({"rev_bytes": parse_int(col("obyt"), "obyt")} if "obyt" in cols else {}),
        "tcp_flags": parse_tcp_flag_letters(col("flg")),
    }
    # Each parser once (the expressions below refer to them several times).
    fields, parsed = materialize(fields, parsers)
    start, end, duration = parsed["start"], parsed["end"], parsed["duration"]
    duration_us = (duration.value * 1_000_000).round(0).cast(pl.Int64, strict=False)
    nfdump_proto, general = parsed["nfdump_proto"].value, parsed["proto"]
    proto = pl.coalesce(nfdump_proto, general.value)
    proto_reason = pl.when(nfdump_proto.is_null()).then(general.reason)
    has_ports = proto.is_in(list(PORT_PROTOCOLS)).fill_null(False)
    ports = {name: parsed[name] for name in ("src_port", "dst_port")}
    counters = {name: parsed.get(name) for name in ("fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes")}
    counter_values = {k: (p.value if p else pl.lit(0, pl.Int64)) for k, p in counters.items()}
    tunnel_line = proto.is_in(list(_TUNNEL_PROTOCOLS)) & pl.all_horizontal(
        [v.fill_null(-1) == 0 for v in counter_values.values()]
    )
    return fields.select(
        start.value.alias("ts_start"),
        pl.coalesce(end.value, start.value + pl.duration(microseconds=duration_us)).alias("ts_end"),
        col("sa").str.strip_chars().alias("src_ip"),
        col("da").str.strip_chars().alias("dst_ip"),
        *[p.value.alias(name) for name, p in ports.items()],
        proto.alias("proto"),
        *[v.alias(name) for name, v in counter_values.items()],
        parsed["tcp_flags"].value.alias("tcp_flags"),
        pl.col("source_row"),
        first_reason(
            start.reason,
            end.reason,
            pl.when(end.value.is_null()).then(duration.reason),
            proto_reason,
            *[pl.when(has_ports).then(p.reason) for p in ports.values()],
            *[p.reason for p in counters.values() if p],
            pl.when(tunnel_line).then(
                pl.lit("nfdump tunnel line (outer addresses of the next record's tunnel, no packets): not a flow")
            ),
        ).alias("reject"),
    )


def _not_data(batch: TextBatch, names: list[str], trailer: _Trailer) -> TextBatch:
    """Drop the lines of a batch that are nfdump's trailer, messages or a repeated header."""
    rejects = batch.rejects
    raw = pl.col("raw").str.strip_chars()
    head_lines = rejects.filter(raw == _SUMMARY_HEADER)["source_row"]
    if head_lines.len():
        trailer.values_line = int(head_lines.max()) + 1  # type: ignore[arg-type]
    values_lines = (head_lines + 1).to_list() + ([trailer.values_line] if trailer.values_line else [])
    is_values = pl.col("source_row").is_in(values_lines) & (raw.str.count_matches(",") == _SUMMARY_HEADER.count(","))
    rejects = rejects.filter(~(raw.is_in([_SUMMARY, _SUMMARY_HEADER, *_MESSAGES]) | is_values))
    repeated_header = pl.all_horizontal([pl.col(n).str.strip_chars() == n for n in _HEADER_START if n in names])
    fields = batch.fields.filter(~repeated_header)
    return TextBatch(fields, rejects, batch.lines)


def _read(source: Source, options: ReadOptions) -> Iterator[Checked]:
    names = _columns(source)
    trailer = _Trailer()
    with source.open() as stream:
        for batch in read_delimited(
            stream, source.name, delimiter=_DELIMITER, columns=names, skip_lines=1,
            comment_prefix=None, block_bytes=options.block_bytes, include=[n for n in unique_names(names) if n in _USED],
        ):
            batch = _not_data(batch, names, trailer)
            yield check_batch(_candidates(batch.fields, options.timezone), batch, source.name)


FORMAT = FlowFormat(
    name="nfdump-csv",
    description="nfdump -o csv text (nfdump 1.6/1.7), Summary trailer included",
    sniff=_sniff,
    read=_read,
    extensions=(".csv",),
)
