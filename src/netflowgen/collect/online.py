"""Online node series: the offline per-(node, step) features, built step by step as flows arrive.

:class:`OnlineSeries` takes flows in any order (:meth:`~OnlineSeries.add`) and, told how far time
has advanced (:meth:`~OnlineSeries.advance` with a *watermark*), returns the rows of every step that
is complete. The features are the offline ones: each complete step's flows go through the same
:func:`~netflowgen.series.build.node_view` and :func:`~netflowgen.series.features.aggregations`
as :func:`~netflowgen.series.build.build_series`; nothing is re-implemented here.

Rules:

* Steps are aligned to the Unix epoch as offline; a flow counts in the step where it starts.
* A step ``[s, s + step)`` is *complete* when ``s + step + grace <= watermark``: flows that start
  in it are accepted until then. A flow whose step is already complete when it is added is
  *late*: counted in ``late_flows``. With ``late="fold"`` (the default) it counts in the first
  step still open, as if it had started there (``folded_flows``); with ``late="drop"`` it is left
  out. Folding is what a live detector needs: an exporter emits a flow at its end or at its active
  timeout (300 s in nfpcapd, 1,800 s on many routers), so the flows of a flood that began a
  minute ago arrive long after their start step closed; dropping them hides exactly the attack.
  A collector that bins by arrival time (nfcapd's rotation files) treats them the same way.
* A node becomes active with its first traffic. Every complete step gives one row per active
  node: its features, or zeros for a step without its traffic, for at most ``idle_steps`` steps
  after its last traffic. When one more step completes without its traffic, the node is
  *evicted*: its state and history are dropped, so memory is bounded by the nodes active in the
  last ``idle_steps + 1`` steps. If it comes back, it starts again as a new node.
* Rows have the columns and types of ``build_series`` without its label columns (live export
  carries no labels): node, group, step, then every registered feature.

Equivalence with offline (tested): for the same flows (none late), the rows given out equal
``build_series`` with ``max_gap = (idle_steps + 1) * step`` (see :meth:`OnlineConfig.offline`),
except the zero rows after a node's last traffic before its eviction, which offline does not
write (offline knows the future: it ends a node at its last traffic).

Each active node's last ``history`` rows stay available (:meth:`OnlineSeries.history`), the
context a scorer reads.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import polars as pl

# The offline builder's node view and groups, and the contract's step flooring, so that step
# alignment and groups cannot drift apart between the offline and the online series.
from netflowgen.series.build import SERIES_KEY_COLUMNS, node_groups, node_view
from netflowgen.series.spec import SeriesSpec, step_expr
from netflowgen.series.features import aggregations

__all__ = ["LATE_POLICIES", "OnlineConfig", "OnlineSeries"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


#: What :class:`OnlineSeries` does with a late flow.
LATE_POLICIES = ("fold", "drop")


@dataclass(frozen=True)
class OnlineConfig:
    """How flows become node series online."""

    series: SeriesSpec = field(default_factory=SeriesSpec)
    """Step width, which endpoints are nodes, groups (``max_gap`` and ``attack`` are not used)."""
    grace: timedelta = timedelta(0)
    """How long after a step ends its flows are still accepted."""
    idle_steps: int = 10
    """Zero rows given out after a node's last traffic; one more silent step evicts it."""
    history: int = 64
    """Rows kept per active node."""
    late: str = "fold"
    """A flow whose step is complete when it arrives: ``"fold"`` counts it in the first open step,
    ``"drop"`` leaves it out (see the module docstring)."""

    def __post_init__(self) -> None:
        if self.late not in LATE_POLICIES:
            raise ValueError(f"late must be one of {', '.join(LATE_POLICIES)}, not {self.late!r}")
        if self.grace < timedelta(0):
            raise ValueError("grace must not be negative")
        if self.idle_steps < 1:
            raise ValueError("idle_steps must be at least 1")
        if self.history < 1:
            raise ValueError("history must be at least 1")

    def offline(self) -> SeriesSpec:
        """The offline configuration whose series these rows match (see the module docstring)."""
        return replace(self.series, max_gap=self.series.step * (self.idle_steps + 1))

#: Sources with their own late-flow count; the rest are counted under ``udp://other`` (the
#: collector's ``"other"`` exporter entry).
_MAX_LATE_SOURCES = 256


def _empty_rows(features: tuple[str, ...]) -> pl.DataFrame:
    return pl.DataFrame(schema={"node": pl.String, "group": pl.String, "step": pl.Datetime("us", "UTC"),
                                **{n: pl.UInt64 for n in features}})


class OnlineSeries:
    """Per-node series built online (see the module docstring for the rules).

    >>> from datetime import datetime, timezone
    >>> from netflowgen.schema import FLOW_SCHEMA
    >>> t = datetime(2024, 3, 1, 12, 0, 10, tzinfo=timezone.utc)
    >>> flows = pl.DataFrame({"ts_start": [t], "ts_end": [t], "src_ip": ["10.0.0.1"], "dst_ip": ["8.8.8.8"],
    ...     "src_port": [5353], "dst_port": [53], "proto": [17], "fwd_packets": [1], "fwd_bytes": [80],
    ...     "rev_packets": [0], "rev_bytes": [0], "tcp_flags": [None], "label": [None], "label_detail": [None],
    ...     "quality": [0], "source_file": ["udp://192.0.2.1"], "source_row": [1]}, schema=FLOW_SCHEMA)
    >>> online = OnlineSeries(OnlineConfig(idle_steps=2))
    >>> online.add(flows)
    >>> rows = online.advance(datetime(2024, 3, 1, 12, 3, tzinfo=timezone.utc))
    >>> rows.select("node", pl.col("step").dt.strftime("%H:%M"), "flows_out", "svc_dns").rows()
    [('10.0.0.1', '12:00', 1, 1), ('10.0.0.1', '12:01', 0, 0), ('10.0.0.1', '12:02', 0, 0)]
    >>> online.active_nodes, online.advance(datetime(2024, 3, 1, 12, 4, tzinfo=timezone.utc)).height
    (1, 0)
    >>> online.active_nodes, online.evicted_nodes
    (0, 1)
    """

    def __init__(self, config: OnlineConfig | None = None) -> None:
        self.config = config or OnlineConfig()
        self._step = self.config.series.step
        self._open: list[pl.DataFrame] = []  # node-view rows of steps not yet complete
        self._closed_until: datetime | None = None  # start of the first step not yet given out
        self._last = pl.DataFrame(schema={"node": pl.String, "last": pl.Datetime("us", "UTC")})
        self._group_cache = pl.DataFrame(schema={"node": pl.String, "group": pl.String})
        self._history = _empty_rows(self.config.series.features)
        self.flows_added = 0
        """flows given to :meth:`add` (late ones included)."""
        self.late_flows = 0
        """flows whose step was complete when they arrived (folded or dropped)."""
        self.folded_flows = 0
        """late flows counted in the first open step (``late="fold"``)."""
        self.late_by_source: Counter[str] = Counter()
        """``late_flows`` by the flows' ``source_file`` (a collector's ``udp://EXPORTER``)."""
        self.evicted_nodes = 0
        self.rows_emitted = 0

    # -- state ----------------------------------------------------------------------------------

    @property
    def active_nodes(self) -> int:
        return self._last.height

    @property
    def open_rows(self) -> int:
        """Node-view rows (about two per flow) held for steps not yet complete."""
        return sum(df.height for df in self._open)

    @property
    def closed_until(self) -> datetime | None:
        """Start of the first step not yet given out; flows starting before it are late."""
        return self._closed_until

    def history(self, node: str | None = None) -> pl.DataFrame:
        """The last ``history`` rows of one active node (or of all), by node and step."""
        if node is None:
            return self._history
        return self._history.filter(pl.col("node") == node)

    # -- input ----------------------------------------------------------------------------------

    def add(self, flows: pl.DataFrame) -> None:
        """Take canonical flows (any order); flows of complete steps are counted late, then folded
        into the first open step or left out (``late``)."""
        if flows.height == 0:
            return
        self.flows_added += flows.height
        if self._closed_until is not None:
            step = flows.select(step_expr(self._step)).to_series()
            late = step < self._closed_until
            n_late = int(late.sum())
            if n_late:
                self.late_flows += n_late
                self.late_by_source.update(dict(flows.filter(late)["source_file"].fill_null("").value_counts().iter_rows()))
                if len(self.late_by_source) > _MAX_LATE_SOURCES:
                    # One entry per sender must not grow without bound: the busiest keep their own.
                    keep = dict(self.late_by_source.most_common(_MAX_LATE_SOURCES - 1))
                    folded = sum(self.late_by_source.values()) - sum(keep.values())
                    self.late_by_source = Counter(keep)
                    self.late_by_source["udp://other"] += folded
                if self.config.late == "fold":
                    # Only the start moves: no feature reads the end, and the watermark was taken
                    # from the flows as they came.
                    flows = flows.with_columns(
                        pl.when(late).then(pl.lit(self._closed_until, dtype=flows.schema["ts_start"]))
                        .otherwise(pl.col("ts_start")).alias("ts_start"))
                    self.folded_flows += n_late
                else:
                    flows = flows.filter(~late)
        if flows.height:
            self._open.append(node_view(flows.lazy(), self.config.series).collect())

    def closing(self, end: datetime) -> datetime:
        """The watermark at which the step holding the time ``end`` is complete (its end plus the
        grace), so that :meth:`advance` to it gives out that step and no later one."""
        step_start = _EPOCH + (end - _EPOCH) // self._step * self._step
        return step_start + self._step + self.config.grace

    def advance(self, watermark: datetime) -> pl.DataFrame:
        """Rows of every step that is complete at ``watermark`` and was not given out yet, by step
        and node; evicts the nodes idle for ``idle_steps`` steps."""
        if watermark.tzinfo is None:
            raise ValueError("watermark must be timezone-aware (UTC)")
        step_us = self._step // timedelta(microseconds=1)
        horizon_us = (watermark - self.config.grace - _EPOCH) // timedelta(microseconds=1)
        new_closed = _EPOCH + timedelta(microseconds=(horizon_us // step_us) * step_us)
        if self._closed_until is not None and new_closed <= self._closed_until:
            return _empty_rows(self.config.series.features)
        view = pl.concat(self._open, how="vertical") if self._open else None
        ready = view.filter(pl.col("step") < new_closed) if view is not None else None
        self._open = [view.filter(pl.col("step") >= new_closed)] if view is not None else []
        self._open = [df for df in self._open if df.height]
        start = self._closed_until
        if start is None:
            if ready is None or ready.height == 0:
                self._closed_until = new_closed
                return _empty_rows(self.config.series.features)
            start = ready["step"].min()  # type: ignore[assignment]
        rows = self._rows(ready, start, new_closed)  # type: ignore[arg-type]
        self._closed_until = new_closed
        self.rows_emitted += rows.height
        return rows

    # -- steps ----------------------------------------------------------------------------------

    def _rows(self, ready: pl.DataFrame | None, start: datetime, end: datetime) -> pl.DataFrame:
        """Rows of the steps in [start, end): traffic rows, and zero rows of active nodes."""
        names = list(self.config.series.features)
        idle = self._step * self.config.idle_steps
        last_step = end - self._step
        if ready is not None and ready.height:
            traffic = ready.lazy().group_by("node", "step").agg(*aggregations(self.config.series.features)).collect()
        else:
            traffic = pl.DataFrame(schema={"node": pl.String, "step": pl.Datetime("us", "UTC"), **{n: pl.UInt64 for n in names}})
        # Every active step of a node lies within `idle` after one of its anchors: its last traffic
        # before this window, or a traffic step inside it.
        anchors = pl.concat([self._last.rename({"last": "anchor"}), traffic.select("node", pl.col("step").alias("anchor"))])
        lo = pl.max_horizontal(pl.col("anchor"), pl.lit(start, pl.Datetime("us", "UTC")))
        hi = pl.min_horizontal(pl.col("anchor") + idle, pl.lit(last_step, pl.Datetime("us", "UTC")))
        grid = (
            anchors.select("node", lo.alias("lo"), hi.alias("hi"))
            .filter(pl.col("lo") <= pl.col("hi"))
            .select("node", pl.datetime_ranges("lo", "hi", interval=self._step, time_unit="us", time_zone="UTC").alias("step"))
            .explode("step")
            .unique(["node", "step"])
        )
        rows = grid.join(traffic, on=["node", "step"], how="left").with_columns(pl.col(n).fill_null(0) for n in names)
        # A node goes once a whole step after its zero rows passed without its traffic: a silence
        # of exactly `idle_steps` steps keeps it (and its history), as offline bridges it.
        last = anchors.group_by("node").agg(pl.col("anchor").max().alias("last"))
        keep = pl.col("last") + idle + self._step >= end
        evicted = last.filter(~keep)["node"]
        self._last = last.filter(keep)
        self.evicted_nodes += evicted.len()
        rows = rows.join(self._groups(rows["node"].unique()), on="node", how="left")
        rows = rows.select(*SERIES_KEY_COLUMNS, *names).sort("step", "node")
        self._group_cache = self._group_cache.filter(pl.col("node").is_in(self._last["node"].implode()))
        self._keep_history(rows, evicted)
        return rows

    def _groups(self, nodes: pl.Series) -> pl.DataFrame:
        new = nodes.filter(~nodes.is_in(self._group_cache["node"].implode()))
        if new.len():
            self._group_cache = pl.concat([self._group_cache, node_groups(new.sort(), self.config.series)])
        return self._group_cache

    def _keep_history(self, rows: pl.DataFrame, evicted: pl.Series) -> None:
        h = pl.concat([self._history, rows], how="vertical")
        h = h.filter(~pl.col("node").is_in(evicted.implode()))
        self._history = h.sort("node", "step").group_by("node", maintain_order=True).tail(self.config.history)
