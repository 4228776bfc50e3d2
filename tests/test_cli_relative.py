"""Every command family run as a user runs it: from a working directory of its own, with relative
inputs and outputs, and its artifacts then used from another directory.

The README's main command once failed for every new user while the tests passed, because the
tests gave absolute temporary paths and the command a relative one. These tests give only
relative paths, and run the next stage from a sibling directory, so that an artifact that
remembers a path relative to where it was made is caught.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from netflowgen.cli import app
from tests.collect.packets import T0 as V5_SECS
from tests.collect.packets import v5, v5_record
from tests.simulate.test_inject import attack_table

runner = CliRunner()


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def cli(cwd: Path, *args: str) -> dict:  # type: ignore[type-arg]
    """Run ``netflowgen ARGS --json`` in ``cwd``; its JSON output (the command must succeed)."""
    for a in args:
        assert not Path(a).is_absolute(), f"{a}: these tests give relative paths only"
    with _cwd(cwd):
        result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, f"netflowgen {' '.join(args)} (in {cwd}):\n{result.output}"
    return json.loads(result.stdout)


def cli_error(cwd: Path, *args: str) -> str:
    """Run ``netflowgen ARGS`` in ``cwd``, which must fail with exit 1; its message."""
    with _cwd(cwd):
        result = runner.invoke(app, list(args))
    assert result.exit_code == 1, f"netflowgen {' '.join(args)} should have failed:\n{result.output}"
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder, and a sibling one (``other/``) to use the artifacts from."""
    root = tmp_path_factory.mktemp("relative")
    (root / "other").mkdir()
    return root


@pytest.fixture(scope="module")
def simulated(work: Path) -> dict:  # type: ignore[type-arg]
    return cli(work, "simulate", "--out", "data/sim", "--nodes", "6", "--days", "0.25", "--attacks", "2", "--scans", "0")


@pytest.fixture(scope="module")
def dataset(work: Path, simulated: dict) -> dict:  # type: ignore[type-arg]
    return cli(work, "ingest", "data/sim", "--out", "ds")


@pytest.fixture(scope="module")
def series(work: Path, dataset: dict) -> dict:  # type: ignore[type-arg]
    return cli(work, "series", "ds", "--out", "ser", "--step", "60s", "--attack", "DDoS")


@pytest.fixture(scope="module")
def tokens(work: Path, series: dict) -> dict:  # type: ignore[type-arg]
    return cli(work, "tokenize", "ser", "--out", "tok")


@pytest.fixture(scope="module")
def run(work: Path, tokens: dict) -> dict:  # type: ignore[type-arg]
    return cli(work, "pretrain", "tok", "--out", "run", "--steps", "3", "--batch-size", "4", "--context", "16",
               "--eval-every", "3", "--warmup", "1")


@pytest.fixture(scope="module")
def detector(work: Path, run: dict, series: dict) -> dict:  # type: ignore[type-arg]
    return cli(work, "finetune", "run", "--series", "ser", "--out", "det", "--budget", "1ep", "--steps", "3",
               "--window", "8", "--history", "4")


def test_simulate(work: Path, simulated: dict) -> None:  # type: ignore[type-arg]
    assert simulated["rows_written"] > 0
    assert (work / "data" / "sim" / "netflowgen.json").is_file()
    assert not (work / "data" / "sim" / "data").exists()


def test_ingest_and_inspect(work: Path, simulated: dict, dataset: dict) -> None:  # type: ignore[type-arg]
    assert dataset["rows_written"] == simulated["rows_written"]
    assert sorted(p.name for p in (work / "ds").iterdir()) == ["date=2026-01-05", "netflowgen.json", "rejects.csv"]
    seen = cli(work / "other", "inspect", "../ds")
    assert seen["flows"] == simulated["rows_written"]


def test_series(work: Path, series: dict) -> None:  # type: ignore[type-arg]
    assert (work / "ser" / "netflowgen.json").is_file()
    table = pl.read_parquet(sorted((work / "ser").glob("part-*.parquet")))
    assert table["attack"].sum() > 0
    # Straight from the flow files too, from the other folder.
    again = cli(work / "other", "series", "../data/sim", "--out", "ser-raw", "--step", "60s", "--attack", "DDoS")
    assert again["rows"] == series["rows"]
    assert (work / "other" / "ser-raw" / "netflowgen.json").is_file()


def test_tokenize(work: Path, tokens: dict) -> None:  # type: ignore[type-arg]
    assert tokens["rows"] > 0 and (work / "tok" / "tokenizer.json").is_file()
    reused = cli(work / "other", "tokenize", "../ser", "--out", "tok2", "--tokenizer", "../tok/tokenizer.json")
    assert reused["rows"] == tokens["rows"]


def test_pretrain_nextstep_and_generate(work: Path, run: dict, series: dict) -> None:  # type: ignore[type-arg]
    assert (work / "run" / "model.safetensors").is_file()
    # The run's own tokens, found from another working directory.
    report = cli(work / "other", "nextstep", "../run")
    assert report["features"]
    node = pl.read_parquet(sorted((work / "ser").glob("part-*.parquet")))["node"][0]
    cli(work / "other", "generate", "../run", "../ser", "--node", node, "--horizon", "2", "--samples", "3",
        "--plot", "forecast.png")
    assert (work / "other" / "forecast.png").stat().st_size > 0


def test_finetune_and_score(work: Path, detector: dict) -> None:  # type: ignore[type-arg]
    assert (work / "det" / "model.safetensors").is_file()
    scored = cli(work / "other", "score", "../det", "../ser", "--out", "scores.parquet")
    assert scored["rows"] == pl.read_parquet(work / "other" / "scores.parquet").height > 0
    from_flows = cli(work / "other", "score", "../det", "../ds")  # flows: built with the detector's settings
    assert from_flows["rows"] == scored["rows"]
    zero_label = cli(work / "other", "score", "../run", "../ser", "--out", "surprise.csv")
    assert zero_label["rows"] == scored["rows"] and (work / "other" / "surprise.csv").is_file()


def test_the_series_contract_travels_from_the_series_to_every_artifact(work: Path, detector: dict) -> None:  # type: ignore[type-arg]
    from netflowgen.series import SeriesSpec

    made = SeriesSpec.from_dict(json.loads((work / "ser" / "netflowgen.json").read_text())["config"])
    # Held once, by the tokenizer: in the tokens, the run and the detector, nowhere else.
    for artifact in ("tok", "run", "det"):
        held = json.loads((work / artifact / "tokenizer.json").read_text())["series"]
        assert SeriesSpec.from_dict(held) == made, artifact
        assert "step_seconds" not in json.loads((work / artifact / "netflowgen.json").read_text()), artifact
    assert "step_seconds" not in json.loads((work / "run" / "train_config.json").read_text())["data"]
    # A series of another step width is refused by every entry point, naming both widths.
    cli(work, "series", "ds", "--out", "ser5", "--step", "5m", "--attack", "DDoS")
    wrong = "ser5 has 300 s steps but the run run works on 60 s steps; build the series with --step 60s"
    assert wrong in cli_error(work, "finetune", "run", "--series", "ser5", "--out", "det5", "--budget", "1ep")
    assert not (work / "det5").exists()
    assert "ser5 has 300 s steps but the model works on 60 s steps" in cli_error(work, "score", "run", "ser5")
    assert "ser5 has 300 s steps but the model works on 60 s steps" in cli_error(work, "score", "det", "ser5")
    assert "ser5 has 300 s steps but run works on 60 s steps" in cli_error(work, "nextstep", "run", "ser5")
    # The run knows how its series were built, so it turns flows into series itself: zero-label
    # scores straight from flows, the same steps as from the series.
    from_flows = cli(work / "other", "score", "../run", "../ds")
    from_series = cli(work / "other", "score", "../run", "../ser")
    assert from_flows["rows"] == from_series["rows"] > 0


def test_finetune_defaults_are_the_config_defaults_and_scratch_is_its_own_recipe(work: Path, detector: dict) -> None:  # type: ignore[type-arg]
    from dataclasses import fields

    from netflowgen.detect.finetune import FinetuneConfig

    made = json.loads((work / "det" / "netflowgen.json").read_text())["config"]
    defaults = {f.name: f.default for f in fields(FinetuneConfig) if f.name in ("mode", "head_inputs", "head_init", "anchor")}
    assert {k: made[k] for k in defaults} == defaults == {"mode": "probe", "head_inputs": "surprise", "head_init": "zero",
                                                          "anchor": 1.0}
    cli(work, "finetune", "run", "--series", "ser", "--out", "det-scratch", "--budget", "1ep", "--steps", "2",
        "--window", "8", "--history", "4", "--scratch")
    scratch = json.loads((work / "det-scratch" / "netflowgen.json").read_text())["config"]
    assert (scratch["init"], scratch["mode"], scratch["head_inputs"], scratch["anchor"]) == ("scratch", "full", "hidden", 0.0)
    message = cli_error(work, "finetune", "run", "--series", "ser", "--out", "det-x", "--scratch", "--head", "surprise")
    assert "--scratch trains the whole model on its hidden state: drop --head" in message
    assert not (work / "det-x").exists()


def test_inject(work: Path, dataset: dict) -> None:  # type: ignore[type-arg]
    attack_table(minutes=1, per_minute=40).write_parquet(work / "attack.parquet")
    summary = cli(work / "other", "inject", "--background", "../ds", "--attack", "../attack.parquet", "--victims", "1",
                  "--times", "1", "--out", "inj")
    assert summary["injected_rows"] > 0
    assert (work / "other" / "inj" / "injections.csv").is_file()


def test_benchmark_with_a_suite_whose_inputs_are_relative(work: Path, simulated: dict,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    # CI points NETFLOWGEN_SHARED_DATA at the real captures; this suite names its own data.
    monkeypatch.delenv("NETFLOWGEN_SHARED_DATA", raising=False)
    (work / "suites").mkdir(exist_ok=True)
    (work / "suites" / "mini.toml").write_text("""
name = "mini"
data = "../data"            # relative to this file
seeds = [0]
budgets = ["1ep"]
methods = ["flowgpt", "volume"]
synthetic = true
corpus_report = true

[pretrain]
size = "tiny"
steps = 2
batch_size = 4
context = 16

[finetune]
steps = 2
window = 8
history = 4

[datasets.sim]
inputs = ["sim"]

[[tasks]]
name = "ddos"
kind = "labeled"
dataset = "sim"
attack = ["DDoS"]
fit_fraction = 0.9
""")
    for cwd, suite in ((work, "suites/mini.toml"), (work / "other", "../suites/mini.toml")):
        summary = cli(cwd, "benchmark", suite, "--out", "bench")
        results = json.loads((cwd / "bench" / "results.json").read_text())
        assert results["tasks"]["ddos"]["test_positive"] > 0
        task = results["tasks"]["ddos"]
        assert {r["method"] for r in task["runs"]} == {"flowgpt", "volume"}
        assert (cwd / summary["report"]).is_file()
        compared = task["comparisons"]["budgets"]["1ep"]
        assert compared["reference"] == "volume" and compared["vs_reference"]["flowgpt"]["verdict"] in ("wins", "loses", "tie")
        low, value, high = (compared["pr_auc"]["flowgpt"][k] for k in ("low", "value", "high"))
        assert low <= value <= high
        assert task["best_single_feature"]["causal"] and task["test_episodes"] >= 1 and task["test_victims"] >= 1
        corpus = results["pretrain"]["60s"]["corpus"]["sim"]
        assert corpus["flows"] < simulated["rows_written"]  # flows after the test cut are left out
        assert corpus["active"]["flowgpt"]["targets"] > 0 and "persistence" in corpus["active"]


def test_collect_writes_a_relative_dataset(work: Path) -> None:
    """The real command line in a process of its own: v5 export over loopback into ``col/``."""
    proc = subprocess.Popen([sys.executable, "-m", "netflowgen.cli", "collect", "--out", "col", "--listen", "127.0.0.1:0",
                             "--duration", "4", "--json"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        assert "listening on udp://127.0.0.1:" in line, line
        port = int(line.split("udp://127.0.0.1:")[1].split()[0])
        records = [v5_record("10.0.0.1", "10.0.0.2", 1000 + i, 80, 6, 3, 180, first_ms=1000, last_ms=2000) for i in range(5)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(v5(records, uptime_ms=5000, secs=V5_SECS), ("127.0.0.1", port))
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["rows_written"] == 5
    written = pl.read_parquet(sorted((work / "col").glob("date=*/*.parquet")))
    assert written.height == 5 and (work / "col" / "netflowgen.json").is_file()


def test_a_series_of_another_step_is_refused_naming_both_widths(work: Path, detector: dict, run: dict) -> None:  # type: ignore[type-arg]
    from netflowgen.detect.finetune import load_detector
    from netflowgen.series.write import read_series

    cli(work, "series", "ds", "--out", "ser300", "--step", "300s", "--attack", "DDoS")
    node = pl.read_parquet(sorted((work / "ser300").glob("part-*.parquet")))["node"][0]
    for args in (("score", "det", "ser300"), ("score", "run", "ser300"), ("nextstep", "run", "ser300"),
                 ("generate", "run", "ser300", "--node", node)):
        message = cli_error(work, *args)
        assert "300 s" in message and "60 s" in message, (args, message)
    table, _ = read_series(work / "ser300")
    with pytest.raises(ValueError, match="step is 300 s .* 60 s"):
        load_detector(work / "det").score(table)
