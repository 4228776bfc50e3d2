"""Verbs on live flow export: collect, replay and detect."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from netflowgen.cli.common import (
    FilterOpt,
    INPUT_ERRORS,
    JsonOpt,
    MappingOpt,
    QuietOpt,
    TimezoneOpt,
    address_text,
    app,
    default,
    duration_text,
    err,
    failing,
    out,
    print_json,
    progress_bar,
    read_options,
    stop_on_signals,
)
from netflowgen.collect.online import LATE_POLICIES
from netflowgen.collect.replay import ReplayConfig
from netflowgen.collect.server import CollectorConfig
from netflowgen.detect.live import LiveConfig
from netflowgen.series import parse_step

#: The servers stop on an event (stop_on_signals), not on an interrupt raised in their code.
SERVER_ERRORS = INPUT_ERRORS + (RuntimeError,)


@app.command("collect")
def collect_cmd(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Flow dataset directory to write (created, or continued if collect wrote it).")],
    listen: Annotated[str, typer.Option(help="UDP HOST:PORT to receive NetFlow v5/v9/IPFIX on (port 0: any free port).")] = address_text(default(CollectorConfig, "listen")),
    rotate: Annotated[str, typer.Option(help="A new Parquet file per this interval, e.g. 60s, 5m.")] = duration_text(default(CollectorConfig, "rotate")),
    metrics: Annotated[Optional[str], typer.Option(help="Serve Prometheus /metrics and /health on this HOST:PORT, e.g. 127.0.0.1:9105.")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds (default: at Ctrl-C or SIGTERM).")] = None,
    rcvbuf: Annotated[int, typer.Option(help="Kernel socket buffer to ask for, bytes.")] = default(CollectorConfig, "rcvbuf"),
    max_buffer_flows: Annotated[int, typer.Option(help="Write a file early when this many flows wait in memory.")] = default(CollectorConfig, "max_buffer_flows"),
    backlog_bytes: Annotated[int, typer.Option(help="Bytes of received datagrams held ahead of the decoder.")] = default(CollectorConfig, "backlog_bytes"),
    max_exporters: Annotated[int, typer.Option(help="Source addresses with their own counters; the quietest beyond share one \"other\" entry.")] = default(CollectorConfig, "max_exporters"),
    compression: Annotated[str, typer.Option(help="Parquet compression of the files: zstd, lz4 (a little faster, larger files), snappy or none.")] = default(CollectorConfig, "compression"),
    flow_filter: FilterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Receive NetFlow v5/v9/IPFIX export and write it as a flow dataset, until stopped."""
    from netflowgen.collect.server import Collector, parse_address

    stop = stop_on_signals()
    with failing(None, SERVER_ERRORS):
        config = CollectorConfig(
            out=out_dir, listen=parse_address(listen), rotate=parse_step(rotate),
            metrics=parse_address(metrics) if metrics else None, rcvbuf=rcvbuf, max_buffer_flows=max_buffer_flows,
            backlog_bytes=backlog_bytes, filter=flow_filter, max_exporters=max_exporters, compression=compression,
        )
        if duration is not None and duration <= 0:
            raise ValueError("--duration must be positive")
        collector = Collector(config)
        collector.start()
    host, port = collector.address
    ready = f"listening on udp://{host}:{port} (socket buffer {collector.rcvbuf_granted:,} bytes), writing {out_dir}"
    if collector.metrics_address:
        ready += f", metrics on http://{collector.metrics_address[0]}:{collector.metrics_address[1]}/metrics"
    err.print(ready, highlight=False, soft_wrap=True)
    started = time.monotonic()
    try:
        with progress_bar("[bold]collect", "{task.fields[packets]:>10,} packets {task.fields[flows]:>12,} flows "
                          "{task.fields[rate]:>10,.0f} flows/s {task.fields[errors]:>6,} errors {task.fields[files]:>5,} files",
                          quiet=as_json, counts=None, bar=bool(duration), eta=bool(duration)) as progress:
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
        with failing(None, SERVER_ERRORS):
            summary = collector.stop()
    if as_json:
        print_json(summary)
        return
    t = Table("exporter", "packets", "flows", "rejected", "errors", "lost", "sequence gaps", "sampled (1 in N: records)", title=(
        f"collected into {out_dir}: {summary['rows_written']:,} flows in {summary['files']} files, "
        f"{summary['seconds']:.1f} s, kernel drops {summary['kernel_drops']}"), title_justify="left")
    for exporter, s in summary["exporters"].items():
        errors = {**s["packet_errors"], **{f"set: {k}": v for k, v in s["set_errors"].items()}}
        lost = ", ".join(f"{n:,} {unit}" for n, unit in ((s["lost_records"], "records"), (s["lost_packets"], "packets")) if n) or "0"
        t.add_row(exporter, f"{s['packets']:,}", f"{s['flows']:,}", f"{sum(s['rejected'].values()):,}",
                  ", ".join(f"{k} {v:,}" for k, v in errors.items()) or "0", lost, f"{s['sequence_gaps']:,}",
                  ", ".join(f"1 in {k}: {v:,}" for k, v in s["sampled"].items()) or "none")
    out.print(t)


@app.command("replay")
def replay_cmd(
    source: Annotated[Path, typer.Argument(help="A flow dataset (from ingest or collect), or any supported input file or directory.")],
    to: Annotated[str, typer.Option("--to", help="UDP HOST:PORT of the collector (loopback unless --allow-remote).")],
    export_format: Annotated[str, typer.Option("--format", help="Export protocol: v5 (IPv4 only), v9 or ipfix.")] = default(ReplayConfig, "format").value,
    speed: Annotated[str, typer.Option(help="On the flows' own clock: 1x (real time), 10x, ... or max (only --max-rate bounds it).")] = "1x",
    loop: Annotated[bool, typer.Option("--loop", help="Send the flows again and again (each pass later by their span, rounded up to a minute) until stopped.")] = False,
    max_rate: Annotated[float, typer.Option(help="Flows per second at most (0: no bound).")] = default(ReplayConfig, "max_rate"),
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a target that is not a loopback address.")] = False,
    domain: Annotated[int, typer.Option(help="Observation domain: v5 engine type/id (high/low byte), v9 source id, IPFIX domain id.")] = default(ReplayConfig, "domain"),
    template_every: Annotated[int, typer.Option(help="Datagrams between template refreshes (v9, IPFIX).")] = default(ReplayConfig, "template_every"),
    max_datagram: Annotated[int, typer.Option(help="Largest datagram payload, bytes.")] = default(ReplayConfig, "max_datagram"),
    input_format: Annotated[Optional[str], typer.Option("--input-format", help="Input format instead of detecting it (see `netflowgen formats`).")] = None,
    mapping: MappingOpt = None,
    timezone: TimezoneOpt = "UTC",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Send flows as NetFlow v5, v9 or IPFIX export to a collector, paced on their own clock."""
    from netflowgen.collect.export import ExportFormat
    from netflowgen.collect.replay import ReplayError, load_flows, parse_speed, replay
    from netflowgen.collect.server import parse_address

    stop = stop_on_signals()
    with failing(None, INPUT_ERRORS + (ReplayError,)):
        formats = {f.value: f for f in ExportFormat}
        if export_format.lower() not in formats:
            raise ValueError(f"unknown export format {export_format!r}; use one of {', '.join(formats)}")
        if max_rate < 0:
            raise ValueError("--max-rate must be positive (0: no bound)")
        config = ReplayConfig(
            source=source, target=parse_address(to), format=formats[export_format.lower()], speed=parse_speed(speed),
            passes=None if loop else 1, max_rate=max_rate or None, allow_remote=allow_remote, domain=domain,
            template_every=template_every, max_datagram=max_datagram,
            read=read_options(input_format, mapping, timezone),
        )
        flows = load_flows(source, config.read)
        with progress_bar("[bold]replay", "{task.fields[datagrams]:>9,} datagrams {task.fields[rate]:>10,.0f} flows/s",
                          quiet=quiet or as_json, eta=False) as progress:
            task = progress.add_task("replay", total=None, datagrams=0, rate=0.0)

            def update(s) -> None:  # type: ignore[no-untyped-def]
                progress.update(task, completed=s.flows_sent, total=None if loop else s.records_per_pass,
                                datagrams=s.datagrams_sent, rate=s.flows_sent / max(s.seconds, 1e-9))

            summary = replay(config, progress=update, stop=stop, flows=flows)
    if as_json:
        print_json(summary.to_dict())
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
    listen: Annotated[str, typer.Option(help="UDP HOST:PORT to receive NetFlow v5/v9/IPFIX on (port 0: any free port).")] = address_text(default(LiveConfig, "listen")),
    alerts: Annotated[Optional[Path], typer.Option(help="Append alerts here as JSON lines (default: stdout).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also keep the received flows as a dataset here.")] = None,
    api: Annotated[Optional[str], typer.Option(help="Serve a status page at / and /health, /metrics, /alerts, /top, /exporters on this HOST:PORT, e.g. 127.0.0.1:9106.")] = None,
    grace: Annotated[float, typer.Option(help="Steps a step stays open for flows that arrive late.")] = default(LiveConfig, "grace_steps"),
    late: Annotated[str, typer.Option(help="A flow that arrives after its step closed: fold (counted into the first open step, as exporters "
                                           "send long flows at their end) or drop (counted, left out).")] = default(LiveConfig, "late"),
    idle_steps: Annotated[int, typer.Option(help="Steps without traffic after which a node is forgotten.")] = default(LiveConfig, "idle_steps"),
    clock_rate: Annotated[float, typer.Option(help="While no newer flow end arrives, time moves on by the wall clock at this many flow seconds "
                                                   "a second, far enough to score the last flows' step: 1 for live export, N for a replay "
                                                   "at Nx, 0 to move it by flow ends only.")] = default(LiveConfig, "clock_rate"),
    queue_steps: Annotated[int, typer.Option(help="Closed steps waiting to be scored at most; one more drops the oldest (counted).")] = default(LiveConfig, "queue_steps"),
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds (default: at Ctrl-C or SIGTERM).")] = None,
    flow_filter: FilterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score live flow export: every active node at each step boundary, alerts as JSON lines."""
    from netflowgen.collect.server import parse_address
    from netflowgen.detect.live import LiveDetector

    stop = stop_on_signals()
    with failing(None, SERVER_ERRORS):
        if late not in LATE_POLICIES:
            raise ValueError(f"--late {late!r}: use one of {', '.join(LATE_POLICIES)}")
        # With --filter the detector sees, and --out keeps, only the matching flows.
        live = LiveDetector(LiveConfig(detector, listen=parse_address(listen), out=out_dir, alerts=alerts,
                                       api=parse_address(api) if api else None, grace_steps=grace,
                                       late=late, idle_steps=idle_steps, filter=flow_filter, queue_steps=queue_steps,
                                       clock_rate=clock_rate))
        live.start()
    host, port = live.address
    ready = f"listening on udp://{host}:{port}, scoring every {live.step.total_seconds():g} s step with {detector}"
    if live.api_address:
        ready += f", API on http://{live.api_address[0]}:{live.api_address[1]}/health (status page at /)"
    err.print(ready, highlight=False, soft_wrap=True)
    started = time.monotonic()
    while (duration is None or time.monotonic() - started < duration) and not stop.wait(0.25):
        if not live.healthy():
            break
    with failing(None, SERVER_ERRORS):
        summary = live.stop()
    if as_json:
        print_json(summary)
        return
    dropped = summary["dropped"]
    why = ", ".join(f"{reason} {n:,}" for reason, n in dropped["node_steps"].items())
    err.print(f"{summary['node_steps_scored']:,} node-steps scored, {summary['alerts']:,} alerts, "
              f"{summary['late_flows']:,} late flows, {summary['score_errors']:,} scoring errors, "
              f"{sum(dropped['node_steps'].values()):,} node-steps not scored" + (f" ({why})" if why else "")
              + f", {sum(dropped['flows'].values()):,} flows left out of detection", highlight=False)
