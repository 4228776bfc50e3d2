"""Ingest against inputs and outputs that used to duplicate rows, replace inputs or delete a user's
folder, and damaged files that used to end in `Aborted.` or a traceback (issue 16, defects 3, 4, 9).
Through the command, as a user runs it."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netflowgen.cli import app
from netflowgen.artifacts import MANIFEST_NAME

runner = CliRunner()

HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes"
    "\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n"
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount"
    "\tstring\tcount\tcount\tcount\tcount\tset[string]\n"
)


def zeek(rows: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    lines = [
        f"{1622541600 + i}.{rng.randrange(10**6):06d}\tC{rng.getrandbits(64):x}\t10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        f"\t{rng.randrange(1024, 65536)}\t192.168.1.{rng.randrange(1, 255)}\t80\ttcp\t-\t0.5\t10\t20\tSF\tT\tF\t0\tShAdDaFf"
        f"\t3\t{rng.randrange(120, 4000)}\t2\t{rng.randrange(80, 3000)}\t(empty)\n"
        for i in range(rows)
    ]
    return HEADER + "".join(lines)


def ingest(*args: str | Path) -> tuple[int, str, dict | None]:  # type: ignore[type-arg]
    result = runner.invoke(app, ["ingest", "-q", "--json", *map(str, args)])
    summary = None
    if result.exit_code == 0:
        summary = json.loads(result.stdout)
    return result.exit_code, result.output, summary


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.log").write_text(zeek(30, 1))
    (folder / "b.log").write_text(zeek(20, 2))
    return folder


def test_same_file_twice_and_directory_plus_member_read_once(logs: Path, tmp_path: Path) -> None:
    code, output, summary = ingest(logs, logs / "a.log", logs / "a.log", "--out", tmp_path / "out")
    assert code == 0, output
    assert summary is not None
    assert (summary["rows_read"], summary["rows_written"]) == (50, 50)
    assert summary["skipped_files"] == {str(logs / "a.log"): f"the same file as {logs / 'a.log'}, which is read once"}


def test_out_inside_the_input_directory_is_refused(logs: Path) -> None:
    """Before: each `--overwrite` rerun read the previous output as input (964, 1,928, 2,892 rows)."""
    code, output, _ = ingest(logs, "--out", logs / "dataset")
    assert code == 1
    assert f"--out {logs / 'dataset'} is inside the input directory {logs}" in output
    assert not (logs / "dataset").exists()


def test_out_equal_to_an_input_file_is_refused(logs: Path) -> None:
    """Before: with --overwrite, the input was moved to a hidden name and deleted."""
    before = (logs / "a.log").read_bytes()
    code, output, _ = ingest(logs / "a.log", "--out", logs / "a.log", "--overwrite")
    assert code == 1
    assert f"--out {logs / 'a.log'} is the input {logs / 'a.log'}" in output
    assert (logs / "a.log").read_bytes() == before


def test_overwrite_replaces_only_a_netflowgen_artifact(logs: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code, output, _ = ingest(logs, "--out", mine, "--overwrite")
    assert code == 1
    assert "is not a netflowgen artifact (no netflowgen.json)" in output
    assert (mine / "thesis.tex").read_text() == "years of work"
    # A dataset it wrote is replaced.
    out = tmp_path / "out"
    assert ingest(logs / "a.log", "--out", out)[0] == 0
    code, output, summary = ingest(logs, "--out", out, "--overwrite")
    assert code == 0, output
    assert summary is not None and summary["rows_read"] == 50


def test_damaged_gzip_in_a_directory_names_the_file(logs: Path, tmp_path: Path) -> None:
    """Before: a bare `Aborted.` and rc 1, or a traceback; now one error line naming the file."""
    data = gzip.compress(zeek(8000, 3).encode(), compresslevel=1)
    assert len(data) > 100_000
    (logs / "c.log.gz").write_bytes(data[: 64 * 1024])
    out = tmp_path / "out"
    code, output, _ = ingest(logs, "--out", out)
    assert code == 1
    assert "Aborted" not in output and "Traceback" not in output
    assert f"error: {logs / 'c.log.gz'}: damaged gzip data, found after" in " ".join(output.split())
    assert not out.exists()


def test_header_only_file_and_dangling_link_are_in_the_manifest(logs: Path, tmp_path: Path) -> None:
    (logs / "empty_hour.log").write_text(HEADER)
    (logs / "gone.log").symlink_to(tmp_path / "deleted.log")
    out = tmp_path / "out"
    code, output, _ = ingest(logs, "--out", out)
    assert code == 0, output
    manifest = json.loads((out / MANIFEST_NAME).read_text())["summary"]
    inputs = {i["source"]: (i["rows_read"], i["rows_written"]) for i in manifest["inputs"]}
    assert inputs == {str(logs / "a.log"): (30, 30), str(logs / "b.log"): (20, 20), str(logs / "empty_hour.log"): (0, 0)}
    assert manifest["skipped_files"] == {str(logs / "gone.log"): f"dangling symbolic link (to {tmp_path / 'deleted.log'})"}


def test_symlink_loop_is_an_error(logs: Path, tmp_path: Path) -> None:
    (logs / "again").symlink_to(logs)
    code, output, _ = ingest(logs, "--out", tmp_path / "out")
    assert code == 1
    assert "a symbolic link loop" in output and "Traceback" not in output


def test_pretrain_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    """--overwrite of `pretrain` deleted any folder too; the rule is the same for every artifact."""
    from tests.train.test_pretrain import periodic_tokens, small_train
    from netflowgen.train.pretrain import PretrainConfig, pretrain

    tokens = periodic_tokens(tmp_path, nodes=2, steps=20)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="is not a netflowgen artifact"):
        pretrain(PretrainConfig(tokens, "tiny", context=8), small_train(steps=1), mine, overwrite=True, show_progress=False)
    assert (mine / "notes.txt").read_text() == "keep"
