"""Ingest: read inputs in any supported format into a canonical flow dataset on disk.

The dataset is a directory::

    OUT/
      date=2018-12-21/part-00000.parquet   canonical flows, partitioned by the UTC day of ts_start
      rejects.csv                          every row set aside: source_file, source_row, reason, raw
      netflowgen.json                      what this is: schema, inputs, counts, span, labels

It appears atomically: everything is written under a hidden temporary name beside ``OUT`` and
renamed into place only when complete, so an interrupted run (Ctrl-C, kill, crash) leaves no
partial dataset. The same inputs give the same dataset, byte for byte.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from netflowgen.artifacts import Summary, atomic_directory, writing
from netflowgen.dataset.coverage import Coverage, coverage_of_flows
from netflowgen.dataset.layout import REJECTS_NAME, PartitionWriter, part_files
from netflowgen.dataset.manifest import write_dataset_manifest
from netflowgen.read import ReadOptions, RejectedRow, iter_checked
from netflowgen.read.validate import REJECT_SCHEMA, reason_kind
from netflowgen.schema import FLOW_SCHEMA, Quality

__all__ = ["IngestConfig", "IngestSummary", "ingest"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestConfig:
    """What to ingest and where."""

    inputs: tuple[Path, ...]
    """Files or directories, in any supported format (compressed or not)."""
    out: Path
    """Dataset directory to create."""
    read: ReadOptions = field(default_factory=ReadOptions)
    """How to read the inputs (format override, mapping, time zone)."""
    strict: bool = False
    """Fail on the first rejected row instead of setting it aside."""
    overwrite: bool = False
    """Replace ``out`` if it exists (atomically: the old dataset stays until the new one is complete)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("nothing to ingest: give at least one input file or directory")


@dataclass
class InputSummary:
    source: str
    format: str
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0


@dataclass
class IngestSummary(Summary):
    """What an ingest did; also stored in the dataset's manifest."""

    out: str
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    rows_filtered_out: int = 0
    """Valid rows the read options' filter did not match (not written, not rejects)."""
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    packets: int = 0
    bytes: int = 0
    first_start: str | None = None
    last_end: str | None = None
    observed_seconds: float = 0.0
    """Time the inputs observed (their coverage: see netflowgen.dataset.coverage)."""
    label_counts: dict[str, int] = field(default_factory=dict)
    quality_counts: dict[str, int] = field(default_factory=dict)
    partitions: list[str] = field(default_factory=list)
    inputs: list[InputSummary] = field(default_factory=list)
    skipped_files: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0



def ingest(config: IngestConfig, progress: Callable[[int, int], None] | None = None) -> IngestSummary:
    """Read every input, validate, and write the dataset; returns what was done.

    ``progress(rows_read, rows_written)`` is called after every batch.
    """
    for path in config.inputs:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
    _check_out_apart(config.inputs, config.out)
    started = time.perf_counter()
    with atomic_directory(config.out, config.overwrite) as tmp:
        summary = _write_dataset(config, tmp, progress)
        summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _check_out_apart(inputs: tuple[Path, ...], out: Path) -> None:
    """Refuse an output that is, holds or sits inside an input: a rerun with ``--overwrite``
    would read the previous output as input (rows doubled each time), or replace an input."""
    target = Path(os.path.realpath(out))
    for path in inputs:
        real = Path(os.path.realpath(path))
        if target == real:
            raise ValueError(f"--out {out} is the input {path}; choose another --out")
        if real.is_dir() and target.is_relative_to(real):
            raise ValueError(f"--out {out} is inside the input directory {path}: its rows would be read as input "
                             "when ingesting again; choose an --out outside it")
        if real.is_relative_to(target):
            raise ValueError(f"--out {out} holds the input {path}; choose another --out")


def _write_dataset(config: IngestConfig, tmp: Path, progress: Callable[[int, int], None] | None) -> IngestSummary:
    summary = IngestSummary(out=str(config.out))
    writer = PartitionWriter(tmp)
    reasons: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    quality: Counter[str] = Counter()
    first: datetime | None = None
    last: datetime | None = None
    per_input: dict[str, InputSummary] = {}
    with open(tmp / REJECTS_NAME, "wb") as rejects_file:
        pl.DataFrame(schema=REJECT_SCHEMA).write_csv(rejects_file)
        try:
            skipped = summary.skipped_files
            for source, fmt, checked in iter_checked(
                config.inputs, config.read, on_skip=lambda src, why: skipped.__setitem__(src.name, why)
            ):
                flows, rejects = checked
                kept = config.read.select(flows)
                summary.rows_filtered_out += flows.height - kept.height
                flows = kept
                entry = per_input.setdefault(source.name, InputSummary(source.name, fmt.name))
                if rejects.height:
                    if config.strict:
                        row = rejects.row(0, named=True)
                        raise RejectedRow(f"{row['source_file']}, row {row['source_row']}: {row['reason']}")
                    with writing(tmp / REJECTS_NAME):
                        rejects.write_csv(rejects_file, include_header=False)
                    reasons.update(reason_kind(r) for r in rejects["reason"].to_list())
                writer.write(flows)
                entry.rows_written += flows.height
                entry.rows_rejected += rejects.height
                entry.rows_read += checked.flows.height + rejects.height
                if flows.height:
                    _tally(flows, labels, quality, summary)
                    lo, hi = flows["ts_start"].min(), flows["ts_end"].max()
                    first = lo if first is None or lo < first else first  # type: ignore[operator]
                    last = hi if last is None or hi > last else last  # type: ignore[operator]
                summary.rows_written += flows.height
                summary.rows_rejected += rejects.height
                summary.rows_read += checked.flows.height + rejects.height
                if progress:
                    progress(summary.rows_read, summary.rows_written)
        finally:
            summary.partitions = writer.close()
    summary.rejects_by_reason = dict(reasons.most_common())
    summary.label_counts = dict(sorted(labels.items(), key=lambda kv: (-kv[1], kv[0])))
    summary.quality_counts = dict(sorted(quality.items()))
    summary.first_start = first.isoformat() if first else None  # type: ignore[union-attr]
    summary.last_end = last.isoformat() if last else None  # type: ignore[union-attr]
    summary.inputs = list(per_input.values())
    parts = part_files(tmp)
    coverage = coverage_of_flows(pl.scan_parquet(parts) if parts else pl.LazyFrame(schema=FLOW_SCHEMA))
    summary.observed_seconds = round(coverage.seconds, 3)
    _write_manifest(tmp, config, summary, coverage)
    return summary


def _tally(flows: pl.DataFrame, labels: Counter[str], quality: Counter[str], summary: IngestSummary) -> None:
    totals = flows.select(
        (pl.col("fwd_packets").sum() + pl.col("rev_packets").sum()).alias("p"),
        (pl.col("fwd_bytes").sum() + pl.col("rev_bytes").sum()).alias("b"),
    ).row(0)
    summary.packets += int(totals[0])
    summary.bytes += int(totals[1])
    for label, n in flows.group_by("label").len().iter_rows():
        labels["(none)" if label is None else label] += n
    for flag in Quality:
        n = flows.filter((pl.col("quality") & int(flag)) != 0).height
        if n:
            quality[flag.name or str(int(flag))] += n


def _write_manifest(tmp: Path, config: IngestConfig, summary: IngestSummary, coverage: Coverage) -> None:
    write_dataset_manifest(
        tmp,
        read_options={k: (str(v) if v is not None else None) for k, v in asdict(config.read).items()},
        inputs_given=[str(p) for p in config.inputs],
        # Timing is left out so that the same inputs give the same dataset, byte for byte.
        summary=summary.to_dict(timing=False),
        coverage=coverage.to_dict(),
    )
