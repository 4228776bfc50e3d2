"""`pretrain --resume` against the options the run was started with (issue 16, defect 7): a
changed option is refused with its name, old and new value, and the run left as it was; only
--steps and --max-minutes may change, and train_config.json then says so."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netflowgen.cli import app
from netflowgen.train.loop import lr_at
from netflowgen.train.pretrain import PretrainConfig, pretrain
from tests.train.test_pretrain import periodic_tokens, small_train

runner = CliRunner()


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return periodic_tokens(tmp_path_factory.mktemp("tokens"))


def started(tokens: Path, out: Path, steps: int = 20) -> tuple[PretrainConfig, object]:
    cfg = PretrainConfig(tokens, "tiny", context=16)
    train = small_train(steps=steps, checkpoint_every=10, eval_every=10)
    pretrain(cfg, train, out, show_progress=False)
    return cfg, train


def fingerprint(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("option", "value"), [("batch_size", 8), ("lr", 1e-3), ("seed", 1), ("warmup_steps", 5),
                                               ("precision", "fp32"), ("eval_every", 5), ("weight_decay", 0.1)])
def test_a_changed_training_option_is_refused_and_nothing_changes(tokens: Path, tmp_path: Path, option: str, value: object) -> None:
    cfg, train = started(tokens, tmp_path / "run")
    before = fingerprint(tmp_path / "run")
    old = getattr(train, option)
    with pytest.raises(ValueError, match=rf"{option}: the checkpoint has {old!r}, this run {value!r}"):
        pretrain(cfg, dataclasses.replace(train, **{option: value}), tmp_path / "run", resume=True, show_progress=False)
    assert fingerprint(tmp_path / "run") == before


@pytest.mark.parametrize(("option", "value"), [("size", "small"), ("context", 8), ("val_fraction", 0.2), ("dropout", 0.1)])
def test_a_changed_model_or_data_option_is_refused(tokens: Path, tmp_path: Path, option: str, value: object) -> None:
    cfg, train = started(tokens, tmp_path / "run")
    before = fingerprint(tmp_path / "run")
    with pytest.raises(ValueError, match=rf"{option}: the run has [^,]+, this run {value}[.;] "):
        pretrain(dataclasses.replace(cfg, **{option: value}), train, tmp_path / "run", resume=True, show_progress=False)
    assert fingerprint(tmp_path / "run") == before


def test_other_tokens_are_refused(tokens: Path, tmp_path: Path) -> None:
    cfg, train = started(tokens, tmp_path / "run")
    other = periodic_tokens(tmp_path / "other_place", nodes=5)
    with pytest.raises(ValueError, match=rf"tokens: the run has {tokens.resolve()}, this run {other.resolve()}"):
        pretrain(dataclasses.replace(cfg, tokens=other), train, tmp_path / "run", resume=True, show_progress=False)


def test_extending_the_steps_is_recorded_and_follows_the_new_schedule(tokens: Path, tmp_path: Path) -> None:
    cfg, train = started(tokens, tmp_path / "run")
    longer = dataclasses.replace(train, steps=40, max_seconds=600.0)
    result, _ = pretrain(cfg, longer, tmp_path / "run", resume=True, show_progress=False)
    recorded = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert recorded["train"]["steps"] == 40 and recorded["train"]["max_seconds"] == 600.0
    assert recorded["resumed"] == [{"at_step": 20, "changed": {"steps": {"from": 20, "to": 40},
                                                                "max_seconds": {"from": None, "to": 600.0}}}]
    assert result["steps"] == 40 and result["resumed"] == recorded["resumed"]
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert lrs[20] == pytest.approx(lr_at(19, train)) and lrs[30] == pytest.approx(lr_at(29, longer))
    # The same extension again is the same run: a change is recorded, not a loss of exactness.
    started(tokens, tmp_path / "again")
    pretrain(cfg, longer, tmp_path / "again", resume=True, show_progress=False)
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (tmp_path / "run" / "model.safetensors").read_bytes()


def test_steps_below_the_checkpoint_are_refused(tokens: Path, tmp_path: Path) -> None:
    cfg, train = started(tokens, tmp_path / "run")
    with pytest.raises(ValueError, match=r"steps: the checkpoint is at step 20; this run's 10 would end before it"):
        pretrain(cfg, dataclasses.replace(train, steps=10), tmp_path / "run", resume=True, show_progress=False)


def test_the_same_options_resume_without_a_record(tokens: Path, tmp_path: Path) -> None:
    cfg, train = started(tokens, tmp_path / "run")
    pretrain(cfg, train, tmp_path / "run", resume=True, show_progress=False)
    assert "resumed" not in json.loads((tmp_path / "run" / "train_config.json").read_text())


def test_the_command_names_the_changed_option(tokens: Path, tmp_path: Path) -> None:
    base = ["pretrain", str(tokens), "--out", str(tmp_path / "run"), "--steps", "20", "--batch-size", "16",
            "--eval-every", "10", "--context", "16", "--json"]
    assert runner.invoke(app, base).exit_code == 0
    result = runner.invoke(app, [*base, "--resume", "--batch-size", "8", "--lr", "0.01"])
    assert result.exit_code == 1
    assert "batch_size: the checkpoint has 16, this run 8" in result.output and "lr: the checkpoint has 0.0003, this run 0.01" in result.output
    assert "Traceback" not in result.output and result.output.startswith("error:")


def test_a_record_of_an_extension_that_died_before_its_next_checkpoint_is_replaced(tokens: Path, tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from netflowgen.train.windows import TokenWindows

    cfg, train = started(tokens, tmp_path / "run")
    original = TokenWindows.sample

    def dies_at_25(self, batch_size, seed, rank, step):  # type: ignore[no-untyped-def]
        if step == 25:
            raise KeyboardInterrupt
        return original(self, batch_size, seed, rank, step)

    monkeypatch.setattr(TokenWindows, "sample", dies_at_25)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, dataclasses.replace(train, steps=40), tmp_path / "run", resume=True, show_progress=False)
    monkeypatch.setattr(TokenWindows, "sample", original)
    config = tmp_path / "run" / "train_config.json"
    assert json.loads(config.read_text())["resumed"][0]["changed"] == {"steps": {"from": 20, "to": 40}}
    # The checkpoint is still step 20's: resumed with the first options, the record goes.
    pretrain(cfg, train, tmp_path / "run", resume=True, show_progress=False)
    assert "resumed" not in json.loads(config.read_text()) and json.loads(config.read_text())["train"]["steps"] == 20
    pretrain(cfg, dataclasses.replace(train, steps=30), tmp_path / "run", resume=True, show_progress=False)
    assert json.loads(config.read_text())["resumed"] == [{"at_step": 20, "changed": {"steps": {"from": 20, "to": 30}}}]
