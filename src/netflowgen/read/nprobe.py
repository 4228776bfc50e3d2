"""NetFlow feature sets with nProbe field names: the NF-UQ-NIDS family (University of Queensland).

Sets: NF-UNSW-NB15, NF-BoT-IoT, NF-ToN-IoT, NF-CSE-CIC-IDS2018 and NF-UQ-NIDS in their v1, v2
and v3 releases, as CSV (comma separated) or Parquet (see :mod:`netflowgen.read.parquet`); also
nProbe's own flow dumps with the same names, separated by ``|`` or tabs. Header names are matched
after stripping spaces, case-insensitively.

Mapping: ``FLOW_START_MILLISECONDS``/``FLOW_END_MILLISECONDS`` (epoch milliseconds, UTC) ->
ts_start/ts_end (``FLOW_DURATION_MILLISECONDS`` gives the end where the end column is absent);
``IPV4_SRC_ADDR``/``IPV4_DST_ADDR`` (``IPV6_*_ADDR`` where a dump has them and the IPv4 field is
empty or ``0.0.0.0``) -> src/dst_ip; ``L4_SRC_PORT``/``L4_DST_PORT`` -> ports; ``PROTOCOL`` ->
proto; ``IN_PKTS``/``IN_BYTES`` (source to destination) -> fwd, ``OUT_PKTS``/``OUT_BYTES``
(destination to source) -> rev, IP-layer bytes as NetFlow counts them; ``TCP_FLAGS`` (cumulative,
both directions) -> tcp_flags.

Labels: ``Attack`` (the class, as written: ``Benign``, ``DDoS``, ``Exploits``, ...) -> label, so
that attack classes are the labels as for the other formats; ``Label`` (0 benign, 1 attack) ->
label_detail. A file without ``Attack`` puts ``Label`` in label. ``Dataset`` (NF-UQ-NIDS: the
set a row came from) and the other features are not kept.

The v1 and v2 sets carry no timestamps (their flows are features without time); a flow table
needs time, so reading one raises :class:`FormatError` that says so. The v3 sets add
``FLOW_START_MILLISECONDS`` and ``FLOW_END_MILLISECONDS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import polars as pl

from netflowgen.read.base import FlowFormat, FormatError, ReadOptions
from netflowgen.read.cicflowmeter import read_header
from netflowgen.read.fields import Parsed, first_reason, parse_int, parse_proto, unset
from netflowgen.read.source import Source
from netflowgen.read.text import Lines, check_batch, read_delimited
from netflowgen.read.validate import Checked

__all__ = ["FORMAT", "Layout", "find_layout", "candidates"]

#: Fields this reader uses (upper case, as nProbe names them).
_FIELDS = (
    "FLOW_START_MILLISECONDS", "FLOW_END_MILLISECONDS", "FLOW_DURATION_MILLISECONDS",
    "IPV4_SRC_ADDR", "IPV4_DST_ADDR", "IPV6_SRC_ADDR", "IPV6_DST_ADDR", "L4_SRC_PORT", "L4_DST_PORT",
    "PROTOCOL", "IN_BYTES", "IN_PKTS", "OUT_BYTES", "OUT_PKTS", "TCP_FLAGS", "LABEL", "ATTACK",
)
_REQUIRED = ("IPV4_SRC_ADDR", "IPV4_DST_ADDR", "L4_SRC_PORT", "L4_DST_PORT", "PROTOCOL",
             "IN_BYTES", "IN_PKTS", "OUT_BYTES", "OUT_PKTS")
_COUNTERS = {"fwd_packets": "IN_PKTS", "fwd_bytes": "IN_BYTES", "rev_packets": "OUT_PKTS", "rev_bytes": "OUT_BYTES"}
_NUMBER_FIELDS = ("FLOW_START_MILLISECONDS", "FLOW_END_MILLISECONDS", "FLOW_DURATION_MILLISECONDS",
                  "L4_SRC_PORT", "L4_DST_PORT", "IN_BYTES", "IN_PKTS", "OUT_BYTES", "OUT_PKTS", "TCP_FLAGS")
_DELIMITERS = (",", "|", "\t", ";")
#: Candidate frame column: True where every field of the row is blank.
_BLANK = "__nfg_blank"
# Milliseconds that still fit in microseconds as Int64 (about year 292,000).
_MAX_MS = 9_000_000_000_000_000 // 1000


@dataclass(frozen=True)
class Layout:
    """Where each nProbe field is: upper-case field name -> column of the fields frame."""

    columns: dict[str, str]
    names: dict[str, str]
    """Field -> the name as the file writes it, for reject reasons."""


def _key(name: str) -> str:
    return name.replace("\ufeff", "").strip().upper()


def find_layout(header: Sequence[str], source_name: str, columns: Sequence[str] | None = None) -> Layout | None:
    """The layout of an nProbe-named header, or None if the header is not one.

    ``columns`` names the fields frame's column for each header position (default: the header
    names). Raises :class:`FormatError` for a feature set without timestamps (NF-v1/v2) or
    without the fields a flow needs.

    >>> layout = find_layout(["FLOW_START_MILLISECONDS", "IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR",
    ...                       "L4_DST_PORT", "PROTOCOL", "IN_BYTES", "IN_PKTS", "OUT_BYTES", "OUT_PKTS",
    ...                       "Label", "Attack"], "NF-v3.csv")
    >>> layout.columns["ATTACK"], layout.names["ATTACK"]
    ('Attack', 'Attack')
    >>> find_layout(["ts", "src", "dst"], "zeek.csv") is None
    True
    """
    keys = [_key(h) for h in header]
    if "IPV4_SRC_ADDR" not in keys or not ({"IN_BYTES", "IN_PKTS"} & set(keys)):
        return None
    columns = list(header) if columns is None else list(columns)
    found = {f: columns[keys.index(f)] for f in _FIELDS if f in keys}
    names = {f: header[keys.index(f)].replace("\ufeff", "").strip() for f in found}
    if "FLOW_START_MILLISECONDS" not in found:
        raise FormatError(
            f"{source_name}: NetFlow feature set without flow start times (no FLOW_START_MILLISECONDS "
            "column): the NF-v1 and NF-v2 sets (NF-UNSW-NB15-v2, NF-UQ-NIDS-v2, ...) carry no "
            "timestamps, and a flow table needs time; use the v3 sets, which have "
            "FLOW_START_MILLISECONDS and FLOW_END_MILLISECONDS"
        )
    missing = [f for f in _REQUIRED if f not in found]
    if missing:
        raise FormatError(f"{source_name}: nProbe field set without {', '.join(missing)}")
    return Layout(found, names)


def candidates(
    fields: pl.DataFrame, layout: Layout, blank: Callable[[pl.DataFrame], pl.Series] | None = None
) -> pl.DataFrame:
    """nProbe fields (String columns named as in ``layout``) -> candidate canonical rows.

    Rows written the common way take a fast path; the others (a few, if any) are parsed field by
    field with the reason for what is wrong. Both give the same values. ``blank`` says which of
    some rows have every field blank, where ``fields`` lacks columns of the file (default: every
    column of ``fields`` blank).
    """
    fast, clean = _fast_candidates(fields, layout)
    if clean.all():
        return fast
    rest = fields.filter(~clean)
    if blank is not None:
        rest = rest.with_columns(blank(rest).alias(_BLANK))
    careful = _careful_candidates(rest, layout)
    return pl.concat([fast.filter(clean), careful]).sort("source_row")


def _candidate_schema(source_row: pl.DataType) -> dict[str, pl.DataType]:
    dt = pl.Datetime("us", "UTC")
    ints = ("src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "tcp_flags")
    return {"ts_start": dt, "ts_end": dt, "src_ip": pl.String(), "dst_ip": pl.String(),
            **{c: pl.Int64() for c in ints}, "label": pl.String(), "label_detail": pl.String(),
            "source_row": source_row, "reject": pl.String()}


def _address(layout: Layout, side: str) -> pl.Expr:
    """The IPv4 field, or the IPv6 field where a dump has one and the IPv4 field is empty/0.0.0.0."""
    v4 = pl.col(layout.columns[f"IPV4_{side}_ADDR"])
    if f"IPV6_{side}_ADDR" not in layout.columns:
        return v4
    v4, v6 = unset(v4), unset(pl.col(layout.columns[f"IPV6_{side}_ADDR"]))
    use_v6 = (v4.is_null() | (v4 == "0.0.0.0")) & v6.is_not_null() & (v6 != "::")
    return pl.when(use_v6).then(v6).otherwise(v4)


def _labels(layout: Layout) -> tuple[pl.Expr, pl.Expr]:
    """label (the Attack class, else Label) and label_detail (Label where Attack is the label)."""
    none = pl.lit(None, pl.String)
    attack = unset(pl.col(layout.columns["ATTACK"])) if "ATTACK" in layout.columns else None
    label = unset(pl.col(layout.columns["LABEL"])) if "LABEL" in layout.columns else none
    if attack is None:
        return label.alias("label"), none.alias("label_detail")
    return attack.alias("label"), label.alias("label_detail")


def _ms_time(ms: pl.Expr) -> pl.Expr:
    """Epoch milliseconds -> Datetime(us, UTC); null where too large for the type."""
    return pl.when(ms.abs() < _MAX_MS).then(ms * 1000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _fast_candidates(fields: pl.DataFrame, layout: Layout) -> tuple[pl.DataFrame, pl.Series]:
    """Candidates parsed the common way, and which rows that worked for (``clean``): every number
    written as an integer (``12`` or ``12.0``), no counter negative, times in range."""
    cols = layout.columns
    numbers = [f for f in _NUMBER_FIELDS if f in cols]
    if "FLOW_END_MILLISECONDS" in cols and "FLOW_DURATION_MILLISECONDS" in cols:
        numbers.remove("FLOW_DURATION_MILLISECONDS")  # not used: the end is given
    parsed = fields.select(
        pl.col("source_row"),
        _address(layout, "SRC").alias("src_ip"),
        _address(layout, "DST").alias("dst_ip"),
        *_labels(layout),
        pl.col(cols["PROTOCOL"]).cast(pl.Int64, strict=False).alias("PROTOCOL"),
        *[pl.col(cols[f]).str.strip_suffix(".0").cast(pl.Int64, strict=False).alias(f) for f in numbers],
    )

    start = _ms_time(pl.col("FLOW_START_MILLISECONDS"))
    times = [start]
    if "FLOW_END_MILLISECONDS" in cols:
        end = _ms_time(pl.col("FLOW_END_MILLISECONDS"))
        times.append(end)
    elif "FLOW_DURATION_MILLISECONDS" in cols:
        end = start + pl.duration(milliseconds=pl.col("FLOW_DURATION_MILLISECONDS"))
    else:
        end = pl.lit(None, pl.Datetime("us", "UTC"))  # no end given: repaired as NO_END
    clean = (
        pl.all_horizontal([pl.col(f).is_not_null() for f in ("PROTOCOL", *numbers)])
        & pl.all_horizontal([pl.col(f) >= 0 for f in _COUNTERS.values()])
        & pl.all_horizontal([t.is_not_null() for t in times])
    ).fill_null(False)
    out = parsed.select(
        start.alias("ts_start"),
        end.alias("ts_end"),
        "src_ip", "dst_ip",
        pl.col("L4_SRC_PORT").alias("src_port"),
        pl.col("L4_DST_PORT").alias("dst_port"),
        pl.col("PROTOCOL").alias("proto"),
        *[pl.col(f).alias(c) for c, f in _COUNTERS.items()],
        (pl.col("TCP_FLAGS") if "TCP_FLAGS" in cols else pl.lit(None, pl.Int64)).alias("tcp_flags"),
        "label", "label_detail", "source_row",
        pl.lit(None, pl.String).alias("reject"),
        clean.alias("_clean"),
    )
    schema = _candidate_schema(fields.schema["source_row"])
    return out.drop("_clean").cast(schema), out["_clean"]  # type: ignore[arg-type]


def _epoch_ms(parsed: Parsed, what: str) -> Parsed:
    """Epoch milliseconds -> Datetime(us, UTC); a value too large for the type is a reason."""
    ms = parsed.value
    value = _ms_time(ms)
    too_large = pl.when(ms.is_not_null() & value.is_null()).then(pl.format(f"{what} out of range: {{}}", ms))
    return Parsed(value, pl.coalesce(parsed.reason, too_large))


def _careful_candidates(fields: pl.DataFrame, layout: Layout) -> pl.DataFrame:
    """Candidates field by field, each with the reason it does not parse (slow: for the few rows
    the fast path leaves)."""

    def col(field: str) -> pl.Expr:
        return pl.col(layout.columns[field]) if field in layout.columns else pl.lit(None, pl.String)

    def number(field: str) -> Parsed:
        return parse_int(col(field), layout.names.get(field, field))

    if _BLANK not in fields.columns:  # every column of the file is in fields
        data = [c for c in fields.columns if c != "source_row"]
        fields = fields.with_columns(pl.all_horizontal([pl.col(c).str.strip_chars() == "" for c in data]).alias(_BLANK))

    start = _epoch_ms(number("FLOW_START_MILLISECONDS"), layout.names["FLOW_START_MILLISECONDS"])
    if "FLOW_END_MILLISECONDS" in layout.columns:
        end = _epoch_ms(number("FLOW_END_MILLISECONDS"), layout.names["FLOW_END_MILLISECONDS"])
    else:
        duration = number("FLOW_DURATION_MILLISECONDS")
        end = Parsed(start.value + pl.duration(milliseconds=duration.value), duration.reason)
    parsed = {
        "src_port": number("L4_SRC_PORT"),
        "dst_port": number("L4_DST_PORT"),
        "proto": parse_proto(col("PROTOCOL"), layout.names["PROTOCOL"]),
        **{c: number(f) for c, f in _COUNTERS.items()},
        "tcp_flags": number("TCP_FLAGS"),
    }
    return fields.select(
        start.value.alias("ts_start"),
        end.value.alias("ts_end"),
        _address(layout, "SRC").alias("src_ip"),
        _address(layout, "DST").alias("dst_ip"),
        *[p.value.alias(name) for name, p in parsed.items()],
        *_labels(layout),
        pl.col("source_row"),
        first_reason(
            pl.when(pl.col(_BLANK)).then(pl.lit("empty row: every field is blank")),
            pl.when(unset(col("IPV4_SRC_ADDR")).str.to_uppercase() == "IPV4_SRC_ADDR")
            .then(pl.lit("repeated header line")),
            start.reason,
            end.reason,
            *[p.reason for p in parsed.values()],
            *[pl.when(parsed[c].value < 0).then(pl.format(f"{layout.names[f]} is negative: {{}}", parsed[c].value))
              for c, f in _COUNTERS.items()],
        ).alias("reject"),
    ).cast(_candidate_schema(fields.schema["source_row"]))  # type: ignore[arg-type]


def _blank_lines(lines: Lines, delimiter: str, rows: pl.DataFrame) -> pl.Series:
    """Which of ``rows`` have every field of their line blank (also the fields not read)."""
    return lines.blank(rows["source_row"], delimiter)


def _delimiter(line: str) -> str:
    return max(_DELIMITERS, key=line.count)


def _sniff(head: bytes, name: str) -> bool:
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    keys = {_key(h) for h in first.split(_delimiter(first))}
    return "IPV4_SRC_ADDR" in keys and bool({"IN_BYTES", "IN_PKTS"} & keys)


def _read(source: Source, options: ReadOptions) -> Iterator[Checked]:
    line = read_header(source)
    delimiter = _delimiter(line)
    header = line.split(delimiter)
    columns = [f"c{i}" for i in range(len(header))]
    layout = find_layout(header, source.name, columns)
    if layout is None:
        raise FormatError(f"{source.name}: not an nProbe field set (no IPV4_SRC_ADDR and IN_BYTES columns)")
    used = set(layout.columns.values())
    with source.open() as stream:
        for batch in read_delimited(
            stream, source.name, delimiter=delimiter, columns=columns, skip_lines=1, block_bytes=options.block_bytes,
            include=[c for c in columns if c in used],
        ):
            blank = partial(_blank_lines, batch.lines, delimiter)
            yield check_batch(candidates(batch.fields, layout, blank), batch, source.name)


FORMAT = FlowFormat(
    name="nprobe",
    description="NetFlow feature sets with nProbe field names (NF-UQ-NIDS family v3, nProbe dumps)",
    sniff=_sniff,
    read=_read,
    extensions=(".csv",),
)
