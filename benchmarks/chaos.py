"""Kill -9 anywhere: SIGKILL each command at random moments, then check what it left and that a
rerun recovers (issue 16, item 2).

Commands: ``ingest``, ``series``, ``tokenize``, ``pretrain``, ``finetune``, ``benchmark`` (a tiny
suite: one labelled task, one seed, one budget, ``volume`` and ``lightgbm``, a tiny pre-training)
and ``collect`` (fed IPFIX by ``netflowgen replay`` on 127.0.0.1). Their inputs are built once in
the work folder, small but real (``netflowgen simulate``, a Zeek log of synthetic flows, the
series, tokens and pre-trained run of a small simulated network), so that each command runs a few
seconds. Every command runs as its own process group (``start_new_session``) and is killed with
``os.killpg(..., SIGKILL)``.

For every command but ``collect``:

1. Two uninterrupted reference runs at the output path: into an absent output (``fresh``), then
   over it (``overwrite``: with ``--overwrite``; ``benchmark`` into its complete folder, whose
   data and pre-training it reuses). They must be identical, else the command is reported as not
   deterministic. Each one's wall time is the window of kills of its scenario.
2. ``--kills`` kills, alternately in the two scenarios, each at a uniformly drawn moment of its
   scenario's window (from the very start to the very end). A run that ends before its kill does
   not count; another attempt is made (at most twice as many attempts as kills), and the window
   shrinks to that run's time (the reference ran on a busier machine).
3. After the kill, what is visible at the output path must be nothing, a complete artifact equal
   to the reference, or a state the command declares incomplete: a ``pretrain`` run directory
   whose manifest says ``running`` (``--resume`` continues it), a suite folder whose files are
   each complete (``benchmark`` fills it as it goes). Anything else is a partial artifact. Hidden
   temporary siblings (``.OUT.tmp-PID``, ``.OUT.old-PID``, ``.netflowgen-nodeview-PID-*``) are
   allowed: the rerun must remove or recover them.
4. A rerun (``--overwrite``; ``pretrain --resume`` where the run is resumable; ``benchmark`` as
   it is) must succeed, give an artifact identical to the reference file for file (for
   ``pretrain``: the same weights, checkpoint and metrics) and leave nothing beside it.

Files are compared byte for byte; only wall-clock figures are left out (``VOLATILE_KEYS``,
``VOLATILE_TEXT``, found by comparing two uninterrupted runs), Parquet files whose bytes differ
are compared as decoded tables and safetensors as tensors.

For ``collect`` (``--rotate 1s``, ``--metrics``): a reference run receives every flow of a
simulated network sent at ``--rate`` flows/s and is stopped with SIGTERM. Each kill then lands in
a collection into an absent folder (``fresh``) or one continuing the reference's (``continue``).
Flows acknowledged as written are the most the collector reported before the kill, in /metrics
(``rows_written_total``, polled) or in its manifest (``summary.rows_written``, polled and read
after the kill). After the kill every visible part file must be readable, hold at least the
acknowledged flows, and only flows that were sent (as many times as sent at most). A restarted
collector must continue the folder, remove the killed one's temporary files and count every
flow of it plus those sent to it.

    .venv/bin/python benchmarks/chaos.py                  # full run, 20 kills each (about 30 minutes on 2 cores)
    .venv/bin/python benchmarks/chaos.py --kills 3        # smoke run (about 7 minutes)
    .venv/bin/python benchmarks/chaos.py --commands ingest,collect --kills 5 --seed 7 --json

A failure is printed with its reproduction (seed, command line, scenario, kill delay); the work
folder (``--work``, else a temporary one, kept when something failed) holds the inputs, the
references, a copy of each failing state under ``failures/`` and every run's stderr under ``logs/``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness import machine, netflowgen_command
from synthetic import TEXT_FORMATS, write_text

from netflowgen.dataset.layout import part_files

COMMANDS = ("ingest", "series", "tokenize", "pretrain", "finetune", "benchmark", "collect")

#: JSON keys that differ between two uninterrupted runs, by file name, each dropped at any depth
#: before comparing. All are wall-clock figures:
VOLATILE_KEYS: dict[str, tuple[str, ...]] = {
    # steps_per_s, tokens_per_s: training speed since the previous record; data_share: the share
    # of that wall time spent getting batches (pretrain's and finetune's metrics.jsonl).
    "metrics.jsonl": ("steps_per_s", "tokens_per_s", "data_share"),
    # The same records, plus elapsed: wall time trained so far (for --max-minutes on resume).
    "state.json": ("steps_per_s", "tokens_per_s", "data_share", "elapsed"),
    # seconds: wall time of each method and of the whole suite; timings: wall time per stage.
    "results.json": ("seconds", "timings"),
}
#: Text that differs between two uninterrupted runs, by file name: the suite's wall time in the
#: report's header line ("...; 25 s in all.").
VOLATILE_TEXT: dict[str, re.Pattern[str]] = {"report.md": re.compile(r"\d+ s in all\.")}

PRETRAIN = ["--steps", "60", "--eval-every", "15", "--batch-size", "8", "--context", "32", "--device", "cpu"]
FINETUNE = ["--steps", "20", "--window", "16", "--history", "8", "--budget", "2ep"]
SUITE = """\
name = "chaos"
description = "SYNTHETIC traffic: a tiny suite for benchmarks/chaos.py"
data = "."
synthetic = true
seeds = [0]
budgets = ["2ep"]
methods = ["volume", "lightgbm"]
bootstrap = 50

[pretrain]
size = "tiny"
steps = 10
batch_size = 8
context = 32

[datasets.sim]
inputs = ["small-sim"]

[[tasks]]
name = "ddos"
kind = "labeled"
dataset = "sim"
attack = ["DDoS"]
step = "60s"
fit_fraction = 0.5
"""
#: Columns that identify a flow the collector received: what the IPFIX export carries of it.
FLOW_KEY = ["ts_start", "ts_end", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes"]


class ChaosError(RuntimeError):
    """The set-up failed (an input could not be built, a reference run failed): no figure."""


# --- running commands --------------------------------------------------------------------------


@dataclass
class Finished:
    returncode: int
    seconds: float
    stderr: str


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``netflowgen ARGV`` as the leader of its own process group, stderr to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as err:
        return subprocess.Popen([*netflowgen_command(), *argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group (the command and any child it started) and reap the leader."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def tail(log: Path, chars: int = 600) -> str:
    return log.read_text(errors="replace").strip()[-chars:] if log.is_file() else ""


def _run_for(argv: list[str], log: Path, seconds: float) -> tuple[Finished, bool]:
    """Run ``netflowgen ARGV`` for at most ``seconds``, then SIGKILL its process group: how it
    ended, and whether it was killed."""
    began = time.perf_counter()
    proc = start(argv, log)
    try:
        proc.wait(seconds)
        killed = False
    except subprocess.TimeoutExpired:
        kill_group(proc)
        killed = True
    return Finished(proc.returncode, time.perf_counter() - began, tail(log)), killed


def run(argv: list[str], log: Path, timeout: float = 900) -> Finished:
    """Run ``netflowgen ARGV`` to its end (killed after ``timeout``)."""
    return _run_for(argv, log, timeout)[0]


def run_killed(argv: list[str], log: Path, delay: float) -> Finished | None:
    """Start the command and SIGKILL it after ``delay`` seconds; None if it was killed, else how
    it ended on its own before the kill."""
    finished, killed = _run_for(argv, log, delay)
    return None if killed else finished


# --- comparing artifacts -----------------------------------------------------------------------


def _drop(value: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _drop(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_drop(v, keys) for v in value]
    return value


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """Where two JSON values first differ ("$.final.val_loss: 1.09 != 1.10"), None if equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}.{k}: only in the {'reference' if k in a else 'rerun'}"
            found = _first_difference(a[k], b[k], f"{where}.{k}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"${where}: {json.dumps(a)[:80]} != {json.dumps(b)[:80]}"


def compare_file(ref: Path, got: Path) -> str | None:
    """How ``got`` differs from ``ref`` (None: the same, but for VOLATILE_KEYS/VOLATILE_TEXT)."""
    a, b = ref.read_bytes(), got.read_bytes()
    if a == b:
        return None
    name = ref.name
    try:
        if name in VOLATILE_KEYS:
            keys = VOLATILE_KEYS[name]
            if name.endswith(".jsonl"):
                x, y = a.decode().splitlines(), b.decode().splitlines()
                if len(x) != len(y):
                    return f"{len(y)} lines, the reference has {len(x)}"
                for i, (p, q) in enumerate(zip(x, y)):
                    found = _first_difference(_drop(json.loads(p), keys), _drop(json.loads(q), keys))
                    if found:
                        return f"line {i + 1}: {found}"
                return None
            return _first_difference(_drop(json.loads(a), keys), _drop(json.loads(b), keys))
        if name in VOLATILE_TEXT:
            pattern = VOLATILE_TEXT[name]
            return None if pattern.sub("", a.decode()) == pattern.sub("", b.decode()) else "text differs"
        if name.endswith(".parquet"):
            # Bytes may differ in metadata alone; the decoded tables decide.
            return None if pq.read_table(ref).equals(pq.read_table(got)) else "Parquet tables differ"
        if name.endswith(".safetensors"):
            from safetensors.numpy import load_file

            x, y = load_file(str(ref)), load_file(str(got))
            unequal = sorted(k for k in set(x) | set(y) if k not in x or k not in y or not (x[k] == y[k]).all())
            return f"tensors differ: {', '.join(unequal[:5])}" if unequal else None
        if name.endswith(".json"):
            return _first_difference(json.loads(a), json.loads(b)) or "bytes differ (same JSON value)"
    except Exception as e:  # noqa: BLE001 - whatever a file cut short fails with (JSON, Arrow, safetensors)
        return f"unreadable ({type(e).__name__}: {str(e)[:120]})"
    return f"bytes differ ({len(b):,} bytes, the reference {len(a):,})"


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def compare_trees(ref: Path, got: Path) -> list[str]:
    """Every difference of the folder ``got`` from ``ref``, hidden files included (a leftover
    temporary file is an extra file); empty: identical."""
    expected, found = _files(ref), _files(got)
    diffs = [f"missing {p}" for p in sorted(expected - found)] + [f"extra file {p}" for p in sorted(found - expected)]
    for p in sorted(expected & found):
        d = compare_file(ref / p, got / p)
        if d:
            diffs.append(f"{p}: {d}")
    return diffs


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, size, mtime) of everything under ``folder``: whether a killed run changed anything."""
    out = {}
    for p in folder.rglob("*"):
        try:
            s = p.lstat()
        except FileNotFoundError:
            continue
        out[str(p.relative_to(folder))] = (s.st_ino, s.st_size, s.st_mtime_ns)
    return out


def beside(out: Path) -> list[str]:
    """What lies in the output's folder besides the output (it holds nothing else)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name) if out.parent.exists() else []


def _manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest, read without the package (which would recover what a killed run left);
    None if absent. Raises ValueError if it does not parse."""
    path = folder / "netflowgen.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text())
    if not isinstance(value, dict):
        raise ValueError(f"{path}: not a JSON object")
    return value


def state_after_kill(command: str, out: Path, ref: Path) -> tuple[str, str]:
    """What a killed run left at ``out``: ("absent" | "complete" | "resumable" | "in progress" |
    "partial", detail). Only "partial" is a failure: a visible artifact that is neither complete
    nor declared incomplete."""
    if not out.exists() and not out.is_symlink():
        return "absent", ""
    diffs = compare_trees(ref, out)
    if not diffs:
        return "complete", ""
    if command == "pretrain":
        try:
            manifest = _manifest(out)
        except ValueError as e:
            return "partial", f"run directory with a damaged manifest ({e})"
        if manifest is None:
            return "partial", f"run directory without a manifest: {sorted(p.name for p in out.iterdir())}"
        if manifest.get("status") == "running":
            return "resumable", ""
        return "partial", f"status {manifest.get('status')!r} but differs: {'; '.join(diffs[:3])}"
    if command == "benchmark":
        # The suite's folder fills as it goes: every file visible in it must be complete (equal to
        # the reference's), but those of a pre-training run whose manifest says it is running;
        # hidden temporary files are the rerun's to remove.
        running: list[Path] = []
        for m in out.rglob("netflowgen.json"):
            if _hidden(m.relative_to(out)):
                continue
            try:
                manifest = _manifest(m.parent)
            except ValueError as e:
                return "partial", f"{m.relative_to(out)}: damaged ({e})"
            if manifest and manifest.get("kind") == "netflowgen.run" and manifest.get("status") == "running":
                running.append(m.parent)
        bad = []
        for rel in sorted(_files(out)):
            if _hidden(rel) or any((out / rel).is_relative_to(r) for r in running):
                continue
            d = compare_file(ref / rel, out / rel) if (ref / rel).is_file() else "not in the reference"
            if d:
                bad.append(f"{rel}: {d}")
        return ("partial", "; ".join(bad[:3])) if bad else ("in progress", "")
    return "partial", "; ".join(diffs[:3])


# --- the inputs --------------------------------------------------------------------------------


class Inputs:
    """The commands' inputs in WORK/inputs-SCALE, each built once when first needed (and kept
    there for a later run with the same --work). Seeds are fixed: the same inputs every run."""

    def __init__(self, work: Path, scale: float, say: Callable[[str], None]) -> None:
        self.root = work / f"inputs-{scale:g}"
        self.logs = work / "logs" / "inputs"
        self.scale = scale
        self.say = say
        self.root.mkdir(parents=True, exist_ok=True)

    def _make(self, name: str, argv: Callable[[Path], list[str]]) -> Path:
        path = self.root / name
        if (path / "netflowgen.json").is_file():
            return path
        command = argv(path)  # builds the inputs it reads first
        self.say(f"building input {name}")
        done = run(command, self.logs / f"{name}.err")
        if done.returncode != 0:
            raise ChaosError(f"building input {name} failed ({done.returncode}): {done.stderr}")
        return path

    def zeek(self) -> Path:
        """A Zeek conn.log of synthetic flows over three days (400,000 rows at scale 1)."""
        path = self.root / "conn.log"
        if not path.is_file():
            self.say("building input conn.log")
            tmp = path.with_name(".conn.log.tmp")
            write_text(TEXT_FORMATS["zeek"], tmp, max(1000, int(400_000 * self.scale)), 7, lambda k: None)
            tmp.rename(path)
        return path

    def sim(self) -> Path:
        """A simulated network over three days (120 nodes at scale 1, about 870,000 flows)."""
        nodes = str(max(10, int(120 * self.scale)))
        return self._make("sim", lambda p: ["simulate", "--out", str(p), "--nodes", nodes, "--days", "3", "--seed", "3", "-q"])

    def series(self) -> Path:
        return self._make("series", lambda p: ["series", str(self.sim()), "--out", str(p), "--attack", "DDoS"])

    def small_sim(self) -> Path:
        """16 nodes over a day with 8 DDoS attacks: labelled episodes for fine-tuning and the suite."""
        return self._make("small-sim", lambda p: ["simulate", "--out", str(p), "--nodes", "16", "--days", "1",
                                                  "--attacks", "8", "--scans", "2", "--seed", "7", "-q"])

    def small_series(self) -> Path:
        return self._make("small-series", lambda p: ["series", str(self.small_sim()), "--out", str(p), "--attack", "DDoS"])

    def small_tokens(self) -> Path:
        return self._make("small-tokens", lambda p: ["tokenize", str(self.small_series()), "--out", str(p)])

    def pretrained(self) -> Path:
        return self._make("pretrained", lambda p: ["pretrain", str(self.small_tokens()), "--out", str(p), *PRETRAIN])

    def suite(self) -> Path:
        self.small_sim()
        path = self.root / "suite.toml"
        path.write_text(SUITE)
        return path

    def export(self) -> Path:
        """What the collector is sent: a simulated network as one record per direction (about
        18,000 flows at scale 1, so that each flow is one IPFIX record)."""
        nodes = str(max(2, int(10 * self.scale)))
        return self._make("export", lambda p: ["simulate", "--out", str(p), "--nodes", nodes, "--days", "0.5",
                                               "--attacks", "0", "--scans", "0", "--unidirectional", "--seed", "5", "-q"])

    def export_more(self) -> Path:
        """A few hundred more flows, sent to the restarted collector."""
        return self._make("export-more", lambda p: ["simulate", "--out", str(p), "--nodes", "2", "--days", "0.25",
                                                    "--attacks", "0", "--scans", "0", "--unidirectional", "--seed", "11", "-q"])


def command_argv(command: str, inputs: Inputs, out: Path) -> list[str]:
    """The command as the chaos runs it (without --overwrite/--resume)."""
    o = str(out)
    if command == "ingest":
        return ["ingest", str(inputs.zeek()), "--out", o, "-q"]
    if command == "series":
        # Three partitions: the node view goes to a temporary folder beside the output.
        return ["series", str(inputs.sim()), "--out", o, "--attack", "DDoS", "--partitions", "3"]
    if command == "tokenize":
        return ["tokenize", str(inputs.series()), "--out", o]
    if command == "pretrain":
        return ["pretrain", str(inputs.small_tokens()), "--out", o, *PRETRAIN]
    if command == "finetune":
        return ["finetune", str(inputs.pretrained()), "--series", str(inputs.small_series()), "--out", o, *FINETUNE]
    if command == "benchmark":
        return ["benchmark", str(inputs.suite()), "--out", o]
    raise ValueError(command)


# --- the kills ---------------------------------------------------------------------------------


@dataclass
class Failure:
    command: str
    kill: int
    """1-based attempt number (0: the reference runs)."""
    scenario: str
    check: str
    detail: str
    delay_s: float | None = None
    fraction: float | None = None
    reproduce: str = ""


@dataclass
class Figures:
    command: str
    argv: list[str]
    reference_seconds: list[float] = field(default_factory=list)
    kills: int = 0
    """Runs that were still going at their kill moment."""
    attempts: int = 0
    ended_before_kill: int = 0
    phases: dict[str, int] = field(default_factory=lambda: {"before output": 0, "during": 0, "after output": 0})
    """When the kill landed: nothing changed yet at the output path; the output being written
    (temporary copies, a running run, a growing folder); the complete output already in place."""
    states: dict[str, int] = field(default_factory=dict)
    """What was visible at the output path after the kill (absent, complete, resumable, ...)."""
    left_beside: int = 0
    """Kills after which hidden temporary copies lay beside the output (for the rerun to remove)."""
    reruns: int = 0
    reruns_identical: int = 0
    resumed: int = 0
    partial_artifacts: int = 0
    acknowledged: int = 0
    """collect: flows acknowledged as written before the kills, summed."""
    found: int = 0
    """collect: flows in the visible part files after the kills, summed."""
    lost: int = 0
    """collect: acknowledged flows missing after a kill, summed."""
    failures: list[Failure] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class Chaos:
    def __init__(self, work: Path, inputs: Inputs, kills: int, seed: int, scale: float, rate: float,
                 progress: Progress) -> None:
        self.work, self.inputs, self.kills, self.seed, self.scale, self.rate = work, inputs, kills, seed, scale, rate
        self.progress = progress

    def reproduce(self, command: str, attempt: int) -> str:
        return (f".venv/bin/python benchmarks/chaos.py --commands {command} --kills {attempt} --seed {self.seed} "
                f"--scale {self.scale:g} --work DIR  (kill #{attempt} of that run)")

    def keep_state(self, command: str, attempt: int, folder: Path) -> None:
        """Copy a failing state aside for a look (the next attempt starts afresh)."""
        dest = self.work / "failures" / f"{command}-{attempt}"
        shutil.rmtree(dest, ignore_errors=True)
        if folder.exists():
            shutil.copytree(folder, dest, symlinks=True)

    def fail(self, f: Figures, attempt: int, scenario: str, check: str, detail: str, delay: float | None = None,
             fraction: float | None = None, folder: Path | None = None) -> None:
        argv = " ".join(["netflowgen", *f.argv])
        f.failures.append(Failure(f.command, attempt, scenario, check, f"{detail} [command: {argv}]", delay, fraction,
                                  self.reproduce(f.command, attempt) if attempt else ""))
        if folder is not None:
            self.keep_state(f.command, attempt, folder)

    # -- the artifact commands ------------------------------------------------------------------

    def artifact(self, command: str) -> Figures:
        began = time.perf_counter()
        base = self.work / "chaos" / command
        out, ref, logs = base / "out", self.work / "ref" / command, self.work / "logs" / command
        task = self.progress.add_task(f"{command}: inputs", total=self.kills)
        argv = command_argv(command, self.inputs, out)
        f = Figures(command, argv)
        rng = random.Random(f"{self.seed}:{command}")

        def reset() -> None:
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir(parents=True)

        overwrite = command != "benchmark"  # benchmark has no --overwrite: it writes into its folder
        over = argv + (["--overwrite"] if overwrite else [])
        # Two uninterrupted runs at the output path itself (so that paths recorded in the
        # artifact are the same in every run): the reference into an absent output, then one over
        # it, which must give the same. Each one's wall time is the window of kills of its
        # scenario (benchmark reuses the data and pre-training of a complete folder: far shorter).
        reset()
        window: dict[str, float] = {}
        for scenario, command_line in (("fresh", argv), ("overwrite", over)):
            self.progress.update(task, description=f"{command}: reference run ({scenario})")
            done = run(command_line, logs / f"reference-{scenario}.err")
            if done.returncode != 0:
                raise ChaosError(f"{command}: the {scenario} reference run failed ({done.returncode}): {done.stderr}")
            f.reference_seconds.append(round(done.seconds, 2))
            window[scenario] = done.seconds
            if scenario == "fresh":
                shutil.rmtree(ref, ignore_errors=True)
                shutil.copytree(out, ref, symlinks=True)
            else:
                diffs = compare_trees(ref, out)
                if diffs:
                    self.fail(f, 0, "reference", "deterministic", "two uninterrupted runs differ: " + "; ".join(diffs[:5]))

        while f.kills < self.kills and f.attempts < 2 * self.kills:
            f.attempts += 1
            k = f.attempts
            scenario = "fresh" if k % 2 else "overwrite"
            self.progress.update(task, description=f"{command}: kill {f.kills + 1} ({scenario})")
            reset()
            if scenario == "overwrite":
                shutil.copytree(ref, out, symlinks=True)
            fraction = rng.random()
            delay = fraction * window[scenario]
            before = snapshot(base)
            ended = run_killed(over if scenario == "overwrite" else argv, logs / f"{k}-killed.err", delay)
            entry: dict[str, Any] = {"attempt": k, "scenario": scenario, "fraction": round(fraction, 4),
                                     "delay_s": round(delay, 3)}
            f.log.append(entry)
            if ended is not None:
                f.ended_before_kill += 1
                entry["ended"] = ended.returncode
                if ended.returncode != 0:
                    self.fail(f, k, scenario, "run", f"ended on its own with {ended.returncode}: {ended.stderr}", delay, fraction)
                # The reference ran slower than the command runs now (the machine was busier):
                # later kill moments are drawn within the time a run takes now.
                window[scenario] = min(window[scenario], ended.seconds)
                continue
            f.kills += 1
            self.progress.advance(task)
            state, detail = state_after_kill(command, out, ref)
            left = [n for n in beside(out) if n.startswith(".")]
            changed = snapshot(base) != before
            phase = ("before output" if not changed else
                     "after output" if state == "complete" and not left else "during")
            f.phases[phase] += 1
            f.states[state] = f.states.get(state, 0) + 1
            f.left_beside += bool(left)
            entry.update(phase=phase, state=state, left_beside=left)
            if state == "partial":
                f.partial_artifacts += 1
                self.fail(f, k, scenario, "no partial artifact", detail, delay, fraction, base)
            # The rerun a user would make.
            if state == "resumable":
                done = run(argv + ["--resume"], logs / f"{k}-resume.err")
                entry["rerun"] = "--resume"
                if done.returncode == 0:
                    f.resumed += 1
                elif "no checkpoint to resume from" in done.stderr:
                    # Killed before its first checkpoint: nothing to resume, a new run it is.
                    done = run(over, logs / f"{k}-rerun.err")
                    entry["rerun"] = "no checkpoint yet: --overwrite"
            else:
                done = run(over, logs / f"{k}-rerun.err")
                entry["rerun"] = "--overwrite" if overwrite else "as it is"
            f.reruns += 1
            if done.returncode != 0:
                entry["identical"] = False
                self.fail(f, k, scenario, "rerun succeeds", f"the rerun failed ({done.returncode}): {done.stderr}",
                          delay, fraction, base)
                continue
            diffs = compare_trees(ref, out)
            left = beside(out)
            entry["identical"] = not diffs
            if diffs:
                self.fail(f, k, scenario, "rerun identical", "; ".join(diffs[:5]), delay, fraction, base)
            else:
                f.reruns_identical += 1
            if left:
                self.fail(f, k, scenario, "nothing left beside the output", f"after the rerun: {left}", delay, fraction, base)
        if f.kills < self.kills:
            self.fail(f, 0, "-", "enough kills", f"only {f.kills} of {f.attempts} runs were still going at their kill moment")
        self.progress.update(task, description=f"{command}: done", completed=self.kills)
        f.seconds = round(time.perf_counter() - began, 1)
        return f

    # -- collect --------------------------------------------------------------------------------

    def collect(self) -> Figures:
        began = time.perf_counter()
        base = self.work / "chaos" / "collect"
        out, ref, logs = base / "out", self.work / "ref" / "collect", self.work / "logs" / "collect"
        task = self.progress.add_task("collect: inputs", total=self.kills)
        export, more = self.inputs.export(), self.inputs.export_more()
        argv = ["collect", "--out", str(out), "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--rotate", "1s", "--json"]
        f = Figures("collect", argv)
        rng = random.Random(f"{self.seed}:collect")
        sent = _flow_keys(_read_flows(export))
        sent_more = _flow_keys(_read_flows(more))

        def reset() -> None:
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir(parents=True)

        self.progress.update(task, description="collect: reference run")
        reset()
        t0 = time.perf_counter()
        proc = start(argv, logs / "reference.err")
        if not self._send(proc, logs / "reference.err", export, logs / "reference-replay.err"):
            raise ChaosError(f"collect: the reference run did not start: {tail(logs / 'reference.err')}")
        stopped = _stop(proc)
        f.reference_seconds.append(round(time.perf_counter() - t0, 2))
        if stopped != 0:
            raise ChaosError(f"collect: the reference run failed ({stopped}): {tail(logs / 'reference.err')}")
        rows = _part_rows(out)[0]
        if rows != _count(sent):
            raise ChaosError(f"collect: the reference run wrote {rows:,} of the {_count(sent):,} flows sent without a "
                             "kill; lower --rate")
        shutil.rmtree(ref, ignore_errors=True)
        shutil.copytree(out, ref)
        window = f.reference_seconds[0]

        while f.kills < self.kills and f.attempts < 2 * self.kills:
            f.attempts += 1
            k = f.attempts
            scenario = "fresh" if k % 2 else "continue"
            self.progress.update(task, description=f"collect: kill {f.kills + 1} ({scenario})")
            reset()
            expected = sent
            if scenario == "continue":
                shutil.copytree(ref, out)
                expected = _add_counts(sent, sent)
            fraction = rng.random()
            delay = fraction * window
            entry: dict[str, Any] = {"attempt": k, "scenario": scenario, "fraction": round(fraction, 4),
                                     "delay_s": round(delay, 3)}
            f.log.append(entry)
            before = snapshot(base)
            err = logs / f"{k}-killed.err"
            proc = start(argv, err)
            acked, exited = self._kill_while_sending(proc, err, export, logs / f"{k}-replay.err", out, delay)
            if exited is not None:
                f.ended_before_kill += 1
                entry["ended"] = exited
                self.fail(f, k, scenario, "run", f"the collector exited ({exited}) before its kill: {tail(err)}", delay, fraction)
                continue
            f.kills += 1
            self.progress.advance(task)
            phase = "during" if snapshot(base) != before else "before output"
            f.phases[phase] += 1
            try:
                manifest = _manifest(out) if out.exists() else None
            except ValueError as e:
                manifest = None
                self.fail(f, k, scenario, "no partial artifact", f"damaged manifest: {e}", delay, fraction, base)
            if manifest:
                acked = max(acked, int(manifest.get("summary", {}).get("rows_written", 0)))
            found, unreadable, flows = _part_rows(out)
            state = "absent" if not out.exists() else "dataset" if manifest else "no manifest"
            if state == "no manifest":
                # A folder the collector made but never described: not a dataset.
                f.partial_artifacts += 1
                self.fail(f, k, scenario, "no partial artifact", f"a folder without a manifest: "
                          f"{sorted(str(p.relative_to(out)) for p in out.rglob('*'))}", delay, fraction, base)
            f.states[state] = f.states.get(state, 0) + 1
            f.acknowledged += acked
            f.found += found
            f.lost += max(0, acked - found)
            entry.update(phase=phase, state=state, acknowledged=acked, found=found)
            if unreadable:
                f.partial_artifacts += 1
                self.fail(f, k, scenario, "no partial artifact", f"unreadable part files: {unreadable}", delay, fraction, base)
            if found < acked:
                self.fail(f, k, scenario, "no acknowledged flow lost",
                          f"{acked:,} flows acknowledged as written, {found:,} in the part files", delay, fraction, base)
            extra = _not_sent(flows, expected)
            if extra:
                self.fail(f, k, scenario, "only flows sent", f"{extra:,} flows in the files were not sent (or sent fewer times)",
                          delay, fraction, base)
            # The restart a user would make: the same command on the same folder, more flows sent,
            # stopped as a service is (SIGTERM).
            f.reruns += 1
            err = logs / f"{k}-restart.err"
            proc = start(argv, err)
            if not self._send(proc, err, more, logs / f"{k}-restart-replay.err"):
                kill_group(proc)
                entry["restart"] = "refused"
                self.fail(f, k, scenario, "restart continues the folder", f"the restarted collector did not start: {tail(err)}",
                          delay, fraction, base)
                continue
            stopped = _stop(proc)
            total, unreadable, flows = _part_rows(out)
            try:
                counted = int((_manifest(out) or {}).get("summary", {}).get("rows_written", -1))
            except ValueError:
                counted = -1
            hidden = sorted(str(p.relative_to(out)) for p in out.rglob(".*")) + beside(out)
            problems = []
            if stopped != 0:
                problems.append(f"the restarted collector exited with {stopped}: {tail(err)}")
            if unreadable:
                problems.append(f"unreadable part files: {unreadable}")
            if total != found + _count(sent_more) or counted != total:
                problems.append(f"{total:,} flows in the files, the manifest counts {counted:,}; expected "
                                f"{found:,} + {_count(sent_more):,} sent to the restarted collector")
            if _not_sent(flows, _add_counts(expected, sent_more)):
                problems.append("flows in the files that were not sent")
            if hidden:
                problems.append(f"left after the restart: {hidden}")
            entry["restart"] = "ok" if not problems else "; ".join(problems)
            if problems:
                self.fail(f, k, scenario, "restart continues the folder", "; ".join(problems), delay, fraction, base)
            else:
                f.reruns_identical += 1
        if f.kills < self.kills:
            self.fail(f, 0, "-", "enough kills", f"only {f.kills} of {f.attempts} collectors were still going at their kill moment")
        self.progress.update(task, description="collect: done", completed=self.kills)
        f.seconds = round(time.perf_counter() - began, 1)
        return f

    def _replay(self, flows: Path, port: int) -> list[str]:
        """``netflowgen replay`` of ``flows`` to the collector, as fast as ``--rate`` lets it."""
        return ["replay", str(flows), "--to", f"127.0.0.1:{port}", "--speed", "max", "--max-rate", f"{self.rate:g}", "-q"]

    def _send(self, proc: subprocess.Popen[bytes], err: Path, flows: Path, replay_log: Path) -> bool:
        """Wait for the collector to listen, then replay ``flows`` to it at ``--rate`` (False if
        the collector ended instead of listening)."""
        ports = _wait_listening(proc, err, timeout=120)
        if ports is None:
            return False
        done = run(self._replay(flows, ports[0]), replay_log)
        if done.returncode != 0:
            raise ChaosError(f"netflowgen replay failed ({done.returncode}): {done.stderr}")
        return True

    def _kill_while_sending(self, proc: subprocess.Popen[bytes], err: Path, flows: Path, replay_log: Path, out: Path,
                            delay: float) -> tuple[int, int | None]:
        """Send ``flows`` once the collector listens, and SIGKILL it ``delay`` seconds after its
        start. Returns the most flows it acknowledged as written before (polled from /metrics and
        its manifest), and its exit status if it ended before the kill (else None)."""
        began = time.perf_counter()
        acked = 0
        sender: subprocess.Popen[bytes] | None = None
        try:
            while (left := delay - (time.perf_counter() - began)) > 0:
                if proc.poll() is not None:
                    return acked, proc.returncode
                if sender is None:
                    ports = _listening(err)
                    if ports:
                        sender = start(self._replay(flows, ports[0]), replay_log)
                else:
                    acked = max(acked, _acknowledged(out, _listening(err), timeout=min(0.2, left)))
                time.sleep(min(0.1, max(delay - (time.perf_counter() - began), 0)))
            kill_group(proc)
        finally:
            if sender is not None:
                kill_group(sender)
        return acked, None


def _listening(err: Path) -> tuple[int, int | None] | None:
    """(UDP port, metrics port) from the collector's "listening on ..." line, once printed."""
    text = err.read_text(errors="replace") if err.is_file() else ""
    udp = re.search(r"listening on udp://[\d.]+:(\d+)", text)
    if not udp:
        return None
    metrics = re.search(r"metrics on http://[\d.]+:(\d+)", text)
    return int(udp[1]), int(metrics[1]) if metrics else None


def _wait_listening(proc: subprocess.Popen[bytes], err: Path, timeout: float) -> tuple[int, int | None] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        ports = _listening(err)
        if ports:
            return ports
        time.sleep(0.05)
    return None


def _acknowledged(out: Path, ports: tuple[int, int | None] | None, timeout: float) -> int:
    """Flows the running collector says are written: its /metrics and its manifest (each read
    may fail while it starts or is killed: 0 then). The kill waits for this: a short timeout."""
    seen = 0
    if ports and ports[1] and timeout > 0:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/metrics", timeout=timeout) as r:
                found = re.search(r"^netflowgen_collect_rows_written_total (\d+)", r.read().decode(), re.M)
                seen = int(found[1]) if found else 0
        except OSError:
            pass
    try:
        seen = max(seen, int((_manifest(out) or {}).get("summary", {}).get("rows_written", 0)))
    except (OSError, ValueError):
        pass
    return seen


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """Stop the collector as a service manager does (SIGTERM) and wait for it."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(120)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return -9


def _read_flows(dataset: Path) -> pl.DataFrame:
    from netflowgen.dataset.manifest import scan_flows

    return scan_flows(dataset).collect()


def _flow_keys(flows: pl.DataFrame) -> pl.DataFrame:
    """Each distinct flow (as exported: times to the millisecond) with how many times it occurs."""
    return (flows.select(pl.col("ts_start", "ts_end").dt.truncate("1ms"), *FLOW_KEY[2:])
            .group_by(FLOW_KEY).len("times"))


def _count(keys: pl.DataFrame) -> int:
    return int(keys["times"].sum())


def _add_counts(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([a, b]).group_by(FLOW_KEY).agg(pl.col("times").sum())


def _not_sent(found: pl.DataFrame, sent: pl.DataFrame) -> int:
    """Flows in ``found`` that were not sent, or found more times than they were sent."""
    if found.is_empty():
        return 0
    joined = _flow_keys(found).join(sent, on=FLOW_KEY, how="left", suffix="_sent", nulls_equal=True)
    extra = pl.col("times").cast(pl.Int64) - pl.col("times_sent").fill_null(0).cast(pl.Int64)  # counts are unsigned
    return int(joined.select(extra.clip(0).sum()).item())


def _part_rows(out: Path) -> tuple[int, list[str], pl.DataFrame]:
    """Flows in the visible part files, the files that cannot be read, and the flows."""
    frames, unreadable = [], []
    for part in part_files(out) if out.exists() else []:
        try:
            frames.append(pl.from_arrow(pq.read_table(part)))
        except (OSError, ValueError) as e:
            unreadable.append(f"{part.relative_to(out)} ({type(e).__name__})")
    flows = pl.concat(frames) if frames else pl.DataFrame()
    assert isinstance(flows, pl.DataFrame)
    return flows.height, unreadable, flows


# --- report ------------------------------------------------------------------------------------


def print_report(result: dict[str, Any], console: Console) -> None:
    t = Table(title=f"kill -9 anywhere: SIGKILL at a uniform moment of each command's run (seed {result['settings']['seed']})",
              title_justify="left",
              caption="phase: when the kill landed; rerun ok: identical to an uninterrupted run (collect: the restart "
                      "continued the folder, every flow counted)", caption_justify="left")
    for col in ("command", "run s fresh / over", "kills", "ended first", "before output", "during", "after output",
                "states after kill", "temp beside", "reruns ok", "resumed", "partial", "failures"):
        t.add_column(col, justify="left" if col in ("command", "states after kill") else "right")
    for name, c in result["commands"].items():
        ok = c["reruns_identical"] == c["reruns"]
        t.add_row(name, " / ".join(f"{s:.1f}" for s in c["reference_seconds"]), f"{c['kills']}", f"{c['ended_before_kill']}",
                  f"{c['phases']['before output']}", f"{c['phases']['during']}", f"{c['phases']['after output']}",
                  ", ".join(f"{k} {v}" for k, v in sorted(c["states"].items())), f"{c['left_beside']}",
                  f"[{'green' if ok else 'red'}]{c['reruns_identical']}/{c['reruns']}[/]",
                  f"{c['resumed']}" if name == "pretrain" else "",
                  f"[{'red' if c['partial_artifacts'] else 'green'}]{c['partial_artifacts']}[/]",
                  f"[{'red' if c['failures'] else 'green'}]{len(c['failures'])}[/]")
    console.print(t)
    if "collect" in result["commands"]:
        c = result["commands"]["collect"]
        console.print(f"collect: {c['acknowledged']:,} flows acknowledged as written before the kills, {c['found']:,} "
                      f"found in the part files after them, [{'red' if c['lost'] else 'green'}]{c['lost']:,} lost[/]")
    for fl in result["failures"]:
        when = f", SIGKILL after {fl['delay_s']:.3f} s ({fl['fraction']:.3f} of the run)" if fl["delay_s"] is not None else ""
        console.print(f"[red]FAILED[/] {fl['command']} #{fl['kill']} ({fl['scenario']}{when}) {fl['check']}: {fl['detail']}",
                      highlight=False)
        if fl["reproduce"]:
            console.print(f"  reproduce: {fl['reproduce']}", highlight=False)
    console.print(f"total time {result['seconds']:.0f} s; load {result['machine']['load_1min']} on "
                  f"{result['machine']['cpus']} CPUs" + (f"; work folder {result['work']}" if result.get("work") else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commands", default=",".join(COMMANDS), help=f"comma-separated, from: {', '.join(COMMANDS)} (default: all)")
    p.add_argument("--kills", type=int, default=20, help="kills per command (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="size of the ingest, series, tokenize and collect inputs (default 1: runs of a few seconds)")
    p.add_argument("--rate", type=float, default=3000.0, help="flows/s sent to the collector (default 3000)")
    p.add_argument("--work", type=Path, help="work folder, kept (default: a temporary one, removed unless something failed)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    args = p.parse_args(argv)
    chosen = [c.strip() for c in args.commands.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(COMMANDS))
    if unknown:
        p.error(f"unknown --commands {', '.join(unknown)}; choose from {', '.join(COMMANDS)}")
    if args.kills < 1 or args.scale <= 0 or args.rate <= 0:
        p.error("--kills, --scale and --rate must be positive")
    work = args.work or Path(tempfile.mkdtemp(prefix="netflowgen-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "settings": {"commands": chosen, "kills": args.kills, "seed": args.seed, "scale": args.scale, "rate": args.rate,
                     "volatile_keys": VOLATILE_KEYS, "volatile_text": {k: v.pattern for k, v in VOLATILE_TEXT.items()}},
        "commands": {},
        "failures": [],
    }
    progress = Progress(SpinnerColumn(), TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=Console(stderr=True))
    error: str | None = None
    with progress:
        inputs = Inputs(work, args.scale, lambda msg: progress.console.print(msg, highlight=False))
        chaos = Chaos(work, inputs, args.kills, args.seed, args.scale, args.rate, progress)
        for name in chosen:
            try:
                figures = chaos.collect() if name == "collect" else chaos.artifact(name)
            except ChaosError as e:
                error = f"{name}: {e}"
                break
            result["commands"][name] = asdict(figures)
            result["failures"] += [asdict(fl) for fl in figures.failures]
    result["machine"] = machine()
    result["seconds"] = round(time.perf_counter() - started, 1)
    failed = bool(result["failures"]) or error is not None
    if error:
        result["error"] = error
    if args.work or failed:
        result["work"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        console = Console()
        print_report(result, console if console.is_terminal else Console(width=200))
    if error:
        print(f"error: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
