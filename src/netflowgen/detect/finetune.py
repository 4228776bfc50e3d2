"""Few-label fine-tuning of FlowGPT into a detector, scoring, and zero-label anomaly scores.

The detector is the pre-trained backbone with a small head (DESIGN section 5):

  * a per-step head on every position's hidden state: the decoder is causal, so the score of
    step t depends on steps up to t only: early detection, as an online detector would see it;
  * window classification ("does this window hold an attack?") as the largest step logit
    inside the window, trained with its own loss next to the per-step one.

Inputs are windows of ``history + window`` steps of one node: the ``window`` last steps carry
(budgeted) labels, the ``history`` steps before them only give context, because traffic features
are free and only labels are scarce. Scoring walks every segment of a node's series in strides of
``window`` steps, each stride read with up to ``history`` steps before it, so every step is scored
with between ``history`` and ``history + window - 1`` steps of its past (fewer at a series' start).

Modes: ``full`` trains everything; ``probe`` freezes the backbone (a linear probe); ``last-k``
trains the last k blocks, the final norm and the heads. ``init="scratch"`` is the same
architecture from random weights: the baseline that says what pre-training is worth.

Class imbalance: the step loss weighs positive steps by negatives / positives of the labelled
training steps. The alert threshold is calibrated on the calibration windows of the budget (see
``labels.py``), never on test rows.

A detector directory describes itself::

    DET/netflowgen.json      kind netflowgen.detector: task, budget, threshold, windows, source run
    DET/model.safetensors    backbone and heads
    DET/model_config.json    the backbone's FlowGPTConfig
    DET/tokenizer.json       the run's tokenizer (never refitted on labelled or test data)
    DET/metrics.jsonl        training log
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from netflowgen.artifacts import MANIFEST_NAME, atomic_directory, loading, read_json, read_manifest, write_manifest
from netflowgen.detect.labels import LabelSelection, select_labels
from netflowgen.detect.config import HEAD_INPUTS, MODES, SURPRISE_WEIGHTS, FinetuneConfig
from netflowgen.model import FlowGPT, FlowGPTConfig
from netflowgen.series.spec import SeriesSpec
from netflowgen.tokenize import Tokenizer
from netflowgen.train.checkpoint import CHECKPOINT_DIR, load_weights, save_weights
from netflowgen.train.loop import TrainConfig, train_loop
from netflowgen.train.steps import EncodedSteps, WindowBatch, WindowPlan, score_plan, score_steps, surprise_scores

__all__ = [
    "DETECTOR_KIND",
    "MODES",
    "Detector",
    "DetectorModel",
    "EncodedSteps",
    "FinetuneConfig",
    "finetune",
    "load_detector",
    "with_threshold",
    "node_relative_surprise",
    "score_plan",
    "score_steps",
    "score_windows",
    "surprise_scores",
]

DETECTOR_KIND = "netflowgen.detector"
#: Steps over which the surprise inputs also carry their recent maximum.
RECENT = 8


class DetectorModel(nn.Module):
    """FlowGPT backbone plus a per-step head; a window's verdict is the largest step logit inside
    it (history left out), the multiple-instance reading of "this window holds an attack": with a
    handful of labelled windows a separate window head has too few examples to learn from, while
    the window loss sharpens the step head where an attack's steps are uncertain.

    With ``head_inputs`` "both" (or "surprise") the step head also (or only) reads, for every traffic feature, how surprising
    the observed bin is to the pre-trained next-step head given the steps before (its negative
    log-likelihood, 0 at a window's first position). That is what pre-training knows about each
    node's normal behaviour, relative to the node: labels from a few busy nodes then carry over to
    quiet ones, where absolute bins do not (measured on the demo's unseen-node task)."""

    def __init__(self, backbone: FlowGPT, backbone_lr_scale: float = 0.1, head_inputs: str = "both",
                 surprise_weights: str = "free") -> None:
        super().__init__()
        if head_inputs not in HEAD_INPUTS:
            raise ValueError(f"head inputs are one of {', '.join(HEAD_INPUTS)}, not {head_inputs!r}")
        if surprise_weights not in SURPRISE_WEIGHTS:
            raise ValueError(f"surprise weights are one of {', '.join(SURPRISE_WEIGHTS)}, not {surprise_weights!r}")
        if surprise_weights == "positive" and head_inputs == "hidden":
            raise ValueError("positive surprise weights need a head that reads the surprise (head inputs surprise or both)")
        self.backbone = backbone
        self.backbone_lr_scale = backbone_lr_scale
        self.head_inputs = head_inputs
        width = (backbone.cfg.d_model if head_inputs != "surprise" else 0) + (2 * backbone.cfg.n_features if head_inputs != "hidden" else 0)
        self.step_head = nn.Linear(width, 1)
        nn.init.normal_(self.step_head.weight, std=0.02)
        nn.init.zeros_(self.step_head.bias)
        # "positive": the head's weights on the surprise columns are softplus(stored weight), so
        # that more surprise never lowers the score (see FinetuneConfig.surprise_weights).
        self._positive_from = (width - 2 * backbone.cfg.n_features) if surprise_weights == "positive" else None
        if self._positive_from is not None:
            with torch.no_grad():
                cols = self.step_head.weight[:, self._positive_from:]
                cols.copy_(_softplus_inverse(cols.abs().clamp_min(1e-3)))

    @property
    def surprise_weights(self) -> str:
        return "free" if self._positive_from is None else "positive"

    def head_weight(self) -> torch.Tensor:
        """(1, width) the step head's effective weights."""
        w = self.step_head.weight
        if self._positive_from is None:
            return w
        return torch.cat([w[:, :self._positive_from], F.softplus(w[:, self._positive_from:])], dim=1)

    def lr_scale(self, name: str) -> float:
        """The training loop's per-parameter learning-rate factor: with a handful of labels, a
        backbone moving as fast as fresh heads forgets what pre-training taught and memorises
        the labelled windows (their nodes and times)."""
        return self.backbone_lr_scale if name.startswith("backbone.") else 1.0

    def step_features(self, traffic: torch.Tensor, time: torch.Tensor, node: torch.Tensor,
                      group: torch.Tensor) -> torch.Tensor:
        """(B, T, width) what the step head reads at every position."""
        out = self.backbone(traffic, time, node, group)
        parts = [out.hidden] if self.head_inputs != "surprise" else []  # (B, T, d)
        if self.head_inputs != "hidden":
            nll = self.backbone.feature_nll(out.logits[:, :-1], traffic[:, 1:].long())  # (B, T-1, F)
            # In units of a uniform guess over each feature's own bins, so the head's inputs are of order one.
            nll = self.backbone.feature_surprise(torch.cat([torch.zeros_like(nll[:, :1]), nll], dim=1))
            # And the largest surprise of the last RECENT steps (causal): once a flood is under
            # way the model expects it, so its onset's surprise has to carry the steps after it.
            recent = F.max_pool1d(F.pad(nll.transpose(1, 2), (RECENT - 1, 0)), RECENT, stride=1).transpose(1, 2)
            parts += [nll.to(out.hidden.dtype), recent.to(out.hidden.dtype)]
        return torch.cat(parts, dim=-1)

    def forward(self, traffic: torch.Tensor, time: torch.Tensor, node: torch.Tensor, group: torch.Tensor,
                first: torch.Tensor, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) step logits and (B,) window logits."""
        step = F.linear(self.step_features(traffic, time, node, group), self.head_weight(), self.step_head.bias).squeeze(-1)
        pos = torch.arange(step.shape[1], device=step.device)[None, :]
        inside = (pos >= first[:, None]) & (pos <= last[:, None])  # (B, T)
        window = step.masked_fill(~inside, float("-inf")).amax(dim=1)
        return step, window

    @torch.no_grad()
    def start_from_surprise(self, features: torch.Tensor, positive_rate: float) -> None:
        """Make the step head the zero-label surprise score: weight log(bins_f) on each feature's
        surprise (their sum is the NLL in nats), 0 elsewhere; scaled so that its logits have a
        standard deviation of 2 over ``features`` (N, width), the training steps, and shifted so
        that the ``positive_rate`` most surprising of them start above 0. With Adam, a head that
        moves about lr per step can then refine the ranking, not only find it."""
        if self.head_inputs == "hidden":
            raise ValueError("a head on the hidden state alone has no surprise to start from")
        n_f = self.backbone.cfg.n_features
        offset = 0 if self.head_inputs == "surprise" else self.backbone.cfg.d_model
        w = torch.zeros(features.shape[-1], dtype=torch.float32, device=features.device)
        w[offset:offset + n_f] = self.backbone.log_bins.to(w.device)
        s = features.float() @ w  # (N,) surprise in nats
        scale = 2.0 / float(s.std().clamp_min(1e-6)) if len(s) > 1 else 1.0
        cut = float(torch.quantile(s, 1.0 - float(np.clip(positive_rate, 1e-3, 0.5)))) if len(s) else 0.0
        w = scale * w
        if self._positive_from is not None:
            w[self._positive_from:] = _softplus_inverse(w[self._positive_from:].clamp_min(1e-3))
        self.step_head.weight.copy_(w[None, :])
        self.step_head.bias.fill_(-scale * cut)


def _softplus_inverse(y: torch.Tensor) -> torch.Tensor:
    """x with softplus(x) = y (y > 0)."""
    return y + torch.log(-torch.expm1(-y))


def _set_trainable(model: DetectorModel, mode: str, last_k: int) -> None:
    for p in model.backbone.parameters():
        p.requires_grad = mode == "full"
    if mode == "last-k":
        for block in model.backbone.blocks[-last_k:]:
            for p in block.parameters():
                p.requires_grad = True
        for p in model.backbone.ln_f.parameters():
            p.requires_grad = True


def _loss(pos_weight: float, window_weight: float, anchor: float = 0.0,
          start: dict[str, torch.Tensor] | None = None):  # type: ignore[no-untyped-def]
    pw = torch.tensor(pos_weight)

    def penalty(model: nn.Module) -> torch.Tensor | float:
        if not anchor or not start:
            return 0.0
        module = getattr(model, "module", model)  # under DistributedDataParallel
        return anchor * sum(((p - start[n].to(p.device)) ** 2).sum() for n, p in module.named_parameters() if n in start)

    def loss_of(model: nn.Module, b: WindowBatch) -> torch.Tensor:
        step, window = model(b.traffic, b.time, b.node, b.group, b.first, b.last)
        m = b.mask
        step_loss = F.binary_cross_entropy_with_logits(step.float()[m], b.labels[m], pos_weight=pw.to(step.device))
        has = m.any(dim=1)
        target = (b.labels * m).amax(dim=1)
        win_loss = F.binary_cross_entropy_with_logits(window.float()[has], target[has], pos_weight=pw.to(step.device))
        return step_loss + window_weight * win_loss + penalty(model)

    return loss_of


def node_relative_surprise(series: pl.DataFrame, surprise: np.ndarray, step: timedelta,
                           halflife_steps: float = 30.0, prior_std: float = 3.0) -> np.ndarray:
    """The zero-label surprise as a z-score against the node's own recent surprise (causal: an
    EWMA of mean and variance over the node's previous observed steps, held over holes up to a
    day). A node whose traffic is always hard to predict (a busy server) has a high surprise on
    every step; relative to its own level, a flood at a quiet node and one at a busy node
    compare alike. ``surprise`` is aligned to ``series`` sorted by node and step."""
    from netflowgen.detect.baselines import VolumeConfig, VolumeDetector

    keys = series.select("node", "step").sort("node", "step")
    if len(surprise) != keys.height:
        raise ValueError(f"{len(surprise)} surprise scores for {keys.height} series rows")
    # Nats, not counts: no log1p. A node without history is compared with a surprise of 0 and a
    # spread of ``prior_std`` nats, damped over the warm-up (VolumeDetector's rule); a fixed prior,
    # not one measured on the scores, keeps every score causal. min_std keeps a node whose surprise
    # never changes finite.
    cfg = VolumeConfig(features=("surprise",), log1p=False, halflife_steps=halflife_steps, hold_over=timedelta(days=1),
                       min_std=1.0, prior_std=prior_std, step=step)
    frame = keys.with_columns(pl.Series("surprise", surprise, dtype=pl.Float64))
    scored = VolumeDetector(cfg).score(frame)
    joined = keys.join(scored, on=["node", "step"], how="left", maintain_order="left")
    return joined["score"].fill_null(float("-inf")).to_numpy()


@dataclass
class Detector:
    """A loaded detector: model, tokenizer and what it was fitted for."""

    model: DetectorModel
    tokenizer: Tokenizer
    manifest: dict  # type: ignore[type-arg]
    fit_scores: np.ndarray | None = None
    """After ``finetune``: the score of every row of the series it was fitted on (rows sorted by
    node and step), computed to calibrate the threshold; a caller comparing methods on that very
    series reads them here instead of scoring it a second time."""

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])

    @property
    def spec(self) -> SeriesSpec:
        """The contract of the series the detector was fitted on: how it turns flows into series."""
        return self.tokenizer.spec

    def series_of(self, data: pl.DataFrame | pl.LazyFrame | str | os.PathLike[str]) -> pl.DataFrame:
        """``data`` as node series: series as they are; flows built by the detector's series contract."""
        if isinstance(data, pl.DataFrame) and "ts_start" not in data.columns:
            return data
        from netflowgen.series.build import build_series

        cfg = self.spec
        if isinstance(data, (pl.DataFrame, pl.LazyFrame)):
            return build_series(data, cfg, coverage="records")
        from netflowgen.dataset.coverage import dataset_coverage
        from netflowgen.dataset.manifest import scan_flows

        flows = scan_flows(Path(data))
        return build_series(flows, cfg, dataset_coverage(Path(data), flows))

    def encode(self, series: pl.DataFrame) -> EncodedSteps:
        return EncodedSteps.encode(series, self.tokenizer, tuple(self.manifest["attack"]))

    def score_windows(self, series: pl.DataFrame, device: str = "cpu") -> pl.DataFrame:
        """The window head's verdict on every ``window`` steps of every node (see score_windows)."""
        return score_windows(self.model, self.encode(series), self.manifest["window"], self.manifest["history"], device=device)

    @property
    def live_length(self) -> int:
        """Rows a step is read with live (itself and the ones before it): ``history + window``,
        the most context the strides give a step offline, within the model's context."""
        return min(int(self.manifest["history"]) + int(self.manifest["window"]), self.model.backbone.cfg.context)

    def score(self, data: pl.DataFrame | pl.LazyFrame | str | os.PathLike[str], device: str = "cpu",
              as_live: bool = False) -> pl.DataFrame:
        """node, step, score, alert (and label, where the series has labels) of every row.

        ``data``: node series, or canonical flows (a frame with ``ts_start``, or any flow input
        path), turned into series with the settings the detector was fitted with. By default every
        row is read in the strides of fine-tuning's windows; ``as_live`` reads each row as live
        detection reads a node's newest step (the last of ``live_length`` rows): the very scores
        ``netflowgen detect`` gives, at the cost of one window per row."""
        series = self.series_of(data)
        steps = self.encode(series)
        if as_live:
            scores = score_plan(self.model, steps, WindowPlan.trailing(steps.bounds, self.live_length), device=device)
        else:
            scores = score_steps(self.model, steps, self.manifest["window"], self.manifest["history"], device=device)
        return steps.keys.with_columns(
            pl.Series("score", scores), pl.Series("alert", scores >= self.threshold),
            pl.Series("label", steps.labels.astype(bool)),
        )


def finetune(run: Path, series: pl.DataFrame | str | os.PathLike[str], cfg: FinetuneConfig, out: Path | None = None, *,
             allowed: pl.Expr | None = None, device: str = "cpu", show_progress: bool = True, overwrite: bool = False,
             selection: LabelSelection | None = None, score_rows: np.ndarray | None = None) -> Detector:
    """Fine-tune the run's backbone on a budget of labelled windows of ``series`` and calibrate
    the alert threshold; written to ``out`` (a detector directory) when given.

    ``series``: a series artifact's path, whose manifest says how it was built (its
    :class:`SeriesSpec`), or a node-series table, taken to be built as the run's pre-training
    series was. The detector carries that contract (in its tokenizer): it is how it turns flows
    into series later. It must agree with the run's on what the model reads (step and features).

    ``allowed`` (a boolean expression over the series' columns) restricts labelling to the fitting
    part of a split; rows outside it are never labelled, trained on or calibrated on (they may
    still be read as unlabelled history, as their features are not labels). ``selection`` gives
    the labelled windows instead of drawing them (rows of ``series`` sorted by node and step), so
    that several methods can be compared on the very same labels. ``score_rows`` (a mask) limits
    the scoring behind ``Detector.fit_scores`` to those rows and the labelled ones (NaN elsewhere).
    """
    from netflowgen.detect.threshold import calibrate_threshold
    from netflowgen.train.pretrain import load_run

    backbone, run_tokenizer, run_manifest = load_run(run, device="cpu")
    if isinstance(series, pl.DataFrame):
        spec = run_tokenizer.spec
    else:
        from netflowgen.series.write import read_series, series_spec

        source = series
        series, series_manifest = read_series(source)
        spec = series_spec(series_manifest)
        run_tokenizer.spec.require_compatible(spec, f"the run {run}", f"the series {source}")
    # The run's bins and vocabularies, never refitted, with the contract of the fitting series.
    tokenizer = dataclasses.replace(run_tokenizer, series=spec)
    length = cfg.history + cfg.window
    if length > backbone.cfg.context:
        raise ValueError(f"history + window = {length} steps exceeds the model's context ({backbone.cfg.context})")
    if cfg.init == "scratch":
        if cfg.mode != "full" or cfg.head_inputs != "hidden":
            raise ValueError("a model from scratch is trained in full mode on its hidden state (a random "
                             "backbone has nothing to probe and no surprise to read)")
        torch.manual_seed(cfg.seed)
        backbone = FlowGPT(backbone.cfg)
    series = series.sort("node", "step")
    steps = EncodedSteps.encode(series, tokenizer, cfg.attack)
    if selection is None:
        fit_rows = series.select(allowed).to_series().fill_null(False).to_numpy() if allowed is not None else None
        selection = select_labels(steps.labels, steps.bounds, cfg.budget, cfg.window, cfg.seed, allowed=fit_rows,
                                  step_order=steps.step_s)
    elif len(selection.train) != len(steps):
        raise ValueError("the label selection was drawn for another series")
    torch.manual_seed(cfg.seed)
    model = DetectorModel(backbone, 1.0 if cfg.init == "scratch" else cfg.backbone_lr_scale, cfg.head_inputs, cfg.surprise_weights)
    _set_trainable(model, cfg.mode, cfg.last_k)
    n_pos = int(steps.labels[selection.train].sum())
    n_neg = int(selection.train.sum()) - n_pos
    pos_weight = float(np.clip(n_neg / max(n_pos, 1), 1.0, 1000.0))
    train_plan = WindowPlan.labelled(steps.bounds, selection.windows, cfg.window, cfg.history)

    if cfg.head_init == "surprise" and cfg.head_inputs != "hidden":
        model.start_from_surprise(_training_features(model, steps, train_plan, selection.train, cfg.seed),
                                  n_pos / max(n_pos + n_neg, 1))
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad} if cfg.anchor else None

    def sample(step: int, rank: int) -> WindowBatch:
        rng = np.random.default_rng([cfg.seed, rank, step])
        k = rng.integers(0, len(train_plan), size=cfg.batch_size)
        batch = train_plan.take(k).collate(steps, selection.train)
        forget = torch.from_numpy(rng.random(cfg.batch_size) < cfg.node_dropout)
        batch.node = batch.node.masked_fill(forget, 0)
        return batch

    train_cfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=max(cfg.steps // 10, 1),
                            eval_every=max(cfg.steps, 1), checkpoint_every=max(cfg.steps, 1), log_every=max(cfg.steps // 20, 1),
                            seed=cfg.seed, precision="fp32")
    work = Path(out) if out is not None else None
    with (atomic_directory(work, overwrite) if work is not None else _scratch_dir()) as tmp:
        records = train_loop(model, sample, None, _loss(pos_weight, cfg.window_weight, cfg.anchor, start), train_cfg, tmp,
                             device=device, show_progress=show_progress, tokens_per_batch=cfg.batch_size * length)
        shutil.rmtree(tmp / CHECKPOINT_DIR, ignore_errors=True)
        scores = score_steps(model, steps, cfg.window, cfg.history, device=device,
                             rows=None if score_rows is None else score_rows | selection.train | selection.calibrate)
        cal = selection.calibrate if selection.calibrate.any() else selection.train
        threshold = float(calibrate_threshold(scores[cal], steps.labels[cal].astype(bool)))
        manifest = {
            "model": "flowgpt", "attack": list(cfg.attack), "mode": cfg.mode, "last_k": cfg.last_k, "init": cfg.init,
            "window": cfg.window, "history": cfg.history, "threshold": threshold, "head_inputs": cfg.head_inputs,
            "surprise_weights": cfg.surprise_weights,
            "head_init": cfg.head_init,
            "pos_weight": pos_weight, "labels": selection.describe(steps.labels),
            "config": {**asdict(cfg), "budget": str(cfg.budget)}, "source_run": str(Path(run).resolve()),
            "source_run_manifest": {k: run_manifest.get(k) for k in ("size", "tokens", "steps", "parameters")},
            "final_loss": records[-1]["loss"] if records else None,
        }
        if work is not None:
            save_weights(model, tmp / "model.safetensors")
            (tmp / "model_config.json").write_text(json.dumps(backbone.cfg.to_dict(), indent=1) + "\n")
            tokenizer.save(tmp / "tokenizer.json")
            write_manifest(tmp, DETECTOR_KIND, **manifest)
    model.eval()
    return Detector(model, tokenizer, {**manifest, "kind": DETECTOR_KIND}, scores)


@torch.no_grad()
def score_windows(model: DetectorModel, steps: EncodedSteps, window: int, history: int,
                  batch_size: int = 64, device: str | torch.device = "cpu") -> pl.DataFrame:
    """Window classification: for every run of ``window`` steps of a node (read with up to
    ``history`` steps before it), the probability that it holds an attack; with its true answer."""
    model.eval()
    plan = WindowPlan.strides(steps.bounds, window, history)
    s_all, e_all = plan.start, plan.end
    probs = np.zeros(len(plan))
    for lo, b in zip(range(0, len(plan), batch_size), plan.batches(steps, batch_size)):
        b = b.to(device)
        _, logits = model(b.traffic, b.time, b.node, b.group, b.first, b.last)
        probs[lo:lo + batch_size] = torch.sigmoid(logits.float()).cpu().numpy()
    keys = steps.keys
    return pl.DataFrame({
        "node": keys["node"].gather(s_all) if len(s_all) else pl.Series([], dtype=pl.String),
        "first_step": keys["step"].gather(s_all) if len(s_all) else pl.Series([], dtype=pl.Datetime("us", "UTC")),
        "last_step": keys["step"].gather(e_all - 1) if len(e_all) else pl.Series([], dtype=pl.Datetime("us", "UTC")),
        "score": probs,
        "label": [bool(steps.labels[a:b].any()) for a, b in zip(s_all, e_all)],
    })


@torch.no_grad()
def _training_features(model: DetectorModel, steps: EncodedSteps, plan: WindowPlan, train: np.ndarray, seed: int,
                       most: int = 2048, batch_size: int = 64) -> torch.Tensor:
    """(N, width) the step head's inputs at the labelled training steps of up to ``most`` windows."""
    model.eval()  # the head's inputs as scoring will see them (no dropout)
    rng = np.random.default_rng([seed, 17])
    pick = np.sort(rng.choice(len(plan), size=min(most, len(plan)), replace=False))
    parts = []
    for b in plan.take(pick).batches(steps, batch_size, train):
        feats = model.step_features(b.traffic, b.time, b.node, b.group)
        parts.append(feats[b.mask].float())
    return torch.cat(parts) if parts else torch.zeros((0, model.step_head.in_features))


@contextlib.contextmanager
def _scratch_dir() -> Iterator[Path]:
    """A temporary directory for a detector kept in memory only."""
    with tempfile.TemporaryDirectory(prefix="netflowgen-finetune-") as folder:
        yield Path(folder)


def with_threshold(path: str | os.PathLike[str], out: str | os.PathLike[str], threshold: float, record: dict[str, Any],
                   overwrite: bool = False) -> Path:
    """A copy of the detector at ``path`` with another alert threshold, written whole to ``out``
    (which may be ``path`` itself, with ``overwrite``); ``record``, how the threshold was chosen,
    goes into its manifest under ``threshold_calibration`` with the threshold it replaced."""
    folder = Path(path)
    manifest = read_manifest(folder, DETECTOR_KIND)
    target = Path(out)
    with atomic_directory(target, overwrite) as tmp:
        for f in sorted(folder.iterdir()):  # the model, its config and tokenizer, unchanged
            if f.is_file() and f.name != MANIFEST_NAME:
                shutil.copy2(f, tmp / f.name)
        fields = {k: v for k, v in manifest.items() if k not in ("kind", "netflowgen_version")}
        fields["threshold_calibration"] = {**record, "replaced_threshold": manifest["threshold"]}
        fields["threshold"] = float(threshold)
        write_manifest(tmp, DETECTOR_KIND, **fields)
    return target


def load_detector(path: str | os.PathLike[str], device: str = "cpu") -> Detector:
    """A detector directory, loaded to give exactly the scores it gave when written."""
    folder = Path(path)
    manifest = read_manifest(folder, DETECTOR_KIND)
    with loading(folder / "model_config.json", "the model config"):
        cfg = FlowGPTConfig.from_dict(read_json(folder / "model_config.json"))
        model = DetectorModel(FlowGPT(cfg), head_inputs=manifest.get("head_inputs", "hidden"),
                              surprise_weights=manifest.get("surprise_weights", "free"))
    load_weights(model, folder / "model.safetensors")
    model.to(device).eval()
    tokenizer = Tokenizer.load(folder / "tokenizer.json")
    if tokenizer.series is None:  # a detector of an older version recorded its series beside the tokenizer
        with loading(folder / "netflowgen.json", "the detector's series settings"):
            if manifest.get("series_config") is not None:
                tokenizer.series = SeriesSpec.from_dict(manifest["series_config"])
            else:
                tokenizer.adopt_step(manifest.get("step_seconds"))
    return Detector(model, tokenizer, manifest)


