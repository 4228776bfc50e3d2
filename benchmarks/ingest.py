"""Ingest speed and memory, as ratios against references measured in the same run.

Figures (each needs the reader module of its format; missing ones are skipped and listed):

1. Text formats (Zeek TSV, Argus binetflow, nfdump CSV, CICFlowMeter CSV, nProbe NetFlow-v3
   CSV, a Westermo-like CSV read through the shipped ``westermo`` mapping): rows/s of
   ``netflowgen ingest`` (read + validate + write Parquet) on a synthetic file in that format,
   against rows/s of a plain ``polars.read_csv`` of the same file (types as Polars infers them,
   no validation). Aim: ratio >= 0.5.
2. nfcapd: rows/s of ``netflowgen ingest`` on a directory of nfcapd files, against
   ``nfdump -r FILE -o csv > /dev/null`` over the same files. The files come from a synthetic pcap
   of distinct flows turned into nfcapd files by the real ``nfpcapd``. Aim: ratio >= 1.0.
3. Memory: peak RSS of ``netflowgen ingest`` on a ``--rows`` Zeek TSV (10 million rows by
   default), against the aim of 2 GB. Its flows come from the built-in simulator
   (``netflowgen.simulate``: a network of clients, servers and IoT devices over three days, with
   its attacks), written as Zeek would log them.

Every command measured runs as its own process. Ingest rows/s use the time the CLI reports for
the ingest itself (start-up left out; the wall time of the command is in the JSON too). Both
sides are also given per second of CPU time (user + system, all threads and child programs;
for ingest less the CPU time of a start-up run on a ten-row file): on a machine busy with other
work the wall-time ratio drops, the CPU ratio holds up better. The 1-minute load average at the
end of each run is recorded.

The synthetic flows of figures 1 and 2 are seeded (``--seed``); ``synthetic.py`` says what they hold.

    .venv/bin/python benchmarks/ingest.py                 # full run (about 6 minutes on 2 cores)
    .venv/bin/python benchmarks/ingest.py --rows 200000   # quick run
    .venv/bin/python benchmarks/ingest.py --formats zeek,nfcapd --json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness import BenchmarkError, machine, netflowgen_command, run_measured
from synthetic import TEXT_FORMATS, TextFormat, simulated_flows, write_pcap, write_text

@dataclass
class IngestRun:
    rows_read: int
    rows_written: int
    rows_rejected: int
    rejects_by_reason: dict[str, int]
    ingest_seconds: float
    """Wall time of the ingest itself, as the CLI reports it (start-up left out)."""
    wall_seconds: float
    """Wall time of the whole command, interpreter start-up included."""
    cpu_seconds: float
    """CPU time of the command (external programs it ran included) less that of a start-up run."""
    max_rss_bytes: int
    output_bytes: int
    load_1min: float
    """Load average when the run ended: above the core count, other work competed for the CPUs."""
    rows_per_s: float = 0.0
    rows_per_cpu_s: float = 0.0

    def __post_init__(self) -> None:
        self.rows_per_s = self.rows_read / self.ingest_seconds if self.ingest_seconds else 0.0
        self.rows_per_cpu_s = self.rows_read / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


_startup_cpu: list[float] = []


def startup_cpu_seconds(work: Path) -> float:
    """CPU time of ``netflowgen ingest`` on a ten-row file: interpreter, imports, detection."""
    if not _startup_cpu:
        fmt = TEXT_FORMATS["zeek"]
        tiny = work / "startup" / fmt.file_name
        tiny.parent.mkdir(parents=True, exist_ok=True)
        write_text(fmt, tiny, 10, 0, lambda k: None)
        runs = [_ingest_once([tiny], tiny.parent / "out", (), None, 0.0) for _ in range(3)]
        _startup_cpu.append(min(r.cpu_seconds for r in runs))
    return _startup_cpu[0]


def _ingest_once(
    inputs: list[Path], out: Path, extra: tuple[str, ...], profile: Path | None, startup: float
) -> IngestRun:
    shutil.rmtree(out, ignore_errors=True)
    if profile is None:
        cmd = [*netflowgen_command(), "ingest", *map(str, inputs), "--out", str(out), "--json", *extra]
    else:
        cmd = [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(profile),
            "-m",
            "netflowgen.cli",
            "ingest",
            *map(str, inputs),
            "--out",
            str(out),
            "--json",
            *extra,
        ]
    m = run_measured(cmd)
    if m.returncode != 0:
        raise BenchmarkError(f"netflowgen ingest failed ({m.returncode}): {(m.stderr or m.stdout).strip()[-800:]}")
    summary = json.loads(m.stdout)
    output = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out, ignore_errors=True)
    return IngestRun(
        rows_read=summary["rows_read"],
        rows_written=summary["rows_written"],
        rows_rejected=summary["rows_rejected"],
        rejects_by_reason=summary["rejects_by_reason"],
        ingest_seconds=summary["seconds"],
        wall_seconds=m.seconds,
        cpu_seconds=m.cpu_seconds - startup,
        max_rss_bytes=m.max_rss_bytes,
        output_bytes=output,
        load_1min=os.getloadavg()[0],
    )


def run_ingest(inputs: list[Path], out: Path, work: Path, extra: tuple[str, ...] = (), repeat: int = 1) -> IngestRun:
    """``netflowgen ingest`` as a separate process; the fastest of ``repeat`` runs."""
    startup = startup_cpu_seconds(work)
    runs = [_ingest_once(inputs, out, extra, None, startup) for _ in range(repeat)]
    return min(runs, key=lambda r: r.ingest_seconds)


def profile_ingest(inputs: list[Path], out: Path, extra: tuple[str, ...], prof: Path) -> list[dict[str, Any]]:
    _ingest_once(inputs, out, extra, prof, 0.0)
    return top_functions(prof)


_READ_CSV_CHILD = """
import json, sys, time, polars as pl
kw = json.loads(sys.argv[2])
t, c = time.perf_counter(), time.process_time()
n = pl.read_csv(sys.argv[1], **kw).height
print(json.dumps({"rows": n, "seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c,
                  "threads": pl.thread_pool_size()}))
"""


@dataclass
class ReadCsvRun:
    rows: int
    seconds: float
    cpu_seconds: float
    """CPU time of all the threads of the read."""
    threads: int
    load_1min: float


def time_read_csv(path: Path, kwargs: dict[str, Any], repeat: int = 1) -> ReadCsvRun:
    """``polars.read_csv`` of the file in a fresh process, timed around the call; fastest of ``repeat``."""
    kw = {"infer_schema_length": 10_000, **kwargs}
    runs = []
    for _ in range(repeat):
        m = run_measured([sys.executable, "-c", _READ_CSV_CHILD, str(path), json.dumps(kw)])
        if m.returncode != 0:
            raise BenchmarkError(f"polars.read_csv failed: {m.stderr.strip()[-800:]}")
        runs.append(ReadCsvRun(**json.loads(m.stdout), load_1min=os.getloadavg()[0]))
    return min(runs, key=lambda r: r.seconds)


def top_functions(profile: Path, limit: int = 12) -> list[dict[str, Any]]:
    """Where an ingest spends its time, from a cProfile run.

    Polars does its work inside ``collect`` (native code), so own time alone says little: the
    list is netflowgen's own functions by cumulative time (which reader or validation step
    triggers the work), then the largest own times (native calls, Python-level loops).
    """
    stats = pstats.Stats(str(profile))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({func})",
                "own_s": round(own, 3),
                "cumulative_s": round(cumulative, 3),
                "calls": calls,
                "share": round(own / total, 3) if total else 0.0,
                "netflowgen": f"{os.sep}netflowgen{os.sep}" in file,
            }
        )
    ours = sorted(
        (r for r in rows if r["netflowgen"] and r["function"].split("(")[1] not in ("<module>)",)),
        key=lambda r: -r["cumulative_s"],
    )[:limit]
    native = sorted((r for r in rows if not r["netflowgen"]), key=lambda r: -r["own_s"])[: limit // 2]
    return [{"kind": "netflowgen, cumulative", **r} for r in ours] + [{"kind": "own time", **r} for r in native]


# --- the figures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    work: Path
    seed: int
    repeat: int
    keep: bool
    profile: bool


def module_exists(module: str) -> bool:
    return importlib.util.find_spec(f"netflowgen.read.{module}") is not None


def _done(progress: Progress, task: Any) -> None:
    progress.update(task, total=1, completed=1)


def bench_text(fmt: TextFormat, rows: int, s: Settings, progress: Progress) -> dict[str, Any]:
    path = s.work / fmt.name / fmt.file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    task = progress.add_task(f"write {fmt.name}", total=rows)
    write_text(fmt, path, rows, s.seed, lambda k: progress.advance(task, k))
    task = progress.add_task(f"polars.read_csv {fmt.name}", total=None)
    ref = time_read_csv(path, fmt.read_csv, s.repeat)
    _done(progress, task)
    if ref.rows != rows + fmt.trailer_rows:
        raise BenchmarkError(f"{fmt.name}: polars read {ref.rows} rows, the file has {rows} (+{fmt.trailer_rows})")
    task = progress.add_task(f"netflowgen ingest {fmt.name}", total=None)
    run = run_ingest([path], s.work / fmt.name / "out", s.work, fmt.ingest_args, s.repeat)
    _done(progress, task)
    if run.rows_read != rows:
        raise BenchmarkError(f"{fmt.name}: ingest read {run.rows_read} rows, the file has {rows}")
    hot: list[dict[str, Any]] = []
    if s.profile:
        task = progress.add_task(f"cProfile ingest {fmt.name}", total=None)
        hot = profile_ingest([path], s.work / fmt.name / "out", fmt.ingest_args, s.work / fmt.name / "ingest.prof")
        _done(progress, task)
    figure = {
        "format": fmt.name,
        "rows": rows,
        "file_bytes": path.stat().st_size,
        "ingest": asdict(run),
        "read_csv": asdict(ref) | {"rows_per_s": rows / ref.seconds, "rows_per_cpu_s": rows / ref.cpu_seconds},
        "ratio": run.rows_per_s / (rows / ref.seconds),
        "cpu_ratio": run.rows_per_cpu_s / (rows / ref.cpu_seconds) if run.cpu_seconds > 0 else 0.0,
        "aim": 0.5,
        "profile": hot,
    }
    if not s.keep:
        path.unlink()
    return figure


def bench_nfcapd(flows: int, s: Settings, progress: Progress) -> dict[str, Any]:
    folder = s.work / "nfcapd"
    nf_dir = folder / "flows"
    shutil.rmtree(nf_dir, ignore_errors=True)
    nf_dir.mkdir(parents=True)
    pcap = folder / "capture.pcap"
    task = progress.add_task("write pcap, run nfpcapd", total=None)
    span_s = max(600, min(6 * 3600, flows // 200))  # 200 new flows a second, at least ten minutes
    packets = write_pcap(pcap, flows, s.seed, span_s)
    m = run_measured(["nfpcapd", "-r", str(pcap), "-w", str(nf_dir)])
    if m.returncode != 0:
        raise BenchmarkError(f"nfpcapd failed: {m.stderr.strip()[-800:]}")
    pcap_bytes = pcap.stat().st_size
    if not s.keep:
        pcap.unlink()
    files = sorted(p for p in nf_dir.iterdir() if p.name.startswith("nfcapd.") and p.stat().st_size > 0)
    _done(progress, task)
    info = subprocess.run(["nfdump", "-R", str(nf_dir), "-I"], capture_output=True, text=True, check=True).stdout
    records = int(next(line.split(":")[1] for line in info.splitlines() if line.startswith("Flows:")))

    task = progress.add_task("nfdump -r FILE -o csv", total=len(files) * s.repeat)
    best: tuple[float, float] | None = None
    with open(os.devnull, "wb") as null:
        for _ in range(s.repeat):
            wall = cpu = 0.0
            for f in files:
                m = run_measured(["nfdump", "-r", str(f), "-o", "csv"], stdout=null)
                if m.returncode != 0:
                    raise BenchmarkError(f"nfdump failed on {f.name}: {m.stderr.strip()[-400:]}")
                wall, cpu = wall + m.seconds, cpu + m.cpu_seconds
                progress.advance(task)
            best = (wall, cpu) if best is None or wall < best[0] else best
    assert best is not None
    nfdump_s, nfdump_cpu = best
    task = progress.add_task("netflowgen ingest nfcapd", total=None)
    run = run_ingest([nf_dir], folder / "out", s.work, (), s.repeat)
    _done(progress, task)
    if run.rows_read != records:
        raise BenchmarkError(f"nfcapd: ingest read {run.rows_read} rows, nfdump -I counts {records} flows")
    hot = profile_ingest([nf_dir], folder / "out", (), folder / "ingest.prof") if s.profile else []
    return {
        "format": "nfcapd",
        "flows_in_pcap": flows,
        "packets": packets,
        "pcap_bytes": pcap_bytes,
        "pcap_span_s": span_s,
        "nfcapd_files": len(files),
        "nfcapd_bytes": sum(f.stat().st_size for f in files),
        "records": records,
        "nfdump_csv": {
            "seconds": nfdump_s,
            "cpu_seconds": nfdump_cpu,
            "rows_per_s": records / nfdump_s,
            "rows_per_cpu_s": records / nfdump_cpu,
        },
        "ingest": asdict(run),
        "ratio": run.rows_per_s / (records / nfdump_s),
        "cpu_ratio": run.rows_per_cpu_s / (records / nfdump_cpu) if run.cpu_seconds > 0 else 0.0,
        "aim": 1.0,
        "profile": hot,
    }


def bench_memory(rows: int, s: Settings, progress: Progress) -> dict[str, Any]:
    fmt = TEXT_FORMATS["zeek"]
    path = s.work / "memory" / fmt.file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    task = progress.add_task(f"simulate {rows:,}-row zeek", total=rows)
    write_text(fmt, path, rows, s.seed + 1, lambda k: progress.advance(task, k), simulated_flows(rows, s.seed + 1))
    task = progress.add_task(f"netflowgen ingest {rows:,} rows", total=None)
    run = run_ingest([path], s.work / "memory" / "out", s.work)
    _done(progress, task)
    size = path.stat().st_size
    if not s.keep:
        path.unlink()
    if run.rows_read != rows:
        raise BenchmarkError(f"memory: ingest read {run.rows_read} rows, the file has {rows}")
    aim = 2 * 1024**3
    return {
        "format": "zeek",
        "rows": rows,
        "file_bytes": size,
        "ingest": asdict(run),
        "max_rss_bytes": run.max_rss_bytes,
        "aim_bytes": aim,
        "within_aim": run.max_rss_bytes <= aim,
    }


# --- report ------------------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 10e6 else f"{n / 1e6:,.1f} MB"


def _ratio(ratio: float, aim: float) -> str:
    return f"[green]{ratio:.2f}[/]" if ratio >= aim else f"[red]{ratio:.2f}[/]"


def print_report(result: dict[str, Any], console: Console) -> None:
    cpus = result["machine"]["cpus"]
    if result["formats"]:
        t = Table(
            title="netflowgen ingest vs polars.read_csv of the same file, same run (aim: ratio >= 0.5)",
            title_justify="left",
            caption="rows/CPU-s: rows per second of CPU time (all threads; start-up left out)",
            caption_justify="left",
        )
        for col in (
            "format",
            "rows",
            "file",
            "ingest rows/s",
            "read_csv rows/s",
            "ratio",
            "ingest rows/CPU-s",
            "read_csv rows/CPU-s",
            "CPU ratio",
            "rejected",
            "ingest peak RSS",
            "load",
        ):
            t.add_column(col, justify="left" if col == "format" else "right")
        for f in result["formats"]:
            i, r = f["ingest"], f["read_csv"]
            t.add_row(
                f["format"],
                f"{f['rows']:,}",
                _mb(f["file_bytes"]),
                f"{i['rows_per_s']:,.0f}",
                f"{r['rows_per_s']:,.0f}",
                _ratio(f["ratio"], f["aim"]),
                f"{i['rows_per_cpu_s']:,.0f}",
                f"{r['rows_per_cpu_s']:,.0f}",
                _ratio(f["cpu_ratio"], f["aim"]),
                f"{i['rows_rejected']:,}",
                _mb(i["max_rss_bytes"]),
                f"{max(i['load_1min'], r['load_1min']):.1f}",
            )
        console.print(t)
    if result.get("nfcapd"):
        n = result["nfcapd"]
        i, ref = n["ingest"], n["nfdump_csv"]
        t = Table(
            title="nfcapd: netflowgen ingest vs nfdump -r FILE -o csv > /dev/null, same files (aim: ratio >= 1.0)",
            title_justify="left",
            show_header=False,
        )
        t.add_row(
            "pcap",
            f"{n['flows_in_pcap']:,} distinct flows, {n['packets']:,} packets, {_mb(n['pcap_bytes'])}, "
            f"{n['pcap_span_s']:,} s of traffic, through nfpcapd",
        )
        t.add_row("nfcapd files", f"{n['nfcapd_files']} files, {n['records']:,} records, {_mb(n['nfcapd_bytes'])}")
        t.add_row(
            "nfdump -o csv",
            f"{ref['seconds']:.2f} s, {ref['rows_per_s']:,.0f} rows/s, {ref['rows_per_cpu_s']:,.0f} rows/CPU-s",
        )
        t.add_row(
            "netflowgen ingest",
            f"{i['ingest_seconds']:.2f} s, {i['rows_per_s']:,.0f} rows/s, "
            f"{i['rows_per_cpu_s']:,.0f} rows/CPU-s (nfdump's CPU included), peak RSS {_mb(i['max_rss_bytes'])}",
        )
        t.add_row("ratio / CPU ratio", f"{_ratio(n['ratio'], n['aim'])} / {_ratio(n['cpu_ratio'], n['aim'])}")
        t.add_row("load", f"{i['load_1min']:.1f}")
        console.print(t)
    if result.get("memory"):
        m = result["memory"]
        i = m["ingest"]
        t = Table(title="peak memory of netflowgen ingest (aim: <= 2 GB)", title_justify="left", show_header=False)
        t.add_row("input", f"zeek TSV, {m['rows']:,} rows, {_mb(m['file_bytes'])}")
        t.add_row(
            "ingest",
            f"{i['ingest_seconds']:.1f} s, {i['rows_per_s']:,.0f} rows/s, {i['rows_per_cpu_s']:,.0f} rows/CPU-s, "
            f"{i['rows_rejected']:,} rejected, Parquet {_mb(i['output_bytes'])}",
        )
        colour = "green" if m["within_aim"] else "red"
        t.add_row("peak RSS", f"[{colour}]{m['max_rss_bytes'] / 1024**3:.2f} GiB[/] ({m['max_rss_bytes']:,} bytes)")
        t.add_row("load", f"{i['load_1min']:.1f}")
        console.print(t)
    for name, why in result["skipped"].items():
        console.print(f"skipped {name}: {why}")
    for name, why in result["errors"].items():
        console.print(f"[red]failed {name}:[/] {why}")
    for f in [*result["formats"], *([result["nfcapd"]] if result.get("nfcapd") else [])]:
        if f.get("profile"):
            t = Table(
                "kind",
                "function",
                "own s",
                "cumulative s",
                "calls",
                title=f"hot spots (cProfile): {f['format']}",
                title_justify="left",
            )
            for r in f["profile"]:
                t.add_row(r["kind"], r["function"], f"{r['own_s']:.2f}", f"{r['cumulative_s']:.2f}", f"{r['calls']:,}")
            console.print(t)
    if result["max_load_1min"] > cpus:
        console.print(
            f"[yellow]note:[/] the 1-minute load reached {result['max_load_1min']:.1f} on {cpus} CPUs: "
            "other work competed for the CPUs, so rows/s (wall time) are low and noisy; rows/CPU-s hold up better"
        )
    console.print(f"total time {result['seconds']:.0f} s")


ALL = (*TEXT_FORMATS, "nfcapd", "memory")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--rows",
        type=int,
        default=10_000_000,
        help="rows of the large input for the memory figure (default 10,000,000)",
    )
    p.add_argument("--format-rows", type=int, help="rows per text-format file (default: --rows, at most 1,000,000)")
    p.add_argument(
        "--nfcapd-flows", type=int, help="distinct flows in the pcap for nfcapd (default: --rows, at most 2,000,000)"
    )
    p.add_argument("--formats", default=",".join(ALL), help=f"comma-separated, from: {', '.join(ALL)} (default: all)")
    p.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest counts (default 1)")
    p.add_argument("--seed", type=int, default=2024, help="seed of the synthetic flows (default 2024)")
    p.add_argument("--workdir", type=Path, help="where to write the generated files (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--profile", action="store_true", help="also run each ingest under cProfile and list its hot spots")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    args = p.parse_args(argv)
    chosen = [s.strip() for s in args.formats.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(ALL))
    if unknown:
        p.error(f"unknown --formats {', '.join(unknown)}; choose from {', '.join(ALL)}")
    format_rows = args.format_rows or min(args.rows, 1_000_000)
    nfcapd_flows = args.nfcapd_flows or min(args.rows, 2_000_000)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="netflowgen-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = Settings(work=work, seed=args.seed, repeat=max(1, args.repeat), keep=args.keep, profile=args.profile)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": {**machine(), "polars": pl.__version__, "nfdump": _nfdump_version()},
        "settings": {
            "rows": args.rows,
            "format_rows": format_rows,
            "nfcapd_flows": nfcapd_flows,
            "seed": args.seed,
            "repeat": settings.repeat,
        },
        "formats": [],
        "nfcapd": None,
        "memory": None,
        "skipped": {},
        "errors": {},
    }
    loads = [os.getloadavg()[0]]
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<36}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    try:
        with progress:
            for name in chosen:
                try:
                    if name in TEXT_FORMATS:
                        fmt = TEXT_FORMATS[name]
                        if not module_exists(fmt.module):
                            result["skipped"][name] = f"no reader module netflowgen.read.{fmt.module} yet"
                            continue
                        result["formats"].append(bench_text(fmt, format_rows, settings, progress))
                    elif name == "nfcapd":
                        if not module_exists("nfcapd"):
                            result["skipped"][name] = "no reader module netflowgen.read.nfcapd yet"
                            continue
                        if not (shutil.which("nfpcapd") and shutil.which("nfdump")):
                            result["skipped"][name] = "nfpcapd/nfdump not installed (apt-get install nfdump)"
                            continue
                        result["nfcapd"] = bench_nfcapd(nfcapd_flows, settings, progress)
                    elif name == "memory":
                        result["memory"] = bench_memory(args.rows, settings, progress)
                except BenchmarkError as e:
                    result["errors"][name] = str(e)
                loads.append(os.getloadavg()[0])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["startup_cpu_seconds"] = _startup_cpu[0] if _startup_cpu else None
    result["max_load_1min"] = max(loads + [f["ingest"]["load_1min"] for f in result["formats"]])
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.keep:
        result["workdir"] = str(work)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        console = Console()
        print_report(result, console if console.is_terminal else Console(width=180))
    return 1 if result["errors"] else 0


def _nfdump_version() -> str | None:
    if not shutil.which("nfdump"):
        return None
    return (
        subprocess.run(["nfdump", "-V"], capture_output=True, text=True, check=False)
        .stdout.strip()
        .split(":")[-1]
        .strip()
        or None
    )


if __name__ == "__main__":
    sys.exit(main())
