"""What to simulate: every setting of ``netflowgen simulate``, as typed dataclasses.

A config is plain data: it round-trips through JSON (:meth:`SimConfig.to_dict` /
:meth:`SimConfig.from_dict`) and is stored whole in the dataset's manifest, so a synthetic dataset
can always be regenerated, byte for byte, from its own ``netflowgen.json``.

>>> c = SimConfig(nodes=10, hours=2, seed=3)
>>> SimConfig.from_dict(c.to_dict()) == c
True
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from netflowgen.simulate.catalog import DDOS_SCENARIOS, SCENARIOS, SERVICES

__all__ = ["DEFAULT_ROLES", "FLAT", "OFFICE", "SERVER", "AttackConfig", "RoleConfig", "Shape", "SimConfig"]

@dataclass(frozen=True)
class Shape:
    """Relative activity by hour of day and day of week, in the network's local time.

    Only the shape matters: the product daily[hour] x weekly[day] is normalised to a mean of 1
    over the week, so a role's mean rate over a whole week is what its activity says.
    """

    daily: tuple[float, ...] = (1.0,) * 24
    """24 values, hour 0..23."""
    weekly: tuple[float, ...] = (1.0,) * 7
    """7 values, Monday..Sunday."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "daily", tuple(float(v) for v in self.daily))
        object.__setattr__(self, "weekly", tuple(float(v) for v in self.weekly))
        if len(self.daily) != 24 or len(self.weekly) != 7:
            raise ValueError(f"a shape needs 24 daily and 7 weekly values, got {len(self.daily)} and {len(self.weekly)}")
        values = self.daily + self.weekly
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError("shape values must be finite and >= 0")
        if max(self.daily) == 0 or max(self.weekly) == 0:
            raise ValueError("a shape must be positive somewhere in the day and in the week")

    def week(self) -> np.ndarray:
        """Factor per hour of the week (Monday 00:00 first), mean 1.

        >>> Shape(daily=(2.0,) * 12 + (0.0,) * 12).week()[[0, 12, 24]].tolist()
        [2.0, 0.0, 2.0]
        """
        w = np.outer(np.asarray(self.weekly), np.asarray(self.daily)).ravel()
        return w / w.mean()


#: Office hours: quiet at night, busy 8-18 with a lunch dip, quiet weekends (clients).
OFFICE = Shape(
    daily=(0.05, 0.04, 0.04, 0.04, 0.04, 0.06, 0.15, 0.45, 0.85, 1.0, 1.0, 0.95,
           0.75, 0.9, 1.0, 1.0, 0.9, 0.7, 0.4, 0.3, 0.25, 0.2, 0.12, 0.08),
    weekly=(1.0, 1.0, 1.0, 1.0, 0.95, 0.25, 0.2),
)
#: Servers: used around the clock, more in the day and on working days.
SERVER = Shape(
    daily=(0.35, 0.3, 0.28, 0.27, 0.28, 0.32, 0.45, 0.65, 0.85, 0.95, 1.0, 1.0,
           0.95, 0.97, 1.0, 1.0, 0.97, 0.92, 0.85, 0.8, 0.72, 0.62, 0.5, 0.42),
    weekly=(1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.7),
)
#: Machines: the same at any hour.
FLAT = Shape()


@dataclass(frozen=True)
class RoleConfig:
    """A kind of local node: how many there are, how busy, when, and with what services."""

    name: str
    share: float
    """Share of the nodes with this role."""
    activity: float
    """Mean flows per hour of a node of this role, relative to the other roles."""
    shape: Shape
    services: tuple[tuple[str, float], ...]
    """(service name, weight): the mix of its flows (names from ``catalog.SERVICES``)."""
    activity_sigma: float = 1.0
    """Spread of activity between nodes of the role: a mean-one lognormal factor with this sigma."""
    periodic_share: float = 0.0
    """Share of its flows sent on a fixed period per node (telemetry); these ignore the shape."""
    periodic_service: str | None = None
    """The service of the periodic flows (each node always talks to the same peer)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "services", tuple((str(n), float(w)) for n, w in self.services))
        if not self.name:
            raise ValueError("a role needs a name")
        if self.share < 0 or self.activity < 0 or self.activity_sigma < 0:
            raise ValueError(f"role {self.name}: share, activity and activity_sigma must be >= 0")
        if not self.services or any(w < 0 for _, w in self.services) or sum(w for _, w in self.services) <= 0:
            raise ValueError(f"role {self.name}: services need non-negative weights with a positive sum")
        unknown = sorted({n for n, _ in self.services} - set(SERVICES))
        if unknown:
            raise ValueError(f"role {self.name}: unknown services {unknown}; known: {sorted(SERVICES)}")
        if not 0 <= self.periodic_share <= 1:
            raise ValueError(f"role {self.name}: periodic_share must be in 0..1")
        if self.periodic_share > 0 and self.periodic_service not in SERVICES:
            raise ValueError(f"role {self.name}: periodic_service must name a service, got {self.periodic_service!r}")


DEFAULT_ROLES: tuple[RoleConfig, ...] = (
    RoleConfig(
        "client", 0.7, 1.0, OFFICE,
        (("https", 45), ("quic", 12), ("http", 5), ("dns", 20), ("ntp", 1), ("imaps", 4),
         ("smtp-submit", 1), ("ssh", 1), ("high-tcp", 8), ("ping", 3)),
    ),
    RoleConfig(
        "server", 0.1, 4.0, SERVER,
        (("https-in", 35), ("http-in", 10), ("smtp-in", 5), ("ssh-in", 4), ("rdp-in", 2), ("dns-in", 10),
         ("background-in", 8), ("dns", 12), ("ntp", 2), ("https", 7), ("high-tcp", 5)),
    ),
    RoleConfig(
        "iot", 0.2, 0.3, FLAT,
        (("mqtt-tls", 30), ("https", 15), ("dns", 30), ("ntp", 10), ("coap", 15)),
        activity_sigma=0.5, periodic_share=0.6, periodic_service="mqtt-tls",
    ),
)


def _range(name: str, lo_hi: tuple[float, float], minimum: float) -> tuple[float, float]:
    lo, hi = (float(v) for v in lo_hi)
    if not minimum <= lo <= hi:
        raise ValueError(f"{name} must be a range (low, high) with {minimum} <= low <= high, got {lo_hi}")
    return lo, hi


@dataclass(frozen=True)
class AttackConfig:
    """Labeled attacks at seeded random times against random local nodes.

    Each attack's rate ramps up linearly over its ramp, then holds its peak (with per-second
    fluctuation) until it ends. Durations, peaks and source counts are drawn log-uniformly in their
    ranges, ramps uniformly (at most half the duration).
    """

    count: int = 4
    """DDoS attacks (label "DDoS", label_detail the scenario)."""
    scenarios: tuple[str, ...] = DDOS_SCENARIOS
    """Scenarios to draw from, in turn (attack k has scenario k mod len)."""
    duration_s: tuple[float, float] = (60.0, 900.0)
    ramp_s: tuple[float, float] = (5.0, 120.0)
    peak_flows_per_s: tuple[float, float] = (5.0, 100.0)
    """Flow records per second at the peak: some hundred times a busy node's normal rate and more."""
    sources: tuple[float, float] = (50.0, 5000.0)
    """Reflectors or bots of a non-spoofed attack (a spoofed one has a fresh source per flow)."""
    noise: float = 0.25
    """Sigma of the per-second lognormal fluctuation of the rate (mean one)."""
    scans: int = 1
    """Port scans (label "scan", label_detail "port-scan"): not DDoS, one source, many ports."""
    scan_duration_s: tuple[float, float] = (30.0, 300.0)
    scan_probes_per_s: tuple[float, float] = (2.0, 50.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenarios", tuple(self.scenarios))
        if self.count < 0 or self.scans < 0:
            raise ValueError("attack and scan counts must be >= 0")
        if self.count and not self.scenarios:
            raise ValueError("attacks need at least one scenario")
        bad = [s for s in self.scenarios if SCENARIOS.get(s) is None or SCENARIOS[s].label != "DDoS"]
        if bad:
            raise ValueError(f"unknown DDoS scenarios {bad}; known: {list(DDOS_SCENARIOS)}")
        for name, minimum in (("duration_s", 1.0), ("ramp_s", 0.0), ("peak_flows_per_s", 1e-6), ("sources", 1.0),
                              ("scan_duration_s", 1.0), ("scan_probes_per_s", 1e-6)):
            object.__setattr__(self, name, _range(name, getattr(self, name), minimum))
        if self.noise < 0:
            raise ValueError("noise must be >= 0")


@dataclass(frozen=True)
class SimConfig:
    """A simulated network: its nodes, their traffic over a time span, and the attacks on it."""

    nodes: int = 200
    """Local nodes (hosts of the simulated network)."""
    hours: int = 24
    """Length of the simulated span."""
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    """Start of the span (UTC, on a whole hour); the default is a Monday."""
    seed: int = 0
    flows_per_node_hour: float = 60.0
    """Mean benign flows per node and hour, over a whole week and all roles."""
    roles: tuple[RoleConfig, ...] = DEFAULT_ROLES
    attacks: AttackConfig = field(default_factory=AttackConfig)
    bidirectional: bool = True
    """One record per connection with both directions' counters (like IPFIX biflows, Zeek,
    Argus); False: NetFlow v5/v9-like records, one per direction (rev_* = 0)."""
    local_network: str = "10.0.0.0/8"
    """IPv4 network of the nodes; they are placed in consecutive /24 groups of it, by role."""
    hosts_per_group: int = 200
    """Nodes per /24 group (hosts .10 upwards)."""
    utc_offset_hours: int = 0
    """Offset of the network's local time from UTC: the shapes are in local time."""
    active_timeout_s: float = 1800.0
    """The exporter's active timeout: no flow record lasts longer."""
    nodes_per_chunk: int = 2048
    """Nodes generated together per hour: bounds memory, to some 1.5 KB per flow of a chunk
    (measured: 1.5 GB peak at 20,000 nodes and 208 flows per node-hour). Part of what fixes
    the output, like every other field."""

    def __post_init__(self) -> None:
        start = self.start
        if isinstance(start, str):
            start = datetime.fromisoformat(start)
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "roles", tuple(self.roles))
        if start.minute or start.second or start.microsecond:
            raise ValueError(f"start must be on a whole hour (UTC), got {start.isoformat()}")
        if not datetime(2000, 1, 1, tzinfo=UTC) <= start < datetime(2099, 1, 1, tzinfo=UTC):
            raise ValueError("start must lie between 2000 and 2099")
        if self.nodes < 1 or self.hours < 1:
            raise ValueError("nodes and hours must be at least 1")
        if not (self.flows_per_node_hour >= 0 and math.isfinite(self.flows_per_node_hour)):
            raise ValueError("flows_per_node_hour must be a finite number >= 0")
        if not 0 <= self.seed < 2**63:
            raise ValueError("seed must be in 0..2**63-1")
        if not self.roles or len({r.name for r in self.roles}) != len(self.roles):
            raise ValueError("roles need distinct names, at least one")
        if sum(r.share for r in self.roles) <= 0 or sum(r.share * r.activity for r in self.roles) <= 0:
            raise ValueError("role shares (and share x activity) must have a positive sum")
        if not 1 <= self.hosts_per_group <= 245:
            raise ValueError("hosts_per_group must be in 1..245 (hosts .10 to .254 of a /24)")
        try:
            net = ipaddress.IPv4Network(self.local_network)
        except ValueError as e:
            raise ValueError(f"local_network must be an IPv4 network like 10.0.0.0/8: {e}") from e
        if net.prefixlen > 24:
            raise ValueError("local_network must be a /24 or larger")
        groups = 2 ** (24 - net.prefixlen)
        needed = sum(-(-n // self.hosts_per_group) for n in _role_counts(self.nodes, self.roles))
        if needed > groups:
            raise ValueError(f"{self.nodes} nodes need {needed} /24 groups; {self.local_network} has {groups}")
        if not -12 <= self.utc_offset_hours <= 14:
            raise ValueError("utc_offset_hours must be in -12..14")
        if self.active_timeout_s <= 0:
            raise ValueError("active_timeout_s must be positive")
        if not 1 <= self.nodes_per_chunk <= 1 << 20:
            raise ValueError("nodes_per_chunk must be in 1..1048576")

    @property
    def start_us(self) -> int:
        return int(self.start.timestamp()) * 1_000_000

    @property
    def end(self) -> datetime:
        """End of the span (exclusive)."""
        return self.start + timedelta(hours=self.hours)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (tuples as lists, the start as ISO text)."""
        d = asdict(self)
        d["start"] = self.start.isoformat()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimConfig:
        """The config a :meth:`to_dict` (or a dataset manifest's ``config``) describes."""
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown simulate config fields {unknown}")
        if "roles" in d:
            d["roles"] = tuple(
                RoleConfig(**{**r, "shape": Shape(**r["shape"]), "services": tuple(tuple(s) for s in r["services"])})
                for r in d["roles"]
            )
        if "attacks" in d:
            d["attacks"] = AttackConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["attacks"].items()})
        return cls(**d)

    def with_(self, **changes: Any) -> SimConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def _role_counts(nodes: int, roles: tuple[RoleConfig, ...]) -> list[int]:
    """Nodes per role: shares of ``nodes``, rounded by largest remainder (they sum to ``nodes``).

    >>> _role_counts(10, DEFAULT_ROLES)
    [7, 1, 2]
    """
    shares = np.array([r.share for r in roles], float)
    exact = nodes * shares / shares.sum()
    counts = np.floor(exact).astype(int)
    rest = nodes - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts.tolist()
