"""Generative pre-training: next-step prediction of every traffic feature, and the run directory.

A run directory describes itself; loading it needs nothing else::

    RUN/netflowgen.json      kind netflowgen.run: status, sizes, data, final metrics
    RUN/model.safetensors    final weights
    RUN/model_config.json    FlowGPTConfig
    RUN/tokenizer.json       the tokenizer the model reads
    RUN/train_config.json    TrainConfig and the data settings
    RUN/metrics.jsonl        one JSON record per log line and per validation
    RUN/checkpoint/          the latest checkpoint (for --resume)
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from netflowgen.artifacts import atomic_directory, loading, read_json, read_manifest, write_json, write_manifest
from netflowgen.model import SIZES, FlowGPT, FlowGPTConfig
from netflowgen.series.spec import SeriesSpec
from netflowgen.tokenize import Tokenizer
from netflowgen.tokenize.shards import open_tokens
from netflowgen.train.checkpoint import checkpoint_state, load_weights, save_weights
from netflowgen.train.config import PretrainConfig, TrainConfig
from netflowgen.train.loop import dist_info, resume_changes, train_loop
from netflowgen.train.windows import Batch, TokenWindows

__all__ = ["PretrainConfig", "Run", "pretrain", "load_run", "RUN_KIND", "next_step_loss"]

RUN_KIND = "netflowgen.run"


def next_step_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    out = model(batch.traffic, batch.time, batch.node, batch.group, targets=batch.targets)
    return out.loss


@torch.no_grad()
def evaluate_windows(model: FlowGPT, windows: TokenWindows, batch_size: int, max_batches: int | None, device: torch.device) -> dict[str, float]:
    """Held-out next-step cross-entropy (mean over features) and bin accuracy."""
    model.eval()
    F = model.cfg.n_features
    loss_sum = torch.zeros(F, dtype=torch.float64)
    correct = torch.zeros(F, dtype=torch.float64)
    count = 0
    for batch in windows.val_batches(batch_size, max_batches):
        b = batch.to(device)
        out = model(b.traffic, b.time, b.node, b.group)
        mask = b.targets[..., 0] >= 0  # (B, T)
        n = int(mask.sum())
        if n == 0:
            continue
        # Every feature at once: the (B, T, F) cross-entropies and the argmax of each feature's bins.
        tgt = b.targets[mask]  # (n, F)
        logits = out.logits[mask]  # (n, sum(bins))
        loss_sum += model.feature_nll(logits, tgt).double().sum(0).cpu()
        correct += (model.feature_grid(logits).argmax(-1) == tgt).sum(0).double().cpu()
        count += n
    if count == 0:
        return {"val_loss": float("nan"), "val_targets": 0}
    per_feature = (loss_sum / count).tolist()
    return {"val_loss": float(np.mean(per_feature)), "val_accuracy": float((correct / count).mean()),
            "val_targets": count, "val_feature_loss": per_feature}


def pretrain(cfg: PretrainConfig, train: TrainConfig, out: Path, *, resume: bool = False, overwrite: bool = False,
             device: str | None = None, show_progress: bool = True) -> tuple[dict, FlowGPT]:  # type: ignore[type-arg]
    """Pre-train FlowGPT on token shards into the run directory ``out``.

    Returns the run's manifest (empty on ranks other than 0) and the trained model.

    ``resume`` continues from the run's checkpoint, with the options the run was started with:
    with those, the run ends as an uninterrupted one would, weight for weight. A resume with
    other options (``cfg``'s, ``train``'s, or tokens that no longer match the run) is refused,
    naming each option with its old and new value, before anything is written. Only
    ``train.steps`` (at least the checkpoint's step) and ``train.max_seconds`` may change: the
    remaining steps then follow the new learning-rate schedule, and ``train_config.json``
    (its ``train`` the new settings, and a ``resumed`` list) and the manifest's ``resumed``
    record each change as ``{"at_step": N, "changed": {option: {"from": old, "to": new}}}``.
    """
    info = dist_info()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and info.world > 1:
        dev = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(dev)
    manifest, tok, shards = open_tokens(cfg.tokens)
    size = dict(SIZES[cfg.size])
    if cfg.context:
        size["context"] = cfg.context
    model_cfg = FlowGPTConfig(
        bins=tuple(tok.bins[f] for f in tok.features), n_nodes=len(tok.nodes) + 1, n_groups=len(tok.groups) + 1,
        dropout=cfg.dropout, **size,
    )
    windows = TokenWindows(shards, model_cfg.context, cfg.val_fraction)
    if windows.n_train_targets == 0:
        raise ValueError(f"{cfg.tokens}: no node has two consecutive steps to train on")
    tok.spec  # noqa: B018  (refuses tokens whose tokenizer holds no series contract, before any work)
    data = {k: str(v) for k, v in asdict(cfg).items()}
    # Checked on every rank (the same files give the same answer), so that none is left waiting.
    resumed = _resume_record(out, data, train, model_cfg, tok) if resume else None
    if info.main:
        if resume:
            read_manifest(out, RUN_KIND)
            if resumed:
                write_json(out / "train_config.json", resumed)
        else:
            # The run directory appears whole, with its manifest: a kill before leaves nothing at
            # ``out``, and --overwrite keeps the old run until the new one is in place.
            with _new_run_dir(out, overwrite) as tmp:
                write_json(tmp / "model_config.json", model_cfg.to_dict())
                tok.save(tmp / "tokenizer.json")
                write_json(tmp / "train_config.json", {"train": asdict(train), "data": data})
                write_manifest(tmp, RUN_KIND, status="running", size=cfg.size, tokens=str(Path(cfg.tokens).resolve()))
    if info.world > 1:
        torch.distributed.barrier()
    torch.manual_seed(train.seed)  # same initial weights on every rank
    model = FlowGPT(model_cfg)
    records = train_loop(
        model,
        sample=lambda step, rank: windows.sample(train.batch_size, train.seed, rank, step),
        validate=lambda m: evaluate_windows(m, windows, train.batch_size, train.eval_batches, dev),
        loss_of=next_step_loss,
        cfg=train,
        run_dir=out,
        resume=resume,
        device=dev,
        show_progress=show_progress,
        tokens_per_batch=train.batch_size * model_cfg.context,
    )
    result: dict = {}  # type: ignore[type-arg]
    if info.main:
        save_weights(model, out / "model.safetensors")
        final = [r for r in records if "val_loss" in r]
        result = {"status": "complete", "size": cfg.size, "tokens": str(Path(cfg.tokens).resolve()), "parameters": model.num_params(),
                  "steps": int(records[-1]["step"]) if records else train.steps, "train_targets": windows.n_train_targets, "val_targets": windows.n_val_targets,
                  "final": final[-1] if final else None}
        history = read_json(out / "train_config.json").get("resumed")
        if history:
            result["resumed"] = history
        write_manifest(out, RUN_KIND, **result)
    if info.world > 1:
        torch.distributed.barrier()
    return result, model


def _resume_record(out: Path, data: dict, train: TrainConfig, model_cfg: FlowGPTConfig,  # type: ignore[type-arg]
                   tok: Tokenizer) -> dict | None:  # type: ignore[type-arg]
    """Check a resume of ``out`` against what the run recorded (see :func:`pretrain`); returns
    the new ``train_config.json`` when it changes, None when it stays as it is."""
    run_manifest = read_manifest(out, RUN_KIND)
    recorded = read_json(out / "train_config.json")
    state = checkpoint_state(out)
    refused = []
    given = dict(data, tokens=str(Path(data["tokens"]).resolve()))
    known = dict(recorded.get("data", {}), tokens=run_manifest.get("tokens", recorded.get("data", {}).get("tokens")))
    for key, value in given.items():
        if key in known and known[key] != value:
            refused.append(f"{key}: the run has {known[key]}, this run {value}")  # stored as text
    run_tok = _run_tokenizer(out, recorded)
    if run_tok.series is not None:
        try:
            run_tok.spec.require_compatible(tok.spec, f"the run {out}", f"the tokens {data['tokens']}")
        except ValueError as e:
            refused.append(str(e))
    with loading(out / "model_config.json", "the model config"):
        model_was = read_json(out / "model_config.json")
    # Same options, other tokens at the same path (tokenized again): other bins, nodes or groups.
    model_now = json.loads(json.dumps(model_cfg.to_dict()))
    refused += [f"model {k}: the run has {model_was.get(k)!r}, these tokens and options give {v!r}"
                for k, v in model_now.items() if model_was.get(k) != v and not any(r.startswith(f"{k}:") for r in refused)]
    if refused:
        raise ValueError(f"{out}: cannot resume with options that differ from the run's: " + "; ".join(refused)
                         + ". Resume with the run's options, or start a new run")
    at = int(state["step"])
    changed = resume_changes(state.get("config") or recorded["train"], train, at, out)
    # Changes recorded at or after the checkpoint's step belong to a resume whose steps were
    # lost (it died before its next checkpoint): this resume takes their place.
    history = [r for r in recorded.get("resumed", []) if r.get("at_step", 0) < at]
    history += [{"at_step": at, "changed": changed}] if changed else []
    new = {**recorded, "train": asdict(train), "resumed": history}
    if not history:
        new.pop("resumed")
    return new if new != recorded else None


def _new_run_dir(out: Path, overwrite: bool) -> contextlib.AbstractContextManager[Path]:
    """A temporary directory that becomes the run directory ``out`` (see ``atomic_directory``)."""
    return atomic_directory(out, overwrite, exists="pass --resume to continue it or --overwrite to replace it")


def _run_tokenizer(run: Path, train_config: dict | None = None) -> Tokenizer:  # type: ignore[type-arg]
    """A run's tokenizer; one of a run made before the tokenizer held the series contract takes
    the step width its train_config.json recorded."""
    tok = Tokenizer.load(run / "tokenizer.json")
    if tok.series is None:
        recorded = train_config if train_config is not None else read_json(run / "train_config.json")
        tok.adopt_step(recorded.get("data", {}).get("step_seconds"))
    return tok


@dataclass
class Run:
    """A loaded pre-trained run: its model (final weights, eval mode), tokenizer and manifest.

    Unpacks as ``model, tokenizer, manifest`` as well, the shape ``load_run`` returned before.
    """

    path: Path
    model: FlowGPT
    tokenizer: Tokenizer
    manifest: dict  # type: ignore[type-arg]

    @property
    def spec(self) -> SeriesSpec:
        """The contract of the series the model was pre-trained on (its tokenizer's)."""
        return self.tokenizer.spec

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.model, self.tokenizer, self.manifest))

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        return (self.model, self.tokenizer, self.manifest)[i]

    def anomaly_scores(self, series: pl.DataFrame, device: str = "cpu") -> pl.DataFrame:
        """Zero-label anomaly score of every (node, step) of ``series``: how surprising the observed
        step is to the model, in nats summed over features (null where a node's segment starts
        and there is no history to predict from); with ``label`` where the series has labels."""
        from netflowgen.train.steps import EncodedSteps, surprise_scores

        steps = EncodedSteps.encode(series, self.tokenizer)
        values = surprise_scores(self.model, steps, device=device)
        scored = steps.keys.with_columns(pl.Series("score", values).fill_nan(None))
        has_labels = "attack" in series.columns or "classes" in series.columns
        return scored.with_columns(pl.Series("label", steps.labels.astype(bool))) if has_labels else scored


def load_run(path: str | os.PathLike[str], device: str = "cpu") -> Run:
    """Load a run directory: the model with its final weights, its tokenizer and manifest."""
    run = Path(path)
    manifest = read_manifest(run, RUN_KIND)
    if manifest.get("status") != "complete" or not (run / "model.safetensors").is_file():
        raise ValueError(f"{run}: training did not complete (status {manifest.get('status')!r}); resume it first")
    with loading(run / "model_config.json", "the model config"):
        cfg = FlowGPTConfig.from_dict(read_json(run / "model_config.json"))
        model = FlowGPT(cfg)
    load_weights(model, run / "model.safetensors")
    model.to(device).eval()
    return Run(run, model, _run_tokenizer(run), manifest)
