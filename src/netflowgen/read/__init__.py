"""Read flow records in every supported format into the canonical flow table.

>>> import netflowgen.read as r
>>> sorted(r.format_names())[:3]
['argus', 'cicflowmeter', 'csv']
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa

from netflowgen.read.base import FlowFormat, FormatError, ReadOptions
from netflowgen.read.source import ChangedInput, DamagedInput, Source, list_sources
from netflowgen.read.validate import Checked, empty_rejects
from netflowgen.schema import FLOW_SCHEMA, empty_flows

__all__ = [
    "ChangedInput",
    "DamagedInput",
    "FlowFormat",
    "FormatError",
    "ReadOptions",
    "RejectedRow",
    "Source",
    "detect_format",
    "format_names",
    "get_format",
    "iter_checked",
    "iter_record_batches",
    "read_flow_table",
    "read_flows",
]

log = logging.getLogger(__name__)

# Sniffing order matters: the most specific signatures first, the user-mapped CSV never sniffed.
_FORMAT_MODULES = (
    "parquet",
    "pcap",
    "nfcapd",
    "zeek",
    "argus",
    "nfdump_csv",
    "nprobe",
    "cicflowmeter",
    "mapped_csv",
)


class RejectedRow(ValueError):
    """Raised in strict mode for the first row that validation sets aside."""


def _formats() -> dict[str, FlowFormat]:
    formats: dict[str, FlowFormat] = {}
    for module in _FORMAT_MODULES:
        # Every listed reader must import: skipping one that fails would make its format vanish
        # from `formats` and from sniffing without a word.
        mod = importlib.import_module(f"netflowgen.read.{module}")
        for fmt in getattr(mod, "FORMATS", (mod.FORMAT,)):
            formats[fmt.name] = fmt
    return formats


def format_names() -> list[str]:
    """Names accepted by ``--format``."""
    return list(_formats())


def get_format(name: str) -> FlowFormat:
    formats = _formats()
    if name not in formats:
        raise ValueError(f"unknown format {name!r}; known formats: {', '.join(formats)}")
    return formats[name]


def detect_format(source: Source) -> FlowFormat:
    """The format of a source, recognised from its content."""
    head = source.head()
    if not head.strip():
        raise FormatError(f"{source.name}: file is empty")
    for fmt in _formats().values():
        if fmt.sniff(head, source.inner_name):
            return fmt
    first = head.split(b"\n", 1)[0][:120].decode("utf-8", "replace")
    raise FormatError(
        f"{source.name}: cannot recognise the flow format (first line: {first!r}); "
        f"name it with --format, one of: {', '.join(format_names())}, "
        "or describe the columns in a mapping file (--mapping)"
    )


def _as_paths(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def _warn_skip(source: Source, reason: str) -> None:
    log.warning("skipped %s: %s", source.name, reason)


def iter_checked(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    options: ReadOptions | None = None,
    on_skip: Callable[[Source, str], None] = _warn_skip,
) -> Iterator[tuple[Source, FlowFormat, Checked]]:
    """Stream validated batches (flows and rejects) from every source behind ``paths``.

    The format of each file is detected from its content unless ``options.format`` names it. A
    ``options.mapping`` applies to the CSV files that no built-in reader recognises (with
    ``format="csv"``, to every file). A file named directly must be readable; inside a directory,
    files in no known format (READMEs, licences), empty files, files the mapping does not fit and
    dangling symbolic links are passed to ``on_skip`` with the reason and skipped. A file reached
    twice (named twice, or named and inside a named directory, or through a link) is read once,
    and the repeat passed to ``on_skip``. Every file read yields at least one batch, empty for a
    file with a header and no rows, so that it is accounted for. A damaged compressed file raises
    :class:`~netflowgen.read.source.DamagedInput`, in a directory too; a file whose size changes
    while it is read (a log still being written) raises :class:`~netflowgen.read.source.ChangedInput`.
    """
    options = options or ReadOptions()
    if options.mapping is not None and options.format not in (None, "csv"):
        raise ValueError("--mapping describes a CSV layout; it cannot be combined with --format " + str(options.format))
    read: dict[tuple[str, str | None], str] = {}  # (real path, zip member) -> name it was read as
    for path in _as_paths(paths):
        in_directory = Path(path).is_dir()
        sources, not_files = list_sources(path)
        for name, why in not_files.items():
            on_skip(Source(Path(name), name), why)
        for source in sources:
            key = (os.path.realpath(source.path), source.member)
            if key in read:
                on_skip(source, f"the same file as {read[key]}, which is read once")
                continue
            read[key] = source.name
            try:
                fmt = _format_of(source, options)
                batches = fmt.read(source, options)
                first = next(batches, None)  # a file that is not in its format fails here, as a whole
            except FormatError as e:
                if not in_directory:
                    raise
                on_skip(source, str(e).removeprefix(f"{source.name}: "))
                continue
            log.info("%s: reading as %s", source.name, fmt.name)
            yield source, fmt, first if first is not None else Checked(empty_flows(), empty_rejects())
            for checked in batches:
                yield source, fmt, checked


def _format_of(source: Source, options: ReadOptions) -> FlowFormat:
    if options.format:
        return get_format(options.format)
    try:
        return detect_format(source)
    except FormatError:
        if options.mapping is None or not source.head(1).strip():
            raise
        return get_format("csv")


def iter_record_batches(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    options: ReadOptions | None = None,
    *,
    strict: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Canonical flows as Arrow record batches (those ``options.filter`` matches). Rejected rows are
    logged, or raise if ``strict``."""
    for batch in _flow_frames(paths, options, strict):
        yield from batch.to_arrow().to_batches()


def _flow_frames(paths, options, strict: bool) -> Iterator[pl.DataFrame]:  # type: ignore[no-untyped-def]
    rejected = 0
    for _source, _fmt, checked in iter_checked(paths, options):
        if checked.rejects.height:
            if strict:
                row = checked.rejects.row(0, named=True)
                raise RejectedRow(f"{row['source_file']}, row {row['source_row']}: {row['reason']}")
            rejected += checked.rejects.height
        flows = options.select(checked.flows) if options is not None else checked.flows
        if flows.height:
            yield flows
    if rejected:
        log.warning("%d rows were rejected; `netflowgen ingest` writes them to a rejects file", rejected)


def read_flows(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    format: str | None = None,
    *,
    mapping: str | os.PathLike[str] | None = None,
    strict: bool = False,
    timezone: str = "UTC",
) -> pl.DataFrame:
    """Read inputs into one canonical flow DataFrame (the format detected unless given).

    ``timezone`` is the zone of local-time timestamps in formats that carry none (Argus,
    CICFlowMeter). Use :func:`iter_record_batches` or ``netflowgen ingest`` for inputs larger
    than memory.
    """
    options = ReadOptions(format=format, mapping=Path(mapping) if mapping else None, timezone=timezone)
    return read_flow_table(paths, options, strict=strict)


def read_flow_table(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    options: ReadOptions | None = None,
    *,
    strict: bool = False,
) -> pl.DataFrame:
    """:func:`read_flows` with every reading option (format, mapping, time zone, block size)."""
    frames = list(_flow_frames(paths, options, strict))
    if not frames:
        return empty_flows()
    return pl.concat(frames, how="vertical").cast(FLOW_SCHEMA)  # type: ignore[arg-type]
