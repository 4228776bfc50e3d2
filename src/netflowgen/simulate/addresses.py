"""IPv4 addresses for the simulator: public ones for the Internet side, and text for all of them.

The Internet side never uses an address that a local-prefix rule, a documentation example or a
special-purpose registry entry would claim: every external address is a plain unicast public one,
so ``--nodes local`` in ``netflowgen series`` sees exactly the simulated nodes as local.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import polars as pl
import pyarrow as pa

__all__ = ["SPECIAL_IPV4", "ipv4_text", "is_special", "public_ipv4"]

#: IANA IPv4 special-purpose ranges, private ranges, multicast and reserved space (RFC 6890 and after).
SPECIAL_IPV4: tuple[str, ...] = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
    "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4",
)


def _nets(extra: tuple[str, ...]) -> list[tuple[int, int]]:
    out = []
    for text in SPECIAL_IPV4 + extra:
        net = ipaddress.IPv4Network(text, strict=False)
        out.append((int(net.network_address), (0xFFFFFFFF << (32 - net.prefixlen)) & 0xFFFFFFFF))
    return out


def is_special(addresses: np.ndarray, extra: tuple[str, ...] = ()) -> np.ndarray:
    """Whether each uint32 address lies in a special range (or in one of ``extra``).

    >>> is_special(np.array([0x0A000001, 0x08080808, 0xC0A80101], np.uint32)).tolist()
    [True, False, True]
    """
    a = addresses.astype(np.uint32)
    special = np.zeros(len(a), bool)
    for base, mask in _nets(extra):
        special |= (a & np.uint32(mask)) == np.uint32(base)
    return special


def public_ipv4(rng: np.random.Generator, n: int, exclude: tuple[str, ...] = ()) -> np.ndarray:
    """``n`` random public unicast IPv4 addresses (uint32), none in a special range or ``exclude``."""
    out = np.empty(0, np.uint32)
    while len(out) < n:
        # About 14% of 1.0.0.0-223.255.255.255 is special: draw a little more than needed.
        draw = rng.integers(1 << 24, 224 << 24, int((n - len(out)) * 1.25) + 16, dtype=np.uint32)
        out = np.concatenate([out, draw[~is_special(draw, exclude)]])
    return out[:n]


def ipv4_text(addresses: np.ndarray) -> pa.Array:
    """uint32 addresses as dotted text (Arrow large_string), vectorized.

    >>> ipv4_text(np.array([0x0A000001, 0xC0000201], np.uint32)).to_pylist()
    ['10.0.0.1', '192.0.2.1']
    """
    a = addresses.astype(np.uint32)
    octets = [pl.Series((a >> np.uint32(shift)) & np.uint32(0xFF)).cast(pl.String) for shift in (24, 16, 8, 0)]
    text = pl.select(pl.concat_str([pl.lit(o) for o in octets], separator=".")).to_series()
    return text.to_arrow().cast(pa.large_string())
