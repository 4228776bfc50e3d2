"""Benign traffic: the flows of a block of nodes in one hour, drawn all at once (numpy).

Per node and hour, the flow count is Poisson with mean

    mean_rate[node] x (1 - periodic_share[role]) x shape[role][hour of week]

plus the node's periodic flows (a fixed period and phase, no randomness). Each flow then gets,
independently: a service from its role's mix, a peer from the service's pool, ports, an outcome
(answered, refused with RST, unanswered) and sizes, durations and TCP flags as described in
:mod:`netflowgen.simulate.catalog`.
"""

from __future__ import annotations

import numpy as np

from netflowgen.simulate.catalog import POOLS, SERVICES, TCP
from netflowgen.simulate.config import SimConfig
from netflowgen.simulate.population import (
    SERVICE_ID,
    SERVICE_NAMES,
    STREAM_BENIGN,
    Population,
)
from netflowgen.simulate.records import Records

__all__ = ["BenignModel", "hour_of_week"]

FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
_MAX_PACKETS = 50_000_000
_US = 1_000_000
_HOUR_US = 3600 * _US
#: Sort keys: the microsecond in the hour (< 2**32) above the node in the block (< 2**20).
_TIME_SHIFT = np.uint64(21)
_NODE_MASK = np.uint64((1 << 20) - 1)


def _scaled(u: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Uniform integers lo..hi from uniforms in [0, 1) (clipped: float32 may round up to 1)."""
    return np.minimum(lo + (u * (hi - lo + 1)).astype(np.int64), hi)


def hour_of_week(hour: int, utc_offset_hours: int) -> int:
    """Local hour of the week (Monday 00:00 = 0) of an absolute UTC hour since the epoch.

    >>> hour_of_week(0, 0)  # 1970-01-01 00:00 UTC was a Thursday
    72
    >>> hour_of_week(0, 2)
    74
    """
    local = hour + utc_offset_hours
    return ((local // 24 + 3) % 7) * 24 + local % 24


class BenignModel:
    """The arrays the benign generator looks up per flow, built once per simulation."""

    def __init__(self, population: Population) -> None:
        self.pop = population
        config: SimConfig = population.config
        self.config = config
        s = [SERVICES[name] for name in SERVICE_NAMES]

        def arr(values: list[float], dtype: type = np.float32) -> np.ndarray:
            return np.array(values, dtype)

        self.proto = arr([x.proto for x in s], np.uint8)
        self.port = arr([x.port for x in s], np.int64)
        self.inbound = arr([x.inbound for x in s], bool)
        self.pool_offset = arr([population.pool_offset[x.pool] for x in s], np.int64)
        self.pool_size = arr([POOLS[x.pool].size for x in s], np.float32)
        self.pool_last = arr([POOLS[x.pool].size - 1 for x in s], np.int64)
        self.pool_skew = arr([POOLS[x.pool].skew for x in s])
        self.answered = arr([x.answered for x in s])
        self.refused = arr([x.answered + x.rejected for x in s])
        self.fwd_mu, self.fwd_sigma = arr([np.log(x.fwd_packets[0]) for x in s]), arr([x.fwd_packets[1] for x in s])
        self.ratio_mu, self.ratio_sigma = arr([np.log(x.rev_ratio[0]) for x in s]), arr([x.rev_ratio[1] for x in s])
        self.fwd_lo, self.fwd_width = arr([x.fwd_bpp[0] for x in s]), arr([x.fwd_bpp[1] - x.fwd_bpp[0] for x in s])
        self.rev_lo, self.rev_width = arr([x.rev_bpp[0] for x in s]), arr([x.rev_bpp[1] - x.rev_bpp[0] for x in s])
        self.gap_mu, self.gap_sigma = arr([np.log(x.gap_s[0]) for x in s]), arr([x.gap_s[1] for x in s])
        self.tail = arr([x.tail for x in s])
        self.rst_end = arr([x.rst_end for x in s])

        # Service mixes of all roles in one sorted table: role r's cumulative weights run from r
        # to r + 1, so one searchsorted of (role + u) draws every flow's service.
        cum, ids = [], []
        for r, role in enumerate(config.roles):
            w = np.array([wt for _, wt in role.services], float)
            cum.append(r + np.cumsum(w) / w.sum())
            ids.append([SERVICE_ID[name] for name, _ in role.services])
        self.mix_cum = np.concatenate(cum)
        self.mix_cum[np.cumsum([len(c) for c in cum]) - 1] = np.arange(1, len(cum) + 1)  # exact ends
        self.mix_ids = np.concatenate(ids).astype(np.int64)
        self.periodic_service = np.array(
            [SERVICE_ID[r.periodic_service] if r.periodic_service else 0 for r in config.roles], np.int64
        )
        self.poisson_share = np.array([1.0 - r.periodic_share for r in config.roles])
        self.week = np.stack([r.shape.week() for r in config.roles])  # (roles, 168)
        self.start_s = config.start_us // _US

    def blocks(self) -> int:
        return -(-self.pop.nodes // self.config.nodes_per_chunk)

    def _nodes(self, block: int | None) -> np.ndarray:
        if block is None:
            return np.arange(self.pop.nodes)
        size = self.config.nodes_per_chunk
        return np.arange(block * size, min((block + 1) * size, self.pop.nodes))

    def _schedule(self, rng: np.random.Generator, hour: int, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(node, start_us, periodic) of every flow of ``nodes`` in ``hour``, in time order."""
        pop = self.pop
        role = pop.role[nodes]
        local = np.arange(len(nodes), dtype=np.uint64)
        how = hour_of_week(hour, self.config.utc_offset_hours)
        counts = rng.poisson(pop.mean_rate[nodes] * self.poisson_share[role] * self.week[role, how])
        poisson_offset = rng.integers(0, _HOUR_US, int(counts.sum()), dtype=np.uint64)

        # Periodic flows at start + phase + k * period: those of this hour, k counted exactly.
        period = pop.period_s[nodes]
        finite = np.isfinite(period)
        offset = np.where(finite, (hour * 3600 - self.start_s) - pop.phase_s[nodes], 0.0)
        period = np.where(finite, period, 1.0)
        k_first = np.ceil(offset / period)
        n_periodic = np.where(finite, np.ceil((offset + 3600) / period) - k_first, 0).astype(np.int64)
        k = np.repeat(k_first, n_periodic) + (np.arange(n_periodic.sum()) - np.repeat(np.cumsum(n_periodic) - n_periodic, n_periodic))
        rel_s = np.repeat(-offset, n_periodic) + k * np.repeat(period, n_periodic)  # seconds into the hour
        periodic_offset = np.clip(np.floor(rel_s * _US), 0, _HOUR_US - 1).astype(np.uint64)

        # One sort of packed keys (microsecond in the hour | node in the block | periodic) puts
        # the flows in time order: twice as fast as an argsort and a gather per column.
        key = np.concatenate([
            (poisson_offset << _TIME_SHIFT) | (np.repeat(local, counts) << np.uint64(1)),
            (periodic_offset << _TIME_SHIFT) | (np.repeat(local, n_periodic) << np.uint64(1)) | np.uint64(1),
        ])
        key.sort()
        node = nodes[((key >> np.uint64(1)) & _NODE_MASK).astype(np.int64)]
        start = hour * _HOUR_US + (key >> _TIME_SHIFT).astype(np.int64)
        return node, start, (key & np.uint64(1)).astype(bool)

    def records(self, hour: int, block: int) -> Records:
        """The benign connections of node block ``block`` in the UTC hour ``hour`` (since the epoch)."""
        rng = np.random.default_rng([self.config.seed, STREAM_BENIGN, hour, block])
        node, start, periodic = self._schedule(rng, hour, self._nodes(block))
        n = len(node)
        role = self.pop.role[node]
        svc = self.mix_ids[np.searchsorted(self.mix_cum, role + rng.random(n), side="right")]
        svc = np.where(periodic, self.periodic_service[role], svc)
        proto = self.proto[svc]
        tcp = proto == TCP
        inbound = self.inbound[svc]

        f32 = np.float32
        u = rng.random((9, n), dtype=f32)
        z = rng.standard_normal((3, n), dtype=f32)
        # float32 rounds size * u up to size for u just below 1: clip into the pool.
        pick = np.minimum((self.pool_size[svc] * u[0] ** self.pool_skew[svc]).astype(np.int64), self.pool_last[svc])
        peer = self.pool_offset[svc] + pick
        peer = np.where(periodic, self.pop.periodic_peer[node], peer)
        # The client's port is ephemeral: Linux range for our nodes, anything for outside clients.
        client_port = np.where(inbound, _scaled(u[1], 1024, 65535), _scaled(u[1], 32768, 60999))
        service_port = np.where(self.port[svc] == 0, _scaled(u[2], 1024, 65535), self.port[svc])

        answered = u[3] < self.answered[svc]
        refused = ~answered & tcp & (u[3] < self.refused[svc])
        established = answered & tcp
        syn_only = tcp & ~answered

        fwd = np.maximum(np.rint(np.exp(self.fwd_mu[svc] + self.fwd_sigma[svc] * z[0])), 1)
        bulk = u[4] < self.tail[svc]
        fwd[bulk] *= (1 + rng.pareto(1.2, int(bulk.sum()))).astype(f32)
        fwd = np.minimum(fwd, _MAX_PACKETS).astype(np.int64)
        fwd = np.where(established, np.maximum(fwd, 3), fwd)
        # Unanswered SYNs are retried after 1 s and 3 s; a refused one is not.
        retries = (u[5] < 0.35).astype(np.int64) + (u[5] < 0.15)
        fwd = np.where(syn_only, 1 + np.where(refused, 0, retries), fwd)
        rev = np.rint(fwd * np.exp(self.ratio_mu[svc] + self.ratio_sigma[svc] * z[1])).astype(np.int64)
        rev = np.where(answered, np.maximum(rev, 1 + established), np.where(refused, 1, 0))
        rev = np.minimum(rev, _MAX_PACKETS)

        fwd_bpp = np.where(syn_only, 44 + 16 * u[6], self.fwd_lo[svc] + self.fwd_width[svc] * u[6])
        rev_bpp = np.where(refused, 40, self.rev_lo[svc] + self.rev_width[svc] * u[7])
        fwd_by = np.rint(fwd * fwd_bpp.astype(np.float64)).astype(np.int64)
        rev_by = np.rint(rev * rev_bpp.astype(np.float64)).astype(np.int64)

        gap_s = np.exp(self.gap_mu[svc] + self.gap_sigma[svc] * z[2])
        dur_s = np.where(syn_only & ~refused, (fwd - 1) + (fwd == 3), (fwd + rev - 1) * gap_s.astype(np.float64))
        cut = dur_s > self.config.active_timeout_s
        dur_us = np.rint(np.minimum(dur_s, self.config.active_timeout_s) * _US).astype(np.int64)

        rst_end = u[8] < self.rst_end[svc]
        close = np.where(cut, 0, np.where(rst_end, RST, FIN))
        fwd_flags = np.where(established, SYN | ACK | np.where(fwd > 3, PSH, 0) | close, np.where(tcp, SYN, 0))
        rev_flags = np.where(
            established, SYN | ACK | np.where(rev > 2, PSH, 0) | np.where(cut | rst_end, 0, FIN), np.where(refused, RST | ACK, 0)
        )
        return Records(
            start_us=start,
            dur_us=dur_us,
            src=np.where(inbound, peer, node),
            dst=np.where(inbound, node, peer),
            sport=client_port,
            dport=service_port,
            proto=proto,
            fwd_pk=fwd,
            fwd_by=fwd_by,
            rev_pk=rev,
            rev_by=rev_by,
            fwd_flags=fwd_flags.astype(np.uint8),
            rev_flags=rev_flags.astype(np.uint8),
            addresses=self.pop.addresses,
        )
