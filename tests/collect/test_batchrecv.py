"""recvmmsg through ctypes (netflowgen.collect.batchrecv) and the collector on both receive paths,
over real loopback sockets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from netflowgen.collect import server as server_module
from netflowgen.collect.batchrecv import batch_receiver
from netflowgen.collect.server import Collector, CollectorConfig
from netflowgen.dataset.manifest import scan_flows
from tests.collect.test_server import send, v9_packets, wait_for


def receiver_pair(family: int, host: str) -> tuple[socket.socket, socket.socket]:
    try:
        inbound = socket.socket(family, socket.SOCK_DGRAM)
        inbound.bind((host, 0))
    except OSError as e:
        pytest.skip(f"no {host} loopback here: {e}")
    outbound = socket.socket(family, socket.SOCK_DGRAM)
    outbound.bind((host, 0))
    return inbound, outbound


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_more_datagrams_than_slots_come_in_order_with_their_sender(family: int, host: str) -> None:
    inbound, outbound = receiver_pair(family, host)
    with inbound, outbound:
        batch = batch_receiver(inbound, slots=4, max_size=2048)
        if batch is None:
            pytest.skip("recvmmsg is not available here")
        sent = [bytes([k]) * (1 + 97 * k) for k in range(10)] + [b"x" * 2048]
        for d in sent:
            outbound.sendto(d, inbound.getsockname()[:2])
        got: list[tuple[bytes, str]] = []
        while len(got) < len(sent):
            n = batch.receive(2.0)
            assert n <= 4, n
            if n == 0:
                break
            got += [(bytes(batch.data(i)), batch.sender(i)) for i in range(n)]
        assert [d for d, _ in got] == sent
        assert {s for _, s in got} == {host} == {outbound.getsockname()[0]}
        assert batch.receive(0.01) == 0  # nothing left: waits, then says so


def test_a_datagram_longer_than_a_slot_is_cut_as_recvfrom_cuts_it() -> None:
    inbound, outbound = receiver_pair(socket.AF_INET, "127.0.0.1")
    with inbound, outbound:
        batch = batch_receiver(inbound, slots=2, max_size=100)
        if batch is None:
            pytest.skip("recvmmsg is not available here")
        outbound.sendto(b"y" * 150, inbound.getsockname())
        assert batch.receive(2.0) == 1 and bytes(batch.data(0)) == b"y" * 100


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvfrom"])
def test_the_collector_gets_every_flow_on_either_receive_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batched: bool) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        if batched and batch_receiver(probe) is None:
            pytest.skip("recvmmsg is not available here")
    received_by: list[str] = []
    real = server_module.Collector._receive_batches
    monkeypatch.setattr(server_module.Collector, "_receive_batches", lambda self, batch: (received_by.append("recvmmsg"), real(self, batch)))
    c = Collector(CollectorConfig(out=tmp_path / "flows", listen=("127.0.0.1", 0), take_every=0.02, recvmmsg=batched))
    c.start()
    try:
        send(c.address, [b"garbage"] + v9_packets(200, 5))
        wait_for(lambda: c.summary()["flows"] == 1000, "1,000 flows")
    finally:
        summary = c.stop()
    assert (summary["packets"], summary["rows_written"], summary["errors"]) == (201, 1000, 1)
    assert received_by == (["recvmmsg"] if batched else [])
    assert scan_flows(tmp_path / "flows").collect()["source_row"].sort().to_list() == list(range(1, 1001))
