"""The one window plan (detect/windows.py): its three constructors read inside segments, and the
scoring plans count every row exactly once."""

from __future__ import annotations

import numpy as np
import pytest

from netflowgen.train.steps import WindowPlan


def random_bounds(rng: np.random.Generator) -> np.ndarray:
    lengths = rng.integers(1, 40, rng.integers(1, 8))
    ends = np.cumsum(lengths)
    return np.stack([ends - lengths, ends], axis=1)


def segment_of(bounds: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.searchsorted(bounds[:, 0], rows, side="right") - 1


@pytest.mark.parametrize("seed", range(25))
def test_every_plan_reads_inside_one_segment_and_scoring_plans_count_each_row_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    bounds = random_bounds(rng)
    n = int(bounds[-1, 1])
    window, history = int(rng.integers(1, 10)), int(rng.integers(0, 10))
    for plan in (WindowPlan.strides(bounds, window, history), WindowPlan.trailing(bounds, history + window)):
        counted = np.zeros(n, dtype=int)
        for b, s, e in zip(plan.begin, plan.start, plan.end):
            assert b <= s < e and e - b <= plan.length
            assert segment_of(bounds, np.array([b]))[0] == segment_of(bounds, np.array([e - 1]))[0]
            counted[s:e] += 1
        assert (counted == 1).all()
    # Trailing: every row reads as much of its own past as the length and its segment allow.
    trailing = WindowPlan.trailing(bounds, history + window)
    seg_start = bounds[segment_of(bounds, trailing.start), 0]
    assert np.array_equal(trailing.start - trailing.begin, np.minimum(history + window - 1, trailing.start - seg_start))
    # Labelled windows: read with up to `history` rows before them, never before their segment.
    starts = np.flatnonzero(rng.random(n) < 0.2)
    windows = np.stack([starts, np.minimum(starts + window, bounds[segment_of(bounds, starts), 1])], axis=1)
    labelled = WindowPlan.labelled(bounds, windows, window, history)
    assert labelled.length == history + window
    assert np.array_equal(labelled.begin, np.maximum(starts - history, bounds[segment_of(bounds, starts), 0]))


def test_holding_keeps_the_windows_of_the_wanted_rows() -> None:
    plan = WindowPlan.strides(np.array([[0, 10]]), 4, 2)
    wanted = np.zeros(10, dtype=bool)
    wanted[5] = True
    kept = plan.holding(wanted)
    assert (kept.start.tolist(), kept.end.tolist()) == ([4], [8])
