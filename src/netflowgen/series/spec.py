"""The series contract: what defines a node series, in one typed object, and the step arithmetic
every stage shares.

A :class:`SeriesSpec` is made once (by ``netflowgen series`` or :func:`~netflowgen.build_series`),
written into the series artifact's manifest, held by the tokenizer fitted on that series and so
carried into every later artifact (token shards, pre-training runs, detectors). Every entry point
that takes a series checks it against the spec it works with (:meth:`SeriesSpec.check`), and an
artifact's spec against the model's (:meth:`SeriesSpec.require_compatible`), with an error that
names both values.

What a model depends on is the step width and the features it reads: those must agree. How a network's
nodes were chosen (local prefixes, node mode, groups), its labels, gap and coverage rules describe
one network's series and may differ between the series a model was pre-trained on and the one a
detector is fitted on.

This module also owns the step arithmetic: step flooring (:func:`floor_step`, :func:`step_expr`),
reading a series' step from its rows (:func:`series_step`) and its segments, the runs of
consecutive steps of one node (:func:`segment_bounds`, :func:`segment_ids`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netflowgen.series.features import feature_names
from netflowgen.series.nodes import DEFAULT_LOCAL_PREFIXES, NodeMode

__all__ = ["SeriesSpec", "attack_labels", "parse_step", "floor_step", "step_expr", "series_step", "segment_bounds", "segment_ids"]


def parse_step(text: str) -> timedelta:
    """``60s``, ``5m``, ``1h``, ``1d`` or a number of seconds -> timedelta; a whole number of seconds.

    Sub-second widths are refused: token shards keep step starts as whole Unix seconds, so rows
    of a sub-second series could never be told apart as consecutive steps.

    >>> parse_step("5m"), parse_step("30")
    (datetime.timedelta(seconds=300), datetime.timedelta(seconds=30))
    >>> parse_step("500ms")
    Traceback (most recent call last):
    ...
    ValueError: step width must be a positive whole number of seconds (got 500ms); sub-second steps are not supported because token shards store step starts as whole Unix seconds
    """
    units = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "min": Decimal(60), "h": Decimal(3600),
             "d": Decimal(86400)}
    t = text.strip().lower()
    for unit in sorted(units, key=len, reverse=True):
        if t.endswith(unit):
            number = t[: -len(unit)]
            break
    else:
        unit, number = "s", t
    try:
        seconds = Decimal(number.strip()) * units[unit]
    except InvalidOperation as e:
        raise ValueError(f"not a step width: {text!r} (use e.g. 60s, 5m, 1h)") from e
    if not seconds.is_finite():
        raise ValueError(f"not a step width: {text!r} (use e.g. 60s, 5m, 1h)")
    if seconds <= 0 or seconds != seconds.to_integral_value():
        raise ValueError(
            f"step width must be a positive whole number of seconds (got {text.strip()}); sub-second steps are "
            "not supported because token shards store step starts as whole Unix seconds"
        )
    try:
        return timedelta(seconds=int(seconds))
    except OverflowError as e:
        raise ValueError(f"step width too large: {text!r}") from e


def _seconds(step: timedelta) -> str:
    return f"{step.total_seconds():g} s"


@dataclass(frozen=True)
class SeriesSpec:
    """What defines a node series (see the module docstring).

    >>> spec = SeriesSpec(step=timedelta(seconds=10), local_prefixes=("2001:db8::/32",))
    >>> SeriesSpec.from_dict(spec.to_dict()) == spec
    True
    >>> spec.step_seconds
    10
    """

    step: timedelta = timedelta(seconds=60)
    """Step width; steps are aligned to multiples of it since the Unix epoch (UTC)."""
    nodes: NodeMode = NodeMode.LOCAL
    """Which endpoints are nodes."""
    local_prefixes: tuple[str, ...] = DEFAULT_LOCAL_PREFIXES
    """Local networks for ``nodes=local`` (the defaults plus any the user adds)."""
    group_map: Path | None = None
    """CSV ``node,group``; nodes not in it fall back to the prefix groups."""
    group_ipv4_prefix: int = 24
    """Default group: the node's IPv4 network of this length."""
    group_ipv6_prefix: int = 64
    attack: tuple[str, ...] = field(default=())
    """Classes that make a step positive (matched case-insensitively to label or label_detail)."""
    max_gap: timedelta = timedelta(days=1)
    """Longest silence filled with zero rows; a longer one ends the node's activity period."""
    coverage_fraction: float = 0.5
    """A silent step is a zero row only when at least this share of it lies inside the data's
    coverage (the time its inputs observed); otherwise it is absent: missing, not quiet."""
    features: tuple[str, ...] = field(default_factory=lambda: tuple(feature_names()))
    """The traffic feature columns, in order (the registry's, ``series/features.py``, when built)."""

    def __post_init__(self) -> None:
        if self.step <= timedelta(0):
            raise ValueError("step must be positive")
        if self.step % timedelta(seconds=1):
            raise ValueError(f"step must be a whole number of seconds, not {self.step.total_seconds():g}")
        if self.max_gap < self.step:
            raise ValueError("max_gap must be at least one step")
        if not 0 < self.coverage_fraction <= 1:
            raise ValueError("coverage_fraction must be in (0, 1]")
        if not 0 <= self.group_ipv4_prefix <= 32 or not 0 <= self.group_ipv6_prefix <= 128:
            raise ValueError("group prefix lengths must be 0..32 (IPv4) and 0..128 (IPv6)")
        if not isinstance(self.nodes, NodeMode):
            object.__setattr__(self, "nodes", NodeMode(self.nodes))
        for name in ("local_prefixes", "attack", "features"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.features:
            raise ValueError("a series needs at least one feature")

    @property
    def step_seconds(self) -> int:
        """The step width in whole seconds."""
        return int(self.step.total_seconds())

    # --- JSON ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as manifests and tokenizers store it (durations in seconds)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("step", "max_gap"):
                out[f"{f.name}_seconds"] = v.total_seconds()
            elif isinstance(v, NodeMode):
                out[f.name] = v.value
            elif isinstance(v, tuple):
                out[f.name] = list(v)
            elif isinstance(v, Path):
                out[f.name] = str(v)
            else:
                out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeriesSpec:
        """The spec back from :meth:`to_dict`. Manifests written before the feature list was
        part of the contract hold no ``features``: they were built with the registry of the time,
        which is taken to be today's."""
        c = dict(d)
        known = {f.name for f in fields(cls)} | {"step_seconds", "max_gap_seconds"}
        unknown = sorted(set(c) - known)
        if unknown:
            raise ValueError(f"unknown series settings {', '.join(unknown)}")
        if "step_seconds" not in c:
            raise ValueError("a series spec without its step_seconds")
        kwargs: dict[str, Any] = {"step": timedelta(seconds=float(c.pop("step_seconds")))}
        if "max_gap_seconds" in c:
            kwargs["max_gap"] = timedelta(seconds=float(c.pop("max_gap_seconds")))
        if c.get("group_map"):
            kwargs["group_map"] = Path(c.pop("group_map"))
        c.pop("group_map", None)
        return cls(**kwargs, **c)

    # --- checks --------------------------------------------------------------------------------

    def require_compatible(self, other: SeriesSpec, what: str, other_what: str) -> None:
        """Refuse ``other`` (the spec of ``other_what``) where a model of this spec (``what``) could
        not read its series: another step width, or a feature the model reads that it lacks.

        >>> model = SeriesSpec(features=("flows_in", "flows_out"))
        >>> model.require_compatible(SeriesSpec(step=timedelta(minutes=5)), "the run", "the series")
        Traceback (most recent call last):
        ...
        ValueError: the series has 300 s steps but the run works on 60 s steps; build the series with --step 60s
        """
        if other.step != self.step:
            raise ValueError(f"{other_what} has {_seconds(other.step)} steps but {what} works on {_seconds(self.step)} "
                             f"steps; build the series with --step {self.step_seconds}s")
        missing = [f for f in self.features if f not in other.features]
        if missing:
            raise ValueError(f"{other_what} lacks the features {', '.join(missing)} that {what} reads; "
                             "build it with the same netflowgen")

    def check(self, series: pl.DataFrame | pl.LazyFrame, what: str = "the model") -> None:
        """Refuse a series whose rows are not on this spec's step grid or lack its features:
        scores of a 300 s series read by a 60 s model mean nothing, and nothing else would say so.

        >>> from datetime import datetime, timezone
        >>> t = [datetime(2024, 1, 1, 0, m, tzinfo=timezone.utc) for m in (0, 5)]
        >>> s = pl.DataFrame({"node": ["a", "a"], "step": t, "flows_in": [1, 2]})
        >>> SeriesSpec(step=timedelta(minutes=1), features=("flows_in",)).check(s)
        Traceback (most recent call last):
        ...
        ValueError: the series' step is 300 s but the model works on 60 s steps; build the series with --step 60s
        """
        width = self.step_seconds
        seen = series_step(series)
        if seen is not None and seen != width:
            raise ValueError(f"the series' step is {seen:g} s but {what} works on {width:g} s steps; "
                             f"build the series with --step {width}s")
        off = series.lazy().select((pl.col("step").dt.epoch("s") % width != 0).any()).collect().item()
        if off:
            raise ValueError(f"the series' steps are not on the {width:g} s grid of {what}; build the series with --step {width}s")
        names = series.lazy().collect_schema().names()
        missing = [f for f in self.features if f not in names]
        if missing:
            raise ValueError(f"the series lacks the features {', '.join(missing)} that {what} reads")


# --- step arithmetic ---------------------------------------------------------------------------


def step_expr(step: timedelta, column: str = "ts_start") -> pl.Expr:
    """The start of the step each timestamp of ``column`` falls in (UTC), as the column ``step``.

    >>> from datetime import datetime, timezone
    >>> df = pl.DataFrame({"ts_start": [datetime(2024, 1, 1, 0, 1, 59, tzinfo=timezone.utc)]})
    >>> df.select(step_expr(timedelta(minutes=1)))["step"][0]
    datetime.datetime(2024, 1, 1, 0, 1, tzinfo=zoneinfo.ZoneInfo(key='UTC'))
    """
    step_us = step // timedelta(microseconds=1)
    us = pl.col(column).dt.epoch("us")
    return ((us // step_us) * step_us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("step")


def floor_step(value: datetime, step: timedelta) -> datetime:
    """The start of the step ``value`` falls in (UTC; a naive ``value`` is read as UTC).

    >>> floor_step(datetime(2024, 1, 1, 0, 1, 59), timedelta(minutes=1))
    datetime.datetime(2024, 1, 1, 0, 1, tzinfo=datetime.timezone.utc)
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    step_us = step // timedelta(microseconds=1)
    us = (value - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us // step_us * step_us)


def series_step(series: pl.DataFrame | pl.LazyFrame) -> int | None:
    """The step width of a series in seconds, read from its rows: the greatest common divisor of
    the distances between consecutive steps of a node (None where no node has two rows). A series
    zero-fills its active periods, so its consecutive rows are one step apart.

    >>> from datetime import datetime, timezone
    >>> t = [datetime(2024, 1, 1, 0, m, tzinfo=timezone.utc) for m in (0, 5, 15)]
    >>> series_step(pl.DataFrame({"node": ["a"] * 3, "step": t}))
    300
    """
    diffs = (
        series.lazy().select("node", pl.col("step").dt.epoch("s")).sort("node", "step")
        .select(pl.when(pl.col("node") == pl.col("node").shift(1)).then(pl.col("step").diff()).alias("d"))
        .filter(pl.col("d") > 0).unique().collect()["d"].to_list()
    )
    return math.gcd(*diffs) if diffs else None


def segment_bounds(node: np.ndarray, step_s: np.ndarray, step_width_s: float) -> np.ndarray:
    """(S, 2) [start, end) rows of each segment, a run of consecutive steps of one node, in rows
    sorted by node and step (``node`` any per-row key, ``step_s`` step starts in seconds).

    >>> segment_bounds(np.array([1, 1, 1, 2]), np.array([0, 60, 180, 0]), 60).tolist()
    [[0, 2], [2, 3], [3, 4]]
    """
    n = len(node)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    breaks = np.flatnonzero((node[1:] != node[:-1]) | (np.diff(step_s) != step_width_s)) + 1
    starts = np.concatenate(([0], breaks))
    return np.stack([starts, np.concatenate((breaks, [n]))], axis=1).astype(np.int64)


def segment_ids(step: timedelta, hold: timedelta | None = None) -> pl.Expr:
    """The segment number of each row of a frame sorted by node and step, as the column ``_seg``:
    :func:`segment_bounds`' rule as a Polars expression. With ``hold`` a segment runs on over
    missing steps up to that long (a detector that holds its state over a hole)."""
    step_us = (hold or step) // timedelta(microseconds=1)
    same_node = pl.col("node") == pl.col("node").shift(1)
    diff = pl.col("step").dt.epoch("us") - pl.col("step").shift(1).dt.epoch("us")
    new = (~same_node | ((diff > step_us) if hold else (diff != step_us))).fill_null(True)
    return new.cast(pl.UInt32).cum_sum().alias("_seg")


def attack_labels(series: pl.DataFrame, attack: tuple[str, ...] | list[str]) -> np.ndarray:
    """1 where a step holds a flow of one of the ``attack`` classes (case-insensitive), from the
    series' ``classes`` column; without classes given, the series' own ``attack`` flag."""
    if not attack:
        return series["attack"].cast(pl.UInt8).to_numpy()
    wanted = [a.lower() for a in attack]
    hit = series.select(pl.col("classes").list.eval(pl.element().str.to_lowercase().is_in(wanted)).list.any())
    return hit.to_series().fill_null(False).cast(pl.UInt8).to_numpy()
