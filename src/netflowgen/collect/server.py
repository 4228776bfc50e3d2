"""The UDP collector behind ``netflowgen collect``: NetFlow v5/v9/IPFIX in, a flow dataset out.

Threads and what each does:

* **receive**: nothing but receiving into a preallocated ring of bytes (the *arena*) and a queue
  entry (position, length, exporter) per datagram: ``recvmmsg`` takes every datagram the kernel
  holds in one turn of the interpreter lock (:mod:`netflowgen.collect.batchrecv`; where it is
  missing, ``recvfrom_into`` one at a time). Exporters send in bursts (softflowd
  replaying a capture sends everything at once), so the kernel socket buffer is made as large as
  allowed (``SO_RCVBUFFORCE`` when root, else ``SO_RCVBUF`` up to ``net.core.rmem_max``; the
  size granted is reported) and the receive thread never waits for decoding unless the arena is
  full.
* **decode**: feeds the datagrams to :class:`~netflowgen.collect.netflow.Decoder` and takes the
  decoded flows in batches into memory (and to ``on_flows``, the live detector).
* **write**: writes what waits in memory: a Parquet file per UTC day every ``rotate`` interval
  (aligned to the Unix epoch) or as soon as ``max_buffer_flows`` flows wait. Its own thread, so
  that decoding goes on while a file is encoded and compressed (PyArrow and Polars release the
  interpreter meanwhile: on a machine with a core to spare the collector decodes and writes at
  once, and live detection is not held up by a rotation). Decoding waits for it only when
  twice ``max_buffer_flows`` wait.
* **metrics** (optional): Prometheus text at ``/metrics`` and a JSON ``/health`` on a loopback
  port (a bounded server: :mod:`netflowgen.collect.httpserve`; another address is warned about).

What senders can make it hold is bounded: the decoder's templates, domains and per-address
counters (:class:`~netflowgen.collect.netflow.Decoder`, evictions counted; addresses beyond
``max_exporters`` share one ``"other"`` entry in /metrics, the summary and the manifest), the
datagrams ahead of the decoder (``backlog_bytes``) and the decoded flows (twice
``max_buffer_flows``: those being written and those taken meanwhile).
A write that fails (``ENOSPC``: disk full) stops nothing: the collector keeps receiving, counts
the failure by errno (``write_errors``), keeps what it could not write and tries again with a
growing pause; while writes keep failing, at most ``max_unwritten_flows`` are held and the oldest
beyond are dropped, counted (``dropped_unwritten``). If they still cannot be written when it
stops, :meth:`Collector.stop` says how many were not.

The output directory is a flow dataset that :func:`netflowgen.dataset.ingest.scan_flows`, ``netflowgen
series`` and ``netflowgen inspect`` read while it grows::

    OUT/date=YYYY-MM-DD/part-NNNNN.parquet   canonical flows (each file written under a hidden
                                             temporary name, renamed into place when complete)
    OUT/rejects.csv                          records validation set aside, with their reasons
    OUT/netflowgen.json                      kind "netflowgen.flows", replaced atomically at every
                                             rotation (rows, files, exporters, loss)

Stopping (:meth:`Collector.stop`, SIGINT/SIGTERM through the CLI) reads what the kernel already
holds (a wake-up datagram sent to the socket marks the end: datagrams queue in order), decodes
it, writes the last file and the manifest, and leaves no temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import queue
import shutil
import socket
import sys
import threading
import traceback
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from netflowgen.artifacts import MANIFEST_NAME, read_manifest, write_failure
from netflowgen.collect.batchrecv import BatchReceiver, batch_receiver
from netflowgen.collect.httpserve import BoundedHTTPServer, health_route, metrics_route, serve_routes
from netflowgen.collect.netflow import Decoder, ExporterStats
from netflowgen.dataset.coverage import MIN_WIDTH, Coverage, coverage_of_flows
from netflowgen.dataset.layout import REJECTS_NAME, part_files, part_path, partition
from netflowgen.dataset.manifest import DATASET_KIND, write_dataset_manifest
from netflowgen.read.filter import FlowFilter, compile_filter
from netflowgen.read.validate import REJECT_SCHEMA, Checked
from netflowgen.schema import arrow_schema

__all__ = ["Collector", "CollectorConfig", "flow_days", "parse_address", "write_flow_file"]

log = logging.getLogger(__name__)

_MAX_DATAGRAM = 65_535
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux
_WAKE = b"netflowgen-collect-stop"
_LOCK_NAME = ".collect.lock"
_COVERAGE_RULE = "collector: the span of flow ends each run received"


def parse_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``PORT`` -> (host, port).

    >>> parse_address("127.0.0.1:2055"), parse_address("[::1]:9995"), parse_address("4739")
    (('127.0.0.1', 2055), ('::1', 9995), ('127.0.0.1', 4739))
    """
    t = text.strip()
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        port_text = rest.lstrip(":")
    elif t.count(":") == 1:
        host, port_text = t.split(":")
    elif ":" in t:
        raise ValueError(f"not an address: {text!r} (write IPv6 addresses as [::1]:2055)")
    else:
        host, port_text = default_host, t
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"not an address: {text!r} (use HOST:PORT, e.g. 127.0.0.1:2055)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host or default_host, port


#: Parquet compressions the collector writes with.
COMPRESSIONS = ("zstd", "lz4", "snappy", "none")


@dataclass(frozen=True)
class CollectorConfig:
    """Where to listen and how to write."""

    out: Path
    """Flow dataset directory (created, or continued if a previous collector wrote it)."""
    listen: tuple[str, int] = ("127.0.0.1", 2055)
    """UDP address to receive export on (port 0: any free port, see ``Collector.address``)."""
    rotate: timedelta = timedelta(seconds=60)
    """A new file per this interval of wall-clock time (aligned to the Unix epoch)."""
    metrics: tuple[str, int] | None = None
    """Loopback HTTP address for ``/metrics`` and ``/health`` (None: no metrics server)."""
    rcvbuf: int = 64 << 20
    """Kernel socket buffer to ask for, bytes."""
    backlog_bytes: int = 64 << 20
    """Bytes of datagrams the receive thread can hold ahead of the decoder."""
    max_buffer_flows: int = 1_000_000
    """Flows (and rejects) held in memory at most: a file is written early when this many wait."""
    take_every: float = 0.25
    """Seconds between decoded batches at the latest."""
    take_records: int = 100_000
    """Records that make a decoded batch early."""
    filter: str | None = None
    """nfdump filter expression: only the flows it matches are kept and passed on (see
    :mod:`netflowgen.read.filter`)."""
    max_exporters: int = 256
    """Source addresses with their own counters (in /metrics, the summary and the manifest); the
    quietest beyond it are folded into one ``"other"`` entry (see :class:`Decoder`)."""
    max_unwritten_flows: int | None = None
    """Flows (and rejects) kept in memory at most while files cannot be written (disk full): the
    oldest beyond it are dropped, counted (None: four times ``max_buffer_flows``)."""
    compression: str = "zstd"
    """Parquet compression of the files: zstd (default), lz4, snappy or none. On real flows
    (AIP's Zeek logs) lz4 writes 7% faster and its files are 37% larger: zstd is the better
    trade unless the collector is short of CPU."""

    recvmmsg: bool = True
    """Receive every datagram the kernel holds in one turn of the interpreter lock (``recvmmsg``,
    Linux; elsewhere one datagram per call). A 3-million-flow v9 stream at 1 M flows/s, beyond
    what this 2-core machine keeps up with, lost 10.7% this way against 17% one at a time (the
    mean of 4 paired runs, fewer lost in each)."""

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, not {self.compression!r}")
        if self.filter is not None:
            compile_filter(self.filter)  # a bad expression fails before the socket opens
        if self.rotate <= timedelta(0):
            raise ValueError("rotate must be positive")
        if self.backlog_bytes < 4 * _MAX_DATAGRAM:
            raise ValueError(f"backlog_bytes must be at least {4 * _MAX_DATAGRAM}")
        if self.max_buffer_flows < 1 or self.take_records < 1 or self.take_every <= 0 or self.max_exporters < 1:
            raise ValueError("max_buffer_flows, take_records, take_every and max_exporters must be positive")
        if self.max_unwritten_flows is not None and self.max_unwritten_flows < self.max_buffer_flows:
            raise ValueError("max_unwritten_flows must be at least max_buffer_flows")


@dataclass
class _Totals:
    files: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    first_start: datetime | None = None
    last_end: datetime | None = None
    partitions: set[str] = field(default_factory=set)


class Collector:
    """Receive, decode and write flow export until stopped.

    >>> import tempfile
    >>> c = Collector(CollectorConfig(Path(tempfile.mkdtemp()) / "flows", listen=("127.0.0.1", 0)))
    >>> c.start(); host, port = c.address; summary = c.stop()
    >>> summary["packets"], summary["rows_written"]
    (0, 0)
    """

    def __init__(self, config: CollectorConfig, on_flows: Callable[[pl.DataFrame], None] | None = None) -> None:
        self.config = config
        # Called from the decode thread with every batch of decoded, validated flows (the live
        # detector aggregates them online); it must not block for long.
        self.on_flows = on_flows
        #: Selects the flows kept (from ``config.filter``; a caller may set it before ``start``).
        self.flow_filter: FlowFilter | None = compile_filter(config.filter) if config.filter is not None else None
        self.decoder = Decoder(max_exporters=config.max_exporters)
        self.address: tuple[str, int] = config.listen
        self.metrics_address: tuple[str, int] | None = None
        self.rcvbuf_granted = 0
        self.rcvbuf_forced = False
        self._lock = threading.Lock()  # guards decoder stats and totals against the metrics thread
        self._queue: queue.SimpleQueue[tuple[int, int, str] | None] = queue.SimpleQueue()
        self._arena = bytearray(config.backlog_bytes)
        self._consumed = 0  # virtual arena offset the decoder has finished with
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None
        self._http: BoundedHTTPServer | None = None
        self._lock_file: Any = None
        # Decoded flows and rejects not yet written, oldest first; the decode thread appends, the
        # write thread takes them out while it writes and puts back what it could not write.
        # Guarded by _lock, as are the counters below.
        self._buffer: list[pl.DataFrame] = []
        self._rejects: list[pl.DataFrame] = []
        self._write_now = threading.Event()  # wakes the write thread: memory is full, or decoding ended
        self._written = threading.Condition(self._lock)  # notified when a write ends: a waiting decoder goes on
        self._decoded = threading.Event()  # the decode thread is done: the write thread writes everything and ends
        self.buffered_flows = 0
        self.buffered_rejects = 0
        self.write_errors: Counter[str] = Counter()
        """Failed writes of files, rejects or manifest, by errno name (``ENOSPC``: disk full)."""
        self.dropped_unwritten = 0
        """Flows and rejects dropped because they could not be written and memory was full."""
        self._write_failures = 0  # consecutive failed flushes: the retry backs off
        self._unwritten: OSError | None = None  # why the last flush at the end failed
        self._retry_at = 0.0
        self.backlog = 0
        self.arena_waits = 0
        self.totals = _Totals()
        self._coverage_before: Coverage | None = None  # what the runs before this one, into the same dataset, observed
        self._observed: tuple[datetime, datetime] | None = None  # earliest and latest flow end this run decoded
        self._dropped = Coverage.of([], _COVERAGE_RULE)  # the time of flows dropped unwritten: not observed after all
        self._next_part = 0
        self._started_at = 0.0
        self._started_utc = ""
        self._failure: BaseException | None = None
        self._switch_interval = sys.getswitchinterval()
        self._summary: dict[str, Any] | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the dataset, bind the socket, start the threads. Raises ``OSError``/``ValueError``
        with a message saying what is wrong (address in use, directory not a flow dataset)."""
        self._bind()
        try:
            self._open_dataset()
            if self.config.metrics is not None:
                self._start_metrics(self.config.metrics)
        except BaseException:
            self._release()
            raise
        self._started_at = time.monotonic()
        self._started_utc = datetime.now(UTC).isoformat(timespec="seconds")
        self._write_manifest(running=True)
        # The receive thread must get the interpreter soon after each datagram even while the
        # decoder runs Python code: a shorter switch interval than the default 5 ms.
        sys.setswitchinterval(min(self._switch_interval, 0.0005))
        # All made before any starts: each may look at the others.
        self._threads = [threading.Thread(target=target, name=name, daemon=True) for name, target in (
            ("netflowgen-receive", self._receive), ("netflowgen-decode", self._decode), ("netflowgen-write", self._write))]
        for thread in self._threads:
            thread.start()
        log.info("listening on udp://%s:%d, writing %s", *self.address, self.config.out)

    def stop(self) -> dict[str, Any]:
        """Read what the kernel holds, decode and write everything; the run's summary."""
        if self._summary is not None:
            return self._summary
        if not self._threads:  # never started
            self._release()
            self._summary = self.summary()
            return self._summary
        self._stopping.set()
        receiver, decoder, writer = self._threads
        while receiver.is_alive():
            self._wake()
            receiver.join(0.5)
        decoder.join()
        writer.join()
        sys.setswitchinterval(self._switch_interval)
        summary = self.summary()
        summary["running"] = False
        manifest_error: OSError | None = None
        try:
            self._write_manifest(running=False)
        except OSError as e:
            manifest_error = e
        finally:
            self._release()
        self._summary = summary
        if self._unwritten is not None:
            e = self._unwritten
            raise OSError(e.errno, f"{summary['buffered_flows']:,} flows and {self.buffered_rejects:,} rejects could not be "
                          f"written to {self.config.out} ({e.strerror or e}); {summary['rows_written']:,} flows "
                          "are in its files" + ("; its manifest could not be updated either" if manifest_error else ""))
        if manifest_error is not None:
            raise OSError(manifest_error.errno, f"cannot update the manifest of {self.config.out} "
                          f"({manifest_error.strerror or manifest_error}); every flow is in its files")
        if self._failure is not None:
            # The type and the place, not only the message: some exceptions have none.
            where = "".join(traceback.format_exception(self._failure)[-3:]).strip()
            raise RuntimeError(f"the collector failed: {self._failure!r}\n{where}") from self._failure
        return summary

    def healthy(self) -> bool:
        return self._failure is None and all(t.is_alive() for t in self._threads)

    def _release(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                (self.config.out / _LOCK_NAME).unlink()
            self._lock_file.close()
            self._lock_file = None

    # -- socket ---------------------------------------------------------------------------------

    def _bind(self) -> None:
        host, port = self.config.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self.config.rcvbuf)
                self.rcvbuf_forced = True
            except OSError:  # not root (CAP_NET_ADMIN): the kernel caps SO_RCVBUF at rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.rcvbuf)
            # Linux reports twice the size asked for (its bookkeeping is included).
            self.rcvbuf_granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            raise OSError(f"cannot listen on udp://{host}:{port}: {e.strerror or e}") from e
        self._sock = sock
        self.address = sock.getsockname()[:2]
        if self.rcvbuf_granted < self.config.rcvbuf:
            log.warning("socket buffer %d bytes granted of %d asked (raise net.core.rmem_max or run as root)",
                        self.rcvbuf_granted, self.config.rcvbuf)

    def _wake(self) -> None:
        """Send the end marker to our own socket (from this host, so the receiver knows it)."""
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        target = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
            s.sendto(_WAKE, (target, port))

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped on this socket (its buffer was full), from /proc (Linux)."""
        sock = self._sock
        if sock is None:
            return None
        try:
            inode = os.fstat(sock.fileno()).st_ino
        except OSError:
            return None
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    parts = line.split()
                    if len(parts) >= 13 and parts[9] == str(inode):
                        return int(parts[-1])
        return None

    # -- threads --------------------------------------------------------------------------------

    def _receive(self) -> None:
        sock = self._sock
        assert sock is not None
        batch = batch_receiver(sock) if self.config.recvmmsg else None
        try:
            if batch is None:
                self._receive_one_by_one(sock)
            else:
                self._receive_batches(batch)
        except OSError as e:
            if not self._stopping.is_set():
                self._failure = e
                log.error("receive thread: %s", e)
        finally:
            self._queue.put(None)

    def _room(self, written: int, length: int) -> int | None:
        """The virtual arena offset, ``written`` or past it, where ``length`` bytes fit without
        wrapping (the position in the arena is the offset modulo its size), once the decoder has
        finished with what was there; None when the decoder is gone and nothing will free it."""
        size = len(self._arena)
        pos = written % size
        if pos + length > size:  # no room before the end: wrap
            written += size - pos
        while written + length - self._consumed > size:
            if self._failure is not None:
                return None
            self.arena_waits += 1
            time.sleep(0.0005)
        return written

    def _receive_one_by_one(self, sock: socket.socket) -> None:
        arena = memoryview(self._arena)
        size = len(self._arena)
        put = self._queue.put
        written = 0
        while (room := self._room(written, _MAX_DATAGRAM)) is not None:
            written, pos = room, room % size
            n, addr = sock.recvfrom_into(arena[pos:pos + _MAX_DATAGRAM])
            if self._stopping.is_set() and arena[pos:pos + n] == _WAKE:
                return
            put((written, n, addr[0]))
            written += n

    def _receive_batches(self, batch: BatchReceiver) -> None:
        """``recvmmsg``: every datagram the kernel holds (up to 64) in one turn of the
        interpreter lock, each copied into the arena."""
        arena = memoryview(self._arena)
        size = len(self._arena)
        put = self._queue.put
        written = 0
        while True:
            for i in range(batch.receive(0.05)):
                data = batch.data(i)
                if self._stopping.is_set() and data == _WAKE:
                    return
                length = len(data)
                room = self._room(written, length)
                if room is None:
                    return
                written, pos = room, room % size
                arena[pos:pos + length] = data
                put((written, length, batch.sender(i)))
                written += length

    def _decode(self) -> None:
        arena = memoryview(self._arena)
        size = len(self._arena)
        get, get_nowait = self._queue.get, self._queue.get_nowait
        last_take = time.monotonic()
        done = False
        try:
            while not done:
                try:
                    batch = [get(timeout=0.05)]
                except queue.Empty:
                    batch = []
                # Everything that is queued already, in one go under the lock.
                while batch and batch[-1] is not None and len(batch) < 512:
                    try:
                        batch.append(get_nowait())
                    except queue.Empty:
                        break
                with self._lock:
                    for item in batch:
                        if item is None:
                            done = True
                            break
                        start, n, exporter = item
                        pos = start % size
                        self.decoder.feed(arena[pos:pos + n], exporter)
                        self._consumed = start + n
                    self.backlog = self._queue.qsize()
                now = time.monotonic()
                if done or self.decoder.pending_records >= self.config.take_records or now - last_take >= self.config.take_every:
                    self._take()
                    last_take = now
                    self._hold_back()
        except BaseException as e:  # a bug must not hang the collector: report it and stop
            self._failure = e
            log.exception("decode thread failed")
            self._stopping.set()
        finally:
            # What was decoded is written, even after a failure here.
            self._decoded.set()
            self._write_now.set()

    def _take(self) -> None:
        with self._lock:
            checked = self.decoder.take()
        if checked.flows.height:
            # What was observed, before --filter: a filter selects flows, not the time listened.
            ends = checked.flows["ts_end"]
            lo, hi = ends.min(), ends.max()
            with self._lock:
                first, last = self._observed if self._observed is not None else (lo, hi)
                self._observed = (min(first, lo), max(last, hi))  # type: ignore[type-var]
        if self.flow_filter is not None and checked.flows.height:
            checked = Checked(self.flow_filter.apply(checked.flows), checked.rejects)
        if checked.flows.height and self.on_flows is not None:
            self.on_flows(checked.flows)
        with self._lock:
            if checked.flows.height:
                self._buffer.append(checked.flows)
                self.buffered_flows += checked.flows.height
            if checked.rejects.height:
                self._rejects.append(checked.rejects)
                self.buffered_rejects += checked.rejects.height
        self._bound_unwritten()

    def _hold_back(self) -> None:
        """Wake the write thread once ``max_buffer_flows`` wait; while it writes, wait for it when
        twice that many (or ``max_unwritten_flows``) wait, so that memory stays bounded. Not while
        writes fail: then the oldest are dropped instead (:meth:`_bound_unwritten`), so that
        receiving goes on."""
        limit = min(2 * self.config.max_buffer_flows, self._unwritten_cap())
        with self._written:
            if self.buffered_flows + self.buffered_rejects < self.config.max_buffer_flows:
                return
            self._write_now.set()
            while (self.buffered_flows + self.buffered_rejects >= limit and not self._write_failures
                   and self._failure is None and self._threads[2].is_alive()):
                self._written.wait(0.1)

    def _unwritten_cap(self) -> int:
        return self.config.max_unwritten_flows or 4 * self.config.max_buffer_flows

    def _bound_unwritten(self) -> None:
        """While writes fail, keep at most ``max_unwritten_flows`` in memory: the oldest go (counted)."""
        cap = self._unwritten_cap()
        with self._lock:
            while self._write_failures and self.buffered_flows + self.buffered_rejects > cap:
                excess = self.buffered_flows + self.buffered_rejects - cap
                held, attr = (self._buffer, "buffered_flows") if self._buffer and (
                    not self._rejects or self.buffered_flows >= self.buffered_rejects) else (self._rejects, "buffered_rejects")
                if not held:  # all of it is being written right now
                    break
                oldest = held[0]
                n = min(excess, oldest.height)
                if attr == "buffered_flows":
                    # The time those flows span is no longer whole in the dataset: it leaves the coverage.
                    gone = oldest.head(n)
                    # [first start, last end]: the interval's end is open, hence the microsecond.
                    span = Coverage.between(gone["ts_start"].min(), gone["ts_end"].max() + timedelta(microseconds=1),  # type: ignore[arg-type, operator]
                                            _COVERAGE_RULE)
                    self._dropped = Coverage.of(self._dropped.intervals + span.intervals, _COVERAGE_RULE)
                if n == oldest.height:
                    held.pop(0)
                else:
                    held[0] = oldest.slice(n)
                setattr(self, attr, getattr(self, attr) - n)
                self.dropped_unwritten += n
                log.error("dropped the %d oldest unwritten %s: files cannot be written and %d are held in memory at most",
                          n, "flows" if attr == "buffered_flows" else "rejects", cap)

    def _write(self) -> None:
        rotate_s = self.config.rotate.total_seconds()
        next_rotation = (time.time() // rotate_s + 1) * rotate_s
        try:
            while True:
                wait = next_rotation - time.time()
                if self._write_failures:
                    wait = min(wait, self._retry_at - time.monotonic())
                self._write_now.wait(max(0.0, wait))
                self._write_now.clear()
                if self._decoded.is_set():  # set before _write_now: seen here whenever it woke us
                    try:
                        self._flush(final=True)
                    except OSError as e:  # reported by stop(), with what could not be written
                        self._unwritten = e
                    return
                with self._lock:
                    held = self.buffered_flows + self.buffered_rejects
                retry = self._write_failures and time.monotonic() >= self._retry_at
                if time.time() >= next_rotation or held >= self.config.max_buffer_flows or retry:
                    self._flush()
                    if time.time() >= next_rotation:
                        next_rotation = (time.time() // rotate_s + 1) * rotate_s
        except BaseException as e:  # a bug must not hang the collector: report it and stop
            self._failure = e
            log.exception("write thread failed")
            self._stopping.set()
        finally:
            with self._written:
                self._written.notify_all()

    # -- writing --------------------------------------------------------------------------------

    def _open_dataset(self) -> None:
        out = self.config.out
        if out.exists():
            if not out.is_dir():
                raise ValueError(f"{out} exists and is not a directory")
            names = {p.name for p in out.iterdir()}
            # A collector killed between opening the folder and its first manifest leaves only
            # the files it opens with: that folder is its, and holds no flow.
            started = names <= {_LOCK_NAME, REJECTS_NAME, f".{MANIFEST_NAME}.dir"}
            if names and not started:
                manifest = read_manifest(out, DATASET_KIND) if (out / MANIFEST_NAME).is_file() else None
                if manifest is None or "collector" not in manifest:
                    raise ValueError(f"{out} is not empty and was not written by `netflowgen collect`; choose another --out")
                if manifest.get("coverage"):
                    self._coverage_before = Coverage.from_dict(manifest["coverage"])
        out.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(out / _LOCK_NAME, "w")  # noqa: SIM115 (held for the collector's life)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise ValueError(f"another collector is writing to {out}") from None
        # Leftovers of a collector that was killed: temporary files are never part of the dataset.
        for stale in out.glob(f"{partition('*')}/.part-*.tmp"):
            stale.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (out / f".{MANIFEST_NAME}.dir" / MANIFEST_NAME).unlink()
        parts = part_files(out)
        for part in parts:
            self.totals.rows_written += pq.read_metadata(part).num_rows
            self.totals.partitions.add(part.parent.name)
            number = part.stem.removeprefix("part-")
            if number.isdigit():
                self._next_part = max(self._next_part, int(number) + 1)
        self.totals.files = len(parts)
        if parts and self._coverage_before is None:
            # A dataset of a collector that did not state its coverage yet: its records tell it.
            self._coverage_before = coverage_of_flows(pl.scan_parquet(parts))
        if not (out / REJECTS_NAME).is_file():
            pl.DataFrame(schema=REJECT_SCHEMA).write_csv(out / REJECTS_NAME)

    def _flush(self, final: bool = False) -> None:
        """Write the buffered rejects and flows (one file per UTC day, each renamed into place when
        complete). A write that fails (disk full, ...) loses nothing that was buffered: the flows
        and rejects not written go back to memory, the failure is counted, and the write is tried
        again after a pause that doubles up to the rotation interval (``final``: now)."""
        if not final and time.monotonic() < self._retry_at:
            return
        with self._lock:
            rejects, flows = self._rejects, self._buffer
            self._rejects, self._buffer = [], []
        if not rejects and not flows:
            return
        days: list[tuple[str, pl.DataFrame]] = []
        try:
            if rejects:
                self._write_rejects(rejects)
                rejects = []
            days = flow_days(pl.concat(flows, how="vertical")) if flows else []
            flows = []
            while days:
                day, part = days[0]
                write_flow_file(self.config.out, day, self._next_part, part, self.config.compression)
                self._next_part += 1
                days.pop(0)
                lo, hi = part["ts_start"].min(), part["ts_end"].max()
                with self._lock:
                    t = self.totals
                    t.files += 1
                    t.rows_written += part.height
                    t.partitions.add(partition(day))
                    t.first_start = lo if t.first_start is None or lo < t.first_start else t.first_start  # type: ignore[operator]
                    t.last_end = hi if t.last_end is None or hi > t.last_end else t.last_end  # type: ignore[operator]
                    self.buffered_flows -= part.height
        except OSError as e:
            # PyArrow's full disk is an OSError with no errno, "[errno 28]" in its text.
            code = e.errno if e.errno is not None else write_failure(self.config.out, e).errno
            name = errno.errorcode.get(code or 0, type(e).__name__)
            with self._lock:
                self.write_errors[name] += 1
            self._write_failures += 1
            pause = min(0.5 * 2 ** (self._write_failures - 1), self.config.rotate.total_seconds())
            self._retry_at = time.monotonic() + pause
            if self._write_failures == 1 or final:
                log.error("cannot write to %s (%s): keeping %d flows and %d rejects in memory, trying again in %.1f s",
                          self.config.out, e.strerror or e, self.buffered_flows, self.buffered_rejects, pause)
            if final:
                raise
            return
        finally:
            # What was not written (rejects, or the failed day and the days after it) goes back in
            # front of what was decoded meanwhile, and waits for the next try.
            with self._written:
                self._rejects[:0] = rejects
                self._buffer[:0] = flows + [part for _, part in days]
                self._written.notify_all()
        if self._write_failures:
            log.warning("writing to %s again after %d failed attempts", self.config.out, self._write_failures)
        self._write_failures = 0
        self._write_manifest(running=True)

    def _write_rejects(self, rejects: list[pl.DataFrame]) -> None:
        frame = pl.concat(rejects)
        data = frame.write_csv(include_header=False).encode()
        fd = os.open(self.config.out / REJECTS_NAME, os.O_WRONLY | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            except OSError:
                # A line cut in half would be a broken row: the file goes back to what it was.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
        with self._lock:
            self.buffered_rejects -= frame.height
            self.totals.rows_rejected += frame.height

    def _write_manifest(self, running: bool) -> None:
        """Replace the manifest; while running, a failed write is counted and the old manifest
        kept (the next rotation writes it again)."""
        try:
            self._replace_manifest(running)
        except OSError as e:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.config.out / f".{MANIFEST_NAME}.dir")
            if not running:
                raise
            with self._lock:
                self.write_errors[errno.errorcode.get(e.errno or 0, type(e).__name__)] += 1
            log.error("cannot update %s (%s): the previous manifest stays", self.config.out / MANIFEST_NAME, e.strerror or e)

    def _replace_manifest(self, running: bool) -> None:
        out = self.config.out
        tmp_dir = out / f".{MANIFEST_NAME}.dir"
        tmp_dir.mkdir(exist_ok=True)
        summary = self.summary()
        summary["running"] = running
        write_dataset_manifest(
            tmp_dir,
            collector={"listen": f"udp://{self.address[0]}:{self.address[1]}", "started": self._started_utc,
                       "updated": datetime.now(UTC).isoformat(timespec="seconds"),
                       "rotate_seconds": self.config.rotate.total_seconds(), "running": running},
            summary={
                "rows_written": summary["rows_written"], "rows_rejected": summary["rows_rejected"],
                "rows_read": summary["rows_written"] + summary["rows_rejected"],
                "first_start": summary["first_start"], "last_end": summary["last_end"],
                "files": summary["files"], "partitions": summary["partitions"],
                "inputs": [{"source": f"udp://{e}", "format": "netflow", "rows_read": s["records"],
                            "rows_written": s["flows"], "rows_rejected": sum(s["rejected"].values())}
                           for e, s in summary["exporters"].items()],
                "exporters": summary["exporters"],
            },
            coverage=self.coverage().to_dict(),
        )
        # Written beside and renamed over the old one: readers see the old or the new manifest.
        os.replace(tmp_dir / MANIFEST_NAME, out / MANIFEST_NAME)
        tmp_dir.rmdir()

    # -- reporting ------------------------------------------------------------------------------

    def coverage(self) -> Coverage:
        """What the dataset observed: for each collector run into it, the span of the flow ends
        it received (before ``filter``, which selects flows, not the time listened). The
        collector listened through that span, so a silence inside it is quiet traffic, not
        missing data (the records rule of :mod:`netflowgen.dataset.coverage`, made for files,
        would take a quiet start before a busy spell for stragglers); the time between runs is
        not covered, nor the span of flows dropped unwritten (disk full and memory full: missing
        data, not quiet traffic)."""
        with self._lock:
            observed, dropped = self._observed, self._dropped
        intervals = list(self._coverage_before.intervals) if self._coverage_before else []
        if observed is not None:
            first, last = observed
            intervals += Coverage.between(first, max(last, first + MIN_WIDTH), _COVERAGE_RULE).intervals
        return Coverage.of(intervals, _COVERAGE_RULE).without(dropped)

    def summary(self) -> dict[str, Any]:
        """Counters of this run (files and rows: of the whole dataset)."""
        with self._lock:
            exporters = {e: s.to_dict() for e, s in sorted(self.decoder.stats.items())}
            t = self.totals
            totals = {
                "files": t.files, "rows_written": t.rows_written, "rows_rejected": t.rows_rejected,
                "first_start": t.first_start.isoformat() if t.first_start else None,  # type: ignore[attr-defined]
                "last_end": t.last_end.isoformat() if t.last_end else None,  # type: ignore[attr-defined]
                "partitions": sorted(t.partitions), "buffered_flows": self.buffered_flows,
                "write_errors": dict(self.write_errors), "dropped_unwritten": self.dropped_unwritten,
                "evictions": dict(self.decoder.evictions), "domains": self.decoder.domains,
                "templates": self.decoder.template_count,
            }
        stats = list(exporters.values())
        return {
            "out": str(self.config.out),
            "listen": f"udp://{self.address[0]}:{self.address[1]}",
            "seconds": round(time.monotonic() - self._started_at, 3) if self._started_at else 0.0,
            "rcvbuf_requested": self.config.rcvbuf,
            "rcvbuf_granted": self.rcvbuf_granted,
            "rcvbuf_forced": self.rcvbuf_forced,
            "kernel_drops": self.kernel_drops(),
            "packets": sum(s["packets"] for s in stats),
            "records": sum(s["records"] for s in stats),
            "flows": sum(s["flows"] for s in stats),
            "errors": sum(sum(s["packet_errors"].values()) + sum(s["set_errors"].values()) for s in stats),
            "rejected": sum(sum(s["rejected"].values()) for s in stats),
            "lost_records": sum(s["lost_records"] for s in stats),
            "lost_packets": sum(s["lost_packets"] for s in stats),
            **totals,
            "exporters": exporters,
        }

    def metrics_text(self) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            stats = [ExporterStats(**vars(s)) for s in self.decoder.stats.values()]  # a snapshot
            for fresh, s in zip(stats, self.decoder.stats.values()):
                for name in ("versions", "packet_errors", "set_errors", "rejected", "sampled"):
                    setattr(fresh, name, Counter(getattr(s, name)))
            t = self.totals
            files, rows, rejected, buffered = t.files, t.rows_written, t.rows_rejected, self.buffered_flows
            backlog, templates, fields = self.backlog, self.decoder.template_count, self.decoder.field_count
            domains, evictions, write_errors = self.decoder.domains, Counter(self.decoder.evictions), Counter(self.write_errors)
            dropped_unwritten = self.dropped_unwritten
        http_counts = dict(self._http.counts) if self._http is not None else {}
        lines: list[str] = []

        def metric(name: str, kind: str, doc: str, samples: list[tuple[dict[str, str], float | int]]) -> None:
            lines.append(f"# HELP netflowgen_collect_{name} {doc}")
            lines.append(f"# TYPE netflowgen_collect_{name} {kind}")
            for labels, value in samples:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                lines.append(f"netflowgen_collect_{name}{{{text}}} {value}" if text else f"netflowgen_collect_{name} {value}")

        def per_exporter(attr: str) -> list[tuple[dict[str, str], float | int]]:
            return [({"exporter": s.exporter}, getattr(s, attr)) for s in stats]

        metric("packets_total", "counter", "Datagrams received.", per_exporter("packets"))
        metric("datagram_bytes_total", "counter", "Bytes of datagrams received.", per_exporter("datagram_bytes"))
        metric("records_total", "counter", "Flow data records decoded.", per_exporter("records"))
        metric("flows_total", "counter", "Flow records that passed validation.", per_exporter("flows"))
        metric("flow_bytes_total", "counter", "Bytes the valid flows account for.", per_exporter("flow_bytes"))
        metric("flow_packets_total", "counter", "Packets the valid flows account for.", per_exporter("flow_packets"))
        metric("decode_errors_total", "counter", "Datagrams (level=packet) and sets (level=set) skipped, by reason.",
               [({"exporter": s.exporter, "level": "packet", "reason": r}, n) for s in stats for r, n in s.packet_errors.items()]
               + [({"exporter": s.exporter, "level": "set", "reason": r}, n) for s in stats for r, n in s.set_errors.items()])
        metric("rejected_total", "counter", "Decoded records validation set aside, by reason.",
               [({"exporter": s.exporter, "reason": r}, n) for s in stats for r, n in s.rejected.items()])
        metric("sampled_records_total", "counter", "Flow records whose packets and bytes were scaled up by the exporter's "
               "packet sampling (1 in N).",
               [({"exporter": s.exporter, "sampling": r}, n) for s in stats for r, n in s.sampled.items()])
        metric("options_records_total", "counter", "Options data records (decoded and skipped).", per_exporter("options_records"))
        metric("templates", "gauge", "Templates currently defined.", per_exporter("templates"))
        metric("template_redefinitions_total", "counter", "Templates replaced by a different definition.", per_exporter("template_redefinitions"))
        metric("sequence_gaps_total", "counter", "Forward jumps of export sequence numbers.", per_exporter("sequence_gaps"))
        metric("sequence_resets_total", "counter", "Backward jumps of export sequence numbers (restart, reordering).", per_exporter("sequence_resets"))
        metric("lost_total", "counter", "Export the sequence numbers say was never received (unit: records for v5 and IPFIX, packets for v9).",
               [({"exporter": s.exporter, "unit": "records"}, s.lost_records) for s in stats]
               + [({"exporter": s.exporter, "unit": "packets"}, s.lost_packets) for s in stats])
        drops = self.kernel_drops()
        if drops is not None:
            metric("kernel_drops_total", "counter", "Datagrams the kernel dropped on the socket (buffer full).", [({}, drops)])
        metric("socket_buffer_bytes", "gauge", "Kernel socket buffer granted.", [({}, self.rcvbuf_granted)])
        metric("backlog_datagrams", "gauge", "Datagrams received and not yet decoded.", [({}, backlog)])
        metric("buffered_flows", "gauge", "Decoded flows waiting for the next file.", [({}, buffered)])
        metric("files_written_total", "counter", "Parquet files in the dataset.", [({}, files)])
        metric("rows_written_total", "counter", "Flows in the dataset's files.", [({}, rows)])
        metric("rows_rejected_total", "counter", "Records in the rejects file.", [({}, rejected)])
        metric("template_cache", "gauge", "Templates held, all exporters.", [({}, templates)])
        metric("template_fields", "gauge", "Fields of the templates held, all exporters.", [({}, fields)])
        metric("domains", "gauge", "(exporter, version, observation domain) tracked.", [({}, domains)])
        metric("exporters_tracked", "gauge", "Source addresses with their own counters (the rest are exporter=\"other\").",
               [({}, sum(1 for s in stats if s.exporter != "other"))])
        metric("evictions_total", "counter", "State forgotten to stay within the limits: template, domain (with its templates), "
               "exporter (counters folded into exporter=\"other\"), sampler (a domain's oldest sampler id).",
               [({"kind": k}, evictions.get(k, 0)) for k in ("template", "domain", "exporter", "sampler")])
        metric("write_errors_total", "counter", "Failed writes of files, rejects or the manifest, by errno (the data stays buffered).",
               [({"errno": k}, n) for k, n in sorted(write_errors.items())])
        metric("dropped_unwritten_total", "counter", "Flows and rejects dropped: they could not be written and memory was full.",
               [({}, dropped_unwritten)])
        if http_counts:
            metric("http_connections_total", "counter", "Connections to this endpoint, by outcome.",
                   [({"outcome": k}, n) for k, n in http_counts.items()])
        metric("uptime_seconds", "gauge", "Seconds since the collector started.", [({}, round(time.monotonic() - self._started_at, 3))])
        return "\n".join(lines) + "\n"

    def _start_metrics(self, address: tuple[str, int]) -> None:
        def status() -> dict[str, Any]:
            return {"status": "ok" if self.healthy() else "failing", "uptime_seconds": round(time.monotonic() - self._started_at, 3),
                    "threads": {t.name: t.is_alive() for t in self._threads},
                    "error": None if self._failure is None else str(self._failure)}

        self._http = serve_routes(address, {"/metrics": metrics_route(self.metrics_text), "/health": health_route(status, self.healthy)},
                                  "metrics", "metrics")
        self.metrics_address = self._http.server_address[:2]  # type: ignore[assignment]


def flow_days(flows: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """Flows split by the UTC day of their start (``YYYY-MM-DD``), in order of first appearance:
    the collector writes a file per day, in that day's partition."""
    # The date formatted once per day (a text per row would cost as much as the decoding).
    days = flows.with_columns(pl.col("ts_start").dt.date().alias("_day"))
    return [(day.isoformat(), part.drop("_day"))
            for (day,), part in days.partition_by("_day", as_dict=True, maintain_order=True).items()]


def write_flow_file(out: Path, day: str, number: int, flows: pl.DataFrame, compression: str = "zstd") -> Path:
    """Write ``flows`` (canonical columns) as part ``number`` of ``day`` in the flow dataset
    ``out``, under a hidden temporary name renamed into place when complete: readers of the
    growing dataset never see a partial file. The path written."""
    target = part_path(out, day, number)
    folder = target.parent
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{target.name}.tmp"
    try:
        pq.write_table(flows.to_arrow().cast(arrow_schema()), tmp, compression="NONE" if compression == "none" else compression)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
