"""nfdump filter expressions (``proto tcp and dst port 80``) compiled to one Polars expression.

:func:`compile_filter` parses an expression once into a :class:`FlowFilter`, whose ``expr`` is a
boolean Polars expression over the canonical flow columns: it runs inside lazy scans, so a
filtered dataset streams like an unfiltered one.

>>> import polars as pl
>>> from netflowgen.schema import FLOW_SCHEMA
>>> flows = pl.DataFrame({"src_ip": ["10.0.0.1", "2001:db8::1"], "dst_ip": ["10.0.0.2", "2001:db8::2"],
...                       "proto": [6, 17], "src_port": [40000, 53], "dst_port": [80, 5353]},
...                      schema={k: FLOW_SCHEMA[k] for k in ("src_ip", "dst_ip", "proto", "src_port", "dst_port")})
>>> compile_filter("proto tcp and dst port 80").apply(flows)["src_ip"].to_list()
['10.0.0.1']
>>> compile_filter("net 2001:db8::/32 or port in [443 8443]").apply(flows)["src_ip"].to_list()
['2001:db8::1']

The subset of nfdump 1.7's syntax covered (keywords are case-insensitive, ``#`` starts a comment):

- ``any``; ``inet``/``ipv4``, ``inet6``/``ipv6``; ``proto tcp|udp|icmp|icmp6|gre|esp|...|N``;
- ``[DIR] ip A``, ``[DIR] host A``, ``[DIR] ip in [A NET ...]``, ``[DIR] net A/N``, ``[DIR] net A MASK``
  (IPv4 and IPv6; IPv4 nets may be abbreviated: ``net 10.1/16``);
- ``[DIR] port [CMP] N``, ``[DIR] port in [N N ...]``;
- ``[in|out] packets [CMP] N``, ``[in|out] bytes [CMP] N`` (``k``/``m``/``g``/``t`` = 10^3/6/9/12),
  ``duration [CMP] MSEC``; ``flags LETTERS`` (upper case ``FSRPAU``, each once; ``X`` = all six);
- ``and``, ``or``, ``not`` (``not`` binds tightest, then ``and``, then ``or``), parentheses;
- extension (nfdump has no labels): ``label WORD`` or ``label "two words"``: the flow's ``label``
  or ``label_detail`` is exactly that text.

``DIR`` is ``src``, ``dst``, ``src and dst`` or ``src or dst`` (none: either end matches);
``CMP`` is ``=``, ``==``, ``eq``, ``<``, ``lt``, ``>``, ``gt``, ``<=``, ``le``, ``>=``, ``ge`` (none:
``=``). Numbers may be hexadecimal (``0x50``). nfdump filters on fields the flow table lacks
(``as``, ``vlan``, ``if``, ``mac``, ``tos``, ``icmp-type``, ``router``, ``pps`` ...) are refused.

Where nfdump surprises, this follows nfdump 1.7.1 (each point checked against the real program;
``tests/read/test_filter_nfdump.py`` compares every construct with it):

- ``packets`` and ``bytes`` count the forward direction only (``in packets``), also in
  bidirectional records; the reverse counters are ``out packets``/``out bytes``.
- ``duration`` is in milliseconds, whole ones: ``floor((ts_end - ts_start) / 1 ms)``.
- ``flags SA`` needs *all* of S and A set, but a negated ``flags`` (``not flags AFRPU``, also
  under ``not (...)``) means *none* of them is set, not "not all of them": ``flags X`` matches
  only flows with every flag FSRPAU, while ``not flags X`` matches only flows with none.
- Protocols without ports have ports 0 for nfdump: ``port 0`` matches GRE, ICMP and the like.
  ICMP and ICMPv6 are the exception: nfdump keeps ``type * 256 + code`` in their dst port. The
  flow table keeps no ICMP type or code, so a filter whose outcome on an ICMP flow depends on
  its dst port (``port 53`` on a capture with pings) cannot be decided and is refused with
  :class:`FilterUndecided` when it meets one; ``proto udp and port 53`` or
  ``port 53 and not proto icmp`` decide. Unknown ports or TCP flags (sources that leave them
  unset) are refused the same way; non-TCP flows have flags 0.
- Addresses are 128-bit: an IPv4 address ``a.b.c.d`` is ``::a.b.c.d``. So ``ip 0.0.0.0`` also
  matches the IPv6 address ``::``, IPv4 nets match IPv6 addresses of the form ``::a.b.c.d``, and
  IPv6 nets whose leading bits are zero (``net ::/8``) match every IPv4 address.
- An IPv6 net of length 0 acts as ``/64``: ``net ::/0`` matches addresses whose upper 64 bits
  are zero (every IPv4 address and ``::``), not everything; ``net fe80::/0`` is ``fe80::/64``.
- A net's host bits are ignored (``net 10.1.2.3/24`` is ``10.1.2.0/24``).
- ``inet``/``inet6`` are the record's address family: IPv4-mapped addresses (``::ffff:a.b.c.d``)
  are IPv6.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import polars as pl

from netflowgen.schema import PORT_PROTOCOLS

__all__ = ["FilterError", "FilterUndecided", "FlowFilter", "compile_filter"]

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


class FilterError(ValueError):
    """A filter expression that does not parse, or that the flow table cannot evaluate.

    The message shows the expression with a caret under the offending token.
    """


class FilterUndecided(ValueError):
    """A filter met flows on which its outcome depends on a value they do not carry."""

    def __init__(self, message: str) -> None:
        # Polars raises it again with the whole compiled expression appended: leave that out.
        message = message.split("\n\nThis error occurred in the following expression")[0].rstrip()
        super().__init__(message)


#: Protocol names nfdump 1.7.1 accepts (a common subset of its table).
PROTOCOLS: dict[str, int] = {
    "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "udp": 17, "rsvp": 46, "gre": 47,
    "esp": 50, "ah": 51, "icmp6": 58, "ospf": 89, "pim": 103, "sctp": 132,
}
ICMP_PROTOCOLS = (1, 58)
TCP = 6
FLAG_BITS = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32, "X": 63}
_SCALE = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_COMPARATORS = {"=": "eq", "==": "eq", "eq": "eq", "<": "lt", "lt": "lt", ">": "gt", "gt": "gt",
                "<=": "le", "le": "le", ">=": "ge", "ge": "ge"}
#: nfdump filter keywords on fields the canonical flow table does not have.
_UNSUPPORTED = {
    "as": "AS numbers", "vlan": "VLAN ids", "if": "interface ids", "mac": "MAC addresses",
    "tos": "the ToS byte", "icmp-type": "ICMP types", "icmp-code": "ICMP codes",
    "router": "the exporter's address", "next": "next-hop addresses", "bgpnext": "BGP next hops",
    "mpls": "MPLS labels", "mask": "mask bits", "engine-type": "engine types", "engine-id": "engine ids",
    "sysid": "collector ids", "count": "nfdump's record counter", "flow": "aggregated flow counts",
    "flowdir": "flow directions", "pps": "nfdump's packets per second", "bps": "nfdump's bits per second",
    "bpp": "nfdump's bytes per packet", "tun": "tunnel fields", "tunip": "tunnel addresses",
    "geo": "geolocation", "ident": "the ident field", "xip": "NAT addresses", "xport": "NAT ports",
    "nat": "NAT fields", "asa": "NSEL events", "payload": "payloads", "latency": "latencies",
    "client": "latencies", "server": "latencies", "observation": "observation ids", "ipv4option": "IP options",
}
_KEYWORDS = {"and", "or", "not", "any", "inet", "ipv4", "inet6", "ipv6", "proto", "ip", "host", "net",
             "port", "in", "out", "packets", "bytes", "duration", "flags", "label", "src", "dst"}


# --- tokens -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Token:
    text: str
    pos: int
    kind: str  # "word", "op", "punct", "string", "end"

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "word" else ""


_TOKEN = re.compile(r"""\s+|\#[^\n]*|(?P<op><=|>=|==|=|<|>)|(?P<punct>[()\[\],])|(?P<string>"[^"]*"|'[^']*')|(?P<word>[^\s()\[\],<>=#"']+)""")


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # an unterminated quote
            raise FilterError(_caret(text, pos, 1, "unterminated quoted string"))
        if m.lastgroup:
            value = m.group(m.lastgroup)
            out.append(_Token(value[1:-1] if m.lastgroup == "string" else value, pos, m.lastgroup))
        pos = m.end()
    out.append(_Token("", len(text), "end"))
    return out


def _caret(text: str, pos: int, width: int, message: str) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start:] if line_end < 0 else text[line_start:line_end]
    return f"bad filter: {message}\n  {line}\n  {' ' * (pos - line_start)}{'^' * max(width, 1)}"


# --- leaves: the columns as nfdump sees them ----------------------------------------------------

_proto = pl.col("proto")
_has_ports = _proto.is_in(list(PORT_PROTOCOLS))


def _port_column(end: str) -> pl.Expr:
    """``src``/``dst`` port as nfdump stores it; null where the flow table cannot know it."""
    column = pl.col(f"{end}_port").cast(pl.Int64)
    if end == "src":
        return pl.when(_has_ports).then(column).otherwise(pl.lit(0, pl.Int64))
    # nfdump keeps ICMP type * 256 + code in the dst port; the flow table does not have it.
    return (pl.when(_has_ports).then(column)
            .when(_proto.is_in(list(ICMP_PROTOCOLS))).then(pl.lit(None, pl.Int64))
            .otherwise(pl.lit(0, pl.Int64)))


def _tcp_flags() -> pl.Expr:
    """TCP flags; 0 for non-TCP flows without flags, null for TCP flows without them."""
    flags = pl.col("tcp_flags").cast(pl.Int64)
    return pl.when(flags.is_null() & (_proto != TCP)).then(pl.lit(0, pl.Int64)).otherwise(flags)


def _compare(value: pl.Expr, op: str, number: int) -> pl.Expr:
    return {"eq": value == number, "lt": value < number, "gt": value > number,
            "le": value <= number, "ge": value >= number}[op]


@functools.lru_cache(maxsize=1 << 20)
def _address_number(text: str) -> int | None:
    """An address as nfdump compares it: 128 bits, IPv4 ``a.b.c.d`` as ``::a.b.c.d``."""
    try:
        return int(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def _in_ranges(ranges: tuple[tuple[int, int], ...], addresses: pl.Series) -> pl.Series:
    """Which addresses lie in any of the inclusive ranges (each distinct address parsed once)."""
    distinct = addresses.drop_nulls().unique()
    matching = []
    for address in distinct.to_list():
        number = _address_number(address)
        if number is not None and any(lo <= number <= hi for lo, hi in ranges):
            matching.append(address)
    return addresses.is_in(pl.Series(matching, dtype=pl.String).implode())


def _address_leaf(end: str, ranges: tuple[tuple[int, int], ...]) -> pl.Expr:
    return pl.col(f"{end}_ip").map_batches(
        functools.partial(_in_ranges, ranges), return_dtype=pl.Boolean, is_elementwise=True
    )


# --- the tree -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Leaf:
    """A primitive: its Polars expression, and what it means when negated (nfdump's ``flags``)."""

    positive: pl.Expr
    negative: pl.Expr | None = None  # None: the plain negation
    may_be_unknown: bool = False


@dataclass(frozen=True)
class _Not:
    arg: object


@dataclass(frozen=True)
class _And:
    args: tuple[object, ...]


@dataclass(frozen=True)
class _Or:
    args: tuple[object, ...]


def _to_expr(node: object, negated: bool = False) -> pl.Expr:
    """The tree as one expression, with negations pushed to the leaves as nfdump evaluates them."""
    if isinstance(node, _Not):
        return _to_expr(node.arg, not negated)
    if isinstance(node, (_And, _Or)):
        parts = [_to_expr(a, negated) for a in node.args]
        conjunction = isinstance(node, _And) != negated  # De Morgan
        return functools.reduce((lambda a, b: a & b) if conjunction else (lambda a, b: a | b), parts)
    assert isinstance(node, _Leaf)
    if not negated:
        return node.positive
    return node.negative if node.negative is not None else ~node.positive


def _may_be_unknown(node: object) -> bool:
    if isinstance(node, _Not):
        return _may_be_unknown(node.arg)
    if isinstance(node, (_And, _Or)):
        return any(_may_be_unknown(a) for a in node.args)
    return isinstance(node, _Leaf) and node.may_be_unknown


# --- the parser ---------------------------------------------------------------------------------

class _Parser:
    """Recursive descent over nfdump's grammar: or_expr := and_expr ('or' and_expr)*, and so on."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        tok = self.tok
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def fail(self, message: str, tok: _Token | None = None) -> FilterError:
        tok = tok or self.tok
        if message.startswith("expected"):
            message += ", found " + ("the end of the filter" if tok.kind == "end" else repr(tok.text))
        return FilterError(_caret(self.text, tok.pos, len(tok.text), message))

    def parse(self) -> object:
        if self.tok.kind == "end":
            raise self.fail("expected a filter such as 'proto tcp' (or 'any'): the filter is empty")
        tree = self.or_expr()
        if self.tok.kind != "end":
            raise self.fail("expected 'and', 'or' or the end of the filter")
        return tree

    def or_expr(self) -> object:
        args = [self.and_expr()]
        while self.tok.word == "or":
            self.take()
            args.append(self.and_expr())
        return args[0] if len(args) == 1 else _Or(tuple(args))

    def and_expr(self) -> object:
        args = [self.unary()]
        while self.tok.word == "and":
            self.take()
            args.append(self.unary())
        return args[0] if len(args) == 1 else _And(tuple(args))

    def unary(self) -> object:
        if self.tok.word == "not":
            self.take()
            return _Not(self.unary())
        if self.tok.text == "(" and self.tok.kind == "punct":
            self.take()
            inner = self.or_expr()
            if self.tok.text != ")":
                raise self.fail("expected ')' to close the '('")
            self.take()
            return inner
        return self.primitive()

    # primitives

    def primitive(self) -> object:
        tok = self.tok
        word = tok.word
        if word in _UNSUPPORTED:
            raise self.fail(f"nfdump's '{tok.text}' filter needs {_UNSUPPORTED[word]}, which the flow table does not keep")
        if word == "any":
            self.take()
            return _Leaf(pl.lit(True))
        if word in ("inet", "ipv4", "inet6", "ipv6"):
            self.take()
            v6 = pl.col("src_ip").str.contains(":", literal=True)
            return _Leaf(v6 if word in ("inet6", "ipv6") else ~v6)
        if word == "proto":
            self.take()
            return _Leaf(_proto == self.protocol())
        if word in ("src", "dst"):
            return self.directed()
        if word in ("ip", "host", "net", "port"):
            return self.endpoint(("src", "dst"), "or")
        if word in ("in", "out") and self.peek().word in ("packets", "bytes"):
            self.take()
            return self.counter("fwd" if word == "in" else "rev")
        if word in ("packets", "bytes"):
            return self.counter("fwd")
        if word == "duration":
            self.take()
            op, number = self.comparison("duration")
            ms = (pl.col("ts_end") - pl.col("ts_start")).dt.total_microseconds() // 1000
            return _Leaf(_compare(ms, op, number))
        if word == "flags":
            return self.flags()
        if word == "label":
            self.take()
            if self.tok.kind not in ("word", "string"):
                raise self.fail("expected a label after 'label' (quote it if it has spaces)")
            value = self.take().text
            return _Leaf((pl.col("label") == value).fill_null(False) | (pl.col("label_detail") == value).fill_null(False))
        if tok.kind == "end":
            raise self.fail("expected a filter primitive (proto, ip, net, port, packets, bytes, flags, ...)")
        raise self.fail("expected a filter primitive such as 'proto tcp', 'ip 10.0.0.1', 'port 80' or 'any'")

    def directed(self) -> object:
        first = self.take().word
        if self.tok.word in ("and", "or") and self.peek().word in ("src", "dst") and self.peek().word != first:
            join = self.take().word
            self.take()
            return self.endpoint(("src", "dst"), join)
        if self.tok.word not in ("ip", "host", "net", "port"):
            raise self.fail(f"expected 'ip', 'host', 'net' or 'port' after '{first}'")
        return self.endpoint((first,), "or")

    def endpoint(self, ends: tuple[str, ...], join: str) -> object:
        kind = self.take().word
        if kind == "port":
            if self.tok.word == "in":
                self.take()
                ports = tuple(self.port_number(t) for t in self.bracket_list("port numbers"))
                make: Callable[[str], pl.Expr] = lambda end: _port_column(end).is_in(list(ports))
            else:
                op, number = self.comparison("port")
                if not 0 <= number <= 65535:
                    raise self.fail("port outside of range 0..65535", self.tokens[self.i - 1])
                make = lambda end: _compare(_port_column(end), op, number)
            leaves = [_Leaf(make(end), may_be_unknown=True) for end in ends]
        else:
            if kind == "net":
                ranges: tuple[tuple[int, int], ...] = (self.network(),)
            elif self.tok.word == "in":
                self.take()
                ranges = tuple(self.address_or_network(t) for t in self.bracket_list("addresses or networks"))
            else:
                ranges = (self.address(kind),)
            leaves = [_Leaf(_address_leaf(end, ranges)) for end in ends]
        if len(leaves) == 1:
            return leaves[0]
        return _And(tuple(leaves)) if join == "and" else _Or(tuple(leaves))

    def counter(self, direction: str) -> object:
        what = self.take().word
        op, number = self.comparison(what)
        return _Leaf(_compare(pl.col(f"{direction}_{what}").cast(pl.Int64), op, number))

    def flags(self) -> object:
        self.take()
        tok = self.tok
        letters = tok.text
        if tok.kind != "word" or tok.word in _KEYWORDS:
            raise self.fail("expected TCP flag letters (F S R P A U, X = all of them) after 'flags'")
        if letters.isdigit():
            raise self.fail("give TCP flags as letters (flags SA), not as a number", tok)
        for i, c in enumerate(letters):
            if c not in FLAG_BITS:
                hint = " (flag letters are upper case, as in nfdump)" if c.upper() in FLAG_BITS else ""
                raise self.fail(f"unknown TCP flag {c!r}: nfdump knows F S R P A U, and X for all of them{hint}", tok)
            if c in letters[:i]:
                raise self.fail(f"TCP flag {c!r} given twice", tok)
        self.take()
        mask = functools.reduce(lambda a, c: a | FLAG_BITS[c], letters, 0)
        flags = _tcp_flags()
        # nfdump: `flags SA` = all of them; `not flags SA` = none of them.
        return _Leaf((flags & mask) == mask, negative=(flags & mask) == 0, may_be_unknown=True)

    # values

    def comparison(self, after: str) -> tuple[str, int]:
        op = "eq"
        if self.tok.kind == "op" or self.tok.word in _COMPARATORS:
            op = _COMPARATORS[self.take().text.lower()]
        what = {"port": "a port number", "duration": "a duration in milliseconds"}.get(after, "a number")
        return op, self.number(f"expected {what} after '{after}'")

    def number(self, expected: str) -> int:
        tok = self.tok
        m = re.fullmatch(r"(0x[0-9a-f]+|\d+)([kmgt]?)", tok.text.lower()) if tok.kind == "word" else None
        if m is None:
            raise self.fail(expected)
        self.take()
        return int(m.group(1), 0) * _SCALE.get(m.group(2), 1)

    def port_number(self, tok: _Token) -> int:
        m = re.fullmatch(r"0x[0-9a-fA-F]+|\d+", tok.text)
        if m is None:
            raise self.fail("expected a port number in the list", tok)
        port = int(tok.text, 0)
        if port > 65535:
            raise self.fail("port outside of range 0..65535", tok)
        return port

    def protocol(self) -> int:
        tok = self.tok
        if tok.kind != "word":
            raise self.fail("expected a protocol name or number after 'proto'")
        if tok.text.isdigit():
            if int(tok.text) > 255:
                raise self.fail("protocol number > 255")
            self.take()
            return int(tok.text)
        if tok.word not in PROTOCOLS:
            raise self.fail(f"unknown protocol: give its number (proto 47) or one of {', '.join(PROTOCOLS)}")
        self.take()
        return PROTOCOLS[tok.word]

    def bracket_list(self, what: str) -> list[_Token]:
        if self.tok.text != "[":
            raise self.fail("expected '[' after 'in'")
        self.take()
        items: list[_Token] = []
        while self.tok.text != "]":
            if self.tok.kind == "end":
                raise self.fail("expected ']' to close the list")
            if self.tok.text == ",":
                if not items or self.peek().text in (",", "]"):
                    raise self.fail(f"expected {what} around ','")
                self.take()
                continue
            if self.tok.kind != "word":
                raise self.fail(f"expected {what} in the list")
            items.append(self.take())
        if not items:
            raise self.fail(f"expected {what} in the list")
        self.take()
        return items

    def address(self, kind: str) -> tuple[int, int]:
        tok = self.tok
        number = _address_number(tok.text) if tok.kind == "word" else None
        if number is None:
            hint = " (use 'net' for a prefix)" if "/" in tok.text else " (host names are not resolved)"
            raise self.fail(f"expected an IPv4 or IPv6 address after '{kind}'" + (hint if tok.kind == "word" else ""))
        self.take()
        return number, number

    def address_or_network(self, tok: _Token) -> tuple[int, int]:
        if "/" in tok.text:
            return self.network_of(tok, None)
        number = _address_number(tok.text)
        if number is None:
            raise self.fail("expected an IPv4 or IPv6 address or network in the list", tok)
        return number, number

    def network(self) -> tuple[int, int]:
        tok = self.take()
        if tok.kind != "word":
            raise self.fail("expected a network (10.0.0.0/8, 2001:db8::/32) after 'net'", tok)
        mask: _Token | None = None
        if "/" not in tok.text:
            if self.tok.kind == "word" and _address_number(self.tok.text) is not None and "." in self.tok.text:
                mask = self.take()
            else:
                raise self.fail("expected a network with /bits or a netmask after 'net'", self.tok if _address_number(tok.text) else tok)
        return self.network_of(tok, mask)

    def network_of(self, tok: _Token, mask: _Token | None) -> tuple[int, int]:
        """An nfdump net as the inclusive range of 128-bit addresses it matches."""
        address, _, bits_text = tok.text.partition("/")
        if mask is not None:
            try:
                bits = ipaddress.IPv4Network(f"0.0.0.0/{mask.text}").prefixlen
            except ValueError:
                raise self.fail("expected a netmask such as 255.255.255.0", mask) from None
        elif bits_text.isdigit():
            bits = int(bits_text)
        else:
            raise self.fail("expected a network such as 10.0.0.0/8 or 2001:db8::/32", tok)
        if ":" not in address and address.count(".") < 3 and all(p.isdigit() for p in address.split(".")):
            address = ".".join((address.split(".") + ["0", "0", "0"])[:4])  # nfdump: 10.1/16
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise self.fail("expected a network such as 10.0.0.0/8 or 2001:db8::/32", tok) from None
        if bits > ip.max_prefixlen:
            raise self.fail(f"too many netbits for an IPv{ip.version} address (at most {ip.max_prefixlen})", tok)
        if ip.version == 4:
            bits += 96  # IPv4 a.b.c.d is ::a.b.c.d
        elif bits == 0:
            bits = 64  # nfdump 1.7.1 computes the mask of an IPv6 /0 as /64
        size = 1 << (128 - bits)
        lo = int(ip) & ~(size - 1)
        return lo, lo + size - 1


# --- the compiled filter ------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class FlowFilter:
    """A compiled filter: ``expr`` selects the flows it matches (use :meth:`apply`)."""

    text: str
    """The expression as given."""
    expr: pl.Expr
    """Boolean expression over the canonical columns; raises :class:`FilterUndecided` on flows it cannot decide."""

    def apply(self, frame: Frame) -> Frame:
        """The flows of ``frame`` (DataFrame or LazyFrame) that the filter matches."""
        return frame.filter(self.expr)


def _require_decided(text: str, keep: pl.Series) -> pl.Series:
    undecided = keep.null_count()
    if undecided:
        raise FilterUndecided(
            f"filter {text!r} cannot decide {undecided:,} flows: it compares a value they do not carry. "
            "nfdump matches the dst port of ICMP flows against type*256+code, which the flow table does not keep, "
            "and some sources leave ports or TCP flags unset. Name the protocol ('proto udp and port 53') "
            "or leave those flows out ('... and not proto icmp and not proto icmp6')"
        )
    return keep


@functools.lru_cache(maxsize=256)
def compile_filter(text: str) -> FlowFilter:
    """Parse an nfdump filter expression once; raises :class:`FilterError` with a caret if it is bad.

    >>> compile_filter("port >")
    Traceback (most recent call last):
    ...
    netflowgen.read.filter.FilterError: bad filter: expected a port number after 'port', found the end of the filter
      port >
            ^
    """
    tree = _Parser(text).parse()
    expr = _to_expr(tree)
    if _may_be_unknown(tree):
        expr = expr.map_batches(functools.partial(_require_decided, text), return_dtype=pl.Boolean, is_elementwise=True)
    return FlowFilter(text, expr)
