"""Suite files: ablation variants, choosing tasks, methods and budgets on the command line, and a
pre-training run that is reused only when the suite's pre-training settings are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from netflowgen.cli import app
from netflowgen.evaluate.suite import load_suite

runner = CliRunner()

SUITE = """
name = "variants"
data = "data"
seeds = [0]
bootstrap = 20
methods = ["volume"]
pretrain = {{ size = "tiny", steps = {steps}, batch_size = 4, context = 16 }}
finetune = {{ steps = 3, window = 8, history = 4 }}
{variants}
[datasets.sim]
inputs = ["sim"]
[[tasks]]
name = "many"
kind = "inject"
backgrounds = ["sim"]
train_attacks = ["syn.parquet"]
test_attacks = ["udp.parquet"]
victims = 4
injections_per_victim = 2
intensities = ["4x"]
min_active_steps = 10
fit_fraction = 0.5
[[tasks]]
name = "other"
kind = "inject"
backgrounds = ["sim"]
train_attacks = ["syn.parquet"]
test_attacks = ["syn.parquet"]
victims = 4
intensities = ["1x"]
min_active_steps = 10
"""

VARIANT = """
[variants.surprise-zero]
base = "flowgpt-surprise"
head_init = "zero"
"""


def _suite(tmp_path: Path, steps: int = 2, variants: str = VARIANT) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(steps=steps, variants=variants))
    return path


def test_variants_are_checked_when_the_suite_is_read(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path))
    assert suite.tuned("surprise-zero") and suite.tuned("scratch") and not suite.tuned("volume")
    for bad, message in (('[variants.x]\nbase = "volume"\n', "needs base"),
                         ('[variants.x]\nbase = "flowgpt"\nhead = "zero"\n', r"unknown settings \['head'\]"),
                         ('[variants.surprise]\nbase = "flowgpt"\n', "name of a built-in method")):
        with pytest.raises(ValueError, match=message):
            load_suite(_suite(tmp_path, variants=bad))
    with pytest.raises(ValueError, match="no task 'nope'"):
        suite.select(tasks=["nope"])
    with pytest.raises(ValueError, match="unknown method 'best'"):
        suite.select(methods=["best"])
    with pytest.raises(ValueError, match="not a label budget"):
        suite.select(budgets=["lots"])
    picked = suite.select(tasks=["many"], methods=["surprise-zero", "scratch"], budgets=["1ep", "all"])
    assert [t.name for t in picked.tasks] == ["many"] and picked.methods == ("surprise-zero", "scratch")
    assert picked.budgets == ("1ep", "all")


def test_a_variant_runs_beside_its_base_and_is_compared_with_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.simulate.test_inject import attack_table

    monkeypatch.delenv("NETFLOWGEN_SHARED_DATA", raising=False)  # CI sets it; this suite names its own data
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "data" / "sim"), "--nodes", "10", "--days", "1",
                                 "--attacks", "0", "--scans", "0", "--json"])
    assert result.exit_code == 0, result.output
    attack_table(minutes=2, per_minute=300).write_parquet(tmp_path / "data" / "syn.parquet")
    attack_table(minutes=1, per_minute=200).with_columns(pl.lit(17, pl.UInt8).alias("proto")).write_parquet(
        tmp_path / "data" / "udp.parquet")
    suite = _suite(tmp_path)
    args = ["benchmark", str(suite), "--out", str(tmp_path / "out"), "--tasks", "many",
            "--methods", "flowgpt-surprise,surprise-zero,scratch,volume,surprise", "--budgets", "1ep", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["tasks"]) == ["many"], "only the chosen task ran"
    task = results["tasks"]["many"]
    assert {r["method"] for r in task["runs"]} == {"flowgpt-surprise", "surprise-zero", "scratch", "volume", "surprise"}
    budget = task["comparisons"]["budgets"]["1ep"]
    assert set(budget["vs_scratch"]) == {"flowgpt-surprise", "surprise-zero"}
    assert set(budget["vs_zero_label"]) == {"flowgpt-surprise", "surprise-zero", "scratch"}
    assert budget["reference"] == "volume"
    # The ablation's own effect: the variant against its base, paired.
    effect = budget["vs_base"]["surprise-zero"]
    assert effect["base"] == "flowgpt-surprise" and effect["low"] <= effect["value"] <= effect["high"]
    assert "vs its base (ablation)" in (tmp_path / "out" / "report.md").read_text()
    made = (tmp_path / "out" / "pretrain" / "pretrain-60s" / "suite_pretrain.json")
    first = made.stat().st_mtime_ns
    # Unchanged settings reuse the run; other pre-training settings train a new one.
    assert runner.invoke(app, args).exit_code == 0
    assert made.stat().st_mtime_ns == first
    _suite(tmp_path, steps=3)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(made.read_text())["pretrain"]["steps"] == 3
    assert json.loads((tmp_path / "out" / "results.json").read_text())["pretrain"]["60s"]["steps"] == 3


def test_private_addresses_are_named_by_their_dataset_and_public_ones_are_not() -> None:
    from netflowgen.evaluate.corpus import qualify_nodes

    frame = pl.DataFrame({"node": ["192.168.1.1", "147.32.81.167", "fd00::1", "2001:718:2:1600::5", "10.0.0.7", None],
                          "victim": ["192.168.1.1"] * 6})
    named = qualify_nodes(frame, "iot23")
    assert named["node"].to_list() == ["iot23/192.168.1.1", "147.32.81.167", "iot23/fd00::1", "2001:718:2:1600::5",
                                       "iot23/10.0.0.7", None]
    assert named["victim"].to_list() == frame["victim"].to_list(), "only the named column changes"
    assert qualify_nodes(frame, "x", "victim")["victim"].unique().to_list() == ["x/192.168.1.1"]


def test_settings_replace_pretrain_and_finetune_values_and_bad_ones_are_named(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path)).with_settings(["pretrain.size=small", "pretrain.steps=5000", "finetune.lr=0.003"])
    assert suite.pretrain["size"] == "small" and suite.pretrain["steps"] == 5000 and suite.pretrain["context"] == 16
    assert suite.finetune["lr"] == 0.003 and suite.finetune["steps"] == 3
    for bad, message in (("pretrain.depth=3", "pretrain has no setting 'depth'"), ("finetune.epochs=3", "no setting 'epochs'"),
                         ("size=small", "not a suite setting"), ("pretrain.size", "not a suite setting")):
        with pytest.raises(ValueError, match=message):
            load_suite(_suite(tmp_path)).with_settings([bad])
    (tmp_path / "bad.toml").write_text(SUITE.format(steps=2, variants="").replace("batch_size = 4", "batch = 4"))
    with pytest.raises(ValueError, match=r"\[pretrain\] has unknown settings \['batch'\]"):
        load_suite(tmp_path / "bad.toml")


def test_every_built_in_method_has_a_scorer_and_no_scorer_is_unlisted() -> None:
    from netflowgen.evaluate.suite import BASELINES, METHODS, SCORERS, TUNED

    assert set(SCORERS) == set(METHODS)
    assert set(TUNED) | set(BASELINES) | {"surprise", "surprise-node"} == set(METHODS)
