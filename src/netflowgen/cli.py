"""The ``netflowgen`` command. Thin: each command parses options, calls the library, prints."""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import polars as pl
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from netflowgen.dataset.coverage import dataset_coverage
from netflowgen.ingest import IngestConfig, IngestSummary, ingest, scan_flows
from netflowgen.inspect import Inspection, inspect_path
from netflowgen.read import FormatError, ReadOptions, RejectedRow, get_format, format_names
from netflowgen.read.source import consumed_bytes
from netflowgen.series import NodeMode, SeriesConfig, parse_step
from netflowgen.series.build import estimate_rows, iter_series_parts
from netflowgen.series.nodes import DEFAULT_LOCAL_PREFIXES
from netflowgen.series import feature_names
from netflowgen.series.write import read_series, scan_series, write_series_parts
from netflowgen.tokenize import BinRule, Tokenizer, TokenizerConfig, fit_part
from netflowgen.tokenize.shards import write_tokens

app = typer.Typer(
    help="Pre-train a generative model on network flow records and detect attacks with few labels.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()

#: Flows and (estimated) series rows per node partition of `netflowgen series`: they bound its
#: memory (about 0.5 KB per series row at the peak, so some 2 GB).
FLOWS_PER_PART = 10_000_000
ROWS_PER_PART = 4_000_000

FormatOpt = Annotated[Optional[str], typer.Option("--format", "-f", help="Input format instead of detecting it (see `netflowgen formats`).")]
MappingOpt = Annotated[Optional[Path], typer.Option("--mapping", "-m", help="TOML column mapping for other CSV layouts, or a shipped mapping name (e.g. westermo).")]
TimezoneOpt = Annotated[str, typer.Option("--timezone", "--tz", help="Time zone of local-time timestamps (Argus, CICFlowMeter, nfdump csv), e.g. Europe/Prague.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the figures as JSON on stdout.")]
FilterOpt = Annotated[Optional[str], typer.Option("--filter", help="Only flows matching this nfdump filter, e.g. 'proto tcp and dst port 80' (see README: filters).")]


class Engine(str, enum.Enum):
    """What runs a command: this machine (Polars) or a Spark cluster."""

    POLARS = "polars"
    SPARK = "spark"


EngineOpt = Annotated[Engine, typer.Option(help="polars: this machine; spark: PySpark (pip install 'netflowgen[spark]').")]
MasterOpt = Annotated[Optional[str], typer.Option(help="Spark master for --engine spark: local[N], spark://HOST:PORT, yarn (default: spark-submit's, else local[*]).")]


def _read_options(fmt: str | None, mapping: Path | None, timezone: str, flow_filter: str | None = None) -> ReadOptions:
    if fmt is not None:
        get_format(fmt)  # unknown names fail here, with the list of known ones
    return ReadOptions(format=fmt, mapping=mapping, timezone=timezone, filter=flow_filter)


def _terminate_as_interrupt() -> None:
    # `kill` must clean up like Ctrl-C does: no half-written dataset is left behind.
    def handler(signum, frame):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM, for the long-running servers: a KeyboardInterrupt would
    land in whatever code the main thread runs, and Polars raises a pending one in the worker
    thread that happens to be collecting, killing the decoder mid-batch."""
    stop = threading.Event()

    def handler(signum, frame):  # type: ignore[no-untyped-def]
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    if code == 130:
        # Interrupted, and the command has already cleaned up (its temporary output is gone).
        # Exit now: a Polars query cut short can still be unwinding in worker threads, and one
        # of them re-raising the interrupt during interpreter shutdown turned exit 130 into a
        # death by SIGINT (seen under load).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return typer.Exit(code)


def _input_bytes(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        elif p.exists():
            total += p.stat().st_size
    return total


def _run_ingest(config: IngestConfig, quiet: bool) -> IngestSummary:
    total = max(_input_bytes(list(config.inputs)), 1)
    start_bytes = consumed_bytes()
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:>12,} rows  {task.fields[rate]:>10,.0f} rows/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    ) as progress:
        task = progress.add_task("ingest", total=total, rows=0, rate=0.0)

        def update(rows_read: int, rows_written: int) -> None:
            elapsed = max(time.perf_counter() - started, 1e-9)
            done = min(consumed_bytes() - start_bytes, total)
            progress.update(task, completed=done, rows=rows_read, rate=rows_read / elapsed)

        summary = ingest(config, progress=update)
        progress.update(task, completed=total)
    return summary


@app.command("ingest")
def ingest_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Flow files or directories (any supported format, compressed or not).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to create.")],
    fmt: FormatOpt = None,
    mapping: MappingOpt = None,
    timezone: TimezoneOpt = "UTC",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first bad row instead of setting it aside.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    flow_filter: FilterOpt = None,
    engine: EngineOpt = Engine.POLARS,
    master: MasterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Read flow records into a canonical Parquet dataset (by day), with a rejects file."""
    _terminate_as_interrupt()
    try:
        config = IngestConfig(tuple(inputs), out_dir, _read_options(fmt, mapping, timezone, flow_filter), strict, overwrite)
        if engine is Engine.SPARK:
            summary = _ingest_spark(config, master)
        elif master is not None:
            raise ValueError("--master applies to --engine spark")
        else:
            summary = _run_ingest(config, quiet or as_json)
    except KeyboardInterrupt:
        raise _fail(f"interrupted; nothing was written to {out_dir}", 130) from None
    except (FormatError, RejectedRow, ValueError, FileExistsError, FileNotFoundError, OSError, RuntimeError) as e:
        raise _fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
    else:
        _print_ingest(summary)


def _ingest_spark(config: IngestConfig, master: str | None) -> IngestSummary:
    from netflowgen.ingest_spark import ingest_spark
    from netflowgen.series.spark import SparkUnavailable, job_error, spark_session

    spark = spark_session(master)
    try:
        return ingest_spark(spark, config)
    except (SparkUnavailable, ValueError, FileExistsError, FileNotFoundError, KeyboardInterrupt):
        raise
    except Exception as e:  # a failed Spark job: py4j and Spark raise many kinds
        raise RuntimeError(f"the Spark job failed and nothing was written to {config.out}: {job_error(e)}") from e


def _print_ingest(s: IngestSummary) -> None:
    t = Table(title=f"ingested into {s.out}", show_header=False, title_justify="left")
    t.add_row("rows read", f"{s.rows_read:,}")
    t.add_row("rows written", f"{s.rows_written:,}")
    if s.rows_filtered_out:
        t.add_row("rows not matching --filter", f"{s.rows_filtered_out:,}")
    t.add_row("rows rejected", f"{s.rows_rejected:,}" + (f"  (see {s.out}/rejects.csv)" if s.rows_rejected else ""))
    for reason, n in s.rejects_by_reason.items():
        t.add_row("  " + reason, f"{n:,}")
    t.add_row("packets / bytes", f"{s.packets:,} / {s.bytes:,}")
    t.add_row("time span", f"{s.first_start} .. {s.last_end}")
    for label, n in list(s.label_counts.items())[:12]:
        t.add_row("  label " + label, f"{n:,}")
    for flag, n in s.quality_counts.items():
        t.add_row("  quality " + flag, f"{n:,}")
    t.add_row("partitions", str(len(s.partitions)))
    if s.skipped_files:
        t.add_row("files skipped", f"{len(s.skipped_files)} (reasons in netflowgen.json: " + ", ".join(Path(f).name for f in list(s.skipped_files)[:5]) + ")")
    rate = s.rows_read / s.seconds if s.seconds else 0.0
    t.add_row("time", f"{s.seconds:.2f} s ({rate:,.0f} rows/s)")
    out.print(t)


@app.command("inject")
def inject_cmd(
    background: Annotated[Path, typer.Option("--background", "-b", help="Benign background flows: an ingested dataset (streams) or any supported input.")],
    attack: Annotated[list[Path], typer.Option("--attack", "-a", help="Attack flows, e.g. a pcap of a DDoS at its victim (repeatable: each injection draws one).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to create.")],
    victim: Annotated[Optional[list[str]], typer.Option("--victim", help="Address to attack; must occur in the background (repeatable).")] = None,
    victims: Annotated[Optional[int], typer.Option("--victims", help="Draw this many victims among the background's local nodes that send traffic.")] = None,
    at: Annotated[Optional[list[str]], typer.Option("--at", help="Start of the attack's first flow: ISO 8601 (UTC unless a zone is given) or epoch seconds (repeatable).")] = None,
    times: Annotated[Optional[int], typer.Option("--times", help="Draw this many start times per victim, where the whole attack fits in the background.")] = None,
    intensity: Annotated[Optional[list[str]], typer.Option("--intensity", help="0.25 = a quarter of the capture's flows; 2x = twice the victim's median flows per minute (repeatable, cycled over the injections).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    label: Annotated[str, typer.Option(help="label of the injected flows.")] = "DDoS",
    attack_type: Annotated[Optional[list[str]], typer.Option("--attack-type", help="label_detail of the injected flows: one for all or one per --attack (default: each file's stem).")] = None,
    attack_victim: Annotated[Optional[str], typer.Option("--attack-victim", help="The captures' own victim (default: the address receiving most of their flows).")] = None,
    prefix: Annotated[Optional[list[str]], typer.Option("--prefix", help="Extra local prefix that --victims draws from (repeatable).")] = None,
    rate_step: Annotated[str, typer.Option(help="Step over which Nx intensities count flows, e.g. 60s, 5m.")] = "60s",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    flow_filter: Annotated[Optional[str], typer.Option("--filter", help="Keep only the background flows matching this nfdump filter.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Place real attack flows onto benign background flows at chosen victims, times and intensities."""
    from netflowgen.inject import INJECTIONS_NAME, InjectConfig, Intensity, inject, parse_time

    _terminate_as_interrupt()
    try:
        config = InjectConfig(
            background=background, attacks=tuple(attack), background_filter=flow_filter, victims=tuple(victim or ()), n_victims=victims,
            times=tuple(parse_time(t) for t in at or ()), n_times=times,
            intensities=tuple(Intensity.parse(i) for i in intensity or ("1",)), seed=seed, label=label,
            attack_types=tuple(attack_type or ()), attack_victim=attack_victim,
            local_prefixes=DEFAULT_LOCAL_PREFIXES + tuple(prefix or ()), rate_step=parse_step(rate_step),
            overwrite=overwrite,
        )
        started = time.perf_counter()
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]:>10,.0f}/s"), TimeElapsedColumn(), TextColumn("ETA"),
                      TimeRemainingColumn(), console=err, disable=quiet or as_json) as progress:
            tasks: dict[str, int] = {}

            def update(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total or None, rate=0.0)
                rate = done / max(time.perf_counter() - started, 1e-9)
                progress.update(tasks[stage], completed=done, total=total or None, rate=rate)

            summary = inject(config, out_dir, progress=update)
    except KeyboardInterrupt:
        raise _fail(f"interrupted; nothing was written to {out_dir}", 130) from None
    except (FormatError, ValueError, FileExistsError, FileNotFoundError, OSError) as e:
        raise _fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
        return
    t = Table("id", "victim", "attack type", "at", "intensity", "fraction", "flows", "packets",
              title=f"{len(summary.injections)} injections into {out_dir} (ground truth: {out_dir / INJECTIONS_NAME})",
              title_justify="left")
    for j in summary.injections:
        t.add_row(str(j.id), j.victim, j.attack_type, j.at, j.intensity, f"{j.fraction:.4f}", f"{j.flows:,}", f"{j.packets:,}")
    out.print(t)
    for a in summary.attacks:
        if a.flows_left_out:
            out.print(f"{a.path}: {a.flows_left_out:,} flows neither from nor to its victim {a.victim} were not injected")
    out.print(f"{summary.background_rows:,} background flows unchanged + {summary.injected_rows:,} injected "
              f"= {summary.rows_written:,} flows ({summary.seconds:.2f} s)")


@app.command("inspect")
def inspect_cmd(
    path: Annotated[Path, typer.Argument(help="An ingested dataset, or any supported input file or directory.")],
    fmt: FormatOpt = None,
    mapping: MappingOpt = None,
    timezone: TimezoneOpt = "UTC",
    top: Annotated[int, typer.Option(help="How many top talkers to list.")] = 10,
    flow_filter: FilterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Schema, counts, time span, top talkers and labels of flows."""
    try:
        result = inspect_path(path, _read_options(fmt, mapping, timezone, flow_filter), top=top)
    except (FormatError, ValueError, FileNotFoundError, OSError) as e:
        raise _fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
    else:
        _print_inspection(result)


def _print_inspection(r: Inspection) -> None:
    head = Table(title=f"{r.path} ({r.kind})", show_header=False, title_justify="left")
    head.add_row("formats", ", ".join(f"{k} ({v} file{'s' if v > 1 else ''})" for k, v in r.formats.items()) or "-")
    if r.filter is not None:
        head.add_row("filter", r.filter)
        head.add_row("flows before filter", f"{r.flows_before_filter:,}")
        head.add_row("flows after filter", f"{r.flows:,}")
    else:
        head.add_row("flows", f"{r.flows:,}")
    head.add_row("rejected rows", f"{r.rejected:,}")
    for reason, n in r.rejects_by_reason.items():
        head.add_row("  " + reason, f"{n:,}")
    head.add_row("packets / bytes", f"{r.packets:,} / {r.bytes:,}")
    head.add_row("time span", f"{r.first_start} .. {r.last_end}")
    cov = r.coverage
    if cov:
        span = cov["span"] or ("-", "-")
        observed = float(cov["observed_seconds"])  # type: ignore[arg-type]
        whole = (datetime.fromisoformat(span[1]) - datetime.fromisoformat(span[0])).total_seconds() if cov["span"] else 0.0  # type: ignore[index]
        head.add_row("coverage", f"{len(cov['intervals']):,} observed intervals, {timedelta(seconds=round(observed))} observed"  # type: ignore[arg-type]
                     + (f" of {timedelta(seconds=round(whole))} ({observed / whole:.1%})" if whole else "") + f"; rule: {cov['rule']}")
        for hole in cov["largest_holes"][:5]:  # type: ignore[index]
            head.add_row("  hole", f"{hole['from']} .. {hole['to']} ({timedelta(seconds=round(hole['seconds']))})")
    head.add_row("protocols", ", ".join(f"{k} {v:,}" for k, v in r.protocols.items()))
    for flag, n in r.quality.items():
        head.add_row("  quality " + flag, f"{n:,}")
    out.print(head)
    labels = Table("label", "flows", "label_detail", "flows", title="labels", title_justify="left")
    lab, det = list(r.labels.items())[:15], list(r.label_details.items())[:15]
    for i in range(max(len(lab), len(det))):
        a = lab[i] if i < len(lab) else ("", "")
        b = det[i] if i < len(det) else ("", "")
        labels.add_row(str(a[0]), f"{a[1]:,}" if a[1] != "" else "", str(b[0]), f"{b[1]:,}" if b[1] != "" else "")
    out.print(labels)
    for title, rows in (("top sources", r.top_sources), ("top destinations", r.top_destinations)):
        t = Table("address", "flows", "packets", "bytes", title=title, title_justify="left")
        for row in rows:
            t.add_row(str(row["ip"]), f"{row['flows']:,}", f"{row['packets']:,}", f"{row['bytes']:,}")
        out.print(t)
    schema = Table("column", "type: meaning", title="schema", title_justify="left")
    for name, doc in r.columns.items():
        schema.add_row(name, doc)
    out.print(schema)


@app.command("series")
def series_cmd(
    flows: Annotated[str, typer.Argument(help="An ingested dataset (streams), or any supported input (read into memory); with --engine spark any path Spark reads (hdfs://, s3a://).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Series directory to create.")],
    step: Annotated[str, typer.Option(help="Step width, e.g. 60s, 5m, 1h; aligned to the Unix epoch.")] = "60s",
    nodes: Annotated[NodeMode, typer.Option(help="Which endpoints are nodes.")] = NodeMode.LOCAL,
    prefix: Annotated[Optional[list[str]], typer.Option("--prefix", help="Extra local prefix for --nodes local (repeatable).")] = None,
    group_map: Annotated[Optional[Path], typer.Option(help="CSV node,group giving each node's group (default: its /24 or /64).")] = None,
    attack: Annotated[Optional[list[str]], typer.Option("--attack", help="Class that makes a step positive, matched to label or label_detail (repeatable).")] = None,
    max_gap: Annotated[str, typer.Option(help="Longest silence filled with zero rows (a longer one ends an activity period).")] = "1d",
    partitions: Annotated[Optional[int], typer.Option(help="Build in this many node partitions to bound memory (default: one per 10 million flows or 4 million series rows).")] = None,
    fmt: FormatOpt = None,
    timezone: TimezoneOpt = "UTC",
    flow_filter: FilterOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
    engine: EngineOpt = Engine.POLARS,
    master: MasterOpt = None,
    buckets: Annotated[Optional[int], typer.Option(help="Node buckets for --engine spark, each built by one task (default: one per million flows, at least one per core).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build per-(node, step) traffic features and labels from flows."""
    _terminate_as_interrupt()
    try:
        config = SeriesConfig(
            step=parse_step(step), nodes=nodes, local_prefixes=DEFAULT_LOCAL_PREFIXES + tuple(prefix or ()),
            group_map=group_map, attack=tuple(attack or ()), max_gap=parse_step(max_gap),
        )
        if engine is Engine.SPARK:
            summary = _series_spark(flows, out_dir, config, master, buckets, partitions, fmt,
                                    _read_options(fmt, None, timezone, flow_filter), overwrite)
        else:
            if buckets is not None or master is not None:
                raise ValueError("--buckets and --master apply to --engine spark (on this machine use --partitions)")
            summary = _series_polars(Path(flows), out_dir, config, partitions, _read_options(fmt, None, timezone, flow_filter),
                                     overwrite, as_json)
    except KeyboardInterrupt:
        raise _fail(f"interrupted; nothing was written to {out_dir}", 130) from None
    except (FormatError, ValueError, FileExistsError, FileNotFoundError, OSError, RuntimeError) as e:
        raise _fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps(summary, default=str))
        return
    t = Table(title=f"node series in {out_dir}", show_header=False, title_justify="left")
    for key, value in summary.items():
        t.add_row(key, ", ".join(f"{k} {v:,}" for k, v in value.items()) if isinstance(value, dict) else f"{value}")
    out.print(t)


def _series_spark(flows: str, out_dir: Path, config: SeriesConfig, master: str | None, buckets: int | None,
                  partitions: int | None, fmt: str | None, options: ReadOptions, overwrite: bool) -> dict:  # type: ignore[type-arg]
    from netflowgen.series.spark import SparkUnavailable, build_series_spark, job_error, spark_session

    if partitions is not None:
        raise ValueError("--partitions applies to --engine polars; Spark splits nodes by --buckets")
    if fmt is not None:
        raise ValueError("--engine spark reads a flow dataset (Parquet, as `netflowgen ingest` writes it); --format does not apply")
    started = time.perf_counter()
    spark = spark_session(master)
    try:
        summary = build_series_spark(spark, flows, out_dir, config, buckets=buckets, options=options, overwrite=overwrite)
    except (SparkUnavailable, ValueError, FileExistsError, FileNotFoundError, KeyboardInterrupt):
        raise
    except Exception as e:  # a failed Spark job: py4j and Spark raise many kinds
        raise RuntimeError(f"the Spark job failed and nothing was written to {out_dir}: {job_error(e)}") from e
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


def _series_polars(flows: Path, out_dir: Path, config: SeriesConfig, partitions: int | None, options: ReadOptions,
                   overwrite: bool, quiet: bool) -> dict:  # type: ignore[type-arg]
    lazy = scan_flows(flows, options)
    started = time.perf_counter()
    coverage = dataset_coverage(flows, lazy)
    n_flows = lazy.select(pl.len()).collect().item()
    k = partitions or max(1, -(-n_flows // FLOWS_PER_PART), -(-estimate_rows(lazy, config) // ROWS_PER_PART))
    with Progress(TextColumn("[bold]series"), BarColumn(), MofNCompleteColumn(), TextColumn("parts"),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err, disable=quiet) as progress:
        task = progress.add_task("series", total=k)

        def parts():  # type: ignore[no-untyped-def]
            for part in iter_series_parts(lazy, config, k, workdir=out_dir.resolve().parent, coverage=coverage):
                yield part
                progress.advance(task)

        summary = write_series_parts(parts(), out_dir, config, [str(flows)], overwrite, coverage)
    summary["flows"] = n_flows
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


@app.command("tokenize")
def tokenize_cmd(
    series_dir: Annotated[Path, typer.Argument(help="A series directory (from `netflowgen series`).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Tokens directory to create.")],
    tokenizer_file: Annotated[Optional[Path], typer.Option("--tokenizer", help="Use this fitted tokenizer.json instead of fitting one.")] = None,
    fit_fraction: Annotated[float, typer.Option(help="Fit on the first part of every node's steps.")] = 0.8,
    fit_until: Annotated[Optional[datetime], typer.Option(help="Fit on the steps before this time (UTC), all nodes alike; overrides --fit-fraction.")] = None,
    bins: Annotated[int, typer.Option(help="Bins per feature, zero bin included.")] = 10,
    rule: Annotated[BinRule, typer.Option(help="Where non-zero bins are cut.")] = BinRule.LOG_QUANTILE_TAIL,
    timezone: Annotated[str, typer.Option("--timezone", "--tz", help="Time zone of the time fields.")] = "UTC",
    relative: Annotated[bool, typer.Option("--relative", help="Also encode each feature's deviation from the node's running level (f~rel tokens).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fit the tokenizer on the training period and write memory-mappable token shards."""
    _terminate_as_interrupt()
    try:
        lazy, manifest = scan_series(series_dir)
        step_seconds = float(manifest["config"]["step_seconds"])
        fit: dict | None = {"by": "given", "tokenizer": str(tokenizer_file)}  # type: ignore[type-arg]
        if tokenizer_file is not None:
            tok = Tokenizer.load(tokenizer_file)
            if relative and not tok.config.relative:
                raise ValueError(f"{tokenizer_file} was fitted without relative tokens; drop --relative or fit a new one")
        else:
            train, fit = fit_part(lazy, fit_fraction, fit_until)
            if train.lazy().select(pl.len()).collect().item() == 0:
                raise ValueError(f"no steps to fit the tokenizer on ({fit})")
            tok = Tokenizer.fit(train, TokenizerConfig(tuple(feature_names()), bins, rule, timezone, relative=relative))
        parts = (pl.read_parquet(p) for p in sorted(series_dir.glob("part-*.parquet")))
        summary = write_tokens(parts, tok, out_dir, step_seconds=step_seconds, fit=fit,
                               source=str(series_dir), overwrite=overwrite)
    except KeyboardInterrupt:
        raise _fail(f"interrupted; nothing was written to {out_dir}", 130) from None
    except (ValueError, FileExistsError, FileNotFoundError, OSError) as e:
        raise _fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps(summary))
        return
    t = Table(title=f"tokens in {out_dir}", show_header=False, title_justify="left")
    t.add_row("rows", f"{summary['rows']:,}")
    t.add_row("shards", str(len(summary["shards"])))  # type: ignore[arg-type]
    t.add_row("fitted on", json.dumps(summary["fit"]))
    t.add_row("known nodes / groups", f"{summary['nodes_known']:,} / {summary['groups_known']:,}")
    t.add_row("bins per feature", ", ".join(f"{k} {v}" for k, v in summary["bins"].items()))  # type: ignore[union-attr]
    out.print(t)


@app.command("pretrain")
def pretrain_cmd(
    tokens: Annotated[Path, typer.Argument(help="A tokens directory (from `netflowgen tokenize`).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create (or continue with --resume).")],
    size: Annotated[str, typer.Option(help="Model size: tiny (tests), small (CPU), base (GPU).")] = "tiny",
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Windows per step (per process).")] = 32,
    context: Annotated[Optional[int], typer.Option(help="Context length in steps (default: the size's).")] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 3e-4,
    warmup: Annotated[int, typer.Option(help="Warmup steps.")] = 100,
    val_fraction: Annotated[float, typer.Option(help="Last part of every node's series held out for validation.")] = 0.1,
    eval_every: Annotated[int, typer.Option(help="Validate every this many steps.")] = 200,
    max_minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget: stop when it is spent (or after --steps), the learning rate decaying over it.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Pre-train FlowGPT to predict every node's next step (multi-GPU: launch with torchrun)."""
    _terminate_as_interrupt()
    from netflowgen.train.loop import TrainConfig, distributed
    from netflowgen.train.pretrain import PretrainConfig, pretrain

    try:
        train = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(warmup, steps),
                            eval_every=eval_every, checkpoint_every=eval_every, seed=seed, precision=precision,
                            max_seconds=max_minutes * 60 if max_minutes else None)
        with distributed():
            result, _ = pretrain(PretrainConfig(tokens, size, context, val_fraction), train, out_dir, resume=resume,
                                 overwrite=overwrite, device=device, show_progress=not as_json)
    except KeyboardInterrupt:
        raise _fail(f"interrupted; continue with: netflowgen pretrain {tokens} --out {out_dir} --resume (same options)", 130) from None
    except (ValueError, FileExistsError, FileNotFoundError, OSError) as e:
        raise _fail(str(e)) from None
    if not result:  # not rank 0
        return
    if as_json:
        out.print_json(json.dumps(result))
        return
    final = result.get("final") or {}
    out.print(f"run {out_dir}: {result['parameters']:,} parameters, {result['steps']} steps; "
              f"held-out next-step loss {final.get('val_loss', float('nan')):.4f}, bin accuracy {final.get('val_accuracy', float('nan')):.3f}")


def _series_of(path: Path, config: dict | None, fmt: str | None = None, timezone: str = "UTC", flow_filter: str | None = None) -> tuple[pl.DataFrame, dict]:  # type: ignore[type-arg]
    """A series artifact as it is, or flows turned into series with the given series config."""
    from netflowgen.artifacts import read_manifest
    from netflowgen.series.build import build_series
    from netflowgen.series.write import SERIES_KIND, series_config_from_dict, series_config_to_dict

    if path.is_dir() and (path / "netflowgen.json").is_file() and read_manifest(path).get("kind") == SERIES_KIND:
        if flow_filter is not None:
            raise ValueError(f"{path} is a node series: --filter selects flows, give flows instead")
        return read_series(path)
    if config is None:
        raise ValueError(f"{path} is not a series directory, and no series settings are known to build one from flows")
    cfg = series_config_from_dict(config)
    flows = scan_flows(path, _read_options(fmt, None, timezone, flow_filter))
    return build_series(flows, cfg, dataset_coverage(path, flows)), {"config": series_config_to_dict(cfg)}


@app.command("finetune")
def finetune_cmd(
    run: Annotated[Path, typer.Argument(help="A pre-trained run directory (from `netflowgen pretrain`).")],
    series_path: Annotated[Path, typer.Option("--series", "-s", help="Labelled node series (from `netflowgen series`).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Detector directory to create.")],
    attack: Annotated[Optional[list[str]], typer.Option("--attack", help="Class that makes a step positive (repeatable; default: the series' attack flag).")] = None,
    budget: Annotated[str, typer.Option(help="Labels to use: a fraction of steps (0.05), a step count (200) or episodes (3ep).")] = "0.1",
    # Defaults None: FinetuneConfig's own (one place defines the recipe; README "On the real captures").
    mode: Annotated[Optional[str], typer.Option(help="full, probe (frozen backbone; the default) or last-k.")] = None,
    head: Annotated[Optional[str], typer.Option(help="What the step head reads: surprise (the pre-trained model's per-feature surprise; the default), hidden (the backbone's hidden state) or both.")] = None,
    head_init: Annotated[Optional[str], typer.Option(help="zero (small random weights, held small by the anchor; the default) or surprise (the head starts as the zero-label surprise score).")] = None,
    anchor: Annotated[Optional[float], typer.Option(help="L2-SP weight pulling trained weights back to where they started (default 1.0; 0 with --scratch).")] = None,
    last_k: Annotated[Optional[int], typer.Option(help="Blocks trained in last-k mode.")] = None,
    scratch: Annotated[bool, typer.Option("--scratch", help="Same architecture from random weights, trained in full on its hidden state (the baseline).")] = False,
    fit_until: Annotated[Optional[datetime], typer.Option(help="Label only steps before this time (UTC); later ones are the test part.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (default 300).")] = None,
    window: Annotated[Optional[int], typer.Option(help="Labelled steps per window (default 32).")] = None,
    history: Annotated[Optional[int], typer.Option(help="Unlabelled context steps read before each window (default 16).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate of the head (default 1e-2; a backbone's is a tenth).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (label draw and training).")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a pre-trained run into a detector with a small label budget."""
    _terminate_as_interrupt()
    from netflowgen.detect.finetune import FinetuneConfig, finetune
    from netflowgen.detect.labels import parse_budget

    try:
        series, manifest = read_series(series_path)
        given = {"mode": mode, "head_inputs": head, "head_init": head_init, "anchor": anchor, "last_k": last_k,
                 "steps": steps, "window": window, "history": history, "lr": lr}
        if scratch:
            clash = [k for k in ("mode", "head_inputs", "head_init") if given[k] is not None]
            if clash:
                raise ValueError(f"--scratch trains the whole model on its hidden state: drop --{clash[0].replace('_inputs', '').replace('_', '-')}")
            given.update(mode="full", head_inputs="hidden", init="scratch", anchor=anchor or 0.0)
        cfg = FinetuneConfig(attack=tuple(attack or ()), budget=parse_budget(budget), seed=seed,
                             **{k: v for k, v in given.items() if v is not None})
        until = fit_until.replace(tzinfo=fit_until.tzinfo or UTC) if fit_until else None
        det = finetune(run, series, float(manifest["config"]["step_seconds"]), cfg, out_dir,
                       allowed=(pl.col("step") < until) if until else None, show_progress=not as_json,
                       overwrite=overwrite, series_config=manifest["config"])
    except KeyboardInterrupt:
        raise _fail(f"interrupted; nothing was written to {out_dir}", 130) from None
    except (ValueError, FileExistsError, FileNotFoundError, OSError) as e:
        raise _fail(str(e)) from None
    summary = {"detector": str(out_dir), "threshold": det.threshold, **det.manifest["labels"]}
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(f"detector {out_dir}: threshold {det.threshold:.4f}; labels used: {det.manifest['labels']}")


@app.command("score")
def score_cmd(
    model_dir: Annotated[Path, typer.Argument(help="A detector (from `netflowgen finetune`), or a pre-trained run for zero-label anomaly scores.")],
    data: Annotated[Path, typer.Argument(help="Node series, or flows (any supported input) turned into series with the model's settings.")],
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write every (node, step) score here (.parquet or .csv).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Alert threshold instead of the calibrated one.")] = None,
    quantile: Annotated[float, typer.Option(help="Zero-label scores: alert above this quantile of the scores.")] = 0.999,
    fmt: FormatOpt = None,
    timezone: TimezoneOpt = "UTC",
    flow_filter: FilterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Per (node, step) scores and alerts, offline."""
    from netflowgen.artifacts import read_manifest
    from netflowgen.detect.finetune import DETECTOR_KIND, EncodedSteps, load_detector, surprise_scores
    from netflowgen.train.pretrain import load_run, run_step_seconds

    try:
        kind = read_manifest(model_dir).get("kind")
        if kind == DETECTOR_KIND:
            det = load_detector(model_dir)
            series, _ = _series_of(data, det.manifest.get("series_config"), fmt, timezone, flow_filter)
            scores = det.score(series)
            cut = threshold if threshold is not None else det.threshold
        else:
            model, tok, _ = load_run(model_dir)
            series, _ = _series_of(data, None, fmt, timezone, flow_filter)
            steps = EncodedSteps.encode(series, tok, run_step_seconds(model_dir))
            values = surprise_scores(model, steps)
            finite = values[np.isfinite(values)]
            cut = threshold if threshold is not None else (float(np.quantile(finite, quantile)) if len(finite) else float("inf"))
            scores = steps.keys.with_columns(pl.Series("score", values), pl.Series("label", steps.labels.astype(bool)))
        scores = scores.with_columns((pl.col("score") >= cut).fill_null(False).alias("alert"))
        if out_path is not None:
            _write_table_atomic(scores, out_path)
    except (ValueError, FileNotFoundError, OSError, FormatError) as e:
        raise _fail(str(e)) from None
    alerts = scores.filter(pl.col("alert"))
    summary = {"rows": scores.height, "nodes": scores["node"].n_unique(), "alerts": alerts.height,
               "alert_nodes": alerts["node"].n_unique(), "threshold": cut, "out": str(out_path) if out_path else None}
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(f"{summary['rows']:,} steps of {summary['nodes']:,} nodes scored; {summary['alerts']:,} alerts on "
              f"{summary['alert_nodes']:,} nodes (threshold {cut:.4g})" + (f"; written to {out_path}" if out_path else ""))
    if alerts.height:
        t = Table("node", "step", "score", title="first alerts", title_justify="left")
        for row in alerts.sort("step").head(10).iter_rows(named=True):
            t.add_row(row["node"], str(row["step"]), f"{row['score']:.4g}")
        out.print(t)


def _write_table_atomic(table: pl.DataFrame, path: Path) -> None:
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if path.suffix == ".csv":
            table.with_columns(pl.col("step").dt.to_string("%Y-%m-%dT%H:%M:%SZ")).write_csv(tmp)
        else:
            table.write_parquet(tmp, compression="zstd")
        os.replace(tmp, path)
    except (pl.exceptions.PolarsError, OSError) as e:  # a full disk: errors naming no file
        from netflowgen.artifacts import write_failure
        raise write_failure(path, e) from e
    finally:
        tmp.unlink(missing_ok=True)


@app.command("benchmark")
def benchmark_cmd(
    suite_file: Annotated[Path, typer.Argument(help="A suite file (TOML), e.g. benchmarks/suites/shared.toml.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.json, report.md/.html and plots/.")],
    data: Annotated[Optional[Path], typer.Option(help="Base folder of the suite's relative inputs (default: $NETFLOWGEN_SHARED_DATA or the suite's).")] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Use only the first N seeds of the suite.")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Only say what would be evaluated (victims, episodes, attack types, steps per part); no training.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="The same tasks with one seed and the 1ep and 3ep budgets only.")] = False,
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="Only these tasks (comma-separated names).")] = None,
    methods: Annotated[Optional[str], typer.Option("--methods", help="Only these methods or variants (comma-separated).")] = None,
    budgets: Annotated[Optional[str], typer.Option("--budgets", help="These label budgets instead (comma-separated, e.g. 1ep,3ep,all).")] = None,
    settings: Annotated[Optional[list[str]], typer.Option("--set", help="Replace a [pretrain] or [finetune] setting, e.g. pretrain.size=small (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a detection suite: every method on the same splits, budgets and seeds; write the report."""
    import dataclasses

    from netflowgen.evaluate.suite import load_suite, plan_suite, run_suite
    from netflowgen.report.suite import main_table, write_report

    _terminate_as_interrupt()

    def split(text: str | None) -> list[str] | None:
        return [x.strip() for x in text.split(",") if x.strip()] if text else None

    def load():  # type: ignore[no-untyped-def]
        return load_suite(suite_file, data).select(split(tasks), split(methods), split(budgets)).with_settings(settings or [])

    if plan:
        try:
            with _stage_progress("plan", as_json) as say:
                planned = plan_suite(load(), out_dir, progress=say)
        except KeyboardInterrupt:
            raise _fail("interrupted", 130) from None
        except (ValueError, FileNotFoundError, FormatError, OSError) as e:
            raise _fail(str(e)) from None
        if as_json:
            out.print_json(json.dumps(planned))
            return
        for name, t in planned["tasks"].items():
            _say(f"{name} ({t['kind']}, {t['step_seconds']:g} s steps, {t['rows']:,} node-steps of {t['nodes']:,} nodes)")
            for part in ("fit", "test"):
                p = t[part]
                _say(f"  {part:<4} {p['steps']:>9,} steps {p['positive_steps']:>7,} positive {p['episodes']:>5,} episodes "
                     f"{p['victims']:>4,} victims; types: {', '.join(p['attack_types']) or '-'}")
        tot = planned["totals"]
        _say(f"in all: {tot['fit']['episodes']:,} fitting and {tot['test']['episodes']:,} test episodes; "
             f"{tot['fit']['victims']:,} fitting and {tot['test']['victims']:,} test victims (counted per task)")
        return
    try:
        suite = load()
        if quick:
            budgets = tuple(b for b in suite.budgets if b in ("1ep", "3ep")) or suite.budgets[:2]
            suite = dataclasses.replace(suite, seeds=suite.seeds[:1], budgets=budgets)
        if seeds is not None:
            suite = dataclasses.replace(suite, seeds=suite.seeds[:seeds])
        started = time.perf_counter()
        with _stage_progress("benchmark", as_json) as say:
            results = run_suite(suite, out_dir, progress=say)
        paths = write_report(results, out_dir)
    except KeyboardInterrupt:
        raise _fail(f"interrupted; what was finished is in {out_dir}", 130) from None
    except (ValueError, FileNotFoundError, FormatError, OSError) as e:
        raise _fail(str(e)) from None
    summary = {"results": str(out_dir / "results.json"), "report": str(paths["html"]), "markdown": str(paths["markdown"]),
               "seconds": round(time.perf_counter() - started, 1), "timings": results.get("timings", {}),
               "table": main_table(results)}
    if as_json:
        out.print_json(json.dumps(summary))
        return
    _print_suite_summary(results, results["suite"] + (" (SYNTHETIC)" if results.get("synthetic") else "")
                         + ": test PR-AUC, 95% intervals over victims", summary["timings"], summary["seconds"])
    _say(f"Report: {paths['html']} (report.md beside it has every metric)")


@app.command("nextstep")
def nextstep_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory (from `netflowgen pretrain`).")],
    data: Annotated[Optional[Path], typer.Argument(help="A tokens or series directory (default: the run's own tokens).")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="Held-out part of every node's series (default: the run's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 64,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Held-out next-step cross-entropy and bin accuracy per feature, next to the baselines."""
    from netflowgen.artifacts import read_manifest
    from netflowgen.evaluate.nextstep import evaluate_next_step
    from netflowgen.tokenize.shards import TOKENS_KIND, open_tokens
    from netflowgen.train.pretrain import load_run, run_step_seconds
    from netflowgen.train.windows import TokenWindows

    try:
        model, tok, manifest = load_run(run, device)
        step_seconds = run_step_seconds(run)
        settings = json.loads((run / "train_config.json").read_text())["data"]
        # The run records its tokens' absolute path (runs made before did not: relative to where
        # pretrain ran, which is why a missing one asks for the data instead of guessing).
        source = data or Path(manifest["tokens"])
        if not source.exists():
            raise ValueError(f"{run} was trained on {source}, which is not there (from {Path.cwd()}); "
                             "give a tokens or series directory: netflowgen nextstep RUN DATA")
        with tempfile.TemporaryDirectory(prefix="netflowgen-") as tmp:
            if read_manifest(source).get("kind") != TOKENS_KIND:  # a series: tokenize it with the run's tokenizer
                table, smanifest = read_series(source)
                write_tokens(table, tok, Path(tmp) / "tokens", step_seconds=float(smanifest["config"]["step_seconds"]),
                             fit=None, source=str(source))
                source = Path(tmp) / "tokens"
            tmanifest, _, shards = open_tokens(source)
            if float(tmanifest["step_seconds"]) != step_seconds:
                raise ValueError(f"{data or source} holds {float(tmanifest['step_seconds']):g} s steps but {run} "
                                 f"was pre-trained on {step_seconds:g} s steps")
            windows = TokenWindows(shards, model.cfg.context, val_fraction if val_fraction is not None else float(settings["val_fraction"]))
            feats = list(tok.features)
            report = evaluate_next_step(model, windows, feats, [tok.bins[f] for f in feats], float(tmanifest["step_seconds"]), batch_size, device)
    except (ValueError, FileNotFoundError, OSError, KeyError) as e:
        raise _fail(str(e)) from None
    result = report.to_dict()
    if as_json:
        out.print_json(json.dumps(result))
        return
    summary = Table("steps", "method", "targets", "mean CE", "mean acc",
                    title="held-out next step: mean cross-entropy (nats, lower is better) and bin accuracy", title_justify="left")
    for subset, methods in result["subsets"].items():
        for i, (name, r) in enumerate(methods.items()):
            summary.add_row(subset if i == 0 else "", name, f"{r['targets']:,}", f"{r['mean_cross_entropy']:.4f}", f"{r['mean_accuracy']:.4f}")
    out.print(summary)
    active = result["subsets"].get("active", {})
    if active:
        names = list(active)
        t = Table("feature", *names, title="cross-entropy per feature on active steps", title_justify="left")
        for f in result["features"]:
            t.add_row(f, *[f"{active[m]['cross_entropy'][f]:.3f}" for m in names])
        out.print(t)


@app.command("generate")
def generate_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory (from `netflowgen pretrain`).")],
    series_dir: Annotated[Path, typer.Argument(help="A series directory holding the node's history.")],
    node: Annotated[str, typer.Option(help="The node to continue.")],
    horizon: Annotated[int, typer.Option(help="Steps to generate.")] = 10,
    samples: Annotated[int, typer.Option(help="Sampled continuations (quantiles come from them).")] = 100,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (1 = the model's distribution).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    until: Annotated[Optional[datetime], typer.Option(help="Use history before this time (UTC) only; default all.")] = None,
    feature: Annotated[Optional[list[str]], typer.Option("--feature", help="Features to show (repeatable; default four).")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG of history and forecast bands here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sample continuations of a node's series and forecast quantiles (10%, 50%, 90%)."""
    from netflowgen.generate import forecast_node
    from netflowgen.train.pretrain import load_run, run_step_seconds

    try:
        model, tok, _ = load_run(run)
        table, smanifest = read_series(series_dir)
        step_seconds = run_step_seconds(run)
        if float(smanifest["config"]["step_seconds"]) != step_seconds:
            raise ValueError(f"{series_dir} holds {float(smanifest['config']['step_seconds']):g} s steps but {run} "
                             f"was pre-trained on {step_seconds:g} s steps")
        step = timedelta(seconds=step_seconds)
        fc = forecast_node(model, tok, table, node, horizon, until, samples=samples, temperature=temperature, seed=seed, step=step)
        shown = feature or list(tok.config.features)[:4]
        unknown = [f for f in shown if f not in fc.features]
        if unknown:
            raise ValueError(f"unknown features {unknown}; the model has {fc.features}")
        frame = fc.to_frame().filter(pl.col("feature").is_in(shown))
        if plot:
            from netflowgen.report.plots import plot_forecast

            plot_forecast(table.filter(pl.col("node") == node), fc, shown, plot)
    except (ValueError, FileNotFoundError, OSError, KeyError) as e:
        raise _fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps(frame.with_columns(pl.col("step").cast(pl.String)).to_dicts()))
        return
    t = Table("step", "feature", "q10", "median", "q90", title=f"forecast for {node} ({samples} samples, temperature {temperature})", title_justify="left")
    for r in frame.iter_rows(named=True):
        t.add_row(str(r["step"]), r["feature"], f"{r['q10']:,.1f}", f"{r['q50']:,.1f}", f"{r['q90']:,.1f}")
    out.print(t)
    if plot:
        out.print(f"plot: {plot}")


@app.command("collect")
def collect_cmd(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Flow dataset directory to write (created, or continued if collect wrote it).")],
    listen: Annotated[str, typer.Option(help="UDP HOST:PORT to receive NetFlow v5/v9/IPFIX on (port 0: any free port).")] = "127.0.0.1:2055",
    rotate: Annotated[str, typer.Option(help="A new Parquet file per this interval, e.g. 60s, 5m.")] = "60s",
    metrics: Annotated[Optional[str], typer.Option(help="Serve Prometheus /metrics and /health on this HOST:PORT, e.g. 127.0.0.1:9105.")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds (default: at Ctrl-C or SIGTERM).")] = None,
    rcvbuf: Annotated[int, typer.Option(help="Kernel socket buffer to ask for, bytes.")] = 64 << 20,
    max_buffer_flows: Annotated[int, typer.Option(help="Write a file early when this many flows wait in memory.")] = 1_000_000,
    backlog_bytes: Annotated[int, typer.Option(help="Bytes of received datagrams held ahead of the decoder.")] = 64 << 20,
    max_exporters: Annotated[int, typer.Option(help="Source addresses with their own counters; the quietest beyond share one \"other\" entry.")] = 256,
    flow_filter: FilterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Receive NetFlow v5/v9/IPFIX export and write it as a flow dataset, until stopped."""
    from netflowgen.collect.server import Collector, CollectorConfig, parse_address

    stop = _stop_on_signals()
    try:
        config = CollectorConfig(
            out=out_dir, listen=parse_address(listen), rotate=parse_step(rotate),
            metrics=parse_address(metrics) if metrics else None, rcvbuf=rcvbuf, max_buffer_flows=max_buffer_flows,
            backlog_bytes=backlog_bytes, filter=flow_filter, max_exporters=max_exporters,
        )
        if duration is not None and duration <= 0:
            raise ValueError("--duration must be positive")
        collector = Collector(config)
        collector.start()
    except (ValueError, OSError) as e:
        raise _fail(str(e)) from None
    host, port = collector.address
    ready = f"listening on udp://{host}:{port} (socket buffer {collector.rcvbuf_granted:,} bytes), writing {out_dir}"
    if collector.metrics_address:
        ready += f", metrics on http://{collector.metrics_address[0]}:{collector.metrics_address[1]}/metrics"
    err.print(ready, highlight=False, soft_wrap=True)
    started = time.monotonic()
    try:
        with Progress(TextColumn("[bold]collect"), BarColumn() if duration else TextColumn(""),
                      TextColumn("{task.fields[packets]:>10,} packets {task.fields[flows]:>12,} flows "
                                 "{task.fields[rate]:>10,.0f} flows/s {task.fields[errors]:>6,} errors {task.fields[files]:>5,} files"),
                      TimeElapsedColumn(), TextColumn("ETA" if duration else ""), TimeRemainingColumn() if duration else TextColumn(""),
                      console=err, disable=as_json) as progress:
            task = progress.add_task("collect", total=duration, packets=0, flows=0, rate=0.0, errors=0, files=0)
            while (duration is None or time.monotonic() - started < duration) and not stop.wait(0.25):
                if not collector.healthy():
                    break
                s = collector.summary()
                elapsed = max(time.monotonic() - started, 1e-9)
                progress.update(task, completed=min(elapsed, duration or elapsed), packets=s["packets"], flows=s["flows"],
                                rate=s["flows"] / elapsed, errors=s["errors"], files=s["files"])
    finally:
        # Stopping writes the last file: a second Ctrl-C only sets the stop event again.
        try:
            summary = collector.stop()
        except (RuntimeError, OSError) as e:
            raise _fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps(summary, default=str))
        return
    t = Table("exporter", "packets", "flows", "rejected", "errors", "lost", "sequence gaps", title=(
        f"collected into {out_dir}: {summary['rows_written']:,} flows in {summary['files']} files, "
        f"{summary['seconds']:.1f} s, kernel drops {summary['kernel_drops']}"), title_justify="left")
    for exporter, s in summary["exporters"].items():
        errors = {**s["packet_errors"], **{f"set: {k}": v for k, v in s["set_errors"].items()}}
        lost = ", ".join(f"{n:,} {unit}" for n, unit in ((s["lost_records"], "records"), (s["lost_packets"], "packets")) if n) or "0"
        t.add_row(exporter, f"{s['packets']:,}", f"{s['flows']:,}", f"{sum(s['rejected'].values()):,}",
                  ", ".join(f"{k} {v:,}" for k, v in errors.items()) or "0", lost, f"{s['sequence_gaps']:,}")
    out.print(t)


@app.command("replay")
def replay_cmd(
    source: Annotated[Path, typer.Argument(help="A flow dataset (from ingest or collect), or any supported input file or directory.")],
    to: Annotated[str, typer.Option("--to", help="UDP HOST:PORT of the collector (loopback unless --allow-remote).")],
    export_format: Annotated[str, typer.Option("--format", help="Export protocol: v5 (IPv4 only), v9 or ipfix.")] = "ipfix",
    speed: Annotated[str, typer.Option(help="On the flows' own clock: 1x (real time), 10x, ... or max (only --max-rate bounds it).")] = "1x",
    loop: Annotated[bool, typer.Option("--loop", help="Send the flows again and again (each pass later by their span, rounded up to a minute) until stopped.")] = False,
    max_rate: Annotated[float, typer.Option(help="Flows per second at most (0: no bound).")] = 100_000,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a target that is not a loopback address.")] = False,
    domain: Annotated[int, typer.Option(help="Observation domain: v5 engine type/id (high/low byte), v9 source id, IPFIX domain id.")] = 0,
    template_every: Annotated[int, typer.Option(help="Datagrams between template refreshes (v9, IPFIX).")] = 20,
    max_datagram: Annotated[int, typer.Option(help="Largest datagram payload, bytes.")] = 1400,
    input_format: Annotated[Optional[str], typer.Option("--input-format", help="Input format instead of detecting it (see `netflowgen formats`).")] = None,
    mapping: MappingOpt = None,
    timezone: TimezoneOpt = "UTC",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send flows as NetFlow v5, v9 or IPFIX export to a collector, paced on their own clock."""
    from netflowgen.collect.export import ExportFormat
    from netflowgen.collect.replay import ReplayConfig, ReplayError, load_flows, parse_speed, replay
    from netflowgen.collect.server import parse_address

    stop = _stop_on_signals()
    try:
        formats = {f.value: f for f in ExportFormat}
        if export_format.lower() not in formats:
            raise ValueError(f"unknown export format {export_format!r}; use one of {', '.join(formats)}")
        if max_rate < 0:
            raise ValueError("--max-rate must be positive (0: no bound)")
        config = ReplayConfig(
            source=source, target=parse_address(to), format=formats[export_format.lower()], speed=parse_speed(speed),
            passes=None if loop else 1, max_rate=max_rate or None, allow_remote=allow_remote, domain=domain,
            template_every=template_every, max_datagram=max_datagram,
            read=_read_options(input_format, mapping, timezone),
        )
        flows = load_flows(source, config.read)
        with Progress(TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[datagrams]:>9,} datagrams {task.fields[rate]:>10,.0f} flows/s"),
                      TimeElapsedColumn(), console=err, disable=quiet or as_json) as progress:
            task = progress.add_task("replay", total=None, datagrams=0, rate=0.0)

            def update(s) -> None:  # type: ignore[no-untyped-def]
                progress.update(task, completed=s.flows_sent, total=None if loop else s.records_per_pass,
                                datagrams=s.datagrams_sent, rate=s.flows_sent / max(s.seconds, 1e-9))

            summary = replay(config, progress=update, stop=stop, flows=flows)
    except (ReplayError, FormatError, ValueError, FileNotFoundError, OSError) as e:
        raise _fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
        return
    # What the format cannot carry was logged as a warning when the flows were prepared.
    ended = "stopped" if summary.stopped else f"{summary.passes} pass{'es' if summary.passes != 1 else ''}"
    if summary.reverse_records:
        ended += f"; {summary.reverse_records:,} bidirectional flows split into two records"
    out.print(f"replayed {summary.flows_read:,} flows of {source} to udp://{summary.target} as {summary.format} ({ended}): "
              f"{summary.flows_sent:,} flow records in {summary.datagrams_sent:,} datagrams ({summary.bytes_sent:,} bytes), "
              f"{summary.seconds:.2f} s, {summary.flows_sent / max(summary.seconds, 1e-9):,.0f} flows/s"
              + (f", at most {summary.behind_s:.2f} s behind the flows' clock" if summary.behind_s >= 0.5 else ""), highlight=False)


@app.command("detect")
def detect_cmd(
    detector: Annotated[Path, typer.Argument(help="A detector directory (from `netflowgen finetune`).")],
    listen: Annotated[str, typer.Option(help="UDP HOST:PORT to receive NetFlow v5/v9/IPFIX on (port 0: any free port).")] = "127.0.0.1:2055",
    alerts: Annotated[Optional[Path], typer.Option(help="Append alerts here as JSON lines (default: stdout).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also keep the received flows as a dataset here.")] = None,
    api: Annotated[Optional[str], typer.Option(help="Serve a status page at / and /health, /metrics, /alerts, /top, /exporters on this HOST:PORT, e.g. 127.0.0.1:9106.")] = None,
    grace: Annotated[float, typer.Option(help="Steps a step stays open for flows that arrive late.")] = 1.0,
    idle_steps: Annotated[int, typer.Option(help="Steps without traffic after which a node is forgotten.")] = 60,
    queue_steps: Annotated[int, typer.Option(help="Closed steps waiting to be scored at most; one more drops the oldest (counted).")] = 8,
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds (default: at Ctrl-C or SIGTERM).")] = None,
    flow_filter: FilterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score live flow export: every active node at each step boundary, alerts as JSON lines."""
    from netflowgen.collect.server import parse_address
    from netflowgen.detect.live import LiveConfig, LiveDetector

    stop = _stop_on_signals()
    try:
        # With --filter the detector sees, and --out keeps, only the matching flows.
        live = LiveDetector(LiveConfig(detector, listen=parse_address(listen), out=out_dir, alerts=alerts,
                                       api=parse_address(api) if api else None, grace_steps=grace,
                                       idle_steps=idle_steps, filter=flow_filter, queue_steps=queue_steps))
        live.start()
    except (ValueError, OSError, FileNotFoundError) as e:
        raise _fail(str(e)) from None
    host, port = live.address
    ready = f"listening on udp://{host}:{port}, scoring every {live.step.total_seconds():g} s step with {detector}"
    if live.api_address:
        ready += f", API on http://{live.api_address[0]}:{live.api_address[1]}/health (status page at /)"
    err.print(ready, highlight=False, soft_wrap=True)
    started = time.monotonic()
    while (duration is None or time.monotonic() - started < duration) and not stop.wait(0.25):
        if not live.healthy():
            break
    try:
        summary = live.stop()
    except (RuntimeError, OSError) as e:
        raise _fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps(summary, default=str))
        return
    dropped = summary["dropped"]
    why = ", ".join(f"{reason} {n:,}" for reason, n in dropped["node_steps"].items())
    err.print(f"{summary['node_steps_scored']:,} node-steps scored, {summary['alerts']:,} alerts, "
              f"{summary['late_flows']:,} late flows, {summary['score_errors']:,} scoring errors, "
              f"{sum(dropped['node_steps'].values()):,} node-steps not scored" + (f" ({why})" if why else "")
              + f", {sum(dropped['flows'].values()):,} flows left out of detection", highlight=False)


@app.command("formats")
def formats_cmd(as_json: JsonOpt = False) -> None:
    """List the input formats and how each is recognised."""
    rows = [{"name": n, "description": get_format(n).description} for n in format_names()]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    t = Table("format", "description")
    for r in rows:
        t.add_row(r["name"], r["description"])
    out.print(t)


@app.command("simulate")
def simulate_cmd(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to create.")],
    nodes: Annotated[int, typer.Option(help="Local nodes of the simulated network (clients, servers, IoT).")] = 200,
    days: Annotated[float, typer.Option(help="Days to simulate, in whole hours (0.25 = 6 hours).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed: the same options and seed give the same files, byte for byte.")] = 0,
    start: Annotated[str, typer.Option(help="Start (UTC): a date such as 2026-01-05 (a Monday) or an ISO time on a whole hour.")] = "2026-01-05",
    attacks: Annotated[int, typer.Option(help="DDoS attacks: SYN flood, DNS reflection, NTP reflection, ICMP flood, in turn.")] = 4,
    scans: Annotated[int, typer.Option(help="Port scans (label 'scan', not DDoS).")] = 1,
    flows_per_node_hour: Annotated[float, typer.Option(help="Mean benign flows per node and hour, over a whole week.")] = 60.0,
    unidirectional: Annotated[bool, typer.Option("--unidirectional", help="NetFlow-like: one record per direction (rev_* = 0) instead of one per connection.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate SYNTHETIC flows of a simulated network with labeled attacks (a flow dataset as
    ingest writes one, with the ground truth in attacks.csv)."""
    from netflowgen.simulate import ATTACKS_NAME, AttackConfig, SimConfig, simulate

    _terminate_as_interrupt()
    try:
        hours = round(days * 24)
        if hours < 1 or abs(hours - days * 24) > 1e-6:
            raise ValueError(f"--days {days}: give a whole number of hours, at least one (e.g. 0.25 = 6 hours)")
        try:
            when = datetime.fromisoformat(start)
        except ValueError:
            raise ValueError(f"--start {start!r}: not a date or ISO time (e.g. 2026-01-05 or 2026-01-05T08:00)") from None
        config = SimConfig(
            nodes=nodes, hours=hours, start=when, seed=seed, flows_per_node_hour=flows_per_node_hour,
            attacks=AttackConfig(count=attacks, scans=scans), bidirectional=not unidirectional,
        )
        started = time.perf_counter()
        with Progress(TextColumn("[bold]simulate[/] [yellow](synthetic)[/]"), BarColumn(),
                      TextColumn("{task.fields[flows]:>13,} flows  {task.fields[rate]:>10,.0f} flows/s"),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                      console=err, disable=quiet or as_json) as progress:
            task = progress.add_task("simulate", total=None, flows=0, rate=0.0)

            def update(done: int, expected: int) -> None:
                rate = done / max(time.perf_counter() - started, 1e-9)
                progress.update(task, completed=min(done, expected), total=max(expected, 1), flows=done, rate=rate)

            summary = simulate(config, out_dir, progress=update, overwrite=overwrite)
            progress.update(task, completed=progress.tasks[0].total or 1)
    except KeyboardInterrupt:
        raise _fail(f"interrupted; nothing was written to {out_dir}", 130) from None
    except (ValueError, FileExistsError, OSError) as e:
        raise _fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
        return
    t = Table(title=f"SYNTHETIC flows in {summary.out} (netflowgen simulate, seed {summary.seed})",
              show_header=False, title_justify="left")
    t.add_row("nodes", f"{summary.nodes:,} (" + ", ".join(f"{k} {v:,}" for k, v in summary.nodes_by_role.items()) + ")")
    t.add_row("time span", f"{summary.first_start} .. {summary.last_end} ({summary.hours} h)")
    t.add_row("flows", f"{summary.rows_written:,} ({'bidirectional' if summary.bidirectional else 'one per direction'})")
    t.add_row("packets / bytes", f"{summary.packets:,} / {summary.bytes:,}")
    for label, n in summary.label_counts.items():
        t.add_row("  label " + label, f"{n:,}")
    for a in summary.attacks:
        t.add_row(f"  {a['label']} {a['attack_id']}", f"{a['scenario']} on {a['victim']}, {a['start']} .. {a['end']}, "
                  f"peak {a['peak_flows_per_s']:,.0f} flows/s, {a['flows']:,} flows")
    t.add_row("partitions", str(len(summary.partitions)))
    t.add_row("time", f"{summary.seconds:.2f} s ({summary.rows_written / max(summary.seconds, 1e-9):,.0f} flows/s)")
    out.print(t)
    out.print(f"[bold yellow]SYNTHETIC[/] data (generated, not captured); ground truth: {Path(summary.out) / ATTACKS_NAME}")


@app.command("demo")
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where to write the simulated flows and the report.")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="A tiny version (seconds; for tests).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The whole job on built-in SYNTHETIC traffic: simulate, ingest, series, pre-train, fine-tune
    with a handful of labels, compare with the baselines, write the report."""
    from netflowgen.demo import run_demo
    from netflowgen.report.suite import main_table

    _terminate_as_interrupt()
    started = time.perf_counter()
    try:
        with _stage_progress("demo", as_json) as say:
            done = run_demo(out_dir, quick, progress=say)
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    except (ValueError, OSError) as e:
        raise _fail(str(e)) from None
    seconds = round(time.perf_counter() - started, 1)
    if as_json:
        out.print_json(json.dumps({"report": str(done["report"]), "markdown": str(done["markdown"]),
                                   "flows": str(done["flows"]), "seconds": seconds, "timings": done["timings"],
                                   "table": main_table(done["results"])}))
        return
    _print_suite_summary(done["results"], "demo on SYNTHETIC traffic: test PR-AUC, 95% intervals over victims",
                         done["timings"], seconds)
    _say(f"Report: {done['report'].resolve()} (open it in a browser; report.md beside it has every metric)")
    _say(f"Simulated flows: {done['flows']}")


def _say(text: str) -> None:
    """A line on stdout that is never wrapped or cut, whatever the width: logs and pipes keep it whole."""
    out.print(text, soft_wrap=True, highlight=False, markup=False)


@contextlib.contextmanager
def _stage_progress(label: str, quiet: bool) -> Iterator[Callable[[str], None]]:
    """A callback for a long job's stage messages: a live status line on a terminal; elsewhere
    (a log, ``tee``, CI) one timestamped line per message on stderr, so the progress is kept."""
    started = time.perf_counter()
    if quiet:
        yield lambda msg: None
    elif err.is_terminal:
        with Progress(TextColumn(f"[bold]{label}"), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=err) as progress:
            task = progress.add_task("", total=None)
            yield lambda msg: progress.update(task, description=msg)
    else:
        yield lambda msg: err.print(f"{label} {time.perf_counter() - started:7.1f} s  {msg}", soft_wrap=True,
                                    highlight=False, markup=False)


def _print_suite_summary(results: dict, title: str, timings: dict[str, float], seconds: float) -> None:  # type: ignore[type-arg]
    from netflowgen.report.suite import summary_text

    _say(title)
    _say("")
    _say(summary_text(results).rstrip())
    _say("")
    _say("time per stage:")
    for stage, t in timings.items():
        _say(f"  {t:7.1f} s  {stage}")
    _say(f"  {seconds:7.1f} s  in all")


def main() -> None:  # pragma: no cover
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
