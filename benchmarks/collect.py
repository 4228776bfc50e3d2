"""Collector throughput: the highest flows/s received with zero loss on loopback by
``netflowgen collect`` and by ``nfcapd``, fed the same pre-encoded NetFlow v9 and IPFIX streams in
the same run, and their ratio.

Beside the trials, the collector's own stages are timed in memory on the same stream (no socket,
one core): the decoder (feed and take) and the writer (its Parquet files, lz4 and zstd). Their
combined rate bounds what any receive loop could reach with them, and is printed against nfcapd.

How a rate is tried: a stream of ``--flows`` synthetic flows is encoded once per format (v9: an
IPv4 router template with sysUptime times, 30 records per datagram; IPFIX: the same fields with
absolute milliseconds; templates resent every 20 datagrams; correct sequence numbers). A paced
sender (this process, bursts every millisecond) sends the whole stream at the rate tried to a
fresh collector on 127.0.0.1, which is then stopped:

* ``netflowgen collect`` (its CLI, ``--json``): zero loss = every flow decoded and written, no
  kernel drop, no sequence gap;
* ``nfcapd -B``: zero loss = ``nfdump -I`` counts every flow in the file it wrote.

The rate is doubled from ``--start`` until a trial loses flows, then bisected ``--steps`` times;
where no rate lost anything (the sender, one Python process, has its own ceiling of some 3 million
flows/s on 2 cores), the figure is marked as a lower bound (``>=``).
Both collectors get the same kernel socket buffer (``--rcvbuf``, at most ``net.core.rmem_max`` so
that nfcapd's plain SO_RCVBUF gets it too) and the stream is made long enough that this buffer
holds only a small part of it; ``netflowgen collect`` also gets a small backlog of datagrams
ahead of its decoder (``--backlog-bytes``), so that the figure is its sustained rate, not the
size of its buffers. For the same reason the stream is longer than what ``netflowgen collect``
holds in memory before it writes a file (``--max-buffer-flows``, its default of a million, against
a 3-million-flow stream): files are written while the stream arrives, as they are in steady
operation (a stream that fits in memory is written only after it ends, which measures a burst).
The rate reported is the rate the sender achieved.

    .venv/bin/python benchmarks/collect.py                  # both formats (several minutes on 2 cores)
    .venv/bin/python benchmarks/collect.py --flows 200000 --max-buffer-flows 50000 --steps 2 --formats v9 --json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness import machine

REPO = Path(__file__).resolve().parents[1]
T0 = 1_709_294_400  # 2024-03-01 12:00:00 UTC
RECORDS_PER_DATAGRAM = 30
TEMPLATE_EVERY = 20
TEMPLATE_ID = 256

# Fields of an IPv4 router template: (IANA id, numpy type).
_COMMON = [(8, ">u4"), (12, ">u4"), (15, ">u4"), (7, ">u2"), (11, ">u2"), (4, "u1"), (6, "u1"), (5, "u1"),
           (2, ">u4"), (1, ">u4"), (10, ">u2"), (14, ">u2"), (16, ">u2"), (17, ">u2"), (9, "u1"), (13, "u1")]
FIELDS = {
    "v9": _COMMON + [(22, ">u4"), (21, ">u4")],
    "ipfix": _COMMON + [(152, ">u8"), (153, ">u8")],
}


@dataclass
class Stream:
    format: str
    datagrams: list[bytes]
    flows: int
    bytes_on_wire: int


def encode(fmt: str, n: int, seed: int = 0) -> Stream:
    """``n`` synthetic flows as v9 or IPFIX datagrams (numpy records, sliced into datagrams)."""
    rng = np.random.default_rng(seed)
    fields = FIELDS[fmt]
    dtype = np.dtype([(f"f{e}", t) for e, t in fields])
    rec = np.zeros(n, dtype)
    rec["f8"] = 0x0A000000 + rng.integers(1, 1 << 16, n)  # 10.0.x.y
    rec["f12"] = rng.integers(0x01000000, 0xDF000000, n)
    rec["f7"] = rng.integers(1024, 65536, n)
    rec["f11"] = rng.choice(np.array([443, 80, 53, 22, 123, 8080]), n)
    rec["f4"] = rng.choice(np.array([6, 17, 1]), n, p=[0.7, 0.25, 0.05])
    rec["f6"] = np.where(rec["f4"] == 6, 0x1B, 0)
    packets = 1 + rng.integers(0, 50, n)
    rec["f2"] = packets
    rec["f1"] = packets * rng.integers(40, 1500, n)
    rec["f10"], rec["f14"] = 1, 2
    uptime_ms = 3_600_000  # the exporter has been up for an hour at T0
    start = rng.integers(0, 50_000, n)
    if fmt == "v9":
        rec["f22"] = uptime_ms - 60_000 + start
        rec["f21"] = uptime_ms - 60_000 + start + 500
    else:
        rec["f152"] = T0 * 1000 - 60_000 + start
        rec["f153"] = T0 * 1000 - 60_000 + start + 500
    raw = rec.tobytes()
    size = dtype.itemsize
    template_fields = b"".join(struct.pack("!HH", e, np.dtype(t).itemsize) for e, t in fields)
    template = struct.pack("!HH", TEMPLATE_ID, len(fields)) + template_fields
    template_set = struct.pack("!HH", 0 if fmt == "v9" else 2, 4 + len(template)) + template
    datagrams = []
    for k, i in enumerate(range(0, n, RECORDS_PER_DATAGRAM)):
        chunk = raw[i * size:min(i + RECORDS_PER_DATAGRAM, n) * size]
        body = chunk + b"\0" * (-len(chunk) % 4)
        sets = (template_set if k % TEMPLATE_EVERY == 0 else b"") + struct.pack("!HH", TEMPLATE_ID, 4 + len(body)) + body
        count = len(chunk) // size
        if fmt == "v9":
            header = struct.pack("!HHIIII", 9, count + (k % TEMPLATE_EVERY == 0), uptime_ms, T0, k, 1)
        else:
            header = struct.pack("!HHIII", 10, 16 + len(sets), T0, i, 1)
        datagrams.append(header + sets)
    return Stream(fmt, datagrams, n, sum(len(d) for d in datagrams))


def send(stream: Stream, port: int, rate: float) -> float:
    """Send the stream at ``rate`` flows/s; the rate achieved (flows / seconds from first to last send)."""
    per_second = rate / RECORDS_PER_DATAGRAM
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        start = time.perf_counter()
        sent = 0
        total = len(stream.datagrams)
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * per_second) + 1)
            while sent < due:
                s.send(stream.datagrams[sent])
                sent += 1
            if sent < total:
                time.sleep(0.001)
        elapsed = time.perf_counter() - start
    return stream.flows / max(elapsed, 1e-9)


# --- the collectors ----------------------------------------------------------------------------


@dataclass
class Trial:
    collector: str
    format: str
    rate_asked: float
    rate_sent: float
    flows_received: int
    lossless: bool
    detail: dict[str, object] = field(default_factory=dict)


def trial_collect(stream: Stream, rate: float, args: argparse.Namespace, work: Path) -> Trial:
    out = Path(tempfile.mkdtemp(dir=work)) / "flows"
    command = [sys.executable, "-m", "netflowgen.cli", "collect", "--listen", "127.0.0.1:0", "--out", str(out),
               "--rcvbuf", str(args.rcvbuf), "--backlog-bytes", str(args.backlog_bytes), "--compression", args.compression,
               "--max-buffer-flows", str(args.max_buffer_flows), "--json"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        match = re.search(r"udp://127\.0\.0\.1:(\d+)", line)
        if not match:
            raise RuntimeError(f"netflowgen collect did not start: {line}{proc.stderr.read()}")  # type: ignore[union-attr]
        sent = send(stream, int(match.group(1)), rate)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"netflowgen collect failed ({proc.returncode}): {stderr[-2000:]}")
    summary = json.loads(stdout)
    shutil.rmtree(out.parent, ignore_errors=True)
    lossless = (summary["rows_written"] == stream.flows and summary["kernel_drops"] in (0, None)
                and summary["lost_records"] == 0 and summary["lost_packets"] == 0)
    detail = {k: summary[k] for k in ("packets", "flows", "files", "kernel_drops", "lost_records", "lost_packets", "rcvbuf_granted", "seconds")}
    return Trial("netflowgen collect", stream.format, rate, sent, summary["rows_written"], lossless, detail)


def _udp_socket(port: int) -> list[str] | None:
    """The /proc/net/udp row of the socket bound to 127.0.0.1:port (None: not bound)."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1] == f"0100007F:{port:04X}":
            return parts
    return None


def trial_nfcapd(stream: Stream, rate: float, args: argparse.Namespace, work: Path) -> Trial:
    folder = Path(tempfile.mkdtemp(dir=work))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(["nfcapd", "-w", str(folder), "-b", "127.0.0.1", "-p", str(port), "-B", str(args.rcvbuf), "-t", "3600"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while _udp_socket(port) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nfcapd did not start")
            time.sleep(0.01)
        sent = send(stream, port, rate)
        # nfcapd stops reading at SIGTERM: first let it read what the kernel holds (rx_queue empty).
        deadline = time.monotonic() + 60
        while (row := _udp_socket(port)) is not None and int(row[4].split(":")[1], 16) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    files = [p for p in folder.iterdir() if re.fullmatch(r"nfcapd\.\d{12}", p.name)]
    flows = 0
    for f in files:
        info = subprocess.run(["nfdump", "-I", "-r", str(f)], capture_output=True, text=True, check=True).stdout
        flows += int(re.search(r"^Flows: (\d+)", info, re.MULTILINE).group(1))  # type: ignore[union-attr]
    shutil.rmtree(folder, ignore_errors=True)
    errors = re.search(r"Sequence Errors: (\d+)", log)
    detail = {"sequence_errors": int(errors.group(1)) if errors else None}
    return Trial("nfcapd", stream.format, rate, sent, flows, flows == stream.flows, detail)


def search(run, stream: Stream, args: argparse.Namespace, work: Path, trials: list[Trial], say) -> tuple[float, bool]:  # type: ignore[no-untyped-def]
    """Highest achieved rate with zero loss (doubling, then bisection), and whether no loss was
    found at all (the figure is then a lower bound: the sender or --max-rate was the limit)."""
    best, lo, hi = 0.0, 0.0, None
    rate = args.start
    while hi is None:
        t = run(stream, rate, args, work)
        trials.append(t)
        say(t)
        if t.lossless:
            best, lo = max(best, t.rate_sent), rate
            rate *= 2
            if rate > args.max_rate or t.rate_sent < 0.9 * t.rate_asked:
                return best, True
        else:
            hi = rate
    for _ in range(args.steps):
        rate = (lo + hi) / 2
        t = run(stream, rate, args, work)
        trials.append(t)
        say(t)
        if t.lossless:
            best, lo = max(best, t.rate_sent), rate
        else:
            hi = rate
    return best, False


def stages(stream: Stream, work: Path, repeats: int = 3, compression: str = "zstd") -> dict[str, float]:
    """What the collector's own stages cost on one core, in memory (no socket): the decoder's feed
    and take, and the writing of the decoded flows by the collector's writer with zstd and with
    lz4; flows/s, the best of ``repeats``. Decoding and writing with ``compression`` together
    bound what any receive loop could reach with them on the one core the sender leaves."""
    from netflowgen.collect.netflow import Decoder
    from netflowgen.collect.server import flow_days, write_flow_file

    def best(run) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        return stream.flows / min(times)

    decoder = Decoder()
    held: dict[str, object] = {}

    def decode() -> None:
        for datagram in stream.datagrams:
            decoder.feed(datagram, "127.0.0.1")
        held["flows"] = decoder.take().flows

    out: dict[str, float] = {"decode_flows_per_s": best(decode)}
    for compression in ("zstd", "lz4"):
        def write() -> None:
            folder = Path(tempfile.mkdtemp(dir=work))
            for number, (day, part) in enumerate(flow_days(held["flows"])):  # type: ignore[arg-type]
                write_flow_file(folder, day, number, part, compression)
            shutil.rmtree(folder)

        out[f"write_{compression}_flows_per_s"] = best(write)
    out["decode_and_write_flows_per_s"] = 1 / (1 / out["decode_flows_per_s"] + 1 / out[f"write_{compression}_flows_per_s"])
    return {k: round(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=3_000_000, help="flows per trial stream")
    parser.add_argument("--max-buffer-flows", type=int, default=None,
                        help="netflowgen collect's --max-buffer-flows (default: its default); below --flows, so that files are written during the trial")
    parser.add_argument("--formats", default="v9,ipfix")
    parser.add_argument("--start", type=float, default=100_000, help="first rate tried, flows/s")
    parser.add_argument("--max-rate", type=float, default=6_400_000, help="stop doubling here")
    parser.add_argument("--steps", type=int, default=3, help="bisection steps after the first loss")
    parser.add_argument("--rcvbuf", type=int, default=None, help="socket buffer asked by both (default: net.core.rmem_max)")
    parser.add_argument("--backlog-bytes", type=int, default=1 << 20, help="netflowgen collect's datagram backlog")
    parser.add_argument("--compression", default="zstd", choices=("zstd", "lz4"),
                        help="netflowgen collect's --compression (default: its default, zstd)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.max_buffer_flows is None:
        from netflowgen.cli.common import default
        from netflowgen.collect.server import CollectorConfig
        args.max_buffer_flows = default(CollectorConfig, "max_buffer_flows")
    if args.max_buffer_flows >= args.flows:
        parser.error(f"--max-buffer-flows ({args.max_buffer_flows:,}) must be below --flows ({args.flows:,}): "
                     "otherwise no file is written while the stream arrives")
    if args.rcvbuf is None:
        args.rcvbuf = int(Path("/proc/sys/net/core/rmem_max").read_text())
    for program in ("nfcapd", "nfdump"):
        if shutil.which(program) is None:
            sys.exit(f"{program} is needed (apt-get install nfdump)")

    def say(t: Trial) -> None:
        if not args.json:
            print(f"  {t.collector:<19} {t.format:<5} asked {t.rate_asked:>11,.0f}  sent {t.rate_sent:>11,.0f} flows/s  "
                  f"received {t.flows_received:>9,}/{args.flows:,}  {'ok' if t.lossless else 'LOSS'}  {t.detail}", flush=True)

    results: dict[str, dict[str, float]] = {}
    trials: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="netflowgen-bench-collect-") as tmp:
        for fmt in args.formats.split(","):
            stream = encode(fmt, args.flows)
            if not args.json:
                print(f"{fmt}: {args.flows:,} flows in {len(stream.datagrams):,} datagrams ({stream.bytes_on_wire / 1e6:.1f} MB)", flush=True)
            collect, collect_bound = search(trial_collect, stream, args, Path(tmp), trials, say)
            nfcapd, nfcapd_bound = search(trial_nfcapd, stream, args, Path(tmp), trials, say)
            cost = stages(stream, Path(tmp), compression=args.compression)
            if not args.json:
                print(f"  stages on one core, in memory: decode {cost['decode_flows_per_s']:,} flows/s, write "
                      f"{cost['write_zstd_flows_per_s']:,} (zstd) / {cost['write_lz4_flows_per_s']:,} (lz4), "
                      f"both {cost['decode_and_write_flows_per_s']:,}", flush=True)
            results[fmt] = {"collect_flows_per_s": round(collect), "nfcapd_flows_per_s": round(nfcapd),
                            "ratio_collect_to_nfcapd": round(collect / nfcapd, 3) if nfcapd else float("nan"),
                            # True: no loss up to the highest rate sent, the figure is a lower bound.
                            "collect_is_lower_bound": collect_bound, "nfcapd_is_lower_bound": nfcapd_bound,
                            "stages": cost,
                            # The decoder and writer alone, with no receiving at all, against nfcapd.
                            "ratio_stage_ceiling_to_nfcapd": round(cost["decode_and_write_flows_per_s"] / nfcapd, 3) if nfcapd else float("nan")}
    report = {
        "results": results,
        "settings": {"flows": args.flows, "max_buffer_flows": args.max_buffer_flows, "rcvbuf": args.rcvbuf, "backlog_bytes": args.backlog_bytes, "steps": args.steps,
                     "compression": args.compression,
                     "records_per_datagram": RECORDS_PER_DATAGRAM},
        "machine": {**machine(), "nfcapd": subprocess.run(["nfcapd", "-V"], capture_output=True, text=True, check=False).stdout.strip()},
        "trials": [asdict(t) for t in trials],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print()
    print(f"{'format':<7}{'collect flows/s':>18}{'nfcapd flows/s':>18}{'collect/nfcapd':>16}{'decode+write alone/nfcapd':>28}")
    for fmt, r in results.items():
        c = f"{'>=' if r['collect_is_lower_bound'] else ''}{r['collect_flows_per_s']:,}"
        n = f"{'>=' if r['nfcapd_is_lower_bound'] else ''}{r['nfcapd_flows_per_s']:,}"
        ratio = f"{'<=' if r['nfcapd_is_lower_bound'] and not r['collect_is_lower_bound'] else ''}{r['ratio_collect_to_nfcapd']:.3f}"
        ceiling = f"{'<=' if r['nfcapd_is_lower_bound'] else ''}{r['ratio_stage_ceiling_to_nfcapd']:.3f}"
        print(f"{fmt:<7}{c:>18}{n:>18}{ratio:>16}{ceiling:>28}")
    print(f"(zero loss on loopback, {args.flows:,}-flow streams, a file every {args.max_buffer_flows:,} flows, socket buffer {args.rcvbuf:,} B asked by both, "
          f"collect backlog {args.backlog_bytes:,} B; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
