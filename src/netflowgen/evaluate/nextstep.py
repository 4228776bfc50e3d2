"""Next-step prediction on held-out time: the pre-trained model against simple baselines.

Every method is scored on exactly the same targets: each held-out row (the last part of every
node's series, see ``train.windows``) that has a previous step in its segment. Scores per feature:
cross-entropy of the true bin (nats) and bin accuracy (the most probable bin is the true one).
They are reported on two subsets: ``all`` held-out steps, and ``active`` steps, where the node
had traffic in the current or the next step. Node series are mostly silent steps, which every
method predicts well; the active subset shows how well traffic itself is predicted.

Baselines, made probabilistic so that their cross-entropy is finite and fair; their parameters
are fitted on the training part only:

* ``persistence``: the next bin equals the current one with probability p (the feature's
  repeat rate in training), the rest spread evenly over the other bins.
* ``node-frequency``: the node's own bin frequencies in training (add-one smoothed; the
  training frequencies of all nodes for nodes without training rows).
* ``seasonal-naive``: like persistence, but repeating the bin of the same time one day earlier;
  defined only where a day of history exists, so it is scored on those rows (``seasonal rows``)
  next to the model on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from netflowgen.model import FlowGPT
from netflowgen.tokenize.tokenizer import RELATIVE_SUFFIX, Tokenizer
from netflowgen.train.windows import TokenWindows

__all__ = ["NextStepReport", "evaluate_next_step"]


@dataclass
class MethodScore:
    cross_entropy: list[float]
    accuracy: list[float]
    targets: int

    @property
    def mean_cross_entropy(self) -> float:
        return float(np.mean(self.cross_entropy)) if self.targets else float("nan")

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean(self.accuracy)) if self.targets else float("nan")


@dataclass
class NextStepReport:
    features: list[str]
    subsets: dict[str, dict[str, MethodScore]] = field(default_factory=dict)

    @property
    def methods(self) -> dict[str, MethodScore]:
        """The scores on all held-out steps."""
        return self.subsets.get("all", {})

    def to_dict(self) -> dict:  # type: ignore[type-arg]
        return {
            "features": self.features,
            "subsets": {
                subset: {
                    name: {"mean_cross_entropy": m.mean_cross_entropy, "mean_accuracy": m.mean_accuracy,
                           "targets": m.targets, "cross_entropy": dict(zip(self.features, m.cross_entropy)),
                           "accuracy": dict(zip(self.features, m.accuracy))}
                    for name, m in methods.items()
                }
                for subset, methods in self.subsets.items()
            },
        }


def _held_out_targets(windows: TokenWindows, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Target rows and the row just before each (the current step), in val-batch order."""
    tgt, prev = [], []
    for batch in windows.val_batches(batch_size):
        keep = batch.target_rows >= 0
        tgt.append(batch.target_rows[keep].numpy())
        prev.append(batch.rows[keep].numpy())
    return (np.concatenate(tgt), np.concatenate(prev)) if tgt else (np.zeros(0, np.int64), np.zeros(0, np.int64))


def _train_rows(windows: TokenWindows) -> np.ndarray:
    segs = windows.train_segments
    return np.concatenate([np.arange(s, e) for s, e in segs]) if len(segs) else np.zeros(0, np.int64)


def _repeat(truth: np.ndarray, guess: np.ndarray, p: float, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row NLL and hit of 'the bin repeats with probability p'."""
    hit = truth == guess
    p = min(max(p, 1e-3), 1 - 1e-3)
    other = (1 - p) / max(n_bins - 1, 1)
    nll = -np.where(hit, np.log(p), np.log(other))
    return nll, (hit if p >= other else np.zeros_like(hit))


def _model_scores(model: FlowGPT, windows: TokenWindows, batch_size: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    nll_parts, hit_parts = [], []
    model.eval().to(device)
    with torch.no_grad():
        for batch in windows.val_batches(batch_size):
            b = batch.to(device)
            out = model(b.traffic, b.time, b.node, b.group)
            keep = b.targets[..., 0] >= 0
            nll_parts.append(model.feature_nll(out.logits, b.targets)[keep].double().cpu().numpy())  # (n, F)
            pred = model.feature_log_probs(out.logits)[keep].argmax(-1)  # (n, F)
            hit_parts.append((pred == b.targets[keep]).cpu().numpy())
    return np.concatenate(nll_parts), np.concatenate(hit_parts)


def evaluate_next_step(model: FlowGPT, windows: TokenWindows, tokenizer: Tokenizer, batch_size: int = 64,
                       device: str = "cpu") -> NextStepReport:
    """Score the model and the baselines on the held-out next steps of ``windows`` (tokens of
    ``tokenizer``, whose series contract gives the step width the seasonal baseline goes back by)."""
    features = list(tokenizer.features)
    bins = [tokenizer.bins[f] for f in features]
    step_seconds = tokenizer.spec.step_seconds
    g = windows._global
    traffic = np.asarray(g.traffic)
    target_rows, prev_rows = _held_out_targets(windows, batch_size)
    report = NextStepReport(features)
    if len(target_rows) == 0:
        return report
    n, n_f = len(target_rows), len(features)
    truth = traffic[target_rows].astype(np.int64)  # (n, F)
    train = _train_rows(windows)
    train_next = train[np.isin(train + 1, train)]  # rows whose successor is also a training row

    per_row: dict[str, tuple[np.ndarray, np.ndarray]] = {"flowgpt": _model_scores(model, windows, batch_size, device)}

    nll, hit = np.zeros((n, n_f)), np.zeros((n, n_f), dtype=bool)
    for f in range(n_f):
        p = float(np.mean(traffic[train_next, f] == traffic[train_next + 1, f])) if len(train_next) else 0.5
        nll[:, f], hit[:, f] = _repeat(truth[:, f], traffic[prev_rows, f].astype(np.int64), p, bins[f])
    per_row["persistence"] = (nll, hit)

    node = np.asarray(g.node).astype(np.int64)
    nll, hit = np.zeros((n, n_f)), np.zeros((n, n_f), dtype=bool)
    for f in range(n_f):
        overall = np.bincount(traffic[train, f], minlength=bins[f]).astype(np.float64) + 1
        table: dict[int, np.ndarray] = {}
        for nid in np.unique(node[target_rows]):
            rows = train[node[train] == nid] if nid != 0 else np.zeros(0, np.int64)
            counts = np.bincount(traffic[rows, f], minlength=bins[f]).astype(np.float64) + 1 if len(rows) else overall
            table[int(nid)] = counts / counts.sum()
        probs = np.stack([table[int(x)] for x in node[target_rows]])
        nll[:, f] = -np.log(probs[np.arange(n), truth[:, f]])
        hit[:, f] = probs.argmax(1) == truth[:, f]
    per_row["node-frequency"] = (nll, hit)

    # Seasonal naive: the same node one day earlier, where that row exists.
    day = int(round(86400 / step_seconds))
    step = np.asarray(g.step)
    back = target_rows - day
    seasonal = (back >= 0) & (np.take(node, np.maximum(back, 0)) == node[target_rows]) & (
        np.take(step, np.maximum(back, 0)) == step[target_rows] - 86400)
    if seasonal.any():
        tb = train_next[train_next + 1 - day >= 0]
        tb = tb[np.take(step, tb + 1 - day) == step[tb + 1] - 86400]
        nll, hit = np.zeros((n, n_f)), np.zeros((n, n_f), dtype=bool)
        for f in range(n_f):
            p = float(np.mean(traffic[tb + 1 - day, f] == traffic[tb + 1, f])) if len(tb) else 0.5
            nll[:, f], hit[:, f] = _repeat(truth[:, f], traffic[np.maximum(back, 0), f].astype(np.int64), p, bins[f])
        per_row["seasonal-naive"] = (nll, hit)

    # Bin 0 is "no traffic" for traffic features only (a relative token's 0 is its largest drop).
    level = [i for i, name in enumerate(features) if not name.endswith(RELATIVE_SUFFIX)]
    active = truth[:, level].any(axis=1) | traffic[prev_rows][:, level].any(axis=1)
    subsets = {"all": np.ones(n, dtype=bool), "active": active}
    if seasonal.any():
        subsets["seasonal rows"] = seasonal
        subsets["seasonal active rows"] = seasonal & active
    for subset, mask in subsets.items():
        scores = {}
        for name, (nll, hit) in per_row.items():
            if name == "seasonal-naive" and not subset.startswith("seasonal"):
                continue  # defined on the seasonal rows only
            k = int(mask.sum())
            scores[name] = MethodScore(nll[mask].mean(0).tolist() if k else [float("nan")] * n_f,
                                       hit[mask].mean(0).tolist() if k else [float("nan")] * n_f, k)
        report.subsets[subset] = scores
    return report
