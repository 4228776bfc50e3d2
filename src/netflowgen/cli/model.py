"""Verbs that build and use the generative model: series, tokenize, pretrain, nextstep, generate."""

from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import polars as pl
import typer
from rich.table import Table

from netflowgen.cli.common import (
    Engine,
    EngineOpt,
    FilterOpt,
    FormatOpt,
    INPUT_ERRORS,
    JsonOpt,
    MasterOpt,
    OverwriteOpt,
    TimezoneOpt,
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
from netflowgen.dataset.coverage import dataset_coverage
from netflowgen.dataset.manifest import scan_flows
from netflowgen.read import ReadOptions
from netflowgen.series import NodeMode, SeriesSpec, parse_step
from netflowgen.series.build import estimate_rows, iter_series_parts
from netflowgen.series.nodes import DEFAULT_LOCAL_PREFIXES
from netflowgen.series.write import read_series, scan_series, series_part_files, series_spec, write_series_parts
from netflowgen.tokenize import BinRule, Tokenizer, TokenizerConfig, fit_part
from netflowgen.tokenize.shards import write_tokens
from netflowgen.train.config import PretrainConfig, TrainConfig

#: Flows and (estimated) series rows per node partition of `netflowgen series`: they bound its
#: memory (about 0.5 KB per series row at the peak, so some 2 GB).
FLOWS_PER_PART = 10_000_000
ROWS_PER_PART = 4_000_000


@app.command("series")
def series_cmd(
    flows: Annotated[str, typer.Argument(help="An ingested dataset (streams), or any supported input (read into memory); with --engine spark any path Spark reads (hdfs://, s3a://).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Series directory to create.")],
    step: Annotated[str, typer.Option(help="Step width, e.g. 60s, 5m, 1h; aligned to the Unix epoch.")] = duration_text(default(SeriesSpec, "step")),
    nodes: Annotated[NodeMode, typer.Option(help="Which endpoints are nodes.")] = default(SeriesSpec, "nodes"),
    prefix: Annotated[Optional[list[str]], typer.Option("--prefix", help="Extra local prefix for --nodes local (repeatable).")] = None,
    group_map: Annotated[Optional[Path], typer.Option(help="CSV node,group giving each node's group (default: its /24 or /64).")] = None,
    attack: Annotated[Optional[list[str]], typer.Option("--attack", help="Class that makes a step positive, matched to label or label_detail (repeatable).")] = None,
    max_gap: Annotated[str, typer.Option(help="Longest silence filled with zero rows (a longer one ends an activity period).")] = duration_text(default(SeriesSpec, "max_gap")),
    partitions: Annotated[Optional[int], typer.Option(help="Build in this many node partitions to bound memory (default: one per 10 million flows or 4 million series rows).")] = None,
    fmt: FormatOpt = None,
    timezone: TimezoneOpt = "UTC",
    flow_filter: FilterOpt = None,
    overwrite: OverwriteOpt = False,
    engine: EngineOpt = Engine.POLARS,
    master: MasterOpt = None,
    buckets: Annotated[Optional[int], typer.Option(help="Node buckets for --engine spark, each built by one task (default: one per million flows, at least one per core).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build per-(node, step) traffic features and labels from flows."""
    terminate_as_interrupt()
    with failing(nothing_written(out_dir), INPUT_ERRORS + (RuntimeError,)):
        config = SeriesSpec(
            step=parse_step(step), nodes=nodes, local_prefixes=DEFAULT_LOCAL_PREFIXES + tuple(prefix or ()),
            group_map=group_map, attack=tuple(attack or ()), max_gap=parse_step(max_gap),
        )
        if engine is Engine.SPARK:
            summary = _series_spark(flows, out_dir, config, master, buckets, partitions, fmt,
                                    read_options(fmt, None, timezone, flow_filter), overwrite)
        else:
            if buckets is not None or master is not None:
                raise ValueError("--buckets and --master apply to --engine spark (on this machine use --partitions)")
            summary = _series_polars(Path(flows), out_dir, config, partitions, read_options(fmt, None, timezone, flow_filter),
                                     overwrite, as_json)
    if as_json:
        print_json(summary)
        return
    t = Table(title=f"node series in {out_dir}", show_header=False, title_justify="left")
    for key, value in summary.items():
        t.add_row(key, ", ".join(f"{k} {v:,}" for k, v in value.items()) if isinstance(value, dict) else f"{value}")
    out.print(t)


def _series_spark(flows: str, out_dir: Path, config: SeriesSpec, master: str | None, buckets: int | None,
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


def _series_polars(flows: Path, out_dir: Path, config: SeriesSpec, partitions: int | None, options: ReadOptions,
                   overwrite: bool, quiet: bool) -> dict:  # type: ignore[type-arg]
    lazy = scan_flows(flows, options)
    started = time.perf_counter()
    coverage = dataset_coverage(flows, lazy)
    n_flows = lazy.select(pl.len()).collect().item()
    k = partitions or max(1, -(-n_flows // FLOWS_PER_PART), -(-estimate_rows(lazy, config) // ROWS_PER_PART))
    with progress_bar("[bold]series", "parts", quiet=quiet) as progress:
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
    bins: Annotated[int, typer.Option(help="Bins per feature, zero bin included.")] = default(TokenizerConfig, "n_bins"),
    rule: Annotated[BinRule, typer.Option(help="Where non-zero bins are cut.")] = default(TokenizerConfig, "rule"),
    tail_from: Annotated[float, typer.Option(help="log-quantile-tail: share of the non-zero values the quantile bins cover.")] = default(TokenizerConfig, "tail_from"),
    tail_share: Annotated[float, typer.Option(help="log-quantile-tail: share of the non-zero bins spread over the tail.")] = default(TokenizerConfig, "tail_share"),
    timezone: Annotated[str, typer.Option("--timezone", "--tz", help="Time zone of the time fields.")] = default(TokenizerConfig, "timezone"),
    relative: Annotated[bool, typer.Option("--relative", help="Also encode each feature's deviation from the node's running level (f~rel tokens).")] = False,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Fit the tokenizer on the training period and write memory-mappable token shards."""
    terminate_as_interrupt()
    with failing(nothing_written(out_dir)):
        lazy, manifest = scan_series(series_dir)
        spec = series_spec(manifest)
        fit: dict | None = {"by": "given", "tokenizer": str(tokenizer_file)}  # type: ignore[type-arg]
        if tokenizer_file is not None:
            tok = Tokenizer.load(tokenizer_file)
            if relative and not tok.config.relative:
                raise ValueError(f"{tokenizer_file} was fitted without relative tokens; drop --relative or fit a new one")
            if tok.series is None:  # a tokenizer of an older version: it takes this series' contract
                tok.series = spec
            tok.spec.require_compatible(spec, str(tokenizer_file), str(series_dir))
        else:
            train, fit = fit_part(lazy, fit_fraction, fit_until)
            if train.lazy().select(pl.len()).collect().item() == 0:
                raise ValueError(f"no steps to fit the tokenizer on ({fit})")
            tok = Tokenizer.fit(train, TokenizerConfig(spec.features, bins, rule, timezone, relative=relative, tail_from=tail_from, tail_share=tail_share), spec)
        parts = (pl.read_parquet(p) for p in series_part_files(series_dir))
        summary = write_tokens(parts, tok, out_dir, fit=fit, source=str(series_dir), overwrite=overwrite)
    if as_json:
        print_json(summary)
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
    size: Annotated[str, typer.Option(help="Model size: tiny (tests), small (CPU), base (GPU).")] = default(PretrainConfig, "size"),
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = default(TrainConfig, "steps"),
    batch_size: Annotated[int, typer.Option(help="Windows per step (per process).")] = default(TrainConfig, "batch_size"),
    context: Annotated[Optional[int], typer.Option(help="Context length in steps (default: the size's).")] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = default(TrainConfig, "lr"),
    warmup: Annotated[int, typer.Option(help="Warmup steps.")] = default(TrainConfig, "warmup_steps"),
    val_fraction: Annotated[float, typer.Option(help="Last part of every node's series held out for validation.")] = default(PretrainConfig, "val_fraction"),
    eval_every: Annotated[int, typer.Option(help="Validate (and checkpoint) every this many steps.")] = default(TrainConfig, "eval_every"),
    max_minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget: stop when it is spent (or after --steps), the learning rate decaying over it.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = default(TrainConfig, "seed"),
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = default(TrainConfig, "precision"),
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")] = False,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Pre-train FlowGPT to predict every node's next step (multi-GPU: launch with torchrun)."""
    terminate_as_interrupt()
    from netflowgen.train.loop import distributed
    from netflowgen.train.pretrain import pretrain

    with failing(f"interrupted; continue with: netflowgen pretrain {tokens} --out {out_dir} --resume (same options)"):
        train = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(warmup, steps),
                            eval_every=eval_every, checkpoint_every=eval_every, seed=seed, precision=precision,
                            max_seconds=max_minutes * 60 if max_minutes else None)
        with distributed():
            result, _ = pretrain(PretrainConfig(tokens, size, context, val_fraction), train, out_dir, resume=resume,
                                 overwrite=overwrite, device=device, show_progress=not as_json)
    if not result:  # not rank 0
        return
    if as_json:
        print_json(result)
        return
    final = result.get("final") or {}
    out.print(f"run {out_dir}: {result['parameters']:,} parameters, {result['steps']} steps; "
              f"held-out next-step loss {final.get('val_loss', float('nan')):.4f}, bin accuracy {final.get('val_accuracy', float('nan')):.3f}")


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
    from netflowgen.train.pretrain import load_run
    from netflowgen.train.windows import TokenWindows

    with failing(errors=INPUT_ERRORS + (KeyError,)):
        model, tok, manifest = load_run(run, device)
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
                tok.spec.require_compatible(series_spec(smanifest), str(run), str(source))
                write_tokens(table, tok, Path(tmp) / "tokens", fit=None, source=str(source))
                source = Path(tmp) / "tokens"
            _, ttok, shards = open_tokens(source)
            tok.spec.require_compatible(ttok.spec, str(run), str(data or source))
            windows = TokenWindows(shards, model.cfg.context, val_fraction if val_fraction is not None else float(settings["val_fraction"]))
            report = evaluate_next_step(model, windows, tok, batch_size, device)
    result = report.to_dict()
    if as_json:
        print_json(result)
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
    from netflowgen.train.generate import forecast_node
    from netflowgen.train.pretrain import load_run

    with failing(errors=INPUT_ERRORS + (KeyError,)):
        model, tok, _ = load_run(run)
        table, smanifest = read_series(series_dir)
        tok.spec.require_compatible(series_spec(smanifest), str(run), str(series_dir))
        fc = forecast_node(model, tok, table, node, horizon, until, samples=samples, temperature=temperature, seed=seed)
        shown = feature or list(tok.config.features)[:4]
        unknown = [f for f in shown if f not in fc.features]
        if unknown:
            raise ValueError(f"unknown features {unknown}; the model has {fc.features}")
        frame = fc.to_frame().filter(pl.col("feature").is_in(shown))
        if plot:
            from netflowgen.report.plots import plot_forecast

            plot_forecast(table.filter(pl.col("node") == node), fc, shown, plot)
    if as_json:
        print_json(frame.with_columns(pl.col("step").cast(pl.String)).to_dicts())
        return
    t = Table("step", "feature", "q10", "median", "q90", title=f"forecast for {node} ({samples} samples, temperature {temperature})", title_justify="left")
    for r in frame.iter_rows(named=True):
        t.add_row(str(r["step"]), r["feature"], f"{r['q10']:,.1f}", f"{r['q50']:,.1f}", f"{r['q90']:,.1f}")
    out.print(t)
    if plot:
        out.print(f"plot: {plot}")
