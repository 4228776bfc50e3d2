"""Live detection latency: step close -> alert written, p50 and p99, at 10^4 and 10^5 active
nodes, with resident memory, against one forward pass of the detector over the same step.

What is measured: a :class:`~netflowgen.detect.live.LiveDetector` (its collector bound to
127.0.0.1, idle) is fed synthetic decoded flows through :meth:`LiveDetector.feed`, the call the
collector makes with every decoded batch, so the figure is the detector's own (the collector's
throughput is ``benchmarks/collect.py``'s figure; it batches decoded flows every 0.25 s at most
before this clock starts). Every node gets one inbound flow a step from an external address (a
node is a local address); ``--attacked`` nodes get 250 more in each measured step, so alerts are
raised and written. A step's flows go in batches of ``--batch`` flows, each fed when the one
before is aggregated, as a collector hands them over through a step; the first batch of a step
closes the step two before it (grace: one step). Steps are paced as live export is (a step is
60 s): the next step's flows come once the closed step is scored, so the latency is the
detector's processing (aggregating the closing batch, the step's rows, scoring every node, the
alerts written), not a queue that a too-fast feed would build. The first ``--warmup`` steps fill
every node's history (the scorer's context plus the queue's spare rows): they are aggregated
directly, as the aggregate thread does, and not scored. A node count is measured for ``--steps``
steps or until ``--budget-s`` seconds are spent (3 steps at least).

Reference, measured in the same process on the last measured step: one forward pass of the
detector's model over that step's windows (every node, its full context), the least any scorer
of this model must spend on a step; the ratio says what the live path adds to it (encoding,
aggregation, drivers, the queue). Memory: the child process's peak resident set (``ru_maxrss``)
and its resident set at the end (``/proc/self/status``), one process per node count.

    .venv/bin/python benchmarks/live_latency.py                          # 10^4 and 10^5 nodes
    .venv/bin/python benchmarks/live_latency.py --nodes 2000 --steps 10 --json
    .venv/bin/python benchmarks/live_latency.py --detector det/          # a detector of your own

Without ``--detector``, a tiny detector is fitted first (the test suite's recipe: a "tiny"
backbone pre-trained and fine-tuned on planted synthetic series, window 16, history 16; some
20 s). Goal (issue 14): p99 <= 1 s at 10^5 nodes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from harness import machine

GOAL_P99_S = 1.0
START = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)


def fit_tiny_detector(work: Path) -> Path:
    """Pre-train and fine-tune a tiny detector on planted series (6 nodes, inbound floods)."""
    from netflowgen.detect.finetune import FinetuneConfig, finetune
    from netflowgen.detect.labels import parse_budget
    from netflowgen.series import SeriesSpec
    from netflowgen.tokenize import Tokenizer, TokenizerConfig
    from netflowgen.tokenize.shards import write_tokens
    from netflowgen.train.loop import TrainConfig
    from netflowgen.train.pretrain import PretrainConfig, pretrain

    steps, rng, rows = 1200, np.random.default_rng(0), []
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for n in range(6):
        attack = np.zeros(steps, dtype=bool)
        for onset in rng.choice(np.arange(20, steps - 60, 40), size=3, replace=False) + rng.integers(0, 30, size=3):
            attack[onset: onset + int(rng.integers(4, 9))] = True
        base = 5 + 4 * np.sin(np.arange(steps) * 2 * np.pi / 30 + n)
        flows_in = rng.poisson(base) + np.where(attack, rng.integers(150, 400, steps), 0)
        flows_out = rng.poisson(base)
        rows += [{"node": f"10.0.0.{n}", "group": "10.0.0.0/24", "step": t0 + timedelta(minutes=t),
                  "flows_in": int(flows_in[t]), "flows_out": int(flows_out[t]),
                  "classes": ["DDoS"] if attack[t] else ["benign"], "attack": bool(attack[t]), "labeled_flows": 1}
                 for t in range(steps)]
    series = pl.DataFrame(rows)
    pre = series.filter(pl.col("step") < t0 + timedelta(minutes=800))
    tok = Tokenizer.fit(pre, TokenizerConfig(("flows_in", "flows_out"), n_bins=10), SeriesSpec(features=("flows_in", "flows_out")))
    write_tokens(pre, tok, work / "tok", fit=None, source="synthetic")
    train = TrainConfig(steps=80, batch_size=16, lr=3e-3, warmup_steps=8, eval_every=80, checkpoint_every=80,
                        eval_batches=2, log_every=20, weight_decay=0.0)
    pretrain(PretrainConfig(work / "tok", "tiny", context=48), train, work / "run", show_progress=False)
    cfg = FinetuneConfig(attack=("ddos",), budget=parse_budget("6ep"), steps=80, window=16, history=16, mode="full",
                         head_inputs="both", lr=3e-3, anchor=0.0)
    finetune(work / "run", series, cfg, work / "det", show_progress=False)
    return work / "det"


def node_addresses(n: int) -> pl.Series:
    i = np.arange(n) + 256  # 10.0.1.0 onwards
    return pl.Series("dst_ip", [f"10.{a}.{b}.{c}" for a, b, c in zip((i >> 16) & 255, (i >> 8) & 255, i & 255)])


def step_flows(nodes: pl.Series, minute: int, attacked: int) -> pl.DataFrame:
    """One inbound flow per node in this minute; ``attacked`` nodes get 250 more (a SYN flood)."""
    from netflowgen.schema import FLOW_SCHEMA

    n = nodes.len()
    rng = np.random.default_rng(minute)
    dst = nodes if not attacked else pl.concat([nodes, nodes.head(attacked).gather(np.repeat(np.arange(attacked), 250))])
    m = dst.len()
    start = START + timedelta(minutes=minute)
    offset_ms = np.sort(rng.integers(0, 59_000, m))
    ts = pl.Series(np.datetime64(start.replace(tzinfo=None), "ms") + offset_ms.astype("timedelta64[ms]")).dt.replace_time_zone("UTC")
    flood = np.r_[np.zeros(n, bool), np.ones(m - n, bool)]
    flows = pl.DataFrame({
        "ts_start": ts, "ts_end": ts + timedelta(milliseconds=50), "src_ip": np.where(flood, "203.0.113.9", "198.51.100.7"),
        "dst_ip": dst, "src_port": rng.integers(1024, 65535, m), "dst_port": np.full(m, 443), "proto": np.full(m, 6),
        "fwd_packets": np.where(flood, 1, 8), "fwd_bytes": np.where(flood, 40, 2400), "rev_packets": np.where(flood, 0, 6),
        "rev_bytes": np.where(flood, 0, 9000), "tcp_flags": np.where(flood, 0x02, 0x1B),
    })
    return flows.with_columns(label=None, label_detail=None, quality=0, source_file=pl.lit("udp://127.0.0.1"),
                              source_row=pl.int_range(pl.len())).cast(FLOW_SCHEMA).select(list(FLOW_SCHEMA)).sort("ts_end")  # type: ignore[arg-type]


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def wait(what: str, done, seconds: float = 600) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.002)


def forward_pass_s(live, rows: pl.DataFrame, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    """The model's forward pass alone over the windows the scorer built for these rows."""
    import torch

    from netflowgen.train.steps import EncodedSteps, collate

    scorer, det = live.scorer, live.detector
    step = rows["step"][0]
    hist = live.online.history().filter(pl.col("step") <= step).sort("node", "step")
    hist = hist.filter(pl.int_range(pl.len()).reverse().over("node") < scorer.length)
    steps = EncodedSteps.encode(hist, det.tokenizer)
    begin, end = steps.bounds[:, 0], steps.bounds[:, 1]
    chunk = scorer.batch_windows  # as the scorer runs it
    batches = [collate(steps, begin[i:i + chunk], end[i:i + chunk] - 1, end[i:i + chunk], scorer.length)
               for i in range(0, len(begin), chunk)]
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            for b in batches:
                det.model(b.traffic, b.time, b.node, b.group, b.first, b.last)
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def child(args: argparse.Namespace) -> dict:
    """One node count, in a process of its own (its peak memory is its own)."""
    import torch

    from netflowgen.detect.live import LiveConfig, LiveDetector

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="live-latency-") as tmp:
        live = LiveDetector(LiveConfig(Path(args.detector), listen=("127.0.0.1", 0), alerts=Path(tmp) / "alerts.jsonl",
                                       queue_steps=args.queue_steps))
        warmup = args.warmup if args.warmup is not None else live.scorer.length + live.config.queue_steps + 1
        nodes = node_addresses(args.child)
        started = time.perf_counter()
        # Warm-up: the history filled by aggregating the first steps directly, as the aggregate
        # thread does, without scoring them (their only job is a full context for every node).
        for minute in range(warmup):
            flows = step_flows(nodes, minute, args.attacked if minute >= warmup - 2 else 0)
            live.online.add(flows)
            live.watermark = flows["ts_end"].max()  # type: ignore[assignment]
            live.online.advance(live.watermark)  # type: ignore[arg-type]
        warm_s = time.perf_counter() - started
        live.start()
        fed, closed = live.online.flows_added, 0
        try:
            # Each minute's first batch closes the step two before it; paced as live export.
            for minute in range(warmup, warmup + args.steps):
                flows = step_flows(nodes, minute, args.attacked)
                for i in range(0, flows.height, args.batch):
                    live.feed(flows.slice(i, args.batch))
                    fed += min(args.batch, flows.height - i)
                    wait("aggregation", lambda: live.online.flows_added >= fed)
                    if i == 0:
                        closed += 1
                        wait("scoring", lambda: live.scorer.steps_scored + sum(live.dropped_steps.values()) >= closed)
                if time.perf_counter() - started - warm_s > args.budget_s and closed >= 3:
                    break
            status = live.status()
            lat = np.array(live.latencies)  # the steps closed while measuring (stop scores the open ones)
            last = live.online.history().filter(pl.col("step") == pl.col("step").max())
            history_bytes = live.online.history().estimated_size()
            forward = forward_pass_s(live, last)
            t = time.perf_counter()
            live.scorer.score(last, live.online.history())
            score_only = time.perf_counter() - t
        finally:
            summary = live.stop()
    return {
        "nodes": args.child, "active_nodes": status["active_nodes"], "steps_measured": int(lat.size), "warmup_steps": warmup,
        "context_steps": live.scorer.length, "p50_s": float(np.quantile(lat, 0.5)), "p99_s": float(np.quantile(lat, 0.99)),
        "max_s": float(lat.max()), "forward_s": forward, "score_only_s": score_only,
        "p50_over_forward": float(np.quantile(lat, 0.5)) / forward, "p99_over_forward": float(np.quantile(lat, 0.99)) / forward,
        "alerts": summary["alerts"], "dropped": summary["dropped"], "score_errors": summary["score_errors"],
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "rss_end_bytes": rss_now(),
        "history_bytes": history_bytes, "seconds": time.perf_counter() - started, "warmup_seconds": warm_s,
        "torch_threads": args.threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="10000,100000", help="active node counts, comma-separated")
    parser.add_argument("--steps", type=int, default=20, help="steps measured per node count")
    parser.add_argument("--warmup", type=int, default=None, help="steps before measuring (default: context + queue spare)")
    parser.add_argument("--budget-s", type=float, default=150, help="stop measuring a node count after this many seconds (3 steps at least)")
    parser.add_argument("--batch", type=int, default=20_000, help="flows per decoded batch fed")
    parser.add_argument("--attacked", type=int, default=20, help="nodes flooded in every measured step")
    parser.add_argument("--queue-steps", type=int, default=8, help="the scoring queue's bound (LiveConfig.queue_steps)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 ran faster than 2 on the shared 2-core machine)")
    parser.add_argument("--detector", default=None, help="a detector directory (default: fit a tiny one first)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args)))
        return
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    with tempfile.TemporaryDirectory(prefix="live-latency-det-") as work:
        t = time.perf_counter()
        if args.detector is None:
            say("fitting a tiny detector ...")
            args.detector = str(fit_tiny_detector(Path(work)))
            say(f"  {time.perf_counter() - t:.0f} s")
        results = []
        for n in [int(x) for x in args.nodes.split(",")]:
            say(f"{n:,} nodes ...")
            cmd = [sys.executable, __file__, "--child", str(n), "--steps", str(args.steps), "--batch", str(args.batch),
                   "--attacked", str(args.attacked), "--budget-s", str(args.budget_s), "--queue-steps", str(args.queue_steps), "--threads", str(args.threads),
                   "--detector", args.detector] + (["--warmup", str(args.warmup)] if args.warmup is not None else [])
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{n:,} nodes failed:\n{done.stderr[-4000:]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(r)
            say(f"  step close -> alert p50 {r['p50_s']:.3f} s, p99 {r['p99_s']:.3f} s (max {r['max_s']:.3f} s) over {r['steps_measured']} steps; "
                f"forward pass {r['forward_s']:.3f} s: p50 {r['p50_over_forward']:.1f}x, p99 {r['p99_over_forward']:.1f}x; "
                f"peak RSS {r['max_rss_bytes'] / 2**20:,.0f} MiB (end {r['rss_end_bytes'] / 2**20:,.0f} MiB, history "
                f"{r['history_bytes'] / 2**20:,.0f} MiB); {r['alerts']} alerts; {r['seconds']:.0f} s")
    goal = next((r for r in results if r["nodes"] == 100_000), None)
    verdict = (None if goal is None else
               f"p99 at 10^5 nodes {goal['p99_s']:.2f} s {'<=' if goal['p99_s'] <= GOAL_P99_S else '>'} goal {GOAL_P99_S:g} s")
    if verdict:
        say(verdict)
    if args.json:
        print(json.dumps({"machine": machine(),
                          "goal_p99_s": GOAL_P99_S, "verdict": verdict, "results": results}, indent=2))


if __name__ == "__main__":
    main()
