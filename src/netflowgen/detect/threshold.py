"""The alert threshold a detector carries, chosen on a validation part (never on the part it
scores): every detector (the baselines and the fine-tuned model) calibrates with this one rule,
and the evaluation reads the same function."""

from __future__ import annotations

import enum
import logging
from typing import Any

import numpy as np
import polars as pl

__all__ = ["ThresholdRule", "calibrate_threshold", "with_margin"]

log = logging.getLogger(__name__)


class ThresholdRule(str, enum.Enum):
    """How :func:`calibrate_threshold` picks the alert threshold."""

    F1 = "f1"
    """The threshold of maximal F1 on the validation part."""
    FPR = "fpr"
    """The lowest threshold whose false-positive rate is at most ``max_fpr``."""


def _as_array(values: Any, what: str) -> np.ndarray:
    if isinstance(values, pl.Series):
        if values.null_count():
            raise ValueError(f"calibrate_threshold: {what} has {values.null_count()} null value(s)")
        return values.to_numpy()
    return np.asarray(values)


def calibrate_threshold(scores: Any, labels: Any, *, rule: ThresholdRule | str = ThresholdRule.F1,
                        max_fpr: float = 0.001) -> float:
    """The alert threshold (alert = ``score >= threshold``) chosen on a validation part.

    Candidates are the distinct validation scores; the rule picks which validation steps alert:

    * ``rule="f1"`` (default): those of maximal F1. Ties go to the fewest alerts. F1 values are
      exact ratios of counts, so ties are exact.
    * ``rule="fpr"``: the most alerts whose false-positive rate (negatives alerting / negatives)
      is at most ``max_fpr``; just above the highest score when even the highest candidate
      exceeds it (then nothing alerts on the validation part).

    The threshold then sits mid-way between the lowest validation score that alerts and the
    highest one that does not, as a decision tree places a split. Every threshold in that gap
    makes the same validation alerts, and with a few labelled episodes the lowest alerting
    score is one episode's: a threshold right at it (the earlier rule) missed every attack that
    scores a little lower, while benign steps sat far below (issue 14's side-by-side run:
    benign at most 0.48, validation attacks from 0.98, unseen attack types 0.71 to 0.99).

    Without positives in the validation part F1 is undefined: ``"f1"`` then falls back to the
    ``"fpr"`` rule with ``max_fpr=0``, i.e. the smallest float above every validation score (no
    validation step alerts), and logs a warning. Without negatives every threshold has a false
    positive rate of 0: ``"fpr"`` returns the lowest score.

    >>> round(calibrate_threshold([0.1, 0.4, 0.35, 0.8], [False, False, True, True]), 6)  # 0.35 and up alert
    0.225
    >>> round(calibrate_threshold([0.1, 0.4, 0.35, 0.8], [False, False, True, True], rule="fpr", max_fpr=0.5), 6)
    0.225
    """
    try:
        rule = ThresholdRule(rule)
    except ValueError as e:
        raise ValueError(f"calibrate_threshold: rule must be one of {[r.value for r in ThresholdRule]}, got {rule!r}") from e
    if not 0.0 <= max_fpr <= 1.0:
        raise ValueError(f"calibrate_threshold: max_fpr must be in [0, 1], got {max_fpr}")
    s = _as_array(scores, "scores").astype(np.float64, copy=False).ravel()
    y = _as_array(labels, "labels")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("calibrate_threshold: labels must be booleans (or 0/1)")
        y = y.astype(np.bool_)
    y = y.ravel()
    if s.size != y.size:
        raise ValueError(f"calibrate_threshold: {s.size} scores but {y.size} labels")
    if s.size == 0:
        raise ValueError("calibrate_threshold: no validation rows")
    if not np.isfinite(s).all():
        raise ValueError(f"calibrate_threshold: {int((~np.isfinite(s)).sum())} score(s) are NaN or infinite")

    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Counts at each distinct score, taken as the threshold (descending): the last position of
    # each run of equal scores includes all of them.
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    thresholds = s_sorted[last]
    tp = np.cumsum(y_sorted)[last]
    fp = np.cumsum(~y_sorted)[last]
    positives = int(y.sum())
    negatives = s.size - positives

    if rule is ThresholdRule.F1 and positives == 0:
        log.warning("calibrate_threshold: no positives in the validation part; F1 is undefined, "
                    "using the lowest threshold at which no validation step alerts")
        rule, max_fpr = ThresholdRule.FPR, 0.0
    if rule is ThresholdRule.FPR:
        if negatives == 0:
            return float(thresholds[-1])
        ok = fp / negatives <= max_fpr  # a prefix: fp only grows as the threshold falls
        n_ok = int(np.count_nonzero(ok))
        if n_ok == 0:
            return float(np.nextafter(s_sorted[0], np.inf))
        return _mid_gap(thresholds, n_ok - 1)
    f1 = 2 * tp / (tp + fp + positives)
    return _mid_gap(thresholds, int(np.argmax(f1)))  # argmax: first = highest threshold among ties


def _mid_gap(thresholds: np.ndarray, i: int) -> float:
    """Mid-way between candidate ``i`` (the lowest score that alerts) and the next lower score."""
    high = float(thresholds[i])
    if i + 1 == thresholds.size:
        return high  # every validation step alerts: nothing below to leave room to
    low = float(thresholds[i + 1])
    mid = low + (high - low) / 2  # no overflow for huge scores
    # Adjacent floats have no midpoint: keep the alerting score, which changes no validation alert.
    return mid if low < mid <= high else high


def with_margin(threshold: float, margin: float) -> float:
    """A probability threshold raised by ``margin`` the way a rate limit is: the odds, which grow
    with the evidence as a rate grows with the traffic, times 1 + margin (0.8 is odds 4; with
    margin 0.5, odds 6: 0.857). A threshold at 0 or 1 stays where it is.

    >>> round(with_margin(0.8, 0.5), 4), with_margin(0.8, 0.0)
    (0.8571, 0.8)
    """
    if margin == 0.0 or not 0.0 < threshold < 1.0:
        return threshold
    odds = threshold / (1.0 - threshold) * (1.0 + margin)
    return odds / (1.0 + odds)
