"""The one-command demo: the whole job on built-in synthetic traffic, in minutes on a laptop CPU.

simulate (``netflowgen simulate``) -> ingest (the simulator's Parquet read back and validated
like any input) -> node series -> pre-training -> fine-tuning with a handful of labels ->
evaluation against the baselines on splits that cannot leak -> report with plots.

The traffic is SYNTHETIC and the report says so on every page: it shows that the machinery works
and how the methods compare on data whose structure is known, never anything about real traffic
(for that, run ``netflowgen benchmark benchmarks/suites/shared.toml`` on real captures).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["demo_config", "demo_suite", "run_demo"]


def demo_config(quick: bool = False) -> Any:
    """The simulated network: 40 nodes over two days (a day for tests), with DDoS attacks from
    faint (about a busy node's normal rate) to loud, of four kinds, and a few port scans."""
    from netflowgen.simulate.config import AttackConfig, SimConfig

    attacks = AttackConfig(count=8 if quick else 24, duration_s=(120.0, 1800.0), ramp_s=(10.0, 300.0),
                           peak_flows_per_s=(0.02, 5.0), sources=(20.0, 2000.0), scans=2 if quick else 4)
    return SimConfig(nodes=16 if quick else 40, hours=24 if quick else 48, seed=7, flows_per_node_hour=60.0, attacks=attacks)


def demo_suite(flows: Path, quick: bool = False) -> Any:
    """Two tasks on the simulated flows: DDoS at unseen nodes in later time, and attack types held
    out of fitting (NTP reflection and ICMP floods seen only in the test part)."""
    from netflowgen.evaluate.spec import DatasetSpec, LabelledTask, SuiteSpec

    tasks = (
        LabelledTask(name="ddos-unseen-nodes", dataset="sim", attack=("DDoS",), step="60s",
                     fit_fraction=0.5, test_node_fraction=0.5,
                     description="Every DDoS scenario; fitting on the first half of the time and half the nodes, "
                                 "test on the second half at the other nodes."),
        LabelledTask(name="unseen-attack-types", dataset="sim", step="60s", fit_fraction=0.5,
                     attack=("syn-flood", "dns-reflection", "ntp-reflection", "icmp-flood"),
                     test_only=("ntp-reflection", "icmp-flood"),
                     description="SYN floods and DNS reflection in fitting; NTP reflection and ICMP floods only in the test part."),
    )
    return SuiteSpec(
        # Inputs resolve against ``data``: the flows are named by their folder, relative to it.
        name="demo (synthetic)", data=flows.parent, datasets={"sim": DatasetSpec("sim", (flows.name,))}, tasks=tasks,
        seeds=(0,) if quick else (0, 1, 2), budgets=("2ep",) if quick else ("1ep", "4ep"),
        methods=("flowgpt", "flowgpt-full", "scratch", "lightgbm", "volume", "surprise"),
        pretrain={"size": "tiny", "steps": 30 if quick else 400, "batch_size": 32, "context": 64},
        finetune={"steps": 10 if quick else 100, "window": 32, "history": 16, "lr": 1e-2},
        synthetic=True,
        description="SYNTHETIC traffic from the built-in simulator: the whole job end to end, "
                    "not a claim about real networks.",
    )


def run_demo(out: Path, quick: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Simulate into OUT/flows, run the demo suite into OUT/report; returns the paths and results."""
    from netflowgen.evaluate.suite import run_suite
    from netflowgen.report.suite import write_report
    from netflowgen.simulate.run import simulate

    say = progress or (lambda msg: None)
    out.mkdir(parents=True, exist_ok=True)
    flows = out / "flows"
    config = demo_config(quick)
    started = time.perf_counter()
    if not (flows / "netflowgen.json").is_file():
        say(f"simulating {config.nodes} nodes for {config.hours} h (SYNTHETIC)")
        simulate(config, flows)
    timings = {"simulate": time.perf_counter() - started}
    results = run_suite(demo_suite(flows, quick), out / "report", progress=say)
    timings.update(results.get("timings", {}))
    started = time.perf_counter()
    say("writing the report")
    paths = write_report(results, out / "report")
    timings["report and plots"] = time.perf_counter() - started
    return {"flows": flows, "report": paths["html"], "markdown": paths["markdown"], "results": results,
            "timings": {k: round(v, 1) for k, v in timings.items()}}
