"""The HTTP server behind ``collect --metrics`` and ``detect --api``, bounded against misuse.

Both serve a few small GET endpoints to a scraper or a browser on this host. What a client can
make them hold is bounded:

* **threads**: at most ``max_connections`` requests are served at once; one more is answered
  ``503`` at once and closed (by the accepting thread, with a short send timeout);
* **time**: every socket operation times out after ``io_timeout`` seconds, and a connection is
  cut ``request_timeout`` seconds after it was accepted whatever it sends (a slow-loris client
  trickling one byte at a time resets no per-operation timeout, so a reaper thread enforces
  the deadline);
* **request size**: the request line and headers together are cut at ``max_header_bytes``
  (``431``); request bodies are never read (only GET is served);
* **noise**: a client that goes away mid-response (``BrokenPipeError``, a reset) or times out is
  logged at debug level, never printed as a traceback;
* **stopping**: :meth:`BoundedHTTPServer.close` cuts the open connections and does not wait
  for their threads (``socketserver`` joins every handler thread on close by default, which
  made SIGTERM wait for each slow-loris client).

A server on an address that is not loopback is started with a warning: nothing here is
authenticated.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import logging
import socket
import threading
import time
import json
from collections.abc import Callable
from typing import Any

__all__ = ["BoundedHTTPServer", "QuietHandler", "Route", "health_route", "is_loopback", "json_route", "metrics_route",
           "serve", "serve_routes"]

log = logging.getLogger(__name__)

#: Requests served at once, at most.
MAX_CONNECTIONS = 16
#: Seconds a connection may last, from accept to close.
REQUEST_TIMEOUT = 10.0
#: Seconds one socket operation may wait.
IO_TIMEOUT = 5.0
#: Bytes of request line and headers read at most.
MAX_HEADER_BYTES = 32 * 1024

_REFUSED = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_TOO_LARGE = b"HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost`` counts; other names do not).

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("localhost")
    (True, True, False, True)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _HeadersTooLarge(Exception):
    pass


class _CappedReader:
    """The request's read side with a budget of bytes: beyond it, :class:`_HeadersTooLarge`."""

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._left = limit

    def readline(self, size: int = -1) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        line = self._inner.readline(want)
        self._left -= len(line)
        if self._left < 0:
            raise _HeadersTooLarge
        return line

    def read(self, size: int = -1) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        data = self._inner.read(want)
        self._left -= len(data)
        if self._left < 0:
            raise _HeadersTooLarge
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Base of the endpoint handlers: capped request size, log lines at debug level, and
    :meth:`send_body` for a complete response."""

    server: BoundedHTTPServer
    # An unparseable request is answered with a status line (the default, HTTP/0.9, has none).
    default_request_version = "HTTP/1.0"

    def setup(self) -> None:
        super().setup()
        self.rfile = _CappedReader(self.rfile, self.server.max_header_bytes)  # type: ignore[assignment]

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _HeadersTooLarge:
            self.close_connection = True
            self.server.count("too_large")
            with contextlib.suppress(OSError):
                self.wfile.write(_TOO_LARGE)

    def send_body(self, status: int, data: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.server.name, *args)


class BoundedHTTPServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server with bounded threads, deadlines and request size (module docstring)."""

    daemon_threads = True
    block_on_close = False
    # socketserver's default listen backlog of 5 made the kernel hold further connections for a
    # SYN retry (a second and more) instead of letting them be refused with a 503 at once.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[QuietHandler], *, name: str = "http",
                 max_connections: int | None = None, request_timeout: float | None = None,
                 io_timeout: float | None = None, max_header_bytes: int | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.name = name
        # Read at construction (not import) so that a test can lower them.
        self.max_connections = max_connections or MAX_CONNECTIONS
        self.request_timeout = request_timeout or REQUEST_TIMEOUT
        self.io_timeout = io_timeout or IO_TIMEOUT
        self.max_header_bytes = max_header_bytes or MAX_HEADER_BYTES
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._open: dict[socket.socket, float] = {}  # connection -> deadline
        self._open_lock = threading.Lock()
        self._closing = threading.Event()
        self.counts: dict[str, int] = {"served": 0, "refused": 0, "timed_out": 0, "too_large": 0, "client_errors": 0}
        """Connections by what became of them (``served`` includes the rest but ``refused``)."""
        super().__init__(address, handler)
        self._reaper = threading.Thread(target=self._reap, name=f"netflowgen-{name}-reaper", daemon=True)
        self._reaper.start()

    def count(self, what: str) -> None:
        with self._open_lock:
            self.counts[what] += 1

    def connections(self) -> int:
        """Connections being served now."""
        with self._open_lock:
            return len(self._open)

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._closing.is_set() or not self._slots.acquire(blocking=False):
            self.count("refused")
            with contextlib.suppress(OSError):
                request.settimeout(0.2)  # the accepting thread must not wait for this client
                request.sendall(_REFUSED)
            self.shutdown_request(request)
            return
        request.settimeout(self.io_timeout)
        with self._open_lock:
            self._open[request] = time.monotonic() + self.request_timeout
            self.counts["served"] += 1
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread: give the slot back here
            self._done(request)
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: Any) -> None:
        with self._open_lock:
            known = self._open.pop(request, None) is not None
        if known:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            # The client went away or was too slow: nothing wrong here, and no traceback.
            self.count("client_errors")
            log.debug("%s: %s from %s", self.name, type(error).__name__, client_address)
            return
        log.error("%s: request from %s failed", self.name, client_address, exc_info=error)

    def _reap(self) -> None:
        while not self._closing.wait(0.25):
            now = time.monotonic()
            with self._open_lock:
                late = [sock for sock, deadline in self._open.items() if deadline < now]
            for sock in late:
                self.count("timed_out")
                # The handler's blocked read returns at once and its thread ends.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop serving, cut the open connections, return without waiting for their threads."""
        self._closing.set()
        self.shutdown()
        self.server_close()
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def serve(address: tuple[str, int], handler: type[QuietHandler], name: str, what: str) -> BoundedHTTPServer:
    """Start a :class:`BoundedHTTPServer` on ``address`` in a daemon thread; ``what`` names it in
    the error (address in use) and in the warning for an address that is not loopback."""
    if not is_loopback(address[0]):
        log.warning("%s on http://%s:%d: not a loopback address, and nothing in it is authenticated: "
                    "anyone who can reach it can read it", what, address[0], address[1])
    try:
        server = BoundedHTTPServer(address, handler, name=name)
    except OSError as e:
        raise OSError(f"cannot serve {what} on http://{address[0]}:{address[1]}: {e.strerror or e}") from e
    threading.Thread(target=server.serve_forever, args=(0.1,), name=f"netflowgen-{name}", daemon=True).start()
    return server


#: An endpoint: called for each GET of its path, it gives (status, body, content type).
Route = Callable[[], tuple[int, bytes, str]]


def json_route(value: Callable[[], Any]) -> Route:
    """``value()`` as JSON, 200."""
    return lambda: (200, json.dumps(value()).encode(), "application/json")


def metrics_route(text: Callable[[], str]) -> Route:
    """Prometheus text exposition, 200."""
    return lambda: (200, text().encode(), "text/plain; version=0.0.4; charset=utf-8")


def health_route(status: Callable[[], dict[str, Any]], healthy: Callable[[], bool]) -> Route:
    """``status()`` as JSON with ``healthy``; 200 when healthy, 503 when not, so that a load
    balancer or a probe that reads only the status code sees a failure."""
    def route() -> tuple[int, bytes, str]:
        ok = healthy()
        return (200 if ok else 503), json.dumps({"healthy": ok, **status()}).encode(), "application/json"
    return route


def serve_routes(address: tuple[str, int], routes: dict[str, Route], name: str, what: str) -> BoundedHTTPServer:
    """:func:`serve` a table of GET endpoints (path -> :data:`Route`; the query string is ignored);
    any other path is a 404 that lists them. The one handler behind ``collect`` and ``detect``."""
    listing = ", ".join(routes)

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?")[0])
            if route is None:
                self.send_body(404, f"not found: try {listing}\n".encode(), "text/plain")
                return
            status, body, kind = route()
            self.send_body(status, body, kind, {"Cache-Control": "no-store"})

    return serve(address, Handler, name, what)
