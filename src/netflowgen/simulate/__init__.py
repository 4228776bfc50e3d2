"""A seeded traffic simulator: synthetic flows with labeled attacks, as a flow dataset.

A network of local nodes (clients, servers, IoT devices in /24 groups) talks to public Internet
peers with each role's services, daily and weekly cycles and heavy-tailed sizes; DDoS attacks
(SYN flood, DNS and NTP reflection, ICMP flood) and port scans hit random nodes at random times,
every one of their flows labeled. The output is read like any ingested dataset (``scan_flows``,
``netflowgen series``, ``netflowgen inspect``) and says everywhere that it is synthetic.

>>> from netflowgen.simulate import SimConfig, AttackConfig
>>> SimConfig(nodes=50, hours=6, attacks=AttackConfig(count=2)).attacks.scenarios[:2]
('syn-flood', 'dns-reflection')
"""

from netflowgen.simulate.config import (
    DEFAULT_ROLES,
    AttackConfig,
    RoleConfig,
    Shape,
    SimConfig,
)
from netflowgen.simulate.run import (
    ATTACKS_NAME,
    BENIGN_LABEL,
    NODES_NAME,
    SimSummary,
    expected_flows,
    iter_chunks,
    scale_to_flows,
    simulate,
)

__all__ = [
    "ATTACKS_NAME",
    "BENIGN_LABEL",
    "DEFAULT_ROLES",
    "NODES_NAME",
    "AttackConfig",
    "RoleConfig",
    "Shape",
    "SimConfig",
    "SimSummary",
    "expected_flows",
    "iter_chunks",
    "scale_to_flows",
    "simulate",
]
