"""benchmarks/chaos.py (kill -9 anywhere): its comparison and state checks can fail, and a short
run of two quick commands reports its counts with no failure."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import polars as pl
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "chaos.py"


@pytest.fixture(scope="module")
def chaos() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))  # it imports its siblings (harness, synthetic) as a script does
    try:
        spec = importlib.util.spec_from_file_location("chaos", SCRIPT)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules["chaos"] = mod  # its dataclasses look their module up
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        yield mod
    finally:
        sys.modules.pop("chaos", None)
        sys.path.remove(str(BENCHMARKS))


def test_compare_trees_reports_what_differs_and_leaves_out_only_wall_times(chaos: ModuleType, tmp_path: Path) -> None:
    ref, got = tmp_path / "ref", tmp_path / "got"
    for root in (ref, got):
        (root / "checkpoint").mkdir(parents=True)
        (root / "model.bin").write_bytes(b"\x00\x01\x02")
        (root / "netflowgen.json").write_text(json.dumps({"kind": "netflowgen.run", "status": "complete"}))
    (ref / "metrics.jsonl").write_text(json.dumps({"step": 10, "loss": 1.5, "steps_per_s": 3.0}) + "\n")
    (got / "metrics.jsonl").write_text(json.dumps({"step": 10, "loss": 1.5, "steps_per_s": 9.0}) + "\n")
    assert chaos.compare_trees(ref, got) == [], "a training rate is a wall-clock figure, left out"

    (got / "model.bin").write_bytes(b"\x00\x01\x03")
    (got / "metrics.jsonl").write_text(json.dumps({"step": 10, "loss": 1.25, "steps_per_s": 3.0}) + "\n")
    (got / "netflowgen.json").write_text(json.dumps({"kind": "netflowgen.run", "status": "running"}))
    (got / "checkpoint" / ".state.json.tmp").write_text("{")
    (ref / "tokenizer.json").write_text("{}")
    diffs = chaos.compare_trees(ref, got)
    assert "missing tokenizer.json" in diffs
    assert "extra file checkpoint/.state.json.tmp" in diffs
    assert any(d.startswith("model.bin: bytes differ") for d in diffs)
    assert "metrics.jsonl: line 1: $.loss: 1.5 != 1.25" in diffs
    assert 'netflowgen.json: $.status: "complete" != "running"' in diffs


def test_state_after_kill_tells_partial_from_declared_incomplete(chaos: ModuleType, tmp_path: Path) -> None:
    ref, out = tmp_path / "ref", tmp_path / "out"
    ref.mkdir()
    (ref / "netflowgen.json").write_text(json.dumps({"kind": "netflowgen.run", "status": "complete"}))
    (ref / "model_config.json").write_text("{}")
    assert chaos.state_after_kill("pretrain", out, ref) == ("absent", "")
    out.mkdir()
    (out / "model_config.json").write_text("{}")
    assert chaos.state_after_kill("pretrain", out, ref)[0] == "partial", "a run directory without its manifest"
    (out / "netflowgen.json").write_text(json.dumps({"kind": "netflowgen.run", "status": "running"}))
    assert chaos.state_after_kill("pretrain", out, ref)[0] == "resumable"
    assert chaos.state_after_kill("ingest", out, ref)[0] == "partial", "an artifact that is not the complete one"
    (out / "netflowgen.json").write_text(json.dumps({"kind": "netflowgen.run", "status": "complete"}))
    assert chaos.state_after_kill("ingest", out, ref) == ("complete", "")


def test_not_sent_counts_flows_found_more_often_than_sent(chaos: ModuleType) -> None:
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    flow = {"ts_start": [t0], "ts_end": [t0 + timedelta(seconds=1)], "src_ip": ["10.0.0.1"], "dst_ip": ["10.0.0.2"],
            "src_port": [1234], "dst_port": [443], "proto": [6], "fwd_packets": [3], "fwd_bytes": [180]}
    once, twice = pl.DataFrame(flow), pl.concat([pl.DataFrame(flow)] * 2)
    other = pl.DataFrame({**flow, "dst_port": [80]})
    assert chaos._not_sent(twice, chaos._flow_keys(once)) == 1, "a flow written twice"
    assert chaos._not_sent(twice, chaos._flow_keys(twice)) == 0
    assert chaos._not_sent(other, chaos._flow_keys(twice)) == 1, "a flow never sent"
    assert chaos._not_sent(once, chaos._flow_keys(twice)) == 0, "fewer than sent: lost, not invented"


@pytest.mark.slow
def test_a_short_chaos_run_reports_its_counts(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--commands", "ingest,tokenize", "--kills", "2", "--scale", "0.1",
                           "--work", str(tmp_path), "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    result = json.loads(done.stdout)
    assert result["failures"] == [] and set(result["commands"]) == {"ingest", "tokenize"}
    for c in result["commands"].values():
        assert c["kills"] == 2 and c["attempts"] >= 2 and c["attempts"] == c["kills"] + c["ended_before_kill"]
        assert sum(c["phases"].values()) == 2 and sum(c["states"].values()) == 2
        assert c["reruns"] == c["reruns_identical"] == 2 and c["partial_artifacts"] == 0
        assert len(c["reference_seconds"]) == 2
    assert result["machine"]["cpus"] >= 1
