"""NetFlow v5/v9/IPFIX decoder on packets built with struct: exact flows, and every bad case counted."""

from __future__ import annotations

import polars as pl
import pytest

from netflowgen.collect.netflow import Decoder, ExporterStats
from netflowgen.read.validate import Checked
from netflowgen.schema import FLOW_SCHEMA, Quality
from tests.collect import packets as P
from tests.collect.packets import EXPORTER, T0, ts

COLUMNS = ["ts_start", "ts_end", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "tcp_flags"]


def decode(*datagrams: bytes, exporter: str = EXPORTER) -> tuple[Decoder, Checked, ExporterStats]:
    decoder = Decoder()
    for datagram in datagrams:
        decoder.feed(datagram, exporter)
    checked = decoder.take()
    return decoder, checked, decoder.stats[exporter]


def assert_accounted(st: ExporterStats) -> None:
    assert st.packets == st.packets_decoded + sum(st.packet_errors.values())
    assert st.sets == st.sets_decoded + sum(st.set_errors.values())
    assert st.records == st.flows + sum(st.rejected.values())


# --- v5 ----------------------------------------------------------------------------------------


def test_v5_records_exact() -> None:
    # Export at T0 + 0.25 s with sysUptime 100 s: uptime u is T0 + 0.25 - (100 - u/1000) s.
    packet = P.v5([
        P.v5_record("10.0.0.1", "198.51.100.7", 40000, 443, 6, 10, 5000, 90_000, 99_000, flags=0x1B),
        P.v5_record("10.0.0.2", "10.0.0.3", 0, 0x0800, 1, 1, 84, 95_000, 95_000),
    ], uptime_ms=100_000, nsecs=250_000_000)
    _, checked, st = decode(packet)
    assert checked.flows.schema == pl.Schema(FLOW_SCHEMA)
    assert checked.flows.select(COLUMNS).rows() == [
        (ts(-9.75), ts(-0.75), "10.0.0.1", "198.51.100.7", 40000, 443, 6, 10, 5000, 0x1B),
        (ts(-4.75), ts(-4.75), "10.0.0.2", "10.0.0.3", None, None, 1, 1, 84, None),  # ICMP: no ports
    ]
    assert checked.flows["source_file"].to_list() == [f"udp://{EXPORTER}"] * 2
    assert checked.flows["source_row"].to_list() == [1, 2]
    assert checked.flows.select("rev_packets", "rev_bytes", "label", "label_detail", "quality").rows() == [(0, 0, None, None, 0)] * 2
    assert (st.packets, st.records, st.flows, st.flow_bytes, st.flow_packets) == (1, 2, 2, 5084, 11)
    assert st.versions == {5: 1}
    assert_accounted(st)


def test_v5_uptime_wraps_around() -> None:
    # The exporter's uptime wrapped after 49.7 days: the record's start lies before the wrap.
    packet = P.v5([P.v5_record("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 100, 2**32 - 1000, 500)], uptime_ms=1000)
    _, checked, _ = decode(packet)
    assert checked.flows.select("ts_start", "ts_end").row(0) == (ts(-2.0), ts(-0.5))


# --- v9 ----------------------------------------------------------------------------------------


def test_v9_templates_uptime_and_absolute_times() -> None:
    first = P.v9([
        P.template_set(9, [(256, P.V4_UPTIME)]),
        P.data_set(256, [
            P.record(P.V4_UPTIME, P.v4_values("192.168.1.10", "203.0.113.9", 51000, 53, 17, 1, 70, 40_000, 40_000)),
            P.record(P.V4_UPTIME, P.v4_values("192.168.1.10", "203.0.113.9", 40001, 22, 6, 12, 2400, 41_000, 49_500, flags=0x1F)),
        ]),
    ], uptime_ms=50_000, seq=0)
    second = P.v9([
        P.template_set(9, [(257, P.V4_MS)]),
        P.data_set(257, [P.record(P.V4_MS, P.v4_values("10.1.1.1", "10.2.2.2", 5000, 6000, 17, 3, 2**33, T0 * 1000 + 1500, T0 * 1000 + 2500))]),
    ], uptime_ms=60_000, seq=1)
    decoder, checked, st = decode(first, second)
    rows = checked.flows.select(*COLUMNS, "source_row").rows()
    assert rows[:2] == [
        (ts(-10), ts(-10), "192.168.1.10", "203.0.113.9", 51000, 53, 17, 1, 70, None, 1),
        (ts(-9), ts(-0.5), "192.168.1.10", "203.0.113.9", 40001, 22, 6, 12, 2400, 0x1F, 2),
    ]
    # 8-byte counters, absolute milliseconds; bytes/packet is absurd -> rejected, with its row.
    assert rows[2:] == []
    assert checked.rejects.rows() == [(f"udp://{EXPORTER}", 3, "absurd counters: fwd_bytes=8589934592 with fwd_packets=3", None)]
    assert st.rejected == {"absurd counters": 1}
    assert (st.templates, st.template_records, st.sets, st.sets_decoded, st.records, st.flows) == (2, 2, 4, 4, 3, 2)
    assert set(decoder.templates) == {(EXPORTER, 9, 0, 256), (EXPORTER, 9, 0, 257)}
    assert_accounted(st)


def test_v9_absolute_milliseconds_exact() -> None:
    packet = P.v9([
        P.template_set(9, [(257, P.V4_MS)]),
        P.data_set(257, [P.record(P.V4_MS, P.v4_values("10.1.1.1", "10.2.2.2", 5000, 6000, 17, 3, 900, T0 * 1000 + 1500, T0 * 1000 + 2500))]),
    ], uptime_ms=1)
    _, checked, _ = decode(packet)
    assert checked.flows.select(COLUMNS).rows() == [(ts(1.5), ts(2.5), "10.1.1.1", "10.2.2.2", 5000, 6000, 17, 3, 900, None)]


def test_v9_options_records_are_counted_and_skipped() -> None:
    scope, opts = [(1, 4)], [(34, 4), (35, 1)]  # system scope; sampling interval, algorithm
    packet = P.v9([
        P.options_template_set(9, 300, scope, opts),
        P.data_set(300, [P.record([*scope, *opts], {34: 1, 35: 2}), P.record([*scope, *opts], {34: 10, 35: 2})]),
    ], uptime_ms=1000)
    decoder, checked, st = decode(packet)
    assert checked.flows.height == 0
    assert (st.options_records, st.records, st.templates, st.sets_decoded) == (2, 0, 1, 2)
    assert decoder.templates[(EXPORTER, 9, 0, 300)].options


def test_template_redefinition_replaces_and_old_records_keep_their_template() -> None:
    old = P.v9([
        P.template_set(9, [(256, P.V4_UPTIME)]),
        P.data_set(256, [P.record(P.V4_UPTIME, P.v4_values("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, 9_000, 9_000))]),
    ], uptime_ms=10_000, seq=0)
    refresh = P.v9([P.template_set(9, [(256, P.V4_UPTIME)])], uptime_ms=10_000, seq=1)
    new = P.v9([
        P.template_set(9, [(256, P.V4_MS)]),
        P.data_set(256, [P.record(P.V4_MS, P.v4_values("10.0.0.3", "10.0.0.4", 3, 4, 17, 2, 120, T0 * 1000, T0 * 1000))]),
    ], uptime_ms=10_000, seq=2)
    _, checked, st = decode(old, refresh, new)
    assert checked.flows.select(COLUMNS).rows() == [
        (ts(-1), ts(-1), "10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, None),
        (ts(0), ts(0), "10.0.0.3", "10.0.0.4", 3, 4, 17, 2, 120, None),
    ]
    assert (st.template_records, st.template_redefinitions, st.templates) == (3, 1, 1)


def test_data_before_template_is_counted_then_decoded_once_known() -> None:
    values = P.v4_values("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, 500, 500)
    data = P.v9([P.data_set(256, [P.record(P.V4_UPTIME, values)])], uptime_ms=1000, seq=0)
    template = P.v9([P.template_set(9, [(256, P.V4_UPTIME)])], uptime_ms=1000, seq=1)
    again = P.v9([P.data_set(256, [P.record(P.V4_UPTIME, values)])], uptime_ms=1000, seq=2)
    _, checked, st = decode(data, template, again)
    assert st.set_errors == {"data before template": 1}
    assert (st.records, st.flows, checked.flows.height) == (1, 1, 1)
    assert checked.flows["source_row"].to_list() == [1]
    assert_accounted(st)


def test_template_without_addresses_rejects_its_records_with_the_reason() -> None:
    fields = [(7, 2), (11, 2), (4, 1), (2, 4), (1, 4)]
    packet = P.v9([P.template_set(9, [(256, fields)]), P.data_set(256, [P.record(fields, {4: 6, 2: 1, 1: 40})])], uptime_ms=1)
    _, checked, st = decode(packet)
    assert checked.flows.height == 0
    assert checked.rejects["reason"].to_list() == [
        "template 256: no source address (IANA 8 or 27); no destination address (IANA 12 or 28)"]
    assert st.rejected == {"template 256": 1}


def test_record_without_time_fields_takes_the_export_time() -> None:
    fields = [(8, 4), (12, 4), (4, 1), (2, 4), (1, 4)]
    packet = P.v9([P.template_set(9, [(256, fields)]),
                   P.data_set(256, [P.record(fields, {8: "10.0.0.1", 12: "10.0.0.2", 4: 47, 2: 1, 1: 100})])],
                  uptime_ms=1, secs=T0 + 7)
    _, checked, _ = decode(packet)
    assert checked.flows.select("ts_start", "ts_end", "proto", "quality").rows() == [(ts(7), ts(7), 47, int(Quality.NO_END))]


# --- IPFIX -------------------------------------------------------------------------------------


def _init_time_packet(init_ms: int, seq: int = 0) -> bytes:
    scope, opts = [(149, 4)], [(160, 8)]
    return P.ipfix([P.options_template_set(10, 300, scope, opts), P.data_set(300, [P.record([*scope, *opts], {160: init_ms})])], seq=seq)


def test_ipfix_uptime_times_count_from_system_init_time() -> None:
    init_ms = (T0 - 3600) * 1000
    data = P.ipfix([
        P.template_set(10, [(256, P.V4_UPTIME)]),
        P.data_set(256, [P.record(P.V4_UPTIME, P.v4_values("10.0.0.1", "8.8.8.8", 5353, 53, 17, 2, 150, 3_600_500, 3_601_000))]),
    ], seq=0)
    _, checked, st = decode(_init_time_packet(init_ms), data)
    assert checked.flows.select(COLUMNS).rows() == [(ts(0.5), ts(1.0), "10.0.0.1", "8.8.8.8", 5353, 53, 17, 2, 150, None)]
    assert (st.options_records, st.records) == (1, 1)


def test_ipfix_uptime_times_without_init_time_are_rejected() -> None:
    data = P.ipfix([
        P.template_set(10, [(256, P.V4_UPTIME)]),
        P.data_set(256, [P.record(P.V4_UPTIME, P.v4_values("10.0.0.1", "8.8.8.8", 5353, 53, 17, 2, 150, 500, 1000))]),
    ])
    _, checked, st = decode(data)
    assert checked.flows.height == 0
    assert checked.rejects["reason"].to_list() == [
        "flowStartSysUpTime/flowEndSysUpTime without systemInitTimeMilliseconds (no options record received yet)"]
    assert_accounted(st)


def test_ipfix_uptime_wrap_after_49_days() -> None:
    # Up for 60 days: sysUpTime milliseconds have wrapped once.
    uptime = 60 * 86_400_000 + 500
    data = P.ipfix([
        P.template_set(10, [(256, P.V4_UPTIME)]),
        P.data_set(256, [P.record(P.V4_UPTIME, P.v4_values("10.0.0.1", "8.8.8.8", 5353, 53, 17, 2, 150, uptime % 2**32, uptime % 2**32))]),
    ], seq=1)
    _, checked, _ = decode(_init_time_packet((T0 - 60 * 86_400) * 1000), data)
    assert checked.flows.select("ts_start", "ts_end").row(0) == (ts(0.5), ts(0.5))


def test_ipfix_absurd_init_time_rejects_records_as_absurd_clock() -> None:
    data = P.ipfix([
        P.template_set(10, [(256, P.V4_UPTIME)]),
        P.data_set(256, [P.record(P.V4_UPTIME, P.v4_values("10.0.0.1", "8.8.8.8", 5353, 53, 17, 2, 150, 500, 1000))]),
    ], seq=1)
    _, checked, st = decode(_init_time_packet(2**64 - 1), data)
    assert checked.rejects["reason"].to_list() == ["ts_start after 2100 (absurd clock)"]
    assert_accounted(st)


def test_ipfix_ipv6_addresses_in_canonical_text() -> None:
    values = {27: "2001:db8::1", 28: "fd00:0:0:0:1::5", 7: 443, 11: 50000, 4: 6, 86: 7, 85: 7000,
              152: T0 * 1000, 153: T0 * 1000 + 250}
    packet = P.ipfix([P.template_set(10, [(260, P.V6_MS)]), P.data_set(260, [P.record(P.V6_MS, values)])])
    _, checked, _ = decode(packet)
    assert checked.flows.select(COLUMNS).rows() == [(ts(0), ts(0.25), "2001:db8::1", "fd00::1:0:0:5", 443, 50000, 6, 7, 7000, None)]


def test_ipfix_variable_length_and_enterprise_fields() -> None:
    # interfaceName (82) is variable-length; an enterprise-specific field precedes the counters.
    fields = [(8, 4), (12, 4), (82, 0xFFFF), (7, 2), (11, 2), (4, 1), (100, 4), (2, 4), (1, 4), (152, 8)]
    template = P.template_set(10, [(270, fields)], enterprise={6: 9})

    def rec(name: bytes, src: str, octets: int) -> bytes:
        head = P.record(fields[:2], {8: src, 12: "10.9.9.9"})
        size = bytes([len(name)]) if len(name) < 255 else b"\xff" + len(name).to_bytes(2, "big")
        tail = P.record(fields[3:], {7: 1000, 11: 2000, 4: 17, 100: 0xDEADBEEF, 2: 1, 1: octets, 152: T0 * 1000})
        return head + size + name + tail

    packet = P.ipfix([template, P.data_set(270, [rec(b"eth0", "10.0.0.1", 64), rec(b"x" * 300, "10.0.0.2", 1400)])])
    _, checked, st = decode(packet)
    assert checked.flows.select("src_ip", "dst_ip", "src_port", "dst_port", "proto", "fwd_bytes", "ts_start").rows() == [
        ("10.0.0.1", "10.9.9.9", 1000, 2000, 17, 64, ts(0)),
        ("10.0.0.2", "10.9.9.9", 1000, 2000, 17, 1400, ts(0)),
    ]
    assert st.unknown_fields == 2  # interfaceName, the enterprise field
    assert_accounted(st)


def test_ipfix_template_withdrawal() -> None:
    values = P.v4_values("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, T0 * 1000, T0 * 1000)
    define = P.ipfix([P.template_set(10, [(256, P.V4_MS)]), P.data_set(256, [P.record(P.V4_MS, values)])], seq=0)
    withdraw = P.ipfix([P.withdrawal_set(256)], seq=1)
    after = P.ipfix([P.data_set(256, [P.record(P.V4_MS, values)])], seq=1)
    decoder, checked, st = decode(define, withdraw, after)
    assert (checked.flows.height, st.template_withdrawals, st.templates) == (1, 1, 0)
    assert st.set_errors == {"data before template": 1}
    assert decoder.templates == {}


def test_template_limit() -> None:
    # A redefinition replaces a template: it takes no room and evicts nothing (evictions: test_limits).
    decoder = Decoder(max_templates=2)
    decoder.feed(P.ipfix([P.template_set(10, [(256, P.V4_MS), (257, P.V6_MS)])], domain=1), EXPORTER)
    decoder.feed(P.ipfix([P.template_set(10, [(257, P.V4_MS)])], domain=1), EXPORTER)
    st = decoder.stats[EXPORTER]
    assert (st.set_errors, st.templates, st.template_redefinitions, len(decoder.templates)) == ({}, 2, 1, 2)
    assert decoder.evictions == {}


def test_templates_are_kept_per_exporter_and_domain() -> None:
    values = P.v4_values("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, T0 * 1000, T0 * 1000)
    template = P.ipfix([P.template_set(10, [(256, P.V4_MS)])], domain=1)
    other_domain = P.ipfix([P.data_set(256, [P.record(P.V4_MS, values)])], domain=2)
    decoder = Decoder()
    decoder.feed(template, "192.0.2.1")
    decoder.feed(other_domain, "192.0.2.1")
    decoder.feed(P.ipfix([P.data_set(256, [P.record(P.V4_MS, values)])], domain=1), "192.0.2.2")
    assert decoder.take().flows.height == 0
    assert decoder.stats["192.0.2.1"].set_errors == {"data before template": 1}
    assert decoder.stats["192.0.2.2"].set_errors == {"data before template": 1}


# --- bad packets -------------------------------------------------------------------------------

V5_OK = P.v5([P.v5_record("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, 0, 0)], uptime_ms=1)
IPFIX_OK = P.ipfix([P.template_set(10, [(256, P.V4_MS)])])


@pytest.mark.parametrize(("datagram", "reason"), [
    (b"\x00\x05\x00", "too short"),
    (b"\x00\x07" + V5_OK[2:], "unknown version"),
    (b"\xde\xad\xbe\xef" * 20, "unknown version"),
    (V5_OK[:20], "truncated header"),
    (P.v5([P.v5_record("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, 0, 0)], uptime_ms=1, count=2), "truncated"),
    (V5_OK + b"\0" * 5, "wrong length"),
    (P.v5([], uptime_ms=1), "bad count"),
    (P.v9([], uptime_ms=1)[:12], "truncated header"),
    (IPFIX_OK[:-4], "truncated"),
    (IPFIX_OK + b"\0" * 8, "wrong length"),
])
def test_bad_datagrams_are_counted_by_reason(datagram: bytes, reason: str) -> None:
    _, checked, st = decode(datagram)
    assert st.packet_errors == {reason: 1}
    assert (st.packets, st.packets_decoded, st.records, checked.flows.height) == (1, 0, 0, 0)


@pytest.mark.parametrize(("sets", "errors", "decoded"), [
    # A data set shorter than one record.
    ([P.template_set(10, [(256, P.V4_MS)]), P.data_set(256, [b"\1\2\3"])], {"data shorter than a record": 1}, 1),
    # A set length below the set header: the rest of the message cannot be located.
    ([P.template_set(10, [(256, P.V4_MS)]), b"\x01\x00\x00\x02" + b"\0" * 8], {"bad set length": 1}, 1),
    # A set length beyond the message.
    ([P.template_set(10, [(256, P.V4_MS)]), P.data_set(256, [b"\0" * 8], length=400)], {"bad set length": 1}, 1),
    # Template ids below 256, fields of length 0, truncated template records.
    ([P.template_set(10, [(5, P.V4_MS)])], {"bad template": 1}, 0),
    ([P.template_set(10, [(256, [(8, 4), (12, 0)])])], {"bad template": 1}, 0),
    ([b"\x00\x02\x00\x10" + b"\x01\x00\x00\x0c" + b"\x00\x08\x00\x04\x00\x0c\x00\x04"], {"bad template": 1}, 0),
    # Set ids 4-255 are reserved.
    ([b"\x00\x04\x00\x08\x00\x00\x00\x00"], {"reserved set id": 1}, 0),
    # 1-3 bytes after the last set of an IPFIX message.
    ([P.template_set(10, [(256, P.V4_MS)]), b"\0\0"], {"bad set length": 1}, 1),
])
def test_bad_sets_are_counted_by_reason(sets: list[bytes], errors: dict[str, int], decoded: int) -> None:
    _, _, st = decode(P.ipfix(sets))
    assert st.set_errors == errors
    assert (st.packets_decoded, st.sets_decoded) == (1, decoded)
    assert_accounted(st)


def test_truncated_variable_length_record() -> None:
    fields = [(8, 4), (12, 4), (82, 0xFFFF)]
    record = P.record(fields[:2], {8: "10.0.0.1", 12: "10.0.0.2"}) + b"\x20" + b"ab"  # says 32 bytes, has 2
    _, _, st = decode(P.ipfix([P.template_set(10, [(256, fields)]), P.data_set(256, [record], pad=False)]))
    assert st.set_errors == {"truncated record": 1}
    assert st.records == 0


# --- sequence numbers --------------------------------------------------------------------------


def _v5(seq: int, n: int, engine: tuple[int, int] = (0, 0)) -> bytes:
    return P.v5([P.v5_record("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, 0, 0)] * n, uptime_ms=1, seq=seq, engine=engine)


def test_v5_sequence_gaps_count_lost_flows() -> None:
    _, _, st = decode(_v5(0, 2), _v5(2, 2), _v5(10, 1), _v5(3, 1), _v5(100, 1, engine=(1, 0)))
    # 4 expected after 2+2, 10 seen: 6 flows lost. Then 3 is a step back (reset); another engine
    # is another stream.
    assert (st.sequence_gaps, st.lost_records, st.sequence_resets, st.lost_packets) == (1, 6, 1, 0)


def test_v9_sequence_counts_packets() -> None:
    _, _, st = decode(*[P.v9([], uptime_ms=1, seq=s) for s in (7, 8, 12, 13)])
    assert (st.sequence_gaps, st.lost_packets, st.lost_records) == (1, 3, 0)


def _ipfix_records(seq: int, n: int) -> bytes:
    values = P.v4_values("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, T0 * 1000, T0 * 1000)
    return P.ipfix([P.template_set(10, [(256, P.V4_MS)]), P.data_set(256, [P.record(P.V4_MS, values)] * n)], seq=seq)


def test_ipfix_sequence_counts_records_rfc_convention() -> None:
    # RFC 7011: the number of records sent before the message.
    _, _, st = decode(_ipfix_records(0, 3), _ipfix_records(3, 2), _ipfix_records(5, 1), _ipfix_records(9, 1))
    assert (st.sequence_gaps, st.lost_records) == (1, 3)


def test_ipfix_sequence_including_own_records_is_no_loss() -> None:
    # softflowd 1.1.0 writes the count including the message's own records.
    _, _, st = decode(_ipfix_records(3, 3), _ipfix_records(5, 2), _ipfix_records(9, 4), _ipfix_records(20, 1))
    assert (st.sequence_gaps, st.lost_records) == (1, 10)
    assert st.sequence_resets == 0


# --- biflows (RFC 5103) and packet sampling ------------------------------------------------------

# IPv4 biflow: forward counters, the same elements under the reverse PEN, and biflowDirection.
BIFLOW: list[P.Field] = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 8), (1, 8), (2, 8), (1, 8), (152, 8), (153, 8), (239, 1)]
BIFLOW_PEN = {7: 29305, 8: 29305}  # fields 7 and 8: reversePacketDeltaCount, reverseOctetDeltaCount


def biflow_record(src: str, dst: str, sport: int, dport: int, counts: tuple[int, int, int, int], direction: int) -> bytes:
    fwd_p, fwd_b, rev_p, rev_b = counts
    return P.record(BIFLOW[:7], {8: src, 12: dst, 7: sport, 11: dport, 4: 6, 2: fwd_p, 1: fwd_b}) + P.record(
        BIFLOW[7:], {2: rev_p, 1: rev_b, 152: T0 * 1000, 153: T0 * 1000 + 500, 239: direction})


def test_ipfix_biflow_reverse_counters_and_direction() -> None:
    packet = P.ipfix([
        P.template_set(10, [(400, BIFLOW)], enterprise=BIFLOW_PEN),
        P.data_set(400, [
            biflow_record("10.0.0.1", "10.0.0.2", 40000, 443, (10, 1000, 8, 6000), 1),  # initiator
            biflow_record("10.0.0.2", "10.0.0.1", 443, 40001, (3, 300, 4, 240), 2),  # reverseInitiator: swapped
            biflow_record("10.0.0.3", "10.0.0.4", 5000, 53, (1, 60, 0, 0), 0),  # arbitrary: as sent
        ]),
    ])
    _, checked, st = decode(packet)
    assert checked.flows.sort("source_row").select(
        "src_ip", "dst_ip", "src_port", "dst_port", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes").rows() == [
        ("10.0.0.1", "10.0.0.2", 40000, 443, 10, 1000, 8, 6000),
        ("10.0.0.1", "10.0.0.2", 40001, 443, 4, 240, 3, 300),
        ("10.0.0.3", "10.0.0.4", 5000, 53, 1, 60, 0, 0),
    ]
    assert st.unknown_fields == 0
    assert_accounted(st)


def test_v5_header_sampling_interval_scales_packets_and_bytes() -> None:
    header_sampling = (1 << 14) | 100  # mode 1 (deterministic), 1 in 100
    rec = P.v5_record("10.0.0.1", "10.0.0.2", 1234, 80, 6, 3, 180, 900, 1000)
    packet = P.v5([rec], uptime_ms=1000)
    packet = packet[:22] + header_sampling.to_bytes(2, "big") + packet[24:]
    _, checked, st = decode(packet)
    assert checked.flows.select("fwd_packets", "fwd_bytes").rows() == [(300, 18000)]
    assert st.sampled == {"100": 1}
    # Without an interval nothing is scaled.
    _, plain, st = decode(P.v5([rec], uptime_ms=1000))
    assert plain.flows.select("fwd_packets", "fwd_bytes").rows() == [(3, 180)] and not st.sampled


def _v9_flows(sampler: int | None, packets: int, octets: int) -> bytes:
    fields = [*P.V4_UPTIME, (48, 1)] if sampler is not None else P.V4_UPTIME
    values = P.v4_values("10.0.0.1", "10.0.0.2", 1000, 53, 17, packets, octets, 500, 900)
    return P.data_set(256 if sampler is None else 257, [P.record(fields, {**values, 48: sampler or 0})])


def test_v9_options_sampling_applies_to_later_records_of_its_domain() -> None:
    scope, opts = [(1, 4)], [(34, 4), (35, 1)]  # system scope; samplingInterval, samplingAlgorithm
    templates = P.template_set(9, [(256, P.V4_UPTIME)])
    before = P.v9([templates, _v9_flows(None, 2, 100)], uptime_ms=1000, seq=0)
    options = P.v9([P.options_template_set(9, 300, scope, opts), P.data_set(300, [P.record([*scope, *opts], {34: 64, 35: 2})])],
                   uptime_ms=1000, seq=1)
    after = P.v9([_v9_flows(None, 2, 100)], uptime_ms=1000, seq=2)
    other_domain = P.v9([templates, _v9_flows(None, 2, 100)], uptime_ms=1000, source_id=7)
    _, checked, st = decode(before, options, after, other_domain)
    assert checked.flows.sort("source_row").select("fwd_packets", "fwd_bytes").rows() == [(2, 100), (128, 6400), (2, 100)]
    assert st.sampled == {"64": 1}
    assert_accounted(st)


def test_v9_flow_sampler_ids_pick_their_own_interval() -> None:
    # Cisco's flow sampler options: FLOW_SAMPLER_ID (48), mode (49), random interval (50).
    scope, opts = [(1, 4)], [(48, 1), (49, 1), (50, 4)]
    options = P.v9([
        P.options_template_set(9, 300, scope, opts),
        P.data_set(300, [P.record([*scope, *opts], {48: 1, 49: 2, 50: 10}), P.record([*scope, *opts], {48: 2, 49: 2, 50: 1000})]),
        P.template_set(9, [(257, [*P.V4_UPTIME, (48, 1)])]),
    ], uptime_ms=1000, seq=0)
    flows = P.v9([_v9_flows(1, 3, 150), _v9_flows(2, 3, 150), _v9_flows(9, 3, 150)], uptime_ms=1000, seq=1)
    decoder, checked, st = decode(options, flows)
    # Sampler 9 was never described: its record stays as counted.
    assert checked.flows.sort("source_row").select("fwd_packets", "fwd_bytes").rows() == [(30, 1500), (3000, 150000), (3, 150)]
    assert st.sampled == {"10": 1, "1000": 1}


def test_ipfix_packet_interval_and_space() -> None:
    scope, opts = [(302, 4)], [(305, 4), (306, 4)]  # selectorId; 1 packet taken, 99 skipped
    fields = [*P.V4_MS]
    packet = P.ipfix([
        P.options_template_set(10, 300, scope, opts),
        P.data_set(300, [P.record([*scope, *opts], {302: 5, 305: 1, 306: 99})]),
        P.template_set(10, [(256, fields), (257, [*fields, (302, 4)])]),
        P.data_set(256, [P.record(fields, P.v4_values("10.0.0.1", "10.0.0.2", 1, 2, 6, 2, 80, T0 * 1000, T0 * 1000))]),
        P.data_set(257, [P.record([*fields, (302, 4)], {**P.v4_values("10.0.0.1", "10.0.0.2", 1, 2, 6, 2, 80, T0 * 1000, T0 * 1000), 302: 5})]),
    ])
    _, checked, st = decode(packet)
    assert checked.flows.sort("source_row").select("fwd_packets", "fwd_bytes").rows() == [(2, 80), (200, 8000)]
    assert st.sampled == {"100": 1}


def test_sampling_that_overflows_a_counter_is_rejected_not_wrapped() -> None:
    opts = [(34, 4)]
    packet = P.ipfix([
        P.options_template_set(10, 300, [(1, 4)], opts),
        P.data_set(300, [P.record([(1, 4), *opts], {34: 1_000_000})]),
        P.template_set(10, [(256, P.V4_MS)]),
        P.data_set(256, [P.record(P.V4_MS, P.v4_values("10.0.0.1", "10.0.0.2", 1, 2, 6, 1 << 50, 80, T0 * 1000, T0 * 1000))]),
    ])
    _, checked, st = decode(packet)
    assert checked.flows.height == 0 and checked.rejects.height == 1
    assert_accounted(st)


def test_advisory_element_of_an_odd_length_is_skipped_not_fatal() -> None:
    fields = [*P.V4_MS, (239, 2)]  # biflowDirection is one byte; a two-byte one is ignored
    packet = P.ipfix([P.template_set(10, [(256, fields)]),
                      P.data_set(256, [P.record(fields, {**P.v4_values("10.0.0.1", "10.0.0.2", 1, 2, 6, 2, 80, T0 * 1000, T0 * 1000), 239: 2})])])
    _, checked, st = decode(packet)
    assert checked.flows.select("src_ip", "fwd_packets").rows() == [("10.0.0.1", 2)]
    assert st.unknown_fields == 2  # type of service (5, not mapped) and the odd biflowDirection


def test_a_sampler_restated_changes_only_the_records_after_it() -> None:
    # One take holds sets from before and after the options record that changes sampler 1: each
    # keeps the sampling in force when it came (the sets share a table until it changes).
    scope, opts = [(1, 4)], [(48, 1), (50, 4)]

    def options(rate: int, seq: int) -> bytes:
        return P.v9([P.options_template_set(9, 300, scope, opts), P.data_set(300, [P.record([*scope, *opts], {48: 1, 50: rate})]),
                     P.template_set(9, [(257, [*P.V4_UPTIME, (48, 1)])])], uptime_ms=1000, seq=seq)

    flows = [P.v9([_v9_flows(1, 3, 150)], uptime_ms=1000, seq=s) for s in (1, 2, 4)]
    _, checked, st = decode(options(10, 0), flows[0], flows[1], options(100, 3), flows[2])
    assert checked.flows.sort("source_row")["fwd_packets"].to_list() == [30, 30, 300]
    assert st.sampled == {"10": 2, "100": 1}
