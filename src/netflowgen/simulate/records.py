"""Generated flows as numpy columns, and their canonical Arrow table.

The generators fill a :class:`Records` (one entry per connection, both directions' counters);
:func:`to_table` turns it into rows of the canonical flow table, either one bidirectional record
per connection or, NetFlow-style, one record per direction.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa

from netflowgen.schema import arrow_schema

__all__ = ["SCHEMA", "Records", "to_table"]

SCHEMA = arrow_schema()
_TS = pa.timestamp("us", "UTC")
_TCP, _UDP = 6, 17


@dataclass
class Records:
    """Connections: equal-length numpy columns, plus the address table ``src``/``dst`` index."""

    start_us: np.ndarray  # int64, epoch microseconds
    dur_us: np.ndarray  # int64
    src: np.ndarray  # int64 index into addresses (the initiator)
    dst: np.ndarray  # int64 index into addresses (the responder)
    sport: np.ndarray  # int64; ignored for protocols without ports
    dport: np.ndarray
    proto: np.ndarray  # uint8
    fwd_pk: np.ndarray  # int64, initiator -> responder
    fwd_by: np.ndarray
    rev_pk: np.ndarray  # int64, responder -> initiator (0: no answer)
    rev_by: np.ndarray
    fwd_flags: np.ndarray  # uint8 TCP flags sent by the initiator (0 for other protocols)
    rev_flags: np.ndarray
    addresses: pa.Array

    def __len__(self) -> int:
        return len(self.start_us)

    def take(self, index: np.ndarray) -> Records:
        """The records at ``index``, in that order."""
        columns = {f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "addresses"}
        return Records(**columns, addresses=self.addresses)

    def sums(self) -> tuple[int, int]:
        """Packets and bytes, both directions."""
        return int(self.fwd_pk.sum() + self.rev_pk.sum()), int(self.fwd_by.sum() + self.rev_by.sum())


def split_directions(r: Records) -> Records:
    """One record per direction: each answered connection becomes two, the answer right after
    its request, starting one packet gap later and ending with it (rev_* = 0 everywhere)."""
    answered = r.rev_pk > 0
    copies = 1 + answered
    index = np.repeat(np.arange(len(r)), copies)
    is_rev = np.zeros(len(index), bool)
    is_rev[(np.cumsum(copies) - 1)[answered]] = True
    g = r.take(index)
    gap = g.dur_us // np.maximum(g.fwd_pk + g.rev_pk - 1, 1)
    delay = np.where(is_rev, np.minimum(gap, g.dur_us), 0)
    zero = np.zeros(len(index), np.int64)
    return Records(
        start_us=g.start_us + delay,
        dur_us=g.dur_us - delay,
        src=np.where(is_rev, g.dst, g.src),
        dst=np.where(is_rev, g.src, g.dst),
        sport=np.where(is_rev, g.dport, g.sport),
        dport=np.where(is_rev, g.sport, g.dport),
        proto=g.proto,
        fwd_pk=np.where(is_rev, g.rev_pk, g.fwd_pk),
        fwd_by=np.where(is_rev, g.rev_by, g.fwd_by),
        rev_pk=zero,
        rev_by=zero,
        fwd_flags=np.where(is_rev, g.rev_flags, g.fwd_flags),
        rev_flags=np.zeros(len(index), np.uint8),
        addresses=r.addresses,
    )


def to_table(r: Records, label: str, detail: str | None, source_file: str) -> pa.Table:
    """The canonical flow table of ``r`` (exactly :func:`netflowgen.schema.arrow_schema`).

    Ports are null for protocols without ports and TCP flags for other protocols than TCP, as
    validation writes them; ``source_row`` counts the records of ``source_file`` from 1.
    """
    n = len(r)
    tcp = r.proto == _TCP
    no_ports = ~(tcp | (r.proto == _UDP))
    columns = [
        pa.array(r.start_us, _TS),
        pa.array(r.start_us + r.dur_us, _TS),
        r.addresses.take(pa.array(r.src)),
        r.addresses.take(pa.array(r.dst)),
        pa.array(r.sport.astype(np.uint16), mask=no_ports),
        pa.array(r.dport.astype(np.uint16), mask=no_ports),
        pa.array(r.proto.astype(np.uint8)),
        pa.array(r.fwd_pk.astype(np.uint64)),
        pa.array(r.fwd_by.astype(np.uint64)),
        pa.array(r.rev_pk.astype(np.uint64)),
        pa.array(r.rev_by.astype(np.uint64)),
        pa.array((r.fwd_flags | r.rev_flags).astype(np.uint8), mask=~tcp),
        pa.repeat(pa.scalar(label, pa.large_string()), n),
        pa.repeat(pa.scalar(detail, pa.large_string()), n),
        pa.repeat(pa.scalar(0, pa.uint8()), n),
        pa.repeat(pa.scalar(source_file, pa.large_string()), n),
        pa.array(np.arange(1, n + 1, dtype=np.uint64)),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)
