"""The collector's /metrics server under hostile clients: garbage requests, huge headers,
slow-loris connections and clients that vanish; bounded threads, prompt stop, no tracebacks, and
a warning for an address that is not loopback (issue 16, defect 5 and item 3)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netflowgen.collect import httpserve
from netflowgen.collect.server import Collector, CollectorConfig
from tests.collect.http_abuse import closed_by_server, exchange, get, slow_loris, status_of, vanish


@pytest.fixture
def fast_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small limits so that the test sees them act within a second; the per-read timeout is longer
    # than the deadline, as for a slow-loris client that trickles a byte before each read times out.
    monkeypatch.setattr(httpserve, "MAX_CONNECTIONS", 4)
    monkeypatch.setattr(httpserve, "REQUEST_TIMEOUT", 0.8)
    monkeypatch.setattr(httpserve, "IO_TIMEOUT", 5.0)


@pytest.fixture
def collector(tmp_path: Path, fast_limits: None) -> Iterator[Collector]:
    c = Collector(CollectorConfig(tmp_path / "flows", listen=("127.0.0.1", 0), metrics=("127.0.0.1", 0)))
    c.start()
    yield c
    c.stop()


def port_of(c: Collector) -> int:
    return c.metrics_address[1]  # type: ignore[index]


def test_garbage_and_huge_headers_get_an_error_and_the_server_keeps_serving(collector: Collector) -> None:
    port = port_of(collector)
    assert status_of(exchange(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")) == 400
    assert status_of(exchange(port, b"POST /metrics HTTP/1.0\r\nContent-Length: 99999999\r\n\r\n")) == 501
    huge = b"GET /metrics HTTP/1.0\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(90)) + b"\r\n"
    assert status_of(exchange(port, huge)) == 431
    assert status_of(exchange(port, b"GET /" + b"a" * 70_000 + b" HTTP/1.0\r\n\r\n")) in (414, 431)
    status, body = get(port, "/metrics")
    assert status == 200 and b"netflowgen_collect_uptime_seconds" in body
    assert collector.healthy()


def test_slow_loris_connections_are_bounded_timed_out_and_do_not_delay_stopping(
        tmp_path: Path, fast_limits: None, capfd: pytest.CaptureFixture[str]) -> None:
    c = Collector(CollectorConfig(tmp_path / "flows", listen=("127.0.0.1", 0), metrics=("127.0.0.1", 0)))
    c.start()
    port = port_of(c)
    before = threading.active_count()
    held = slow_loris(port, 30)
    assert c._http is not None
    deadline = time.monotonic() + 0.5
    while c._http.counts["refused"] < 26 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Four are served (and wait for the rest of their request); the other 26 were refused at once.
    assert c._http.counts["refused"] == 26
    assert threading.active_count() - before <= 4
    assert all(closed_by_server(s, within=2.0) for s in held)  # the deadline cut every one
    deadline = time.monotonic() + 1.0
    while c._http.connections() and time.monotonic() < deadline:  # their threads end just after
        time.sleep(0.01)
    status, _ = get(port, "/metrics")  # and the slots are free again
    assert status == 200
    assert c._http.counts["timed_out"] >= 4
    held = slow_loris(port, 30)
    started = time.monotonic()
    c.stop()  # with slow clients connected: no waiting for them
    assert time.monotonic() - started < 2.0
    for s in held:
        s.close()
    assert "Traceback" not in capfd.readouterr().err


def test_clients_that_vanish_mid_response_print_no_traceback(collector: Collector, capfd: pytest.CaptureFixture[str]) -> None:
    port = port_of(collector)
    for _ in range(50):
        vanish(port)
    time.sleep(0.3)
    status, _ = get(port, "/health")
    assert status == 200
    assert collector._http is not None and collector._http.counts["client_errors"] > 0  # the resets were met
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_an_address_that_is_not_loopback_gets_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    # Binding a public address is not for a test: the check is told 127.0.0.1 is not loopback.
    monkeypatch.setattr(httpserve, "is_loopback", lambda host: False)
    c = Collector(CollectorConfig(tmp_path / "flows", listen=("127.0.0.1", 0), metrics=("127.0.0.1", 0)))
    with caplog.at_level(logging.WARNING, logger="netflowgen.collect.httpserve"):
        c.start()
        c.stop()
    assert any("not a loopback address" in r.getMessage() and "metrics" in r.getMessage() for r in caplog.records)


def test_loopback_addresses() -> None:
    assert [httpserve.is_loopback(h) for h in ("127.0.0.99", "::1", "localhost", "0.0.0.0", "::", "192.0.2.1", "example.org")] == [
        True, True, True, False, False, False, False]


def test_sigterm_stops_the_cli_promptly_with_slow_clients_connected(tmp_path: Path) -> None:
    # The user's path: `netflowgen collect --metrics ...` and `kill`; the probe saw about 150 s.
    import re
    import signal
    import subprocess
    import sys

    err = tmp_path / "stderr"
    with open(err, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "netflowgen.cli", "collect", "--out", str(tmp_path / "flows"),
                                 "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=f)
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"metrics on http://127\.0\.0\.1:(\d+)/", err.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.1)
        held = slow_loris(int(m.group(1)), 40)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 5.0
        for s in held:
            s.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err.read_text()


def test_one_route_table_serves_both_and_health_says_503_when_failing() -> None:
    import json
    from urllib.error import HTTPError
    from urllib.request import urlopen

    state = {"ok": True}
    routes = {"/health": httpserve.health_route(lambda: {"uptime": 1}, lambda: state["ok"]),
              "/metrics": httpserve.metrics_route(lambda: "x_total 1\n"),
              "/top": httpserve.json_route(lambda: [1, 2])}
    server = httpserve.serve_routes(("127.0.0.1", 0), routes, "test-routes", "a test")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        ok = urlopen(base + "/health?x=1", timeout=5)
        assert ok.status == 200 and json.loads(ok.read()) == {"healthy": True, "uptime": 1}
        assert urlopen(base + "/metrics", timeout=5).read() == b"x_total 1\n"
        assert json.loads(urlopen(base + "/top", timeout=5).read()) == [1, 2]
        state["ok"] = False
        with pytest.raises(HTTPError) as failing:
            urlopen(base + "/health", timeout=5)
        assert failing.value.code == 503 and json.loads(failing.value.read())["healthy"] is False
        with pytest.raises(HTTPError) as missing:
            urlopen(base + "/nope", timeout=5)
        assert missing.value.code == 404 and b"/health, /metrics, /top" in missing.value.read()
    finally:
        server.close()


def test_collect_and_detect_serve_through_the_one_route_table() -> None:
    import ast

    from netflowgen.collect import server
    from netflowgen.detect import live

    for module in (server, live):
        calls = {n.func.id for n in ast.walk(ast.parse(Path(module.__file__).read_text()))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert "serve_routes" in calls and "serve" not in calls, module.__name__
