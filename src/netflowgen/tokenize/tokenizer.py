"""The tokenizer: node-series values <-> integer bins, time fields, node and group ids.

The contract, as the paper describes it (PAPER.md) and DESIGN section 5 fixes it:

* **Traffic bins.** Each traffic feature gets its own bins, fitted on training data only.
  Bin 0 holds exactly zero. Non-zero values are cut into ``n_bins - 1`` bins at quantiles of
  ``log1p(value)`` over the non-zero training values (rule ``log-quantile``), or at
  evenly spaced points of ``log1p`` between the smallest and largest non-zero training value
  (``log-uniform``), or (``log-quantile-tail``) quantile bins for the bulk up to the 90th
  percentile and a third of the bins spread evenly on ``log1p`` from there to the largest value:
  attacks are extreme values, and plain quantile bins put a 40-fold flood into the same top bin
  as a busy minute. This is the default: the paper leaves the rule open. Cut points that coincide (a feature with few distinct values) are merged,
  so a feature may have fewer bins than ``n_bins``; :attr:`Tokenizer.bins` says how many.
  Values beyond the fitted range fall into the first or last non-zero bin. Encoding is monotonic:
  a larger value never gets a smaller bin.
* **Time fields.** From the step's start, in the tokenizer's time zone: day of week (0..6, Monday
  0), day of month (0..30), hour (0..23), minute (0..59): the paper's 7 + 31 + 24 + 60 one-hots.
* **Ids.** Node and group vocabularies are the sorted training values; id 0 is reserved for
  unknown (unseen) nodes and groups, so the model can score nodes it never saw.
* **Decoding.** A bin decodes to its value range ``[low, high]`` and a representative value:
  the median of the training values that fell in it (0 for bin 0).
* **Relative tokens** (opt-in, ``TokenizerConfig.relative``). With global bins a quiet node's
  flood and a busy node's normal minute get the same bin. With ``relative`` on, every traffic
  feature ``f`` also gets a derived token feature ``f~rel`` (appended after the traffic features,
  in the same order): the bin of the deviation ``d_t = log1p(x_t) - L_t``, where ``L_t`` is the
  mean of ``log1p(x)`` over the node's previous ``relative_window`` rows in the encoded frame
  (rows taken in step order, whatever the frame's row order; holes in the series are not
  looked across specially: the previous rows are the previous rows). A row with no previous row
  has no level to deviate from and gets ``d = 0``, the central bin, rather than a deviation of
  its whole level (otherwise every node's first row would look like a flood). Deviations below
  1e-9 in magnitude count as 0, so that a constant series sits in the central bin and not on
  either side of it by rounding. The encoding is causal: a row's relative token depends on that
  row and the ``relative_window`` rows before it only. Bins of ``d`` are symmetric: cut points
  ``0 <= c_1 < ... < c_m`` are fitted on ``|d|`` of the training rows that have a previous row,
  with the feature rule applied to ``|d|`` instead of ``log1p`` of the value (``log-quantile``:
  quantiles of ``|d|`` at ``1/(m+1) .. m/(m+1)``; ``log-quantile-tail``: quantile cuts up to the
  90th percentile and the rest spread evenly to the largest ``|d|``; ``log-uniform``: evenly from
  0 to the largest), ``m = (n_bins - 1) // 2``, duplicates merged. Bin ``m`` (central) holds
  ``|d| <= c_1``; bin ``m + k`` holds ``c_k < d <= c_(k+1)`` and bin ``m - k`` its mirror
  ``-c_(k+1) <= d < -c_k``; the outermost bins are open. So there are ``2m + 1`` bins, a larger
  deviation never gets a smaller bin, and ``d`` and ``-d`` land in mirrored bins. A derived bin
  decodes to the median training deviation in it (a log ratio, not a count). To encode the
  newest rows exactly as a longer frame would, give ``relative_window`` more rows of the past.

The tokenizer is saved to and loaded from JSON; ``save`` then ``load`` gives an equal tokenizer.

**The series contract.** A tokenizer fitted on a series holds that series' :class:`SeriesSpec`
(step width, features, how nodes were chosen; ``netflowgen.series.spec``), as chronos keeps its
tokenizer inside the model config: token shards, pre-training runs and detectors all carry the
tokenizer, so every later stage reads the step width from here, and nowhere else.
"""

from __future__ import annotations

import enum
import json
import os
from datetime import datetime, timedelta, timezone
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from netflowgen.series.spec import SeriesSpec

__all__ = ["BinRule", "TokenizerConfig", "Tokenizer", "TIME_FIELDS", "UNKNOWN_ID", "RELATIVE_SUFFIX", "fit_part"]

#: Time fields and their sizes, in the paper's order of description.
TIME_FIELDS: dict[str, int] = {"day_of_week": 7, "day_of_month": 31, "hour": 24, "minute": 60}
UNKNOWN_ID = 0
FORMAT_VERSION = 1
#: Suffix of the derived relative token feature of a traffic feature (``flows_in~rel``).
RELATIVE_SUFFIX = "~rel"
#: Deviations smaller than this (in log1p units) count as none: rounding noise of the running mean.
_DEVIATION_TOLERANCE = 1e-9


class BinRule(str, enum.Enum):
    """How non-zero values are cut into bins."""

    LOG_QUANTILE = "log-quantile"
    LOG_UNIFORM = "log-uniform"
    LOG_QUANTILE_TAIL = "log-quantile-tail"



@dataclass(frozen=True)
class TokenizerConfig:
    """How to fit a tokenizer."""

    features: tuple[str, ...]
    """Traffic features to tokenize, in model order (see ``netflowgen.series.FEATURES``)."""
    n_bins: int = 10
    """Bins per feature including the zero bin (the paper uses 10)."""
    rule: BinRule = BinRule.LOG_QUANTILE_TAIL
    """Where the non-zero bins are cut."""
    timezone: str = "UTC"
    """Time zone of the time fields (daily cycles follow local time)."""
    relative: bool = False
    """Also encode every feature's deviation from the node's running level (``f~rel``, see the
    module docstring). Off by default: the model then reads the absolute bins only."""
    relative_window: int = 16
    """Previous rows of the node whose mean log1p value is the level a relative token compares with."""
    tail_from: float = 0.9
    """``log-quantile-tail``: the share of the non-zero training values its quantile (bulk) bins
    cover; the tail bins spread evenly on log1p from there to the largest value."""
    tail_share: float = 1 / 3
    """``log-quantile-tail``: the share of the non-zero bins (at least one) given to the tail."""

    def __post_init__(self) -> None:
        if self.n_bins < 2 or self.n_bins > 255:
            raise ValueError(f"n_bins must be 2..255, got {self.n_bins}")
        if not 0 < self.tail_from < 1 or not 0 < self.tail_share < 1:
            raise ValueError(f"tail_from and tail_share must be in (0, 1), got {self.tail_from} and {self.tail_share}")
        if not self.features:
            raise ValueError("a tokenizer needs at least one feature")
        if any(f.endswith(RELATIVE_SUFFIX) for f in self.features):
            raise ValueError(f"feature names ending in {RELATIVE_SUFFIX!r} are reserved for relative tokens")
        if isinstance(self.relative_window, bool) or not isinstance(self.relative_window, int) or self.relative_window < 1:
            raise ValueError(f"relative_window must be a whole number of rows >= 1, got {self.relative_window!r}")
        object.__setattr__(self, "relative", bool(self.relative))
        if not isinstance(self.rule, BinRule):
            object.__setattr__(self, "rule", BinRule(self.rule))
        object.__setattr__(self, "features", tuple(self.features))


@dataclass
class Tokenizer:
    """Fitted bins and vocabularies; see the module docstring for the contract."""

    config: TokenizerConfig
    cuts: dict[str, list[float]]
    """Per feature: increasing cut points on log1p(value) between non-zero bins."""
    ranges: dict[str, list[list[float]]]
    """Per feature and bin: [low, high] of the values the bin holds (fitted range at the ends)."""
    representatives: dict[str, list[float]]
    """Per feature and bin: the value a bin decodes to."""
    nodes: dict[str, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    relative_cuts: dict[str, list[float]] = field(default_factory=dict)
    """Per derived feature (``f~rel``): increasing cut points c_1..c_m on |deviation| (relative on)."""
    relative_representatives: dict[str, list[float]] = field(default_factory=dict)
    """Per derived feature and bin: the deviation a bin decodes to."""
    series: SeriesSpec | None = None
    """The contract of the series it was fitted on (None only in files of older versions that
    nothing upgraded: see :meth:`spec`)."""

    # --- fitting -------------------------------------------------------------------------------

    @classmethod
    def fit(cls, series: pl.DataFrame | pl.LazyFrame, config: TokenizerConfig, spec: SeriesSpec | None = None) -> Tokenizer:
        """Fit bins and vocabularies on a (training) node-series table built by ``spec`` (the
        series artifact's manifest holds it), which the tokenizer then carries.

        A LazyFrame is read one column at a time, so a series larger than memory can be fitted.
        """
        lazy = series.lazy()
        if spec is not None:
            spec.check(lazy, "its series spec")
        names = lazy.collect_schema().names()
        missing = [f for f in config.features if f not in names]
        if missing:
            raise ValueError(f"series lacks the features {missing}")
        if spec is not None:
            extra = [f for f in config.features if f not in spec.features]
            if extra:
                raise ValueError(f"the tokenizer's features {', '.join(extra)} are not features of the series")
        cuts, ranges, reps = {}, {}, {}
        for name in config.features:
            values = lazy.select(pl.col(name).cast(pl.Float64)).collect().to_series().to_numpy()
            if np.any(values < 0) or np.any(np.isnan(values)):
                raise ValueError(f"feature {name!r} has negative or missing values; features are counts")
            c = _cuts(values[values > 0], config)
            cuts[name] = c.tolist()
            ranges[name], reps[name] = _ranges_and_representatives(values, c)
        vocab = lambda col: sorted(lazy.select(pl.col(col).unique()).collect().to_series().drop_nulls().to_list())  # noqa: E731
        nodes = {n: i + 1 for i, n in enumerate(vocab("node"))}
        groups = {g: i + 1 for i, g in enumerate(vocab("group"))}
        rel_cuts, rel_reps = _fit_relative(lazy, config) if config.relative else ({}, {})
        return cls(config, cuts, ranges, reps, nodes, groups, rel_cuts, rel_reps, spec)

    # --- the series contract -------------------------------------------------------------------

    @property
    def spec(self) -> SeriesSpec:
        """The series contract this tokenizer (and every model that reads its tokens) works with."""
        if self.series is None:
            raise ValueError("this tokenizer does not hold its series contract (fitted without one, or saved by an "
                             "older netflowgen); tokenize the series again")
        return self.series

    def adopt_step(self, step_seconds: float | None) -> None:
        """Give a tokenizer of an older version, which did not hold its series contract, the step
        width its artifact's manifest recorded (the one place where older artifacts are upgraded)."""
        if self.series is not None or step_seconds is None:
            return
        self.series = SeriesSpec(step=timedelta(seconds=float(step_seconds)), features=self.config.features)

    def check(self, series: pl.DataFrame | pl.LazyFrame, what: str = "the model") -> None:
        """Refuse a series that is not on this tokenizer's step grid (see ``SeriesSpec.check``)."""
        self.spec.check(series, what)

    # --- encoding ------------------------------------------------------------------------------

    @property
    def features(self) -> tuple[str, ...]:
        """Token features in model order: the traffic features, then (relative on) their ``f~rel``.

        >>> tok = Tokenizer(TokenizerConfig(("a", "b"), relative=True), {}, {}, {})
        >>> tok.features
        ('a', 'b', 'a~rel', 'b~rel')
        """
        derived = tuple(f + RELATIVE_SUFFIX for f in self.config.features) if self.config.relative else ()
        return self.config.features + derived

    @property
    def bins(self) -> dict[str, int]:
        """Number of bins of each token feature (zero bin included), in model order."""
        plain = {name: len(self.cuts[name]) + 2 for name in self.config.features}
        return {**plain, **{name: 2 * len(c) + 1 for name, c in self.relative_cuts.items()}}

    def encode_feature(self, name: str, values: np.ndarray) -> np.ndarray:
        """Bins of one feature's values (uint8)."""
        v = np.asarray(values, dtype=np.float64)
        if np.any(v < 0) or np.any(np.isnan(v)):
            raise ValueError(f"feature {name!r}: values must be non-negative numbers")
        cuts = np.asarray(self.cuts[name])
        nonzero = 1 + np.searchsorted(cuts, np.log1p(v), side="right")
        return np.where(v == 0, 0, nonzero).astype(np.uint8)

    def encode_traffic(self, series: pl.DataFrame) -> np.ndarray:
        """(rows, len(features)) uint8 bins of every token feature: the traffic features, then
        (relative on) their relative tokens, which read the ``node`` and ``step`` columns too."""
        plain = np.stack(
            [self.encode_feature(n, series[n].cast(pl.Float64).to_numpy()) for n in self.config.features], axis=1
        )
        if not self.config.relative:
            return plain
        return np.concatenate([plain, self.encode_relative(series)], axis=1)

    def encode_relative(self, series: pl.DataFrame) -> np.ndarray:
        """(rows, features) uint8 relative tokens (``f~rel``) of a node-series table, in its row order."""
        if not self.relative_cuts:
            raise ValueError("this tokenizer was fitted without relative tokens (TokenizerConfig.relative)")
        order, first = _node_step_order(series)
        out = np.empty((series.height, len(self.config.features)), dtype=np.uint8)
        for j, name in enumerate(self.config.features):
            v = series[name].cast(pl.Float64).to_numpy()
            if np.any(v < 0) or np.any(np.isnan(v)):
                raise ValueError(f"feature {name!r}: values must be non-negative numbers")
            d, _ = _deviations(np.log1p(v[order]), first, self.config.relative_window)
            out[order, j] = _deviation_bins(d, np.asarray(self.relative_cuts[name + RELATIVE_SUFFIX]))
        return out

    def encode_time(self, steps: pl.Series) -> np.ndarray:
        """(rows, 4) uint8 time fields of step starts: day of week, day of month, hour, minute."""
        local = steps.dt.convert_time_zone(self.config.timezone)
        return np.stack(
            [
                (local.dt.weekday() - 1).to_numpy(),
                (local.dt.day() - 1).to_numpy(),
                local.dt.hour().to_numpy(),
                local.dt.minute().to_numpy(),
            ],
            axis=1,
        ).astype(np.uint8)

    def encode_ids(self, values: pl.Series, vocab: dict[str, int]) -> np.ndarray:
        """Ids of nodes or groups; unseen values get :data:`UNKNOWN_ID`."""
        return values.replace_strict(vocab, default=UNKNOWN_ID, return_dtype=pl.Int32).to_numpy()

    def encode(self, series: pl.DataFrame) -> dict[str, np.ndarray]:
        """Everything the model reads for each row of a node-series table."""
        return {
            "traffic": self.encode_traffic(series),
            "time": self.encode_time(series["step"]),
            "node": self.encode_ids(series["node"], self.nodes),
            "group": self.encode_ids(series["group"], self.groups),
        }

    def relative_next(self, past: np.ndarray, now: np.ndarray) -> np.ndarray:
        """(S, features) uint8 relative tokens of a next row ``now`` (S, features) of traffic
        values after ``past`` (S, T, features), the same node's rows before it, oldest first: what
        :meth:`encode_relative` gives that row in a frame of ``past`` then ``now`` (generation
        appends sampled steps one at a time)."""
        if not self.relative_cuts:
            raise ValueError("this tokenizer was fitted without relative tokens (TokenizerConfig.relative)")
        past, now = np.asarray(past, dtype=np.float64), np.asarray(now, dtype=np.float64)
        rows = past.shape[1]
        logs = np.log1p(np.concatenate([past[:, max(rows - self.config.relative_window, 0):], now[:, None]], axis=1))
        out = np.empty(now.shape, dtype=np.uint8)
        for j, name in enumerate(self.config.features):
            column = logs[:, :, j]  # (S, k + 1): one node's rows per sample
            k = column.shape[1]
            first = np.zeros(column.size, dtype=bool)
            first[::k] = True
            d, _ = _deviations(column.reshape(-1), first, self.config.relative_window)
            out[:, j] = _deviation_bins(d.reshape(column.shape)[:, -1], np.asarray(self.relative_cuts[name + RELATIVE_SUFFIX]))
        return out

    # --- decoding ------------------------------------------------------------------------------

    def decode_range(self, name: str, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[low, high] value range of each bin (of a relative token: the deviation's range)."""
        if name in self.relative_cuts:
            c = np.asarray(self.relative_cuts[name], dtype=np.float64)
            edges = np.concatenate(([-np.inf], -c[::-1], c, [np.inf]))
            b = np.asarray(bins, dtype=np.int64)
            # The central bin spans [-c_1, c_1]: its edges are edges[m] and edges[m + 1].
            return edges[b], edges[b + 1]
        r = np.asarray(self.ranges[name])
        b = np.asarray(bins, dtype=np.int64)
        return r[b, 0], r[b, 1]

    def decode(self, name: str, bins: np.ndarray) -> np.ndarray:
        """The representative value of each bin (of a relative token: its median training deviation)."""
        reps = self.relative_representatives[name] if name in self.relative_cuts else self.representatives[name]
        return np.asarray(reps)[np.asarray(bins, dtype=np.int64)]

    # --- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict:  # type: ignore[type-arg]
        cfg = asdict(self.config)
        cfg["rule"] = self.config.rule.value
        cfg["features"] = list(self.config.features)
        return {
            "format_version": FORMAT_VERSION,
            "config": cfg,
            "time_fields": TIME_FIELDS,
            "unknown_id": UNKNOWN_ID,
            "cuts_log1p": self.cuts,
            "ranges": self.ranges,
            "representatives": self.representatives,
            "nodes": self.nodes,
            "groups": self.groups,
            **({"relative_cuts": self.relative_cuts, "relative_representatives": self.relative_representatives}
               if self.config.relative else {}),
            **({"series": self.series.to_dict()} if self.series is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:  # type: ignore[type-arg]
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported tokenizer format version {d.get('format_version')!r}")
        cfg = dict(d["config"])
        cfg["features"] = tuple(cfg["features"])
        config = TokenizerConfig(**cfg)  # files written before relative tokens existed load with relative off
        if config.relative and "relative_cuts" not in d:
            raise ValueError("a relative tokenizer without its relative_cuts: the file is incomplete")
        return cls(config, d["cuts_log1p"], d["ranges"], d["representatives"], d["nodes"], d["groups"],
                   d.get("relative_cuts", {}), d.get("relative_representatives", {}),
                   SeriesSpec.from_dict(d["series"]) if d.get("series") is not None else None)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON (atomically: a temporary file, then a rename)."""
        p = Path(path)
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, p)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """A tokenizer saved by :meth:`save`; a damaged or altered file is a ValueError naming it."""
        from netflowgen.artifacts import loading, read_json

        with loading(Path(path), "the tokenizer"):
            return cls.from_dict(read_json(Path(path)))


def _tail_split(k: int, config: TokenizerConfig) -> tuple[int, int]:
    """(bulk, tail) bins of ``log-quantile-tail`` among ``k`` bins: the tail's share, at least one."""
    k_tail = max(1, int(round(k * config.tail_share, 9)))  # rounded first: 9 * (1/3) is 3, not 2.99..
    return k - k_tail, k_tail


def _cuts(nonzero: np.ndarray, config: TokenizerConfig) -> np.ndarray:
    """Cut points on log1p between the ``n_bins - 1`` non-zero bins (duplicates merged)."""
    rule = config.rule
    k = config.n_bins - 1
    if nonzero.size == 0 or k <= 1:
        return np.zeros(0)
    logs = np.log1p(nonzero)
    if rule is BinRule.LOG_QUANTILE:
        cuts = np.quantile(logs, np.arange(1, k) / k, method="linear")
    elif rule is BinRule.LOG_QUANTILE_TAIL:
        k_bulk, k_tail = _tail_split(k, config)
        bulk = np.quantile(logs, np.arange(1, k_bulk + 1) / k_bulk * config.tail_from, method="linear")
        tail = np.linspace(bulk[-1], logs.max(), k_tail + 1)[1:-1]
        cuts = np.concatenate([bulk, tail])
    else:
        cuts = np.linspace(logs.min(), logs.max(), k + 1)[1:-1]
    cuts = np.unique(cuts)
    # A cut at the smallest value would leave its bin empty: values equal to a cut go right.
    return cuts[cuts > logs.min()] if cuts.size else cuts


def _node_step_order(series: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row order by node then step, and which rows of that order start a node."""
    if "node" not in series.columns or "step" not in series.columns:
        raise ValueError("relative tokens need the node and step columns")
    order = series.select(pl.arg_sort_by("node", "step", maintain_order=True)).to_series().to_numpy()
    nodes = series["node"].gather(order)
    first = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        first[1:] = (nodes.slice(1) != nodes.slice(0, len(order) - 1)).fill_null(True).to_numpy()
    return order, first


def _deviations(logs: np.ndarray, first: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """d = log1p(x) - mean log1p(x) of the previous ``window`` rows of the node, and whether a
    previous row exists; ``logs`` sorted by node then step, ``first`` marks each node's first row.

    Each row's sum adds its previous rows newest first, the same values in the same order however
    far back the frame starts: an encoding of a node's last rows with ``window`` rows more of the
    past equals, bit for bit, the encoding of the whole series (a cumulative sum would not).

    >>> d, has = _deviations(np.log1p([1.0, 1.0, 9.0, 0.0]), np.array([True, False, False, True]), 2)
    >>> np.round(d, 3).tolist(), has.tolist()
    ([0.0, 0.0, 1.609, 0.0], [False, True, True, False])
    """
    n = len(logs)
    starts = np.flatnonzero(first)
    pos = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))  # rows since the node's first
    total = np.zeros(n)
    for k in range(1, window + 1):
        if k >= n:
            break
        total[k:] += np.where(pos[k:] >= k, logs[:-k], 0.0)
    count = np.minimum(pos, window)
    has = count > 0
    d = np.where(has, logs - total / np.maximum(count, 1), 0.0)
    return np.where(np.abs(d) < _DEVIATION_TOLERANCE, 0.0, d), has


def _deviation_bins(d: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Symmetric bins of deviations: m + sign(d) * (number of cuts below |d|), m = len(cuts)."""
    side = np.searchsorted(cuts, np.abs(d), side="left")
    return (len(cuts) + np.sign(d).astype(np.int64) * side).astype(np.uint8)


def _relative_cuts(absd: np.ndarray, config: TokenizerConfig) -> np.ndarray:
    """Cut points c_1..c_m on |d| (m = (n_bins - 1) // 2), the feature rule applied to |d|."""
    rule = config.rule
    k = (config.n_bins - 1) // 2 + 1  # central bin and m side bins, on |d|
    if absd.size == 0 or k <= 1:
        return np.zeros(0)
    if rule is BinRule.LOG_QUANTILE:
        cuts = np.quantile(absd, np.arange(1, k) / k, method="linear")
    elif rule is BinRule.LOG_QUANTILE_TAIL:
        k_bulk, k_tail = _tail_split(k, config)
        bulk = np.quantile(absd, np.arange(1, k_bulk + 1) / k_bulk * config.tail_from, method="linear")
        tail = np.linspace(bulk[-1], absd.max(), k_tail + 1)[1:-1]
        cuts = np.concatenate([bulk, tail])
    else:
        cuts = np.linspace(0.0, absd.max(), k + 1)[1:-1]
    # The largest |d| must not be a cut: its bin above would hold nothing.
    cuts = np.unique(cuts)
    return cuts[cuts < absd.max()] if absd.max() > 0 else np.zeros(0)


def _fit_relative(lazy: pl.LazyFrame, config: TokenizerConfig) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Cut points and representatives of every relative token, on the training rows."""
    keys = lazy.select("node", "step").collect()
    order, first = _node_step_order(keys)
    cuts, reps = {}, {}
    for name in config.features:
        v = lazy.select(pl.col(name).cast(pl.Float64)).collect().to_series().to_numpy()
        d, has = _deviations(np.log1p(v[order]), first, config.relative_window)
        d = d[has]  # a row without a previous row is 0 by the rule, not by observation
        c = _relative_cuts(np.abs(d), config)
        bins = _deviation_bins(d, c)
        edges = np.concatenate(([-np.inf], -c[::-1], c, [np.inf]))
        rep = []
        for b in range(2 * len(c) + 1):
            members = d[bins == b]
            lo, hi = edges[b], edges[b + 1]
            if members.size:
                rep.append(float(np.median(members)))
            elif np.isfinite(lo) and np.isfinite(hi):
                rep.append(float((lo + hi) / 2))  # an empty bin decodes to its middle
            else:  # an empty open outer bin: twice its finite edge, beyond it
                edge = hi if np.isfinite(hi) else lo
                rep.append(float(2 * edge) if edge != 0 else (-1.0 if np.isfinite(hi) else 1.0))
        cuts[name + RELATIVE_SUFFIX], reps[name + RELATIVE_SUFFIX] = c.tolist(), rep
    return cuts, reps


def _ranges_and_representatives(values: np.ndarray, cuts: np.ndarray) -> tuple[list[list[float]], list[float]]:
    nonzero = values[values > 0]
    n = cuts.size + 2
    lo_all = float(nonzero.min()) if nonzero.size else 1.0
    hi_all = float(nonzero.max()) if nonzero.size else 1.0
    bounds = np.concatenate(([lo_all], np.expm1(cuts), [hi_all]))
    ranges = [[0.0, 0.0]] + [[float(bounds[i]), float(bounds[i + 1])] for i in range(n - 1)]
    which = 1 + np.searchsorted(cuts, np.log1p(nonzero), side="right")
    reps = [0.0]
    for b in range(1, n):
        members = nonzero[which == b]
        reps.append(float(np.median(members)) if members.size else float(np.sqrt(ranges[b][0] * ranges[b][1])))
    return ranges, reps


def fit_part(series: pl.DataFrame | pl.LazyFrame, fraction: float = 0.8, until: datetime | None = None) -> tuple[pl.DataFrame | pl.LazyFrame, dict]:  # type: ignore[type-arg]
    """The rows a tokenizer may be fitted on, and a description of them for the manifest.

    By default the first ``fraction`` of every node's steps (the training side of the per-node
    time split that pre-training holds out at the end of each node); with ``until``, the steps
    before that time, for all nodes alike.
    """
    if until is not None:
        cutoff = until if until.tzinfo else until.replace(tzinfo=timezone.utc)
        return series.filter(pl.col("step") < cutoff), {"by": "time", "until": cutoff.isoformat()}
    if not 0 < fraction <= 1:
        raise ValueError("the fit fraction must be in (0, 1]")
    rank = pl.col("step").rank("ordinal").over("node")
    keep = rank <= (pl.len().over("node") * fraction).ceil()
    return series.filter(keep), {"by": "node", "fraction": fraction}
