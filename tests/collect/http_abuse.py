"""Hostile HTTP clients for the endpoint tests (and the attack benchmark): garbage, huge headers,
slow-loris connections and clients that vanish mid-response. Loopback only."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
import urllib.request


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection, read the reply until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        reply = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                reply += chunk
    return reply


def status_of(reply: bytes) -> int | None:
    parts = reply.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else None


def get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.status, r.read()


def slow_loris(port: int, n: int) -> list[socket.socket]:
    """``n`` connections that send the start of a request and then nothing."""
    held = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        held.append(s)
    return held


def closed_by_server(s: socket.socket, within: float) -> bool:
    """Whether the server ends the connection (EOF, reset or a reply then EOF) within ``within`` s."""
    s.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except (ConnectionError, OSError) as e:
        return not isinstance(e, TimeoutError)
    return False


def vanish(port: int, path: str = "/metrics") -> None:
    """Ask for a page and reset the connection at once (the server's write meets a broken pipe)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    s.close()
