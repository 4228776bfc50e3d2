"""Coverage: the time intervals a flow dataset's inputs actually observed.

Missing data is not zero traffic. An archive has holes: a lost nfcapd rotation file, a collector
restart, a sensor that was down, or (``aip-honeynet``) only the first minutes of every hourly log
kept. A node series fills silent steps with zero rows only inside coverage; a step outside it is
absent, and a node's segment ends there (``series/build.py``).

Rules, per source file (a flow's ``source_file``):

* A file observed the span of its records' **end times**: Zeek writes a record when its
  connection ends, a NetFlow exporter when the flow ends or times out, Argus at each status
  interval. Headers are not used: Zeek writes ``#open``/``#close`` in the sensor's local time with
  no zone, records of connections that ended minutes before ``#open`` are logged in the file, and
  a file cut short (the AIP files keep only their first 4,999 records) keeps its ``#close``.
  Where a header and the records disagree, the records are right.
* **Stragglers** do not stretch a file's span: a few records of each AIP file end about an hour
  before the rest (connections expired at rotation and written late), and after them the end
  times stay silent for minutes that the kept head of the log never reached. The end times are
  split into runs at silences longer than :data:`STRAGGLER_SILENCE`; leading (and trailing) runs
  are dropped while together they hold less than :data:`STRAGGLER_SHARE` of the file's records.
  At most that share is trimmed at either edge, so a sparse capture (one flow every few minutes)
  loses little. Silences inside what remains are real silence (a file is one observation window)
  unless longer than :data:`MAX_SILENCE`: a 1970 clock beside real ones, or a capture resumed a
  week later, is two windows.
* A file listened about one mean spacing of its end times before its first record and after its
  last, so its interval is widened by that much on each side (consecutive rotation files meet),
  and it is at least :data:`MIN_WIDTH` wide (one flow observed one second).
* A dataset's coverage is the union of its files' intervals. A tool that knows its window better
  than its records (the simulator; a collector's rotation) may state it instead.

A step of width ``w`` is **covered** when at least ``min_fraction`` (default half) of it lies
inside coverage.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = ["Coverage", "CoverageBuilder", "dataset_coverage", "MAX_SILENCE", "MIN_WIDTH", "SILENCE_FACTOR", "STRAGGLER_SHARE", "STRAGGLER_SILENCE", "coverage_of_flows"]

#: Silence between record end times that separates a straggling run from the rest of a file.
STRAGGLER_SILENCE = timedelta(seconds=60)
#: ... and longer than this many times the file's mean distance between end times (a sparse
#: capture's silences are its normal rhythm, not the end of its window).
SILENCE_FACTOR = 100
#: Leading (or trailing) runs holding together less than this share of a file's records are stragglers.
STRAGGLER_SHARE = 0.15
#: A longer silence inside one file separates two observation windows.
MAX_SILENCE = timedelta(days=1)
#: The narrowest interval a file observed (a file of one flow).
MIN_WIDTH = timedelta(seconds=1)

_US = 1_000_000
_BIN_US = 60 * _US  # end times are summarised per minute: memory is bounded by the span, not the flows


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / _US, tz=UTC).isoformat()


def _parse(text: str) -> int:
    t = datetime.fromisoformat(text)
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return round(t.timestamp() * _US)


@dataclass(frozen=True)
class Coverage:
    """Disjoint, sorted intervals [start, end) in Unix microseconds, and how they were derived."""

    intervals: tuple[tuple[int, int], ...]
    rule: str = "records"

    @classmethod
    def of(cls, intervals: Iterable[tuple[int, int]], rule: str = "records") -> Coverage:
        """The union of possibly overlapping intervals."""
        merged: list[list[int]] = []
        for a, b in sorted((int(a), int(b)) for a, b in intervals if b > a):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        return cls(tuple((a, b) for a, b in merged), rule)

    @classmethod
    def between(cls, start: datetime, end: datetime, rule: str) -> Coverage:
        return cls.of([(round(start.timestamp() * _US), round(end.timestamp() * _US))], rule)

    def without(self, cut: Coverage) -> Coverage:
        """This coverage with the intervals of ``cut`` taken out (same rule).

        >>> Coverage.of([(0, 10), (20, 30)]).without(Coverage.of([(5, 22)])).intervals
        ((0, 5), (22, 30))
        """
        out: list[tuple[int, int]] = []
        for a, b in self.intervals:
            for c, d in cut.intervals:
                if d <= a or c >= b:
                    continue
                if c > a:
                    out.append((a, c))
                a = max(a, d)
                if a >= b:
                    break
            if a < b:
                out.append((a, b))
        return Coverage.of(out, self.rule)

    @property
    def seconds(self) -> float:
        """Total observed time."""
        return sum(b - a for a, b in self.intervals) / _US

    @property
    def span(self) -> tuple[int, int] | None:
        return (self.intervals[0][0], self.intervals[-1][1]) if self.intervals else None

    def holes(self, top: int | None = None) -> list[tuple[int, int]]:
        """The gaps between intervals, largest first."""
        gaps = [(a[1], b[0]) for a, b in zip(self.intervals, self.intervals[1:])]
        gaps.sort(key=lambda g: (g[0] - g[1], g[0]))
        return gaps[:top] if top is not None else gaps

    def covered_steps(self, step: timedelta, min_fraction: float = 0.5) -> np.ndarray:
        """Start (Unix microseconds) of every step at least ``min_fraction`` inside coverage."""
        w = int(step / timedelta(microseconds=1))
        if not self.intervals:
            return np.zeros(0, np.int64)
        iv = np.asarray(self.intervals, dtype=np.int64)
        first, last = iv[:, 0] // w, (iv[:, 1] - 1) // w  # steps each interval touches
        counts = last - first + 1
        idx = np.repeat(np.arange(len(iv)), counts)
        k = np.repeat(first, counts) + (np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts))
        lo, hi = k * w, k * w + w
        inside = np.minimum(hi, iv[idx, 1]) - np.maximum(lo, iv[idx, 0])
        steps, at = np.unique(k, return_inverse=True)
        total = np.bincount(at, weights=inside)
        return (steps[total >= min_fraction * w] * w).astype(np.int64)

    def contains(self, us: np.ndarray) -> np.ndarray:
        """Which instants (Unix microseconds) lie inside coverage."""
        if not self.intervals:
            return np.zeros(len(us), bool)
        iv = np.asarray(self.intervals, dtype=np.int64)
        i = np.searchsorted(iv[:, 0], us, side="right") - 1
        return (i >= 0) & (us < iv[np.maximum(i, 0), 1])

    def to_dict(self, holes: int = 10) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "intervals": [[_iso(a), _iso(b)] for a, b in self.intervals],
            "observed_seconds": round(self.seconds, 6),
            "span": [_iso(self.span[0]), _iso(self.span[1])] if self.span else None,
            "largest_holes": [{"from": _iso(a), "to": _iso(b), "seconds": (b - a) / _US} for a, b in self.holes(holes)],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Coverage:
        return cls.of(((_parse(a), _parse(b)) for a, b in d["intervals"]), d.get("rule", "records"))


def _file_intervals(n: np.ndarray, lo: np.ndarray, hi: np.ndarray, spacing_us: float) -> list[tuple[int, int]]:
    """One file's intervals from its per-minute end-time summary (bins sorted by time): ``n``
    records per bin, their earliest and latest end time; ``spacing_us`` the mean distance
    between consecutive end times."""
    width = int(MIN_WIDTH / timedelta(microseconds=1))
    silence = max(STRAGGLER_SILENCE / timedelta(microseconds=1), SILENCE_FACTOR * spacing_us)
    out = []
    # Silences between bins, exact: the next bin's first end time after this one's last.
    gap = lo[1:] - hi[:-1]
    for window in np.split(np.arange(len(n)), np.flatnonzero(gap > MAX_SILENCE / timedelta(microseconds=1)) + 1):
        g = gap[window[:-1]]
        runs = np.split(window, np.flatnonzero(g > silence) + 1)
        sizes = np.array([n[r].sum() for r in runs])
        allowed = STRAGGLER_SHARE * sizes.sum()
        # Drop edge runs while what is dropped at that edge stays under the share.
        first = int(np.searchsorted(np.cumsum(sizes), allowed, side="left"))
        last = len(runs) - 1 - int(np.searchsorted(np.cumsum(sizes[::-1]), allowed, side="left"))
        first, last = min(first, len(runs) - 1), max(last, 0)
        if first > last:  # everything is "edge": keep the largest run
            first = last = int(np.argmax(sizes))
        # The file was listening about one spacing before its first record and after its last:
        # consecutive rotation files then meet instead of leaving a hole between their records.
        pad = int(spacing_us) if sizes.sum() > 1 else 0
        a, b = int(lo[runs[first][0]]) - pad, int(hi[runs[last][-1]]) + pad
        out.append((a, max(b, a + width)))
    return out


class CoverageBuilder:
    """Coverage from records arriving in batches (module rules): per source file and minute, the
    count and the first and last end time, never the flows themselves."""

    def __init__(self) -> None:
        self._parts: list[pl.DataFrame] = []

    def add(self, flows: pl.LazyFrame | pl.DataFrame, exclude_sources: Sequence[str] = ()) -> CoverageBuilder:
        ends = flows.lazy().select("source_file", pl.col("ts_end").dt.epoch("us").alias("e"))
        if exclude_sources:
            ends = ends.filter(~pl.col("source_file").is_in(list(exclude_sources)))
        self._parts.append(
            ends.group_by("source_file", (pl.col("e") // _BIN_US).alias("minute"))
            .agg(pl.len().alias("n"), pl.col("e").min().alias("lo"), pl.col("e").max().alias("hi"))
            .collect(engine="streaming")
        )
        return self

    def parts(self) -> list[pl.DataFrame]:
        """The per (source_file, minute) summaries added so far: what a distributed job sends
        from each worker to be merged with :meth:`from_parts`."""
        return list(self._parts)

    @classmethod
    def from_parts(cls, parts: Sequence[pl.DataFrame]) -> CoverageBuilder:
        """A builder holding summaries that :meth:`parts` returned, from any number of builders."""
        builder = cls()
        builder._parts = list(parts)
        return builder

    def finish(self, rule: str = "records") -> Coverage:
        if not self._parts:
            return Coverage((), rule)
        summary = (
            pl.concat(self._parts).group_by("source_file", "minute")
            .agg(pl.col("n").sum(), pl.col("lo").min(), pl.col("hi").max())
            .sort("source_file", "minute")
        )
        # The mean spacing of end times per file: its span over its records.
        spacing = dict(
            summary.group_by("source_file")
            .agg(((pl.col("hi").max() - pl.col("lo").min()) / pl.max_horizontal(pl.col("n").sum() - 1, 1)).alias("s"))
            .iter_rows()
        )
        intervals: list[tuple[int, int]] = []
        for part in summary.partition_by("source_file", maintain_order=True):
            intervals += _file_intervals(part["n"].to_numpy(), part["lo"].to_numpy(), part["hi"].to_numpy(),
                                         float(spacing[part["source_file"][0]]))
        return Coverage.of(intervals, rule)


def coverage_of_flows(flows: pl.LazyFrame | pl.DataFrame, exclude_sources: Sequence[str] = ()) -> Coverage:
    """Coverage from the records themselves (module rules), per ``source_file``, in one
    streaming pass."""
    return CoverageBuilder().add(flows, exclude_sources).finish()


def dataset_coverage(path: str | Path, flows: pl.LazyFrame | None = None) -> Coverage:
    """What a flow input observed: a dataset's manifest says it (``coverage``); for anything else
    (an input file, or a dataset written before coverage was recorded) it comes from the records
    of ``flows`` (scanned from ``path`` when not given)."""
    from netflowgen.artifacts import MANIFEST_NAME

    folder = Path(path)
    manifest = folder / MANIFEST_NAME
    if folder.is_dir() and manifest.is_file():
        stored = json.loads(manifest.read_text()).get("coverage")
        if stored:
            return Coverage.from_dict(stored)
    if flows is None:
        from netflowgen.dataset.manifest import scan_flows

        flows = scan_flows(folder)
    return coverage_of_flows(flows)
