"""Any delimited text file whose columns a small TOML mapping file describes (format ``csv``).

This format is never recognised from content: naming a mapping (``--mapping FILE``,
``read_flows(path, mapping=FILE)`` or ``ReadOptions(mapping=FILE)``) selects it. A mapping given as
a bare name, without a path separator or suffix (``mapping="westermo"``), is one of the mappings
shipped in ``netflowgen/mappings/`` (:func:`shipped_mappings` lists them).

A mapping file (every key but ``[columns]`` is optional)::

    description = "what the layout is"
    delimiter = ","       # one character; default ","
    header = true         # the first line (after skip_lines) names the fields; default true
    names = ["start", "end", "src", "dst", "proto"]  # field names, only for header = false
    skip_lines = 0        # lines before the header (or the data); default 0
    timezone = "UTC"      # zone of local-time text timestamps; default: ReadOptions.timezone

    [columns]             # canonical column = source field
    ts_start = { field = "start", type = "epoch", unit = "s" }
    ts_end = { field = "end", type = "epoch", unit = "s" }
    src_ip = "sIPs"
    dst_ip = "rIPs"
    proto = { field = "protocol", values = { "IPV4-TCP" = 6, "IPV4-UDP" = 17, "ARP" = "arp" } }
    fwd_packets = "sPackets"
    fwd_bytes = "sBytesSum"
    rev_packets = "rPackets"
    rev_bytes = "rBytesSum"
    label = "IT_M_Label"

A column is a field name, or a table with ``field`` and the options of that column:

* ``ts_start``, ``ts_end``: ``type = "epoch"`` (default) with ``unit`` ``s`` (default), ``ms``, ``us``
  or ``ns``; or ``type = "datetime"`` with ``format`` (chrono, default ``%Y-%m-%d %H:%M:%S%.f``) and
  an optional ``timezone`` for this column. Instead of ``ts_end``, ``duration = { field = "dur",
  unit = "s" }`` gives the end as start + duration.
* ``proto``: numbers or names (``tcp``, ``udp``, ``ipv6-icmp``, any case). ``values`` maps source
  values to a number or a name first (a name such as ``"arp"`` marks a non-IP record);
  ``pattern`` is a regular expression whose first group holds the IP protocol, and a value that
  neither ``values`` nor ``pattern`` matches is rejected as not an IP flow.
* ``tcp_flags``: ``type = "int"`` (default; decimal or ``0x`` hex) or ``type = "letters"`` (``FSRPAUEC``).
* ports and counters: integers, decimal or ``0x`` hex.
* ``src_ip``, ``dst_ip``, ``label``, ``label_detail``: text as written (empty, and ``-`` for labels,
  is none). An address field holding several addresses is rejected with that reason.

``ts_start``, ``src_ip``, ``dst_ip`` and ``proto`` are required. Unmapped ports, flags and labels are
null; unmapped ``rev_packets``/``rev_bytes`` are 0 (unidirectional records); unmapped
``fwd_packets``/``fwd_bytes`` are unset (stored as 0, flagged ``MISSING_COUNTERS``); with neither
``ts_end`` nor ``duration`` the end is the start (flagged ``NO_END``). A column's ``timezone`` wins
over the mapping's, which wins over ``ReadOptions.timezone``. Fields are not quoted; a field
wrapped in double quotes loses them (a delimiter inside quotes is not supported).

A mistake in the mapping (unknown key, wrong value, missing required column) raises ValueError
naming the file and the key; a mapped field that the file's header lacks raises FormatError
naming it and listing the header's fields.

>>> load_mapping("westermo").columns["label"].field
'IT_M_Label'
"""

from __future__ import annotations

import importlib.resources
import os
import tomllib
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from netflowgen.read.text import check_batch, read_delimited, unique_names
from netflowgen.read.validate import Checked

__all__ = ["FORMAT", "ColumnSpec", "CsvMapping", "load_mapping", "resolve_mapping", "shipped_mappings"]

DEFAULT_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S%.f"
_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}

#: Canonical column (plus ``duration``) -> the options its table may hold.
_COLUMN_OPTIONS: dict[str, frozenset[str]] = {
    **{c: frozenset({"field", "type", "unit", "format", "timezone"}) for c in ("ts_start", "ts_end")},
    "duration": frozenset({"field", "unit"}),
    "proto": frozenset({"field", "values", "pattern"}),
    "tcp_flags": frozenset({"field", "type"}),
    **{c: frozenset({"field"}) for c in (
        "src_ip", "dst_ip", "src_port", "dst_port", "fwd_packets", "fwd_bytes", "rev_packets",
        "rev_bytes", "label", "label_detail",
    )},
}
_TYPES = {"ts_start": ("epoch", "datetime"), "ts_end": ("epoch", "datetime"), "tcp_flags": ("int", "letters")}
_REQUIRED = ("ts_start", "src_ip", "dst_ip", "proto")
_NUMBERS = ("src_port", "dst_port", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes")
_TOP_KEYS = frozenset({"description", "delimiter", "header", "names", "skip_lines", "timezone", "columns"})


@dataclass(frozen=True)
class ColumnSpec:
    """Where one canonical column comes from and how its text reads."""

    field: str
    """The source field (a header name, or one of ``names``)."""
    type: str | None = None
    """``epoch``/``datetime`` for timestamps, ``int``/``letters`` for tcp_flags; None: the default."""
    unit: str = "s"
    """Unit of epoch timestamps and durations: s, ms, us or ns."""
    format: str = DEFAULT_DATETIME_FORMAT
    """chrono format of ``datetime`` timestamps."""
    timezone: str | None = None
    """Zone of this column's local-time text; None: the mapping's."""
    values: tuple[tuple[str, str], ...] = ()
    """Protocol: source value -> number or name, tried before anything else."""
    pattern: str | None = None
    """Protocol: regular expression whose first group is the IP protocol."""


@dataclass(frozen=True)
class CsvMapping:
    """A parsed mapping file (see the module docstring for the TOML it comes from)."""

    path: Path
    columns: dict[str, ColumnSpec]
    delimiter: str = ","
    header: bool = True
    names: tuple[str, ...] = ()
    skip_lines: int = 0
    timezone: str | None = None
    description: str = ""


def _shipped_dir() -> Path:
    return Path(str(importlib.resources.files("netflowgen") / "mappings"))


def shipped_mappings() -> list[str]:
    """Names of the mappings that come with netflowgen.

    >>> "westermo" in shipped_mappings()
    True
    """
    return sorted(p.stem for p in _shipped_dir().glob("*.toml"))


def resolve_mapping(mapping: str | os.PathLike[str]) -> Path:
    """The file behind a mapping argument: a shipped mapping for a bare name, else the path."""
    text = os.fspath(mapping)
    path = Path(text)
    bare = "/" not in text and os.sep not in text and not path.suffix
    if bare:
        shipped = _shipped_dir() / f"{text}.toml"
        if shipped.is_file():
            return shipped
        if not path.is_file():
            raise ValueError(
                f"no mapping named {text!r}: shipped mappings are {', '.join(shipped_mappings())}; "
                "otherwise give the path of a TOML mapping file"
            )
    if not path.is_file():
        raise ValueError(f"mapping file {path} does not exist")
    return path


def _fail(path: Path, message: str) -> ValueError:
    return ValueError(f"mapping {path}: {message}")


def _check_str(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(path, f"{key} must be a non-empty string, not {value!r}")
    return value


def _check_zone(path: Path, key: str, value: Any) -> str:
    zone = _check_str(path, key, value)
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise _fail(path, f"{key} = {zone!r} is not a known time zone (e.g. UTC, Europe/Prague)") from e
    return zone


def _proto_values(path: Path, key: str, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise _fail(path, f"{key} must be a table of source value = protocol number or name")
    out = []
    for raw, proto in value.items():
        if isinstance(proto, bool) or not isinstance(proto, (int, str)):
            raise _fail(path, f"{key}.{raw} must be a protocol number or name, not {proto!r}")
        out.append((raw, str(proto)))
    return tuple(out)


def _proto_pattern(path: Path, key: str, value: Any) -> str:
    pattern = _check_str(path, key, value)
    try:
        groups = pl.select(pl.lit("").str.extract_groups(pattern)).to_series().struct.fields
    except pl.exceptions.PolarsError as e:
        raise _fail(path, f"{key} is not a valid regular expression: {e}") from e
    if not groups:
        raise _fail(path, f"{key} needs a group, (...), around the protocol")
    return pattern


def _column(path: Path, name: str, value: Any) -> ColumnSpec:
    """One ``[columns]`` entry -> ColumnSpec, or ValueError naming the key."""
    key = f"columns.{name}"
    if name not in _COLUMN_OPTIONS:
        raise _fail(path, f"unknown column {key!r}; columns are {', '.join(_COLUMN_OPTIONS)}")
    if isinstance(value, str):
        return ColumnSpec(field=_check_str(path, key, value))
    if not isinstance(value, dict):
        raise _fail(path, f"{key} must be a field name or a table with field = ...")
    unknown = sorted(set(value) - _COLUMN_OPTIONS[name])
    if unknown:
        raise _fail(path, f"unknown key {key}.{unknown[0]}; {key} takes {', '.join(sorted(_COLUMN_OPTIONS[name]))}")
    if "field" not in value:
        raise _fail(path, f"{key} needs field = the source field name")
    spec: dict[str, Any] = {"field": _check_str(path, f"{key}.field", value["field"])}
    if "type" in value:
        if value["type"] not in _TYPES.get(name, ()):
            raise _fail(path, f"{key}.type must be one of {', '.join(_TYPES[name])}, not {value['type']!r}")
        spec["type"] = value["type"]
    if "unit" in value:
        if value["unit"] not in _UNIT_SECONDS:
            raise _fail(path, f"{key}.unit must be one of {', '.join(_UNIT_SECONDS)}, not {value['unit']!r}")
        spec["unit"] = value["unit"]
    if "format" in value:
        spec["format"] = _check_str(path, f"{key}.format", value["format"])
    if "timezone" in value:
        spec["timezone"] = _check_zone(path, f"{key}.timezone", value["timezone"])
    if "values" in value:
        spec["values"] = _proto_values(path, f"{key}.values", value["values"])
    if "pattern" in value:
        spec["pattern"] = _proto_pattern(path, f"{key}.pattern", value["pattern"])
    datetime_only = sorted({"format", "timezone"} & set(value))
    if name in ("ts_start", "ts_end") and spec.get("type") != "datetime" and datetime_only:
        raise _fail(path, f"{key}.{datetime_only[0]} applies to type = 'datetime' only")
    if spec.get("type") == "datetime" and "unit" in value:
        raise _fail(path, f"{key}.unit applies to type = 'epoch' only")
    return ColumnSpec(**spec)


def _parse_mapping(path: Path, doc: dict[str, Any]) -> CsvMapping:
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise _fail(path, f"unknown key {unknown[0]!r}; keys are {', '.join(sorted(_TOP_KEYS))}")
    if not isinstance(doc.get("columns"), dict):
        raise _fail(path, "needs a [columns] table (canonical column = source field)")
    columns = {name: _column(path, name, value) for name, value in doc["columns"].items()}
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise _fail(path, f"[columns] must map {', '.join(missing)}")
    if "ts_end" in columns and "duration" in columns:
        raise _fail(path, "map either columns.ts_end or columns.duration, not both")
    delimiter = doc.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
        raise _fail(path, f"delimiter must be one character (not a quote or line break), not {delimiter!r}")
    header = doc.get("header", True)
    if not isinstance(header, bool):
        raise _fail(path, f"header must be true or false, not {header!r}")
    names = doc.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise _fail(path, "names must be a list of field names")
    if header and names:
        raise _fail(path, "names is for files without a header line (header = false)")
    if not header and not names:
        raise _fail(path, "header = false needs names = [...], the fields in file order")
    skip = doc.get("skip_lines", 0)
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise _fail(path, f"skip_lines must be a whole number >= 0, not {skip!r}")
    timezone = _check_zone(path, "timezone", doc["timezone"]) if "timezone" in doc else None
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise _fail(path, "description must be a string")
    return CsvMapping(path, columns, delimiter, header, tuple(names), skip, timezone, description)


def load_mapping(mapping: str | os.PathLike[str]) -> CsvMapping:
    """Read and check a mapping file (or a shipped mapping, by bare name)."""
    path = resolve_mapping(mapping)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise _fail(path, f"not valid TOML: {e}") from e
    return _parse_mapping(path, doc)


# --- reading -------------------------------------------------------------------------------------


def _field_names(source: Source, mapping: CsvMapping) -> list[str]:
    """The file's field names: its header line, or the mapping's ``names``."""
    if not mapping.header:
        return list(mapping.names)
    with source.open() as f:
        for _ in range(mapping.skip_lines):
            f.readline()
        line = f.readline(1 << 20).decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")
    if not line.strip():
        raise FormatError(f"{source.name}: no header line (line {mapping.skip_lines + 1} is empty)")
    names = [n.strip().strip('"') or f"_unnamed{i}" for i, n in enumerate(line.split(mapping.delimiter))]
    check_unique_names(source.name, names)
    return names


def _check_fields(source: Source, mapping: CsvMapping, names: list[str]) -> None:
    missing = [f"{col} = {spec.field!r}" for col, spec in mapping.columns.items() if spec.field not in names]
    if missing:
        raise FormatError(
            f"{source.name}: mapping {mapping.path} names fields the file lacks ({'; '.join(missing)}); "
            f"the file's fields are: {', '.join(names)}"
        )


def _text(spec: ColumnSpec) -> pl.Expr:
    """The field as written, once :func:`_clean` has stripped it."""
    return pl.col(spec.field)


def _clean(fields: pl.DataFrame, mapping: CsvMapping) -> pl.DataFrame:
    """Mapped fields stripped of blanks and of double quotes wrapped around them.

    Done once up front: the parsers refer to a field many times, and an expression repeated
    inside another is evaluated again each time.
    """
    used = sorted({spec.field for spec in mapping.columns.values()})
    return fields.with_columns(pl.col(f).str.strip_chars().str.replace(r'^"(.*)"$', "${1}") for f in used)


def _time(spec: ColumnSpec, tz: str) -> Parsed:
    if spec.type == "datetime":
        return parse_datetime(_text(spec), spec.field, spec.format, spec.timezone or tz)
    return parse_epoch(_text(spec), spec.field, _UNIT_SECONDS[spec.unit])


def _proto_text(spec: ColumnSpec) -> tuple[pl.Expr, pl.Expr]:
    """The protocol as :func:`parse_proto` reads it (after ``values`` and ``pattern``), and the
    reason for values that ``pattern`` marks as not IP."""
    raw = unset(_text(spec))
    table = dict(spec.values)
    by_value = raw.replace_strict(table, default=None, return_dtype=pl.String) if table else pl.lit(None, pl.String)
    if not spec.pattern:
        return pl.coalesce(by_value, raw), pl.lit(None, pl.String)
    text = pl.coalesce(by_value, raw.str.extract(spec.pattern, 1))
    not_ip = pl.when(raw.is_not_null() & text.is_null()).then(pl.format("not an IP flow: protocol {}", raw))
    return text, not_ip


def _address(spec: ColumnSpec, column: str) -> Parsed:
    value = unset(_text(spec), ("",))
    # Tools that group packets by MAC join the addresses they saw: "a b", "a;b", "a/b" (not "a/24").
    several = pl.when(value.str.contains(r"[\s;|,]|/[^/]*[.:]")).then(
        pl.format(f"{column} holds several addresses ({spec.field}): {{}}", value.str.slice(0, 80))
    )
    return Parsed(value, several)



def _parsers(mapping: CsvMapping, tz: str) -> dict[str, Parsed]:
    """A parser for every mapped column (``proto`` reads the ``__nfg_proto_text`` column)."""
    cols = mapping.columns
    spec = cols["proto"]
    _, not_ip = _proto_text(spec)
    proto = parse_proto(pl.col("__nfg_proto_text"), spec.field)
    parsers = {
        "proto": Parsed(proto.value, first_reason(not_ip, proto.reason)),
        "ts_start": _time(cols["ts_start"], tz),
    }
    if "ts_end" in cols:
        parsers["ts_end"] = _time(cols["ts_end"], tz)
    if "duration" in cols:
        parsers["duration"] = parse_float(_text(cols["duration"]), cols["duration"].field)
    parsers |= {c: _address(cols[c], c) for c in ("src_ip", "dst_ip")}
    parsers |= {c: parse_int(_text(cols[c]), cols[c].field) for c in _NUMBERS if c in cols}
    if "tcp_flags" in cols:
        spec = cols["tcp_flags"]
        letters = spec.type == "letters"
        parsers["tcp_flags"] = parse_tcp_flag_letters(_text(spec)) if letters else parse_int(_text(spec), spec.field)
    return parsers


def _candidates(fields: pl.DataFrame, mapping: CsvMapping, tz: str) -> pl.DataFrame:
    """Mapped fields (String columns) -> candidate canonical rows."""
    cols = mapping.columns
    fields = _clean(fields, mapping)
    fields = fields.with_columns(_proto_text(cols["proto"])[0].alias("__nfg_proto_text"))
    fields, parsed = materialize(fields, _parsers(mapping, mapping.timezone or tz))
    start = parsed["ts_start"].value
    if "ts_end" in parsed:
        end = parsed["ts_end"].value
    elif "duration" in parsed:
        seconds = parsed["duration"].value * _UNIT_SECONDS[cols["duration"].unit]
        end = start + pl.duration(microseconds=(seconds * 1_000_000).round(0).cast(pl.Int64, strict=False))
    else:
        end = pl.lit(None, pl.Datetime("us", "UTC"))
    # Unmapped reverse counters mean unidirectional records (0); other unmapped numbers are unset.
    numbers = {
        c: parsed[c].value if c in parsed else pl.lit(0 if c.startswith("rev_") else None, pl.Int64)
        for c in (*_NUMBERS, "tcp_flags")
    }
    labels = {c: unset(_text(cols[c])) if c in cols else pl.lit(None, pl.String) for c in ("label", "label_detail")}
    return fields.select(
        start.alias("ts_start"),
        end.alias("ts_end"),
        parsed["src_ip"].value.alias("src_ip"),
        parsed["dst_ip"].value.alias("dst_ip"),
        parsed["proto"].value.alias("proto"),
        *[value.alias(c) for c, value in numbers.items()],
        *[value.alias(c) for c, value in labels.items()],
        pl.col("source_row"),
        # The protocol first: a non-IP record is rejected as such, not for its missing address.
        first_reason(*[p.reason for p in parsed.values()]).alias("reject"),
    )


def _read(source: Source, options: ReadOptions) -> Iterator[Checked]:
    if options.mapping is None:
        raise ValueError(
            "format csv reads a file through a column mapping: pass mapping= (--mapping) with a TOML "
            f"file or a shipped name ({', '.join(shipped_mappings())})"
        )
    mapping = load_mapping(options.mapping)
    names = _field_names(source, mapping)
    _check_fields(source, mapping, names)
    skip = mapping.skip_lines + (1 if mapping.header else 0)
    used = sorted({spec.field for spec in mapping.columns.values()} & set(unique_names(names)))
    with source.open() as stream:
        for batch in read_delimited(
            stream, source.name, delimiter=mapping.delimiter, columns=names, skip_lines=skip,
            comment_prefix=None, block_bytes=options.block_bytes, include=used,
        ):
            yield check_batch(_candidates(batch.fields, mapping, options.timezone), batch, source.name)


def _sniff(head: bytes, name: str) -> bool:
    """Never: a mapped CSV is read only when a mapping is named."""
    return False


FORMAT = FlowFormat(
    name="csv",
    description="any CSV described by a TOML column mapping (--mapping FILE or a shipped name, e.g. westermo)",
    sniff=_sniff,
    read=_read,
)
