"""The canonical flow table: the one place that names and types flow columns.

Every reader turns its format into this table, and everything downstream reads only this table.
A row is one flow record as the source wrote it: one direction for unidirectional NetFlow
(reverse counters are 0), both directions for bidirectional sources (Zeek, Argus, CICFlowMeter).

Validation rules (applied to every format by :mod:`netflowgen.read.validate`):

Rejected (row goes to the rejects file with its source position and this reason):
  * a timestamp that does not parse, or lies before 1970 or after 2100-01-01 (absurd clock);
  * an address that is not an IPv4/IPv6 address (MAC addresses, ``0``, empty): the
    table holds IP flows only, so ARP/LLC/STP records from Argus are rejected here;
  * a protocol that is not an IP protocol (``llc``, ``arp``, ``man``, ...) or not 0..255;
  * a port that does not parse or lies outside 0..65535, on a protocol that has ports;
  * a counter that does not parse or is negative;
  * absurd counters: more bytes than 65,535 per packet, or bytes without any packet (where
    the source gave a packet count; an unset count is repaired, see MISSING_COUNTERS);
  * a wrong number of fields, invalid UTF-8, or any other row the format cannot parse.

Repaired and flagged (row kept; the ``quality`` bit says what was done):
  * ``END_BEFORE_START``: end before start; end is set to start;
  * ``NO_END``: the source gave no end or duration; end is set to start;
  * ``MISSING_COUNTERS``: the source left a counter unset (Zeek ``-``); it is set to 0.

Accepted and flagged (row kept unchanged):
  * ``EPOCH_CLOCK``: start before 2000-01-01. Real captures with a relative clock or an unset
    exporter clock start near 1970; the rows are valid, their clock is odd.

Accepted silently: rows out of time order (exporters emit flows when they end, not when they
start, so order is never guaranteed); duplicate rows (they are real records of the source).

Ports are null for protocols without ports (anything but TCP, UDP, SCTP, UDP-Lite, DCCP).
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone

import polars as pl
import pyarrow as pa

__all__ = [
    "FLOW_COLUMNS",
    "FLOW_SCHEMA",
    "Quality",
    "PORT_PROTOCOLS",
    "MIN_VALID_TS",
    "EPOCH_CLOCK_BEFORE",
    "MAX_VALID_TS",
    "arrow_schema",
    "empty_flows",
]

SCHEMA_VERSION = 1

#: Column name -> Polars type. Order is the on-disk order.
FLOW_SCHEMA: dict[str, pl.DataType] = {
    "ts_start": pl.Datetime("us", "UTC"),
    "ts_end": pl.Datetime("us", "UTC"),
    "src_ip": pl.String(),
    "dst_ip": pl.String(),
    "src_port": pl.UInt16(),
    "dst_port": pl.UInt16(),
    "proto": pl.UInt8(),
    "fwd_packets": pl.UInt64(),
    "fwd_bytes": pl.UInt64(),
    "rev_packets": pl.UInt64(),
    "rev_bytes": pl.UInt64(),
    "tcp_flags": pl.UInt8(),
    "label": pl.String(),
    "label_detail": pl.String(),
    "quality": pl.UInt8(),
    "source_file": pl.String(),
    "source_row": pl.UInt64(),
}

FLOW_COLUMNS: tuple[str, ...] = tuple(FLOW_SCHEMA)

#: One line per column, for `inspect` and the docs.
COLUMN_DOCS: dict[str, str] = {
    "ts_start": "flow start, UTC, microseconds",
    "ts_end": "flow end, UTC, microseconds (never before ts_start)",
    "src_ip": "source (originator) address, IPv4 dotted or IPv6 compressed form",
    "dst_ip": "destination (responder) address",
    "src_port": "source port; null for protocols without ports",
    "dst_port": "destination port; null for protocols without ports",
    "proto": "IANA protocol number",
    "fwd_packets": "packets from source to destination",
    "fwd_bytes": "IP-layer bytes from source to destination",
    "rev_packets": "packets from destination to source (0 for unidirectional records)",
    "rev_bytes": "IP-layer bytes from destination to source (0 for unidirectional records)",
    "tcp_flags": "OR of TCP flags seen (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128); null if unknown",
    "label": "label as the source wrote it (null if none)",
    "label_detail": "detailed label as the source wrote it (null if none)",
    "quality": "bit set of Quality flags: what validation repaired or noticed",
    "source_file": "the file the row came from (archive:member for archives)",
    "source_row": "1-based line number (text formats) or record number (binary formats)",
}


class Quality(enum.IntFlag):
    """What validation repaired or noticed in a kept row (the ``quality`` column)."""

    END_BEFORE_START = 1
    NO_END = 2
    MISSING_COUNTERS = 4
    EPOCH_CLOCK = 8
    FLAGS_MASKED = 16
    """TCP flags above 0xFF (the NS bit and header-length bits of IPFIX tcpControlBits) were
    dropped, keeping the eight flags ``tcp_flags`` holds."""


#: Protocols whose flows carry ports: TCP, UDP, DCCP, UDP-Lite, SCTP.
PORT_PROTOCOLS: frozenset[int] = frozenset({6, 17, 33, 132, 136})

MIN_VALID_TS = datetime(1970, 1, 1, tzinfo=timezone.utc)
EPOCH_CLOCK_BEFORE = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_VALID_TS = datetime(2100, 1, 1, tzinfo=timezone.utc)

#: Largest IP packet: a record with more bytes per packet than this is absurd.
MAX_BYTES_PER_PACKET = 65_535


def arrow_schema() -> pa.Schema:
    """The canonical schema as Arrow, with the schema version in its metadata.

    >>> arrow_schema().field("proto").type
    DataType(uint8)
    """
    fields = [pl.Series(name, [], dtype).to_arrow().type for name, dtype in FLOW_SCHEMA.items()]
    return pa.schema(
        [pa.field(name, typ) for name, typ in zip(FLOW_SCHEMA, fields)],
        metadata={b"netflowgen.schema_version": str(SCHEMA_VERSION).encode()},
    )


def empty_flows() -> pl.DataFrame:
    """An empty canonical flow table (never ``None``).

    >>> empty_flows().columns[:4]
    ['ts_start', 'ts_end', 'src_ip', 'dst_ip']
    """
    return pl.DataFrame(schema=FLOW_SCHEMA)
