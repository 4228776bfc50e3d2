"""Encoded steps and the windows a model reads them in: one container, one collate, one plan.

:class:`EncodedSteps` is a node-series table as the model reads it (bins, time fields, ids,
labels, segments). A :class:`WindowPlan` says, for every window, which rows it reads
(``[begin, end)``, at most ``length``, never across a segment) and which of them count
(``[start, end)``: the rows trained on, or scored). Its three constructors are the three ways
the library reads steps:

* :meth:`WindowPlan.labelled`: fine-tuning, each labelled window read with up to ``history``
  unlabelled rows before it;
* :meth:`WindowPlan.strides`: offline scoring, every segment cut into strides of ``window`` rows,
  each read with up to ``history`` rows before it (a row sees ``history`` to
  ``history + window - 1`` rows of context);
* :meth:`WindowPlan.trailing`: live scoring, every scored row the last of its window, read with
  up to ``length - 1`` rows before it, as the live detector reads a node's newest step.

A row's score depends on the rows its window reads: scored by the strides and by the trailing
plan it sees different context and may differ; scored by the trailing plan offline
(``Detector.score(..., as_live=True)``) and live it reads the same rows and gives the same score.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from netflowgen.model import FlowGPT
from netflowgen.series.spec import attack_labels, segment_bounds
from netflowgen.tokenize import Tokenizer

__all__ = ["EncodedSteps", "WindowBatch", "WindowPlan", "collate", "score_plan", "score_steps", "surprise_scores"]


@dataclass
class EncodedSteps:
    """A node-series table as the model reads it, rows sorted by node and step."""

    keys: pl.DataFrame  # node, step
    traffic: np.ndarray  # (N, F) uint8
    time: np.ndarray  # (N, 4) uint8
    node: np.ndarray  # (N,) int64 ids
    group: np.ndarray  # (N,) int64 ids
    labels: np.ndarray  # (N,) uint8
    bounds: np.ndarray  # (S, 2) [start, end) rows of consecutive steps of one node
    step_s: np.ndarray  # (N,) int64 Unix seconds

    @classmethod
    def encode(cls, series: pl.DataFrame, tokenizer: Tokenizer, attack: tuple[str, ...] | list[str] = ()) -> EncodedSteps:
        """Encode ``series``, which must be on the step grid of the tokenizer's series contract."""
        tokenizer.check(series)
        step_seconds = tokenizer.spec.step_seconds
        series = series.sort("node", "step")
        enc = tokenizer.encode(series)
        step_s = series["step"].dt.epoch("s").to_numpy().astype(np.int64)
        node_key = series["node"].rank("dense").to_numpy()
        has_labels = "classes" in series.columns or "attack" in series.columns
        labels = attack_labels(series, tuple(attack)) if has_labels else np.zeros(series.height, np.uint8)
        return cls(series.select("node", "step"), enc["traffic"], enc["time"], enc["node"].astype(np.int64),
                   enc["group"].astype(np.int64), labels, segment_bounds(node_key, step_s, step_seconds), step_s)

    def __len__(self) -> int:
        return len(self.node)


@dataclass
class WindowBatch:
    traffic: torch.Tensor  # (B, T, F)
    time: torch.Tensor  # (B, T, 4)
    node: torch.Tensor  # (B,)
    group: torch.Tensor  # (B,)
    labels: torch.Tensor  # (B, T) float
    mask: torch.Tensor  # (B, T) bool: positions whose label counts
    first: torch.Tensor  # (B,) index of the first labelled position (after the history)
    last: torch.Tensor  # (B,) index of the last real position
    rows: torch.Tensor  # (B, T) row of each position, -1 for padding

    def to(self, device: torch.device | str) -> WindowBatch:
        return WindowBatch(**{k: v.to(device) for k, v in self.__dict__.items()})


def collate(steps: EncodedSteps, begin: np.ndarray, start: np.ndarray, end: np.ndarray, length: int,
            mask: np.ndarray | None = None) -> WindowBatch:
    """Windows of rows [begin, end) padded to ``length``; labels count on rows [start, end) that
    ``mask`` allows."""
    pos = np.arange(length)
    rows = begin[:, None] + pos[None, :]
    real = rows < end[:, None]
    safe = np.where(real, rows, 0)
    counted = real & (rows >= start[:, None])
    if mask is not None:
        counted &= mask[safe]
    return WindowBatch(
        traffic=torch.from_numpy(np.where(real[..., None], steps.traffic[safe], 0).astype(np.uint8)),
        time=torch.from_numpy(np.where(real[..., None], steps.time[safe], 0).astype(np.uint8)),
        node=torch.from_numpy(steps.node[begin]),
        group=torch.from_numpy(steps.group[begin]),
        labels=torch.from_numpy(np.where(counted, steps.labels[safe], 0).astype(np.float32)),
        mask=torch.from_numpy(counted),
        first=torch.from_numpy((start - begin).astype(np.int64)),
        last=torch.from_numpy((end - begin - 1).astype(np.int64)),
        rows=torch.from_numpy(np.where(real, rows, -1)),
    )


def _segment_start(bounds: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The first row of the segment each of ``rows`` lies in."""
    idx = np.searchsorted(bounds[:, 0], rows, side="right") - 1
    return bounds[idx, 0]


@dataclass(frozen=True)
class WindowPlan:
    """Windows over encoded steps: rows ``[begin, end)`` read, rows ``[start, end)`` counted, each
    window at most ``length`` rows (see the module docstring)."""

    begin: np.ndarray  # (W,) int64
    start: np.ndarray  # (W,) int64
    end: np.ndarray  # (W,) int64
    length: int

    @classmethod
    def labelled(cls, bounds: np.ndarray, windows: np.ndarray, window: int, history: int) -> WindowPlan:
        """Labelled windows ``windows`` ((W, 2) [start, end) rows, at most ``window`` long), each
        read with up to ``history`` rows before it inside its segment."""
        windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
        length = history + window
        begin = np.maximum(windows[:, 0] - history, _segment_start(bounds, windows[:, 0])) if len(windows) else windows[:, 0]
        return cls(begin.astype(np.int64), windows[:, 0], windows[:, 1], length)

    @classmethod
    def strides(cls, bounds: np.ndarray, window: int, history: int) -> WindowPlan:
        """Every segment cut into strides of ``window`` rows, each read with up to ``history`` rows
        before it inside its segment.

        >>> p = WindowPlan.strides(np.array([[0, 5], [5, 7]]), 2, 1)
        >>> [p.begin.tolist(), p.start.tolist(), p.end.tolist(), p.length]
        [[0, 1, 3, 5], [0, 2, 4, 5], [2, 4, 5, 7], 3]
        """
        strides = -(-(bounds[:, 1] - bounds[:, 0]) // window)  # per segment, rounded up
        seg = np.repeat(np.arange(len(bounds)), strides)
        k = np.arange(int(strides.sum())) - np.repeat(np.cumsum(strides) - strides, strides)
        start = (bounds[seg, 0] + k * window).astype(np.int64)
        return cls(np.maximum(bounds[seg, 0], start - history).astype(np.int64), start,
                   np.minimum(start + window, bounds[seg, 1]).astype(np.int64), history + window)

    @classmethod
    def trailing(cls, bounds: np.ndarray, length: int, rows: np.ndarray | None = None) -> WindowPlan:
        """Each of ``rows`` (default: every row) scored as the last row of its window, read with
        up to ``length - 1`` rows before it inside its segment.

        >>> p = WindowPlan.trailing(np.array([[0, 3], [3, 5]]), 2)
        >>> [p.begin.tolist(), p.start.tolist(), p.end.tolist()]
        [[0, 0, 1, 3, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5]]
        """
        last = np.arange(int(bounds[-1, 1]) if len(bounds) else 0, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        begin = np.maximum(last + 1 - length, _segment_start(bounds, last)) if len(last) else last
        return cls(begin.astype(np.int64), last, last + 1, length)

    def __len__(self) -> int:
        return len(self.begin)

    def take(self, index: np.ndarray) -> WindowPlan:
        """The windows at ``index``."""
        return WindowPlan(self.begin[index], self.start[index], self.end[index], self.length)

    def holding(self, rows: np.ndarray) -> WindowPlan:
        """The windows that count one of ``rows`` (a boolean mask over the steps)."""
        counts = np.concatenate([[0], np.cumsum(np.asarray(rows, bool))])
        return self.take(counts[self.end] > counts[self.start])

    def collate(self, steps: EncodedSteps, mask: np.ndarray | None = None) -> WindowBatch:
        """All the windows as one batch (labels count where ``mask`` allows)."""
        return collate(steps, self.begin, self.start, self.end, self.length, mask)

    def batches(self, steps: EncodedSteps, batch_size: int, mask: np.ndarray | None = None) -> Iterator[WindowBatch]:
        """The windows in batches of ``batch_size``, in plan order."""
        for lo in range(0, len(self), batch_size):
            yield self.take(slice(lo, lo + batch_size)).collate(steps, mask)  # type: ignore[arg-type]


@torch.no_grad()
def score_steps(model: torch.nn.Module, steps: EncodedSteps, window: int, history: int,
                batch_size: int = 64, device: str | torch.device = "cpu", kind: str = "detector",
                rows: np.ndarray | None = None) -> np.ndarray:
    """A score for every row: the detector's attack probability (``kind="detector"``) or the
    pre-trained model's surprise (``kind="surprise"``: the negative log-likelihood of the observed
    bins of all features given the steps before, NaN on a segment's first step), read in the
    strides plan (``WindowPlan.strides``). With ``rows`` (a mask), only the strides holding one
    of them are scored (each stride reads its own history, so their scores are those of scoring
    everything); the other rows are NaN."""
    plan = WindowPlan.strides(steps.bounds, window, history)
    return score_plan(model, steps, plan if rows is None else plan.holding(rows), batch_size, device, kind)


@torch.no_grad()
def score_plan(model: torch.nn.Module, steps: EncodedSteps, plan: WindowPlan, batch_size: int = 64,
               device: str | torch.device = "cpu", kind: str = "detector") -> np.ndarray:
    """A score for every row the plan's windows count (NaN for the others); ``kind`` as in
    :func:`score_steps`."""
    model.eval()
    out = np.full(len(steps), np.nan, dtype=np.float64)
    for b in plan.batches(steps, batch_size):
        b = b.to(device)
        if kind == "detector":
            logits, _ = model(b.traffic, b.time, b.node, b.group, b.first, b.last)
            values = torch.sigmoid(logits.float())
        else:
            values = _surprise(model, b)  # type: ignore[arg-type]
        rows, keep = b.rows.cpu().numpy(), b.mask.cpu().numpy()
        out[rows[keep]] = values.cpu().numpy()[keep]
    return out


def _surprise(model: FlowGPT, b: WindowBatch) -> torch.Tensor:
    """(B, T) NLL of each position's bins predicted from the previous position (NaN at 0)."""
    logits = model(b.traffic, b.time, b.node, b.group).logits  # (B, T, sum bins)
    targets = b.traffic[:, 1:].long()  # the bins at positions 1.., predicted at 0..
    nll = model.feature_nll(logits[:, :-1], targets).sum(-1)  # (B, T-1)
    first = torch.full_like(nll[:, :1], float("nan"))
    return torch.cat([first, nll], dim=1)


def surprise_scores(model: FlowGPT, steps: EncodedSteps, context: int | None = None, batch_size: int = 64,
                    device: str | torch.device = "cpu", rows: np.ndarray | None = None) -> np.ndarray:
    """Zero-label anomaly score of every row: how surprising the observed step is to the
    pre-trained model, in nats summed over features (NaN where a node's segment starts)."""
    ctx = context or model.cfg.context
    history = ctx // 2
    return score_steps(model, steps, ctx - history, history, batch_size, device, kind="surprise", rows=rows)
