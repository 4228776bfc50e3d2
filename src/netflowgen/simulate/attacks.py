"""Labeled attacks: a plan drawn once from the seed, and each attack's flows hour by hour.

An attack's rate (flows per second) rises linearly from 0 over its ramp, then holds its peak with
a mean-one lognormal fluctuation per second; the flows of each second are Poisson. Sources:

* spoofed scenarios (SYN flood): a fresh random public source address and port per flow;
* reflection (DNS, NTP): a fixed set of reflectors answering from port 53 / 123 to random ports
  of the victim, large packets;
* ICMP flood: a fixed botnet sending echo requests, part of them answered;
* port scan (label "scan", not DDoS): one source probing random ports, closed ones answer RST.

Draws come from streams keyed by (seed, attack id[, hour]), apart from the benign traffic's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from netflowgen.simulate.addresses import ipv4_text, public_ipv4
from netflowgen.simulate.catalog import ICMP, SCENARIOS, TCP
from netflowgen.simulate.config import SimConfig
from netflowgen.simulate.population import STREAM_ATTACK, STREAM_PLAN, Population
from netflowgen.simulate.records import Records

__all__ = ["AttackPlan", "attack_records", "plan_attacks"]

_US = 1_000_000


@dataclass(frozen=True)
class AttackPlan:
    """One attack (or scan) as planned: the ground truth written to attacks.csv."""

    id: int
    scenario: str
    label: str
    victim: int
    """Node index of the victim."""
    start_s: int
    """Epoch seconds of the first second of the attack."""
    end_s: int
    """Epoch seconds just after its last second."""
    ramp_s: float
    peak_flows_per_s: float
    sources: int
    """Reflectors, bots or scanners; 0: spoofed (every flow its own random source)."""
    victim_port: int
    """The victim's port every flow goes to; 0: random per flow."""

    def hours(self) -> range:
        """The UTC hours (since the epoch) the attack has seconds in."""
        return range(self.start_s // 3600, (self.end_s - 1) // 3600 + 1)

    def expected_flows(self) -> float:
        duration = self.end_s - self.start_s
        ramp = min(self.ramp_s, duration)
        return self.peak_flows_per_s * (duration - ramp / 2)

    def row(self, victim_ip: str) -> dict[str, object]:
        def iso(s: int) -> str:
            return datetime.fromtimestamp(s, UTC).isoformat()

        return {
            "attack_id": self.id, "label": self.label, "scenario": self.scenario, "victim": victim_ip,
            "victim_port": self.victim_port or None, "start": iso(self.start_s), "end": iso(self.end_s),
            "ramp_s": round(self.ramp_s, 3), "peak_flows_per_s": round(self.peak_flows_per_s, 3), "sources": self.sources,
        }


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def plan_attacks(config: SimConfig, nodes: int) -> list[AttackPlan]:
    """The attacks and scans of a simulation, at seeded random times against random nodes."""
    a = config.attacks
    span_start = config.start_us // _US
    span = config.hours * 3600
    plans = []
    kinds = [a.scenarios[k % len(a.scenarios)] for k in range(a.count)] + ["port-scan"] * a.scans
    for k, scenario in enumerate(kinds):
        rng = np.random.default_rng([config.seed, STREAM_PLAN, k])
        s = SCENARIOS[scenario]
        scan = scenario == "port-scan"
        victim = int(rng.integers(nodes))
        duration = int(min(span, max(1, round(_log_uniform(rng, a.scan_duration_s if scan else a.duration_s)))))
        start = span_start + int(rng.integers(0, span - duration + 1))
        ramp = 0.0 if scan else float(rng.uniform(a.ramp_s[0], max(a.ramp_s[0], min(a.ramp_s[1], duration / 2))))
        peak = _log_uniform(rng, a.scan_probes_per_s if scan else a.peak_flows_per_s)
        sources = 1 if scan else 0 if s.spoofed else max(1, round(_log_uniform(rng, a.sources)))
        victim_port = int(rng.choice([80, 443])) if scenario == "syn-flood" else s.dst_port
        plans.append(AttackPlan(k, scenario, s.label, victim, start, start + duration, ramp, peak, sources, victim_port))
    return plans


def attack_records(config: SimConfig, pop: Population, plan: AttackPlan, hour: int) -> Records:
    """The flows of ``plan`` in the UTC hour ``hour`` (since the epoch), in time order."""
    s = SCENARIOS[plan.scenario]
    rng = np.random.default_rng([config.seed, STREAM_ATTACK, plan.id, hour])
    first, last = max(plan.start_s, hour * 3600), min(plan.end_s, (hour + 1) * 3600)
    seconds = np.arange(first, last)
    into = seconds + 0.5 - plan.start_s
    ramp = np.clip(into / plan.ramp_s, 0, 1) if plan.ramp_s > 0 else np.ones(len(seconds))
    noise = np.exp(config.attacks.noise * rng.standard_normal(len(seconds)) - config.attacks.noise**2 / 2)
    counts = rng.poisson(plan.peak_flows_per_s * ramp * noise)
    n = int(counts.sum())
    start = np.sort(np.repeat(seconds * _US, counts) + rng.integers(0, _US, n))

    # Address table: the victim first, then the sources of this hour's flows (or all reflectors).
    if plan.sources == 0:
        sources = public_ipv4(rng, n)
        src = 1 + np.arange(n)
    else:
        sources = public_ipv4(np.random.default_rng([config.seed, STREAM_ATTACK, plan.id]), plan.sources)
        src = 1 + rng.integers(0, plan.sources, n)
    addresses = pa.concat_arrays([pop.addresses.slice(plan.victim, 1), ipv4_text(sources)])

    u = rng.random((4, n), dtype=np.float32)
    fwd = np.maximum(np.rint(np.exp(np.log(s.fwd_packets[0]) + s.fwd_packets[1] * rng.standard_normal(n))), 1).astype(np.int64)
    answered = u[0] < s.answered
    if plan.scenario == "syn-flood":  # the victim's SYN|ACK, retried while no ACK comes
        rev = np.where(answered, 1 + (u[1] < 0.5) + (u[1] < 0.25), 0).astype(np.int64)
    else:  # echo replies answer every request; a closed port answers one RST
        rev = np.where(answered, fwd if s.proto == ICMP else 1, 0).astype(np.int64)
    fwd_by = np.rint(fwd * (s.fwd_bpp[0] + (s.fwd_bpp[1] - s.fwd_bpp[0]) * u[2].astype(np.float64))).astype(np.int64)
    rev_by = np.rint(rev * (s.rev_bpp[0] + (s.rev_bpp[1] - s.rev_bpp[0]) * u[3].astype(np.float64))).astype(np.int64)
    dur_s = (np.maximum(fwd, rev) - 1) * s.gap_s * np.exp(0.5 * rng.standard_normal(n))
    dur_us = np.rint(np.minimum(dur_s, config.active_timeout_s) * _US).astype(np.int64)
    random_port = rng.integers(1024, 65536, (2, n))
    if plan.scenario == "port-scan":  # probes the well-known ports too
        random_port[1] = rng.integers(1, 65536, n)
    tcp = s.proto == TCP
    return Records(
        start_us=start,
        dur_us=dur_us,
        src=src.astype(np.int64),
        dst=np.zeros(n, np.int64),
        sport=np.full(n, s.src_port, np.int64) if s.src_port else random_port[0],
        dport=np.full(n, plan.victim_port, np.int64) if plan.victim_port else random_port[1],
        proto=np.full(n, s.proto, np.uint8),
        fwd_pk=fwd,
        fwd_by=fwd_by,
        rev_pk=rev,
        rev_by=rev_by,
        fwd_flags=np.full(n, s.fwd_flags if tcp else 0, np.uint8),
        rev_flags=np.where(answered & tcp, s.rev_flags, 0).astype(np.uint8),
        addresses=addresses,
    )
