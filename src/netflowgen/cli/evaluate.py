"""Verbs that evaluate: benchmark (a detection suite) and demo (the whole job on synthetic traffic)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from netflowgen.cli.common import (
    JsonOpt,
    app,
    failing,
    print_json,
    say,
    stage_progress,
    terminate_as_interrupt,
)


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
    settings: Annotated[Optional[list[str]], typer.Option("--set", help="Replace a \\[pretrain] or \\[finetune] setting, e.g. pretrain.size=small (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a detection suite: every method on the same splits, budgets and seeds; write the report."""
    import dataclasses

    from netflowgen.evaluate.suite import load_suite, plan_suite, run_suite
    from netflowgen.report.suite import main_table, write_report

    terminate_as_interrupt()

    def split(text: str | None) -> list[str] | None:
        return [x.strip() for x in text.split(",") if x.strip()] if text else None

    def load():  # type: ignore[no-untyped-def]
        return load_suite(suite_file, data).select(split(tasks), split(methods), split(budgets)).with_settings(settings or [])

    if plan:
        with failing(), stage_progress("plan", as_json) as stage:
            planned = plan_suite(load(), out_dir, progress=stage)
        if as_json:
            print_json(planned)
            return
        for name, t in planned["tasks"].items():
            say(f"{name} ({t['kind']}, {t['step_seconds']:g} s steps, {t['rows']:,} node-steps of {t['nodes']:,} nodes)")
            for part in ("fit", "test"):
                p = t[part]
                say(f"  {part:<4} {p['steps']:>9,} steps {p['positive_steps']:>7,} positive {p['episodes']:>5,} episodes "
                    f"{p['victims']:>4,} victims; types: {', '.join(p['attack_types']) or '-'}")
        tot = planned["totals"]
        say(f"in all: {tot['fit']['episodes']:,} fitting and {tot['test']['episodes']:,} test episodes; "
            f"{tot['fit']['victims']:,} fitting and {tot['test']['victims']:,} test victims (counted per task)")
        return
    with failing(f"interrupted; what was finished is in {out_dir}"):
        suite = load()
        if quick:
            budgets = tuple(b for b in suite.budgets if b in ("1ep", "3ep")) or suite.budgets[:2]
            suite = dataclasses.replace(suite, seeds=suite.seeds[:1], budgets=budgets)
        if seeds is not None:
            suite = dataclasses.replace(suite, seeds=suite.seeds[:seeds])
        started = time.perf_counter()
        with stage_progress("benchmark", as_json) as stage:
            results = run_suite(suite, out_dir, progress=stage)
        paths = write_report(results, out_dir)
    summary = {"results": str(out_dir / "results.json"), "report": str(paths["html"]), "markdown": str(paths["markdown"]),
               "seconds": round(time.perf_counter() - started, 1), "timings": results.get("timings", {}),
               "table": main_table(results)}
    if as_json:
        print_json(summary)
        return
    print_suite_summary(results, results["suite"] + (" (SYNTHETIC)" if results.get("synthetic") else "")
                        + ": test PR-AUC, 95% intervals over victims", summary["timings"], summary["seconds"])
    say(f"Report: {paths['html']} (report.md beside it has every metric)")


@app.command("demo")
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where to write the simulated flows and the report.")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="A tiny version (seconds; for tests).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The whole job on built-in SYNTHETIC traffic: simulate, ingest, series, pre-train, fine-tune
    with a handful of labels, compare with the baselines, write the report."""
    from netflowgen.cli.demo import run_demo
    from netflowgen.report.suite import main_table

    terminate_as_interrupt()
    started = time.perf_counter()
    with failing(), stage_progress("demo", as_json) as stage:
        done = run_demo(out_dir, quick, progress=stage)
    seconds = round(time.perf_counter() - started, 1)
    if as_json:
        print_json({"report": str(done["report"]), "markdown": str(done["markdown"]), "flows": str(done["flows"]),
                    "seconds": seconds, "timings": done["timings"], "table": main_table(done["results"])})
        return
    print_suite_summary(done["results"], "demo on SYNTHETIC traffic: test PR-AUC, 95% intervals over victims",
                        done["timings"], seconds)
    # The path on a line of its own: it may be longer than a terminal line, and nothing else is.
    say(f"Report: {done['report'].resolve()}")
    say("  open it in a browser; report.md beside it has every metric")
    say(f"Simulated flows: {done['flows']}")


def print_suite_summary(results: dict, title: str, timings: dict[str, float], seconds: float) -> None:  # type: ignore[type-arg]
    from netflowgen.report.suite import summary_text

    say(title)
    say("")
    say(summary_text(results).rstrip())
    say("")
    say("time per stage:")
    for stage, t in timings.items():
        say(f"  {t:7.1f} s  {stage}")
    say(f"  {seconds:7.1f} s  in all")
