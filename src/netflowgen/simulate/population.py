"""The simulated network: its local nodes (role, /24 group, activity) and the Internet peers.

Everything here is drawn once per simulation from the seed alone (streams independent of the
attack settings). Node ``i`` has index ``i`` in the address table; external peers follow, pool
after pool (see ``catalog.POOLS``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from netflowgen.simulate.addresses import ipv4_text, public_ipv4
from netflowgen.simulate.catalog import POOLS, SERVICES
from netflowgen.simulate.config import SimConfig, _role_counts

__all__ = ["STREAM_ATTACK", "STREAM_BENIGN", "STREAM_PEERS", "STREAM_PLAN", "STREAM_POPULATION", "Population"]

# Every random draw comes from a stream keyed by (seed, STREAM_*, ...): changing one part of the
# config (the attacks, say) never shifts the draws of another (the benign traffic).
STREAM_POPULATION, STREAM_PEERS, STREAM_BENIGN, STREAM_PLAN, STREAM_ATTACK = 1, 2, 3, 4, 5

#: The service of each catalogue entry by number, in catalogue order.
SERVICE_NAMES: tuple[str, ...] = tuple(SERVICES)
SERVICE_ID: dict[str, int] = {name: i for i, name in enumerate(SERVICE_NAMES)}


@dataclass(frozen=True)
class Population:
    """Nodes and peers of one simulation, as arrays indexed by node."""

    config: SimConfig
    addresses: pa.Array
    """Text of every address: the nodes (0..nodes-1), then the external pools."""
    node_ip: np.ndarray
    """uint32 address of each node."""
    role: np.ndarray
    """Index into ``config.roles`` of each node."""
    group: np.ndarray
    """uint32 network address of each node's /24."""
    mean_rate: np.ndarray
    """Mean benign flows per hour of each node, over a whole week."""
    period_s: np.ndarray
    """Seconds between periodic flows (inf for nodes without any)."""
    phase_s: np.ndarray
    """Offset of the first periodic flow from the start."""
    periodic_peer: np.ndarray
    """Address index of the peer of the periodic flows."""
    pool_offset: dict[str, int]
    """Address index of the first address of each pool."""

    @property
    def nodes(self) -> int:
        return len(self.node_ip)

    @classmethod
    def build(cls, config: SimConfig) -> Population:
        counts = _role_counts(config.nodes, config.roles)
        role = np.repeat(np.arange(len(config.roles)), counts)
        # Each role fills its own /24 groups, hosts .10 upwards: servers, clients and devices sit
        # in separate subnets as they do in real networks.
        hpg = config.hosts_per_group
        groups_before = np.cumsum([0] + [-(-n // hpg) for n in counts])[:-1]
        within = np.concatenate([np.arange(n) for n in counts])
        group_index = np.repeat(groups_before, counts) + within // hpg
        base = int(ipaddress.IPv4Network(config.local_network).network_address)
        group = (base + group_index * 256).astype(np.uint32)
        node_ip = (group + 10 + within % hpg).astype(np.uint32)

        rng = np.random.default_rng([config.seed, STREAM_POPULATION])
        activity = np.array([r.activity for r in config.roles])[role]
        sigma = np.array([r.activity_sigma for r in config.roles])[role]
        factor = np.exp(sigma * rng.standard_normal(config.nodes) - sigma**2 / 2)  # mean one
        shares = np.array([r.share for r in config.roles])
        mean_activity = float((shares * [r.activity for r in config.roles]).sum() / shares.sum())
        mean_rate = config.flows_per_node_hour * activity * factor / mean_activity

        # Periodic flows: the node's periodic share of its mean rate, at a fixed period from a
        # random phase (nodes without any get an infinite period).
        periodic = np.array([r.periodic_share for r in config.roles])[role] * mean_rate
        has = periodic > 0
        period_s = np.full(config.nodes, np.inf)
        period_s[has] = 3600.0 / periodic[has]
        phase_s = np.zeros(config.nodes)
        phase_s[has] = rng.random(config.nodes)[has] * period_s[has]

        peers_rng = np.random.default_rng([config.seed, STREAM_PEERS])
        pool_offset: dict[str, int] = {}
        offset = config.nodes
        for name, pool in POOLS.items():
            pool_offset[name] = offset
            offset += pool.size
        external = public_ipv4(peers_rng, offset - config.nodes, exclude=(config.local_network,))
        addresses = pa.concat_arrays([ipv4_text(node_ip), ipv4_text(external)])

        # Each periodic node always reports to one peer of its service's pool.
        peer_u = rng.random(config.nodes)
        periodic_peer = np.zeros(config.nodes, np.int64)
        for r, rc in enumerate(config.roles):
            if rc.periodic_service is None:
                continue
            pool_name = SERVICES[rc.periodic_service].pool
            pool = POOLS[pool_name]
            mask = role == r
            pick = np.minimum((pool.size * peer_u[mask] ** pool.skew).astype(np.int64), pool.size - 1)
            periodic_peer[mask] = pool_offset[pool_name] + pick
        return cls(config, addresses, node_ip, role, group, mean_rate, period_s, phase_s, periodic_peer, pool_offset)

    def node_table(self) -> pl.DataFrame:
        """One row per node: ``node,group,role,mean_flows_per_hour,period_s`` (nodes.csv).

        ``node,group`` makes it a group map for ``netflowgen series --group-map``.
        """
        names = [r.name for r in self.config.roles]
        return pl.DataFrame(
            {
                "node": pl.Series(self.addresses.slice(0, self.nodes)).cast(pl.String),
                "group": pl.Series(ipv4_text(self.group)).cast(pl.String) + "/24",
                "role": pl.Series([names[r] for r in self.role], dtype=pl.String),
                "mean_flows_per_hour": np.round(self.mean_rate, 6),
                "period_s": self.period_s,
            }
        ).with_columns(pl.when(pl.col("period_s").is_finite()).then(pl.col("period_s").round(6)).alias("period_s"))
