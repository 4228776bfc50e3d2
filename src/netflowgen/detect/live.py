"""``netflowgen detect``: the collector, online aggregation and the detector, live.

Flows decoded by :class:`~netflowgen.collect.server.Collector` (which also writes them as a flow
dataset) go into :class:`~netflowgen.collect.online.OnlineSeries` at the detector's step and
node settings. Time is *event time*: the watermark is the latest flow end seen, so a replayed
capture is judged by its own clock, and a step is scored once the watermark has passed its end
by the grace period (flows start before they are exported). A scoring thread of its own takes
the decoded batches, so scoring never holds up reception. Every node of every complete step
is scored by :class:`~netflowgen.detect.online.OnlineDetector`; alerts go as JSON lines to a file
or stdout and to ``/alerts`` of a loopback HTTP API (with ``/health`` and ``/metrics``). Idle
nodes are evicted (bounded memory); flows beyond the grace period are counted as late.
"""

from __future__ import annotations

import http.server
import json
import logging
import queue
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import polars as pl

__all__ = ["LiveConfig", "LiveDetector"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveConfig:
    detector: Path
    listen: tuple[str, int] = ("127.0.0.1", 2055)
    out: Path | None = None
    """Flow dataset the collector writes (None: a temporary one, removed at the end)."""
    alerts: Path | None = None
    """JSON-lines file for alerts (None: stdout)."""
    api: tuple[str, int] | None = None
    """Loopback HTTP address of /health, /metrics and /alerts (None: none)."""
    grace_steps: float = 1.0
    idle_steps: int = 60


class LiveDetector:
    """Start, run until stopped, stop: see the module docstring."""

    def __init__(self, config: LiveConfig) -> None:
        from netflowgen.collect.online import OnlineConfig, OnlineSeries
        from netflowgen.collect.server import Collector, CollectorConfig
        from netflowgen.detect.finetune import load_detector
        from netflowgen.detect.online import OnlineDetector
        from netflowgen.series.write import series_config_from_dict

        self.config = config
        self.detector = load_detector(config.detector)
        settings = self.detector.manifest.get("series_config")
        if not settings:
            raise ValueError(f"{config.detector}: the detector does not record its series settings; fine-tune it from a series directory")
        series = series_config_from_dict(settings)
        self.step = series.step
        self.scorer = OnlineDetector(self.detector)
        self.online = OnlineSeries(OnlineConfig(series=series, grace=self.step * config.grace_steps,
                                                idle_steps=config.idle_steps, history=self.scorer.length))
        self._tmp = tempfile.TemporaryDirectory(prefix="netflowgen-detect-") if config.out is None else None
        out = config.out or Path(self._tmp.name) / "flows"  # type: ignore[union-attr]
        self.collector = Collector(CollectorConfig(out, listen=config.listen), on_flows=self._on_flows)
        self._lock = threading.Lock()  # guards the online state against the API thread
        # Decoded batches wait here for the scoring thread: scoring never holds up the decoder,
        # so a burst of export is received and written at the collector's own pace.
        self._pending: queue.SimpleQueue[pl.DataFrame | None] = queue.SimpleQueue()
        self._scoring = threading.Thread(target=self._score_loop, name="netflowgen-detect-score", daemon=True)
        self.watermark: datetime | None = None
        self.score_errors = 0
        self._sink: IO[str] = open(config.alerts, "a") if config.alerts else sys.stdout  # noqa: SIM115
        self._http: http.server.ThreadingHTTPServer | None = None
        self.api_address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.collector.address

    def start(self) -> None:
        self._scoring.start()
        self.collector.start()
        if self.config.api is not None:
            self._start_api(self.config.api)

    def _on_flows(self, flows: pl.DataFrame) -> None:
        self._pending.put(flows)

    def _score_loop(self) -> None:
        while (flows := self._pending.get()) is not None:
            with self._lock:
                try:
                    self.online.add(flows)
                    latest = flows["ts_end"].max()
                    if latest is not None and (self.watermark is None or latest > self.watermark):  # type: ignore[operator]
                        self.watermark = latest  # type: ignore[assignment]
                    if self.watermark is not None:
                        self._score(self.online.advance(self.watermark))
                except Exception:
                    # Collection goes on (the flows are written either way); the failure is
                    # logged and counted in /health and /metrics.
                    self.score_errors += 1
                    log.exception("scoring failed")

    def _score(self, rows: pl.DataFrame) -> None:
        if rows.height == 0:
            return
        for alert in self.scorer.score(rows, self.online.history()):
            self._sink.write(json.dumps(alert) + "\n")
        self._sink.flush()

    def stop(self) -> dict[str, Any]:
        """Stop receiving, score what is left (every open step), return the summary."""
        summary = self.collector.stop()
        self._pending.put(None)  # after the collector's last batch
        self._scoring.join()
        with self._lock:
            if self.watermark is not None:
                # The end of the export: every step with flows is complete now.
                self._score(self.online.advance(self.watermark + self.online.config.grace + self.step))
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self.config.alerts:
            self._sink.close()
        if self._tmp is not None:
            self._tmp.cleanup()
        return {**self.status(), "collector": summary}

    def healthy(self) -> bool:
        return self.collector.healthy() and self._scoring.is_alive()

    def status(self) -> dict[str, Any]:
        o, s = self.online, self.scorer
        return {"batches_waiting": self._pending.qsize(),"watermark": self.watermark.isoformat() if self.watermark else None, "active_nodes": o.active_nodes,
                "steps_scored": s.steps_scored, "node_steps_scored": s.nodes_scored, "alerts": s.alerts,
                "late_flows": o.late_flows, "evicted_nodes": o.evicted_nodes, "score_errors": self.score_errors,
                "threshold": self.detector.threshold}

    def metrics_text(self) -> str:
        lines = [self.collector.metrics_text().rstrip("\n")]
        for name, value, doc in (("netflowgen_detect_node_steps_scored_total", self.scorer.nodes_scored, "Node-steps scored."),
                                 ("netflowgen_detect_alerts_total", self.scorer.alerts, "Alerts raised."),
                                 ("netflowgen_detect_late_flows_total", self.online.late_flows, "Flows beyond the grace period."),
                                 ("netflowgen_detect_score_errors_total", self.score_errors, "Batches whose scoring failed."),
                                 ("netflowgen_detect_active_nodes", self.online.active_nodes, "Nodes held in memory.")):
            kind = "gauge" if name.endswith("nodes") else "counter"
            lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"

    def _start_api(self, address: tuple[str, int]) -> None:
        live = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health":
                    body, kind = json.dumps({"healthy": live.healthy(), **live.status()}), "application/json"
                elif self.path == "/metrics":
                    body, kind = live.metrics_text(), "text/plain; version=0.0.4"
                elif self.path == "/alerts":
                    body, kind = json.dumps(list(live.scorer.recent)), "application/json"
                else:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug(format, *args)

        self._http = http.server.ThreadingHTTPServer(address, Handler)
        self.api_address = self._http.server_address[:2]  # type: ignore[assignment]
        threading.Thread(target=self._http.serve_forever, name="netflowgen-detect-api", daemon=True).start()

