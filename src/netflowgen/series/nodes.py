"""Which endpoints are nodes, and which group each node belongs to."""

from __future__ import annotations

import enum
import ipaddress
from pathlib import Path

import polars as pl

__all__ = ["NodeMode", "DEFAULT_LOCAL_PREFIXES", "is_local", "group_of", "read_group_map"]


class NodeMode(str, enum.Enum):
    """Which endpoints of a flow are modelled as nodes."""

    LOCAL = "local"
    """Endpoints inside the local prefixes (private ranges plus the user's)."""
    DST = "dst"
    """Every destination (responder)."""
    SRC = "src"
    """Every source (originator)."""
    ALL = "all"
    """Every endpoint."""


#: Private, shared (CGNAT) and link-local ranges: the default "local" networks.
DEFAULT_LOCAL_PREFIXES: tuple[str, ...] = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "fc00::/7", "fe80::/10",
)


def _ipv4_int(col: pl.Expr) -> pl.Expr:
    parts = col.str.split(".")
    is_v4 = col.str.contains(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
    value = (
        parts.list.get(0, null_on_oob=True).cast(pl.UInt32, strict=False) * 16777216
        + parts.list.get(1, null_on_oob=True).cast(pl.UInt32, strict=False) * 65536
        + parts.list.get(2, null_on_oob=True).cast(pl.UInt32, strict=False) * 256
        + parts.list.get(3, null_on_oob=True).cast(pl.UInt32, strict=False)
    )
    return pl.when(is_v4).then(value)


def _ipv6_prefix_regex(net: ipaddress.IPv6Network) -> str:
    """A regex over the *exploded* form for an IPv6 prefix whose length is a multiple of 4."""
    hexdigits = net.network_address.exploded.replace(":", "")[: net.prefixlen // 4]
    groups = [hexdigits[i : i + 4] for i in range(0, len(hexdigits), 4)]
    return "^" + ":".join(groups)


def is_local(col: pl.Expr, prefixes: tuple[str, ...]) -> pl.Expr:
    """Whether each address lies in one of ``prefixes`` (vectorized for IPv4 and IPv6).

    >>> df = pl.DataFrame({"ip": ["10.1.2.3", "8.8.8.8", "fd00::1", "2001:db8::1", "192.168.1.255"]})
    >>> df.select(is_local(pl.col("ip"), DEFAULT_LOCAL_PREFIXES))["ip"].to_list()
    [True, False, True, False, True]
    """
    v4 = _ipv4_int(col)
    conds = []
    v6_nets = []
    for text in prefixes:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError as e:
            raise ValueError(f"not an IP prefix: {text!r} ({e})") from e
        if net.version == 4:
            mask = (0xFFFFFFFF << (32 - net.prefixlen)) & 0xFFFFFFFF
            conds.append(((v4.cast(pl.Int64) & mask) == int(net.network_address)).fill_null(False))
        else:
            v6_nets.append(net)
    if v6_nets:
        exploded = _ipv6_exploded(col)
        for net in v6_nets:
            # Prefixes not on a 4-bit boundary are widened to the next one down, exactly covered
            # by listing every 4-bit sub-prefix.
            for sub in net.subnets(new_prefix=-(-net.prefixlen // 4) * 4) if net.prefixlen % 4 else [net]:
                conds.append(exploded.str.contains(_ipv6_prefix_regex(sub)).fill_null(False))
    if not conds:
        return pl.lit(False)
    return pl.any_horizontal(conds)


def _explode_batch(s: pl.Series) -> pl.Series:
    """Exploded IPv6 text of a batch (null for anything else): Python sees each distinct IPv6
    address of the batch once, never the IPv4 rows."""
    v6 = s.filter(s.str.contains(":", literal=True).fill_null(False)).unique()
    mapping: dict[str, str | None] = {}
    for value in v6.to_list():
        try:
            mapping[value] = ipaddress.IPv6Address(value).exploded
        except ValueError:
            mapping[value] = None
    return s.replace_strict(mapping, default=None, return_dtype=pl.String)


def _ipv6_exploded(col: pl.Expr) -> pl.Expr:
    """IPv6 text in exploded form (null for IPv4 and non-addresses)."""
    return col.map_batches(_explode_batch, return_dtype=pl.String, is_elementwise=True)


def group_of(nodes: pl.Series, ipv4_prefix: int = 24, ipv6_prefix: int = 64) -> pl.Series:
    """The default group of each node: its IPv4 /24 (or IPv6 /64) network.

    IPv4 addresses are handled in vectorized integer arithmetic; only IPv6 nodes go through
    :mod:`ipaddress` (once each).

    >>> group_of(pl.Series(["10.1.2.3", "fd00:1:2:3:4::1", "192.168.7.200"])).to_list()
    ['10.1.2.0/24', 'fd00:1:2:3::/64', '192.168.7.0/24']
    """
    mask = (0xFFFFFFFF << (32 - ipv4_prefix)) & 0xFFFFFFFF
    net = _ipv4_int(pl.col("n")).cast(pl.Int64) & mask
    v4 = pl.format("{}.{}.{}.{}/" + str(ipv4_prefix), net // 16777216, (net // 65536) % 256, (net // 256) % 256, net % 256)
    frame = pl.DataFrame({"n": nodes}).with_columns(v4.alias("g"))
    v6 = frame.filter(pl.col("g").is_null() & pl.col("n").is_not_null())["n"].unique().to_list()
    mapping = {v: str(ipaddress.ip_network(f"{v}/{ipv6_prefix}", strict=False)) for v in v6}
    groups = frame.select(pl.coalesce("g", pl.col("n").replace_strict(mapping, default=None, return_dtype=pl.String)))
    return groups.to_series().alias("group")


def read_group_map(path: Path) -> dict[str, str]:
    """A node -> group mapping from a two-column CSV (``node,group``, header required)."""
    df = pl.read_csv(path, schema_overrides={"node": pl.String, "group": pl.String})
    missing = {"node", "group"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: group mapping needs columns node,group; missing {sorted(missing)}")
    return dict(zip(df["node"].to_list(), df["group"].to_list()))
