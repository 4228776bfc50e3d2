"""A file that changes while it is read (issue 16, item 4) is refused with an error naming it,
never read to wherever its writer happened to be; once it is still, it reads whole."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netflowgen.cli import app
from netflowgen.read.source import ChangedInput, list_sources
from tests.dataset.test_ingest_guards import zeek

runner = CliRunner()


def source(path: Path):  # type: ignore[no-untyped-def]
    (s,), _ = list_sources(path)
    return s


def test_a_file_that_grows_while_read_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "conn.log"
    log.write_text(zeek(200, 1))
    with source(log).open() as f:
        f.read(100)
        with open(log, "a") as w:
            w.write(zeek(5, 2).splitlines()[-1] + "\n")
        with pytest.raises(ChangedInput, match=rf"{log}: grew while it was read \({len(zeek(200, 1)):,} bytes when opened"):
            f.read()


def test_a_file_that_shrinks_while_read_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "conn.log"
    log.write_text(zeek(2000, 1))
    with source(log).open() as f:
        f.read(100)
        with open(log, "r+") as w:
            w.truncate(5000)
        with pytest.raises(ChangedInput, match=r"shrank while it was read .* 5,000 at the end"):
            f.read()


def test_a_compressed_file_that_grows_while_read_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "conn.log.gz"
    log.write_bytes(gzip.compress(zeek(300, 1).encode()))
    with source(log).open() as f:
        f.read(100)
        with open(log, "ab") as w:
            w.write(gzip.compress(b"more\n"))  # a second gzip member, as `gzip >>` appends
        with pytest.raises(ChangedInput, match="grew while it was read"):
            f.read()


def test_a_still_file_reads_whole(tmp_path: Path) -> None:
    log = tmp_path / "conn.log"
    log.write_text(zeek(200, 1))
    with source(log).open() as f:
        assert f.read() == log.read_bytes()


def test_ingest_of_a_log_being_written_is_an_error_naming_it(tmp_path: Path) -> None:
    """A real writer appends rows while `netflowgen ingest` reads the file."""
    log = tmp_path / "conn.log"
    log.write_text(zeek(40_000, 1))
    row = zeek(1, 3).splitlines()[-1] + "\n"
    stop = threading.Event()
    appended = [0]

    def writer() -> None:
        with open(log, "a") as w:
            while not stop.is_set():
                w.write(row)
                w.flush()
                appended[0] += 1
                time.sleep(0.0005)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while appended[0] == 0:
            time.sleep(0.001)
        result = runner.invoke(app, ["ingest", "-q", str(log), "--out", str(tmp_path / "ds"), "--json"])
    finally:
        stop.set()
        thread.join()
    assert result.exit_code == 1, result.output
    assert f"{log}: grew while it was read" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ds").exists()
    # Once the writer has stopped, every row is read.
    result = runner.invoke(app, ["ingest", "-q", str(log), "--out", str(tmp_path / "ds"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_read"] == 40_000 + appended[0]
