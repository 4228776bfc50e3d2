"""``netflowgen detect``: the collector, online aggregation and the detector, live.

Flows decoded by :class:`~netflowgen.collect.server.Collector` (which also writes them as a flow
dataset) go into :class:`~netflowgen.collect.online.OnlineSeries` at the detector's step and
node settings. Time is *event time*: the watermark is the latest flow end seen, so a replayed
capture is judged by its own clock, and a step *closes* once the watermark has passed its end by
the grace period (flows start before they are exported). When export falls quiet, the watermark
also moves on with the wall clock (at ``clock_rate`` flow seconds per second, counted from the
arrival of the latest flow end), but only as far as it takes to close the step of the latest flow
end: the last flows before a quiet spell are scored on time instead of waiting for the next flow,
and silence never makes steps of its own (missing data is not zero traffic). Every node of every
closed step is scored by :class:`~netflowgen.detect.online.OnlineDetector`; alerts go as JSON
lines to a file or stdout and to ``/alerts`` of a loopback HTTP API (with ``/health``,
``/metrics``, ``/top``, ``/exporters`` and a status page at ``/``). Idle nodes are evicted; flows
beyond the grace period are counted as late.

Threads, and the two bounded queues between them (memory stays bounded when scoring falls
behind; nothing ever blocks the collector)::

    collector decode --(intake: at most intake_flows flows)--> aggregate --(at most queue_steps
    closed steps)--> score

* **intake**: the decoded batches. A batch that does not fit is left out of detection (reason
  ``intake_full``, counted in batches and flows); the collector still writes it to the dataset.
* **aggregate**: adds the flows to the online series, advances the watermark and puts every step
  it closes on the scoring queue, stamped with the time its closing batch reached the detector.
* **scoring queue**: when one more step closes than it holds, the *oldest* waiting step is
  dropped (reason ``queue_full``, counted in steps and node-steps): the newest steps are the
  ones an operator needs. The series keeps ``queue_steps + 1`` rows per node beyond the scorer's
  context so that a waiting step still finds its full history; a step whose history has gone
  anyway (a single burst closed more steps than that while another step was being scored) is
  dropped as ``stale``.
* **score**: scores one closed step at a time and writes its alerts; the time from the step's
  closing batch to its alerts written is its *latency* (``/health``, ``/metrics``).

What is dropped, and why, is in ``/health``, ``/metrics`` and the final summary.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import IO, Any, Generic, Literal, TypeVar

import numpy as np
import polars as pl

from netflowgen.collect.httpserve import BoundedHTTPServer, Route, health_route, json_route, metrics_route, serve_routes

__all__ = ["BoundedQueue", "LiveConfig", "LiveDetector"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds the aggregate thread waits for flows before it moves the watermark on by the wall clock.
_CLOCK_TICK_S = 0.1


@dataclass(frozen=True)
class LiveConfig:
    """What ``netflowgen detect`` runs (see the module docstring)."""

    detector: Path
    """A detector directory (from ``netflowgen finetune``)."""
    listen: tuple[str, int] = ("127.0.0.1", 2055)
    """UDP address the collector receives export on (port 0: any free port)."""
    out: Path | None = None
    """Flow dataset the collector writes (None: a temporary one, removed at the end)."""
    alerts: Path | None = None
    """JSON-lines file for alerts (None: stdout)."""
    api: tuple[str, int] | None = None
    """HTTP address of the status page and /health, /metrics, /alerts, /top, /exporters (None:
    none). Loopback unless told otherwise: nothing in it is authenticated."""
    grace_steps: float = 1.0
    """Steps a step stays open for flows that arrive late."""
    late: str = "fold"
    """A flow that arrives after its step was scored: ``"fold"`` counts it in the first open step
    (an exporter emits long flows, a flood's among them, at their end or active timeout),
    ``"drop"`` leaves it out of detection (``out`` keeps it either way)."""
    idle_steps: int = 60
    """Steps without traffic after which a node is forgotten."""
    filter: str | None = None
    """nfdump filter expression: the detector sees, and ``out`` keeps, only the flows it matches."""
    queue_steps: int = 8
    """Closed steps waiting to be scored at most; one more drops the oldest waiting (counted)."""
    clock_rate: float = 1.0
    """Flow-clock seconds per wall-clock second, by which the watermark moves on while no newer
    flow end arrives (up to closing the latest flow's step; see the module docstring): 1 for live
    export, whose flows carry the wall clock; N for a replay at Nx; 0: only flow ends move it."""
    intake_flows: int = 2_000_000
    """Decoded flows waiting to be aggregated at most; a batch beyond it is left out of detection
    (counted; ``out`` still keeps it)."""

    def __post_init__(self) -> None:
        from netflowgen.read.filter import compile_filter

        from netflowgen.collect.online import LATE_POLICIES

        if self.grace_steps < 0:
            raise ValueError("grace_steps must not be negative")
        if self.late not in LATE_POLICIES:
            raise ValueError(f"late must be one of {', '.join(LATE_POLICIES)}, not {self.late!r}")
        if self.idle_steps < 1:
            raise ValueError("idle_steps must be at least 1")
        if not 1 <= self.queue_steps < self.idle_steps:
            raise ValueError(f"queue_steps must be at least 1 and below idle_steps ({self.idle_steps}): "
                             "a node must outlive the steps waiting for it")
        if self.intake_flows < 1:
            raise ValueError("intake_flows must be at least 1")
        if not self.clock_rate >= 0:
            raise ValueError("clock_rate must not be negative")
        if self.filter is not None:
            compile_filter(self.filter)  # a bad expression fails before the detector loads


class BoundedQueue(Generic[T]):
    """A FIFO holding at most ``capacity`` units (``weight(item)`` each) that never blocks the
    producer: what does not fit is dropped and handed back by :meth:`put`, either the oldest
    waiting items (``drop="oldest"``) or the new one (``drop="new"``). An item is always taken
    into an empty queue, however heavy. :meth:`close` ends it: :meth:`get` returns what is left,
    then None.

    >>> q = BoundedQueue(2, drop="oldest")
    >>> q.put("a"), q.put("b"), q.put("c"), len(q)
    ([], [], ['a'], 2)
    >>> q.close(); q.get(), q.get(), q.get()
    ('b', 'c', None)
    """

    def __init__(self, capacity: int, weight: Callable[[T], int] | None = None,
                 drop: Literal["oldest", "new"] = "oldest") -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if drop not in ("oldest", "new"):
            raise ValueError(f"drop must be 'oldest' or 'new', not {drop!r}")
        self.capacity = capacity
        self.weight = weight or (lambda _: 1)
        self.drop = drop
        self.held = 0
        """units waiting."""
        self._items: deque[tuple[T, int]] = deque()
        self._ready = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> list[T]:
        """Queue ``item``; returns what was dropped to keep within ``capacity`` (oldest first)."""
        w = self.weight(item)
        dropped: list[T] = []
        with self._ready:
            if self._closed:
                raise ValueError("put on a closed queue")
            if self.drop == "new" and self._items and self.held + w > self.capacity:
                return [item]
            while self._items and self.held + w > self.capacity:
                old, old_w = self._items.popleft()
                self.held -= old_w
                dropped.append(old)
            self._items.append((item, w))
            self.held += w
            self._ready.notify()
        return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, waiting for one; None once closed and empty; ``queue.Empty`` when
        ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while not self._items and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise queue.Empty
                self._ready.wait(left)
            if not self._items:
                return None
            item, w = self._items.popleft()
            self.held -= w
            return item

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()


@dataclass(frozen=True)
class _Batch:
    flows: pl.DataFrame
    received: float
    """``time.perf_counter()`` when it reached the detector."""


@dataclass(frozen=True)
class _ClosedStep:
    step: datetime
    rows: pl.DataFrame
    """the step's rows, one per active node."""
    closed: float
    """``time.perf_counter()`` when the batch that closed it reached the detector."""


class LiveDetector:
    """Start, run until stopped, stop: see the module docstring."""

    def __init__(self, config: LiveConfig) -> None:
        from netflowgen.collect.online import OnlineConfig, OnlineSeries
        from netflowgen.collect.server import Collector, CollectorConfig
        from netflowgen.detect.finetune import load_detector
        from netflowgen.detect.online import OnlineDetector

        self.config = config
        self.detector = load_detector(config.detector)
        series = self.detector.spec
        self.step = series.step
        self.scorer = OnlineDetector(self.detector)
        # The extra rows let a step that waited in the scoring queue find its whole context.
        self._spare_rows = config.queue_steps + 1
        self.online = OnlineSeries(OnlineConfig(series=series, grace=self.step * config.grace_steps, late=config.late,
                                                idle_steps=config.idle_steps, history=self.scorer.history_rows + self._spare_rows))
        self._tmp = tempfile.TemporaryDirectory(prefix="netflowgen-detect-") if config.out is None else None
        out = config.out or Path(self._tmp.name) / "flows"  # type: ignore[union-attr]
        self.collector = Collector(CollectorConfig(out, listen=config.listen, filter=config.filter), on_flows=self.feed)
        self._lock = threading.Lock()  # guards the online state against the other threads
        self._intake: BoundedQueue[_Batch] = BoundedQueue(config.intake_flows, weight=lambda b: b.flows.height, drop="new")
        self._steps: BoundedQueue[_ClosedStep] = BoundedQueue(config.queue_steps, drop="oldest")
        self._threads = [threading.Thread(target=self._aggregate_loop, name="netflowgen-detect-aggregate", daemon=True),
                         threading.Thread(target=self._score_loop, name="netflowgen-detect-score", daemon=True)]
        self.watermark: datetime | None = None
        self._latest_end: tuple[datetime, float] | None = None
        """the latest flow end seen and ``time.perf_counter()`` when it arrived: where the wall
        clock moves the watermark on from."""
        self.clock_closed_steps = 0
        """steps closed by the wall clock while export was quiet (not by a flow end)."""
        self.score_errors = 0
        self.dropped_batches: Counter[str] = Counter()
        self.dropped_flows: Counter[str] = Counter()
        self.dropped_steps: Counter[str] = Counter()
        self.dropped_node_steps: Counter[str] = Counter()
        self.latencies: deque[float] = deque(maxlen=10_000)
        """seconds from a step's closing batch to its alerts written, the newest steps'."""
        self._sink: IO[str] = open(config.alerts, "a") if config.alerts else sys.stdout  # noqa: SIM115
        self._http: BoundedHTTPServer | None = None
        self.api_address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.collector.address

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self.collector.start()
        if self.config.api is not None:
            self._start_api(self.config.api)

    # -- the pipeline ---------------------------------------------------------------------------

    def feed(self, flows: pl.DataFrame) -> None:
        """Take a batch of decoded flows (the collector calls this from its decode thread; a
        benchmark may call it directly). Never blocks: a batch beyond the intake bound is dropped."""
        for lost in self._intake.put(_Batch(flows, time.perf_counter())):
            with self._lock:
                self.dropped_batches["intake_full"] += 1
                self.dropped_flows["intake_full"] += lost.flows.height

    def _aggregate_loop(self) -> None:
        while True:
            try:
                batch = self._intake.get(timeout=_CLOCK_TICK_S)
            except queue.Empty:
                self._advance_by_wall_clock()
                continue
            if batch is None:
                break
            try:
                with self._lock:
                    self.online.add(batch.flows)
                    latest = batch.flows["ts_end"].max()
                    if latest is not None and (self._latest_end is None or latest > self._latest_end[0]):  # type: ignore[operator]
                        self._latest_end = (latest, batch.received)  # type: ignore[assignment]
                    if latest is not None and (self.watermark is None or latest > self.watermark):  # type: ignore[operator]
                        self.watermark = latest  # type: ignore[assignment]
                    rows = self.online.advance(self.watermark) if self.watermark is not None else None
                if rows is not None:
                    self._close(rows, batch.received)
            except Exception:
                # Collection goes on (the flows are written either way); the failure is logged
                # and counted in /health and /metrics.
                with self._lock:
                    self.score_errors += 1
                log.exception("aggregating flows failed")
        self._steps.close()

    def _advance_by_wall_clock(self) -> None:
        """Move the watermark on by the wall time since the latest flow end arrived (times
        ``clock_rate``), at most to where the step holding that flow end closes."""
        if not self.config.clock_rate or self._latest_end is None:
            return
        try:
            now = time.perf_counter()
            with self._lock:
                end, seen = self._latest_end
                moved = min(end + timedelta(seconds=(now - seen) * self.config.clock_rate), self.online.closing(end))
                if self.watermark is not None and moved <= self.watermark:
                    return
                self.watermark = moved
                rows = self.online.advance(moved)
                self.clock_closed_steps += rows["step"].n_unique() if rows.height else 0
            self._close(rows, now)
        except Exception:
            with self._lock:
                self.score_errors += 1
            log.exception("moving the watermark on by the wall clock failed")

    def _close(self, rows: pl.DataFrame, received: float) -> None:
        """Put each step of ``rows`` on the scoring queue; count what the bound drops."""
        if rows.height == 0:
            return
        for (step,), part in rows.partition_by("step", as_dict=True, maintain_order=True).items():
            for old in self._steps.put(_ClosedStep(step, part, received)):  # type: ignore[arg-type]
                self._count_drop("queue_full", old)

    def _count_drop(self, reason: str, item: _ClosedStep) -> None:
        with self._lock:
            self.dropped_steps[reason] += 1
            self.dropped_node_steps[reason] += item.rows.height

    def _score_loop(self) -> None:
        while (item := self._steps.get()) is not None:
            try:
                with self._lock:
                    history, closed_until = self.online.history(), self.online.closed_until
                # Steps closed after this one whose rows the history holds: it keeps
                # `_spare_rows` beyond the context.
                newer = (closed_until - item.step) // self.step - 1 if closed_until is not None else 0
                if newer > self._spare_rows:
                    self._count_drop("stale", item)
                    continue
                alerts = self.scorer.score(item.rows, history)
                for alert in alerts:
                    self._sink.write(json.dumps(alert) + "\n")
                self._sink.flush()
                with self._lock:
                    self.latencies.append(time.perf_counter() - item.closed)
            except Exception:
                with self._lock:
                    self.score_errors += 1
                log.exception("scoring failed")

    def stop(self) -> dict[str, Any]:
        """Stop receiving, score what is left (every open step), return the summary."""
        summary = self.collector.stop()
        # The end of the export: every step with flows is complete now.
        self._intake.close()  # after the collector's last batch
        aggregate, score = self._threads
        aggregate.join()  # it closed the scoring queue; the rest is done here, in order
        with self._lock:
            # As far as the step of the latest flow end, however far the wall clock took the
            # watermark: the quiet after the export is not traffic.
            rows = self.online.advance(self.online.closing(self._latest_end[0])) if self._latest_end is not None else None
        score.join()
        if rows is not None and rows.height:
            now = time.perf_counter()
            for (step,), part in rows.partition_by("step", as_dict=True, maintain_order=True).items():
                for alert in self.scorer.score(part, self.online.history()):
                    self._sink.write(json.dumps(alert) + "\n")
                self.latencies.append(time.perf_counter() - now)
            self._sink.flush()
        if self._http is not None:
            self._http.close()
        if self.config.alerts:
            self._sink.close()
        if self._tmp is not None:
            self._tmp.cleanup()
        return {**self.status(), "collector": summary}

    # -- reporting ------------------------------------------------------------------------------

    def healthy(self) -> bool:
        return self.collector.healthy() and all(t.is_alive() for t in self._threads)

    def latency(self) -> dict[str, Any]:
        """p50, p99 and the newest of the recent steps' latencies, seconds (None: no step yet)."""
        with self._lock:
            recent = np.array(self.latencies)
        if recent.size == 0:
            return {"steps": 0, "p50_s": None, "p99_s": None, "last_s": None}
        return {"steps": int(recent.size), "p50_s": float(np.quantile(recent, 0.5)),
                "p99_s": float(np.quantile(recent, 0.99)), "last_s": float(recent[-1])}

    def status(self) -> dict[str, Any]:
        o, s = self.online, self.scorer
        with self._lock:
            dropped = {"batches": dict(self.dropped_batches), "flows": dict(self.dropped_flows),
                       "steps": dict(self.dropped_steps), "node_steps": dict(self.dropped_node_steps)}
            state = {"watermark": self.watermark.isoformat() if self.watermark else None,
                     "clock_closed_steps": self.clock_closed_steps, "active_nodes": o.active_nodes,
                     "late_flows": o.late_flows, "late_folded": o.folded_flows, "evicted_nodes": o.evicted_nodes, "score_errors": self.score_errors}
        return {**state, "steps_scored": s.steps_scored, "node_steps_scored": s.nodes_scored, "alerts": s.alerts,
                "threshold": self.detector.threshold, "step_seconds": self.step.total_seconds(),
                "intake_waiting_flows": self._intake.held, "steps_waiting": len(self._steps),
                "queue_steps": self.config.queue_steps, "intake_flows": self.config.intake_flows,
                "dropped": dropped, "latency": self.latency()}

    def exporters(self) -> list[dict[str, Any]]:
        """Per exporter: datagrams, flows, decode errors, loss, late flows and the records scaled by
        packet sampling (1 in N -> records)."""
        stats = self.collector.summary()["exporters"]
        with self._lock:
            late = dict(self.online.late_by_source)
        names = sorted(set(stats) | {k.removeprefix("udp://") for k in late if k})
        rows = []
        for name in names:
            s = stats.get(name, {})
            rows.append({"exporter": name, "packets": s.get("packets", 0), "flows": s.get("flows", 0),
                         "errors": sum(s.get("packet_errors", {}).values()) + sum(s.get("set_errors", {}).values()),
                         "lost_records": s.get("lost_records", 0), "lost_packets": s.get("lost_packets", 0),
                         "late_flows": late.get(f"udp://{name}", 0),
                         "sampled": s.get("sampled", {})})
        return rows

    def metrics_text(self) -> str:
        status = self.status()
        lines = [self.collector.metrics_text().rstrip("\n")]

        def metric(name: str, kind: str, doc: str, samples: list[tuple[str, float | int]]) -> None:
            lines.extend([f"# HELP netflowgen_detect_{name} {doc}", f"# TYPE netflowgen_detect_{name} {kind}"])
            lines.extend(f"netflowgen_detect_{name}{labels} {value}" for labels, value in samples)

        metric("node_steps_scored_total", "counter", "Node-steps scored.", [("", status["node_steps_scored"])])
        metric("steps_scored_total", "counter", "Steps scored.", [("", status["steps_scored"])])
        metric("alerts_total", "counter", "Alerts raised.", [("", status["alerts"])])
        metric("late_flows_total", "counter", "Flows beyond the grace period.", [("", status["late_flows"])])
        metric("late_folded_total", "counter", "Late flows counted in the first open step.", [("", status["late_folded"])])
        metric("score_errors_total", "counter", "Batches or steps whose aggregation or scoring failed.", [("", status["score_errors"])])
        metric("active_nodes", "gauge", "Nodes held in memory.", [("", status["active_nodes"])])
        metric("steps_waiting", "gauge", "Closed steps waiting to be scored.", [("", status["steps_waiting"])])
        metric("intake_waiting_flows", "gauge", "Decoded flows waiting to be aggregated.", [("", status["intake_waiting_flows"])])
        for unit, doc in (("batches", "Decoded batches left out of detection, by reason."),
                          ("flows", "Flows left out of detection, by reason."),
                          ("steps", "Closed steps not scored, by reason."),
                          ("node_steps", "Node-steps not scored, by reason.")):
            reasons = ("intake_full",) if unit in ("batches", "flows") else ("queue_full", "stale")
            metric(f"dropped_{unit}_total", "counter", doc,
                   [(f'{{reason="{r}"}}', status["dropped"][unit].get(r, 0)) for r in reasons])
        if self._http is not None:
            metric("http_connections_total", "counter", "Connections to this API, by outcome.",
                   [(f'{{outcome="{k}"}}', n) for k, n in dict(self._http.counts).items()])
        lat = status["latency"]
        if lat["steps"]:
            metric("step_latency_seconds", "summary", "Step closing batch to its alerts written, recent steps.",
                   [('{quantile="0.5"}', round(lat["p50_s"], 6)), ('{quantile="0.99"}', round(lat["p99_s"], 6))])
        return "\n".join(lines) + "\n"

    # -- HTTP -----------------------------------------------------------------------------------

    def _start_api(self, address: tuple[str, int]) -> None:
        page = resources.files("netflowgen.detect").joinpath("status.html").read_bytes()
        routes: dict[str, Route] = {
            "/": lambda: (200, page, "text/html; charset=utf-8"),
            "/health": health_route(self.status, self.healthy),
            "/metrics": metrics_route(self.metrics_text),
            "/alerts": json_route(lambda: self.scorer.snapshot()[0]),
            "/top": json_route(lambda: self.scorer.snapshot()[1]),
            "/exporters": json_route(self.exporters),
        }
        self._http = serve_routes(address, routes, "detect-api", "the API")
        self.api_address = self._http.server_address[:2]  # type: ignore[assignment]

