"""Label budgets: what they buy, and that they never reach outside the fitting part."""

from __future__ import annotations

import numpy as np
import pytest

from netflowgen.detect.labels import parse_budget, segment_bounds, select_labels


def _labels(n: int = 400, episodes: tuple[tuple[int, int], ...] = ((50, 55), (150, 160), (300, 304))) -> np.ndarray:
    y = np.zeros(n, dtype=np.uint8)
    for a, b in episodes:
        y[a:b] = 1
    return y


def test_parse_budget() -> None:
    assert parse_budget("0.05").unit == "fraction"
    assert parse_budget("120steps").amount == 120 and parse_budget("120").unit == "steps"
    assert parse_budget("2 episodes").unit == "episodes"
    for bad in ("-1", "0", "1.5", "2.5ep", "lots"):
        with pytest.raises(ValueError):
            parse_budget(bad)


def test_segment_bounds_split_on_node_and_gap() -> None:
    node = np.array([1, 1, 1, 2, 2])
    step = np.array([0, 60, 180, 0, 60])
    assert segment_bounds(node, step, 60).tolist() == [[0, 2], [2, 3], [3, 5]]


def test_step_budget_buys_that_many_steps_half_of_them_with_attacks() -> None:
    y = _labels()
    bounds = np.array([[0, 200], [200, 400]])
    sel = select_labels(y, bounds, parse_budget("96"), window=16, seed=3)
    used = sel.train | sel.calibrate
    assert 96 <= used.sum() < 96 + 16  # whole windows, stopping at the first that reaches the budget
    assert not (sel.train & sel.calibrate).any()
    pos_windows = sum(y[s:e].any() for s, e in np.concatenate([sel.windows, sel.calibrate_windows]))
    assert pos_windows >= 2  # the positive half: 48 steps are 3 windows of 16
    assert y[sel.calibrate].any() and y[sel.train].any()
    again = select_labels(y, bounds, parse_budget("96"), window=16, seed=3)
    assert np.array_equal(again.train, sel.train) and np.array_equal(again.calibrate, sel.calibrate)


def test_fraction_and_episode_budgets() -> None:
    y = _labels()
    bounds = np.array([[0, 400]])
    frac = select_labels(y, bounds, parse_budget("0.25"), window=20, seed=0)
    assert 100 <= (frac.train | frac.calibrate).sum() < 120
    eps = select_labels(y, bounds, parse_budget("2ep"), window=20, seed=0)
    labelled = eps.train | eps.calibrate
    covered = [bool(labelled[a:b].all()) for a, b in ((50, 55), (150, 160), (300, 304))]
    assert sum(covered) == 2  # exactly the two drawn episodes, each wholly labelled
    windows = np.concatenate([eps.windows, eps.calibrate_windows])
    pos_steps = sum(e - s for s, e in windows if y[s:e].any())
    neg_steps = sum(e - s for s, e in windows if not y[s:e].any())
    assert pos_steps <= neg_steps < pos_steps + 20  # as many steps again without attack
    with pytest.raises(ValueError, match="no attack episode"):
        select_labels(np.zeros(100, np.uint8), np.array([[0, 100]]), parse_budget("1ep"), window=10, seed=0)


def test_labels_never_leave_the_allowed_rows() -> None:
    y = _labels()
    bounds = np.array([[0, 400]])
    allowed = np.zeros(400, dtype=bool)
    allowed[:250] = True  # the test part (rows 250..) holds the third episode
    for budget in ("0.5", "200", "3ep"):
        sel = select_labels(y, bounds, parse_budget(budget), window=16, seed=1, allowed=allowed)
        assert not (sel.train | sel.calibrate)[250:].any(), budget
        assert (sel.windows[:, 1] <= 250).all() and (sel.calibrate_windows[:, 1] <= 250).all()


def test_a_single_positive_window_goes_to_training() -> None:
    y = np.zeros(300, dtype=np.uint8)
    y[280:283] = 1  # the only episode, in the latest window: calibration would take it
    sel = select_labels(y, np.array([[0, 300]]), parse_budget("1ep"), window=16, seed=0)
    assert y[sel.train].sum() == 3 and y[sel.calibrate].sum() == 0
