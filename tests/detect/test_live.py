"""Live detection end to end: the real softflowd replays a capture holding minutes of normal
traffic and then a SYN flood into `netflowgen detect`; the flood raises an alert within two steps
of its onset, and the normal minutes before it raise none."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.request import urlopen

import polars as pl
import pytest

from netflowgen.detect.finetune import FinetuneConfig, finetune
from netflowgen.detect.labels import parse_budget
from netflowgen.series import SeriesConfig
from netflowgen.series.write import series_config_to_dict
from netflowgen.tokenize import Tokenizer, TokenizerConfig
from netflowgen.tokenize.shards import write_tokens
from netflowgen.train.loop import TrainConfig
from netflowgen.train.pretrain import PretrainConfig, pretrain
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

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("softflowd") is None, reason="softflowd is needed (apt-get install softflowd)"),
]

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
    tok = Tokenizer.fit(pre, TokenizerConfig(("flows_in", "flows_out"), n_bins=10))
    write_tokens(pre, tok, tmp / "tok", step_seconds=60, fit=None, source="synthetic")
    train = TrainConfig(steps=80, batch_size=16, lr=3e-3, warmup_steps=8, eval_every=80, checkpoint_every=80,
                        eval_batches=2, log_every=20, weight_decay=0.0)
    pretrain(PretrainConfig(tmp / "tok", "tiny", context=48), train, tmp / "run", show_progress=False)
    cfg = FinetuneConfig(attack=("ddos",), budget=parse_budget("6ep"), steps=80, window=16, history=16, mode="full",
                         head_inputs="both", lr=3e-3)
    finetune(tmp / "run", series, 60, cfg, tmp / "det", show_progress=False,
             series_config=series_config_to_dict(SeriesConfig()))
    return tmp / "det"


def test_a_replayed_flood_alerts_within_two_steps_and_normal_traffic_does_not(detector: Path, tmp_path: Path) -> None:
    pcap = write_pcap(tmp_path / "flood.pcap", pkts=capture())
    alerts_file = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "netflowgen.cli", "detect", str(detector), "--listen", "127.0.0.1:0",
                             "--alerts", str(alerts_file), "--api", "127.0.0.1:0", "--out", str(tmp_path / "flows"), "--json"],
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
    steps = [datetime.fromisoformat(a["step"].replace("Z", "+00:00")) for a in alerts if a["node"] == VICTIM]
    assert steps, f"no alert for the victim; all alerts: {alerts}"
    assert min(steps) >= ONSET, "an alert during the normal minutes"
    assert min(steps) <= ONSET + timedelta(minutes=2), f"first alert at {min(steps)}, onset {ONSET}"
    first = next(a for a in alerts if a["node"] == VICTIM)
    assert first["score"] >= first["threshold"] and first["drivers"][0]["feature"] in ("flows_in", "flows_out")
