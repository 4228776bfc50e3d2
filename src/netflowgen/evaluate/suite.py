"""Run a benchmark suite (``spec.py``): detection tasks on real or simulated flows, every method
on the same splits and labels, several seeds, one results file and a report.

The run, for every task: flows -> (injection) -> labelled node series -> split (``tasks.py``,
``splits.py``);
pre-training per step width on the unlabelled flows of every dataset before its earliest test
cut; then for every budget and seed one label draw shared by every method; every method scores
every row; thresholds are calibrated on the draw's calibration windows; metrics on the test part.
Methods are in ``spec.METHODS``; each scores through the registry ``SCORERS``.

Every task also reports the PR-AUC of the best single feature on its test part; above 0.95 the
task is marked trivial.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netflowgen.artifacts import write_json
from netflowgen.evaluate.spec import BASELINES, BUILTIN_BASES, METHODS, TUNED, VARIANT_FIELDS, SuiteSpec, load_suite
from netflowgen.evaluate.tasks import SuiteData, TaskData, prepare_task
from netflowgen.series.spec import floor_step

__all__ = ["METHODS", "RESULTS_NAME", "SCORERS", "TEST_SCORES_NAME", "load_suite", "plan_suite", "run_suite"]

log = logging.getLogger(__name__)

RESULTS_NAME = "results.json"
#: Per task: every method's test scores per budget and seed (see _save_test_scores).
TEST_SCORES_NAME = "test_scores.npz"


# --- methods -----------------------------------------------------------------------------------


@dataclass
class _Scoring:
    """What a method scores one label draw of a task with (rows in node, step order)."""

    task: TaskData
    steps: Any  # EncodedSteps of the task's series
    selection: Any  # the label draw: LabelSelection
    run: Path  # the pre-training run at the task's step
    budget: Any
    seed: int
    suite: SuiteSpec
    cache: dict[str, np.ndarray]  # scores that do not depend on the draw, per method
    test_rows: np.ndarray


def _finetuned(method: str, c: _Scoring) -> np.ndarray:
    """A fine-tuned FlowGPT (built in, or a suite's variant of one): it scores the test and
    labelled rows only (NaN elsewhere; the model is the costly part)."""
    from netflowgen.detect.finetune import FinetuneConfig, finetune

    variant = c.suite.variants.get(method, {"base": method})
    settings = {"window": 32, "history": 16, "steps": 150, "batch_size": 32, "lr": 1e-2,
                **{k: v for k, v in c.suite.finetune.items() if k in VARIANT_FIELDS}, **TUNED[variant["base"]],
                **{k: v for k, v in variant.items() if k != "base"}}
    cfg = FinetuneConfig(attack=(), budget=c.budget, seed=c.seed, **settings)
    det = finetune(c.run, c.task.series, cfg, selection=c.selection, show_progress=False, score_rows=c.test_rows)
    # finetune scored every row of this very series (sorted alike) to calibrate its threshold.
    return det.fit_scores


def _zero_label(method: str, c: _Scoring) -> np.ndarray:
    """The pre-trained model's surprise (``surprise``), or the same as a causal z-score against
    the node's own recent surprise (``surprise-node``); no label is read."""
    from netflowgen.detect.finetune import node_relative_surprise, surprise_scores
    from netflowgen.train.pretrain import load_run

    if "surprise" not in c.cache:
        model, _, _ = load_run(c.run)
        s = surprise_scores(model, c.steps)
        c.cache["surprise"] = np.where(np.isfinite(s), s, np.nanmin(s) if np.isfinite(s).any() else 0.0)
    if method == "surprise-node" and method not in c.cache:
        c.cache[method] = node_relative_surprise(c.task.series, c.cache["surprise"], c.task.step)
    return c.cache[method]


def _ewma(method: str, c: _Scoring) -> np.ndarray:
    """volume: the operator's flows and packets; ewma: the largest z over every feature;
    ewma-held: the same, its state held over holes in the data up to a day."""
    from netflowgen.detect.baselines import VolumeConfig, VolumeDetector
    from netflowgen.series.features import feature_names

    if method not in c.cache:
        features = VolumeConfig.features if method == "volume" else tuple(feature_names())
        hold = timedelta(days=1) if method == "ewma-held" else None
        scored = VolumeDetector(VolumeConfig(features=features, step=c.task.step, hold_over=hold)).score(c.task.series)
        c.cache[method] = _aligned(scored, c.steps)
    return c.cache[method]


def _lightgbm(method: str, c: _Scoring) -> np.ndarray:
    """LightGBM on lagged features (``lightgbm-relative``: with node-relative ones), trained on
    exactly the draw's labels."""
    from netflowgen.detect.baselines import GBTConfig, GBTDetector

    labelled = c.task.series.with_columns(pl.Series("_y", c.steps.labels.astype(bool)))
    gbt = GBTDetector(GBTConfig(step=c.task.step, seed=c.seed, relative=method == "lightgbm-relative"))
    gbt.fit(labelled, label_col="_y", train_rows=c.selection.train, valid_rows=c.selection.calibrate)
    return _aligned(gbt.score(c.task.series), c.steps)


#: How each method scores: the fine-tuned FlowGPT methods (and every variant of one) through
#: ``_finetuned``, the others here.
SCORERS: dict[str, Callable[[str, _Scoring], np.ndarray]] = {
    **{m: _finetuned for m in TUNED},
    "surprise": _zero_label, "surprise-node": _zero_label,
    "volume": _ewma, "ewma": _ewma, "ewma-held": _ewma,
    "lightgbm": _lightgbm, "lightgbm-relative": _lightgbm,
}


def _scores(method: str, c: _Scoring) -> np.ndarray:
    """Every row's score (rows in node, step order), for one method."""
    scorer = _finetuned if method in c.suite.variants else SCORERS.get(method)
    if scorer is None:
        raise ValueError(f"unknown method {method!r}")
    return scorer(method, c)


def _aligned(scored: pl.DataFrame, steps: Any) -> np.ndarray:
    joined = steps.keys.join(scored, on=["node", "step"], how="left", maintain_order="left")
    return joined["score"].fill_null(float("-inf")).to_numpy()


# --- the run -----------------------------------------------------------------------------------


def plan_suite(suite: SuiteSpec, out: Path, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """What the suite would evaluate, without training: per task its steps, and per part (fit,
    test) the victims, attack episodes, attack types and positive steps. Datasets and injections
    are prepared in OUT as a run would (and reused by it)."""
    from netflowgen.evaluate.metrics import episodes

    say = progress or (lambda msg: log.info(msg))
    suite.check_inputs()
    data = SuiteData(suite, out / "data")
    plan: dict[str, Any] = {"suite": suite.name, "tasks": {}}
    for spec in suite.tasks:
        say(f"{spec.name}: preparing ({spec.kind})")
        t = prepare_task(spec, data, out / "tasks" / spec.name, say)
        series = t.series.sort("node", "step")
        labels = series["attack"].to_numpy()
        wanted = {a.lower() for a in t.attack_classes}
        entry: dict[str, Any] = {"kind": spec.kind, "step_seconds": t.step.total_seconds(), "rows": series.height,
                                 "nodes": series["node"].n_unique()}
        for part, rows in (("fit", t.split.fit_rows(series)), ("test", t.split.test_rows(series, t.attack_classes))):
            frame = series.filter(pl.Series(rows)).with_columns(pl.Series("label", labels[rows]))
            eps = episodes(frame.select("node", "step", "label"), t.step)
            classes = frame.filter(pl.col("label")).select(pl.col("classes").explode()).to_series().drop_nulls()
            entry[part] = {"steps": int(rows.sum()), "positive_steps": int(labels[rows].sum()), "episodes": eps.height,
                           "victims": eps["node"].n_unique() if eps.height else 0,
                           "attack_types": sorted({c for c in classes.to_list() if c.lower() in wanted})}
        plan["tasks"][spec.name] = entry
    totals = {part: {k: sum(e[part][k] for e in plan["tasks"].values()) for k in ("episodes", "victims", "positive_steps")}
              for part in ("fit", "test")}
    plan["totals"] = totals
    return plan


def run_suite(suite: SuiteSpec, out: Path, *, progress: Callable[[str], None] | None = None,
              show_progress: bool = False, max_seconds: float | None = None) -> dict[str, Any]:
    """Run every task, method, budget and seed; returns (and writes to OUT/results.json) the results."""
    entered = time.perf_counter()
    # PyTorch and the models load here, so that the time they take shows as a stage of its own.
    importlib.import_module("netflowgen.detect.finetune")
    from netflowgen.evaluate.corpus import corpus_report, pretrain_for

    say = progress or (lambda msg: log.info(msg))
    started = time.perf_counter()
    # Calibration parts without positives are expected with tiny budgets (the fallback is
    # documented in calibrate_threshold); one warning per method and seed would bury the progress.
    for name in ("netflowgen.evaluate.metrics", "netflowgen.detect.threshold", "netflowgen.detect.baselines"):
        logging.getLogger(name).setLevel(logging.ERROR)
    suite.check_inputs()
    out.mkdir(parents=True, exist_ok=True)
    data = SuiteData(suite, out / "data")
    # Wall time per stage, so that a user sees where the minutes go (printed by the CLI).
    timings: dict[str, float] = {"loading PyTorch and the models": started - entered}
    stage = time.perf_counter()
    tasks: list[TaskData] = []
    for spec in suite.tasks:
        say(f"{spec.name}: preparing ({spec.kind})")
        t = prepare_task(spec, data, out / "tasks" / spec.name, say)
        tasks.append(t)
        folder = out / "tasks" / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".series.parquet.tmp"
        t.series.write_parquet(tmp)  # for the report's timeline; renamed whole into place
        os.replace(tmp, folder / "series.parquet")
    timings["ingest, inject and node series"] = time.perf_counter() - stage
    # Pre-training per step width, before every dataset's earliest test cut.
    cuts: dict[str, datetime] = {}
    for t in tasks:
        for ds, cut in t.split.cuts.items():
            cuts[ds] = min(cuts.get(ds, cut), cut)
    runs: dict[timedelta, Path] = {}
    corpus: dict[timedelta, dict[str, Any]] = {}
    for step in sorted({t.step for t in tasks}):
        say(f"pre-training at {step.total_seconds():g} s steps")
        stage = time.perf_counter()
        runs[step] = pretrain_for(step, suite, data, cuts, out / "pretrain", show_progress)
        timings[f"pre-training at {step.total_seconds():g} s"] = time.perf_counter() - stage
        if suite.corpus_report:
            say(f"held-out next step per dataset at {step.total_seconds():g} s")
            stage = time.perf_counter()
            corpus[step] = corpus_report(runs[step], step, suite, data, cuts)
            timings[f"next-step report at {step.total_seconds():g} s"] = time.perf_counter() - stage
    results: dict[str, Any] = {"suite": suite.name, "description": suite.description, "synthetic": suite.synthetic,
                               "methods": list(suite.methods), "budgets": list(suite.budgets), "seeds": list(suite.seeds),
                               "pretrain": {f"{int(s.total_seconds())}s": {**_run_info(r), "corpus": corpus.get(s)}
                                            for s, r in runs.items()},
                               "tasks": {}}
    for t in tasks:
        stage = time.perf_counter()
        results["tasks"][t.spec.name] = _evaluate_task(t, runs[t.step], suite, out, say)
        timings[f"{t.spec.name}: every method, budget and seed"] = time.perf_counter() - stage
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            say(f"time limit of {max_seconds:g} s reached; later tasks skipped")
            break
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["timings"] = {k: round(v, 1) for k, v in timings.items()}
    write_json(out / RESULTS_NAME, results)
    return results


def _evaluate_task(t: TaskData, run: Path, suite: SuiteSpec, out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Every method, budget and seed on one prepared task: its results entry (metrics per run,
    summaries, paired comparisons with intervals), scores saved beside it."""
    from netflowgen.detect.labels import parse_budget, select_labels
    from netflowgen.evaluate.metrics import (
        TRIVIAL_PR_AUC,
        best_causal_feature,
        calibrate_threshold,
        detection_metrics,
        episodes,
        summarize_seeds,
    )
    from netflowgen.evaluate.splits import check_no_leak
    from netflowgen.evaluate.uncertainty import compare_methods
    from netflowgen.train.pretrain import load_run
    from netflowgen.train.steps import EncodedSteps

    _, tok, _ = load_run(run)
    series = t.series.sort("node", "step")
    t.series = series
    # The series was built with the task's attack classes: its own attack flag is the label
    # (it matches label and label_detail, the classes list holds one of them per flow).
    steps = EncodedSteps.encode(series, tok)
    fit_rows, test_rows = t.split.fit_rows(series), t.split.test_rows(series, t.attack_classes)
    labels = steps.labels.astype(bool)
    entry: dict[str, Any] = {
        "kind": t.spec.kind, "description": t.spec.description, "step_seconds": t.step.total_seconds(),
        "attack": list(t.attack_classes), "split": t.split.describe(),
        "rows": series.height, "nodes": series["node"].n_unique(),
        "fit_rows": int(fit_rows.sum()), "fit_positive": int(labels[fit_rows].sum()),
        "test_rows": int(test_rows.sum()), "test_positive": int(labels[test_rows].sum()), "runs": [], "errors": [],
    }
    frame = series.select("node", "step").with_columns(pl.Series("label", labels))
    entry["test_episodes"] = episodes(frame.filter(pl.Series(test_rows)), t.step).height
    entry["fit_episodes"] = episodes(frame.filter(pl.Series(fit_rows)), t.step).height
    if entry["test_positive"] == 0:
        entry["errors"].append("the test part holds no attack step")
    else:
        name, value = best_causal_feature(series, test_rows, labels, t.step)
        entry["best_single_feature"] = {"name": name, "pr_auc": value, "causal": True}
        entry["trivial"] = value > TRIVIAL_PR_AUC
    cache: dict[str, np.ndarray] = {}
    test_scores: dict[tuple[str, str], list[np.ndarray]] = {}
    levels = _intensity_rows(t, series) if t.injections is not None else {}
    for budget_text in suite.budgets:
        budget = parse_budget(budget_text)
        for seed in suite.seeds:
            try:
                selection = select_labels(steps.labels, steps.bounds, budget, int(suite.finetune.get("window", 32)),
                                          seed, allowed=fit_rows, step_order=steps.step_s)
            except ValueError as e:
                entry["errors"].append(f"budget {budget_text}, seed {seed}: {e}")
                continue
            check_no_leak(series, t.split, selection.train | selection.calibrate, test_rows)
            cal = selection.calibrate if labels[selection.calibrate].any() else selection.train | selection.calibrate
            for method in suite.methods:
                if entry["test_positive"] == 0:
                    break
                say(f"{t.spec.name}: {method}, budget {budget_text}, seed {seed}")
                t0 = time.perf_counter()
                try:
                    scores = _scores(method, _Scoring(t, steps, selection, run, budget, seed, suite, cache, test_rows))
                except ValueError as e:
                    entry["errors"].append(f"{method}, budget {budget_text}, seed {seed}: {e}")
                    continue
                threshold = calibrate_threshold(scores[cal], labels[cal])
                test_scores.setdefault((method, budget_text), []).append(scores[test_rows])
                frame = series.select("node", "step").with_columns(pl.Series("label", labels), pl.Series("score", scores))
                metrics = detection_metrics(frame.filter(pl.Series(test_rows)), threshold, t.step).to_dict()
                rec = {"method": method, "budget": budget_text, "seed": seed, "seconds": round(time.perf_counter() - t0, 2),
                       "labels": selection.describe(steps.labels), **metrics}
                if levels:
                    rec["by_intensity"] = _by_intensity(levels, frame, test_rows, threshold, t.step)
                entry["runs"].append(rec)
                if seed == suite.seeds[0] and budget_text == suite.budgets[-1]:
                    _save_scores(out / "tasks" / t.spec.name / f"scores-{method}.parquet",
                                 frame.with_columns(pl.Series("test", test_rows)), threshold)
    entry["summary"] = _summarize(entry["runs"], summarize_seeds)
    if test_scores:
        say(f"{t.spec.name}: bootstrap over victims ({suite.bootstrap} replicates)")
        entry["comparisons"] = compare_methods(test_scores, series["node"].to_numpy()[test_rows], labels[test_rows],
                                               BASELINES, len(suite.seeds), suite.bootstrap,
                                               tuned=[m for m in suite.methods if suite.tuned(m)],
                                               bases={**BUILTIN_BASES, **{v: d["base"] for v, d in suite.variants.items()}})
        entry["test_victims"] = entry["comparisons"]["victims"]
        _save_test_scores(out / "tasks" / t.spec.name / TEST_SCORES_NAME, test_scores, series.filter(pl.Series(test_rows)),
                          labels[test_rows])
        if levels:
            say(f"{t.spec.name}: intervals per attack intensity")
            entry["intensity_comparisons"] = _intensity_intervals(levels, series, test_rows, labels, test_scores, suite, t.step)
    return entry


def _run_info(run: Path) -> dict[str, Any]:
    from netflowgen.artifacts import read_manifest

    m = read_manifest(run)
    share = run / "suite_corpus.json"  # the node-steps trained on, of the corpus (pretrain.corpus_fraction)
    return {"path": str(run), "size": m.get("size"), "steps": m.get("steps"), "parameters": m.get("parameters"),
            "final": m.get("final"), **({"corpus_share": json.loads(share.read_text())} if share.is_file() else {})}


def _intensity_rows(t: TaskData, series: pl.DataFrame) -> dict[str, np.ndarray]:
    """Per attack intensity of the test part's injections: the rows (of ``series``) inside them."""
    gt = t.injections.filter(pl.col("part") == "test")  # type: ignore[union-attr]
    intensity_col = "intensity" if "intensity" in gt.columns else gt.columns[0]
    out = {}
    for value in gt[intensity_col].unique().sort().to_list():
        hit = pl.lit(False)
        for row in gt.filter(pl.col(intensity_col) == value).iter_rows(named=True):
            start = floor_step(datetime.fromisoformat(row["start"]) if isinstance(row["start"], str) else row["start"], t.step)
            end = datetime.fromisoformat(row["end"]) if isinstance(row["end"], str) else row["end"]
            hit = hit | ((pl.col("node") == row["victim"]) & (pl.col("step") >= start) & (pl.col("step") <= end))
        out[str(value)] = series.select(hit.alias("hit")).to_series().to_numpy()
    return out


def _by_intensity(levels: dict[str, np.ndarray], frame: pl.DataFrame, test_rows: np.ndarray, threshold: float,
                  step: timedelta) -> dict[str, Any]:
    """Metrics per attack intensity: the positives of that intensity's injections against every
    negative of the test part."""
    from netflowgen.evaluate.metrics import detection_metrics

    out = {}
    labels = frame["label"].to_numpy()
    for value, hit in levels.items():
        rows = test_rows & (~labels | hit)
        if not (labels & rows).any():
            continue
        out[value] = detection_metrics(frame.filter(pl.Series(rows)), threshold, step).to_dict()
    return out


def _intensity_intervals(levels: dict[str, np.ndarray], series: pl.DataFrame, test_rows: np.ndarray, labels: np.ndarray,
                         test_scores: dict[tuple[str, str], list[np.ndarray]], suite: SuiteSpec, step: timedelta) -> dict[str, Any]:
    """Per intensity: every method's PR-AUC with its interval over victims, the paired differences
    (as for the whole test part), and the best single causal feature on those rows (how hard the
    intensity is: near 1 a threshold on one feature finds it)."""
    from netflowgen.evaluate.metrics import best_causal_feature
    from netflowgen.evaluate.uncertainty import compare_methods

    out: dict[str, Any] = {}
    nodes = series["node"].to_numpy()[test_rows]
    for value, hit in levels.items():
        rows = test_rows & (~labels | hit)
        sub = rows[test_rows]  # the same rows, as a mask over the test part
        if not labels[rows].any():
            continue
        scores = {k: [a[sub] for a in v] for k, v in test_scores.items()}
        entry = compare_methods(scores, nodes[sub], labels[test_rows][sub], BASELINES, len(suite.seeds), suite.bootstrap,
                                tuned=[m for m in suite.methods if suite.tuned(m)],
                                bases={**BUILTIN_BASES, **{v: d["base"] for v, d in suite.variants.items()}})
        name, best = best_causal_feature(series, rows, labels, step)
        entry["best_single_feature"] = {"name": name, "pr_auc": best, "causal": True}
        entry["positive_steps"] = int(labels[rows].sum())
        out[value] = entry
    return out


def _summarize(runs: list[dict[str, Any]], summarize_seeds: Callable[..., Any]) -> list[dict[str, Any]]:
    keys = sorted({(r["method"], r["budget"]) for r in runs}, key=lambda k: (k[1], k[0]))
    rows = []
    for method, budget in keys:
        mine = [r for r in runs if r["method"] == method and r["budget"] == budget]
        stats = summarize_seeds([{k: v for k, v in r.items() if k not in ("labels", "by_intensity")} for r in mine])
        row = {"method": method, "budget": budget, "seeds": len(mine), "metrics": stats}
        intens: dict[str, list[dict[str, Any]]] = {}
        for r in mine:
            for k, v in (r.get("by_intensity") or {}).items():
                intens.setdefault(k, []).append(v)
        if intens:
            row["by_intensity"] = {k: summarize_seeds(v) for k, v in intens.items()}
        rows.append(row)
    return rows


def _save_scores(path: Path, frame: pl.DataFrame, threshold: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.with_columns((pl.col("score") >= threshold).alias("alert"), pl.lit(threshold).alias("threshold")).write_parquet(tmp)
    os.replace(tmp, path)


def _save_test_scores(path: Path, test_scores: dict[tuple[str, str], list[np.ndarray]], test: pl.DataFrame,
                      labels: np.ndarray) -> None:
    """Every method's test-row scores per budget and seed, with the rows' node, step and label, so
    that two suite runs on the same split (another pre-training, say) can be compared paired on
    the same rows and label draws (benchmarks/compare_runs.py). Plain arrays: loaded with
    allow_pickle=False."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"score|{m}|{b}|{i}": a.astype(np.float32) for (m, b), per_seed in test_scores.items()
              for i, a in enumerate(per_seed)}
    arrays |= {"node": test["node"].cast(pl.String).to_numpy().astype(str),
               "step": test["step"].dt.epoch("s").to_numpy(), "label": labels.astype(bool)}
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
