"""Zeek ``conn.log``: the TSV log with ``#fields``/``#types`` headers, and JSON lines.

Mapping: ``ts`` -> ts_start, ``ts + duration`` -> ts_end, ``id.orig_*`` -> src, ``id.resp_*`` ->
dst, ``orig_pkts``/``orig_ip_bytes`` -> fwd, ``resp_pkts``/``resp_ip_bytes`` -> rev (IP-layer bytes,
as NetFlow counts them; payload ``orig_bytes`` only where a log lacks the ``*_ip_bytes`` fields),
``history`` -> tcp_flags (S, SYN-ACK, A, F, R it implies), ``label``/``detailed-label`` (IoT-23,
Stratosphere) -> label/label_detail. ``-`` (unset) and ``(empty)`` become null labels.

IoT-23 writes its last three fields (``tunnel_parents label detailed-label``) separated by runs
of spaces instead of tabs, in the ``#fields`` line and in every row: a ``#fields`` entry holding
spaces is split on whitespace, and so is the matching field of each row.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import polars as pl

from netflowgen.read.base import FlowFormat, FormatError, ReadOptions
from netflowgen.read.fields import (
    first_reason,
    materialize,
    parse_datetime,
    parse_epoch,
    parse_float,
    parse_int,
    parse_proto,
    parse_zeek_history,
)
from netflowgen.read.source import Source
from netflowgen.read.text import attach_lines, attach_raw, iter_line_blocks, read_delimited
from netflowgen.read.validate import REJECT_SCHEMA, Checked, check

__all__ = ["FORMAT", "JSON_FORMAT", "FORMATS"]

_TAIL = "__tail"
_LABEL_NAMES = ("label",)
_DETAIL_NAMES = ("detailed-label", "detailedlabel", "detailed_label")


def _sniff_tsv(head: bytes, name: str) -> bool:
    return head.startswith(b"#separator") or (head.startswith(b"#") and b"\n#fields" in head[:4096])


def _header(source: Source) -> tuple[dict[str, str], int]:
    """The ``#`` directives at the top of a Zeek log, and how many lines they take."""
    directives: dict[str, str] = {}
    n = 0
    with source.open() as f:
        for raw in f:
            if not raw.startswith(b"#"):
                break
            n += 1
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            key, _, value = line[1:].partition(" " if line.startswith("#separator") else "\t")
            directives[key] = value
            if n > 1000:
                break
    if "fields" not in directives:
        raise FormatError(f"{source.name}: Zeek log without a #fields line")
    return directives, n


def _separator(directives: dict[str, str], source_name: str) -> str:
    text = directives.get("separator", "\\x09").strip()
    try:
        sep = chr(int(text[2:], 16)) if text.startswith("\\x") else (text or "\t")
    except (ValueError, OverflowError):
        sep = ""
    # The text parser needs one ASCII character that does not end a line.
    if len(sep) != 1 or not sep.isascii() or sep in "\r\n\x00":
        raise FormatError(f"{source_name}: unusable Zeek #separator {text[:20]!r}")
    return sep


def _field_names(directives: dict[str, str], sep: str, source_name: str) -> tuple[list[str], list[str] | None]:
    """Column names as the separator splits them, and the names packed into the last field if
    that field holds several space-separated names (IoT-23)."""
    names = directives["fields"].split(sep)
    tail_names = None
    if names and len(names[-1].split()) > 1:
        tail_names = names[-1].split()
        names = names[:-1] + [_TAIL]
    empty = [i + 1 for i, name in enumerate(names) if not name.strip()]
    if empty:
        # Found by benchmarks/fuzz.py: an empty name (two separators in a row) named no column.
        raise FormatError(f"{source_name}: Zeek #fields has an empty name at position {empty[0]} of {len(names)}")
    taken = Counter([*names, *(tail_names or []), "source_row", "_parts"])
    repeated = sorted(name for name, count in taken.items() if count > 1)
    if repeated:
        raise FormatError(f"{source_name}: Zeek #fields names repeated or reserved: {', '.join(repeated)[:200]}")
    return names, tail_names


def _used(names: list[str]) -> list[str]:
    """The columns :func:`_candidates` reads (the IP-layer byte counts where the log has them)."""
    used = {"ts", "duration", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "history",
            "orig_pkts", "resp_pkts", *_LABEL_NAMES, *_DETAIL_NAMES}
    used |= {"orig_ip_bytes"} if "orig_ip_bytes" in names else {"orig_bytes"}
    used |= {"resp_ip_bytes"} if "resp_ip_bytes" in names else {"resp_bytes"}
    return [n for n in names if n in used]


def _zeek_unset(col: str, directives: dict[str, str]) -> pl.Expr:
    unset_mark = directives.get("unset_field", "-")
    empty_mark = directives.get("empty_field", "(empty)")
    s = pl.col(col).str.strip_chars()
    return pl.when(s.is_in([unset_mark, empty_mark, ""])).then(None).otherwise(s)


def _candidates(fields: pl.DataFrame, directives: dict[str, str]) -> pl.DataFrame:
    """Zeek fields (String columns) -> candidate canonical rows."""
    cols = set(fields.columns)

    def col(name: str) -> pl.Expr:
        return pl.col(name) if name in cols else pl.lit(None, pl.String)

    fwd_bytes_name = "orig_ip_bytes" if "orig_ip_bytes" in cols else "orig_bytes"
    rev_bytes_name = "resp_ip_bytes" if "resp_ip_bytes" in cols else "resp_bytes"
    parsers = {
        "ts": parse_epoch(col("ts"), "ts"),
        "duration": parse_float(col("duration"), "duration"),
        "src_port": parse_int(col("id.orig_p"), "id.orig_p"),
        "dst_port": parse_int(col("id.resp_p"), "id.resp_p"),
        "proto": parse_proto(col("proto"), "proto"),
        "fwd_packets": parse_int(col("orig_pkts"), "orig_pkts"),
        "fwd_bytes": parse_int(col(fwd_bytes_name), fwd_bytes_name),
        "rev_packets": parse_int(col("resp_pkts"), "resp_pkts"),
        "rev_bytes": parse_int(col(rev_bytes_name), rev_bytes_name),
        "tcp_flags": parse_zeek_history(col("history")),
    }
    # Each parser once (the expressions below refer to them several times).
    fields, parsed = materialize(fields, parsers)
    ts, duration = parsed.pop("ts"), parsed.pop("duration")
    # Zeek may write ISO 8601 times (JSON logs with TS_ISO8601): tried where the epoch failed.
    iso_text = pl.when(ts.value.is_null()).then(col("ts")).str.replace(r"Z$", "")
    ts_iso = parse_datetime(iso_text, "ts", "%Y-%m-%dT%H:%M:%S%.f")
    start = pl.coalesce(ts.value, ts_iso.value)
    start_reason = pl.when(start.is_null()).then(ts.reason).otherwise(None)
    label = next((n for n in _LABEL_NAMES if n in cols), None)
    detail = next((n for n in _DETAIL_NAMES if n in cols), None)
    duration_us = (duration.value * 1_000_000).round(0).cast(pl.Int64, strict=False)
    # A duration too large for microseconds is not "no duration": say so instead of flagging NO_END.
    duration_reason = pl.coalesce(
        duration.reason,
        pl.when(duration.value.is_not_null() & duration_us.is_null()).then(
            pl.format("duration: out of range {}", col("duration").str.slice(0, 60))
        ),
    )
    return fields.select(
        start.alias("ts_start"),
        (start + pl.duration(microseconds=duration_us)).alias("ts_end"),
        col("id.orig_h").alias("src_ip"),
        col("id.resp_h").alias("dst_ip"),
        *[p.value.alias(name) for name, p in parsed.items()],
        (_zeek_unset(label, directives) if label else pl.lit(None, pl.String)).alias("label"),
        (_zeek_unset(detail, directives) if detail else pl.lit(None, pl.String)).alias("label_detail"),
        pl.col("source_row"),
        first_reason(start_reason, duration_reason, *[p.reason for p in parsed.values()]).alias("reject"),
    )


def _split_tail(fields: pl.DataFrame, tail_names: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split the space-separated last field (IoT-23) into its columns; wrong counts are rejects."""
    parts = pl.col(_TAIL).str.extract_all(r"\S+")
    fields = fields.with_columns(parts.alias("_parts"))
    ok = pl.col("_parts").list.len() == len(tail_names)
    bad = fields.filter(~ok)
    good = fields.filter(ok).with_columns(
        [pl.col("_parts").list.get(i).alias(n) for i, n in enumerate(tail_names)]
    ).drop("_parts", _TAIL)
    rejects = bad.select(
        pl.lit("", pl.String).alias("source_file"),
        pl.col("source_row").cast(pl.UInt64),
        pl.format(
            "expected {} space-separated fields at the end of the row ({}), found {}",
            pl.lit(len(tail_names)), pl.lit(" ".join(tail_names)), pl.col("_parts").list.len(),
        ).alias("reason"),
        pl.col(_TAIL).alias("raw"),
    )
    return good, rejects


def _read_tsv(source: Source, options: ReadOptions) -> Iterator[Checked]:
    directives, header_lines = _header(source)
    sep = _separator(directives, source.name)
    names, tail_names = _field_names(directives, sep, source.name)
    # IoT-23's space-separated tail is split into columns: its rejects show the fields joined, so
    # every column is read there.
    include = None if tail_names else _used(names)
    with source.open() as stream:
        for batch in read_delimited(
            stream, source.name, delimiter=sep, columns=names, skip_lines=header_lines,
            block_bytes=options.block_bytes, include=include,
        ):
            fields = batch.fields
            rejects = [batch.rejects]
            if tail_names:
                fields, tail_rejects = _split_tail(fields, tail_names)
                rejects.append(tail_rejects.with_columns(pl.lit(source.name).alias("source_file")))
            checked = check(_candidates(fields, directives), source.name)
            rejects.append(attach_raw(checked.rejects, fields, sep) if tail_names else attach_lines(checked.rejects, batch.lines))
            yield Checked(checked.flows, pl.concat(rejects, how="vertical"))


# --- JSON lines --------------------------------------------------------------------------------


def _sniff_json(head: bytes, name: str) -> bool:
    first = head.lstrip().split(b"\n", 1)[0]
    return first.startswith(b"{") and b'"id.orig_h"' in first


def _json_rows(
    block: bytes, first_line: int
) -> tuple[list[dict[str, str | None]], list[int], list[str], list[tuple[int, str, str]]]:
    rows: list[dict[str, str | None]] = []
    lines: list[int] = []
    texts: list[str] = []  # each row's line, for the rejects file
    rejects: list[tuple[int, str, str]] = []
    for i, raw in enumerate(block.split(b"\n")):
        if not raw.strip():
            continue
        line_no = first_line + i
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, a 4300+ digit number, deep nesting
            rejects.append((line_no, f"not a JSON object: {e}", raw.decode("utf-8", "replace")[:500]))
            continue
        if not isinstance(obj, dict):
            rejects.append((line_no, "not a JSON object", raw.decode("utf-8", "replace")[:500]))
            continue
        # Values go through the same text parsers as the TSV log.
        rows.append({k: (None if v is None else (json.dumps(v) if isinstance(v, (list, dict)) else str(v)))
                     for k, v in obj.items()})
        lines.append(line_no)
        texts.append(raw.decode("utf-8", "replace")[:500])
    return rows, lines, texts, rejects


def _read_json(source: Source, options: ReadOptions) -> Iterator[Checked]:
    directives = {"unset_field": "-", "empty_field": "(empty)"}
    line_no = 1
    with source.open() as stream:
        for block in iter_line_blocks(stream, options.block_bytes):
            n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            rows, lines, texts, bad = _json_rows(block, line_no)
            line_no += n_lines
            reject_df = pl.DataFrame(
                {"source_file": [source.name] * len(bad), "source_row": [b[0] for b in bad],
                 "reason": [b[1] for b in bad], "raw": [b[2] for b in bad]},
                schema=REJECT_SCHEMA,
            )
            if not rows:
                yield Checked(check(_candidates(pl.DataFrame({"source_row": []}, schema={"source_row": pl.Int64}), directives), source.name).flows, reject_df)
                continue
            keys = sorted({k for r in rows for k in r})
            fields = pl.DataFrame({k: [r.get(k) for r in rows] for k in keys}, schema={k: pl.String for k in keys})
            fields = fields.with_columns(pl.Series("source_row", lines, pl.Int64))
            checked = check(_candidates(fields, directives), source.name)
            raw = pl.DataFrame({"source_row": lines, "raw": texts}, schema={"source_row": pl.UInt64, "raw": pl.String})
            invalid = checked.rejects.drop("raw").join(raw, on="source_row", how="left").select(list(REJECT_SCHEMA))
            yield Checked(checked.flows, pl.concat([reject_df, invalid]))


FORMAT = FlowFormat(
    name="zeek",
    description="Zeek conn.log, TSV with #fields/#types header (IoT-23 variant included)",
    sniff=_sniff_tsv,
    read=_read_tsv,
    extensions=(".log", ".labeled"),
)

JSON_FORMAT = FlowFormat(
    name="zeek-json",
    description="Zeek conn.log as JSON lines",
    sniff=_sniff_json,
    read=_read_json,
)

FORMATS = (FORMAT, JSON_FORMAT)
