"""Live detection end to end: the real softflowd replays a capture holding minutes of normal
traffic and then a SYN flood into `netflowgen detect`; the flood raises an alert within two steps
of its onset, and the normal minutes before it raise none. `netflowgen replay` sends a flood
while the status page is opened in headless Chromium, which must show the alert; garbage on the
collector port is counted and valid flows after it are still scored; a full scoring queue drops
the oldest steps and counts them. The API survives garbage, huge headers, slow-loris connections
and clients that vanish."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import numpy as np
import polars as pl
import pytest

from netflowgen.collect import httpserve
from netflowgen.collect.export import ExportFormat
from netflowgen.collect.replay import ReplayConfig, replay
from netflowgen.detect.live import LiveConfig, LiveDetector
from netflowgen.detect.finetune import FinetuneConfig, finetune
from netflowgen.detect.labels import parse_budget
from netflowgen.schema import FLOW_SCHEMA
from netflowgen.series import SeriesSpec
from netflowgen.tokenize import Tokenizer, TokenizerConfig
from netflowgen.tokenize.shards import write_tokens
from netflowgen.train.loop import TrainConfig
from netflowgen.train.pretrain import PretrainConfig, pretrain
from tests.collect.http_abuse import closed_by_server, exchange, get, slow_loris, status_of, vanish
from tests.collect.test_softflowd import softflowd
from tests.detect.test_finetune import SPLIT, planted_series
from tests.read.tiny_capture import (
    ACK,
    ETH_IP4,
    FIN,
    SYN,
    T0,
    Packet,
    _ether,
    ip4,
    tcp,
    write_pcap,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
needs_softflowd = pytest.mark.skipif(shutil.which("softflowd") is None, reason="softflowd is needed (apt-get install softflowd)")

VICTIM = "10.0.0.7"
#: Packet times are milliseconds after T0; minute k of the capture starts at a step boundary.
FIRST = (60 - T0 % 60) * 1000
NORMAL_MINUTES, FLOOD_MINUTES = 12, 3
ONSET = datetime.fromtimestamp(T0, UTC) + timedelta(milliseconds=FIRST + NORMAL_MINUTES * 60_000)


def capture() -> list[Packet]:
    out: list[Packet] = []
    for m in range(NORMAL_MINUTES):  # four short web connections to the victim a minute
        for c in range(4):
            t, client, sport = FIRST + m * 60_000 + c * 9_000 + 500, f"198.51.100.{10 + c}", 30000 + m * 10 + c
            out += [Packet(t, _ether(ETH_IP4, ip4(client, VICTIM, 6, tcp(sport, 80, SYN)))),
                    Packet(t + 10, _ether(ETH_IP4, ip4(VICTIM, client, 6, tcp(80, sport, SYN | ACK)))),
                    Packet(t + 20, _ether(ETH_IP4, ip4(client, VICTIM, 6, tcp(sport, 80, ACK, b"g" * 80)))),
                    Packet(t + 40, _ether(ETH_IP4, ip4(VICTIM, client, 6, tcp(80, sport, ACK | FIN, b"r" * 400)))),
                    Packet(t + 50, _ether(ETH_IP4, ip4(client, VICTIM, 6, tcp(sport, 80, ACK | FIN))))]
    start = FIRST + NORMAL_MINUTES * 60_000
    for i in range(FLOOD_MINUTES * 250):  # spoofed SYNs, each from its own source
        src = f"203.0.{(i // 250) + 113}.{i % 250 + 1}"
        out.append(Packet(start + i * 240, _ether(ETH_IP4, ip4(src, VICTIM, 6, tcp(1024 + i, 80, SYN)))))
    return sorted(out, key=lambda p: p.ms)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector for floods of inbound flows, fine-tuned on planted synthetic series."""
    tmp = tmp_path_factory.mktemp("live")
    series = planted_series()
    pre = series.filter(pl.col("step") < SPLIT)
    tok = Tokenizer.fit(pre, TokenizerConfig(("flows_in", "flows_out"), n_bins=10), SeriesSpec(features=("flows_in", "flows_out")))
    write_tokens(pre, tok, tmp / "tok", fit=None, source="synthetic")
    train = TrainConfig(steps=80, batch_size=16, lr=3e-3, warmup_steps=8, eval_every=80, checkpoint_every=80,
                        eval_batches=2, log_every=20, weight_decay=0.0)
    pretrain(PretrainConfig(tmp / "tok", "tiny", context=48), train, tmp / "run", show_progress=False)
    cfg = FinetuneConfig(attack=("ddos",), budget=parse_budget("6ep"), steps=80, window=16, history=16, mode="full",
                         head_inputs="both", lr=3e-3, anchor=0.0)
    finetune(tmp / "run", series, cfg, tmp / "det", show_progress=False)
    return tmp / "det"


@needs_softflowd
def test_a_replayed_flood_alerts_within_two_steps_and_normal_traffic_does_not(detector: Path, tmp_path: Path) -> None:
    pcap = write_pcap(tmp_path / "flood.pcap", pkts=capture())
    alerts_file = tmp_path / "alerts.jsonl"
    # softflowd sends the whole capture at once: every step closes in one burst, and a queue that
    # holds them all makes sure the normal minutes are scored (not dropped).
    proc = subprocess.Popen([sys.executable, "-m", "netflowgen.cli", "detect", str(detector), "--listen", "127.0.0.1:0",
                             "--alerts", str(alerts_file), "--api", "127.0.0.1:0", "--out", str(tmp_path / "flows"),
                             "--queue-steps", "30", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        match = re.search(r"listening on udp://127\.0\.0\.1:(\d+).*API on http://127\.0\.0\.1:(\d+)/health", line)
        assert match, line + proc.stderr.read()  # type: ignore[union-attr]
        exported = softflowd(pcap, int(match.group(1)), 9)
        deadline = time.monotonic() + 20
        while True:  # until the decoder has taken every record softflowd sent
            health = json.loads(urlopen(f"http://127.0.0.1:{match.group(2)}/health", timeout=5).read())
            assert health["healthy"], health
            metrics = urlopen(f"http://127.0.0.1:{match.group(2)}/metrics", timeout=5).read().decode()
            got = sum(float(m) for m in re.findall(r"^netflowgen_collect_flows_total\{[^}]*\} (\S+)$", metrics, re.MULTILINE))
            if got >= exported or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert got == exported, (got, exported)
        assert health["score_errors"] == 0, health
        assert "netflowgen_detect_node_steps_scored_total" in metrics
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[:6000]
    alerts = [json.loads(line) for line in alerts_file.read_text().splitlines()]
    summary = json.loads(stdout)
    assert summary["alerts"] == len(alerts) and summary["score_errors"] == 0 and summary["collector"]["flows"] == exported
    assert summary["dropped"]["steps"] == {} and summary["steps_scored"] >= NORMAL_MINUTES + FLOOD_MINUTES, summary
    steps = [datetime.fromisoformat(a["step"].replace("Z", "+00:00")) for a in alerts if a["node"] == VICTIM]
    assert steps, f"no alert for the victim; all alerts: {alerts}"
    assert min(steps) >= ONSET, "an alert during the normal minutes"
    assert min(steps) <= ONSET + timedelta(minutes=2), f"first alert at {min(steps)}, onset {ONSET}"
    # What drove the alert is the flood's own feature (the score itself is checked against the
    # offline reading of the same context in test_a_live_score_equals_the_offline_score_...).
    first = next(a for a in alerts if a["node"] == VICTIM)
    assert first["drivers"][0]["feature"] in ("flows_in", "flows_out")


# -- replayed floods: the status page, garbage, the bounded queue ------------------------------

#: Local nodes with normal web traffic beside the victim (their clients and the flood's sources
#: are not local addresses, so not nodes).
NEIGHBOURS = ("10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5")
START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def flood_flows(start: datetime = START, normal: int = NORMAL_MINUTES, flood: int = FLOOD_MINUTES) -> pl.DataFrame:
    """Canonical flows: `normal` minutes of four web connections a minute to each local node
    (bidirectional rows, as a collector of both directions would give), then `flood` minutes in
    which the victim also gets 250 spoofed one-packet SYNs a minute."""
    rows = []
    for m in range(normal + flood):
        for n, node in enumerate((VICTIM, *NEIGHBOURS)):
            for c in range(4):
                t = start + timedelta(minutes=m, seconds=c * 14 + n + 1)
                rows.append((t, t + timedelta(milliseconds=60), f"198.51.100.{10 + c}", node, 30000 + m * 10 + c, 80,
                             6, 3, 200, 2, 600, 0x1B))
    for m in range(normal, normal + flood):
        for i in range(250):
            t = start + timedelta(minutes=m, milliseconds=i * 239)
            rows.append((t, t, f"203.0.{113 + m - normal}.{i + 1}", VICTIM, 1024 + i, 80, 6, 1, 40, 0, 0, 0x02))
    cols = ["ts_start", "ts_end", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes",
            "rev_packets", "rev_bytes", "tcp_flags"]
    flows = pl.DataFrame(rows, schema=cols, orient="row")
    return flows.with_columns(label=None, label_detail=None, quality=0, source_file=pl.lit("authored"),
                              source_row=pl.int_range(pl.len())).cast(FLOW_SCHEMA).select(list(FLOW_SCHEMA)).sort("ts_end")  # type: ignore[arg-type]


def get_json(port: int, path: str) -> Any:
    return json.loads(urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read())


def wait_for(what: str, check: Callable[[], Any], seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(0.2)
    return value


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    # --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start.
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", "--virtual-time-budget=5000", *args],
                          capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is needed (apt-get install chromium)")
def test_the_status_page_shows_the_alert_while_a_replayed_flood_runs(detector: Path, tmp_path: Path) -> None:
    flood_flows().write_parquet(tmp_path / "flood.parquet")
    cli = [sys.executable, "-m", "netflowgen.cli"]
    proc = subprocess.Popen([*cli, "detect", str(detector), "--listen", "127.0.0.1:0", "--alerts", str(tmp_path / "alerts.jsonl"),
                             "--api", "127.0.0.1:0", "--queue-steps", "30", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    replayer = None
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        match = re.search(r"listening on udp://127\.0\.0\.1:(\d+).*API on http://127\.0\.0\.1:(\d+)/health", line)
        assert match, line + proc.stderr.read()  # type: ignore[union-attr]
        udp, api = int(match.group(1)), int(match.group(2))
        # 15 minutes of flows in 3 s a pass, again and again: the flood is running when the page opens.
        replayer = subprocess.Popen([*cli, "replay", str(tmp_path / "flood.parquet"), "--to", f"127.0.0.1:{udp}",
                                     "--format", "v9", "--speed", "300x", "--loop", "--quiet"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for("an alert for the victim at /alerts", lambda: any(a["node"] == VICTIM for a in get_json(api, "/alerts")))
        dom = chromium("--dump-dom", f"http://127.0.0.1:{api}/")
        assert dom.returncode == 0, dom.stderr[-3000:]
        assert replayer.poll() is None, "the replay ended before the page was read"
        shot = chromium("--window-size=1280,1100", f"--screenshot={tmp_path / 'live-page.png'}", f"http://127.0.0.1:{api}/")
        assert shot.returncode == 0 and (tmp_path / "live-page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot.stderr[-3000:]
        health = get_json(api, "/health")
    finally:
        for p in (replayer, proc):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        if replayer is not None:
            replayer.communicate(timeout=30)
    assert proc.returncode == 0, stderr[-6000:]
    # The DOM after the page's script ran: the alert row with its driving features.
    rows = re.findall(r'<tr class="alert" data-node="([^"]+)">(.*?)</tr>', dom.stdout, re.S)
    assert rows, dom.stdout[-4000:]
    victim = [cells for node, cells in rows if node == VICTIM]
    assert victim, rows
    cells = re.findall(r"<td[^>]*>(.*?)</td>", victim[0], re.S)
    assert cells[1] == VICTIM and float(cells[2]) >= health["threshold"], cells
    assert re.match(r"(flows_in|flows_out|peers_in|syn_no_ack_in|tcp_flows|packets_in) [\d,]+ / [\d,]+ \(z \d", cells[3]), cells
    assert re.search(r'<b id="active_nodes">[1-9]', dom.stdout) and re.search(r'<b id="steps_scored">[1-9]', dom.stdout)
    # The exporter's row, to its last cell: the replay is not sampled.
    assert re.search(r'<tr data-exporter="127\.0\.0\.1">(?:(?!</tr>).)*<td>none</td></tr>', dom.stdout, re.S), dom.stdout[-4000:]
    top = re.findall(r'<tr data-node="([^"]+)"><td>[^<]*</td><td class="n">([\d.]+)</td>', dom.stdout)
    assert {n for n, _ in top} <= {VICTIM, *NEIGHBOURS} and len(top) >= 1, top
    exporter = re.search(r'<tr data-exporter="127\.0\.0\.1"><td>127\.0\.0\.1</td><td class="n">([\d,]+)</td>', dom.stdout)
    assert exporter and int(exporter.group(1).replace(",", "")) > 0, dom.stdout[-4000:]
    summary = json.loads(stdout)
    assert summary["alerts"] >= 1 and summary["score_errors"] == 0


GARBAGE = [b"hello, collector", b"\x00\x09\x00\x01", b"\x00\x0a\x00\x40" + b"\xff" * 12, b"\x00\x05\x00\x1e" + bytes(20),
           b"\x00\x63" + bytes(40), np.random.default_rng(7).bytes(1200)]


def test_garbage_on_the_collector_port_is_counted_and_valid_flows_after_it_are_scored(detector: Path, tmp_path: Path) -> None:
    flows = flood_flows()
    live = LiveDetector(LiveConfig(detector, listen=("127.0.0.1", 0), alerts=tmp_path / "alerts.jsonl", api=("127.0.0.1", 0),
                                   queue_steps=30))
    live.start()
    try:
        api = live.api_address[1]  # type: ignore[index]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for payload in GARBAGE:
                s.sendto(payload, live.address)
        errors = wait_for("the garbage counted", lambda: sum(e["errors"] for e in get_json(api, "/exporters")) >= len(GARBAGE))
        assert errors and live.healthy() and get_json(api, "/health")["healthy"]
        metrics = urlopen(f"http://127.0.0.1:{api}/metrics", timeout=5).read().decode()
        counted = sum(float(v) for v in re.findall(r'^netflowgen_collect_decode_errors_total\{[^}]*level="packet"[^}]*\} (\S+)$', metrics, re.M))
        assert counted == len(GARBAGE), metrics
        sent = replay(ReplayConfig(Path("flood"), live.address, ExportFormat.IPFIX, speed=None), flows=flows)
        wait_for("every valid flow decoded", lambda: live.collector.summary()["flows"] >= sent.flows_sent)
        wait_for("the flood's alert", lambda: any(a["node"] == VICTIM for a in get_json(api, "/alerts")))
        assert live.healthy()
    finally:
        summary = live.stop()
    assert summary["collector"]["flows"] == sent.flows_sent and summary["collector"]["errors"] == len(GARBAGE)
    assert summary["score_errors"] == 0 and summary["dropped"]["steps"] == {} and summary["steps_scored"] >= NORMAL_MINUTES + FLOOD_MINUTES
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    onset = START + timedelta(minutes=NORMAL_MINUTES)
    assert min(datetime.fromisoformat(a["step"].replace("Z", "+00:00")) for a in alerts if a["node"] == VICTIM) >= onset


@pytest.mark.parametrize("late", ["fold", "drop"])
def test_a_flood_of_long_flows_exported_at_their_end_alerts_when_late_flows_are_folded(
        detector: Path, tmp_path: Path, late: str) -> None:
    """An exporter emits a flow at its end (or active timeout): here each flood flow lasts 150 s,
    so it arrives after its start step closed (a step closes one grace step after its end). By
    default such late flows count in the first open step and the flood raises an alert;
    ``late="drop"`` leaves them out, and the flood goes unseen: why folding is the default."""
    flows = flood_flows()
    flood = pl.col("src_ip").str.starts_with("203.0.")
    flows = flows.with_columns(ts_end=pl.when(flood).then(pl.col("ts_start") + timedelta(seconds=150))
                               .otherwise(pl.col("ts_end"))).sort("ts_end")
    live = LiveDetector(LiveConfig(detector, listen=("127.0.0.1", 0), alerts=tmp_path / "alerts.jsonl", queue_steps=30,
                                   late=late))
    live.start()
    try:
        # Batches in export order, ten seconds of flow ends each, as a collector hands them over.
        for _, batch in flows.group_by(pl.col("ts_end").dt.truncate("10s"), maintain_order=True):
            live.feed(batch)
    finally:
        summary = live.stop()
    n_flood = flows.filter(flood).height
    assert summary["late_flows"] == n_flood and summary["score_errors"] == 0, summary
    assert summary["late_folded"] == (n_flood if late == "fold" else 0)
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    steps = [datetime.fromisoformat(a["step"].replace("Z", "+00:00")) for a in alerts if a["node"] == VICTIM]
    onset = START + timedelta(minutes=NORMAL_MINUTES)
    if late == "drop":
        assert not steps, alerts
    else:
        assert steps and min(steps) >= onset, alerts
        # The first flood flows end 150 s after the onset and count in the step open then.
        assert min(steps) <= onset + timedelta(seconds=150) + timedelta(minutes=1), (min(steps), onset)


@pytest.mark.parametrize("rate", [0.0, 600.0])
def test_a_quiet_export_gets_its_last_step_scored_by_the_wall_clock_and_silence_makes_no_step(
        detector: Path, tmp_path: Path, rate: float) -> None:
    """After the last flows, export falls quiet. By flow ends alone, the last two steps wait (a
    step closes one grace step after its end); with the wall clock (here 600 flow seconds a
    second) both are scored while the export is quiet, and the watermark stops where the last
    flows' step closes: silence adds no step of zeros."""
    flows = flood_flows()
    minutes = NORMAL_MINUTES + FLOOD_MINUTES
    live = LiveDetector(LiveConfig(detector, listen=("127.0.0.1", 0), alerts=tmp_path / "alerts.jsonl", queue_steps=30,
                                   clock_rate=rate))
    live.start()
    try:
        live.feed(flows)
        if rate:
            wait_for("the last step scored", lambda: live.status()["steps_scored"] == minutes)
        else:
            wait_for("the steps flow ends close scored", lambda: live.status()["steps_scored"] == minutes - 2)
        time.sleep(0.5)  # 300 more flow seconds of quiet at 600x
        status = live.status()
    finally:
        summary = live.stop()
    last_step = START + timedelta(minutes=minutes - 1)
    if rate:
        assert status["watermark"] == (last_step + timedelta(minutes=2)).isoformat(), status  # its end + one grace step
        assert status["steps_scored"] == minutes and status["clock_closed_steps"] == 2, status
    else:
        assert status["watermark"] == flows["ts_end"].max().isoformat(), status
        assert status["steps_scored"] == minutes - 2 and status["clock_closed_steps"] == 0, status
    # Stopping scores whatever is still open: the same steps in the end.
    assert summary["steps_scored"] == minutes and summary["score_errors"] == 0, summary


def test_a_full_scoring_queue_drops_the_oldest_steps_and_counts_them(detector: Path, tmp_path: Path) -> None:
    """Scoring is held up on the first step while 9 more close at once: a queue of 2 keeps the
    newest 2 and drops 7, counted in /health, /metrics and the summary; nothing else is lost."""
    # Time moves by flow ends only: the wall clock would close a step while the first is held up.
    live = LiveDetector(LiveConfig(detector, listen=("127.0.0.1", 0), alerts=tmp_path / "alerts.jsonl", queue_steps=2,
                                   clock_rate=0))
    entered, release = threading.Event(), threading.Event()
    score = live.scorer.score

    def held_up(rows: pl.DataFrame, history: pl.DataFrame) -> list[dict[str, Any]]:
        if not entered.is_set():
            entered.set()
            assert release.wait(30)
        return score(rows, history)

    live.scorer.score = held_up  # type: ignore[method-assign]
    flows = flood_flows(normal=12, flood=0)
    first_minutes = flows["ts_start"] < START + timedelta(minutes=3)
    live.start()
    try:
        # Minutes 0-2: step 0 closes (a step closes a whole grace step after its end).
        live.feed(flows.filter(first_minutes))
        assert entered.wait(30), "the first step was not scored"
        live.feed(flows.filter(~first_minutes))  # minutes 3-11: steps 1-9 close at once; 10, 11 stay open
        wait_for("the burst queued", lambda: live.status()["dropped"]["steps"].get("queue_full", 0) >= 7)
        status = live.status()
        assert status["steps_waiting"] == 2, status
        release.set()
    finally:
        release.set()
        summary = live.stop()
    nodes = 1 + len(NEIGHBOURS)
    assert status["dropped"]["steps"] == {"queue_full": 7} and status["dropped"]["node_steps"] == {"queue_full": 7 * nodes}, status
    assert "netflowgen_detect_dropped_steps_total{reason=\"queue_full\"} 7" in live.metrics_text()
    # Scored: the first step, the newest 2 of the burst, the 2 open ones at the end; none stale.
    assert summary["dropped"]["steps"] == {"queue_full": 7} and summary["steps_scored"] == 12 - 7, summary
    assert summary["node_steps_scored"] == (12 - 7) * nodes and summary["score_errors"] == 0


def test_the_api_survives_garbage_huge_headers_slow_loris_and_vanishing_clients(
        detector: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(httpserve, "MAX_CONNECTIONS", 4)
    monkeypatch.setattr(httpserve, "REQUEST_TIMEOUT", 0.8)
    monkeypatch.setattr(httpserve, "IO_TIMEOUT", 5.0)
    live = LiveDetector(LiveConfig(detector, listen=("127.0.0.1", 0), alerts=tmp_path / "alerts.jsonl", api=("127.0.0.1", 0)))
    live.start()
    stopped = False
    try:
        port = live.api_address[1]  # type: ignore[index]
        assert status_of(exchange(port, b"\x00\xffgarbage\r\n\r\n")) == 400
        huge = b"GET /health HTTP/1.0\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(90)) + b"\r\n"
        assert status_of(exchange(port, huge)) == 431
        for _ in range(20):
            vanish(port, "/")
        before = threading.active_count()
        held = slow_loris(port, 20)
        assert threading.active_count() - before <= 4
        assert all(closed_by_server(s, within=2.0) for s in held)
        deadline = time.monotonic() + 1.0
        while live._http is not None and live._http.connections() and time.monotonic() < deadline:
            time.sleep(0.01)  # the cut connections' threads end just after
        for path in ("/", "/health", "/metrics", "/alerts", "/top", "/exporters"):
            assert get(port, path)[0] == 200, path
        metrics = get(port, "/metrics")[1].decode()
        refused = re.search(r'^netflowgen_detect_http_connections_total\{outcome="refused"\} (\d+)$', metrics, re.M)
        assert refused and int(refused.group(1)) >= 16, metrics[-2000:]
        assert live.healthy()
        held = slow_loris(port, 20)
        started = time.monotonic()
        live.stop()
        stopped = True
        assert time.monotonic() - started < 3.0
        for s in held:
            s.close()
    finally:
        if not stopped:
            live.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err


# -- live scores equal offline scores of the same context -----------------------------------------


def live_scores(det: Any, flows: pl.DataFrame) -> tuple[dict[tuple[str, datetime], float], pl.DataFrame]:
    """Replay ``flows`` step by step (in the order of their start, so none is late) through the
    online series and the online detector, as `netflowgen detect` runs them: the score of every
    node at every step it was scored live, and the live series' rows."""
    from netflowgen.collect.online import OnlineConfig, OnlineSeries
    from netflowgen.detect.online import OnlineDetector

    scorer = OnlineDetector(det, keep_top=10_000)
    online = OnlineSeries(OnlineConfig(series=det.spec, history=scorer.history_rows + 1))
    scores: dict[tuple[str, datetime], float] = {}
    emitted = []
    step = det.spec.step
    steps = flows.with_columns(pl.col("ts_start").dt.truncate(f"{int(step.total_seconds())}s").alias("_s"))
    for (start,), batch in steps.sort("ts_start").group_by(["_s"], maintain_order=True):
        online.add(batch.drop("_s"))
        rows = online.advance(start + step)
        emitted.append(rows)
        for s in rows["step"].unique().sort().to_list():
            scorer.score(rows.filter(pl.col("step") == s), online.history())
            _, top = scorer.snapshot()
            scores.update({(n["node"], s): n["score"] for n in top["nodes"]})
    return scores, pl.concat(emitted)


def compare_live_and_offline(det: Any, flows: pl.DataFrame) -> tuple[float, float]:
    """Largest difference between every live score and the offline score of the same (node,
    step) read as live reads it; and the same against fine-tuning's strides."""
    from netflowgen.collect.online import OnlineConfig
    from netflowgen.series import build_series

    live, rows = live_scores(det, flows)
    # Offline: the same flows as one series by the live series' rules (no coverage; silences up
    # to the idle limit bridged), each row read as live reads a node's newest step.
    series = build_series(flows, OnlineConfig(series=det.spec).offline(), coverage=None)
    trailing = {(r["node"], r["step"]): r["score"] for r in det.score(series, as_live=True).iter_rows(named=True)}
    strides = {(r["node"], r["step"]): r["score"] for r in det.score(series).iter_rows(named=True)}
    # Live alone emits the zero rows of a node's last idle steps before it is dropped (it cannot
    # know the node will stay silent): those are the only rows offline lacks.
    only_live = pl.DataFrame([{"node": n, "step": s} for n, s in live if (n, s) not in trailing],
                             schema={"node": pl.String, "step": pl.Datetime("us", "UTC")})
    if only_live.height:
        idle = only_live.join(rows, on=["node", "step"], how="left")
        assert (idle["flows_in"] + idle["flows_out"] == 0).all(), idle
    common = [k for k in live if k in trailing]
    assert len(common) >= 0.9 * len(live) > 0, (len(common), len(live))
    return (max(abs(live[k] - trailing[k]) for k in common), max(abs(live[k] - strides[k]) for k in common))


def test_a_live_score_equals_the_offline_score_of_the_same_context(detector: Path) -> None:
    from netflowgen.detect.finetune import load_detector

    same, _ = compare_live_and_offline(load_detector(detector), flood_flows())
    assert same <= 1e-6, same


def test_score_live_gives_the_live_scores_from_the_flows(detector: Path, tmp_path: Path) -> None:
    """`netflowgen score DET FLOWS --live`: what `netflowgen detect` would have scored, from a
    flow file, to the last digit."""
    from typer.testing import CliRunner

    from netflowgen.cli import app
    from netflowgen.detect.finetune import load_detector

    flows = flood_flows()
    flows.write_parquet(tmp_path / "flows.parquet")
    live, _ = live_scores(load_detector(detector), flows)
    runner = CliRunner()
    result = runner.invoke(app, ["score", str(detector), str(tmp_path / "flows.parquet"), "--live", "--out", str(tmp_path / "live.parquet"), "--json"])
    assert result.exit_code == 0, result.output
    scored = {(r["node"], r["step"]): r["score"] for r in pl.read_parquet(tmp_path / "live.parquet").iter_rows(named=True)}
    common = [k for k in live if k in scored]
    assert len(common) >= 0.9 * len(live) > 0
    assert max(abs(live[k] - scored[k]) for k in common) <= 1e-6
    # --live scores a detector from flows, nothing else.
    run = detector.parent / "run"
    refused = runner.invoke(app, ["score", str(run), str(tmp_path / "flows.parquet"), "--live"])
    assert refused.exit_code == 1 and "is not a detector" in refused.output, refused.output


@pytest.mark.shared_data
def test_live_equals_offline_on_a_real_capture(detector: Path, shared_data: Path) -> None:
    from netflowgen.detect.finetune import load_detector
    from netflowgen.read import read_flows

    flows = read_flows(shared_data / "iot23-34-1" / "conn.log.labeled")
    flows = flows.filter(pl.col("ts_start") < flows["ts_start"].min() + timedelta(hours=2))  # seconds to replay
    same, strides = compare_live_and_offline(load_detector(detector), flows)
    assert same <= 1e-6, same
    # Read in fine-tuning's strides, the same steps see other context: the plan matters here.
    assert strides > 1e-4, strides


def test_calibrate_sets_the_threshold_above_benign_traffic_and_the_flood_still_alerts(detector: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from netflowgen.cli import app
    from netflowgen.detect.finetune import load_detector

    flood_flows(flood=0).write_parquet(tmp_path / "benign.parquet")
    flood_flows().write_parquet(tmp_path / "flood.parquet")
    before = (detector / "netflowgen.json").read_bytes()
    done = CliRunner().invoke(app, ["calibrate", str(detector), str(tmp_path / "benign.parquet"), "--out", str(tmp_path / "cal"), "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    cal = load_detector(tmp_path / "cal")
    benign = cal.score(pl.read_parquet(tmp_path / "benign.parquet"), as_live=True)
    assert summary["node_steps"] == benign.height == 12 * (1 + len(NEIGHBOURS)) and summary["nodes"] == 1 + len(NEIGHBOURS)
    # Just above every benign score, as the detector's live reading gives them.
    assert cal.threshold == summary["threshold"] > benign["score"].max() == summary["highest_benign_score"]
    assert summary["benign_alerts"] == 0 and not benign["alert"].any()
    record = cal.manifest["threshold_calibration"]
    assert record["rule"] == "benign" and record["replaced_threshold"] == summary["previous_threshold"] == load_detector(detector).threshold
    # The model is the same; only the threshold moved; the original is untouched.
    for name in ("model.safetensors", "tokenizer.json", "model_config.json"):
        assert (tmp_path / "cal" / name).read_bytes() == (detector / name).read_bytes()
    assert (detector / "netflowgen.json").read_bytes() == before
    flood = cal.score(pl.read_parquet(tmp_path / "flood.parquet"), as_live=True).filter(pl.col("node") == VICTIM)
    assert flood.filter(pl.col("step") >= START + timedelta(minutes=NORMAL_MINUTES))["alert"].all(), flood
    # With a margin for drift: the odds of the threshold above the benign scores, times 1.5.
    done = CliRunner().invoke(app, ["calibrate", str(detector), str(tmp_path / "benign.parquet"), "--out", str(tmp_path / "m"),
                                    "--margin", "0.5", "--json"])
    assert done.exit_code == 0, done.output
    wide = json.loads(done.output)
    assert wide["threshold_before_margin"] == summary["threshold"] and wide["margin"] == 0.5
    t = summary["threshold"]
    assert wide["threshold"] == pytest.approx(1.5 * t / (1 - t) / (1 + 1.5 * t / (1 - t)), rel=1e-12)
    assert wide["threshold"] > t and wide["benign_alerts"] == 0
    assert load_detector(tmp_path / "m").threshold == wide["threshold"]
    # Bad input: a quantile outside (0, 1], a negative margin, an existing output without --overwrite.
    bad = CliRunner().invoke(app, ["calibrate", str(detector), str(tmp_path / "benign.parquet"), "--out", str(tmp_path / "q"),
                                   "--margin", "-0.1"])
    assert bad.exit_code == 1 and "margin must be 0 or more" in bad.output and not (tmp_path / "q").exists()
    bad = CliRunner().invoke(app, ["calibrate", str(detector), str(tmp_path / "benign.parquet"), "--out", str(tmp_path / "q"),
                                   "--quantile", "0"])
    assert bad.exit_code == 1 and "quantile must be in (0, 1]" in bad.output and not (tmp_path / "q").exists()
    again = CliRunner().invoke(app, ["calibrate", str(detector), str(tmp_path / "benign.parquet"), "--out", str(tmp_path / "cal")])
    assert again.exit_code == 1 and "exists" in again.output
