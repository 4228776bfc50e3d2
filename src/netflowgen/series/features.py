"""The feature registry: every per-(node, step) traffic feature, defined once.

Features are aggregations over the *node view* of flows, one row per (flow, node it touches):

==============  ==================================================================
column          meaning
==============  ==================================================================
node            the node's address
step            start of the step the flow started in (UTC)
outbound        True when the node initiated the flow (it is the flow's source)
peer            the other endpoint's address
local_port      the node's port of the flow (null without ports)
remote_port     the peer's port
service_port    the responder's port (the flow's dst_port): what service was used
proto           IANA protocol number
pkts_sent       packets the node sent in the flow; pkts_recv, bytes_sent, bytes_recv alike
tcp_flags       OR of TCP flags of the flow (null if unknown)
==============  ==================================================================

Adding a feature is adding one :class:`Feature` to :data:`FEATURES`; the series builder, the
tokenizer and the model read the list from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

__all__ = ["Feature", "FEATURES", "feature_names", "aggregations"]

_SYN, _RST, _ACK = 2, 4, 16

_inbound = ~pl.col("outbound")
_outbound = pl.col("outbound")
_tcp = pl.col("proto") == 6
_flags = pl.col("tcp_flags").fill_null(0)
_syn_no_ack = _tcp & ((_flags & _SYN) != 0) & ((_flags & _ACK) == 0)


def _count(cond: pl.Expr) -> pl.Expr:
    return cond.cast(pl.UInt32).sum()


def _distinct(col: str, cond: pl.Expr | None = None) -> pl.Expr:
    e = pl.col(col)
    if cond is not None:
        e = e.filter(cond)
    return e.drop_nulls().n_unique().cast(pl.UInt32)


def _service(*ports: int) -> pl.Expr:
    return _count(pl.col("service_port").is_in(list(ports)).fill_null(False))


@dataclass(frozen=True)
class Feature:
    """One per-step traffic feature: its column name, meaning and aggregation."""

    name: str
    doc: str
    agg: pl.Expr


FEATURES: tuple[Feature, ...] = (
    Feature("flows_in", "flows initiated by peers towards the node", _count(_inbound)),
    Feature("flows_out", "flows initiated by the node", _count(_outbound)),
    Feature("packets_in", "packets received by the node", pl.col("pkts_recv").sum()),
    Feature("packets_out", "packets sent by the node", pl.col("pkts_sent").sum()),
    Feature("bytes_in", "bytes received by the node", pl.col("bytes_recv").sum()),
    Feature("bytes_out", "bytes sent by the node", pl.col("bytes_sent").sum()),
    Feature("peers_in", "distinct peers that initiated flows to the node", _distinct("peer", _inbound)),
    Feature("peers_out", "distinct peers the node initiated flows to", _distinct("peer", _outbound)),
    Feature("local_ports", "distinct ports of the node", _distinct("local_port")),
    Feature("remote_ports", "distinct ports of its peers", _distinct("remote_port")),
    Feature("tcp_flows", "TCP flows", _count(_tcp)),
    Feature("udp_flows", "UDP flows", _count(pl.col("proto") == 17)),
    Feature("icmp_flows", "ICMP and ICMPv6 flows", _count(pl.col("proto").is_in([1, 58]))),
    Feature("other_flows", "flows of other protocols", _count(~pl.col("proto").is_in([1, 6, 17, 58]))),
    Feature("syn_no_ack_in", "inbound TCP flows with SYN and no ACK (half-open attempts)", _count(_inbound & _syn_no_ack)),
    Feature("syn_no_ack_out", "outbound TCP flows with SYN and no ACK", _count(_outbound & _syn_no_ack)),
    Feature("rst_flows", "TCP flows with RST", _count(_tcp & ((_flags & _RST) != 0))),
    Feature("svc_web", "flows to web ports (80, 443, 8080, 8443)", _service(80, 443, 8080, 8443)),
    Feature("svc_dns", "flows to DNS ports (53, 853, 5353)", _service(53, 853, 5353)),
    Feature("svc_ntp", "flows to NTP (123)", _service(123)),
    Feature("svc_remote", "flows to remote-access ports (22, 23, 3389, 5900)", _service(22, 23, 3389, 5900)),
    Feature("svc_mail", "flows to mail ports (25, 110, 143, 465, 587, 993, 995)", _service(25, 110, 143, 465, 587, 993, 995)),
    Feature(
        "svc_other_low",
        "flows to other ports below 1024",
        _count((pl.col("service_port") < 1024).fill_null(False)
               & ~pl.col("service_port").is_in([22, 23, 25, 53, 80, 110, 123, 143, 443, 465, 587, 853, 993, 995]).fill_null(False)),
    ),
    Feature("svc_high", "flows to ports 1024 and above (excluding the named services)",
            _count((pl.col("service_port") >= 1024).fill_null(False)
                   & ~pl.col("service_port").is_in([3389, 5353, 5900, 8080, 8443]).fill_null(False))),
)


def feature_names() -> list[str]:
    """Names of the traffic features, in model order.

    >>> feature_names()[:3]
    ['flows_in', 'flows_out', 'packets_in']
    """
    return [f.name for f in FEATURES]


def aggregations(names: tuple[str, ...] | list[str] | None = None) -> list[pl.Expr]:
    """The aggregations of the features ``names`` (default: every registered one), in that order."""
    by_name = {f.name: f for f in FEATURES}
    unknown = [n for n in names or () if n not in by_name]
    if unknown:
        raise ValueError(f"unknown features {', '.join(unknown)}; the registry has {', '.join(by_name)}")
    chosen = [by_name[n] for n in names] if names is not None else list(FEATURES)
    return [f.agg.cast(pl.UInt64).alias(f.name) for f in chosen]
