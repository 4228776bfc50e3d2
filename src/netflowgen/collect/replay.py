"""Replay a flow dataset as NetFlow v5, v9 or IPFIX export over UDP (``netflowgen replay``).

What ``nfreplay`` is for nfcapd files, for anything :func:`netflowgen.dataset.ingest.scan_flows` reads (a
flow dataset as ``ingest`` or ``collect`` writes it, or any supported input file or directory).
The flows are encoded by :mod:`netflowgen.collect.export` (one exporter, one observation domain)
and sent from one connected UDP socket.

Pacing, on the flows' own clock: a datagram is due when the latest flow end it carries (the time
an exporter emits a flow) has come, ``speed`` times faster than real time from the first one
(``speed=None``: as fast as the rate bound lets). On top of that the rate is always bounded:
at most ``max_rate`` flows per second (default 100,000, bursts of at most 10 ms), so that a
``max`` replay cannot flood a collector or a link by accident; the summary says how far behind
the flows' clock the bound made the replay fall (``behind_s``).

A looped replay (``passes=None``: until stopped) sends the flows again and again, each pass moved
later by the flows' time span rounded up to a whole minute: the flows' clock keeps going forward,
as a collector or a detector expects of a live exporter, and step boundaries (whole minutes) fall
at the same places in every pass. Sequence numbers continue across passes.

The flows are read into memory (the columns the encoder needs, some 100 bytes a flow), and
encoded pass by pass: about a million flows a second on one core, well above the default bound.

Only loopback targets unless ``allow_remote``. A target that refuses the datagrams (nothing
listens: the ICMP port unreachable makes the connected socket raise ``ConnectionRefusedError``)
stops the replay with :class:`ReplayError` at once, never a hang; it is checked after the first
datagram, on every send and after the last one.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from netflowgen.collect.export import DEFAULT_MAX_DATAGRAM, Exporter, ExportFormat, Prepared, prepare
from netflowgen.read import ReadOptions

__all__ = ["DEFAULT_MAX_RATE", "ReplayConfig", "ReplayError", "ReplaySummary", "load_flows", "parse_speed", "replay"]

log = logging.getLogger(__name__)

#: Flows per second a replay sends at most unless told otherwise.
DEFAULT_MAX_RATE = 100_000.0
#: Bursts the rate bound allows, seconds of flows at the bound.
_BURST_S = 0.01
#: How long to wait for an ICMP port unreachable after the first and the last datagram.
_REFUSAL_WAIT_S = 0.05
_LOOP_ALIGN_MS = 60_000
_COLUMNS = ("ts_start", "ts_end", "src_ip", "dst_ip", "src_port", "dst_port", "proto",
            "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "tcp_flags")


class ReplayError(RuntimeError):
    """The replay cannot go on (target refuses, send fails)."""


def parse_speed(text: str) -> float | None:
    """``1x``, ``10x``, ``0.5x`` -> the factor; ``max`` -> None (no clock, only the rate bound).

    >>> parse_speed("10x"), parse_speed("max"), parse_speed("2.5")
    (10.0, None, 2.5)
    """
    t = text.strip().lower()
    if t == "max":
        return None
    try:
        factor = float(t.removesuffix("x"))
    except ValueError:
        raise ValueError(f"not a speed: {text!r} (use 1x, 10x, ... or max)") from None
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"speed must be positive: {text!r}")
    return factor


@dataclass(frozen=True)
class ReplayConfig:
    """What to replay, where, and how fast."""

    source: Path
    """A flow dataset directory or any supported input."""
    target: tuple[str, int]
    """UDP (host, port) to send to."""
    format: ExportFormat = ExportFormat.IPFIX
    speed: float | None = 1.0
    """Times real time on the flows' clock; None: as fast as ``max_rate`` allows."""
    passes: int | None = 1
    """How many times to send the flows; None: until stopped."""
    max_rate: float | None = DEFAULT_MAX_RATE
    """Flows per second at most; None: no bound."""
    allow_remote: bool = False
    """Send to a non-loopback address."""
    domain: int = 0
    """Observation domain (v5 engine type/id, v9 source id, IPFIX observation domain id)."""
    template_every: int = 20
    """Datagrams between template refreshes (v9, IPFIX)."""
    max_datagram: int = DEFAULT_MAX_DATAGRAM
    """Largest datagram payload, bytes."""
    read: ReadOptions = field(default_factory=ReadOptions)
    """How to read an input that is not a flow dataset."""

    def __post_init__(self) -> None:
        if self.passes is not None and self.passes < 1:
            raise ValueError("passes must be at least 1 (None: loop until stopped)")
        if self.max_rate is not None and not self.max_rate > 0:
            raise ValueError("max_rate must be positive (None: unbounded)")
        if self.speed is not None and not self.speed > 0:
            raise ValueError("speed must be positive (None: max)")


@dataclass
class ReplaySummary:
    """What a replay sent."""

    source: str
    target: str
    format: str
    flows_read: int = 0
    """rows of the input."""
    records_per_pass: int = 0
    """unidirectional flow records one pass sends (bidirectional rows count twice)."""
    reverse_records: int = 0
    """records per pass made of the reverse counters of bidirectional rows."""
    skipped: dict[str, int] = field(default_factory=dict)
    """records per pass not sent, by reason (what the format cannot carry)."""
    passes: int = 0
    """passes completed."""
    flows_sent: int = 0
    """flow records sent, every pass together."""
    datagrams_sent: int = 0
    template_datagrams: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    behind_s: float = 0.0
    """the most a datagram went out after its time on the (sped-up) flows' clock."""
    stopped: bool = False
    """stopped before the passes asked for were sent."""
    first_flow: str | None = None
    last_flow: str | None = None

    def to_dict(self) -> dict[str, object]:
        d = dict(self.__dict__)
        d["flows_per_s"] = self.flows_sent / self.seconds if self.seconds else 0.0
        return d


def load_flows(source: Path, options: ReadOptions | None = None) -> pl.DataFrame:
    """The flows to replay (the columns the encoder needs), read into memory."""
    from netflowgen.dataset.manifest import scan_flows

    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or directory")
    try:
        return scan_flows(source, options).select(_COLUMNS).collect()
    except pl.exceptions.PolarsError as e:
        raise ValueError(f"{source}: cannot read flows: {e}") from e


def _connect(target: tuple[str, int], allow_remote: bool) -> socket.socket:
    host, port = target
    if not 1 <= port <= 65535:
        raise ValueError(f"target port must lie in 1..65535, not {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise ValueError(f"cannot resolve target host {host!r}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    ip = ipaddress.ip_address(address[0])
    if not ip.is_loopback and not allow_remote:
        raise ValueError(f"{host} ({ip}) is not a loopback address: replay sends to loopback only unless told to "
                         "(--allow-remote); mind the rate (--max-rate) on a real network")
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.connect(address)
    return sock


def _refused(sock: socket.socket, target: str, wait: float) -> None:
    """Raise if an ICMP error came back for what was sent (waiting up to ``wait`` seconds for it)."""
    readable, _, _ = select.select([sock], [], [], wait)
    if not readable:
        return
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise ReplayError(_refusal_message(target, OSError(code, os.strerror(code))))


def _refusal_message(target: str, e: OSError) -> str:
    if isinstance(e, ConnectionRefusedError) or e.errno == errno.ECONNREFUSED:
        return f"udp://{target} refused the export (ICMP port unreachable): is a collector listening there?"
    return f"sending to udp://{target} failed: {e.strerror or e}"


def _span_ms(p: Prepared) -> int:
    """How much later each pass of a loop is moved: the records' span rounded up to a whole minute."""
    span = int(p.end_ms.max()) - int(p.start_ms.min())
    return max(_LOOP_ALIGN_MS, -(-(span + 1) // _LOOP_ALIGN_MS) * _LOOP_ALIGN_MS)


def replay(config: ReplayConfig, progress: Callable[[ReplaySummary], None] | None = None,
           stop: threading.Event | None = None, flows: pl.DataFrame | None = None) -> ReplaySummary:
    """Send the flows of ``config.source`` (or ``flows``, already read) to ``config.target``.

    ``progress`` is called with the running summary a few times a second; ``stop`` ends the
    replay early (the summary says so). Raises :class:`ReplayError` if the target refuses.
    """
    stop = stop or threading.Event()
    target = f"{config.target[0]}:{config.target[1]}" if ":" not in config.target[0] else f"[{config.target[0]}]:{config.target[1]}"
    summary = ReplaySummary(str(config.source), target, config.format.value)
    exporter = Exporter(config.format, domain=config.domain, template_every=config.template_every,
                        max_datagram=config.max_datagram)
    if flows is None:
        flows = load_flows(config.source, config.read)
    prepared = prepare(flows, config.format)
    summary.flows_read = prepared.flows
    summary.records_per_pass = prepared.records
    summary.reverse_records = prepared.reverse_records
    summary.skipped = dict(prepared.skipped)
    for reason, n in prepared.skipped.items():
        log.warning("%s: %d flow records not sent: %s", config.source, n, reason)
    if not prepared.records:
        raise ValueError(f"{config.source}: no flows to replay" + (" as " + config.format.value if prepared.flows else ""))
    summary.first_flow = _iso(int(prepared.start_ms.min()))
    shift = _span_ms(prepared)

    sock = _connect(config.target, config.allow_remote)
    started = time.perf_counter()
    clock0: int | None = None
    allowed = started  # earliest time the rate bound lets the next datagram go (GCRA)
    last_report = 0.0
    try:
        k = 0
        while config.passes is None or k < config.passes:
            records = prepared if k == 0 else prepared.shifted(k * shift)
            for datagram in exporter.encode(records):
                if clock0 is None:
                    clock0 = datagram.clock_ms
                now = time.perf_counter()
                due = started if config.speed is None else started + (datagram.clock_ms - clock0) / 1000 / config.speed
                if config.max_rate is not None:
                    due = max(due, allowed - _BURST_S)
                if due > now and stop.wait(due - now):
                    break
                if stop.is_set():
                    break
                sent_at = time.perf_counter()
                if config.speed is not None:
                    summary.behind_s = max(summary.behind_s, sent_at - (started + (datagram.clock_ms - clock0) / 1000 / config.speed))
                try:
                    sock.send(datagram.payload)
                except OSError as e:
                    raise ReplayError(_refusal_message(target, e)) from None
                if config.max_rate is not None:
                    allowed = max(allowed, sent_at - _BURST_S) + datagram.records / config.max_rate
                summary.datagrams_sent += 1
                summary.flows_sent += datagram.records
                summary.bytes_sent += len(datagram.payload)
                summary.template_datagrams += datagram.templates
                summary.last_flow = _iso(datagram.clock_ms)
                if summary.datagrams_sent == 1:
                    _refused(sock, target, _REFUSAL_WAIT_S)
                if progress is not None and sent_at - last_report >= 0.1:
                    last_report = sent_at
                    summary.seconds = sent_at - started
                    progress(summary)
            else:
                k += 1
                summary.passes = k
                continue
            break
        summary.stopped = config.passes is None or summary.passes < config.passes
        _refused(sock, target, _REFUSAL_WAIT_S)
    finally:
        sock.close()
        summary.seconds = time.perf_counter() - started
    if progress is not None:
        progress(summary)
    return summary


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
