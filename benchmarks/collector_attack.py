"""The collector under attack: malformed and adversarial NetFlow/IPFIX export at a bounded rate on
loopback, hostile HTTP clients on its /metrics port (and on a detector's API with --detector),
then valid flows; the figures come from /metrics and /proc.

``netflowgen collect`` runs as its own process (the CLI, as an operator runs it). Each attack
comes from its own loopback source addresses (all of 127.0.0.0/8 is loopback on Linux), so that
its datagrams are accounted for separately in the collector's per-exporter counters:

* ``random``: random bytes, 0 to 1,500 of them;
* ``truncated``: v5, v9 and IPFIX headers cut short;
* ``before-template``: v9 and IPFIX data sets for templates never sent;
* ``absurd-fields``: IPFIX templates claiming 65,535 fields, and templates of 2,000 real fields;
* ``zero-length``: templates with a field of length 0;
* ``set-past-end``: set lengths that run past the datagram;
* ``huge``: 65,507-byte datagrams (the largest UDP payload over IPv4): random, and IPFIX with
  one 65,491-byte data set of a defined template (some 1,300 garbage records each);
* ``churn-domains``: one address sending v9 templates under thousands of source ids;
* ``churn-exporters``: thousands of addresses each defining templates;
* ``valid``: IPFIX from 127.0.0.99 after everything else: every flow must be written.

Meanwhile the HTTP endpoint gets garbage requests, huge headers and ``--slowloris`` connections
that send half a request and wait. The figures: the collector stays up and its threads stay
bounded; every datagram is received (kernel drops are reported) and every bad one is counted
under a reason (per attack: datagrams sent, received, counted bad, and the reasons); evictions;
peak resident memory (VmHWM) against the stated bound and as a ratio to the idle collector's
resident memory measured in the same run; SIGTERM to exit; tracebacks printed (0).

    .venv/bin/python benchmarks/collector_attack.py                    # about a minute
    .venv/bin/python benchmarks/collector_attack.py --rate 5000 --json
    .venv/bin/python benchmarks/collector_attack.py --detector runs/det  # and a detector's API
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

T0 = 1_709_294_400
V4_MS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (2, 8), (1, 8), (152, 8), (153, 8)]
V4_MS_LEN = sum(n for _, n in V4_MS)
VALID_SOURCE = "127.0.0.99"
#: Stated bound on the collector's peak resident memory under this attack, MiB: about 200 MB of
#: interpreter, Polars and Arrow, the 64 MiB receive arena, the template limits (Decoder: ~90 MB at
#: most), and decoded batches of the huge datagrams' garbage records.
RSS_BOUND_MIB = 1024


# --- packets -------------------------------------------------------------------------------------


def ipfix(sets: list[bytes], seq: int = 0, domain: int = 0, length: int | None = None) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body) if length is None else length, T0, seq, domain) + body


def v9(sets: list[bytes], seq: int = 0, source_id: int = 0) -> bytes:
    return struct.pack("!HHIIII", 9, len(sets), 1000, T0, seq, source_id) + b"".join(sets)


def template_set(version: int, templates: list[tuple[int, list[tuple[int, int]]]], n_fields: int | None = None) -> bytes:
    body = b""
    for tid, fields in templates:
        body += struct.pack("!HH", tid, len(fields) if n_fields is None else n_fields)
        body += b"".join(struct.pack("!HH", e, n) for e, n in fields)
    return struct.pack("!HH", 0 if version == 9 else 2, 4 + len(body)) + body


def data_set(tid: int, body: bytes, length: int | None = None) -> bytes:
    return struct.pack("!HH", tid, 4 + len(body) if length is None else length) + body


def v4_record(k: int) -> bytes:
    src = socket.inet_aton(f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}")
    ms = (T0 + k % 600) * 1000
    return src + socket.inet_aton("192.0.2.9") + struct.pack("!HHBBQQQQ", 1024 + k % 60000, 443, 6, 0x12, 3, 180, ms, ms + 5)


def attacks(rng: random.Random, scale: int) -> dict[str, list[tuple[str, bytes]]]:
    """attack name -> (source address, datagram) in sending order."""
    out: dict[str, list[tuple[str, bytes]]] = {}
    out["random"] = [("127.0.1.1", rng.randbytes(rng.randint(0, 1500))) for _ in range(scale)]
    heads = [struct.pack("!H", 5) + rng.randbytes(10), struct.pack("!H", 9) + rng.randbytes(8), struct.pack("!H", 10) + rng.randbytes(6)]
    out["truncated"] = [("127.0.1.2", heads[k % 3]) for k in range(scale)]
    out["before-template"] = [("127.0.1.3", (v9 if k % 2 else ipfix)([data_set(300 + k % 50, rng.randbytes(40 * 10))]))
                              for k in range(scale)]
    # 65,535 fields claimed in a few bytes; 2,000 real fields (beyond the decoder's 1,024).
    out["absurd-fields"] = [("127.0.1.4", ipfix([template_set(10, [(256, [(1, 4)] * 4)], n_fields=65535)]) if k % 2 else
                             ipfix([template_set(10, [(257, [(210, 1)] * 2000)])])) for k in range(scale // 10)]
    out["zero-length"] = [("127.0.1.5", (ipfix if k % 2 else lambda s: v9(s))([template_set(10 if k % 2 else 9, [(258, [(8, 4), (12, 0)])])]))
                          for k in range(scale)]
    out["set-past-end"] = [("127.0.1.6", ipfix([struct.pack("!HH", 2, 60000) + rng.randbytes(20)])) for _ in range(scale)]
    big_body = 65_507 - 16 - 4
    huge = [("127.0.1.7", rng.randbytes(65_507)) for _ in range(20)]
    huge += [("127.0.1.8", ipfix([template_set(10, [(256, V4_MS)])]))]
    huge += [("127.0.1.8", ipfix([data_set(256, rng.randbytes(big_body))], seq=k)) for k in range(20)]
    out["huge"] = huge
    out["churn-domains"] = [("127.0.1.9", v9([template_set(9, [(256 + i, V4_MS) for i in range(10)])], source_id=k))
                            for k in range(7 * scale)]
    out["churn-exporters"] = [(f"127.3.{k >> 8}.{k & 255}", ipfix([template_set(10, [(256 + i, V4_MS) for i in range(10)])], domain=k))
                              for k in range(5 * scale)]
    return out


def valid_flows(n: int) -> list[bytes]:
    """IPFIX from the valid exporter: the template first, then 30 flows a datagram."""
    out = [ipfix([template_set(10, [(400, V4_MS)])], seq=0)]
    seq = 0
    for start in range(0, n, 30):
        records = b"".join(v4_record(k) for k in range(start, min(start + 30, n)))
        out.append(ipfix([data_set(400, records)], seq=seq))
        seq += min(30, n - start)
    return out


class Sender:
    """Paced sends from many loopback source addresses (one socket per address, kept)."""

    def __init__(self, target: tuple[str, int], rate: float) -> None:
        self.target, self.rate = target, rate
        self.sockets: dict[str, socket.socket] = {}
        self.sent = 0

    def send(self, datagrams: list[tuple[str, bytes]]) -> None:
        start, base = time.perf_counter(), self.sent
        for source, data in datagrams:
            s = self.sockets.get(source)
            if s is None:
                if len(self.sockets) > 512:  # a few thousand sources: keep the open files bounded
                    for old in self.sockets.values():
                        old.close()
                    self.sockets.clear()
                s = self.sockets[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((source, 0))
            s.sendto(data, self.target)
            self.sent += 1
            ahead = (self.sent - base) / self.rate - (time.perf_counter() - start)
            if ahead > 0.002:
                time.sleep(ahead)

    def close(self) -> None:
        for s in self.sockets.values():
            s.close()


# --- observing -------------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    samples = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            samples.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return samples


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


def start_server(cmd: list[str], pattern: str) -> tuple[subprocess.Popen, list[int], Path]:
    """Start a netflowgen server; the ports from its ready line (stderr goes to a file, read later)."""
    err_path = Path(tempfile.mkstemp(prefix="netflowgen-attack-", suffix=".err")[1])
    err = open(err_path, "w")  # noqa: SIM115 (the child writes it until it exits)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(pattern, err_path.read_text())
        if m:
            return proc, [int(g) for g in m.groups()], err_path
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[2]} exited with {proc.returncode}: {err_path.read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{cmd[2]} did not start: {err_path.read_text()}")


def http_abuse(port: int, pid: int, slowloris: int) -> dict[str, object]:
    """Garbage, huge headers and slow-loris on one endpoint: replies, threads, and a normal GET after."""
    def exchange(data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
            with contextlib.suppress(OSError):
                s.sendall(data)
            reply = b""
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    reply += chunk
        return reply[:12]

    threads_before = proc_status(pid)["Threads"]
    replies = {
        "garbage": exchange(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200) + b"\r\n\r\n"),
        "huge_headers": exchange(b"GET /metrics HTTP/1.0\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 8000) for i in range(99)) + b"\r\n"),
        "huge_request_line": exchange(b"GET /" + b"a" * 200_000 + b" HTTP/1.0\r\n\r\n"),
        "binary_flood": exchange(os.urandom(1 << 20)),
    }
    held = []
    for _ in range(slowloris):
        with contextlib.suppress(OSError):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(s)
    time.sleep(0.5)
    threads_held = proc_status(pid)["Threads"]
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            during = r.status
    except OSError as e:  # 503 while every slot is held: the refusal, not a hang
        during = getattr(e, "code", str(e))
    during_s = time.perf_counter() - t
    # Trickle a byte every 1.5 s (each resets a per-read timeout): only the deadline ends them.
    for _ in range(8):
        time.sleep(1.5)
        for s in held:
            with contextlib.suppress(OSError):
                s.sendall(b"a")
    fate = {"refused_503": 0, "cut_by_deadline": 0, "still_open": 0}
    for s in held:
        s.settimeout(0.05)
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
            fate["refused_503" if data.startswith(b"HTTP/1.0 503") else "cut_by_deadline"] += 1
        except TimeoutError:
            fate["still_open"] += 1
        except OSError:
            fate["refused_503" if data.startswith(b"HTTP/1.0 503") else "cut_by_deadline"] += 1
        s.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        after = r.status
    return {"replies": {k: v.decode("latin-1").strip() for k, v in replies.items()}, "slowloris": len(held),
            "slowloris_fate": fate, "threads_before": threads_before, "threads_with_slowloris": threads_held,
            "get_during": during, "get_during_s": round(during_s, 3), "get_after": after}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=20_000, help="datagrams per second at most")
    ap.add_argument("--scale", type=int, default=1000, help="datagrams per malformed attack (churn: 7x and 5x)")
    ap.add_argument("--valid", type=int, default=3000, help="valid flows sent after the attack")
    ap.add_argument("--slowloris", type=int, default=300)
    ap.add_argument("--detector", type=Path, help="also attack `netflowgen detect DETECTOR`'s API")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    exe = [sys.executable, "-m", "netflowgen.cli"]
    result: dict[str, object] = {"rate": args.rate, "rss_bound_mib": RSS_BOUND_MIB}
    with tempfile.TemporaryDirectory(prefix="netflowgen-attack-") as tmp:
        out = Path(tmp) / "flows"
        proc, (udp, http), err_path = start_server(
            [*exe, "collect", "--out", str(out), "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--rotate", "5s"],
            r"listening on udp://127\.0\.0\.1:(\d+).*metrics on http://127\.0\.0\.1:(\d+)/metrics")
        time.sleep(1.0)
        idle = proc_status(proc.pid)
        plan = attacks(rng, args.scale)
        sender = Sender(("127.0.0.1", udp), args.rate)
        t = time.perf_counter()
        for datagrams in plan.values():
            sender.send(datagrams)
        attack_s = time.perf_counter() - t
        # Everything received is decoded before the figures are read.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            samples = scrape(http)
            if total(samples, "netflowgen_collect_packets_total") + total(samples, "netflowgen_collect_kernel_drops_total") >= sender.sent:
                break
            time.sleep(0.5)
        abuse = http_abuse(http, proc.pid, args.slowloris)
        valid = valid_flows(args.valid)
        sender.send([(VALID_SOURCE, d) for d in valid])
        sender.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            samples = scrape(http)
            if total(samples, "netflowgen_collect_flows_total", exporter=VALID_SOURCE) >= args.valid:
                break
            time.sleep(0.2)
        peak = proc_status(proc.pid)
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10) as r:
            metrics_bytes = len(r.read())
        alive = proc.poll() is None
        t = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        sigterm_s = time.perf_counter() - t
        stderr = err_path.read_text()
        err_path.unlink()
        import polars as pl

        written = (pl.scan_parquet(str(out / "date=*" / "*.parquet")).filter(pl.col("source_file") == f"udp://{VALID_SOURCE}")
                   .select(pl.len()).collect().item()) if list(out.glob("date=*/*.parquet")) else 0
        manifest_bytes = (out / "netflowgen.json").stat().st_size

        by_attack: dict[str, dict[str, object]] = {}
        sources = defaultdict(set)
        for name, datagrams in plan.items():
            for source, _ in datagrams:
                sources[name].add(source)
        for name, datagrams in plan.items():
            own = sources[name] if len(sources[name]) <= 4 else None  # churn-exporters: mostly under "other"
            if own is None:
                by_attack[name] = {"sent": len(datagrams), "sources": len(sources[name])}
                continue
            received = sum(total(samples, "netflowgen_collect_packets_total", exporter=s) for s in own)
            reasons: dict[str, int] = defaultdict(int)
            for n, lab, v in samples:
                if n == "netflowgen_collect_decode_errors_total" and lab.get("exporter") in own:
                    reasons[f"{lab['level']}: {lab['reason']}"] += int(v)
            rejected = sum(int(v) for n, lab, v in samples if n == "netflowgen_collect_rejected_total" and lab.get("exporter") in own)
            by_attack[name] = {"sent": len(datagrams), "received": int(received), "counted_bad": sum(reasons.values()),
                               "reasons": dict(reasons), "records_rejected": rejected,
                               "flows": int(sum(total(samples, "netflowgen_collect_flows_total", exporter=s) for s in own))}
        result.update({
            "datagrams_sent": sender.sent, "attack_seconds": round(attack_s, 2),
            "received": int(total(samples, "netflowgen_collect_packets_total")),
            "kernel_drops": int(total(samples, "netflowgen_collect_kernel_drops_total")),
            "still_up": alive, "rc_after_sigterm": rc, "sigterm_to_exit_s": round(sigterm_s, 2),
            "tracebacks_printed": stderr.count("Traceback"),
            "attacks": by_attack,
            "evictions": {k: int(total(samples, "netflowgen_collect_evictions_total", kind=k)) for k in ("template", "domain", "exporter")},
            "templates_held": int(total(samples, "netflowgen_collect_template_cache")),
            "domains_held": int(total(samples, "netflowgen_collect_domains")),
            "exporters_tracked": int(total(samples, "netflowgen_collect_exporters_tracked")),
            "metrics_bytes": metrics_bytes,
            "manifest_bytes": manifest_bytes,
            "rss_idle_mib": round(idle["VmRSS"] / 1024, 1), "rss_peak_mib": round(peak["VmHWM"] / 1024, 1),
            "rss_peak_over_idle": round(peak["VmHWM"] / idle["VmRSS"], 2),
            "threads_idle": idle["Threads"], "threads_peak_seen": max(peak["Threads"], int(abuse["threads_with_slowloris"])),  # type: ignore[call-overload]
            "http": abuse,
            "valid_flows_sent": args.valid, "valid_flows_decoded": int(total(samples, "netflowgen_collect_flows_total", exporter=VALID_SOURCE)),
            "valid_flows_written": written,
        })
        if args.detector is not None:
            result["detect"] = attack_detect(exe, args.detector, args.slowloris)
    report(result, args.json)


def attack_detect(exe: list[str], detector: Path, slowloris: int) -> dict[str, object]:
    proc, (udp, api), err_path = start_server(
        [*exe, "detect", str(detector), "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--alerts", os.devnull],
        r"listening on udp://127\.0\.0\.1:(\d+).*API on http://127\.0\.0\.1:(\d+)/health")
    try:
        abuse = http_abuse(api, proc.pid, slowloris)
        pages = {}
        for path in ("/", "/health", "/metrics", "/alerts", "/top", "/exporters"):
            with urllib.request.urlopen(f"http://127.0.0.1:{api}{path}", timeout=10) as r:
                pages[path] = r.status
        alive = proc.poll() is None
    finally:
        t = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        sigterm_s = time.perf_counter() - t
    stderr = err_path.read_text()
    err_path.unlink()
    return {"still_up": alive, "pages_after": pages, "http": abuse, "rc_after_sigterm": rc,
            "sigterm_to_exit_s": round(sigterm_s, 2), "tracebacks_printed": stderr.count("Traceback")}


def report(r: dict, as_json: bool) -> None:  # type: ignore[type-arg]
    if as_json:
        print(json.dumps(r, indent=2))
        return
    print(f"collector under attack: {r['datagrams_sent']:,} datagrams at <= {r['rate']:,.0f}/s in {r['attack_seconds']} s; "
          f"received {r['received']:,}, kernel drops {r['kernel_drops']:,}")
    print(f"  still up: {r['still_up']}; SIGTERM to exit {r['sigterm_to_exit_s']} s (rc {r['rc_after_sigterm']}); "
          f"tracebacks printed: {r['tracebacks_printed']}")
    for name, a in r["attacks"].items():
        if "received" not in a:
            print(f"  {name:16s} sent {a['sent']:>7,} from {a['sources']:,} addresses (state churn; see evictions)")
            continue
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(a["reasons"].items())) or "none"
        print(f"  {name:16s} sent {a['sent']:>7,} received {a['received']:>7,} counted bad {a['counted_bad']:>7,} "
              f"flows {a['flows']:,} rejected records {a['records_rejected']:,}  [{reasons}]")
    e = r["evictions"]
    print(f"  evictions: template {e['template']:,}, domain {e['domain']:,}, exporter {e['exporter']:,}; held at the end: "
          f"{r['templates_held']:,} templates, {r['domains_held']:,} domains, {r['exporters_tracked']} addresses with own counters")
    print(f"  /metrics {r['metrics_bytes']:,} bytes, manifest {r['manifest_bytes']:,} bytes")
    print(f"  resident memory: idle {r['rss_idle_mib']} MiB, peak {r['rss_peak_mib']} MiB = {r['rss_peak_over_idle']}x idle "
          f"(bound {r['rss_bound_mib']} MiB: {'within' if r['rss_peak_mib'] <= r['rss_bound_mib'] else 'EXCEEDED'})")
    print(f"  threads: idle {r['threads_idle']}, most seen {r['threads_peak_seen']}")
    for label, h in (("collector /metrics", r["http"]), *((("detector API", r["detect"]["http"]),) if "detect" in r else ())):
        print(f"  {label}: replies {h['replies']}; {h['slowloris']} slow-loris connections: threads "
              f"{h['threads_before']} -> {h['threads_with_slowloris']}, GET meanwhile {h['get_during']} in {h['get_during_s']} s, "
              f"then {h['slowloris_fate']}, GET after {h['get_after']}")
    if "detect" in r:
        d = r["detect"]
        print(f"  detector: still up {d['still_up']}, pages after {d['pages_after']}, SIGTERM to exit {d['sigterm_to_exit_s']} s "
              f"(rc {d['rc_after_sigterm']}), tracebacks printed {d['tracebacks_printed']}")
    print(f"  valid flows after the attack: sent {r['valid_flows_sent']:,}, decoded {r['valid_flows_decoded']:,}, "
          f"written {r['valid_flows_written']:,}")


if __name__ == "__main__":
    main()
