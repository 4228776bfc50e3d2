"""Per-exporter state is capped and evictions are counted: one sender cannot lock others out
(issue 16, defect 2), and garbage from many addresses does not grow the counters without bound
(defect 5)."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from netflowgen.collect.netflow import Decoder
from netflowgen.collect.server import Collector, CollectorConfig
from tests.collect import packets as P
from tests.collect.packets import EXPORTER, T0

VALUES = P.v4_values("10.0.0.1", "10.0.0.2", 1000, 53, 17, 1, 60, T0 * 1000, T0 * 1000)


def churn(n_packets: int, per_packet: int = 10) -> list[bytes]:
    """v9 datagrams of `per_packet` templates each, every datagram under its own source id; then 100
    of one template each (under new source ids), so that a cache of 65,536 shared templates is full
    to the last one (70,000 in tens left it 6 short)."""
    tens = [P.v9([P.template_set(9, [(256 + i, P.V4_MS) for i in range(per_packet)])], uptime_ms=1000, seq=0,
                 source_id=k) for k in range(n_packets)]
    return tens + [P.v9([P.template_set(9, [(256, P.V4_MS)])], uptime_ms=1000, source_id=n_packets + k) for k in range(100)]


def ipfix_flow(domain: int = 0) -> bytes:
    return P.ipfix([P.template_set(10, [(300, P.V4_MS)]), P.data_set(300, [P.record(P.V4_MS, VALUES)])], domain=domain)


def test_one_sender_churning_domains_does_not_lock_another_exporter_out() -> None:
    # The probe's reproduction: 70,000 templates from one address used to fill the shared
    # 65,536-template cache, and a second exporter's template was refused ("template limit").
    decoder = Decoder()
    for datagram in churn(7000):
        decoder.feed(datagram, EXPORTER)
    decoder.feed(ipfix_flow(), "127.0.0.99")
    assert decoder.take().flows.height == 1
    assert decoder.stats["127.0.0.99"].set_errors == {}
    # The churning exporter's oldest domains were forgotten, and that is counted.
    assert decoder.evictions["domain"] > 0
    assert decoder.template_count <= decoder.max_templates
    assert sum(s.templates for s in decoder.stats.values()) == decoder.template_count == len(decoder.templates)


def test_templates_per_domain_are_capped_with_the_least_recently_used_evicted() -> None:
    decoder = Decoder(max_templates_per_domain=3)
    for tid in (256, 257, 258):
        decoder.feed(P.ipfix([P.template_set(10, [(tid, P.V4_MS)])]), EXPORTER)
    # 256 is used: 257 is now the least recently used, and goes when a fourth arrives.
    decoder.feed(P.ipfix([P.data_set(256, [P.record(P.V4_MS, VALUES)])]), EXPORTER)
    decoder.feed(P.ipfix([P.template_set(10, [(259, P.V4_MS)])]), EXPORTER)
    assert {key[3] for key in decoder.templates} == {256, 258, 259}
    assert decoder.evictions["template"] == 1
    st = decoder.stats[EXPORTER]
    assert st.templates == 3
    decoder.feed(P.ipfix([P.data_set(257, [P.record(P.V4_MS, VALUES)])]), EXPORTER)
    assert st.set_errors == {"data before template": 1}


def test_the_global_template_bound_evicts_the_least_recently_used_domain() -> None:
    decoder = Decoder(max_templates=4, max_templates_per_domain=4)
    decoder.feed(P.ipfix([P.template_set(10, [(256, P.V4_MS), (257, P.V4_MS)])], domain=1), EXPORTER)
    decoder.feed(P.ipfix([P.template_set(10, [(256, P.V4_MS), (257, P.V4_MS)])], domain=2), "192.0.2.2")
    decoder.feed(P.ipfix([P.data_set(256, [P.record(P.V4_MS, VALUES)])], domain=1), EXPORTER)  # domain 1 used last
    decoder.feed(ipfix_flow(domain=3), "192.0.2.3")
    assert {key[:3] for key in decoder.templates} == {(EXPORTER, 10, 1), ("192.0.2.3", 10, 3)}
    assert (decoder.evictions["domain"], decoder.template_count) == (1, 3)
    assert decoder.stats["192.0.2.2"].templates == 0
    assert decoder.take().flows.height == 2


def test_domains_tracked_are_bounded() -> None:
    decoder = Decoder(max_domains=10)
    for k in range(25):
        decoder.feed(P.v5([P.v5_record("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 60, 900, 950)], uptime_ms=1000,
                          engine=(0, k)), EXPORTER)
    assert decoder.domains == 10
    assert decoder.evictions["domain"] == 15
    assert decoder.take().flows.height == 25


def test_a_template_with_an_absurd_field_count_is_refused_and_counted() -> None:
    decoder = Decoder(max_template_fields=64)
    decoder.feed(P.ipfix([P.template_set(10, [(256, [(210, 1)] * 65)])]), EXPORTER)
    decoder.feed(P.ipfix([P.template_set(10, [(257, [(210, 1)] * 63 + [(8, 4)])])]), EXPORTER)
    st = decoder.stats[EXPORTER]
    assert st.set_errors == {"template too large": 1}
    assert st.templates == 1


def test_max_fields_holds_even_below_the_largest_template() -> None:
    # Found by benchmarks/fuzz.py (10^6 datagrams): max_fields=40 was raised to the default
    # max_template_fields (1,024), so two domains held 41 fields. A template larger than the
    # whole budget is refused; one that fits pushes the least recently used domain out.
    decoder = Decoder(max_fields=40)
    assert decoder.max_template_fields == 40
    wide = [(210, 1)] * 26
    decoder.feed(P.ipfix([P.template_set(10, [(256, wide)])], domain=1), EXPORTER)
    decoder.feed(P.ipfix([P.template_set(10, [(256, [(210, 1)] * 14 + [(8, 4)])])], domain=2), EXPORTER)
    assert decoder.field_count == 15 and decoder.evictions["domain"] == 1  # 26 + 15 > 40
    decoder.feed(P.ipfix([P.template_set(10, [(257, [(210, 1)] * 41)])], domain=3), EXPORTER)
    assert decoder.stats[EXPORTER].set_errors == {"template too large": 1}
    assert decoder.field_count <= 40


def test_a_redefinition_with_more_fields_makes_room() -> None:
    # The other way past max_fields: a template redefined with more fields replaced the old one
    # without evicting anything.
    decoder = Decoder(max_fields=40)
    decoder.feed(P.ipfix([P.template_set(10, [(256, [(210, 1)] * 20)])], domain=1), EXPORTER)
    decoder.feed(P.ipfix([P.template_set(10, [(256, [(210, 1)] * 10)])], domain=2), EXPORTER)
    assert decoder.field_count == 30
    decoder.feed(P.ipfix([P.template_set(10, [(256, [(210, 1)] * 25)])], domain=2), EXPORTER)  # redefined
    assert decoder.stats[EXPORTER].template_redefinitions == 1
    assert decoder.field_count == 25 <= 40
    assert decoder.evictions["domain"] == 1  # domain 1, the least recently used, went
    assert [key[2] for key in decoder.templates] == [2]


def test_per_address_counters_keep_the_busiest_and_fold_the_rest_into_other() -> None:
    decoder = Decoder(max_exporters=8)
    for _ in range(50):
        decoder.feed(ipfix_flow(), EXPORTER)
    for k in range(5000):
        decoder.feed(b"garbage", f"10.{k >> 16}.{(k >> 8) & 255}.{k & 255}")
    assert len(decoder.stats) <= 9
    assert decoder.stats[EXPORTER].packets == 50  # the busiest address keeps its own counters
    other = decoder.stats["other"]
    # Nothing is lost by folding: every garbage datagram is still counted under its reason.
    assert sum(s.packet_errors["unknown version"] for s in decoder.stats.values()) == 5000
    assert other.packets + sum(s.packets for e, s in decoder.stats.items() if e not in ("other", EXPORTER)) == 5000
    assert decoder.evictions["exporter"] >= 5000 - 8
    assert decoder.take().flows.height == 50


# --- the collector on loopback ------------------------------------------------------------------


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(CollectorConfig(tmp_path / "flows", listen=("127.0.0.1", 0), metrics=("127.0.0.1", 0)))
    c.start()
    yield c
    c.stop()


def _metrics(c: Collector) -> str:
    host, port = c.metrics_address  # type: ignore[misc]
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _wait_packets(c: Collector, n: int) -> None:
    import time
    deadline = time.monotonic() + 20
    while c.summary()["packets"] < n:
        assert time.monotonic() < deadline, f"{c.summary()['packets']} of {n} datagrams decoded"
        time.sleep(0.05)


def test_collector_reproduction_another_loopback_exporter_still_yields_flows(collector: Collector) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i, d in enumerate(churn(7000)):
            s.sendto(d, collector.address)
            if i % 500 == 499:  # paced: the test is about state, not about the kernel's buffer
                _wait_packets(collector, i + 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.99", 0))  # all of 127.0.0.0/8 is loopback on Linux
        s.sendto(ipfix_flow(), collector.address)
    _wait_packets(collector, 7101)
    text = _metrics(collector)
    assert 'netflowgen_collect_evictions_total{kind="domain"}' in text
    summary = collector.stop()
    assert summary["exporters"]["127.0.0.99"]["flows"] == 1
    assert summary["rows_written"] == 1


def test_garbage_from_5000_addresses_keeps_metrics_and_manifest_bounded(tmp_path: Path) -> None:
    c = Collector(CollectorConfig(tmp_path / "flows", listen=("127.0.0.1", 0), metrics=("127.0.0.1", 0),
                                  max_exporters=64))
    c.start()
    try:
        sent = 0
        for k in range(5000):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((f"127.1.{k >> 8}.{k & 255}", 0))
                s.sendto(b"\x00\x07garbage", c.address)
            sent += 1
            if k % 500 == 499:
                _wait_packets(c, sent)
        _wait_packets(c, sent)
        text = _metrics(c)
        assert len(text) < 200_000
        assert text.count('netflowgen_collect_packets_total{') <= 65
    finally:
        summary = c.stop()
    manifest = json.loads((tmp_path / "flows" / "netflowgen.json").read_text())
    assert len(manifest["summary"]["exporters"]) <= 65
    assert summary["errors"] == 5000


def test_a_65507_byte_datagram_of_garbage_records_is_decoded_and_every_record_accounted() -> None:
    decoder = Decoder()
    decoder.feed(P.ipfix([P.template_set(10, [(256, P.V4_MS)])]), EXPORTER)
    record = sum(n for _, n in P.V4_MS)
    body = bytes((i * 131 + 7) % 251 for i in range(65_507 - 16 - 4))
    decoder.feed(P.ipfix([P.data_set(256, [body], pad=False)]), EXPORTER)
    checked = decoder.take()
    st = decoder.stats[EXPORTER]
    assert st.records == (65_507 - 20) // record
    assert st.records == checked.flows.height + checked.rejects.height == st.flows + sum(st.rejected.values())
    assert st.packets == st.packets_decoded == 2


def test_the_cli_refuses_a_bound_below_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from netflowgen.cli import app

    result = CliRunner().invoke(app, ["collect", "--out", str(tmp_path / "flows"), "--listen", "127.0.0.1:0",
                                      "--max-exporters", "0"])
    assert result.exit_code == 1
    assert "max_exporters must be positive" in result.output


def test_template_gauges_follow_an_address_folded_into_other_and_back() -> None:
    decoder = Decoder(max_exporters=1)
    decoder.feed(P.ipfix([P.template_set(10, [(256, P.V4_MS), (257, P.V4_MS)])]), EXPORTER)
    decoder.feed(b"garbage", "192.0.2.50")  # EXPORTER is folded into "other", templates and all
    assert (decoder.stats["other"].templates, decoder.evictions["exporter"]) == (2, 1)
    decoder.feed(ipfix_flow(), EXPORTER)  # back (192.0.2.50 is folded now): it takes its templates along
    assert (decoder.stats[EXPORTER].templates, decoder.stats["other"].templates) == (3, 0)
    assert sum(s.templates for s in decoder.stats.values()) == decoder.template_count == 3
