"""Detection metrics: how well a per-(node, step) score finds attacks, and how early.

Every detector (the baselines in :mod:`netflowgen.detect` and the fine-tuned model) produces a
*score frame*: ``node``, ``step``, ``score`` (Float64, higher = more likely attack). The metrics
here take that frame joined with the labels (:func:`join_scores`): ``node``, ``step``, ``label``
(Boolean), ``score``. Definitions, used the same way for every detector:

* An **alert** is a step whose score is at least the threshold (``score >= threshold``).
* An **episode** is a maximal run of positive steps of one node (:func:`episodes`); runs separated
  by at most ``max_gap_steps`` steps that are not positive merge into one. A step that is missing
  from the node's rows (the node was silent long enough to end its activity period) counts as not
  positive: runs are measured in time, not in rows.
* The **detection delay** of an episode is the number of steps from its onset to the first alert
  inside it (onset to end, inclusive); an alert before the onset does not count; no alert inside
  means the episode was **missed** (delay ``None``).
* **False alerts per node-day**: alerts on negative steps divided by the node-days observed,
  ``rows * step / 1 day`` (every row of the frame is one observed node-step).
* The alert **threshold** is chosen on a validation part with :func:`calibrate_threshold`, never on
  the part that is scored.

The task's difficulty is reported next to every detector: :func:`best_single_feature` is the best
PR-AUC that one raw traffic feature reaches alone; above 0.95 the task is trivial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, roc_auc_score

# Calibration belongs to the detectors (they carry their threshold); the metrics use it too.
from netflowgen.detect.threshold import ThresholdRule, calibrate_threshold

__all__ = [
    "TRIVIAL_PR_AUC",
    "DetectionMetrics",
    "ThresholdRule",
    "best_causal_feature",
    "best_single_feature",
    "calibrate_threshold",
    "detection_metrics",
    "episode_delays",
    "episodes",
    "join_scores",
    "single_feature_scores",
    "summarize_seeds",
]


TRIVIAL_PR_AUC = 0.95
"""A task where one feature alone reaches this PR-AUC is trivial."""

_DAY_US = 86_400 * 1_000_000


# ---------------------------------------------------------------------------------------------
# Validation of the frames


def _step_us(step: timedelta) -> int:
    if not isinstance(step, timedelta):
        raise TypeError(f"step must be a datetime.timedelta (the series' step width), not {type(step).__name__}")
    us = step // timedelta(microseconds=1)
    if us <= 0 or step % timedelta(microseconds=1):
        raise ValueError(f"step must be a positive whole number of microseconds, got {step}")
    return int(us)


def _require(frame: pl.DataFrame, columns: Mapping[str, str], what: str) -> None:
    """Check that ``frame`` has the columns, of the kinds named ('datetime', 'bool', 'number', 'any')."""
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"{what}: expected a polars DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; the frame has {frame.columns}")
    for name, kind in columns.items():
        dtype = frame.schema[name]
        ok = {
            "datetime": isinstance(dtype, pl.Datetime),
            "bool": dtype == pl.Boolean,
            "number": dtype.is_numeric(),
            "any": True,
        }[kind]
        if not ok:
            hint = " (cast it, e.g. pl.col(...).cast(pl.Boolean))" if kind == "bool" else ""
            raise TypeError(f"{what}: column {name!r} must be {kind}, it is {dtype}{hint}")
        nulls = frame[name].null_count()
        if nulls:
            raise ValueError(f"{what}: column {name!r} has {nulls} null value(s); every row needs one")


def _indexed(frame: pl.DataFrame, step_us: int, what: str) -> pl.DataFrame:
    """The frame sorted by node and step, with ``_k``: the step's index (in steps) from the
    frame's first step. Duplicate (node, step) rows and steps off the step grid are errors."""
    us = pl.col("step").dt.epoch("us")
    out = frame.sort("node", "step").with_columns((us - us.min()).alias("_k"))
    off = out.filter(pl.col("_k") % step_us != 0)
    if off.height:
        raise ValueError(f"{what}: {off.height} step(s) are not whole steps of {timedelta(microseconds=step_us)} "
                         f"from the first one (e.g. node {off['node'][0]!r} at {off['step'][0]}); "
                         "pass the series' step width")
    out = out.with_columns(pl.col("_k") // step_us)
    dup = out.filter((pl.col("node") == pl.col("node").shift(1)) & (pl.col("_k") == pl.col("_k").shift(1)))
    if dup.height:
        raise ValueError(f"{what}: {dup.height} duplicate (node, step) row(s), e.g. node {dup['node'][0]!r} "
                         f"at {dup['step'][0]}")
    return out


def _episodes_of(indexed: pl.DataFrame, label: str, max_gap_steps: int) -> pl.DataFrame:
    """Episodes from an indexed frame (see :func:`_indexed`)."""
    pos = indexed.filter(pl.col(label)).select("node", "step", "_k")
    # A new episode where the node changes or more than max_gap_steps steps separate two positives.
    new = (pl.col("node") != pl.col("node").shift(1)) | (pl.col("_k") - pl.col("_k").shift(1) - 1 > max_gap_steps)
    return (
        pos.with_columns(new.fill_null(True).cast(pl.UInt32).cum_sum().alias("_episode"))
        .group_by("_episode", maintain_order=True)
        .agg(
            pl.col("node").first(),
            pl.col("step").first().alias("onset"),
            pl.col("step").last().alias("end"),
            (pl.col("_k").last() - pl.col("_k").first() + 1).cast(pl.Int64).alias("steps"),
            pl.len().cast(pl.Int64).alias("positive_steps"),
        )
        .drop("_episode")
    )


def episodes(labels: pl.DataFrame, step: timedelta, max_gap_steps: int = 0, *, label: str = "label") -> pl.DataFrame:
    """Attack episodes: maximal runs of positive steps per node.

    ``labels`` has ``node``, ``step`` and the Boolean column ``label`` (``"attack"`` for a series
    table). Runs separated by at most ``max_gap_steps`` steps that are not positive (negative or
    missing rows) merge into one episode. Returns ``node``, ``onset``, ``end`` (the last positive
    step), ``steps`` (onset to end inclusive, in steps) and ``positive_steps``, sorted by node and
    onset.

    >>> from datetime import datetime, timezone
    >>> t = [datetime(2024, 1, 1, 0, m, tzinfo=timezone.utc) for m in range(6)]
    >>> frame = pl.DataFrame({"node": ["a"] * 6, "step": t, "label": [True, True, False, False, True, False]})
    >>> episodes(frame, timedelta(minutes=1))["steps"].to_list()
    [2, 1]
    >>> episodes(frame, timedelta(minutes=1), max_gap_steps=2)["steps"].to_list()
    [5]
    """
    if max_gap_steps < 0:
        raise ValueError(f"max_gap_steps must be 0 or more, got {max_gap_steps}")
    _require(labels, {"node": "any", "step": "datetime", label: "bool"}, "episodes")
    return _episodes_of(_indexed(labels, _step_us(step), "episodes"), label, max_gap_steps)


def _validated(frame: pl.DataFrame, step: timedelta, what: str) -> tuple[pl.DataFrame, int]:
    _require(frame, {"node": "any", "step": "datetime", "label": "bool", "score": "number"}, what)
    if frame.height == 0:
        raise ValueError(f"{what}: the frame has no rows")
    bad = frame.filter(~pl.col("score").cast(pl.Float64).is_finite()).height
    if bad:
        raise ValueError(f"{what}: {bad} score(s) are NaN or infinite; a detector must give finite scores")
    step_us = _step_us(step)
    return _indexed(frame.with_columns(pl.col("score").cast(pl.Float64)), step_us, what), step_us


def _delays(indexed: pl.DataFrame, threshold: float, step_us: int, max_gap_steps: int) -> pl.DataFrame:
    eps = _episodes_of(indexed, "label", max_gap_steps).with_row_index("_episode")
    alerts = indexed.filter(pl.col("score") >= threshold).select("node", "step").sort("step")
    # Each alert meets the last episode of its node that began at or before it; it is inside the
    # episode when it is not after its end. The earliest such alert per episode is its detection.
    hits = (
        alerts.join_asof(eps.select("_episode", "node", "onset", "end").sort("onset"), left_on="step",
                         right_on="onset", by="node", strategy="backward", check_sortedness=False)
        .filter(pl.col("step") <= pl.col("end"))
        .group_by("_episode")
        .agg(pl.col("step").min().alias("first_alert"))
    )
    return (
        eps.join(hits, on="_episode", how="left")
        .sort("_episode")
        .with_columns((((pl.col("first_alert") - pl.col("onset")).dt.total_microseconds()) // step_us).alias("delay"))
        .drop("_episode")
    )


def episode_delays(frame: pl.DataFrame, threshold: float, step: timedelta, max_gap_steps: int = 0) -> pl.DataFrame:
    """Every episode of ``frame`` (node, step, label, score) with its first alert and delay.

    Columns: those of :func:`episodes`, then ``first_alert`` (the first step inside the episode
    with ``score >= threshold``; null when missed) and ``delay`` (steps from onset to it).
    """
    indexed, step_us = _validated(frame, step, "episode_delays")
    return _delays(indexed, float(threshold), step_us, max_gap_steps)


@dataclass(frozen=True)
class DetectionMetrics:
    """Detection quality of one scored part at one threshold (see the module's definitions)."""

    threshold: float
    rows: int
    """Node-steps scored."""
    positives: int
    """Positive (attack) node-steps."""
    pr_auc: float | None
    """Average precision (scikit-learn); None without positives."""
    roc_auc: float | None
    """None when only one class is present."""
    alerts: int
    true_alerts: int
    false_alerts: int
    """Alerts on negative steps."""
    precision: float | None
    """None without alerts."""
    recall: float | None
    """None without positives."""
    f1: float | None
    """None when there are neither positives nor alerts."""
    episodes: int
    episodes_detected: int
    detected_fraction: float | None
    """Detected episodes / episodes; None without episodes."""
    mean_delay: float | None
    """Mean delay in steps over the detected episodes; None when none was detected."""
    median_delay: float | None
    delays: tuple[int | None, ...]
    """Per episode (sorted by node, onset): steps from onset to the first alert; None = missed."""
    node_days: float
    """rows * step / 1 day."""
    false_alerts_per_node_day: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (``delays`` as a list)."""
        out = asdict(self)
        out["delays"] = list(self.delays)
        return out


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def detection_metrics(frame: pl.DataFrame, threshold: float, step: timedelta, *, max_gap_steps: int = 0) -> DetectionMetrics:
    """Detection metrics of ``frame`` (``node``, ``step``, ``label`` Boolean, ``score``) at ``threshold``.

    ``step`` is the series' step width; ``max_gap_steps`` merges episodes as in :func:`episodes`.

    >>> from datetime import datetime, timezone
    >>> t = [datetime(2024, 1, 1, 0, m, tzinfo=timezone.utc) for m in range(4)]
    >>> frame = pl.DataFrame({"node": ["a"] * 4, "step": t, "label": [False, True, True, False],
    ...                       "score": [0.1, 0.2, 0.9, 0.8]})
    >>> m = detection_metrics(frame, 0.5, timedelta(minutes=1))
    >>> m.delays, m.alerts, m.false_alerts, m.recall
    ((1,), 2, 1, 0.5)
    """
    indexed, step_us = _validated(frame, step, "detection_metrics")
    threshold = float(threshold)
    y = indexed["label"].to_numpy()
    s = indexed["score"].to_numpy()
    positives = int(y.sum())
    rows = int(y.size)
    alert = s >= threshold
    tp = int(np.count_nonzero(alert & y))
    fp = int(np.count_nonzero(alert & ~y))
    fn = positives - tp
    pr_auc = float(average_precision_score(y, s)) if positives else None
    roc_auc = float(roc_auc_score(y, s)) if 0 < positives < rows else None

    delays = _delays(indexed, threshold, step_us, max_gap_steps)["delay"]
    detected = delays.drop_nulls()
    node_days = rows * step_us / _DAY_US
    return DetectionMetrics(
        threshold=threshold,
        rows=rows,
        positives=positives,
        pr_auc=pr_auc,
        roc_auc=roc_auc,
        alerts=tp + fp,
        true_alerts=tp,
        false_alerts=fp,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, positives),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        episodes=delays.len(),
        episodes_detected=detected.len(),
        detected_fraction=_ratio(detected.len(), delays.len()),
        mean_delay=float(detected.mean()) if detected.len() else None,  # type: ignore[arg-type]
        median_delay=float(detected.median()) if detected.len() else None,  # type: ignore[arg-type]
        delays=tuple(delays.to_list()),
        node_days=node_days,
        false_alerts_per_node_day=fp / node_days,
    )


def join_scores(scores: pl.DataFrame, series: pl.DataFrame, label: str = "attack") -> pl.DataFrame:
    """The frame the metrics take: every row of ``series`` (the evaluated part) with its label
    (renamed ``label``) and the detector's score. Scores for rows outside ``series`` are ignored;
    a series row without a score is an error (nothing is dropped silently)."""
    _require(scores, {"node": "any", "step": "datetime", "score": "number"}, "join_scores (scores)")
    _require(series, {"node": "any", "step": "datetime", label: "bool"}, "join_scores (series)")
    out = series.select("node", "step", pl.col(label).alias("label")).join(
        scores.select("node", "step", pl.col("score").cast(pl.Float64)), on=["node", "step"], how="left")
    missing = out.filter(pl.col("score").is_null())
    if missing.height:
        raise ValueError(f"join_scores: {missing.height} of {out.height} series row(s) have no score "
                         f"(e.g. node {missing['node'][0]!r} at {missing['step'][0]}); score the whole part")
    if out.height != series.height:
        raise ValueError("join_scores: the score frame has duplicate (node, step) rows")
    return out


# ---------------------------------------------------------------------------------------------
# Threshold


# ---------------------------------------------------------------------------------------------
# Task difficulty


def single_feature_scores(series: pl.DataFrame, features: Sequence[str] | None = None, label: str = "attack",
                          *, node_z: bool = True) -> pl.DataFrame:
    """PR-AUC and ROC-AUC of each feature used alone as the score (higher = attack).

    Two variants per feature: ``raw`` (the value itself) and, with ``node_z``, ``node_z``: the
    value's z-score against the same node's mean and standard deviation over the whole frame (0
    where the node's value never changes). The z-score is not causal, it sees the node's whole
    evaluated part: it is an upper bound of what a per-node normalisation could do, which is the
    generous side for a triviality check. Rows sorted by PR-AUC, best first (ties: feature order,
    raw before node_z). ``features`` defaults to every registered feature in the frame.
    """
    if features is None:
        from netflowgen.series.features import feature_names

        features = [f for f in feature_names() if f in series.columns]
    features = list(features)
    if not features:
        raise ValueError("single_feature_scores: no features to score")
    _require(series, {"node": "any", label: "bool", **dict.fromkeys(features, "number")}, "single_feature_scores")
    y = series[label].to_numpy()
    positives = int(y.sum())
    if positives == 0:
        raise ValueError(f"single_feature_scores: no positive rows in {label!r}; PR-AUC is undefined")
    both = 0 < positives < y.size
    exprs = []
    for f in features:  # raw then node_z per feature: the tie order
        x = pl.col(f).cast(pl.Float64)
        exprs.append(x.alias(f))
        if node_z:
            std = x.std(ddof=0).over("node")
            exprs.append(pl.when(std > 0).then((x - x.mean().over("node")) / std).otherwise(0.0).alias(f"{f}:node_z"))
    values = series.select(exprs)
    rows = []
    for name in values.columns:
        s = values[name].to_numpy()
        feature, _, variant = name.partition(":")
        rows.append({"name": name, "feature": feature, "variant": variant or "raw",
                     "pr_auc": float(average_precision_score(y, s)),
                     "roc_auc": float(roc_auc_score(y, s)) if both else None})
    table = pl.DataFrame(rows, schema={"name": pl.String, "feature": pl.String, "variant": pl.String,
                                       "pr_auc": pl.Float64, "roc_auc": pl.Float64})
    return table.sort("pr_auc", descending=True, maintain_order=True)


def best_causal_feature(series: pl.DataFrame, rows: np.ndarray, labels: np.ndarray, step: timedelta,
                        features: Sequence[str] | None = None) -> tuple[str, float]:
    """The best PR-AUC one feature reaches alone on ``rows`` of ``series`` (sorted by node and
    step; ``labels`` per row), as a detector could compute it: the raw value, or its causal
    z-score against the node's own past (``name:z``, VolumeDetector's EWMA over the whole series,
    so the test part's first steps have the fitting part as history). Nothing is taken from the
    test part's future. A task where this is above :data:`TRIVIAL_PR_AUC` is trivial."""
    from netflowgen.detect.baselines import VolumeConfig, causal_z_scores
    from netflowgen.evaluate.uncertainty import average_precision
    from netflowgen.series.features import feature_names

    features = [f for f in (features or feature_names()) if f in series.columns]
    y = np.asarray(labels, bool)[rows]
    if not y.any():
        raise ValueError("best_causal_feature: no positive rows; PR-AUC is undefined")
    z = causal_z_scores(series, VolumeConfig(features=tuple(features), step=step))
    best = ("", -1.0)
    for f in features:
        for name, values in ((f, series[f]), (f"{f}:z", z[f])):
            ap = average_precision(y, values.cast(pl.Float64).to_numpy()[rows])
            if ap > best[1]:
                best = (name, ap)
    return best


def best_single_feature(series: pl.DataFrame, features: Sequence[str] | None = None, label: str = "attack",
                        *, node_z: bool = True) -> tuple[str, float]:
    """The best PR-AUC one feature reaches alone, and its name (see :func:`single_feature_scores`).

    The name is the feature's, with ``:node_z`` appended when its per-node z-score is the better
    variant. A task where this is above :data:`TRIVIAL_PR_AUC` (0.95) is trivial.
    """
    top = single_feature_scores(series, features, label, node_z=node_z).row(0, named=True)
    return top["name"], top["pr_auc"]


# ---------------------------------------------------------------------------------------------
# Seeds


def _number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def summarize_seeds(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Mean and sample standard deviation (ddof=1) of each numeric metric over seeds.

    ``runs`` is one metrics dict per seed (e.g. ``DetectionMetrics.to_dict()``). None and NaN
    values are left out; ``n`` says how many seeds contributed. ``std`` is None with fewer than
    two values, ``mean`` None with none. Metrics that are not numbers (lists such as ``delays``,
    strings) are skipped; a metric missing from a run counts as None for that run.

    >>> summary = summarize_seeds([{"f1": 0.5, "delay": None}, {"f1": 0.75, "delay": 2}, {"f1": 1.0, "delay": 4}])
    >>> summary["f1"], summary["delay"]
    ({'mean': 0.75, 'std': 0.25, 'n': 3}, {'mean': 3.0, 'std': 1.4142135623730951, 'n': 2})
    """
    runs = [r.to_dict() if hasattr(r, "to_dict") else r for r in runs]
    keys: dict[str, None] = {}
    for r in runs:
        keys.update(dict.fromkeys(r))
    out: dict[str, dict[str, float | int | None]] = {}
    for key in keys:
        values = [r.get(key) for r in runs]
        if not all(v is None or _number(v) for v in values):
            continue
        kept = np.array([float(v) for v in values if v is not None and not math.isnan(float(v))], dtype=np.float64)  # type: ignore[arg-type]
        out[key] = {
            "mean": float(kept.mean()) if kept.size else None,
            "std": float(kept.std(ddof=1)) if kept.size > 1 else None,
            "n": int(kept.size),
        }
    return out
