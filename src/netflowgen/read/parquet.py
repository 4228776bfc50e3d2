"""Parquet flow files (magic ``PAR1``), read by row group batches.

Two kinds are read:

* **the canonical flow table** (as ``netflowgen ingest`` writes it): every column of
  :data:`~netflowgen.schema.FLOW_SCHEMA` but ``quality``, ``source_file`` and ``source_row``
  present. The rows pass through :func:`~netflowgen.read.validate.check` again, so the rules hold
  for files from anywhere; the ``quality`` already set is kept (OR-ed with what the check finds),
  and so are ``source_file``/``source_row`` where both are present: a flow keeps pointing at the
  raw input it came from. Timestamps without a zone are taken as UTC.
* **the columns of another known layout**: the NetFlow feature sets with nProbe names (NF-v3 is
  also distributed as Parquet) and CICFlowMeter tables, mapped by the same functions as their CSV
  readers (:mod:`netflowgen.read.nprobe`, :mod:`netflowgen.read.cicflowmeter`). Values are
  turned into text and parsed as in CSV; zoned timestamps are first put into
  ``ReadOptions.timezone``, the zone CICFlowMeter timestamps are read in.

Rejected rows name this Parquet file and their row in it (1-based); ``source_row`` of flows
from a non-canonical layout is that row as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from netflowgen.read import cicflowmeter, nprobe
from netflowgen.read.base import FlowFormat, FormatError, ReadOptions
from netflowgen.read.fields import first_reason
from netflowgen.read.source import DamagedInput, Source
from netflowgen.read.text import attach_raw
from netflowgen.read.validate import Checked, check
from netflowgen.schema import FLOW_COLUMNS, FLOW_SCHEMA

__all__ = ["FORMAT"]

_BATCH_ROWS = 1 << 17
_ROW = "__parquet_row"
_PROVENANCE = ("quality", "source_file", "source_row")
_CANONICAL = tuple(c for c in FLOW_COLUMNS if c not in _PROVENANCE)
_TIMES = ("ts_start", "ts_end")
_TEXTS = ("src_ip", "dst_ip", "label", "label_detail")
_NUMBERS = ("src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "tcp_flags")


def _sniff(head: bytes, name: str) -> bool:
    return head[:4] == b"PAR1"


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_null(t)


def _is_integer(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_null(t)  # a column of nulls may be written untyped


def _check_canonical_types(schema: pa.Schema, source_name: str) -> None:
    expected = (
        [(c, pa.types.is_timestamp, "a timestamp") for c in _TIMES]
        + [(c, _is_text, "text") for c in _TEXTS]
        + [(c, _is_integer, "an integer") for c in _NUMBERS]
    )
    wrong = [f"{c} is {schema.field(c).type}, not {what}" for c, ok, what in expected if not ok(schema.field(c).type)]
    if wrong:
        raise FormatError(
            f"{source_name}: Parquet file with the flow table's columns but wrong types: {'; '.join(wrong)}"
        )


def _utc(frame: pl.DataFrame, name: str) -> pl.Expr:
    """A timestamp column as Datetime(us, UTC); one without a zone is taken as UTC."""
    zone = frame.schema[name].time_zone  # type: ignore[attr-defined]
    value = pl.col(name).cast(pl.Datetime("us", zone))
    return value.dt.replace_time_zone("UTC") if zone is None else value.dt.convert_time_zone("UTC")


def _canonical_candidates(frame: pl.DataFrame) -> pl.DataFrame:
    numbers = {c: pl.col(c).cast(pl.Int64, strict=False) for c in _NUMBERS}
    too_large = [
        pl.when(pl.col(c).is_not_null() & value.is_null()).then(pl.format(f"{c} out of range: {{}}", pl.col(c)))
        for c, value in numbers.items()
    ]
    return frame.select(
        *[_utc(frame, c).alias(c) for c in _TIMES],
        *[pl.col(c).cast(pl.String).alias(c) for c in _TEXTS],
        *[value.alias(c) for c, value in numbers.items()],
        pl.col(_ROW).alias("source_row"),
        first_reason(*too_large).alias("reject"),
    )


#: Years 1 and 9999, in seconds from 1970: the times Polars can write as text.
_FIRST_S, _LAST_S = -62_135_596_800, 253_402_300_799


def _as_text(frame: pl.DataFrame, timezone: str, source_name: str) -> pl.DataFrame:
    """Every column as text, for the text field parsers; zoned times in ``timezone``."""
    exprs = []
    for name, dtype in frame.schema.items():
        if not (dtype.is_numeric() or isinstance(dtype, (pl.String, pl.Boolean, pl.Datetime, pl.Date, pl.Null,
                                                         pl.Categorical, pl.Enum))):
            # Found by benchmarks/fuzz.py: a damaged logical type (a duration where counts belong)
            # has no text form for the field parsers.
            raise FormatError(f"{source_name}: Parquet column {name!r} holds {dtype}, not a number, text or time")
        if name == _ROW:
            exprs.append(pl.col(name).alias("source_row"))
        elif isinstance(dtype, pl.Datetime):
            # Polars panics formatting a time beyond years 1-9999 (found by benchmarks/fuzz.py):
            # those become a text the time parser rejects, with the raw value in the reject.
            per_s = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[dtype.time_unit or "us"]
            raw = pl.col(name).cast(pl.Int64)
            shown = raw.is_between(max(_FIRST_S * per_s, -(2**63)), min(_LAST_S * per_s, 2**63 - 1))
            value = pl.when(shown).then(pl.col(name))
            if dtype.time_zone is not None:
                value = value.dt.convert_time_zone(timezone).dt.replace_time_zone(None)
            text = value.dt.to_string("%Y-%m-%d %H:%M:%S%.f")
            exprs.append(pl.when(shown | raw.is_null()).then(text)
                         .otherwise(pl.format("{} {} since 1970 (out of range)", raw, pl.lit(dtype.time_unit)))
                         .alias(name))
        else:
            exprs.append(pl.col(name).cast(pl.String).alias(name))
    return frame.select(exprs)


def _restore_provenance(checked: Checked, frame: pl.DataFrame) -> pl.DataFrame:
    """Flows keep the quality already set and the source_file/source_row they came with."""
    flows = checked.flows
    present = [c for c in _PROVENANCE if c in frame.columns]
    if not present or flows.height == 0:
        return flows
    rejected = checked.rejects["source_row"].cast(pl.Int64)
    kept = frame.filter(~pl.col(_ROW).is_in(rejected.implode())).select(present)  # same order as flows
    updates = []
    if "quality" in present:
        old = kept["quality"].cast(pl.UInt8, strict=False).fill_null(0)
        updates.append((flows["quality"] | old).alias("quality"))
    if "source_file" in present and "source_row" in present:
        old_file = kept["source_file"].cast(pl.String)
        old_row = kept["source_row"].cast(pl.UInt64, strict=False)
        both = old_file.is_not_null() & old_row.is_not_null()
        updates += [
            pl.when(both).then(old_file).otherwise(pl.col("source_file")).alias("source_file"),
            pl.when(both).then(old_row).otherwise(pl.col("source_row")).alias("source_row"),
        ]
    return flows.with_columns(updates).cast(FLOW_SCHEMA)  # type: ignore[arg-type]


@dataclass
class _Plan:
    """How to read one Parquet file: the columns, and a batch of them -> validated flows."""

    columns: list[str]
    to_checked: Callable[[pl.DataFrame], Checked]
    finish: Callable[[], None] = lambda: None


def _canonical_plan(schema: pa.Schema, source_name: str) -> _Plan:
    _check_canonical_types(schema, source_name)
    columns = [c for c in FLOW_COLUMNS if c in schema.names]

    def to_checked(frame: pl.DataFrame) -> Checked:
        checked = check(_canonical_candidates(frame), source_name)
        rejects = checked.rejects
        if rejects.height:
            stored = frame.select(*columns, _ROW).rename({"source_row": "stored_source_row"}, strict=False)
            rejects = attach_raw(rejects, _as_text(stored, "UTC", source_name), ",")
        return Checked(_restore_provenance(checked, frame), rejects)

    return _Plan(columns, to_checked)


def _layout_plan(
    columns: list[str], to_candidates: Callable[[pl.DataFrame], pl.DataFrame], source_name: str, timezone: str
) -> _Plan:
    """Read ``columns`` (in the file's order, so that a reject's raw text follows it) as text."""

    def to_checked(frame: pl.DataFrame) -> Checked:
        fields = _as_text(frame, timezone, source_name)
        checked = check(to_candidates(fields), source_name)
        return Checked(checked.flows, attach_raw(checked.rejects, fields, ","))

    return _Plan(columns, to_checked)


def _cicflowmeter_plan(layout: cicflowmeter.Layout, columns: list[str], source_name: str, timezone: str) -> _Plan:
    afternoon = 0

    def to_candidates(fields: pl.DataFrame) -> pl.DataFrame:
        nonlocal afternoon
        candidates = cicflowmeter.candidates(fields, layout, timezone)
        afternoon += int(candidates[cicflowmeter.PM_INFERRED].sum())
        return candidates

    plan = _layout_plan(columns, to_candidates, source_name, timezone)
    plan.finish = lambda: cicflowmeter.warn_pm_inferred(source_name, afternoon)
    return plan


def _plan(schema: pa.Schema, source_name: str, options: ReadOptions) -> _Plan:
    names = schema.names
    if all(c in names for c in _CANONICAL):
        return _canonical_plan(schema, source_name)
    nf = nprobe.find_layout(names, source_name)
    if nf is not None:
        used = set(nf.columns.values())
        return _layout_plan([n for n in names if n in used], lambda fields: nprobe.candidates(fields, nf),
                            source_name, options.timezone)
    cic = cicflowmeter.find_layout(names, source_name)
    if cic is not None:
        used = set(cic.columns.values())
        return _cicflowmeter_plan(cic, [n for n in names if n in used], source_name, options.timezone)
    shown = ", ".join(names[:30]) + (f", ... ({len(names)} columns)" if len(names) > 30 else "")
    missing = [c for c in _CANONICAL if c not in names]
    lacking = f"; missing {', '.join(missing)}" if len(missing) < len(_CANONICAL) else ""
    raise FormatError(
        f"{source_name}: Parquet columns are not a known flow layout. Found: {shown}. Needed: the "
        f"canonical flow table ({', '.join(_CANONICAL)}{lacking}), or the columns "
        "of a known layout: nProbe NF-v3 (IPV4_SRC_ADDR, L4_SRC_PORT, IPV4_DST_ADDR, L4_DST_PORT, "
        "PROTOCOL, IN_BYTES, IN_PKTS, OUT_BYTES, OUT_PKTS, FLOW_START_MILLISECONDS) or CICFlowMeter "
        "(Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp, Flow Duration, "
        "Total Fwd Packets, ...)"
    )


# What pyarrow raises for a damaged file: ArrowInvalid and ArrowNotImplementedError (both
# ArrowException) for impossible metadata or data, OSError for pages it cannot decode or
# decompress, UnicodeDecodeError for a column name that is not UTF-8 (found by benchmarks/fuzz.py).
_DAMAGE = (pa.ArrowException, OSError, UnicodeDecodeError)


def _check_time_zones(schema: pa.Schema, source_name: str) -> None:
    """Every time zone in the schema one Polars knows (found by benchmarks/fuzz.py: a damaged
    zone name made Polars raise a bare ComputeError, or panic when it was not UTF-8)."""
    for fld in schema:
        if not pa.types.is_timestamp(fld.type):
            continue
        try:
            zone = fld.type.tz
        except UnicodeDecodeError:
            raise FormatError(f"{source_name}: column {fld.name!r} has a time zone that is not UTF-8 text: "
                              "the file's schema is damaged") from None
        if zone is None:
            continue
        try:
            pl.Series([0]).cast(pl.Datetime("us", zone))
        except pl.exceptions.ComputeError:
            raise FormatError(f"{source_name}: column {fld.name!r} has an unknown time zone {zone!r}: "
                              "the file's schema is damaged, or it names a zone this system does not know") from None


def _read(source: Source, options: ReadOptions) -> Iterator[Checked]:
    with source.local_path() as path:
        try:
            pf = pq.ParquetFile(path)
        except _DAMAGE as e:
            raise FormatError(f"{source.name}: not a readable Parquet file: {e}") from e
        with pf:
            _check_time_zones(pf.schema_arrow, source.name)
            plan = _plan(pf.schema_arrow, source.name, options)
            row = 0
            batches = pf.iter_batches(batch_size=_BATCH_ROWS, columns=plan.columns)
            while True:
                try:
                    batch = next(batches, None)
                    if batch is None:
                        break
                    # Parquet does not check that strings are UTF-8; Polars assumes they are and
                    # panics on one that is not. Validated here, a bad string is damage like any other.
                    batch.validate(full=True)
                except _DAMAGE as e:
                    raise DamagedInput(f"{source.name}: damaged Parquet data after row {row:,} ({e}); "
                                       "the rows after it cannot be read or counted") from e
                # Without the schema's and fields' metadata, which Polars also panics on when a
                # key is not UTF-8 (and which the reader does not use).
                frame = pl.from_arrow(pa.RecordBatch.from_arrays(batch.columns, names=batch.schema.names))
                assert isinstance(frame, pl.DataFrame)
                frame = frame.with_columns(pl.int_range(row + 1, row + 1 + frame.height, dtype=pl.Int64).alias(_ROW))
                row += frame.height
                yield plan.to_checked(frame)
            if row != pf.metadata.num_rows:
                # Found by benchmarks/fuzz.py: damaged row-group metadata can hide rows without an
                # error; the footer's total says how many there are.
                raise DamagedInput(f"{source.name}: the file states {pf.metadata.num_rows:,} rows but {row:,} could be "
                                   "read: its metadata is damaged")
            plan.finish()


FORMAT = FlowFormat(
    name="parquet",
    description="Parquet: the canonical flow table, or NF-v3 (nProbe names) / CICFlowMeter columns",
    sniff=_sniff,
    read=_read,
    extensions=(".parquet",),
)
