"""The traffic model's data: services, peer pools and attack scenarios, named by string.

Configs refer to these entries by name (``RoleConfig.services``, ``AttackConfig.scenarios``), so a
config stays plain JSON; the generator resolves the names here, in one place.

Sizes are drawn per flow, per direction ("fwd": the initiator's packets, "rev": the responder's):

* packets of the initiator: lognormal with the given median and sigma (at least 1);
* packets of the responder: the initiator's times a lognormal ratio (at least 1);
* with probability ``tail``, both sides are multiplied by a Pareto(1.2) factor (bulk transfers);
* bytes = packets x bytes-per-packet, drawn uniformly in the side's range (always within 40..1500);
* duration = (packets - 1) x a lognormal gap between packets, cut at the exporter's active timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ICMP", "POOLS", "SCENARIOS", "SERVICES", "TCP", "UDP", "PeerPool", "Scenario", "Service"]

TCP, UDP, ICMP = 6, 17, 1


@dataclass(frozen=True)
class PeerPool:
    """Public (Internet) addresses a kind of service is used with."""

    size: int
    """How many distinct addresses."""
    skew: float
    """Popularity: peer index = size * u**skew (1: uniform; 3: a few peers take most flows)."""


@dataclass(frozen=True)
class Service:
    """One kind of benign flow of a local node."""

    proto: int
    port: int
    """The responder's port; 0: a random port in 1024..65535 (each flow its own)."""
    inbound: bool
    """True: an external peer initiates the flow to the node (the node serves)."""
    pool: str
    """The peer pool (see :data:`POOLS`)."""
    answered: float = 0.98
    """Share of flows the responder answers."""
    rejected: float = 0.0
    """TCP: share of flows refused with RST|ACK (of all flows; the rest of the unanswered get no reply)."""
    fwd_packets: tuple[float, float] = (1.0, 0.0)
    """Initiator packets: lognormal (median, sigma)."""
    rev_ratio: tuple[float, float] = (1.0, 0.0)
    """Responder packets per initiator packet: lognormal (median, sigma)."""
    fwd_bpp: tuple[float, float] = (60.0, 120.0)
    """Initiator bytes per packet: uniform (low, high), within 40..1500."""
    rev_bpp: tuple[float, float] = (60.0, 120.0)
    gap_s: tuple[float, float] = (0.01, 1.0)
    """Seconds between packets: lognormal (median, sigma)."""
    tail: float = 0.0
    """Share of flows that are bulk transfers (Pareto-scaled packet counts)."""
    rst_end: float = 0.05
    """TCP: share of established flows that end with RST instead of FIN."""

    def __post_init__(self) -> None:
        for name in ("fwd_bpp", "rev_bpp"):
            lo, hi = getattr(self, name)
            if not 40 <= lo <= hi <= 1500:
                raise ValueError(f"{name} must satisfy 40 <= low <= high <= 1500, got {(lo, hi)}")
        if not (0 <= self.rejected <= 1 - self.answered + 1e-9 and 0 <= self.answered <= 1):
            raise ValueError("answered and rejected are shares with answered + rejected <= 1")


#: Peer pools, laid out one after the other in the table of external addresses.
POOLS: dict[str, PeerPool] = {
    "web": PeerPool(20_000, 3.0),  # web and CDN servers: a few very popular ones
    "resolvers": PeerPool(4, 1.5),  # the DNS resolvers the network uses
    "ntp": PeerPool(8, 1.0),
    "mail": PeerPool(24, 2.0),
    "ssh": PeerPool(200, 2.0),
    "cloud": PeerPool(64, 1.5),  # IoT vendors' cloud endpoints
    "internet": PeerPool(100_000, 1.0),  # anyone: clients of our servers, scanners, peer-to-peer
}

_WEB_UP, _WEB_DOWN = (52.0, 300.0), (900.0, 1500.0)

SERVICES: dict[str, Service] = {
    # outbound (the node is a client)
    "https": Service(TCP, 443, False, "web", 0.985, 0.004, (9.0, 1.1), (1.4, 0.5), _WEB_UP, _WEB_DOWN, gap_s=(0.02, 1.5), tail=0.01),
    "http": Service(TCP, 80, False, "web", 0.98, 0.01, (6.0, 1.0), (1.3, 0.5), _WEB_UP, _WEB_DOWN, gap_s=(0.02, 1.2), tail=0.01),
    "quic": Service(UDP, 443, False, "web", 0.97, 0.0, (10.0, 1.1), (1.5, 0.5), (60.0, 400.0), (800.0, 1350.0), gap_s=(0.015, 1.3), tail=0.01),
    "dns": Service(UDP, 53, False, "resolvers", 0.99, 0.0, (1.0, 0.0), (1.0, 0.0), (60.0, 90.0), (80.0, 400.0), gap_s=(0.005, 0.5)),
    "ntp": Service(UDP, 123, False, "ntp", 0.97, 0.0, (1.0, 0.0), (1.0, 0.0), (76.0, 76.0), (76.0, 76.0), gap_s=(0.02, 0.5)),
    "imaps": Service(TCP, 993, False, "mail", 0.99, 0.002, (14.0, 0.8), (1.2, 0.4), (52.0, 400.0), (200.0, 1500.0), gap_s=(0.05, 1.5), tail=0.005),
    "smtp-submit": Service(TCP, 587, False, "mail", 0.99, 0.002, (20.0, 1.0), (0.6, 0.3), (400.0, 1500.0), (52.0, 150.0), gap_s=(0.02, 1.0), tail=0.01),
    "ssh": Service(TCP, 22, False, "ssh", 0.97, 0.01, (150.0, 1.5), (1.1, 0.3), (52.0, 200.0), (52.0, 400.0), gap_s=(0.4, 1.5), tail=0.02),
    "high-tcp": Service(TCP, 0, False, "internet", 0.8, 0.1, (8.0, 1.3), (1.2, 0.7), (52.0, 800.0), (52.0, 1200.0), gap_s=(0.05, 1.5), tail=0.02),
    "ping": Service(ICMP, 0, False, "web", 0.9, 0.0, (4.0, 0.3), (1.0, 0.0), (84.0, 84.0), (84.0, 84.0), gap_s=(1.0, 0.05)),
    # inbound (the node serves)
    "https-in": Service(TCP, 443, True, "internet", 0.99, 0.002, (10.0, 1.0), (1.6, 0.5), _WEB_UP, _WEB_DOWN, gap_s=(0.03, 1.3), tail=0.01),
    "http-in": Service(TCP, 80, True, "internet", 0.99, 0.005, (6.0, 1.0), (1.4, 0.5), _WEB_UP, _WEB_DOWN, gap_s=(0.03, 1.2), tail=0.01),
    "smtp-in": Service(TCP, 25, True, "internet", 0.95, 0.02, (16.0, 1.0), (0.7, 0.3), (300.0, 1500.0), (52.0, 200.0), gap_s=(0.05, 1.0), tail=0.01),
    "ssh-in": Service(TCP, 22, True, "internet", 0.9, 0.05, (30.0, 1.8), (1.1, 0.3), (52.0, 200.0), (52.0, 400.0), gap_s=(0.3, 1.5), tail=0.01),
    "rdp-in": Service(TCP, 3389, True, "internet", 0.9, 0.05, (80.0, 1.5), (2.0, 0.5), (52.0, 300.0), (200.0, 1500.0), gap_s=(0.1, 1.5), tail=0.01),
    "dns-in": Service(UDP, 53, True, "internet", 0.99, 0.0, (1.0, 0.0), (1.0, 0.0), (60.0, 90.0), (80.0, 500.0), gap_s=(0.005, 0.5)),
    # The unsolicited probes every Internet-facing host receives (background radiation): benign
    # in the sense that nobody targets this network; most get no answer.
    "background-in": Service(TCP, 0, True, "internet", 0.05, 0.25, (1.0, 0.3), (1.0, 0.0), (40.0, 60.0), (40.0, 44.0), gap_s=(1.0, 0.3)),
    # IoT
    "mqtt-tls": Service(TCP, 8883, False, "cloud", 0.995, 0.001, (6.0, 0.4), (0.9, 0.2), (60.0, 250.0), (60.0, 200.0), gap_s=(0.05, 0.8)),
    "coap": Service(UDP, 5683, False, "cloud", 0.95, 0.0, (1.0, 0.0), (1.0, 0.0), (60.0, 200.0), (50.0, 120.0), gap_s=(0.05, 0.5)),
}


@dataclass(frozen=True)
class Scenario:
    """One kind of labeled attack (or other anomaly) against a local node."""

    label: str
    """The ``label`` its flows get (``label_detail`` is the scenario's name)."""
    proto: int
    src_port: int
    """The sources' port; 0: random per flow."""
    dst_port: int
    """The victim's port; 0: random per flow."""
    spoofed: bool
    """Every flow a fresh random source (spoofed); otherwise a fixed set of reflectors or bots."""
    fwd_packets: tuple[float, float]
    """Packets per flow from the source: lognormal (median, sigma)."""
    fwd_bpp: tuple[float, float]
    """Bytes per packet: uniform (low, high)."""
    answered: float
    """Share of flows the victim answers (SYN|ACK, echo reply, RST)."""
    rev_bpp: tuple[float, float] = (40.0, 44.0)
    gap_s: float = 0.05
    """Mean seconds between the packets of one flow."""
    fwd_flags: int = 0
    rev_flags: int = 0


_SYN, _RST, _ACK = 2, 4, 16

SCENARIOS: dict[str, Scenario] = {
    "syn-flood": Scenario("DDoS", TCP, 0, 0, True, (1.0, 0.2), (40.0, 60.0), 0.2, (44.0, 44.0), 1.0, _SYN, _SYN | _ACK),
    "dns-reflection": Scenario("DDoS", UDP, 53, 0, False, (3.0, 1.0), (1100.0, 1500.0), 0.0, gap_s=0.01),
    "ntp-reflection": Scenario("DDoS", UDP, 123, 0, False, (12.0, 1.0), (468.0, 468.0), 0.0, gap_s=0.002),
    "icmp-flood": Scenario("DDoS", ICMP, 0, 0, False, (8.0, 1.0), (84.0, 1500.0), 0.5, (84.0, 84.0), 0.01),
    # Not DDoS: one source probing many ports of one host; closed ports answer RST|ACK.
    "port-scan": Scenario("scan", TCP, 0, 0, False, (1.0, 0.0), (44.0, 44.0), 0.7, (40.0, 40.0), 0.0, _SYN, _RST | _ACK),
}

#: The DDoS scenarios (label "DDoS"), in a fixed order.
DDOS_SCENARIOS: tuple[str, ...] = tuple(name for name, s in SCENARIOS.items() if s.label == "DDoS")
