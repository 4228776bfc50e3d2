"""Verbs on flow records: ingest, inspect, formats, inject and simulate."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from netflowgen.cli.common import (
    Engine,
    EngineOpt,
    FilterOpt,
    FormatOpt,
    JsonOpt,
    MappingOpt,
    MasterOpt,
    OverwriteOpt,
    QuietOpt,
    TimezoneOpt,
    INPUT_ERRORS,
    app,
    default,
    duration_text,
    failing,
    nothing_written,
    out,
    print_json,
    progress_bar,
    read_options,
    terminate_as_interrupt,
)
from netflowgen.dataset.ingest import IngestConfig, IngestSummary, ingest
from netflowgen.simulate.inject import InjectConfig
from netflowgen.dataset.inspect import Inspection, inspect_path
from netflowgen.read import RejectedRow, format_names, get_format
from netflowgen.read.source import consumed_bytes
from netflowgen.series import parse_step
from netflowgen.series.nodes import DEFAULT_LOCAL_PREFIXES
from netflowgen.simulate.config import AttackConfig, SimConfig


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
    with progress_bar("[bold]ingest", "{task.fields[rows]:>12,} rows  {task.fields[rate]:>10,.0f} rows/s",
                      quiet=quiet, counts="bytes") as progress:
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
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    flow_filter: FilterOpt = None,
    engine: EngineOpt = Engine.POLARS,
    master: MasterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Read flow records into a canonical Parquet dataset (by day), with a rejects file."""
    terminate_as_interrupt()
    with failing(nothing_written(out_dir), INPUT_ERRORS + (RejectedRow, RuntimeError)):
        config = IngestConfig(tuple(inputs), out_dir, read_options(fmt, mapping, timezone, flow_filter), strict, overwrite)
        if engine is Engine.SPARK:
            summary = _ingest_spark(config, master)
        elif master is not None:
            raise ValueError("--master applies to --engine spark")
        else:
            summary = _run_ingest(config, quiet or as_json)
    if as_json:
        print_json(summary.to_dict())
    else:
        _print_ingest(summary)


def _ingest_spark(config: IngestConfig, master: str | None) -> IngestSummary:
    from netflowgen.dataset.spark import ingest_spark
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
    with failing():
        result = inspect_path(path, read_options(fmt, mapping, timezone, flow_filter), top=top)
    if as_json:
        print_json(result.to_dict())
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


@app.command("formats")
def formats_cmd(as_json: JsonOpt = False) -> None:
    """List the input formats and how each is recognised."""
    rows = [{"name": n, "description": get_format(n).description} for n in format_names()]
    if as_json:
        print_json(rows)
        return
    t = Table("format", "description")
    for r in rows:
        t.add_row(r["name"], r["description"])
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
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = default(InjectConfig, "seed"),
    label: Annotated[str, typer.Option(help="label of the injected flows.")] = default(InjectConfig, "label"),
    attack_type: Annotated[Optional[list[str]], typer.Option("--attack-type", help="label_detail of the injected flows: one for all or one per --attack (default: each file's stem).")] = None,
    attack_victim: Annotated[Optional[str], typer.Option("--attack-victim", help="The captures' own victim (default: the address receiving most of their flows).")] = None,
    prefix: Annotated[Optional[list[str]], typer.Option("--prefix", help="Extra local prefix that --victims draws from (repeatable).")] = None,
    rate_step: Annotated[str, typer.Option(help="Step over which Nx intensities count flows, e.g. 60s, 5m.")] = duration_text(default(InjectConfig, "rate_step")),
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    flow_filter: Annotated[Optional[str], typer.Option("--filter", help="Keep only the background flows matching this nfdump filter.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Place real attack flows onto benign background flows at chosen victims, times and intensities."""
    from netflowgen.simulate.inject import INJECTIONS_NAME, Intensity, inject, parse_time

    terminate_as_interrupt()
    with failing(nothing_written(out_dir)):
        config = InjectConfig(
            background=background, attacks=tuple(attack), background_filter=flow_filter, victims=tuple(victim or ()), n_victims=victims,
            times=tuple(parse_time(t) for t in at or ()), n_times=times,
            intensities=tuple(Intensity.parse(i) for i in intensity or ("1",)), seed=seed, label=label,
            attack_types=tuple(attack_type or ()), attack_victim=attack_victim,
            local_prefixes=DEFAULT_LOCAL_PREFIXES + tuple(prefix or ()), rate_step=parse_step(rate_step),
            overwrite=overwrite,
        )
        started = time.perf_counter()
        with progress_bar("[bold]{task.description}", "{task.fields[rate]:>10,.0f}/s", quiet=quiet or as_json) as progress:
            tasks: dict[str, int] = {}

            def update(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total or None, rate=0.0)
                rate = done / max(time.perf_counter() - started, 1e-9)
                progress.update(tasks[stage], completed=done, total=total or None, rate=rate)

            summary = inject(config, out_dir, progress=update)
    if as_json:
        print_json(summary.to_dict())
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


@app.command("simulate")
def simulate_cmd(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to create.")],
    nodes: Annotated[int, typer.Option(help="Local nodes of the simulated network (clients, servers, IoT).")] = default(SimConfig, "nodes"),
    days: Annotated[float, typer.Option(help="Days to simulate, in whole hours (0.25 = 6 hours).")] = default(SimConfig, "hours") / 24,
    seed: Annotated[int, typer.Option(help="Seed: the same options and seed give the same files, byte for byte.")] = default(SimConfig, "seed"),
    start: Annotated[str, typer.Option(help="Start (UTC): a date such as 2026-01-05 (a Monday) or an ISO time on a whole hour.")] = default(SimConfig, "start").date().isoformat(),
    attacks: Annotated[int, typer.Option(help="DDoS attacks: SYN flood, DNS reflection, NTP reflection, ICMP flood, in turn.")] = default(AttackConfig, "count"),
    scans: Annotated[int, typer.Option(help="Port scans (label 'scan', not DDoS).")] = default(AttackConfig, "scans"),
    flows_per_node_hour: Annotated[float, typer.Option(help="Mean benign flows per node and hour, over a whole week.")] = default(SimConfig, "flows_per_node_hour"),
    unidirectional: Annotated[bool, typer.Option("--unidirectional", help="NetFlow-like: one record per direction (rev_* = 0) instead of one per connection.")] = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate SYNTHETIC flows of a simulated network with labeled attacks (a flow dataset as
    ingest writes one, with the ground truth in attacks.csv)."""
    from netflowgen.simulate import ATTACKS_NAME, simulate

    terminate_as_interrupt()
    with failing(nothing_written(out_dir)):
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
        with progress_bar("[bold]simulate[/] [yellow](synthetic)[/]", "{task.fields[flows]:>13,} flows  {task.fields[rate]:>10,.0f} flows/s",
                          quiet=quiet or as_json, counts=None) as progress:
            task = progress.add_task("simulate", total=None, flows=0, rate=0.0)

            def update(done: int, expected: int) -> None:
                rate = done / max(time.perf_counter() - started, 1e-9)
                progress.update(task, completed=min(done, expected), total=max(expected, 1), flows=done, rate=rate)

            summary = simulate(config, out_dir, progress=update, overwrite=overwrite)
            progress.update(task, completed=progress.tasks[0].total or 1)
    if as_json:
        print_json(summary.to_dict())
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
