"""The `netflowgen` command: JSON output, errors and exit codes, the demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netflowgen.cli import app
from tests.dataset.test_ingest import HEADER, zeek_row

runner = CliRunner()


def write_log(path: Path) -> Path:
    path.write_text(HEADER + "\n".join([zeek_row(1700000000.0), zeek_row(1700000001.0, src="bogus"), zeek_row(1700000002.0, label="Malicious")]) + "\n")
    return path


def test_ingest_then_inspect_json(tmp_path: Path) -> None:
    log = write_log(tmp_path / "conn.log")
    out = tmp_path / "ds"
    result = runner.invoke(app, ["ingest", str(log), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows_read"], summary["rows_written"], summary["rows_rejected"]) == (3, 2, 1)
    assert summary["rejects_by_reason"] == {"src_ip is not an IP address": 1}

    result = runner.invoke(app, ["inspect", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["kind"] == "dataset"
    assert (info["flows"], info["rejected"]) == (2, 1)
    assert info["labels"] == {"Benign": 1, "Malicious": 1}
    assert info["top_sources"][0] == {"ip": "10.0.0.1", "flows": 2, "packets": 10, "bytes": 600}
    assert info["formats"] == {"zeek": 1}


def test_inspect_reads_an_input_file_directly(tmp_path: Path) -> None:
    log = write_log(tmp_path / "conn.log")
    result = runner.invoke(app, ["inspect", str(log), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["kind"], info["flows"], info["rejected"]) == ("input", 2, 1)
    assert info["protocols"] == {"TCP": 2}
    assert info["first_start"] == "2023-11-14T22:13:20+00:00"


def test_errors_are_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", str(tmp_path / "missing.log"), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 1
    assert "missing.log: no such file or directory" in result.output

    result = runner.invoke(app, ["inspect", str(write_log(tmp_path / "c.log")), "--format", "nosuch"])
    assert result.exit_code == 1
    assert "unknown format 'nosuch'" in result.output and "zeek" in result.output


def test_formats_lists_every_registered_reader() -> None:
    result = runner.invoke(app, ["formats", "--json"])
    assert result.exit_code == 0
    names = [row["name"] for row in json.loads(result.stdout)]
    # Every reader the README promises, in sniffing order (the user-mapped CSV last, never sniffed).
    assert names == ["parquet", "pcap", "nfcapd", "zeek", "zeek-json", "argus", "nfdump-csv", "nprobe", "cicflowmeter", "csv"]


def test_a_reader_that_fails_to_import_is_an_error_not_a_missing_format(monkeypatch: pytest.MonkeyPatch) -> None:
    import netflowgen.read as read

    monkeypatch.setattr(read, "_FORMAT_MODULES", (*read._FORMAT_MODULES, "no_such_reader"))
    with pytest.raises(ModuleNotFoundError, match="no_such_reader"):
        read.format_names()


def test_the_shipped_sample_ingests_with_its_four_broken_rows(tmp_path: Path) -> None:
    from importlib import resources

    with resources.as_file(resources.files("netflowgen") / "samples") as samples:
        result = runner.invoke(app, ["ingest", str(samples), "--out", str(tmp_path / "ds"), "--json"])
    assert result.exit_code == 0, result.output
    ingest = json.loads(result.stdout)
    assert ingest["rows_read"] == ingest["rows_written"] + ingest["rows_rejected"]
    # The sample holds four broken rows on purpose (scripts/make_samples.py).
    assert ingest["rejects_by_reason"] == {"not an IP flow": 2, "wrong number of fields": 1, "ts: cannot parse": 1}
    assert ingest["skipped_files"] == {}, "every shipped sample file must be readable"


def test_demo_runs_the_whole_job_and_says_it_is_synthetic(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--quick", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    report = Path(summary["report"])
    assert report.is_file() and "SYNTHETIC" in report.read_text()
    results = json.loads((report.parent / "results.json").read_text())
    assert results["synthetic"] is True
    for name, task in results["tasks"].items():
        assert task["test_positive"] > 0, name
        assert {r["method"] for r in task["runs"]} == {"flowgpt", "flowgpt-full", "scratch", "lightgbm", "volume", "surprise"}, task["errors"]
        assert (report.parent / "plots" / f"{name}-budget.png").is_file()
    rows = {(r["task"], r["method"]) for r in summary["table"]}
    assert len(rows) == 12
