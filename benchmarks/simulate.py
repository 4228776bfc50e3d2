"""Simulator throughput: flows/s written by `netflowgen simulate`, against Parquet writing alone.

1. `netflowgen simulate` (own process) writes --flows flows (about: the config is scaled to that
   many; the count varies by its square root) of --nodes nodes over --hours hours, with the
   default attacks. Figures: flows/s (generation + zstd Parquet, as the CLI times it), CPU time,
   peak RSS (memory stays bounded: chunks), bytes on disk.
2. Reference, same run: pyarrow writing the very same rows, already in memory, with the same
   writer settings (zstd, statistics, encodings, row groups), timed around the write calls only. No
   generator that writes this dataset can beat it on one writer; ratio = simulate / reference.
3. Generation alone (in this process, nothing written): how much of the time is generation.

Generation and writing run on two threads; on a machine busy with other work the wall-time
figures drop, so flows per CPU-second are given too (the command's CPU time includes start-up).

    .venv/bin/python benchmarks/simulate.py [--flows 20000000] [--nodes 20000] [--hours 24] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine, netflowgen_command, run_measured

from netflowgen.simulate import SimConfig, expected_flows, iter_chunks, scale_to_flows
from netflowgen.simulate.records import SCHEMA
from netflowgen.simulate.run import WRITER_OPTIONS


class _Clock:
    """Wall and CPU time (this process, all threads) of the timed sections only."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Self:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def reference_write(dataset: Path, target: Path) -> dict[str, float]:
    """Write the dataset's rows again with pyarrow, row group by row group; time the writes only."""
    rows = 0
    clock = _Clock()
    for part in sorted(dataset.glob("date=*/*.parquet")):
        source = pq.ParquetFile(part)
        out = target / part.parent.name / part.name
        out.parent.mkdir(parents=True, exist_ok=True)
        with clock:
            writer = pq.ParquetWriter(out, SCHEMA, **WRITER_OPTIONS)  # type: ignore[arg-type]
        for i in range(source.num_row_groups):
            table = source.read_row_group(i)
            with clock:
                writer.write_table(table, row_group_size=table.num_rows)
            rows += table.num_rows
        with clock:
            writer.close()
    size = sum(p.stat().st_size for p in target.rglob("*.parquet"))
    return {"rows": rows, "seconds": clock.wall, "cpu_seconds": clock.cpu, "flows_per_s": rows / clock.wall,
            "flows_per_cpu_s": rows / clock.cpu, "bytes": size}


def generate_only(config: SimConfig) -> dict[str, float]:
    with _Clock() as clock:
        rows = sum(chunk.table.num_rows for chunk in iter_chunks(config))
    return {"rows": rows, "seconds": clock.wall, "cpu_seconds": clock.cpu, "flows_per_s": rows / clock.wall,
            "flows_per_cpu_s": rows / clock.cpu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--flows", type=int, default=20_000_000, help="flows to simulate (about; default 20 million)")
    ap.add_argument("--nodes", type=int, default=20_000, help="local nodes (default 20,000)")
    ap.add_argument("--hours", type=int, default=24, help="simulated hours (default 24)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-generate-only", action="store_true", help="skip the generation-only figure")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)
    config = scale_to_flows(SimConfig(nodes=args.nodes, hours=args.hours, seed=args.seed), args.flows)
    work = Path(tempfile.mkdtemp(prefix="nfg-simulate-bench-", dir=args.workdir))
    result: dict[str, object] = {
        "machine": machine(),
        "flows_asked": args.flows,
        "flows_expected": round(sum(expected_flows(config))),
        "config": {"nodes": args.nodes, "hours": args.hours, "flows_per_node_hour": config.flows_per_node_hour,
                   "seed": args.seed},
    }
    started = time.perf_counter()
    try:
        cmd = [*netflowgen_command(), "simulate", "--out", str(work / "sim"), "--nodes", str(args.nodes),
               "--days", repr(args.hours / 24), "--seed", str(args.seed),
               "--flows-per-node-hour", repr(config.flows_per_node_hour), "--json"]
        m = run_measured(cmd)
        if m.returncode != 0:
            raise RuntimeError(f"netflowgen simulate failed: {m.stderr[-800:]}")
        summary = json.loads(m.stdout)
        flows = summary["rows_written"]
        size = sum(p.stat().st_size for p in (work / "sim").rglob("*.parquet"))
        result["simulate"] = {
            "flows": flows, "seconds": summary["seconds"], "wall_seconds": m.seconds, "cpu_seconds": m.cpu_seconds,
            "max_rss_bytes": m.max_rss_bytes, "bytes": size, "flows_per_s": flows / summary["seconds"],
            "flows_per_cpu_s": flows / m.cpu_seconds, "label_counts": summary["label_counts"],
        }
        ref = reference_write(work / "sim", work / "ref")
        result["reference_write"] = ref
        result["ratio_vs_write_only"] = (flows / summary["seconds"]) / ref["flows_per_s"]
        # CPU time of the whole command (start-up included) against that of the writes alone:
        # on a machine busy with other work the wall-time ratio drops, this one holds up.
        result["cpu_ratio_vs_write_only"] = (flows / m.cpu_seconds) / ref["flows_per_cpu_s"]
        shutil.rmtree(work / "ref")
        if not args.no_generate_only:
            gen = generate_only(config)
            if gen["rows"] != flows:
                raise RuntimeError(f"generation alone made {gen['rows']} flows, the CLI wrote {flows}")
            result["generate_only"] = gen
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = time.perf_counter() - started
    result["load_1min"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    sim, ref = result["simulate"], result["reference_write"]
    t = Table("figure", "value", title=f"netflowgen simulate ({os.cpu_count()} CPUs)", title_justify="left")
    t.add_row("flows written", f"{sim['flows']:,} ({args.nodes:,} nodes, {args.hours} h)")  # type: ignore[index]
    t.add_row("simulate flows/s", f"{sim['flows_per_s']:,.0f}  ({sim['seconds']:.1f} s)")  # type: ignore[index]
    t.add_row("pyarrow write-only flows/s (same rows)", f"{ref['flows_per_s']:,.0f}  ({ref['seconds']:.1f} s)")  # type: ignore[index]
    t.add_row("ratio simulate / write-only", f"{result['ratio_vs_write_only']:.2f}")
    t.add_row("CPU ratio (flows per CPU-second)", f"{result['cpu_ratio_vs_write_only']:.2f}")
    if "generate_only" in result:
        g = result["generate_only"]
        t.add_row("generation alone flows/s", f"{g['flows_per_s']:,.0f}  ({g['seconds']:.1f} s, {g['flows_per_cpu_s']:,.0f} per CPU-s)")  # type: ignore[index]
    t.add_row("flows per CPU-second: simulate / write-only", f"{sim['flows_per_cpu_s']:,.0f} / {ref['flows_per_cpu_s']:,.0f}")  # type: ignore[index]
    t.add_row("peak RSS", f"{sim['max_rss_bytes'] / 2**30:.2f} GiB")  # type: ignore[index]
    t.add_row("on disk", f"{sim['bytes'] / 1e6:,.0f} MB ({sim['bytes'] / sim['flows']:.1f} B/flow)")  # type: ignore[index]
    t.add_row("load (1 min)", f"{result['load_1min']:.1f}")
    Console().print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
