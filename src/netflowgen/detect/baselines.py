"""Classical detectors the model is compared with: an operator's volume threshold and gradient-
boosted trees on lagged features.

Both read a node series table (``read_series(path)[0]``: node, group, step, features, labels;
rows of one node in step order; a node can have several activity periods separated by missing
steps) and return a *score frame*: ``node``, ``step``, ``score`` (Float64, higher = more likely
attack), one row per series row, sorted by node and step. Both are causal: the score of a step
depends only on the node's steps up to and including it.

A *segment* is a run of a node's rows exactly one step apart; a missing step (the gap between two
activity periods) starts a new segment. History never crosses a segment boundary: the EWMA starts
afresh and lags are missing there.

The step width is inferred from the data (the smallest distance between two consecutive rows of
one node) unless the config gives it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from netflowgen.artifacts import atomic_directory, loading, read_manifest, write_manifest
from netflowgen.detect.threshold import ThresholdRule, calibrate_threshold
from netflowgen.series.spec import SeriesSpec, segment_ids, series_step

__all__ = ["GBT_KIND", "GBTConfig", "GBTDetector", "VolumeConfig", "VolumeDetector", "causal_z_scores", "infer_step",
           "lag_features"]

log = logging.getLogger(__name__)

GBT_KIND = "netflowgen.detector.gbt"
_MODEL_FILE = "model.txt"


# ---------------------------------------------------------------------------------------------
# Series handling shared by both detectors


def _check_series(series: pl.DataFrame, features: tuple[str, ...], what: str) -> None:
    if not isinstance(series, pl.DataFrame):
        raise TypeError(f"{what}: expected a polars DataFrame (read_series(path)[0]), got {type(series).__name__}")
    missing = [c for c in ("node", "step", *features) if c not in series.columns]
    if missing:
        raise ValueError(f"{what}: the series lacks column(s) {missing}")
    if not isinstance(series.schema["step"], pl.Datetime):
        raise TypeError(f"{what}: column 'step' must be a Datetime, it is {series.schema['step']}")
    for name in ("node", "step", *features):
        if series[name].null_count():
            raise ValueError(f"{what}: column {name!r} has {series[name].null_count()} null value(s)")
    not_numeric = [f for f in features if not series.schema[f].is_numeric()]
    if not_numeric:
        raise TypeError(f"{what}: feature column(s) {not_numeric} are not numeric")


def infer_step(series: pl.DataFrame) -> timedelta:
    """The series' step width, read from its rows (the contract's :func:`series_step`).

    >>> from datetime import datetime, timezone
    >>> t = [datetime(2024, 1, 1, 0, m, tzinfo=timezone.utc) for m in (0, 1, 5)]
    >>> infer_step(pl.DataFrame({"node": ["a"] * 3, "step": t}))
    datetime.timedelta(seconds=60)
    """
    dup = series.lazy().select(pl.struct("node", "step").is_duplicated().any()).collect().item()
    if dup:
        raise ValueError("cannot infer the step width: the series has duplicate (node, step) rows")
    seconds = series_step(series)
    if seconds is None:
        raise ValueError("cannot infer the step width: no node has two rows; give the config's step")
    return timedelta(seconds=seconds)


def _segmented(series: pl.DataFrame, step: timedelta, what: str, hold: timedelta | None = None) -> pl.DataFrame:
    """The series sorted by node and step, with ``_seg``: the segment id (see the module doc).
    With ``hold``, a segment runs on over missing steps up to that long (state held over a hole)."""
    out = series.sort("node", "step")
    same_node = pl.col("node") == pl.col("node").shift(1)
    dup = out.filter(same_node & (pl.col("step") <= pl.col("step").shift(1)))
    if dup.height:
        raise ValueError(f"{what}: {dup.height} duplicate (node, step) row(s), e.g. node {dup['node'][0]!r} "
                         f"at {dup['step'][0]}")
    return out.with_columns(segment_ids(step, hold))


def _value(feature: str, log1p: bool) -> pl.Expr:
    x = pl.col(feature).cast(pl.Float64)
    return x.log1p() if log1p else x


def _score_frame(keys: pl.DataFrame, score: np.ndarray | pl.Series) -> pl.DataFrame:
    return keys.select("node", "step").with_columns(pl.Series("score", score, dtype=pl.Float64))


def _labels(series: pl.DataFrame, label_col: str, what: str) -> np.ndarray:
    if label_col not in series.columns:
        raise ValueError(f"{what}: the series lacks the label column {label_col!r}")
    col = series[label_col]
    if col.null_count():
        raise ValueError(f"{what}: label column {label_col!r} has {col.null_count()} null value(s)")
    if col.dtype != pl.Boolean:
        raise TypeError(f"{what}: label column {label_col!r} must be Boolean, it is {col.dtype}")
    return col.to_numpy()


# ---------------------------------------------------------------------------------------------
# Volume threshold


@dataclass(frozen=True)
class VolumeConfig:
    """The operator's volume detector: how far a node's traffic jumps above its own recent level."""

    features: tuple[str, ...] = ("flows_in", "packets_in")
    """Features watched; the score is the largest of their z-scores."""
    log1p: bool = True
    """Compare log1p(value): a jump is measured as a ratio, so busy and quiet nodes compare alike."""
    halflife_steps: float = 30.0
    """Half-life of the EWMA of mean and variance, in steps."""
    hold_over: timedelta | None = None
    """Keep a node's EWMA state over missing steps (a hole in the data's coverage, a collector
    restart) up to this long, as a live detector would, instead of starting again from nothing
    after every missing step. The EWMA then advances by rows: the steps that were observed."""
    min_std: float = 0.5
    """Added in quadrature to the EWMA standard deviation (in the compared units, log1p by
    default) so that a node with constant history does not give infinite z-scores."""
    warmup_steps: int = 10
    """Low confidence while a node has little history: with n previous steps in its segment, the
    variance used is w * EWMA variance + (1 - w) * prior_std**2, w = min(1, n / warmup_steps), and
    a step without any history is compared with silence (0). So a new node (or one back from a
    gap) alerts only on traffic far above nothing, and the damping fades over this many steps."""
    prior_std: float = 2.0
    """Spread assumed for a node without history, in the compared units (log1p: a factor of
    e**2, about 7)."""
    step: timedelta | None = None
    """Step width; None: inferred from the series."""
    threshold_rule: ThresholdRule = ThresholdRule.F1
    """How fit() calibrates the alert threshold."""
    max_fpr: float = 0.001
    """For ``threshold_rule="fpr"``: the largest false-positive rate allowed."""

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("VolumeConfig.features: give at least one feature")
        object.__setattr__(self, "features", tuple(self.features))
        if not self.halflife_steps > 0:
            raise ValueError(f"VolumeConfig.halflife_steps must be positive, got {self.halflife_steps}")
        if not self.min_std > 0:
            raise ValueError(f"VolumeConfig.min_std must be positive, got {self.min_std}")
        if self.warmup_steps < 1:
            raise ValueError(f"VolumeConfig.warmup_steps must be at least 1, got {self.warmup_steps}")
        if not self.prior_std >= 0:
            raise ValueError(f"VolumeConfig.prior_std must be 0 or more, got {self.prior_std}")
        if self.step is not None and self.step <= timedelta(0):
            raise ValueError("VolumeConfig.step must be positive")
        object.__setattr__(self, "threshold_rule", ThresholdRule(self.threshold_rule))

    @property
    def alpha(self) -> float:
        """EWMA weight of the newest step: 1 - 0.5 ** (1 / halflife_steps)."""
        return 1.0 - 0.5 ** (1.0 / self.halflife_steps)


def _z_exprs(features: Sequence[str], cfg: VolumeConfig) -> list[pl.Expr]:
    """Per feature, the causal z-score of the class doc of VolumeDetector (rows segmented)."""
    same = pl.col("_seg") == pl.col("_seg").shift(1)
    history = pl.int_range(pl.len()).over("_seg").cast(pl.Float64)
    w = (history / cfg.warmup_steps).clip(upper_bound=1.0)
    zs = []
    for f in features:
        x = _value(f, cfg.log1p)
        mean = x.ewm_mean(alpha=cfg.alpha, adjust=False).over("_seg")
        var = x.ewm_var(alpha=cfg.alpha, adjust=False, bias=True).over("_seg")
        # The EWMA up to the previous row, only when it is the same segment: causal by
        # construction. Without one (a segment's first row) the node is compared with silence.
        prev_mean = pl.when(same).then(mean.shift(1)).otherwise(0.0)
        prev_var = pl.when(same).then(var.shift(1)).otherwise(0.0)
        spread = w * prev_var + (1.0 - w) * cfg.prior_std**2 + cfg.min_std**2
        zs.append(((x - prev_mean) / spread.sqrt()).alias(f))
    return zs


def causal_z_scores(series: pl.DataFrame, cfg: VolumeConfig | None = None, what: str = "causal_z_scores") -> pl.DataFrame:
    """node, step and, per feature of ``cfg``, its causal z-score against the node's own EWMA of
    the steps before (VolumeDetector's, one column per feature); sorted by node and step."""
    cfg = cfg or VolumeConfig()
    _check_series(series, cfg.features, what)
    if series.height == 0:
        return series.select("node", "step", *[pl.lit(0.0).alias(f) for f in cfg.features]).head(0)
    seg = _segmented(series.select("node", "step", *cfg.features), cfg.step or infer_step(series), what, cfg.hold_over)
    return seg.select("node", "step", *[z.cast(pl.Float64) for z in _z_exprs(cfg.features, cfg)])


class VolumeDetector:
    """Per node, the z-score of the current step against an EWMA of the node's previous steps.

    For each feature x (log1p by default), within a segment, with m and v the EWMA mean and
    variance (Polars ``ewm_mean``/``ewm_var``, ``adjust=False``) of the steps *before* t, n_t
    their number and w_t = min(1, n_t / warmup_steps)::

        v'_t = w_t * v_{t-1} + (1 - w_t) * prior_std**2     (no history: prior_std**2)
        z_t = (x_t - m_{t-1}) / sqrt(v'_t + min_std**2)       (no history: m = 0, silence)
        score_t = max over features of z_t

    One-sided: a drop in traffic gives a negative score. ``fit()`` only calibrates the threshold;
    nothing else is learned.
    """

    def __init__(self, config: VolumeConfig | None = None) -> None:
        self.config = config or VolumeConfig()
        self.threshold: float | None = None

    def score(self, series: pl.DataFrame) -> pl.DataFrame:
        """The score frame of ``series`` (node, step, score; sorted by node and step)."""
        zs = causal_z_scores(series, self.config, "VolumeDetector.score")
        return zs.select("node", "step", pl.max_horizontal(self.config.features).cast(pl.Float64).alias("score")) \
            if zs.height else _score_frame(series, np.empty(0))

    def fit(self, series: pl.DataFrame, label_col: str = "attack") -> VolumeDetector:
        """Calibrate the alert threshold on ``series`` (a validation part) by the config's rule."""
        y = _labels(series, label_col, "VolumeDetector.fit")
        scores = self.score(series)
        labels = series.select("node", "step", pl.Series("y", y)).sort("node", "step")["y"]
        self.threshold = calibrate_threshold(scores["score"], labels, rule=self.config.threshold_rule,
                                             max_fpr=self.config.max_fpr)
        return self


# ---------------------------------------------------------------------------------------------
# Gradient-boosted trees


#: Steps of a node's past over which the node-relative features take its running median.
MEDIAN_STEPS = 60


def lag_features(series: pl.DataFrame, features: tuple[str, ...] | list[str], lags: int, step: timedelta,
                 log1p: bool = True, relative: bool = False) -> pl.DataFrame:
    """The GBT's design table: node, step, then per feature its value ``f``, and for j in 1..lags
    ``f_lag{j}`` (the value at t-j) and ``f_delta{j}`` (value minus the value at t-j); all Float32,
    log1p'd when asked. A lag is null where t-j is not in the row's segment: it never reaches into
    another node or across a gap. Sorted by node and step.

    ``relative`` adds what a careful operator would compute per node, both causal (from the
    steps before t only, within the segment): ``f_z``, the z-score against the node's own EWMA
    mean and variance (VolumeDetector's), and ``f_vs_median``, log1p(value) minus log1p of the
    node's running median over the previous :data:`MEDIAN_STEPS` steps (a log ratio): with global
    trees, a quiet node's flood and a busy node's normal minute then stop looking alike.
    """
    features = tuple(features)
    _check_series(series, features, "lag_features")
    if lags < 0:
        raise ValueError(f"lags must be 0 or more, got {lags}")
    seg = _segmented(series.select("node", "step", *features), step, "lag_features")
    cols: list[pl.Expr] = []
    for f in features:
        x = _value(f, log1p)
        cols.append(x.alias(f))
        for j in range(1, lags + 1):
            # Rows are consecutive steps within a segment, so j rows back is step t-j exactly.
            lag = pl.when(pl.col("_seg") == pl.col("_seg").shift(j)).then(x.shift(j))
            cols += [lag.alias(f"{f}_lag{j}"), (x - lag).alias(f"{f}_delta{j}")]
    if relative:
        cfg = VolumeConfig(features=features, log1p=log1p)
        cols += [z.alias(f"{f}_z") for f, z in zip(features, _z_exprs(features, cfg))]
        same = pl.col("_seg") == pl.col("_seg").shift(1)
        for f in features:
            x = _value(f, True)
            median = x.rolling_median(window_size=MEDIAN_STEPS, min_samples=1).over("_seg")
            cols.append((x - pl.when(same).then(median.shift(1)).otherwise(0.0)).alias(f"{f}_vs_median"))
    return seg.select("node", "step", *[c.cast(pl.Float32) for c in cols])


@dataclass(frozen=True)
class GBTConfig:
    """LightGBM on node-step features with lags (binary objective, seeded, deterministic)."""

    features: tuple[str, ...] | None = None
    """Features used; None: every registered traffic feature."""
    lags: int = 3
    """k: values and deltas of steps t-1..t-k are inputs."""
    relative: bool = False
    """Also node-relative inputs: causal z-scores and ratios to the running median (see lag_features)."""
    log1p: bool = True
    """Trees do not care about monotone transforms of values, but deltas of log1p are ratios."""
    num_boost_round: int = 300
    """Most boosting rounds; early stopping on the validation part may stop sooner."""
    early_stopping_rounds: int = 30
    """Stop when validation average precision has not improved for this many rounds (needs
    validation positives; otherwise all rounds are used)."""
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    feature_fraction: float = 1.0
    scale_pos_weight: float | None = None
    """Weight of positive rows; None: negatives / positives of the training part."""
    seed: int = 0
    num_threads: int = 2
    """Fixed, not 'all cores': LightGBM's results are reproducible for a given thread count."""
    step: timedelta | None = None
    """Step width; None: inferred from the training series (and then required of scored ones)."""
    threshold_rule: ThresholdRule = ThresholdRule.F1
    max_fpr: float = 0.001

    def __post_init__(self) -> None:
        if self.features is not None:
            if not self.features:
                raise ValueError("GBTConfig.features: give at least one feature, or None for all")
            object.__setattr__(self, "features", tuple(self.features))
        if self.lags < 0:
            raise ValueError(f"GBTConfig.lags must be 0 or more, got {self.lags}")
        if self.num_boost_round < 1 or self.num_threads < 1 or self.num_leaves < 2:
            raise ValueError("GBTConfig: num_boost_round and num_threads must be at least 1, num_leaves at least 2")
        if not 0 < self.feature_fraction <= 1:
            raise ValueError(f"GBTConfig.feature_fraction must be in (0, 1], got {self.feature_fraction}")
        if self.scale_pos_weight is not None and not self.scale_pos_weight > 0:
            raise ValueError("GBTConfig.scale_pos_weight must be positive or None")
        if self.step is not None and self.step <= timedelta(0):
            raise ValueError("GBTConfig.step must be positive")
        object.__setattr__(self, "threshold_rule", ThresholdRule(self.threshold_rule))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["features"] = list(self.features) if self.features is not None else None
        out["step"] = self.step.total_seconds() if self.step is not None else None
        out["threshold_rule"] = self.threshold_rule.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GBTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"GBTConfig: unknown field(s) {sorted(unknown)}")
        data = dict(data)
        if data.get("features") is not None:
            data["features"] = tuple(data["features"])
        if data.get("step") is not None:
            data["step"] = timedelta(seconds=data["step"])
        return cls(**data)


class GBTDetector:
    """LightGBM on the current step's features and their lags (see :func:`lag_features`).

    Positives are weighted by ``scale_pos_weight`` (negatives / positives by default). The
    threshold is calibrated on the validation part when one is given, else on the training part
    (optimistic: the trees have seen it). Saved as a directory: LightGBM's own text model plus a
    ``netflowgen.json`` manifest; never pickled.
    """

    def __init__(self, config: GBTConfig | None = None) -> None:
        self.config = config or GBTConfig()
        self.booster: Any = None
        self.threshold: float | None = None
        self.step: timedelta | None = self.config.step
        self.info: dict[str, Any] = {}

    @property
    def features(self) -> tuple[str, ...]:
        if self.config.features is not None:
            return self.config.features
        from netflowgen.series.features import feature_names

        return tuple(feature_names())

    def _design(self, series: pl.DataFrame, what: str) -> tuple[pl.DataFrame, np.ndarray, list[str]]:
        _check_series(series, self.features, what)
        if self.step is None:
            raise RuntimeError(f"{what}: the detector has no step width; fit() or load() it first")
        table = lag_features(series, self.features, self.config.lags, self.step, self.config.log1p, self.config.relative)
        names = table.columns[2:]
        return table.select("node", "step"), table.select(names).to_numpy(), names

    def _xy(self, series: pl.DataFrame, label_col: str, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        y = _labels(series, label_col, what)
        _, x, names = self._design(series, what)
        # _design sorts by node and step ((node, step) is unique); take the labels in the same order.
        y_sorted = series.select("node", "step", pl.Series("_y", y)).sort("node", "step")["_y"].to_numpy()
        return x, y_sorted.astype(np.float64), names

    def _params(self, scale_pos_weight: float) -> dict[str, Any]:
        c = self.config
        return {
            "objective": "binary",
            "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves,
            "min_data_in_leaf": c.min_data_in_leaf,
            "feature_fraction": c.feature_fraction,
            "scale_pos_weight": scale_pos_weight,
            "seed": c.seed,
            "num_threads": c.num_threads,
            "deterministic": True,
            "force_row_wise": True,  # the row-wise histogram path; with deterministic, same trees each run
            "metric": "average_precision",
            "verbosity": -1,
        }

    def fit(self, train_series: pl.DataFrame, label_col: str = "attack",
            valid_series: pl.DataFrame | None = None, *, train_rows: np.ndarray | None = None,
            valid_rows: np.ndarray | None = None) -> GBTDetector:
        """Train on ``train_series``; ``valid_series`` (optional) drives early stopping and the threshold.

        With ``train_rows`` (and ``valid_rows``), boolean masks over ``train_series``' rows, only
        those rows are trained (validated) on, while lags are still taken from every row: a label
        budget buys labels, the traffic around the labelled steps is free.
        """
        import lightgbm as lgb

        if train_series.height == 0:
            raise ValueError("GBTDetector.fit: the training series has no rows")
        if self.step is None:
            self.step = infer_step(train_series)
        if train_rows is not None:
            x_all, y_all, names = self._xy(train_series, label_col, "GBTDetector.fit (train)")
            # _xy orders rows by node and step; the masks follow the same order.
            order = train_series.select("node", "step", pl.Series("_t", train_rows),
                                        pl.Series("_v", valid_rows if valid_rows is not None else np.zeros(len(train_rows), bool))
                                        ).sort("node", "step")
            t_mask, v_mask = order["_t"].to_numpy(), order["_v"].to_numpy()
            x, y = x_all[t_mask], y_all[t_mask]
            xv, yv = (x_all[v_mask], y_all[v_mask]) if v_mask.any() else (None, None)
        else:
            x, y, names = self._xy(train_series, label_col, "GBTDetector.fit (train)")
            xv, yv = None, None
            if valid_series is not None and valid_series.height:
                xv, yv, _ = self._xy(valid_series, label_col, "GBTDetector.fit (valid)")
        positives = int(y.sum())
        negatives = y.size - positives
        if positives == 0 or negatives == 0:
            raise ValueError(f"GBTDetector.fit: the training part needs both classes in {label_col!r} "
                             f"({positives} positive, {negatives} negative rows)")
        spw = self.config.scale_pos_weight or negatives / positives
        params = self._params(spw)
        train = lgb.Dataset(x, label=y, feature_name=names, free_raw_data=True, params={"verbosity": -1})
        valid_sets, callbacks = [], []
        if xv is not None and yv is not None:
            if yv.sum() > 0:
                valid_sets = [lgb.Dataset(xv, label=yv, reference=train)]
                callbacks = [lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)]
            else:
                log.warning("GBTDetector.fit: no positives in the validation part; no early stopping")
        booster = lgb.train(params, train, num_boost_round=self.config.num_boost_round,
                            valid_sets=valid_sets, callbacks=callbacks)
        best = booster.best_iteration if valid_sets and booster.best_iteration > 0 else booster.current_iteration()
        # Keep only the trees that are used: the saved model and predictions then need no iteration count.
        self.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        if xv is not None:
            calib_x, calib_y, part = xv, yv, "valid"
        else:
            calib_x, calib_y, part = x, y, "train"
            log.info("GBTDetector.fit: no validation part; threshold calibrated on the training part (optimistic)")
        self.threshold = calibrate_threshold(self.booster.predict(calib_x), calib_y.astype(bool),
                                             rule=self.config.threshold_rule, max_fpr=self.config.max_fpr)
        self.info = {"train_rows": int(y.size), "train_positives": positives, "scale_pos_weight": spw,
                     "trees": best, "threshold_calibrated_on": part,
                     "valid_rows": int(yv.size) if yv is not None else 0}
        return self

    def score(self, series: pl.DataFrame) -> pl.DataFrame:
        """The score frame (node, step, score: the predicted attack probability)."""
        if self.booster is None:
            raise RuntimeError("GBTDetector.score: fit() or load() the detector first")
        if series.height == 0:
            return _score_frame(series.select("node", "step"), np.empty(0))
        if self.step is not None:
            # The series contract's own check: the step width, the step grid (a series one step
            # wide too) and the features read.
            SeriesSpec(step=self.step, features=self.features).check(series, "the GBT detector")
        keys, x, names = self._design(series, "GBTDetector.score")
        if names != self.booster.feature_name():
            raise ValueError("GBTDetector.score: the design columns differ from the trained model's")
        return _score_frame(keys, self.booster.predict(x))

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the detector as a directory (model.txt + netflowgen.json), atomically."""
        if self.booster is None:
            raise RuntimeError("GBTDetector.save: nothing to save; fit() first")
        out = Path(path)
        with atomic_directory(out, overwrite) as tmp:
            (tmp / _MODEL_FILE).write_text(self.booster.model_to_string())
            import lightgbm as lgb

            write_manifest(tmp, GBT_KIND, config=self.config.to_dict(),
                           step_seconds=self.step.total_seconds() if self.step else None,
                           threshold=self.threshold, features=list(self.features),
                           design_columns=self.booster.feature_name(), model_file=_MODEL_FILE,
                           lightgbm_version=lgb.__version__, training=self.info)
        return out

    @classmethod
    def load(cls, path: str | Path) -> GBTDetector:
        """A detector saved by :meth:`save`."""
        import lightgbm as lgb

        folder = Path(path)
        manifest = read_manifest(folder, GBT_KIND)
        model = folder / manifest.get("model_file", _MODEL_FILE)
        if not model.is_file():
            raise ValueError(f"{folder}: the model file {model.name} is missing")
        with loading(model, "the gradient-boosted model (LightGBM text, never a pickle)"):
            det = cls(GBTConfig.from_dict(manifest["config"]))
            det.booster = lgb.Booster(model_str=model.read_text())
        step = manifest.get("step_seconds")
        det.step = timedelta(seconds=step) if step is not None else None
        threshold = manifest.get("threshold")
        det.threshold = float(threshold) if threshold is not None else None
        det.info = manifest.get("training", {})
        if det.booster.feature_name() != manifest.get("design_columns"):
            raise ValueError(f"{folder}: the model's columns do not match its manifest")
        return det
