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

The tokenizer is saved to and loaded from JSON; ``save`` then ``load`` gives an equal tokenizer.
"""

from __future__ import annotations

import enum
import json
import os
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

__all__ = ["BinRule", "TokenizerConfig", "Tokenizer", "TIME_FIELDS", "UNKNOWN_ID", "fit_part"]

#: Time fields and their sizes, in the paper's order of description.
TIME_FIELDS: dict[str, int] = {"day_of_week": 7, "day_of_month": 31, "hour": 24, "minute": 60}
UNKNOWN_ID = 0
FORMAT_VERSION = 1


class BinRule(str, enum.Enum):
    """How non-zero values are cut into bins."""

    LOG_QUANTILE = "log-quantile"
    LOG_UNIFORM = "log-uniform"
    LOG_QUANTILE_TAIL = "log-quantile-tail"

#: Share of the non-zero values the bulk bins of ``log-quantile-tail`` cover.
TAIL_FROM = 0.9


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

    def __post_init__(self) -> None:
        if self.n_bins < 2 or self.n_bins > 255:
            raise ValueError(f"n_bins must be 2..255, got {self.n_bins}")
        if not self.features:
            raise ValueError("a tokenizer needs at least one feature")
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

    # --- fitting -------------------------------------------------------------------------------

    @classmethod
    def fit(cls, series: pl.DataFrame | pl.LazyFrame, config: TokenizerConfig) -> Tokenizer:
        """Fit bins and vocabularies on a (training) node-series table.

        A LazyFrame is read one column at a time, so a series larger than memory can be fitted.
        """
        lazy = series.lazy()
        names = lazy.collect_schema().names()
        missing = [f for f in config.features if f not in names]
        if missing:
            raise ValueError(f"series lacks the features {missing}")
        cuts, ranges, reps = {}, {}, {}
        for name in config.features:
            values = lazy.select(pl.col(name).cast(pl.Float64)).collect().to_series().to_numpy()
            if np.any(values < 0) or np.any(np.isnan(values)):
                raise ValueError(f"feature {name!r} has negative or missing values; features are counts")
            c = _cuts(values[values > 0], config.n_bins, config.rule)
            cuts[name] = c.tolist()
            ranges[name], reps[name] = _ranges_and_representatives(values, c)
        vocab = lambda col: sorted(lazy.select(pl.col(col).unique()).collect().to_series().drop_nulls().to_list())  # noqa: E731
        nodes = {n: i + 1 for i, n in enumerate(vocab("node"))}
        groups = {g: i + 1 for i, g in enumerate(vocab("group"))}
        return cls(config, cuts, ranges, reps, nodes, groups)

    # --- encoding ------------------------------------------------------------------------------

    @property
    def bins(self) -> dict[str, int]:
        """Number of bins of each feature (zero bin included)."""
        return {name: len(c) + 2 for name, c in self.cuts.items()}

    def encode_feature(self, name: str, values: np.ndarray) -> np.ndarray:
        """Bins of one feature's values (uint8)."""
        v = np.asarray(values, dtype=np.float64)
        if np.any(v < 0) or np.any(np.isnan(v)):
            raise ValueError(f"feature {name!r}: values must be non-negative numbers")
        cuts = np.asarray(self.cuts[name])
        nonzero = 1 + np.searchsorted(cuts, np.log1p(v), side="right")
        return np.where(v == 0, 0, nonzero).astype(np.uint8)

    def encode_traffic(self, series: pl.DataFrame) -> np.ndarray:
        """(rows, features) uint8 bins of every traffic feature."""
        return np.stack(
            [self.encode_feature(n, series[n].cast(pl.Float64).to_numpy()) for n in self.config.features], axis=1
        )

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

    # --- decoding ------------------------------------------------------------------------------

    def decode_range(self, name: str, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[low, high] value range of each bin."""
        r = np.asarray(self.ranges[name])
        b = np.asarray(bins, dtype=np.int64)
        return r[b, 0], r[b, 1]

    def decode(self, name: str, bins: np.ndarray) -> np.ndarray:
        """The representative value of each bin."""
        return np.asarray(self.representatives[name])[np.asarray(bins, dtype=np.int64)]

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
        }

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:  # type: ignore[type-arg]
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported tokenizer format version {d.get('format_version')!r}")
        cfg = dict(d["config"])
        cfg["features"] = tuple(cfg["features"])
        return cls(TokenizerConfig(**cfg), d["cuts_log1p"], d["ranges"], d["representatives"], d["nodes"], d["groups"])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON (atomically: a temporary file, then a rename)."""
        p = Path(path)
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, p)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _cuts(nonzero: np.ndarray, n_bins: int, rule: BinRule) -> np.ndarray:
    """Cut points on log1p between the ``n_bins - 1`` non-zero bins (duplicates merged)."""
    k = n_bins - 1
    if nonzero.size == 0 or k <= 1:
        return np.zeros(0)
    logs = np.log1p(nonzero)
    if rule is BinRule.LOG_QUANTILE:
        cuts = np.quantile(logs, np.arange(1, k) / k, method="linear")
    elif rule is BinRule.LOG_QUANTILE_TAIL:
        k_tail = max(1, k // 3)
        k_bulk = k - k_tail
        bulk = np.quantile(logs, np.arange(1, k_bulk + 1) / k_bulk * TAIL_FROM, method="linear")
        tail = np.linspace(bulk[-1], logs.max(), k_tail + 1)[1:-1]
        cuts = np.concatenate([bulk, tail])
    else:
        cuts = np.linspace(logs.min(), logs.max(), k + 1)[1:-1]
    cuts = np.unique(cuts)
    # A cut at the smallest value would leave its bin empty: values equal to a cut go right.
    return cuts[cuts > logs.min()] if cuts.size else cuts


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
