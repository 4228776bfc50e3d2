"""Labelled node steps for detection: which steps are positive, and which ones a label budget buys.

Few-label detection is only honest if "few" is counted the same way for every method. Here a
label budget buys *labelled windows*: runs of ``window`` consecutive steps of one node whose
every step's label is then known (an operator looking at a stretch of a node's traffic labels
all of it). The budget is given as

  * a count of labelled steps (``200`` or ``200steps``): windows are drawn until that many steps
    are labelled;
  * a fraction of the fitting part's steps (``0.05``);
  * a count of attack episodes (``3ep``): the windows that cover those episodes (each from
    ``window // 2`` steps before its onset) plus as many steps again of windows without attack.

Windows are drawn with a seed, half of them (by steps) holding at least one positive step when
there are any, because a uniform draw at a realistic attack rate buys no positives at all. The
labelled windows are then split by time: the latest quarter (by steps) calibrates the alert
threshold and stops nothing else; the rest trains. Every method (FlowGPT, trees, the volume
detector) gets the same rows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from netflowgen.series.spec import attack_labels, segment_bounds

__all__ = ["Budget", "LabelSelection", "attack_labels", "parse_budget", "segment_bounds", "select_labels"]


@dataclass(frozen=True)
class Budget:
    """How many labels a method may use."""

    amount: float
    unit: str  # "steps", "fraction" or "episodes"

    def __str__(self) -> str:
        if self.unit == "fraction" and self.amount >= 1:
            return "every label"
        return {"steps": f"{int(self.amount)} steps", "fraction": f"{self.amount:g} of steps",
                "episodes": f"{int(self.amount)} episodes"}[self.unit]


def parse_budget(text: str | float) -> Budget:
    """``0.05`` (fraction of steps), ``200`` / ``200steps`` (steps), ``3ep`` / ``3episodes``, ``all``
    (every step of the fitting part: the fully supervised reference).

    >>> parse_budget("0.1"), parse_budget("300"), parse_budget("2ep"), parse_budget("all")
    (Budget(amount=0.1, unit='fraction'), Budget(amount=300.0, unit='steps'), Budget(amount=2.0, unit='episodes'), Budget(amount=1.0, unit='fraction'))
    """
    t = str(text).strip().lower().replace(" ", "")
    if t == "all":
        return Budget(1.0, "fraction")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(steps?|ep|eps|episodes?|)", t)
    if not m:
        raise ValueError(f"not a label budget: {text!r} (use a fraction like 0.05, a step count like 200, or 3ep)")
    value, unit = float(m.group(1)), m.group(2)
    if unit.startswith("ep"):
        if value < 1 or value != int(value):
            raise ValueError(f"an episode budget is a whole number >= 1: {text!r}")
        return Budget(value, "episodes")
    if unit == "" and value < 1:
        if value <= 0:
            raise ValueError(f"a label budget must be positive: {text!r}")
        return Budget(value, "fraction")
    if value < 1 or value != int(value):
        raise ValueError(f"a step budget is a whole number >= 1: {text!r}")
    return Budget(value, "steps")


@dataclass(frozen=True)
class LabelSelection:
    """The labelled rows a budget bought, as masks over the table's rows."""

    train: np.ndarray  # bool (rows,)
    calibrate: np.ndarray  # bool (rows,)
    windows: np.ndarray  # (n, 2) [start, end) rows of every labelled window used for training
    calibrate_windows: np.ndarray  # (m, 2)
    budget: Budget

    def describe(self, labels: np.ndarray) -> dict[str, object]:
        return {
            "budget": str(self.budget),
            "train_steps": int(self.train.sum()),
            "train_positive_steps": int(labels[self.train].sum()),
            "calibrate_steps": int(self.calibrate.sum()),
            "calibrate_positive_steps": int(labels[self.calibrate].sum()),
            "windows": int(len(self.windows) + len(self.calibrate_windows)),
        }


def _tile(bounds: np.ndarray, window: int) -> np.ndarray:
    """Non-overlapping windows of up to ``window`` rows covering every segment."""
    out = []
    for s, e in bounds:
        starts = np.arange(s, e, window)
        out.append(np.stack([starts, np.minimum(starts + window, e)], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), dtype=np.int64)


def _episodes(labels: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """[onset, end) rows of every run of positive steps inside a segment."""
    out = []
    for s, e in bounds:
        lab = labels[s:e].astype(np.int8)
        d = np.diff(np.concatenate(([0], lab, [0])))
        on, off = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
        out += [(s + a, s + b) for a, b in zip(on, off)]
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def select_labels(labels: np.ndarray, bounds: np.ndarray, budget: Budget, window: int, seed: int,
                  allowed: np.ndarray | None = None, step_order: np.ndarray | None = None,
                  calibrate_fraction: float = 0.25) -> LabelSelection:
    """Draw the labelled windows a budget buys (see the module docstring).

    ``allowed`` masks the rows that may be labelled (the fitting part of a split); ``step_order``
    (the rows' times) orders the windows for the train/calibrate split.
    """
    n = len(labels)
    allowed = np.ones(n, dtype=bool) if allowed is None else allowed
    # Segments restricted to allowed rows: a window never reaches into the test part.
    pieces = []
    for s, e in bounds:
        ok = allowed[s:e].astype(np.int8)
        d = np.diff(np.concatenate(([0], ok, [0])))
        pieces += [(s + a, s + b) for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1))]
    fit_bounds = np.asarray(pieces, dtype=np.int64).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    tiles = _tile(fit_bounds, window)
    if len(tiles) == 0:
        raise ValueError("no steps to label: the fitting part is empty")
    has_pos = np.array([labels[s:e].any() for s, e in tiles], dtype=bool)
    fit_steps = int(allowed.sum())
    if budget.unit == "episodes":
        eps = _episodes(labels, fit_bounds)
        if len(eps) == 0:
            raise ValueError("an episode budget, but the fitting part holds no attack episode")
        take = rng.choice(len(eps), size=min(int(budget.amount), len(eps)), replace=False)
        chosen = []
        for on, end in eps[np.sort(take)]:
            seg = fit_bounds[(fit_bounds[:, 0] <= on) & (fit_bounds[:, 1] > on)][0]
            lo = max(seg[0], on - window // 2)
            for a in range(lo, end, window):
                chosen.append((a, min(a + window, seg[1])))
        windows = np.asarray(chosen, dtype=np.int64)
        want_neg = int((windows[:, 1] - windows[:, 0]).sum())
        neg = _draw(tiles[~has_pos], want_neg, rng)
        windows = np.concatenate([windows, neg]) if len(neg) else windows
    else:
        want = int(math.ceil(budget.amount * fit_steps)) if budget.unit == "fraction" else int(budget.amount)
        want = max(min(want, fit_steps), 1)
        pos = _draw(tiles[has_pos], want // 2 if has_pos.any() else 0, rng)
        got = int((pos[:, 1] - pos[:, 0]).sum()) if len(pos) else 0
        neg = _draw(tiles[~has_pos], want - got, rng)
        windows = np.concatenate([w for w in (pos, neg) if len(w)])
    windows = np.unique(windows, axis=0)
    # The latest windows (by the time of their first step) calibrate; at least one when possible.
    order = np.argsort((step_order[windows[:, 0]] if step_order is not None else windows[:, 0]), kind="stable")
    windows = windows[order]
    sizes = windows[:, 1] - windows[:, 0]
    cum = np.cumsum(sizes)
    n_train = int(np.searchsorted(cum, cum[-1] * (1 - calibrate_fraction), side="left")) + 1 if len(windows) > 1 else 1
    n_train = min(max(n_train, 1), max(len(windows) - 1, 1))
    train_w, cal_w = windows[:n_train], windows[n_train:]
    # Positives must reach both parts where the budget has more than one positive window, and
    # training first where it has only one (a threshold can fall back on training windows, a
    # detector cannot learn an attack it never saw).
    pos_w = np.array([labels[s:e].any() for s, e in windows], dtype=bool)
    if pos_w.sum() >= 2 and not pos_w[n_train:].any():
        last_pos = np.flatnonzero(pos_w[:n_train])[-1]
        cal_w = np.concatenate([cal_w, windows[last_pos : last_pos + 1]])
        train_w = np.delete(train_w, last_pos, axis=0)
    elif pos_w.any() and not pos_w[:n_train].any():
        first_pos = n_train + int(np.flatnonzero(pos_w[n_train:])[0])
        train_w = np.concatenate([train_w, windows[first_pos : first_pos + 1]])
        cal_w = np.delete(cal_w, first_pos - n_train, axis=0)
    train, cal = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for s, e in train_w:
        train[s:e] = True
    for s, e in cal_w:
        cal[s:e] = True
    return LabelSelection(train, cal & ~train, train_w, cal_w, budget)


def _draw(tiles: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Random windows from ``tiles`` until they hold ``steps`` steps (or all of them)."""
    if steps <= 0 or len(tiles) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    order = rng.permutation(len(tiles))
    sizes = tiles[order, 1] - tiles[order, 0]
    k = int(np.searchsorted(np.cumsum(sizes), steps, side="left")) + 1
    return tiles[np.sort(order[:k])]
