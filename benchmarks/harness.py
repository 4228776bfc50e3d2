"""What every benchmark here shares: running a command as its own process and measuring it (wall
time, CPU time, peak memory), the ``netflowgen`` command of this environment, and the machine a
figure was measured on.

Benchmarks are scripts (``.venv/bin/python benchmarks/NAME.py``); this folder is on their import
path, so ``from harness import run_measured`` works in each.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["BenchmarkError", "Measured", "machine", "netflowgen_command", "run_measured"]


class BenchmarkError(RuntimeError):
    pass


@dataclass
class Measured:
    seconds: float
    """Wall time."""
    cpu_seconds: float
    """User + system CPU time of the process and the children it waited for."""
    max_rss_bytes: int
    """Peak resident memory of the process (or of its largest waited-for child)."""
    returncode: int
    stdout: str
    stderr: str


# Runs the command and reports its own resource use. Measuring through this small process matters:
# Python starts children with vfork, and Linux then counts the parent's peak RSS into the child's
# ru_maxrss (exec records the hiwater mark of the memory it replaces), so a command started from
# this benchmark, which holds generated data, would inherit its peak. Started from this wrapper,
# the floor is the wrapper's own few megabytes.
_MEASURE = """
import json, os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"seconds": time.perf_counter() - started, "cpu_seconds": usage.ru_utime + usage.ru_stime,
               "max_rss_bytes": usage.ru_maxrss * 1024, "returncode": os.waitstatus_to_exitcode(status)}, f)
"""


def run_measured(cmd: list[str], stdout: IO[bytes] | None = None, env: dict[str, str] | None = None) -> Measured:
    """Run a command to its end and measure it: wall time, CPU time and peak RSS of the command
    (and of the children it waited for)."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".json") as report,
    ):
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _MEASURE, report.name, *cmd],
            stdout=stdout or out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            check=False,
        )
        if proc.returncode != 0 and not report.read(1):
            err.seek(0)
            raise BenchmarkError(f"could not run {cmd[0]}: {err.read().decode('utf-8', 'replace').strip()[-400:]}")
        report.seek(0)
        r = json.load(report)
        out.seek(0)
        err.seek(0)
        return Measured(
            r["seconds"],
            r["cpu_seconds"],
            r["max_rss_bytes"],
            r["returncode"],
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def netflowgen_command() -> list[str]:
    exe = Path(sys.executable).with_name("netflowgen")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "netflowgen.cli"]




def machine() -> dict[str, Any]:
    """Where a figure was measured: CPUs, platform, Python, and the 1-minute load average (above
    the CPU count, other work competed for the CPUs)."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_1min": round(os.getloadavg()[0], 2)}
