"""Training and validation windows over token shards.

A window is up to ``context + 1`` consecutive rows of one segment (one node, consecutive steps):
its first ``context`` rows are the input, rows 1..context the next-step targets. Shorter windows
are padded at the end (padding targets are -1 and ignored).

Split by time, per node: the last ``val_fraction`` of every node's rows are held out. Training
windows lie wholly before that boundary; validation windows predict every held-out row exactly
once, with as much history before it (from either part) as the context allows.

Sampling is stateless: the batch of step ``k`` on rank ``r`` comes from a generator seeded with
``(seed, r, k)``, so a resumed run sees the very batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from netflowgen.tokenize.shards import TokenShard

__all__ = ["Batch", "TokenWindows"]


@dataclass
class Batch:
    """A batch of windows, as the model reads it."""

    traffic: torch.Tensor  # (B, T, F) uint8
    time: torch.Tensor  # (B, T, 4) uint8
    node: torch.Tensor  # (B,) int64
    group: torch.Tensor  # (B,) int64
    targets: torch.Tensor  # (B, T, F) int64, -1 where ignored
    rows: torch.Tensor  # (B, T) int64 global row of each input step, -1 for padding
    target_rows: torch.Tensor  # (B, T) int64 global row of each target, -1 where ignored

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{k: v.to(device, non_blocking=True) for k, v in self.__dict__.items()})


class TokenWindows:
    """Windows of ``context`` steps over a list of shards."""

    def __init__(self, shards: list[TokenShard], context: int, val_fraction: float = 0.1) -> None:
        if not 0 <= val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        self.shards = shards
        self.context = context
        self.n_features = int(shards[0].traffic.shape[1]) if shards else 0
        offsets = np.cumsum([0] + [len(s.step) for s in shards])
        self.row_offset = offsets[:-1]
        train, val = [], []  # rows (global): [segment start, train end, segment end]
        for si, shard in enumerate(shards):
            segs = np.asarray(shard.segments)
            if len(segs) == 0:
                continue
            boundary = _val_boundaries(np.asarray(shard.node), np.asarray(shard.step), segs, val_fraction)
            base = offsets[si]
            for (start, length), b in zip(segs, boundary):
                s, e = base + start, base + start + length
                b = base + b
                train.append((s, min(b, e)))
                val.append((s, b, e))
        self.train_segments = np.asarray([t for t in train if t[1] - t[0] >= 2], dtype=np.int64).reshape(-1, 2)
        self.val_segments = np.asarray([v for v in val if v[2] > max(v[1], v[0] + 1)], dtype=np.int64).reshape(-1, 3)
        # Every row with a successor in its training segment can start a window.
        starts = self.train_segments[:, 1] - self.train_segments[:, 0] - 1
        self.train_cum = np.cumsum(starts)
        self._global = _GlobalArrays(shards)

    @property
    def n_train_targets(self) -> int:
        return int(self.train_cum[-1]) if len(self.train_cum) else 0

    @property
    def n_val_targets(self) -> int:
        v = self.val_segments
        return int(np.sum(v[:, 2] - np.maximum(v[:, 1], v[:, 0] + 1))) if len(v) else 0

    def sample(self, batch_size: int, seed: int, rank: int, step: int) -> Batch:
        """The training batch of ``step`` on ``rank`` (stateless, see module docstring)."""
        if self.n_train_targets == 0:
            raise ValueError("no training windows: every node has fewer than 2 steps before the validation part")
        rng = np.random.default_rng([seed, rank, step])
        k = rng.integers(0, self.n_train_targets, size=batch_size)
        seg = np.searchsorted(self.train_cum, k, side="right")
        before = np.where(seg > 0, self.train_cum[np.maximum(seg - 1, 0)], 0)
        start = self.train_segments[seg, 0] + (k - before)
        end = np.minimum(start + self.context + 1, self.train_segments[seg, 1])
        return self._collate(start, end, first_target=start + 1)

    def val_batches(self, batch_size: int, max_batches: int | None = None) -> Iterator[Batch]:
        """Windows that predict every held-out row once, in a fixed order."""
        starts, ends, firsts = [], [], []
        for s, b, e in self.val_segments:
            t = max(b, s + 1)  # first held-out target row
            while t < e:
                t1 = min(t + self.context, e)  # targets [t, t1)
                a = max(s, t1 - 1 - self.context)  # inputs [a, t1 - 1)
                starts.append(a)
                ends.append(t1)
                firsts.append(t)
                t = t1
        order = np.arange(len(starts))
        for i, lo in enumerate(range(0, len(order), batch_size)):
            if max_batches is not None and i >= max_batches:
                return
            idx = order[lo : lo + batch_size]
            yield self._collate(np.asarray(starts)[idx], np.asarray(ends)[idx], np.asarray(firsts)[idx])

    def _collate(self, start: np.ndarray, end: np.ndarray, first_target: np.ndarray) -> Batch:
        """Windows of rows [start, end): inputs [start, end - 1), targets [start + 1, end)."""
        T, g = self.context, self._global
        pos = np.arange(T)
        in_rows = start[:, None] + pos[None, :]  # (B, T)
        valid_in = in_rows < (end - 1)[:, None]
        tgt_rows = in_rows + 1
        valid_tgt = valid_in & (tgt_rows >= first_target[:, None])
        safe = np.where(valid_in, in_rows, 0)
        traffic = np.where(valid_in[..., None], g.traffic[safe], 0)
        time = np.where(valid_in[..., None], g.time[safe], 0)
        targets = np.where(valid_tgt[..., None], g.traffic[np.where(valid_tgt, tgt_rows, 0)].astype(np.int64), -1)
        return Batch(
            traffic=torch.from_numpy(traffic.astype(np.uint8)),
            time=torch.from_numpy(time.astype(np.uint8)),
            node=torch.from_numpy(g.node[start].astype(np.int64)),
            group=torch.from_numpy(g.group[start].astype(np.int64)),
            targets=torch.from_numpy(targets),
            rows=torch.from_numpy(np.where(valid_in, in_rows, -1)),
            target_rows=torch.from_numpy(np.where(valid_tgt, tgt_rows, -1)),
        )


class _GlobalArrays:
    """Shards seen as one array each (concatenated lazily once; shards are memory-mapped)."""

    def __init__(self, shards: list[TokenShard]) -> None:
        if len(shards) == 1:
            s = shards[0]
            self.traffic, self.time, self.node, self.group, self.step = s.traffic, s.time, s.node, s.group, s.step
            self.attack, self.labeled = s.attack, s.labeled
        else:
            cat = lambda name: np.concatenate([np.asarray(getattr(s, name)) for s in shards]) if shards else np.zeros(0)  # noqa: E731
            self.traffic, self.time, self.node, self.group = cat("traffic"), cat("time"), cat("node"), cat("group")
            self.step, self.attack, self.labeled = cat("step"), cat("attack"), cat("labeled")


def _val_boundaries(node: np.ndarray, step: np.ndarray, segs: np.ndarray, val_fraction: float) -> np.ndarray:
    """For each segment, the shard row where its node's held-out part starts (clipped to it)."""
    out = np.empty(len(segs), dtype=np.int64)
    # Rows of one node are contiguous (sorted by node, then step); the node changes where the
    # node id changes or, for unknown nodes (id 0), where segments start after a node change.
    seg_start = segs[:, 0]
    seg_end = segs[:, 0] + segs[:, 1]
    # Group consecutive segments of the same node: a new node starts where the id changes, or
    # where the step goes back in time (two unknown nodes in a row share id 0).
    new_node = np.ones(len(segs), dtype=bool)
    new_node[1:] = (node[seg_start[1:]] != node[seg_start[1:] - 1]) | (step[seg_start[1:]] <= step[seg_start[1:] - 1])
    group_id = np.cumsum(new_node) - 1
    for gid in np.unique(group_id):
        members = np.flatnonzero(group_id == gid)
        first, last = seg_start[members[0]], seg_end[members[-1]]
        n_val = int(np.ceil((last - first) * val_fraction))
        boundary = last - n_val
        out[members] = np.clip(boundary, seg_start[members], seg_end[members])
    return out
