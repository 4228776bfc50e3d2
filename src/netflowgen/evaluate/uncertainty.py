"""Uncertainty of detection figures: a bootstrap over victims, and paired differences.

A PR-AUC on one test part is one draw: other victims, or other labels, would give another. The
interval says how far it could move:

* **Resampling unit: the node.** Steps of one node are not independent (an attack lasts many
  steps, a busy node is busy all day), so steps are never resampled one by one. Each replicate
  draws the test part's nodes with replacement, victims (nodes with an attack step) and the other
  nodes apart (stratified), so that every replicate has as many victims as the real test part,
  and keeps every step of a drawn node, as often as it was drawn.
* **Label draws.** With several seeds (label draws) a replicate also draws the seeds with
  replacement; its statistic is the mean over its seeds. The interval then holds both the victims'
  and the label draw's variation.
* **Paired differences.** Two methods are compared on the same replicates (the same nodes and the
  same seeds), so what they share cancels. A method *wins* only when the 95% interval of its
  difference excludes 0; otherwise the comparison is a tie, whatever the means say.

Intervals are percentile intervals of ``replicates`` replicates (default 1000), seeded.
PR-AUC is average precision as scikit-learn computes it (a step function over the distinct
scores, ties counted together), with replicate weights: a node drawn twice counts twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Bootstrap", "Estimate", "average_precision", "compare_methods", "verdict"]


def average_precision(y: np.ndarray, s: np.ndarray, w: np.ndarray | None = None) -> float:
    """Weighted average precision (scikit-learn's definition; equal to it with unit weights).

    >>> from sklearn.metrics import average_precision_score
    >>> y, s = np.array([1, 0, 1, 1, 0, 0]), np.array([0.9, 0.8, 0.8, 0.3, 0.2, 0.2])
    >>> bool(np.isclose(average_precision(y, s), average_precision_score(y, s)))
    True
    """
    return float(_ap_sorted(*_sort(y, s), None if w is None else w[np.argsort(-s, kind="stable")])[0])


def _sort(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-np.asarray(s, dtype=np.float64), kind="stable")
    s_sorted = np.asarray(s, dtype=np.float64)[order]
    # The last position of every run of equal scores: thresholds fall between distinct scores.
    ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    return np.asarray(y, dtype=bool)[order], ends


def _ap_sorted(y: np.ndarray, ends: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """AP of rows already sorted by descending score; ``w`` (R, N) replicate weights or None."""
    weights = np.ones((1, len(y))) if w is None else np.atleast_2d(w)
    tp = np.cumsum(weights * y, axis=1)[:, ends]
    seen = np.cumsum(weights, axis=1)[:, ends]
    positives = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(seen > 0, tp / seen, 0.0)
        recall = tp / positives
    gain = np.diff(np.concatenate([np.zeros((len(weights), 1)), recall], axis=1), axis=1)
    out = np.sum(gain * precision, axis=1)
    return np.where(positives[:, 0] > 0, out, np.nan)


@dataclass(frozen=True)
class Estimate:
    """A figure, the mean over seeds on the whole test part, with its 95% interval."""

    value: float | None
    low: float | None
    high: float | None

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "low": self.low, "high": self.high}


class Bootstrap:
    """Replicates of one test part: draws of its nodes (victims and others apart) and seeds.

    ``nodes``: the node of every test row; ``labels``: its attack flag (rows in a fixed order,
    the same for every method's scores).
    """

    def __init__(self, nodes: Sequence[str] | np.ndarray, labels: np.ndarray, seeds: int, replicates: int = 1000,
                 seed: int = 0, level: float = 0.95) -> None:
        names, index = np.unique(np.asarray(nodes), return_inverse=True)
        self.labels = np.asarray(labels, dtype=bool)
        self.index = index
        victim = np.zeros(len(names), bool)
        victim[index[self.labels]] = True
        self.victims = int(victim.sum())
        self.nodes = len(names)
        rng = np.random.default_rng(seed)
        counts = np.zeros((replicates, len(names)))
        for group in (np.flatnonzero(victim), np.flatnonzero(~victim)):
            if len(group):
                picks = rng.integers(0, len(group), size=(replicates, len(group)))
                np.add.at(counts, (np.arange(replicates)[:, None], group[picks]), 1)
        self.node_counts = counts  # (R, nodes)
        self.seed_picks = rng.integers(0, max(seeds, 1), size=(replicates, max(seeds, 1)))  # (R, seeds)
        self.alpha = (1 - level) / 2

    @property
    def replicates(self) -> int:
        return len(self.node_counts)

    def _per_seed(self, scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """AP of every seed on the whole part (S,) and on every replicate (R, S)."""
        full, reps = [], []
        for s in scores:
            full.append(average_precision(self.labels, s))
            reps.append(self._replicate_ap(np.asarray(s, dtype=np.float64)))
        return np.array(full), np.stack(reps, axis=1)

    def _replicate_ap(self, s: np.ndarray) -> np.ndarray:
        """AP on every replicate at once. Precision only matters where recall grows, at the
        distinct scores that hold a positive; there, each replicate's true positives and rows
        seen are its node counts times each node's running tallies: two small matrix products
        instead of a pass over every row per replicate."""
        order = np.argsort(-s, kind="stable")
        y, node, ss = self.labels[order], self.index[order], s[order]
        ends = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])
        group = np.repeat(np.arange(len(ends)), np.diff(np.r_[-1, ends]))
        hit = np.unique(group[y])  # groups with a positive, in score order
        if len(hit) == 0:
            return np.full(self.replicates, np.nan)
        seg = np.searchsorted(ends[hit], np.arange(len(s)), side="left")  # first such group at or after each row
        keep = seg < len(hit)
        j, g = node[keep], seg[keep]
        shape = (self.nodes, len(hit))
        seen = np.bincount(j * len(hit) + g, minlength=shape[0] * shape[1]).reshape(shape).cumsum(axis=1)
        pos = np.bincount(j[y[keep]] * len(hit) + g[y[keep]], minlength=shape[0] * shape[1]).reshape(shape).cumsum(axis=1)
        tp = self.node_counts @ pos  # (R, groups)
        rows = self.node_counts @ seen
        total = tp[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = np.diff(np.concatenate([np.zeros((len(tp), 1)), tp], axis=1), axis=1) / total[:, None]
            precision = np.where(rows > 0, tp / rows, 0.0)
            return np.where(total > 0, np.sum(gain * precision, axis=1), np.nan)

    def _mean_over_picked_seeds(self, per_seed: np.ndarray) -> np.ndarray:
        return np.nanmean(np.take_along_axis(per_seed, self.seed_picks[:, : per_seed.shape[1]] % per_seed.shape[1], axis=1), axis=1)

    def _estimate(self, value: float, reps: np.ndarray) -> Estimate:
        reps = reps[np.isfinite(reps)]
        if not np.isfinite(value) or reps.size == 0:
            return Estimate(None, None, None)
        lo, hi = np.quantile(reps, [self.alpha, 1 - self.alpha])
        return Estimate(float(value), float(lo), float(hi))

    def pr_auc(self, scores: Sequence[np.ndarray]) -> Estimate:
        """Mean PR-AUC over seeds (one score array per seed) with its interval."""
        full, reps = self._per_seed(scores)
        return self._estimate(float(np.nanmean(full)), self._mean_over_picked_seeds(reps))

    def compare(self, scores: Mapping[str, Sequence[np.ndarray]], reference: str) -> dict[str, Estimate]:
        """Every method's PR-AUC minus the reference's, on the same replicates (paired)."""
        per = {m: self._per_seed(s) for m, s in scores.items()}
        ref_full, ref_reps = per[reference]
        out = {}
        for m, (full, reps) in per.items():
            if m == reference:
                continue
            n = min(reps.shape[1], ref_reps.shape[1])
            diff_reps = self._mean_over_picked_seeds(reps[:, :n] - ref_reps[:, :n])
            out[m] = self._estimate(float(np.nanmean(full[:n] - ref_full[:n])), diff_reps)
        return out


def verdict(diff: Estimate) -> str:
    """A difference in words: it wins or loses only when its interval excludes 0."""
    if diff.value is None:
        return "n/a"
    if not diff.excludes_zero:
        return "tie"
    return "wins" if diff.value > 0 else "loses"


def compare_methods(scores: Mapping[tuple[str, str], Sequence[np.ndarray]], nodes: np.ndarray, labels: np.ndarray,
                    baselines: Sequence[str], seeds: int, replicates: int = 1000, seed: int = 0,
                    tuned: Sequence[str] | None = None, bases: Mapping[str, str] | None = None) -> dict[str, object]:
    """Intervals and paired comparisons of one task's test part.

    ``scores[(method, budget)]``: one test-row score array per seed (the seeds in the same
    order for every method). Per budget: every method's PR-AUC with its interval, the best
    baseline (highest PR-AUC among ``baselines``), every other method's paired difference from
    it, and each fine-tuned FlowGPT's difference from ``scratch`` where that was run (``tuned``
    names them; by default the methods whose names start with flowgpt), and from the zero-label
    ``surprise`` where that was run (what the labels added). ``bases`` maps each ablation variant
    to the method it changes one thing of: their paired difference is the ablation's effect.
    """
    boot = Bootstrap(nodes, labels, seeds=seeds, replicates=replicates, seed=seed)
    out: dict[str, object] = {"victims": boot.victims, "nodes": boot.nodes, "replicates": replicates, "budgets": {}}
    for budget in dict.fromkeys(b for _, b in scores):
        mine = {m: s for (m, b), s in scores.items() if b == budget and len(s)}
        intervals = {m: boot.pr_auc(s) for m, s in mine.items()}
        entry: dict[str, object] = {"pr_auc": {m: e.to_dict() for m, e in intervals.items()}}
        present = [m for m in baselines if m in intervals and intervals[m].value is not None]
        if present:
            ref = max(present, key=lambda m: intervals[m].value)  # type: ignore[arg-type, return-value]
            diffs = boot.compare(mine, ref)
            entry["reference"] = ref
            entry["vs_reference"] = {m: {**d.to_dict(), "verdict": verdict(d)} for m, d in diffs.items()}
        if "scratch" in mine:
            fine = {m: s for m, s in mine.items()
                    if (m in tuned if tuned is not None else m.startswith("flowgpt")) or m == "scratch"}
            diffs = boot.compare(fine, "scratch")
            entry["vs_scratch"] = {m: {**d.to_dict(), "verdict": verdict(d)} for m, d in diffs.items()}
        if "surprise" in mine:
            fine = {m: s for m, s in mine.items()
                    if (m in tuned if tuned is not None else m.startswith("flowgpt")) or m.startswith("surprise")}
            diffs = boot.compare(fine, "surprise")
            entry["vs_zero_label"] = {m: {**d.to_dict(), "verdict": verdict(d)} for m, d in diffs.items()}
        for variant, base in (bases or {}).items():
            if variant in mine and base in mine:
                d = boot.compare({variant: mine[variant], base: mine[base]}, base)[variant]
                entry.setdefault("vs_base", {})[variant] = {**d.to_dict(), "verdict": verdict(d), "base": base}
        out["budgets"][budget] = entry  # type: ignore[index]
    return out
