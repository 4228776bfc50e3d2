"""Every writer on a real full disk (a small tmpfs; issue 16, item 4): ingest, series, tokenize,
the pre-training checkpoint and score's output fail with one error line (no traceback), leave
the previous complete output as it was and nothing hidden beside it, and work once there is
space again. (`collect` rotation: tests/collect/test_disk_full.py.)"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import Result
from safetensors.torch import load_file
from typer.testing import CliRunner

from netflowgen.cli import app
from tests.series.test_nodeview_cleanup import conn_log

runner = CliRunner()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: room for one output of every kind here, not for a second copy of it."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (and mount)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, room: int) -> Path:
    """Take every free byte of ``disk`` but ``room`` with one file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    os.truncate(filler, max(filler.stat().st_size - room, 0))
    return filler


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """On the ordinary disk: a small and a larger capture, their datasets, a series, its tokens
    and a tiny pre-trained run, each made by the command a user runs."""
    base = tmp_path_factory.mktemp("inputs")
    conn_log(base / "small.log", 3_000)
    conn_log(base / "large.log", 12_000)
    for args in (["ingest", "-q", base / "small.log", "--out", base / "small"],
                 ["ingest", "-q", base / "large.log", "--out", base / "large"],
                 ["series", base / "small", "--out", base / "s", "--json"],
                 ["tokenize", base / "s", "--out", base / "tok", "--json"],
                 ["pretrain", base / "tok", "--out", base / "run", *TINY, "--steps", "4", "--json"]):
        ok(runner.invoke(app, list(map(str, args))))
    return base


TINY = ["--batch-size", "4", "--eval-every", "2", "--warmup", "2", "--context", "16"]


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def fingerprint(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def refused_cleanly(result: Result, out: Path, before: dict[str, str], disk: Path) -> str:
    """Exit 1 with one error line saying the disk is full; ``out`` as it was; nothing else left."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), f"not an error line but {result.exception!r}"
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and "No space left on device" in result.output, result.output
    assert "Traceback" not in result.output
    assert str(disk) in result.output, "the error names the file it could not write"
    assert fingerprint(out) == before, "the previous complete output is intact"
    assert sorted(p.name for p in disk.iterdir()) == sorted([out.name, "filler"]), "nothing hidden left beside it"
    return result.output


def test_ingest(inputs: Path, disk: Path) -> None:
    out = disk / "ds"
    ok(runner.invoke(app, ["ingest", "-q", str(inputs / "small.log"), "--out", str(out)]))
    before = fingerprint(out)
    filler = fill(disk, 32 << 10)
    result = runner.invoke(app, ["ingest", "-q", str(inputs / "large.log"), "--out", str(out), "--overwrite"])
    refused_cleanly(result, out, before, disk)
    filler.unlink()
    assert json.loads(ok(runner.invoke(app, ["ingest", "-q", "--json", str(inputs / "large.log"), "--out", str(out),
                                             "--overwrite"])).stdout)["rows_written"] == 12_000


@pytest.mark.parametrize("room", [9 << 10, 15 << 10, 32 << 10])
def test_series_and_its_node_view(inputs: Path, disk: Path, room: int) -> None:
    """Several rooms: where the disk fills decides which write meets it; with little room it is
    sometimes a Parquet footer, which Polars reports with no errno (CI met it)."""
    out = disk / "s"
    ok(runner.invoke(app, ["series", str(inputs / "small"), "--out", str(out), "--json"]))
    before = fingerprint(out)
    filler = fill(disk, room)
    # Several partitions: the node view goes to a folder beside the output, on the full disk too.
    result = runner.invoke(app, ["series", str(inputs / "large"), "--out", str(out), "--overwrite", "--partitions", "3", "--json"])
    refused_cleanly(result, out, before, disk)
    filler.unlink()
    ok(runner.invoke(app, ["series", str(inputs / "large"), "--out", str(out), "--overwrite", "--partitions", "3", "--json"]))


def test_tokenize(inputs: Path, disk: Path) -> None:
    out = disk / "tok"
    ok(runner.invoke(app, ["tokenize", str(inputs / "s"), "--out", str(out), "--json"]))
    before = fingerprint(out)
    filler = fill(disk, 32 << 10)
    result = runner.invoke(app, ["tokenize", str(inputs / "s"), "--out", str(out), "--overwrite", "--bins", "8", "--json"])
    refused_cleanly(result, out, before, disk)
    filler.unlink()
    ok(runner.invoke(app, ["tokenize", str(inputs / "s"), "--out", str(out), "--overwrite", "--bins", "8", "--json"]))


def test_pretrain_checkpoint(inputs: Path, disk: Path) -> None:
    """The checkpoint of step 6 meets the full disk: step 4's stays whole, and a resume once
    there is space ends with the weights of a run that never met it."""
    run = disk / "run"
    ok(runner.invoke(app, ["pretrain", str(inputs / "tok"), "--out", str(run), *TINY, "--steps", "4", "--json"]))
    checkpoint = fingerprint(run / "checkpoint")
    final = fingerprint(run / "model.safetensors")
    filler = fill(disk, 128 << 10)
    result = runner.invoke(app, ["pretrain", str(inputs / "tok"), "--out", str(run), *TINY, "--steps", "8", "--resume", "--json"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "cannot write the checkpoint of step 6" in result.output and "No space left on device" in result.output
    assert "the previous checkpoint is kept" in result.output and "Traceback" not in result.output
    assert fingerprint(run / "checkpoint") == checkpoint and fingerprint(run / "model.safetensors") == final
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    filler.unlink()
    ok(runner.invoke(app, ["pretrain", str(inputs / "tok"), "--out", str(run), *TINY, "--steps", "8", "--resume", "--json"]))
    # The same run on the ordinary disk, extended the same way without meeting a full disk.
    shutil.copytree(inputs / "run", inputs / "run8")
    ok(runner.invoke(app, ["pretrain", str(inputs / "tok"), "--out", str(inputs / "run8"), *TINY, "--steps", "8", "--resume", "--json"]))
    a, b = load_file(str(run / "model.safetensors")), load_file(str(inputs / "run8" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.parametrize("name", ["scores.parquet", "scores.csv"])
def test_score_output(inputs: Path, disk: Path, name: str) -> None:
    out = disk / name
    ok(runner.invoke(app, ["score", str(inputs / "run"), str(inputs / "s"), "--out", str(out), "--json"]))
    before = fingerprint(out)
    filler = fill(disk, 4 << 10)
    result = runner.invoke(app, ["score", str(inputs / "run"), str(inputs / "s"), "--out", str(out), "--threshold", "1", "--json"])
    refused_cleanly(result, out, before, disk)
    filler.unlink()
    ok(runner.invoke(app, ["score", str(inputs / "run"), str(inputs / "s"), "--out", str(out), "--threshold", "1", "--json"]))
