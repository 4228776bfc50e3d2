"""What every verb shares: the app, the consoles, the common options, one error and interrupt
handler, one progress-bar factory, one JSON printer, and option defaults read from the config
dataclasses (so the CLI never carries a second copy of a default)."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from netflowgen.read import FormatError, ReadOptions, get_format

app = typer.Typer(
    help="Pre-train a generative model on network flow records and detect attacks with few labels.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()

FormatOpt = Annotated[Optional[str], typer.Option("--format", "-f", help="Input format instead of detecting it (see `netflowgen formats`).")]
MappingOpt = Annotated[Optional[Path], typer.Option("--mapping", "-m", help="TOML column mapping for other CSV layouts, or a shipped mapping name (e.g. westermo).")]
TimezoneOpt = Annotated[str, typer.Option("--timezone", "--tz", help="Time zone of local-time timestamps (Argus, CICFlowMeter, nfdump csv), e.g. Europe/Prague.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the figures as JSON on stdout.")]
FilterOpt = Annotated[Optional[str], typer.Option("--filter", help="Only flows matching this nfdump filter, e.g. 'proto tcp and dst port 80' (see README: filters).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


class Engine(str, enum.Enum):
    """What runs a command: this machine (Polars) or a Spark cluster."""

    POLARS = "polars"
    SPARK = "spark"


EngineOpt = Annotated[Engine, typer.Option(help="polars: this machine; spark: PySpark (pip install 'netflowgen[spark]').")]
MasterOpt = Annotated[Optional[str], typer.Option(help="Spark master for --engine spark: local[N], spark://HOST:PORT, yarn (default: spark-submit's, else local[*]).")]

#: What a command's library call raises for bad input or a failed write: one error line each.
INPUT_ERRORS: tuple[type[BaseException], ...] = (FormatError, ValueError, FileExistsError, FileNotFoundError, OSError)


def default(config: type, name: str) -> Any:
    """The default of a config dataclass's field, as a CLI option's default: one place defines it."""
    for f in dataclasses.fields(config):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            break
    raise AttributeError(f"{config.__name__}.{name} has no default")


def duration_text(value: timedelta) -> str:
    """A timedelta as the CLI spells a step (60s, 5m, 1h, 1d): the largest whole unit."""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def address_text(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_options(fmt: str | None, mapping: Path | None, timezone: str, flow_filter: str | None = None) -> ReadOptions:
    if fmt is not None:
        get_format(fmt)  # unknown names fail here, with the list of known ones
    return ReadOptions(format=fmt, mapping=mapping, timezone=timezone, filter=flow_filter)


def terminate_as_interrupt() -> None:
    # `kill` must clean up like Ctrl-C does: no half-written dataset is left behind.
    def handler(signum, frame):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM, for the long-running servers: a KeyboardInterrupt would
    land in whatever code the main thread runs, and Polars raises a pending one in the worker
    thread that happens to be collecting, killing the decoder mid-batch."""
    stop = threading.Event()

    def handler(signum, frame):  # type: ignore[no-untyped-def]
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def fail(message: str, code: int = 1) -> typer.Exit:
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


@contextlib.contextmanager
def failing(interrupted: str | None = "interrupted", errors: tuple[type[BaseException], ...] = INPUT_ERRORS) -> Iterator[None]:
    """The one error handler of the verbs: Ctrl-C or SIGTERM (with ``terminate_as_interrupt``)
    ends with exit 130 and ``interrupted`` (what was or was not written), and each of ``errors``
    with one error line and exit 1, never a traceback. ``interrupted=None`` leaves an interrupt
    alone (the servers stop on an event instead)."""
    try:
        yield
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        raise fail(interrupted, 130) from None
    except errors as e:
        raise fail(str(e)) from None


def nothing_written(path: Path) -> str:
    return f"interrupted; nothing was written to {path}"


def print_json(value: object) -> None:
    """The figures as JSON on stdout (``--json``): dates and paths as strings."""
    out.print_json(json.dumps(value, default=str))


def progress_bar(label: str, stats: str = "", *, quiet: bool, counts: str | None = "items", bar: bool = True,
                 eta: bool = True) -> Progress:
    """The progress bar of a long verb, on stderr: label, bar, done/total (``counts``: ``items``,
    ``bytes`` or None), the verb's own live figures (``stats``, a Rich format over the task's
    fields), elapsed time and ETA. Disabled by ``quiet`` (``--quiet`` and ``--json``)."""
    columns: list[ProgressColumn] = [TextColumn(label)]
    if bar:
        columns.append(BarColumn())
    if counts == "items":
        columns.append(MofNCompleteColumn())
    elif counts == "bytes":
        columns.append(DownloadColumn())
    if stats:
        columns.append(TextColumn(stats))
    columns.append(TimeElapsedColumn())
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=err, disable=quiet)


def say(text: str) -> None:
    """A line on stdout that is never wrapped or cut, whatever the width: logs and pipes keep it whole."""
    out.print(text, soft_wrap=True, highlight=False, markup=False)


@contextlib.contextmanager
def stage_progress(label: str, quiet: bool) -> Iterator[Callable[[str], None]]:
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
