"""The node view folders `series` writes beside its output (issue 16, defect 6): removed when a run
ends, well or with an error, and swept by the next run when a killed run left them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netflowgen.cli import app
from netflowgen.series.write import read_series
from tests.dataset.test_ingest import HEADER, zeek_row

runner = CliRunner()


def conn_log(path: Path, rows: int) -> Path:
    """A Zeek conn.log of ``rows`` flows between 100 local and 7 other nodes, a flow every 3 seconds."""
    with open(path, "w") as f:
        f.write(HEADER)
        for i in range(rows):
            f.write(zeek_row(1700000000.0 + 3 * i, src=f"10.0.{i % 5}.{i % 100}", dst=f"192.168.1.{i % 7}") + "\n")
    return path


def nodeviews(folder: Path) -> list[Path]:
    return sorted(folder.glob(".netflowgen-nodeview-*"))


def test_a_killed_series_leaks_nothing_that_the_next_run_keeps(tmp_path: Path) -> None:
    """A real SIGKILL of `netflowgen series` while its node view is on disk; the rerun sweeps the
    dead run's folder and keeps one that a live process owns."""
    log = conn_log(tmp_path / "conn.log", 40_000)
    work = tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, "-m", "netflowgen.cli", "series", str(log), "--out", str(work / "s"), "--partitions", "12", "--json"]
    for _attempt in range(5):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not list(work.glob(".netflowgen-nodeview-*/_part=*")):
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if nodeviews(work) and not (work / "s").exists():
            break
    leaked = nodeviews(work)
    assert leaked, "the kill never hit a run while its node view was on disk"
    assert proc.returncode == -signal.SIGKILL
    # A folder a live process (this one) owns is not the rerun's to remove.
    live = work / f".netflowgen-nodeview-{os.getpid()}-inuse"
    live.mkdir()
    result = runner.invoke(app, ["series", str(log), "--out", str(work / "s"), "--partitions", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert nodeviews(work) == [live], "the killed run's node view is swept, the live one kept"
    table, manifest = read_series(work / "s")
    assert manifest["summary"]["parts"] == 3 and table["node"].n_unique() == 107


def test_a_run_that_fails_midway_removes_its_node_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import netflowgen.series.write as write

    log = conn_log(tmp_path / "conn.log", 3_000)
    work = tmp_path / "work"
    work.mkdir()
    calls = []
    original = write.write_part

    def fails_on_the_second_part(part, path):  # type: ignore[no-untyped-def]
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        original(part, path)

    monkeypatch.setattr(write, "write_part", fails_on_the_second_part)
    result = runner.invoke(app, ["series", str(log), "--out", str(work / "s"), "--partitions", "4", "--json"])
    assert result.exit_code == 1 and "No space left on device" in result.output, result.output
    assert len(calls) == 2
    assert list(work.iterdir()) == [], "no node view, no temporary output, no output"


def test_a_run_that_ends_well_removes_its_node_view(tmp_path: Path) -> None:
    log = conn_log(tmp_path / "conn.log", 3_000)
    work = tmp_path / "work"
    work.mkdir()
    result = runner.invoke(app, ["series", str(log), "--out", str(work / "s"), "--partitions", "4", "--json"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in work.iterdir()] == ["s"]
