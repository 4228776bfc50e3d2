"""Property: no datagram crashes the decoder, and its counters account for everything.

Datagrams are random bytes (with and without a valid version number in front) and mutations of
valid v5, v9 and IPFIX packets (bytes flipped, inserted, deleted, cut short, length and count
fields rewritten). The decoder must never raise, and after every batch:

* datagrams: received = decoded + rejected by reason;
* sets of decoded datagrams: seen = decoded + skipped by reason;
* records: decoded = flows + rejects, and the frames it returned hold exactly those, in the
  canonical schema.

Runs are deterministic (``derandomize``); set NETFLOWGEN_FUZZ_EXAMPLES for a longer search.
"""

from __future__ import annotations

import os
import struct

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netflowgen.collect.netflow import Decoder
from netflowgen.read.validate import REJECT_SCHEMA
from netflowgen.schema import FLOW_SCHEMA
from tests.collect import packets as P
from tests.collect.packets import T0

EXAMPLES = int(os.environ.get("NETFLOWGEN_FUZZ_EXAMPLES", "60"))
SETTINGS = {"max_examples": EXAMPLES, "deadline": None, "derandomize": True, "database": None,
            "suppress_health_check": [HealthCheck.too_slow]}

_V4 = P.v4_values("10.0.0.1", "192.0.2.50", 40000, 443, 6, 5, 900, 9_000, 9_900, flags=0x12)
_V4_MS = P.v4_values("10.0.0.2", "192.0.2.51", 40001, 80, 6, 2, 120, T0 * 1000, T0 * 1000 + 5)
_V6 = {27: "fd00::1", 28: "2001:db8::2", 7: 1, 11: 2, 4: 17, 86: 1, 85: 100, 152: T0 * 1000, 153: T0 * 1000}
_SCOPE, _OPTS = [(149, 4)], [(160, 8)]

VALID = [
    P.v5([P.v5_record("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, 100, 200)] * 3, uptime_ms=1000, seq=0),
    P.v9([P.template_set(9, [(256, P.V4_UPTIME), (257, P.V6_MS)]),
          P.data_set(256, [P.record(P.V4_UPTIME, _V4)] * 2), P.data_set(257, [P.record(P.V6_MS, _V6)])],
         uptime_ms=10_000, seq=0),
    P.v9([P.data_set(256, [P.record(P.V4_UPTIME, _V4)] * 4)], uptime_ms=11_000, seq=1),
    P.ipfix([P.options_template_set(10, 300, _SCOPE, _OPTS), P.data_set(300, [P.record([*_SCOPE, *_OPTS], {160: (T0 - 60) * 1000})]),
             P.template_set(10, [(256, P.V4_UPTIME), (258, P.V4_MS)]),
             P.data_set(256, [P.record(P.V4_UPTIME, _V4)]), P.data_set(258, [P.record(P.V4_MS, _V4_MS)] * 3)], seq=0),
    P.ipfix([P.data_set(258, [P.record(P.V4_MS, _V4_MS)] * 2)], seq=5),
]
#: Datagrams that define the templates the others use, fed first in every example.
PRIMERS = [VALID[1], VALID[3]]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut", "u16", "u32"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 8))]
        elif kind == "cut":
            del data[pos:]
        elif kind == "u16" and pos + 2 <= len(data):
            # Length, count and id fields are 16-bit: rewrite one with an edge value.
            struct.pack_into("!H", data, pos, draw(st.sampled_from([0, 1, 3, 4, 255, 256, 0x7FFF, 0xFFFF])))
        elif kind == "u32" and pos + 4 <= len(data):
            struct.pack_into("!I", data, pos, draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF])))
    return bytes(data)


random_bytes = st.one_of(
    st.binary(max_size=300),
    st.tuples(st.sampled_from([5, 9, 10]), st.binary(max_size=300)).map(lambda t: struct.pack("!H", t[0]) + t[1]),
)


def check_accounting(decoder: Decoder, datagrams: list[bytes]) -> None:
    before = {e: (s.flows, sum(s.rejected.values())) for e, s in decoder.stats.items()}
    for i, datagram in enumerate(datagrams):
        decoder.feed(datagram, f"192.0.2.{i % 3}")
    checked = decoder.take()
    assert checked.flows.schema == pl.Schema(FLOW_SCHEMA)
    assert checked.rejects.schema == pl.Schema(REJECT_SCHEMA)
    new_flows = sum(s.flows - before.get(e, (0, 0))[0] for e, s in decoder.stats.items())
    new_rejects = sum(sum(s.rejected.values()) - before.get(e, (0, 0))[1] for e, s in decoder.stats.items())
    assert checked.flows.height == new_flows
    assert checked.rejects.height == new_rejects
    for s in decoder.stats.values():
        assert s.packets == s.packets_decoded + sum(s.packet_errors.values())
        assert s.sets == s.sets_decoded + sum(s.set_errors.values())
        assert s.records == s.flows + sum(s.rejected.values())
        assert s.packets_decoded == sum(s.versions.values())
    # Record numbers stay unique per exporter across flows and rejects.
    rows = pl.concat([checked.flows.select("source_file", "source_row"), checked.rejects.select("source_file", "source_row")])
    assert rows.is_unique().all()


def primed() -> Decoder:
    decoder = Decoder()
    for i in range(3):
        for datagram in PRIMERS:
            decoder.feed(datagram, f"192.0.2.{i}")
    decoder.take()
    return decoder


def test_valid_packets_account_exactly() -> None:
    decoder = Decoder()
    for datagram in VALID:
        decoder.feed(datagram, "192.0.2.1")
    checked = decoder.take()
    s = decoder.stats["192.0.2.1"]
    # 3 (v5) + 3 + 4 (v9) + 4 + 2 (IPFIX) flow records, 1 options record; nothing skipped.
    assert (s.records, s.flows, s.options_records, s.errors(), checked.flows.height) == (16, 16, 1, 0, 16)
    assert (s.sequence_gaps, s.sequence_resets) == (0, 0)


@settings(**SETTINGS)
@given(st.lists(mutated(), min_size=1, max_size=6))
def test_mutated_packets_never_crash(datagrams: list[bytes]) -> None:
    check_accounting(primed(), datagrams)


@settings(**SETTINGS)
@given(st.lists(random_bytes, min_size=1, max_size=6))
def test_random_bytes_never_crash(datagrams: list[bytes]) -> None:
    check_accounting(primed(), datagrams)


@settings(**SETTINGS)
@given(st.lists(st.tuples(st.one_of(mutated(), st.sampled_from(VALID), random_bytes), st.integers(0, 5)), min_size=1, max_size=12))
def test_under_tiny_limits_state_stays_bounded_and_the_sums_still_hold(datagrams: list[tuple[bytes, int]]) -> None:
    # Limits far below what the datagrams define: evictions all the time, never a crash, and the
    # counters over all entries ("other" included) still account for every datagram and record.
    decoder = Decoder(max_templates=3, max_templates_per_domain=2, max_domains=3, max_fields=40, max_exporters=2)
    for datagram, source in datagrams:
        decoder.feed(datagram, f"192.0.2.{source}")
        assert decoder.template_count == len(decoder.templates) <= 3
        assert decoder.field_count <= 40 and decoder.domains <= 3 and len(decoder.stats) <= 3
        assert sum(s.templates for s in decoder.stats.values()) == decoder.template_count
    checked = decoder.take()
    stats = list(decoder.stats.values())
    assert sum(s.packets for s in stats) == len(datagrams)
    for s in stats:
        assert s.packets == s.packets_decoded + sum(s.packet_errors.values())
        assert s.sets == s.sets_decoded + sum(s.set_errors.values())
    assert sum(s.records for s in stats) == checked.flows.height + checked.rejects.height
    assert sum(s.flows for s in stats) == checked.flows.height
