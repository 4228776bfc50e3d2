"""``netflowgen ingest --engine spark``: many input files spread over Spark executors.

Each executor runs the single-machine :func:`~netflowgen.dataset.ingest.ingest` on one input file (its
readers, validation, filter and rejects) into a sub-dataset of the output's temporary folder.
The driver lists the files exactly as the single-machine ingest does (the same order, the same
names, the same files skipped), then merges: each day's rows concatenated in that order into
the day's part file (one task per day), the rejects in that order, the summaries summed and the
coverage computed from the merged rows as ``ingest`` computes it. The dataset has the same rows,
row counts and reject counts as the single-machine ingest of the same inputs; only the row
group layout of its Parquet files may differ.

Paths must be ones the driver and every executor see (local mode: any local path; a cluster:
a shared file system).
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow.parquet as pq

from netflowgen.artifacts import atomic_directory
from netflowgen.dataset.coverage import coverage_of_flows
from netflowgen.dataset.layout import REJECTS_NAME, part_files, part_path, partition
from netflowgen.dataset.ingest import IngestConfig, IngestSummary, InputSummary, _check_out_apart, _write_manifest, ingest
from netflowgen.read import FormatError
from netflowgen.read.source import list_sources
from netflowgen.read.validate import REJECT_SCHEMA
from netflowgen.schema import FLOW_SCHEMA, arrow_schema

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["ingest_spark", "settle"]


def settle(spark: SparkSession, timeout: float = 60.0) -> None:
    """Wait until the tasks of a failed job are gone. Spark fails a job at its first failed task
    and kills the others without waiting: their Python workers go on writing for up to
    ``spark.python.task.killTimeout`` after that, and a caller that removed its temporary output
    at once found it made again (a Spark ingest test left ``.OUT.tmp-PID`` behind)."""
    tracker = spark.sparkContext._jsc.sc().statusTracker()  # executors' running tasks: the JVM's tracker only
    deadline = time.monotonic() + timeout
    while any(e.numRunningTasks() for e in tracker.getExecutorInfos()) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(spark.sparkContext._jsc.sc().conf().getTimeAsSeconds("spark.python.task.killTimeout", "2s") + 0.5)



@dataclass(frozen=True)
class _Task:
    index: int
    path: str
    """The file, named as the single-machine ingest names it (its ``source_file``)."""
    in_directory: bool
    """Found inside a named directory: a file in no known format is skipped, not an error."""


def _plan(config: IngestConfig) -> list[tuple[str, Any]]:
    """The single-machine ingest's walk over the inputs: ("skip", (name, why)) and ("file",
    task) in its order. A zip file is one task (its members are read in order by that task)."""
    plan: list[tuple[str, Any]] = []
    seen: dict[tuple[str, str | None], str] = {}
    tasks: dict[str, _Task] = {}
    for path in config.inputs:
        in_directory = Path(path).is_dir()
        sources, not_files = list_sources(path)
        plan += [("skip", (name, why)) for name, why in not_files.items()]
        for source in sources:
            key = (os.path.realpath(source.path), source.member)
            if key in seen:
                plan.append(("skip", (source.name, f"the same file as {seen[key]}, which is read once")))
                continue
            seen[key] = source.name
            file = str(source.path)
            if file not in tasks:
                tasks[file] = _Task(len(tasks), file, in_directory)
                plan.append(("file", tasks[file]))
    return plan


def _run_one(task: _Task, config: IngestConfig, root: str, cwd: str) -> dict[str, Any]:
    """On an executor: the single-machine ingest of one file into ``root/NNNNN``."""
    # Inputs keep the names they were given (relative ones too: they are the rows'
    # source_file), so they are opened from the driver's working directory where it exists
    # here (local mode; a cluster needs absolute paths on a shared file system).
    if os.path.isdir(cwd):
        os.chdir(cwd)
    out = Path(root) / f"{task.index:06d}"
    try:
        summary = ingest(IngestConfig((Path(task.path),), out, config.read, config.strict, overwrite=True))
    except FormatError as e:
        if not task.in_directory:
            raise
        return {"skip": str(e).removeprefix(f"{task.path}: ")}
    return {"summary": summary.to_dict(timing=False), "dir": str(out)}


def _merge_day(day: str, parts: list[str], root: str) -> int:
    """On an executor: a day's rows of every sub-dataset, in input order, into one part file."""
    path = part_path(Path(root), day.removeprefix(partition("")), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = arrow_schema()
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd", write_statistics=True) as writer:
        for part in parts:
            table = pq.read_table(part, schema=schema)
            writer.write_table(table)
            rows += table.num_rows
    return rows


def ingest_spark(spark: SparkSession, config: IngestConfig) -> IngestSummary:
    """Ingest ``config.inputs`` on Spark: one task per input file, then one per day."""
    for path in config.inputs:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
    _check_out_apart(config.inputs, config.out)
    started = time.perf_counter()
    plan = _plan(config)
    tasks = [t for kind, t in plan if kind == "file"]
    with atomic_directory(config.out, config.overwrite) as tmp:
        work = tmp / ".files"
        work.mkdir()
        root, cwd = str(work.resolve()), os.getcwd()
        sc = spark.sparkContext
        try:
            results = (sc.parallelize(tasks, max(1, len(tasks))).map(lambda t: (t.index, _run_one(t, config, root, cwd))).collect()
                       if tasks else [])
        except BaseException:
            settle(spark)  # the other files' tasks stop writing into tmp before it is removed
            raise
        by_index = dict(results)
        summary = IngestSummary(out=str(config.out))
        reasons: Counter[str] = Counter()
        labels: Counter[str] = Counter()
        quality: Counter[str] = Counter()
        days: dict[str, list[str]] = {}
        firsts, lasts = [], []
        with open(tmp / REJECTS_NAME, "wb") as rejects:
            pl.DataFrame(schema=REJECT_SCHEMA).write_csv(rejects)
            for kind, item in plan:
                if kind == "skip":
                    summary.skipped_files[item[0]] = item[1]
                    continue
                r = by_index[item.index]
                if "skip" in r:
                    summary.skipped_files[item.path] = r["skip"]
                    continue
                s, sub = r["summary"], Path(r["dir"])
                for key in ("rows_read", "rows_written", "rows_rejected", "rows_filtered_out", "packets", "bytes"):
                    setattr(summary, key, getattr(summary, key) + s[key])
                reasons.update(s["rejects_by_reason"])
                labels.update(s["label_counts"])
                quality.update(s["quality_counts"])
                summary.inputs += [InputSummary(**i) for i in s["inputs"]]
                summary.skipped_files.update(s["skipped_files"])
                firsts += [s["first_start"]] if s["first_start"] else []
                lasts += [s["last_end"]] if s["last_end"] else []
                for part in part_files(sub):
                    days.setdefault(part.parent.name, []).append(str(part))
                with open(sub / REJECTS_NAME, "rb") as f:
                    f.readline()  # the header, written once above
                    shutil.copyfileobj(f, rejects)
        if days:
            out_root = str(tmp.resolve())
            sc.parallelize(sorted(days.items()), len(days)).map(lambda kv: _merge_day(kv[0], kv[1], out_root)).collect()
        shutil.rmtree(work)
        summary.partitions = sorted(days)
        summary.rejects_by_reason = dict(reasons.most_common())
        summary.label_counts = dict(sorted(labels.items(), key=lambda kv: (-kv[1], kv[0])))
        summary.quality_counts = dict(sorted(quality.items()))
        # ISO times of one zone (UTC) order as text.
        summary.first_start = min(firsts) if firsts else None
        summary.last_end = max(lasts) if lasts else None
        parts = part_files(tmp)
        coverage = coverage_of_flows(pl.scan_parquet(parts) if parts else pl.LazyFrame(schema=FLOW_SCHEMA))
        summary.observed_seconds = round(coverage.seconds, 3)
        _write_manifest(tmp, config, summary, coverage)
        summary.seconds = round(time.perf_counter() - started, 3)
    return summary
