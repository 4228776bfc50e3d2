"""The README's main command, exactly as a new user runs it: ``bash scripts/demo.sh`` (its quick
variant), from the repository's root with a relative ``--out``, and from another working
directory by the script's full path. Its output goes to a pipe, as in a log or CI, and must read
there: a broken main command fails the test suite, and so CI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _demo(cwd: Path, script: str, out: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COLUMNS"))}
    proc = subprocess.run(["bash", script, "--quick", "--out", out], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=600)
    assert proc.returncode == 0, f"bash {script} --quick --out {out} (in {cwd}) exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def _check_summary(stdout: str, report: Path) -> None:
    assert report.is_file() and "SYNTHETIC" in report.read_text()
    assert "…" not in stdout, f"the summary was cut to fit the pipe's width:\n{stdout}"
    # Per task, the methods' test PR-AUC, one per line: a method name and a number.
    assert re.search(r"^\s+flowgpt\s+\d\.\d{3}", stdout, re.M), stdout
    assert re.search(r"^\s+volume\s+\d\.\d{3}", stdout, re.M), stdout
    assert "time per stage" in stdout and re.search(r"\d+\.\d s\s+pre-training", stdout), stdout
    assert f"Report: {report.resolve()}" in stdout
    assert max(len(line) for line in stdout.splitlines() if not line.startswith("Report:")) <= 80, stdout


def test_from_the_repository_root_with_a_relative_out() -> None:
    out = f"runs/test-main-command-{os.getpid()}"
    try:
        stdout = _demo(REPO, "scripts/demo.sh", out)
        _check_summary(stdout, REPO / out / "report" / "report.html")
    finally:
        shutil.rmtree(REPO / out, ignore_errors=True)


def test_from_another_directory_by_the_scripts_full_path(tmp_path: Path) -> None:
    stdout = _demo(tmp_path, str(REPO / "scripts" / "demo.sh"), "rel/demo")
    # The output lands where the user is, not in the repository.
    _check_summary(stdout, tmp_path / "rel" / "demo" / "report" / "report.html")
