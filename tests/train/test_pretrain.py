"""Pre-training: the model can learn, resume equals uninterrupted, a run reloads exactly,
and DDP keeps ranks identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from netflowgen.series.spec import SeriesSpec
from netflowgen.model import FlowGPT, FlowGPTConfig
from netflowgen.tokenize import Tokenizer, TokenizerConfig
from netflowgen.tokenize.shards import open_tokens, write_tokens
from netflowgen.train.loop import TrainConfig
from netflowgen.train.pretrain import PretrainConfig, load_run, pretrain
from netflowgen.train.windows import TokenWindows

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
PERIOD = [0, 3, 7, 3]


def periodic_tokens(tmp: Path, nodes: int = 4, steps: int = 120) -> Path:
    """Series whose two features cycle with period 4: a pattern a model must learn."""
    rows = []
    for n in range(nodes):
        for t in range(steps):
            v = PERIOD[(t + n) % len(PERIOD)]
            rows.append({"node": f"10.0.0.{n}", "group": "10.0.0.0/24", "step": T0 + timedelta(minutes=t),
                         "a": v, "b": 10 * v, "attack": False, "labeled_flows": 0})
    series = pl.DataFrame(rows)
    tok = Tokenizer.fit(series, TokenizerConfig(("a", "b"), n_bins=4, rule="log-uniform"), SeriesSpec(features=("a", "b")))
    write_tokens(series, tok, tmp / "tok", fit=None, source="synthetic")
    return tmp / "tok"


def small_train(**kw: object) -> TrainConfig:
    base = dict(steps=150, batch_size=16, lr=3e-3, warmup_steps=10, eval_every=50, checkpoint_every=50,
                eval_batches=None, log_every=10, weight_decay=0.0)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_forward_shapes_and_causality() -> None:
    cfg = FlowGPTConfig(bins=(3, 5), n_nodes=3, n_groups=2, context=8, n_layer=1, n_head=2, d_model=16)
    torch.manual_seed(0)
    model = FlowGPT(cfg).eval()
    traffic = torch.randint(0, 3, (2, 8, 2))
    time = torch.zeros(2, 8, 4, dtype=torch.long)
    out = model(traffic, time, torch.tensor([1, 2]), torch.tensor([1, 1]))
    assert out.logits.shape == (2, 8, 8) and out.hidden.shape == (2, 8, 16)
    changed = traffic.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 3
    out2 = model(changed, time, torch.tensor([1, 2]), torch.tensor([1, 1]))
    assert torch.allclose(out.logits[:, :5], out2.logits[:, :5]), "a step must not see later steps"
    assert not torch.allclose(out.logits[:, 5:], out2.logits[:, 5:])


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    tmp = tmp_path_factory.mktemp("learned")
    tokens = periodic_tokens(tmp)
    result, _ = pretrain(PretrainConfig(tokens, "tiny", context=16), small_train(), tmp / "run", show_progress=False)
    return tmp, result


def test_learns_a_periodic_pattern(learned: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    _, result = learned
    assert result["final"]["val_loss"] < 0.05, result["final"]
    assert result["final"]["val_accuracy"] > 0.99


def test_generate_continues_the_pattern(learned: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    from netflowgen.train.generate import sample_paths

    tmp, _ = learned
    model, tok, _ = load_run(tmp / "run")
    rows = [{"node": "10.0.0.0", "group": "10.0.0.0/24", "step": T0 + timedelta(minutes=t), "a": PERIOD[t % 4],
             "b": 10 * PERIOD[t % 4]} for t in range(12)]
    history = pl.DataFrame(rows)
    fc = sample_paths(model, tok, history, horizon=8, samples=20, seed=3)
    expected = [PERIOD[t % 4] for t in range(12, 20)]
    median = fc.quantiles((0.5,))[0]
    assert median[:, 0].tolist() == [float(tok.decode("a", tok.encode_feature("a", [v]))[0]) for v in expected]
    assert fc.steps[0] == T0 + timedelta(minutes=12)
    again = sample_paths(model, tok, history, horizon=8, samples=20, seed=3)
    assert (again.bins == fc.bins).all(), "same seed, same samples"


def test_resume_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = periodic_tokens(tmp_path)
    cfg = PretrainConfig(tokens, "tiny", context=16, dropout=0.1)  # dropout: the RNG must resume too
    train = small_train(steps=40, checkpoint_every=20, eval_every=20)
    pretrain(cfg, train, tmp_path / "full", show_progress=False)

    original = TokenWindows.sample

    def dies_at_25(self, batch_size, seed, rank, step):  # type: ignore[no-untyped-def]
        if step == 25:
            raise KeyboardInterrupt
        return original(self, batch_size, seed, rank, step)

    monkeypatch.setattr(TokenWindows, "sample", dies_at_25)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, train, tmp_path / "cut", show_progress=False)
    monkeypatch.setattr(TokenWindows, "sample", original)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    assert json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())["step"] == 20
    pretrain(cfg, train, tmp_path / "cut", resume=True, show_progress=False)

    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    full = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    resumed = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("steps_per_s", "tokens_per_s", "data_share")} for r in rows]  # noqa: E731
    assert strip(full) == strip(resumed)


def test_run_directory_reloads_to_identical_predictions(tmp_path: Path) -> None:
    tokens = periodic_tokens(tmp_path)
    _, trained = pretrain(PretrainConfig(tokens, "tiny", context=16), small_train(steps=20), tmp_path / "run",
                          show_progress=False)
    model, tok, manifest = load_run(tmp_path / "run")
    assert manifest["status"] == "complete" and tok.config.features == ("a", "b")
    _, _, shards = open_tokens(tokens)
    batch = next(TokenWindows(shards, 16, 0.1).val_batches(8))
    # The model as training left it in memory, against the one read back from the directory.
    trained.eval()
    with torch.no_grad():
        x = trained(batch.traffic, batch.time, batch.node, batch.group).logits
        y = model(batch.traffic, batch.time, batch.node, batch.group).logits
    assert torch.equal(x, y)
    fresh = type(model)(model.cfg)  # untrained weights give other predictions: the check can fail
    with torch.no_grad():
        assert not torch.equal(fresh.eval()(batch.traffic, batch.time, batch.node, batch.group).logits, y)
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["checkpoint", "metrics.jsonl", "model.safetensors", "model_config.json", "netflowgen.json",
                     "tokenizer.json", "train_config.json"]


def test_validation_windows_cover_each_held_out_row_once(tmp_path: Path) -> None:
    tokens = periodic_tokens(tmp_path, nodes=3, steps=50)
    _, _, shards = open_tokens(tokens)
    w = TokenWindows(shards, context=8, val_fraction=0.2)
    rows = torch.cat([b.target_rows[b.target_rows >= 0] for b in w.val_batches(4)]).tolist()
    # 3 nodes x 50 steps: the last 10 rows of each node are held out.
    expected = [n * 50 + t for n in range(3) for t in range(40, 50)]
    assert sorted(rows) == expected and len(rows) == len(set(rows)) == w.n_val_targets
    batch = w.sample(64, seed=1, rank=0, step=0)
    train_rows = batch.target_rows[batch.target_rows >= 0]
    assert all((r % 50) < 40 for r in train_rows.tolist()), "training never sees held-out targets"
    assert torch.equal(batch.traffic, w.sample(64, seed=1, rank=0, step=0).traffic)


@pytest.mark.slow
def test_torchrun_gloo_keeps_ranks_identical(tmp_path: Path) -> None:
    tokens = periodic_tokens(tmp_path)
    script = tmp_path / "ddp.py"
    script.write_text(f"""
import torch, torch.distributed as dist
from pathlib import Path
from netflowgen.train.loop import TrainConfig
from netflowgen.train.pretrain import PretrainConfig, pretrain
# The script owns its process group, as a user's own torchrun script would: pretrain() joins it.
dist.init_process_group("gloo")
result, m = pretrain(PretrainConfig(Path({str(tokens)!r}), "tiny", context=16),
         TrainConfig(steps=12, batch_size=8, warmup_steps=2, eval_every=6, checkpoint_every=6, log_every=3),
         Path({str(tmp_path / 'run')!r}), device="cpu", show_progress=False)
# Each rank's own weights in memory, after training: DDP must have kept them equal.
flat = torch.cat([p.detach().flatten() for p in m.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    assert all(torch.equal(gathered[0], g) for g in gathered[1:]), "ranks differ"
    print("RANKS-IDENTICAL", dist.get_world_size())
dist.barrier()  # no rank tears down while its peer still holds gloo work
dist.destroy_process_group()
""")
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(script)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANKS-IDENTICAL 2" in proc.stdout


def test_nextstep_scores_every_method_on_the_same_targets(tmp_path: Path) -> None:
    from netflowgen.evaluate.nextstep import evaluate_next_step

    tokens = periodic_tokens(tmp_path, nodes=3, steps=60)
    _, model = pretrain(PretrainConfig(tokens, "tiny", context=16), small_train(steps=5), tmp_path / "run", show_progress=False)
    _, tok, shards = open_tokens(tokens)
    windows = TokenWindows(shards, 16, 0.2)
    report = evaluate_next_step(model, windows, tok)
    assert set(report.subsets) == {"all", "active"}  # one hour of data: no seasonal rows
    m = report.methods
    assert set(m) == {"flowgpt", "persistence", "node-frequency"}
    assert m["flowgpt"].targets == m["persistence"].targets == m["node-frequency"].targets == windows.n_val_targets == 36
    # The pattern 0,3,7,3 never repeats a bin: persistence's fitted repeat rate is 0, so it is
    # always wrong, and its cross-entropy is that of the floor probability spread over the others.
    assert m["persistence"].accuracy == [0.0, 0.0]
    # Every node cycles through its bins evenly: node frequency is right on half its guesses at best.
    assert all(a <= 0.5 for a in m["node-frequency"].accuracy)
