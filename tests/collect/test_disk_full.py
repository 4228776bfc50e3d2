"""`collect` on a real full disk (a small tmpfs): it keeps receiving, counts the failed writes,
keeps the flows, and writes them once there is space again (issue 16, defect 5)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from netflowgen.artifacts import read_manifest
from netflowgen.collect.server import Collector, CollectorConfig
from netflowgen.dataset.manifest import scan_flows
from tests.collect.test_server import send, v9_packets, wait_for


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    return filler


def test_a_full_disk_keeps_the_collector_up_and_the_flows_until_there_is_space(tiny_disk: Path) -> None:
    c = Collector(CollectorConfig(out=tiny_disk / "flows", listen=("127.0.0.1", 0), take_every=0.02,
                                  max_buffer_flows=10, max_unwritten_flows=1000))
    c.start()
    try:
        filler = fill(tiny_disk)
        send(c.address, v9_packets(3, 20))
        wait_for(lambda: c.summary()["write_errors"].get("ENOSPC", 0) >= 1, "a write meeting the full disk")
        send(c.address, v9_packets(2, 20)[1:])  # still receiving
        # Decoded flows are counted a moment before they join the buffer: wait for both.
        wait_for(lambda: c.summary()["flows"] == 80 and c.summary()["buffered_flows"] == 80, "the flows sent after the failure")
        assert c.healthy()
        assert not list((tiny_disk / "flows").glob("date=*/.*.tmp"))
        filler.unlink()
        wait_for(lambda: c.summary()["rows_written"] == 80, "the retried writes", timeout=20)
    finally:
        summary = c.stop()
    assert (summary["rows_written"], summary["dropped_unwritten"]) == (80, 0)
    assert scan_flows(tiny_disk / "flows").collect().height == 80


def test_stopping_on_a_full_disk_says_what_was_not_written_and_leaves_a_complete_manifest(tiny_disk: Path) -> None:
    out = tiny_disk / "flows"
    c = Collector(CollectorConfig(out=out, listen=("127.0.0.1", 0), take_every=0.02))
    c.start()
    fill(tiny_disk)
    send(c.address, v9_packets(2, 20))
    wait_for(lambda: c.summary()["flows"] == 40, "the flows")
    with pytest.raises(OSError, match=r"40 flows and 0 rejects could not be written .*No space left on device.*"
                                      r"0 flows are in its files; its manifest could not be updated either"):
        c.stop()
    manifest = read_manifest(out, "netflowgen.flows")  # the one written at the start, whole
    assert manifest["summary"]["rows_written"] == 0
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["netflowgen.json", "rejects.csv"]
