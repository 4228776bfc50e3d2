"""Victims and attack times for trace-driven benchmark tasks, drawn so that the benchmark has power.

One victim per background (its busiest node) gives a handful of victims: figures then move by
more than the gaps between methods. Here a background gives many victims, drawn across its
activity levels, and each victim several attack episodes at times where it was observed:

* **Candidates** are the background's nodes (the series' local nodes) with at least
  ``min_active`` steps with traffic in the part they would be attacked in (before the time cut
  for fitting victims, after it for test victims).
* **Activity levels.** Candidates are ranked by their median flows per active step and cut into
  three equal levels: quiet, median, busy. Victims are drawn round-robin over the levels
  (uniformly inside each), so that every level is present in both parts, not only the busiest.
* **Unseen victims.** A node is a fitting victim or a test victim, never both.
* **Times.** An episode starts at a random instant of a step at which the victim had traffic and
  which is covered, as are the two after it (so the onset lies where the background was
  observed), the whole attack inside its part, and at least ``spacing`` from the victim's other
  episodes. Flows of the attack that end outside coverage are dropped (``within_coverage``).
* Too few candidates for the victims asked for is an error that says how many there are: a
  silently smaller benchmark would report less power than it claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

__all__ = ["Victim", "draw_victims", "episode_times"]

LEVELS = ("quiet", "median", "busy")


@dataclass(frozen=True)
class Victim:
    node: str
    part: str  # "fit" or "test"
    level: str  # quiet, median or busy
    median_flows: float


def _starts(series: pl.DataFrame, step: timedelta, covered: np.ndarray | None) -> pl.Expr:
    """Rows where an episode may start: the node had traffic, and the step and the two after
    it are covered."""
    flows = pl.col("flows_in") + pl.col("flows_out")
    if covered is None:
        return flows > 0
    w = step // timedelta(microseconds=1)
    us = pl.col("step").dt.epoch("us")
    cov = pl.Series(covered).implode()
    return (flows > 0) & us.is_in(cov) & (us + w).is_in(cov) & (us + 2 * w).is_in(cov)


def _activity(series: pl.DataFrame, cut: datetime, step: timedelta, spacing: timedelta, covered: np.ndarray | None) -> pl.DataFrame:
    """Per node: median flows per active step, active steps per part, and per part the distinct
    ``spacing``-wide time slots holding a possible episode start."""
    flows = pl.col("flows_in") + pl.col("flows_out")
    slot = pl.col("step").dt.epoch("us") // (spacing // timedelta(microseconds=1))
    start = _starts(series, step, covered)
    fit, test = pl.col("step") < cut, pl.col("step") >= cut
    return (
        series.with_columns(start.alias("_start"))
        .filter(flows > 0)
        .group_by("node")
        .agg(flows.median().alias("median_flows"), fit.sum().alias("fit_active"), test.sum().alias("test_active"),
             slot.filter(fit & pl.col("_start")).n_unique().alias("fit_slots"),
             slot.filter(test & pl.col("_start")).n_unique().alias("test_slots"))
        .sort("node")
    )


def draw_victims(series: pl.DataFrame, cut: datetime, fit: int, test: int, min_active: int, rng: np.random.Generator,
                 what: str, *, step: timedelta, spacing: timedelta, episodes: dict[str, int],
                 covered: np.ndarray | None = None) -> list[Victim]:
    """``fit`` fitting and ``test`` test victims among the nodes of a background's series; a
    candidate for a part has ``min_active`` active steps there and room for twice the part's
    ``episodes`` (distinct ``spacing`` slots with a possible start), so that its episodes fit."""
    act = _activity(series, cut, step, spacing, covered)
    ok = {part: (pl.col(f"{part}_active") >= min_active) & (pl.col(f"{part}_slots") >= 2 * episodes[part])
          for part in ("fit", "test")}
    act = act.with_columns(ok["fit"].alias("fit_ok"), ok["test"].alias("test_ok"))
    eligible = act.filter(pl.col("fit_ok") | pl.col("test_ok"))
    if eligible.height == 0:
        raise ValueError(f"{what}: no node has {min_active} active steps in either part")
    ranks = eligible["median_flows"].rank("ordinal").to_numpy() - 1
    level = np.minimum((ranks * 3) // eligible.height, 2).astype(int)
    eligible = eligible.with_columns(pl.Series("level", level))
    taken: set[str] = set()
    victims: list[Victim] = []
    for part, n in (("test", test), ("fit", fit)):
        pools = [eligible.filter((pl.col("level") == k) & pl.col(f"{part}_ok") & ~pl.col("node").is_in(list(taken)))
                 for k in range(3)]
        order = [list(rng.permutation(p.height)) for p in pools]
        available = sum(p.height for p in pools)
        if available < n:
            raise ValueError(f"{what}: {n} {'test' if part == 'test' else 'fitting'} victims asked for, but only "
                             f"{available} nodes have {min_active} active steps and room for {episodes[part]} episodes "
                             f"{spacing} apart in that part (after the ones already drawn); ask for fewer victims or "
                             "episodes, or lower min_active_steps")
        k = 0
        while sum(1 for v in victims if v.part == part) < n:
            lv = k % 3
            k += 1
            if not order[lv]:
                continue
            row = pools[lv].row(int(order[lv].pop()), named=True)
            taken.add(row["node"])
            victims.append(Victim(row["node"], part, LEVELS[lv], float(row["median_flows"])))
    return victims


def episode_times(series: pl.DataFrame, victim: str, lo: datetime, hi: datetime, k: int, length: timedelta,
                  spacing: timedelta, step: timedelta, rng: np.random.Generator, what: str,
                  covered: np.ndarray | None = None) -> list[datetime]:
    """``k`` start times for ``victim`` inside [lo, hi - length], each in a step where it had
    traffic and at least ``spacing`` apart (see the module doc); with ``covered`` (start of every
    covered step, Unix microseconds) only in a step that is covered, as are the next two, so that
    the onset and its first steps lie where the background was observed."""
    mine = series.filter(pl.col("node") == victim)
    steps = mine.filter(_starts(mine, step, covered) & (pl.col("step") >= lo) & (pl.col("step") + step + length <= hi))["step"].to_list()
    chosen: list[datetime] = []
    for i in rng.permutation(len(steps)):
        t = steps[int(i)] + timedelta(microseconds=int(rng.integers(0, step // timedelta(microseconds=1))))
        if all(abs(t - c) >= spacing for c in chosen):
            chosen.append(t)
            if len(chosen) == k:
                break
    if len(chosen) < k:
        raise ValueError(f"{what}: victim {victim} has room for only {len(chosen)} of {k} episodes "
                         f"{spacing} apart between {lo.astimezone(UTC).isoformat()} and {hi.astimezone(UTC).isoformat()}")
    return sorted(chosen)
