"""Verbs that make and apply a detector offline: finetune and score."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import polars as pl
import typer
from rich.table import Table

from netflowgen.cli.common import (
    FilterOpt,
    FormatOpt,
    JsonOpt,
    OverwriteOpt,
    TimezoneOpt,
    app,
    default,
    failing,
    nothing_written,
    out,
    print_json,
    read_options,
    terminate_as_interrupt,
)
from netflowgen.dataset.coverage import dataset_coverage
from netflowgen.detect.config import FinetuneConfig
from netflowgen.detect.live import LiveConfig
from netflowgen.dataset.manifest import scan_flows
from netflowgen.series.spec import SeriesSpec
from netflowgen.series.write import read_series

FT = FinetuneConfig


def _is_series(path: Path) -> bool:
    """Whether ``path`` is a node series artifact (else it is read as flows)."""
    from netflowgen.artifacts import read_manifest
    from netflowgen.series.write import SERIES_KIND

    return path.is_dir() and (path / "netflowgen.json").is_file() and read_manifest(path).get("kind") == SERIES_KIND


def series_of(path: Path, spec: SeriesSpec, fmt: str | None = None, timezone: str = "UTC", flow_filter: str | None = None) -> pl.DataFrame:
    """A series artifact (checked against ``spec``, the model's contract), or flows turned into
    series by ``spec``."""
    from netflowgen.series.build import build_series
    from netflowgen.series.write import series_spec

    if _is_series(path):
        if flow_filter is not None:
            raise ValueError(f"{path} is a node series: --filter selects flows, give flows instead")
        series, manifest = read_series(path)
        spec.require_compatible(series_spec(manifest), "the model", str(path))
        return series
    flows = scan_flows(path, read_options(fmt, None, timezone, flow_filter))
    return build_series(flows, spec, dataset_coverage(path, flows))


def live_series_of(path: Path, spec: SeriesSpec, idle_steps: int, fmt: str | None = None, timezone: str = "UTC",
                   flow_filter: str | None = None) -> pl.DataFrame:
    """Flows turned into series by the rules live detection builds them with (see
    :meth:`~netflowgen.collect.online.OnlineConfig.offline`): every step between a node's flows
    counts (no coverage), silences up to ``idle_steps`` are bridged."""
    from netflowgen.collect.online import OnlineConfig
    from netflowgen.series.build import build_series

    if _is_series(path):
        raise ValueError(f"{path} is a node series: --live builds the series from flows by the live rules, give the flows")
    flows = scan_flows(path, read_options(fmt, None, timezone, flow_filter))
    return build_series(flows, OnlineConfig(series=spec, idle_steps=idle_steps).offline(), coverage=None)


@app.command("finetune")
def finetune_cmd(
    run: Annotated[Path, typer.Argument(help="A pre-trained run directory (from `netflowgen pretrain`).")],
    series_path: Annotated[Path, typer.Option("--series", "-s", help="Labelled node series (from `netflowgen series`).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Detector directory to create.")],
    attack: Annotated[Optional[list[str]], typer.Option("--attack", help="Class that makes a step positive (repeatable; default: the series' attack flag).")] = None,
    budget: Annotated[str, typer.Option(help="Labels to use: a fraction of steps (0.05), a step count (200) or episodes (3ep).")] = "0.1",
    # Defaults None: FinetuneConfig's own (one place defines the recipe; README "On the real
    # captures"), shown in the help from there; None also tells what --scratch may not be given.
    mode: Annotated[Optional[str], typer.Option(help=f"full, probe (frozen backbone) or last-k (default {default(FT, 'mode')}).")] = None,
    head: Annotated[Optional[str], typer.Option(help="What the step head reads: surprise (the pre-trained model's per-feature surprise), hidden (the backbone's hidden state) or both "
                                                f"(default {default(FT, 'head_inputs')}).")] = None,
    head_init: Annotated[Optional[str], typer.Option(help="zero (small random weights, held small by the anchor) or surprise (the head starts as the zero-label surprise score) "
                                                     f"(default {default(FT, 'head_init')}).")] = None,
    anchor: Annotated[Optional[float], typer.Option(help=f"L2-SP weight pulling trained weights back to where they started (default {default(FT, 'anchor'):g}; 0 with --scratch).")] = None,
    last_k: Annotated[Optional[int], typer.Option(help=f"Blocks trained in last-k mode (default {default(FT, 'last_k')}).")] = None,
    surprise_weights: Annotated[Optional[str], typer.Option(help="The head's weights on the surprise: free, or positive (more surprise never lowers "
                                                            f"a score) (default {default(FT, 'surprise_weights')}).")] = None,
    scratch: Annotated[bool, typer.Option("--scratch", help="Same architecture from random weights, trained in full on its hidden state (the baseline).")] = False,
    fit_until: Annotated[Optional[datetime], typer.Option(help="Label only steps before this time (UTC); later ones are the test part.")] = None,
    steps: Annotated[Optional[int], typer.Option(help=f"Optimizer steps (default {default(FT, 'steps')}).")] = None,
    window: Annotated[Optional[int], typer.Option(help=f"Labelled steps per window (default {default(FT, 'window')}).")] = None,
    history: Annotated[Optional[int], typer.Option(help=f"Unlabelled context steps read before each window (default {default(FT, 'history')}).")] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"Peak learning rate of the head (default {default(FT, 'lr'):g}; a pre-trained backbone's is "
                                                    f"{default(FT, 'backbone_lr_scale'):g} of it).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (label draw and training).")] = default(FT, "seed"),
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a pre-trained run into a detector with a small label budget."""
    terminate_as_interrupt()
    from netflowgen.detect.finetune import finetune
    from netflowgen.detect.labels import parse_budget

    with failing(nothing_written(out_dir)):
        given = {"mode": mode, "head_inputs": head, "head_init": head_init, "anchor": anchor, "last_k": last_k,
                 "steps": steps, "window": window, "history": history, "lr": lr, "surprise_weights": surprise_weights}
        if scratch:
            clash = [k for k in ("mode", "head_inputs", "head_init", "surprise_weights") if given[k] is not None]
            if clash:
                raise ValueError(f"--scratch trains the whole model on its hidden state: drop --{clash[0].replace('_inputs', '').replace('_', '-')}")
            given.update(mode="full", head_inputs="hidden", init="scratch", anchor=anchor or 0.0)
        cfg = FinetuneConfig(attack=tuple(attack or ()), budget=parse_budget(budget), seed=seed,
                             **{k: v for k, v in given.items() if v is not None})
        until = fit_until.replace(tzinfo=fit_until.tzinfo or UTC) if fit_until else None
        det = finetune(run, series_path, cfg, out_dir, allowed=(pl.col("step") < until) if until else None,
                       show_progress=not as_json, overwrite=overwrite)
    summary = {"detector": str(out_dir), "threshold": det.threshold, **det.manifest["labels"]}
    if as_json:
        print_json(summary)
        return
    out.print(f"detector {out_dir}: threshold {det.threshold:.4f}; labels used: {det.manifest['labels']}")


@app.command("score")
def score_cmd(
    model_dir: Annotated[Path, typer.Argument(help="A detector (from `netflowgen finetune`), or a pre-trained run for zero-label anomaly scores.")],
    data: Annotated[Path, typer.Argument(help="Node series, or flows (any supported input) turned into series with the model's settings.")],
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write every (node, step) score here (.parquet or .csv).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Alert threshold instead of the calibrated one.")] = None,
    quantile: Annotated[float, typer.Option(help="Zero-label scores: alert above this quantile of the scores.")] = 0.999,
    fmt: FormatOpt = None,
    timezone: TimezoneOpt = "UTC",
    flow_filter: FilterOpt = None,
    live: Annotated[bool, typer.Option("--live", help="Score as `netflowgen detect` would have (detectors, flows only): series by the live rules "
                                                      "(no coverage holes, a node's silences bridged up to --idle-steps) and every step read as "
                                                      "a node's newest; the live scores when no flow came late.")] = False,
    idle_steps: Annotated[int, typer.Option(help="With --live: steps without traffic after which live detection forgets a node.")] = default(LiveConfig, "idle_steps"),
    as_json: JsonOpt = False,
) -> None:
    """Per (node, step) scores and alerts, offline."""
    from netflowgen.artifacts import read_manifest
    from netflowgen.detect.finetune import DETECTOR_KIND, EncodedSteps, load_detector, surprise_scores
    from netflowgen.train.pretrain import load_run

    with failing():
        kind = read_manifest(model_dir).get("kind")
        if kind == DETECTOR_KIND:
            det = load_detector(model_dir)
            if live:
                series = live_series_of(data, det.spec, idle_steps, fmt, timezone, flow_filter)
            else:
                series = series_of(data, det.spec, fmt, timezone, flow_filter)
            scores = det.score(series, as_live=live)
            cut = threshold if threshold is not None else det.threshold
        elif live:
            raise ValueError(f"{model_dir} is not a detector: --live scores as `netflowgen detect` runs a detector")
        else:
            model, tok, _ = load_run(model_dir)
            # A run's tokenizer holds the contract of its pre-training series: flows become
            # series as those were built.
            series = series_of(data, tok.spec, fmt, timezone, flow_filter)
            steps = EncodedSteps.encode(series, tok)
            values = surprise_scores(model, steps)
            finite = values[np.isfinite(values)]
            cut = threshold if threshold is not None else (float(np.quantile(finite, quantile)) if len(finite) else float("inf"))
            scores = steps.keys.with_columns(pl.Series("score", values), pl.Series("label", steps.labels.astype(bool)))
        scores = scores.with_columns((pl.col("score") >= cut).fill_null(False).alias("alert"))
        if out_path is not None:
            write_table_atomic(scores, out_path)
    alerts = scores.filter(pl.col("alert"))
    summary = {"rows": scores.height, "nodes": scores["node"].n_unique(), "alerts": alerts.height,
               "alert_nodes": alerts["node"].n_unique(), "threshold": cut, "out": str(out_path) if out_path else None}
    if as_json:
        print_json(summary)
        return
    out.print(f"{summary['rows']:,} steps of {summary['nodes']:,} nodes scored; {summary['alerts']:,} alerts on "
              f"{summary['alert_nodes']:,} nodes (threshold {cut:.4g})" + (f"; written to {out_path}" if out_path else ""))
    if alerts.height:
        t = Table("node", "step", "score", title="first alerts", title_justify="left")
        for row in alerts.sort("step").head(10).iter_rows(named=True):
            t.add_row(row["node"], str(row["step"]), f"{row['score']:.4g}")
        out.print(t)


@app.command("calibrate")
def calibrate_cmd(
    model_dir: Annotated[Path, typer.Argument(help="A detector (from `netflowgen finetune`).")],
    data: Annotated[Path, typer.Argument(help="Traffic known to be benign, as flows (any supported input): e.g. a normal week of the network it will watch.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Detector directory to write: a copy with the new threshold (the detector itself with --overwrite).")],
    quantile: Annotated[float, typer.Option(help="Alert above this quantile of the benign scores: 1 (default) puts the threshold above all of them.")] = 1.0,
    margin: Annotated[float, typer.Option(help="Headroom for benign levels that drift above those seen: the threshold's odds "
                                                "times 1 + margin (0.5 as a threshold detector's 50% over the highest rate).")] = 0.0,
    idle_steps: Annotated[int, typer.Option(help="Steps without traffic after which live detection forgets a node.")] = default(LiveConfig, "idle_steps"),
    fmt: FormatOpt = None,
    timezone: TimezoneOpt = "UTC",
    flow_filter: FilterOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Set a detector's alert threshold on benign traffic, as one sets a threshold detector's limits.

    The traffic is scored as `netflowgen detect` scores it (series by the live rules, every step
    read as a node's newest); steps labelled as attacks, where the flows carry labels, are left
    out. The threshold goes just above the --quantile of the rest, raised by --margin, and the
    detector is written with it, recording how it was set and the threshold it replaced.
    """
    from netflowgen.detect.finetune import load_detector, with_threshold
    from netflowgen.detect.threshold import calibrate_threshold, with_margin

    in_place = out_dir.resolve() == model_dir.resolve()
    with failing(f"interrupted; {model_dir} is unchanged" if in_place else nothing_written(out_dir)):
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"--quantile must be in (0, 1], got {quantile:g}")
        if not (margin >= 0.0 and math.isfinite(margin)):
            raise ValueError(f"--margin must be 0 or more, got {margin:g}")
        det = load_detector(model_dir)
        series = live_series_of(data, det.spec, idle_steps, fmt, timezone, flow_filter)
        scores = det.score(series, as_live=True)
        benign = scores.filter(~pl.col("label"))
        if benign.height == 0:
            raise ValueError(f"{data}: no benign node-step to calibrate on ({scores.height} scored, all labelled as attacks)")
        # Every step benign: the false-positive-rate rule at 1 - quantile alerts on at most that
        # share of them (with quantile 1, the threshold is just above the highest score).
        above = calibrate_threshold(benign["score"], np.zeros(benign.height, bool), rule="fpr", max_fpr=1.0 - quantile)
        threshold = with_margin(above, margin)
        record = {"rule": "benign", "quantile": quantile, "margin": margin, "threshold_before_margin": above,
                  "data": str(data.resolve()), "node_steps": benign.height,
                  "nodes": benign["node"].n_unique(), "labelled_attack_steps_left_out": scores.height - benign.height,
                  "first_step": str(benign["step"].min()), "last_step": str(benign["step"].max()),
                  "highest_benign_score": float(benign["score"].max())}
        with_threshold(model_dir, out_dir, threshold, record, overwrite=overwrite)
    previous = det.threshold
    summary = {"detector": str(out_dir), "threshold": threshold, "previous_threshold": previous, **record,
               "benign_alerts_at_previous": int((benign["score"] >= previous).sum()),
               "benign_alerts": int((benign["score"] >= threshold).sum())}
    if as_json:
        print_json(summary)
        return
    margin_text = f" ({above:.4g} above the benign scores, odds x {1 + margin:g})" if margin else ""
    out.print(f"detector {out_dir}: threshold {previous:.4g} -> {threshold:.4g}{margin_text}, set on {benign.height:,} benign steps of "
              f"{record['nodes']:,} nodes ({record['first_step']} to {record['last_step']}; highest score "
              f"{record['highest_benign_score']:.4g}); benign steps alerting: {summary['benign_alerts_at_previous']:,} -> "
              f"{summary['benign_alerts']:,}" + (f"; {record['labelled_attack_steps_left_out']:,} labelled attack steps left out"
                                                  if record["labelled_attack_steps_left_out"] else ""))


def write_table_atomic(table: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if path.suffix == ".csv":
            table.with_columns(pl.col("step").dt.to_string("%Y-%m-%dT%H:%M:%SZ")).write_csv(tmp)
        else:
            table.write_parquet(tmp, compression="zstd")
        os.replace(tmp, path)
    except (pl.exceptions.PolarsError, OSError) as e:  # a full disk: errors naming no file
        from netflowgen.artifacts import write_failure
        raise write_failure(path, e) from e
    finally:
        tmp.unlink(missing_ok=True)
