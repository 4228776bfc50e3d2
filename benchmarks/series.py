"""Node-series throughput and memory, against nfdump aggregating the same flows.

1. Reference: a pcap of distinct flows is turned into nfcapd files by the real `nfpcapd`, and
   ingested. Then, in the same run: `netflowgen series` (every destination a node, 60 s steps,
   all 24 features and the labels) on those flows, against `nfdump -R DIR -A dstip` aggregating
   the same flows by destination. Ratio = series flows/s / nfdump flows/s (aim: >= 1).
2. Scale: a flow dataset of about --flows flows from the built-in simulator (`netflowgen
   simulate`: default 100 million over one day, --nodes local nodes with their roles, daily
   cycle and attacks), and the peak memory and flows/s of `netflowgen series` on it (default
   nodes: the local prefixes; aim: under 4 GB). The series has about nodes x steps rows whatever
   the flow count.

    .venv/bin/python benchmarks/series.py [--flows 100000000] [--ref-flows 2000000] [--json]

With ``--engine spark`` (the [spark] extra and Java): the same simulated flows through
`netflowgen series --engine spark --master local[N]` against `--engine polars` in the same run:
flows/s of each and their ratio, the peak memory of each command's whole process tree (sampled),
and the peak RSS of one Spark Python worker (one executor's share: what --buckets bounds).

    .venv/bin/python benchmarks/series.py --engine spark --flows 10000000 [--master local[2]] [--buckets N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import netflowgen_command, run_measured
from synthetic import write_pcap

from netflowgen.simulate import SimConfig, scale_to_flows, simulate


def write_dataset(out: Path, flows: int, seed: int, nodes: int, hours: int, progress: Progress) -> int:
    """A simulated flow dataset of about ``flows`` flows (``netflowgen simulate``, its default
    roles and attacks, scaled to that many flows); returns how many were written."""
    config = scale_to_flows(SimConfig(nodes=nodes, hours=hours, seed=seed), flows)
    task = progress.add_task("simulate flows", total=flows)
    summary = simulate(config, out, progress=lambda done, expected: progress.update(task, completed=done, total=expected))
    return summary.rows_written


def series_run(flows_dir: Path, out: Path, extra: list[str]) -> dict:  # type: ignore[type-arg]
    m = run_measured([*netflowgen_command(), "series", str(flows_dir), "--out", str(out), "--json", *extra])
    if m.returncode != 0:
        raise RuntimeError(f"netflowgen series failed: {m.stderr[-800:]}")
    summary = json.loads(m.stdout)
    return {"wall_seconds": m.seconds, "series_seconds": summary["seconds"], "cpu_seconds": m.cpu_seconds,
            "max_rss_bytes": m.max_rss_bytes, "rows": summary["rows"], "nodes": summary["nodes"]}


def _tree_rss(pid: int) -> int:
    """RSS of a process and all its descendants, in bytes (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def run_tree_sampled(cmd: list[str]) -> tuple[float, int, str]:
    """Run ``cmd``; its wall time, the peak RSS of its process tree (sampled every 0.2 s: the
    JVM and Spark's Python workers are grandchildren that getrusage does not see), stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])} failed: {err.read().decode('utf-8', 'replace')[-800:]}")
        return seconds, peak, out.read().decode("utf-8", "replace")


def spark_main(args: argparse.Namespace) -> None:
    """--engine spark: Spark against Polars on the same simulated flows, in the same run."""
    work = Path(tempfile.mkdtemp(prefix="nfg-series-spark-bench-", dir=args.workdir))
    result: dict[str, object] = {"flows_requested": args.flows, "master": args.master}
    try:
        flows_dir = args.dataset or work / "flows"
        if args.dataset is None:
            with Progress(console=Console(stderr=True), disable=args.json) as progress:
                written = write_dataset(flows_dir, args.flows, args.seed, args.nodes, args.hours, progress)
        else:
            written = pl.scan_parquet(sorted(flows_dir.glob("date=*/*.parquet"))).select(pl.len()).collect().item()
        result["flows"] = written
        base = [*netflowgen_command(), "series", str(flows_dir), "--json"]
        runs: dict[str, dict] = {}  # type: ignore[type-arg]
        for engine, extra in (("polars", []), ("spark", ["--engine", "spark", "--master", args.master,
                                                         *(["--buckets", str(args.buckets)] if args.buckets else [])])):
            wall, peak, stdout = run_tree_sampled([*base, "--out", str(work / f"series-{engine}"), *extra])
            summary = json.loads(stdout[stdout.index("{"):])
            runs[engine] = {"wall_seconds": wall, "series_seconds": summary["seconds"], "flows_per_s": written / summary["seconds"],
                            "peak_tree_rss_gib": peak / 2**30, "rows": summary["rows"], "parts": summary["parts"]}
            if engine == "spark":
                runs[engine]["worker_peak_rss_gib"] = summary["worker_peak_rss_bytes"] / 2**30
            shutil.rmtree(work / f"series-{engine}", ignore_errors=True)
        if runs["spark"]["rows"] != runs["polars"]["rows"]:
            raise RuntimeError(f"the engines disagree: {runs['spark']['rows']} rows against {runs['polars']['rows']}")
        result.update(runs)
        result["spark_vs_polars_flows_per_s"] = runs["spark"]["flows_per_s"] / runs["polars"]["flows_per_s"]
        result["spark_worker_vs_polars_peak"] = runs["spark"]["worker_peak_rss_gib"] / runs["polars"]["peak_tree_rss_gib"]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    table = Table("figure", "polars", "spark", title=f"node series on {written:,} flows, spark {args.master}", title_justify="left")
    p, sp = runs["polars"], runs["spark"]
    table.add_row("flows/s", f"{p['flows_per_s']:,.0f}", f"{sp['flows_per_s']:,.0f}")
    table.add_row("series seconds", f"{p['series_seconds']:.1f}", f"{sp['series_seconds']:.1f}")
    table.add_row("parts / buckets", str(p["parts"]), str(sp["parts"]))
    table.add_row("peak memory, whole process tree", f"{p['peak_tree_rss_gib']:.2f} GiB", f"{sp['peak_tree_rss_gib']:.2f} GiB")
    table.add_row("peak memory, one Spark Python worker", "", f"{sp['worker_peak_rss_gib']:.2f} GiB")
    table.add_row("spark / polars flows/s", "", f"{result['spark_vs_polars_flows_per_s']:.2f}")
    table.add_row("spark worker peak / polars peak", "", f"{result['spark_worker_vs_polars_peak']:.2f}")
    Console().print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flows", type=int, default=100_000_000, help="flows for the memory figure")
    ap.add_argument("--ref-flows", type=int, default=2_000_000, help="flows for the nfdump comparison")
    ap.add_argument("--nodes", type=int, default=20_000, help="local nodes of the simulated scale dataset")
    ap.add_argument("--hours", type=int, default=24, help="time span of the scale dataset")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dataset", type=Path, default=None, help="use this flow dataset for the scale figure instead of generating one")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--engine", choices=["polars", "spark"], default="polars",
                    help="spark: Spark against Polars on --flows simulated flows (no nfdump reference)")
    ap.add_argument("--master", default="local[2]", help="Spark master for --engine spark")
    ap.add_argument("--buckets", type=int, default=None, help="node buckets for --engine spark (default: the command's)")
    args = ap.parse_args()
    if args.engine == "spark":
        spark_main(args)
        return
    if shutil.which("nfdump") is None or shutil.which("nfpcapd") is None:
        sys.exit("nfdump and nfpcapd are needed (Debian package nfdump)")
    work = Path(tempfile.mkdtemp(prefix="nfg-series-bench-", dir=args.workdir))
    result: dict[str, object] = {"flows": args.flows, "ref_flows": args.ref_flows}
    started = time.perf_counter()
    console = Console(stderr=True)
    try:
        with Progress(console=console, disable=args.json) as progress:
            # 1. the same flows through nfdump and through netflowgen
            t = progress.add_task("reference: pcap -> nfcapd -> ingest", total=3)
            pcap = work / "ref.pcap"
            write_pcap(pcap, args.ref_flows, args.seed, 3600)
            progress.advance(t)
            nfcapd = work / "nfcapd"
            nfcapd.mkdir()
            subprocess.run(["nfpcapd", "-r", str(pcap), "-w", str(nfcapd)], check=True, capture_output=True)
            pcap.unlink()
            progress.advance(t)
            ingest = run_measured([*netflowgen_command(), "ingest", str(nfcapd), "--out", str(work / "ref-flows"), "--quiet", "--json"])
            if ingest.returncode != 0:
                raise RuntimeError(ingest.stderr[-800:])
            records = json.loads(ingest.stdout)["rows_written"]
            progress.advance(t)
            nfd = run_measured(["nfdump", "-R", str(nfcapd), "-A", "dstip", "-q", "-o", "csv"], stdout=subprocess.DEVNULL)
            ours = series_run(work / "ref-flows", work / "ref-series", ["--nodes", "dst"])
            result["reference"] = {
                "records": records,
                "nfdump_seconds": nfd.seconds,
                "nfdump_flows_per_s": records / nfd.seconds,
                "series": ours,
                "series_flows_per_s": records / ours["series_seconds"],
                "ratio_vs_nfdump": (records / ours["series_seconds"]) / (records / nfd.seconds),
                "ratio_vs_nfdump_wall_with_startup": nfd.seconds / ours["wall_seconds"],
            }
            shutil.rmtree(nfcapd)
            # 2. scale and memory
            big_flows = args.dataset or work / "big-flows"
            if args.dataset is None:
                written = write_dataset(big_flows, args.flows, args.seed, args.nodes, args.hours, progress)
            else:
                written = pl.scan_parquet(sorted(big_flows.glob("date=*/*.parquet"))).select(pl.len()).collect().item()
            size = sum(f.stat().st_size for f in big_flows.rglob("*.parquet"))
            t = progress.add_task(f"netflowgen series on {written:,} flows", total=None)
            big = series_run(big_flows, work / "big-series", [])
            progress.update(t, total=1, completed=1)
            result["scale"] = {"flows": written, "dataset_bytes": size, "series": big,
                               "flows_per_s": written / big["series_seconds"],
                               "peak_rss_gib": big["max_rss_bytes"] / 2**30}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(result, indent=1))
        return
    ref, scale = result["reference"], result["scale"]  # type: ignore[index]
    table = Table("figure", "value", title="node series", title_justify="left")
    table.add_row("reference flows (nfcapd records)", f"{ref['records']:,}")  # type: ignore[index]
    table.add_row("nfdump -A dstip flows/s", f"{ref['nfdump_flows_per_s']:,.0f}")  # type: ignore[index]
    table.add_row("netflowgen series flows/s", f"{ref['series_flows_per_s']:,.0f}")  # type: ignore[index]
    table.add_row("ratio (aim >= 1)", f"{ref['ratio_vs_nfdump']:.2f}")  # type: ignore[index]
    table.add_row(f"scale: {scale['flows']:,} flows, series flows/s", f"{scale['flows_per_s']:,.0f}")  # type: ignore[index]
    table.add_row("scale: peak memory (aim < 4 GiB)", f"{scale['peak_rss_gib']:.2f} GiB")  # type: ignore[index]
    table.add_row("benchmark time", f"{result['seconds']:.0f} s")
    Console().print(table)


if __name__ == "__main__":
    main()
