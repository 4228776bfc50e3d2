"""benchmarks/fuzz.py runs the inputs it is asked for, and fails when a contract is broken.

The script runs as it is run by hand (its own process, spawning its workers), with tiny counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "fuzz.py"


def fuzz(crashes: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run([sys.executable, str(SCRIPT), "--json", "--crashes", str(crashes), "--seed", "7", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"no JSON report (exit status {done.returncode}): {done.stderr[-3000:]}") from None
    return done.returncode, report, done.stderr


def test_a_small_run_tries_every_input_asked_and_finds_nothing(tmp_path: Path) -> None:
    status, report, stderr = fuzz(tmp_path / "crashes", "--inputs", "30", "--datagrams", "300",
                                  "--formats", "zeek,nfdump-csv,netflow")
    assert status == 0, stderr[-3000:]
    targets = {t["target"]: t for t in report["targets"]}
    assert list(targets) == ["zeek", "nfdump-csv", "netflow"]
    assert [(t["unit"], t["asked"], t["inputs"]) for t in targets.values()] == [
        ("inputs", 30, 30), ("inputs", 30, 30), ("datagrams", 300, 300)]
    for t in targets.values():
        assert (t["crashes"], t["hangs"], t["violations"]) == (0, 0, 0), t
        assert t["rows"] > 0 and t["inputs_per_s"] > 0, t
    assert report["failures"] == 0 and report["crashes_dir"] is None
    assert report["machine"]["cpus"] >= 1
    assert not (tmp_path / "crashes").exists()


def test_a_lost_row_is_reported_as_a_failure_with_the_input_saved(tmp_path: Path) -> None:
    # --self-test drops the last row of every read, as a broken reader would.
    status, report, _ = fuzz(tmp_path / "crashes", "--inputs", "10", "--formats", "zeek", "--workers", "1", "--self-test")
    assert status == 1
    (zeek,) = report["targets"]
    assert zeek["inputs"] == 10 and zeek["violations"] > 0 and (zeek["crashes"], zeek["hangs"]) == (0, 0)
    assert zeek["failure_kinds"] == {"violation: rows lost": zeek["violations"]}
    assert report["failures"] == zeek["violations"] and report["crashes_dir"] == str(tmp_path / "crashes")
    saved = Path(zeek["saved"][0])
    info = json.loads((saved / "info.json").read_text())
    assert info["outcome"] == "violation" and "rows lost" in info["detail"]
    assert (saved / info["file"]).is_file() and info["seed"] == 7


def test_a_run_split_with_first_tries_exactly_the_inputs_of_one_run(tmp_path: Path) -> None:
    def figures(target: str, *args: str) -> tuple[int, int, int]:
        status, report, stderr = fuzz(tmp_path / "crashes", "--formats", target, "--workers", "1", *args)
        assert status == 0, stderr[-3000:]
        (t,) = report["targets"]
        return t["inputs"], t["rows"], t["refused"]

    def total(*parts: tuple[int, int, int]) -> tuple[int, ...]:
        return tuple(map(sum, zip(*parts)))

    assert total(figures("zeek", "--inputs", "14"), figures("zeek", "--first", "14", "--inputs", "10")) == figures("zeek", "--inputs", "24")
    # The decoder's --first counts batches of 32 datagrams.
    assert total(figures("netflow", "--datagrams", "64"), figures("netflow", "--first", "2", "--datagrams", "40")) == figures(
        "netflow", "--datagrams", "104")
