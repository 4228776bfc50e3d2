"""`ingest --engine spark` against the single-machine ingest of the same real files: the same
rows (in order, per day), row and reject counts, rejects file, skipped files and coverage."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from netflowgen.cli import app

pytestmark = [pytest.mark.spark, pytest.mark.shared_data]

runner = CliRunner()


@pytest.fixture()
def inputs(shared_data: Path, tmp_path: Path) -> Path:
    """A folder like a collector's: hourly Zeek logs of two days, Argus files (with rows the
    readers reject: MAC addresses, ARP), a README (skipped) and a second link to one log (read once)."""
    folder = tmp_path / "in"
    (folder / "zeek").mkdir(parents=True)
    aip = shared_data / "aip-honeynet"
    for day, hour in (("2022-03-01", "conn.00-00-00-01-00-00.log.gz"), ("2022-03-02", "conn.05-00-00-06-00-00.log.gz")):
        (folder / "zeek" / f"{day}-{hour}").symlink_to(aip / day / hour)
    (folder / "zeek" / "again.log.gz").symlink_to(aip / "2022-03-01" / "conn.00-00-00-01-00-00.log.gz")
    for name in ("test5-mixed.binetflow", "test11-portscan.binetflow", "2013-10-21_capture-1.binetflow"):
        (folder / name).symlink_to(shared_data / "stratosphere-argus" / name)
    (folder / "README.md").write_text("not flows\n")
    return folder


def _rows(dataset: Path) -> dict[str, pl.DataFrame]:
    return {d.name: pl.read_parquet(sorted(d.glob("*.parquet"))) for d in sorted(dataset.glob("date=*"))}


def test_spark_ingest_equals_single_machine(inputs: Path, spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # relative paths, as the README writes the command
    one = runner.invoke(app, ["ingest", "in", "--out", "one", "--json", "--timezone", "Europe/Prague"])
    many = runner.invoke(app, ["ingest", "in", "--out", "many", "--json", "--timezone", "Europe/Prague",
                               "--engine", "spark", "--master", "local[2]"])
    assert one.exit_code == 0, one.output
    assert many.exit_code == 0, many.output
    a, b = json.loads(one.stdout), json.loads(many.stdout)
    for d in (a, b):
        d.pop("seconds")
        d.pop("out")
    assert b == a
    assert a["rows_rejected"] > 0 and a["skipped_files"] and len(a["inputs"]) == 5 and len(a["partitions"]) >= 3
    one_rows, many_rows = _rows(tmp_path / "one"), _rows(tmp_path / "many")
    assert list(many_rows) == list(one_rows)
    for day in one_rows:
        assert many_rows[day].equals(one_rows[day]), day  # same rows in the same order
    assert (tmp_path / "many" / "rejects.csv").read_bytes() == (tmp_path / "one" / "rejects.csv").read_bytes()
    ma, mb = (json.loads((tmp_path / x / "netflowgen.json").read_text()) for x in ("one", "many"))
    for m in (ma, mb):
        m["summary"].pop("out")
    assert mb == ma
    assert not (tmp_path / "many" / ".files").exists()


def test_spark_ingest_strict_fails_whole_and_leaves_nothing(inputs: Path, spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "many"
    r = runner.invoke(app, ["ingest", str(inputs), "--out", str(out), "--strict", "--engine", "spark"])
    assert r.exit_code == 1
    assert "nothing was written" in r.output and "row" in r.output
    assert not out.exists() and not list(tmp_path.glob(".many.*"))
